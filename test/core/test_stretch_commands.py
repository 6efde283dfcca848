"""Tests of action -> Stretch driver command planning (hand-worked numbers)."""

from __future__ import annotations

import math

import pytest

from safevla_core.actions import Action
from safevla_core.stretch_commands import (
    GRIPPER_CLOSED_M,
    GRIPPER_OPEN_M,
    JOINT_ARM,
    JOINT_GRIPPER,
    JOINT_LIFT,
    JOINT_ROTATE,
    JOINT_TRANSLATE,
    JOINT_WRIST_YAW,
    MODE_NAVIGATION,
    MODE_POSITION,
    StretchCommandConfig,
    StretchJoints,
    TimedTwist,
    command_for,
    joints_from_joint_state,
)

NAV = StretchCommandConfig()  # 0.1 m/s, 0.4 rad/s, lift/arm 0.1 m/s, wrist 0.5 rad/s, min 0.5 s
POS = StretchCommandConfig(base_mode=MODE_POSITION)
JOINTS = StretchJoints(lift_m=0.5, arm_m=0.1, wrist_yaw_rad=0.0)


def test_move_ahead_is_a_timed_twist_in_navigation_mode():
    cmd = command_for(Action.MOVE_AHEAD, None, NAV)
    # 0.2 m at 0.1 m/s -> 2.0 s; at 10 Hz that is 20 messages.
    assert cmd.mode == MODE_NAVIGATION and cmd.trajectory is None
    assert cmd.twist == TimedTwist(0.1, 0.0, pytest.approx(2.0))
    assert cmd.twist.num_messages(NAV.twist_rate_hz) == 20
    back = command_for("b", None, NAV).twist
    assert back.linear_x_mps == -0.1 and back.angular_z_radps == 0.0


def test_rotations_turn_the_right_way():
    # r is -30 deg (clockwise, REP-103): -0.4 rad/s for (pi/6)/0.4 = 1.309 s.
    r = command_for(Action.ROTATE_RIGHT, None, NAV).twist
    assert r.angular_z_radps == -0.4 and r.duration_s == pytest.approx(math.pi / 6 / 0.4)
    ls = command_for(Action.ROTATE_LEFT_SMALL, None, NAV).twist
    assert ls.angular_z_radps == 0.4 and ls.duration_s == pytest.approx(math.radians(6) / 0.4)


def test_position_mode_base_uses_one_exclusive_joint():
    m = command_for(Action.MOVE_AHEAD, None, POS)
    assert m.mode == MODE_POSITION and m.twist is None
    assert m.trajectory.joint_names == (JOINT_TRANSLATE,)
    assert m.trajectory.positions == (0.2,) and m.trajectory.duration_s == pytest.approx(2.0)
    rs = command_for(Action.ROTATE_RIGHT_SMALL, None, POS).trajectory
    assert rs.joint_names == (JOINT_ROTATE,)
    assert rs.positions[0] == pytest.approx(-math.radians(6))
    # 0.1047 rad / 0.4 rad/s = 0.26 s < 0.5 s minimum -> 0.5 s.
    assert rs.duration_s == 0.5


def test_speed_parameters_time_position_mode_goals():
    # The driver's position mode moves each joint at the point's velocities entry (it ignores
    # time_from_start), so the configured speed travels as the velocity and as distance / speed.
    slow = StretchCommandConfig(
        base_mode=MODE_POSITION,
        linear_speed_mps=0.05,
        angular_speed_radps=0.2,
        lift_speed_mps=0.04,
        arm_speed_mps=0.02,
        wrist_speed_radps=0.25,
    )
    m = command_for(Action.MOVE_AHEAD, None, slow).trajectory
    assert m.velocities == (0.05,) and m.duration_s == pytest.approx(0.2 / 0.05)  # 4 s
    b = command_for(Action.MOVE_BACK, None, POS).trajectory  # the default 0.1 m/s: 2 s
    assert b.positions == (-0.2,) and b.velocities == (0.1,) and b.duration_s == pytest.approx(2.0)
    r = command_for(Action.ROTATE_RIGHT, None, slow).trajectory  # (pi/6) / 0.2 = 2.618 s
    assert r.velocities == (0.2,) and r.duration_s == pytest.approx(math.pi / 6 / 0.2)
    lift = command_for(Action.LIFT_UP, JOINTS, slow).trajectory  # 0.1 m / 0.04 m/s = 2.5 s
    assert lift.velocities == (0.04,) and lift.duration_s == pytest.approx(2.5)
    # zps 0.02 m at 0.02 m/s = 1 s; wp 10 deg at 0.25 rad/s = 0.698 s.
    arm = command_for(Action.ARM_EXTEND_SMALL, JOINTS, slow).trajectory
    assert arm.velocities == (0.02,) and arm.duration_s == pytest.approx(1.0)
    wrist = command_for(Action.WRIST_POS, JOINTS, slow).trajectory
    assert wrist.velocities == (0.25,) and wrist.duration_s == pytest.approx(
        math.radians(10) / 0.25
    )
    # The gripper has no speed parameter: the driver's default (no velocities).
    assert command_for(Action.PICKUP, None, slow).trajectory.velocities == ()


