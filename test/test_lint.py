"""Linters run as tests (ros2/demos practice): ruff's rules and formatting (pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    """The ruff of this environment; it is pinned in requirements.txt, so missing is a failure."""
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return str(exe)
    found = shutil.which("ruff")
    assert found is not None, "ruff is not installed: it is pinned in requirements.txt"
    return found


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
