"""Generalised advantage estimation (GAE) for the reward and the cost critic.

SafeVLA trains two critics, one for the reward and one for the cost, and estimates both
advantages with the same GAE (gamma 0.99, lambda 0.95; REFERENCE.md "Problem", paper Table 5).
GAE itself is Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized
Advantage Estimation", eq. 16: A_t = sum_l (gamma lambda)^l delta_{t+l} with
delta_t = r_t + gamma V(s_{t+1}) - V(s_t).
"""

from __future__ import annotations

import torch


def _check_float_tensor(name: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise ValueError unless ``x`` is a finite floating tensor of ``shape``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute GAE advantages and lambda-returns for a rollout of ``T`` steps in ``B`` envs.

    Used unchanged for the reward (``rewards``, reward critic) and for the cost (per-step cost,
    cost critic), with the same ``gamma``/``gae_lambda`` (REFERENCE.md "Problem").

    ``dones[t, b] = 1`` means env ``b``'s episode ended after step ``t``: ``values[t + 1, b]``
    (or ``last_values[b]`` at the last step) belongs to the next episode, so nothing is
    bootstrapped across it. Time-limit truncation is treated as termination, as in AllenAct and
    the authors' code (they do not bootstrap a truncated episode from V(s_T)); with sparse
    success reward and a 500-step limit this biases values near the limit slightly low.

    Recurrence (Schulman et al. 2016, eq. 16), with ``m_t = 1 - dones[t]``::

        delta_t = r_t + gamma * m_t * V_{t+1} - V_t
        A_t     = delta_t + gamma * lambda * m_t * A_{t+1}
        R_t     = A_t + V_t          (the critic's regression target)

    Args:
        rewards: (T, B) per-step reward (or cost), floating.
        values: (T, B) critic values V(s_t) recorded during the rollout, same dtype.
        dones: (T, B) episode-ended-after-this-step flags, bool or 0/1 numbers.
        last_values: (B,) V(s_T), the critic's value of the observation after the last step.
        gamma: Discount in [0, 1] (paper Table 5: 0.99).
        gae_lambda: GAE lambda in [0, 1] (paper Table 5: 0.95).

    Returns:
        ``(advantages, returns)``, both (T, B) in the dtype and on the device of ``rewards``.

    Raises:
        ValueError: On mismatched shapes or dtypes, non-finite inputs, dones other than 0/1,
            or gamma/gae_lambda outside [0, 1].
    """
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 2:
        raise ValueError("rewards must be a (T, B) torch.Tensor")
    t_len, n_env = rewards.shape
    _check_float_tensor("rewards", rewards, (t_len, n_env))
    _check_float_tensor("values", values, (t_len, n_env))
    _check_float_tensor("last_values", last_values, (n_env,))
    if values.dtype != rewards.dtype or last_values.dtype != rewards.dtype:
        raise ValueError(
            f"rewards, values, last_values must share a dtype, got "
            f"{rewards.dtype}, {values.dtype}, {last_values.dtype}"
        )
    if not isinstance(dones, torch.Tensor) or tuple(dones.shape) != (t_len, n_env):
        raise ValueError(f"dones must be a torch.Tensor of shape {(t_len, n_env)}")
    done_f = dones.to(dtype=rewards.dtype, device=rewards.device)
    if not bool(((done_f == 0) | (done_f == 1)).all()):
        raise ValueError("dones must contain only 0/1 (or bool) values")
    for name, v in (("gamma", gamma), ("gae_lambda", gae_lambda)):
        if not (0.0 <= float(v) <= 1.0):
            raise ValueError(f"{name} must be in [0, 1], got {v}")

    not_done = 1.0 - done_f
    advantages = torch.empty_like(rewards)
    next_adv = torch.zeros_like(last_values)
    next_value = last_values
    for t in range(t_len - 1, -1, -1):
        delta = rewards[t] + gamma * not_done[t] * next_value - values[t]
        next_adv = delta + gamma * gae_lambda * not_done[t] * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    returns = advantages + values
    return advantages, returns
