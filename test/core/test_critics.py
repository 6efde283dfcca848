"""Separate critics, the value-only warm-up and the J_c estimate, on the trainer's real path."""

from __future__ import annotations

import math

import pytest
import torch

from safevla_core.actions import Action
from safevla_core.checkpoint import load_checkpoint, save_checkpoint
from safevla_core.config import load_config
from safevla_core.rl.train import Trainer


def _cfg(tmp_path, name="run", **train):
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
            "ppo": {"update_epochs": 1, "lr": 1e-3, "critic_lr": 3e-3},
            "train": {
                "method": "ppo_lag",
                "num_envs": 2,
                "num_steps": 8,
                "total_env_steps": 16,
                "vector": "sync",
                "out_dir": str(tmp_path / name),
                "torch_threads": 1,
                **train,
            },
        },
    )


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_multiplier_keeps_its_value_when_no_episode_finished(tmp_path):
    trainer = Trainer(_cfg(tmp_path), resume=False, progress=False)
    # a rollout in which no episode ended: no per-episode cost is known
    lams, jc = trainer.update_multiplier([])
    assert lams == {"total": pytest.approx(0.001)}  # the authors' initial lambda, unchanged
    assert math.isnan(jc["total"])
    # one finished episode with cost 5 > b = 2.31964: Adam's first step moves lambda by its
    # learning rate in the direction of -grad = +(J_c - b): 0.001 + 0.035 = 0.036 (eq. 16)
    lams, jc = trainer.update_multiplier([{"cumulative_cost": 5.0}])
    assert jc == {"total": 5.0}
    assert lams["total"] == pytest.approx(0.036, abs=1e-6)


def test_critics_start_from_the_init_checkpoint_with_their_own_learning_rate(tmp_path):
    source = Trainer(_cfg(tmp_path, "il"), resume=False, progress=False)
    with torch.no_grad():
        for p in source.policy.parameters():
            p.add_(0.1)  # weights that differ from a fresh build
    il = tmp_path / "il.pt"
    save_checkpoint(il, {"policy": source.policy.state_dict()})
    trainer = Trainer(_cfg(tmp_path, init_checkpoint=str(il)), resume=False, progress=False)
    want = source.policy.state_dict()
    for role in ("actor", "reward", "cost"):
        got = trainer.model.nets[role].state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), role
    groups = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert groups == {"actor": 1e-3, "critics": 3e-3}


def test_warmup_trains_only_the_critics(tmp_path):
    trainer = Trainer(_cfg(tmp_path, critic_warmup_env_steps=1000), resume=False, progress=False)
    actor, reward, cost = (_params(trainer.model.nets[r]) for r in ("actor", "reward", "cost"))
    result = trainer.run()
    assert [m["critic_warmup"] for m in result.history] == [1.0]
    assert not _changed(actor, trainer.model.nets["actor"])
    assert _changed(reward, trainer.model.nets["reward"])
    assert _changed(cost, trainer.model.nets["cost"])


def test_after_warmup_the_actor_learns_and_resume_restores_the_critics(tmp_path):
    cfg = _cfg(tmp_path, critic_warmup_env_steps=0)
    trainer = Trainer(cfg, resume=False, progress=False)
    actor = _params(trainer.model.nets["actor"])
    trainer.run()
    assert _changed(actor, trainer.model.nets["actor"])
    state = load_checkpoint(tmp_path / "run" / "ckpt_000001.pt", required_keys=("critics",))
    assert set(state["critics"]) == {"reward", "cost"}
    again = Trainer(cfg, resume=True, progress=False)
    for role in ("reward", "cost"):
        want = trainer.model.nets[role].state_dict()
        got = again.model.nets[role].state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), role


def test_decoder_only_rl_leaves_the_fusion_encoder_untouched(tmp_path):
    trainer = Trainer(
        _cfg(tmp_path, critic_warmup_env_steps=0, freeze_fusion=True), resume=False, progress=False
    )
    fusion = [p.detach().clone() for p in trainer.policy.fusion_parameters()]
    decoder = _params(trainer.policy.decoder)
    trainer.run()
    assert all(
        torch.equal(a, b) for a, b in zip(fusion, trainer.policy.fusion_parameters(), strict=True)
    )
    assert _changed(decoder, trainer.policy.decoder)


