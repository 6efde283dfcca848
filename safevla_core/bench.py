"""``safevla bench``: how fast the simulator, the policy and training run on this machine.

One run measures, on this machine (keys of ``safevla bench --json`` in brackets):

* simulator actions per second with both cameras rendered after every action, at the training
  size [``sim_actions_per_s``] and the paper's 384x224 [``sim_actions_per_s_paper_size``], and
  physics alone [``sim_physics_actions_per_s``] (random navigation actions in a test house);
* the frozen visual encoder, ms per image at batch 1 [``encoder_ms_per_image_b1``] and batched
  as training batches it, ``num_envs x 2`` cameras [``encoder_ms_per_image_batched``];
* the fusion encoder, ms per step at batch 1 [``fusion_ms``];
* the causal decoder at a 100-step context, batch 1, ms per step with the KV cache
  [``act_cached_ms``] and recomputing the context [``act_no_cache_ms``], and their ratio
  [``kv_cache_speedup``] (decoder only: neither the frozen CNN nor the fusion encoder);
* end-to-end training env steps per second of the given config [``train_env_steps_per_s``]
  and of ``config/compare_cpu.yaml`` [``train_env_steps_per_s_compare_cpu``], the share of it
  spent acting and updating, and the ratio of training env steps/s to simulator actions/s
  [``train_to_sim_ratio``, ``train_to_sim_ratio_compare_cpu``];
* peak resident memory of a learner process [``learner_peak_rss_mb``: the given config,
  a short real run; ``learner_peak_rss_mb_paper``: ``config/paper.yaml``, estimated in a
  separate process that allocates the paper's full rollout buffer (32 envs x 128 steps,
  384x224 features), the three networks and their optimizer, and runs one PPO micro-batch
  forward and backward -- not a full run].

:func:`benchmark_steps` times one embedded-simulator backend on its current house.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from safevla_core.actions import NUM_ACTIONS, Action
from safevla_core.config import Config, load_config

if TYPE_CHECKING:
    from safevla_core.sim.mujoco_backend import MujocoBackend

#: Config files measured beside the given one (repository ``config/``).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
#: Context length of the KV-cache measurement (REFERENCE.md "Policy": up to 100 steps).
BENCH_CONTEXT = 100


def benchmark_steps(
    backend: MujocoBackend,
    n: int,
    render: bool = True,
    seed: int = 0,
    actions: Sequence[Action] | None = None,
) -> float:
    """Actions per second of ``n`` steps on the backend's current house.

    Args:
        backend: A backend after :meth:`MujocoBackend.reset`.
        n: Number of actions to time.
        render: Render both cameras after every step (as training does).
        seed: Seed of the action sequence (uniform over the motion actions and ``p``/``d``).
        actions: Explicit action sequence instead (cycled).

    Returns:
        Actions per second (wall clock).

    Raises:
        ValueError: If ``n < 1``.
        RuntimeError: If the backend has not been reset.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if backend.model is None:
        raise RuntimeError("reset the backend before benchmarking")
    if actions is None:
        rng = np.random.default_rng(seed)
        actions = [Action(int(a)) for a in rng.integers(0, NUM_ACTIONS - 2, size=n)]
    t0 = time.perf_counter()
    for i in range(n):
        backend.step(actions[i % len(actions)])
        if render:
            backend.render()
    return n / (time.perf_counter() - t0)


