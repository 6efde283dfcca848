"""Lagrange multipliers for the CMDP (paper eqs. 9 and 16; REFERENCE.md "Problem").

Three small objects with one interface (``.value``, ``.update(mean_episode_cost)``,
``.state_dict()``, ``.load_state_dict()``):

- :class:`LagrangeMultiplier`: the authors' gradient-ascent multiplier (Adam or SGD);
- :class:`PIDLagrangeMultiplier`: Stooke, Achiam & Abbeel 2020, "Responsive Safety in
  Reinforcement Learning by PID Lagrangian Methods", as OmniSafe's CPPOPID implements it;
- :class:`MultiplierSet`: one multiplier per named cost limit (multi-constraint eq. 9).

The trainer calls ``update`` once per rollout, before the PPO epochs, with the rollout's mean
episode cost (REFERENCE.md). The multipliers hold no collective: under ``torch.distributed`` the
trainer passes the job-wide J_c (its episode statistics all-reduced at the call site,
:func:`~safevla_core.rl.distributed.episode_means`; ARCHITECTURE.md "Scale"), so every rank
takes the same step and holds the same multiplier. The multipliers turn into the surrogate's
advantage through :func:`safevla_core.rl.ppo.combine`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import torch

from safevla_core.config import LagrangeConfig

UNCONSTRAINED_METHODS = ("ppo", "ppo_rs")
"""Methods without a multiplier (config.METHODS): plain PPO and the reward-shaping baseline."""


def _finite(name: str, value: float) -> float:
    """Return ``float(value)`` or raise ValueError if it is not a finite number."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


class LagrangeMultiplier:
    """Gradient-ascent Lagrange multiplier as in the authors' code (REFERENCE.md).

    lambda is a scalar ``torch.nn.Parameter`` trained with ``optimizer`` on the loss
    ``-lambda * (J_c - b)`` (so it ascends the Lagrangian in lambda) and clamped at 0 after
    each step. With ``"sgd"`` one step is exactly paper eq. 16,
    ``lambda <- max(0, lambda + lr (J_c - b))``; with ``"adam"`` (the authors' choice, torch's
    default betas/eps) the first step moves lambda by about ``lr`` whatever the size of the
    violation. Stored in float64 (ours: one scalar, so the precision is free and tests can
    check exact numbers).

    Args:
        init: lambda_0 >= 0 (authors' code: 0.001).
        lr: Learning rate > 0 (authors' code: 0.035).
        cost_limit: b >= 0, the per-episode cost limit.
        optimizer: ``"adam"`` (authors' code) or ``"sgd"`` (plain eq. 16).

    Raises:
        ValueError: On a negative/non-finite init or limit, non-positive lr, unknown optimizer.
    """

    def __init__(self, init: float, lr: float, cost_limit: float, optimizer: str = "adam") -> None:
        """Create the parameter and its optimizer (see the class docstring)."""
        init = _finite("init", init)
        self.lr = _finite("lr", lr)
        self.cost_limit = _finite("cost_limit", cost_limit)
        if init < 0 or self.cost_limit < 0 or self.lr <= 0:
            raise ValueError("need init >= 0, cost_limit >= 0 and lr > 0")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.optimizer_name = optimizer
        self._param = torch.nn.Parameter(torch.tensor(init, dtype=torch.float64))
        opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
        self._optimizer = opt_cls([self._param], lr=self.lr)

    @property
    def value(self) -> float:
        """The current multiplier lambda >= 0."""
        return float(self._param.detach())

    def update(self, mean_episode_cost: float) -> float:
        """One optimizer step on ``-lambda * (J_c - b)``, then clamp at 0.

        Args:
            mean_episode_cost: J_c, the job's mean episode cost over the rollout (summed cost
                per episode averaged over environments, and over ranks; REFERENCE.md).

        Returns:
            The new multiplier value.

        Raises:
            ValueError: If the cost is not a finite number.
        """
        cost = _finite("mean_episode_cost", mean_episode_cost)
        self._optimizer.zero_grad(set_to_none=True)
        loss = -self._param * (cost - self.cost_limit)
        loss.backward()
        self._optimizer.step()
        with torch.no_grad():
            self._param.clamp_(min=0.0)
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state (plain numbers and tensors: loads with weights_only)."""
        return {
            "kind": "lagrange",
            "optimizer_name": self.optimizer_name,
            "value": self.value,
            "optimizer": self._optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`.

        Raises:
            ValueError: If the state is from another multiplier kind or optimizer.
            KeyError: If a key is missing.
        """
        if state.get("kind") != "lagrange" or state.get("optimizer_name") != self.optimizer_name:
            raise ValueError(
                f"state is for {state.get('kind')!r}/{state.get('optimizer_name')!r}, "
                f"expected 'lagrange'/{self.optimizer_name!r}"
            )
        value = _finite("value", state["value"])
        if value < 0:
            raise ValueError(f"stored multiplier is negative: {value}")
        self._optimizer.load_state_dict(state["optimizer"])
        with torch.no_grad():
            self._param.fill_(value)


