"""AI2-THOR backend: the SimBackend protocol on AI2-THOR's Stretch agent, as SafeVLA runs it.

Sources, all read (no live run is possible on the project's machines, ENVIRONMENT.md): the
authors' code ``PKU-Alignment/SafeVLA`` (commit 6464cbd) -- ``environment/stretch_controller.py``
(``agent_step``, ``calibrate_agent``, ``reset``, ``get_visible_objects``,
``get_arm_wrist_rotation``), ``utils/constants/stretch_initialization_utils.py`` and
``tasks/abstract_task.py`` (the cost code) --, ai2thor 5.0.0's Python controller and AI2-THOR's
Unity sources (``allenai/ai2thor`` ``unity/Assets/Scripts``). Start-up lives in
:mod:`safevla_core.sim.thor_startup`, metadata checks in :mod:`safevla_core.sim.thor_metadata`.

What does not need Unity is pure and tested on event metadata in AI2-THOR's format:

* :func:`thor_action_for`: our 20 actions -> THOR action dicts as the authors' ``agent_step``
  sends them. Navigation by default with the Quick actions (their ``STRETCH_ENV_ARGS`` sets
  ``use_quick_navi_action=True``): ``MoveAheadQuick`` / ``MoveBackQuick`` with
  ``moveMagnitude=0.2`` and ``RotateRightQuick`` with ``degrees=+-30 / +-6`` (THOR degrees are
  clockwise, right is positive). With ``quick=False``: ``MoveAgent(ahead=+-0.2,
  returnToStart=False, speed=1)`` and ``RotateAgent(degrees=...)`` with no extra arguments
  (the authors add ``ADDITIONAL_NAVIGATION_ARGS`` to ``MoveAgent`` only, so a rotation keeps
  Unity's default ``returnToStart``). Arm: ``MoveArm(position={x, y: lift, z: extension})``,
  absolute targets of the current arm state +- 0.1 / 0.02 m, with ``returnToStart=True,
  speed=1``; wrist: ``RotateWristRelative(yaw=...)`` with the authors' bound arithmetic
  (:func:`authors_wrist_step_deg`); ``PickupObject``; ``ReleaseObject`` (then
  ``AdvancePhysicsStep(simSeconds=2)``); ``Pass`` for ``end`` / ``sub_done``.
* :func:`world_state_from_event_metadata`: ``event.metadata`` -> :class:`WorldState` in ``map``
  (:mod:`safevla_core.houses.schema` conversions), so that
  :func:`safevla_core.costs.compute_costs` gives the MuJoCo backend's costs for the same event.

Collisions: THOR's metadata has no contact list. A blocked action fails with an
``errorMessage`` naming the blocker (``allenai/ai2thor`` ``unity/Assets/Scripts``):

* ``"<name> is blocking Agent <n> from moving by <offset>."`` (``BaseFPSAgentController.cs``,
  base sweep test),
* ``"<name> is blocking the Agent from moving by <offset> with <held>"`` (same file, held object),
* ``"Collided with static/kinematic sim object: '<name>', could not reach target..."`` and
  ``"Collided with static structure in scene: '<name>', ..."`` (``ArmController.cs`` /
  ``FpinMovableContinuous.cs`` ``GetHaltMessage``, arm and continuous base moves).

Only static objects, structure and -- with a mass threshold -- moveable objects heavier than it
halt the Stretch (``CollisionListener.cs`` ``ColliderToStaticCollision``); lighter moveable
objects are pushed and show up as moved objects (object cost), not as collisions. The authors'
cost code reads ``"collided" in errorMessage.lower()`` and the first single-quoted name
(``tasks/abstract_task.py`` ``judge_cost_collided``, ``is_blind_spot_unsafe``); we also read the
"is blocking" form and the top-level ``collidedObjects``. Names resolve to ids by object id, then
the objects' ``name`` field, then structure ids, each exactly and then case-insensitively (the
authors lowercase). A name that resolves to nothing is static geometry and becomes a structure
id (ours). Another agent blocking (``"Agent <k> is blocking ..."``) is not a collision with the
house.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, SupportsFloat

import numpy as np

from safevla_core.actions import ACTION_EFFECTS, Action, parse_action
from safevla_core.config import CostConfig
from safevla_core.houses.schema import map_to_thor_position, thor_to_map_position
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA
from safevla_core.sim.thor_startup import (
    THOR_BUILD_ENV,
    HostFacts,
    ThorStartupError,
    controller_kwargs,
    probe_host,
    start_controller,
)
from safevla_core.world import STRUCTURE_TYPES, WorldState

__all__ = ["THOR_BUILD_ENV", "ThorStartupError"]  # re-exported for callers of this module

#: Extra arguments of arm/wrist actions (authors' ``ADDITIONAL_ARM_ARGS``).
ARM_ACTION_ARGS: dict[str, Any] = {"returnToStart": True, "speed": 1}
#: Extra arguments of ``MoveAgent`` only (authors' ``ADDITIONAL_NAVIGATION_ARGS``).
NAVIGATION_ACTION_ARGS: dict[str, Any] = {"returnToStart": False, "speed": 1}
#: Sent after ``ReleaseObject`` so the object falls (authors' ``agent_step``).
POST_RELEASE_ACTION: dict[str, Any] = {"action": "AdvancePhysicsStep", "simSeconds": 2}
#: Sent after calibration: hide the magnet sphere of the gripper (authors' ``reset``).
HIDE_MAGNET_ACTION: dict[str, Any] = {"action": "ToggleMagnetVisibility", "visible": False}
#: The lift joint's root-relative height at the lift's zero, metres: the authors read the lift as
#: ``joints[0].rootRelativePosition.y - 0.16297650337219238`` and command ``MoveArm`` in that
#: coordinate (``get_relative_stretch_current_arm_state``).
THOR_LIFT_OFFSET_M = 0.16297650337219238
#: Wrist yaw limits, THOR degrees (authors' ``STRETCH_WRIST_BOUND_1`` / ``_2``): the wrist turns
#: from -260 deg (= 100 deg) up to 75 deg.
WRIST_MAX_DEG = 75.0
WRIST_MIN_DEG = -260.0
#: Camera horizon written into ``metadata.agent`` before every reset (authors' ``HORIZON = 0``;
#: the pitch is then set by ``RotateCameraMount``).
AGENT_HORIZON_DEG = 0.0
#: ``metadata.agent`` for houses without one (authors' ``StretchController.reset``; the horizon
#: is then overwritten with :data:`AGENT_HORIZON_DEG`).
DEFAULT_AGENT_METADATA: dict[str, Any] = {
    "horizon": 30,
    "position": {"x": 0.0, "y": 0.95, "z": 0.0},
    "rotation": {"x": 0.0, "y": 270.0, "z": 0.0},
    "standing": True,
}
#: Nav meshes the authors add to every house (``reset``: ``AGENT_RADIUS_LIST`` and
#: ``base_agent_navmesh``).
NAV_MESHES: tuple[dict[str, float], ...] = tuple(
    {
        "agentHeight": 1.8,
        "agentSlope": 10,
        "agentClimb": 0.5,
        "voxelSize": 0.1666667,
        "id": i,
        "agentRadius": r,
    }
    for i, r in ((0, 0.5), (1, 0.4), (2, 0.3), (3, 0.2))
)
#: Calibration: camera pitches (degrees down) and vertical FOV (degrees) of ``calibrate_agent``,
#: and their noise grids ``np.arange(-2, 2, 0.2)`` (pitch) and ``np.arange(-1, 1, 0.1)`` (FOV).
NAV_PITCH_DEG = 27.0
MANIP_PITCH_DEG = 33.0
CAMERA_FOV_DEG = 59.0
PITCH_NOISE_GRID_DEG = np.arange(-2, 2, 0.2)
FOV_NOISE_GRID_DEG = np.arange(-1, 1, 0.1)
#: Gripper openness set at calibration (authors' ``SetGripperOpenness(openness=30)``).
GRIPPER_OPENNESS = 30
#: ``maxDistance`` of the navigation camera's ``GetVisibleObjects`` whose result is the "seen"
#: list of the blind-spot cost (authors' ``get_seen_objects``: ``maximum_distance=4``), metres.
SEEN_MAX_DISTANCE_M = 4.0
#: Joint names of AI2-THOR's Stretch arm metadata (``Stretch_Robot_Arm_Controller.cs``).
LIFT_JOINT = "stretch_robot_lift_jnt"
WRIST_JOINT = "stretch_robot_wrist_2_jnt"
#: Cameras render 396 px wide and 6/396 of the width is cut from each side, giving 384 px
#: (authors' ``INTEL_CAMERA_WIDTH`` 396, ``cutoff = round(w * 6 / 396)``).
CROP_FRACTION = 6.0 / 396.0
#: THOR object types that are structure: ours (:data:`safevla_core.world.STRUCTURE_TYPES`) plus
#: ``Doorframe`` (a door's frame in ProcTHOR houses, an entry of ProcTHOR's asset database;
#: the authors' ``static_object_list`` has ``Door``). A Doorframe is typed as a door.
THOR_STRUCTURE_TYPES: frozenset[str] = frozenset(STRUCTURE_TYPES) | {"Doorframe"}
_STRUCTURE_ALIASES = {"Doorframe": "Door"}
#: Structure-id prefixes that :meth:`WorldState.type_of` recognises (``world.STRUCTURE_TYPES``).
_STRUCTURE_PREFIXES = tuple(t.lower() for t in STRUCTURE_TYPES)

_BLOCKING_RE = re.compile(r"^\s*(?P<name>.+?) is blocking (?:Agent \d+|the Agent) from moving")
_OTHER_AGENT_RE = re.compile(r"^\s*Agent \d+ is blocking Agent \d+")
_QUOTED_RE = re.compile(r"'([^']+)'")


@dataclass(frozen=True)
class ThorConfig:
    """Settings of the AI2-THOR controller (Stretch agent); defaults are the authors'.

    Attributes:
        build_path: Local Unity executable for a desktop with an X display; default from
            ``SAFEVLA_THOR_BUILD``. None (headless GPU host): the authors' build by commit id with
            CloudRendering (:mod:`safevla_core.sim.thor_startup`).
        gpu_device: CUDA device index for CloudRendering; None lets ai2thor choose.
        mass_threshold_kg: Moveable objects heavier than this halt the robot instead of being
            pushed (authors: 1 kg; SPOC: 10 kg; None: all pushed).
        quick_navigation: Quick navigation actions (authors: True, ``use_quick_navi_action``).
        calibration_noise: Add the authors' random offsets to camera pitches and FOVs at every
            reset (``calibrate_agent``; drawn from the reset's seed).
        width: Output image width, pixels (paper: 384; rendered 396 wide and cropped).
        height: Image height, pixels (paper: 224).
        fov_deg: Vertical field of view of both cameras, degrees (authors: 59).
        grid_size_m: Reachable-position grid, metres (authors: 0.2 * 0.75).
        visibility_distance_m: THOR's ``visibilityDistance`` (the metadata ``visible`` flag),
            metres (authors' ``MAXIMUM_DISTANCE_ARM_FROM_AGENT_CENTER``).
        seen_max_distance_m: ``maxDistance`` of the navigation camera's ``GetVisibleObjects``
            giving the objects "seen" for the blind-spot cost, metres (authors: 4).
        server_timeout_s: Controller timeout, seconds (authors: 1200 for CloudRendering).
    """

    build_path: str | None = field(default_factory=lambda: os.environ.get(THOR_BUILD_ENV) or None)
    gpu_device: int | None = None
    mass_threshold_kg: float | None = 1.0
    quick_navigation: bool = True
    calibration_noise: bool = True
    width: int = 384
    height: int = 224
    fov_deg: float = CAMERA_FOV_DEG
    grid_size_m: float = 0.2 * 0.75
    visibility_distance_m: float = 0.8673349051766235
    seen_max_distance_m: float = SEEN_MAX_DISTANCE_M
    server_timeout_s: float = 1200.0

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On non-positive sizes, distances or mass threshold, or a field of view
                outside (0, 180).
        """
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"ThorConfig.{name} must be a positive int, got {v!r}")
        if not (0.0 < self.fov_deg < 180.0):
            raise ValueError(f"ThorConfig.fov_deg must be in (0, 180), got {self.fov_deg}")
        for name in (
            "grid_size_m",
            "visibility_distance_m",
            "seen_max_distance_m",
            "server_timeout_s",
        ):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"ThorConfig.{name} must be positive, got {getattr(self, name)}")
        m = self.mass_threshold_kg
        if m is not None and not (math.isfinite(m) and m > 0):
            raise ValueError(f"ThorConfig.mass_threshold_kg must be positive or None, got {m}")

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
    return frame[:, cut : frame.shape[1] - cut] if cut else frame


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
def wrist_reading_deg(rotation: Mapping[str, Any]) -> float:
    """The authors' wrist reading, degrees: ``fmod(w * y, 360)`` of the angle-axis rotation.

    ``rotation`` is the wrist joint's ``rootRelativeRotation`` (``get_arm_wrist_rotation``; ``w``
    is the angle in degrees, ``y`` the axis' y component). The result keeps the sign of
    ``w * y``, in (-360, 360) degrees.

    Raises:
        ValueError: On missing or non-finite ``w`` / ``y``.
    """
    try:
        value = math.fmod(float(rotation["w"]) * float(rotation["y"]), 360.0)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"wrist rootRelativeRotation needs w and y, got {rotation!r}") from err
    if not math.isfinite(value):
        raise ValueError(f"wrist yaw is not finite: {rotation!r}")
    return value


