"""Expert data shards and behaviour cloning (safevla_core.il)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from safevla_core.actions import NUM_ACTIONS, Action
from safevla_core.config import Config, PolicyConfig
from safevla_core.env import START_ACTION
from safevla_core.il import (
    STEP_KEYS,
    Episode,
    _write_npz_atomic,
    collate,
    episode_windows,
    load_shard,
    shard_path,
)


def _tiny_cfg(max_steps_train: int | None = None) -> Config:
    """A small policy (d_model 32, 1+1 layers, 16-step context) on 64x48 images, for fast runs."""
    import dataclasses

    cfg = dataclasses.replace(
        Config(),
        policy=PolicyConfig(
            d_model=32,
            num_heads=4,
            encoder_layers=1,
            decoder_layers=1,
            context_steps=16,
            image_width=64,
            image_height=48,
        ),
    )
    if max_steps_train is not None:
        cfg = dataclasses.replace(
            cfg, task=dataclasses.replace(cfg.task, max_steps_train=max_steps_train)
        )
    return cfg


def _constant_learner(cfg: Config, action: Action, path: Path) -> Path:
    """A checkpoint of ``cfg``'s policy that always chooses ``action`` (softmax ~ 1 on it)."""
    from safevla_core.checkpoint import save_checkpoint
    from safevla_core.config import config_to_dict
    from safevla_core.policy.factory import build_policy

    torch.manual_seed(0)
    policy = build_policy(cfg.policy, num_costs=len(cfg.task.constraints()))
    with torch.no_grad():
        policy.action_head.weight.zero_()
        policy.action_head.bias.zero_()
        policy.action_head.bias[int(action)] = 100.0
    save_checkpoint(path, {"policy": policy.state_dict(), "config": config_to_dict(cfg)})
    return path


def test_episode_windows_split_long_episodes():
    # lengths [5, 2], window 3 -> episode 0: [0,3), [3,5); episode 1: [0,2).
    assert episode_windows([5, 2], 3) == [(0, 0, 3), (0, 3, 5), (1, 0, 2)]
    assert episode_windows([3], 3) == [(0, 0, 3)]
    with pytest.raises(ValueError):
        episode_windows([3], 0)


class _Texts:
    """Stands in for the instruction cache: one 2-token embedding per instruction."""

    def batch(self, instructions):
        return torch.ones(len(instructions), 2, 4), torch.ones(len(instructions), 2, dtype=bool)


def _episode(n: int, first_action: int) -> Episode:
    return Episode(
        visual=torch.full((n, 2, 3, 1, 1), float(first_action), dtype=torch.float16),
        actions=torch.arange(first_action, first_action + n),
        prev_action=torch.tensor([START_ACTION, *range(first_action, first_action + n - 1)]),
        in_hand=torch.zeros(n, dtype=torch.bool),
        episode_step=torch.arange(n),
        instruction=f"go {first_action}",
    )


def test_collate_pads_and_marks_episode_starts():
    eps = [_episode(5, 0), _episode(2, 10)]
    batch = collate(eps, [(0, 3, 5), (1, 0, 2), (0, 0, 3)], _Texts())
    assert batch["visual"].shape == (3, 3, 2, 3, 1, 1)  # T = longest window (3)
    # Window (0, 3, 5) is 2 steps of episode 0 starting mid-episode: true step indices 3, 4,
    # true previous actions 2, 3; the third row is padding (mask False, a new "episode").
    assert batch["episode_step"][0].tolist() == [3, 4, 0]
    assert batch["prev_action"][0].tolist() == [2, 3, START_ACTION]
    assert batch["mask"][0].tolist() == [True, True, False]
    assert batch["episode_start"][0].tolist() == [True, False, True]
    assert batch["actions"][1, :2].tolist() == [10, 11]
    assert batch["mask"].sum() == 2 + 2 + 3


def test_steps_without_an_action_label_are_context_but_no_target():
    import dataclasses

    ep = dataclasses.replace(
        _episode(5, 0), action_labelled=torch.tensor([False, False, True, True, False])
    )
    batch = collate([ep, _episode(2, 10)], [(0, 1, 4), (1, 0, 2)], _Texts())
    # window (0, 1, 4): steps 1-3 are all real (context), only steps 2 and 3 are targets;
    # episode 1 has no such label (older shards, `collect`): every real step is a target
    assert batch["mask"][0].tolist() == [True, True, True]
    assert batch["action_mask"][0].tolist() == [False, True, True]
    assert batch["action_mask"][1].tolist() == [True, True, False]


@pytest.mark.slow
def test_behaviour_cloning_ignores_the_actions_of_unlabelled_steps():
    import dataclasses

    from safevla_core.il import _bc_pass, policy_inputs
    from safevla_core.policy.factory import build_policy
    from safevla_core.policy.instructions import InstructionCache

    torch.set_num_threads(1)
    cfg = _tiny_cfg()
    texts = InstructionCache()
    torch.manual_seed(0)
    labelled = torch.tensor([False, True, False, True, True, False])
    ep = dataclasses.replace(_end_episode("find a mug", "Mug", (), 6), action_labelled=labelled)
    policy = build_policy(cfg.policy, num_costs=len(cfg.task.constraints()))
    policy.eval()
    with torch.no_grad():
        logits = policy(*policy_inputs(collate([ep], [(0, 0, 6)], texts))).logits[0]
    want = torch.nn.functional.cross_entropy(logits[labelled], ep.actions[labelled])
    got = _bc_pass(policy, [ep], [(0, 0, 6)], texts, 1)
    assert got["steps"] == 3
    assert got["loss"] == pytest.approx(float(want), rel=1e-5)
    # the actions at unlabelled steps do not count: other labels there, the same loss
    other = dataclasses.replace(ep, actions=torch.where(labelled, ep.actions, 7))
    assert _bc_pass(policy, [other], [(0, 0, 6)], texts, 1)["loss"] == got["loss"]
    # no target at all: loss 0 over 0 steps, and a training step on it stays finite
    none = dataclasses.replace(ep, action_labelled=torch.zeros(6, dtype=torch.bool))
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    stats = _bc_pass(policy, [none], [(0, 0, 6)], texts, 1, opt)
    assert stats["loss"] == 0.0 and stats["steps"] == 0
    assert all(torch.isfinite(p).all() for p in policy.parameters())


