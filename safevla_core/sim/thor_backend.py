"""AI2-THOR backend: the SimBackend protocol on AI2-THOR's Stretch agent, plus its pure parts.

The seeds train in AI2-THOR (Stretch agent, ProcTHOR-Objaverse houses). AI2-THOR's Unity build
is downloaded from the vendor at run time and no registry ships one (ENVIRONMENT.md), so
:class:`ThorBackend` needs a local build (``SAFEVLA_THOR_BUILD``, see :class:`ThorConfig`) and
``pip install ai2thor`` (imported lazily). What does not need Unity is pure and tested on event
metadata in AI2-THOR's documented format:

* :func:`thor_action_for`: our 20 actions -> THOR action dicts, as the authors' Stretch
  controller sends them (SafeVLA ``environment/stretch_controller.py`` ``agent_step`` and
  ``utils/constants/stretch_initialization_utils.py``): ``MoveAgent(ahead=+-0.2)``,
  ``RotateAgent(degrees=+-30 / +-6)`` (THOR degrees are clockwise, i.e. right is positive),
  ``MoveArm(position={x: 0, y: lift, z: extension})`` with the absolute target of the current arm
  state +- 0.1 / 0.02 m, ``RotateWristRelative(yaw=...)`` bounded by the wrist limits,
  ``PickupObject``, ``ReleaseObject`` (followed by ``AdvancePhysicsStep(simSeconds=2)``), and
  ``Pass`` for ``end`` / ``sub_done`` (the authors' robot mapping sends ``Pass`` for done).
  Arm and wrist actions carry ``returnToStart=True, speed=1``, base moves
  ``returnToStart=False, speed=1`` (their ``ADDITIONAL_ARM_ARGS`` /
  ``ADDITIONAL_NAVIGATION_ARGS``).
* :func:`world_state_from_event_metadata`: ``event.metadata`` -> :class:`WorldState`, in the
  ``map`` frame through :mod:`safevla_core.houses.schema`'s conversions, so that
  :func:`safevla_core.costs.compute_costs` gives the same costs for the same situation in THOR
  and in the embedded simulator.

Collisions: THOR's metadata has no contact list. A blocked action fails
(``lastActionSuccess`` False) with an ``errorMessage`` naming the blocker, written by AI2-THOR's
Unity code (``allenai/ai2thor`` ``unity/Assets/Scripts``):

* ``"<name> is blocking Agent <n> from moving by <offset>."`` (``BaseFPSAgentController.cs``,
  base sweep test),
* ``"<name> is blocking the Agent from moving by <offset> with <held>"`` (same file, the held
  object's sweep),
* ``"Collided with static/kinematic sim object: '<name>', could not reach target..."`` and
  ``"Collided with static structure in scene: '<name>', ..."`` (``ArmController.cs`` /
  ``FpinMovableContinuous.cs`` ``GetHaltMessage``, arm and continuous base moves).

The authors' cost code does the same: a collision is ``"collided" in errorMessage.lower()`` and
the collided object is the first single-quoted name (``tasks/abstract_task.py``,
``is_blind_spot_unsafe``); we also read the "is blocking" form. Names resolve to ids by object id,
then the objects' ``name`` field, then structure ids, each exactly and then case-insensitively
(the authors lowercase). A name that resolves to nothing is static geometry (THOR only blocks on
sim objects and ``Structure``/``Untagged`` colliders) and becomes a structure id (ours). Another
agent blocking (``"Agent <k> is blocking ..."``) is not a collision with the house.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safevla_core.actions import ACTION_EFFECTS, Action, parse_action
from safevla_core.config import CostConfig
from safevla_core.houses.schema import map_to_thor_position, thor_to_map_position
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA
from safevla_core.world import STRUCTURE_TYPES, WorldState

#: Environment variable holding the path of a local AI2-THOR Unity executable (ours).
THOR_BUILD_ENV = "SAFEVLA_THOR_BUILD"
#: Extra arguments of arm/wrist actions (authors' ``ADDITIONAL_ARM_ARGS``).
ARM_ACTION_ARGS: dict[str, Any] = {"returnToStart": True, "speed": 1}
#: Extra arguments of ``MoveAgent`` (authors' ``ADDITIONAL_NAVIGATION_ARGS``).
NAVIGATION_ACTION_ARGS: dict[str, Any] = {"returnToStart": False, "speed": 1}
#: Sent after ``ReleaseObject`` so the object falls (authors' ``agent_step``).
POST_RELEASE_ACTION: dict[str, Any] = {"action": "AdvancePhysicsStep", "simSeconds": 2}
#: The lift joint's root-relative height at the lift's zero, metres: the authors read the lift as
#: ``joints[0].rootRelativePosition.y - 0.16297650337219238`` and command ``MoveArm`` in that
#: coordinate (``get_relative_stretch_current_arm_state``).
THOR_LIFT_OFFSET_M = 0.16297650337219238
#: Wrist yaw limits, THOR degrees (authors' ``STRETCH_WRIST_BOUND_1`` / ``_2``): the wrist turns
#: from -260 deg (= 100 deg) up to 75 deg.
WRIST_MAX_DEG = 75.0
WRIST_MIN_DEG = -260.0
#: ``metadata.agent`` for houses without one (authors' ``StretchController.reset``).
DEFAULT_AGENT_METADATA: dict[str, Any] = {
    "horizon": 30, "position": {"x": 0.0, "y": 0.95, "z": 0.0},
    "rotation": {"x": 0.0, "y": 270.0, "z": 0.0}, "standing": True,
}  # fmt: skip
#: Joint names of AI2-THOR's Stretch arm metadata (``Stretch_Robot_Arm_Controller.cs``).
LIFT_JOINT = "stretch_robot_lift_jnt"
WRIST_JOINT = "stretch_robot_wrist_2_jnt"
#: Cameras render 396 px wide and 6/396 of the width is cut from each side, giving 384 px
#: (authors' ``INTEL_CAMERA_WIDTH`` 396, ``cutoff = round(w * 6 / 396)``).
CROP_FRACTION = 6.0 / 396.0
#: Structure-id prefixes that :meth:`WorldState.type_of` recognises (``world.STRUCTURE_TYPES``).
_STRUCTURE_PREFIXES = tuple(t.lower() for t in STRUCTURE_TYPES)

_BLOCKING_RE = re.compile(r"^\s*(?P<name>.+?) is blocking (?:Agent \d+|the Agent) from moving")
_OTHER_AGENT_RE = re.compile(r"^\s*Agent \d+ is blocking Agent \d+")
_QUOTED_RE = re.compile(r"'([^']+)'")


@dataclass(frozen=True)
class ThorConfig:
    """Settings of the AI2-THOR controller (Stretch agent).

    Attributes:
        build_path: Local Unity executable of AI2-THOR (e.g.
            ``.../thor-CloudRendering-<commit>/thor-CloudRendering-<commit>``); default from the
            ``SAFEVLA_THOR_BUILD`` environment variable. None: the backend cannot start.
        platform: ``ai2thor.platform`` class name; ``CloudRendering`` renders headless on a GPU
            (the authors' setting).
        width: Output image width, pixels (paper: 384; rendered 396 wide and cropped).
        height: Image height, pixels (paper: 224).
        fov_deg: Vertical field of view of both cameras, degrees (paper / authors: 59).
        nav_pitch_deg: Navigation camera pitch, degrees down (authors' calibrate_agent: 27).
        manip_pitch_deg: Manipulation camera pitch, degrees down (authors: 33).
        grid_size_m: Reachable-position grid, metres (authors: 0.2 * 0.75).
        visibility_distance_m: THOR's object visibility distance, metres (authors'
            ``MAXIMUM_DISTANCE_ARM_FROM_AGENT_CENTER``).
        server_timeout_s: Controller timeout, seconds (authors: 1200 for CloudRendering).
    """

    build_path: str | None = field(default_factory=lambda: os.environ.get(THOR_BUILD_ENV) or None)
    platform: str = "CloudRendering"
    width: int = 384
    height: int = 224
    fov_deg: float = 59.0
    nav_pitch_deg: float = 27.0
    manip_pitch_deg: float = 33.0
    grid_size_m: float = 0.15
    visibility_distance_m: float = 0.8673349051766235
    server_timeout_s: float = 1200.0

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On non-positive sizes, a field of view outside (0, 180) or an empty
                platform name.
        """
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"ThorConfig.{name} must be a positive int, got {v!r}")
        if not (0.0 < self.fov_deg < 180.0):
            raise ValueError(f"ThorConfig.fov_deg must be in (0, 180), got {self.fov_deg}")
        for name in ("grid_size_m", "visibility_distance_m", "server_timeout_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"ThorConfig.{name} must be positive, got {getattr(self, name)}")
        if not self.platform:
            raise ValueError("ThorConfig.platform must name an ai2thor.platform class")

    @property
    def render_width(self) -> int:
        """Width THOR renders at so that cropping :data:`CROP_FRACTION` per side gives ``width``."""
        return round(self.width / (1.0 - 2.0 * CROP_FRACTION))


# --------------------------------------------------------------------------- frames
def crop_frame(frame: np.ndarray) -> np.ndarray:
    """Cut ``round(W * 6 / 396)`` columns from each side of a THOR frame (authors' crop).

    Args:
        frame: ``(H, W, C)`` image.

    Returns:
        ``(H, W - 2 * cutoff, C)`` view; a 396-wide frame gives 384.

    Raises:
        ValueError: If the frame is not 3-D or too narrow.
    """
    if frame.ndim != 3:
        raise ValueError(f"frame must be (H, W, C), got shape {frame.shape}")
    cut = round(frame.shape[1] * CROP_FRACTION)
    if frame.shape[1] <= 2 * cut:
        raise ValueError(f"frame of width {frame.shape[1]} is too narrow to crop")
    return frame[:, cut:frame.shape[1] - cut] if cut else frame


# --------------------------------------------------------------------------- rotations
def thor_euler_to_map_quat(rotation: Mapping[str, float]) -> np.ndarray:
    """THOR (Unity) Euler angles in degrees -> unit quaternion ``(w, x, y, z)`` in ``map``.

    Unity composes ``Quaternion.Euler(x, y, z)`` as a rotation about z, then x, then y (world
    axes): ``q = q_y * q_x * q_z`` (Unity scripting reference, Quaternion.Euler). The frame change
    THOR ``(x, y, z)`` -> map ``(x, z, y)`` (:mod:`safevla_core.houses.schema`) is a reflection, so
    a rotation's axis maps as a pseudo-vector: ``(w, x, y, z)_thor -> (w, -x, -z, -y)_map``. For a
    yaw ``a`` this is a map yaw of ``-a``, as
    :func:`~safevla_core.houses.schema.thor_yaw_to_map_yaw`.

    Args:
        rotation: ``{"x", "y", "z"}`` degrees.

    Returns:
        ``(4,)`` float64 unit quaternion with ``w >= 0``.

    Raises:
        ValueError: On missing or non-finite angles.
    """
    try:
        ax, ay, az = (math.radians(float(rotation[k])) for k in ("x", "y", "z"))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"rotation needs numeric x, y, z degrees, got {rotation!r}") from err
    if not all(math.isfinite(a) for a in (ax, ay, az)):
        raise ValueError(f"rotation is not finite: {rotation!r}")
    qx = np.array([math.cos(ax / 2), math.sin(ax / 2), 0.0, 0.0])
    qy = np.array([math.cos(ay / 2), 0.0, math.sin(ay / 2), 0.0])
    qz = np.array([math.cos(az / 2), 0.0, 0.0, math.sin(az / 2)])
    w, x, y, z = _qmul(_qmul(qy, qx), qz)
    q = np.array([w, -x, -z, -y], dtype=np.float64)
    return q if q[0] >= 0 else -q


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, v1 = a[0], a[1:]
    w2, v2 = b[0], b[1:]
    return np.concatenate([[w1 * w2 - v1 @ v2], w1 * v2 + w2 * v1 + np.cross(v1, v2)])


