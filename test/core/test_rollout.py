"""The PPO update sees exactly what acting with the KV cache computed (both update modes)."""

from __future__ import annotations

import pytest
import torch

from safevla_core.config import PolicyConfig
from safevla_core.policy.actor_critic import ActorCritic
from safevla_core.policy.model import SafeVLAPolicy
from safevla_core.rl.rollout import RolloutBuffer, evaluate_segments

VIS = (2, 8, 2, 3)  # (cameras, C, h, w): small synthetic features
TEXTS = {"go to a vase": torch.randn(3, 16), "find a mug": torch.randn(4, 16)}


def _texts(instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    lmax = max(TEXTS[s].shape[0] for s in instructions)
    text = torch.zeros(len(instructions), lmax, 16)
    mask = torch.zeros(len(instructions), lmax, dtype=torch.bool)
    for i, s in enumerate(instructions):
        n = TEXTS[s].shape[0]
        text[i, :n], mask[i, :n] = TEXTS[s], True
    return text, mask


def _model(window: int, separate: bool, freeze: bool) -> ActorCritic:
    torch.manual_seed(0)
    cfg = PolicyConfig(
        d_model=32, num_heads=4, encoder_layers=1, decoder_layers=2, context_steps=window
    )
    model = ActorCritic(SafeVLAPolicy(cfg, VIS[1:], text_dim=16), separate, freeze).eval()
    if separate:  # critic decoders that differ from the actor's, so a mix-up of roles shows
        # (fusion weights stay the IL copy's: decoder-only RL shares the actor's fusion)
        fusion = {id(p) for p in model.nets["cost"].fusion_parameters()}
        with torch.no_grad():
            for p in model.nets["cost"].parameters():
                if id(p) not in fusion:
                    p.add_(0.05 * torch.randn_like(p))
    return model


def _run(model: ActorCritic, window: int, rollouts: int = 2, T: int = 6, B: int = 2):  # noqa: N803
    """Act for ``rollouts`` rollouts; yield (buffer, acted outputs (T, B, ...)) after each.

    Env 0's episodes end after 4 and 9 steps; env 1 runs 12 steps straight (its second rollout
    needs the keys/values of its first).
    """
    buf = (
        RolloutBuffer(T, B, embed_dim=32)
        if model.freeze_fusion
        else RolloutBuffer(T, B, visual_shape=VIS, feature_dtype=torch.float32)
    )
    gen = torch.Generator().manual_seed(1)
    ends = {0: {3, 8}, 1: set()}
    step = torch.zeros(B, dtype=torch.long)
    prev = torch.full((B,), 20, dtype=torch.long)
    instr = ["go to a vase", "find a mug"]
    cache = model.new_cache(B)
    for r in range(rollouts):
        buf.start_rollout(cache.prefix())
        acted = {"logits": torch.zeros(T, B, 20), "vr": torch.zeros(T, B), "vc": torch.zeros(T, B)}
        for t in range(T):
            vis = torch.randn(B, *VIS, generator=gen)
            text, mask = _texts(instr)
            in_hand = torch.tensor([False, t % 2 == 0])
            out, cache, emb = model.act(vis, text, mask, prev, in_hand, step, cache)
            acted["logits"][t], acted["vr"][t], acted["vc"][t] = (
                out.logits,
                out.value_reward,
                out.value_cost,
            )
            buf.add_inputs(prev, in_hand, step, list(instr), step_emb=emb, visual=vis)
            actions = torch.tensor([t % 20, (3 * t) % 20])
            done = torch.tensor([float(r * T + t in ends[b]) for b in range(B)])
            buf.add_outcome(
                actions,
                torch.zeros(B),
                out.value_reward,
                out.value_cost,
                torch.zeros(B),
                torch.zeros(B),
                done,
            )
            cache.reset(done.bool())
            for b in range(B):
                if done[b]:
                    step[b], prev[b] = 0, 20
                    instr[b] = "find a mug" if instr[b] == "go to a vase" else "go to a vase"
                else:
                    step[b] += 1
                    prev[b] = actions[b]
        yield buf, acted


@pytest.mark.parametrize("separate", [True, False])
@pytest.mark.parametrize("freeze", [True, False])
def test_update_reproduces_cached_acting_across_rollouts_and_resets(separate, freeze):
    window = 5  # < T: some steps attend only inside the piece, others reach into the prefix
    model = _model(window, separate, freeze)
    for buf, acted in _run(model, window):
        seg = buf.segments()
        with torch.no_grad():
            out, valid, idx = evaluate_segments(model, buf, seg, torch.arange(len(seg.env)), _texts)
        # every rollout step appears exactly once
        assert sorted(idx.tolist()) == list(range(buf.T * buf.B))
        for got, key in (
            (out.logits[valid], "logits"),
            (out.value_reward[valid], "vr"),
            (out.value_cost[valid], "vc"),
        ):
            want = acted[key].reshape(buf.T * buf.B, *acted[key].shape[2:])[idx]
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_decoder_only_and_full_updates_start_from_the_same_log_probs():
    """Same weights, same rollout: both update modes give the same log-probs and values."""
    window = 5
    full, frozen = _model(window, True, False), _model(window, True, True)
    frozen.load_state_dict(full.state_dict())
    res = []
    for model in (full, frozen):
        buf, _ = list(_run(model, window))[-1]
        seg = buf.segments()
        with torch.no_grad():
            out, valid, idx = evaluate_segments(model, buf, seg, torch.arange(len(seg.env)), _texts)
        order = torch.argsort(idx)
        res.append((torch.log_softmax(out.logits[valid], -1)[order], out.value_cost[valid][order]))
    torch.testing.assert_close(res[0][0], res[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res[0][1], res[1][1], atol=1e-5, rtol=1e-5)


def test_update_equals_a_full_rerun_of_the_episode():
    """The old exact path: SafeVLAPolicy.forward over the whole episode from its first step."""
    window, T = 4, 6  # noqa: N806
    model = _model(window, False, True)
    first = {}
    for buf2, _ in _run(model, window, rollouts=2, T=T):  # the buffer is reused: copy rollout 1
        if not first:
            first = {
                k: getattr(buf2, k)[:, 1].clone()
                for k in ("step_emb", "prev_action", "in_hand", "episode_step")
            }
    # env 1 ran 12 steps straight: its second-rollout piece is steps 6..11 of one episode
    seg = buf2.segments()
    row = int(torch.nonzero(seg.env == 1)[0])
    with torch.no_grad():
        out, valid, _ = evaluate_segments(model, buf2, seg, torch.tensor([row]), _texts)
    # rebuild the episode's inputs from both buffers and re-run the whole sequence
    emb, prev, hand, es = (
        torch.cat([first[k], getattr(buf2, k)[:, 1]])[None]
        for k in ("step_emb", "prev_action", "in_hand", "episode_step")
    )
    assert es.tolist() == [list(range(12))]
    net = model.actor
    with torch.no_grad():
        x = net._decoder_input(emb, prev, hand, es)
        from safevla_core.policy.model import decoder_attention_mask

        mask = decoder_attention_mask(torch.zeros(1, 12, dtype=torch.long), window)
        for layer in net.decoder:
            x, _, _ = layer(x, mask)
        ref = net.heads(x)
    torch.testing.assert_close(out.logits[valid], ref.logits[0, T:], atol=1e-5, rtol=1e-5)


def test_prefix_is_bounded_by_the_window_not_the_receptive_field():
    """W - 1 steps of keys/values per env and layer, whatever the number of layers."""
    window = 5
    model = _model(window, True, True)
    buf, _ = list(_run(model, window))[-1]
    for p in buf.prefix.values():
        assert p.length == window - 1
        assert len(p.keys) == 2 and tuple(p.keys[0].shape) == (2, 4, window - 1, 8)
    # env 1 continued its episode: its prefix holds the 4 most recent of its 6 earlier steps
    assert buf.prefix["actor"].valid[1].tolist() == [True] * 4


def test_segments_split_at_episode_starts():
    buf = RolloutBuffer(4, 1, embed_dim=3)
    model = _model(3, False, True)
    buf.start_rollout(model.new_cache(1).prefix())
    for t, es in enumerate([0, 1, 0, 1]):  # episodes start at t=0 and t=2
        buf.add_inputs(
            torch.tensor([20]),
            torch.tensor([False]),
            torch.tensor([es]),
            ["x"],
            step_emb=torch.zeros(1, 3),
        )
        buf.add_outcome(
            torch.tensor([0]),
            torch.zeros(1),
            torch.zeros(1),
            torch.zeros(1),
            torch.zeros(1),
            torch.zeros(1),
            torch.tensor([float(t == 1)]),
        )
    seg = buf.segments()
    assert seg.num_steps.tolist() == [2, 2]
    assert seg.step_index[0, :2].tolist() == [0, 1]
    assert seg.step_index[1, :2].tolist() == [2, 3]
    assert seg.continues.tolist() == [False, False]
