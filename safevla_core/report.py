"""Evaluation reports: Markdown tables and PNG plots of :func:`safevla_core.evaluate.evaluate`.

One report (``safevla eval --report-dir``): ``report.md`` (Table-1 metrics, the cost distribution
split by success and failure, the success/cost correlation), ``cost_distribution.png`` and
``success_vs_cost.png``. A comparison of methods (``safevla compare``): ``comparison.md`` in the
style of the paper's Table 1 (SR / RC / OC per method, plus the cumulative cost's change against
``ppo``) and ``cost_distribution.png`` with one panel per method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from safevla_core.evaluate import (
    COST_TAIL_THRESHOLD,
    EPISODE_DIAGNOSTICS,
    HEADLINE_KEYS,
    write_report,
)

#: The paper's Table 1 for Safety-ObjNav (SR, RC, OC), printed beside our numbers
#: (REFERENCE.md "Paper results to compare against").
PAPER_TABLE1_OBJNAV: dict[str, tuple[float, float, float]] = {
    "SPOC (IL)": (0.43, 13.199, 0.305),
    "FLaRe (ppo)": (0.822, 12.021, 0.335),
    "FLaRe-RS (ppo_rs)": (0.75, 4.42, 0.335),
    "SafeVLA (ppo_lag)": (0.865, 1.698, 0.156),
}
#: The paper's Table 1 per task (SR, RC, OC; REFERENCE.md "Paper results to compare against").
#: REFERENCE.md records only FLaRe and SafeVLA for PickUp and Fetch.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float, float]]] = {
    "objnav": PAPER_TABLE1_OBJNAV,
    "pickup": {"FLaRe (ppo)": (0.912, 5.526, 1.55), "SafeVLA (ppo_lag)": (0.928, 0.246, 0.126)},
    "fetch": {"FLaRe (ppo)": (0.605, 41.407, 1.957), "SafeVLA (ppo_lag)": (0.637, 7.93, 0.154)},
}
#: Table titles of the tasks (paper section 5).
TASK_TITLES: dict[str, str] = {
    "objnav": "Safety-ObjNav",
    "pickup": "Safety-PickUp",
    "fetch": "Safety-Fetch",
}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if math.isnan(f) else f"{f:.{digits}f}"


def _bin_labels(edges: list[float]) -> list[str]:
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        out.append(f">={a:g}" if math.isinf(b) else f"{a:g}-{b:g}")
    return out


def markdown_report(report: Mapping[str, Any], title: str = "Evaluation") -> str:
    """Markdown of one evaluation report.

    Args:
        report: Output of :func:`safevla_core.evaluate.evaluate` (or ``aggregate``).
        title: Heading.

    Returns:
        The Markdown text.

    Raises:
        KeyError: If the report lacks the Table-1 metrics.
    """
    lines = [f"# {title}", ""]
    meta = [f"{k}: `{report[k]}`" for k in ("checkpoint", "split", "extreme", "ood") if k in report]
    if meta:
        lines += ["; ".join(meta), ""]
    lines += ["| metric | value |", "|---|---|"]
    for k in HEADLINE_KEYS:
        if k in report:
            lines.append(f"| {k} | {_fmt(report[k])} |")
    for k in ("success_rate_ci", "cumulative_cost_ci"):
        if k in report:
            lo, hi = report[k]
            lines.append(f"| {k} (95%) | [{_fmt(lo)}, {_fmt(hi)}] |")
    per_type = report.get("per_target_type")
    if per_type:
        # reports written before run_episode recorded the diagnostics lack them
        extra = [k for k in EPISODE_DIAGNOSTICS if all(k in g for g in per_type.values())]
        lines += [
            "",
            "## By target type",
            "",
            "| target | episodes | SR | cumulative cost |" + "".join(f" {k} |" for k in extra),
            "|---|---|---|---|" + "---|" * len(extra),
        ]
        for t, g in per_type.items():
            lines.append(
                f"| {t} | {int(g['episodes'])} | {_fmt(g['success_rate'])} | "
                f"{_fmt(g['cumulative_cost'], 2)} |" + "".join(f" {_fmt(g[k])} |" for k in extra)
            )
    breakdown = report.get("outcomes")
    if breakdown:
        lines += [
            "",
            "## Where the episodes end",
            "",
            "| outcome | episodes | share | median length |",
            "|---|---|---|---|",
        ]
        for name, g in breakdown.items():
            lines.append(
                f"| {name} | {int(g['episodes'])} | {_fmt(g['share'])} | "
                f"{_fmt(g['median_length'], 0)} |"
            )
    head = report.get("stop_head")
    if head:
        lines += [
            "",
            f"The visibility head at p >= {_fmt(head['threshold'], 2)} on the policy's own "
            f"states: precision {_fmt(head['precision'])}, recall {_fmt(head['recall'])} "
            f"({int(head['hits'])} of {int(head['fires'])} firings in the success region, "
            f"{int(head['region_steps'])} steps there).",
        ]
    dist = report.get("cost_distribution")
    if dist:
        labels = _bin_labels(dist["edges"])
        lines += [
            "",
            "## Cumulative-cost distribution",
            "",
            "| group | n | max | mean | share > "
            f"{COST_TAIL_THRESHOLD:g} | " + " | ".join(labels) + " |",
            "|---" * (5 + len(labels)) + "|",
        ]
        for group in ("all", "success", "failure"):
            g = dist[group]
            lines.append(
                f"| {group} | {g['n']} | {_fmt(g['max'], 1)} | {_fmt(g['mean'], 2)} | "
                f"{_fmt(g['share_above_threshold'], 3)} | "
                + " | ".join(str(c) for c in g["counts"])
                + " |"
            )
    corr = report.get("correlation")
    if corr:
        lines += [
            "",
            "## Success vs cumulative cost",
            "",
            f"- Pearson r = {_fmt(corr['pearson_r'])}, p = {_fmt(corr['p_value'], 4)}",
            f"- logistic fit: P(success) = sigmoid({_fmt(corr['logistic_intercept'])} "
            f"+ {_fmt(corr['logistic_slope'], 4)} x cost)",
        ]
        if corr.get("note"):
            lines.append(f"- {corr['note']}")
    return "\n".join(lines) + "\n"


def plot_cost_distribution(reports: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Bar chart of the cumulative-cost histogram split by success/failure, one panel per report.

    Args:
        reports: ``{name: report}`` (each with ``cost_distribution``).
        path: PNG file to write.

    Returns:
        The path.

    Raises:
        ValueError: If no report is given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not reports:
        raise ValueError("no report to plot")
    n = len(reports)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False, sharey=True)
    for ax, (name, rep) in zip(axes[0], reports.items(), strict=True):
        dist = rep["cost_distribution"]
        labels = _bin_labels(dist["edges"])
        x = np.arange(len(labels))
        s = np.array(dist["success"]["counts"])
        f = np.array(dist["failure"]["counts"])
        ax.bar(x, s, color="tab:green", label="success")
        ax.bar(x, f, bottom=s, color="tab:red", label="failure")
        ax.set_xticks(x, labels, rotation=45, fontsize=7)
        ax.set_title(
            f"{name}\nmax {_fmt(dist['all']['max'], 0)}, "
            f">{COST_TAIL_THRESHOLD:g}: {_fmt(dist['all']['share_above_threshold'], 2)}",
            fontsize=8,
        )
        ax.set_xlabel("cumulative cost")
    axes[0][0].set_ylabel("episodes")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def plot_success_vs_cost(report: Mapping[str, Any], path: str | Path) -> Path:
    """Scatter of success (0/1, jittered) against cumulative cost with the logistic fit.

    Returns:
        The path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = report["episodes"]
    cost = np.array([float(e["cumulative_cost"]) for e in eps])
    succ = np.array([float(e["success"]) for e in eps])
    jitter = np.random.default_rng(0).uniform(-0.04, 0.04, size=len(eps))
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.scatter(cost, succ + jitter, s=12, alpha=0.6)
    corr = report.get("correlation", {})
    a, b = float(corr.get("logistic_intercept", np.nan)), float(corr.get("logistic_slope", np.nan))
    if np.isfinite(a) and np.isfinite(b) and len(cost):
        xs = np.linspace(0.0, max(float(cost.max()), 1.0), 200)
        ax.plot(xs, 1.0 / (1.0 + np.exp(-(a + b * xs))), color="tab:orange", label="logistic fit")
        ax.legend(fontsize=7)
    ax.set_xlabel("cumulative cost")
    ax.set_ylabel("success")
    ax.set_title(
        f"Pearson r {_fmt(corr.get('pearson_r', np.nan))}, "
        f"p {_fmt(corr.get('p_value', np.nan), 3)}",
        fontsize=8,
    )
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def write_eval_report(
    report: Mapping[str, Any], out_dir: str | Path, title: str = "Evaluation"
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``cost_distribution.png``, ``success_vs_cost.png``.

    Returns:
        ``{"json", "markdown", "cost_plot", "success_plot"}`` -> paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_report(dict(report), out / "report.json")}
    md = out / "report.md"
    md.write_text(markdown_report(report, title))
    paths["markdown"] = md
    paths["cost_plot"] = plot_cost_distribution({title: report}, out / "cost_distribution.png")
    paths["success_plot"] = plot_success_vs_cost(report, out / "success_vs_cost.png")
    return paths


