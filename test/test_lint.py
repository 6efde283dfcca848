"""Linters run as tests (ros2/demos practice): ruff, ruff format and mypy (pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    """A linter of this environment; it is pinned in requirements.txt, so missing is a failure."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    assert found is not None, f"{name} is not installed: it is pinned in requirements.txt"
    return found


def _ruff() -> str:
    return _tool("ruff")


def test_ruff_check_passes_on_the_repository():
    proc = subprocess.run(
        [_ruff(), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_leaves_the_repository_unchanged():
    proc = subprocess.run(
        [_ruff(), "format", "--check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_passes_on_safevla_core():
    # the settings ([tool.mypy], strict) come from pyproject.toml; this interpreter's packages
    # are the ones checked against, wherever the mypy executable was found
    proc = subprocess.run(
        [_tool("mypy"), "--python-executable", sys.executable, "safevla_core"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
