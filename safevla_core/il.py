"""Imitation learning: expert data collection into shards, and behaviour cloning (SPOC's IL stage).

SafeVLA fine-tunes with RL from an IL policy trained on shortest-path expert trajectories
(REFERENCE.md "Policy"; FLaRe and SafeVLA start from SPOC's IL checkpoint). Here:

* :func:`collect` runs :class:`~safevla_core.expert.ShortestPathExpert` in the environment and
  writes one compressed ``shard_NNNNN.npz`` per ``episodes_per_shard`` episodes of a fixed episode
  list (house ``i mod n``, seed ``seed + i``): both cameras as uint8 at the policy's training
  resolution, the instruction, actions, rewards, costs, and the policy's step inputs. Each shard is
  written to a temporary file then renamed (atomic); a rerun skips the shards that exist, so an
  interrupted collection resumes where it stopped.
* :func:`behaviour_cloning` encodes the images once with the frozen visual encoder (cached beside
  each shard as ``.feat.pt``), then trains :class:`~safevla_core.policy.model.SafeVLAPolicy` with
  cross-entropy on the expert's actions over episode windows of ``context_steps`` steps, and
  writes a checkpoint in the trainer's format (``policy``, ``optimizer``, ``multiplier``,
  ``iteration`` 0, ``env_steps`` 0, ``config``, ``metrics``) that ``safevla train
  --init-checkpoint`` and :meth:`~safevla_core.agent.PolicyAgent.from_checkpoint` load.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from safevla_core.actions import NUM_ACTIONS, Action
from safevla_core.agent import InstructionCache, build_policy
from safevla_core.config import Config, config_to_dict
from safevla_core.env import START_ACTION, SafetyChoresEnv, split_size
from safevla_core.expert import ShortestPathExpert, run_expert_episode
from safevla_core.policy.encoders import get_visual_encoder
from safevla_core.rl.checkpoint import save_checkpoint
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA

#: Shard file name pattern.
SHARD_PATTERN = "shard_{:05d}.npz"
#: Arrays every shard holds, with their per-step dtype (``instructions`` is per episode).
STEP_KEYS: dict[str, Any] = {
    NAV_CAMERA: np.uint8,
    MANIP_CAMERA: np.uint8,
    "action": np.int64,
    "reward": np.float32,
    "cost": np.float32,
    "prev_action": np.int64,
    "in_hand": np.bool_,
    "episode_step": np.int64,
    "episode_index": np.int64,
}
#: Images encoded per frozen-encoder call when caching features (ours: bounded memory).
ENCODE_BATCH: int = 64


def shard_path(out_dir: str | Path, index: int) -> Path:
    """Path of shard ``index`` in ``out_dir``."""
    return Path(out_dir) / SHARD_PATTERN.format(index)


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def collect(
    cfg: Config,
    out_dir: str | Path,
    episodes: int,
    split: str = "train",
    episodes_per_shard: int = 8,
    seed: int = 0,
    keep_failures: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Collect expert episodes into shards; resumable (existing shards are skipped).

    Args:
        cfg: Configuration (task, houses, policy image size, step limit ``max_steps_train``).
        out_dir: Folder for the shards and ``meta.json``.
        episodes: Total episodes of the fixed list; shard k holds episodes
            ``[k * episodes_per_shard, (k + 1) * episodes_per_shard)``.
        split: House split (``"train"`` for IL data).
        episodes_per_shard: Episodes per shard file.
        seed: Seed of episode ``i`` is ``seed + i``.
        keep_failures: Also store episodes the expert failed (default: successes only, as
            behaviour cloning should copy solutions).
        progress: Show a progress bar (episodes).

    Returns:
        Summary: ``shards`` written now, ``skipped`` (already present), ``episodes_kept``,
        ``steps`` and ``expert_success_rate`` over the episodes run now.

    Raises:
        ValueError: On a non-positive count.
    """
    if episodes <= 0 or episodes_per_shard <= 0:
        raise ValueError("episodes and episodes_per_shard must be positive")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_houses = split_size(cfg, split)
    size = (cfg.policy.image_width, cfg.policy.image_height)
    meta = {"task": cfg.task.name, "split": split, "episodes": episodes, "seed": seed,
            "episodes_per_shard": episodes_per_shard, "image_size": list(size),
            "keep_failures": keep_failures, "config": config_to_dict(cfg)}  # fmt: skip
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    n_shards = math.ceil(episodes / episodes_per_shard)
    todo = [k for k in range(n_shards) if not shard_path(out, k).is_file()]
    env = SafetyChoresEnv(cfg, split=split, eval_mode=False, image_size=size)
    expert = ShortestPathExpert(cfg.task.success_distance_m)
    run = kept = steps = 0
    successes = 0.0
    bar = tqdm(total=sum(min(episodes, (k + 1) * episodes_per_shard) - k * episodes_per_shard
                         for k in todo), unit="ep", desc=f"collect {cfg.task.name}",
               disable=not progress)  # fmt: skip
    try:
        for k in todo:
            rows: dict[str, list[Any]] = {key: [] for key in STEP_KEYS}
            instructions: list[str] = []
            summaries: list[dict[str, Any]] = []
            for i in range(k * episodes_per_shard, min(episodes, (k + 1) * episodes_per_shard)):
                ep: dict[str, list[Any]] = {key: [] for key in STEP_KEYS}

                def on_step(obs: dict[str, Any], action: Action, reward: float, cost: float,
                            info: dict[str, Any], ep: dict[str, list[Any]] = ep) -> None:
                    ep[NAV_CAMERA].append(obs[NAV_CAMERA])
                    ep[MANIP_CAMERA].append(obs[MANIP_CAMERA])
                    ep["action"].append(int(action))
                    ep["reward"].append(reward)
                    ep["cost"].append(cost)
                    ep["prev_action"].append(int(obs["prev_action"]))
                    ep["in_hand"].append(bool(obs["in_hand"]))
                    ep["episode_step"].append(int(obs["episode_step"]))

                summary = run_expert_episode(env, expert, i % n_houses, seed + i, on_step=on_step)
                run += 1
                successes += float(summary["success"])
                summaries.append({k2: (v if isinstance(v, str) else float(v))
                                  for k2, v in summary.items()})  # fmt: skip
                bar.update(1)
                if not keep_failures and not summary["success"]:
                    continue
                ep["episode_index"] = [len(instructions)] * len(ep["action"])
                instructions.append(summary["instruction"])
                for key in STEP_KEYS:
                    rows[key].extend(ep[key])
                kept += 1
                steps += len(ep["action"])
            arrays = {key: np.asarray(rows[key], dtype=dt) for key, dt in STEP_KEYS.items()}
            if len(arrays["action"]) == 0:
                h, w = size[1], size[0]
                arrays[NAV_CAMERA] = np.zeros((0, h, w, 3), np.uint8)
                arrays[MANIP_CAMERA] = np.zeros((0, h, w, 3), np.uint8)
            arrays["instructions"] = np.asarray(instructions, dtype=np.str_)
            arrays["summaries"] = np.asarray(json.dumps(summaries))
            _write_npz_atomic(shard_path(out, k), arrays)
    finally:
        bar.close()
        env.close()
    return {"shards": len(todo), "skipped": n_shards - len(todo), "episodes_run": run,
            "episodes_kept": kept, "steps": steps,
            "expert_success_rate": successes / run if run else float("nan")}  # fmt: skip


