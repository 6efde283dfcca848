"""PPO losses and the PPO-Lagrangian advantage combination (paper Appendix B.1, eqs. 12-14).

Pure functions of tensors: no module state, no collectives, no logging (the caller logs the
returned stats). PPO-Lagrangian is a small delta on PPO, as in OmniSafe's PPO-Lag: the reward
and cost advantages are normalised (optionally, :func:`normalize_advantages`), combined with
the Lagrange multipliers (:func:`combine`, eq. 14) and fed to PPO's one clipped surrogate
(:func:`ppo_loss`); the multipliers themselves live in :mod:`~safevla_core.rl.lagrange`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from safevla_core.config import PPOConfig

ADV_NORM_EPS = 1e-8
"""Added to the advantage standard deviation when normalising (ours: avoids 0-division)."""

_Array = TypeVar("_Array", torch.Tensor, np.ndarray)


def _check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise ValueError unless all tensors share a shape and are finite floating tensors."""
    shape = None
    for name, x in tensors.items():
        _check_finite_float(name, x)
        if shape is None:
            shape = x.shape
        elif x.shape != shape:
            names = list(tensors)
            raise ValueError(
                f"shape mismatch: {names[0]} {tuple(shape)} vs {name} {tuple(x.shape)}"
            )


def _check_finite_float(name: str, x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a finite floating torch tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")


def normalize_advantages(adv: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Zero-mean, unit-std advantages, ``(adv - mean) / (std + ADV_NORM_EPS)``.

    The statistics are the caller's, so that under ``torch.distributed`` they can be those of
    the global batch (:func:`~safevla_core.rl.distributed.global_mean_std`, a collective at the
    call site). The reward and each cost advantage are normalised separately, before
    :func:`combine`, so lambda keeps its meaning as the relative weight of the objectives
    (OmniSafe standardises ``adv_r`` and ``adv_c`` separately too). The paper does not
    normalise (REFERENCE.md: "advantages not normalized"; ``PPOConfig.normalize_advantages``).

    Args:
        adv: ``(N,)`` or ``(N, K)`` advantages.
        mean: ``()`` or ``(K,)``, the mean over dim 0 (broadcast against ``adv``).
        std: Same shape as ``mean``, the standard deviation over dim 0 (>= 0).

    Returns:
        Normalised advantages, the shape of ``adv``.
    """
    return (adv - mean) / (std + ADV_NORM_EPS)


def combine(adv_r: torch.Tensor, adv_c: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The surrogate's advantage: ``(A_r - sum_k lam_k A_ck) / (1 + sum_k lam_k)`` (eq. 14).

    Paper eq. 14 writes the loss as ``(L_R - lambda L_C) / (1 + lambda)`` of two clipped
    surrogates, i.e. the combined advantage ``(A_r - lambda A_c) / (1 + lambda)``
    (REFERENCE.md "Problem"); like the authors' code and OmniSafe's PPO-Lag we clip one
    surrogate of this combined advantage, which equals eq. 14 wherever the ratio is inside the
    clip range. With K constraints (the Lagrangian of eq. 9 has one multiplier each) the
    denominator ``1 + sum_k lam_k`` generalises eq. 14's ``1 + lambda`` (ours: it reduces to
    eq. 14 for K = 1 and keeps the result a convex combination of ``A_r`` and the ``-A_ck``).
    All multipliers 0 (``ppo``, ``ppo_rs``) gives ``A_r`` exactly.

    Args:
        adv_r: ``(N,)`` reward advantages A_r.
        adv_c: ``(N, K)`` cost advantages, one column per constraint (positive = costlier
            than the cost critic expected).
        lam: ``(K,)`` multipliers lambda_k >= 0 (detached: no gradient flows into them
            through the policy loss).

    Returns:
        ``(N,)`` combined advantages, detached, in ``adv_r``'s dtype.

    Raises:
        ValueError: On wrong ranks or mismatched sizes, non-finite inputs or a negative
            multiplier.
    """
    _check_finite_float("adv_r", adv_r)
    _check_finite_float("adv_c", adv_c)
    _check_finite_float("lam", lam)
    if adv_r.dim() != 1 or adv_c.dim() != 2 or lam.dim() != 1:
        raise ValueError(
            f"need adv_r (N,), adv_c (N, K), lam (K,); got {tuple(adv_r.shape)}, "
            f"{tuple(adv_c.shape)}, {tuple(lam.shape)}"
        )
    if adv_c.shape != (adv_r.shape[0], lam.shape[0]):
        raise ValueError(
            f"shape mismatch: adv_r {tuple(adv_r.shape)}, adv_c {tuple(adv_c.shape)}, "
            f"lam {tuple(lam.shape)}"
        )
    lams = [float(x) for x in lam.detach().double()]
    if min(lams, default=0.0) < 0:
        raise ValueError(f"multipliers must be >= 0, got {lams}")
    total = adv_r.detach()
    for k, lam_k in enumerate(lams):
        total = total - lam_k * adv_c[:, k].detach()
    return total / (1.0 + sum(lams))


def clipped_surrogate_loss(
    *,
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


def value_loss(*, values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
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


def reward_shaping(rewards: _Array, costs: _Array, coef: float = 1.0) -> _Array:
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


@dataclass(frozen=True)
class PPOLoss:
    """The PPO loss of one minibatch (:func:`ppo_loss`).

    Attributes:
        total: 0-d, the loss to minimise:
            ``L_clip(A) + value_coef * (MSE_r + sum_k MSE_ck) - entropy_coef * H``.
        critics: 0-d, ``value_coef * (MSE_r + sum_k MSE_ck)`` alone: the loss of the
            value-only warm-up (REFERENCE.md: the authors' first stage trains only the critics).
        stats: Floats ``policy_loss``, ``value_loss_reward``, ``value_loss_cost`` (the sum over
            the cost critics, 0 without one), ``entropy`` (nats), ``approx_kl`` (the
            ``(rho - 1) - log rho`` estimator, Schulman 2020 "Approximating KL divergence",
            as CleanRL logs it) and ``clip_fraction`` (share with |rho - 1| > clip).
    """

    total: torch.Tensor
    critics: torch.Tensor
    stats: dict[str, float]


def ppo_loss(
    *,
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    value_reward: torch.Tensor,
    returns_reward: torch.Tensor,
    value_cost: torch.Tensor | None,
    returns_cost: torch.Tensor | None,
    entropy: torch.Tensor,
    cfg: PPOConfig,
) -> PPOLoss:
    """PPO loss of one minibatch, with a reward critic and K cost critics (paper eqs. 12-14).

    ``total = L_clip(A) + value_coef * (MSE_r + sum_k MSE_ck) - entropy_coef * H``, each MSE
    the 0.5*MSE of :func:`value_loss`. For PPO-Lagrangian ``advantages`` is :func:`combine`'s
    (eq. 14); for plain PPO (``ppo``, ``ppo_rs``) it is A_r. ``cfg.normalize_advantages`` is
    not read here: normalising is the caller's, before combining (:func:`normalize_advantages`).

    Args:
        log_prob: (N,) log-probabilities of the taken actions under the current policy.
        old_log_prob: (N,) log-probabilities under the rollout policy.
        advantages: (N,) the surrogate's advantages (detached here).
        value_reward: (N,) reward-critic outputs.
        returns_reward: (N,) reward returns.
        value_cost: (N, K) cost-critic outputs, or None without a cost critic.
        returns_cost: (N, K) cost returns, or None (None exactly when ``value_cost`` is).
        entropy: Per-sample policy entropy (N,) or a 0-d mean entropy, nats.
        cfg: PPO hyper-parameters (clip, value_coef, entropy_coef).

    Returns:
        The loss terms and stats (:class:`PPOLoss`).

    Raises:
        ValueError: On mismatched shapes, non-finite inputs, or only one of
            value_cost/returns_cost.
    """
    if (value_cost is None) != (returns_cost is None):
        raise ValueError("value_cost and returns_cost must both be given or both be None")
    if not isinstance(entropy, torch.Tensor) or not bool(torch.isfinite(entropy).all()):
        raise ValueError("entropy must be a finite torch.Tensor")

    policy_loss = clipped_surrogate_loss(
        log_prob=log_prob, old_log_prob=old_log_prob, advantages=advantages, clip=cfg.clip
    )
    v_loss_r = value_loss(values=value_reward, returns=returns_reward)
    cost_losses: list[torch.Tensor] = []
    if value_cost is not None and returns_cost is not None:
        _check_same_shape(value_cost=value_cost, returns_cost=returns_cost)
        if value_cost.dim() != 2:
            raise ValueError(f"value_cost must be (N, K), got {tuple(value_cost.shape)}")
        cost_losses = [
            value_loss(values=value_cost[:, k], returns=returns_cost[:, k])
            for k in range(value_cost.shape[1])
        ]
    v_loss_c = (
        torch.stack(cost_losses).sum()
        if cost_losses
        else torch.zeros((), dtype=v_loss_r.dtype, device=v_loss_r.device)
    )
    entropy_mean = entropy.mean()
    critics = cfg.value_coef * (v_loss_r + v_loss_c)
    total = policy_loss + critics - cfg.entropy_coef * entropy_mean

    with torch.no_grad():
        log_ratio = log_prob.detach() - old_log_prob.detach()
        ratio = torch.exp(log_ratio)
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > cfg.clip).to(ratio.dtype).mean()
    stats = {
        "policy_loss": float(policy_loss.detach()),
        "value_loss_reward": float(v_loss_r.detach()),
        "value_loss_cost": float(sum(float(c.detach()) for c in cost_losses)),
        "entropy": float(entropy_mean.detach()),
        "approx_kl": float(approx_kl),
        "clip_fraction": float(clip_fraction),
    }
    return PPOLoss(total=total, critics=critics, stats=stats)
