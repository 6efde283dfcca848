"""Bad input against the running nodes: alive, warned, nothing approved (issue 10).

Each case of the issue leaves the node alive, warned about in its log, and nothing approved or
executed.

One set of real processes for the module, each in its own namespace: a hardware-mode monitor
(``/hw``), a sim-mode monitor (``/simmon``), a simulator node (``/sim``) and a policy node
(``/p1``, untrained checkpoint). The test process feeds them from a probe node, and plays the
safety monitor towards the simulator with a node named ``safevla_safety_monitor`` in ``/sim``
(the only publisher the simulator accepts). Every wait is on an event (a decision, a status, a
service reply, a log line) with a timeout; none is a fixed sleep used as synchronisation.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from test.ros.test_nodes_integration import (
    logs,
    node_command,
    running,
    write_untrained_checkpoint,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

READY_TIMEOUT_S = 120.0
EVENT_TIMEOUT_S = 20.0
#: Wall 0.25 m ahead of base_link in the scan: ``m`` (front edge 0.058 + 0.2 + 0.03 margin)
#: would sweep into it; ``b`` would not.
WALL_AHEAD_M = 0.25
#: The probe feeds no depth image: both monitors run laser-only (``depth_topic:=""``); the depth
#: camera's cases, missing and stale included, are test/ros/test_depth_shield.py's.
NO_DEPTH = '""'


def _deep_qos():
    """Reliable, keep last 200: the probe records every message even when it spins late."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)