def test_end_weight_scales_the_cross_entropy_of_the_end_steps():
    """One SGD step with ``end_weight`` 3 equals one on ``(sum of move CEs + 3 x end CE) / n``.

    Hand-worked weights: a 4-step episode (3 move-ahead targets, then ``end``), so n = 4 and
    the loss is ``(CE_1 + CE_2 + CE_3 + 3 CE_4) / 4``. The reported loss stays the plain mean.
    """
    import copy

    from safevla_core.il import _bc_pass, policy_inputs
    from safevla_core.policy.factory import build_policy
    from safevla_core.policy.instructions import InstructionCache

    torch.set_num_threads(1)
    cfg = _tiny_cfg()
    texts = InstructionCache()
    torch.manual_seed(0)
    ep = _end_episode("find a mug", "Mug", (), 4)
    policy = build_policy(cfg.policy, num_costs=len(cfg.task.constraints())).eval()
    by_hand = copy.deepcopy(policy)
    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    got = _bc_pass(policy, [ep], [(0, 0, 4)], texts, 1, opt, max_grad_norm=1e9, end_weight=3.0)

    hand_opt = torch.optim.SGD(by_hand.parameters(), lr=0.5)
    logits = by_hand(*policy_inputs(collate([ep], [(0, 0, 4)], texts))).logits[0]
    ce = torch.nn.functional.cross_entropy(logits, ep.actions, reduction="none")
    assert ep.actions.tolist()[-1] == int(Action.END) and len(ce) == 4
    ((ce[0] + ce[1] + ce[2] + 3.0 * ce[3]) / 4).backward()
    hand_opt.step()
    assert got["loss"] == pytest.approx(float(ce.detach().mean()), rel=1e-5)  # logged: unweighted
    for a, b in zip(policy.parameters(), by_hand.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # and weight 3 is not weight 1: the same step without it lands elsewhere
    plain = copy.deepcopy(by_hand)
    _bc_pass(plain, [ep], [(0, 0, 4)], texts, 1, torch.optim.SGD(plain.parameters(), lr=0.5))
    weighted = copy.deepcopy(by_hand)
    _bc_pass(
        weighted,
        [ep],
        [(0, 0, 4)],
        texts,
        1,
        torch.optim.SGD(weighted.parameters(), lr=0.5),
        end_weight=3.0,
    )
    head = "action_head.bias"
    p_plain, p_weighted = dict(plain.named_parameters()), dict(weighted.named_parameters())
    end = int(Action.END)
    assert p_weighted[head][end] > p_plain[head][end]  # the end logit is pushed up harder


def _three_step_shard(nav: np.ndarray, manip: np.ndarray, **arrays: np.ndarray) -> dict:
    """A 3-step, one-episode shard ("find a mug": actions 0, 2, 18) without the visibility label.

    The keys are STEP_KEYS, instructions and summaries; ``arrays`` replace entries.
    """
    n = 3
    return {
        "nav_rgb": nav,
        "manip_rgb": manip,
        "action": np.array([0, 2, 18]),
        "reward": np.array([0, 0, 10], np.float32),
        "cost": np.array([0, 1, 0], np.float32),
        "prev_action": np.array([START_ACTION, 0, 2]),
        "in_hand": np.zeros(n, bool),
        "episode_step": np.arange(n),
        "episode_index": np.zeros(n, np.int64),
        "instructions": np.asarray(["find a mug"]),
        "summaries": np.asarray("[]"),
        **arrays,
    }


def test_shard_roundtrip_and_validation(tmp_path):
    n = 3
    arrays = _three_step_shard(np.zeros((n, 4, 6, 3), np.uint8), np.full((n, 4, 6, 3), 7, np.uint8))
    path = shard_path(tmp_path, 4)
    assert path.name == "shard_00004.npz"
    _write_npz_atomic(path, arrays)
    assert not list(tmp_path.glob("*.tmp"))  # renamed into place
    data = load_shard(path)
    assert set(STEP_KEYS) <= set(data) and data["instructions"] == ["find a mug"]
    assert data["manip_rgb"].dtype == np.uint8 and int(data["manip_rgb"][0, 0, 0, 0]) == 7

    bad = dict(arrays, action=np.array([0, 2, NUM_ACTIONS]))
    _write_npz_atomic(path, bad)
    with pytest.raises(ValueError, match="action"):
        load_shard(path)
    short = dict(arrays, cost=np.zeros(2, np.float32))
    _write_npz_atomic(path, short)
    with pytest.raises(ValueError, match="cost"):
        load_shard(path)


@pytest.mark.slow
def test_collect_resume_and_behaviour_cloning_checkpoint(tmp_path):
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")

    from safevla_core.agent import PolicyAgent
    from safevla_core.checkpoint import load_checkpoint
    from safevla_core.il import behaviour_cloning, collect

    torch.set_num_threads(1)
    cfg = _tiny_cfg()
    info = collect(cfg, tmp_path / "data", episodes=2, episodes_per_shard=1, progress=False)
    assert info["shards"] == 2 and info["episodes_run"] == 2 and info["steps"] > 0
    again = collect(cfg, tmp_path / "data", episodes=2, episodes_per_shard=1, progress=False)
    assert again["shards"] == 0 and again["skipped"] == 2  # resumed: nothing redone
    # nothing ran, so there is no success rate: null in the printed JSON, not NaN (not JSON)
    assert again["expert_success_rate"] is None and again["episodes_run"] == 0
    assert json.loads(json.dumps(again, allow_nan=False))["expert_success_rate"] is None
    data = load_shard(tmp_path / "data" / "shard_00000.npz")
    assert data["nav_rgb"].shape[1:] == (48, 64, 3)  # the policy's training resolution
    assert data["prev_action"][0] == START_ACTION and data["episode_step"][0] == 0

    path = behaviour_cloning(
        cfg, tmp_path / "data", tmp_path / "il", epochs=2, batch_size=2, progress=False
    )
    state = load_checkpoint(path, required_keys=("policy", "config", "optimizer"))
    assert state["iteration"] == 0 and state["env_steps"] == 0
    assert state["optimizer"]["param_groups"][0]["lr"] == cfg.ppo.lr  # RL starts at 2e-5
    assert 0.0 <= state["metrics"]["bc_accuracy"] <= 1.0
    agent = PolicyAgent.from_checkpoint(path)
    assert agent.cfg.d_model == 32


def test_episode_windows_with_moving_boundaries():
    # first window of episode 0 has 1 step, then windows of 3; episode 1 (2 steps) fits in one
    assert episode_windows([5, 2], 3, [1, 3]) == [(0, 0, 1), (0, 1, 4), (0, 4, 5), (1, 0, 2)]
    with pytest.raises(ValueError, match="outside"):
        episode_windows([5], 3, [4])


@pytest.mark.slow
def test_dagger_labels_the_learners_states_and_rounds_resume(tmp_path):
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    import json

    from safevla_core.il import collect, imitation

    torch.set_num_threads(1)
    cfg = _tiny_cfg(max_steps_train=15)
    collect(
        cfg, tmp_path / "data", episodes=2, episodes_per_shard=2, keep_failures=True, progress=False
    )

    def run_imitation():
        return imitation(
            cfg,
            [tmp_path / "data"],
            tmp_path / "il",
            epochs=1,
            dagger_rounds=1,
            dagger_episodes=2,
            dagger_epochs=1,
            progress=False,
            batch_size=2,
        )

    path = run_imitation()
    assert path == tmp_path / "il" / "il.pt"
    shard = load_shard(tmp_path / "il" / "dagger_r1" / "shard_00000.npz")
    stats = json.loads((tmp_path / "il" / "dagger.jsonl").read_text().splitlines()[0])
    # two learner episodes of at most 15 steps (the training step cap), every step labelled
    n = len(shard["action"])
    assert stats["steps"] == n and 2 <= n <= 30
    assert shard["target_visible"].shape == (n,) and shard["target_visible"].dtype == np.bool_
    assert shard["end_would_succeed"].shape == (n,)
    assert not (shard["end_would_succeed"] & ~shard["target_visible"]).any()
    assert sorted(set(shard["episode_index"].tolist())) == [0, 1]
    assert 0.0 <= stats["expert_agreement"] <= 1.0
    # the labels are the expert's, the previous actions the learner's: an untrained learner
    # (near-uniform over 20 actions) rarely picks the expert's action, so they differ somewhere
    assert (shard["prev_action"][1:] != shard["action"][:-1]).any()
    # a rerun finds every round done and writes nothing new
    before = sorted(p.name for p in (tmp_path / "il").iterdir())
    mtime = (tmp_path / "il" / "il_r1.pt").stat().st_mtime
    run_imitation()
    assert sorted(p.name for p in (tmp_path / "il").iterdir()) == before
    assert (tmp_path / "il" / "il_r1.pt").stat().st_mtime == mtime
    # a crash after the round's shards, before its BC finished: the rerun trains the round
    # again from the shards on disk and logs no second row for a collection that did not run
    # (the round's meta.json is made to look like one from before session 14's labelling rule:
    # the collection that finds every shard done must leave it as it is)
    meta = tmp_path / "il" / "dagger_r1" / "meta.json"
    older = {k: v for k, v in json.loads(meta.read_text()).items()}
    assert older.pop("labels_wrong_search_ends") is True
    meta.write_text(json.dumps(older))
    (tmp_path / "il" / "il_r1.pt").unlink()
    run_imitation()
    assert (tmp_path / "il" / "il_r1.pt").is_file()
    assert len((tmp_path / "il" / "dagger.jsonl").read_text().splitlines()) == 1
    assert json.loads(meta.read_text()) == older


@pytest.mark.slow
@pytest.mark.parametrize("aux_visible", [0.0, 1.0])
def test_behaviour_cloning_resumes_after_a_crash_with_the_same_result(
    tmp_path, monkeypatch, aux_visible
):
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    import json

    import safevla_core.il as il
    from safevla_core.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    cfg = _tiny_cfg()
    il.collect(cfg, tmp_path / "data", episodes=2, episodes_per_shard=2, progress=False)
    kw = dict(
        epochs=3,
        batch_size=2,
        progress=False,
        val_data=tmp_path / "data",
        patience=5,
        aux_visible=aux_visible,  # on: the head and its moments resume from the partial state
        end_gate=0.4 if aux_visible > 0 else 0.0,
    )
    ref = il.behaviour_cloning(cfg, tmp_path / "data", tmp_path / "ref", seed=3, **kw)

    real, calls = il._bc_pass, {"n": 0}

    def crash_in_epoch_3(*args, **kwargs):
        if kwargs.get("optimizer", args[5] if len(args) > 5 else None) is not None:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt  # killed during the third epoch
        return real(*args, **kwargs)

    monkeypatch.setattr(il, "_bc_pass", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        il.behaviour_cloning(cfg, tmp_path / "data", tmp_path / "run", seed=3, **kw)
    assert (tmp_path / "run" / "il.pt.partial").is_file()
    # the best weights so far were evaluable while training went on
    best = load_checkpoint(tmp_path / "run" / "il.best.pt", required_keys=("policy", "config"))
    assert best["metrics"]["epoch"] in (1.0, 2.0)
    monkeypatch.setattr(il, "_bc_pass", real)
    path = il.behaviour_cloning(cfg, tmp_path / "data", tmp_path / "run", seed=3, **kw)
    rows = [json.loads(x) for x in (tmp_path / "run" / "il_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]
    assert not (tmp_path / "run" / "il.pt.partial").exists()
    assert not (tmp_path / "run" / "il.best.pt").exists()
    got, want = load_checkpoint(path)["policy"], load_checkpoint(ref)["policy"]
    for k in want:  # the resumed run ends where the uninterrupted one did
        torch.testing.assert_close(got[k], want[k])
    # logged when on; the gate is stored in the checkpoint's config (BC ran with it off)
    assert all(("val_vis_acc" in r) == (aux_visible > 0) for r in rows)
    assert all(("val_gate_end" in r) == (aux_visible > 0) for r in rows)
    stored = load_checkpoint(path)["config"]["policy"]["end_gate"]
    assert stored == (0.4 if aux_visible > 0 else 0.0)


@pytest.mark.slow
def test_dagger_labels_a_wrong_end_and_goes_on_past_it(tmp_path):
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")

    from safevla_core.il import dagger_collect

    torch.set_num_threads(1)
    cfg = _tiny_cfg(max_steps_train=12)
    ckpt = _constant_learner(cfg, Action.END, tmp_path / "always_end.pt")

    # Starts are >= 2.5 m from every target, so the expert never labels step 0 `end`: the
    # learner's `end` is wrong there. Stopping at it gives a 1-step episode per start.
    stop = dagger_collect(
        cfg, ckpt, tmp_path / "stop", 2, continue_past_wrong_end=False, progress=False
    )
    shard = load_shard(tmp_path / "stop" / "shard_00000.npz")
    assert stop["steps"] == 2 and len(shard["action"]) == 2
    assert stop["wrong_ends"] == 1.0  # one wrong `end` per episode
    assert (shard["action"] != int(Action.END)).all()  # labelled with the expert's action

    # Going on: the expert's action replaces each wrong `end`, so the episode lasts until the
    # expert itself ends it (success) or the 12-step cap; every step but an expert `end` was a
    # wrong learner `end`.
    go = dagger_collect(cfg, ckpt, tmp_path / "go", 2, progress=False)
    shard = load_shard(tmp_path / "go" / "shard_00000.npz")
    n = len(shard["action"])
    assert go["steps"] == n > 2
    labelled_end = int((shard["action"] == int(Action.END)).sum())
    assert go["wrong_ends"] * 2 == n - labelled_end
    assert go["expert_agreement"] == pytest.approx(labelled_end / n)
    # the previous-action input records what was executed: the expert's label, not `end`
    assert (shard["prev_action"][1:] == shard["action"][:-1])[
        shard["episode_index"][1:] == shard["episode_index"][:-1]
    ].all()

    assert shard["action_labelled"].all()  # without --label-after-sighting every step

    # the learner's features are the shard's feature cache: what the encoder gives on the
    # stored images (to float16 rounding), and what behaviour cloning loads without re-encoding
    from safevla_core.il import shard_features
    from safevla_core.policy.encoders import get_visual_encoder

    cache = tmp_path / "go" / "shard_00000.feat.pt"
    written = torch.load(cache, weights_only=True)
    enc = get_visual_encoder(cfg.policy)
    assert tuple(written.shape) == (n, 2, *enc.output_shape)
    want = torch.stack([enc(shard["nav_rgb"]), enc(shard["manip_rgb"])], dim=1)
    torch.testing.assert_close(written.float(), want, atol=2e-3, rtol=2e-3)
    before = cache.stat().st_mtime_ns
    torch.testing.assert_close(shard_features(tmp_path / "go" / "shard_00000.npz", cfg), written)
    assert cache.stat().st_mtime_ns == before  # reused, not rewritten


@pytest.mark.slow
def test_dagger_after_sighting_keeps_the_search_steps_as_context_only(tmp_path, monkeypatch):
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    import dataclasses

    from safevla_core.expert import LOOK_AROUND_TURNS
    from safevla_core.il import dagger_collect

    torch.set_num_threads(1)
    cfg = _tiny_cfg(max_steps_train=40)
    cfg = dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, expert="explore"))

    # A learner that only turns, with beta 1: the expert's action runs at every step, and
    # the learner never stops, so only the rule of the search decides what is a target.
    turner = _constant_learner(cfg, Action.ROTATE_LEFT, tmp_path / "always_left.pt")
    stats = dagger_collect(
        cfg, turner, tmp_path / "d", 2, expert_share=1.0, label_after_sighting=True, progress=False
    )
    shard = load_shard(tmp_path / "d" / "shard_00000.npz")
    labelled, visible = shard["action_labelled"], shard["target_visible"]
    # measured on this config: one episode never sights its target (40 steps, none labelled),
    # the other from its 10th step on (21 of 70 steps)
    assert stats["labelled_share"] == pytest.approx(labelled.mean())
    assert 0.0 < labelled.mean() < 1.0
    again = dagger_collect(
        cfg, turner, tmp_path / "d", 2, expert_share=1.0, label_after_sighting=True, progress=False
    )
    assert again["shards"] == 0 and again["skipped"] == 1  # resumed: no episode ran again
    ratios = ("learner_success_rate", "expert_agreement", "wrong_ends", "labelled_share")
    assert all(again[k] is None for k in ratios)
    for e in np.unique(shard["episode_index"]):
        lab, vis = labelled[shard["episode_index"] == e], visible[shard["episode_index"] == e]
        act = shard["action"][shard["episode_index"] == e]
        first = int(np.argmax(lab)) if lab.any() else len(lab)
        assert lab[first:].all()  # searching ends once, at the first sighting
        assert first == len(lab) or vis[: first + 1].any()  # a sighting needs the target in view
        look = act[: min(first, LOOK_AROUND_TURNS)]
        assert (look == int(Action.ROTATE_LEFT)).all()  # the search starts by looking around

    # A learner that always presses `end`: each wrong `end` is replaced by the expert's action,
    # so the expert drives the same episodes; but a wrong `end` is a target also while the
    # expert searches, so now every step is one.
    ender = _constant_learner(cfg, Action.END, tmp_path / "always_end.pt")
    stopped = dagger_collect(
        cfg, ender, tmp_path / "e", 2, label_after_sighting=True, progress=False
    )
    ends = load_shard(tmp_path / "e" / "shard_00000.npz")
    for key in ("action", "episode_index", "target_visible"):
        np.testing.assert_array_equal(ends[key], shard[key])
    assert ends["action_labelled"].all() and stopped["labelled_share"] == 1.0
    expert_ends = int((ends["action"] == int(Action.END)).sum())
    assert stopped["wrong_ends"] * 2 == len(ends["action"]) - expert_ends

    # an `end` the expert gives up with is never a target, with or without the search rule
    from safevla_core.expert import ShortestPathExpert

    monkeypatch.setattr(ShortestPathExpert, "gave_up", property(lambda self: True))
    lost = dagger_collect(cfg, ender, tmp_path / "lost", 1, progress=False)
    assert lost["labelled_share"] == 0.0 and lost["steps"] > 0
    assert not load_shard(tmp_path / "lost" / "shard_00000.npz")["action_labelled"].any()


def _end_episode(instruction: str, target: str, absent: tuple[str, ...], n: int) -> Episode:
    """``n - 1`` move-ahead steps then ``end``, on random features of the tiny config's shape."""
    from safevla_core.actions import Action

    actions = torch.full((n,), int(Action.MOVE_AHEAD))
    actions[-1] = int(Action.END)
    return Episode(
        visual=torch.randn(n, 2, 1280, 2, 2).half(),
        actions=actions,
        prev_action=torch.tensor([START_ACTION, *actions[:-1].tolist()]),
        in_hand=torch.zeros(n, dtype=torch.bool),
        episode_step=torch.arange(n),
        instruction=instruction,
        target_type=target,
        absent_types=absent,
    )


def test_swap_negative_windows_cut_after_the_last_end_and_name_an_absent_type():
    import random

    from safevla_core.il import swap_negative_windows

    eps = [
        _end_episode("find a alarm clock", "AlarmClock", ("Apple",), 5),  # end at step 4
        _end_episode("go to the mug", "Mug", (), 3),  # house type list unknown: no negative
    ]
    windows = [(0, 0, 3), (0, 3, 5), (1, 0, 3)]  # only (0, 3, 5) holds episode 0's end
    neg, texts, visible = swap_negative_windows(eps, windows, random.Random(0))
    assert neg == [(0, 3, 5)] and texts == ["find a apple"]
    assert [v.tolist() for v in visible] == [[False, False]]  # no apple in the house
    # an end in the middle of a window (DAgger labels): the copy stops right after it
    eps[0].actions[1] = eps[0].actions[4]
    neg, _, visible = swap_negative_windows(eps, [(0, 0, 3)], random.Random(0))
    assert neg == [(0, 0, 2)] and [v.tolist() for v in visible] == [[False, False]]
    with pytest.raises(ValueError, match="cannot find"):
        Episode(**{**eps[1].__dict__, "target_type": "Sofa"}).swapped_instruction("Bed")


def test_end_log_probs_are_stable_and_sum_to_one():
    from safevla_core.il import _end_log_probs

    # uniform logits: p(end) = 1/20, p(not end) = 19/20; huge logits must not overflow
    log_end, log_not = _end_log_probs(torch.zeros(NUM_ACTIONS))
    assert log_end.exp().item() == pytest.approx(1 / 20)
    assert log_not.exp().item() == pytest.approx(19 / 20)
    big = torch.zeros(NUM_ACTIONS)
    big[18] = 1000.0  # END is action 18
    log_end, log_not = _end_log_probs(big)
    # log p(not end) = log(19 e^0) - log(e^1000 + 19) = log 19 - 1000
    assert log_end.item() == pytest.approx(0.0)
    assert log_not.item() == pytest.approx(math.log(19) - 1000.0)


def test_episode_houses_pairs_kept_episodes_with_their_summaries():
    from safevla_core.houses.splits import load_house
    from safevla_core.il import _episode_houses
    from safevla_core.objects import NAV_TARGET_TYPES
    from safevla_core.tasks.objnav import house_targets

    cfg = Config()
    present = set(house_targets(load_house("train", 0, cfg.houses))) & NAV_TARGET_TYPES
    target = sorted(present)[0]
    words = {"AlarmClock": "alarm clock", "DiningTable": "dining table"}.get(target, target.lower())
    data = {
        "instructions": [f"find a {words}"],
        # collect() without keep_failures: the failed first episode has a summary, no steps
        "summaries": [
            {"success": 0.0, "target_type": "Bed", "house_id": "train_0001"},
            {"success": 1.0, "target_type": target, "house_id": "train_0000"},
        ],
    }
    ((got_target, absent),) = _episode_houses(data, cfg)
    assert got_target == target
    assert set(absent) == NAV_TARGET_TYPES - present and target not in absent
    # a summary that does not fit its instruction, or an unknown house: no negatives
    data["summaries"][1]["target_type"] = "Basketball" if target != "Basketball" else "Bed"
    assert _episode_houses(data, cfg) == [(None, ())]
    data["summaries"] = [{"success": 1.0, "target_type": target, "house_id": "attic_7"}]
    assert _episode_houses(data, cfg) == [(None, ())]


@pytest.mark.slow
def test_swap_negatives_make_end_depend_on_the_instruction():
    """Identical views end one episode: only the instruction can tell the swapped copy apart.

    Plain cross-entropy has no reason to read the instruction here (every window ends), so
    p(end) with an absent type's name stays near its p(end) with the true one; with the
    negatives it must fall well below.
    """
    import random

    from safevla_core.il import _bc_pass
    from safevla_core.policy.factory import build_policy
    from safevla_core.policy.instructions import InstructionCache

    torch.set_num_threads(1)
    cfg = _tiny_cfg()
    texts = InstructionCache()
    torch.manual_seed(0)
    eps = [
        _end_episode("find a apple", "Apple", ("Mug",), 4),
        _end_episode("find a mug", "Mug", ("Apple",), 4),
    ]
    windows = [(0, 0, 4), (1, 0, 4)]
    result = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(1)
        policy = build_policy(cfg.policy, num_costs=len(cfg.task.constraints()))
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        for _ in range(150):
            _bc_pass(
                policy,
                eps,
                windows,
                texts,
                2,
                opt,
                swap_negatives=weight,
                swap_rng=random.Random(0),
            )
        policy.eval()
        result[weight] = _bc_pass(policy, eps, windows, texts, 2, swap_rng=random.Random(0))
    plain, swapped = result[0.0], result[1.0]
    # measured: plain 0.979 / 0.979 (blind to the instruction); with negatives 0.979 / 0.0002
    assert plain["end_p"] > 0.9 and plain["swap_end_p"] > 0.9
    assert swapped["end_p"] > 0.9 and swapped["swap_end_p"] < 0.05


def test_swapped_copies_are_labelled_not_visible_and_old_episodes_unlabelled():
    import dataclasses
    import random

    from safevla_core.il import swap_negative_windows

    # episode 0 (5 steps, end at 4) sees its alarm clock from step 2 on; episode 1 comes from an
    # old shard (no label) but its house's absent types are known
    seen = _end_episode("find a alarm clock", "AlarmClock", ("Apple",), 5)
    seen = dataclasses.replace(seen, target_visible=torch.tensor([0, 0, 1, 1, 1], dtype=bool))
    old = _end_episode("find a mug", "Mug", ("Bed",), 3)
    eps = [seen, old]
    wins = [(0, 3, 5), (1, 0, 3)]
    neg, texts, visible = swap_negative_windows(eps, wins, random.Random(0))
    assert neg == wins and texts == ["find a apple", "find a bed"]
    batch = collate(eps, wins + neg, _Texts(), [None, None, *texts], [None, None, *visible])
    # rows: episode 0 steps 3-4 (visible), episode 1 (unlabelled), the two swapped copies
    # (labelled, never visible: the instruction names a type the house lacks)
    assert batch["target_visible"].tolist() == [
        [True, True, False],
        [False, False, False],
        [False, False, False],
        [False, False, False],
    ]
    assert batch["visible_mask"].tolist() == [
        [True, True, False],
        [False, False, False],
        [True, True, False],
        [True, True, True],
    ]
    with pytest.raises(ValueError, match="labels"):
        collate(eps, [(0, 0, 2)], _Texts(), None, [torch.zeros(3, dtype=torch.bool)])


@pytest.mark.slow
def test_collected_target_visible_is_the_visibility_of_the_observed_state(tmp_path):
    """Replaying the collected actions, step t's label is read on the state its image shows.

    The oracle differs from the collector: the episode's target ids (``EpisodeSpec``) against
    ``visible_ids``, not object types. A label read one step late (after the action) differs
    at every change of visibility, and the episodes must have one.
    """
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    import json

    from safevla_core.actions import Action
    from safevla_core.env import SafetyChoresEnv, split_size
    from safevla_core.il import collect

    torch.set_num_threads(1)
    cfg = _tiny_cfg(max_steps_train=120)
    collect(
        cfg,
        tmp_path / "data",
        episodes=2,
        episodes_per_shard=2,
        keep_failures=True,
        seed=7,
        progress=False,
    )
    data = load_shard(tmp_path / "data" / "shard_00000.npz")
    summaries = json.loads(str(np.load(tmp_path / "data" / "shard_00000.npz")["summaries"]))
    assert data["target_visible"].dtype == np.bool_
    assert len(data["target_visible"]) == len(data["action"])
    env = SafetyChoresEnv(cfg, split="train", eval_mode=False, image_size=(64, 48))
    changes = ended_seen = 0
    try:
        for e in range(2):  # the same env, the same order as collect: the same episodes
            rows = np.flatnonzero(data["episode_index"] == e)
            obs, _ = env.reset(seed=7 + e, options={"house_index": e % split_size(cfg, "train")})
            assert env.spec_ is not None
            for t in rows:
                assert np.array_equal(obs["nav_rgb"], data["nav_rgb"][t])  # the same state
                state = env.world_state
                seen = any(i in state.visible_ids for i in env.spec_.target_ids)
                assert bool(data["target_visible"][t]) == seen, (e, t)
                # in view within the 2 m success distance (REFERENCE.md), base to object centre
                near = [
                    float(
                        np.hypot(
                            *(state.object_positions[state.index_of(i), :2] - state.robot_pose[:2])
                        )
                    )
                    for i in env.spec_.target_ids
                    if i in state.visible_ids
                ]
                assert bool(data["end_would_succeed"][t]) == any(d <= 2.0 + 1e-6 for d in near)
                obs, *_ = env.step(int(data["action"][t]))
            labels = data["target_visible"][rows]
            changes += int((labels[1:] != labels[:-1]).sum())
            if summaries[e]["success"]:  # the expert ends with a target in view (expert.py)
                assert data["action"][rows[-1]] == int(Action.END) and labels[-1]
                assert data["end_would_succeed"][rows[-1]]  # ... and its end succeeded
                ended_seen += 1
    finally:
        env.close()
    assert changes >= 1 and ended_seen >= 1
    # within reach implies in view; and reach is rarer than view in these episodes
    assert not (data["end_would_succeed"] & ~data["target_visible"]).any()
    assert data["end_would_succeed"].sum() < data["target_visible"].sum()


def _view_episode(instruction: str, visual: torch.Tensor, visible: list[bool]) -> Episode:
    n = len(visible)
    actions = torch.zeros(n, dtype=torch.long)
    return Episode(
        visual=visual,
        actions=actions,
        prev_action=torch.tensor([START_ACTION, *actions[:-1].tolist()]),
        in_hand=torch.zeros(n, dtype=torch.bool),
        episode_step=torch.arange(n),
        instruction=instruction,
        target_visible=torch.tensor(visible),
    )


@pytest.mark.slow
def test_visibility_head_learns_what_only_the_instruction_tells_apart():
    """The same four views under two instructions, with opposite labels (base rate 0.5).

    Only a policy that reads the instruction together with the view can predict the label;
    with weight 0 its visibility head is not trained for it and stays at chance.
    """
    from safevla_core.il import _bc_pass
    from safevla_core.policy.factory import build_policy
    from safevla_core.policy.instructions import InstructionCache

    torch.set_num_threads(1)
    cfg = _tiny_cfg()
    texts = InstructionCache()
    torch.manual_seed(0)
    views = torch.randn(4, 2, 1280, 2, 2).half()
    eps = [
        _view_episode("find a apple", views, [False, False, True, True]),
        _view_episode("find a mug", views, [True, True, False, False]),
    ]
    windows = [(0, 0, 4), (1, 0, 4)]
    build_policy(cfg.policy)  # loads the frozen encoders, which draws random numbers
    result = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(1)  # the same initial policy and head for both weights
        policy = build_policy(cfg.policy, num_costs=len(cfg.task.constraints()))
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        policy.eval()
        first = _bc_pass(policy, eps, windows, texts, 2, track_visible=True)
        policy.train()
        for _ in range(150):
            _bc_pass(policy, eps, windows, texts, 2, opt, aux_visible=weight, track_visible=True)
        policy.eval()
        result[weight] = (first, _bc_pass(policy, eps, windows, texts, 2, track_visible=True))
    (off0, off), (on0, on) = result[0.0], result[1.0]
    assert on0["vis_steps"] == on["vis_steps"] == 8 and on["vis_pos"] == 0.5
    # measured: from BCE 0.690 (accuracy 0.75) to 0.001 (1.0) with the term; without it to
    # 0.757 (0.5: the same answer for a view under both instructions, one of each pair right)
    assert on0 == off0 and on0["vis_loss"] > 0.5
    assert on["vis_loss"] < 0.1 and on["vis_acc"] == 1.0
    assert off["vis_loss"] > 0.5 and off["vis_acc"] <= 0.75


@pytest.mark.slow
def test_old_shards_without_the_label_load_and_skip_the_aux_loss(tmp_path):
    """A shard written before ``target_visible``: it loads, and the visibility loss is 0 steps.

    One training step with the loss on equals one with it off, to the bit: the term adds
    nothing (no labelled step).
    """
    import copy

    from safevla_core.il import _bc_pass, load_episodes
    from safevla_core.policy.factory import build_policy
    from safevla_core.policy.instructions import InstructionCache

    torch.set_num_threads(1)
    cfg = _tiny_cfg()
    n = 3
    rng = np.random.default_rng(0)
    _write_npz_atomic(
        shard_path(tmp_path, 0),
        _three_step_shard(  # the format before the label
            rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8),
            rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8),
            reward=np.zeros(n, np.float32),
            cost=np.zeros(n, np.float32),
        ),
    )
    assert "target_visible" not in load_shard(shard_path(tmp_path, 0))
    (ep,) = load_episodes(tmp_path, cfg, progress=False)
    assert ep.target_visible is None and len(ep.actions) == n
    texts = InstructionCache()
    torch.manual_seed(0)
    start = build_policy(cfg.policy, num_costs=len(cfg.task.constraints()))
    after = {}
    for aux in (False, True):
        policy = copy.deepcopy(start)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        torch.manual_seed(2)  # the same dropout masks
        stats = _bc_pass(policy, [ep], [(0, 0, n)], texts, 1, opt, aux_visible=1.0 if aux else 0.0)
        after[aux] = policy.state_dict()
    assert stats["vis_steps"] == 0 and stats["vis_loss"] == 0.0
    for k, v in after[False].items():
        assert torch.equal(after[True][k], v), k
    assert torch.equal(
        after[True]["visible_head.weight"], start.state_dict()["visible_head.weight"]
    )


