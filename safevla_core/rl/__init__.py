"""Constrained RL: GAE, PPO losses, the PPO-Lagrangian combination, multipliers, checkpoints.

Pure, importable pieces (STYLE.md rule 2); the train loop composes them and does the logging.
"""

from safevla_core.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from safevla_core.rl.distributed import all_reduce_mean
from safevla_core.rl.gae import compute_gae
from safevla_core.rl.lagrange import (
    LagrangeMultiplier,
    MultiplierSet,
    PIDLagrangeMultiplier,
    make_multiplier,
)
from safevla_core.rl.ppo import (
    PPOLoss,
    clipped_surrogate_loss,
    combine,
    normalize_advantages,
    ppo_loss,
    reward_shaping,
    value_loss,
)

__all__ = [
    "CheckpointError",
    "LagrangeMultiplier",
    "MultiplierSet",
    "PIDLagrangeMultiplier",
    "PPOLoss",
    "all_reduce_mean",
    "checkpoint_path",
    "clipped_surrogate_loss",
    "combine",
    "compute_gae",
    "latest_checkpoint",
    "load_checkpoint",
    "make_multiplier",
    "normalize_advantages",
    "ppo_loss",
    "reward_shaping",
    "save_checkpoint",
    "value_loss",
]
