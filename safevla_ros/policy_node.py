"""Policy node: both cameras + the instruction -> the proposed discrete action, one step at a time.

Pairs the navigation and manipulation frames by stamp (within ``pair_tolerance_s``) and acts once
per new pair with the policy's KV cache (:class:`safevla_core.agent.PolicyAgent`), publishing the
proposal stamped with the frames' stamp (the monitor matches it to the state it answers).
Step-synchronous (``step_synchronous``, the default): after a proposal the node waits until the
monitor vetoed it (``safety/decisions``) or the executor reported it finished
(``executor/status``: any state but BUSY), then acts on the first pair stamped at or after the
finish, so actions never pile up on the robot. After ``step_timeout_s`` without an answer it
warns and goes on (the monitor still judges every proposal).

Images: subscribed reliable keep-last-1 by default (``image_reliability``; see
:data:`safevla_ros.qos.IMAGE_QOS` for why: large best-effort frames were lost on this machine),
raw or JPEG/PNG-compressed (``image_transport``). Every dropped frame (undecodable, stale, stamped
in the future, unpaired) is counted by reason and warned about at a limited rate. Frames are
cropped to the policy's aspect ratio (:func:`safevla_core.policy.preprocess.
center_crop_to_aspect`); the policy's own encoder then resizes them exactly as in training.

Every received instruction message starts a new episode (history reset), as does the
``policy/reset`` service; the new episode starts from frames newer than the last ones acted on (in
the simulator those show the previous episode's final state). A missing or corrupt checkpoint is
reported and the node stays up publishing nothing. A vetoed proposal still enters the policy's
history (the agent cannot take a step back out): after a veto the robot has not moved, as after a
blocked action in training. The object-in-hand input comes from ``in_hand_source`` (simulator world
state, a ``std_msgs/Bool`` on ``in_hand``, or nowhere); False until the first message arrives.
"""

from __future__ import annotations

from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, String