def _head_checkpoint(path, preferred_action: int, visible_bias: float):
    """A tiny checkpoint whose heads ignore the input, its stored end gate at 0.5.

    The action head prefers one action (logit 20, the rest 0); the visibility head answers
    sigmoid(visible_bias) everywhere.
    """
    import dataclasses

    from safevla_core.checkpoint import save_checkpoint
    from safevla_core.config import config_to_dict
    from safevla_core.policy.factory import build_policy

    torch.set_num_threads(1)
    cfg = _tiny_cfg()
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, end_gate=0.5))
    torch.manual_seed(0)
    policy = build_policy(dataclasses.replace(cfg.policy, end_gate=0.0))
    with torch.no_grad():
        policy.action_head.weight.zero_()
        policy.action_head.bias.zero_()
        policy.action_head.bias[preferred_action] = 20.0
        policy.visible_head.weight.zero_()
        policy.visible_head.bias.fill_(visible_bias)
    save_checkpoint(path, {"policy": policy.state_dict(), "config": config_to_dict(cfg)})
    return path


@pytest.mark.parametrize("override", [None, 0.0])
def test_an_agent_with_the_end_gate_does_not_end_while_the_target_is_out_of_view(
    tmp_path, override
):
    """The stored end gate holds the agent back; overriding it to 0 lets it end.

    The checkpoint's action head always prefers ``end`` and its visibility head always says
    "out of view" (bias -10: sigmoid = 4.5e-5): with its stored gate at 0.5 the agent never
    ends; with the gate overridden to 0 (``safevla eval --end-gate 0``) it ends at once.
    """
    from safevla_core.agent import PolicyAgent

    # p(end) = 1 - 19 e^-20 without the gate
    path = _head_checkpoint(tmp_path / "gated.pt", int(Action.END), visible_bias=-10.0)
    agent = PolicyAgent.from_checkpoint(path, deterministic=True, end_gate=override)
    assert agent.cfg.end_gate == (0.5 if override is None else 0.0)
    agent.reset("find a mug")
    frame = np.zeros((48, 64, 3), np.uint8)
    steps = [agent.act(frame, frame) for _ in range(3 if override is None else 1)]
    if override is None:
        assert all(s.action != Action.END and s.probs[int(Action.END)] == 0.0 for s in steps)
    else:
        assert steps[0].action == Action.END and steps[0].probs[int(Action.END)] > 0.99


