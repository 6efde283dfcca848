"""The Stretch bridge as a real process, driven and observed by a peer node on localhost.

The bridge runs with config/stretch_bridge.yaml (linear 0.1 m/s, angular 0.4 rad/s, twists at
10 Hz, lift/arm 0.1 m/s, wrist 0.5 rad/s, shortest goal 0.5 s). The peer publishes approved,
unapproved and stale ``DiscreteAction`` messages and joint states, and records ``/stretch/cmd_vel``
and the bridge's JSON command reports (``/stretch_bridge/commands``). ``control_msgs`` is not
installable here, so trajectory goals are built and reported with ``sent: false``.
"""

from __future__ import annotations

import json
import math

import pytest

from test.ros.test_nodes_integration import logs, node_command, running, spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

READY_TIMEOUT_S = 60.0
TWIST_TIMEOUT_S = 15.0  # a 2 s twist stream on a loaded machine


class BridgeProbe:
    """Publishers to and recorders of one bridge."""

    def __init__(self, node, context) -> None:
        from geometry_msgs.msg import Twist
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        from safevla_ros.msg import DiscreteAction
        from safevla_ros.qos import COMMAND_QOS, STATE_QOS, Topics

        self.node, self.context = node, context
        self.action = node.create_publisher(DiscreteAction, Topics.APPROVED_ACTION, COMMAND_QOS)
        self.decision = node.create_publisher(DiscreteAction, Topics.DECISIONS, STATE_QOS)
        self.joints = node.create_publisher(JointState, Topics.STRETCH_JOINT_STATES, STATE_QOS)
        self.twists: list[tuple[float, float]] = []
        self.reports: list[dict] = []
        # A deep reliable queue on our side, so no twist of a stream is lost while we spin.
        deep = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Twist, "/stretch/cmd_vel",
                                 lambda m: self.twists.append((m.linear.x, m.angular.z)), deep)
        node.create_subscription(String, Topics.BRIDGE_COMMANDS,
                                 lambda m: self.reports.append(json.loads(m.data)), STATE_QOS)

    def send(self, name: str, approved: bool = True, age_s: float = 0.0) -> dict:
        """Publish an action stamped ``age_s`` ago and return the bridge's report on it."""
        from safevla_ros import conversions as conv

        stamp = conv.s_to_stamp(self.node.get_clock().now().nanoseconds * 1e-9 - age_s)
        n = len(self.reports)
        self.action.publish(conv.action_to_msg(name, stamp, "probe", approved=approved))
        assert spin_until(self.node, self.context, lambda: len(self.reports) > n, 20.0), \
            f"no report on {name}"
        return self.reports[-1]

    def set_joints(self, lift_m: float, arm_segment_m: float, wrist_yaw_rad: float) -> None:
        """Publish a joint state with the arm as four equal segments (the driver's layout)."""
        from sensor_msgs.msg import JointState

        names = ["joint_lift", "joint_arm_l0", "joint_arm_l1", "joint_arm_l2", "joint_arm_l3",
                 "joint_wrist_yaw"]
        msg = JointState(name=names, position=[lift_m, *[arm_segment_m] * 4, wrist_yaw_rad])
        for _ in range(3):
            self.joints.publish(msg)
            spin_until(self.node, self.context, lambda: False, 0.1)

    def twist_stream(self) -> list[tuple[float, float]]:
        """Wait for the zero twist that ends a stream; return the stream and clear it."""
        done = lambda: (0.0, 0.0) in self.twists  # noqa: E731
        assert spin_until(self.node, self.context, done, TWIST_TIMEOUT_S), self.twists
        spin_until(self.node, self.context, lambda: False, 0.3)  # nothing may follow
        out, self.twists[:] = list(self.twists), []
        return out


