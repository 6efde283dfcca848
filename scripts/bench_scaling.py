#!/usr/bin/env python3
"""End-to-end training env steps/s on one machine: 1 rank x 2 envs against 2 ranks x 1 env.

One run of this script trains the same config with ``safevla train`` (short runs, the first
iteration, with the workers' start-up, left out) as:

* ``1rank_x_2envs``: one process, two environments, ``--threads`` learner threads;
* ``1rank_x_2envs_halfthreads``: the same with ``--threads / 2`` learner threads (a control:
  how much of a difference is thread oversubscription, not data parallelism);
* ``2ranks_x_1env``: ``torchrun --standalone --nproc-per-node 2``, one environment and
  ``--threads / 2`` learner threads per rank (gloo).

With ``--repeats N`` the layouts alternate N times (the machine's load drifts) and the median
is printed beside every run. It also prints, for docs/scaling.md, per-component costs measured
in this process: a simulator step with both cameras rendered (``safevla_core.bench.bench_sim``)
and the frozen visual encoder at the training size and at the paper's 384x224 with the paper's
4 envs per GPU (``bench_encoder``), and the time of one gradient all-reduce between 2 gloo
ranks here (:func:`safevla_core.rl.distributed.all_reduce_gradients`) of the paper model's
trainable parameters (actor + two critics, faithful mode: 61.5M float32, 235 MB).

Usage (from the repository root, with the package importable)::

    python scripts/bench_scaling.py [--config FILE] [--set KEY=VALUE ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH``."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run_train(
    out_dir: Path, ranks: int, envs: int, threads: int, args: argparse.Namespace
) -> dict[str, float]:
    """Train ``ranks x envs`` for ``args.iterations`` iterations; figures after the first.

    Returns:
        ``env_steps_per_s`` (all ranks), ``collect_s`` and ``update_s`` (mean per iteration,
        rank 0's clock) and ``env_steps`` measured.

    Raises:
        RuntimeError: If the training command fails.
    """
    per_iter = ranks * envs * args.num_steps
    cli = [
        "-m",
        "safevla_core.cli",
        "train",
        "--no-progress",
        "--no-resume",
        "--from-scratch",
        "--out-dir",
        str(out_dir),
        "--num-envs",
        str(envs),
        "--num-steps",
        str(args.num_steps),
        "--total-env-steps",
        str(per_iter * args.iterations),
        "--set",
        f"train.torch_threads={threads}",
        "--set",
        "train.critic_warmup_env_steps=0",
        "--set",
        f"train.checkpoint_every={args.iterations}",
    ]
    if args.config is not None:
        cli += ["--config", str(args.config)]
    for item in args.overrides:
        cli += ["--set", item]
    launch = [sys.executable]
    if ranks > 1:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    proc = subprocess.run([*launch, *cli], env=_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{ranks} x {envs} run failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()][1:]
    seconds = sum(per_iter / r["fps"] for r in rows)
    return {
        "env_steps_per_s": per_iter * len(rows) / seconds,
        "collect_s": sum(r["collect_s"] for r in rows) / len(rows),
        "update_s": sum(r["update_s"] for r in rows) / len(rows),
        "env_steps": float(per_iter * len(rows)),
    }


def allreduce_worker(numel: int, repeats: int, out: Path) -> None:
    """One rank of the all-reduce measurement: median seconds of ``all_reduce_gradients``."""
    import statistics as st
    import time

    import torch

    from safevla_core.rl import distributed

    ctx = distributed.init_distributed("cpu")
    param = torch.nn.Parameter(torch.zeros(numel))
    param.grad = torch.ones(numel)
    times = []
    for _ in range(repeats):
        distributed.barrier()
        t0 = time.perf_counter()
        distributed.all_reduce_gradients([param])
        times.append(time.perf_counter() - t0)
    if ctx.is_main:
        out.write_text(json.dumps({"seconds": st.median(times), "numel": numel}))
    distributed.shutdown()


def bench_allreduce(numel: int, repeats: int = 5) -> float:
    """Median seconds of one gradient all-reduce of ``numel`` float32 between 2 gloo ranks."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "allreduce.json"
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            __file__,
            "--allreduce-worker",
            str(numel),
            "--repeats",
            str(repeats),
            "--json",
            str(out),
        ]
        proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"all-reduce measurement failed:\n{proc.stderr[-3000:]}")
        return float(json.loads(out.read_text())["seconds"])


