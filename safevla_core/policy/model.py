"""SPOC-style policy: goal-conditioned fusion encoder + causal action decoder + two critics.

Architecture (REFERENCE.md "Policy", SPOC; sizes from :class:`PolicyConfig`):

1. Per step, frozen-encoder features come in precomputed: visual ``(2, 1280, h, w)`` (nav and manip
   cameras) and text tokens ``(L, 384)``. Each camera's patches are projected to ``d_model`` by
   its own linear map (a 1x1 convolution; SPOC compresses patches to 512-d) plus a learned camera
   embedding and a learned patch-position embedding; text tokens by a linear map 384 -> d_model.
2. A pre-norm transformer encoder fuses ``[CLS, nav patches, manip patches, text tokens]`` (text
   padding masked); the CLS output is the step embedding.
3. Decoder input = step embedding + previous-action embedding (20 actions + START = 20) +
   object-in-hand embedding + sinusoidal time encoding of the episode step (Vaswani et al. 2017;
   steps clamped at 999).
4. A pre-norm causal transformer decoder (self-attention + MLP; no cross-attention: observations
   are already fused per step) over the step sequence. A step attends to at most the last
   ``context_steps`` steps, itself included, and never across an episode boundary.
5. Heads: 20 action logits, reward value, cost value (a separate cost critic, REFERENCE.md
   "Problem"), a one-step cost per action, and the logit that the target is in view, which can
   gate ``end`` (:func:`gate_end`, ``PolicyConfig.end_gate``).

The frozen encoders are not submodules: checkpoints hold only trainable parts and PPO epochs reuse
cached features (ARCHITECTURE.md "Scale").
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, cast, overload

import torch
import torch.nn.functional as F  # noqa: N812 (conventional alias)
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from safevla_core.actions import NUM_ACTIONS, START_ACTION, Action
from safevla_core.config import PolicyConfig
from safevla_core.policy.kv_cache import DecoderPrefix, KVCache

#: Entries of the previous-action embedding: 20 actions + START.
PREV_ACTION_VOCAB = NUM_ACTIONS + 1
#: Episode steps with a distinct time encoding; later steps share the last one (REFERENCE.md: at
#: most 600 steps in evaluation, 500 in training, so 1000 leaves headroom).
MAX_TIME_STEPS = 1000
#: Number of cameras (REFERENCE.md: navigation and manipulation RGB).
NUM_CAMERAS = 2
#: Feed-forward width as a multiple of d_model (Vaswani et al. 2017; PyTorch/SPOC convention).
FFN_MULT = 4
#: Logit of a gated ``end`` (:func:`gate_end`): its softmax probability is exactly 0 in float32,
#: yet PPO's log-ratio and approximate KL stay finite (the dtype's lowest value would overflow).
GATED_LOGIT = -1.0e9
#: Std of the action head's initial weights, so the initial policy is near uniform (CleanRL PPO
#: initialises the actor's last layer with gain 0.01).
ACTION_HEAD_INIT_STD = 0.01


class PolicyOutput(NamedTuple):
    """Policy outputs of one call.

    Leading dims are ``(B, T)`` from :meth:`SafeVLAPolicy.forward` and ``(B,)`` from
    :meth:`SafeVLAPolicy.act`.

    Attributes:
        logits: ``(..., 20)`` unnormalised action log-probabilities (index = ``Action`` value).
        value_reward: ``(...)`` reward critic V_r.
        value_cost: ``(...)`` cost critic V_c, or ``(..., K)`` with one critic per constraint
            when the policy was built with ``num_costs = K > 1``.
        step_cost: ``(..., 20)`` learned one-step cost Q_c1(s, a) of each action: the expected
            CMDP cost of this step (the sum of the constrained signals' per-step costs, e.g.
            robot + object cost, 0..3 per step) if action a is taken now. Trained by regression
            on the observed per-step cost of the taken action during RL (ours; cf. the per-step
            safety head of ../seeds/safedojo-review.txt). A second opinion for the shield, not
            a value: it does not look beyond the current step.
        visible_logit: ``(...)`` logit of "an object of the instructed target type is in the
            navigation camera's view now" (the end gate's head; trained by behaviour cloning's
            auxiliary visibility loss, ``safevla il --aux-visible``). When
            ``PolicyConfig.end_gate`` > 0, ``logits`` already has ``end`` masked where
            ``sigmoid(visible_logit) < end_gate`` (:func:`gate_end`). ``None`` only from code
            that builds outputs without it.
    """

    logits: torch.Tensor
    value_reward: torch.Tensor
    value_cost: torch.Tensor
    step_cost: torch.Tensor
    visible_logit: torch.Tensor | None = None


def _threshold_logit(
    logits: torch.Tensor, visible_logit: torch.Tensor, threshold: float, name: str
) -> float:
    """``logit(threshold)``, so that ``sigmoid(v) >= threshold`` iff ``v >= logit(threshold)``.

    Raises:
        ValueError: If the threshold is outside ``(0, 1)`` or the shapes disagree.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"{name} threshold must be in (0, 1), got {threshold}")
    if tuple(visible_logit.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"visible_logit {tuple(visible_logit.shape)} must match logits "
            f"{tuple(logits.shape)} without the action dim"
        )
    return math.log(threshold / (1.0 - threshold))


