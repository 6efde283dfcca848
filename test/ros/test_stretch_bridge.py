"""The Stretch bridge as a real process against a fake Stretch driver process, on localhost.

The bridge runs with config/stretch_bridge.yaml but ``base_mode: navigation`` (twists: the
closed-loop position-mode goals need control_msgs, absent here) and a 1 s camera timeout. The
driver stand-in (test/ros/fake_stretch_driver.py) starts in position mode, switches modes 0.3 s
after a service call, drops twists outside navigation mode and integrates the commanded travel of
the twists it accepts. This test node plays the safety monitor (it is named
``safevla_safety_monitor``, the only publisher the bridge accepts), feeds both cameras, and waits
for the bridge's ``executor/status`` report after every action (step-synchronous).

Hand-worked numbers: ``m`` is 0.2 m at 0.1 m/s = 2.0 s = ceil(2.0 x 10 Hz) = 20 twists of
0.1 m/s, i.e. 20 x 0.1 m/s x 0.1 s = 0.2 m of commanded travel, then one zero twist.

The position-mode goal and cancel path (the bridge's default ``base_mode: position``, the fake
driver's FollowJointTrajectory server) is tested at the end of this file; those tests need
``control_msgs``, which no PyPI wheel provides, and are skipped here with that reason.
"""

from __future__ import annotations

import json
import sys

import pytest

from test.ros.test_nodes_integration import REPO, logs, node_command, running, spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

READY_TIMEOUT_S = 60.0
STEP_TIMEOUT_S = 20.0  # one 2 s move on a loaded 2-core machine


class MonitorStandIn:
    """Publishes approvals and camera frames as the monitor would; records the bridge's reports."""

    def __init__(self, node, context) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Bool, String

        from safevla_ros.msg import ActionStatus, DiscreteAction
        from safevla_ros.qos import COMMAND_QOS, IMAGE_QOS, STATE_QOS, Topics

        self.node, self.context = node, context
        self.action = node.create_publisher(DiscreteAction, Topics.APPROVED_ACTION, COMMAND_QOS)
        self.runstop = node.create_publisher(Bool, "fake_driver/set_runstop", STATE_QOS)
        self.cams = [
            node.create_publisher(Image, t, IMAGE_QOS)
            for t in (Topics.NAV_IMAGE, Topics.MANIP_IMAGE)
        ]
        self.statuses: list = []
        self.driver: dict = {}
        deep = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(ActionStatus, Topics.ACTION_STATUS, self.statuses.append, deep)
        node.create_subscription(
            String, "fake_driver/state", lambda m: self.driver.update(json.loads(m.data)), deep
        )
        self.cameras_on = True
        node.create_timer(0.1, self._feed)
        self.ActionStatus = ActionStatus

    def _feed(self) -> None:
        if not self.cameras_on:
            return
        from sensor_msgs.msg import Image

        stamp = self.node.get_clock().now().to_msg()
        for pub in self.cams:
            msg = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(48))
            msg.header.stamp = stamp
            pub.publish(msg)

    def send(self, name: str):
        """Publish an approved action; return its stamp key."""
        from safevla_ros import conversions as conv

        stamp = self.node.get_clock().now().to_msg()
        self.action.publish(conv.action_to_msg(name, stamp, "safety_monitor", approved=True))
        return conv.stamp_key(stamp)

    def final(self, key: int):
        """Wait for the final (non-BUSY) status of the action with this stamp key."""
        from safevla_ros import conversions as conv

        def done():
            return any(
                conv.stamp_key(s.header.stamp) == key and s.state != s.BUSY for s in self.statuses
            )

        assert spin_until(self.node, self.context, done, STEP_TIMEOUT_S), [
            (s.name, s.state, s.detail) for s in self.statuses[-5:]
        ]
        return [
            s for s in self.statuses if conv.stamp_key(s.header.stamp) == key and s.state != s.BUSY
        ][-1]

    def spin_until(self, fn, timeout_s: float = STEP_TIMEOUT_S) -> bool:
        """Spin this node until ``fn()``."""
        return spin_until(self.node, self.context, fn, timeout_s)


