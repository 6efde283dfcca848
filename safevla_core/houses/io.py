"""Reading and writing house files: one house per ``.json``, many per ``.jsonl.gz`` (ProcTHOR).

ProcTHOR publishes its house sets as gzip-compressed JSON lines, one house a line; we use the same
format so those files (converted to our schema) and ours load alike.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from safevla_core.houses.schema import validate_house


def write_houses_jsonl_gz(
    houses: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]
) -> Path:
    """Write houses as gzip JSON lines, atomically (temp file in the same folder + os.replace).

    The gzip header's mtime is 0, so the same houses give byte-identical files.

    Args:
        houses: House dicts (each must pass :func:`validate_house`).
        path: Destination, conventionally ending in ``.jsonl.gz``; its folder must exist.

    Returns:
        The destination path.

    Raises:
        ValueError: If a house is invalid or not JSON-serialisable (nothing is written).
    """
    path = Path(path)
    lines = []
    for i, house in enumerate(houses):
        try:
            validate_house(house)
            lines.append(json.dumps(house, allow_nan=False, separators=(",", ":")))
        except (TypeError, ValueError) as err:
            raise ValueError(f"house #{i} cannot be written: {err}") from err
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for line in lines:
                gz.write(line.encode("utf-8") + b"\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_houses_jsonl_gz(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read every house of a gzip JSON-lines file (blank lines are skipped).

    Args:
        path: A ``.jsonl.gz`` file.

    Returns:
        The houses in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not gzip, a line is not JSON, or a house fails
            :func:`validate_house` (the message names the file and line).
    """
    path = Path(path)
    houses = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                houses.append(_parse(line, f"{path}:{lineno}"))
    except (OSError, EOFError, UnicodeDecodeError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable gzip JSON-lines file ({err})") from err
    return houses


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        house = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: invalid JSON ({err})") from err
    if not isinstance(house, dict):
        raise ValueError(f"{where}: expected a JSON object (a house), got {type(house).__name__}")
    try:
        validate_house(house)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    return house


def load_house_file(path: str | os.PathLike[str]) -> dict[str, Any] | list[dict[str, Any]]:
    """Load a ``.json`` file (one house, returns a dict) or a ``.jsonl.gz`` file (returns a list).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: On another suffix or a malformed file (see :func:`read_houses_jsonl_gz`).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".jsonl.gz"):
        return read_houses_jsonl_gz(path)
    if name.endswith(".json"):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err})") from err
        return _parse(text, str(path))
    raise ValueError(f"{path}: expected a .json or .jsonl.gz house file")
