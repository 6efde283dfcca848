"""Safety monitor node: per-step cost reports, the shield, and the input watchdog.

(a) In ``sim`` mode, pairs consecutive world states from the simulator, computes the step's costs
with :func:`safevla_core.costs.compute_costs` and publishes them with the episode totals.
(b) Passes each proposed action through :func:`safevla_core.shield.decide` and republishes it on
the approved topic only if approved; every decision, vetoes included, goes to
``safety/decisions`` with its reason. Evidence: the laser scan swept along the action (``scan``:
the robot's RPLidar, or the simulator's ray-cast twin), the depth camera when ``depth_topic`` is
set (its pixels as 3D points in base_link, checked against the swept footprint at the height of
each part of the robot; configured but missing, stale or unreadable = veto), the arm pose (joint
states on hardware, the world state in simulation), the runstop (hardware), the world state
(simulation), and the policy's optional learned per-action cost as a second opinion.
(c) Decisions on the right world: a proposal carries the stamp of the camera frames it was
computed from; it is judged only if valid nav and manip frames with that stamp arrived (within
``stamp_tolerance_s``) and, in simulation, against the world state and the scan with exactly
that stamp (and the depth image, when configured), which must still be the newest state. Anything
unmatched is a veto.
(d) A :class:`~safevla_core.shield.Watchdog` on every input: anything stale, a proposal whose
image stamp is too old or in the future, or a malformed message (counted and warned about at a
limited rate, never fed to the watchdog) means nothing is approved. Published on
``/diagnostics`` when ``diagnostic_msgs`` is installed.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan
from std_msgs.msg import Bool, String

from safevla_core.costs import EpisodeCostAccumulator, compute_costs
from safevla_core.shield import (
    ArmPose,
    Verdict,
    Watchdog,
    decide,
    depth_to_points,
    proposal_age_ok,
)
from safevla_core.stretch_commands import joints_from_joint_state
from safevla_ros import conversions as conv
from safevla_ros.diagnostics import DiagnosticsPublisher
from safevla_ros.msg import DiscreteAction, SafetyCost, WorldStateStamped
from safevla_ros.params import MonitorNodeConfig, declare_dataclass
from safevla_ros.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS, Topics, image_qos
from safevla_ros.spin import spin_node
from safevla_ros.trace import Trace

#: Matched-by-stamp history kept per input (ours: a few seconds at 5-50 Hz).
HISTORY = 64


class SafetyMonitorNode(Node):
    """Costs, shield and watchdog between the policy and the robot."""

    def __init__(self, **node_kwargs) -> None:
        """Declare parameters and set up I/O.

        Args:
            **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``).
        """
        super().__init__("safevla_safety_monitor", **node_kwargs)
        self.cfg: MonitorNodeConfig = declare_dataclass(
            self,
            MonitorNodeConfig,
            live=("shield.", "watchdog.", "stamp_tolerance_s"),
            on_change=self._on_params,
            fixed=("shield.enabled",),
        )
        if not self.cfg.shield.enabled:
            self.get_logger().warning(
                "shield.enabled is false: every valid action is approved (experiments only)"
            )
        self.sim = self.cfg.mode == "sim"
        self.trace = Trace("monitor")
        self._make_watchdog()
        self.worlds: OrderedDict[int, object] = OrderedDict()  # stamp key -> WorldState
        self.scans: OrderedDict[int, tuple] = OrderedDict()  # stamp key -> (points, bad)
        self.depths: OrderedDict[int, tuple] = OrderedDict()  # stamp key -> (points, bad)
        self.depth_intrinsics = None  # PinholeIntrinsics of the depth camera, once received
        self.frames = {"nav_camera": deque(maxlen=HISTORY), "manip_camera": deque(maxlen=HISTORY)}
        self.world = self.reachable = self.prev_action = self.arm = None
        self.exempt: frozenset[str] = frozenset()
        self.runstopped = True  # until the driver says otherwise
        self.totals = EpisodeCostAccumulator()
        self.rejected: dict[str, int] = {}
        self._warned: dict[str, float] = {}
        self.counts = {"approved": 0, "vetoed": 0}
        self._was_stale = True
        self.approved_pub = self.create_publisher(
            DiscreteAction, Topics.APPROVED_ACTION, COMMAND_QOS
        )
        self.decision_pub = self.create_publisher(DiscreteAction, Topics.DECISIONS, STATE_QOS)
        self.cost_pub = self.create_publisher(SafetyCost, Topics.COST, STATE_QOS)
        self.diagnostics = DiagnosticsPublisher(self, "safevla: safety monitor")
        iq = image_qos(self.cfg.image_reliability)
        for name, topic in (("nav_camera", Topics.NAV_IMAGE), ("manip_camera", Topics.MANIP_IMAGE)):
            self.create_subscription(
                Image, topic, self.trace.wrap(name, lambda m, n=name: self._on_image(n, m)), iq
            )
        self.create_subscription(
            LaserScan, Topics.SCAN, self.trace.wrap("scan", self._on_scan), SENSOR_QOS
        )
        if self.cfg.depth_topic:  # camera_info first: an image is read with the newest one
            self.create_subscription(
                CameraInfo, self.cfg.depth_camera_info_topic, self._on_depth_info, SENSOR_QOS
            )
            self.create_subscription(
                Image, self.cfg.depth_topic, self.trace.wrap("depth", self._on_depth), iq
            )
        if self.sim:
            self.create_subscription(
                WorldStateStamped,
                Topics.WORLD_STATE,
                self.trace.wrap("world", self._on_world),
                STATE_QOS,
            )
            self.create_subscription(PoseArray, Topics.REACHABLE, self._on_reachable, LATCHED_QOS)
            self.create_subscription(String, Topics.EPISODE_TARGETS, self._on_targets, LATCHED_QOS)
        else:
            self.create_subscription(Bool, Topics.STRETCH_RUNSTOP, self._on_runstop, STATE_QOS)
            self.create_subscription(
                JointState, Topics.STRETCH_JOINT_STATES, self._on_joints, STATE_QOS
            )
        # Created last: when evidence and a proposal wait in the same executor pass, rclpy runs
        # ready subscriptions in creation order, so the evidence is stored before the judgement.
        self.create_subscription(
            DiscreteAction,
            Topics.PROPOSED_ACTION,
            self.trace.wrap("proposal", self._on_proposal),
            COMMAND_QOS,
        )
        self.create_timer(1.0 / self.cfg.check_rate_hz, self._check_watchdog)

    # -- settings ----------------------------------------------------------------------------
    def _make_watchdog(self) -> None:
        w = self.cfg.watchdog
        inputs = {
            "nav_camera": w.camera_timeout_s,
            "manip_camera": w.camera_timeout_s,
            "policy": w.proposal_timeout_s,
            "scan": w.scan_timeout_s,
        }
        if self.cfg.depth_topic:
            inputs["depth"] = w.depth_timeout_s
        if self.sim:
            inputs["world_state"] = w.world_state_timeout_s
        else:
            inputs["runstop"] = w.runstop_timeout_s
            inputs["joint_states"] = w.joint_state_timeout_s
        self.watchdog = Watchdog(inputs, w.clock_jump_tolerance_s)

    def _on_params(self, cfg: MonitorNodeConfig) -> None:
        self.cfg = cfg
        self._make_watchdog()  # new timeouts; every input must arrive afresh

    # -- inputs ------------------------------------------------------------------------------
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reject(self, what: str, why: str) -> None:
        """Count a malformed input and warn at most every 2 s per kind of input."""
        self.rejected[what] = self.rejected.get(what, 0) + 1
        now = self._now_s()
        if abs(now - self._warned.get(what, -1e18)) >= 2.0:
            self._warned[what] = now
            self.get_logger().warning(f"rejected {what} ({self.rejected[what]} so far): {why}")

    def _on_image(self, name: str, msg: Image) -> None:
        try:
            conv.check_image(msg)
            t = conv.checked_stamp_s(msg.header.stamp)
        except ValueError as exc:
            return self._reject(f"{name} frame", str(exc))
        self.frames[name].append(t)
        self.watchdog.feed(name, self._now_s())

    def _on_scan(self, msg: LaserScan) -> None:
        try:
            key = conv.stamp_key(msg.header.stamp)
            conv.checked_stamp_s(msg.header.stamp)
            scan = conv.scan_msg_to_points(msg, self.cfg.laser_pose)
        except ValueError as exc:
            return self._reject("scan", str(exc))
        self.scans[key] = scan
        while len(self.scans) > HISTORY:
            self.scans.popitem(last=False)
        self.watchdog.feed("scan", self._now_s())

    def _on_depth_info(self, msg: CameraInfo) -> None:
        try:
            self.depth_intrinsics = conv.camera_info_to_intrinsics(msg)
        except ValueError as exc:
            self.depth_intrinsics = None
            self._reject("depth camera_info", str(exc))

    def _on_depth(self, msg: Image) -> None:
        """Depth image -> obstacle points in base_link, kept by stamp (like scans)."""
        try:
            key = conv.stamp_key(msg.header.stamp)
            conv.checked_stamp_s(msg.header.stamp)
            if self.depth_intrinsics is None:
                raise ValueError(f"no camera_info on {self.cfg.depth_camera_info_topic} yet")
            depth = depth_to_points(conv.depth_to_m(msg), self.depth_intrinsics, self.cfg.depth)
        except ValueError as exc:
            return self._reject("depth image", str(exc))
        self.depths[key] = depth
        while len(self.depths) > HISTORY:
            self.depths.popitem(last=False)
        self.watchdog.feed("depth", self._now_s())

    def _on_runstop(self, msg: Bool) -> None:
        self.runstopped = bool(msg.data)
        self.watchdog.feed("runstop", self._now_s())

    def _on_joints(self, msg: JointState) -> None:
        try:
            j = joints_from_joint_state(list(msg.name), list(msg.position))
            self.arm = ArmPose(j.lift_m, j.arm_m, j.wrist_yaw_rad)
        except (KeyError, ValueError) as exc:
            self.arm = None
            return self._reject("joint state", str(exc))
        self.watchdog.feed("joint_states", self._now_s())

    def _on_reachable(self, msg: PoseArray) -> None:
        try:
            self.reachable = conv.pose_array_to_reachable(msg)
        except ValueError as exc:
            self._reject("reachable positions", str(exc))

    def _on_targets(self, msg: String) -> None:
        try:
            self.exempt = conv.json_to_ids(msg.data)
        except ValueError as exc:
            self._reject("episode targets", str(exc))

    def _on_world(self, msg: WorldStateStamped) -> None:
        try:
            conv.checked_stamp_s(msg.header.stamp)
            curr = conv.msg_to_world_state(msg)
        except (ValueError, TypeError) as exc:
            return self._reject("world state", str(exc))
        self.worlds[conv.stamp_key(msg.header.stamp)] = curr
        while len(self.worlds) > HISTORY:
            self.worlds.popitem(last=False)
        self.watchdog.feed("world_state", self._now_s())
        prev, self.world = self.world, curr
        if prev is None or curr.step < prev.step or (curr.step == 0 and prev.step != 0):
            self.totals.reset()  # a new episode (or the first state seen)
            return
        if curr.step == prev.step:
            return  # the same state republished (the simulator's idle heartbeat)
        if curr.step != prev.step + 1 or self.prev_action is None:
            self.get_logger().warning(f"world state jumped {prev.step} -> {curr.step}: no cost")
            return
        try:
            costs = compute_costs(
                prev, curr, self.prev_action, self.cfg.costs, exempt_ids=self.exempt
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return self._reject("world state pair", f"costs not computable: {exc}")
        self.totals.add(costs)
        self.cost_pub.publish(
            conv.cost_to_msg(costs, self.totals, curr.step, msg.header.stamp, self.cfg.frame_id)
        )

    # -- decision ----------------------------------------------------------------------------
    def _evidence(self, msg: DiscreteAction, t: float) -> tuple[dict, str]:
        """The evidence matched to the proposal's stamp, or ``({}, why not)``."""
        tol = self.cfg.stamp_tolerance_s + 1e-9
        for name, stamps in self.frames.items():
            if not any(abs(s - t) <= tol for s in stamps):
                return {}, f"no valid {name} frame stamped {t:.3f} (the proposal's images)"
        key = conv.stamp_key(msg.header.stamp)
        depth: dict = {}
        if self.cfg.depth_topic:  # configured: required (the watchdog checks its freshness)
            found = self.depths.get(key) if self.sim else None
            if not self.sim and self.depths:
                found = next(reversed(self.depths.values()))  # the newest, checked fresh
            if found is None:
                where = f" stamped {t:.3f}" if self.sim else ""
                return {}, f"no depth image{where} on {self.cfg.depth_topic}"
            depth = {"depth_xyz": found[0], "depth_invalid_fraction": found[1]}
        if not self.sim:
            if not self.scans:
                return {}, "no laser scan"
            points, bad = next(reversed(self.scans.values()))  # the newest, checked fresh
            return {"scan_xy": points, "scan_invalid_fraction": bad, "arm": self.arm, **depth}, ""
        world = self.worlds.get(key)
        if world is None:
            return {}, f"no world state stamped {t:.3f} (the state the proposal answers)"
        if self.world is not None and world.step < self.world.step:
            return {}, f"proposal answers step {world.step}; the world is at {self.world.step}"
        scan = self.scans.get(key)
        if scan is None:
            return {}, f"no laser scan stamped {t:.3f}"
        return {
            "world": world,
            "reachable_xy": self.reachable,
            "scan_xy": scan[0],
            "scan_invalid_fraction": scan[1],
            **depth,
        }, ""

    def _on_proposal(self, msg: DiscreteAction) -> None:
        now = self._now_s()
        try:
            t = conv.checked_stamp_s(msg.header.stamp)
            conv.msg_to_action(msg)
        except ValueError as exc:
            return self._publish(msg, False, f"{Verdict.INVALID_INPUT.value}: {exc}")
        self.watchdog.feed("policy", now)
        stale = self.watchdog.stale(now)
        fresh, age_reason = proposal_age_ok(t, now, self.cfg.watchdog)
        if stale or not fresh:
            why = "; ".join(f"{k}: {v}" for k, v in stale.items()) or age_reason
            return self._publish(msg, False, f"{Verdict.STALE_INPUT.value}: {why}")
        evidence, why = self._evidence(msg, t)
        if not evidence:
            return self._publish(msg, False, f"{Verdict.NO_EVIDENCE.value}: {why}")
        decision = decide(
            int(msg.action),
            self.cfg.shield,
            previous_action=self.prev_action,
            predicted_cost=float(msg.predicted_cost),
            action_costs=list(msg.action_costs) or None,
            runstopped=self.runstopped and not self.sim,
            exempt_ids=self.exempt,
            **evidence,
        )
        verdict = "" if decision.approved else f"{decision.verdict.value}: {decision.reason}"
        if decision.approved:  # the executor's message first, the decision report after it
            self.prev_action = decision.action
            self.approved_pub.publish(
                conv.action_to_msg(
                    decision.action,
                    msg.header.stamp,
                    "safety_monitor",
                    True,
                    "",
                    float(msg.predicted_cost),
                    msg.action_costs,
                )
            )
            self.trace("approved", conv.stamp_key(msg.header.stamp))
        self._publish(msg, decision.approved, verdict)

    def _publish(self, msg: DiscreteAction, approved: bool, verdict: str) -> None:
        out = DiscreteAction(
            header=msg.header,
            action=msg.action,
            name=msg.name[:32],
            source="safety_monitor",
            approved=approved,
            verdict=verdict,
            predicted_cost=msg.predicted_cost,
        )
        self.decision_pub.publish(out)
        self.counts["approved" if approved else "vetoed"] += 1
        if not approved:  # at most one line per second per kind of veto
            kind = "veto " + verdict.split(":", 1)[0]
            now = self._now_s()
            if abs(now - self._warned.get(kind, -1e18)) >= 1.0:
                self._warned[kind] = now
                self.get_logger().warning(f"veto {msg.name[:32] or msg.action}: {verdict}")

    def _check_watchdog(self) -> None:
        stale = self.watchdog.stale(self._now_s())
        if stale and not self._was_stale:
            self.get_logger().warning(
                "inputs stale, approving nothing: "
                + "; ".join(f"{k}: {v}" for k, v in stale.items())
            )
        self._was_stale = bool(stale)
        problems = [f"{k} stale ({v})" for k, v in stale.items()]
        if not self.sim and self.runstopped:
            problems.append("runstop engaged")
        self.diagnostics.publish(
            problems,
            {
                "mode": self.cfg.mode,
                **{f"{k} rejected": v for k, v in self.rejected.items()},
                **self.counts,
            },
        )


def main(args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C."""
    spin_node(SafetyMonitorNode, args)


if __name__ == "__main__":
    main()