def authors_wrist_step_deg(action: Action, reading_deg: float) -> float:
    """``RotateWristRelative`` yaw for ``wp`` / ``wm`` with the authors' bound arithmetic.

    ``agent_step``: wrist_open (our ``wp``) sends ``-min(10, |reading - (BOUND_2 + 360)|)`` and
    wrist_close (``wm``) ``min(10, |BOUND_1 - reading|)``, BOUND_1 = 75, BOUND_2 = -260 degrees,
    ``reading`` from :func:`wrist_reading_deg`. The arithmetic assumes the reading in [0, 360):
    a wrist at -255 deg read as 105 gets -5 (to the -260 bound), read as -255 it gets -10 and
    Unity's joint limit decides. We send what they send.

    Args:
        action: ``Action.WRIST_POS`` or ``Action.WRIST_NEG``.
        reading_deg: The wrist reading, degrees.

    Returns:
        The relative yaw, degrees.

    Raises:
        ValueError: For another action.
    """
    step = math.degrees(abs(ACTION_EFFECTS[action].wrist_yaw_rad))
    if action == Action.WRIST_POS:
        return -min(step, abs(reading_deg - (WRIST_MIN_DEG + 360.0)))
    if action == Action.WRIST_NEG:
        return min(step, abs(WRIST_MAX_DEG - reading_deg))
    raise ValueError(f"{action.name} is not a wrist action")


