"""Evaluation runs in the real simulator: sharding and per-episode sampling seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from safevla_core.agent import PolicyAgent
from safevla_core.config import Config
from safevla_core.evaluate import episode_list, evaluate_parallel
from safevla_core.shipped import shipped_checkpoint

PICKUP_IL = shipped_checkpoint("pickup", "il")


def _trajectory(e: dict) -> tuple:
    return (
        e["seed"],
        e["success"],
        e["length"],
        round(e["path_length_m"], 9),
        e["cumulative_cost"],
    )


def test_reset_with_a_seed_makes_the_sampled_actions_independent_of_earlier_episodes():
    if PICKUP_IL is None:
        pytest.skip("checkpoints/pickup/il.pt is not in this checkout")
    rng = np.random.default_rng(0)
    nav, manip = (rng.integers(0, 256, (96, 160, 3), dtype=np.uint8) for _ in range(2))
    fresh = PolicyAgent.from_checkpoint(PICKUP_IL, seed=0)
    used = PolicyAgent.from_checkpoint(PICKUP_IL, seed=0)
    used.reset("pick up the mug")
    for _ in range(7):  # an earlier episode draws from the generator
        used.act(nav, manip, False)

    def actions(agent: PolicyAgent, seed: int | None) -> list[int]:
        agent.reset("pick up the mug", seed=seed)
        return [int(agent.act(nav, manip, False).action) for _ in range(30)]

    a = actions(fresh, 123)
    assert actions(used, 123) == a  # same episode seed, same actions whatever came before
    assert actions(fresh, 123) == a
    assert actions(fresh, 124) != a  # 30 draws from the IL policy on noise differ by seed


def test_two_worker_processes_give_the_single_process_report():
    if PICKUP_IL is None:
        pytest.skip("checkpoints/pickup/il.pt is not in this checkout")
    cfg = Config()
    cfg = dataclasses.replace(
        cfg, task=dataclasses.replace(cfg.task, name="pickup", max_steps_eval=15)
    )
    kw = dict(episodes=5, split="test", deterministic=False, progress=False)
    one = evaluate_parallel(cfg, PICKUP_IL, workers=1, **kw)
    two = evaluate_parallel(cfg, PICKUP_IL, workers=2, **kw)
    assert [_trajectory(e) for e in two["episodes"]] == [_trajectory(e) for e in one["episodes"]]
    assert two["success_rate_ci"] == one["success_rate_ci"]
    assert two["cumulative_cost_ci"] == one["cumulative_cost_ci"]
    # in the order of the fixed list, although shard 1 ran episodes 1 and 3
    assert [e["seed"] for e in two["episodes"]] == [s for _, s in episode_list(cfg, "test", 5)]
    with pytest.raises(ValueError, match="chooses the shards"):
        evaluate_parallel(cfg, PICKUP_IL, workers=2, shard=(0, 2), **kw)