def bench_sim(cfg: Config, width: int, height: int, steps: int, seed: int = 0) -> dict[str, float]:
    """Simulator actions/s with both cameras rendered after every action, and physics alone.

    Returns:
        ``{"actions_per_s": ..., "physics_actions_per_s": ...}``.
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


def _median_ms(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def bench_encoder(cfg: Config, repeats: int = 5) -> dict[str, float]:
    """Frozen visual encoder, ms per image, at batch 1 and at ``num_envs x 2`` images."""
    from safevla_core.policy.encoders import get_visual_encoder

    pcfg = cfg.policy
    visual = get_visual_encoder(pcfg)
    batch = 2 * cfg.train.num_envs
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, pcfg.image_height, pcfg.image_width, 3), dtype=np.uint8)
    with torch.inference_mode():
        visual(images[:1])  # warm-up (first-call allocations)
        one = _median_ms(lambda: visual(images[:1]), repeats)
        many = _median_ms(lambda: visual(images), repeats) / batch
    return {
        "encoder_ms_per_image_b1": one,
        "encoder_ms_per_image_batched": many,
        "encoder_batch": float(batch),
    }


def bench_policy(cfg: Config, context: int = BENCH_CONTEXT, repeats: int = 30) -> dict[str, float]:
    """Fusion ms per step; decoder ms per step at a ``context``-step history, batch 1.

    The decoder is timed with and without the KV cache, on precomputed step embeddings.
    """
    from safevla_core.policy.encoders import get_visual_encoder
    from safevla_core.policy.factory import build_policy
    from safevla_core.policy.instructions import InstructionCache

    torch.manual_seed(0)
    pcfg = dataclasses.replace(cfg.policy, context_steps=max(cfg.policy.context_steps, context))
    policy = build_policy(pcfg).eval()
    c, h, w = get_visual_encoder(pcfg).output_shape
    feats = torch.randn(1, 2, c, h, w)
    text, mask = InstructionCache().batch(["navigate to a basketball"])
    with torch.inference_mode():
        fusion_ms = _median_ms(lambda: policy.embed_steps(feats, text, mask), repeats)
        emb = policy.embed_steps(feats, text, mask)
        cache = None
        for t in range(context - 1):
            _, cache = policy.decode_step(
                emb,
                torch.tensor([t % NUM_ACTIONS]),
                torch.tensor([False]),
                torch.tensor([t]),
                cache,
            )
        out: dict[str, float] = {"fusion_ms": fusion_ms}
        for name, fn in (
            ("act_cached_ms", policy.decode_step),
            ("act_no_cache_ms", policy.decode_step_no_cache),
        ):
            template = cache

            def once(fn: Any = fn, template: Any = template) -> None:
                fn(
                    emb,
                    torch.tensor([0]),
                    torch.tensor([False]),
                    torch.tensor([context - 1]),
                    copy.deepcopy(template),
                )

            copy_ms = _median_ms(lambda template=template: copy.deepcopy(template), repeats)
            out[name] = max(_median_ms(once, repeats) - copy_ms, 1e-3)
    out["kv_cache_speedup"] = out["act_no_cache_ms"] / out["act_cached_ms"]
    return out


def bench_train(cfg: Config, iterations: int = 3, num_steps: int = 32) -> dict[str, float]:
    """End-to-end training env steps/s (async envs) over a short run, and the peak RSS.

    The first iteration, which includes the workers' start-up, is excluded.
    """
    from safevla_core.rl.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        train_cfg = dataclasses.replace(
            cfg.train,
            out_dir=tmp,
            checkpoint_every=1000,
            num_steps=num_steps,
            total_env_steps=(iterations + 1) * cfg.train.num_envs * num_steps,
            critic_warmup_env_steps=0,
        )
        run = dataclasses.replace(cfg, train=train_cfg)
        result = Trainer(run, resume=False, progress=False).run()
    rows = result.history[1:]
    steps = sum(cfg.train.num_envs * num_steps for _ in rows)
    collect = sum(r["collect_s"] for r in rows)
    update = sum(r["update_s"] for r in rows)
    total = sum(cfg.train.num_envs * num_steps / r["fps"] for r in rows)
    return {
        "train_env_steps_per_s": steps / total,
        "collect_env_steps_per_s": steps / collect,
        "update_share": update / total,
        "num_envs": float(cfg.train.num_envs),
        "learner_peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    """This process's peak resident set size, MB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def paper_memory_probe(config_path: str) -> dict[str, float]:
    """Peak RSS of a learner at a config's full rollout size (run in a fresh process).

    Allocates the full rollout buffer (random features), the actor-critic networks and Adam
    state, then evaluates one micro-batch (``ppo.microbatch_steps`` steps) with gradient and
    takes an optimizer step: the learner's largest live set during a PPO update.
    """
    from safevla_core.rl.rollout import evaluate_segments
    from safevla_core.rl.train import Trainer

    cfg = load_config(config_path, {"train": {"out_dir": tempfile.mkdtemp()}})
    torch.set_num_threads(cfg.train.torch_threads)
    trainer = Trainer(cfg, resume=False, progress=False)
    buf = trainer.new_buffer()
    buf.start_rollout(trainer.model.new_cache(buf.B).prefix())
    gen = torch.Generator().manual_seed(0)
    for t in range(buf.T):
        vis = (
            torch.randn(buf.B, *trainer.visual_shape, generator=gen)
            if buf.visual is not None
            else None
        )
        emb = torch.randn(buf.B, cfg.policy.d_model) if buf.step_emb is not None else None
        buf.add_inputs(
            torch.full((buf.B,), t % NUM_ACTIONS),
            torch.zeros(buf.B, dtype=torch.bool),
            torch.full((buf.B,), t),
            ["navigate to a mug"] * buf.B,
            step_emb=emb,
            visual=vis,
        )
        z = torch.zeros(buf.B)
        buf.add_outcome(torch.zeros(buf.B, dtype=torch.long), z, z, z, z, z, z)
    seg = buf.segments()
    rows = max(1, cfg.ppo.microbatch_steps // buf.T)
    out, valid, _ = evaluate_segments(
        trainer.model, buf, seg, torch.arange(rows), trainer.texts.batch, trainer.device
    )
    loss = out.logits[valid].logsumexp(-1).mean() + out.value_reward[valid].pow(2).mean()
    loss = loss + out.value_cost[valid].pow(2).mean()
    loss.backward()
    trainer.optimizer.step()
    return {
        "learner_peak_rss_mb_paper": _peak_rss_mb(),
        "paper_rollout_steps": float(buf.T * buf.B),
        "paper_microbatch_steps": float(rows * buf.T),
    }


def bench_paper_memory(config_path: Path) -> dict[str, float]:
    """:func:`paper_memory_probe` in a fresh Python process (its own peak RSS)."""
    code = (
        "import json,sys; from safevla_core.bench import paper_memory_probe; "
        "print(json.dumps(paper_memory_probe(sys.argv[1])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(config_path)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe for {config_path} failed:\n{proc.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def run_bench(
    cfg: Config,
    sim_steps: int = 200,
    train: bool = True,
    compare_config: Path | None = CONFIG_DIR / "compare_cpu.yaml",
    paper_config: Path | None = CONFIG_DIR / "paper.yaml",
) -> dict[str, float]:
    """All figures as one flat dict (keys in the module docstring)."""
    torch.set_num_threads(1)
    fig: dict[str, float] = {}
    w, h = cfg.policy.image_width, cfg.policy.image_height
    sim = bench_sim(cfg, w, h, sim_steps)
    fig["sim_actions_per_s"] = sim["actions_per_s"]
    fig["sim_physics_actions_per_s"] = sim["physics_actions_per_s"]
    fig["sim_actions_per_s_paper_size"] = bench_sim(cfg, 384, 224, sim_steps // 2)["actions_per_s"]
    torch.set_num_threads(cfg.train.torch_threads)
    fig.update(bench_encoder(cfg))
    torch.set_num_threads(1)
    fig.update(bench_policy(cfg))
    if train:
        torch.set_num_threads(cfg.train.torch_threads)
        fig.update(bench_train(cfg))
        fig["train_to_sim_ratio"] = fig["train_env_steps_per_s"] / fig["sim_actions_per_s"]
        if compare_config is not None and Path(compare_config).is_file():
            cmp_cfg = load_config(compare_config)
            r = bench_train(cmp_cfg)
            fig["train_env_steps_per_s_compare_cpu"] = r["train_env_steps_per_s"]
            fig["update_share_compare_cpu"] = r["update_share"]
            fig["train_to_sim_ratio_compare_cpu"] = (
                r["train_env_steps_per_s"] / fig["sim_actions_per_s"]
            )
        if paper_config is not None and Path(paper_config).is_file():
            fig.update(bench_paper_memory(Path(paper_config)))
    return fig


def format_bench(figures: dict[str, float]) -> str:
    """One line per figure."""
    return "\n".join(f"{k:<38} {v:10.2f}" for k, v in figures.items())


__all__ = [
    "bench_encoder",
    "bench_paper_memory",
    "bench_policy",
    "bench_sim",
    "bench_train",
    "format_bench",
    "paper_memory_probe",
    "run_bench",
]
