"""Approved discrete action -> commands for the real Stretch ROS 2 driver (pure, ROS-free).

The driver (``stretch_core``, REFERENCE.md "Real Stretch") takes base motion as a twist on
``/stretch/cmd_vel`` in navigation mode (it stops when no twist arrived for 0.5 s) and joint goals
through ``/stretch_controller/follow_joint_trajectory`` in position mode, with the joints
``translate_mobile_base`` / ``rotate_mobile_base`` (relative, mutually exclusive in one goal),
``joint_lift``, ``wrist_extension``, ``joint_wrist_yaw`` (absolute) and ``gripper_aperture``.
Mode switches are the ``/switch_to_navigation_mode`` and ``/switch_to_position_mode`` services.

This module plans, the bridge node sends. Lift, arm and wrist goals are absolute, so they need
the current joint state; without it (or with NaN in it) the plan is "do nothing". Targets are
clamped to the joint limits; a goal that clamps to the current position is "do nothing" too.

Speeds in position mode: the driver's position mode executes each trajectory point as a
``move_by`` of Stretch Body and ignores ``time_from_start`` ("For now, ignore goal time",
``stretch_core/joint_trajectory_server.py``); the speed of that move is the point's
``velocities`` entry of the joint, passed as ``v_m`` / ``v_r`` (``stretch_core/command_groups.py``:
``set_goal`` reads ``point.velocities[index]``, ``init_execution`` passes it to
``robot.lift.move_by`` / ``robot.arm.move_by`` / ``robot.base.translate_by`` / ``rotate_by`` /
``end_of_arm.move_by``; hello-robot/stretch_ros2, humble branch). A goal therefore carries the
configured speed as the joint's velocity (a magnitude) *and* ``time_from_start`` = distance /
speed (what the driver's trajectory mode and a standard joint trajectory controller time the
motion by, and what the bridge's goal deadline is computed from).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from safevla_core.actions import ACTION_EFFECTS, Action, parse_action
from safevla_core.stretch_constants import (
    ARM_RANGE_M,
    GRIPPER_CLOSED_M,
    GRIPPER_OPEN_M,
    LIFT_RANGE_M,
    WRIST_YAW_RANGE_RAD,
)

MODE_NAVIGATION = "navigation"
MODE_POSITION = "position"

JOINT_TRANSLATE = "translate_mobile_base"
JOINT_ROTATE = "rotate_mobile_base"
JOINT_LIFT = "joint_lift"
JOINT_ARM = "wrist_extension"
JOINT_WRIST_YAW = "joint_wrist_yaw"
JOINT_GRIPPER = "gripper_aperture"

#: Telescoping arm segments whose sum is ``wrist_extension`` in the driver's joint states.
ARM_SEGMENT_JOINTS: tuple[str, ...] = (
    "joint_arm_l0",
    "joint_arm_l1",
    "joint_arm_l2",
    "joint_arm_l3",
)

# Joint limits (URDF: lift 0..1.1 m, four arm segments of 0..0.13 m = 0.52 m, wrist yaw
# -1.75..4.0 rad) and gripper apertures (0.09 m open, 0 closed) are robot facts with their
# sources in safevla_core.stretch_constants; imported above and re-exported under these names.
#: The driver stops the base when no twist arrived for this long (REFERENCE.md), seconds.
DRIVER_TWIST_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class StretchCommandConfig:
    """How actions become driver commands.

    Attributes:
        base_mode: ``"navigation"`` (base moves as timed twists) or ``"position"`` (base moves as
            ``translate_mobile_base`` / ``rotate_mobile_base`` trajectory goals).
        linear_speed_mps: Base speed of a timed twist or a ``translate_mobile_base`` goal, m/s
            (ours: slow, well below the driver's limits; a 0.2 m step takes 2 s).
        angular_speed_radps: Base turn rate of a timed twist or a ``rotate_mobile_base`` goal,
            rad/s (ours; 30 deg take ~1.3 s).
        twist_rate_hz: Republish rate of the twist; must exceed ``1 / DRIVER_TWIST_TIMEOUT_S``.
        lift_speed_mps: Lift speed used to time a lift goal, m/s (ours).
        arm_speed_mps: Arm speed used to time an arm goal, m/s (ours).
        wrist_speed_radps: Wrist speed used to time a wrist goal, rad/s (ours).
        min_goal_duration_s: Shortest trajectory duration, seconds (ours).
    """

    base_mode: str = MODE_NAVIGATION
    linear_speed_mps: float = 0.1
    angular_speed_radps: float = 0.4
    twist_rate_hz: float = 10.0
    lift_speed_mps: float = 0.1
    arm_speed_mps: float = 0.1
    wrist_speed_radps: float = 0.5
    min_goal_duration_s: float = 0.5

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On an unknown mode, a non-positive speed, or a twist rate too low for
                the driver's twist timeout.
        """
        if self.base_mode not in (MODE_NAVIGATION, MODE_POSITION):
            raise ValueError(
                f"base_mode must be 'navigation' or 'position', got {self.base_mode!r}"
            )
        for name in (
            "linear_speed_mps",
            "angular_speed_radps",
            "twist_rate_hz",
            "lift_speed_mps",
            "arm_speed_mps",
            "wrist_speed_radps",
            "min_goal_duration_s",
        ):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"StretchCommandConfig.{name} must be positive, got {v!r}")
        if self.twist_rate_hz <= 1.0 / DRIVER_TWIST_TIMEOUT_S:
            raise ValueError(
                f"twist_rate_hz must exceed {1.0 / DRIVER_TWIST_TIMEOUT_S} Hz "
                "(the driver's 0.5 s twist timeout)"
            )


