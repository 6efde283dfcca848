"""Actor, reward critic and cost critic as separate networks (the authors' ``use_sep_critic``).

SafeVLA's RL config sets ``use_sep_critic=True``: the actor, the reward critic and the cost
critic are separate transformers, all initialised from the IL checkpoint, and the first 200k env
steps train only the two value losses (REFERENCE.md "Problem"). FLaRe (Hu et al. 2024) names a
separate critic among what keeps RL fine-tuning of a large IL policy stable. With one shared
network, the randomly initialised value heads' gradients (about 100x the policy's at the first
updates, measured) overwrite the IL features.

:class:`ActorCritic` holds one :class:`SafeVLAPolicy` per *role*: ``actor`` (its action head is
used), ``reward`` (its reward head) and ``cost`` (its cost head, K outputs for K constraints).
With ``separate=False`` the three roles are one network (the first version's layout).

Two update modes (``TrainConfig.freeze_fusion``):

* full (the faithful default): every network fuses the observation with its own fusion encoder;
  the PPO update re-runs each fusion encoder with gradient;
* decoder-only (ours, for CPU budgets): the token projections and fusion encoder keep their IL
  weights and are shared: acting fuses each step once, with the actor's fusion encoder, and the
  rollout stores that embedding, so the PPO update re-runs only the causal decoders.

In both modes the update continues every episode piece from the keys/values that acting cached
for the steps before the rollout (:class:`~safevla_core.policy.kv_cache.DecoderPrefix`), so its
first epoch sees exactly what acting computed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from safevla_core.policy.kv_cache import DecoderPrefix, KVCache
from safevla_core.policy.model import PolicyOutput, SafeVLAPolicy

#: Roles of the networks, in a fixed order.
ROLES: tuple[str, ...] = ("actor", "reward", "cost")


@dataclass
class ActorCriticCache:
    """One KV cache per distinct network (see :class:`ActorCritic`)."""

    caches: dict[str, KVCache]

    def reset(self, rows: torch.Tensor) -> None:
        """Forget the history of ``rows`` ``(B,)`` bool in every network's cache."""
        for cache in self.caches.values():
            cache.reset(rows)

    def prefix(self) -> dict[str, DecoderPrefix]:
        """Each network's :meth:`KVCache.prefix` (the steps before the next one)."""
        return {name: cache.prefix() for name, cache in self.caches.items()}


