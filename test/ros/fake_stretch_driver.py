"""A stand-in for the Stretch driver's ROS 2 interface (stretch_core), for the bridge tests.

Not a simulator: it only does what the driver's interface promises (REFERENCE.md), so that the
bridge is tested against the same handshakes. It offers ``switch_to_navigation_mode`` and
``switch_to_position_mode`` (std_srvs/Trigger; the mode changes ``SWITCH_DELAY_S`` after the call
and is then published on ``mode``), drops ``stretch/cmd_vel`` twists unless in navigation mode
(as the driver does), publishes ``is_runstopped`` and ``stretch/joint_states`` at 20 Hz, and takes
the runstop from ``fake_driver/set_runstop`` (std_msgs/Bool). It integrates the commanded travel
of accepted twists (``linear.x / twist_rate_hz`` per twist: the commanded distance, the quantity
under test) and publishes its state as JSON on ``fake_driver/state`` after every twist and goal
event: ``{"mode", "travel_m", "turn_rad", "accepted", "dropped", "runstopped", "twists": [[v, w],
...], "goals": [...], "goal_events": [...]}``.

When ``control_msgs`` is installed (a real ROS 2 install; no PyPI wheel exists) it also serves the
``stretch_controller/follow_joint_trajectory`` action as the driver's position mode does: a goal
is refused outside position mode, runs for ``|position| / velocity`` of its one joint (the
driver ignores ``time_from_start`` there), and honours cancel requests. Each goal is recorded as
``{"joints", "positions", "velocities", "time_from_start_s"}``, each outcome in ``goal_events``
(``"accepted"``, ``"succeeded"``, ``"canceled"``).

Run: ``python test/ros/fake_stretch_driver.py [twist_rate_hz]``.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import rclpy
from geometry_msgs.msg import Twist
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from safevla_ros.qos import COMMAND_QOS, STATE_QOS, Topics

SWITCH_DELAY_S = 0.3  # the real driver takes a moment to switch modes


class FakeStretchDriver(Node):
    """The driver's topics and services, with commanded-travel bookkeeping."""

    def __init__(self, twist_rate_hz: float) -> None:
        """Create the interfaces; start in position mode (the driver's default at start-up)."""
        super().__init__("stretch_driver")
        self.period_s = 1.0 / twist_rate_hz
        self.mode = "position"
        self.runstopped = False
        self.state = {
            "travel_m": 0.0,
            "turn_rad": 0.0,
            "accepted": 0,
            "dropped": 0,
            "twists": [],
            "goals": [],
            "goal_events": [],
        }
        self._lock = threading.Lock()
        self.mode_pub = self.create_publisher(String, Topics.STRETCH_MODE, STATE_QOS)
        self.runstop_pub = self.create_publisher(Bool, Topics.STRETCH_RUNSTOP, STATE_QOS)
        self.joints_pub = self.create_publisher(JointState, Topics.STRETCH_JOINT_STATES, STATE_QOS)
        self.state_pub = self.create_publisher(String, "fake_driver/state", STATE_QOS)
        # A deep reader queue: on a loaded 2-core machine this process can be busy for longer
        # than one twist period, and a depth-1 queue would then replace a twist the bridge did
        # send; the test counts what the bridge commanded, so the fake must see every twist.
        twist_qos = QoSProfile(
            depth=200, reliability=COMMAND_QOS.reliability, durability=COMMAND_QOS.durability
        )
        self.create_subscription(Twist, Topics.STRETCH_CMD_VEL, self._on_twist, twist_qos)
        self.create_subscription(Bool, "fake_driver/set_runstop", self._on_set_runstop, STATE_QOS)
        for mode in ("navigation", "position"):
            self.create_service(
                Trigger, f"switch_to_{mode}_mode", lambda req, res, m=mode: self._on_switch(m, res)
            )
        self.create_timer(0.05, self._publish_status)
        self._pending = None
        # goal id -> set by the cancel callback, so a running goal waits on it, not on a clock
        self._cancel_events: dict[bytes, threading.Event] = {}
        self.action_server = self._make_action_server()

    def _make_action_server(self):
        try:
            from control_msgs.action import FollowJointTrajectory
            from rclpy.action import ActionServer, CancelResponse, GoalResponse
            from rclpy.callback_groups import ReentrantCallbackGroup
        except ImportError:
            return None

        def on_goal(goal):
            ok = self.mode == "position" and not self.runstopped
            return GoalResponse.ACCEPT if ok else GoalResponse.REJECT

        def on_cancel(handle):
            self._cancel_event(handle).set()  # wakes the goal's _execute at once
            return CancelResponse.ACCEPT

        return ActionServer(
            self,
            FollowJointTrajectory,
            "stretch_controller/follow_joint_trajectory",
            execute_callback=self._execute,
            goal_callback=on_goal,
            cancel_callback=on_cancel,
            callback_group=ReentrantCallbackGroup(),
        )

    def _cancel_event(self, handle) -> threading.Event:
        """The event a cancel request for ``handle``'s goal sets (made on first use)."""
        with self._lock:
            return self._cancel_events.setdefault(bytes(handle.goal_id.uuid), threading.Event())

    def _event(self, name: str) -> None:
        with self._lock:
            self.state["goal_events"].append(name)
        self._publish_state()

    def _execute(self, handle):
        """Run a one-point goal at its velocity, as the driver's position mode does."""
        from control_msgs.action import FollowJointTrajectory

        traj = handle.request.trajectory
        point = traj.points[-1]
        t = point.time_from_start
        with self._lock:
            self.state["goals"].append(
                {
                    "joints": list(traj.joint_names),
                    "positions": list(point.positions),
                    "velocities": list(point.velocities),
                    "time_from_start_s": t.sec + 1e-9 * t.nanosec,
                }
            )
        self._event("accepted")
        speed = point.velocities[0] if len(point.velocities) else 0.1
        duration_s = abs(point.positions[0]) / max(abs(speed), 1e-3)
        result = FollowJointTrajectory.Result()
        if self._cancel_event(handle).wait(timeout=min(duration_s, 30.0)):
            # rclpy moves the goal to CANCELING just after the cancel callback returns
            # (ActionServer._execute_cancel_request): at most a thread switch away.
            deadline = time.monotonic() + 1.0
            while not handle.is_cancel_requested and time.monotonic() < deadline:
                pass
            if handle.is_cancel_requested:
                handle.canceled()
                self._event("canceled")
                return result
        handle.succeed()
        result.error_code = FollowJointTrajectory.Result.SUCCESSFUL
        self._event("succeeded")
        return result

    def _on_switch(self, mode: str, res):
        if self.runstopped:
            res.success, res.message = False, "runstopped"
            return res
        self._pending = self.create_timer(SWITCH_DELAY_S, lambda: self._switched(mode))
        res.success, res.message = True, f"switching to {mode}"
        return res

    def _switched(self, mode: str) -> None:
        self.mode = mode
        if self._pending is not None:
            self._pending.cancel()
            self.destroy_timer(self._pending)
            self._pending = None
        self.mode_pub.publish(String(data=mode))

    def _on_set_runstop(self, msg: Bool) -> None:
        self.runstopped = bool(msg.data)
        self._publish_status()

    def _on_twist(self, msg: Twist) -> None:
        moving = msg.linear.x != 0.0 or msg.angular.z != 0.0
        with self._lock:
            if self.mode != "navigation" or (self.runstopped and moving):
                self.state["dropped"] += 1
            else:
                self.state["accepted"] += 1
                self.state["travel_m"] += msg.linear.x * self.period_s
                self.state["turn_rad"] += msg.angular.z * self.period_s
            self.state["twists"].append([msg.linear.x, msg.angular.z])
        self._publish_state()

    def _publish_state(self) -> None:
        with self._lock:
            data = json.dumps({"mode": self.mode, "runstopped": self.runstopped, **self.state})
        self.state_pub.publish(String(data=data))

    def _publish_status(self) -> None:
        self.mode_pub.publish(String(data=self.mode))
        self.runstop_pub.publish(Bool(data=self.runstopped))
        self.joints_pub.publish(
            JointState(
                name=["joint_lift", "wrist_extension", "joint_wrist_yaw"], position=[0.5, 0.1, 0.0]
            )
        )


def main() -> None:
    """Spin until Ctrl-C."""
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    rclpy.init()
    node = FakeStretchDriver(rate)
    try:
        # With the action server, several threads: a running goal (its execute callback) must
        # not block cancel requests, twists and the status timer.
        executor = MultiThreadedExecutor(num_threads=4) if node.action_server else None
        rclpy.spin(node, executor=executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
