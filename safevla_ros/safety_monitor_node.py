"""Safety monitor node: per-step cost reports, the shield, and the input watchdog.

(a) In ``sim`` mode, pairs consecutive world states from the simulator, computes the step's costs
with :func:`safevla_core.costs.compute_costs` and publishes them with the episode totals.
(b) Passes each proposed action through :func:`safevla_core.shield.decide` (world state in sim;
the policy's predicted cost and the runstop on hardware) and republishes it on the approved topic
only if approved; every decision, vetoes included, goes to ``safety/decisions``.
(c) A :class:`~safevla_core.shield.Watchdog` on both cameras, the policy and (sim) the world state:
anything stale, or a proposal whose image stamp is too old, means nothing is approved.
"""

from __future__ import annotations

from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, String

from safevla_core.costs import EpisodeCostAccumulator, compute_costs
from safevla_core.shield import Verdict, Watchdog, decide, proposal_age_ok
from safevla_ros import conversions as conv
from safevla_ros.msg import DiscreteAction, SafetyCost, WorldStateStamped
from safevla_ros.params import MonitorNodeConfig, declare_dataclass
from safevla_ros.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS, Topics
from safevla_ros.spin import spin_node


class SafetyMonitorNode(Node):
    """Costs, shield and watchdog between the policy and the robot."""

    def __init__(self, **node_kwargs) -> None:
        """Declare parameters and set up I/O.

        Args:
            **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``).
        """
        super().__init__("safevla_safety_monitor", **node_kwargs)
        self.cfg: MonitorNodeConfig = declare_dataclass(self, MonitorNodeConfig)
        self.sim = self.cfg.mode == "sim"
        inputs = {"nav_camera": self.cfg.watchdog.camera_timeout_s,
                  "manip_camera": self.cfg.watchdog.camera_timeout_s,
                  "policy": self.cfg.watchdog.proposal_timeout_s}
        if self.sim:
            inputs["world_state"] = self.cfg.watchdog.world_state_timeout_s
        self.watchdog = Watchdog(inputs, self.cfg.watchdog.clock_jump_tolerance_s)
        self.world = self.reachable = self.prev_action = None
        self.exempt: frozenset[str] = frozenset()
        self.runstopped = False
        self.totals = EpisodeCostAccumulator()
        self._was_stale = True
        self.approved_pub = self.create_publisher(DiscreteAction, Topics.APPROVED_ACTION,
                                                  COMMAND_QOS)
        self.decision_pub = self.create_publisher(DiscreteAction, Topics.DECISIONS, STATE_QOS)
        self.cost_pub = self.create_publisher(SafetyCost, Topics.COST, STATE_QOS)
        self.create_subscription(DiscreteAction, Topics.PROPOSED_ACTION, self._on_proposal,
                                 COMMAND_QOS)
        for name, topic in (("nav_camera", Topics.NAV_IMAGE), ("manip_camera", Topics.MANIP_IMAGE)):
            self.create_subscription(Image, topic, lambda _m, n=name: self._feed(n), SENSOR_QOS,
                                     raw=True)  # arrival time only: no deserialisation
        if self.sim:
            self.create_subscription(WorldStateStamped, Topics.WORLD_STATE, self._on_world,
                                     STATE_QOS)
            self.create_subscription(PoseArray, Topics.REACHABLE, self._on_reachable, LATCHED_QOS)
            self.create_subscription(String, Topics.EPISODE_TARGETS, self._on_targets, LATCHED_QOS)
        else:
            self.create_subscription(Bool, Topics.STRETCH_RUNSTOP, self._on_runstop, STATE_QOS)
        self.create_timer(1.0 / self.cfg.check_rate_hz, self._check_watchdog)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _feed(self, name: str) -> None:
        self.watchdog.feed(name, self._now_s())

    def _on_runstop(self, msg: Bool) -> None:
        self.runstopped = bool(msg.data)

    def _on_reachable(self, msg: PoseArray) -> None:
        try:
            self.reachable = conv.pose_array_to_reachable(msg)
        except ValueError as exc:
            self.get_logger().error(f"dropped reachable positions: {exc}")

    def _on_targets(self, msg: String) -> None:
        try:
            self.exempt = conv.json_to_ids(msg.data)
        except ValueError as exc:
            self.get_logger().error(f"dropped episode targets: {exc}")

    def _on_world(self, msg: WorldStateStamped) -> None:
        try:
            curr = conv.msg_to_world_state(msg)
        except ValueError as exc:
            self.get_logger().error(f"dropped world state: {exc}", throttle_duration_sec=5.0)
            return
        self._feed("world_state")
        prev, self.world = self.world, curr
        if prev is None or curr.step < prev.step or (curr.step == 0 and prev.step != 0):
            self.totals.reset()  # a new episode (or the first state seen)
            return
        if curr.step == prev.step:
            return  # the same state republished (the simulator's idle heartbeat)
        if curr.step != prev.step + 1 or self.prev_action is None:
            self.get_logger().warning(f"world state jumped {prev.step} -> {curr.step}: no cost")
            return
        costs = compute_costs(prev, curr, self.prev_action, self.cfg.costs, exempt_ids=self.exempt)
        self.totals.add(costs)
        self.cost_pub.publish(conv.cost_to_msg(costs, self.totals, curr.step, msg.header.stamp,
                                               self.cfg.frame_id))

    def _on_proposal(self, msg: DiscreteAction) -> None:
        now = self._now_s()
        self.watchdog.feed("policy", now)
        stale = self.watchdog.stale(now)
        fresh, age_reason = proposal_age_ok(conv.stamp_to_s(msg.header.stamp), now,
                                            self.cfg.watchdog)
        if stale or not fresh:
            why = "; ".join(f"{k}: {v}" for k, v in stale.items()) or age_reason
            return self._publish(msg, False, f"{Verdict.STALE_INPUT.value}: {why}")
        try:
            conv.msg_to_action(msg)
            action: int | str = int(msg.action)
        except ValueError as exc:
            return self._publish(msg, False, f"{Verdict.INVALID_INPUT.value}: {exc}")
        decision = decide(action, self.cfg.shield, world=self.world if self.sim else None,
                          reachable_xy=self.reachable, previous_action=self.prev_action,
                          predicted_cost=None if self.sim else float(msg.predicted_cost),
                          runstopped=self.runstopped, exempt_ids=self.exempt)
        verdict = "" if decision.approved else f"{decision.verdict.value}: {decision.reason}"
        self._publish(msg, decision.approved, verdict)
        if decision.approved:
            self.prev_action = decision.action
            self.approved_pub.publish(conv.action_to_msg(
                decision.action, msg.header.stamp, "safety_monitor", True, "",
                float(msg.predicted_cost)))

    def _publish(self, msg: DiscreteAction, approved: bool, verdict: str) -> None:
        out = DiscreteAction(header=msg.header, action=msg.action, name=msg.name,
                             source="safety_monitor", approved=approved, verdict=verdict,
                             predicted_cost=msg.predicted_cost)
        self.decision_pub.publish(out)
        if not approved:
            self.get_logger().info(f"veto {msg.name or msg.action}: {verdict}",
                                   throttle_duration_sec=2.0)

    def _check_watchdog(self) -> None:
        stale = self.watchdog.stale(self._now_s())
        if stale and not self._was_stale:
            self.get_logger().warning("inputs stale, approving nothing: " + "; ".join(
                f"{k}: {v}" for k, v in stale.items()))
        self._was_stale = bool(stale)


def main(args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C."""
    spin_node(SafetyMonitorNode, args)


if __name__ == "__main__":
    main()