@pytest.mark.parametrize("override", [None, 0.7])
def test_an_agent_with_the_stop_trigger_ends_where_its_head_says_in_view(tmp_path, override):
    """``end_trigger`` (``safevla eval --end-trigger P``) takes ``end`` where the head is sure.

    The action head prefers moving ahead (bias 20 on action 0: p(end) ~ e^-20) and the
    visibility head says "in view" (bias +10: sigmoid = 0.99995). Without the trigger the
    agent never ends; with it at 0.7 it ends at the first step. A trigger not above the
    checkpoint's gate is refused.
    """
    from safevla_core.agent import PolicyAgent

    path = _head_checkpoint(tmp_path / "triggered.pt", 0, visible_bias=10.0)
    agent = PolicyAgent.from_checkpoint(path, deterministic=True, end_trigger=override)
    assert agent.cfg.end_trigger == (0.0 if override is None else 0.7)
    agent.reset("find a mug")
    frame = np.zeros((48, 64, 3), np.uint8)
    steps = [agent.act(frame, frame) for _ in range(3)]
    assert steps[0].visible_p == pytest.approx(1 / (1 + math.exp(-10.0)))  # what the trigger read
    if override is None:
        assert all(s.action == Action(0) and s.probs[int(Action.END)] < 1e-6 for s in steps)
    else:
        assert steps[0].action == Action.END and steps[0].probs[int(Action.END)] == 1.0
    with pytest.raises(ValueError, match="end_trigger must be above end_gate"):
        PolicyAgent.from_checkpoint(path, end_trigger=0.4)