def test_rl_with_the_end_gate_keeps_its_head_and_never_ends_while_it_says_out_of_view(tmp_path):
    # a gated policy whose visibility head says "out of view" everywhere (bias -10): in a whole
    # PPO-Lagrangian iteration no env ever takes `end`, the head is untouched and stats are finite
    import dataclasses

    cfg = _cfg(tmp_path, critic_warmup_env_steps=0)
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, end_gate=0.5))
    trainer = Trainer(cfg, resume=False, progress=False)
    for net in trainer.model.networks().values():
        with torch.no_grad():
            net.visible_head.weight.zero_()
            net.visible_head.bias.fill_(-10.0)
    head = _params(trainer.model.nets["actor"].visible_head)
    actor = _params(trainer.model.nets["actor"].action_head)
    buffers = []
    new_buffer = trainer.new_buffer
    trainer.new_buffer = lambda: buffers.append(new_buffer()) or buffers[-1]
    result = trainer.run()
    (buf,) = buffers
    assert buf.actions.shape == (8, 2) and not (buf.actions == int(Action.END)).any()
    assert not _changed(head, trainer.model.nets["actor"].visible_head)
    assert _changed(actor, trainer.model.nets["actor"].action_head)
    stats = result.history[-1]
    # every figure finite (approx_kl included), except J_c: no episode finished in 8 steps
    bad = {k: v for k, v in stats.items() if isinstance(v, float) and not math.isfinite(v)}
    assert bad.keys() == {"cost_estimate"} and stats["episodes"] == 0.0, bad
    assert "approx_kl" in stats
    frozen = {id(p) for p in trainer.model.actor.visible_head.parameters()}
    assert not frozen & {id(p) for p in trainer.model.actor_parameters()}


def test_step_cost_head_learns_the_taken_actions_cost_and_reaches_the_agent(tmp_path):
    """Q_c1(s, a) is trained on the per-step cost; the deployed agent reports it per action."""
    import numpy as np

    from safevla_core.agent import PolicyAgent

    cfg = _cfg(tmp_path, critic_warmup_env_steps=0, total_env_steps=32)
    trainer = Trainer(cfg, resume=False, progress=False)
    head = trainer.model.nets["cost"].step_cost_head.weight.detach().clone()
    result = trainer.run()
    assert "step_cost_loss" in result.history[-1]
    assert not torch.equal(head, trainer.model.nets["cost"].step_cost_head.weight)
    agent = PolicyAgent.from_checkpoint(tmp_path / "run" / "ckpt_000002.pt")
    assert agent.cost_critic is not None
    agent.reset("navigate to a mug")
    frame = np.zeros((96, 160, 3), np.uint8)
    step = agent.act(frame, frame)
    assert step.action_costs.shape == (20,) and np.isfinite(step.action_costs).all()
    # the same numbers as the trained cost critic's own head on this first step
    with torch.no_grad():
        feats = agent.visual(np.stack([frame, frame]))[None]
        text, mask = agent.texts.batch(["navigate to a mug"])
        want, _ = trainer.model.nets["cost"].act(
            feats, text, mask, torch.tensor([20]), torch.tensor([False]), torch.tensor([0])
        )
    np.testing.assert_allclose(step.action_costs, want.step_cost[0].numpy(), atol=1e-5)


def test_shipping_keeps_the_actor_and_cost_critic_only(tmp_path, monkeypatch):
    import safevla_core.shipped as shipped
    from safevla_core.agent import PolicyAgent

    cfg = _cfg(tmp_path, critic_warmup_env_steps=0)
    Trainer(cfg, resume=False, progress=False).run()
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "checkpoints")
    assert shipped.default_eval_checkpoint("objnav") is None  # nothing shipped yet
    path = shipped.ship_checkpoint(tmp_path / "run" / "ckpt_000001.pt", "objnav", "safevla")
    assert path == tmp_path / "checkpoints" / "objnav" / "safevla.pt"
    state = load_checkpoint(path)
    assert set(state) == {"policy", "config", "metrics", "source", "critics"}
    assert set(state["critics"]) == {"cost"}
    assert shipped.default_eval_checkpoint("objnav") == path
    agent = PolicyAgent.from_checkpoint(path)
    assert agent.cost_critic is not None


@pytest.mark.slow
@pytest.mark.parametrize("warmup_steps", [16, 0])
def test_multiplier_holds_still_during_the_value_only_warm_up(tmp_path, warmup_steps):
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    # One rollout of 2 envs x 8 steps with 4-step episodes: 4 episodes finish, so J_c is known.
    # Inside the 16-step warm-up lambda keeps the authors' initial 0.001; without a warm-up the
    # same rollout moves it (Adam's first step changes it by the lr, 0.035, unless J_c == b
    # exactly; projected at 0: 0.001 - 0.035 < 0 -> 0).
    import dataclasses

    from safevla_core.rl.train import train

    cfg = _cfg(tmp_path, critic_warmup_env_steps=warmup_steps)
    cfg = dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, max_steps_train=4))
    row = train(cfg, resume=False, progress=False).history[-1]
    assert row["episodes"] >= 4 and math.isfinite(row["cost_estimate"])
    if warmup_steps:
        assert row["critic_warmup"] == 1.0
        assert row["lagrange_multiplier"] == pytest.approx(0.001)
    else:
        assert row["critic_warmup"] == 0.0
        assert row["lagrange_multiplier"] != pytest.approx(0.001)