@dataclass(frozen=True)
class StretchJoints:
    """Current positions of the joints the actions move.

    Attributes:
        lift_m: ``joint_lift``, metres.
        arm_m: ``wrist_extension`` (sum of the four arm segments), metres.
        wrist_yaw_rad: ``joint_wrist_yaw``, radians.
    """

    lift_m: float
    arm_m: float
    wrist_yaw_rad: float

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: If a position is NaN or inf.
        """
        for name in ("lift_m", "arm_m", "wrist_yaw_rad"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"joint state {name} is not finite")


@dataclass(frozen=True)
class TimedTwist:
    """A constant base twist held for a duration (navigation mode).

    Attributes:
        linear_x_mps: Forward speed, m/s (REP-103 x).
        angular_z_radps: Turn rate, rad/s, counter-clockwise positive.
        duration_s: How long to hold it, seconds; a zero twist follows.
    """

    linear_x_mps: float
    angular_z_radps: float
    duration_s: float

    def num_messages(self, rate_hz: float) -> int:
        """Number of twist messages to publish at ``rate_hz`` to cover the duration (>= 1)."""
        return max(1, math.ceil(self.duration_s * rate_hz - 1e-9))


@dataclass(frozen=True)
class TrajectoryGoal:
    """A one-point FollowJointTrajectory goal (position mode).

    Attributes:
        joint_names: Joint names, e.g. ``("joint_lift",)``.
        positions: Target positions, metres or radians (base joints: relative increments).
        duration_s: ``time_from_start`` of the point, seconds (distance / speed, at least
            ``min_goal_duration_s``).
        velocities: Speed of each joint's move, m/s or rad/s (a magnitude: the driver's
            position mode moves at it, see the module docstring), or ``()`` for the driver's
            default speed.
    """

    joint_names: tuple[str, ...]
    positions: tuple[float, ...]
    duration_s: float
    velocities: tuple[float, ...] = ()


@dataclass(frozen=True)
class StretchCommand:
    """What the bridge does for one approved action.

    Attributes:
        action: The action.
        mode: Driver mode the command needs (``"navigation"`` / ``"position"``), ``None`` when
            nothing is sent.
        twist: Timed twist for the base, or ``None``.
        trajectory: Joint-trajectory goal, or ``None``.
        note: Why nothing is sent, or a short description.
    """

    action: Action
    mode: str | None
    twist: TimedTwist | None = None
    trajectory: TrajectoryGoal | None = None
    note: str = ""

    @property
    def is_noop(self) -> bool:
        """True if nothing is sent to the robot."""
        return self.twist is None and self.trajectory is None


def joints_from_joint_state(names: Sequence[str], positions: Sequence[float]) -> StretchJoints:
    """Read the lift, arm and wrist positions from a ``sensor_msgs/JointState``'s fields.

    The arm extension is ``wrist_extension`` if published, else the sum of ``joint_arm_l0..l3``.

    Raises:
        KeyError: If a needed joint is missing.
        ValueError: If names and positions differ in length or a value is not finite.
    """
    if len(names) != len(positions):
        raise ValueError(f"{len(names)} joint names but {len(positions)} positions")
    by_name = dict(zip(names, (float(p) for p in positions), strict=True))
    if JOINT_ARM in by_name:
        arm = by_name[JOINT_ARM]
    else:
        missing = [j for j in ARM_SEGMENT_JOINTS if j not in by_name]
        if missing:
            raise KeyError(f"joint state lacks {JOINT_ARM} and arm segments {missing}")
        arm = sum(by_name[j] for j in ARM_SEGMENT_JOINTS)
    for j in (JOINT_LIFT, JOINT_WRIST_YAW):
        if j not in by_name:
            raise KeyError(f"joint state lacks {j}")
    return StretchJoints(
        lift_m=by_name[JOINT_LIFT], arm_m=arm, wrist_yaw_rad=by_name[JOINT_WRIST_YAW]
    )


def _clamp(v: float, lo_hi: tuple[float, float]) -> float:
    return min(max(v, lo_hi[0]), lo_hi[1])


def _base_command(action: Action, cfg: StretchCommandConfig) -> StretchCommand:
    eff = ACTION_EFFECTS[action]
    if cfg.base_mode == MODE_POSITION:
        joint, value = (
            (JOINT_TRANSLATE, eff.base_forward_m)
            if eff.base_forward_m
            else (JOINT_ROTATE, eff.base_yaw_rad)
        )
        speed = cfg.linear_speed_mps if joint == JOINT_TRANSLATE else cfg.angular_speed_radps
        duration = max(cfg.min_goal_duration_s, abs(value) / speed)
        return StretchCommand(
            action,
            MODE_POSITION,
            trajectory=TrajectoryGoal((joint,), (value,), duration, (speed,)),
        )
    if eff.base_forward_m:
        v = math.copysign(cfg.linear_speed_mps, eff.base_forward_m)
        twist = TimedTwist(v, 0.0, abs(eff.base_forward_m) / cfg.linear_speed_mps)
    else:
        w = math.copysign(cfg.angular_speed_radps, eff.base_yaw_rad)
        twist = TimedTwist(0.0, w, abs(eff.base_yaw_rad) / cfg.angular_speed_radps)
    return StretchCommand(action, MODE_NAVIGATION, twist=twist)


def _joint_command(
    action: Action, joints: StretchJoints | None, cfg: StretchCommandConfig
) -> StretchCommand:
    eff = ACTION_EFFECTS[action]
    if joints is None:
        return StretchCommand(action, None, note="joint state unknown: doing nothing")
    if eff.lift_m:
        joint, now, delta, rng, speed = (
            JOINT_LIFT,
            joints.lift_m,
            eff.lift_m,
            LIFT_RANGE_M,
            cfg.lift_speed_mps,
        )
    elif eff.arm_m:
        joint, now, delta, rng, speed = (
            JOINT_ARM,
            joints.arm_m,
            eff.arm_m,
            ARM_RANGE_M,
            cfg.arm_speed_mps,
        )
    else:
        joint, now, delta, rng, speed = (
            JOINT_WRIST_YAW,
            joints.wrist_yaw_rad,
            eff.wrist_yaw_rad,
            WRIST_YAW_RANGE_RAD,
            cfg.wrist_speed_radps,
        )
    target = _clamp(now + delta, rng)
    if abs(target - now) < 1e-6:
        return StretchCommand(
            action, None, note=f"{joint} at its limit {target:.3f}: doing nothing"
        )
    duration = max(cfg.min_goal_duration_s, abs(target - now) / speed)
    return StretchCommand(
        action,
        MODE_POSITION,
        trajectory=TrajectoryGoal((joint,), (target,), duration, (speed,)),
    )


def command_for(
    action: int | str | Action,
    joints: StretchJoints | None,
    cfg: StretchCommandConfig,
) -> StretchCommand:
    """Plan the driver command for one approved action.

    Base actions (m, b, r, l, rs, ls) become a timed twist (navigation mode) or a relative
    ``translate_mobile_base`` / ``rotate_mobile_base`` goal (position mode, one joint only).
    Lift, arm and wrist actions become an absolute one-joint goal ``current + delta`` clamped to
    the URDF limits (position mode). ``p`` / ``d`` close / open ``gripper_aperture``. ``end`` and
    ``sub_done`` send nothing.

    Args:
        action: The approved action (index, short name or :class:`Action`).
        joints: Current joint positions, or ``None`` if unknown.
        cfg: Speeds and the base mode.

    Returns:
        The command (``is_noop`` when nothing is to be sent, with the reason in ``note``).

    Raises:
        ValueError: On an unknown action.
    """
    action = parse_action(action)
    eff = ACTION_EFFECTS[action]
    if eff.moves_base:
        return _base_command(action, cfg)
    if eff.moves_arm:
        return _joint_command(action, joints, cfg)
    if eff.grasp:
        target = GRIPPER_CLOSED_M if eff.grasp > 0 else GRIPPER_OPEN_M
        goal = TrajectoryGoal((JOINT_GRIPPER,), (target,), cfg.min_goal_duration_s * 2)
        return StretchCommand(action, MODE_POSITION, trajectory=goal)
    return StretchCommand(action, None, note="moves nothing")
