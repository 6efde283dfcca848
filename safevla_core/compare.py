"""The method comparison of the paper's Table 1, end to end on one machine (``safevla compare``).

Stages, each resumable in its own sub-folder of ``out_dir`` (rerunning the same command skips
what is done):

1. ``data/``: expert trajectories on training houses (:func:`safevla_core.il.collect`).
2. ``il/il.pt``: behaviour cloning (:func:`safevla_core.il.behaviour_cloning`), the common start.
3. ``<method>/``: RL fine-tuning from ``il.pt`` with each of ``ppo``, ``ppo_rs``, ``ppo_lag``,
   ``ppo_pid_lag`` and the same hyper-parameters and budget (:func:`safevla_core.rl.train.train`).
4. ``eval/<method>.json``: evaluation of IL and every method on the same fixed test episodes
   (:func:`safevla_core.evaluate.evaluate`).
5. ``report/``: ``comparison.md`` (Table-1 style), ``comparison.json``, ``cost_distribution.png``.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from safevla_core.config import METHODS, Config
from safevla_core.evaluate import evaluate, write_report
from safevla_core.report import write_comparison


@dataclass(frozen=True)
class ComparisonBudget:
    """Budget of one comparison run.

    Attributes:
        il_episodes: Expert episodes collected for behaviour cloning.
        il_epochs: Behaviour-cloning epochs.
        rl_env_steps: Environment steps of RL fine-tuning per method.
        eval_episodes: Test episodes per method (the same list for all).
    """

    il_episodes: int = 200
    il_epochs: int = 10
    rl_env_steps: int = 20_000
    eval_episodes: int = 50

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a non-positive field.
        """
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"{f.name} must be positive")


def _latest(run_dir: Path) -> Path:
    from safevla_core.rl.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    return ckpt


def converged_cost(run_dir: str | Path, tail_fraction: float = 0.25) -> float:
    """Mean episode cost over the last ``tail_fraction`` of a run's logged iterations.

    The "converged cost" of a baseline, from its ``metrics.jsonl`` (iterations in which no
    episode finished carry no ``cumulative_cost`` and are skipped).

    Raises:
        ValueError: If the run logged no episode cost.
    """
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    costs = [m["cumulative_cost"] for m in map(json.loads, lines) if "cumulative_cost" in m]
    if not costs:
        raise ValueError(f"{run_dir}: no episode finished, no converged cost to take")
    tail = costs[-max(1, int(round(len(costs) * tail_fraction))) :]
    return float(statistics.fmean(tail))


def run_comparison(
    cfg: Config,
    out_dir: str | Path,
    budget: ComparisonBudget,
    methods: tuple[str, ...] = METHODS,
    command: str = "",
    progress: bool = True,
    cost_limit_fraction: float | None = None,
) -> dict[str, Any]:
    """Run IL then every RL method from the IL checkpoint, evaluate all, write the comparison.

    Args:
        cfg: Configuration (task, houses, policy, PPO and Lagrange settings, ``train.seed``,
            ``eval.seed``); ``train.method``, ``train.out_dir``, ``train.init_checkpoint`` and
            ``train.total_env_steps`` are set per method here.
        out_dir: Folder of the whole comparison.
        budget: Sizes of every stage.
        methods: RL methods to run (default all four).
        command: The command line, recorded in the report.
        progress: Show progress bars.
        cost_limit_fraction: The paper's rule for the cost limit: this fraction of the ``ppo``
            baseline's converged episode cost (SafeVLA: 0.2 x FLaRe's 12.356 = 2.31964 for
            ObjNav; REFERENCE.md). ``ppo`` then runs first and the constrained methods use the
            derived limit; ``None`` keeps ``cfg.task.cost_limit``.

    Returns:
        ``{"reports": {name: report}, "timings_s": {stage: seconds}, "paths": {...}}``.

    Raises:
        ValueError: On an unknown method.
    """
    from safevla_core.il import behaviour_cloning, collect
    from safevla_core.rl.train import train

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {METHODS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    seed = cfg.train.seed

    t0 = time.perf_counter()
    info = collect(cfg, out / "data", budget.il_episodes, seed=seed, progress=progress)
    timings["collect"] = time.perf_counter() - t0
    tqdm.write(f"expert data: {info}")

    il_ckpt = out / "il" / "il.pt"
    t0 = time.perf_counter()
    if not il_ckpt.is_file():
        il_ckpt = behaviour_cloning(cfg, out / "data", out / "il", epochs=budget.il_epochs,
                                    seed=seed, progress=progress)  # fmt: skip
    timings["il"] = time.perf_counter() - t0

    checkpoints: dict[str, Path] = {"IL": il_ckpt}
    if cost_limit_fraction is not None:
        if "ppo" not in methods:
            raise ValueError("cost_limit_fraction needs the ppo baseline among the methods")
        methods = ("ppo", *(m for m in methods if m != "ppo"))
    limit_note = f"cost limit {cfg.task.cost_limit:g} (config)"
    limit_derived = False
    for method in methods:
        if method != "ppo" and cost_limit_fraction is not None and not limit_derived:
            base = converged_cost(out / "ppo")
            limit = cost_limit_fraction * base
            cfg = dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, cost_limit=limit))
            limit_derived = True
            limit_note = (f"cost limit {limit:.4g} = {cost_limit_fraction:g} x ppo's converged "
                          f"training episode cost {base:.4g} (the paper's rule)")  # fmt: skip
            tqdm.write(limit_note)
        run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, method=method, out_dir=str(out / method),
            init_checkpoint=str(il_ckpt), total_env_steps=budget.rl_env_steps))  # fmt: skip
        t0 = time.perf_counter()
        train(run_cfg, resume=True, progress=progress)
        timings[f"train_{method}"] = time.perf_counter() - t0
        checkpoints[method] = _latest(out / method)

    reports: dict[str, Any] = {}
    for name, ckpt in checkpoints.items():
        path = out / "eval" / f"{name}.json"
        t0 = time.perf_counter()
        if path.is_file():
            reports[name] = json.loads(path.read_text())
        else:
            reports[name] = evaluate(cfg, ckpt, episodes=budget.eval_episodes, split="test",
                                     progress=progress)  # fmt: skip
            write_report(reports[name], path)
        timings[f"eval_{name}"] = time.perf_counter() - t0

    preamble = (
        f"# Safety-{cfg.task.name} comparison\n\n"
        f"- command: `{command or 'safevla compare'}`\n"
        f"- seed: train {seed}, evaluation episodes from seed {cfg.eval.seed}\n"
        f"- budget: {budget.il_episodes} expert episodes, {budget.il_epochs} BC epochs, "
        f"{budget.rl_env_steps} RL env steps per method "
        f"({cfg.train.num_envs} envs x {cfg.train.num_steps} steps per rollout), "
        f"{budget.eval_episodes} test episodes (max {cfg.task.max_steps_eval} steps)\n"
        f"- {limit_note}\n"
        f"- expert success rate on the collected training episodes: "
        f"{info.get('expert_success_rate', float('nan')):.3f} (this invocation)\n"
        f"- wall time per stage (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + "\n"
    )
    paths = write_comparison(reports, out / "report", preamble)
    (out / "report" / "timings.json").write_text(json.dumps(timings, indent=1))
    return {"reports": reports, "timings_s": timings, "paths": paths}


__all__ = ["ComparisonBudget", "run_comparison"]