@pytest.fixture
def bridge(ros_context, tmp_path):
    """A running bridge + fake driver and the monitor stand-in."""
    import rclpy
    from std_msgs.msg import Bool

    from safevla_ros.qos import Topics

    node = rclpy.create_node("safevla_safety_monitor", context=ros_context)
    probe = MonitorStandIn(node, ros_context)
    commands = {
        "driver": [sys.executable, str(REPO / "test" / "ros" / "fake_stretch_driver.py"), "10"],
        "bridge": node_command(
            "stretch_bridge_node",
            "stretch_bridge.yaml",
            {"commands.base_mode": "navigation", "camera_timeout_s": 1.0},
        ),
    }
    with running(commands, tmp_path) as procs:
        ready = lambda: (  # noqa: E731
            node.count_subscribers(Topics.APPROVED_ACTION) >= 1
            and node.count_publishers(Topics.ACTION_STATUS) >= 1
            and node.count_subscribers("fake_driver/set_runstop") >= 1
        )
        assert spin_until(node, ros_context, ready, READY_TIMEOUT_S, procs), logs(tmp_path)
        probe.runstop.publish(Bool(data=False))
        # The bridge accepts actions once cameras and the runstop state are fresh.
        probe.spin_until(lambda: False, 1.5)
        yield probe, procs
        for name, p in procs.items():
            assert p.poll() is None, f"{name} died\n" + logs(tmp_path)
    node.destroy_node()


def test_ten_approved_moves_command_two_metres_in_order(bridge):
    probe, _ = bridge
    st_ = probe.ActionStatus
    keys = []
    for _ in range(10):
        key = probe.send("m")
        keys.append(key)
        st = probe.final(key)
        assert st.state == st_.DONE and st.name == "m", (st.state, st.detail)
    # Reports came in order, one final report per move, each after a BUSY one.
    finals = [s for s in probe.statuses if s.state != st_.BUSY]
    from safevla_ros import conversions as conv

    assert [conv.stamp_key(s.header.stamp) for s in finals] == keys
    assert probe.spin_until(lambda: probe.driver.get("accepted", 0) >= 210)
    # 10 x (20 twists of 0.1 m/s x 0.1 s, then a zero twist) = 2.0 m; none dropped (the mode
    # switch was awaited before the first twist).
    assert probe.driver["travel_m"] == pytest.approx(2.0, abs=1e-9)
    assert probe.driver["dropped"] == 0 and probe.driver["accepted"] == 210
    assert probe.driver["twists"] == ([[0.1, 0.0]] * 20 + [[0.0, 0.0]]) * 10


def test_a_second_approval_while_busy_is_rejected_not_queued(bridge):
    probe, _ = bridge
    st_ = probe.ActionStatus
    first = probe.send("m")
    assert probe.spin_until(lambda: any(s.state == st_.BUSY for s in probe.statuses))
    second = probe.send("b")
    st = probe.final(second)
    assert st.state == st_.REJECTED and "busy executing MOVE_AHEAD" in st.detail
    assert probe.final(first).state == st_.DONE
    assert probe.spin_until(lambda: probe.driver.get("accepted", 0) >= 21)
    assert probe.driver["travel_m"] == pytest.approx(0.2, abs=1e-9)  # b never ran


def test_runstop_mid_move_cancels_it(bridge):
    from std_msgs.msg import Bool

    probe, _ = bridge
    st_ = probe.ActionStatus
    key = probe.send("m")
    assert probe.spin_until(lambda: probe.driver.get("accepted", 0) >= 3)
    probe.runstop.publish(Bool(data=True))
    st = probe.final(key)
    assert st.state == st_.CANCELLED and "runstop" in st.detail
    # The zero twist that stops the base follows the report on another topic: wait for it.
    assert probe.spin_until(lambda: probe.driver["twists"][-1] == [0.0, 0.0])
    assert 0.0 < probe.driver["travel_m"] < 0.2
    # While runstopped, a new approval is rejected.
    st = probe.final(probe.send("m"))
    assert st.state == st_.REJECTED and "runstop engaged" in st.detail


def test_silent_camera_mid_move_cancels_it(bridge):
    probe, _ = bridge
    st_ = probe.ActionStatus
    key = probe.send("m")
    assert probe.spin_until(lambda: probe.driver.get("accepted", 0) >= 2)
    probe.cameras_on = False  # both cameras stop; 1 s later the bridge must give up
    st = probe.final(key)
    assert st.state == st_.CANCELLED and "camera" in st.detail, st.detail
    # The zero twist that stops the base follows the report on another topic: wait for it.
    assert probe.spin_until(lambda: probe.driver["twists"][-1] == [0.0, 0.0])
    assert 0.0 < probe.driver["travel_m"] < 0.2


