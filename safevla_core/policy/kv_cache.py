"""Per-layer key/value ring buffers for one-step-at-a-time decoding of the causal policy decoder.

Environments reset independently, so batch rows have different history lengths: every ring has a
fixed size (the context window, REFERENCE.md "Policy": up to 100 steps) and a per-row validity
mask. All rows advance together (one :meth:`SafeVLAPolicy.act` call writes one slot for every
row), so one shared write pointer suffices; :meth:`KVCache.reset` forgets the history of the rows
whose episode ended.

Besides keys/values the cache keeps the decoder *inputs* of the last
``decoder_layers * (context_steps - 1) + 1`` steps: exactly the history that a full re-run of the
decoder needs to reproduce the top layer's output at the newest step (each layer widens the
receptive field by ``context_steps - 1`` steps). ``SafeVLAPolicy.act_no_cache`` uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class DecoderPrefix:
    """Keys/values of each decoder layer for the steps *before* a sequence, as acting left them.

    A rollout's PPO update re-runs the decoder over each episode piece of the rollout; the
    piece's first steps attended, when acting, to up to ``W - 1`` earlier steps of the same
    episode. Storing those steps' per-layer keys/values (instead of re-running their
    ``decoder_layers x (W - 1)``-step receptive field) reproduces acting exactly at the start of
    the update with a bounded history (Transformer-XL's cached memory, Dai et al. 2019, section
    3.2: the memory carries no gradient).

    Attributes:
        keys: Per decoder layer, ``(S, heads, P, head_dim)`` keys, oldest first.
        values: Per decoder layer, ``(S, heads, P, head_dim)`` values.
        valid: ``(S, P)`` bool; a row's valid steps are contiguous at the end (most recent).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor

    @property
    def length(self) -> int:
        """P, prefix steps per row."""
        return int(self.valid.shape[1])

    def select(self, rows: torch.Tensor) -> DecoderPrefix:
        """The prefix of the given rows (index tensor or bool mask)."""
        return DecoderPrefix(
            [k[rows] for k in self.keys], [v[rows] for v in self.values], self.valid[rows]
        )

    def to(self, device: torch.device | str) -> DecoderPrefix:
        """The prefix on ``device`` (``Tensor.to``: tensors already there are not copied)."""
        return DecoderPrefix(
            [k.to(device) for k in self.keys],
            [v.to(device) for v in self.values],
            self.valid.to(device),
        )

    @staticmethod
    def cat(parts: list[DecoderPrefix]) -> DecoderPrefix:
        """Rows of several prefixes of the same length, stacked."""
        return DecoderPrefix(
            [torch.cat([p.keys[i] for p in parts]) for i in range(len(parts[0].keys))],
            [torch.cat([p.values[i] for p in parts]) for i in range(len(parts[0].values))],
            torch.cat([p.valid for p in parts]),
        )


@dataclass
class KVCache:
    """Ring buffers of the causal decoder's keys/values and inputs, per batch row.

    Attributes:
        keys: Per decoder layer, ``(B, heads, W, head_dim)`` keys, W = context_steps.
        values: Per decoder layer, ``(B, heads, W, head_dim)`` values.
        kv_valid: ``(B, W)`` bool, True where a slot holds a step of the row's current episode.
        inputs: ``(B, S, d_model)`` decoder inputs, S = layers * (W - 1) + 1.
        inputs_valid: ``(B, S)`` bool, validity of ``inputs`` slots.
        last_step: ``(B,)`` long, episode step of each row's newest cached step, -1 if empty.
        num_writes: Steps written so far (all rows advance together); the next slot is
            ``num_writes % W`` in the key/value rings and ``num_writes % S`` in ``inputs``.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    kv_valid: torch.Tensor
    inputs: torch.Tensor
    inputs_valid: torch.Tensor
    last_step: torch.Tensor
    num_writes: int = 0

    @classmethod
    def empty(
        cls,
        batch_size: int,
        num_layers: int,
        num_heads: int,
        window: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> KVCache:
        """Allocate an empty cache.

        Args:
            batch_size: Rows B (environments).
            num_layers: Decoder layers.
            num_heads: Attention heads.
            window: Context window W, steps (``PolicyConfig.context_steps``).
            head_dim: ``d_model // num_heads``.
            dtype: Tensor dtype.
            device: Tensor device.

        Returns:
            A cache with every slot invalid.

        Raises:
            ValueError: On non-positive sizes.
        """
        if min(batch_size, num_layers, num_heads, window, head_dim) <= 0:
            raise ValueError("KVCache sizes must be positive")
        shape = (batch_size, num_heads, window, head_dim)
        history = num_layers * (window - 1) + 1
        return cls(
            keys=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)],
            values=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)],
            kv_valid=torch.zeros(batch_size, window, dtype=torch.bool, device=device),
            inputs=torch.zeros(
                batch_size, history, num_heads * head_dim, dtype=dtype, device=device
            ),
            inputs_valid=torch.zeros(batch_size, history, dtype=torch.bool, device=device),
            last_step=torch.full((batch_size,), -1, dtype=torch.long, device=device),
        )

    @property
    def batch_size(self) -> int:
        """Rows B."""
        return int(self.kv_valid.shape[0])

    @property
    def window(self) -> int:
        """Context window W, steps."""
        return int(self.kv_valid.shape[1])

    @property
    def history(self) -> int:
        """Length S of the decoder-input history."""
        return int(self.inputs.shape[1])

    @property
    def kv_slot(self) -> int:
        """Ring slot the next step's keys/values go to."""
        return self.num_writes % self.window

    @property
    def input_slot(self) -> int:
        """Ring slot the next step's decoder input goes to."""
        return self.num_writes % self.history

    def reset(self, rows: torch.Tensor | np.ndarray | list[bool]) -> None:
        """Forget the history of the given rows (their episodes ended).

        Args:
            rows: ``(B,)`` bool, True for the rows to clear.

        Raises:
            ValueError: If ``rows`` is not a bool mask of length B.
        """
        mask = torch.as_tensor(rows, device=self.kv_valid.device)
        if mask.dtype != torch.bool or mask.shape != (self.batch_size,):
            raise ValueError(
                f"rows must be a bool mask of shape ({self.batch_size},), got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )
        self.kv_valid[mask] = False
        self.inputs_valid[mask] = False
        self.last_step[mask] = -1

    def prefix(self) -> DecoderPrefix:
        """The ``W - 1`` most recent cached steps of every row, as a :class:`DecoderPrefix`.

        Taken before a step is written, this is exactly what that step attends to besides
        itself: the next write overwrites the oldest of the W slots.

        Returns:
            A prefix of length ``W - 1`` (copies; oldest first).
        """
        shift = -self.kv_slot  # the oldest slot is the next one to write
        w = self.window

        def chrono(x: torch.Tensor) -> torch.Tensor:
            return torch.roll(x, shifts=shift, dims=2)[:, :, 1:w].clone()

        valid = torch.roll(self.kv_valid, shifts=shift, dims=1)[:, 1:w].clone()
        return DecoderPrefix(
            [chrono(k) for k in self.keys], [chrono(v) for v in self.values], valid
        )

    def chronological_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder inputs ordered oldest -> newest (the newest step is last).

        Returns:
            ``(inputs (B, S, d_model), valid (B, S) bool)``; a row's valid steps are contiguous at
            the end (a reset clears a row entirely, later steps are appended).
        """
        shift = -(self.num_writes % self.history)  # the oldest slot is the next one to write
        return (
            torch.roll(self.inputs, shifts=shift, dims=1),
            torch.roll(self.inputs_valid, shifts=shift, dims=1),
        )