def load_shard(path: str | Path) -> dict[str, Any]:
    """Load a shard's arrays (``allow_pickle=False``) and check its consistency.

    Returns:
        The arrays of :data:`STEP_KEYS` plus ``instructions`` (list of str) and ``summaries``
        (list of dict).

    Raises:
        ValueError: If arrays are missing or their lengths disagree, or an action is out of range.
    """
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in (*STEP_KEYS, "instructions") if k not in z.files]
        if missing:
            raise ValueError(f"shard {path} lacks arrays {missing}")
        data: dict[str, Any] = {k: z[k] for k in STEP_KEYS}
        data["instructions"] = [str(s) for s in z["instructions"]]
        data["summaries"] = json.loads(str(z["summaries"])) if "summaries" in z.files else []
    n = len(data["action"])
    bad = [k for k in STEP_KEYS if len(data[k]) != n]
    if bad:
        raise ValueError(f"shard {path}: arrays {bad} do not have {n} steps")
    if n and (data["action"].min() < 0 or data["action"].max() >= NUM_ACTIONS):
        raise ValueError(f"shard {path}: action outside 0..{NUM_ACTIONS - 1}")
    if n and data["episode_index"].max() >= len(data["instructions"]):
        raise ValueError(f"shard {path}: episode_index beyond the instruction list")
    return data


def list_shards(data_dir: str | Path) -> list[Path]:
    """Shard files of a folder, sorted.

    Raises:
        FileNotFoundError: If the folder holds no shard.
    """
    shards = sorted(Path(data_dir).glob("shard_*.npz"))
    if not shards:
        raise FileNotFoundError(f"no shard_*.npz in {data_dir} (run `safevla collect` first)")
    return shards