def test_joint_goals_without_control_msgs_are_rejected_not_faked(bridge):
    # The fake driver publishes lift 0.5 m: yp plans a lift goal to 0.6 m, which needs the
    # FollowJointTrajectory action (control_msgs, absent from PyPI): rejected with the reason.
    pytest.importorskip("rclpy")
    try:
        import control_msgs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("control_msgs is installed: the bridge would send the goal")
    probe, _ = bridge
    st = probe.final(probe.send("yp"))
    assert st.state == probe.ActionStatus.REJECTED and "control_msgs is not installed" in st.detail
    assert not any(t != [0.0, 0.0] for t in probe.driver.get("twists", []))


#: Why the position-mode goal tests cannot run on a PyPI-only install (checked 2026-12-01:
#: ``pip download ros-control-msgs`` finds no distribution; ENVIRONMENT.md).
NO_CONTROL_MSGS = (
    "control_msgs is not installed and not installable here: no ros-control-msgs wheel on PyPI "
    "(pip download ros-control-msgs: no matching distribution); the FollowJointTrajectory "
    "goal/cancel path needs it (a real ROS 2 install has it)"
)


@pytest.fixture
def goal_bridge(ros_context, tmp_path):
    """The bridge in its default ``base_mode: position`` against the fake driver's action server."""
    pytest.importorskip("control_msgs", reason=NO_CONTROL_MSGS)
    import rclpy
    from std_msgs.msg import Bool

    from safevla_ros.qos import Topics

    node = rclpy.create_node("safevla_safety_monitor", context=ros_context)
    probe = MonitorStandIn(node, ros_context)
    commands = {
        "driver": [sys.executable, str(REPO / "test" / "ros" / "fake_stretch_driver.py"), "10"],
        "bridge": node_command("stretch_bridge_node", "stretch_bridge.yaml", {}),
    }
    with running(commands, tmp_path) as procs:
        ready = lambda: (  # noqa: E731
            node.count_subscribers(Topics.APPROVED_ACTION) >= 1
            and node.count_publishers(Topics.ACTION_STATUS) >= 1
            and node.count_subscribers("fake_driver/set_runstop") >= 1
        )
        assert spin_until(node, ros_context, ready, READY_TIMEOUT_S, procs), logs(tmp_path)
        probe.runstop.publish(Bool(data=False))
        probe.spin_until(lambda: False, 1.5)  # cameras and runstop fresh at the bridge
        yield probe, procs
        for name, p in procs.items():
            assert p.poll() is None, f"{name} died\n" + logs(tmp_path)
    node.destroy_node()


def test_position_mode_goal_moves_at_the_configured_speed(goal_bridge):
    probe, _ = goal_bridge
    st = probe.final(probe.send("m"))
    assert st.state == probe.ActionStatus.DONE, st.detail
    # 0.2 m at linear_speed_mps 0.1: the speed as the velocity, 0.2 / 0.1 = 2 s as the time.
    goal = probe.driver["goals"][-1]
    assert goal["joints"] == ["translate_mobile_base"] and goal["positions"] == [0.2]
    assert goal["velocities"] == [0.1] and goal["time_from_start_s"] == pytest.approx(2.0)
    assert probe.driver["goal_events"][-1] == "succeeded"


def test_runstop_mid_goal_cancels_it(goal_bridge):
    from std_msgs.msg import Bool

    probe, _ = goal_bridge
    key = probe.send("m")
    assert probe.spin_until(lambda: "accepted" in probe.driver.get("goal_events", []))
    probe.runstop.publish(Bool(data=True))
    st = probe.final(key)
    assert st.state == probe.ActionStatus.CANCELLED and "runstop" in st.detail, st.detail
    assert probe.spin_until(lambda: probe.driver["goal_events"][-1] == "canceled")


def test_silent_camera_mid_goal_cancels_it(goal_bridge):
    probe, _ = goal_bridge
    key = probe.send("m")  # 2 s of motion; the bridge gives up 1 s after the last frame
    assert probe.spin_until(lambda: "accepted" in probe.driver.get("goal_events", []))
    probe.cameras_on = False
    st = probe.final(key)
    assert st.state == probe.ActionStatus.CANCELLED and "camera" in st.detail, st.detail
    assert probe.spin_until(lambda: probe.driver["goal_events"][-1] == "canceled")
