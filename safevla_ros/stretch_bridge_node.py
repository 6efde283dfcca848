"""Stretch bridge node: approved actions -> the real Stretch driver (``stretch_core``).

Plans each approved action with :func:`safevla_core.stretch_commands.command_for`: base moves as
twists on ``stretch/cmd_vel`` (the first at once, then at ``twist_rate_hz`` for the planned
duration, then one zero twist; the driver itself stops after 0.5 s without twists), lift / arm /
wrist / gripper as FollowJointTrajectory goals clamped to the joint limits, switching the driver's
mode first. ``control_msgs`` (the action type) is absent on PyPI-only installs: the bridge then
says so once at start-up and only logs the goal it would send. An unapproved or stale action, or
a stale-input veto of the monitor, stops the base; an unknown joint state makes arm actions do
nothing. Every planned or ignored action is also reported as JSON on ``stretch_bridge/commands``
(:func:`safevla_ros.conversions.command_report`), for logs, bags and tests.
"""

from __future__ import annotations

import json

from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from safevla_core.stretch_commands import (
    MODE_NAVIGATION,
    StretchCommand,
    StretchJoints,
    command_for,
    joints_from_joint_state,
)
from safevla_ros import conversions as conv
from safevla_ros.msg import DiscreteAction
from safevla_ros.params import BridgeNodeConfig, declare_dataclass
from safevla_ros.qos import COMMAND_QOS, STATE_QOS, Topics
from safevla_ros.spin import spin_node

#: Log/report note when the FollowJointTrajectory action type is not installed.
NO_CONTROL_MSGS = "control_msgs is not installed: joint-trajectory goals are built and logged, " \
    "not sent"


