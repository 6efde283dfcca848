"""Rollout storage for a causal-transformer policy: what acting computed, kept for the PPO update.

Per step the buffer keeps what the update needs and nothing it can avoid recomputing:

* decoder-only RL (``TrainConfig.freeze_fusion``): the fused step embedding ``(d,)`` that acting
  computed (the fusion encoder is frozen, so it is exactly what the update would recompute);
* full RL: the frozen visual encoder's features (float16), so PPO epochs re-run the trainable
  fusion encoder with gradient but never the CNN (ARCHITECTURE.md "Scale").

An environment's steps are cut into *segments*, one per episode piece inside the rollout. A
piece that continues an episode begun in an earlier rollout attended, when acting, to up to
``W - 1`` earlier steps; the buffer keeps those steps' per-layer keys/values as acting cached them
(:meth:`~safevla_core.policy.kv_cache.KVCache.prefix`, taken at the rollout's start), so the
update reproduces acting exactly in its first epoch with a bounded history: ``W - 1`` steps of
keys/values per environment and layer, instead of the ``decoder_layers x (W - 1)`` steps of inputs
a re-run of the receptive field needs. Later epochs keep that memory fixed (no gradient through
it, as Transformer-XL's memory; Dai et al. 2019).

Shapes: ``T`` steps per rollout, ``B`` environments, ``K`` constrained cost signals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from safevla_core.policy.actor_critic import ActorCritic
from safevla_core.policy.kv_cache import DecoderPrefix
from safevla_core.policy.model import PolicyOutput


@dataclass
class SegmentIndex:
    """Episode pieces of a rollout as padded index rows.

    Attributes:
        step_index: ``(S, L)`` long, ``t * B + b`` of each position's rollout step (0 at padding;
            use ``valid``).
        valid: ``(S, L)`` bool, True at real steps (padding follows them).
        env: ``(S,)`` long, environment of the piece.
        continues: ``(S,)`` bool, the piece continues an episode from an earlier rollout (it
            uses its environment's prefix; otherwise the prefix is empty).
        text_id: ``(S,)`` long, index into the rollout's instruction list.
    """

    step_index: torch.Tensor
    valid: torch.Tensor
    env: torch.Tensor
    continues: torch.Tensor
    text_id: torch.Tensor

    @property
    def num_steps(self) -> torch.Tensor:
        """``(S,)`` real steps per piece."""
        return self.valid.sum(dim=1)


class RolloutBuffer:
    """``T x B`` storage of one rollout plus each network's decoder prefix.

    Args:
        num_steps: T, steps per environment per rollout.
        num_envs: B, environments.
        num_costs: K, constrained cost signals: ``costs`` and ``values_cost`` are ``(T, B, K)``.
        embed_dim: Width of stored step embeddings (decoder-only RL), or None.
        visual_shape: ``(2, C, h, w)`` of stored frozen features (full RL), or None.
        feature_dtype: Storage dtype of the features (float16 halves memory; ours).

    Raises:
        ValueError: Unless exactly one of ``embed_dim`` and ``visual_shape`` is given.
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        num_costs: int = 1,
        embed_dim: int | None = None,
        visual_shape: tuple[int, ...] | None = None,
        feature_dtype: torch.dtype = torch.float16,
    ) -> None:
        if (embed_dim is None) == (visual_shape is None):
            raise ValueError("give exactly one of embed_dim (decoder-only) and visual_shape (full)")
        self.T, self.B = num_steps, num_envs
        self.step_emb = (
            torch.zeros((num_steps, num_envs, embed_dim)) if embed_dim is not None else None
        )
        self.visual = (
            torch.zeros((num_steps, num_envs, *visual_shape), dtype=feature_dtype)
            if visual_shape is not None
            else None
        )
        self.prev_action = torch.zeros((num_steps, num_envs), dtype=torch.long)
        self.in_hand = torch.zeros((num_steps, num_envs), dtype=torch.bool)
        self.episode_step = torch.zeros((num_steps, num_envs), dtype=torch.long)
        self.text_id = torch.zeros((num_steps, num_envs), dtype=torch.long)
        self.actions = torch.zeros((num_steps, num_envs), dtype=torch.long)
        self.log_probs = torch.zeros((num_steps, num_envs))
        self.values_reward = torch.zeros((num_steps, num_envs))
        self.values_cost = torch.zeros((num_steps, num_envs, num_costs))
        self.rewards = torch.zeros((num_steps, num_envs))
        self.costs = torch.zeros((num_steps, num_envs, num_costs))
        self.dones = torch.zeros((num_steps, num_envs))
        self.instructions: list[str] = []
        self._text_index: dict[str, int] = {}
        #: Per network, the keys/values acting had cached before the rollout's first step.
        self.prefix: dict[str, DecoderPrefix] = {}
        self.t = 0

    @property
    def decoder_only(self) -> bool:
        """Whether the buffer stores step embeddings (decoder-only RL)."""
        return self.step_emb is not None

    def text_id_of(self, instruction: str) -> int:
        """Index of an instruction in :attr:`instructions` (added on first use)."""
        if instruction not in self._text_index:
            self._text_index[instruction] = len(self.instructions)
            self.instructions.append(instruction)
        return self._text_index[instruction]

    def start_rollout(self, prefix: dict[str, DecoderPrefix]) -> None:
        """Begin a new rollout.

        Args:
            prefix: Per network, ``KVCache.prefix()`` of the acting cache before the rollout's
                first step (rows = environments).
        """
        self.prefix = {k: p.to("cpu") for k, p in prefix.items()}
        self.t = 0

    def add_inputs(
        self,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        instructions: list[str],
        step_emb: torch.Tensor | None = None,
        visual: torch.Tensor | None = None,
    ) -> None:
        """Store the policy inputs of step ``t`` for all envs (before acting).

        Args:
            prev_action: ``(B,)`` previous action (20 = start).
            in_hand: ``(B,)`` bool.
            episode_step: ``(B,)`` steps since the episode began (0 = first step).
            instructions: B instruction strings.
            step_emb: ``(B, d)`` fused step embeddings (decoder-only buffers).
            visual: ``(B, 2, C, h, w)`` frozen features (full buffers).

        Raises:
            IndexError: If the rollout is full.
            ValueError: If the stored kind of observation is missing.
        """
        t = self.t
        if t >= self.T:
            raise IndexError("rollout buffer is full")
        if self.step_emb is not None:
            if step_emb is None:
                raise ValueError("a decoder-only buffer needs step_emb")
            self.step_emb[t] = step_emb.detach().cpu().float()
        if self.visual is not None:
            if visual is None:
                raise ValueError("a full buffer needs visual features")
            self.visual[t] = visual.detach().cpu().to(self.visual.dtype)
        self.prev_action[t] = prev_action
        self.in_hand[t] = in_hand
        self.episode_step[t] = episode_step
        self.text_id[t] = torch.tensor([self.text_id_of(s) for s in instructions])

    def add_outcome(
        self,
        actions: torch.Tensor,
        log_probs: torch.Tensor,
        values_reward: torch.Tensor,
        values_cost: torch.Tensor,
        rewards: torch.Tensor,
        costs: torch.Tensor,
        dones: torch.Tensor,
    ) -> None:
        """Store what happened at step ``t`` and advance ``t``.

        All ``(B,)``, except ``values_cost`` and ``costs``: ``(B, K)`` (``(B,)`` when K = 1).
        """
        t = self.t
        self.actions[t] = actions.cpu()
        self.log_probs[t] = log_probs.cpu()
        self.values_reward[t] = values_reward.cpu()
        self.values_cost[t] = values_cost.cpu().reshape(self.B, -1)
        self.rewards[t] = rewards
        self.costs[t] = costs.reshape(self.B, -1)
        self.dones[t] = dones
        self.t += 1

    def segments(self) -> SegmentIndex:
        """Cut the (full) rollout into padded per-episode pieces.

        Raises:
            RuntimeError: If the rollout is not full.
        """
        if self.t != self.T:
            raise RuntimeError(f"rollout holds {self.t} of {self.T} steps")
        starts = self.episode_step == 0  # (T, B)
        pieces: list[tuple[int, list[int], bool]] = []
        for b in range(self.B):
            cur: list[int] = []
            for t in range(self.T):
                if bool(starts[t, b]) and cur:
                    pieces.append((b, cur, False))
                    cur = []
                cur.append(t)
            if cur:
                pieces.append((b, cur, False))
            first = next(i for i, p in enumerate(pieces) if p[0] == b)
            pieces[first] = (b, pieces[first][1], not bool(starts[0, b]))
        length = max(len(p[1]) for p in pieces)
        s = len(pieces)
        step_index = torch.zeros((s, length), dtype=torch.long)
        valid = torch.zeros((s, length), dtype=torch.bool)
        for i, (b, steps, _) in enumerate(pieces):
            step_index[i, : len(steps)] = torch.tensor(steps) * self.B + b
            valid[i, : len(steps)] = True
        env = torch.tensor([p[0] for p in pieces], dtype=torch.long)
        first_t = torch.tensor([p[1][0] for p in pieces], dtype=torch.long)
        return SegmentIndex(
            step_index=step_index,
            valid=valid,
            env=env,
            continues=torch.tensor([p[2] for p in pieces], dtype=torch.bool),
            text_id=self.text_id[first_t, env],
        )

    def segment_prefix(self, seg: SegmentIndex, rows: torch.Tensor) -> dict[str, DecoderPrefix]:
        """Per network, the prefix of the given segment rows (empty for non-continuing ones)."""
        out = {}
        for name, p in self.prefix.items():
            sel = p.select(seg.env[rows])
            keep = seg.continues[rows][:, None]
            out[name] = DecoderPrefix(sel.keys, sel.values, sel.valid & keep)
        return out

    def flat(self, name: str) -> torch.Tensor:
        """A ``(T, B, ...)`` field as ``(T * B, ...)`` (index ``t * B + b``)."""
        x: torch.Tensor = getattr(self, name)
        return x.reshape(self.T * self.B, *x.shape[2:])