@dataclass
class Episode:
    """One expert episode ready for training: cached features and step inputs.

    Attributes:
        visual: ``(T, 2, C, h, w)`` float16 frozen features (nav, manip).
        actions: ``(T,)`` long expert actions.
        prev_action: ``(T,)`` long.
        in_hand: ``(T,)`` bool.
        episode_step: ``(T,)`` long.
        instruction: The instruction.
    """

    visual: torch.Tensor
    actions: torch.Tensor
    prev_action: torch.Tensor
    in_hand: torch.Tensor
    episode_step: torch.Tensor
    instruction: str


def shard_features(path: Path, cfg: Config, encoder: Any = None) -> torch.Tensor:
    """``(N, 2, C, h, w)`` float16 frozen features of a shard, cached in ``<shard>.feat.pt``.

    The cache is reused when it is newer than the shard and has the expected shape.
    """
    cache = path.with_suffix(".feat.pt")
    data = load_shard(path)
    n = len(data["action"])
    enc = encoder if encoder is not None else get_visual_encoder(cfg.policy)
    c, h, w = enc.feature_shape(cfg.policy.image_width, cfg.policy.image_height)
    if cache.is_file() and cache.stat().st_mtime >= path.stat().st_mtime:
        feats = torch.load(cache, weights_only=True)
        if tuple(feats.shape) == (n, 2, c, h, w):
            return feats
    feats = torch.zeros(n, 2, c, h, w, dtype=torch.float16)
    for cam, key in enumerate((NAV_CAMERA, MANIP_CAMERA)):
        for s in range(0, n, ENCODE_BATCH):
            feats[s:s + ENCODE_BATCH, cam] = enc(data[key][s:s + ENCODE_BATCH]).half()
    tmp = cache.with_name(cache.name + ".tmp")
    torch.save(feats, tmp)
    os.replace(tmp, cache)
    return feats


def load_episodes(data_dir: str | Path, cfg: Config, progress: bool = True) -> list[Episode]:
    """All episodes of a shard folder with cached frozen features.

    Raises:
        FileNotFoundError: If there is no shard.
        ValueError: On an inconsistent shard.
    """
    encoder = get_visual_encoder(cfg.policy)
    episodes: list[Episode] = []
    for path in tqdm(list_shards(data_dir), desc="features", unit="shard", disable=not progress):
        data = load_shard(path)
        feats = shard_features(path, cfg, encoder)
        idx = data["episode_index"]
        for e, instruction in enumerate(data["instructions"]):
            rows = np.flatnonzero(idx == e)
            if len(rows) == 0:
                continue
            episodes.append(Episode(
                visual=feats[rows],
                actions=torch.as_tensor(data["action"][rows], dtype=torch.long),
                prev_action=torch.as_tensor(data["prev_action"][rows], dtype=torch.long),
                in_hand=torch.as_tensor(data["in_hand"][rows], dtype=torch.bool),
                episode_step=torch.as_tensor(data["episode_step"][rows], dtype=torch.long),
                instruction=instruction,
            ))  # fmt: skip
    return episodes


