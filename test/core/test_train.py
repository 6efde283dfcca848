"""The training loop: a few real iterations in the real simulator, checkpoints and resume."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from safevla_core.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from safevla_core.config import Config, from_dict, load_config
from safevla_core.rl.train import Trainer, TrainerCheckpoint, train

#: A checkpoint the trainer wrote before its state was typed (commit fe108d7): one ppo_lag
#: iteration of 2 envs x 8 steps (6-step episodes, 3 finished with cost 0), d_model 16. Made by
#: ``Trainer(cfg).run()`` at that commit with the config stored in the file; never regenerate
#: it with newer code (it stands for the checkpoints already on disk).
OLD_CHECKPOINT = Path(__file__).resolve().parents[1] / "fixtures" / "trainer_ckpt_fe108d7.pt"


def _cfg(tmp_path, method="ppo_lag", total=32) -> Config:
    return load_config(
        None,
        {
            "houses": {"num_train": 3, "num_val": 1, "num_test": 1},
            "task": {"max_steps_train": 12},
            "policy": {
                "d_model": 32,
                "num_heads": 4,
                "encoder_layers": 1,
                "decoder_layers": 1,
                "context_steps": 8,
            },
            "ppo": {"update_epochs": 2, "num_minibatches": 2},
            "train": {
                "method": method,
                "num_envs": 2,
                "num_steps": 8,
                "total_env_steps": total,
                "vector": "sync",
                "out_dir": str(tmp_path / method),
                "torch_threads": 1,
            },
        },
    )


def test_train_writes_checkpoints_metrics_and_resumes(tmp_path):
    cfg = _cfg(tmp_path)
    first = Trainer(cfg, resume=True, progress=False)
    before = [p.detach().clone() for p in first.policy.parameters()]
    result = first.run()
    # 32 steps / (2 envs x 8 steps) = 2 iterations
    assert (result.iterations, result.env_steps) == (2, 32)
    run = tmp_path / "ppo_lag"
    assert latest_checkpoint(run).name == "ckpt_000002.pt"
    assert (run / "ckpt_000001.pt").exists()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [1.0, 2.0]
    for key in ("lagrange_multiplier", "policy_loss", "value_loss_cost", "env_steps", "fps"):
        assert key in lines[-1]

    # The multiplier moves once per rollout, before the PPO epochs, on the mean cost of the
    # episodes that finished in that rollout (REFERENCE.md: Adam, lr 0.035, lambda_0 0.001,
    # clamped at 0); with none finished it keeps its value and J_c is NaN. Adam's first step is
    # lr * g / (|g| + eps), i.e. lr * sign(g), g = -(J_c - b): 0.001 + 0.035 = 0.036 if
    # J_c > b = 2.31964, max(0, 0.001 - 0.035) = 0 if J_c < b.
    def first_step(jc: float) -> float:
        assert jc != pytest.approx(2.31964)  # (g = 0 would leave lambda at 0.001)
        return 0.036 if jc > 2.31964 else 0.0

    # 8 steps of 2 envs with a 12-step cap: the first rollout ends an episode only by `end`
    if lines[0]["episodes"] == 0:
        assert math.isnan(lines[0]["cost_estimate"])
        assert lines[0]["lagrange_multiplier"] == pytest.approx(0.001)
        # by step 16 the cap (12) ended both envs' first episodes: the first real update
        assert lines[1]["episodes"] >= 2
        assert lines[1]["lagrange_multiplier"] == pytest.approx(
            first_step(lines[1]["cost_estimate"]), abs=1e-6
        )
    else:
        assert lines[0]["lagrange_multiplier"] == pytest.approx(
            first_step(lines[0]["cost_estimate"]), abs=1e-6
        )
    assert list((run / "tb").glob("events.out.tfevents.*"))
    saved = from_dict(Config, yaml.safe_load((run / "config.yaml").read_text()))
    assert saved == cfg
    # the PPO update changed the weights
    after = list(first.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    state = load_checkpoint(run / "ckpt_000002.pt", required_keys=("policy", "config"))
    assert state["env_steps"] == 32 and from_dict(Config, state["config"]) == cfg

    # an interrupted run logged iteration 3 after its last checkpoint: resuming drops that row
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"iteration": 3.0, "env_steps": 48.0}) + "\n")
    # resume with a larger budget: continues at iteration 3 only
    bigger = _cfg(tmp_path, total=48)
    again = train(bigger, resume=True, progress=False)
    assert (again.iterations, again.env_steps) == (3, 48)
    assert [int(m["iteration"]) for m in again.history] == [3]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [1.0, 2.0, 3.0]
    assert "policy_loss" in lines[-1]  # the resumed run's row, not the stale one


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, total=16)
    train(cfg, progress=False)
    ckpt = latest_checkpoint(tmp_path / "ppo_lag")
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated, as after a disk-full crash
    with pytest.raises(CheckpointError):
        train(_cfg(tmp_path, total=32), progress=False)


@pytest.mark.parametrize("method", ["ppo", "ppo_rs", "ppo_pid_lag"])
def test_baseline_methods_run(tmp_path, method):
    trainer = Trainer(_cfg(tmp_path, method=method, total=16), progress=False)
    result = trainer.run()
    m = result.history[-1]
    assert result.iterations == 1
    if method in ("ppo", "ppo_rs"):
        assert m["lagrange_multiplier"] == 0.0
        # no multiplier: the surrogate's advantage is A_r itself (eq. 14 with lambda = 0)
        a_r = torch.tensor([1.5, -2.0])
        assert torch.equal(trainer.combined_advantage(a_r, torch.tensor([[4.0], [-3.0]])), a_r)
    assert math.isfinite(m["policy_loss"])


def _two_constraints(tmp_path, normalize: bool) -> Trainer:
    """A trainer with robot (b = 1) and object (b = 0.5) limits, SGD multipliers from 0.2."""
    cfg = from_dict(
        Config,
        {
            "task": {"cost_limits": {"robot": 1.0, "object": 0.5}},
            "lagrange": {"optimizer": "sgd", "lr": 0.1, "init": 0.2},
            "ppo": {"normalize_advantages": normalize},
        },
        _cfg(tmp_path, total=16),
    )
    return Trainer(cfg, resume=False, progress=False)


# Two finished episodes: robot costs 3 and 1, object costs 0 and 0.4.
_EPISODES = [{"robot_cost": 3.0, "object_cost": 0.0}, {"robot_cost": 1.0, "object_cost": 0.4}]


def test_trainer_updates_each_multiplier_by_eq16_then_combines_with_them(tmp_path):
    trainer = _two_constraints(tmp_path, normalize=False)
    # Phase 3: J_ci = mean over the finished episodes of each one's summed cost signal i;
    # eq. 16 with SGD, lambda <- max(0, lambda + lr (J_c - b)), lr 0.1, lambda_0 0.2:
    #   robot:  J = (3 + 1)/2 = 2,     0.2 + 0.1*(2 - 1)     = 0.3
    #   object: J = (0 + 0.4)/2 = 0.2, 0.2 + 0.1*(0.2 - 0.5) = 0.17
    lams, jc = trainer.update_multiplier(_EPISODES)
    assert jc == pytest.approx({"robot": 2.0, "object": 0.2}, abs=1e-12)
    assert lams == pytest.approx({"robot": 0.3, "object": 0.17}, abs=1e-12)
    # Phase 4's advantage, (A_r - 0.3 A_robot - 0.17 A_object) / (1 + 0.3 + 0.17):
    #   row 0: (1 - 0.3*2 - 0.17*0) / 1.47    = 0.4 / 1.47
    #   row 1: (0 - 0.3*0 - 0.17*(-3)) / 1.47 = 0.51 / 1.47
    adv = trainer.combined_advantage(
        torch.tensor([1.0, 0.0]), torch.tensor([[2.0, 0.0], [0.0, -3.0]])
    )
    assert adv.tolist() == pytest.approx([0.4 / 1.47, 0.51 / 1.47], abs=1e-6)
    # a second rollout below both limits lowers both; object floors at 0:
    #   robot: 0.3 + 0.1*(0 - 1) = 0.2;  object: 0.17 + 0.1*(0 - 0.5) = 0.12
    lams, _ = trainer.update_multiplier([{"robot_cost": 0.0, "object_cost": 0.0}])
    assert lams == pytest.approx({"robot": 0.2, "object": 0.12}, abs=1e-12)


def test_trainer_normalises_each_advantage_before_combining(tmp_path):
    trainer = _two_constraints(tmp_path, normalize=True)
    trainer.update_multiplier(_EPISODES)  # lambdas 0.3 and 0.17, as above
    # Each column separately, with the Bessel-corrected std of the whole batch:
    #   A_r      [1, 3, 5]:  mean 3, std sqrt((4 + 0 + 4)/2) = 2 -> [-1, 0, 1]
    #   A_robot  [3, 2, 1]:  mean 2, std 1                        -> [1, 0, -1]
    #   A_object [4, 8, 12]: mean 8, std 4                        -> [-1, 0, 1]
    # combined, / 1.47: row 0 (-1 - 0.3*1 - 0.17*(-1)) = -1.13; row 1: 0;
    #                   row 2 (1 - 0.3*(-1) - 0.17*1) = 1.13
    # (a population std would give A_r -> [-1.2247, 0, 1.2247] instead)
    adv = trainer.combined_advantage(
        torch.tensor([1.0, 3.0, 5.0]), torch.tensor([[3.0, 4.0], [2.0, 8.0], [1.0, 12.0]])
    )
    assert adv.tolist() == pytest.approx([-1.13 / 1.47, 0.0, 1.13 / 1.47], abs=1e-6)


def test_separate_robot_and_object_constraints(tmp_path):
    """Two constraints: one cost critic and one Lagrange multiplier each (paper eq. 9)."""
    from safevla_core.agent import PolicyAgent

    cfg = from_dict(
        Config, {"task": {"cost_limits": {"robot": 0.0, "object": 0.5}}}, _cfg(tmp_path, total=16)
    )
    trainer = Trainer(cfg, resume=False, progress=False)
    assert trainer.policy.cost_head.out_features == 2
    result = trainer.run()
    m = result.history[-1]
    assert m["cost_limit/robot"] == 0.0 and m["cost_limit/object"] == 0.5

    # One rollout, one Adam step each from lambda_0 = 0.001 (lr 0.035, first step lr * sign(g),
    # g = -(J_c - b), 0 when J_c = b): J_c > b -> 0.036; J_c = b -> 0.001; J_c < b -> 0.
    # Robot, b = 0: J_c >= 0, so 0.036 after any robot cost, else 0.001 (never 0).
    # Object, b = 0.5.
    def first_step(j: float, b: float) -> float:
        return 0.036 if j > b else 0.001 if j == b else 0.0

    if m["episodes"] == 0:  # no episode finished (none pressed `end`): lambdas unchanged
        lam_r = lam_o = 0.001
    else:
        lam_r = first_step(m["cost_estimate/robot"], 0.0)
        lam_o = first_step(m["cost_estimate/object"], 0.5)
    assert m["lagrange_multiplier/robot"] == pytest.approx(lam_r, abs=1e-6)
    assert m["lagrange_multiplier/object"] == pytest.approx(lam_o, abs=1e-6)
    assert m["lagrange_multiplier"] == pytest.approx(lam_r + lam_o, abs=1e-6)
    state = load_checkpoint(latest_checkpoint(tmp_path / "ppo_lag"))
    assert set(state["multiplier"]) == {"robot", "object"}
    agent = PolicyAgent.from_checkpoint(latest_checkpoint(tmp_path / "ppo_lag"))
    assert agent.policy.num_costs == 2


def test_a_checkpoint_of_the_untyped_trainer_still_resumes(tmp_path):
    raw = load_checkpoint(OLD_CHECKPOINT)
    ckpt = TrainerCheckpoint.from_dict(raw)
    assert (ckpt.iteration, ckpt.env_steps) == (1, 16)  # 1 iteration of 2 envs x 8 steps
    assert ckpt.to_dict().keys() == raw.keys()  # the typed trainer writes the same keys
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(OLD_CHECKPOINT, run / "ckpt_000001.pt")
    cfg = from_dict(Config, raw["config"])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, out_dir=str(run)))
    trainer = Trainer(cfg, resume=True, progress=False)
    assert (trainer.iteration, trainer.env_steps) == (1, 16)
    # J_c = 0 < b: Adam's first step, 0.001 - 0.035 (lr * sign), clamped at 0
    assert raw["multiplier"]["total"]["value"] == 0.0
    assert trainer.multiplier is not None
    assert trainer.multiplier.values == {"total": 0.0}
    # and its Adam moments: gradient g = -(J_c - b) = 2.31964 once, so
    # m = (1 - 0.9) g = 0.231964 and v = (1 - 0.999) g^2 = 0.001 * 5.380730 = 0.00538073
    adam = trainer.multiplier.state_dict()["total"]["optimizer"]["state"][0]
    assert float(adam["exp_avg"]) == pytest.approx(0.231964, abs=1e-9)
    assert float(adam["exp_avg_sq"]) == pytest.approx(0.00538073, abs=1e-8)
    # every stored weight came back (the file predates the visibility head, which stays fresh)
    own = trainer.policy.state_dict()
    assert set(own) - set(raw["policy"]) == {"visible_head.weight", "visible_head.bias"}
    for k, v in raw["policy"].items():
        assert torch.equal(own[k], v), k
    for role, weights in raw["critics"].items():
        for k, v in weights.items():
            assert torch.equal(trainer.model.nets[role].state_dict()[k], v), (role, k)
    # Adam's moments came back: one step taken per parameter (1 epoch x 1 minibatch)
    steps = {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert steps == {1}
    # what it writes back holds the same numbers under the same keys
    again = load_checkpoint(trainer.save(raw["metrics"]))
    assert again.keys() == raw.keys()
    assert again["metrics"] == raw["metrics"] and again["multiplier"] == raw["multiplier"]
    assert all(torch.equal(again["policy"][k], v) for k, v in raw["policy"].items())


def test_trainer_checkpoint_reads_a_dict_without_the_optional_keys():
    ckpt = TrainerCheckpoint.from_dict(
        {"policy": {}, "optimizer": {}, "iteration": 3, "env_steps": 96}
    )
    assert (ckpt.critics, ckpt.multiplier, ckpt.config, ckpt.metrics) == ({}, {}, {}, {})
    assert (ckpt.iteration, ckpt.env_steps) == (3, 96)
    with pytest.raises(KeyError, match="env_steps"):
        TrainerCheckpoint.from_dict({"policy": {}, "optimizer": {}, "iteration": 3})


def test_non_finite_loss_stops_before_touching_the_weights(tmp_path, monkeypatch):
    import safevla_core.rl.train as train_mod

    trainer = Trainer(_cfg(tmp_path, total=16), resume=False, progress=False)
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    real = train_mod.ppo_loss

    def nan_loss(**kwargs):
        terms = real(**kwargs)
        return dataclasses.replace(terms, total=terms.total * float("nan"))

    monkeypatch.setattr(train_mod, "ppo_loss", nan_loss)
    with pytest.raises(FloatingPointError, match="last checkpoint is intact"):
        trainer.run()
    after = trainer.policy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert latest_checkpoint(tmp_path / "ppo_lag") is None


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_leaves_no_duplicate_rows(tmp_path):
    """SIGKILL a real `safevla train` after 2 logged iterations; the rerun logs each once."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    out = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "safevla_core.cli",
        "train",
        "--no-progress",
        "--out-dir",
        str(out),
        "--from-scratch",
        "--num-envs",
        "2",
        "--num-steps",
        "8",
        "--total-env-steps",
        "4000",
        "--set",
        "train.vector=sync",
        "--set",
        "train.checkpoint_every=1000",
        "--set",
        "train.torch_threads=1",
        "--set",
        "task.max_steps_train=12",
        "--set",
        "policy.d_model=32",
        "--set",
        "policy.num_heads=4",
        "--set",
        "policy.encoder_layers=1",
        "--set",
        "policy.decoder_layers=1",
        "--set",
        "policy.context_steps=8",
        "--set",
        "houses.num_train=3",
    ]
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    metrics = out / "metrics.jsonl"
    logged_two = threading.Event()

    def watch_stdout() -> None:
        # the trainer prints "iter N | ..." after it appended iteration N to metrics.jsonl
        for line in proc.stdout:
            if line.startswith("iter") and int(line.split()[1]) >= 2:
                logged_two.set()

    reader = threading.Thread(target=watch_stdout, daemon=True)
    reader.start()
    try:
        assert logged_two.wait(timeout=300), "no 2 iterations logged within 300 s"
        assert proc.poll() is None, "the run ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
    assert latest_checkpoint(out) is None  # killed before its first checkpoint
    # the same command with a budget of 3 iterations (2 envs x 8 steps x 3 = 48 env steps)
    rerun = [a if a != "4000" else "48" for a in args]
    subprocess.run(rerun, env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
