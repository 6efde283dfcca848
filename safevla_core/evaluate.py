"""Evaluation on held-out houses: SR, RC, OC, cumulative cost and the five components.

Metric definitions follow the paper (section 5, Table 1): SR is the share of episodes that end in
success; RC and OC are the mean cumulative robot and object costs per episode; the cumulative
cost is their sum; each safety-critical component is reported as its mean count per episode.
Episodes come from a fixed list (house ``i mod n_split``, seed ``eval.seed + i``) so that every
method is evaluated on the same episodes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from safevla_core.agent import PolicyAgent
from safevla_core.config import Config
from safevla_core.costs import COMPONENT_NAMES
from safevla_core.env import SafetyChoresEnv, split_size
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA


def episode_list(cfg: Config, split: str, episodes: int) -> list[tuple[int, int]]:
    """The fixed evaluation episodes: ``[(house_index, seed), ...]``."""
    n = split_size(cfg, split)
    return [(i % n, cfg.eval.seed + i) for i in range(episodes)]


def run_episode(env: SafetyChoresEnv, agent: PolicyAgent, house_index: int, seed: int) -> dict[str, Any]:
    """Run one episode to ``end`` or the step limit and return its summary.

    Returns:
        The env's episode summary plus ``house_id``, ``target_type``, ``instruction``, ``seed``.
    """
    obs, info = env.reset(seed=seed, options={"house_index": house_index})
    agent.reset(obs["instruction"])
    while True:
        decision = agent.act(obs[NAV_CAMERA], obs[MANIP_CAMERA], bool(obs["in_hand"]))
        obs, _reward, _cost, terminated, truncated, step_info = env.step(int(decision.action))
        if terminated or truncated:
            summary = dict(step_info["episode"])
            summary.update(house_id=info["house_id"], target_type=info["target_type"],
                           instruction=info["instruction"], seed=seed)  # fmt: skip
            return summary


def aggregate(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Table-1 metrics over episode summaries.

    Returns:
        ``success_rate``, ``robot_cost``, ``object_cost``, ``cumulative_cost``, each component's
        mean, ``episode_length``, ``num_episodes`` and the per-episode list ``episodes``.

    Raises:
        ValueError: If the list is empty.
    """
    if not episodes:
        raise ValueError("no episodes to aggregate")

    def mean(key: str) -> float:
        return float(np.mean([float(e[key]) for e in episodes]))

    report: dict[str, Any] = {
        "success_rate": mean("success"),
        "robot_cost": mean("robot_cost"),
        "object_cost": mean("object_cost"),
        "cumulative_cost": mean("cumulative_cost"),
    }
    report.update({name: mean(name) for name in COMPONENT_NAMES})
    report["episode_length"] = mean("length")
    report["num_episodes"] = len(episodes)
    report["episodes"] = episodes
    return report


def evaluate(
    cfg: Config,
    checkpoint: str | Path,
    episodes: int | None = None,
    split: str | None = None,
    deterministic: bool | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a house split.

    Args:
        cfg: Configuration (task, houses, sim); the policy comes from the checkpoint.
        checkpoint: Path of a training checkpoint.
        episodes: Number of episodes (default ``cfg.eval.episodes``).
        split: House split (default ``cfg.eval.split``, the held-out test houses).
        deterministic: Greedy actions (default ``cfg.eval.deterministic``).
        progress: Show a progress bar.

    Returns:
        The :func:`aggregate` report plus ``checkpoint`` and ``split``.

    Raises:
        CheckpointError: If the checkpoint is missing or corrupt.
    """
    split = split or cfg.eval.split
    n = episodes or cfg.eval.episodes
    det = cfg.eval.deterministic if deterministic is None else deterministic
    agent = PolicyAgent.from_checkpoint(checkpoint, deterministic=det, seed=cfg.eval.seed)
    env = SafetyChoresEnv(cfg, split=split, eval_mode=True,
                          image_size=(agent.cfg.image_width, agent.cfg.image_height))  # fmt: skip
    results = []
    try:
        for house_index, seed in tqdm(episode_list(cfg, split, n), desc=f"eval {split}",
                                      unit="ep", disable=not progress):  # fmt: skip
            results.append(run_episode(env, agent, house_index, seed))
    finally:
        env.close()
    report = aggregate(results)
    report.update(checkpoint=str(checkpoint), split=split)
    return report


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as JSON atomically; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, p)
    return p


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable table of the report's headline metrics."""
    lines = [f"{'metric':<22}{'value':>10}"]
    keys = ["success_rate", "robot_cost", "object_cost", "cumulative_cost", *COMPONENT_NAMES,
            "episode_length", "num_episodes"]  # fmt: skip
    for k in keys:
        lines.append(f"{k:<22}{float(report[k]):>10.3f}")
    return "\n".join(lines)


__all__ = ["aggregate", "episode_list", "evaluate", "format_report", "run_episode", "write_report"]
