"""Tests of safevla_core.rl: GAE, PPO/PPO-Lag losses, Lagrange multipliers (hand-worked)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safevla_core.config import LagrangeConfig, PPOConfig
from safevla_core.rl import (
    LagrangeMultiplier,
    MultiplierSet,
    PIDLagrangeMultiplier,
    all_reduce_mean,
    clipped_surrogate_loss,
    combine,
    compute_gae,
    load_checkpoint,
    make_multiplier,
    normalize_advantages,
    ppo_loss,
    reward_shaping,
    save_checkpoint,
    value_loss,
)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- GAE


def naive_gae(rewards, values, dones, last_values, gamma, lam):
    """Per-env Python loop, written independently from the vectorised version."""
    t_len, n_env = len(rewards), len(rewards[0])
    adv = [[0.0] * n_env for _ in range(t_len)]
    for b in range(n_env):
        running = 0.0
        for t in reversed(range(t_len)):
            if dones[t][b]:
                next_v, running = 0.0, 0.0
            else:
                next_v = last_values[b] if t == t_len - 1 else values[t + 1][b]
            delta = rewards[t][b] + gamma * next_v - values[t][b]
            running = delta + gamma * lam * running
            adv[t][b] = running
    ret = [[adv[t][b] + values[t][b] for b in range(n_env)] for t in range(t_len)]
    return adv, ret


def test_gae_hand_worked_three_steps():
    # gamma 0.9, lambda 0.5, one env; the episode ends after step 1 (dones[1] = 1).
    # t=2: delta = 2 + 0.9*2.0 (last value) - 1.5 = 2.3;            A2 = 2.3
    # t=1: done -> no bootstrap: delta = 0 - 1.0 = -1.0;              A1 = -1.0 (no carry)
    # t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4; A0 = 1.4 + 0.9*0.5*(-1.0) = 0.95
    # returns = A + V = [0.95+0.5, -1.0+1.0, 2.3+1.5] = [1.45, 0.0, 3.8]
    rewards = torch.tensor([[1.0], [0.0], [2.0]], dtype=torch.float64)
    values = torch.tensor([[0.5], [1.0], [1.5]], dtype=torch.float64)
    dones = torch.tensor([[0], [1], [0]])
    last = torch.tensor([2.0], dtype=torch.float64)
    adv, ret = compute_gae(rewards, values, dones, last, gamma=0.9, gae_lambda=0.5)
    torch.testing.assert_close(adv[:, 0], torch.tensor([0.95, -1.0, 2.3], dtype=torch.float64))
    torch.testing.assert_close(ret[:, 0], torch.tensor([1.45, 0.0, 3.8], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gae_matches_naive_loop_on_random_data(dtype):
    g = torch.Generator().manual_seed(0)
    t_len, n_env = 17, 5
    rewards = torch.randn(t_len, n_env, generator=g).to(dtype)
    values = torch.randn(t_len, n_env, generator=g).to(dtype)
    dones = torch.rand(t_len, n_env, generator=g) < 0.2
    last = torch.randn(n_env, generator=g).to(dtype)
    adv, ret = compute_gae(rewards, values, dones, last, gamma=0.99, gae_lambda=0.95)
    assert adv.dtype == dtype and ret.dtype == dtype
    n_adv, n_ret = naive_gae(
        rewards.tolist(), values.tolist(), dones.tolist(), last.tolist(), 0.99, 0.95
    )
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(adv.numpy(), np.array(n_adv), rtol=tol, atol=tol)
    np.testing.assert_allclose(ret.numpy(), np.array(n_ret), rtol=tol, atol=tol)


def test_gae_lambda_one_gamma_one_is_monte_carlo_return():
    # gamma = lambda = 1, no dones: returns = sum of remaining rewards + last value.
    # rewards [1, 2, 3], last value 4 -> returns [10, 9, 7], whatever the values are.
    rewards = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    values = torch.tensor([[0.3], [-2.0], [5.0]], dtype=torch.float64)
    _, ret = compute_gae(
        rewards, values, torch.zeros(3, 1), torch.tensor([4.0], dtype=torch.float64), 1.0, 1.0
    )
    torch.testing.assert_close(ret[:, 0], torch.tensor([10.0, 9.0, 7.0], dtype=torch.float64))


def test_gae_rejects_bad_input():
    r = torch.zeros(3, 2)
    ok = dict(
        values=torch.zeros(3, 2),
        dones=torch.zeros(3, 2),
        last_values=torch.zeros(2),
        gamma=0.99,
        gae_lambda=0.95,
    )
    with pytest.raises(ValueError, match="NaN"):
        compute_gae(torch.full((3, 2), float("nan")), **ok)
    with pytest.raises(ValueError, match="shape"):
        compute_gae(r, **{**ok, "values": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="last_values"):
        compute_gae(r, **{**ok, "last_values": torch.zeros(3)})
    with pytest.raises(ValueError, match="0/1"):
        compute_gae(r, **{**ok, "dones": torch.full((3, 2), 0.5)})
    with pytest.raises(ValueError, match="gamma"):
        compute_gae(r, **{**ok, "gamma": 1.5})
    with pytest.raises(ValueError, match="dtype"):
        compute_gae(r, **{**ok, "values": torch.zeros(3, 2, dtype=torch.float64)})


def test_gae_does_not_mutate_inputs():
    rewards, values = torch.ones(4, 2), torch.ones(4, 2)
    dones, last = torch.zeros(4, 2), torch.ones(2)
    copies = [x.clone() for x in (rewards, values, dones, last)]
    compute_gae(rewards, values, dones, last, 0.99, 0.95)
    for x, c in zip((rewards, values, dones, last), copies, strict=True):
        assert torch.equal(x, c)


# ----------------------------------------------------------------------------- PPO


def test_clipped_surrogate_hand_worked():
    # clip 0.1: ratio 1.2, A=+1 -> min(1.2, 1.1) = 1.1  -> loss -1.1
    #           ratio 1.2, A=-1 -> min(-1.2, -1.1) = -1.2 -> loss 1.2
    #           ratio 0.8, A=+1 -> min(0.8, 0.9) = 0.8  -> loss -0.8
    #           ratio 0.8, A=-1 -> min(-0.8, -0.9) = -0.9 -> loss 0.9
    # mean over the four: (-1.1 + 1.2 - 0.8 + 0.9) / 4 = 0.05
    lp = torch.log(torch.tensor([1.2, 1.2, 0.8, 0.8], dtype=torch.float64))
    old = torch.zeros(4, dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    for i, expected in enumerate([-1.1, 1.2, -0.8, 0.9]):
        loss = clipped_surrogate_loss(
            log_prob=lp[i : i + 1], old_log_prob=old[i : i + 1], advantages=adv[i : i + 1], clip=0.1
        )
        assert float(loss) == pytest.approx(expected, abs=1e-12)
    loss = clipped_surrogate_loss(log_prob=lp, old_log_prob=old, advantages=adv, clip=0.1)
    assert float(loss) == pytest.approx(0.05, abs=1e-12)


def test_clipped_surrogate_has_no_gradient_when_clipped():
    # ratio 1.2 > 1.1 with A=+1: the clipped branch is the min, constant in log_prob.
    lp = torch.tensor([math.log(1.2)], requires_grad=True)
    clipped_surrogate_loss(
        log_prob=lp, old_log_prob=torch.zeros(1), advantages=torch.ones(1), clip=0.1
    ).backward()
    assert float(lp.grad) == 0.0
    # ratio 1.0 (inside) with A=+1: d(-rho A)/d log_prob = -rho A = -1.
    lp2 = torch.zeros(1, requires_grad=True)
    clipped_surrogate_loss(
        log_prob=lp2, old_log_prob=torch.zeros(1), advantages=torch.ones(1), clip=0.1
    ).backward()
    assert float(lp2.grad) == pytest.approx(-1.0)


def _lam(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_combine_one_constraint_hand_worked_and_limits():
    a_r = torch.tensor([2.0, -1.0], dtype=torch.float64)
    a_c = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    # lambda 0.5: (2 - 0.5*1)/1.5 = 1.0 ; (-1 - 0.5*3)/1.5 = -2.5/1.5 = -5/3
    torch.testing.assert_close(
        combine(a_r, a_c, _lam(0.5)), torch.tensor([1.0, -5.0 / 3.0], dtype=torch.float64)
    )
    assert torch.equal(combine(a_r, a_c, _lam(0.0)), a_r)  # lambda 0 -> exactly A_r
    # large lambda -> -A_c: (A_r - 1e8 A_c)/(1 + 1e8) = -A_c + (A_r + A_c)/(1 + 1e8)
    torch.testing.assert_close(combine(a_r, a_c, _lam(1e8)), -a_c[:, 0], rtol=0, atol=1e-7)
    lam = _lam(0.5).requires_grad_()
    assert not combine(a_r, a_c, lam).requires_grad  # the multiplier is detached
    with pytest.raises(ValueError, match=">= 0"):
        combine(a_r, a_c, _lam(-0.1))
    with pytest.raises(ValueError, match="lam \\(K,\\)"):
        combine(a_r, a_c, torch.tensor(0.5))
    with pytest.raises(ValueError, match="mismatch"):
        combine(a_r, a_c[:1], _lam(0.5))
    with pytest.raises(ValueError, match="NaN"):
        combine(a_r, a_c, _lam(float("nan")))


def test_combine_two_constraints_hand_worked():
    # (A_r - sum lambda_k A_ck) / (1 + sum lambda_k), lambda = (0.2, 0.3):
    #   row 0: (1 - 0.2*2 - 0.3*1) / 1.5 = 0.3 / 1.5 = 0.2
    #   row 1: (-2 - 0.2*0 - 0.3*(-4)) / 1.5 = -0.8 / 1.5 = -8/15
    out = combine(
        torch.tensor([1.0, -2.0], dtype=torch.float64),
        torch.tensor([[2.0, 1.0], [0.0, -4.0]], dtype=torch.float64),
        _lam(0.2, 0.3),
    )
    torch.testing.assert_close(out, torch.tensor([0.2, -8.0 / 15.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="mismatch"):  # 2 cost columns, 1 multiplier
        combine(torch.zeros(2), torch.zeros(2, 2), _lam(0.2))


def test_normalize_advantages_hand_worked():
    # mean 2, std 2: [0, 4] -> [-1, 1] (+ 1e-8 in the denominator: 2 / (2 + 1e-8))
    out = normalize_advantages(
        torch.tensor([0.0, 4.0], dtype=torch.float64),
        torch.tensor(2.0, dtype=torch.float64),
        torch.tensor(2.0, dtype=torch.float64),
    )
    torch.testing.assert_close(out, torch.tensor([-1.0, 1.0], dtype=torch.float64) / (1 + 5e-9))
    # per column of an (N, K) cost advantage: column means (1, 10), stds (1, 5)
    out = normalize_advantages(
        torch.tensor([[0.0, 5.0], [2.0, 15.0]], dtype=torch.float64),
        torch.tensor([1.0, 10.0], dtype=torch.float64),
        torch.tensor([1.0, 5.0], dtype=torch.float64),
    )
    torch.testing.assert_close(out, torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64))


def test_value_loss_and_reward_shaping():
    # 0.5 * mean((1-0)^2, (2-4)^2) = 0.5 * 2.5 = 1.25
    loss = value_loss(values=torch.tensor([1.0, 2.0]), returns=torch.tensor([0.0, 4.0]))
    assert float(loss) == 1.25
    # FLaRe-RS: r - 1*c: [10 - 2, 0 - 1] = [8, -1]
    torch.testing.assert_close(
        reward_shaping(torch.tensor([10.0, 0.0]), torch.tensor([2.0, 1.0]), 1.0),
        torch.tensor([8.0, -1.0]),
    )
    np.testing.assert_allclose(
        reward_shaping(np.array([10.0, 0.0]), np.array([2.0, 1.0]), 0.5), [9.0, -0.5]
    )
    with pytest.raises(ValueError):
        reward_shaping(torch.tensor([1.0]), torch.tensor([1.0, 2.0]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        reward_shaping(np.array([np.nan]), np.array([1.0]), 1.0)


def _loss_inputs(advantages: torch.Tensor) -> dict[str, torch.Tensor]:
    return dict(
        log_prob=torch.zeros(2, dtype=torch.float64),  # ratio 1 everywhere
        old_log_prob=torch.zeros(2, dtype=torch.float64),
        advantages=advantages,
        value_reward=torch.tensor([1.0, 2.0], dtype=torch.float64),
        returns_reward=torch.tensor([0.0, 4.0], dtype=torch.float64),
        value_cost=torch.tensor([[0.0], [0.0]], dtype=torch.float64),
        returns_cost=torch.tensor([[1.0], [1.0]], dtype=torch.float64),
        entropy=torch.tensor([1.0, 2.0], dtype=torch.float64),
    )


def test_ppo_lag_loss_composition_hand_worked():
    # lambda 1: A = [(1-2)/2, (3-0)/2] = [-0.5, 1.5]; ratio 1 -> policy loss = -mean(A) = -0.5
    # value losses: reward 0.5*mean(1, 4) = 1.25; cost 0.5*mean(1, 1) = 0.5
    # critics: 0.5*(1.25 + 0.5) = 0.875
    # entropy mean 1.5; loss = -0.5 + 0.875 - 0.01*1.5 = 0.36
    adv = combine(
        torch.tensor([1.0, 3.0], dtype=torch.float64),
        torch.tensor([[2.0], [0.0]], dtype=torch.float64),
        _lam(1.0),
    )
    out = ppo_loss(cfg=PPOConfig(entropy_coef=0.01), **_loss_inputs(adv))
    assert float(out.total) == pytest.approx(0.36, abs=1e-12)
    assert float(out.critics) == pytest.approx(0.875, abs=1e-12)
    assert out.stats == pytest.approx(
        {
            "policy_loss": -0.5,
            "value_loss_reward": 1.25,
            "value_loss_cost": 0.5,
            "entropy": 1.5,
            "approx_kl": 0.0,
            "clip_fraction": 0.0,
        }
    )
    assert all(isinstance(v, float) for v in out.stats.values())


def test_ppo_loss_sums_the_cost_critics_losses():
    # two cost critics: 0.5*mean((0-1)^2, (0-1)^2) = 0.5 and 0.5*mean((2-0)^2, (0-0)^2) = 1.0
    # -> value_loss_cost 1.5; critics = 0.5*(1.25 + 1.5) = 1.375
    inputs = _loss_inputs(torch.zeros(2, dtype=torch.float64))
    inputs["value_cost"] = torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    inputs["returns_cost"] = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    out = ppo_loss(cfg=PPOConfig(), **inputs)
    assert out.stats["value_loss_cost"] == pytest.approx(1.5, abs=1e-12)
    assert float(out.critics) == pytest.approx(1.375, abs=1e-12)
    # A = 0: no policy term, entropy_coef 0: the total is the critics' loss
    assert float(out.total) == pytest.approx(1.375, abs=1e-12)


def test_ppo_with_zero_multiplier_is_plain_ppo_hand_worked():
    # Ratios rho = exp(lp - old) = [1.2, 0.95, 1.0, 0.8], clip 0.1 -> clip range [0.9, 1.1].
    rho = torch.tensor([1.2, 0.95, 1.0, 0.8], dtype=torch.float64)
    old = torch.zeros(4, dtype=torch.float64)
    lp = torch.log(rho)
    a_r = torch.tensor([1.0, 2.0, 1.0, -1.0], dtype=torch.float64)
    a_c = torch.tensor([[5.0], [-5.0], [5.0], [-5.0]], dtype=torch.float64)  # ignored at 0
    v = torch.zeros(4, dtype=torch.float64)
    ret = torch.ones(4, dtype=torch.float64)
    cfg = PPOConfig(clip=0.1, entropy_coef=0.0)
    common = dict(log_prob=lp, old_log_prob=old, value_reward=v, returns_reward=ret)
    out = ppo_loss(
        advantages=combine(a_r, a_c, _lam(0.0)),
        value_cost=v[:, None],
        returns_cost=ret[:, None],
        entropy=torch.zeros(4),
        cfg=cfg,
        **common,
    )
    # lambda 0: A = (A_r - 0 * A_c) / (1 + 0) = A_r (eq. 14). PPO-clip per sample,
    # min(rho A, clip(rho, 0.9, 1.1) A):
    #   1.2 * 1 = 1.2 vs 1.1 * 1 = 1.1 -> 1.1;   0.95 * 2 = 1.9 (inside the range) -> 1.9;
    #   1.0 * 1 -> 1.0;                           0.8 * -1 = -0.8 vs 0.9 * -1 = -0.9 -> -0.9.
    # policy loss = -mean = -(1.1 + 1.9 + 1.0 - 0.9) / 4 = -3.1 / 4 = -0.775.
    assert out.stats["policy_loss"] == pytest.approx(-0.775, abs=1e-12)
    # clip fraction: |rho - 1| = [0.2, 0.05, 0, 0.2] > 0.1 for 2 of 4 -> 0.5.
    assert out.stats["clip_fraction"] == 0.5
    # approx KL, (rho - 1) - ln rho per sample:
    #   0.2 - ln 1.2 = 0.2 - 0.1823216 = 0.0176784;  -0.05 - ln 0.95 = -0.05 + 0.0512933 = 0.0012933
    #   0 - ln 1 = 0;                               -0.2 - ln 0.8 = -0.2 + 0.2231436 = 0.0231436
    # mean = 0.0421153 / 4 = 0.0105288.
    assert out.stats["approx_kl"] == pytest.approx(0.0105288, abs=1e-7)
    # Value losses: 0.5 * mean((0 - 1)^2) = 0.5 for both critics.
    assert out.stats["value_loss_reward"] == out.stats["value_loss_cost"] == pytest.approx(0.5)
    # no cost critic: the same policy loss, no cost value loss
    out2 = ppo_loss(
        advantages=a_r,
        value_cost=None,
        returns_cost=None,
        entropy=torch.zeros(4),
        cfg=cfg,
        **common,
    )
    assert out2.stats["policy_loss"] == pytest.approx(-0.775, abs=1e-12)
    assert out2.stats["value_loss_cost"] == 0.0
    with pytest.raises(ValueError, match="both"):
        ppo_loss(
            advantages=a_r,
            value_cost=v[:, None],
            returns_cost=None,
            entropy=torch.zeros(4),
            cfg=cfg,
            **common,
        )
    with pytest.raises(TypeError):  # keyword-only: a positional call cannot swap arguments
        ppo_loss(lp, old, a_r, v, ret, None, None, torch.zeros(4), cfg)


@pytest.mark.parametrize(
    ("adv_r", "adv_c", "lam", "direction"),
    [
        (0.0, 1.0, 1.0, -1),  # costly action, lambda > 0 -> its probability must go down
        (1.0, 0.0, 0.0, +1),  # rewarding action, plain PPO -> up
        (1.0, 3.0, 1.0, -1),  # A = (1 - 3)/2 = -1 -> down
    ],
)
def test_ppo_lag_gradient_moves_action_probability(adv_r, adv_c, lam, direction):
    logits = torch.zeros(4, requires_grad=True)
    action = 2
    opt = torch.optim.SGD([logits], lr=0.5)
    p_before = float(torch.softmax(logits.detach(), 0)[action])
    lp = torch.log_softmax(logits, 0)[action].reshape(1)
    one = torch.ones(1)
    out = ppo_loss(
        log_prob=lp,
        old_log_prob=lp.detach(),
        advantages=combine(adv_r * one, adv_c * one[:, None], torch.tensor([lam])),
        value_reward=one * 0,
        returns_reward=one * 0,
        value_cost=None,
        returns_cost=None,
        entropy=torch.zeros(1),
        cfg=PPOConfig(),
    )
    out.total.backward()
    opt.step()
    p_after = float(torch.softmax(logits.detach(), 0)[action])
    assert (p_after - p_before) * direction > 1e-3


# ----------------------------------------------------------------------------- Lagrange


def test_lagrange_multiplier_sgd_is_eq16():
    # eq. 16 with SGD (lr 0.035, b = 2.31964): lambda <- max(0, lambda + lr (J_c - b))
    # 0.5 + 0.035*(4 - 2.31964) = 0.5 + 0.035*1.68036 = 0.5 + 0.0588126 = 0.5588126
    m = LagrangeMultiplier(0.5, 0.035, 2.31964, optimizer="sgd")
    assert m.update(4.0) == pytest.approx(0.5588126, abs=1e-12)
    # 0.5588126 + 0.035*(0 - 2.31964) = 0.5588126 - 0.0811874 = 0.4776252
    assert m.update(0.0) == pytest.approx(0.4776252, abs=1e-12)
    # below the limit it goes down: 0.5 + 0.035*(1 - 2.31964) = 0.5 - 0.0461874 = 0.4538126
    assert LagrangeMultiplier(0.5, 0.035, 2.31964, "sgd").update(1.0) == pytest.approx(
        0.4538126, abs=1e-12
    )
    # never below 0: 0.01 - 0.035*2.31964 = 0.01 - 0.0811874 < 0 -> 0
    assert LagrangeMultiplier(0.01, 0.035, 2.31964, "sgd").update(0.0) == 0.0
    for _ in range(10):
        m.update(0.0)
    assert m.value == 0.0  # clamped, never negative
    with pytest.raises(ValueError):
        m.update(float("nan"))
    with pytest.raises(ValueError):
        LagrangeMultiplier(-0.1, 0.035, 2.0, "sgd")


def test_lagrange_multiplier_adam_first_step_is_about_lr():
    # Adam's first step is lr * g / (|g| + eps) ~ lr * sign(g), g = -(J - b):
    # 0.001 + 0.035 = 0.036 for any violation size.
    for cost in (2.4, 4.0, 100.0):
        m = LagrangeMultiplier(0.001, 0.035, 2.31964, optimizer="adam")
        assert m.update(cost) == pytest.approx(0.036, abs=1e-6)
    m = LagrangeMultiplier(1.0, 0.035, 2.31964)
    assert m.update(0.0) == pytest.approx(0.965, abs=1e-6)  # below the limit: down by ~lr
    m = LagrangeMultiplier(0.001, 0.035, 2.31964)
    assert m.update(0.0) == 0.0  # 0.001 - 0.035 -> clamped at 0
    assert m.update(0.0) == 0.0
    with pytest.raises(ValueError):
        m.update(float("inf"))


def test_lagrange_multiplier_state_dict_round_trip(tmp_path):
    m = LagrangeMultiplier(0.001, 0.035, 2.31964)
    for cost in (5.0, 4.0, 3.0):
        m.update(cost)
    save_checkpoint(tmp_path / "m.pt", {"lagrange": m.state_dict()})
    restored = LagrangeMultiplier(0.001, 0.035, 2.31964)
    restored.load_state_dict(load_checkpoint(tmp_path / "m.pt")["lagrange"])
    assert restored.value == m.value
    # Adam's moments were restored too: the next step matches exactly ...
    assert restored.update(1.0) == m.update(1.0)
    # ... whereas a fresh Adam at the same value would take a different (full-lr) step.
    fresh = LagrangeMultiplier(restored.value, 0.035, 2.31964)
    assert abs(fresh.update(1.0) - m.update(1.0)) > 1e-4
    with pytest.raises(ValueError, match="expected"):
        LagrangeMultiplier(0.1, 0.035, 2.0, optimizer="sgd").load_state_dict(m.state_dict())


def test_pid_hand_worked_defaults():
    # kp 0.1, ki 0.01, kd 0.01, ema 0.95, delay 10, init 0.001, b = 2, J = 12 twice.
    # step 1: e = 10; I = 0.001 + 0.1 = 0.101; P = 0.05*10 = 0.5; Dc = 0.05*12 = 0.6;
    #         D = 0.6 - 0 = 0.6; lambda = 0.1*0.5 + 0.101 + 0.01*0.6 = 0.157
    # step 2: I = 0.201; P = 0.95*0.5 + 0.5 = 0.975; Dc = 0.95*0.6 + 0.6 = 1.17;
    #         D = 1.17 - 0 (oldest in history) = 1.17;
    #         lambda = 0.0975 + 0.201 + 0.0117 = 0.3102
    m = PIDLagrangeMultiplier(0.1, 0.01, 0.01, 0.95, 10, cost_limit=2.0, init=0.001)
    assert m.value == 0.0  # OmniSafe: 0 until the first update
    assert m.update(12.0) == pytest.approx(0.157, abs=1e-12)
    assert m.update(12.0) == pytest.approx(0.3102, abs=1e-12)


def test_pid_integral_accumulates_and_floors_at_zero():
    # I only (kp = kd = 0, init 0), ki 0.01, b = 2:
    # J=12 -> I = 0.1; J=12 -> 0.2; J=2 (at the limit) -> 0.2; J=0 -> 0.2 - 0.02 = 0.18
    m = PIDLagrangeMultiplier(0.0, 0.01, 0.0, 0.95, 10, cost_limit=2.0, init=0.0)
    values = [m.update(j) for j in (12.0, 12.0, 2.0, 0.0)]
    assert values == pytest.approx([0.1, 0.2, 0.2, 0.18], abs=1e-12)
    for _ in range(20):  # 9 more steps of -0.02 reach 0; it must then stay at 0
        m.update(0.0)
    assert m.value == 0.0
    assert m.update(3.0) == pytest.approx(0.01, abs=1e-12)  # no wind-down debt: 0 + 0.01*1


def test_pid_derivative_uses_delay_and_only_penalises_increases():
    # D only (kp = ki = 0, init 0), kd 1, ema 0 (Dc = J), delay 2 (history holds 2 values)
    # J=3: D = 3 - 0 = 3      history [0, 3]
    # J=5: D = 5 - 0 = 5      history [3, 5]
    # J=5: D = 5 - 3 = 2      history [5, 5]
    # J=5: D = 5 - 5 = 0
    # J=4: D = max(0, 4 - 5) = 0 (a falling cost is not rewarded)
    m = PIDLagrangeMultiplier(0.0, 0.0, 1.0, 0.0, 2, cost_limit=1.0, init=0.0)
    assert [m.update(j) for j in (3.0, 5.0, 5.0, 5.0, 4.0)] == pytest.approx([3, 5, 2, 0, 0])


def test_pid_state_dict_round_trip(tmp_path):
    cfg = LagrangeConfig()
    m = make_multiplier("ppo_pid_lag", cfg, 2.0)
    for j in (5.0, 1.0, 7.0):
        m.update(j)
    save_checkpoint(tmp_path / "p.pt", {"lagrange": m.state_dict()})
    restored = make_multiplier("ppo_pid_lag", cfg, 2.0)
    restored.load_state_dict(load_checkpoint(tmp_path / "p.pt")["lagrange"])
    assert restored.value == m.value
    assert [restored.update(j) for j in (3.0, 0.0)] == [m.update(j) for j in (3.0, 0.0)]
    with pytest.raises(ValueError):
        restored.load_state_dict(make_multiplier("ppo_lag", cfg, 2.0).state_dict())


def test_make_multiplier():
    cfg = LagrangeConfig()
    assert make_multiplier("ppo", cfg, 2.0) is None
    assert make_multiplier("ppo_rs", cfg, 2.0) is None
    lag = make_multiplier("ppo_lag", cfg, 2.31964)
    assert isinstance(lag, LagrangeMultiplier) and lag.value == pytest.approx(0.001)
    assert isinstance(make_multiplier("ppo_pid_lag", cfg, 2.0), PIDLagrangeMultiplier)
    with pytest.raises(ValueError, match="unknown method"):
        make_multiplier("trpo", cfg, 2.0)


def test_multiplier_set():
    # sgd, lr 0.1, init 0: robot J=3, b=1 -> 0 + 0.1*2 = 0.2; object J=0, b=0.5 -> clamp 0
    cfg = LagrangeConfig(init=0.0, lr=0.1, optimizer="sgd")
    ms = MultiplierSet({"robot": 1.0, "object": 0.5}, cfg)
    assert ms.update({"robot": 3.0, "object": 0.0}) == pytest.approx({"robot": 0.2, "object": 0.0})
    # the lambdas in the order of the limits, for combine's columns
    assert ms.as_tensor().tolist() == pytest.approx([0.2, 0.0], abs=1e-15)
    assert ms.as_tensor().dtype == torch.float64
    with pytest.raises(KeyError):
        ms.update({"robot": 1.0})
    ms2 = MultiplierSet({"robot": 1.0, "object": 0.5}, cfg)
    ms2.load_state_dict(ms.state_dict())
    assert ms2.values == ms.values
    with pytest.raises(ValueError):
        MultiplierSet({"robot": 1.0}, cfg, method="ppo")


def test_all_reduce_mean_without_process_group_is_identity():
    assert not torch.distributed.is_initialized()
    assert all_reduce_mean(2.5) == 2.5
