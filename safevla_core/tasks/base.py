"""Task interface shared by Safety-ObjNav, Safety-PickUp and Safety-Fetch (REFERENCE.md "Tasks").

A task samples an :class:`EpisodeSpec` from a house, judges success from a
:class:`~safevla_core.world.WorldState` and the action, gives the sparse reward, and names the
targets the safety costs exempt while held (:func:`safevla_core.costs.compute_costs`'s
``exempt_ids``). Tasks hold no simulator: the environment applies the spec and feeds states.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from safevla_core.actions import Action
from safevla_core.world import WorldState

#: Type names whose words are not simply the split CamelCase (ours, common English spelling).
INSTRUCTION_NAME_OVERRIDES: dict[str, str] = {
    "ArmChair": "armchair",
    "CounterTop": "countertop",
}

_CAMEL_SPLIT = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def instruction_name(object_type: str) -> str:
    """Human words for a type name: ``"AlarmClock" -> "alarm clock"``, ``"Apple" -> "apple"``.

    Args:
        object_type: THOR ``objectType`` (CamelCase).

    Returns:
        Lower-case words separated by single spaces.

    Raises:
        ValueError: If the name is empty or not a string.
    """
    if not isinstance(object_type, str) or not object_type.strip():
        raise ValueError(f"object type must be a non-empty string, got {object_type!r}")
    if object_type in INSTRUCTION_NAME_OVERRIDES:
        return INSTRUCTION_NAME_OVERRIDES[object_type]
    words = _CAMEL_SPLIT.sub(" ", object_type.strip()).replace("_", " ").split()
    return " ".join(w.lower() for w in words)


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything that defines one episode, independent of the simulator.

    Attributes:
        task: Task name (``"objnav"``, ``"pickup"``, ``"fetch"``).
        house_id: The house's ``"id"``.
        target_type: Object type named by the instruction (``"AlarmClock"``).
        target_ids: Ids of every instance of the target type in the house; empty for the
            "extreme failure" episodes whose target is absent.
        instruction: Natural-language instruction given to the policy.
        robot_pose: Start pose ``(x_m, y_m, yaw_rad)`` in ``map``.
        seed: Seed for whatever the backend randomises at reset (drawn from the sampler's rng).
    """

    task: str
    house_id: str
    target_type: str
    target_ids: tuple[str, ...]
    instruction: str
    robot_pose: tuple[float, float, float]
    seed: int

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On an empty task/target type/instruction, a pose that is not three finite
                numbers, or duplicate target ids.
        """
        if not self.task or not self.target_type or not self.instruction:
            raise ValueError("task, target_type and instruction must be non-empty")
        pose = tuple(float(v) for v in self.robot_pose)
        if len(pose) != 3 or not all(math.isfinite(v) for v in pose):
            raise ValueError(f"robot_pose must be 3 finite numbers, got {self.robot_pose!r}")
        ids = tuple(str(i) for i in self.target_ids)
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate target ids: {ids}")
        object.__setattr__(self, "robot_pose", pose)
        object.__setattr__(self, "target_ids", ids)
        object.__setattr__(self, "seed", int(self.seed))


@runtime_checkable
class Task(Protocol):
    """What the environment needs from a task."""

    name: str

    def sample_episode(
        self,
        house: Mapping[str, Any],
        reachable_xy: np.ndarray,
        rng: np.random.Generator,
        target_type: str | None = None,
    ) -> EpisodeSpec:
        """Sample an episode in a house (see :meth:`ObjNavTask.sample_episode`)."""
        ...

    def is_success(self, spec: EpisodeSpec, state: WorldState, action: Action | int) -> bool:
        """True if ``action`` completes the task in ``state`` (the state after the action)."""
        ...

    def reward(
        self,
        spec: EpisodeSpec,
        prev: WorldState,
        curr: WorldState,
        action: Action | int,
        success: bool,
    ) -> float:
        """Reward of the step from ``prev`` to ``curr``."""
        ...

    def exempt_ids(self, spec: EpisodeSpec, state: WorldState) -> frozenset[str]:
        """Targets the task means the robot to hold (costs exempt them only while held)."""
        ...


#: Tasks whose success is holding a target (REFERENCE.md "Tasks": PickUp and Fetch end with the
#: target held); ObjNav only has to see it, so holding anything there is no part of the task.
HOLDING_TASKS: frozenset[str] = frozenset({"pickup", "fetch"})


def task_exempt_ids(spec: EpisodeSpec, state: WorldState) -> frozenset[str]:
    """The ``exempt_ids`` of :func:`safevla_core.costs.compute_costs` (shared by all tasks).

    The targets of a task in :data:`HOLDING_TASKS`, none for ObjNav. The costs exempt a target
    only while it is held (:func:`safevla_core.costs.held_target`), so this names what the task
    intends the robot to hold; the held object itself is never exempt for being held (a grasped
    non-target knife is the paper's "abuse of hazardous objects", Figure 1).

    Args:
        spec: The episode.
        state: The current state (unused: the intent does not change during an episode; kept
            for the :class:`Task` protocol).

    Returns:
        ``frozenset(spec.target_ids)`` for PickUp and Fetch, an empty set for ObjNav.
    """
    del state
    return frozenset(spec.target_ids) if spec.task in HOLDING_TASKS else frozenset()


def far_start_episode(
    task: str,
    house: Mapping[str, Any],
    reachable_xy: np.ndarray,
    rng: np.random.Generator,
    target_type: str,
    target_ids: tuple[str, ...],
    target_xy: np.ndarray,
    min_dist_m: float,
    templates: tuple[str, ...],
) -> EpisodeSpec:
    """An episode that starts at least ``min_dist_m`` from every target (ObjNav, Fetch).

    Draws, in this order: the start point (uniform over the qualifying reachable points), the
    yaw (uniform in ``[-pi, pi)``), the instruction template, the episode seed.

    Args:
        task: Task name for the spec.
        house: House dict (its ``id`` names the episode's house).
        reachable_xy: ``(M, 2)`` validated reachable base positions, metres.
        rng: Random generator.
        target_type: The target category.
        target_ids: Ids of its instances (empty for an extreme-failure episode).
        target_xy: ``(K, 2)`` positions of the instances the start must keep away from
            (``K = 0``: any reachable point).
        min_dist_m: Minimum horizontal start distance to every instance, metres.
        templates: Instruction templates with a ``{name}`` field.

    Raises:
        ValueError: If no reachable point is far enough from the targets.
    """
    pts = np.asarray(reachable_xy, dtype=np.float64)
    txy = np.asarray(target_xy, dtype=np.float64).reshape(-1, 2)
    if len(txy):
        d = np.linalg.norm(pts[:, None, :] - txy[None, :, :], axis=2)  # (M, K)
        ok = np.flatnonzero(d.min(axis=1) >= min_dist_m)
    else:
        ok = np.arange(len(pts))
    if len(ok) == 0:
        raise ValueError(
            f"no reachable point in house {house.get('id', '?')!r} is at least "
            f"{min_dist_m} m from every {target_type}"
        )
    start = pts[ok[int(rng.integers(len(ok)))]]
    yaw_rad = float(rng.uniform(-math.pi, math.pi))
    template = templates[int(rng.integers(len(templates)))]
    return EpisodeSpec(
        task=task,
        house_id=str(house.get("id", "")),
        target_type=target_type,
        target_ids=target_ids,
        instruction=template.format(name=instruction_name(target_type)),
        robot_pose=(float(start[0]), float(start[1]), yaw_rad),
        seed=int(rng.integers(2**31 - 1)),
    )
