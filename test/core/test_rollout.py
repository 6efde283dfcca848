"""RolloutBuffer segments reproduce exactly what acting with the KV cache computed."""

from __future__ import annotations

import torch

from safevla_core.config import PolicyConfig
from safevla_core.policy.model import SafeVLAPolicy
from safevla_core.rl.rollout import RolloutBuffer

VIS = (2, 8, 2, 3)  # (cameras, C, h, w): small synthetic features


def _policy(window: int) -> SafeVLAPolicy:
    torch.manual_seed(0)
    cfg = PolicyConfig(d_model=32, num_heads=4, encoder_layers=1, decoder_layers=2,
                       context_steps=window)  # fmt: skip
    return SafeVLAPolicy(cfg, VIS[1:], text_dim=16).eval()


def test_segments_reproduce_cached_acting_across_rollouts_and_resets():
    window, T, B = 5, 6, 2  # noqa: N806 (the paper's T x B rollout notation)
    policy = _policy(window)
    buf = RolloutBuffer(
        T, B, VIS, window, feature_dtype=torch.float32, prefix_steps=2 * (window - 1)
    )  # 2 decoder layers: exact
    texts = {"go to a vase": torch.randn(3, 16), "find a mug": torch.randn(4, 16)}
    gen = torch.Generator().manual_seed(1)
    # episode lengths: env 0 ends after 4 and 9 steps; env 1 runs 12 steps straight (so its
    # second rollout needs the prefix from the first)
    ends = {0: {3, 8}, 1: set()}
    step = torch.zeros(B, dtype=torch.long)
    prev = torch.full((B,), 20, dtype=torch.long)
    instr = ["go to a vase", "find a mug"]
    cache = None
    for _rollout in range(2):
        buf.start_rollout()
        acted = torch.zeros(T, B, 20)
        for t in range(T):
            vis = torch.randn(B, *VIS, generator=gen)
            text = torch.zeros(B, 4, 16)
            mask = torch.zeros(B, 4, dtype=torch.bool)
            for b in range(B):
                n = texts[instr[b]].shape[0]
                text[b, :n], mask[b, :n] = texts[instr[b]], True
            in_hand = torch.tensor([False, t % 2 == 0])
            out, cache = policy.act(vis, text, mask, prev, in_hand, step, cache)
            acted[t] = out.logits
            buf.add_inputs(vis, prev, in_hand, step, instr)
            actions = torch.tensor([t % 20, (3 * t) % 20])
            global_t = _rollout * T + t
            done = torch.tensor([float(global_t in ends[b]) for b in range(B)])
            buf.add_outcome(actions, torch.zeros(B), out.value_reward, out.value_cost,
                            torch.zeros(B), torch.zeros(B), done)  # fmt: skip
            cache.reset(done.bool())
            for b in range(B):
                if done[b]:
                    step[b], prev[b] = 0, 20
                    instr[b] = "find a mug" if instr[b] == "go to a vase" else "go to a vase"
                else:
                    step[b] += 1
                    prev[b] = actions[b]
        segs = buf.segments()
        all_text = [texts[s] for s in buf.instructions]
        lmax = max(x.shape[0] for x in all_text)
        text = torch.zeros(len(segs.text_id), lmax, 16)
        mask = torch.zeros(len(segs.text_id), lmax, dtype=torch.bool)
        for i, tid in enumerate(segs.text_id.tolist()):
            n = all_text[tid].shape[0]
            text[i, :n], mask[i, :n] = all_text[tid], True
        with torch.no_grad():
            out = policy(segs.visual, text, mask, segs.prev_action, segs.in_hand,
                         segs.episode_step, segs.episode_start)  # fmt: skip
            masked = policy(segs.visual, text, mask, segs.prev_action, segs.in_hand,
                            segs.episode_step, segs.episode_start, step_mask=segs.valid,
                            grad_mask=segs.loss_mask)  # fmt: skip
        # skipping padding and detaching the prefix leaves every real output unchanged
        torch.testing.assert_close(masked.logits[segs.valid], out.logits[segs.valid])
        got = out.logits[segs.loss_mask]
        idx = segs.step_index[segs.loss_mask]
        # every rollout step appears exactly once
        assert sorted(idx.tolist()) == list(range(T * B))
        torch.testing.assert_close(got, acted.reshape(T * B, 20)[idx], atol=1e-4, rtol=1e-4)


def test_segments_split_at_episode_starts():
    buf = RolloutBuffer(4, 1, VIS, 3, feature_dtype=torch.float32)
    buf.start_rollout()
    for t, es in enumerate([0, 1, 0, 1]):  # episodes start at t=0 and t=2
        buf.add_inputs(torch.zeros(1, *VIS), torch.tensor([20]), torch.tensor([False]),
                       torch.tensor([es]), ["x"])  # fmt: skip
        buf.add_outcome(torch.tensor([0]), torch.zeros(1), torch.zeros(1), torch.zeros(1),
                        torch.zeros(1), torch.zeros(1), torch.tensor([float(t == 1)]))  # fmt: skip
    segs = buf.segments()
    assert segs.loss_mask.sum(1).tolist() == [2, 2]
    assert segs.step_index[0, :2].tolist() == [0, 1]
    assert segs.step_index[1, :2].tolist() == [2, 3]