class PIDLagrangeMultiplier:
    """PID-Lagrangian multiplier (Stooke et al. 2020, Alg. 2; OmniSafe ``PIDLagrangian``).

    Per update with cost J and error ``e = J - b``::

        I      <- max(0, I + ki * e)                  (integral, starts at ``init``)
        P      <- ema * P + (1 - ema) * e             (EMA-smoothed error)
        D_cost <- ema * D_cost + (1 - ema) * J        (EMA-smoothed cost)
        D      =  max(0, D_cost - D_cost[delay updates ago])   (0 before any history)
        lambda =  max(0, kp * P + I + kd * D)

    As in OmniSafe's CPPOPID with ``sum_norm`` (the ``(A_r - lambda A_c)/(1 + lambda)``
    combination) there is no upper cap, and ``value`` is 0 until the first update.

    Args:
        kp: Proportional gain (OmniSafe CPPOPID: 0.1).
        ki: Integral gain (0.01).
        kd: Derivative gain (0.01).
        ema: EMA factor of the P and D terms, in [0, 1) (0.95).
        delay: Derivative delay in updates, >= 1 (10).
        cost_limit: b >= 0.
        init: Initial integral term (OmniSafe ``lagrangian_multiplier_init``: 0.001).

    Raises:
        ValueError: On negative gains, ema outside [0, 1), delay < 1, or a negative limit.
    """

    def __init__(
        self,
        kp: float,
        ki: float,
        kd: float,
        ema: float,
        delay: int,
        cost_limit: float,
        init: float = 0.001,
    ) -> None:
        """Store the gains and zero the controller state (see the class docstring)."""
        self.kp, self.ki, self.kd = _finite("kp", kp), _finite("ki", ki), _finite("kd", kd)
        self.ema = _finite("ema", ema)
        self.cost_limit = _finite("cost_limit", cost_limit)
        init = _finite("init", init)
        if min(self.kp, self.ki, self.kd) < 0:
            raise ValueError("PID gains must be >= 0")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        if int(delay) != delay or delay < 1:
            raise ValueError(f"delay must be an integer >= 1, got {delay}")
        if self.cost_limit < 0 or init < 0:
            raise ValueError("cost_limit and init must be >= 0")
        self.delay = int(delay)
        self._integral = init
        self._delta_p = 0.0
        self._cost_d = 0.0
        self._cost_d_history: deque[float] = deque([0.0], maxlen=self.delay)
        self._value = 0.0

    @property
    def value(self) -> float:
        """The current multiplier lambda >= 0."""
        return self._value

    def update(self, mean_episode_cost: float) -> float:
        """One PID step with the rollout's mean episode cost.

        Args:
            mean_episode_cost: J_c, the job's mean episode cost over the rollout (over ranks).

        Returns:
            The new multiplier value.

        Raises:
            ValueError: If the cost is not a finite number.
        """
        cost = _finite("mean_episode_cost", mean_episode_cost)
        error = cost - self.cost_limit
        self._integral = max(0.0, self._integral + self.ki * error)
        self._delta_p = self.ema * self._delta_p + (1.0 - self.ema) * error
        self._cost_d = self.ema * self._cost_d + (1.0 - self.ema) * cost
        derivative = max(0.0, self._cost_d - self._cost_d_history[0])
        self._value = max(0.0, self.kp * self._delta_p + self._integral + self.kd * derivative)
        self._cost_d_history.append(self._cost_d)
        return self._value

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable controller state (plain numbers and lists)."""
        return {
            "kind": "pid_lagrange",
            "integral": self._integral,
            "delta_p": self._delta_p,
            "cost_d": self._cost_d,
            "cost_d_history": list(self._cost_d_history),
            "value": self._value,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`.

        Raises:
            ValueError: If the state is from another multiplier kind or holds bad numbers.
            KeyError: If a key is missing.
        """
        if state.get("kind") != "pid_lagrange":
            raise ValueError(f"state is for {state.get('kind')!r}, expected 'pid_lagrange'")
        history = [_finite("cost_d_history", v) for v in state["cost_d_history"]]
        if not history:
            raise ValueError("cost_d_history must not be empty")
        self._integral = _finite("integral", state["integral"])
        self._delta_p = _finite("delta_p", state["delta_p"])
        self._cost_d = _finite("cost_d", state["cost_d"])
        self._cost_d_history = deque(history, maxlen=self.delay)
        self._value = _finite("value", state["value"])