def test_lift_arm_wrist_are_absolute_goals_clamped_to_limits():
    lift = command_for(Action.LIFT_UP, JOINTS, NAV)
    # 0.5 + 0.1 = 0.6 m, 0.1 m at 0.1 m/s = 1.0 s.
    assert lift.mode == MODE_POSITION and lift.trajectory.joint_names == (JOINT_LIFT,)
    assert lift.trajectory.positions[0] == pytest.approx(0.6)
    assert lift.trajectory.duration_s == pytest.approx(1.0)
    # Arm at 0.48 m + 0.1 = 0.58 -> clamped to 0.52 (4 x 0.13 m); 0.04 m -> 0.4 s -> 0.5 s min.
    arm = command_for(Action.ARM_EXTEND, StretchJoints(0.5, 0.48, 0.0), NAV).trajectory
    assert arm.joint_names == (JOINT_ARM,) and arm.positions[0] == pytest.approx(0.52)
    assert arm.duration_s == 0.5
    # wp is -10 deg: 0 -> -0.1745 rad.
    wrist = command_for(Action.WRIST_POS, JOINTS, NAV).trajectory
    assert wrist.joint_names == (JOINT_WRIST_YAW,)
    assert wrist.positions[0] == pytest.approx(-math.radians(10))


def test_at_limit_or_unknown_state_does_nothing():
    at_top = command_for(Action.LIFT_UP_SMALL, StretchJoints(1.1, 0.0, 0.0), NAV)
    assert at_top.is_noop and at_top.mode is None and "limit" in at_top.note
    unknown = command_for(Action.ARM_RETRACT, None, NAV)
    assert unknown.is_noop and "unknown" in unknown.note


def test_gripper_and_non_motion():
    p = command_for(Action.PICKUP, None, NAV).trajectory
    d = command_for(Action.DROP, None, NAV).trajectory
    assert p.joint_names == (JOINT_GRIPPER,) and p.positions == (GRIPPER_CLOSED_M,)
    assert d.positions == (GRIPPER_OPEN_M,)
    assert command_for(Action.END, JOINTS, NAV).is_noop
    assert command_for(Action.SUB_DONE, JOINTS, NAV).is_noop


def test_bad_input_raises():
    with pytest.raises(ValueError, match="unknown action index 20"):
        command_for(20, JOINTS, NAV)
    with pytest.raises(ValueError, match="not finite"):
        StretchJoints(math.nan, 0.0, 0.0)
    with pytest.raises(ValueError, match="twist_rate_hz"):
        StretchCommandConfig(twist_rate_hz=1.5)
    with pytest.raises(ValueError, match="base_mode"):
        StretchCommandConfig(base_mode="fly")


def test_joints_from_joint_state_sums_arm_segments():
    names = [
        "joint_lift",
        "joint_arm_l0",
        "joint_arm_l1",
        "joint_arm_l2",
        "joint_arm_l3",
        "joint_wrist_yaw",
        "joint_head_pan",
    ]
    j = joints_from_joint_state(names, [0.7, 0.05, 0.05, 0.05, 0.05, 1.0, 0.3])
    # 4 x 0.05 = 0.2 m
    assert (j.lift_m, j.wrist_yaw_rad) == (0.7, 1.0) and j.arm_m == pytest.approx(0.2)
    with pytest.raises(KeyError, match="joint_lift"):
        joints_from_joint_state(["wrist_extension", "joint_wrist_yaw"], [0.1, 0.0])
    with pytest.raises(ValueError, match="not finite"):
        joints_from_joint_state(
            ["joint_lift", "wrist_extension", "joint_wrist_yaw"], [math.inf, 0.1, 0.0]
        )
