"""Constrained RL: GAE, PPO / PPO-Lagrangian losses, Lagrange multipliers, checkpoints.

Pure, importable pieces (STYLE.md rule 2); the train loop composes them and does the logging.
"""

from safevla_core.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from safevla_core.rl.gae import compute_gae
from safevla_core.rl.lagrange import (
    LagrangeMultiplier,
    MultiplierSet,
    PIDLagrangeMultiplier,
    all_reduce_mean,
    lagrange_update,
    make_multiplier,
)
from safevla_core.rl.ppo import (
    clipped_surrogate_loss,
    combine_advantages,
    combine_multi_advantages,
    ppo_lag_loss,
    reward_shaping,
    value_loss,
)

__all__ = [
    "CheckpointError",
    "LagrangeMultiplier",
    "MultiplierSet",
    "PIDLagrangeMultiplier",
    "all_reduce_mean",
    "checkpoint_path",
    "clipped_surrogate_loss",
    "combine_advantages",
    "combine_multi_advantages",
    "compute_gae",
    "lagrange_update",
    "latest_checkpoint",
    "load_checkpoint",
    "make_multiplier",
    "ppo_lag_loss",
    "reward_shaping",
    "save_checkpoint",
    "value_loss",
]