def test_bridge_turns_approved_actions_into_twists_and_clamped_joint_goals(ros_context, tmp_path):
    import rclpy

    from safevla_ros.qos import Topics

    node = rclpy.create_node("bridge_probe", context=ros_context)
    probe = BridgeProbe(node, ros_context)
    commands = {"bridge": node_command("stretch_bridge_node", "stretch_bridge.yaml", {})}
    with running(commands, tmp_path) as procs:
        ready = lambda: (node.count_subscribers(Topics.APPROVED_ACTION) >= 1  # noqa: E731
                         and node.count_publishers(Topics.BRIDGE_COMMANDS) >= 1
                         and node.count_publishers("/stretch/cmd_vel") >= 1)
        assert spin_until(node, ros_context, ready, READY_TIMEOUT_S, procs), logs(tmp_path)

        # -- vetoed (unapproved) and stale actions: reported as ignored, no twist at all.
        r = probe.send("m", approved=False)
        assert r == {"action": "m", "status": "ignored", "note": "not approved"}
        r = probe.send("m", age_s=5.0)  # 5 s old > max_action_age_s 1.0
        assert r["status"] == "ignored" and r["note"].startswith("stale: stamped 5.0")
        r = probe.send("m", age_s=-3.0)  # 3 s in the future > clock_jump_tolerance_s 0.5
        assert r["status"] == "ignored" and "stamped -3.0" in r["note"]
        spin_until(node, ros_context, lambda: False, 0.5)
        assert probe.twists == []

        # -- m: 0.2 m at 0.1 m/s = 2.0 s; at 10 Hz ceil(2.0 * 10) = 20 twists of (0.1, 0), then
        # one zero twist.
        r = probe.send("m")
        assert (r["status"], r["mode"], r["messages"]) == ("twist", "navigation", 20)
        assert (r["linear_x_mps"], r["angular_z_radps"]) == (0.1, 0.0)
        assert r["duration_s"] == pytest.approx(2.0)
        assert probe.twist_stream() == [(0.1, 0.0)] * 20 + [(0.0, 0.0)]

        # -- r: rotate right 30 deg = 0.5236 rad clockwise, REP-103 angular.z < 0: -0.4 rad/s for
        # 0.5236 / 0.4 = 1.309 s -> ceil(13.09) = 14 twists, then zero.
        r = probe.send("r")
        assert r["messages"] == 14 and r["duration_s"] == pytest.approx(math.radians(30) / 0.4)
        assert probe.twist_stream() == [(0.0, -0.4)] * 14 + [(0.0, 0.0)]

        # -- a stale-input veto of the monitor stops a running twist at once.
        from safevla_ros import conversions as conv

        probe.send("m")
        assert spin_until(node, ros_context, lambda: len(probe.twists) >= 2, TWIST_TIMEOUT_S)
        veto = conv.action_to_msg("m", node.get_clock().now().to_msg(), "safety_monitor",
                                  approved=False, verdict="stale_input: nav_camera: silent")
        probe.decision.publish(veto)
        stream = probe.twist_stream()
        assert stream[-1] == (0.0, 0.0) and 2 <= len(stream) - 1 < 20, stream

        # -- joint actions without a joint state: nothing to do (absolute goals need it).
        r = probe.send("yp")
        assert r["status"] == "noop" and "joint state unknown" in r["note"]

        # -- with lift 0.5 m, arm 4 x 0.1125 = 0.45 m, wrist yaw 3.95 rad:
        probe.set_joints(0.5, 0.1125, 3.95)
        r = probe.send("yp")  # lift 0.5 + 0.1 = 0.6 m, 0.1 m at 0.1 m/s = 1.0 s
        assert (r["status"], r["mode"], r["joint_names"]) == ("trajectory", "position",
                                                              ["joint_lift"])
        assert r["positions"] == [pytest.approx(0.6)] and r["duration_s"] == pytest.approx(1.0)
        assert r["sent"] is False and "control_msgs is not installed" in r["note"]
        r = probe.send("zp")  # 0.45 + 0.1 = 0.55 clamped to 0.52 m; 0.07 m / 0.1 m/s = 0.7 s
        assert r["joint_names"] == ["wrist_extension"]
        assert r["positions"] == [pytest.approx(0.52)] and r["duration_s"] == pytest.approx(0.7)
        r = probe.send("wm")  # 3.95 + 10 deg (0.1745) = 4.12 clamped to 4.0 rad; 0.05 / 0.5 =
        # 0.1 s raised to the 0.5 s minimum
        assert r["joint_names"] == ["joint_wrist_yaw"]
        assert r["positions"] == [pytest.approx(4.0)] and r["duration_s"] == pytest.approx(0.5)
        r = probe.send("p")  # pick up: close the gripper (aperture 0), 2 x 0.5 s
        assert (r["joint_names"], r["positions"], r["duration_s"]) == (
            ["gripper_aperture"], [0.0], pytest.approx(1.0))
        # Arm at its 0.52 m limit (4 x 0.13): extending does nothing.
        probe.set_joints(0.5, 0.13, 0.0)
        r = probe.send("zp")
        assert r["status"] == "noop" and "wrist_extension at its limit 0.520" in r["note"]
        assert probe.twists == [], "a joint action moved the base"
        assert procs["bridge"].poll() is None
    node.destroy_node()
    text = logs(tmp_path)
    assert "control_msgs is not installed" in text
    assert "would send TrajectoryGoal(joint_names=('joint_lift',)" in text
