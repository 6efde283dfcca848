"""Where one acting step of training goes: frozen CNN, fusion + decoders, vector env step.

Run: ``MUJOCO_GL=egl HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/profile_collect.py
[--config config/compare_cpu.yaml] [--steps 80]``. It times the parts of
:meth:`safevla_core.rl.train.Trainer.collect` the way the trainer runs them (async workers, the
CNN on ``train.encoder_threads``, the rest on ``train.torch_threads``) and prints ms per vector
step and each part's share. The first 10 steps (worker start-up) are not counted.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from safevla_core.config import load_config
from safevla_core.env import make_vector_env
from safevla_core.rl.train import Trainer
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA

WARMUP_STEPS = 10


def main() -> None:
    """Parse arguments, time the parts, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/compare_cpu.yaml")
    parser.add_argument("--steps", type=int, default=80, help="vector steps timed (+10 warm-up)")
    args = parser.parse_args()
    cfg = load_config(args.config, {"train": {"out_dir": tempfile.mkdtemp()}})
    tr = Trainer(cfg, resume=False, progress=False)
    envs = make_vector_env(cfg)
    obs, _ = envs.reset(seed=0)
    cache = None
    parts = dict.fromkeys(("frozen CNN", "fusion + decoders", "sampling", "vector env step"), 0.0)
    try:
        for i in range(args.steps + WARMUP_STEPS):
            t0 = time.perf_counter()
            nav, manip = np.asarray(obs[NAV_CAMERA]), np.asarray(obs[MANIP_CAMERA])
            torch.set_num_threads(tr.encoder_threads)
            with torch.inference_mode():
                f = tr.visual(np.concatenate([nav, manip]))
            torch.set_num_threads(cfg.train.torch_threads)
            b = nav.shape[0]
            feats = torch.stack([f[:b], f[b:]], dim=1).half().float()
            t1 = time.perf_counter()
            text, mask = tr.texts.batch(list(obs["instruction"]))
            out, cache, _ = tr.model.act(
                feats,
                text,
                mask,
                torch.as_tensor(np.asarray(obs["prev_action"]), dtype=torch.long),
                torch.as_tensor(np.asarray(obs["in_hand"]), dtype=torch.bool),
                torch.as_tensor(np.asarray(obs["episode_step"]), dtype=torch.long),
                cache,
            )
            t2 = time.perf_counter()
            actions = torch.distributions.Categorical(logits=out.logits).sample()
            t3 = time.perf_counter()
            obs, _, terminated, truncated, _ = envs.step(actions.numpy())
            t4 = time.perf_counter()
            done = np.logical_or(terminated, truncated)
            if done.any():
                cache.reset(torch.as_tensor(done))
            if i >= WARMUP_STEPS:
                for k, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    parts[k] += dt
    finally:
        envs.close()
    total = sum(parts.values())
    n = cfg.train.num_envs
    print(
        f"{args.config}: {total / args.steps * 1e3:.1f} ms per vector step of {n} envs "
        f"= {n * args.steps / total:.1f} env steps/s (acting only, no PPO update)"
    )
    for k, v in parts.items():
        print(f"  {k:<20} {v / args.steps * 1e3:7.2f} ms  {100 * v / total:5.1f}%")


if __name__ == "__main__":
    main()
