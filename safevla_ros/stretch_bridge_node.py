"""Stretch bridge node: approved actions -> the real Stretch driver (``stretch_core``).

Plans each approved action with :func:`safevla_core.stretch_commands.command_for`: base moves as
twists on ``stretch/cmd_vel`` republished at ``twist_rate_hz`` for the planned duration (then a
zero twist; the driver itself stops after 0.5 s without twists), lift / arm / wrist / gripper as
FollowJointTrajectory goals, switching the driver's mode first. ``control_msgs`` (the action
type) and ``std_srvs`` (the mode services) may be absent (they are on PyPI-only installs): the
bridge then says so once and only logs the trajectory it would send. A stale-input veto from the
monitor, an old or unapproved action, or an unknown joint state means "do nothing" / stop.
"""

from __future__ import annotations

import sys

import rclpy
from geometry_msgs.msg import Twist
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import JointState

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


class StretchBridgeNode(Node):
    """Sends approved actions to the Stretch driver."""

    def __init__(self) -> None:
        """Declare parameters, create the driver interfaces that are installed."""
        super().__init__("safevla_stretch_bridge")
        self.cfg: BridgeNodeConfig = declare_dataclass(self, BridgeNodeConfig)
        self.joints: StretchJoints | None = None
        self.mode: str | None = None
        self._twist: Twist | None = None
        self._twist_left = 0
        self.cmd_vel = self.create_publisher(Twist, Topics.STRETCH_CMD_VEL, COMMAND_QOS)
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
            self.get_logger().warning("control_msgs is not installed: joint-trajectory goals are "
                                      "built and logged, not sent")
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

    def _on_joints(self, msg: JointState) -> None:
        try:
            self.joints = joints_from_joint_state(list(msg.name), list(msg.position))
        except (KeyError, ValueError) as exc:
            self.joints = None  # doubtful state: arm actions do nothing
            self.get_logger().warning(f"joint state unusable: {exc}", throttle_duration_sec=5.0)

    def _on_decision(self, msg: DiscreteAction) -> None:
        if not msg.approved and msg.verdict.startswith("stale_input"):
            self._stop(f"monitor reports stale inputs: {msg.verdict}")

    def _on_action(self, msg: DiscreteAction) -> None:
        now_s = self.get_clock().now().nanoseconds * 1e-9
        age_s = now_s - conv.stamp_to_s(msg.header.stamp)
        if not msg.approved or not (-0.5 <= age_s <= self.cfg.max_action_age_s):
            return self._stop(f"ignored action (approved={msg.approved}, age {age_s:.2f} s)")
        try:
            cmd = command_for(int(msg.action), self.joints, self.cfg.commands)
        except ValueError as exc:
            return self._stop(f"bad action: {exc}")
        self._execute(cmd)

    def _execute(self, cmd: StretchCommand) -> None:
        if cmd.is_noop:
            self.get_logger().info(f"{cmd.action.name}: {cmd.note}")
            return
        self._switch_mode(cmd.mode)
        if cmd.twist is not None:
            self._twist = conv.twist_msg(cmd.twist)
            self._twist_left = cmd.twist.num_messages(self.cfg.commands.twist_rate_hz)
            return
        self._stop("")
        traj = conv.trajectory_msg(cmd.trajectory)
        if self.trajectory_client is None or traj is None:
            self.get_logger().info(f"{cmd.action.name}: would send {cmd.trajectory}")
            return
        from control_msgs.action import FollowJointTrajectory

        self.trajectory_client.send_goal_async(FollowJointTrajectory.Goal(trajectory=traj))

    def _switch_mode(self, mode: str | None) -> None:
        if mode is None or mode == self.mode:
            return
        client = self.mode_clients.get(mode)
        if client is not None and client.service_is_ready():
            from std_srvs.srv import Trigger

            client.call_async(Trigger.Request())
        self.mode = mode

    def _twist_tick(self) -> None:
        if self._twist is None:
            return
        if self._twist_left > 0:
            self.cmd_vel.publish(self._twist)
            self._twist_left -= 1
        else:
            self._stop("")

    def _stop(self, why: str) -> None:
        if why:
            self.get_logger().info(why, throttle_duration_sec=2.0)
        if self._twist is not None and self.mode in (MODE_NAVIGATION, None):
            self.cmd_vel.publish(Twist())  # zero twist: stop the base now
        self._twist, self._twist_left = None, 0


def main(args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C."""
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = StretchBridgeNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