def thor_agent_heading(yaw_deg: float) -> float:
    """THOR agent rotation about +y (degrees) -> map heading of the robot's +x axis, radians.

    The THOR agent faces its local +z: at yaw ``a`` it heads THOR ``(sin a, 0, cos a)``, i.e. map
    ``(sin a, cos a)``, whose angle is ``pi/2 - radians(a)`` (the same convention as
    :func:`safevla_core.sim.scene.agent_pose_from_metadata`). Wrapped to ``(-pi, pi]``.

    Raises:
        ValueError: If the angle is not finite.
    """
    a = float(yaw_deg)
    if not math.isfinite(a):
        raise ValueError(f"agent yaw is not finite: {yaw_deg!r}")
    h = math.atan2(math.sin(math.pi / 2 - math.radians(a)), math.cos(math.pi / 2 - math.radians(a)))
    return math.pi if h <= -math.pi + 1e-12 else h


def map_heading_to_thor_yaw(heading_rad: float) -> float:
    """Inverse of :func:`thor_agent_heading`: map heading (radians) -> THOR yaw in [0, 360)."""
    return (90.0 - math.degrees(heading_rad)) % 360.0


def unwrap_wrist_deg(yaw_deg: float) -> float:
    """A THOR wrist yaw (degrees, any representation) in the joint's range ``[-285, 75]``.

    The wrist spans ``[WRIST_MIN_DEG, WRIST_MAX_DEG]`` = [-260, 75]; readings are taken modulo 360
    into the 360-degree window ending at the upper bound, so that bounded steps can be computed.
    """
    return WRIST_MAX_DEG - ((WRIST_MAX_DEG - float(yaw_deg)) % 360.0)