Multiplier = LagrangeMultiplier | PIDLagrangeMultiplier


def make_multiplier(method: str, lag_cfg: LagrangeConfig, cost_limit: float) -> Multiplier | None:
    """Build the multiplier a training method needs.

    Args:
        method: ``ppo`` | ``ppo_rs`` (no multiplier) | ``ppo_lag`` | ``ppo_pid_lag``
            (config.METHODS).
        lag_cfg: Multiplier settings (init, lr, optimizer, PID gains).
        cost_limit: b, the per-episode cost limit (``TaskConfig.cost_limit``).

    Returns:
        A :class:`LagrangeMultiplier`, a :class:`PIDLagrangeMultiplier`, or None.

    Raises:
        ValueError: On an unknown method.
    """
    if method in UNCONSTRAINED_METHODS:
        return None
    if method == "ppo_lag":
        return LagrangeMultiplier(lag_cfg.init, lag_cfg.lr, cost_limit, lag_cfg.optimizer)
    if method == "ppo_pid_lag":
        return PIDLagrangeMultiplier(
            lag_cfg.pid_kp,
            lag_cfg.pid_ki,
            lag_cfg.pid_kd,
            lag_cfg.pid_ema,
            lag_cfg.pid_delay,
            cost_limit,
            init=lag_cfg.init,
        )
    raise ValueError(
        f"unknown method {method!r}; expected one of ppo, ppo_rs, ppo_lag, ppo_pid_lag"
    )


class MultiplierSet:
    """One multiplier per named constraint (paper eq. 9: sum_i lambda_i (J_ci - b_i)).

    E.g. ``{"robot": 1.0, "object": 0.5}`` for separate robot/object cost limits. Each
    multiplier is updated independently from its own episode cost; :meth:`as_tensor` gives the
    ``(K,)`` lambdas that :func:`safevla_core.rl.ppo.combine` weighs the cost advantages with.

    Args:
        cost_limits: Name -> b_i >= 0 (non-empty).
        lag_cfg: Multiplier settings shared by all constraints.
        method: ``"ppo_lag"`` or ``"ppo_pid_lag"``.

    Raises:
        ValueError: On an empty mapping or a method without multipliers.
    """

    def __init__(
        self, cost_limits: Mapping[str, float], lag_cfg: LagrangeConfig, method: str = "ppo_lag"
    ) -> None:
        """Build one multiplier per name (see the class docstring)."""
        if not cost_limits:
            raise ValueError("cost_limits must name at least one constraint")
        if method in UNCONSTRAINED_METHODS:
            raise ValueError(f"method {method!r} has no Lagrange multipliers")
        self.cost_limits = {str(k): float(v) for k, v in cost_limits.items()}
        built = {k: make_multiplier(method, lag_cfg, b) for k, b in self.cost_limits.items()}
        self.multipliers: dict[str, Multiplier] = {k: m for k, m in built.items() if m is not None}

    @property
    def values(self) -> dict[str, float]:
        """Name -> current lambda_i."""
        return {k: m.value for k, m in self.multipliers.items()}

    def update(self, mean_episode_costs: Mapping[str, float]) -> dict[str, float]:
        """Update every multiplier from its constraint's mean episode cost.

        Args:
            mean_episode_costs: Name -> J_ci, the job's (over ranks); exactly the names of
                ``cost_limits``.

        Returns:
            Name -> new lambda_i.

        Raises:
            KeyError: If the names differ from ``cost_limits``.
            ValueError: On a non-finite cost.
        """
        if set(mean_episode_costs) != set(self.multipliers):
            raise KeyError(
                f"costs for {sorted(mean_episode_costs)} but constraints are "
                f"{sorted(self.multipliers)}"
            )
        for name, multiplier in self.multipliers.items():
            multiplier.update(mean_episode_costs[name])
        return self.values

    def as_tensor(self) -> torch.Tensor:
        """``(K,)`` float64 lambdas in the order of ``cost_limits`` (for ``ppo.combine``)."""
        return torch.tensor(list(self.values.values()), dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        """Name -> each multiplier's state dict."""
        return {k: m.state_dict() for k, m in self.multipliers.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`.

        Raises:
            KeyError: If the stored names differ from the constraints.
            ValueError: On a state of the wrong kind.
        """
        if set(state) != set(self.multipliers):
            raise KeyError(f"stored constraints {sorted(state)} != {sorted(self.multipliers)}")
        for name, m in self.multipliers.items():
            m.load_state_dict(state[name])
