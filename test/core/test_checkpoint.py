"""Tests of safevla_core.checkpoint: atomic save, safe load, latest checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from safevla_core.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from safevla_core.config import Config, config_to_dict

REPO_ROOT = Path(__file__).resolve().parents[2]


def _state(iteration: int) -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {
        "iteration": iteration,
        "policy": model.state_dict(),
        "optimizer": opt.state_dict(),
        "config": config_to_dict(Config()),
        "history": [1.5, None, "x"],
        "rng": (1, 2),
    }


def test_round_trip(tmp_path):
    state = _state(7)
    path = checkpoint_path(tmp_path / "run", 7)
    assert path.name == "ckpt_000007.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path, required_keys=("iteration", "policy"))
    assert loaded["iteration"] == 7
    assert loaded["config"] == state["config"]
    assert loaded["config"]["task"]["cost_limit"] == 2.31964
    for k, v in state["policy"].items():
        assert torch.equal(loaded["policy"][k], v)
    assert loaded["optimizer"]["state"][0]["exp_avg"].shape == (2, 3)
    assert loaded["history"] == [1.5, None, "x"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_missing_truncated_corrupt_and_missing_keys(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "ckpt_000001.pt"
    save_checkpoint(path, _state(1))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    path.write_bytes(b"definitely not a torch file")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    save_checkpoint(path, {"iteration": 1})
    with pytest.raises(CheckpointError, match="policy"):
        load_checkpoint(path, required_keys=("iteration", "policy"))
    assert issubclass(CheckpointError, ValueError)


def test_save_rejects_types_weights_only_cannot_load(tmp_path):
    with pytest.raises(CheckpointError, match="ndarray"):
        save_checkpoint(tmp_path / "a.pt", {"obs": np.zeros(3)})
    with pytest.raises(CheckpointError, match="Config"):
        save_checkpoint(tmp_path / "a.pt", {"config": Config()})
    with pytest.raises(CheckpointError, match="dict"):
        save_checkpoint(tmp_path / "a.pt", [1, 2])
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt_000001.pt"
    save_checkpoint(path, {"iteration": 1})

    def crash(*args, **kwargs):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, {"iteration": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # temp file cleaned up


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    from safevla_core.checkpoint import save_checkpoint
    path = sys.argv[1]
    save_checkpoint(path, {"iteration": 1, "w": torch.zeros(10)})
    # the process dies (SIGKILL, no cleanup) after the temp file is written, before the rename
    os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    save_checkpoint(path, {"iteration": 2, "w": torch.ones(10)})
""")


def test_killed_mid_write_leaves_previous_checkpoint(tmp_path):
    script = tmp_path / "kill_worker.py"
    script.write_text(_KILL_SCRIPT)
    run_dir = tmp_path / "run"
    path = run_dir / "ckpt_000001.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(path)], env=env, timeout=120, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    leftovers = [p.name for p in run_dir.iterdir() if p.name != path.name]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # the orphaned temp file
    state = load_checkpoint(path)
    assert state["iteration"] == 1 and torch.equal(state["w"], torch.zeros(10))
    assert latest_checkpoint(run_dir) == path


def test_latest_checkpoint_picks_highest_iteration(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for it in (2, 10, 999999, 1000000):  # 1000000 > 999999 numerically, not lexically
        save_checkpoint(checkpoint_path(tmp_path, it), {"iteration": it})
    (tmp_path / ".ckpt_2000000.pt.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "ckpt_3000000.pt.tmp").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("x")
    best = latest_checkpoint(tmp_path)
    assert best == tmp_path / "ckpt_1000000.pt"
    assert load_checkpoint(best)["iteration"] == 1000000
    with pytest.raises(ValueError):
        checkpoint_path(tmp_path, -1)