def gate_end(logits: torch.Tensor, visible_logit: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mask ``end`` where the target is probably not in view (the learned end gate; ours).

    A wrong ``end`` (the target not in view, metres away) ends most failed episodes of the
    behaviour-cloned policy (docs/results section 6): ``end`` is learned from one label per
    episode, while "is the target in view" has a label at every step. The gate lets that dense
    signal veto ``end``: when in doubt the episode goes on (REFERENCE.md: a wrong ``end`` fails
    the episode at once; another step only costs time).

    Args:
        logits: ``(..., 20)`` action logits.
        visible_logit: ``(...)`` visibility logits (:attr:`PolicyOutput.visible_logit`).
        threshold: Probability in ``(0, 1)``; ``end`` is masked where
            ``sigmoid(visible_logit) < threshold``.

    Returns:
        ``(..., 20)`` logits with ``end`` set to :data:`GATED_LOGIT` where masked (probability
        0 after softmax, finite log-probabilities for PPO ratios); other actions unchanged.

    Raises:
        ValueError: If the threshold is outside ``(0, 1)`` or the shapes disagree.
    """
    blocked = visible_logit < _threshold_logit(logits, visible_logit, threshold, "end gate")
    end = int(Action.END)
    masked = logits[..., end].masked_fill(blocked, GATED_LOGIT)
    return torch.cat([logits[..., :end], masked[..., None], logits[..., end + 1 :]], dim=-1)


def trigger_end(
    logits: torch.Tensor, visible_logit: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Take ``end`` where the target is probably in view (the learned stop trigger; ours).

    The counterpart of :func:`gate_end`: where the visibility head is confident that an ``end``
    would succeed, every other action is masked, so the policy stops there instead of walking
    on past the target (ObjectNav's learned stop decisions; docs/results section 9).

    Args:
        logits: ``(..., 20)`` action logits.
        visible_logit: ``(...)`` visibility logits (:attr:`PolicyOutput.visible_logit`).
        threshold: Probability in ``(0, 1)``; ``end`` is forced where
            ``sigmoid(visible_logit) >= threshold``.

    Returns:
        ``(..., 20)`` logits with every action but ``end`` set to :data:`GATED_LOGIT` where
        triggered; unchanged elsewhere.

    Raises:
        ValueError: If the threshold is outside ``(0, 1)`` or the shapes disagree.
    """
    fired = visible_logit >= _threshold_logit(logits, visible_logit, threshold, "end trigger")
    others = torch.ones(logits.shape[-1], dtype=torch.bool, device=logits.device)
    others[int(Action.END)] = False
    return logits.masked_fill(fired[..., None] & others, GATED_LOGIT)


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """Sinusoidal position table (Vaswani et al. 2017, section 3.5).

    Args:
        num_positions: Rows (positions 0..num_positions-1).
        dim: Width.

    Returns:
        ``(num_positions, dim)`` float32 with ``[2i] = sin(p / 10000^(2i/dim))`` and
        ``[2i+1] = cos(...)``.
    """
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    half = (dim + 1) // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) * 2.0 / dim)
    table = torch.zeros(num_positions, 2 * half, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table[:, :dim].float()


def decoder_attention_mask(episode_id: torch.Tensor, window: int) -> torch.Tensor:
    """Boolean attention mask of the causal decoder (True = may attend).

    Query t may attend key s iff ``s <= t`` (causal), ``t - s < window`` (context window, itself
    included) and ``episode_id[s] == episode_id[t]`` (never across an episode boundary).

    Args:
        episode_id: ``(B, T)`` long, equal within an episode, different across episodes.
        window: Context window, steps.

    Returns:
        ``(B, 1, T, T)`` bool (broadcast over heads); the diagonal is always True.
    """
    t = episode_id.shape[1]
    idx = torch.arange(t, device=episode_id.device)
    lag = idx[:, None] - idx[None, :]  # (T, T): query - key
    in_window = (lag >= 0) & (lag < window)
    same_episode = episode_id[:, :, None] == episode_id[:, None, :]  # (B, T, T)
    return (in_window[None] & same_episode)[:, None]


class _DecoderLayer(nn.Module):
    """Pre-norm causal self-attention + MLP block with an explicit key/value interface."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        """Build the block (feed-forward width FFN_MULT * d_model)."""
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, FFN_MULT * d_model),
            nn.GELU(),
            nn.Linear(FFN_MULT * d_model, d_model),
        )
        self.drop = nn.Dropout(dropout)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # x (B, T, d) -> q, k, v each (B, heads, T, head_dim)
        b, t, _ = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, t, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def _finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        # attn (B, heads, T, head_dim) -> residual updates of x (B, T, d)
        b, _, t, _ = attn.shape
        attn = attn.transpose(1, 2).reshape(b, t, -1)
        x = x + self.drop(self.proj(attn))
        out: torch.Tensor = x + self.drop(self.mlp(self.norm2(x)))
        return out

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Full-sequence pass. x (B, T, d), mask (B, 1, T, T) -> (x', k, v)."""
        q, k, v = self._qkv(x)
        p = self.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self._finish(x, attn), k, v

    def forward_prefix(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        prefix_keys: torch.Tensor,
        prefix_values: torch.Tensor,
    ) -> torch.Tensor:
        """Sequence pass that also attends to stored keys/values of earlier steps.

        x (S, T, d); prefix_keys/values (S, heads, P, hd); mask (S, 1, T, P + T). Returns x'.
        """
        q, k, v = self._qkv(x)
        keys = torch.cat([prefix_keys.to(k.dtype), k], dim=2)
        values = torch.cat([prefix_values.to(v.dtype), v], dim=2)
        p = self.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, dropout_p=p)
        return self._finish(x, attn)

    def step(
        self,
        x: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        slot: int,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """One step with a ring cache.

        x (B, 1, d); the step's key/value is written into keys/values (B, heads, W, hd) at
        ``slot``; valid (B, W) must already include ``slot``. Returns x' (B, 1, d).
        """
        q, k, v = self._qkv(x)
        keys[:, :, slot] = k[:, :, 0]
        values[:, :, slot] = v[:, :, 0]
        p = self.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=valid[:, None, None, :], dropout_p=p
        )
        return self._finish(x, attn)


class SafeVLAPolicy(nn.Module):
    """SPOC-style actor with reward and cost critics (trainable parts only).

    Args:
        cfg: Policy config (d_model, heads, layers, context window, dropout).
        visual_shape: ``(C, h, w)`` of one camera's frozen features, e.g.
            ``FrozenVisualEncoder.feature_shape(160, 96) == (1280, 3, 5)``.
        text_dim: Width of the frozen text token embeddings (384 for MiniLM).
        num_costs: Number of cost critics K, one per CMDP constraint (1: the paper's single
            cost critic; ``TaskConfig.constraints()``).

    Raises:
        ValueError: On non-positive shapes.
    """

    #: ``(MAX_TIME_STEPS, d)`` sinusoidal time encodings (a non-persistent buffer).
    time_table: torch.Tensor

    def __init__(
        self,
        cfg: PolicyConfig,
        visual_shape: tuple[int, int, int],
        text_dim: int = 384,
        num_costs: int = 1,
    ) -> None:
        """Build the trainable parts; see the class docstring for the arguments."""
        super().__init__()
        if len(visual_shape) != 3 or min(visual_shape) <= 0 or text_dim <= 0 or num_costs < 1:
            raise ValueError(
                f"bad visual_shape {visual_shape}, text_dim {text_dim} or num_costs {num_costs}"
            )
        self.num_costs = int(num_costs)
        self.cfg = cfg
        self.visual_shape = tuple(int(s) for s in visual_shape)
        self.text_dim = int(text_dim)
        d = cfg.d_model
        c, h, w = self.visual_shape
        self.num_patches = h * w

        # Observation tokens.
        self.patch_proj = nn.ModuleList([nn.Linear(c, d) for _ in range(NUM_CAMERAS)])
        self.camera_embed = nn.Parameter(torch.randn(NUM_CAMERAS, d) * 0.02)
        self.patch_pos_embed = nn.Parameter(torch.randn(self.num_patches, d) * 0.02)
        self.text_proj = nn.Linear(text_dim, d)
        self.cls_token = nn.Parameter(torch.randn(d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=d,
            nhead=cfg.num_heads,
            dim_feedforward=FFN_MULT * d,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.fusion = nn.TransformerEncoder(
            layer, cfg.encoder_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False
        )

        # Step tokens for the decoder.
        self.prev_action_embed = nn.Embedding(PREV_ACTION_VOCAB, d)
        self.in_hand_embed = nn.Embedding(2, d)
        self.register_buffer("time_table", sinusoidal_table(MAX_TIME_STEPS, d), persistent=False)
        self.decoder = nn.ModuleList(
            [_DecoderLayer(d, cfg.num_heads, cfg.dropout) for _ in range(cfg.decoder_layers)]
        )
        self.decoder_norm = nn.LayerNorm(d)

        # Heads.
        self.action_head = nn.Linear(d, NUM_ACTIONS)
        self.reward_head = nn.Linear(d, 1)
        self.cost_head = nn.Linear(d, self.num_costs)
        self.step_cost_head = nn.Linear(d, NUM_ACTIONS)
        self.visible_head = nn.Linear(d, 1)
        #: Recompute fusion-encoder activations in the backward pass (memory for time).
        self.checkpoint_fusion = False
        nn.init.normal_(self.action_head.weight, std=ACTION_HEAD_INIT_STD)
        nn.init.zeros_(self.action_head.bias)

    # ------------------------------------------------------------------ validation

    def _check_visual(self, visual: torch.Tensor, lead: tuple[int, ...]) -> None:
        want = (*lead, NUM_CAMERAS, *self.visual_shape)
        if not torch.is_floating_point(visual) or tuple(visual.shape) != want:
            raise ValueError(
                f"visual must be float {want}, got {visual.dtype} {tuple(visual.shape)}"
            )
        if not torch.isfinite(visual).all():
            raise ValueError("visual features contain NaN or inf")

    def _check_text(self, text: torch.Tensor, text_mask: torch.Tensor, b: int) -> None:
        if (
            not torch.is_floating_point(text)
            or text.dim() != 3
            or text.shape[0] != b
            or (text.shape[2] != self.text_dim)
        ):
            raise ValueError(
                f"text must be float (B={b}, L, {self.text_dim}), got {text.dtype} "
                f"{tuple(text.shape)} (one instruction per row)"
            )
        if text_mask.dtype != torch.bool or tuple(text_mask.shape) != tuple(text.shape[:2]):
            raise ValueError(
                f"text_mask must be bool {tuple(text.shape[:2])}, got {text_mask.dtype} "
                f"{tuple(text_mask.shape)}"
            )
        if not text_mask.any(dim=1).all():
            raise ValueError("every text row needs at least one valid token")
        if not torch.isfinite(text).all():
            raise ValueError("text embeddings contain NaN or inf")

    @staticmethod
    def _check_step_inputs(
        lead: tuple[int, ...],
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
    ) -> None:
        for name, x, dtypes in (
            ("prev_action", prev_action, (torch.long, torch.int32)),
            ("in_hand", in_hand, (torch.bool,)),
            ("episode_step", episode_step, (torch.long, torch.int32)),
        ):
            if x.dtype not in dtypes or tuple(x.shape) != lead:
                raise ValueError(
                    f"{name} must be {dtypes[0]} {lead}, got {x.dtype} {tuple(x.shape)}"
                )
        if ((prev_action < 0) | (prev_action > START_ACTION)).any():
            raise ValueError(f"prev_action must be in [0, {START_ACTION}] (20 = START)")
        if (episode_step < 0).any():
            raise ValueError("episode_step must be >= 0")

    # ------------------------------------------------------------------ building blocks

    def _step_embedding(
        self, visual: torch.Tensor, text_tokens: torch.Tensor, text_pad: torch.Tensor
    ) -> torch.Tensor:
        """Fuse one step's observation into its CLS embedding.

        visual (N, 2, C, h, w); text_tokens (N, L, d) already projected; text_pad (N, L) True at
        padding. Returns (N, d).
        """
        n = visual.shape[0]
        cams = []
        for i in range(NUM_CAMERAS):
            patches = visual[:, i].flatten(2).transpose(1, 2)  # (N, h*w, C)
            cams.append(self.patch_proj[i](patches) + self.camera_embed[i] + self.patch_pos_embed)
        cls = self.cls_token.expand(n, 1, -1)
        tokens = torch.cat([cls, *cams, text_tokens], dim=1)  # (N, 1 + 2hw + L, d)
        pad = torch.cat(
            [
                torch.zeros(
                    n, 1 + NUM_CAMERAS * self.num_patches, dtype=torch.bool, device=visual.device
                ),
                text_pad,
            ],
            dim=1,
        )
        if not (self.checkpoint_fusion and torch.is_grad_enabled() and tokens.requires_grad):
            fused: torch.Tensor = self.fusion(tokens, src_key_padding_mask=pad)[:, 0]
            return fused
        # Activation checkpointing (Chen et al. 2016; torch.utils.checkpoint): keep only each
        # layer's input and recompute the layer in the backward pass -- the same gradient with
        # a fraction of the activation memory (the faithful PPO update at the paper's sizes).
        x = tokens
        for layer in self.fusion.layers:
            x = activation_checkpoint(layer, x, None, pad, use_reentrant=False)
        if self.fusion.norm is not None:
            x = self.fusion.norm(x)
        return x[:, 0]

    def _decoder_input(
        self,
        step_emb: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
    ) -> torch.Tensor:
        """Step embedding + previous action + object in hand + time encoding, same leading dims."""
        t = episode_step.long().clamp(max=MAX_TIME_STEPS - 1)
        x: torch.Tensor = (
            step_emb
            + self.prev_action_embed(prev_action.long())
            + self.in_hand_embed(in_hand.long())
            + self.time_table[t]
        )
        return x

    def fusion_parameters(self) -> list[nn.Parameter]:
        """Parameters of the observation tokens and the fusion encoder.

        Frozen in decoder-only RL (``TrainConfig.freeze_fusion``).
        """
        mods = [*self.patch_proj, self.text_proj, self.fusion]
        params = [p for m in mods for p in m.parameters()]
        return [*params, self.camera_embed, self.patch_pos_embed, self.cls_token]

    def embed_steps(
        self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        """Fuse N steps' observations into their step embeddings (the fusion encoder's CLS).

        Args:
            visual: ``(N, 2, C, h, w)`` float frozen features.
            text: ``(N, L, D)`` text token embeddings, one instruction per step.
            text_mask: ``(N, L)`` bool, True at real tokens.

        Returns:
            ``(N, d_model)`` step embeddings.

        Raises:
            ValueError: On wrong shapes/dtypes or NaN/inf inputs.
        """
        if visual.dim() != 5:
            raise ValueError(f"visual must be (N, 2, C, h, w), got {tuple(visual.shape)}")
        self._check_visual(visual, (visual.shape[0],))
        self._check_text(text, text_mask, visual.shape[0])
        return self._step_embedding(visual, self.text_proj(text), ~text_mask)

    def decode_step(
        self,
        step_emb: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        cache: KVCache | None = None,
    ) -> tuple[PolicyOutput, KVCache]:
        """One cached decoder step from precomputed step embeddings (see :meth:`act`).

        Args:
            step_emb: ``(B, d_model)`` step embeddings (:meth:`embed_steps`).
            prev_action: ``(B,)`` long (20 = START).
            in_hand: ``(B,)`` bool.
            episode_step: ``(B,)`` long.
            cache: The rows' cache, or None to start; updated in place.

        Returns:
            ``(PolicyOutput with logits (B, 20), values (B,), cache)``.

        Raises:
            ValueError: As :meth:`act`.
        """
        x, cache = self._step_inputs(step_emb, prev_action, in_hand, episode_step, cache)
        slot = cache.kv_slot
        for layer, keys, values in zip(self._layers(), cache.keys, cache.values, strict=True):
            x = layer.step(x, keys, values, slot, cache.kv_valid)
        cache.num_writes += 1
        return self._heads(x[:, 0]), cache

    def decode_segments(
        self,
        step_emb: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        prefix: DecoderPrefix,
    ) -> PolicyOutput:
        """The decoder over S episode pieces, each continuing its stored prefix.

        Every row is one piece of one episode (its first step either starts the episode, with an
        all-invalid prefix, or continues the prefix's steps). Padding may follow a row's real
        steps (causal attention hides it). Step i attends to the prefix steps and earlier steps
        within the context window, as :meth:`act` did: equal to acting when the prefix holds
        acting's keys/values (tested to 1e-4).

        Args:
            step_emb: ``(S, T, d_model)`` step embeddings.
            prev_action: ``(S, T)`` long.
            in_hand: ``(S, T)`` bool.
            episode_step: ``(S, T)`` long.
            prefix: Keys/values of the ``P <= W - 1`` steps before each row
                (:meth:`KVCache.prefix`), one per decoder layer.

        Returns:
            :class:`PolicyOutput` with logits ``(S, T, 20)`` and values ``(S, T)``.

        Raises:
            ValueError: On mismatched shapes.
        """
        s, t = step_emb.shape[:2]
        self._check_step_inputs((s, t), prev_action, in_hand, episode_step)
        p = prefix.length
        if prefix.valid.shape[0] != s or len(prefix.keys) != len(self.decoder):
            raise ValueError(
                f"prefix has {prefix.valid.shape[0]} rows / {len(prefix.keys)} layers; "
                f"need {s} / {len(self.decoder)}"
            )
        if p > self.cfg.context_steps - 1:
            raise ValueError(
                f"prefix of {p} steps exceeds the window - 1 ({self.cfg.context_steps - 1})"
            )
        x = self._decoder_input(step_emb, prev_action, in_hand, episode_step)  # (S, T, d)
        q_pos = torch.arange(t, device=x.device) + p
        k_pos = torch.arange(p + t, device=x.device)
        lag = q_pos[:, None] - k_pos[None, :]  # (T, P + T)
        in_window = (lag >= 0) & (lag < self.cfg.context_steps)
        key_ok = torch.cat(
            [prefix.valid.to(x.device), torch.ones(s, t, dtype=torch.bool, device=x.device)],
            dim=1,
        )  # (S, P + T)
        mask = (in_window[None] & key_ok[:, None, :])[:, None]  # (S, 1, T, P + T)
        for layer, pk, pv in zip(self._layers(), prefix.keys, prefix.values, strict=True):
            x = layer.forward_prefix(x, mask, pk.to(x.device), pv.to(x.device))
        return self._heads(x)

    def heads(self, hidden: torch.Tensor) -> PolicyOutput:
        """Action logits and values from the decoder's last layer output ``(..., d_model)``."""
        return self._heads(hidden)

    def _heads(self, x: torch.Tensor) -> PolicyOutput:
        x = self.decoder_norm(x)
        logits = self.action_head(x)
        visible = self.visible_head(x).squeeze(-1)
        if self.cfg.end_gate > 0:
            logits = gate_end(logits, visible, self.cfg.end_gate)
        if self.cfg.end_trigger > 0:
            logits = trigger_end(logits, visible, self.cfg.end_trigger)
        return PolicyOutput(
            logits=logits,
            value_reward=self.reward_head(x).squeeze(-1),
            value_cost=self.cost_head(x).squeeze(-1) if self.num_costs == 1 else self.cost_head(x),
            step_cost=self.step_cost_head(x),
            visible_logit=visible,
        )

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """``load_state_dict`` that accepts checkpoints written before the step-cost head.

        Missing ``step_cost_head.*`` or ``visible_head.*`` entries (checkpoints written before
        those heads) keep their fresh initialisation (untrained); any other missing or
        unexpected key is an error. A checkpoint of a policy without colour channels
        (``PolicyConfig.colour_bins`` 0: its ``patch_proj`` sees the CNN's 1280 channels)
        loads into one with them: the new input columns of ``patch_proj`` start at zero, so
        the loaded policy acts exactly as the checkpoint's until training moves them.

        Raises:
            RuntimeError: On other missing/unexpected keys or shape mismatches.
        """
        from safevla_core.policy.encoders import VISUAL_CHANNELS

        own = self.state_dict()
        state = dict(state)
        for i in range(len(self.patch_proj)):
            key = f"patch_proj.{i}.weight"
            old, new = state.get(key), own[key]
            if (
                isinstance(old, torch.Tensor)
                and old.dim() == 2
                and old.shape[0] == new.shape[0]
                and old.shape[1] == VISUAL_CHANNELS < new.shape[1]
            ):
                state[key] = torch.cat(
                    [old, old.new_zeros(new.shape[0], new.shape[1] - old.shape[1])], 1
                )
        for key in (
            "step_cost_head.weight",
            "step_cost_head.bias",
            "visible_head.weight",
            "visible_head.bias",
        ):
            state.setdefault(key, own[key])
        self.load_state_dict(state)

    # ------------------------------------------------------------------ public API

    @overload
    def forward(
        self,
        visual: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        episode_start: torch.Tensor,
        step_mask: torch.Tensor | None = None,
        grad_mask: torch.Tensor | None = None,
        return_step_embedding: Literal[False] = False,
    ) -> PolicyOutput: ...

    @overload
    def forward(
        self,
        visual: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        episode_start: torch.Tensor,
        step_mask: torch.Tensor | None = None,
        grad_mask: torch.Tensor | None = None,
        *,
        return_step_embedding: Literal[True],
    ) -> tuple[PolicyOutput, torch.Tensor]: ...

    def forward(
        self,
        visual: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        episode_start: torch.Tensor,
        step_mask: torch.Tensor | None = None,
        grad_mask: torch.Tensor | None = None,
        return_step_embedding: bool = False,
    ) -> PolicyOutput | tuple[PolicyOutput, torch.Tensor]:
        """Training path over whole step sequences.

        One instruction per sequence row: if the instruction changes at an episode start inside
        a row, split the row there. Steps before the row's first step are not seen: to reproduce
        what :meth:`act` saw mid-episode, prepend up to
        ``decoder_layers * (context_steps - 1)`` earlier steps and drop their outputs.

        Args:
            visual: ``(B, T, 2, C, h, w)`` float frozen features (nav, manip).
            text: ``(B, L, D)`` float text token embeddings, one instruction per row.
            text_mask: ``(B, L)`` bool, True at real tokens.
            prev_action: ``(B, T)`` long previous action, 20 (START) at an episode's first step.
            in_hand: ``(B, T)`` bool, an object is held.
            episode_step: ``(B, T)`` long step index within the episode (0 at the start).
            episode_start: ``(B, T)`` bool, True where a new episode starts at t.
            step_mask: Optional ``(B, T)`` bool, steps whose observation is fused; the others get
                a zero step embedding. Only for padding *after* a row's real steps, which causal
                attention hides from them (ours, a speed-up for padded PPO batches).
            grad_mask: Optional ``(B, T)`` bool, steps whose fusion-encoder pass keeps its
                gradient; the others are fused under ``no_grad`` (their outputs are unchanged).
                PPO uses it for context-only prefix steps, trading their (small) gradient through
                the fusion encoder for speed and memory (ours).
            return_step_embedding: Also return the step embeddings ``(B, T, d_model)``: the
                fusion encoder's CLS output of each step (observation and instruction only, no
                history; zero where ``step_mask`` is False), which the decoder input adds to.
                For auxiliary losses on the same pass (behaviour cloning's visibility head);
                the outputs are unchanged.

        Returns:
            :class:`PolicyOutput` with logits ``(B, T, 20)``, values ``(B, T)``. Step t attends to
            steps ``s <= t`` with ``t - s < context_steps`` in the same episode. With
            ``return_step_embedding``: ``(PolicyOutput, step_emb (B, T, d_model))``.

        Raises:
            ValueError: On wrong shapes/dtypes, NaN/inf features, or out-of-range indices.
        """
        if visual.dim() != 6:
            raise ValueError(f"visual must be (B, T, 2, C, h, w), got {tuple(visual.shape)}")
        b, t = visual.shape[:2]
        self._check_visual(visual, (b, t))
        self._check_text(text, text_mask, b)
        self._check_step_inputs((b, t), prev_action, in_hand, episode_step)
        if episode_start.dtype != torch.bool or tuple(episode_start.shape) != (b, t):
            raise ValueError(f"episode_start must be bool ({b}, {t})")

        d = self.cfg.d_model
        text_tok = self.text_proj(text)  # (B, L, d)
        l_txt = text_tok.shape[1]
        text_tok = text_tok[:, None].expand(b, t, l_txt, d).reshape(b * t, l_txt, d)
        text_pad = (~text_mask)[:, None].expand(b, t, l_txt).reshape(b * t, l_txt)
        flat_visual = visual.reshape(b * t, *visual.shape[2:])
        if step_mask is None and grad_mask is None:
            step_emb = self._step_embedding(flat_visual, text_tok, text_pad).view(b, t, d)
        else:
            for name, m in (("step_mask", step_mask), ("grad_mask", grad_mask)):
                if m is not None and (m.dtype != torch.bool or tuple(m.shape) != (b, t)):
                    raise ValueError(f"{name} must be bool ({b}, {t})")
            compute = (
                step_mask.reshape(-1)
                if step_mask is not None
                else torch.ones(b * t, dtype=torch.bool, device=visual.device)
            )
            grad = compute & grad_mask.reshape(-1) if grad_mask is not None else compute
            no_grad = compute & ~grad
            parts = torch.zeros(b * t, d, dtype=text_tok.dtype, device=visual.device)
            if grad.any():
                parts = parts.index_put(
                    (grad,), self._step_embedding(flat_visual[grad], text_tok[grad], text_pad[grad])
                )
            if no_grad.any():
                with torch.no_grad():
                    fused = self._step_embedding(
                        flat_visual[no_grad], text_tok[no_grad], text_pad[no_grad]
                    )
                parts = parts.index_put((no_grad,), fused)
            step_emb = parts.view(b, t, d)
        x = self._decoder_input(step_emb, prev_action, in_hand, episode_step)  # (B, T, d)
        episode_id = torch.cumsum(episode_start.long(), dim=1)
        mask = decoder_attention_mask(episode_id, self.cfg.context_steps)
        for layer in self.decoder:
            x, _, _ = layer(x, mask)
        if return_step_embedding:
            return self._heads(x), step_emb
        return self._heads(x)

    def _layers(self) -> list[_DecoderLayer]:
        """The decoder layers (``nn.ModuleList`` holds only them)."""
        return [cast(_DecoderLayer, layer) for layer in self.decoder]

    def new_cache(self, batch_size: int, device: torch.device | str | None = None) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` rows.

        Args:
            batch_size: Rows B (environments).
            device: Tensor device (default: the parameters' device).

        Returns:
            An empty cache.
        """
        param = next(self.parameters())
        return KVCache.empty(
            batch_size,
            self.cfg.decoder_layers,
            self.cfg.num_heads,
            self.cfg.context_steps,
            self.cfg.d_model // self.cfg.num_heads,
            dtype=param.dtype,
            device=device if device is not None else param.device,
        )

    def _step_inputs(
        self,
        step_emb: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        cache: KVCache | None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Validate one step, write its decoder input into the cache; return it (B, 1, d)."""
        b = step_emb.shape[0]
        if step_emb.dim() != 2 or step_emb.shape[1] != self.cfg.d_model:
            raise ValueError(
                f"step_emb must be (B, {self.cfg.d_model}), got {tuple(step_emb.shape)}"
            )
        self._check_step_inputs((b,), prev_action, in_hand, episode_step)
        cache = self._cache_for(b, episode_step, cache, step_emb.device)
        x = self._decoder_input(step_emb, prev_action, in_hand, episode_step)[:, None]
        self._write_inputs(cache, x, episode_step)
        return x, cache

    def _cache_for(
        self,
        b: int,
        episode_step: torch.Tensor,
        cache: KVCache | None,
        device: torch.device,
    ) -> KVCache:
        """Check (or create) the cache for ``b`` rows whose next step is ``episode_step``."""
        if cache is None:
            cache = self.new_cache(b, device)
        if (
            cache.batch_size != b
            or cache.window != self.cfg.context_steps
            or (len(cache.keys) != self.cfg.decoder_layers)
        ):
            raise ValueError(
                f"cache is for {cache.batch_size} rows / window {cache.window} / "
                f"{len(cache.keys)} layers; got batch {b}, window {self.cfg.context_steps}, "
                f"{self.cfg.decoder_layers} layers"
            )
        cont = cache.last_step >= 0
        bad = cont & (episode_step.long() != cache.last_step + 1)
        if bad.any():
            rows = torch.nonzero(bad).flatten().tolist()
            raise ValueError(
                f"rows {rows}: episode_step does not follow the cached step; call "
                "cache.reset(rows) when an episode ends"
            )
        return cache

    @staticmethod
    def _write_inputs(cache: KVCache, x: torch.Tensor, episode_step: torch.Tensor) -> None:
        """Record a step's decoder input (B, 1, d) and mark its slots valid."""
        cache.inputs[:, cache.input_slot] = x[:, 0]
        cache.inputs_valid[:, cache.input_slot] = True
        cache.kv_valid[:, cache.kv_slot] = True
        cache.last_step = episode_step.long().clone()

    @torch.no_grad()
    def act(
        self,
        visual: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        cache: KVCache | None = None,
    ) -> tuple[PolicyOutput, KVCache]:
        """One step for B environments with the key/value cache (no gradient).

        Call ``cache.reset(done_rows)`` before the first step of a row's new episode (the cache
        checks that each row's ``episode_step`` continues its cached history and raises if not).
        Equals :meth:`forward` on the same sequence (tested to 1e-4).

        Args:
            visual: ``(B, 2, C, h, w)`` float frozen features.
            text: ``(B, L, D)`` text token embeddings.
            text_mask: ``(B, L)`` bool, True at real tokens.
            prev_action: ``(B,)`` long previous action (20 = START at an episode's first step).
            in_hand: ``(B,)`` bool.
            episode_step: ``(B,)`` long step within the episode.
            cache: From the previous call, or None to start (all rows empty). Updated in place.

        Returns:
            ``(PolicyOutput with logits (B, 20), values (B,), cache)``.

        Raises:
            ValueError: On bad inputs, a cache of another size, or a row whose episode_step
                does not continue its history.
        """
        step_emb = self.embed_steps(visual, text, text_mask)
        return self.decode_step(step_emb, prev_action, in_hand, episode_step, cache)

    @torch.no_grad()
    def act_no_cache(
        self,
        visual: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        cache: KVCache | None = None,
    ) -> tuple[PolicyOutput, KVCache]:
        """Same as :meth:`act`, but re-runs the decoder over the stored step history.

        The reference/benchmark path: it recomputes every layer over the last
        ``decoder_layers * (context_steps - 1) + 1`` stored decoder inputs (the receptive field
        of the newest step), then stores the newest keys/values, so it can be mixed with
        :meth:`act`. Arguments, returns and errors as in :meth:`act`.
        """
        step_emb = self.embed_steps(visual, text, text_mask)
        return self.decode_step_no_cache(step_emb, prev_action, in_hand, episode_step, cache)

    @torch.no_grad()
    def decode_step_no_cache(
        self,
        step_emb: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        cache: KVCache | None = None,
    ) -> tuple[PolicyOutput, KVCache]:
        """:meth:`decode_step` without using cached keys/values (the benchmark's reference).

        Re-runs every decoder layer over the receptive field of the newest step (the last
        ``decoder_layers * (context_steps - 1) + 1`` stored decoder inputs). Arguments,
        returns and errors as :meth:`decode_step`.
        """
        _, cache = self._step_inputs(step_emb, prev_action, in_hand, episode_step, cache)
        return self._recompute_newest(cache), cache

    def _recompute_newest(self, cache: KVCache) -> PolicyOutput:
        """Re-run the decoder over the stored inputs; store the newest keys/values."""
        slot = cache.kv_slot
        cache.num_writes += 1
        seq, valid = cache.chronological_inputs()  # (B, S, d), newest last
        keep = int(valid.sum(dim=1).max())  # valid steps are contiguous at the end
        seq, valid = seq[:, -keep:], valid[:, -keep:]
        # Invalid slots get unique ids so they match only themselves.
        ids = torch.arange(keep, device=seq.device)
        episode_id = torch.where(valid, torch.full_like(ids, -1), ids)
        mask = decoder_attention_mask(episode_id, self.cfg.context_steps)
        h = seq
        for layer, keys, values in zip(self.decoder, cache.keys, cache.values, strict=True):
            h, k, v = layer(h, mask)
            keys[:, :, slot] = k[:, :, -1]
            values[:, :, slot] = v[:, :, -1]
        return self._heads(h[:, -1])

    @staticmethod
    def distribution(logits: torch.Tensor) -> torch.distributions.Categorical:
        """Categorical action distribution over the 20 actions.

        Args:
            logits: ``(..., 20)`` action logits.

        Returns:
            ``Categorical(logits=logits)``.
        """
        return torch.distributions.Categorical(logits=logits)

    def evaluate_actions(
        self, output: PolicyOutput, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies of taken actions (the PPO ratio's inputs).

        Args:
            output: Policy output with logits ``(..., 20)``.
            actions: ``(...)`` long action indices in [0, 20).

        Returns:
            ``(log_prob (...), entropy (...))``, natural log.

        Raises:
            ValueError: On a shape mismatch or an index outside [0, 20).
        """
        if tuple(actions.shape) != tuple(output.logits.shape[:-1]):
            raise ValueError(
                f"actions shape {tuple(actions.shape)} != logits' {tuple(output.logits.shape[:-1])}"
            )
        if (
            actions.dtype not in (torch.long, torch.int32)
            or ((actions < 0) | (actions >= NUM_ACTIONS)).any()
        ):
            raise ValueError(f"actions must be integer indices in [0, {NUM_ACTIONS})")
        dist = self.distribution(output.logits)
        return dist.log_prob(actions.long()), dist.entropy()