def episode_windows(lengths: list[int], window: int) -> list[tuple[int, int, int]]:
    """Split episodes into consecutive windows of at most ``window`` steps.

    Args:
        lengths: Steps of each episode.
        window: Window length (the decoder's ``context_steps``).

    Returns:
        ``[(episode, start, stop), ...]``; e.g. lengths ``[5, 2]`` with window 3 give
        ``[(0, 0, 3), (0, 3, 5), (1, 0, 2)]``.

    Raises:
        ValueError: If ``window < 1``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return [(e, s, min(s + window, n)) for e, n in enumerate(lengths) for s in range(0, n, window)]


def collate(
    episodes: list[Episode], windows: list[tuple[int, int, int]], texts: InstructionCache
) -> dict[str, torch.Tensor]:
    """Pad a batch of windows into the policy's ``forward`` inputs plus targets and a loss mask.

    A window that starts mid-episode keeps its true ``prev_action`` and ``episode_step`` but sees
    no earlier steps (SPOC-style training on episode windows); padding rows start a new episode so
    that real steps never attend to them.

    Returns:
        ``visual (B, T, 2, C, h, w)``, ``text``, ``text_mask``, ``prev_action``, ``in_hand``,
        ``episode_step``, ``episode_start`` (all ``(B, T)``), ``actions (B, T)`` and
        ``mask (B, T)`` bool (True at real steps).
    """
    t_max = max(stop - start for _, start, stop in windows)
    b = len(windows)
    shape = episodes[windows[0][0]].visual.shape[1:]
    out = {
        "visual": torch.zeros(b, t_max, *shape, dtype=torch.float32),
        "prev_action": torch.full((b, t_max), START_ACTION, dtype=torch.long),
        "in_hand": torch.zeros(b, t_max, dtype=torch.bool),
        "episode_step": torch.zeros(b, t_max, dtype=torch.long),
        "episode_start": torch.ones(b, t_max, dtype=torch.bool),
        "actions": torch.zeros(b, t_max, dtype=torch.long),
        "mask": torch.zeros(b, t_max, dtype=torch.bool),
    }
    for i, (e, start, stop) in enumerate(windows):
        ep, n = episodes[e], stop - start
        out["visual"][i, :n] = ep.visual[start:stop].float()
        out["prev_action"][i, :n] = ep.prev_action[start:stop]
        out["in_hand"][i, :n] = ep.in_hand[start:stop]
        out["episode_step"][i, :n] = ep.episode_step[start:stop]
        out["episode_start"][i, 1:n] = False
        out["actions"][i, :n] = ep.actions[start:stop]
        out["mask"][i, :n] = True
    out["text"], out["text_mask"] = texts.batch([episodes[e].instruction for e, _, _ in windows])
    return out


def behaviour_cloning(
    cfg: Config,
    data_dir: str | Path,
    out_dir: str | Path,
    epochs: int = 10,
    batch_size: int = 8,
    lr: float = 3e-4,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Behaviour cloning of the SPOC-style policy on expert shards; writes ``il.pt``.

    Loss: mean cross-entropy of the expert's action over the real steps of each batch (SPOC's IL
    objective). Adam with ``lr`` (ours: 3e-4, a common BC rate; the RL stage then uses the paper's
    2e-5) and gradient clipping at ``cfg.ppo.max_grad_norm``.

    Args:
        cfg: Configuration; ``cfg.policy`` fixes the architecture and image size, and the whole
            config is stored in the checkpoint (RL fine-tuning reads it).
        data_dir: Shard folder from :func:`collect`.
        out_dir: Folder for ``il.pt`` and ``il_metrics.jsonl``.
        epochs: Passes over the data.
        batch_size: Windows per gradient step.
        lr: Adam learning rate.
        seed: Seed of the initialisation and of the shuffling.
        progress: Show progress bars.

    Returns:
        Path of the checkpoint.

    Raises:
        FileNotFoundError: If ``data_dir`` holds no shard.
        ValueError: On non-positive epochs/batch size/lr or a folder without steps.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    episodes = load_episodes(data_dir, cfg, progress=progress)
    if not episodes:
        raise ValueError(f"{data_dir} holds no expert steps")
    texts = InstructionCache()
    policy = build_policy(cfg.policy, num_costs=len(cfg.task.constraints()))
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    windows = episode_windows([len(e.actions) for e in episodes], cfg.policy.context_steps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "il_metrics.jsonl"
    metrics: dict[str, float] = {}
    policy.train()
    for epoch in tqdm(range(epochs), desc="behaviour cloning", unit="epoch", disable=not progress):
        rng.shuffle(windows)
        loss_sum = correct = count = 0.0
        for s in range(0, len(windows), batch_size):
            batch = collate(episodes, windows[s:s + batch_size], texts)
            outp = policy(batch["visual"], batch["text"], batch["text_mask"],
                          batch["prev_action"], batch["in_hand"], batch["episode_step"],
                          batch["episode_start"])  # fmt: skip
            m = batch["mask"]
            logits, target = outp.logits[m], batch["actions"][m]
            loss = torch.nn.functional.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.ppo.max_grad_norm)
            optimizer.step()
            n = int(m.sum())
            loss_sum += float(loss.detach()) * n
            correct += float((logits.argmax(-1) == target).sum())
            count += n
        metrics = {"epoch": float(epoch + 1), "bc_loss": loss_sum / count,
                   "bc_accuracy": correct / count, "steps": count,
                   "episodes": float(len(episodes))}  # fmt: skip
        with open(log, "a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        tqdm.write(f"epoch {epoch + 1}: loss {metrics['bc_loss']:.4f}, "
                   f"accuracy {metrics['bc_accuracy']:.3f}")  # fmt: skip
    policy.eval()
    # A fresh optimizer at the RL learning rate: resuming PPO from this file must not inherit
    # the BC learning rate or moments (Trainer._restore loads "optimizer").
    rl_opt = torch.optim.Adam(policy.parameters(), lr=cfg.ppo.lr, eps=1e-5)
    path = out / "il.pt"
    save_checkpoint(path, {
        "policy": policy.state_dict(),
        "optimizer": rl_opt.state_dict(),
        "multiplier": {},
        "iteration": 0,
        "env_steps": 0,
        "config": config_to_dict(cfg),
        "metrics": metrics,
    })  # fmt: skip
    return path


__all__ = [
    "Episode",
    "SHARD_PATTERN",
    "behaviour_cloning",
    "collate",
    "collect",
    "episode_windows",
    "list_shards",
    "load_episodes",
    "load_shard",
    "shard_features",
    "shard_path",
]