def comparison_table(reports: Mapping[str, Mapping[str, Any]], baseline: str = "ppo") -> str:
    """Table-1-style Markdown table: SR / RC / OC and more per method.

    The last column is the change of the mean cumulative cost against ``baseline`` (the paper's
    headline: SafeVLA -83.58% average cost against FLaRe).

    Args:
        reports: ``{method: report}`` in display order.
        baseline: Method the cost change is measured against (omitted if absent or zero cost).

    Returns:
        Markdown.
    """
    head = (
        "| method | SR | RC | OC | cum. cost | SPL | length | max cost | share > "
        f"{COST_TAIL_THRESHOLD:g} | cost vs {baseline} |"
    )
    lines = [head, "|---" * 10 + "|"]
    base = reports.get(baseline)
    base_cost = float(base["cumulative_cost"]) if base is not None else float("nan")
    for name, r in reports.items():
        dist = r.get("cost_distribution", {}).get("all", {})
        change = "n/a"
        if base is not None and base_cost > 0 and name != baseline:
            change = f"{100.0 * (float(r['cumulative_cost']) - base_cost) / base_cost:+.1f}%"
        lines.append(
            f"| {name} | {_fmt(r['success_rate'])} | {_fmt(r['robot_cost'])} | "
            f"{_fmt(r['object_cost'])} | {_fmt(r['cumulative_cost'])} | {_fmt(r.get('spl'))} | "
            f"{_fmt(r['episode_length'], 1)} | {_fmt(dist.get('max'), 0)} | "
            f"{_fmt(dist.get('share_above_threshold'))} | {change} |"
        )
    return "\n".join(lines) + "\n"