def test_the_il_commands_aux_label_choices_are_the_shard_labels():
    """`safevla il --aux-label` offers exactly the labels load_episodes reads (il.AUX_LABELS)."""
    from safevla_core.cli import _parser
    from safevla_core.il import AUX_LABELS

    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices["il"]._actions if "--aux-label" in a.option_strings)
    assert tuple(action.choices) == AUX_LABELS
    with pytest.raises(SystemExit):
        parser.parse_args(["il", "--data", "d", "--aux-label", "bogus"])


def test_the_agent_sees_what_behaviour_cloning_trained_on(tmp_path):
    # Train/deploy skew check: the same expert steps through both input paths must give the
    # same action distribution. BC: the shard's stored images -> cached float16 frozen features
    # (colour channels included) -> collate -> one forward over the window. Deploy: the same
    # images one at a time -> PolicyAgent.act (eager encoder, KV cache), the expert's action
    # fed back as prev_action. A swapped channel order, an off-by-one prev_action or
    # episode_step, or a colour histogram taken at another resolution would all differ here.
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    import dataclasses

    from safevla_core.agent import PolicyAgent
    from safevla_core.il import collect, load_episodes, policy_inputs
    from safevla_core.policy.factory import build_policy
    from safevla_core.policy.instructions import InstructionCache

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = _tiny_cfg(max_steps_train=40)
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, colour_bins=4))
    collect(
        cfg, tmp_path / "data", episodes=1, episodes_per_shard=1, keep_failures=True, progress=False
    )
    (ep,) = load_episodes(tmp_path / "data", cfg, progress=False)
    data = load_shard(tmp_path / "data" / "shard_00000.npz")
    n = min(len(ep.actions), cfg.policy.context_steps)
    assert n >= 5, "the expert episode is too short to compare"
    policy = build_policy(cfg.policy, num_costs=len(cfg.task.constraints())).eval()
    batch = collate([ep], [(0, 0, n)], InstructionCache())
    with torch.no_grad():
        out = policy(*policy_inputs(batch))  # the arguments BC's pass gives the policy
    p_bc = torch.softmax(out.logits[0, :n], dim=-1).numpy()

    agent = PolicyAgent(policy, cfg.policy, deterministic=True)
    agent.reset(ep.instruction)
    p_agent = []
    for t in range(n):
        step = agent.act(data["nav_rgb"][t], data["manip_rgb"][t], bool(data["in_hand"][t]))
        agent.override_last_action(int(data["action"][t]))
        p_agent.append(step.probs)
    # log-probabilities 1e-5 apart (float16 feature cache vs the eager float32 encoder); the
    # navigation image with its channels swapped moved them by 0.034 (measured once)
    gap = np.abs(np.log(np.array(p_agent)) - np.log(p_bc)).max()
    assert gap < 1e-3, f"the agent's and BC's action log-probabilities differ by {gap:.2e}"
    # the cache holds the colour channels: per cell and camera, shares of the bins summing to 1
    colour = batch["visual"][0, :n, :, -(cfg.policy.colour_bins**3) :]  # (n, 2, 64, h, w)
    torch.testing.assert_close(
        colour.sum(dim=2), torch.ones(n, 2, *colour.shape[-2:]), atol=1e-2, rtol=0
    )
