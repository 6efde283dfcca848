"""Closed loop on localhost: simulator -> policy -> shield -> simulator, as real processes.

Starts the same executables with the same parameter files as ``launch/deploy.launch.py``
(``ros2 launch`` is not installable here: ENVIRONMENT.md), with an untrained policy written to a
temporary checkpoint, 160x96 images and 8-step episodes, and checks from a separate rclpy node
that approved actions flow, cost reports flow, and an episode finishes with the monitor's
cumulative costs equal to the simulator's own episode summary. The environment (LOCALHOST
discovery, per-run ROS_DOMAIN_ID) comes from test/conftest.py and is inherited by the children.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
EPISODE_STEPS = 8
STARTUP_TIMEOUT_S = 90.0  # three processes importing torch/MuJoCo on a loaded 2-core machine


def write_untrained_checkpoint(path: Path) -> Path:
    """Save a small untrained policy (d_model 64, 1+1 layers) as a training checkpoint."""
    import torch

    from safevla_core.checkpoint import save_checkpoint
    from safevla_core.config import Config, PolicyConfig, config_to_dict
    from safevla_core.policy.factory import build_policy

    torch.manual_seed(0)
    cfg = Config(
        policy=PolicyConfig(
            d_model=64,
            num_heads=4,
            encoder_layers=1,
            decoder_layers=1,
            context_steps=32,
            image_width=160,
            image_height=96,
        )
    )
    policy = build_policy(cfg.policy)
    save_checkpoint(path, {"policy": policy.state_dict(), "config": config_to_dict(cfg)})
    return path


def node_command(
    module: str, params_file: str | None, overrides: Mapping[str, object]
) -> list[str]:
    """``python -m safevla_ros.<module> --ros-args --params-file ... -p k:=v ...``."""
    cmd = [sys.executable, "-m", f"safevla_ros.{module}", "--ros-args"]
    if params_file:
        cmd += ["--params-file", str(CONFIG / params_file)]
    for key, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        cmd += ["-p", f"{key}:={text}"]
    return cmd


@contextmanager
def running(commands: Mapping[str, list[str]], log_dir: Path) -> Iterator[dict]:
    """Start each command as a process (env inherited), stop them all with SIGINT at the end."""
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    procs = {}
    try:
        for name, cmd in commands.items():
            log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            procs[name] = (
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO),
                log,
            )
        yield {name: p for name, (p, _) in procs.items()}
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p, log in procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.close()


def logs(log_dir: Path) -> str:
    """All process logs, for assertion messages."""
    return "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(log_dir.glob("*.log"))
    )


def spin_until(node, context, done: Callable[[], bool], timeout_s: float, procs=None) -> bool:
    """Spin ``node`` until ``done()`` or the timeout; fail early if a process died."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if done():
                return True
            for name, p in (procs or {}).items():
                if p.poll() is not None:
                    raise AssertionError(f"{name} exited with {p.returncode}")
        return False
    finally:
        executor.remove_node(node)


def test_closed_loop_episode_finishes(ros_context, tmp_path):
    import rclpy
    from std_msgs.msg import String

    from safevla_ros.msg import DiscreteAction, SafetyCost
    from safevla_ros.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS, Topics

    ckpt = write_untrained_checkpoint(tmp_path / "untrained.pt")
    commands = {
        "sim": node_command(
            "sim_node",
            "sim_node.yaml",
            {"max_steps": EPISODE_STEPS, "split": "train", "house_index": 0, "seed": 1},
        ),
        "policy": node_command(
            "policy_node",
            "policy_node.yaml",
            {"checkpoint": ckpt, "deterministic": False, "seed": 3},
        ),
        "monitor": node_command("safety_monitor_node", "safety_monitor.yaml", {}),
        "recorder": node_command("recorder_node", None, {"output_dir": tmp_path / "bag"}),
    }
    node = rclpy.create_node("integration_probe", context=ros_context)
    got: dict[str, list] = {"approved": [], "decisions": [], "costs": [], "summary": []}
    node.create_subscription(
        DiscreteAction, Topics.APPROVED_ACTION, got["approved"].append, COMMAND_QOS
    )
    node.create_subscription(DiscreteAction, Topics.DECISIONS, got["decisions"].append, STATE_QOS)
    node.create_subscription(SafetyCost, Topics.COST, got["costs"].append, STATE_QOS)
    node.create_subscription(
        String,
        Topics.EPISODE_SUMMARY,
        lambda m: got["summary"].append(json.loads(m.data)),
        LATCHED_QOS,
    )
    with running(commands, tmp_path) as procs:
        finished = spin_until(
            node, ros_context, lambda: bool(got["summary"]), STARTUP_TIMEOUT_S, procs
        )
        # Let the monitor's last cost report of the episode arrive (it is published after the
        # simulator's summary in the same step).
        spin_until(node, ros_context, lambda: False, 1.0)
    node.destroy_node()
    assert finished, f"no episode finished; got {[(k, len(v)) for k, v in got.items()]}\n" + logs(
        tmp_path
    )
    summary = got["summary"][0]
    assert summary["episode"] == 0 and 1 <= summary["length"] <= EPISODE_STEPS
    assert got["approved"] and all(
        m.approved and m.source == "safety_monitor" for m in got["approved"]
    )
    # Every executed step is an approved action, so at least `length` approvals were published.
    assert len(got["approved"]) >= summary["length"]
    # The monitor's cost reports for episode 0 cover every step 1..length, and its totals agree
    # with the simulator's own accounting of the same episode.
    ep0 = [c for c in got["costs"] if c.episode_step <= summary["length"]][: int(summary["length"])]
    steps = list(range(1, int(summary["length"]) + 1))
    assert [c.episode_step for c in ep0] == steps, logs(tmp_path)
    last = ep0[-1]
    assert last.cumulative_robot_cost == summary["robot_cost"]
    assert last.cumulative_object_cost == summary["object_cost"]
    assert last.cumulative_cost == summary["cumulative_cost"]
    check_recording(tmp_path / "bag", int(summary["length"]))


def check_recording(bag: Path, min_actions: int) -> None:
    """The recorder's MCAP rosbag2 holds the approved actions and decodable cost reports."""
    import yaml
    from rosbags.rosbag2 import Reader

    from safevla_ros.recorder_node import make_typestore

    assert list(bag.glob("*.mcap")) and (bag / "metadata.yaml").is_file()
    # Version 5: the newest Humble reads; Jazzy and Kilted read it too.
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 5 and "ros_distro" not in meta
    store = make_typestore()
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts["/safety/approved_action"] >= min_actions, counts
        costs = [c for c in reader.connections if c.topic == "/safety/cost"]
        decoded = [
            store.deserialize_cdr(raw, c.msgtype)
            for c, _t, raw in reader.messages(connections=costs)
        ]
    assert decoded and decoded[0].episode_step >= 1
