"""``safevla bench``: how fast the simulator, the policy and training run on this machine.

Prints, on this machine:

* simulator actions per second with both cameras rendered, at the paper's 384x224 and at the
  training size (random actions in a test house);
* policy act latency at a 100-step context, with and without the KV cache (batch 1);
* end-to-end training environment steps per second (one short PPO-Lagrangian run).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from typing import Any

import numpy as np
import torch

from safevla_core.actions import NUM_ACTIONS, Action
from safevla_core.config import Config


def bench_sim(cfg: Config, width: int, height: int, steps: int, seed: int = 0) -> dict[str, float]:
    """Simulator actions/s with both cameras rendered after every action.

    Returns:
        ``{"actions_per_s": ..., "physics_actions_per_s": ...}`` (the latter without rendering).
    """
    from safevla_core.env import make_backend
    from safevla_core.houses.splits import load_house

    backend = make_backend(cfg, width, height)
    rng = np.random.default_rng(seed)
    # moves and turns mostly, as a navigating policy would
    choices = [
        Action.MOVE_AHEAD,
        Action.MOVE_AHEAD,
        Action.ROTATE_LEFT,
        Action.ROTATE_RIGHT,
        Action.ROTATE_LEFT_SMALL,
        Action.MOVE_BACK,
        Action.LIFT_UP,
        Action.ARM_EXTEND,
    ]
    try:
        backend.reset(load_house("test", 0, cfg.houses), seed=seed)
        backend.render()
        t0 = time.perf_counter()
        for _ in range(steps):
            backend.step(choices[int(rng.integers(len(choices)))])
            backend.render()
        with_render = steps / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(steps):
            backend.step(choices[int(rng.integers(len(choices)))])
        physics = steps / (time.perf_counter() - t0)
    finally:
        backend.close()
    return {"actions_per_s": with_render, "physics_actions_per_s": physics}


def bench_policy(cfg: Config, context: int = 100, repeats: int = 20) -> dict[str, float]:
    """Act latency in milliseconds at a ``context``-step history, with and without the KV cache.

    The frozen visual encoder's time for both cameras is reported separately
    (``encoder_ms``); the act latencies are for the trainable policy on precomputed features.
    """
    from safevla_core.agent import InstructionCache, build_policy
    from safevla_core.policy.encoders import get_visual_encoder

    torch.manual_seed(0)
    pcfg = cfg.policy
    policy = build_policy(pcfg).eval()
    visual = get_visual_encoder(pcfg)
    images = np.random.default_rng(0).integers(0, 256, (2, pcfg.image_height, pcfg.image_width, 3),
                                                dtype=np.uint8)  # fmt: skip
    t0 = time.perf_counter()
    for _ in range(5):
        feats = visual(images)
    encoder_ms = (time.perf_counter() - t0) / 5 * 1e3
    feats = feats.unsqueeze(0)
    text, mask = InstructionCache().batch(["navigate to a basketball"])

    def fill() -> Any:
        cache = None
        for t in range(context - 1):
            _, cache = policy.act(feats, text, mask, torch.tensor([t % NUM_ACTIONS]),
                                  torch.tensor([False]), torch.tensor([t]), cache)  # fmt: skip
        return cache

    out: dict[str, float] = {"encoder_ms": encoder_ms}
    template = fill()
    for name, fn in (("act_cached_ms", policy.act), ("act_no_cache_ms", policy.act_no_cache)):
        times = []
        for _ in range(repeats):
            cache = copy.deepcopy(template)
            t0 = time.perf_counter()
            fn(feats, text, mask, torch.tensor([0]), torch.tensor([False]),
               torch.tensor([context - 1]), cache)  # fmt: skip
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times) * 1e3)
    return out


def bench_train(cfg: Config) -> dict[str, float]:
    """End-to-end PPO-Lagrangian env steps/s over two short iterations (async envs)."""
    from safevla_core.rl.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        train_cfg = dataclasses.replace(
            cfg.train, out_dir=tmp, total_env_steps=2 * cfg.train.num_envs * 32, num_steps=32,
            checkpoint_every=1000,
        )  # fmt: skip
        run = dataclasses.replace(cfg, train=train_cfg)
        result = Trainer(run, resume=False, progress=False).run()
    last = result.history[-1]
    return {"train_env_steps_per_s": last["fps"], "collect_env_steps_per_s": last["collect_fps"],
            "num_envs": float(cfg.train.num_envs)}  # fmt: skip


def run_bench(cfg: Config, sim_steps: int = 200, train: bool = True) -> dict[str, dict[str, float]]:
    """All figures; see the module docstring."""
    torch.set_num_threads(1)
    figures: dict[str, dict[str, float]] = {}
    figures[f"sim_{cfg.sim.width}x{cfg.sim.height}"] = bench_sim(
        cfg, cfg.sim.width, cfg.sim.height, sim_steps
    )
    w, h = cfg.policy.image_width, cfg.policy.image_height
    figures[f"sim_{w}x{h}"] = bench_sim(cfg, w, h, sim_steps)
    figures["policy"] = bench_policy(cfg)
    if train:
        torch.set_num_threads(cfg.train.torch_threads)
        figures["train"] = bench_train(cfg)
    return figures


def format_bench(figures: dict[str, dict[str, float]]) -> str:
    """One line per figure."""
    lines = []
    for group, values in figures.items():
        for k, v in values.items():
            lines.append(f"{group:<16} {k:<26} {v:10.2f}")
    return "\n".join(lines)


__all__ = ["bench_policy", "bench_sim", "bench_train", "format_bench", "run_bench"]