class Rig:
    """The processes, the probe nodes and their recorders."""

    def __init__(self, context, log_dir: Path, procs: dict) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context, self.log_dir, self.procs = context, log_dir, procs
        self.node = rclpy.create_node("bad_input_probe", context=context)
        self.monitor_twin = rclpy.create_node(
            "safevla_safety_monitor", namespace="/sim", context=context
        )
        self.rogue = rclpy.create_node("rogue_publisher", namespace="/sim", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        for n in (self.node, self.monitor_twin, self.rogue):
            self.executor.add_node(n)
        self.pubs: dict = {}
        self.got: dict[str, list] = {}
        self.hw_runstop_on = True  # publish the runstop state (False: it goes stale)
        self.last_hw_stamp = None
        self.node.create_timer(0.1, self._feed_hw)

    # -- plumbing ------------------------------------------------------------------------
    def pub(self, ns: str, msg_type, topic: str, qos, node=None):
        key = (ns, topic, id(node))
        if key not in self.pubs:
            self.pubs[key] = (node or self.node).create_publisher(msg_type, f"/{ns}/{topic}", qos)
        return self.pubs[key]

    def record(self, ns: str, msg_type, topic: str, qos) -> list:
        key = f"/{ns}/{topic}"
        if key not in self.got:
            self.got[key] = []
            self.node.create_subscription(msg_type, key, self.got[key].append, qos)
        return self.got[key]

    def spin_until(self, done, timeout_s: float = EVENT_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if done():
                return True
            for name, p in self.procs.items():
                assert p.poll() is None, f"{name} exited\n" + logs(self.log_dir)
        return False

    def log_says(self, name: str, text: str, timeout_s: float = EVENT_TIMEOUT_S) -> bool:
        path = self.log_dir / f"{name}.log"
        return self.spin_until(lambda: text in path.read_text(), timeout_s)

    def alive(self) -> None:
        for name, p in self.procs.items():
            assert p.poll() is None, f"{name} died\n" + logs(self.log_dir)

    def now(self):
        return self.node.get_clock().now().to_msg()

    # -- inputs --------------------------------------------------------------------------
    def frames(self, ns: str, stamp, width=8, height=8, encoding="rgb8", data=None) -> None:
        from sensor_msgs.msg import Image

        from safevla_ros.qos import IMAGE_QOS, Topics

        ch = 2 if encoding == "16UC1" else 3
        for topic in (Topics.NAV_IMAGE, Topics.MANIP_IMAGE):
            msg = Image(height=height, width=width, encoding=encoding, step=width * ch)
            msg.data = bytes(width * height * ch) if data is None else data
            msg.header.stamp = stamp
            self.pub(ns, Image, topic, IMAGE_QOS).publish(msg)

    def scan(self, ns: str, stamp, wall_m: float | None) -> None:
        """A 360-beam scan with an optional wall ahead.

        The laser frame is turned by pi in base_link, so beam ``i`` (laser angle
        ``-pi + i deg``) looks along bearing ``i`` deg in base_link: beams 0..45 and 315..359
        cover the 90 deg ahead.
        """
        from sensor_msgs.msg import LaserScan

        from safevla_ros.qos import SENSOR_QOS, Topics

        ranges = [math.inf] * 360
        if wall_m is not None:  # a wall perpendicular to x at wall_m + laser offset
            for i in [*range(0, 46), *range(315, 360)]:
                bearing = math.radians(i)
                ranges[i] = (wall_m - 0.004) / math.cos(bearing)
        msg = LaserScan(
            angle_min=-math.pi,
            angle_increment=2 * math.pi / 360,
            angle_max=-math.pi + 359 * 2 * math.pi / 360,
            range_min=0.15,
            range_max=12.0,
            ranges=ranges,
        )
        msg.header.stamp = stamp
        self.pub(ns, LaserScan, Topics.SCAN, SENSOR_QOS).publish(msg)

    def _feed_hw(self) -> None:
        """Hardware inputs at 10 Hz: frames, a clear scan, joints, the runstop (off)."""
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool

        from safevla_ros.qos import STATE_QOS, Topics

        stamp = self.now()
        self.last_hw_stamp = stamp
        self.frames("hw", stamp)
        self.scan("hw", stamp, None)
        self.pub("hw", JointState, Topics.STRETCH_JOINT_STATES, STATE_QOS).publish(
            JointState(
                name=["joint_lift", "wrist_extension", "joint_wrist_yaw"],
                position=[0.2, 0.0, math.radians(190)],
            )
        )
        if self.hw_runstop_on:
            self.pub("hw", Bool, Topics.STRETCH_RUNSTOP, STATE_QOS).publish(Bool(data=False))

    def world(
        self, ns: str, stamp, step: int, objects=(("vase1", "Vase", (2.0, 0.0, 0.8)),), collided=()
    ) -> None:
        from safevla_core.world import WorldState
        from safevla_ros import conversions as conv
        from safevla_ros.msg import WorldStateStamped
        from safevla_ros.qos import STATE_QOS, Topics

        ws = WorldState(
            step=step,
            object_ids=tuple(o[0] for o in objects),
            object_types=tuple(o[1] for o in objects),
            object_positions=np.array([o[2] for o in objects]).reshape(-1, 3),
            object_quats=np.tile([1.0, 0, 0, 0], (len(objects), 1)),
            robot_pose=np.zeros(3),
            lift_m=0.2,
            wrist_yaw_rad=math.radians(190),
        )
        msg = conv.world_state_to_msg(ws, stamp, "map")
        msg.collided_ids = list(collided)
        self.pub(ns, WorldStateStamped, Topics.WORLD_STATE, STATE_QOS).publish(msg)

    def sim_state(self, stamp, step: int, wall_m: float | None, **kw) -> None:
        """One simulator publication for the sim monitor: world, scan, frames, one stamp."""
        self.world("simmon", stamp, step, **kw)
        self.scan("simmon", stamp, wall_m)
        self.frames("simmon", stamp)

    def decide(self, ns: str, stamp, action: int, cost: float = 0.1, name: str = ""):
        """Publish a proposal to the monitor in ``ns``; return its decision."""
        from safevla_ros import conversions as conv
        from safevla_ros.msg import DiscreteAction
        from safevla_ros.qos import COMMAND_QOS, Topics

        decisions = self.record(ns, DiscreteAction, Topics.DECISIONS, _deep_qos())
        approved = self.record(ns, DiscreteAction, Topics.APPROVED_ACTION, _deep_qos())
        msg = DiscreteAction(action=action, name=name, source="probe", predicted_cost=cost)
        msg.header.stamp = stamp
        key = conv.stamp_key(stamp)
        n = len(decisions)
        self.pub(ns, DiscreteAction, Topics.PROPOSED_ACTION, COMMAND_QOS).publish(msg)
        assert self.spin_until(lambda: len(decisions) > n), f"no decision in {ns}"
        d = decisions[-1]
        if not d.approved:  # nothing may appear on the approved topic for it
            self.spin_until(lambda: False, 0.2)
            assert not any(
                conv.stamp_key(a.header.stamp) == key and a.action == action for a in approved
            )
        return d

    def decide_when_ready(self, ns: str, stamp, action: int, timeout_s: float = 10.0):
        """Propose until the monitor judges with its evidence in; return that decision.

        Not ``no_evidence`` / ``stale_input`` for lack of it: the inputs travel on other topics
        than the proposal, so the first proposal may overtake them.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            d = self.decide(ns, stamp, action)
            waiting = d.verdict.startswith(("no_evidence", "stale_input"))
            if not waiting or time.monotonic() > deadline:
                return d

    def hw_decide(self, action: int, **kw):
        """Decide on the next hardware frames (a stamp of its own for every proposal)."""
        before = self.last_hw_stamp
        assert self.spin_until(lambda: self.last_hw_stamp is not before)
        self.spin_until(lambda: False, 0.05)  # let the frames of that stamp reach the monitor
        return self.decide("hw", self.last_hw_stamp, action, **kw)

    # -- simulator -------------------------------------------------------------------------
    def sim_current_stamp(self):
        from safevla_ros.msg import WorldStateStamped
        from safevla_ros.qos import STATE_QOS, Topics

        worlds = self.record("sim", WorldStateStamped, Topics.WORLD_STATE, STATE_QOS)
        n = len(worlds)
        assert self.spin_until(lambda: len(worlds) > n, 30.0), "simulator publishes nothing"
        return worlds[-1].header.stamp

    def sim_execute(self, action: int, stamp, node=None):
        """Send an approved action to the simulator; return its ActionStatus."""
        from safevla_ros import conversions as conv
        from safevla_ros.msg import ActionStatus, DiscreteAction
        from safevla_ros.qos import COMMAND_QOS, Topics

        statuses = self.record("sim", ActionStatus, Topics.ACTION_STATUS, _deep_qos())
        node = node or self.monitor_twin
        key = conv.stamp_key(stamp)
        pub = self.pub("sim", DiscreteAction, Topics.APPROVED_ACTION, COMMAND_QOS, node=node)
        assert self.spin_until(lambda: pub.get_subscription_count() >= 1)
        pub.publish(conv.action_to_msg(action, stamp, "safety_monitor", approved=True))
        assert self.spin_until(
            lambda: any(conv.stamp_key(s.header.stamp) == key for s in statuses)
        ), "no status from the simulator"
        return [s for s in statuses if conv.stamp_key(s.header.stamp) == key][-1]

    def reset(self, **fields):
        from safevla_ros.qos import Topics
        from safevla_ros.srv import ResetEpisode

        client = self.node.create_client(ResetEpisode, f"/sim/{Topics.RESET_EPISODE_SRV}")
        assert self.spin_until(client.service_is_ready, 60.0)
        req = ResetEpisode.Request(house_index=-1, seed=-1)
        for k, v in fields.items():
            setattr(req, k, v)
        future = client.call_async(req)
        assert self.spin_until(future.done, 120.0), "reset not answered"
        return future.result()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """Start the nodes once for the module; yield a :class:`Rig`."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    from safevla_ros.qos import Topics

    tmp = tmp_path_factory.mktemp("bad_input")
    ckpt = write_untrained_checkpoint(tmp / "untrained.pt")
    ns = lambda n: ["-r", f"__ns:=/{n}"]  # noqa: E731
    commands = {
        "monitor_hw": node_command(
            "safety_monitor_node",
            "safety_monitor.yaml",
            {
                "mode": "hardware",
                "watchdog.scan_timeout_s": 1.0,
                "watchdog.joint_state_timeout_s": 1.0,
                "depth_topic": NO_DEPTH,
            },
        )
        + ns("hw"),
        "monitor_sim": node_command(
            "safety_monitor_node", "safety_monitor.yaml", {"depth_topic": NO_DEPTH}
        )
        + ns("simmon"),
        "sim": node_command(
            "sim_node",
            "sim_node.yaml",
            {"split": "train", "house_index": 0, "seed": 1, "idle_republish_s": 0.5},
        )
        + ns("sim"),
        "policy": node_command(
            "policy_node", "policy_node.yaml", {"checkpoint": ckpt, "max_image_age_s": 1.0}
        )
        + ns("p1"),
    }
    context = Context()
    rclpy.init(context=context)
    try:
        with running(commands, tmp) as procs:
            r = Rig(context, tmp, procs)
            ready = [
                ("/hw/" + Topics.DECISIONS, True),
                ("/simmon/" + Topics.DECISIONS, True),
                ("/sim/" + Topics.WORLD_STATE, True),
                ("/p1/" + Topics.INSTRUCTION, False),
            ]
            for topic, pubs in ready:
                count = r.node.count_publishers if pubs else r.node.count_subscribers
                assert r.spin_until(lambda c=count, t=topic: c(t) >= 1, READY_TIMEOUT_S), (
                    f"no endpoint on {topic}\n" + logs(tmp)
                )
            yield r
            r.alive()
    finally:
        context.try_shutdown()


# -- simulator -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"task": "fly"}, "unknown task 'fly'"),
        ({"house_split": "bogus"}, "unknown split 'bogus'"),
        ({"target_type": "Unicorn"}, "unknown target type 'Unicorn'"),
        ({"house_index": 100000}, "house_index 100000 outside split"),
    ],
)
def test_sim_survives_a_failed_reset_and_still_executes(rig, fields, reason):
    res = rig.reset(**fields)
    assert not res.success and reason in res.message
    assert rig.log_says("sim", reason)
    st = rig.sim_execute(0, rig.sim_current_stamp())  # the old episode is untouched
    assert st.state in (st.DONE, st.FAILED), st.detail
    rig.alive()


