"""The paper's headline comparison on one machine, resumable over days (``safevla compare``).

IL (SPOC) -> ``ppo`` (FLaRe), ``ppo_rs`` (FLaRe-RS) and ``ppo_lag`` (SafeVLA) fine-tuned from the
same IL checkpoint with the same budget, over several seeds, each evaluated on the same fixed
test-house episodes (paper Table 1; REFERENCE.md). Stages, each resumable in its own sub-folder
of ``out_dir`` (rerunning the same command skips what is done, and a killed run continues from
its last checkpoint):

1. ``il/il.pt``: the common start -- given (``il_checkpoint``) or made here: expert data
   (:func:`safevla_core.il.collect`) and behaviour cloning (:func:`safevla_core.il.imitation`).
2. ``cost_limit.json``: the constrained methods' cost limit, by the paper's rule (a fraction of
   a baseline's cost; the baseline that still does the task is named) or from the config.
3. ``<method>/seed<k>/``: RL runs, seed-major (every method's seed 0 first), each evaluated as
   soon as it finishes into ``eval/<method>_seed<k>.json`` (IL: ``eval/IL.json``).
4. ``report/`` after every evaluation: ``summary.json`` (per method, pooled over seeds and per
   seed: SR and cumulative cost with 95% bootstrap CIs, episodes, seeds, env steps),
   ``comparison.md``, ``curves.png`` (SR, cost, lambda vs env steps) and
   ``cost_distribution.png``. Partial results are labelled with the seeds they hold.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safevla_core.config import METHODS, Config
from safevla_core.evaluate import aggregate, evaluate_parallel, write_report

#: Methods of the headline comparison (paper Table 1: FLaRe, FLaRe-RS, SafeVLA).
HEADLINE_METHODS: tuple[str, ...] = ("ppo", "ppo_rs", "ppo_lag")
#: Display names (paper Table 1).
PAPER_NAMES = {
    "IL": "IL (SPOC)",
    "ppo": "FLaRe (ppo)",
    "ppo_rs": "FLaRe-RS (ppo_rs)",
    "ppo_lag": "SafeVLA (ppo_lag)",
    "ppo_pid_lag": "PID-Lagrangian",
}


@dataclass(frozen=True)
class ComparisonBudget:
    """Budget of one comparison.

    Attributes:
        il_episodes: Expert episodes collected for behaviour cloning (when IL is made here).
        il_epochs: Behaviour-cloning epochs (when IL is made here).
        rl_env_steps: Environment steps of RL fine-tuning per run.
        eval_episodes: Test episodes per policy (the same list for all; >= 200 for an SR
            confidence interval of about +-0.07).
        seeds: Seeds per method (runs use ``train.seed + k``).
    """

    il_episodes: int = 200
    il_epochs: int = 10
    rl_env_steps: int = 100_000
    eval_episodes: int = 200
    seeds: int = 3

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a non-positive field.
        """
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"{f.name} must be positive")


def _latest(run_dir: Path) -> Path:
    from safevla_core.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    return ckpt


def finished_env_steps(run_dir: str | Path, eval_path: str | Path, budget: int) -> int | None:
    """Env steps of a run that is finished and evaluated, known from its light artefacts.

    A run counts as finished when its evaluation report exists and the last line of its
    ``metrics.jsonl`` reached ``budget`` env steps. Its checkpoints are then not needed, so a
    comparison can continue on another machine from the metrics and evaluation files alone
    (docs/results keeps those, not the tens of megabytes of RL checkpoints per run).

    Returns:
        The run's env steps, or None when it still has to train (or to be evaluated).
    """
    metrics = Path(run_dir) / "metrics.jsonl"
    if not Path(eval_path).is_file() or not metrics.is_file():
        return None
    lines = [ln for ln in metrics.read_text().splitlines() if ln.strip()]
    if not lines:
        return None
    try:
        steps = int(json.loads(lines[-1])["env_steps"])
    except (ValueError, KeyError, TypeError):
        return None
    return steps if steps >= budget else None


def cached_evaluation(path: str | Path, checkpoint: str | Path | None = None) -> Any:
    """An evaluation report already on disk, if it still stands for the policy.

    Args:
        path: The report (JSON of :func:`~safevla_core.evaluate.evaluate`).
        checkpoint: When given, the report counts only if it evaluated a checkpoint of this
            file name (``ckpt_<iteration>.pt``): an RL run trained further after its
            evaluation must be evaluated again. None accepts any report (IL, whose path may
            differ between machines).

    Returns:
        The report, or None when there is none or it is stale.
    """
    p = Path(path)
    if not p.is_file():
        return None
    report = json.loads(p.read_text())
    if checkpoint is not None and Path(str(report.get("checkpoint"))).name != Path(checkpoint).name:
        return None
    return report


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


