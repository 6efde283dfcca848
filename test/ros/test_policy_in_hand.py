"""The policy node's object-in-hand input, checked against the core agent on the same inputs.

Two real :class:`~safevla_ros.policy_node.PolicyNode` objects in this process (namespaces ``/ws``
with ``in_hand_source: world_state`` and ``/topic`` with ``in_hand_source: topic``), fed by a peer
node over localhost DDS with the same images. The proposal carries the cost critic's value, which
depends on the in-hand flag; a :class:`~safevla_core.agent.PolicyAgent` loaded from the same
checkpoint and run with the expected flags must give the same values (float32 on the wire).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from test.ros.test_nodes_integration import write_untrained_checkpoint

pytestmark = [pytest.mark.ros]

INSTRUCTION = "find a mug"


def _world_state_msg(held: str, stamp):
    from safevla_core.world import WorldState
    from safevla_ros import conversions as conv

    ws = WorldState(
        step=1,
        object_ids=("mug_1",),
        object_types=("Mug",),
        object_positions=np.array([[1.0, 0.0, 0.8]]),
        object_quats=np.array([[1.0, 0.0, 0.0, 0.0]]),
        robot_pose=np.zeros(3),
        held_object_id=held or None,
    )
    return conv.world_state_to_msg(ws, stamp, "map")


def test_in_hand_comes_from_world_state_or_bool_topic(ros_context, tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from std_msgs.msg import Bool, String

    from safevla_core.agent import PolicyAgent
    from safevla_ros import conversions as conv
    from safevla_ros.msg import DiscreteAction, WorldStateStamped
    from safevla_ros.policy_node import PolicyNode
    from safevla_ros.qos import COMMAND_QOS, IMAGE_QOS, LATCHED_QOS, STATE_QOS, Topics

    ckpt = str(write_untrained_checkpoint(tmp_path / "untrained.pt"))
    nodes = {
        src: PolicyNode(
            context=ros_context,
            namespace=ns,
            parameter_overrides=[
                Parameter("checkpoint", value=ckpt),
                Parameter("in_hand_source", value=src),
                Parameter("step_synchronous", value=False),
            ],
        )  # no monitor/executor here
        for src, ns in (("world_state", "/ws"), ("topic", "/topic"))
    }
    probe = rclpy.create_node("in_hand_probe", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    for n in nodes.values():
        executor.add_node(n)
    pubs, proposals = {}, {}
    for ns in ("ws", "topic"):
        t = lambda name, ns=ns: f"/{ns}/{name}"  # noqa: E731
        pubs[ns] = {
            "nav": probe.create_publisher(Image, t(Topics.NAV_IMAGE), IMAGE_QOS),
            "manip": probe.create_publisher(Image, t(Topics.MANIP_IMAGE), IMAGE_QOS),
            "instruction": probe.create_publisher(String, t(Topics.INSTRUCTION), LATCHED_QOS),
        }
        proposals[ns] = []
        probe.create_subscription(
            DiscreteAction, t(Topics.PROPOSED_ACTION), proposals[ns].append, COMMAND_QOS
        )
    world = probe.create_publisher(WorldStateStamped, "/ws/" + Topics.WORLD_STATE, STATE_QOS)
    in_hand = probe.create_publisher(Bool, "/topic/" + Topics.IN_HAND, STATE_QOS)

    def spin(done, timeout_s: float = 20.0) -> bool:
        executor.add_node(probe)
        try:
            end = time.monotonic() + timeout_s
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
                if done():
                    return True
            return False
        finally:
            executor.remove_node(probe)

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 160, 3), dtype=np.uint8) for _ in range(4)]

    def act(ns: str, nav, manip) -> DiscreteAction:
        n = len(proposals[ns])
        stamp = probe.get_clock().now().to_msg()
        pubs[ns]["nav"].publish(conv.rgb_to_image(nav, stamp, "nav"))
        pubs[ns]["manip"].publish(conv.rgb_to_image(manip, stamp, "manip"))
        assert spin(lambda: len(proposals[ns]) > n), f"/{ns}: no proposal"
        return proposals[ns][-1]

    try:
        assert not any(n.in_hand for n in nodes.values())  # False before any message
        for ns in ("ws", "topic"):
            pubs[ns]["instruction"].publish(String(data=INSTRUCTION))
        assert spin(lambda: all(n._instruction == INSTRUCTION for n in nodes.values()))

        # world_state source: held_object_id "mug_1" -> in hand; then "" -> not.
        world.publish(_world_state_msg("mug_1", probe.get_clock().now().to_msg()))
        assert spin(lambda: nodes["world_state"].in_hand)
        ws_steps = [act("ws", frames[0], frames[1])]
        world.publish(_world_state_msg("", probe.get_clock().now().to_msg()))
        assert spin(lambda: not nodes["world_state"].in_hand)
        ws_steps.append(act("ws", frames[2], frames[3]))
        # topic source: Bool true; a world state does not reach this node.
        in_hand.publish(Bool(data=True))
        assert spin(lambda: nodes["topic"].in_hand)
        topic_step = act("topic", frames[0], frames[1])
    finally:
        for n in nodes.values():
            executor.remove_node(n)
            n.destroy_node()
        probe.destroy_node()

    # The same checkpoint, deterministic, through the core agent with the expected flags.
    def agent_values(flags):
        agent = PolicyAgent.from_checkpoint(ckpt, deterministic=True, seed=0)
        agent.reset(INSTRUCTION)
        return [
            agent.act(frames[2 * i], frames[2 * i + 1], in_hand=f).value_cost
            for i, f in enumerate(flags)
        ]

    held, not_held = agent_values([True, False]), agent_values([False, False])
    assert abs(held[0] - not_held[0]) > 1e-4, "the flag must change the cost critic's value"
    f32 = lambda v: float(np.float32(v))  # noqa: E731 - SafetyCost/DiscreteAction carry float32
    assert [m.predicted_cost for m in ws_steps] == [f32(v) for v in held]
    assert topic_step.predicted_cost == f32(held[0])
