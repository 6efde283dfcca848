"""WorldState: one snapshot of everything the safety costs and the task checks read.

Every simulator backend (the embedded MuJoCo one, AI2-THOR) fills the same structure after each
action, so that :mod:`safevla_core.costs` and :mod:`safevla_core.tasks` are pure functions of
consecutive snapshots. Frame: ``map`` (REP-103: x forward/east, y left/north, z up), metres,
radians, quaternions ``(w, x, y, z)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: Types treated as building structure: never "disturbed", never an object cost
#: (REFERENCE.md: "structure (floor, wall, door, window, ceiling) is ignored").
STRUCTURE_TYPES: frozenset[str] = frozenset(
    {"Floor", "Wall", "Door", "Doorway", "Window", "Ceiling"}
)


@dataclass(frozen=True, eq=False)
class WorldState:
    """Snapshot of the world after an action (or after reset).

    Attributes:
        step: Number of actions executed since reset (0 right after reset).
        object_ids: ``(N,)`` unique ids of every non-structural object (furniture and small
            objects), in a fixed order for the whole episode.
        object_types: ``(N,)`` canonical type names (``"Vase"``, ``"Knife"``, ...), matched
            exactly against :mod:`safevla_core.objects`.
        object_positions: ``(N, 3)`` float64 centre positions in ``map``, metres.
        object_quats: ``(N, 4)`` float64 orientations in ``map``, unit quaternions (w, x, y, z).
        robot_pose: ``(3,)`` float64 base pose ``(x_m, y_m, yaw_rad)`` in ``map``.
        lift_m: Lift height above its lowest position, metres.
        arm_m: Telescoping arm extension, metres.
        wrist_yaw_rad: Wrist yaw, radians.
        held_object_id: Id of the object in the gripper (one of ``object_ids``), or ``None``.
        collided_ids: Ids of everything the robot touched during the last action (objects and
            structure such as ``"wall|0|1"``; each one of ``object_ids`` or ``structure_ids``);
            empty after reset. The grasp itself is not a contact: both backends leave the held
            object out unless it hit the robot (:mod:`safevla_core.sim.mujoco_backend` drops the
            held geom's contacts, AI2-THOR reports only blockers), so a held object listed here
            is a real collision with it.
        structure_ids: Ids of the building structure (walls, doors, floors), so that
            ``collided_ids`` can be split into objects and structure.
        visible_ids: Ids of objects visible in the navigation camera now (each one of
            ``object_ids``).
        last_seen_step: ``(N,)`` int64, the last step at which each object was visible in either
            camera, ``-1`` if never seen (for the blind-spot component).
        free_fraction_1m: Fraction of the k sampled reachable positions near the robot that lie
            within ``CostConfig.corner_radius_m`` of it, in ``[0, 1]`` (for the corner component;
            REFERENCE.md, k = 100, 1 m). The backend computes it with
            :func:`safevla_core.sim.free_space.free_fraction` and ``CostConfig.corner_samples`` /
            ``corner_radius_m`` (the costs cannot: they have no reachable points). ``1.0``, the
            default, means "not measured" and the corner component can then never fire: a
            hand-built state must set it to exercise the corner test.
        last_action_success: False if the last action was blocked (collision stopped it,
            joint limit, nothing to pick up).
        extras: Backend-specific values for logging only; costs never read them.
    """

    step: int
    object_ids: tuple[str, ...]
    object_types: tuple[str, ...]
    object_positions: np.ndarray
    object_quats: np.ndarray
    robot_pose: np.ndarray
    lift_m: float = 0.0
    arm_m: float = 0.0
    wrist_yaw_rad: float = 0.0
    held_object_id: str | None = None
    collided_ids: frozenset[str] = frozenset()
    structure_ids: frozenset[str] = frozenset()
    visible_ids: frozenset[str] = frozenset()
    last_seen_step: np.ndarray | None = None
    free_fraction_1m: float = 1.0
    last_action_success: bool = True
    extras: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate shapes and finiteness.

        Raises:
            ValueError: On mismatched lengths, wrong shapes, duplicate ids, NaN/inf values, a
                ``free_fraction_1m`` outside ``[0, 1]`` (a negative one would make the corner
                component fire on every collision), a held, visible or collided id that is
                neither an object (nor, for collisions, structure) of this state, or id sets
                given as a bare string (which would be split into characters).
        """
        n = len(self.object_ids)
        if len(self.object_types) != n:
            raise ValueError(f"object_types has {len(self.object_types)} entries, ids have {n}")
        if len(set(self.object_ids)) != n:
            raise ValueError("object_ids must be unique")
        pos = np.asarray(self.object_positions, dtype=np.float64)
        quat = np.asarray(self.object_quats, dtype=np.float64)
        pose = np.asarray(self.robot_pose, dtype=np.float64)
        if pos.shape != (n, 3):
            raise ValueError(f"object_positions must be ({n}, 3), got {pos.shape}")
        if quat.shape != (n, 4):
            raise ValueError(f"object_quats must be ({n}, 4), got {quat.shape}")
        if pose.shape != (3,):
            raise ValueError(f"robot_pose must be (3,), got {pose.shape}")
        for name, arr in (("object_positions", pos), ("object_quats", quat), ("robot_pose", pose)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains NaN or inf")
        for name in ("lift_m", "arm_m", "wrist_yaw_rad", "free_fraction_1m"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name} is not finite")
        if not 0.0 <= self.free_fraction_1m <= 1.0:
            raise ValueError(f"free_fraction_1m must be in [0, 1], got {self.free_fraction_1m}")
        for name in ("collided_ids", "structure_ids", "visible_ids"):
            if isinstance(getattr(self, name), str):
                raise ValueError(
                    f"{name} must be a set of ids, not the string {getattr(self, name)!r}"
                )
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        known = frozenset(self.object_ids)
        if self.held_object_id is not None and self.held_object_id not in known:
            raise ValueError(f"held object {self.held_object_id!r} is not an object of the state")
        if not self.visible_ids <= known:
            raise ValueError(f"visible ids are not objects: {sorted(self.visible_ids - known)}")
        unknown = self.collided_ids - known - self.structure_ids
        if unknown:
            raise ValueError(f"collided ids are neither objects nor structure: {sorted(unknown)}")
        seen = self.last_seen_step
        if seen is None:
            seen = np.full(n, -1, dtype=np.int64)
        seen = np.asarray(seen, dtype=np.int64)
        if seen.shape != (n,):
            raise ValueError(f"last_seen_step must be ({n},), got {seen.shape}")
        object.__setattr__(self, "object_positions", pos)
        object.__setattr__(self, "object_quats", quat)
        object.__setattr__(self, "robot_pose", pose)
        object.__setattr__(self, "last_seen_step", seen)

    @property
    def num_objects(self) -> int:
        """Number of non-structural objects N."""
        return len(self.object_ids)

    def index_of(self, object_id: str) -> int:
        """Index of an object id in the arrays.

        Raises:
            KeyError: If the id is not a (non-structural) object of this state.
        """
        try:
            return self.object_ids.index(object_id)
        except ValueError:
            raise KeyError(f"unknown object id {object_id!r}") from None

    def type_visible(self, object_type: str) -> bool:
        """Whether an object of ``object_type`` is in ``visible_ids`` (the navigation camera).

        The manipulation camera does not count. False for a type the state holds no object of
        (e.g. an "extreme failure" episode's absent target).
        """
        return any(
            t == object_type and i in self.visible_ids
            for i, t in zip(self.object_ids, self.object_types, strict=True)
        )

    def type_of(self, entity_id: str) -> str:
        """Type of an object or structure id (structure ids map to ``"Wall"``/``"Door"``/...).

        Structure types are read from the id's prefix (ProcTHOR's ``"wall|..."``, ``"door|..."``
        convention), defaulting to ``"Wall"``.

        Raises:
            KeyError: If the id is neither an object nor a structure id.
        """
        if entity_id in self.structure_ids:
            prefix = entity_id.split("|", 1)[0].split("_", 1)[0].lower()
            for t in STRUCTURE_TYPES:
                if t.lower() == prefix:
                    return t
            return "Wall"
        return self.object_types[self.index_of(entity_id)]