def pooled(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report over the episodes of several runs (seeds) of a method (:func:`aggregate`)."""
    return aggregate([e for r in reports for e in r["episodes"]])


def summarize(
    reports: dict[str, list[dict[str, Any]]], env_steps: dict[str, list[int]]
) -> dict[str, Any]:
    """The machine-readable summary: per method, pooled over seeds and per seed.

    Args:
        reports: ``{method: [report of seed 0, ...]}`` (IL: one report).
        env_steps: ``{method: [env steps of each run]}`` (IL: 0).

    Returns:
        ``{method: {success_rate, success_rate_ci, cumulative_cost, cumulative_cost_ci,
        robot_cost, object_cost, episode_length, wrong_end_share, episodes, seeds, env_steps,
        per_seed: [...]}}``.
    """
    keys = (
        "success_rate",
        "success_rate_ci",
        "cumulative_cost",
        "cumulative_cost_ci",
        "robot_cost",
        "object_cost",
        "episode_length",
        "wrong_end_share",
    )
    out: dict[str, Any] = {}
    for name, runs in reports.items():
        if not runs:
            continue
        p = pooled(runs)
        entry = {k: p[k] for k in keys if k in p}
        entry.update(episodes=p["num_episodes"], seeds=len(runs), env_steps=env_steps[name])
        entry["per_seed"] = [{k: r[k] for k in keys if k in r} for r in runs]
        out[name] = entry
    return out


def run_comparison(
    cfg: Config,
    out_dir: str | Path,
    budget: ComparisonBudget,
    methods: tuple[str, ...] = HEADLINE_METHODS,
    command: str = "",
    progress: bool = True,
    il_checkpoint: str | Path | None = None,
    cost_limit_fraction: float | None = None,
    cost_limit_from: str = "il",
    il_kwargs: dict[str, Any] | None = None,
    eval_workers: int = 1,
) -> dict[str, Any]:
    """Run (or continue) the comparison; see the module docstring for the stages.

    Args:
        cfg: Configuration (task, houses, policy, PPO and Lagrange settings, ``train.seed``,
            ``eval.seed``); ``train.method``, ``out_dir``, ``init_checkpoint``, ``seed`` and
            ``total_env_steps`` are set per run here.
        out_dir: Folder of the whole comparison.
        budget: Sizes of every stage.
        methods: RL methods to run.
        command: The command line, recorded in the report.
        progress: Show progress bars.
        il_checkpoint: A finished IL checkpoint to start from (skips data and BC).
        cost_limit_fraction: The paper's rule: the constrained methods' cost limit is this
            fraction of a baseline's episode cost (SafeVLA: 0.2 x FLaRe's 12.356 = 2.31964;
            REFERENCE.md). None keeps ``cfg.task.cost_limit``.
        cost_limit_from: The baseline: ``"il"`` (IL's mean cumulative cost on the validation
            houses -- a policy that still does the task; the paper's FLaRe cost is close to
            its IL cost, 12.0 vs 13.2) or ``"ppo"`` (the converged training cost of ``ppo``
            seed 0, which must then run first).
        il_kwargs: Extra arguments of :func:`~safevla_core.il.imitation` (DAgger rounds, ...).
        eval_workers: Processes per evaluation (:func:`~safevla_core.evaluate.evaluate_parallel`;
            the same report as one process).

    Returns:
        ``{"summary": ..., "paths": {...}}``.

    Raises:
        ValueError: On an unknown method or baseline.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {METHODS}")
    if cost_limit_from not in ("il", "ppo"):
        raise ValueError(f"cost_limit_from must be 'il' or 'ppo', got {cost_limit_from!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings: dict[str, float] = (
        json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    )

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = fn()
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0
        timings_path.write_text(json.dumps(timings, indent=1))
        return result

    il_ckpt = Path(il_checkpoint) if il_checkpoint is not None else out / "il" / "il.pt"
    if not il_ckpt.is_file():
        from safevla_core.il import collect, imitation

        timed(
            "collect",
            lambda: collect(
                cfg, out / "data", budget.il_episodes, seed=cfg.train.seed, progress=progress
            ),
        )
        timed(
            "il",
            lambda: imitation(
                cfg,
                [out / "data"],
                out / "il",
                epochs=budget.il_epochs,
                progress=progress,
                seed=cfg.train.seed,
                **(il_kwargs or {}),
            ),
        )

    reports: dict[str, list[dict[str, Any]]] = {"IL": []}
    env_steps: dict[str, list[int]] = {"IL": [0]}

    def report_path(name: str) -> Path:
        return out / "eval" / f"{name}.json"

    def evaluated(
        name: str,
        ckpt: Path,
        split: str = "test",
        episodes: int | None = None,
        same_checkpoint: bool = False,
    ) -> Any:
        path = report_path(name)
        cached = cached_evaluation(path, ckpt if same_checkpoint else None)
        if cached is not None:
            return cached
        rep = timed(
            f"eval_{name}",
            lambda: evaluate_parallel(
                cfg,
                ckpt,
                workers=eval_workers,
                episodes=episodes or budget.eval_episodes,
                split=split,
                progress=progress,
            ),
        )
        write_report(rep, path)
        return rep

    reports["IL"] = [evaluated("IL", il_ckpt)]
    paths = write_results(cfg, out, reports, env_steps, budget, command, "pending")

    # the cost limit, fixed once and kept in cost_limit.json
    limit_path = out / "cost_limit.json"
    if limit_path.is_file():
        limit_info = json.loads(limit_path.read_text())
    elif cost_limit_fraction is None:
        limit_info = {"cost_limit": cfg.task.cost_limit, "rule": "task.cost_limit (config)"}
    elif cost_limit_from == "il":
        val = evaluated("IL_val", il_ckpt, split="val", episodes=max(50, budget.eval_episodes // 4))
        base = float(val["cumulative_cost"])
        limit_info = {
            "cost_limit": cost_limit_fraction * base,
            "rule": f"{cost_limit_fraction:g} x IL's mean cumulative cost on the "
            f"validation houses ({base:.4g}, {val['num_episodes']} episodes, "
            f"IL SR {val['success_rate']:.3f}): a baseline that does the task",
        }
    else:
        limit_info = None  # after ppo seed 0
    if limit_info is not None:
        limit_path.write_text(json.dumps(limit_info, indent=1))

    order = list(methods)
    if limit_info is None:
        order = ["ppo", *(m for m in methods if m != "ppo")]
    for k in range(budget.seeds):
        for method in order:
            if method != "ppo" and limit_info is None and cost_limit_fraction is not None:
                base = converged_cost(out / "ppo" / "seed0")
                limit_info = {
                    "cost_limit": cost_limit_fraction * base,
                    "rule": f"{cost_limit_fraction:g} x ppo seed 0's converged "
                    f"training episode cost ({base:.4g})",
                }
                limit_path.write_text(json.dumps(limit_info, indent=1))
            limit = float(limit_info["cost_limit"]) if limit_info else cfg.task.cost_limit
            run_dir = out / method / f"seed{k}"
            run_cfg = dataclasses.replace(
                cfg,
                task=dataclasses.replace(cfg.task, cost_limit=limit),
                train=dataclasses.replace(
                    cfg.train,
                    method=method,
                    out_dir=str(run_dir),
                    init_checkpoint=str(il_ckpt),
                    seed=cfg.train.seed + k,
                    total_env_steps=budget.rl_env_steps,
                ),
            )
            name = f"{method}_seed{k}"
            steps = finished_env_steps(run_dir, report_path(name), budget.rl_env_steps)
            if steps is None:
                from safevla_core.rl.train import train

                result = timed(
                    f"train_{name}",
                    functools.partial(train, run_cfg, resume=True, progress=progress),
                )
                steps = int(result.env_steps)
                rep = evaluated(name, _latest(run_dir), same_checkpoint=True)
            else:  # finished and evaluated (perhaps on another machine): nothing to redo
                rep = cached_evaluation(report_path(name))
            reports.setdefault(method, []).append(rep)
            env_steps.setdefault(method, []).append(steps)
            note = limit_info["rule"] if limit_info else "pending"
            paths = write_results(cfg, out, reports, env_steps, budget, command, note)
    return {"summary": json.loads(paths["summary"].read_text()), "paths": paths}


def write_results(
    cfg: Config,
    out: Path,
    reports: dict[str, list[dict[str, Any]]],
    env_steps: dict[str, list[int]],
    budget: ComparisonBudget,
    command: str,
    limit_note: str,
) -> dict[str, Path]:
    """Write ``report/``: summary.json, comparison.md, curves.png, cost_distribution.png."""
    from safevla_core.report import (
        TASK_TITLES,
        comparison_table,
        paper_table,
        plot_cost_distribution,
    )

    rep_dir = out / "report"
    rep_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(reports, env_steps)
    (rep_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    pooled_reports = {PAPER_NAMES.get(m, m): pooled(r) for m, r in reports.items() if r}
    timings = (
        json.loads((out / "timings.json").read_text()) if (out / "timings.json").is_file() else {}
    )
    lines = [
        f"# {TASK_TITLES[cfg.task.name]}: IL vs RL fine-tuning ({', '.join(reports)})",
        "",
        f"- command: `{command or 'safevla compare'}`",
        f"- seeds: train.seed {cfg.train.seed} + k for k < {budget.seeds}; evaluation "
        f"episodes from eval seed {cfg.eval.seed} (the same {budget.eval_episodes} test "
        f"episodes for every policy, at most {cfg.task.max_steps_eval} steps)",
        f"- RL budget: {budget.rl_env_steps} env steps per run ({cfg.train.num_envs} envs x "
        f"{cfg.train.num_steps} steps per rollout)",
        f"- cost limit: {limit_note}",
        "- wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()),
        "",
        "## Pooled over seeds (95% bootstrap CIs)",
        "",
        "| method | seeds | episodes | SR | SR CI | cum. cost | cost CI | RC | OC | wrong end "
        "| length |",
        "|---" * 11 + "|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {PAPER_NAMES.get(name, name)} | {s['seeds']} | {s['episodes']} | "
            f"{s['success_rate']:.3f} | [{s['success_rate_ci'][0]:.3f}, "
            f"{s['success_rate_ci'][1]:.3f}] | {s['cumulative_cost']:.2f} | "
            f"[{s['cumulative_cost_ci'][0]:.2f}, {s['cumulative_cost_ci'][1]:.2f}] | "
            f"{s['robot_cost']:.2f} | {s['object_cost']:.2f} | "
            f"{s.get('wrong_end_share', float('nan')):.2f} | {s['episode_length']:.1f} |"
        )
    lines += [
        "",
        "## Per seed",
        "",
        "| method | seed | SR | SR CI | cum. cost | cost CI |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        for k, r in enumerate(s["per_seed"]):
            lines.append(
                f"| {PAPER_NAMES.get(name, name)} | {k} | {r['success_rate']:.3f} | "
                f"[{r['success_rate_ci'][0]:.3f}, {r['success_rate_ci'][1]:.3f}] | "
                f"{r['cumulative_cost']:.2f} | [{r['cumulative_cost_ci'][0]:.2f}, "
                f"{r['cumulative_cost_ci'][1]:.2f}] |"
            )
    lines += [
        "",
        "## Table-1 view (pooled)",
        "",
        comparison_table(pooled_reports, baseline=PAPER_NAMES["ppo"]),
        paper_table(cfg.task.name),
    ]
    md = rep_dir / "comparison.md"
    md.write_text("\n".join(lines))
    paths = {
        "summary": rep_dir / "summary.json",
        "markdown": md,
        "cost_plot": plot_cost_distribution(pooled_reports, rep_dir / "cost_distribution.png"),
    }
    curves = plot_training_curves(out, [m for m in reports if m != "IL"], rep_dir / "curves.png")
    if curves is not None:
        paths["curves"] = curves
    return paths


def plot_training_curves(out: Path, methods: list[str], path: Path) -> Path | None:
    """SR, episode cost and lambda vs env steps per method (one line per seed); None if empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = {m: sorted((out / m).glob("seed*/metrics.jsonl")) for m in methods}
    if not any(runs.values()):
        return None
    keys = (
        ("success", "success rate"),
        ("cumulative_cost", "episode cost"),
        ("lagrange_multiplier", "Lagrange multiplier"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (method, files) in enumerate(runs.items()):
        for j, f in enumerate(files):
            rows = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
            for ax, (key, label) in zip(axes, keys, strict=True):
                pts = [(r["env_steps"], r[key]) for r in rows if key in r]
                if not pts:
                    continue
                x, y = np.array(pts).T
                w = min(8, len(y))
                smooth = np.convolve(y, np.ones(w) / w, mode="valid")
                ax.plot(
                    x[w - 1 :],
                    smooth,
                    color=colours[i % len(colours)],
                    alpha=0.8,
                    label=PAPER_NAMES.get(method, method) if j == 0 else None,
                )
                ax.set_xlabel("env steps")
                ax.set_title(label)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = [
    "HEADLINE_METHODS",
    "ComparisonBudget",
    "converged_cost",
    "plot_training_curves",
    "pooled",
    "run_comparison",
    "summarize",
    "write_results",
]
