"""Atomic training checkpoints, loaded with ``torch.load(weights_only=True)``.

A checkpoint is one dict of tensors, numbers, strings, None, lists/tuples and dicts (the
resolved config goes in as a plain dict, ``config.config_to_dict``), so loading never runs
arbitrary pickled code. Writes are atomic: a crash mid-write leaves the previous file intact.
Files are named ``ckpt_000123.pt`` by training iteration (:func:`checkpoint_path`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_RE = re.compile(r"^ckpt_(\d+)\.pt$")
"""Final checkpoint names; temp files (``.ckpt_*.tmp``) never match (ours)."""

_ALLOWED_SCALARS = (
    bool,
    int,
    float,
    str,
    bytes,
    type(None),
    torch.Tensor,
    torch.Size,
    torch.dtype,
    torch.device,
)


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read: missing, truncated, corrupt, or wrong keys."""


def checkpoint_path(run_dir: str | Path, iteration: int) -> Path:
    """Path of the checkpoint for ``iteration``: ``run_dir/ckpt_000123.pt``.

    Raises:
        ValueError: If ``iteration`` is negative.
    """
    if int(iteration) != iteration or iteration < 0:
        raise ValueError(f"iteration must be an integer >= 0, got {iteration}")
    return Path(run_dir) / f"ckpt_{int(iteration):06d}.pt"


def _check_serialisable(obj: Any, where: str = "state") -> None:
    """Raise CheckpointError if ``obj`` holds anything weights_only loading would reject."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise CheckpointError(f"{where}: key {k!r} must be str or int")
            _check_serialisable(v, f"{where}[{k!r}]")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_serialisable(v, f"{where}[{i}]")
    elif not isinstance(obj, _ALLOWED_SCALARS):
        raise CheckpointError(
            f"{where} is a {type(obj).__name__}; checkpoints hold only tensors, numbers, "
            "strings, lists and dicts (convert numpy with torch.as_tensor, configs with "
            "config_to_dict)"
        )


def _fsync_dir(directory: Path) -> None:
    """Sync a directory (fsync) so a rename inside it survives power loss; no-op if unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically.

    Writes a temp file in the same directory, flushes and fsyncs it, ``os.replace``-s it over
    ``path`` (atomic on POSIX), then fsyncs the directory. The parent directory is created.

    Args:
        path: Destination, e.g. :func:`checkpoint_path` ``(run_dir, it)``.
        state: Dict of tensors, numbers, strings, None, lists/tuples and dicts.

    Raises:
        CheckpointError: If ``state`` is not a dict or holds another type (e.g. a dataclass or
            numpy array) that ``weights_only`` loading would reject.
        OSError: If the file cannot be written (the temp file is removed).
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"state must be a dict, got {type(state).__name__}")
    _check_serialisable(state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    required_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: The checkpoint file.
        map_location: Device for the tensors (``torch.load``'s argument).
        required_keys: Top-level keys that must be present (e.g. ``("policy", "iteration")``).

    Returns:
        The state dict.

    Raises:
        CheckpointError: If the file is missing, truncated or corrupt, holds disallowed types,
            is not a dict, or lacks a required key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated, corrupt or not a torch file): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    missing = [k for k in required_keys if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks keys {missing}; it has {sorted(map(str, state))}"
        )
    return state


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest iteration in ``run_dir``.

    Only names matching ``ckpt_<digits>.pt`` count; temp files of interrupted writes and other
    files are ignored.

    Args:
        run_dir: The run folder (need not exist yet).

    Returns:
        Its path, or None if the folder is missing or holds no checkpoint.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for p in run_dir.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_file():
            it = int(m.group(1))
            if best is None or it > best[0]:
                best = (it, p)
    return best[1] if best else None
