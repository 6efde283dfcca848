"""Bad input to the running nodes (real processes on localhost): nothing crashes, nothing unsafe.

One policy node with a good checkpoint, two with a missing / corrupt one, a hardware-mode monitor
on simulated time (clock jumps) and a sim-mode monitor, each in its own namespace, driven by a
probe node in this process. Covered: wrong image encoding and size (converted or rejected), an
empty instruction, a missing or corrupt checkpoint, NaN in a world state and in a predicted cost,
an unknown action index, a camera that stops publishing, the runstop, and the clock jumping back.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from test.ros.test_nodes_integration import (
    logs,
    node_command,
    running,
    spin_until,
    write_untrained_checkpoint,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

READY_TIMEOUT_S = 90.0
QUIET_S = 2.5  # how long "publishes nothing" is watched


class Probe:
    """Publishers and recorders for one namespace."""

    def __init__(self, node, ns: str) -> None:
        from sensor_msgs.msg import Image
        from std_msgs.msg import Bool, String

        from safevla_ros.msg import DiscreteAction, WorldStateStamped
        from safevla_ros.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS, Topics

        self.node, self.ns = node, ns
        t = lambda name: f"/{ns}/{name}"  # noqa: E731
        self.nav = node.create_publisher(Image, t(Topics.NAV_IMAGE), SENSOR_QOS)
        self.manip = node.create_publisher(Image, t(Topics.MANIP_IMAGE), SENSOR_QOS)
        self.instruction = node.create_publisher(String, t(Topics.INSTRUCTION), LATCHED_QOS)
        self.proposal = node.create_publisher(DiscreteAction, t(Topics.PROPOSED_ACTION),
                                              COMMAND_QOS)
        self.world = node.create_publisher(WorldStateStamped, t(Topics.WORLD_STATE), STATE_QOS)
        self.runstop = node.create_publisher(Bool, t(Topics.STRETCH_RUNSTOP), STATE_QOS)
        self.proposals: list = []
        self.decisions: list = []
        node.create_subscription(DiscreteAction, t(Topics.PROPOSED_ACTION), self.proposals.append,
                                 COMMAND_QOS)
        node.create_subscription(DiscreteAction, t(Topics.DECISIONS), self.decisions.append,
                                 STATE_QOS)
        self.instruction_topic = t(Topics.INSTRUCTION)
        self.decisions_topic = t(Topics.DECISIONS)


def _image(encoding: str, width: int, height: int, stamp, channels: int = 3):
    from sensor_msgs.msg import Image

    msg = Image(height=height, width=width, encoding=encoding, step=width * channels)
    msg.header.stamp = stamp
    msg.data = (np.arange(width * height * channels) % 251).astype(np.uint8).tobytes()
    return msg


def _publish_cameras(probe: Probe, stamp, encoding="bgr8", width=320, height=192, channels=3,
                     manip=True) -> None:
    probe.nav.publish(_image(encoding, width, height, stamp, channels))
    if manip:
        probe.manip.publish(_image(encoding, width, height, stamp, channels))


def _pump(node, context, seconds: float, every_s: float, fn) -> None:
    """Call ``fn()`` every ``every_s`` while spinning for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        fn()
        spin_until(node, context, lambda: False, every_s)


def _wait_ready(node, context, procs, topic: str, publishers: bool) -> None:
    count = node.count_publishers if publishers else node.count_subscribers
    ok = spin_until(node, context, lambda: count(topic) >= 1, READY_TIMEOUT_S, procs)
    assert ok, f"no endpoint on {topic}"


def _proposal(stamp, action: int, cost: float = 0.1, name: str = ""):
    from safevla_ros.msg import DiscreteAction

    msg = DiscreteAction(action=action, name=name, source="probe", predicted_cost=cost)
    msg.header.stamp = stamp
    return msg


def _decide(node, context, probe: Probe, msg):
    """Publish a proposal and return the monitor's decision on it."""
    n = len(probe.decisions)
    probe.proposal.publish(msg)
    assert spin_until(node, context, lambda: len(probe.decisions) > n, 20.0), "no decision"
    return probe.decisions[-1]