def thor_action_for(
    action: Action | int | str, state: WorldState | None = None, *, quick: bool = True
) -> dict[str, Any]:
    """The THOR action dict that executes one of our actions on the Stretch agent.

    Magnitudes from :data:`safevla_core.actions.ACTION_EFFECTS` (REFERENCE.md; equal to the
    authors' ``AGENT_MOVEMENT_CONSTANT`` 0.2 m, ``AGENT_ROTATION_DEG`` 30 (small: 30 / 5),
    ``ARM_MOVE_CONSTANT`` 0.1 m (small: 0.1 / 5), ``WRIST_ROTATION`` 10 deg); names and arguments
    as the authors' ``agent_step`` (module docstring). THOR degrees are clockwise from above, so
    turning right (negative map yaw) is positive. ``MoveArm`` targets are absolute:
    ``{x: arm_x, y: lift_m + dlift, z: arm_m + darm}`` in THOR's lift coordinate (see
    :data:`THOR_LIFT_OFFSET_M`), ``arm_x`` the wrist joint's x (``extras["arm_x_m"]``, ~0).
    The wrist step uses ``extras["wrist_reading_deg"]`` (the authors' reading) when present, else
    ``degrees(state.wrist_yaw_rad)``.

    Args:
        action: Index, short name or :class:`Action`.
        state: The current state; required for lift, arm and wrist actions (absolute targets).
        quick: Quick navigation actions (the authors' default) instead of MoveAgent/RotateAgent.

    Returns:
        ``{"action": name, **arguments}`` for ``controller.step(**d)``. After ``ReleaseObject``
        the backend also sends :data:`POST_RELEASE_ACTION`.

    Raises:
        ValueError: On an unknown action, or an arm/wrist action without ``state``.
    """
    a = parse_action(action)
    eff = ACTION_EFFECTS[a]
    if eff.base_forward_m:
        if quick:
            name = "MoveAheadQuick" if eff.base_forward_m > 0 else "MoveBackQuick"
            return {"action": name, "moveMagnitude": abs(eff.base_forward_m)}
        return {"action": "MoveAgent", "ahead": eff.base_forward_m, **NAVIGATION_ACTION_ARGS}
    if eff.base_yaw_rad:
        degrees = round(-math.degrees(eff.base_yaw_rad), 9)  # 30.0, not 29.999999999999996
        return {"action": "RotateRightQuick" if quick else "RotateAgent", "degrees": degrees}
    if eff.moves_arm:
        if state is None:
            raise ValueError(f"action {a.name} needs the current state (absolute arm targets)")
        if eff.lift_m or eff.arm_m:
            x = _extra_float(state, "arm_x_m", 0.0)
            position = {"x": x, "y": state.lift_m + eff.lift_m, "z": state.arm_m + eff.arm_m}
            return {"action": "MoveArm", "position": position, **ARM_ACTION_ARGS}
        reading = _extra_float(state, "wrist_reading_deg", math.degrees(state.wrist_yaw_rad))
        yaw = authors_wrist_step_deg(a, reading)
        return {"action": "RotateWristRelative", "yaw": yaw, **ARM_ACTION_ARGS}
    if eff.grasp > 0:
        return {"action": "PickupObject"}
    if eff.grasp < 0:
        return {"action": "ReleaseObject"}
    return {"action": "Pass"}  # end, sub_done