# --------------------------------------------------------------------------- actions
def thor_action_for(action: Action | int | str, state: WorldState | None = None) -> dict[str, Any]:
    """The THOR action dict that executes one of our actions on the Stretch agent.

    Magnitudes come from :data:`safevla_core.actions.ACTION_EFFECTS` (REFERENCE.md; equal to the
    authors' ``AGENT_MOVEMENT_CONSTANT`` 0.2 m, ``AGENT_ROTATION_DEG`` 30 / 6, ``ARM_MOVE_CONSTANT``
    0.1 / 0.02 m, ``WRIST_ROTATION`` 10 deg). THOR's ``RotateAgent`` degrees are clockwise from
    above, so turning right (negative map yaw) is positive. Arm moves are absolute ``MoveArm``
    targets ``{x: 0, y: lift_m + dlift, z: arm_m + darm}`` in THOR's lift coordinate (see
    :data:`THOR_LIFT_OFFSET_M`); the wrist step is cut at the joint limits as the authors do
    (``wp``: ``-min(10, yaw - WRIST_MIN_DEG)``, ``wm``: ``min(10, WRIST_MAX_DEG - yaw)``). Our
    ``wrist_yaw_rad`` is THOR's wrist yaw in radians (same sign as ``ACTION_EFFECTS``).

    Args:
        action: Index, short name or :class:`Action`.
        state: The current state; required for lift, arm and wrist actions (absolute targets).

    Returns:
        ``{"action": name, **arguments}`` for ``controller.step(**d)``. After ``ReleaseObject``
        the backend also sends :data:`POST_RELEASE_ACTION`.

    Raises:
        ValueError: On an unknown action, or an arm/wrist action without ``state``.
    """
    a = parse_action(action)
    eff = ACTION_EFFECTS[a]
    if eff.base_forward_m:
        return {"action": "MoveAgent", "ahead": eff.base_forward_m, **NAVIGATION_ACTION_ARGS}
    if eff.base_yaw_rad:
        return {"action": "RotateAgent", "degrees": -math.degrees(eff.base_yaw_rad),
                **NAVIGATION_ACTION_ARGS}  # fmt: skip
    if eff.moves_arm and state is None:
        raise ValueError(f"action {a.name} needs the current state (absolute arm targets)")
    if eff.lift_m or eff.arm_m:
        position = {"x": 0.0, "y": state.lift_m + eff.lift_m, "z": state.arm_m + eff.arm_m}
        return {"action": "MoveArm", "position": position, **ARM_ACTION_ARGS}
    if eff.wrist_yaw_rad:
        yaw = unwrap_wrist_deg(math.degrees(state.wrist_yaw_rad))
        step = abs(math.degrees(eff.wrist_yaw_rad))
        if eff.wrist_yaw_rad < 0:
            delta = -min(step, max(0.0, yaw - WRIST_MIN_DEG))
        else:
            delta = min(step, max(0.0, WRIST_MAX_DEG - yaw))
        return {"action": "RotateWristRelative", "yaw": delta, **ARM_ACTION_ARGS}
    if eff.grasp > 0:
        return {"action": "PickupObject"}
    if eff.grasp < 0:
        return {"action": "ReleaseObject"}
    return {"action": "Pass"}  # end, sub_done