def test_bad_input_never_crashes_and_never_approves_doubt(ros_context, tmp_path):
    import rclpy
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Bool, String

    from safevla_ros import conversions as conv

    good = write_untrained_checkpoint(tmp_path / "good.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file at all")
    ns_args = lambda ns: ["-r", f"__ns:=/{ns}"]  # noqa: E731
    commands = {
        "policy_good": node_command("policy_node", "policy_node.yaml",
                                    {"checkpoint": good}) + ns_args("p1"),
        "policy_missing": node_command("policy_node", "policy_node.yaml",
                                       {"checkpoint": tmp_path / "nope.pt"}) + ns_args("p2"),
        "policy_corrupt": node_command("policy_node", "policy_node.yaml",
                                       {"checkpoint": corrupt}) + ns_args("p3"),
        "monitor_hw": node_command("safety_monitor_node", "safety_monitor.yaml",
                                   {"mode": "hardware", "use_sim_time": True}) + ns_args("hw"),
        "monitor_sim": node_command("safety_monitor_node", "safety_monitor.yaml", {})
        + ns_args("simmon"),
    }
    node = rclpy.create_node("bad_input_probe", context=ros_context)
    p1, p2, p3 = Probe(node, "p1"), Probe(node, "p2"), Probe(node, "p3")
    hw, sm = Probe(node, "hw"), Probe(node, "simmon")
    clock_pub = node.create_publisher(Clock, "/clock", 10)
    sim_time = {"t": 100.0}
    node.create_timer(0.02, lambda: clock_pub.publish(Clock(clock=conv.s_to_stamp(sim_time["t"]))))
    now = lambda: node.get_clock().now().to_msg()  # noqa: E731
    with running(commands, tmp_path) as procs:
        for p in (p1, p2, p3):  # the policy subscribes after loading (or failing to load)
            _wait_ready(node, ros_context, procs, p.instruction_topic, publishers=False)
        for p in (hw, sm):
            _wait_ready(node, ros_context, procs, p.decisions_topic, publishers=True)

        # -- policy: bad encodings -> nothing; empty instruction -> nothing; bgr8 320x192 -> acts.
        p1.instruction.publish(String(data="find a mug"))
        _pump(node, ros_context, QUIET_S, 0.2,
              lambda: _publish_cameras(p1, now(), encoding="16UC1", channels=2))
        assert p1.proposals == [], "acted on an unsupported encoding"
        p1.instruction.publish(String(data="   "))
        _pump(node, ros_context, QUIET_S, 0.2, lambda: _publish_cameras(p1, now()))
        assert p1.proposals == [], "acted without a valid instruction"
        p1.instruction.publish(String(data="find a mug"))
        ok = spin_until(node, ros_context, lambda: bool(p1.proposals), 30.0)
        if not ok:  # keep feeding good images until it acts
            _pump(node, ros_context, 20.0, 0.2, lambda: _publish_cameras(p1, now()))
        _pump(node, ros_context, 1.0, 0.2, lambda: _publish_cameras(p1, now()))
        assert p1.proposals, "no proposal from convertible bgr8 images\n" + logs(tmp_path)
        assert all(0 <= m.action < 20 and math.isfinite(m.predicted_cost) for m in p1.proposals)

        # -- policy with a missing / corrupt checkpoint: up, silent, error logged.
        for p in (p2, p3):
            p.instruction.publish(String(data="find a mug"))
        _pump(node, ros_context, QUIET_S, 0.2,
              lambda: [_publish_cameras(p, now()) for p in (p2, p3)])
        assert p2.proposals == [] and p3.proposals == []

        # -- hardware monitor on simulated time: fresh inputs + low predicted cost -> approved.
        hw.runstop.publish(Bool(data=False))
        feed_hw = lambda: _publish_cameras(hw, conv.s_to_stamp(sim_time["t"]), width=8, height=8)  # noqa: E731,E501
        _pump(node, ros_context, 1.0, 0.1, feed_hw)
        t100 = conv.s_to_stamp(100.0)
        d = _decide(node, ros_context, hw, _proposal(t100, 0))
        assert d.approved, d.verdict
        # NaN and too-high predicted cost, unknown action index, name contradicting the index.
        d = _decide(node, ros_context, hw, _proposal(t100, 0, cost=math.nan))
        assert not d.approved and d.verdict.startswith("invalid_input")
        d = _decide(node, ros_context, hw, _proposal(t100, 0, cost=0.9))
        assert not d.approved and d.verdict.startswith("predicted_cost")
        d = _decide(node, ros_context, hw, _proposal(t100, 42))
        assert not d.approved and "unknown action index 42" in d.verdict
        d = _decide(node, ros_context, hw, _proposal(t100, 0, name="l"))
        assert not d.approved and d.verdict.startswith("invalid_input")
        hw.runstop.publish(Bool(data=True))
        _pump(node, ros_context, 0.5, 0.1, feed_hw)
        d = _decide(node, ros_context, hw, _proposal(t100, 0))
        assert not d.approved and d.verdict.startswith("runstop")
        hw.runstop.publish(Bool(data=False))
        _pump(node, ros_context, 0.5, 0.1, feed_hw)
        # Clock jumps back 50 s: every earlier arrival is meaningless -> stale, nothing approved.
        sim_time["t"] = 50.0
        spin_until(node, ros_context, lambda: False, 0.5)
        d = _decide(node, ros_context, hw, _proposal(conv.s_to_stamp(50.0), 0))
        assert not d.approved and "clock jumped backwards" in d.verdict, d.verdict
        # Fresh images on the new clock -> approved again.
        _pump(node, ros_context, 1.0, 0.1, feed_hw)
        assert _decide(node, ros_context, hw, _proposal(conv.s_to_stamp(50.0), 0)).approved
        # The manipulation camera stops: 3 s later (> 2.5 s timeout) nothing is approved.
        feed_nav = lambda: _publish_cameras(hw, conv.s_to_stamp(sim_time["t"]), width=8,  # noqa: E731
                                            height=8, manip=False)
        for _ in range(30):
            sim_time["t"] += 0.1
            _pump(node, ros_context, 0.1, 0.05, feed_nav)
        d = _decide(node, ros_context, hw, _proposal(conv.s_to_stamp(sim_time["t"]), 0))
        assert not d.approved and "manip_camera" in d.verdict, d.verdict

        # -- sim monitor: NaN world state dropped, the next valid one used.
        from safevla_core.world import WorldState

        ws = WorldState(step=0, object_ids=("vase1",), object_types=("Vase",),
                        object_positions=np.array([[0.5, 0.0, 0.8]]),
                        object_quats=np.array([[1.0, 0, 0, 0]]), robot_pose=np.zeros(3))
        bad = conv.world_state_to_msg(ws, now(), "map")
        bad.object_positions[0] = math.nan
        sm.world.publish(bad)
        spin_until(node, ros_context, lambda: False, 0.5)
        d = _decide(node, ros_context, sm, _proposal(now(), 0))
        assert not d.approved and "world_state" in d.verdict  # never received a valid one
        feed_sim = lambda: (_publish_cameras(sm, now(), width=8, height=8),  # noqa: E731
                            sm.world.publish(conv.world_state_to_msg(ws, now(), "map")))
        _pump(node, ros_context, 1.0, 0.1, feed_sim)
        # Vase 0.5 m ahead: m (0.2 m) would leave 0.3 m < 0.39 m clearance -> vetoed; b is fine.
        d = _decide(node, ros_context, sm, _proposal(now(), 0))
        assert not d.approved and d.verdict.startswith("hazard_proximity"), d.verdict
        assert _decide(node, ros_context, sm, _proposal(now(), 1)).approved

        for name, p in procs.items():
            assert p.poll() is None, f"{name} died\n" + logs(tmp_path)
    node.destroy_node()
    text = logs(tmp_path)
    assert "unsupported image encoding '16UC1'" in text
    assert "checkpoint not found" in text and "cannot read checkpoint" in text
    assert "dropped world state" in text
    _ = Parameter  # rclpy.parameter import checks the API used by use_sim_time exists