#: Trainable parameters of config/paper.yaml's actor + reward critic + cost critic, faithful
#: mode (counted with ``ActorCritic(build_policy(paper.policy), separate=True)``).
PAPER_TRAINABLE_PARAMS = 61_478_466


def main(argv: list[str] | None = None) -> int:
    """Run both layouts and the component costs; print one line per figure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--num-steps", type=int, default=32, help="steps per env per rollout")
    p.add_argument("--iterations", type=int, default=4, help="iterations per run (first dropped)")
    p.add_argument("--threads", type=int, default=2, help="learner threads over all ranks")
    p.add_argument("--sim-steps", type=int, default=100, help="actions for the simulator figure")
    p.add_argument("--repeats", type=int, default=1, help="alternating runs of each layout")
    p.add_argument("--allreduce-worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.allreduce_worker is not None:  # a rank of bench_allreduce, launched by torchrun
        allreduce_worker(args.allreduce_worker, args.repeats, args.json)
        return 0
    if args.iterations < 2:
        p.error("--iterations must be >= 2 (the first one is left out)")

    import torch

    from safevla_core.bench import CONFIG_DIR, bench_encoder, bench_sim
    from safevla_core.config import load_config, parse_dotted

    cfg = load_config(args.config, parse_dotted(args.overrides))
    half = max(1, args.threads // 2)
    layouts = {"1rank_x_2envs": (1, 2, args.threads), "2ranks_x_1env": (2, 1, half)}
    if half != args.threads:
        layouts["1rank_x_2envs_halfthreads"] = (1, 2, half)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name, (ranks, envs, threads) in layouts.items():
                runs[name].append(run_train(Path(tmp) / f"{name}_{i}", ranks, envs, threads, args))
    fig: dict[str, Any] = {}
    for name, rs in runs.items():
        for k in rs[0]:
            fig[f"{name}_{k}"] = statistics.median(r[k] for r in rs)
        if args.repeats > 1:
            fig[f"{name}_env_steps_per_s_runs"] = [round(r["env_steps_per_s"], 2) for r in rs]
    fig["speedup_2ranks_over_1rank"] = (
        fig["2ranks_x_1env_env_steps_per_s"] / fig["1rank_x_2envs_env_steps_per_s"]
    )
    if "1rank_x_2envs_halfthreads_env_steps_per_s" in fig:  # same threads per learner
        fig["speedup_2ranks_over_1rank_halfthreads"] = (
            fig["2ranks_x_1env_env_steps_per_s"] / fig["1rank_x_2envs_halfthreads_env_steps_per_s"]
        )
    torch.set_num_threads(1)
    w, h = cfg.policy.image_width, cfg.policy.image_height
    sim = bench_sim(cfg, w, h, args.sim_steps)
    fig["sim_step_ms"] = 1000.0 / sim["actions_per_s"]
    fig["sim_physics_ms"] = 1000.0 / sim["physics_actions_per_s"]
    fig["sim_step_ms_paper_size"] = (
        1000.0 / bench_sim(cfg, 384, 224, args.sim_steps // 2)["actions_per_s"]
    )
    torch.set_num_threads(max(1, args.threads // 2))
    fig.update(bench_encoder(cfg))  # encoder_ms_per_image_b1, _batched, encoder_batch
    paper = load_config(CONFIG_DIR / "paper.yaml", {"train": {"num_envs": 4}})
    fig["encoder_ms_per_image_paper_size_batch8"] = bench_encoder(paper)[
        "encoder_ms_per_image_batched"
    ]
    fig["allreduce_s_paper_grads_2_gloo_ranks"] = bench_allreduce(PAPER_TRAINABLE_PARAMS)
    for k, v in fig.items():
        print(f"{k:<44} {v:10.3f}" if isinstance(v, float) else f"{k:<44} {v}")
    if args.json is not None:
        args.json.write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