# --------------------------------------------------------------------------- collisions
def collided_names_from_error(error_message: str) -> tuple[str, ...]:
    """Names of the blockers an AI2-THOR ``errorMessage`` reports (see the module docstring).

    Args:
        error_message: ``metadata["errorMessage"]`` of a failed action.

    Returns:
        The blocker names (usually one), empty if the message reports no collision.
    """
    msg = str(error_message or "")
    if not msg.strip() or _OTHER_AGENT_RE.match(msg):
        return ()
    m = _BLOCKING_RE.match(msg)
    if m:
        return (m.group("name").strip(),)
    if "collided" in msg.lower():
        quoted = _QUOTED_RE.findall(msg)
        return (quoted[0],) if quoted else ()
    return ()


def canonical_structure_id(entity_id: str, object_type: str = "Wall") -> str:
    """A structure id that :meth:`WorldState.type_of` types correctly.

    Ids that already start with a structure word (``"wall|..."``, ``"Floor|..."``) are kept; others
    get the type as prefix (``"room|2"`` of type Floor -> ``"floor|room|2"``), so a THOR floor is
    never mistaken for a wall (the costs ignore floors, not walls).
    """
    head = re.split(r"[|_]", entity_id, maxsplit=1)[0].lower()
    if head in _STRUCTURE_PREFIXES:
        return entity_id
    return f"{object_type.lower()}|{entity_id}"


