"""Benchmark the frozen visual encoder and one policy step with/without the KV cache.

Run: ``.venv/bin/python benchmarks/bench_policy.py`` (single thread; a few seconds).
Reports: EfficientNet-Lite0 ms per image at 160x96 and 384x224 (batch 8), and ``act`` latency at
batch 1 with a full context of ``context_steps`` cached steps, default :class:`PolicyConfig`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from safevla_core.config import PolicyConfig
from safevla_core.policy import START_ACTION, SafeVLAPolicy, get_visual_encoder


def _median_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_visual(batch: int, repeats: int) -> None:
    """Print encoder ms per image at the paper's and the CPU default resolutions."""
    rng = np.random.default_rng(0)
    for w, h in ((160, 96), (384, 224)):
        enc = get_visual_encoder(PolicyConfig(image_width=w, image_height=h))
        imgs = rng.integers(0, 256, size=(batch, h, w, 3), dtype=np.uint8)
        ms = _median_ms(lambda enc=enc, imgs=imgs: enc(imgs), repeats)
        shape = tuple(enc.output_shape)
        print(f"visual encoder {w}x{h} batch {batch}: {ms / batch:.2f} ms/image -> {shape}")


def bench_act(repeats: int) -> None:
    """Print act latency (batch 1) with and without the KV cache after a full context."""
    cfg = PolicyConfig()
    torch.manual_seed(0)
    policy = SafeVLAPolicy(cfg, (1280, 3, 5)).eval()
    n_params = sum(p.numel() for p in policy.parameters())
    print(f"policy parameters (default config): {n_params:,}")
    g = torch.Generator().manual_seed(0)
    visual = torch.randn(1, 2, 1280, 3, 5, generator=g)
    text = torch.randn(1, 12, 384, generator=g)
    mask = torch.ones(1, 12, dtype=torch.bool)
    in_hand = torch.tensor([False])
    with torch.no_grad():
        ms = _median_ms(lambda: policy._step_embedding(visual, policy.text_proj(text), ~mask), 50)
    print(f"  of which the fusion encoder (per step, batch 1): {ms:.2f} ms")
    for name, method in (("KV cache", policy.act), ("no cache", policy.act_no_cache)):
        cache = None
        step = 0

        def one(method=method) -> None:
            nonlocal cache, step
            prev = torch.tensor([START_ACTION if step == 0 else 0])
            _, cache = method(visual, text, mask, prev, in_hand, torch.tensor([step]), cache)
            step += 1

        for _ in range(cfg.context_steps - 1):  # fill the context: the timed step is the 100th+
            one()
        ms = _median_ms(one, repeats)
        print(f"act batch 1, {cfg.context_steps}-step context, {name}: {ms:.2f} ms")


def main() -> None:
    """Parse arguments and run both benchmarks single-threaded."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_visual(args.batch, args.repeats)
    bench_act(args.repeats)


if __name__ == "__main__":
    main()