def _extra_float(state: WorldState, key: str, default: float) -> float:
    """``state.extras[key]`` as a float (THOR metadata the backend stored), or ``default``.

    Raises:
        ValueError: If the stored value is not a number.
    """
    value = state.extras.get(key)
    if value is None:
        return default
    if not isinstance(value, SupportsFloat):
        raise ValueError(f"state.extras[{key!r}] is not a number: {value!r}")
    return float(value)


def calibration_actions(
    noise: bool = True, rng: np.random.Generator | None = None, fov_deg: float = CAMERA_FOV_DEG
) -> list[dict[str, Any]]:
    """The actions of the authors' ``calibrate_agent`` plus hiding the magnet (``reset``).

    Camera pitches 27 deg (navigation) and 33 deg (manipulation), both FOVs ``fov_deg`` (59),
    gripper openness 30; with ``noise`` each pitch gets an offset drawn from
    :data:`PITCH_NOISE_GRID_DEG` and each FOV one from :data:`FOV_NOISE_GRID_DEG` (the authors
    draw with Python's ``random.choice``; we draw from ``rng``). Then
    :data:`HIDE_MAGNET_ACTION`.

    Returns:
        The action dicts in the authors' order.
    """
    rng = rng if rng is not None else np.random.default_rng()

    def pick(grid: np.ndarray) -> float:
        return float(grid[rng.integers(len(grid))]) if noise else 0.0

    return [
        {
            "action": "RotateCameraMount",
            "degrees": NAV_PITCH_DEG + pick(PITCH_NOISE_GRID_DEG),
            "secondary": False,
        },
        {
            "action": "RotateCameraMount",
            "degrees": MANIP_PITCH_DEG + pick(PITCH_NOISE_GRID_DEG),
            "secondary": True,
        },
        {
            "action": "ChangeFOV",
            "fieldOfView": fov_deg + pick(FOV_NOISE_GRID_DEG),
            "camera": "FirstPersonCharacter",
        },
        {
            "action": "ChangeFOV",
            "fieldOfView": fov_deg + pick(FOV_NOISE_GRID_DEG),
            "camera": "SecondaryCamera",
        },
        {"action": "SetGripperOpenness", "openness": GRIPPER_OPENNESS},
        dict(HIDE_MAGNET_ACTION),
    ]


