"""PPO and PPO-Lagrangian losses (paper Appendix B.1, eqs. 12-14; REFERENCE.md "Problem").

Pure functions of tensors: no module state, no logging (the caller logs the returned stats).
PPO-Lag is a small delta on PPO: the reward and cost advantages are combined with the
Lagrange multiplier (:func:`combine_advantages`, eq. 14) and fed to one clipped surrogate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from safevla_core.config import PPOConfig

ADV_NORM_EPS = 1e-8
"""Added to the advantage standard deviation when normalising (ours: avoids 0-division)."""


def _check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise ValueError unless all tensors share a shape and are finite floating tensors."""
    shape = None
    for name, x in tensors.items():
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor, got {x.dtype}")
        if shape is None:
            shape = x.shape
        elif x.shape != shape:
            names = list(tensors)
            raise ValueError(
                f"shape mismatch: {names[0]} {tuple(shape)} vs {name} {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or inf")


def _multiplier_value(lagrange_multiplier: float | torch.Tensor) -> float:
    """Return the multiplier as a detached, validated Python float (>= 0, finite)."""
    if isinstance(lagrange_multiplier, torch.Tensor):
        if lagrange_multiplier.dim() != 0:
            raise ValueError(
                f"lagrange_multiplier must be a float or 0-d tensor, got shape "
                f"{tuple(lagrange_multiplier.shape)}"
            )
        value = float(lagrange_multiplier.detach())
    else:
        value = float(lagrange_multiplier)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"lagrange_multiplier must be finite and >= 0, got {value}")
    return value


def clipped_surrogate_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """PPO clipped surrogate loss (paper eqs. 12/13; Schulman et al. 2017, eq. 7).

    ``loss = -mean(min(rho * A, clip(rho, 1 - eps, 1 + eps) * A))`` with
    ``rho = exp(log_prob - old_log_prob)``.

    Args:
        log_prob: (N,) or any shape, log pi_theta(a_t | l, H_t) with gradient.
        old_log_prob: Same shape, log-probabilities under the rollout policy (no gradient
            needed; detached here).
        advantages: Same shape, advantages (detached here).
        clip: Clip epsilon in (0, 1) (paper Table 5: 0.1).

    Returns:
        0-d loss tensor to minimise.

    Raises:
        ValueError: On mismatched shapes, non-finite inputs or ``clip`` outside (0, 1).
    """
    _check_same_shape(log_prob=log_prob, old_log_prob=old_log_prob, advantages=advantages)
    if not 0.0 < clip < 1.0:
        raise ValueError(f"clip must be in (0, 1), got {clip}")
    advantages = advantages.detach()
    ratio = torch.exp(log_prob - old_log_prob.detach())
    surrogate = torch.minimum(
        ratio * advantages, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    )
    return -surrogate.mean()


def combine_advantages(
    adv_reward: torch.Tensor,
    adv_cost: torch.Tensor,
    lagrange_multiplier: float | torch.Tensor,
) -> torch.Tensor:
    """Combine reward and cost advantages with the Lagrange multiplier (paper eq. 14).

    ``A = (A_r - lambda * A_c) / (1 + lambda)``. Eq. 14 writes the loss as
    ``(L_R - lambda L_C) / (1 + lambda)`` of two clipped surrogates; like the authors' code
    and OmniSafe's PPO-Lag we clip one surrogate of the combined advantage (REFERENCE.md),
    which equals eq. 14 wherever the ratio is inside the clip range.

    Args:
        adv_reward: Reward advantages A_r, any shape.
        adv_cost: Cost advantages A_c, same shape (positive = costlier than expected).
        lagrange_multiplier: lambda >= 0, a float or a 0-d tensor (detached: no gradient
            flows into the multiplier through the policy loss).

    Returns:
        Combined advantages, same shape as the inputs, detached.

    Raises:
        ValueError: On mismatched shapes, non-finite inputs or a negative multiplier.
    """
    _check_same_shape(adv_reward=adv_reward, adv_cost=adv_cost)
    lam = _multiplier_value(lagrange_multiplier)
    return ((adv_reward - lam * adv_cost) / (1.0 + lam)).detach()


