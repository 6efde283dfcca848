"""Instruction text for the policy: frozen-encoder token embeddings, cached and padded."""

from __future__ import annotations

import torch

from safevla_core.policy.encoders import get_text_encoder


def pad_text(
    tokens: list[torch.Tensor], masks: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-instruction token embeddings ``(L_i, D)`` into ``(B, L_max, D)`` plus masks.

    Returns:
        ``(text (B, L_max, D) float32, mask (B, L_max) bool)``; True marks real tokens.
    """
    lmax = max(t.shape[0] for t in tokens)
    dim = tokens[0].shape[-1]
    text = torch.zeros(len(tokens), lmax, dim, dtype=torch.float32)
    mask = torch.zeros(len(tokens), lmax, dtype=torch.bool)
    for i, (t, m) in enumerate(zip(tokens, masks, strict=True)):
        text[i, : t.shape[0]] = t
        mask[i, : m.shape[0]] = m
    return text, mask


class InstructionCache:
    """Token embeddings of instructions, computed once each by the frozen text encoder."""

    def __init__(self) -> None:
        self._encoder = get_text_encoder()
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (L, D), mask (L,))`` of one instruction (unpadded).

        Raises:
            ValueError: For an empty instruction.
        """
        if instruction not in self._cache:
            tokens, mask = self._encoder.encode([instruction])
            n = int(mask[0].sum())
            self._cache[instruction] = (tokens[0, :n].clone(), mask[0, :n].clone())
        return self._cache[instruction]

    def batch(self, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(B, L, D)`` tokens and ``(B, L)`` mask for a list of instructions."""
        pairs = [self.get(s) for s in instructions]
        return pad_text([p[0] for p in pairs], [p[1] for p in pairs])


__all__ = ["InstructionCache", "pad_text"]
