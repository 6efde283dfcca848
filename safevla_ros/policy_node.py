"""Policy node: both cameras + the instruction -> the proposed discrete action at a control rate.

Pairs the navigation and manipulation images by stamp (within ``pair_tolerance_s``), acts once
per new pair with the policy's KV cache (:class:`safevla_core.agent.PolicyAgent`), and publishes
the proposal stamped with the images' stamp and the cost critic's prediction. Every received
instruction message starts a new episode (history reset), as does the ``policy/reset`` service.
A missing or corrupt checkpoint is reported and the node stays up publishing nothing.

The policy's object-in-hand input (REFERENCE.md, Policy) comes from ``in_hand_source``: the
simulator's world state (``held_object_id`` not empty), a ``std_msgs/Bool`` on ``in_hand`` (on the
robot, from whatever detects a grasp), or nowhere (always False); it is False until the first
message arrives.

A vetoed proposal still enters the policy's history: :class:`~safevla_core.agent.PolicyAgent`
appends every step it acts on to its KV cache and uses the chosen action as the next step's
previous action, and the node cannot take a step back out (the agent has no such API). After a
veto the robot has not moved, so the policy next sees the same scene with "previous action = the
vetoed one", which is what it also sees in training after an action that the simulator blocked
(a collision). The history thus counts proposals, not executed actions.
"""

from __future__ import annotations

from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, String

from safevla_ros import conversions as conv
from safevla_ros.msg import DiscreteAction, WorldStateStamped
from safevla_ros.params import (
    IN_HAND_TOPIC,
    IN_HAND_WORLD_STATE,
    PolicyNodeConfig,
    declare_dataclass,
)
from safevla_ros.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS, Topics
from safevla_ros.spin import spin_node


class PolicyNode(Node):
    """ROS wrapper of :class:`~safevla_core.agent.PolicyAgent`."""

    def __init__(self, **node_kwargs) -> None:
        """Declare parameters, load the checkpoint, set up I/O.

        Args:
            **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``).

        Raises:
            ValueError: On an invalid parameter value.
        """
        super().__init__("safevla_policy_node", **node_kwargs)
        self.cfg: PolicyNodeConfig = declare_dataclass(self, PolicyNodeConfig)
        self.agent = self._load_agent()
        self._latest: dict[str, tuple[float, object]] = {}
        self._last_pair_stamp = -1.0
        self._instruction: str | None = None
        self.in_hand = False
        if self.cfg.in_hand_source == IN_HAND_WORLD_STATE:
            self.create_subscription(WorldStateStamped, Topics.WORLD_STATE, self._on_world,
                                     STATE_QOS)
        elif self.cfg.in_hand_source == IN_HAND_TOPIC:
            self.create_subscription(Bool, Topics.IN_HAND, self._on_in_hand, STATE_QOS)
        self.pub = self.create_publisher(DiscreteAction, Topics.PROPOSED_ACTION, COMMAND_QOS)
        self.create_subscription(Image, Topics.NAV_IMAGE, lambda m: self._on_image("nav", m),
                                 SENSOR_QOS)
        self.create_subscription(Image, Topics.MANIP_IMAGE, lambda m: self._on_image("manip", m),
                                 SENSOR_QOS)
        self.create_subscription(String, Topics.INSTRUCTION, self._on_instruction, LATCHED_QOS)
        self._make_reset_service()
        if self.cfg.instruction:
            self._reset(self.cfg.instruction)
        self._period_s = 1.0 / self.cfg.control_rate_hz
        self._last_act_s = -float("inf")
        self.create_timer(self._period_s, self._tick)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _load_agent(self):
        from safevla_core.checkpoint import CheckpointError

        try:
            import torch

            torch.set_num_threads(self.cfg.torch_threads)
            from safevla_core.agent import PolicyAgent

            return PolicyAgent.from_checkpoint(self.cfg.checkpoint, self.cfg.deterministic,
                                               self.cfg.seed)
        except (CheckpointError, ValueError, OSError, RuntimeError) as exc:
            self.get_logger().error(f"cannot load checkpoint {self.cfg.checkpoint!r}: {exc}; "
                                    "publishing nothing")
            return None

    def _make_reset_service(self) -> None:
        try:
            from std_srvs.srv import Trigger
        except ImportError:
            self.get_logger().warning("std_srvs not installed: no policy/reset service "
                                      "(a new instruction message also resets)")
            return
        self.create_service(Trigger, Topics.POLICY_RESET_SRV, self._on_reset_srv)

    def _on_reset_srv(self, request, response):
        response.success = self._reset(self._instruction)
        response.message = "history reset" if response.success else "no valid instruction"
        return response

    def _reset(self, instruction: str | None) -> bool:
        self._last_pair_stamp = -1.0
        if self.agent is None or instruction is None:
            return False
        try:
            self.agent.reset(instruction)
        except ValueError as exc:
            self.get_logger().error(f"rejected instruction {instruction!r}: {exc}")
            self._instruction = None
            return False
        self._instruction = instruction
        return True

    def _on_instruction(self, msg: String) -> None:
        if self._reset(msg.data):
            self.get_logger().info(f"new episode: {msg.data!r}")

    def _on_world(self, msg: WorldStateStamped) -> None:
        self.in_hand = bool(msg.held_object_id)

    def _on_in_hand(self, msg: Bool) -> None:
        self.in_hand = bool(msg.data)

    def _on_image(self, which: str, msg: Image) -> None:
        try:
            rgb = conv.image_to_rgb(msg)
        except ValueError as exc:
            self.get_logger().warning(f"dropped {which} image: {exc}", throttle_duration_sec=5.0)
            return
        self._latest[which] = (conv.stamp_to_s(msg.header.stamp), rgb, msg.header.stamp)
        if self._now_s() - self._last_act_s >= self._period_s:
            self._tick()  # a complete new pair acts at once; the timer catches rate-limited ones

    def _pair(self):
        """Newest nav/manip pair not yet acted on, or None."""
        if "nav" not in self._latest or "manip" not in self._latest:
            return None
        (t_nav, nav, stamp), (t_manip, manip, _) = self._latest["nav"], self._latest["manip"]
        if abs(t_nav - t_manip) > self.cfg.pair_tolerance_s or t_nav == self._last_pair_stamp:
            return None
        now = self._now_s()
        if not (-self.cfg.max_image_age_s <= now - t_nav <= self.cfg.max_image_age_s):
            return None  # stale images, or stamped in the future (clock jump)
        return t_nav, nav, manip, stamp

    def _tick(self) -> None:
        if self.agent is None or self._instruction is None:
            return
        pair = self._pair()
        if pair is None:
            return
        t_nav, nav, manip, stamp = pair
        self._last_pair_stamp = t_nav
        self._last_act_s = self._now_s()
        w, h = self.agent.cfg.image_width, self.agent.cfg.image_height
        try:
            step = self.agent.act(conv.resize_nearest(nav, w, h),
                                  conv.resize_nearest(manip, w, h), in_hand=self.in_hand)
        except (ValueError, RuntimeError) as exc:
            self.get_logger().error(f"policy step failed: {exc}", throttle_duration_sec=5.0)
            return
        self.pub.publish(conv.action_to_msg(step.action, stamp, "policy_node",
                                            predicted_cost=step.value_cost))


def main(args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C."""
    spin_node(PolicyNode, args)


if __name__ == "__main__":
    main()
