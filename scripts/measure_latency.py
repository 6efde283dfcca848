#!/usr/bin/env python3
"""Measure the running nodes: camera-stamp -> approved-action latency, and the policy's rate.

Phase 1 (latency): starts the simulator, the policy node (pinned to one core with ``taskset``)
and the safety monitor as processes on localhost with the config/ parameter files, and records for
each approved action ``arrival time - header.stamp`` (the stamp is the camera stamp the action was
decided from, carried unchanged by policy and shield). The loop is step-synchronous: the simulator
publishes a state, the policy acts on it at once (if its control period has elapsed), the monitor
judges it against that state's scan and world state, the simulator executes it and publishes the
next state. The policy acts as soon as the simulator's report and the new frames are in, unless
its control period (``1 / control_rate_hz``; 50 Hz by default, as issue 10 measures) has not
elapsed since its last action; that wait is included. Printed per hop (when the frame, the
proposal and the monitor's decision report reached the probe), and split into the first step of
each episode (which also encodes the new instruction) and the later steps; with the machine's
load average, since the figures depend on it.
Phase 2 (rate): the policy node alone, pinned to one core, fed 160x96 image pairs at ``--feed-hz``
with its control rate set to the same value; reports proposals per second it sustains.

Usage: .venv/bin/python scripts/measure_latency.py [--checkpoint CKPT] [--actions 100]
Without a checkpoint an untrained small policy (d_model 64) is written to a temp file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 101 + 1))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "1")


def untrained_checkpoint(path: Path) -> Path:
    """A small untrained policy (d_model 64, 1+1 layers) saved as a training checkpoint."""
    import torch

    from safevla_core.checkpoint import save_checkpoint
    from safevla_core.config import Config, PolicyConfig, config_to_dict
    from safevla_core.policy.factory import build_policy

    torch.manual_seed(0)
    cfg = Config(
        policy=PolicyConfig(
            d_model=64, num_heads=4, encoder_layers=1, decoder_layers=1, context_steps=32
        )
    )
    save_checkpoint(
        path, {"policy": build_policy(cfg.policy).state_dict(), "config": config_to_dict(cfg)}
    )
    return path


def start(module: str, params: str, overrides: dict, log: Path, core: int | None = None):
    """Start ``python -m safevla_ros.<module>`` with a parameter file and overrides."""
    cmd = [
        sys.executable,
        "-m",
        f"safevla_ros.{module}",
        "--ros-args",
        "--params-file",
        str(REPO / "config" / params),
    ]
    for k, v in overrides.items():
        cmd += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    if core is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(
        cmd,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=env,  # noqa: SIM115
        cwd=REPO,
    )


def stop(procs) -> None:
    """SIGINT, then kill what is left."""
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def spin_for(node, seconds: float, until=lambda: False) -> None:
    """Spin until ``until()`` or ``seconds`` elapsed."""
    import rclpy

    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        rclpy.spin_once(node, timeout_sec=0.05)


def measure_latency(
    node, ckpt: Path, n_actions: int, logdir: Path, rate_hz: float, trace: bool = False
) -> np.ndarray:
    """Phase 1: latencies (s) of ``n_actions`` approved actions in the closed loop.

    Also records, per approved action's stamp, when each hop's output arrived here (camera
    frame, proposal, the monitor's decision report) and the episode step of the state it
    answers (``measure_latency.stages``, ``measure_latency.steps``). With ``trace`` the nodes
    write :mod:`safevla_ros.trace` records to ``logdir / "trace"``, and the stamp keys of the
    approved actions are kept (``measure_latency.keys``).
    """
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from safevla_ros import conversions as conv
    from safevla_ros.msg import DiscreteAction, WorldStateStamped
    from safevla_ros.qos import IMAGE_QOS, STATE_QOS, Topics
    from safevla_ros.trace import TRACE_ENV

    lat: list[float] = []
    approved_keys: list[int] = []
    stages: dict[str, list[float]] = {"frame": [], "proposal": [], "decision": []}
    steps: dict[int, int] = {}  # stamp key -> episode step of that state
    deep = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)

    def age(m) -> float:
        return node.get_clock().now().nanoseconds * 1e-9 - conv.stamp_to_s(m.header.stamp)

    def on_approved(m) -> None:
        lat.append(age(m))
        approved_keys.append(conv.stamp_key(m.header.stamp))

    # Stamp keys up to the warm-up action's are not counted: its proposal and decision report
    # can be handled here after the approval that ends the warm-up (one callback per spin, the
    # approval subscription first), and they are ~1.5 s old (the policy's first forward pass).
    warm_up = [-1]

    def on_stage(name: str, m) -> None:
        if conv.stamp_key(m.header.stamp) > warm_up[0]:
            stages[name].append(age(m))

    node.create_subscription(DiscreteAction, Topics.APPROVED_ACTION, on_approved, deep)
    for name, topic in (("proposal", Topics.PROPOSED_ACTION), ("decision", Topics.DECISIONS)):
        node.create_subscription(DiscreteAction, topic, lambda m, n=name: on_stage(n, m), deep)
    node.create_subscription(Image, Topics.NAV_IMAGE, lambda m: on_stage("frame", m), IMAGE_QOS)
    node.create_subscription(
        WorldStateStamped,
        Topics.WORLD_STATE,
        lambda m: steps.__setitem__(conv.stamp_key(m.header.stamp), int(m.step)),
        STATE_QOS,
    )
    if trace:
        os.environ[TRACE_ENV] = str(logdir / "trace")
    procs = [
        start("sim_node", "sim_node.yaml", {"split": "train", "seed": 1}, logdir / "sim.log"),
        start(
            "policy_node",
            "policy_node.yaml",
            {"checkpoint": ckpt, "deterministic": False, "control_rate_hz": rate_hz},
            logdir / "policy.log",
            core=0,
        ),
        start("safety_monitor_node", "safety_monitor.yaml", {}, logdir / "monitor.log"),
    ]
    os.environ.pop(TRACE_ENV, None)
    try:
        spin_for(node, 120.0, lambda: len(lat) >= 1)
        warm_up[0] = max(approved_keys)
        lat.clear()  # drop the first (warm-up) action
        approved_keys.clear()
        for v in stages.values():
            v.clear()
        spin_for(node, 300.0, lambda: len(lat) >= n_actions)
    finally:
        # A copy: what the subscriptions above still queue while the nodes stop is handled
        # during phase 2 (one probe node), seconds after its stamp.
        measure_latency.stages = {k: list(v) for k, v in stages.items()}
        stop(procs)
    measure_latency.steps = [steps.get(k, -1) for k in approved_keys]
    measure_latency.keys = list(approved_keys)
    return np.array(lat)


def _percentiles(name: str, seconds) -> str:
    v = 1e3 * np.asarray(seconds, dtype=np.float64)
    if not v.size:
        return f"  {name}: none"
    return (
        f"  {name}: n={v.size} p50={np.percentile(v, 50):.1f} ms "
        f"p99={np.percentile(v, 99):.1f} ms max={v.max():.1f} ms"
    )


def measure_rate(node, ckpt: Path, feed_hz: float, seconds: float, logdir: Path) -> float:
    """Phase 2: proposals per second of the policy node on one core, fed at ``feed_hz``."""
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from safevla_ros import conversions as conv
    from safevla_ros.msg import DiscreteAction
    from safevla_ros.qos import COMMAND_QOS, IMAGE_QOS, LATCHED_QOS

    ns = "/rate"
    count = [0]
    node.create_subscription(
        DiscreteAction,
        f"{ns}/policy/proposed_action",
        lambda _m: count.__setitem__(0, count[0] + 1),
        COMMAND_QOS,
    )
    nav = node.create_publisher(Image, f"{ns}/nav_camera/image_raw", IMAGE_QOS)
    manip = node.create_publisher(Image, f"{ns}/manip_camera/image_raw", IMAGE_QOS)
    instr = node.create_publisher(String, f"{ns}/instruction", LATCHED_QOS)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 160, 3), dtype=np.uint8) for _ in range(2)]

    def feed() -> None:
        stamp = node.get_clock().now().to_msg()
        nav.publish(conv.rgb_to_image(frames[0], stamp, "nav"))
        manip.publish(conv.rgb_to_image(frames[1], stamp, "manip"))

    node.create_timer(1.0 / feed_hz, feed)
    instr.publish(String(data="find a mug"))
    proc = start_ns(
        "policy_node",
        "policy_node.yaml",
        {
            "checkpoint": ckpt,
            "control_rate_hz": feed_hz,
            "step_synchronous": "false",
        },  # alone: nobody answers its proposals
        logdir / "rate.log",
        ns,
    )
    try:
        spin_for(node, 120.0, lambda: count[0] >= 5)
        c0, t0 = count[0], time.monotonic()
        spin_for(node, seconds)
        return (count[0] - c0) / (time.monotonic() - t0)
    finally:
        stop([proc])


def start_ns(module: str, params: str, overrides: dict, log: Path, ns: str):
    """Like :func:`start` on core 0, in namespace ``ns``."""
    cmd = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    cmd += [
        sys.executable,
        "-m",
        f"safevla_ros.{module}",
        "--ros-args",
        "--params-file",
        str(REPO / "config" / params),
        "-r",
        f"__ns:={ns}",
    ]
    for k, v in overrides.items():
        cmd += ["-p", f"{k}:={v}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(
        cmd,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=env,  # noqa: SIM115
        cwd=REPO,
    )


def read_trace(folder: Path) -> dict[str, list[dict]]:
    """The :mod:`safevla_ros.trace` records of each node (``policy``, ``sim``, ``monitor``)."""
    out: dict[str, list[dict]] = {}
    for f in sorted(folder.glob("*.jsonl")):
        out.setdefault(f.name.split(".")[0], []).extend(
            json.loads(line) for line in f.read_text().splitlines()
        )
    return out


def attribute_slow_steps(trace: dict[str, list[dict]], keys: list[int], slow_ms: float) -> None:
    """Print, for each approved action slower than ``slow_ms``, what its time was spent on.

    Per step (milliseconds after the camera stamp): when the policy's last input for it (frames,
    the executor's report or the monitor's veto, the instruction) reached the middleware (``rx``)
    and when its callback ran; the policy step (wall, thread CPU, run-queue wait); when the
    monitor received and approved the proposal; and every garbage collection in any of the three
    processes that overlapped the step. Run-queue wait is CPU contention: the thread was ready
    and another process had the core.
    """
    pol, mon = trace.get("policy", []), trace.get("monitor", [])
    inputs = ("nav", "manip", "status", "decision", "instruction")
    step: dict[int, dict] = {}
    last: dict[str, dict] = {}
    for i, r in enumerate(pol):
        if r["ev"] in inputs:
            last[r["ev"]] = r
        elif r["ev"] == "act" and r["key"] not in step:
            done = next((q for q in pol[i:] if q["ev"] == "acted"), r)
            gate = max(
                (
                    q
                    for q in last.values()
                    if q["ev"] not in ("nav", "manip") or q["key"] == r["key"]
                ),
                key=lambda q: q["rx"],
                default=r,
            )
            step[r["key"]] = {"act": r, "acted": done, "gate": gate}
    entered = {r["key"]: r for r in mon if r["ev"] == "proposal"}
    approved = {r["key"]: r for r in mon if r["ev"] == "approved"}
    gcs = [(n, r) for n, rs in trace.items() for r in rs if r["ev"] == "gc"]
    slow = 0
    for k in keys:
        if k not in step or k not in approved or (approved[k]["t"] - k) * 1e-6 <= slow_ms:
            continue
        slow += 1
        s = step[k]
        a, d, g = s["act"], s["acted"], s["gate"]

        def ms(t: int, k: int = k) -> str:
            return f"{(t - k) * 1e-6:+.0f}"

        act = (
            f"act {ms(a['t'])}..{ms(d['t'])} (cpu {(d['cpu'] - a['cpu']) * 1e-6:.0f}, "
            f"run queue {(d['wait'] - a['wait']) * 1e-6:.0f})"
        )
        gate = f"last input {g['ev']} rx {ms(g.get('rx', g['t']))} run {ms(g['t'])}"
        m = entered.get(k)
        monitor = f"monitor rx {ms(m['rx'])} run {ms(m['t'])}" if m else "monitor ?"
        overlap = [
            f"{n} gen{r['generation']} {r['cpu_ms']:.0f}/{r['ms']:.0f} ms at {ms(r['t'])}"
            for n, r in gcs
            if k <= r["t"] and r["t"] - r["ms"] * 1e6 <= approved[k]["t"]
        ]
        print(
            f"  slow {ms(approved[k]['t'])} ms: {gate}; {act}; {monitor}; "
            f"gc (cpu/wall): {', '.join(overlap) or 'none'}"
        )
    print(f"  {slow} of {len(keys)} approved actions slower than {slow_ms:.0f} ms")


def main() -> None:
    """Run both phases and print the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--actions", type=int, default=100)
    ap.add_argument("--feed-hz", type=float, default=30.0)
    ap.add_argument(
        "--control-rate",
        type=float,
        default=50.0,
        help="policy control rate in phase 1 (issue 10 measures at 50 Hz; "
        "config/policy_node.yaml runs 5 Hz)",
    )
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument(
        "--trace",
        action="store_true",
        help="phase 1 with the nodes' trace (safevla_ros/trace.py): attribute the slow steps",
    )
    ap.add_argument("--slow-ms", type=float, default=60.0, help="with --trace: slow step")
    args = ap.parse_args()
    import rclpy

    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="safevla_latency_"))
    ckpt = args.checkpoint or untrained_checkpoint(workdir / "untrained.pt")
    rclpy.init()
    node = rclpy.create_node("latency_probe")
    try:
        lat = measure_latency(
            node, ckpt, args.actions, workdir, args.control_rate, trace=args.trace
        )
        rate = measure_rate(node, ckpt, args.feed_hz, args.seconds, workdir)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    if lat.size:
        p50, p99 = 1e3 * np.percentile(lat, 50), 1e3 * np.percentile(lat, 99)
        print(
            f"camera stamp -> approved action: n={lat.size} p50={p50:.1f} ms p99={p99:.1f} ms "
            f"(policy control rate {args.control_rate} Hz)"
        )
        for name, values in measure_latency.stages.items():
            print(_percentiles(f"camera stamp -> {name} arrival", values))
        first = np.array([s == 0 for s in measure_latency.steps], dtype=bool)
        # The first step of an episode includes encoding the new instruction (text encoder).
        print(_percentiles("approved, first step of an episode", lat[first]))
        print(_percentiles("approved, later steps", lat[~first]))
        if args.trace:
            print(f"trace (ms after the camera stamp; slower than {args.slow_ms:.0f} ms):")
            attribute_slow_steps(read_trace(workdir / "trace"), measure_latency.keys, args.slow_ms)
    else:
        print(f"no approved action observed; logs in {workdir}")
    print(f"policy node on 1 core, fed {args.feed_hz:.0f} Hz: {rate:.1f} actions/s")
    load_after = os.getloadavg()
    print(
        "load average (1/5/15 min) before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f} "
        "on {} cores".format(*load_before, *load_after, os.cpu_count())
    )
    print(f"logs: {workdir}")


if __name__ == "__main__":
    main()