def test_sim_answers_concurrent_resets(rig):
    from safevla_ros.qos import Topics
    from safevla_ros.srv import ResetEpisode

    client = rig.node.create_client(ResetEpisode, f"/sim/{Topics.RESET_EPISODE_SRV}")
    assert rig.spin_until(client.service_is_ready, 60.0)
    futures = [
        client.call_async(ResetEpisode.Request(task=t, house_index=-1, seed=s))
        for t, s in (("objnav", 1), ("fly", 2), ("objnav", 3))
    ]
    assert rig.spin_until(lambda: all(f.done() for f in futures), 180.0)
    assert [f.result().success for f in futures] == [True, False, True]
    rig.alive()


def test_sim_rejects_approvals_stamped_in_the_future(rig):
    from safevla_ros import conversions as conv

    future = conv.s_to_stamp(conv.stamp_to_s(rig.now()) + 1e6)
    st = rig.sim_execute(0, future)
    assert st.state == st.REJECTED and "not decided on the current state" in st.detail
    assert rig.log_says("sim", "rejected action m")
    rig.alive()


def test_sim_rejects_approvals_from_another_publisher(rig):
    st = rig.sim_execute(0, rig.sim_current_stamp(), node=rig.rogue)
    assert st.state == st.REJECTED and "unauthenticated" in st.detail
    assert "rogue_publisher" in st.detail
    assert rig.log_says("sim", "publishers other than the safety monitor")
    rig.alive()