def scene_for_thor(house_procthor: Mapping[str, Any]) -> dict[str, Any]:
    """A ProcTHOR-form house prepared as the authors' ``reset`` prepares it.

    Adds :data:`NAV_MESHES` and :data:`DEFAULT_AGENT_METADATA` when the house has no agent, and
    sets the agent's ``horizon`` to :data:`AGENT_HORIZON_DEG`. Returns a new dict.
    """
    import copy

    scene = copy.deepcopy(dict(house_procthor))
    meta = scene.setdefault("metadata", {})
    meta["navMeshes"] = [dict(m) for m in NAV_MESHES]
    meta.setdefault("agent", copy.deepcopy(DEFAULT_AGENT_METADATA))
    meta["agent"]["horizon"] = AGENT_HORIZON_DEG
    return scene


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


def _arm_state(arm: Mapping[str, Any] | None) -> tuple[float, float, float, float, float | None]:
    """``(lift_m, arm_m, wrist_yaw_rad, arm_x_m, wrist_reading_deg)`` from ``metadata["arm"]``.

    Zeros (and no reading) without an arm.
    """
    if not arm or not arm.get("joints"):
        return 0.0, 0.0, 0.0, 0.0, None
    joints = list(arm["joints"])
    named = {j.get("name"): j for j in joints}
    lift = named.get(LIFT_JOINT, joints[0])
    wrist = named.get(WRIST_JOINT, joints[-1])
    lift_m = _vec(lift["rootRelativePosition"], "lift joint")["y"] - THOR_LIFT_OFFSET_M
    wrist_pos = _vec(wrist["rootRelativePosition"], "wrist joint")
    reading = wrist_reading_deg(wrist.get("rootRelativeRotation") or {})
    wrist_rad = math.radians(unwrap_wrist_deg(reading))
    return lift_m, wrist_pos["z"], wrist_rad, wrist_pos["x"], reading


def object_centre(obj: Mapping[str, Any]) -> dict[str, float]:
    """An object's bounding-box centre in THOR coordinates (metres).

    ``position`` in THOR's metadata is the object's pivot (its transform's origin), which for
    most assets is not the middle of the object; ``axisAlignedBoundingBox.center`` is
    (``AgentManager.cs`` ``ObjectMetadata``). The MuJoCo backend reports body centres, so we use
    the box centre and fall back to the pivot when the box is missing.

    Raises:
        ValueError: On non-numeric or non-finite coordinates.
    """
    box = obj.get("axisAlignedBoundingBox")
    if isinstance(box, Mapping) and isinstance(box.get("center"), Mapping):
        return _vec(box["center"], f"{obj.get('objectId')} axisAlignedBoundingBox.center")
    return _vec(obj["position"], f"{obj.get('objectId')} position")


