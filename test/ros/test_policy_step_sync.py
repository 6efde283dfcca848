"""The policy node acts the moment the executor's report frees it, not on its next control tick.

A real :class:`~safevla_ros.policy_node.PolicyNode` in this process, driven by calling its
subscription callbacks with real messages, as its executor would, and never spun: its control
timer cannot fire, so any proposal after the report comes from the report itself. Before, the
node waited for the next tick (up to a control period: 20 ms at 50 Hz, 200 ms at 5 Hz) on every
step of the step-synchronous loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from test.ros.test_nodes_integration import write_untrained_checkpoint

pytestmark = [pytest.mark.ros]


@pytest.fixture
def policy(ros_context, tmp_path):
    from rclpy.parameter import Parameter

    from safevla_ros.policy_node import PolicyNode

    ckpt = str(write_untrained_checkpoint(tmp_path / "untrained.pt"))
    node = PolicyNode(
        context=ros_context,
        parameter_overrides=[
            Parameter("checkpoint", value=ckpt),
            Parameter("instruction", value="find a mug"),
            Parameter("control_rate_hz", value=0.1),  # a 10 s tick: it must not be needed
            Parameter("in_hand_source", value="none"),
        ],
    )
    published: list = []
    node.pub.publish = published.append  # record instead of sending (nobody listens)
    yield node, published
    node.destroy_node()


def _frames(node, stamp):
    from safevla_ros import conversions as conv

    rng = np.random.default_rng(conv.stamp_key(stamp) % 1000)
    for which in ("nav", "manip"):
        rgb = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
        node._on_image(which, conv.rgb_to_image(rgb, stamp, which))


def _now_s(node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def test_the_report_of_the_previous_action_triggers_the_next_proposal(policy):
    from safevla_ros import conversions as conv
    from safevla_ros.msg import ActionStatus

    node, published = policy
    _frames(node, conv.s_to_stamp(_now_s(node)))
    assert len(published) == 1  # the first pair acts at once
    first = published[0].header.stamp
    # The executor finishes the action and publishes the new state's frames first, then its
    # report (the simulator's order): the frames alone do not act (still waiting) ...
    finished = conv.s_to_stamp(_now_s(node))
    node._last_act_s -= 20.0  # as if the 10 s control period had passed (it is a rate limit)
    _frames(node, finished)
    assert len(published) == 1
    # ... the report does, within the callback, on exactly those frames.
    node._on_status(
        conv.action_status_msg(
            int(published[0].action), first, ActionStatus.DONE, finished, "ok", "sim_node"
        )
    )
    assert len(published) == 2
    assert conv.stamp_key(published[1].header.stamp) == conv.stamp_key(finished)


def test_a_report_before_the_frames_acts_when_they_arrive(policy):
    from safevla_ros import conversions as conv
    from safevla_ros.msg import ActionStatus

    node, published = policy
    _frames(node, conv.s_to_stamp(_now_s(node)))
    first = published[0].header.stamp
    node._last_act_s -= 20.0
    older = _now_s(node)
    finished = conv.s_to_stamp(older + 0.01)
    node._on_status(
        conv.action_status_msg(
            int(published[0].action), first, ActionStatus.DONE, finished, "ok", "sim_node"
        )
    )
    assert len(published) == 1  # no frames of the finished state yet: nothing to act on
    _frames(node, conv.s_to_stamp(older))  # frames from before the finish: not these
    assert len(published) == 1
    _frames(node, finished)
    assert len(published) == 2


def test_a_new_episode_never_acts_again_on_the_last_pair(policy):
    """The simulator ends an episode after the step whose frames the policy just acted on.

    Re-acting on that pair after the new instruction sent a second, old proposal (approved
    again, rejected by the simulator as not the current state); the new episode's frames must
    be the first ones acted on, at once (within the instruction callback if they are in).
    """
    from std_msgs.msg import String

    from safevla_ros import conversions as conv

    node, published = policy
    last = conv.s_to_stamp(_now_s(node))
    _frames(node, last)
    assert len(published) == 1  # the final state of the episode, acted on
    node._last_act_s -= 20.0
    node._on_instruction(String(data="find a bowl"))
    node._tick()  # the control timer, as it fires
    assert len(published) == 1  # not the same frames again
    first = conv.s_to_stamp(_now_s(node) + 0.01)
    _frames(node, first)
    assert len(published) == 2
    assert conv.stamp_key(published[1].header.stamp) == conv.stamp_key(first)


def test_a_new_instruction_acts_on_new_frames_already_received(policy):
    from std_msgs.msg import String

    from safevla_ros import conversions as conv

    node, published = policy
    _frames(node, conv.s_to_stamp(_now_s(node)))
    assert len(published) == 1
    node._last_act_s -= 20.0
    # The new episode's frames are handled before the instruction (rclpy runs the image
    # subscriptions first when both are ready); the old proposal is still unanswered.
    first = conv.s_to_stamp(_now_s(node) + 0.01)
    _frames(node, first)
    assert len(published) == 1  # still waiting for the answer to the last proposal
    node._on_instruction(String(data="find a bowl"))
    assert len(published) == 2
    assert conv.stamp_key(published[1].header.stamp) == conv.stamp_key(first)
