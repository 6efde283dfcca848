"""A recorder killed with SIGKILL leaves a bag that ``safevla_ros.bag.repair`` makes readable.

The recorder runs as a real process recording ``safety/cost``; this test publishes cost reports
for 3 s (the recorder flushes its open chunk every 0.5 s), kills it with SIGKILL, repairs the bag
and reads it back with rosbags: every report published before the last flush is there, decoded.

DDS discovery is asymmetric: our publisher can see the recorder's subscription before the
recorder's reader has matched our writer, and best-effort reports sent in that gap are dropped
(CI once lost reports 1-4 that way). So the test first sends priming reports (step 0) until one
of them has reached the file, and only then the numbered ones, every one of which must survive.
"""

from __future__ import annotations

import signal

import pytest

from test.ros.test_nodes_integration import logs, node_command, running, spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_sigkilled_recording_is_repaired_and_readable(ros_context, tmp_path):
    import rclpy
    import yaml
    from rosbags.rosbag2 import Reader

    from safevla_ros.bag import repair
    from safevla_ros.msg import SafetyCost
    from safevla_ros.qos import STATE_QOS, Topics
    from safevla_ros.recorder_node import make_typestore

    bag = tmp_path / "bag"
    commands = {
        "recorder": node_command(
            "recorder_node", None, {"output_dir": bag, "topics": Topics.COST, "flush_period_s": 0.5}
        )
    }
    node = rclpy.create_node("crash_probe", context=ros_context)
    pub = node.create_publisher(SafetyCost, Topics.COST, STATE_QOS)
    sent = []
    with running(commands, tmp_path) as procs:
        assert spin_until(
            node, ros_context, lambda: pub.get_subscription_count() >= 1, 60.0, procs
        ), logs(tmp_path)
        mcap = next(bag.glob("*.mcap"))
        empty = mcap.stat().st_size

        def primed() -> bool:  # a priming report was received and flushed: the reader matched
            pub.publish(SafetyCost(episode_step=0, robot_cost=0.0))
            return mcap.stat().st_size > empty

        assert spin_until(node, ros_context, primed, 30.0, procs), logs(tmp_path)
        for step in range(1, 31):  # 30 reports, one per 0.1 s
            pub.publish(SafetyCost(episode_step=step, robot_cost=1.0))
            sent.append(step)
            spin_until(node, ros_context, lambda: False, 0.1)
        # Wait until a flush after the last report reached the file (it only grows).
        size = mcap.stat().st_size
        spin_until(node, ros_context, lambda: mcap.stat().st_size > size, 3.0)
        procs["recorder"].send_signal(signal.SIGKILL)
        procs["recorder"].wait(timeout=10)
    node.destroy_node()
    assert not (bag / "metadata.yaml").exists()  # killed: no metadata written
    recovered = repair(bag)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 5 and meta["message_count"] == recovered
    store = make_typestore()
    with Reader(bag) as reader:
        steps = [
            store.deserialize_cdr(raw, c.msgtype).episode_step for c, _t, raw in reader.messages()
        ]
    # Everything before the last flush survived, in order and without gaps (at most one 0.5 s
    # period, 5 reports, may be lost at the end).
    numbered = [s for s in steps if s > 0]
    assert steps[0] == 0 and numbered == list(range(1, len(numbered) + 1)), steps
    assert numbered[-1] >= sent[-1] - 6, (steps, sent)