# -- monitor, hardware mode -------------------------------------------------------------------
def test_hw_approves_with_fresh_evidence(rig):
    rig.spin_until(lambda: False, 1.5)  # inputs flow (timer) before judging
    d = rig.hw_decide(1)  # b: nothing behind in the clear scan
    assert d.approved, d.verdict


def test_hw_vetoes_a_predicted_cost_of_minus_1e9(rig):
    d = rig.hw_decide(1, cost=-1e9)
    assert not d.approved and d.verdict.startswith("invalid_input") and "-1000000000" in d.verdict
    assert rig.log_says("monitor_hw", "invalid_input: reported state cost")


def test_hw_vetoes_a_stamp_with_nanosec_3e9(rig):
    from builtin_interfaces.msg import Time

    stamp = Time(sec=rig.now().sec, nanosec=3_000_000_000 % 2**32)
    d = rig.decide("hw", stamp, 1)
    assert not d.approved and "nanosec" in d.verdict


def test_hw_vetoes_when_the_runstop_state_goes_stale(rig):
    rig.hw_runstop_on = False
    try:
        assert rig.log_says("monitor_hw", "runstop: silent for")  # the watchdog's warning
        d = rig.hw_decide(1)
        assert not d.approved and "runstop" in d.verdict and "stale_input" in d.verdict
    finally:
        rig.hw_runstop_on = True
    rig.spin_until(lambda: False, 1.5)
    assert rig.hw_decide(1).approved