from safevla_core.policy.preprocess import center_crop_to_aspect
from safevla_ros import conversions as conv
from safevla_ros.msg import ActionStatus, DiscreteAction, WorldStateStamped
from safevla_ros.params import (
    IN_HAND_TOPIC,
    IN_HAND_WORLD_STATE,
    PolicyNodeConfig,
    declare_dataclass,
)
from safevla_ros.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS, Topics, image_qos
from safevla_ros.spin import spin_node
from safevla_ros.trace import Trace


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
        self.trace = Trace("policy")
        self.agent = self._load_agent()
        self._latest: dict[str, tuple[float, object]] = {}
        self._last_pair_stamp = -1.0
        self._instruction: str | None = None
        self._waiting: tuple[int, float] | None = None  # (proposal stamp key, since s)
        self._min_stamp_s = -1.0  # act only on frames stamped at or after this
        self.dropped: dict[str, int] = {}
        self._warned: dict[str, float] = {}
        self.proposals = 0
        self.in_hand = False
        if self.cfg.in_hand_source == IN_HAND_WORLD_STATE:
            self.create_subscription(
                WorldStateStamped, Topics.WORLD_STATE, self._on_world, STATE_QOS
            )
        elif self.cfg.in_hand_source == IN_HAND_TOPIC:
            self.create_subscription(Bool, Topics.IN_HAND, self._on_in_hand, STATE_QOS)
        self.pub = self.create_publisher(DiscreteAction, Topics.PROPOSED_ACTION, COMMAND_QOS)
        qos = image_qos(self.cfg.image_reliability)
        compressed = self.cfg.image_transport == "compressed"
        for which, topic in (("nav", Topics.NAV_IMAGE), ("manip", Topics.MANIP_IMAGE)):
            self.create_subscription(
                CompressedImage if compressed else Image,
                topic + "/compressed" if compressed else topic,
                self.trace.wrap(which, lambda m, w=which: self._on_image(w, m)),
                qos,
            )
        self.create_subscription(
            DiscreteAction,
            Topics.DECISIONS,
            self.trace.wrap("decision", self._on_decision),
            STATE_QOS,
        )
        self.create_subscription(
            ActionStatus,
            Topics.ACTION_STATUS,
            self.trace.wrap("status", self._on_status),
            STATE_QOS,
        )
        self.create_subscription(
            String,
            Topics.INSTRUCTION,
            self.trace.wrap("instruction", self._on_instruction),
            LATCHED_QOS,
        )
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

            path = self.cfg.checkpoint
            if not path:
                from safevla_core.shipped import default_eval_checkpoint

                shipped = default_eval_checkpoint(self.cfg.task)
                path = str(shipped) if shipped is not None else ""
                self.get_logger().info(f"no checkpoint given: the shipped policy {path!r}")
            return PolicyAgent.from_checkpoint(
                path, self.cfg.deterministic, self.cfg.seed, temperature=self.cfg.temperature
            )
        except (CheckpointError, ValueError, OSError, RuntimeError) as exc:
            self.get_logger().error(
                f"cannot load checkpoint {self.cfg.checkpoint!r}: {exc}; publishing nothing"
            )
            return None

    def _make_reset_service(self) -> None:
        try:
            from std_srvs.srv import Trigger
        except ImportError:
            self.get_logger().warning(
                "std_srvs not installed: no policy/reset service "
                "(a new instruction message also resets)"
            )
            return
        self.create_service(Trigger, Topics.POLICY_RESET_SRV, self._on_reset_srv)

    def _on_reset_srv(self, request, response):
        response.success = self._reset(self._instruction)
        response.message = "history reset" if response.success else "no valid instruction"
        return response

    def _reset(self, instruction: str | None) -> bool:
        # ``_last_pair_stamp`` is kept: a new episode never starts from the pair the last step
        # acted on. In the simulator that pair is the previous episode's final state (gone by
        # now), and re-acting on it after the instruction arrived sent a second proposal for
        # an old stamp (approved again by the monitor, rejected by the simulator, ~150-200 ms
        # old: measure_latency.py's p99 tail). Frames newer than it are used at once.
        self._waiting = None
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
            # The new episode's first frames may be here already (the image subscriptions run
            # first when both are ready): act on them now, not on the next control tick.
            self._tick_if_due()

    def _on_world(self, msg: WorldStateStamped) -> None:
        self.in_hand = bool(msg.held_object_id)

    def _on_in_hand(self, msg: Bool) -> None:
        self.in_hand = bool(msg.data)

    # -- step-synchronous handshake ---------------------------------------------------------
    def _answered(self, stamp, finished_s: float) -> None:
        if self._waiting is not None and conv.stamp_key(stamp) == self._waiting[0]:
            self._waiting = None
            self._min_stamp_s = max(self._min_stamp_s, finished_s)
            # Act at once if the frames of the finished state are already here (the simulator
            # publishes them before its report), not on the next control tick: waiting for the
            # timer added up to one control period to every step's latency.
            self._tick_if_due()

    def _tick_if_due(self) -> None:
        if self._now_s() - self._last_act_s >= self._period_s:
            self._tick()
        else:
            self.trace("skip", why="period")

    def _on_decision(self, msg: DiscreteAction) -> None:
        if not msg.approved:  # vetoed: nothing moves; act on frames newer than the proposal
            self._answered(msg.header.stamp, conv.stamp_to_s(msg.header.stamp) + 1e-9)

    def _on_status(self, msg: ActionStatus) -> None:
        if msg.state != ActionStatus.BUSY:
            self._answered(msg.header.stamp, conv.stamp_to_s(msg.finished))

    # -- images ------------------------------------------------------------------------------
    def _drop(self, reason: str, detail: str) -> None:
        """Count a dropped frame and warn at most every 5 s per reason."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        now = self._now_s()
        if abs(now - self._warned.get(reason, -1e18)) >= 5.0:
            self._warned[reason] = now
            self.get_logger().warning(
                f"dropped frame ({reason}, {self.dropped[reason]} so far): {detail}"
            )

    def _on_image(self, which: str, msg) -> None:
        try:
            t = conv.checked_stamp_s(msg.header.stamp)
            if isinstance(msg, Image):
                conv.check_image(msg)  # cheap; decoding waits until the frame is acted on
        except ValueError as exc:
            return self._drop("invalid", f"{which}: {exc}")
        age = self._now_s() - t
        if age > self.cfg.max_image_age_s:
            return self._drop("stale", f"{which} frame {age:.2f} s old")
        if age < -self.cfg.max_image_age_s:
            return self._drop("future", f"{which} frame stamped {-age:.2f} s in the future")
        self._latest[which] = (t, msg)
        self._tick_if_due()  # a complete new pair acts at once; the timer catches rate-limited ones

    def _decode(self, msg):
        rgb = conv.image_to_rgb(msg) if isinstance(msg, Image) else conv.compressed_to_rgb(msg)
        return center_crop_to_aspect(rgb, self.agent.cfg.image_width, self.agent.cfg.image_height)

    def _pair(self):
        """Newest nav/manip pair not yet acted on, or None."""
        if "nav" not in self._latest or "manip" not in self._latest:
            return None
        (t_nav, nav), (t_manip, manip) = self._latest["nav"], self._latest["manip"]
        if t_nav == self._last_pair_stamp or t_nav < self._min_stamp_s:
            return None
        if abs(t_nav - t_manip) > self.cfg.pair_tolerance_s:
            return None
        now = self._now_s()
        if not (-self.cfg.max_image_age_s <= now - t_nav <= self.cfg.max_image_age_s):
            return None  # stale by now, or stamped in the future (clock jump)
        return t_nav, nav, manip

    def _tick(self) -> None:
        if self.agent is None or self._instruction is None:
            return
        if self._waiting is not None:
            waited = self._now_s() - self._waiting[1]
            if waited < self.cfg.step_timeout_s and waited >= 0:
                return self.trace("skip", self._waiting[0], why="waiting")
            self.get_logger().warning(
                f"no veto or executor report for the last proposal after {waited:.1f} s; going on"
            )
            self._waiting = None
        pair = self._pair()
        if pair is None:
            return self.trace("skip", why="no pair")
        t_nav, nav_msg, manip_msg = pair
        self.trace("act", conv.stamp_key(nav_msg.header.stamp))
        self._last_pair_stamp = t_nav
        self._last_act_s = self._now_s()
        try:
            nav, manip = self._decode(nav_msg), self._decode(manip_msg)
        except (ValueError, ImportError) as exc:
            return self._drop("undecodable", str(exc))
        try:
            step = self.agent.act(nav, manip, in_hand=self.in_hand)
        except (ValueError, RuntimeError) as exc:
            self.get_logger().error(f"policy step failed: {exc}", throttle_duration_sec=5.0)
            return
        stamp = nav_msg.header.stamp
        self.trace("acted", conv.stamp_key(stamp))
        if self.cfg.step_synchronous:
            self._waiting = (conv.stamp_key(stamp), self._now_s())
        self.proposals += 1
        # A learned per-action one-step cost head Q_c(s, .) (float[20], per-step cost units),
        # when the agent provides one, goes along as the shield's second opinion.
        q = getattr(step, "action_costs", None)
        self.pub.publish(
            conv.action_to_msg(
                step.action,
                stamp,
                "policy_node",
                predicted_cost=step.value_cost,
                action_costs=() if q is None else q,
            )
        )
        self.trace("published", conv.stamp_key(stamp))


def main(args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C."""
    spin_node(PolicyNode, args)


if __name__ == "__main__":
    main()