def _resolve(name: str, objects: list[Mapping[str, Any]], structure: dict[str, str]) -> str:
    ids = [str(o["objectId"]) for o in objects]
    by_name = {str(o.get("name")): str(o["objectId"]) for o in objects if o.get("name")}
    for exact in (True, False):
        key = name if exact else name.lower()

        def norm(s: str, exact: bool = exact) -> str:
            return s if exact else s.lower()

        for oid in ids:
            if norm(oid) == key:
                return oid
        for n, oid in by_name.items():
            if norm(n) == key:
                return oid
        for raw, sid in structure.items():
            if key in (norm(raw), norm(sid)):
                return sid
    return canonical_structure_id(name)


# --------------------------------------------------------------------------- metadata
def _vec(d: Any, what: str) -> dict[str, float]:
    try:
        out = {k: float(d[k]) for k in ("x", "y", "z")}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{what} needs numeric x, y, z, got {d!r}") from err
    if not all(math.isfinite(v) for v in out.values()):
        raise ValueError(f"{what} is not finite: {out}")
    return out


def _arm_state(arm: Mapping[str, Any] | None) -> tuple[float, float, float]:
    """``(lift_m, arm_m, wrist_yaw_rad)`` from ``metadata["arm"]`` (zeros without an arm)."""
    if not arm or not arm.get("joints"):
        return 0.0, 0.0, 0.0
    joints = list(arm["joints"])
    named = {j.get("name"): j for j in joints}
    lift = named.get(LIFT_JOINT, joints[0])
    wrist = named.get(WRIST_JOINT, joints[-1])
    lift_m = _vec(lift["rootRelativePosition"], "lift joint")["y"] - THOR_LIFT_OFFSET_M
    arm_m = _vec(wrist["rootRelativePosition"], "wrist joint")["z"]
    rot = wrist.get("rootRelativeRotation") or {}
    try:
        yaw_deg = float(rot["w"]) * float(rot["y"])  # angle-axis, axis ~ +y (authors' reading)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"wrist rootRelativeRotation needs w and y, got {rot!r}") from err
    if not math.isfinite(yaw_deg):
        raise ValueError(f"wrist yaw is not finite: {rot!r}")
    return lift_m, arm_m, math.radians(unwrap_wrist_deg(yaw_deg))