class StretchBridgeNode(Node):
    """Sends approved actions to the Stretch driver."""

    def __init__(self, **node_kwargs) -> None:
        """Declare parameters, create the driver interfaces that are installed.

        Args:
            **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``).
        """
        super().__init__("safevla_stretch_bridge", **node_kwargs)
        self.cfg: BridgeNodeConfig = declare_dataclass(self, BridgeNodeConfig)
        self.joints: StretchJoints | None = None
        self.mode: str | None = None
        self._twist: Twist | None = None
        self._twist_left = 0
        self.cmd_vel = self.create_publisher(Twist, Topics.STRETCH_CMD_VEL, COMMAND_QOS)
        self.report_pub = self.create_publisher(String, Topics.BRIDGE_COMMANDS, STATE_QOS)
        self.create_subscription(DiscreteAction, Topics.APPROVED_ACTION, self._on_action,
                                 COMMAND_QOS)
        self.create_subscription(DiscreteAction, Topics.DECISIONS, self._on_decision, STATE_QOS)
        self.create_subscription(JointState, Topics.STRETCH_JOINT_STATES, self._on_joints,
                                 STATE_QOS)
        self.create_timer(1.0 / self.cfg.commands.twist_rate_hz, self._twist_tick)
        self.trajectory_client = self._make_action_client()
        self.mode_clients = self._make_mode_clients()

    def _make_action_client(self):
        try:
            from control_msgs.action import FollowJointTrajectory
            from rclpy.action import ActionClient
        except ImportError:
            self.get_logger().warning(NO_CONTROL_MSGS)
            return None
        return ActionClient(self, FollowJointTrajectory, self.cfg.trajectory_action)

    def _make_mode_clients(self) -> dict:
        try:
            from std_srvs.srv import Trigger
        except ImportError:
            self.get_logger().warning("std_srvs is not installed: driver mode switches skipped")
            return {}
        return {mode: self.create_client(Trigger, f"switch_to_{mode}_mode")
                for mode in ("navigation", "position")}

    # -- inputs ----------------------------------------------------------------------------
    def _on_joints(self, msg: JointState) -> None:
        try:
            self.joints = joints_from_joint_state(list(msg.name), list(msg.position))
        except (KeyError, ValueError) as exc:
            self.joints = None  # doubtful state: arm actions do nothing
            self.get_logger().warning(f"joint state unusable: {exc}", throttle_duration_sec=5.0)

    def _on_decision(self, msg: DiscreteAction) -> None:
        if not msg.approved and msg.verdict.startswith("stale_input"):
            self._stop_base(f"monitor reports stale inputs: {msg.verdict}")

    def _on_action(self, msg: DiscreteAction) -> None:
        now_s = self.get_clock().now().nanoseconds * 1e-9
        age_s = now_s - conv.stamp_to_s(msg.header.stamp)
        name = msg.name or str(msg.action)
        if not msg.approved:
            return self._ignore(name, "not approved")
        if not -self.cfg.clock_jump_tolerance_s <= age_s <= self.cfg.max_action_age_s:
            return self._ignore(name, f"stale: stamped {age_s:.2f} s ago (accepted "
                                      f"-{self.cfg.clock_jump_tolerance_s:.2f}.."
                                      f"{self.cfg.max_action_age_s:.2f} s)")
        try:
            cmd = command_for(int(msg.action), self.joints, self.cfg.commands)
        except ValueError as exc:
            return self._ignore(name, f"bad action: {exc}")
        self._execute(cmd)

    # -- outputs ---------------------------------------------------------------------------
    def _report(self, report: dict) -> None:
        self.report_pub.publish(String(data=json.dumps(report)))

    def _ignore(self, name: str, why: str) -> None:
        self._stop_base(f"ignored action {name}: {why}")
        self._report({"action": name, "status": "ignored", "note": why})

    def _execute(self, cmd: StretchCommand) -> None:
        if cmd.is_noop:
            self.get_logger().info(f"{cmd.action.name}: {cmd.note}")
            self._report(conv.command_report(cmd))
            return
        if cmd.twist is not None:
            self._switch_mode(cmd.mode)
            self._twist = conv.twist_msg(cmd.twist)
            self._twist_left = cmd.twist.num_messages(self.cfg.commands.twist_rate_hz)
            self._report(conv.command_report(cmd, messages=self._twist_left))
            self._twist_tick()  # the first twist now, the rest on the timer
            return
        self._stop_base("")  # zero twist before leaving navigation mode
        self._switch_mode(cmd.mode)
        traj = conv.trajectory_msg(cmd.trajectory)
        if self.trajectory_client is None or traj is None:
            self.get_logger().info(f"{cmd.action.name}: would send {cmd.trajectory} "
                                   f"({NO_CONTROL_MSGS})")
            self._report(conv.command_report(cmd, sent=False, note=NO_CONTROL_MSGS))
            return
        if not self.trajectory_client.server_is_ready():
            why = f"action server {self.cfg.trajectory_action} not ready: goal not sent"
            self.get_logger().warning(why, throttle_duration_sec=5.0)
            self._report(conv.command_report(cmd, sent=False, note=why))
            return
        from control_msgs.action import FollowJointTrajectory

        self.trajectory_client.send_goal_async(FollowJointTrajectory.Goal(trajectory=traj))
        self._report(conv.command_report(cmd, sent=True))

    def _switch_mode(self, mode: str | None) -> None:
        if mode is None or mode == self.mode:
            return
        client = self.mode_clients.get(mode)
        if client is not None and client.service_is_ready():
            from std_srvs.srv import Trigger

            client.call_async(Trigger.Request())
        elif client is not None:
            self.get_logger().warning(f"service switch_to_{mode}_mode not available "
                                      "(is the driver running?)", throttle_duration_sec=5.0)
        self.mode = mode

    def _twist_tick(self) -> None:
        if self._twist is None:
            return
        if self._twist_left > 0:
            self.cmd_vel.publish(self._twist)
            self._twist_left -= 1
        else:
            self._stop_base("")

    def _stop_base(self, why: str) -> None:
        """Publish one zero twist if a timed twist is running; forget it."""
        if why:
            self.get_logger().info(why, throttle_duration_sec=2.0)
        if self._twist is not None and self.mode in (MODE_NAVIGATION, None):
            self.cmd_vel.publish(Twist())  # zero twist: stop the base now
        self._twist, self._twist_left = None, 0


def main(args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C."""
    spin_node(StretchBridgeNode, args)


if __name__ == "__main__":
    main()