class ActorCritic(nn.Module):
    """SPOC-style actor with a reward critic and a cost critic, shared or separate.

    Args:
        actor: The actor network (e.g. the IL policy). The critics start as copies of it.
        separate: Separate critic networks (True, the authors') or one network (False).
        freeze_fusion: Share and freeze the actor's observation fusion (decoder-only RL).

    Every network's ``visible_head`` (the end gate's, ``PolicyConfig.end_gate``) is frozen: RL
    has no visibility labels, so it stays as behaviour cloning trained it.

    Attributes:
        nets: ``ModuleDict`` of the distinct networks: ``actor`` (+ ``reward``, ``cost``).
    """

    def __init__(
        self, actor: SafeVLAPolicy, separate: bool = True, freeze_fusion: bool = False
    ) -> None:
        """Build from an actor; see the class docstring for the arguments."""
        super().__init__()
        self.separate = bool(separate)
        self.freeze_fusion = bool(freeze_fusion)
        nets = {"actor": actor}
        if self.separate:
            nets["reward"] = copy.deepcopy(actor)
            nets["cost"] = copy.deepcopy(actor)
        self.nets = nn.ModuleDict(nets)
        for net in self.networks().values():
            # RL has no visibility labels: the end gate's head stays as behaviour cloning left it
            # (and optimizer states from before the head still fit)
            net.visible_head.requires_grad_(False)
        if self.freeze_fusion:
            for net in self.networks().values():
                for p in net.fusion_parameters():
                    p.requires_grad_(False)

    # -- structure ---------------------------------------------------------------------------
    def networks(self) -> dict[str, SafeVLAPolicy]:
        """The distinct networks by name, in ``nets`` order (``nn.ModuleDict`` holds only them)."""
        return {n: cast(SafeVLAPolicy, net) for n, net in self.nets.items()}

    @property
    def actor(self) -> SafeVLAPolicy:
        """The actor network."""
        return self.networks()["actor"]

    def net(self, role: str) -> SafeVLAPolicy:
        """The network serving ``role`` (``actor``, ``reward`` or ``cost``)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        return self.networks()[role if self.separate else "actor"]

    def actor_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the actor network."""
        return [p for p in self.actor.parameters() if p.requires_grad]

    def critic_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the critic networks (empty when not separate)."""
        if not self.separate:
            return []
        return [
            p
            for name in ("reward", "cost")
            for p in self.nets[name].parameters()
            if p.requires_grad
        ]

    def new_cache(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> ActorCriticCache:
        """Empty caches for ``batch_size`` rows, one per distinct network."""
        return ActorCriticCache(
            {n: net.new_cache(batch_size, device) for n, net in self.networks().items()}
        )

    # -- acting ------------------------------------------------------------------------------
    def embed(
        self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Step embeddings ``(N, d)`` per distinct network (one shared entry when frozen)."""
        if self.freeze_fusion:
            shared = self.actor.embed_steps(visual, text, text_mask)
            return {n: shared for n in self.nets}
        return {n: net.embed_steps(visual, text, text_mask) for n, net in self.networks().items()}

    @torch.no_grad()
    def act(
        self,
        visual: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        cache: ActorCriticCache | None = None,
    ) -> tuple[PolicyOutput, ActorCriticCache, torch.Tensor]:
        """One cached step for B environments (arguments as :meth:`SafeVLAPolicy.act`).

        Returns:
            ``(output, cache, step_emb)``: logits from the actor, ``value_reward`` from the
            reward critic, ``value_cost`` from the cost critic; ``step_emb`` ``(B, d)`` is the
            actor's fused step embedding (what decoder-only RL stores).
        """
        if cache is None:
            cache = self.new_cache(visual.shape[0], visual.device)
        emb = self.embed(visual, text, text_mask)
        outs = {
            n: net.decode_step(emb[n], prev_action, in_hand, episode_step, cache.caches[n])[0]
            for n, net in self.networks().items()
        }
        return self._combine(outs), cache, emb["actor"]

    def _combine(self, outs: dict[str, PolicyOutput]) -> PolicyOutput:
        """Each role's head from its own network."""
        if not self.separate:
            return outs["actor"]
        return PolicyOutput(
            logits=outs["actor"].logits,
            value_reward=outs["reward"].value_reward,
            value_cost=outs["cost"].value_cost,
            step_cost=outs["cost"].step_cost,
            visible_logit=outs["actor"].visible_logit,
        )

    # -- PPO update --------------------------------------------------------------------------
    def evaluate_segments(
        self,
        step_emb: dict[str, torch.Tensor],
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        prefix: dict[str, DecoderPrefix],
    ) -> PolicyOutput:
        """Decoder pass over episode pieces for every network (see :meth:`decode_segments`).

        Args:
            step_emb: Per network, ``(S, T, d)`` step embeddings.
            prev_action: ``(S, T)`` long.
            in_hand: ``(S, T)`` bool.
            episode_step: ``(S, T)`` long.
            prefix: Per network, the keys/values acting cached before each row.

        Returns:
            Combined :class:`PolicyOutput` ``(S, T, ...)``.
        """
        outs = {
            n: net.decode_segments(step_emb[n], prev_action, in_hand, episode_step, prefix[n])
            for n, net in self.networks().items()
        }
        return self._combine(outs)

    def critic_state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """The critics' weights by role (empty when not separate)."""
        if not self.separate:
            return {}
        return {n: self.nets[n].state_dict() for n in ("reward", "cost")}

    def load_critic_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load :meth:`critic_state_dict` output.

        Raises:
            KeyError: If a critic is missing while the critics are separate.
        """
        if not self.separate:
            return
        for n in ("reward", "cost"):
            if n not in state:
                raise KeyError(f"checkpoint has no {n!r} critic")
            self.networks()[n].load_weights(state[n])


__all__ = ["ROLES", "ActorCritic", "ActorCriticCache"]