@pytest.mark.parametrize("size, encoding", [((0, 0), "rgb8"), ((8, 8), "16UC1")])
def test_undecodable_frames_are_not_live_cameras(rig, size, encoding):
    # The sim monitor gets a world state and scan but only undecodable frames for this stamp.
    stamp = rig.now()
    rig.world("simmon", stamp, 0)
    rig.scan("simmon", stamp, None)
    data = b"" if encoding == "16UC1" else None
    rig.frames("simmon", stamp, width=size[0], height=size[1], encoding=encoding, data=data)
    d = rig.decide("simmon", stamp, 1)
    assert not d.approved, d.verdict
    assert rig.log_says("monitor_sim", "rejected nav_camera frame")


def test_hw_monitor_reports_on_diagnostics(rig):
    from diagnostic_msgs.msg import DiagnosticArray

    from safevla_ros.qos import STATE_QOS

    arrays = rig.got.setdefault("/diagnostics", [])
    if len(arrays) == 0:
        rig.node.create_subscription(DiagnosticArray, "/diagnostics", arrays.append, STATE_QOS)

    def hw_status():
        return [
            s for a in arrays for s in a.status if s.hardware_id == "/hw/safevla_safety_monitor"
        ]

    assert rig.spin_until(lambda: bool(hw_status()))
    values = {kv.key: kv.value for kv in hw_status()[-1].values}
    assert values["mode"] == "hardware" and int(values["vetoed"]) >= 1


# -- monitor, sim mode --------------------------------------------------------------------------
def test_sim_monitor_survives_mismatched_world_state_pairs(rig):
    t0 = rig.now()
    rig.sim_state(t0, 0, None)
    d = rig.decide_when_ready("simmon", t0, 1)  # b: clear scan; sets the previous action
    assert d.approved, d.verdict
    t1 = rig.now()
    # Step 1 with a different object set: the pair's costs cannot be computed.
    rig.sim_state(t1, 1, None, objects=(("cup9", "Cup", (3.0, 0.0, 0.8)),))
    assert rig.log_says("monitor_sim", "rejected world state pair")
    # Step 2 reports a collision with an unknown id: the state itself is malformed.
    rig.sim_state(rig.now(), 2, None, collided=("ghost",))
    assert rig.log_says("monitor_sim", "neither objects nor structure: ['ghost']")
    rig.alive()