def combine_multi_advantages(
    adv_reward: torch.Tensor,
    adv_costs: Mapping[str, torch.Tensor],
    lagrange_multipliers: Mapping[str, float | torch.Tensor],
) -> torch.Tensor:
    """Combine a reward advantage with several cost advantages (eq. 14, multi-constraint form).

    ``A = (A_r - sum_i lambda_i A_ci) / (1 + sum_i lambda_i)``: the Lagrangian of paper eq. 9
    has one multiplier per constraint; normalising by ``1 + sum lambda`` generalises eq. 14's
    ``1 + lambda`` (ours; it reduces to eq. 14 for one constraint and keeps the combined
    advantage a convex combination of ``A_r`` and the ``-A_ci``).

    Args:
        adv_reward: Reward advantages, any shape.
        adv_costs: Name -> cost advantages, each the shape of ``adv_reward``.
        lagrange_multipliers: Name -> lambda_i >= 0; the same names as ``adv_costs``.

    Returns:
        Combined advantages, same shape, detached.

    Raises:
        KeyError: If the two mappings do not have the same names.
        ValueError: On shape mismatch, non-finite inputs or a negative multiplier.
    """
    if set(adv_costs) != set(lagrange_multipliers):
        raise KeyError(
            f"cost advantages {sorted(adv_costs)} and multipliers "
            f"{sorted(lagrange_multipliers)} must have the same names"
        )
    _check_same_shape(adv_reward=adv_reward, **{f"adv_cost[{k}]": v for k, v in adv_costs.items()})
    total = adv_reward.detach().clone()
    lam_sum = 0.0
    for name, adv_c in adv_costs.items():
        lam = _multiplier_value(lagrange_multipliers[name])
        total = total - lam * adv_c.detach()
        lam_sum += lam
    return total / (1.0 + lam_sum)


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """Critic regression loss ``0.5 * mean((V - R)^2)`` (REFERENCE.md: 0.5*MSE, both critics).

    Args:
        values: Critic outputs, any shape, with gradient.
        returns: GAE returns (targets), same shape (detached here).

    Returns:
        0-d loss tensor.

    Raises:
        ValueError: On mismatched shapes or non-finite inputs.
    """
    _check_same_shape(values=values, returns=returns)
    return 0.5 * (values - returns.detach()).pow(2).mean()


def reward_shaping(rewards: Any, costs: Any, coef: float = 1.0) -> Any:
    """Reward-shaping baseline ``r - coef * c`` (FLaRe-RS, the ``ppo_rs`` method; paper coef 1).

    Args:
        rewards: Per-step rewards, a torch tensor or numpy array.
        costs: Per-step costs, same type and shape.
        coef: Cost penalty weight >= 0 (``LagrangeConfig.reward_shaping_coef``, paper: 1).

    Returns:
        Shaped rewards, same type and shape as ``rewards``.

    Raises:
        ValueError: On mismatched shapes, non-finite values or a negative/non-finite coef.
    """
    if not np.isfinite(coef) or coef < 0:
        raise ValueError(f"coef must be finite and >= 0, got {coef}")
    for name, x in (("rewards", rewards), ("costs", costs)):
        if not isinstance(x, torch.Tensor | np.ndarray):
            raise ValueError(f"{name} must be a torch.Tensor or numpy array")
        finite = torch.isfinite(x).all() if isinstance(x, torch.Tensor) else np.isfinite(x).all()
        if not bool(finite):
            raise ValueError(f"{name} contains NaN or inf")
    if tuple(rewards.shape) != tuple(costs.shape):
        raise ValueError(f"rewards {tuple(rewards.shape)} and costs {tuple(costs.shape)} differ")
    return rewards - coef * costs


def _normalize(adv: torch.Tensor) -> torch.Tensor:
    """Zero-mean, unit-std advantages (population std; ``ADV_NORM_EPS`` guards 0 std)."""
    return (adv - adv.mean()) / (adv.std(unbiased=False) + ADV_NORM_EPS)