def evaluate_segments(
    model: ActorCritic,
    buf: RolloutBuffer,
    seg: SegmentIndex,
    rows: torch.Tensor,
    texts: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
) -> tuple[PolicyOutput, torch.Tensor, torch.Tensor]:
    """The networks' outputs on segment ``rows`` of a rollout, with gradient (the PPO update).

    Decoder-only buffers feed the stored step embeddings; full buffers re-run every network's
    fusion encoder on the stored frozen features. Each piece continues from the keys/values that
    acting cached before the rollout, so at the start of an update the outputs equal acting's.

    Args:
        model: The actor-critic that acted.
        buf: The full rollout.
        seg: ``buf.segments()``.
        rows: ``(S',)`` long segment rows to evaluate.
        texts: Instruction strings -> padded ``(text (n, L, D), mask (n, L))``
            (``InstructionCache.batch``).
        device: The model's device.

    Returns:
        ``(output with (S', L, ...) tensors, valid (S', L) bool, step index (N,))``: the flat
        rollout index ``t * B + b`` of each valid position, in ``output[valid]`` order.
    """
    idx = seg.step_index[rows]  # (S', L)
    valid = seg.valid[rows]
    flat_idx = idx[valid]
    s, length = idx.shape

    def gather(name: str) -> torch.Tensor:
        return buf.flat(name)[idx].to(device)

    if buf.decoder_only:
        emb = buf.flat("step_emb")[idx].to(device)
        step_emb = {n: emb for n in model.nets}
    else:
        text, mask = texts([buf.instructions[int(i)] for i in seg.text_id[rows]])
        row_of = torch.arange(s)[:, None].expand(s, length)[valid]
        vis = buf.flat("visual")[flat_idx].to(device).float()
        per_net = model.embed(vis, text[row_of].to(device), mask[row_of].to(device))
        step_emb = {}
        for n, e in per_net.items():
            full = torch.zeros(s, length, e.shape[-1], dtype=e.dtype, device=device)
            step_emb[n] = full.index_put((valid.to(device),), e)
    prefix = {n: p.to(device) for n, p in buf.segment_prefix(seg, rows).items()}
    out = model.evaluate_segments(
        step_emb, gather("prev_action"), gather("in_hand"), gather("episode_step"), prefix
    )
    return out, valid.to(device), flat_idx.to(device)


__all__ = ["RolloutBuffer", "SegmentIndex", "evaluate_segments"]