def world_state_from_event_metadata(
    metadata: Mapping[str, Any],
    step: int,
    prev_state: WorldState | None = None,
    *,
    structure_ids: Iterable[str] = (),
    object_types: Mapping[str, str] | None = None,
    manip_visible_ids: Iterable[str] = (),
    free_fraction_1m: float = 1.0,
) -> WorldState:
    """Convert one AI2-THOR ``event.metadata`` into a :class:`WorldState` in ``map``.

    * Objects: every ``metadata["objects"]`` entry whose ``objectType`` is not structure
      (:data:`safevla_core.world.STRUCTURE_TYPES`), in ``prev_state``'s order when given, else in
      THOR's order. ``position`` (the object's pivot, as the authors' costs read it) goes through
      :func:`~safevla_core.houses.schema.thor_to_map_position`, ``rotation`` (Euler degrees)
      through :func:`thor_euler_to_map_quat`. Types: ``object_types[id]`` if given (the imported
      house's types; THOR reports Objaverse assets with a generic type), else
      :func:`safevla_core.houses.procthor_import.canonical_object_type` of ``objectType``.
    * Structure: ``structure_ids`` (the house's walls, doors, windows) plus the structure objects
      of the metadata, made typeable by :func:`canonical_structure_id`.
    * Robot: ``agent.position`` and :func:`thor_agent_heading` of ``agent.rotation.y``; lift,
      arm and wrist from ``metadata["arm"]["joints"]`` (lift joint y minus
      :data:`THOR_LIFT_OFFSET_M`, wrist joint z, wrist yaw ``w * y`` of its angle-axis
      ``rootRelativeRotation``: the authors' ``get_relative_stretch_current_arm_state`` and
      ``get_arm_wrist_rotation``).
    * Held object: ``arm.heldObjects[0]`` if the arm reports one, else the object with
      ``isPickedUp`` (all of them in ``extras["held_object_ids"]``).
    * Visibility: ``visible`` flags (navigation camera) -> ``visible_ids``; ``last_seen_step`` is
      ``prev_state``'s, set to ``step`` for objects visible in either camera
      (``manip_visible_ids``: THOR's ``GetVisibleObjects`` on the manipulation camera).
    * Collisions: if ``lastActionSuccess`` is False, :func:`collided_names_from_error` of
      ``errorMessage`` resolved to object or structure ids (module docstring).

    Args:
        metadata: ``event.metadata`` (a dict in AI2-THOR's format).
        step: Number of actions since reset (0 after reset).
        prev_state: The previous state (object order, last-seen steps); None after reset.
        structure_ids: Ids of the house's walls, doors and windows.
        object_types: Optional ``objectId -> type`` overrides.
        manip_visible_ids: Objects visible in the manipulation camera.
        free_fraction_1m: Corner-test free fraction computed by the caller
            (:func:`safevla_core.sim.free_space.free_fraction`).

    Returns:
        The world state.

    Raises:
        KeyError: On a missing top-level key (``objects``, ``agent``, ...).
        ValueError: On non-finite numbers, an object of ``prev_state`` missing from the metadata,
            a held object that is not an object, or a bad ``step``.
    """
    from safevla_core.houses.procthor_import import canonical_object_type

    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    for key in ("objects", "agent", "lastActionSuccess"):
        if key not in metadata:
            raise KeyError(f"event metadata has no {key!r}")
    objects = []
    structure: dict[str, str] = {sid: sid for sid in structure_ids}
    for o in metadata["objects"]:
        if "objectId" not in o or "objectType" not in o:
            raise KeyError(f"metadata object without objectId/objectType: {dict(o)!r}"[:200])
        if o["objectType"] in STRUCTURE_TYPES:
            structure[str(o["objectId"])] = canonical_structure_id(str(o["objectId"]),
                                                                   str(o["objectType"]))
        else:
            objects.append(o)
    by_id = {str(o["objectId"]): o for o in objects}
    if prev_state is not None:
        missing = [i for i in prev_state.object_ids if i not in by_id]
        if missing:
            raise ValueError(f"objects of the previous state are missing from the metadata: "
                             f"{missing}")
        ids = prev_state.object_ids
    else:
        ids = tuple(by_id)
    types = tuple((object_types or {}).get(i) or canonical_object_type(str(by_id[i]["objectType"]))
                  for i in ids)  # fmt: skip
    pos = np.array([thor_to_map_position(_vec(by_id[i]["position"], f"{i} position"))
                    for i in ids], dtype=np.float64).reshape(-1, 3)  # fmt: skip
    quat = np.array([thor_euler_to_map_quat(by_id[i]["rotation"]) for i in ids],
                    dtype=np.float64).reshape(-1, 4)  # fmt: skip

    agent = metadata["agent"]
    apos = thor_to_map_position(_vec(agent["position"], "agent position"))
    heading = thor_agent_heading(float(_vec(agent["rotation"], "agent rotation")["y"]))
    arm = metadata.get("arm")
    lift_m, arm_m, wrist_rad = _arm_state(arm)

    held = [str(h) for h in ((arm or {}).get("heldObjects") or [])]
    if not held:
        held = [i for i in ids if by_id[i].get("isPickedUp")]
    for h in held:
        if h not in by_id:
            raise ValueError(f"held object {h!r} is not an object of the metadata")

    visible = frozenset(i for i in ids if by_id[i].get("visible"))
    seen_now = visible | frozenset(manip_visible_ids)
    if prev_state is not None:
        last_seen = np.array(prev_state.last_seen_step, dtype=np.int64)
    else:
        last_seen = np.full(len(ids), -1, dtype=np.int64)
    for k, i in enumerate(ids):
        if i in seen_now:
            last_seen[k] = step

    success = bool(metadata["lastActionSuccess"])
    error = str(metadata.get("errorMessage") or "")
    collided: set[str] = set()
    if not success:
        for name in collided_names_from_error(error):
            cid = _resolve(name, objects, structure)
            if cid not in by_id:
                structure.setdefault(cid, cid)
            collided.add(cid)
    return WorldState(
        step=step,
        object_ids=tuple(ids),
        object_types=types,
        object_positions=pos,
        object_quats=quat,
        robot_pose=np.array([apos[0], apos[1], heading]),
        lift_m=lift_m,
        arm_m=arm_m,
        wrist_yaw_rad=wrist_rad,
        held_object_id=held[0] if held else None,
        collided_ids=frozenset(collided),
        structure_ids=frozenset(structure.values()),
        visible_ids=visible,
        last_seen_step=last_seen,
        free_fraction_1m=float(free_fraction_1m),
        last_action_success=success,
        extras={"lastAction": str(metadata.get("lastAction", "")), "errorMessage": error,
                "held_object_ids": tuple(held)},  # fmt: skip
    )


def house_structure_ids(house: Mapping[str, Any]) -> frozenset[str]:
    """Ids of a house's walls, doors and windows, typeable by :meth:`WorldState.type_of`."""
    out = set()
    for kind, typ in (("walls", "Wall"), ("doors", "Door"), ("windows", "Window")):
        for item in house.get(kind) or []:
            out.add(canonical_structure_id(str(item["id"]), typ))
    return frozenset(out)