def ppo_lag_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    adv_reward: torch.Tensor,
    adv_cost: torch.Tensor | None,
    lagrange_multiplier: float | torch.Tensor,
    value_reward: torch.Tensor,
    returns_reward: torch.Tensor,
    value_cost: torch.Tensor | None,
    returns_cost: torch.Tensor | None,
    entropy: torch.Tensor,
    cfg: PPOConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total PPO-Lagrangian loss on one minibatch (paper eqs. 12-14; REFERENCE.md).

    ``loss = L_clip(A) + value_coef * (0.5 MSE_r + 0.5 MSE_c) - entropy_coef * H`` with
    ``A = (A_r - lambda A_c) / (1 + lambda)``. If ``cfg.normalize_advantages`` (off in the
    paper), A_r and A_c are normalised separately before combining, so lambda keeps its meaning
    as the relative weight of the two objectives.

    Plain PPO (``ppo``, ``ppo_rs``): pass ``adv_cost=None`` with ``lagrange_multiplier=0``, and
    ``value_cost=returns_cost=None`` if there is no cost critic.

    Args:
        log_prob: (N,) log-probabilities of the taken actions under the current policy.
        old_log_prob: (N,) log-probabilities under the rollout policy.
        adv_reward: (N,) reward advantages.
        adv_cost: (N,) cost advantages, or None (then the multiplier must be 0).
        lagrange_multiplier: lambda >= 0, float or 0-d tensor (detached).
        value_reward: (N,) reward-critic outputs.
        returns_reward: (N,) reward returns.
        value_cost: (N,) cost-critic outputs, or None.
        returns_cost: (N,) cost returns, or None (None exactly when ``value_cost`` is).
        entropy: Per-sample policy entropy (N,) or a 0-d mean entropy, nats.
        cfg: PPO hyper-parameters (clip, value_coef, entropy_coef, normalize_advantages).

    Returns:
        ``(loss, stats)``: the 0-d loss to minimise and floats ``policy_loss``,
        ``value_loss_reward``, ``value_loss_cost`` (0 without a cost critic), ``entropy``,
        ``approx_kl`` (the ``(rho - 1) - log rho`` estimator, Schulman 2020 "Approximating KL
        divergence", as CleanRL logs it) and ``clip_fraction`` (share with |rho - 1| > clip).

    Raises:
        ValueError: On mismatched shapes, non-finite inputs, a negative multiplier, a positive
            multiplier without cost advantages, or only one of value_cost/returns_cost.
    """
    lam = _multiplier_value(lagrange_multiplier)
    if adv_cost is None:
        if lam != 0.0:
            raise ValueError("adv_cost is None but lagrange_multiplier is not 0")
        adv_cost = torch.zeros_like(adv_reward)
    if (value_cost is None) != (returns_cost is None):
        raise ValueError("value_cost and returns_cost must both be given or both be None")
    _check_same_shape(
        log_prob=log_prob, old_log_prob=old_log_prob, adv_reward=adv_reward, adv_cost=adv_cost
    )
    if not isinstance(entropy, torch.Tensor) or not bool(torch.isfinite(entropy).all()):
        raise ValueError("entropy must be a finite torch.Tensor")

    adv_r, adv_c = adv_reward.detach(), adv_cost.detach()
    if cfg.normalize_advantages:
        adv_r = _normalize(adv_r)
        adv_c = _normalize(adv_c)
    advantages = combine_advantages(adv_r, adv_c, lam)

    policy_loss = clipped_surrogate_loss(log_prob, old_log_prob, advantages, cfg.clip)
    v_loss_r = value_loss(value_reward, returns_reward)
    if value_cost is not None and returns_cost is not None:
        v_loss_c = value_loss(value_cost, returns_cost)
    else:
        v_loss_c = torch.zeros((), dtype=v_loss_r.dtype, device=v_loss_r.device)
    entropy_mean = entropy.mean()
    loss = policy_loss + cfg.value_coef * (v_loss_r + v_loss_c) - cfg.entropy_coef * entropy_mean

    with torch.no_grad():
        log_ratio = log_prob.detach() - old_log_prob.detach()
        ratio = torch.exp(log_ratio)
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > cfg.clip).to(ratio.dtype).mean()
    stats = {
        "policy_loss": float(policy_loss.detach()),
        "value_loss_reward": float(v_loss_r.detach()),
        "value_loss_cost": float(v_loss_c.detach()),
        "entropy": float(entropy_mean.detach()),
        "approx_kl": float(approx_kl),
        "clip_fraction": float(clip_fraction),
    }
    return loss, stats
