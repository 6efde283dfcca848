"""Building the policy network for a configuration (its input shape comes from the encoder)."""

from __future__ import annotations

from safevla_core.config import PolicyConfig
from safevla_core.policy.encoders import get_visual_encoder
from safevla_core.policy.model import SafeVLAPolicy


def build_policy(policy_cfg: PolicyConfig, num_costs: int = 1) -> SafeVLAPolicy:
    """A policy whose visual input shape matches the frozen encoder at the configured size.

    Args:
        policy_cfg: Architecture and image size.
        num_costs: Cost critics, one per CMDP constraint (``len(TaskConfig.constraints())``).
    """
    encoder = get_visual_encoder(policy_cfg)
    shape = encoder.output_shape
    return SafeVLAPolicy(policy_cfg, shape, num_costs=num_costs)


__all__ = ["build_policy"]