def paper_table(task: str = "objnav") -> str:
    """The paper's Table 1 rows of one task as Markdown, headed by its title, for reference.

    Raises:
        KeyError: On a task the paper's Table 1 does not have.
    """
    lines = [
        f"## The paper (Table 1, {TASK_TITLES[task]})",
        "",
        "| method (paper) | SR | RC | OC |",
        "|---|---|---|---|",
    ]
    for name, (sr, rc, oc) in PAPER_TABLE1[task].items():
        lines.append(f"| {name} | {sr} | {rc} | {oc} |")
    return "\n".join(lines) + "\n"


def write_comparison(
    reports: Mapping[str, Mapping[str, Any]], out_dir: str | Path, preamble: str = ""
) -> dict[str, Path]:
    """Write ``comparison.md``, ``comparison.json`` and ``cost_distribution.png``.

    Args:
        reports: ``{method: report}``.
        out_dir: Output folder.
        preamble: Markdown placed before the tables (command, seed, budget).

    Returns:
        ``{"markdown", "json", "cost_plot"}`` -> paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "comparison.md"
    md.write_text(preamble + "\n## Our run\n\n" + comparison_table(reports) + "\n" + paper_table())
    js = out / "comparison.json"
    slim = {k: {m: v for m, v in r.items() if m != "episodes"} for k, r in reports.items()}
    js.write_text(json.dumps(slim, indent=1))
    plot = plot_cost_distribution(reports, out / "cost_distribution.png")
    return {"markdown": md, "json": js, "cost_plot": plot}


__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE1_OBJNAV",
    "TASK_TITLES",
    "comparison_table",
    "markdown_report",
    "paper_table",
    "plot_cost_distribution",
    "plot_success_vs_cost",
    "write_comparison",
    "write_eval_report",
]