def test_sim_monitor_vetoes_a_proposal_without_its_world_state(rig):
    t0 = rig.now()
    rig.sim_state(t0, 0, None)  # a valid state under another stamp
    assert rig.decide_when_ready("simmon", t0, 1).approved
    t = rig.now()
    rig.scan("simmon", t, None)
    rig.frames("simmon", t)
    verdicts = []
    deadline = time.monotonic() + EVENT_TIMEOUT_S  # until its frames and scan are in
    while not (verdicts and "no world state stamped" in verdicts[-1]):
        assert time.monotonic() < deadline, verdicts[-3:]
        d = rig.decide("simmon", t, 1)
        assert not d.approved, d.verdict
        verdicts.append(d.verdict)


def test_proposals_racing_the_world_state_never_pass_a_vetoable_action(rig):
    """Each state is answered within milliseconds; every other state has a wall ahead.

    The proposal may overtake its state (then it is vetoed: no matching state); it is proposed
    again until the monitor judges it on its state. ``m`` must pass on every clear state and
    never on a walled one.
    """
    from safevla_ros import conversions as conv
    from safevla_ros.msg import DiscreteAction
    from safevla_ros.qos import Topics

    approved = rig.record("simmon", DiscreteAction, Topics.APPROVED_ACTION, _deep_qos())
    n0 = len(approved)
    walled, clear = set(), set()
    verdicts = {}
    for step in range(2, 22):
        t = rig.now()
        wall = WALL_AHEAD_M if step % 2 == 0 else None
        (walled if wall else clear).add(conv.stamp_key(t))
        rig.sim_state(t, step, wall)
        rig.decide("simmon", t, 0)  # m, published right after the state: races it
        d = rig.decide_when_ready("simmon", t, 0)
        verdicts[step] = d.verdict

    def passed_now():
        return {conv.stamp_key(a.header.stamp) for a in approved[n0:]}

    rig.spin_until(lambda: passed_now() >= clear, 5.0)  # the last approval may still travel
    passed = passed_now()
    assert not passed & walled, "an action was approved into the wall"
    assert passed == clear, f"a clear move was not approved: {verdicts}"


# -- policy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("offset_s, reason", [(-5.0, "stale"), (5.0, "future")])
def test_policy_counts_and_warns_stale_and_future_frames(rig, offset_s, reason):
    from std_msgs.msg import String

    from safevla_ros import conversions as conv
    from safevla_ros.msg import DiscreteAction
    from safevla_ros.qos import COMMAND_QOS, LATCHED_QOS, Topics

    proposals = rig.record("p1", DiscreteAction, Topics.PROPOSED_ACTION, COMMAND_QOS)
    rig.pub("p1", String, Topics.INSTRUCTION, LATCHED_QOS).publish(String(data="find a mug"))
    n = len(proposals)
    stamp = conv.s_to_stamp(conv.stamp_to_s(rig.now()) + offset_s)
    rig.frames("p1", stamp, width=160, height=96)
    assert rig.log_says("policy", f"dropped frame ({reason}")
    assert len(proposals) == n


# -- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("shield.enabled", False, "read-only"),
        ("watchdog.camera_timeout_s", -1.0, "out of range"),
        ("check_rate_hz", math.nan, "read-only"),
        ("shield.max_action_cost", "abc", "expected float"),
        ("mode", "bogus", "read-only"),
        ("watchdog.scan_timeout_s", math.inf, "out of range"),
    ],
)
def test_monitor_refuses_bad_parameters_with_a_reason(rig, name, value, reason):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(rig.node, "/hw/safevla_safety_monitor")
    assert rig.spin_until(lambda: client.services_are_ready(), 30.0)
    future = client.set_parameters([Parameter(name, value=value)])
    assert rig.spin_until(future.done)
    result = future.result().results[0]
    assert not result.successful and reason in result.reason.lower()
    get = client.get_parameters([name])
    assert rig.spin_until(get.done)
    rig.alive()
