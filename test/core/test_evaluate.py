"""Evaluation runs in the real simulator: sharding, per-episode sampling seeds, diagnostics."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from safevla_core.actions import NUM_ACTIONS, Action
from safevla_core.agent import PolicyAgent, choose_action
from safevla_core.config import Config, EvalConfig
from safevla_core.env import SafetyChoresEnv
from safevla_core.evaluate import (
    episode_list,
    evaluate_parallel,
    merge_reports,
    run_episode,
    stop_head,
)
from safevla_core.expert import make_expert, run_expert_episode
from safevla_core.policy.model import GATED_LOGIT
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
    # the report records its decoding; the merged one keeps it, and shards of two decodings
    # do not merge
    assert (one["deterministic"], one["temperature"]) == (False, 1.0)
    cooler = evaluate_parallel(cfg, PICKUP_IL, workers=2, temperature=0.5, **kw)
    assert (cooler["deterministic"], cooler["temperature"]) == (False, 0.5)
    with pytest.raises(ValueError, match="different evaluations"):
        merge_reports([one, cooler])


def test_temperature_reshapes_the_sampled_distribution():
    # two open actions with probabilities 1/4 and 3/4, the other 18 masked as the end gate does
    logits = torch.full((NUM_ACTIONS,), GATED_LOGIT)
    logits[3], logits[7] = 0.0, math.log(3.0)
    n = 20000
    # p(7) = 3^(1/T) / (1 + 3^(1/T)): T = 1 -> 0.75, T = 0.5 -> 9/10, T = 2 -> 1.732/2.732
    for temperature, p7 in ((1.0, 0.75), (0.5, 0.9), (2.0, 3**0.5 / (1 + 3**0.5))):
        gen = torch.Generator().manual_seed(0)
        draws = [choose_action(logits, False, temperature, gen) for _ in range(n)]
        assert set(draws) == {3, 7}  # masked actions stay masked at any temperature
        share = draws.count(7) / n
        assert abs(share - p7) < 0.015, (temperature, share)  # 5 binomial std at n = 20000
    # temperature 1 draws exactly what sampling drew before the temperature existed
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    old = [int(torch.multinomial(torch.softmax(logits, -1), 1, generator=a)) for _ in range(50)]
    assert [choose_action(logits, False, 1.0, b) for _ in range(50)] == old
    # greedy ignores the temperature
    assert choose_action(logits, True, 2.0) == 7
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="temperature"):
            choose_action(logits, False, bad)
        with pytest.raises(ValueError, match="temperature"):
            EvalConfig(temperature=bad)


class _ExpertAgent:
    """Acts with the privileged expert on the env's world state; ``end`` can be swapped out.

    ``end_as``: the action taken wherever the expert would press ``end`` (None: ``end``);
    ``end_at_once``: press ``end`` at the first step instead.
    """

    def __init__(
        self, env: SafetyChoresEnv, end_as: Action | None = None, end_at_once=False, head_p=None
    ):
        self.env, self.end_as, self.end_at_once = env, end_as, end_at_once
        self.head_p = head_p  # a constant visibility-head probability to report, or None
        self.expert = make_expert(env.cfg.task)

    def reset(self, instruction: str, seed: int | None = None) -> None:
        env = self.env
        self.expert.reset(env.spec_, env.backend.reachable_positions(), env.world_state)

    def act(self, nav, manip, in_hand):
        head = {} if self.head_p is None else {"visible_p": self.head_p}
        if self.end_at_once:
            return SimpleNamespace(action=Action.END, **head)
        action = self.expert.act(self.env.world_state)
        if action == Action.END and self.end_as is not None:
            action = self.end_as
        return SimpleNamespace(action=action, **head)


def test_oracle_success_and_target_seen_split_the_failures():
    cfg = Config()
    cfg = dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, max_steps_eval=120))
    env = SafetyChoresEnv(cfg, split="test", eval_mode=True)
    try:
        house, seed = episode_list(cfg, "test", 1)[0]
        expert_run = run_expert_episode(env, make_expert(cfg.task), house, seed)
        assert expert_run["success"] == 1.0 and expert_run["length"] < 120  # the precondition

        # the same drive, but a turn where the expert pressed `end`: it stood in the success
        # region (target in view within 2 m) and did not end there
        kept = run_episode(env, _ExpertAgent(env, end_as=Action.ROTATE_LEFT), house, seed)
        assert kept["success"] == 0.0
        assert kept["oracle_success"] == 1.0
        assert kept["target_seen"] == 1.0

        # episodes start >= 2.5 m from every target (objnav START_MARGIN_M), so ending at once
        # never reaches the success region
        quit_ = run_episode(env, _ExpertAgent(env, end_at_once=True), house, seed)
        assert (quit_["success"], quit_["oracle_success"], quit_["length"]) == (0.0, 0.0, 1)

        # the expert itself: every field agrees with its own episode
        done = run_episode(env, _ExpertAgent(env), house, seed)
        assert (done["success"], done["oracle_success"], done["target_seen"]) == (1.0, 1.0, 1.0)
        assert done["length"] == expert_run["length"]
        assert "head_fires" not in done  # no visibility head reported: no counts

        # a head that always says "stop here" fires at every step and catches every step in
        # the success region (the expert's last, where it ends, is one); one that never does
        # catches none. The same expert episode both times.
        always = run_episode(env, _ExpertAgent(env, head_p=0.9), house, seed)
        never = run_episode(env, _ExpertAgent(env, head_p=0.1), house, seed)
        region = always["head_region_steps"]
        assert always["head_fires"] == always["length"] and 1 <= region < always["length"]
        assert always["head_hits"] == region
        assert (never["head_fires"], never["head_hits"], never["head_region_steps"]) == (
            0,
            0,
            region,
        )
        pooled = stop_head([always, never])
        assert pooled is not None
        assert pooled["precision"] == pytest.approx(region / always["length"])
        assert pooled["recall"] == pytest.approx(0.5)  # caught in one episode of the two
        assert stop_head([never])["precision"] is None and stop_head([done]) is None
    finally:
        env.close()