# --------------------------------------------------------------------------- backend
class ThorBackend:
    """:class:`~safevla_core.sim.backend.SimBackend` on AI2-THOR's Stretch agent.

    Needs ``pip install ai2thor`` and a local Unity build (:attr:`ThorConfig.build_path`); both
    are checked at the first :meth:`reset`. Houses may be in ProcTHOR's form or ours: they are
    imported (:func:`safevla_core.houses.procthor_import.import_procthor_house`) for types and
    sizes and sent to THOR in ProcTHOR's form.

    Args:
        cfg: Controller settings.
        cost_cfg: Corner-test parameters (``corner_samples``, ``corner_radius_m``).
    """

    def __init__(
        self,
        cfg: ThorConfig | None = None,
        cost_cfg: CostConfig = CostConfig(),  # noqa: B008 - frozen, immutable default
    ) -> None:
        """Store the settings; the controller starts at the first :meth:`reset`."""
        self.cfg = cfg if cfg is not None else ThorConfig()
        self.cost_cfg = cost_cfg
        self.controller: Any = None
        self._state: WorldState | None = None
        self._reachable = np.zeros((0, 2))
        self._types: dict[str, str] = {}
        self._structure: frozenset[str] = frozenset()

    def _start(self, scene: Mapping[str, Any]) -> Any:
        if self.controller is not None:
            return self.controller.reset(scene=scene)
        if not self.cfg.build_path:
            raise RuntimeError(
                f"AI2-THOR needs a local Unity build: set {THOR_BUILD_ENV}=/path/to/thor-"
                "<platform>-<commit> (the executable); it is downloaded from AI2-THOR's server, "
                "no package registry ships it (ENVIRONMENT.md)"
            )
        if not os.path.exists(self.cfg.build_path):
            raise FileNotFoundError(f"{THOR_BUILD_ENV} points to a missing file: "
                                    f"{self.cfg.build_path}")
        try:
            import ai2thor.controller
            import ai2thor.platform
        except ImportError as err:
            raise ImportError("the AI2-THOR backend needs `pip install ai2thor` "
                              "(the `thor` extra)") from err
        platform = getattr(ai2thor.platform, self.cfg.platform)
        self.controller = ai2thor.controller.Controller(
            local_executable_path=self.cfg.build_path,
            platform=platform,
            agentMode="stretch",
            width=self.cfg.render_width,
            height=self.cfg.height,
            fieldOfView=self.cfg.fov_deg,
            gridSize=self.cfg.grid_size_m,
            visibilityDistance=self.cfg.visibility_distance_m,
            visibilityScheme="Distance",
            snapToGrid=False,
            cameraNearPlane=0.01,
            server_timeout=self.cfg.server_timeout_s,
            scene=scene,
        )
        return self.controller.last_event

    def _calibrate(self) -> None:
        """Camera pitches, FOVs and gripper as the authors' ``calibrate_agent`` (no noise)."""
        c = self.controller
        c.step(action="RotateCameraMount", degrees=self.cfg.nav_pitch_deg, secondary=False)
        c.step(action="RotateCameraMount", degrees=self.cfg.manip_pitch_deg, secondary=True)
        for cam in ("FirstPersonCharacter", "SecondaryCamera"):
            c.step(action="ChangeFOV", fieldOfView=self.cfg.fov_deg, camera=cam)
        c.step(action="SetGripperOpenness", openness=30)

    def _manip_visible(self) -> list[str]:
        event = self.controller.step(action="GetVisibleObjects", thirdPartyCameraIndex=0,
                                     maxDistance=self.cfg.visibility_distance_m)  # fmt: skip
        return list(event.metadata.get("actionReturn") or [])

    def _convert(self, metadata: Mapping[str, Any], step: int) -> WorldState:
        from safevla_core.sim.free_space import free_fraction

        manip = self._manip_visible()
        agent = thor_to_map_position(_vec(metadata["agent"]["position"], "agent position"))
        frac = free_fraction(agent[:2], self._reachable, k=self.cost_cfg.corner_samples,
                             radius_m=self.cost_cfg.corner_radius_m)  # fmt: skip
        self._state = world_state_from_event_metadata(
            metadata, step, self._state if step > 0 else None, structure_ids=self._structure,
            object_types=self._types, manip_visible_ids=manip, free_fraction_1m=frac,
        )
        return self._state

    def reset(
        self,
        house: Mapping[str, Any],
        robot_pose: tuple[float, float, float] | None = None,
        seed: int | None = None,
    ) -> WorldState:
        """Load a house into THOR and place the robot (see :meth:`SimBackend.reset`).

        The pose is ``robot_pose`` if given, else ``metadata.agent`` of the house (THOR's
        default), else a reachable position and heading drawn from ``seed``.

        Raises:
            RuntimeError: Without a THOR build; ImportError without ai2thor.
            ValueError: On a malformed house or a failed teleport.
        """
        from safevla_core.houses.procthor_import import (
            export_procthor_house,
            import_procthor_house,
            iter_house_objects,
        )

        ours = import_procthor_house(house)
        scene, _ = export_procthor_house(ours)
        # THOR's CreateHouse places the agent from metadata.agent; the authors add this default
        # when a house has none (stretch_controller.py ``reset``), then we teleport below.
        scene.setdefault("metadata", {}).setdefault("agent", dict(DEFAULT_AGENT_METADATA))
        self._types = {str(o["id"]): str(o["objectType"])
                       for o in iter_house_objects(ours["objects"])}  # fmt: skip
        self._structure = house_structure_ids(ours)
        self._state = None
        self._start(scene)
        self._calibrate()
        event = self.controller.step(action="GetReachablePositions", gridSize=self.cfg.grid_size_m)
        points = event.metadata.get("actionReturn") or []
        self._reachable = np.array([thor_to_map_position(p)[:2] for p in points],
                                   dtype=np.float64).reshape(-1, 2)  # fmt: skip
        pose = robot_pose
        if pose is None and not (ours.get("metadata") or {}).get("agent") and len(self._reachable):
            rng = np.random.default_rng(seed)
            x, y = self._reachable[rng.integers(len(self._reachable))]
            pose = (float(x), float(y), float(rng.uniform(-math.pi, math.pi)))
        if pose is not None:
            x, y, yaw = (float(v) for v in pose)
            if not all(math.isfinite(v) for v in (x, y, yaw)):
                raise ValueError(f"robot_pose must be finite, got {pose!r}")
            y_up = float(self.controller.last_event.metadata["agent"]["position"]["y"])
            event = self.controller.step(
                action="Teleport", position=map_to_thor_position((x, y, y_up)),
                rotation={"x": 0.0, "y": map_heading_to_thor_yaw(yaw), "z": 0.0},
            )
            if not event.metadata["lastActionSuccess"]:
                raise ValueError(f"THOR could not place the robot at {pose}: "
                                 f"{event.metadata.get('errorMessage')}")
        meta = dict(self.controller.last_event.metadata)
        meta["lastActionSuccess"], meta["errorMessage"] = True, ""
        return self._convert(meta, 0)

    def step(self, action: Action | int | str) -> WorldState:
        """Execute one action (see :func:`thor_action_for`) and return the new state.

        Raises:
            RuntimeError: Before :meth:`reset`.
            ValueError: On an unknown action.
        """
        if self._state is None or self.controller is None:
            raise RuntimeError("call reset() before step()")
        a = parse_action(action)
        event = self.controller.step(**thor_action_for(a, self._state))
        if a == Action.DROP:
            self.controller.step(**POST_RELEASE_ACTION)
            # The action's own success and error message are the ones to report.
            meta = dict(self.controller.last_event.metadata)
            meta["lastActionSuccess"] = event.metadata["lastActionSuccess"]
            meta["errorMessage"] = event.metadata.get("errorMessage", "")
        else:
            meta = event.metadata
        return self._convert(meta, self._state.step + 1)

    def render(self) -> dict[str, np.ndarray]:
        """Both cameras, cropped to ``cfg.width x cfg.height`` RGB uint8.

        Raises:
            RuntimeError: Before :meth:`reset`.
        """
        if self.controller is None:
            raise RuntimeError("call reset() before render()")
        ev = self.controller.last_event
        nav = crop_frame(np.asarray(ev.frame))
        manip = crop_frame(np.asarray(ev.third_party_camera_frames[0])[..., :3])
        return {NAV_CAMERA: np.ascontiguousarray(nav, dtype=np.uint8),
                MANIP_CAMERA: np.ascontiguousarray(manip, dtype=np.uint8)}  # fmt: skip

    def world_state(self) -> WorldState:
        """The state returned by the last reset/step.

        Raises:
            RuntimeError: Before :meth:`reset`.
        """
        if self._state is None:
            raise RuntimeError("call reset() before world_state()")
        return self._state

    def reachable_positions(self) -> np.ndarray:
        """``(M, 2)`` reachable base positions (THOR ``GetReachablePositions``) in ``map``."""
        return self._reachable.copy()

    def close(self) -> None:
        """Stop the Unity process."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