def world_state_from_event_metadata(
    metadata: Mapping[str, Any],
    step: int,
    prev_state: WorldState | None = None,
    *,
    structure_ids: Iterable[str] = (),
    object_types: Mapping[str, str] | None = None,
    nav_visible_ids: Iterable[str] | None = None,
    free_fraction_1m: float = 1.0,
) -> WorldState:
    """Convert one AI2-THOR ``event.metadata`` into a :class:`WorldState` in ``map``.

    * Objects: every ``metadata["objects"]`` entry whose ``objectType`` is not structure
      (:data:`THOR_STRUCTURE_TYPES`), in ``prev_state``'s order when given, else in THOR's
      order. Positions: :func:`object_centre` through
      :func:`~safevla_core.houses.schema.thor_to_map_position` (the pivots are kept in
      ``extras["pivots"]``); ``rotation`` (Euler degrees) through :func:`thor_euler_to_map_quat`.
      Types: ``object_types[id]`` if given (the imported house's types; THOR reports Objaverse
      assets with a generic type), else
      :func:`safevla_core.houses.procthor_import.canonical_object_type` of ``objectType``.
    * Structure: ``structure_ids`` (the house's walls, doors, windows) plus the structure objects
      of the metadata (``Doorframe`` typed as a door), made typeable by
      :func:`canonical_structure_id`.
    * Robot: ``agent.position`` and :func:`thor_agent_heading` of ``agent.rotation.y``; lift,
      arm and wrist from ``metadata["arm"]["joints"]`` (lift joint y minus
      :data:`THOR_LIFT_OFFSET_M`, wrist joint z, wrist yaw :func:`wrist_reading_deg`, the
      authors' ``get_relative_stretch_current_arm_state`` and ``get_arm_wrist_rotation``).
    * Held object: ``arm.heldObjects[0]`` if the arm reports one, else the object with
      ``isPickedUp`` (all of them in ``extras["held_object_ids"]``).
    * Visibility, as the authors' cost code ``get_seen_objects``: the "seen" objects are the
      navigation camera's ``GetVisibleObjects(maxDistance=4)`` (``nav_visible_ids``) plus objects
      whose metadata ``visible`` flag is set (THOR sets it within ``visibilityDistance``,
      0.867 m). They form ``visible_ids``; ``last_seen_step`` is ``prev_state``'s, set to ``step``
      for them. ``nav_visible_ids`` None: the ``visible`` flags alone.
    * Collisions: the names in ``errorMessage`` (:func:`collided_names_from_error`) when the
      action failed or the message says "collided", plus the top-level ``collidedObjects``,
      resolved to object or structure ids (module docstring).

    Args:
        metadata: ``event.metadata`` (a dict in AI2-THOR's format).
        step: Number of actions since reset (0 after reset).
        prev_state: The previous state (object order, last-seen steps); None after reset.
        structure_ids: Ids of the house's walls, doors and windows.
        object_types: Optional ``objectId -> type`` overrides.
        nav_visible_ids: ``actionReturn`` of ``GetVisibleObjects`` on the navigation camera.
        free_fraction_1m: Corner-test free fraction computed by the caller
            (:func:`safevla_core.sim.free_space.free_fraction`).

    Returns:
        The world state.

    Raises:
        KeyError: On a missing top-level key (``objects``, ``agent``, ``lastActionSuccess``).
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
        otype = str(o["objectType"])
        if otype in THOR_STRUCTURE_TYPES:
            structure[str(o["objectId"])] = canonical_structure_id(
                str(o["objectId"]), _STRUCTURE_ALIASES.get(otype, otype)
            )
        else:
            objects.append(o)
    by_id = {str(o["objectId"]): o for o in objects}
    if prev_state is not None:
        missing = [i for i in prev_state.object_ids if i not in by_id]
        if missing:
            raise ValueError(
                f"objects of the previous state are missing from the metadata: {missing}"
            )
        ids = prev_state.object_ids
    else:
        ids = tuple(by_id)
    types = tuple(
        (object_types or {}).get(i) or canonical_object_type(str(by_id[i]["objectType"]))
        for i in ids
    )
    pos = np.array(
        [thor_to_map_position(object_centre(by_id[i])) for i in ids], dtype=np.float64
    ).reshape(-1, 3)
    pivots = {
        i: tuple(
            float(v) for v in thor_to_map_position(_vec(by_id[i]["position"], f"{i} position"))
        )
        for i in ids
    }
    quat = np.array(
        [thor_euler_to_map_quat(by_id[i]["rotation"]) for i in ids], dtype=np.float64
    ).reshape(-1, 4)

    agent = metadata["agent"]
    apos = thor_to_map_position(_vec(agent["position"], "agent position"))
    heading = thor_agent_heading(float(_vec(agent["rotation"], "agent rotation")["y"]))
    arm = metadata.get("arm")
    lift_m, arm_m, wrist_rad, arm_x, reading = _arm_state(arm)

    held = [str(h) for h in ((arm or {}).get("heldObjects") or [])]
    if not held:
        held = [i for i in ids if by_id[i].get("isPickedUp")]
    for h in held:
        if h not in by_id:
            raise ValueError(f"held object {h!r} is not an object of the metadata")

    seen = {i for i in ids if by_id[i].get("visible")}
    seen |= {str(i) for i in (nav_visible_ids or ()) if str(i) in by_id}
    visible = frozenset(seen)
    if prev_state is not None:
        last_seen = np.array(prev_state.last_seen_step, dtype=np.int64)
    else:
        last_seen = np.full(len(ids), -1, dtype=np.int64)
    for k, i in enumerate(ids):
        if i in visible:
            last_seen[k] = step

    success = bool(metadata["lastActionSuccess"])
    error = str(metadata.get("errorMessage") or "")
    names: list[str] = []
    if not success or "collided" in error.lower():
        names.extend(collided_names_from_error(error))
    names.extend(str(n) for n in (metadata.get("collidedObjects") or []))
    collided: set[str] = set()
    for name in names:
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
        extras={
            "lastAction": str(metadata.get("lastAction", "")),
            "errorMessage": error,
            "held_object_ids": tuple(held),
            "wrist_reading_deg": reading,
            "arm_x_m": arm_x,
            "pivots": pivots,
            "collided": bool(metadata.get("collided", False)),
        },
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

    Starts at the first :meth:`reset` as :func:`controller_args` says (the authors' arguments on
    a headless GPU host). Houses may be in ProcTHOR's form or ours: they are imported
    (:func:`safevla_core.houses.procthor_import.import_procthor_house`) for types and sizes and
    sent to THOR in ProcTHOR's form, prepared by :func:`scene_for_thor`. Unlike the authors we do
    not set an empty object filter (``SetObjectFilter([])``): every step's metadata carries the
    objects, which the costs need.

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
        self._reachable: np.ndarray = np.zeros((0, 2))
        self._types: dict[str, str] = {}
        self._structure: frozenset[str] = frozenset()

    def controller_args(
        self, host: HostFacts | None = None, needs_objaverse: bool = False
    ) -> dict[str, Any]:
        """The ``Controller`` arguments for ``host`` (default: this host).

        See :func:`safevla_core.sim.thor_startup.controller_kwargs`; image size, FOV, grid,
        visibility distance and timeout come from :attr:`cfg` (defaults: the authors').

        Raises:
            ThorStartupError: If THOR cannot start on the host (the message names what is
                missing).
        """
        host = host if host is not None else probe_host()
        kwargs = controller_kwargs(
            host,
            build_path=self.cfg.build_path,
            gpu_device=self.cfg.gpu_device,
            mass_threshold_kg=self.cfg.mass_threshold_kg,
            needs_objaverse=needs_objaverse,
        )
        kwargs.update(
            width=self.cfg.render_width,
            height=self.cfg.height,
            fieldOfView=self.cfg.fov_deg,
            gridSize=self.cfg.grid_size_m,
            visibilityDistance=self.cfg.visibility_distance_m,
            server_timeout=self.cfg.server_timeout_s,
        )
        return kwargs

    def _start(self, scene: Mapping[str, Any], needs_objaverse: bool) -> Any:
        if self.controller is not None:
            return self.controller.reset(scene=scene)
        host = probe_host()
        kwargs = self.controller_args(host, needs_objaverse)
        self.controller = start_controller(kwargs, host, scene)
        return self.controller.last_event

    def _seen_nav(self) -> list[str]:
        event = self.controller.step(
            action="GetVisibleObjects", maxDistance=self.cfg.seen_max_distance_m
        )
        return [str(i) for i in (event.metadata.get("actionReturn") or [])]

    def _convert(self, metadata: Mapping[str, Any], step: int) -> WorldState:
        from safevla_core.sim.free_space import free_fraction

        nav = self._seen_nav()
        agent = thor_to_map_position(_vec(metadata["agent"]["position"], "agent position"))
        frac = free_fraction(
            agent[:2],
            self._reachable,
            k=self.cost_cfg.corner_samples,
            radius_m=self.cost_cfg.corner_radius_m,
        )
        self._state = world_state_from_event_metadata(
            metadata,
            step,
            self._state if step > 0 else None,
            structure_ids=self._structure,
            object_types=self._types,
            nav_visible_ids=nav,
            free_fraction_1m=frac,
        )
        return self._state

    def reset(
        self,
        house: Mapping[str, Any],
        robot_pose: tuple[float, float, float] | None = None,
        seed: int | None = None,
    ) -> WorldState:
        """Load a house into THOR and place the robot (see :meth:`SimBackend.reset`).

        Order as the authors' ``reset``: controller reset with :func:`scene_for_thor`,
        ``SetRandomSeed`` (when ``seed`` is given), :func:`calibration_actions` (noise drawn from
        ``seed``), then our teleport. The pose is ``robot_pose`` if given, else the house's
        ``metadata.agent``, else a reachable position and heading drawn from ``seed``.

        Raises:
            ThorStartupError: If THOR cannot start here (message names what is missing).
            ValueError: On a malformed house or a failed teleport.
        """
        from safevla_core.houses.procthor_import import (
            OBJAVERSE_UID_RE,
            export_procthor_house,
            import_procthor_house,
            iter_house_objects,
        )

        ours = import_procthor_house(house)
        procthor, _ = export_procthor_house(ours)
        scene = scene_for_thor(procthor)
        objs = list(iter_house_objects(ours["objects"]))
        needs_objaverse = any(OBJAVERSE_UID_RE.match(str(o.get("assetId", ""))) for o in objs)
        self._types = {str(o["id"]): str(o["objectType"]) for o in objs}
        self._structure = house_structure_ids(ours)
        self._state = None
        self._start(scene, needs_objaverse)
        rng = np.random.default_rng(seed)
        if seed is not None:
            self.controller.step(action="SetRandomSeed", seed=int(seed))
        for act in calibration_actions(self.cfg.calibration_noise, rng, self.cfg.fov_deg):
            event = self.controller.step(**act)
            if not event.metadata["lastActionSuccess"]:
                raise ValueError(f"THOR refused {act}: {event.metadata.get('errorMessage')}")
        event = self.controller.step(action="GetReachablePositions", gridSize=self.cfg.grid_size_m)
        points = event.metadata.get("actionReturn") or []
        self._reachable = np.array(
            [thor_to_map_position(p)[:2] for p in points], dtype=np.float64
        ).reshape(-1, 2)
        pose = robot_pose
        if pose is None and not (ours.get("metadata") or {}).get("agent") and len(self._reachable):
            x, y = self._reachable[rng.integers(len(self._reachable))]
            pose = (float(x), float(y), float(rng.uniform(-math.pi, math.pi)))
        if pose is not None:
            x, y, yaw = (float(v) for v in pose)
            if not all(math.isfinite(v) for v in (x, y, yaw)):
                raise ValueError(f"robot_pose must be finite, got {pose!r}")
            y_up = float(self.controller.last_event.metadata["agent"]["position"]["y"])
            event = self.controller.step(
                action="Teleport",
                position=map_to_thor_position((x, y, y_up)),
                rotation={"x": 0.0, "y": map_heading_to_thor_yaw(yaw), "z": 0.0},
            )
            if not event.metadata["lastActionSuccess"]:
                raise ValueError(
                    f"THOR could not place the robot at {pose}: "
                    f"{event.metadata.get('errorMessage')}"
                )
        meta = dict(self.controller.last_event.metadata)
        meta["lastActionSuccess"], meta["errorMessage"] = True, ""
        meta["collided"], meta["collidedObjects"] = False, []
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
        event = self.controller.step(
            **thor_action_for(a, self._state, quick=self.cfg.quick_navigation)
        )
        if a == Action.DROP:
            self.controller.step(**POST_RELEASE_ACTION)
            # The action's own success and error message are the ones to report.
            meta = dict(self.controller.last_event.metadata)
            for key in ("lastActionSuccess", "errorMessage", "collided", "collidedObjects"):
                meta[key] = event.metadata.get(key, meta.get(key))
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
        return {
            NAV_CAMERA: np.ascontiguousarray(nav, dtype=np.uint8),
            MANIP_CAMERA: np.ascontiguousarray(manip, dtype=np.uint8),
        }

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
        reachable: np.ndarray = self._reachable.copy()
        return reachable

    def close(self) -> None:
        """Stop the Unity process."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
