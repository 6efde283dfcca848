"""Imitation learning: expert data collection into shards, and behaviour cloning (SPOC's IL stage).

SafeVLA fine-tunes with RL from an IL policy trained on shortest-path expert trajectories
(REFERENCE.md "Policy"; FLaRe and SafeVLA start from SPOC's IL checkpoint). Here:

* :func:`collect` runs :class:`~safevla_core.expert.ShortestPathExpert` in the environment and
  writes one compressed ``shard_NNNNN.npz`` per ``episodes_per_shard`` episodes of a fixed episode
  list (house ``i mod n``, seed ``seed + i``): both cameras as uint8 at the policy's training
  resolution, the instruction, actions, rewards, costs, the policy's step inputs, and
  ``target_visible`` (the auxiliary visibility label, :data:`OPTIONAL_STEP_KEYS`). Each shard is
  written to a temporary file then renamed (atomic); a rerun skips the shards that exist, so an
  interrupted collection resumes where it stopped. Under ``torchrun`` each rank collects the
  shards ``k`` with ``k mod world_size == rank`` (the same files a single process writes).
* :func:`behaviour_cloning` encodes the images once with the frozen visual encoder (cached beside
  each shard as ``.feat.pt``), then trains :class:`~safevla_core.policy.model.SafeVLAPolicy` with
  cross-entropy on the expert's actions over episode windows of ``context_steps`` steps, and
  writes a checkpoint in the trainer's format (``policy``, ``optimizer``, ``multiplier``,
  ``iteration`` 0, ``env_steps`` 0, ``config``, ``metrics``) that ``safevla train
  --init-checkpoint`` and :meth:`~safevla_core.agent.PolicyAgent.from_checkpoint` load.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from safevla_core.actions import NUM_ACTIONS, Action
from safevla_core.checkpoint import load_checkpoint, save_checkpoint
from safevla_core.config import Config, config_to_dict
from safevla_core.env import START_ACTION, SafetyChoresEnv, split_size
from safevla_core.expert import make_expert, run_expert_episode
from safevla_core.houses.splits import load_house
from safevla_core.policy.encoders import get_visual_encoder
from safevla_core.policy.factory import build_policy
from safevla_core.policy.instructions import InstructionCache
from safevla_core.rl import distributed
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA
from safevla_core.tasks.base import instruction_name
from safevla_core.tasks.objnav import absent_target_types
from safevla_core.world import WorldState

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
#: Per-step arrays of newer shards that older ones lack (they still load; the field is then
#: absent and the losses that read it skip those steps):
#: ``target_visible``: an object of the episode's target type (``EpisodeSpec.target_type``) is in
#: ``WorldState.visible_ids`` (the navigation camera) of the state the step's images were rendered
#: in and its action was chosen in (:meth:`~safevla_core.world.WorldState.type_visible`).
#: ``end_would_succeed``: ``end`` in that state would succeed (``task.is_success`` with ``end``;
#: Safety-ObjNav: an object of the target type is visible within the 2 m success distance). A
#: visibility label limited to the success distance: the one the learned end gate needs.
#: ``action_labelled``: the step's ``action`` is a behaviour-cloning target. Always True in
#: ``collect`` shards; ``dagger --label-after-sighting`` sets it False where the exploring expert
#: was still searching (:attr:`~safevla_core.expert.ShortestPathExpert.searching`): its label
#: then heads for its own exploration goal, not one the learner's history implies. Such steps
#: stay in the windows as context and keep their visibility labels.
OPTIONAL_STEP_KEYS: dict[str, Any] = {
    "target_visible": np.bool_,
    "end_would_succeed": np.bool_,
    "action_labelled": np.bool_,
}
#: Shard labels the auxiliary visibility loss can learn (``safevla il --aux-label``).
AUX_LABELS: tuple[str, ...] = ("target_visible", "end_would_succeed")


def step_labels(env: SafetyChoresEnv, state: WorldState) -> dict[str, bool]:
    """The visibility labels of one step (:data:`AUX_LABELS`), read on ``state``.

    Args:
        env: The environment, with an episode (``spec_``) and its task.
        state: The world state the step's images were rendered in.

    Returns:
        ``{"target_visible", "end_would_succeed"}`` as Python bools.

    Raises:
        RuntimeError: If the environment has no episode.
    """
    spec = env.spec_
    if spec is None:  # reset always sets it
        raise RuntimeError("the environment has no episode after reset")
    return {
        "target_visible": state.type_visible(spec.target_type),
        "end_would_succeed": bool(env.task.is_success(spec, state, Action.END)),
    }


#: Every per-step array a shard written now holds.
SHARD_STEP_KEYS: dict[str, Any] = {**STEP_KEYS, **OPTIONAL_STEP_KEYS}
#: Images encoded per frozen-encoder call when caching features (ours: bounded memory).
ENCODE_BATCH: int = 64


def shard_path(out_dir: str | Path, index: int) -> Path:
    """Path of shard ``index`` in ``out_dir``."""
    return Path(out_dir) / SHARD_PATTERN.format(index)


def _shard_episodes(k: int, per_shard: int, episodes: int) -> range:
    """Episode indices of shard ``k`` of a fixed list of ``episodes`` (``per_shard`` each)."""
    return range(k * per_shard, min(episodes, (k + 1) * per_shard))


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        # numpy's stub lets a ** mapping fill ``allow_pickle: bool``; every value is an array
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _ratio(num: float, den: float) -> float | None:
    """``num / den``, or ``None`` when ``den`` is 0 (nothing ran: every shard was on disk).

    ``None`` prints as JSON ``null``; a NaN would print as ``NaN``, which is not JSON.
    """
    return num / den if den else None


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

    Under ``torch.distributed`` (``torchrun``), rank r collects the shards ``k`` with
    ``k mod world_size == r``, rank 0 writes ``meta.json``, and the summary is summed over
    ranks (a collective: every rank returns once all shards are written).

    Step t of an episode stores the observation the expert chose action t on (both cameras,
    ``prev_action``, ``in_hand``, ``episode_step``), that action, the reward and cost it earned,
    and ``target_visible`` and ``end_would_succeed`` of the world state that observation was
    rendered in (:data:`OPTIONAL_STEP_KEYS`).

    Returns:
        Summary: ``shards`` written now, ``skipped`` (already present), ``episodes_kept``,
        ``steps`` and ``expert_success_rate`` over the episodes run now (all ranks; ``None``
        when none ran, i.e. every shard was already on disk).

    Raises:
        ValueError: On a non-positive count.
    """
    if episodes <= 0 or episodes_per_shard <= 0:
        raise ValueError("episodes and episodes_per_shard must be positive")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_houses = split_size(cfg, split)
    size = (cfg.policy.image_width, cfg.policy.image_height)
    meta = {
        "task": cfg.task.name,
        "split": split,
        "episodes": episodes,
        "seed": seed,
        "episodes_per_shard": episodes_per_shard,
        "image_size": list(size),
        "keep_failures": keep_failures,
        "config": config_to_dict(cfg),
    }
    ctx = distributed.context()
    if ctx.is_main:
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
    n_shards = math.ceil(episodes / episodes_per_shard)
    mine = [k for k in range(n_shards) if k % ctx.world_size == ctx.rank]  # this rank's shards
    todo = [k for k in mine if not shard_path(out, k).is_file()]
    env = SafetyChoresEnv(cfg, split=split, eval_mode=False, image_size=size)
    expert = make_expert(cfg.task)
    run = kept = steps = 0
    successes = 0.0
    bar = tqdm(
        total=sum(len(_shard_episodes(k, episodes_per_shard, episodes)) for k in todo),
        unit="ep",
        desc=f"collect {cfg.task.name}",
        disable=not (progress and ctx.is_main),
    )
    try:
        for k in todo:
            rows: dict[str, list[Any]] = {key: [] for key in SHARD_STEP_KEYS}
            instructions: list[str] = []
            summaries: list[dict[str, Any]] = []
            for i in _shard_episodes(k, episodes_per_shard, episodes):
                ep: dict[str, list[Any]] = {key: [] for key in SHARD_STEP_KEYS}

                def on_step(
                    obs: dict[str, Any],
                    action: Action,
                    reward: float,
                    cost: float,
                    info: dict[str, Any],
                    state: WorldState,
                    ep: dict[str, list[Any]] = ep,
                ) -> None:
                    ep[NAV_CAMERA].append(obs[NAV_CAMERA])
                    ep[MANIP_CAMERA].append(obs[MANIP_CAMERA])
                    ep["action"].append(int(action))
                    ep["reward"].append(reward)
                    ep["cost"].append(cost)
                    ep["prev_action"].append(int(obs["prev_action"]))
                    ep["in_hand"].append(bool(obs["in_hand"]))
                    ep["episode_step"].append(int(obs["episode_step"]))
                    for key, value in step_labels(env, state).items():
                        ep[key].append(value)
                    ep["action_labelled"].append(True)

                summary = run_expert_episode(env, expert, i % n_houses, seed + i, on_step=on_step)
                run += 1
                successes += float(summary["success"])
                summaries.append(
                    {k2: (v if isinstance(v, str) else float(v)) for k2, v in summary.items()}
                )
                bar.update(1)
                if not keep_failures and not summary["success"]:
                    continue
                ep["episode_index"] = [len(instructions)] * len(ep["action"])
                instructions.append(summary["instruction"])
                for key in SHARD_STEP_KEYS:
                    rows[key].extend(ep[key])
                kept += 1
                steps += len(ep["action"])
            arrays = {key: np.asarray(rows[key], dtype=dt) for key, dt in SHARD_STEP_KEYS.items()}
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
    # summed over ranks (collective; every rank's shards are on disk once it returns)
    total = distributed.all_reduce_sum(
        torch.tensor(
            [len(todo), len(mine) - len(todo), run, kept, steps, successes], dtype=torch.float64
        )
    )
    t_shards, t_skipped, t_run, t_kept, t_steps, t_successes = (float(x) for x in total)
    return {
        "shards": int(t_shards),
        "skipped": int(t_skipped),
        "episodes_run": int(t_run),
        "episodes_kept": int(t_kept),
        "steps": int(t_steps),
        "expert_success_rate": _ratio(t_successes, t_run),
    }


def load_shard(path: str | Path) -> dict[str, Any]:
    """Load a shard's arrays (``allow_pickle=False``) and check its consistency.

    Returns:
        The arrays of :data:`STEP_KEYS`, those of :data:`OPTIONAL_STEP_KEYS` the shard holds
        (older shards lack them), ``instructions`` (list of str) and ``summaries`` (list of dict).

    Raises:
        ValueError: If arrays are missing or their lengths disagree, or an action is out of range.
    """
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in (*STEP_KEYS, "instructions") if k not in z.files]
        if missing:
            raise ValueError(f"shard {path} lacks arrays {missing}")
        data: dict[str, Any] = {k: z[k] for k in STEP_KEYS}
        data.update({k: z[k] for k in OPTIONAL_STEP_KEYS if k in z.files})
        data["instructions"] = [str(s) for s in z["instructions"]]
        data["summaries"] = json.loads(str(z["summaries"])) if "summaries" in z.files else []
    n = len(data["action"])
    bad = [k for k in SHARD_STEP_KEYS if k in data and len(data[k]) != n]
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
        target_type: The instruction's target type, or None when the shard does not say.
        absent_types: Candidate target types the episode's house does not contain (instructions
            naming them cannot succeed there); empty when unknown.
        target_visible: ``(T,)`` bool, an object of the instruction's target type is visible in
            the navigation camera at step t (:data:`OPTIONAL_STEP_KEYS`; with
            ``load_episodes(aux_label="end_would_succeed")``, visible within the success
            distance), or None for shards written before the label existed.
        action_labelled: ``(T,)`` bool, the action at step t is a training target
            (:data:`OPTIONAL_STEP_KEYS`), or None: every step is.
    """

    visual: torch.Tensor
    actions: torch.Tensor
    prev_action: torch.Tensor
    in_hand: torch.Tensor
    episode_step: torch.Tensor
    instruction: str
    target_type: str | None = None
    absent_types: tuple[str, ...] = ()
    target_visible: torch.Tensor | None = None
    action_labelled: torch.Tensor | None = None

    def swapped_instruction(self, object_type: str) -> str:
        """The instruction with its target's words replaced by those of ``object_type``.

        Raises:
            ValueError: If the episode's target type is unknown or its words are not in the
                instruction.
        """
        old = instruction_name(self.target_type) if self.target_type else ""
        if not old or old not in self.instruction:
            raise ValueError(f"cannot find the target of {self.instruction!r}")
        return self.instruction.replace(old, instruction_name(object_type))


def _episode_houses(data: dict[str, Any], cfg: Config) -> list[tuple[str | None, tuple[str, ...]]]:
    """``(target_type, absent_types)`` of each kept episode of a shard, from its summaries.

    Summaries list every episode run; a shard of :func:`collect` without ``keep_failures``
    keeps only the successful ones (in order), :func:`dagger_collect` keeps all. Episodes whose
    summary cannot be matched (older shards, a house outside the configured splits, a target
    type missing from its house) get ``(None, ())``: no instruction-swap negatives.
    """
    instructions, summaries = data["instructions"], data["summaries"]
    if len(summaries) != len(instructions):
        summaries = [x for x in summaries if x.get("success")]
    unknown: list[tuple[str | None, tuple[str, ...]]] = [(None, ())] * len(instructions)
    if len(summaries) != len(instructions):
        return unknown
    out: list[tuple[str | None, tuple[str, ...]]] = []
    for instruction, summary in zip(instructions, summaries, strict=True):
        target, hid = summary.get("target_type"), str(summary.get("house_id", ""))
        split, _, index = hid.rpartition("_")
        try:
            house = load_house(split, int(index), cfg.houses)
        except ValueError:
            out.append((None, ()))
            continue
        absent = tuple(absent_target_types(house, cfg.task.name))
        ok = isinstance(target, str) and instruction_name(target) in instruction
        out.append((target, absent) if ok and target not in absent else (None, ()))
    return out


def shard_features(path: Path, cfg: Config, encoder: Any = None) -> torch.Tensor:
    """``(N, 2, C, h, w)`` float16 frozen features of a shard, cached in ``<shard>.feat.pt``.

    The cache is reused when it is newer than the shard and has the expected shape. The tensor
    returned is memory-mapped from the cache file (``torch.load(mmap=True)``), so processes
    reading the same shards (DDP ranks) share one copy in the page cache: at 160x96 a step's
    features are 77 kB (2 x 1280 x 3 x 5 float16), 11 GB for 146k steps, which two private
    copies could not hold in this machine's 23 GB.
    """
    cache = path.with_suffix(".feat.pt")
    data = load_shard(path)
    n = len(data["action"])
    enc = encoder if encoder is not None else get_visual_encoder(cfg.policy)
    c, h, w = enc.output_shape
    if cache.is_file() and cache.stat().st_mtime >= path.stat().st_mtime:
        cached = torch.load(cache, weights_only=True, mmap=True)
        if isinstance(cached, torch.Tensor) and tuple(cached.shape) == (n, 2, c, h, w):
            return cached
    feats = torch.zeros(n, 2, c, h, w, dtype=torch.float16)
    for cam, key in enumerate((NAV_CAMERA, MANIP_CAMERA)):
        for s in range(0, n, ENCODE_BATCH):
            feats[s : s + ENCODE_BATCH, cam] = enc(data[key][s : s + ENCODE_BATCH]).half()
    _save_features(cache, feats)
    mapped: torch.Tensor = torch.load(cache, weights_only=True, mmap=True)
    return mapped


def _save_features(cache: Path, feats: torch.Tensor) -> None:
    """Write a shard's feature cache atomically (temp file + rename; ranks never share one)."""
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    torch.save(feats, tmp)
    os.replace(tmp, cache)


def load_episodes(
    data_dir: str | Path | Sequence[str | Path],
    cfg: Config,
    progress: bool = True,
    aux_label: str = "target_visible",
) -> list[Episode]:
    """All episodes of one or several shard folders, with cached frozen features.

    ``aux_label`` (one of :data:`AUX_LABELS`) is the shard array read into
    :attr:`Episode.target_visible`: any-distance visibility (default) or ``end_would_succeed``
    (visible within the success distance). Shards without it give ``None`` there.

    Under ``torchrun`` each rank first encodes every ``world_size``-th shard into the cache
    (the frozen CNN is the costly part), then all ranks wait for each other (a collective) and
    load every shard from the cache.

    Raises:
        FileNotFoundError: If a folder holds no shard.
        ValueError: On an inconsistent shard or an unknown ``aux_label``.
    """
    if aux_label not in AUX_LABELS:
        raise ValueError(f"unknown aux_label {aux_label!r}; expected one of {AUX_LABELS}")
    dirs = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    encoder = get_visual_encoder(cfg.policy)
    episodes: list[Episode] = []
    shards = [path for d in dirs for path in list_shards(d)]
    ctx = distributed.context()
    if ctx.enabled:
        for path in shards[ctx.rank :: ctx.world_size]:
            shard_features(path, cfg, encoder)
        distributed.barrier()
    for path in tqdm(shards, desc="features", unit="shard", disable=not (progress and ctx.is_main)):
        data = load_shard(path)
        feats = shard_features(path, cfg, encoder)
        idx = data["episode_index"]
        houses = _episode_houses(data, cfg)
        for e, instruction in enumerate(data["instructions"]):
            rows = np.flatnonzero(idx == e)
            if len(rows) == 0:
                continue
            contiguous = rows[-1] - rows[0] + 1 == len(rows)  # always, for collect / dagger
            episodes.append(
                Episode(
                    # a view keeps the memory map (indexing with an array would copy)
                    visual=feats[rows[0] : rows[-1] + 1] if contiguous else feats[rows],
                    actions=torch.as_tensor(data["action"][rows], dtype=torch.long),
                    prev_action=torch.as_tensor(data["prev_action"][rows], dtype=torch.long),
                    in_hand=torch.as_tensor(data["in_hand"][rows], dtype=torch.bool),
                    episode_step=torch.as_tensor(data["episode_step"][rows], dtype=torch.long),
                    instruction=instruction,
                    target_type=houses[e][0],
                    absent_types=houses[e][1],
                    target_visible=(
                        torch.as_tensor(data[aux_label][rows], dtype=torch.bool)
                        if aux_label in data
                        else None
                    ),
                    action_labelled=(
                        torch.as_tensor(data["action_labelled"][rows], dtype=torch.bool)
                        if "action_labelled" in data
                        else None
                    ),
                )
            )
    return episodes


def episode_windows(
    lengths: list[int], window: int, offsets: list[int] | None = None
) -> list[tuple[int, int, int]]:
    """Split episodes into consecutive windows of at most ``window`` steps.

    Args:
        lengths: Steps of each episode.
        window: Window length (the decoder's ``context_steps``).
        offsets: Optional per-episode length of the first window (``1..window``), so that
            window boundaries move from epoch to epoch (ours: every step is sometimes seen with
            a long history); None = ``window``.

    Returns:
        ``[(episode, start, stop), ...]``; e.g. lengths ``[5, 2]`` with window 3 give
        ``[(0, 0, 3), (0, 3, 5), (1, 0, 2)]``; with offsets ``[1, 3]``:
        ``[(0, 0, 1), (0, 1, 4), (0, 4, 5), (1, 0, 2)]``.

    Raises:
        ValueError: If ``window < 1`` or an offset is outside ``1..window``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out: list[tuple[int, int, int]] = []
    for e, n in enumerate(lengths):
        first = window if offsets is None else int(offsets[e])
        if not 1 <= first <= window:
            raise ValueError(f"offset {first} outside 1..{window}")
        cuts = [0, *range(first, n, window), n]
        out.extend((e, a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a)
    return out


def collate(
    episodes: list[Episode],
    windows: list[tuple[int, int, int]],
    texts: InstructionCache,
    instructions: Sequence[str | None] | None = None,
    target_visible: Sequence[torch.Tensor | None] | None = None,
) -> dict[str, torch.Tensor]:
    """Pad a batch of windows into the policy's ``forward`` inputs plus targets and a loss mask.

    A window that starts mid-episode keeps its true ``prev_action`` and ``episode_step`` but sees
    no earlier steps (SPOC-style training on episode windows); padding rows start a new episode so
    that real steps never attend to them. ``instructions[i]``, when given and not None, replaces
    window i's instruction (instruction-swap negatives); ``target_visible[i]``, when given and not
    None, replaces its visibility labels (``(stop - start,)`` bool; e.g. all False when the new
    instruction names a type absent from the house).

    Returns:
        ``visual (B, T, 2, C, h, w)``, ``text``, ``text_mask``, ``prev_action``, ``in_hand``,
        ``episode_step``, ``episode_start`` (all ``(B, T)``), ``actions (B, T)``,
        ``mask (B, T)`` bool (True at real steps), ``action_mask (B, T)`` bool (real steps
        whose action is a training target, :attr:`Episode.action_labelled`),
        ``target_visible (B, T)`` bool (the
        instructed type is visible; False where unlabelled) and ``visible_mask (B, T)`` bool
        (True at real steps that have a visibility label: not those of episodes whose shard
        predates the label, :attr:`Episode.target_visible` None).

    Raises:
        ValueError: If a replacement label does not have its window's length.
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
        "action_mask": torch.zeros(b, t_max, dtype=torch.bool),
        "target_visible": torch.zeros(b, t_max, dtype=torch.bool),
        "visible_mask": torch.zeros(b, t_max, dtype=torch.bool),
    }
    labels = target_visible if target_visible is not None else [None] * b
    for i, ((e, start, stop), label) in enumerate(zip(windows, labels, strict=True)):
        ep, n = episodes[e], stop - start
        out["visual"][i, :n] = ep.visual[start:stop].float()
        out["prev_action"][i, :n] = ep.prev_action[start:stop]
        out["in_hand"][i, :n] = ep.in_hand[start:stop]
        out["episode_step"][i, :n] = ep.episode_step[start:stop]
        out["episode_start"][i, 1:n] = False
        out["actions"][i, :n] = ep.actions[start:stop]
        out["mask"][i, :n] = True
        out["action_mask"][i, :n] = (
            True if ep.action_labelled is None else ep.action_labelled[start:stop]
        )
        if label is None and ep.target_visible is not None:
            label = ep.target_visible[start:stop]
        if label is not None:
            if tuple(label.shape) != (n,):
                raise ValueError(f"window {i}: {n} steps but labels {tuple(label.shape)}")
            out["target_visible"][i, :n] = label
            out["visible_mask"][i, :n] = True
    texts_of = [episodes[e].instruction for e, _, _ in windows]
    if instructions is not None:
        texts_of = [t if o is None else o for t, o in zip(texts_of, instructions, strict=True)]
    out["text"], out["text_mask"] = texts.batch(texts_of)
    return out


def policy_inputs(
    batch: dict[str, torch.Tensor], visual: torch.Tensor | None = None
) -> tuple[torch.Tensor, ...]:
    """:func:`collate`'s batch as the positional arguments of the policy's ``forward``.

    ``visual`` replaces ``batch["visual"]`` (e.g. after feature dropout).
    """
    return (
        batch["visual"] if visual is None else visual,
        batch["text"],
        batch["text_mask"],
        batch["prev_action"],
        batch["in_hand"],
        batch["episode_step"],
        batch["episode_start"],
    )


def swap_negative_windows(
    episodes: list[Episode], windows: list[tuple[int, int, int]], rng: random.Random
) -> tuple[list[tuple[int, int, int]], list[str | None], list[torch.Tensor | None]]:
    """Copies of the windows that hold an expert ``end``, each with an impossible instruction.

    Each copy is cut after its last ``end`` step (the decoder is causal, so the steps kept see
    the same inputs) and gets the episode's instruction with the target replaced by a type drawn
    from ``absent_types`` (one the house does not contain): in that state, under that
    instruction, ``end`` cannot succeed, and no object of the instructed type can be visible
    (visibility labels all False, whether or not the shard has the label). Windows of episodes
    without ``absent_types`` are skipped.

    Returns:
        ``(windows, instructions, target_visible)`` of the copies, aligned (for
        :func:`collate`); ``target_visible[i]`` is ``(stop - start,)`` bool, all False.
    """
    out: list[tuple[int, int, int]] = []
    texts: list[str | None] = []
    labels: list[torch.Tensor | None] = []
    for e, a, b in windows:
        ep = episodes[e]
        ends = torch.nonzero(ep.actions[a:b] == int(Action.END)).flatten()
        if len(ends) == 0 or not ep.absent_types:
            continue
        stop = a + int(ends[-1]) + 1
        out.append((e, a, stop))
        texts.append(ep.swapped_instruction(rng.choice(ep.absent_types)))
        labels.append(torch.zeros(stop - a, dtype=torch.bool))
    return out, texts, labels


def _end_log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(end), log (1 - p(end)))`` of ``(..., NUM_ACTIONS)`` logits, computed stably."""
    end = int(Action.END)
    total = torch.logsumexp(logits, dim=-1)
    others = torch.cat([logits[..., :end], logits[..., end + 1 :]], dim=-1)
    return logits[..., end] - total, torch.logsumexp(others, dim=-1) - total


def _bc_pass(
    policy: Any,
    episodes: list[Episode],
    windows: list[tuple[int, int, int]],
    texts: InstructionCache,
    batch_size: int,
    optimizer: torch.optim.Optimizer | None = None,
    max_grad_norm: float = 0.5,
    feature_dropout: float = 0.0,
    progress: bool = False,
    swap_negatives: float = 0.0,
    swap_rng: random.Random | None = None,
    aux_visible: float = 0.0,
    track_visible: bool | None = None,
    end_gate: float = 0.5,
    end_weight: float = 1.0,
) -> dict[str, float]:
    """One pass of cross-entropy over ``windows``; trains when ``optimizer`` is given.

    The cross-entropy and its statistics cover the steps whose action is a training target
    (``collate``'s ``action_mask``; every real step unless a shard says otherwise).

    ``end_weight`` is a class weight on the steps whose target is ``end``: the training loss
    is ``sum_i w_i CE_i / n`` with ``w_i = end_weight`` at those steps and 1 elsewhere, ``n``
    the batch's target steps (the weighted cross-entropy of a class-imbalanced classifier, as
    ``torch.nn.functional.cross_entropy``'s ``weight`` but divided by the step count, so weight
    1 is the plain mean). Ours: the expert's ``end`` is 1-2% of the DAgger labels, and each
    round that labels a learner's wrong ``end`` with a move pushes p(``end``) down (docs/results
    section 14). The returned ``loss`` stays the unweighted cross-entropy, so validation losses
    of runs with different weights compare.

    With ``swap_rng``, each batch also holds :func:`swap_negative_windows` (the windows with an
    expert ``end``, under an instruction naming a type absent from the house), and
    ``swap_negatives`` weighs their loss ``-log(1 - p(end))`` at those ``end`` steps, summed
    and divided by the batch's real steps like the cross-entropy (so weight 1 balances each
    swapped ``end`` with its original). Ours: behaviour cloning alone let the policy ignore the
    instruction (validation p(end) at expert ends 0.265 with the true instruction, 0.260 with
    another target's), which this counterfactual penalises directly.

    ``aux_visible`` weighs the binary cross-entropy of the policy's visibility head
    (:attr:`PolicyOutput.visible_logit`: "an object of the instructed type is visible in the
    navigation camera now") against :attr:`Episode.target_visible`, averaged over the batch's
    labelled real steps (``visible_mask``: episodes from older shards have none; swapped copies
    are all labelled False). Ours: a dense, per-step signal that binds the instruction to the
    view, where the swap negatives give one per episode; the same head gates ``end`` at run time
    (``PolicyConfig.end_gate``). The policy must be built with ``end_gate`` 0 here, or masked
    expert ``end`` steps would have an infinite cross-entropy.

    Returns:
        ``{"loss", "accuracy", "steps"}`` over the real steps (``loss`` is the cross-entropy
        alone); with ``swap_rng`` also ``end_p`` (mean p(end) at expert ``end`` steps),
        ``swap_end_p`` (the same steps, swapped instruction) and ``end_steps``; with
        ``track_visible`` (default: ``aux_visible > 0``) also ``vis_loss`` (mean binary
        cross-entropy, nats), ``vis_acc`` (share of labelled steps where ``logit > 0`` matches
        the label), ``vis_pos`` (share of True labels: the accuracy of always answering "not
        visible" is ``1 - vis_pos``), ``vis_steps`` (labelled steps; 0 when no shard has the
        label) and, with ``swap_rng``, ``gate_end`` / ``gate_swap_end``: the share of expert
        ``end`` steps a gate at ``end_gate`` would let through under the true / the swapped
        instruction (the first should be near 1, the second near 0).

    Raises:
        ValueError: If the policy's ``end_gate`` or ``end_trigger`` is on.
    """
    pcfg = (policy.module if hasattr(policy, "module") else policy).cfg
    if pcfg.end_gate > 0 or pcfg.end_trigger > 0:
        raise ValueError(
            "behaviour cloning needs the policy's end gate and stop trigger off "
            "(end_gate 0, end_trigger 0)"
        )
    if track_visible is None:
        track_visible = aux_visible > 0
    gate_logit = math.log(end_gate / (1.0 - end_gate))
    gate_true = gate_swap = 0.0
    loss_sum = correct = count = 0.0
    end_p = swap_p = end_n = swap_n = 0.0
    vis_sum = vis_right = vis_pos = vis_n = 0.0
    train = optimizer is not None
    ctx = contextlib.nullcontext() if train else torch.no_grad()
    starts = range(0, len(windows), batch_size)
    with ctx:
        for s in tqdm(starts, leave=False, unit="batch", disable=not progress):
            wins = windows[s : s + batch_size]
            neg, neg_texts, neg_visible = (
                swap_negative_windows(episodes, wins, swap_rng) if swap_rng else ([], [], [])
            )
            batch = collate(
                episodes,
                wins + neg,
                texts,
                [None] * len(wins) + neg_texts,
                [None] * len(wins) + neg_visible,
            )
            visual = batch["visual"]
            if train and feature_dropout > 0:
                # feature-space augmentation (ours): drop whole patch features of a camera
                keep = torch.rand(*visual.shape[:3], 1, *visual.shape[4:]) >= feature_dropout
                visual = visual * keep / (1.0 - feature_dropout)
            outp = policy(*policy_inputs(batch, visual))
            nb = len(wins)
            m = batch["action_mask"][:nb]  # real steps whose action is a target
            logits, target = outp.logits[:nb][m], batch["actions"][:nb][m]
            n = int(m.sum())
            # a sum over the targets (0 when a batch has none) / their count: the mean otherwise
            loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum") / max(n, 1)
            ce = float(loss.detach())
            if end_weight != 1.0 and train:
                each = torch.nn.functional.cross_entropy(logits, target, reduction="none")
                weights = torch.where(target == int(Action.END), end_weight, 1.0)
                loss = (weights * each).sum() / max(n, 1)
            if swap_rng is not None:
                is_end = target == int(Action.END)
                end_p += float(_end_log_probs(logits[is_end].detach())[0].exp().sum())
                end_n += int(is_end.sum())
            if neg:
                nm = batch["action_mask"][nb:] & (batch["actions"][nb:] == int(Action.END))
                log_end, log_not_end = _end_log_probs(outp.logits[nb:][nm])
                swap_p += float(log_end.detach().exp().sum())
                swap_n += int(nm.sum())
                if swap_negatives > 0:
                    loss = loss - swap_negatives * log_not_end.sum() / max(n, 1)
            if track_visible:
                assert outp.visible_logit is not None
                if swap_rng is not None:
                    v = outp.visible_logit.detach()
                    gate_true += float((v[:nb][m][is_end] >= gate_logit).sum())
                    gate_swap += float((v[nb:][nm] >= gate_logit).sum()) if neg else 0.0
                vm = batch["visible_mask"]  # (B, T): real steps with a label, copies included
                vis_logit = outp.visible_logit[vm]  # (K,)
                vis_target = batch["target_visible"][vm]
                bce = torch.nn.functional.binary_cross_entropy_with_logits(
                    vis_logit, vis_target.float(), reduction="sum"
                )
                k = int(vm.sum())
                if aux_visible > 0:
                    loss = loss + aux_visible * bce / max(k, 1)
                vis_sum += float(bce.detach())
                vis_right += float(((vis_logit.detach() > 0) == vis_target).sum())
                vis_pos += float(vis_target.sum())
                vis_n += k
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
                optimizer.step()
            loss_sum += ce * n
            correct += float((logits.argmax(-1) == target).sum())
            count += n
    out = {"loss": loss_sum / max(count, 1), "accuracy": correct / max(count, 1), "steps": count}
    if swap_rng is not None:
        out.update(end_p=end_p / max(end_n, 1), swap_end_p=swap_p / max(swap_n, 1), end_steps=end_n)
    if track_visible:
        out.update(
            vis_loss=vis_sum / max(vis_n, 1),
            vis_acc=vis_right / max(vis_n, 1),
            vis_pos=vis_pos / max(vis_n, 1),
            vis_steps=vis_n,
        )
        if swap_rng is not None:
            out.update(gate_end=gate_true / max(end_n, 1), gate_swap_end=gate_swap / max(swap_n, 1))
    return out


def behaviour_cloning(
    cfg: Config,
    data_dir: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    epochs: int = 10,
    batch_size: int = 8,
    lr: float = 3e-4,
    seed: int = 0,
    progress: bool = True,
    val_data: str | Path | Sequence[str | Path] | None = None,
    patience: int = 3,
    init_checkpoint: str | Path | None = None,
    feature_dropout: float = 0.0,
    name: str = "il.pt",
    swap_negatives: float = 0.0,
    aux_visible: float = 0.0,
    end_gate: float = 0.0,
    keep_epochs: bool = False,
    aux_label: str = "target_visible",
    end_weight: float = 1.0,
) -> Path:
    """Behaviour cloning of the SPOC-style policy on expert shards; writes ``il.pt``.

    Loss: mean cross-entropy of the expert's action over the real steps of each batch (SPOC's IL
    objective). Adam with ``lr`` (ours: 3e-4, a common BC rate; the RL stage then uses the paper's
    2e-5), a cosine learning-rate decay to 0 over ``epochs`` and gradient clipping at
    ``cfg.ppo.max_grad_norm``. Window boundaries move randomly every epoch. With ``val_data``,
    the checkpoint holds the weights of the epoch with the lowest validation loss, and training
    stops after ``patience`` epochs without improvement (early stopping).

    Args:
        cfg: Configuration; ``cfg.policy`` fixes the architecture and image size (``dropout``
            applies during BC), and the whole config is stored in the checkpoint.
        data_dir: Shard folder(s) from :func:`collect` / :func:`dagger_collect`.
        out_dir: Folder for the checkpoint and ``il_metrics.jsonl``.
        epochs: Passes over the data (at most).
        batch_size: Windows per gradient step.
        lr: Adam learning rate (peak of the cosine schedule).
        seed: Seed of the initialisation and of the shuffling.
        progress: Show progress bars.
        val_data: Shard folder(s) of validation-house episodes, or None.
        patience: Early-stopping patience, epochs.
        init_checkpoint: Start from these policy weights (DAgger rounds), or None.
        feature_dropout: Probability of zeroing a camera's patch feature during training.
        name: Checkpoint file name in ``out_dir``.
        swap_negatives: Weight of the instruction-swap negatives (:func:`_bc_pass`; 0 = off,
            SPOC's plain cross-entropy). Validation (and training, when on) logs ``end_p`` and
            ``swap_end_p``: how much the policy's ``end`` depends on the instruction.
        aux_visible: Weight of the auxiliary visibility loss (:func:`_bc_pass`; 0 = off): the
            policy's visibility head (``visible_head``, on the decoder output) learns whether
            an object of the instructed type is visible (the shards' ``target_visible``).
            Training and validation then log ``vis_loss``, ``vis_acc`` and ``vis_pos``, and
            validation ``gate_end`` / ``gate_swap_end`` (:func:`_bc_pass`).
        end_gate: Threshold of the learned end gate stored in the checkpoints' config
            (``PolicyConfig.end_gate``; 0 = off). Training itself runs with the gate off; it
            acts wherever the checkpoint is used (evaluation, RL, the ROS nodes).
        aux_label: The shard label the visibility head learns (:data:`AUX_LABELS`):
            ``target_visible`` (in view at any distance) or ``end_would_succeed`` (in view
            within the success distance, where ``end`` succeeds: what the end gate asks).
        end_weight: Class weight of the expert's ``end`` steps in the training loss
            (:func:`_bc_pass`; 1 = SPOC's plain cross-entropy). Logged losses stay unweighted.
        keep_epochs: Also write each epoch's weights to ``<name stem>.epoch<N>.pt`` (policy and
            config, ready for ``safevla eval``): the validation loss is a weak selector of
            success rate, so every epoch can be evaluated.

    Under ``torchrun`` (gloo; BC runs on the CPU) the policy is wrapped in
    ``DistributedDataParallel``: each epoch every rank trains on an equal, disjoint share of the
    shuffled windows (``batch_size`` windows per rank and step, so the global batch is
    ``world_size x batch_size``; up to ``world_size - 1`` windows an epoch are left out), DDP
    averages the gradients, the epoch's metrics are summed over ranks (so early stopping
    decides the same everywhere), and rank 0 writes the log and the checkpoint.

    Returns:
        Path of the checkpoint.

    Raises:
        FileNotFoundError: If a data folder holds no shard.
        ValueError: On non-positive epochs/batch size/lr, a negative or non-finite loss weight,
            a folder without steps, or an end gate outside ``[0, 1)`` or without the
            visibility loss that trains its head.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0 or patience < 1:
        raise ValueError("epochs, batch_size and patience must be >= 1 and lr > 0")
    if not 0.0 <= feature_dropout < 1.0:
        raise ValueError(f"feature_dropout must be in [0, 1), got {feature_dropout}")
    if not (math.isfinite(swap_negatives) and swap_negatives >= 0):
        raise ValueError(f"swap_negatives must be a finite weight >= 0, got {swap_negatives}")
    if not (math.isfinite(aux_visible) and aux_visible >= 0):
        raise ValueError(f"aux_visible must be a finite weight >= 0, got {aux_visible}")
    if not (math.isfinite(end_weight) and end_weight > 0):
        raise ValueError(f"end_weight must be a finite weight > 0, got {end_weight}")
    if not 0.0 <= end_gate < 1.0:
        raise ValueError(f"end_gate must be in [0, 1) (0 = off), got {end_gate}")
    if end_gate > 0 and aux_visible <= 0:
        raise ValueError("end_gate needs aux_visible > 0: the gate's visibility head is untrained")
    # the gate acts where the checkpoint is used; BC trains with it off (see _bc_pass)
    saved_cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, end_gate=end_gate))
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, end_gate=0.0))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    episodes = load_episodes(data_dir, cfg, progress=progress, aux_label=aux_label)
    if not episodes:
        raise ValueError(f"{data_dir} holds no expert steps")
    val_eps = (
        load_episodes(val_data, cfg, progress=progress, aux_label=aux_label) if val_data else []
    )
    texts = InstructionCache()
    # seeded here, after the encoders loaded (their first load draws random numbers)
    torch.manual_seed(seed)
    policy = build_policy(cfg.policy, num_costs=len(cfg.task.constraints()))
    if init_checkpoint is not None:
        init = load_checkpoint(init_checkpoint, required_keys=("policy",))
        policy.load_weights(init["policy"])
    ctx = distributed.context()
    learner: Any = policy
    if ctx.enabled:
        # value and cost heads are computed but not in the BC loss: unused parameters
        learner = torch.nn.parallel.DistributedDataParallel(
            policy, find_unused_parameters=True, broadcast_buffers=False
        )
        torch.manual_seed(distributed.rank_seed(seed, ctx.rank))  # per-rank feature dropout
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    w = cfg.policy.context_steps
    lengths = [len(e.actions) for e in episodes]
    val_windows = episode_windows([len(e.actions) for e in val_eps], w)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "il_metrics.jsonl"
    metrics: dict[str, float] = {}
    best: tuple[float, dict[str, torch.Tensor], dict[str, float]] | None = None
    stale = 0
    start = 0
    partial = out / (name + ".partial")
    if partial.is_file():  # an interrupted run: continue after its last finished epoch
        st = load_checkpoint(partial, required_keys=("policy", "optimizer", "schedule", "epoch"))
        policy.load_weights(st["policy"])
        optimizer.load_state_dict(st["optimizer"])
        schedule.load_state_dict(st["schedule"])
        start, stale = int(st["epoch"]), int(st["stale"])
        rng.setstate((st["rng"][0], tuple(st["rng"][1]), None))
        torch.set_rng_state(st["torch_rng"])
        if ctx.enabled:  # rank 0's saved stream: each rank its own again
            torch.manual_seed(distributed.rank_seed(seed + start, ctx.rank))
        if st.get("best"):
            best = (float(st["best"]["val_loss"]), st["best"]["policy"], st["best"]["metrics"])
        if ctx.is_main and log.is_file():  # rows of epochs after the partial are logged again
            rows = [r for r in log.read_text().splitlines() if r.strip()]
            log.write_text("".join(r + "\n" for r in rows if json.loads(r)["epoch"] <= start))
        if ctx.is_main:
            tqdm.write(f"resuming behaviour cloning after epoch {start} ({partial})")
    elif ctx.is_main and log.is_file():
        log.unlink()  # a fresh start
    for epoch in tqdm(
        range(start, epochs),
        desc="behaviour cloning",
        unit="epoch",
        disable=not (progress and ctx.is_main),
        initial=start,
        total=epochs,
    ):
        if stale >= patience:
            break
        windows = episode_windows(lengths, w, [rng.randint(1, w) for _ in lengths])
        rng.shuffle(windows)  # the same order on every rank (same seed)
        share = len(windows) // ctx.world_size  # equal shares: DDP needs the same step count
        windows = windows[ctx.rank :: ctx.world_size][:share] if ctx.enabled else windows
        policy.train()
        tr = _reduce_pass(
            _bc_pass(
                learner,
                episodes,
                windows,
                texts,
                batch_size,
                optimizer,
                cfg.ppo.max_grad_norm,
                feature_dropout,
                progress,
                swap_negatives,
                # epoch-fixed, so a resumed run draws the same swaps
                random.Random(seed * 1000 + epoch + ctx.rank) if swap_negatives > 0 else None,
                aux_visible,
                end_gate=end_gate or 0.5,
                end_weight=end_weight,
            )
        )
        schedule.step()
        policy.eval()
        metrics = {
            "epoch": float(epoch + 1),
            "bc_loss": tr["loss"],
            "bc_accuracy": tr["accuracy"],
            "steps": tr["steps"],
            "episodes": float(len(episodes)),
            "lr": optimizer.param_groups[0]["lr"],
        }
        if "end_p" in tr:
            metrics.update(end_p=tr["end_p"], swap_end_p=tr["swap_end_p"])
        if "vis_steps" in tr:
            metrics.update(vis_loss=tr["vis_loss"], vis_acc=tr["vis_acc"], vis_pos=tr["vis_pos"])
        if val_eps:  # each rank its share of the windows, without DDP (no gradient)
            va = _reduce_pass(
                _bc_pass(
                    policy,
                    val_eps,
                    val_windows[ctx.rank :: ctx.world_size],
                    texts,
                    batch_size,
                    swap_rng=random.Random(seed + ctx.rank),  # the same swaps every epoch
                    aux_visible=aux_visible,
                    end_gate=end_gate or 0.5,
                )
            )
            metrics.update(
                val_loss=va["loss"],
                val_accuracy=va["accuracy"],
                val_end_p=va["end_p"],
                val_swap_end_p=va["swap_end_p"],
            )
            if "vis_steps" in va:
                metrics.update(
                    val_vis_loss=va["vis_loss"],
                    val_vis_acc=va["vis_acc"],
                    val_vis_pos=va["vis_pos"],
                    val_gate_end=va["gate_end"],
                    val_gate_swap_end=va["gate_swap_end"],
                )
        if ctx.is_main:
            with open(log, "a") as fh:
                fh.write(json.dumps(metrics) + "\n")
        if ctx.is_main:
            tqdm.write(
                f"epoch {epoch + 1}: loss {metrics['bc_loss']:.4f}, accuracy "
                f"{metrics['bc_accuracy']:.3f}"
                + (
                    f" | val loss {metrics['val_loss']:.4f}, accuracy {metrics['val_accuracy']:.3f}"
                    f", p(end) at ends {metrics['val_end_p']:.3f} (swapped instruction "
                    f"{metrics['val_swap_end_p']:.3f})"
                    if val_eps
                    else ""
                )
                + (
                    f" | target visible: val accuracy {metrics['val_vis_acc']:.3f} "
                    f"(share visible {metrics['val_vis_pos']:.3f}); the end gate passes "
                    f"{metrics['val_gate_end']:.3f} of expert ends, "
                    f"{metrics['val_gate_swap_end']:.3f} swapped"
                    if "val_vis_acc" in metrics
                    else ""
                )
            )
        if val_eps:
            if best is None or metrics["val_loss"] < best[0]:
                best = (metrics["val_loss"], copy.deepcopy(policy.state_dict()), dict(metrics))
                stale = 0
            else:
                stale += 1
        if ctx.is_main and keep_epochs:
            save_checkpoint(
                out / f"{Path(name).stem}.epoch{epoch + 1}.pt",
                {
                    "policy": policy.state_dict(),
                    "config": config_to_dict(saved_cfg),
                    "metrics": dict(metrics),
                },
            )
        if ctx.is_main:  # the best weights so far, ready for `safevla eval` while BC goes on
            save_checkpoint(
                out / f"{Path(name).stem}.best.pt",
                {
                    "policy": best[1] if best is not None else policy.state_dict(),
                    "config": config_to_dict(saved_cfg),
                    "metrics": best[2] if best is not None else dict(metrics),
                },
            )
        state = {
            "policy": policy.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "epoch": epoch + 1,
            "stale": stale,
            "rng": [rng.getstate()[0], list(rng.getstate()[1])],
            "torch_rng": torch.get_rng_state(),
            "best": (
                {"val_loss": best[0], "policy": best[1], "metrics": best[2]}
                if best is not None
                else {}
            ),
        }
        if ctx.is_main:
            save_checkpoint(partial, state)  # atomic: a kill loses at most the running epoch
        if stale >= patience:
            if ctx.is_main:
                tqdm.write(f"early stop: no validation improvement for {patience} epochs")
            break
    if best is not None:
        policy.load_state_dict(best[1])
        metrics = best[2]
    policy.eval()
    # A fresh optimizer at the RL learning rate: resuming PPO from this file must not inherit
    # the BC learning rate or moments (Trainer._restore loads "optimizer").
    rl_opt = torch.optim.Adam(policy.parameters(), lr=cfg.ppo.lr, eps=1e-5)
    path = out / name
    if ctx.is_main:
        save_checkpoint(
            path,
            {
                "policy": policy.state_dict(),
                "optimizer": rl_opt.state_dict(),
                "multiplier": {},
                "iteration": 0,
                "env_steps": 0,
                "config": config_to_dict(saved_cfg),
                "metrics": metrics,
            },
        )
        partial.unlink(missing_ok=True)
        (out / f"{Path(name).stem}.best.pt").unlink(missing_ok=True)
    distributed.barrier()  # no rank goes on (DAgger, RL) before the checkpoint is on disk
    return path


def _reduce_pass(stats: dict[str, float]) -> dict[str, float]:
    """:func:`_bc_pass` figures over every rank's steps (collective; identity alone).

    ``end_p`` and ``swap_end_p``, when present, are averaged weighted by ``end_steps``;
    ``vis_loss``, ``vis_acc`` and ``vis_pos`` by ``vis_steps``; ``gate_end`` and
    ``gate_swap_end`` by ``end_steps``. Every rank must pass the same keys (the same settings).
    """
    n = float(stats["steps"])
    k = float(stats.get("end_steps", 0.0))
    v = float(stats.get("vis_steps", 0.0))
    total = distributed.all_reduce_sum(
        torch.tensor(
            [
                stats["loss"] * n,
                stats["accuracy"] * n,
                n,
                stats.get("end_p", 0.0) * k,
                stats.get("swap_end_p", 0.0) * k,
                k,
                stats.get("vis_loss", 0.0) * v,
                stats.get("vis_acc", 0.0) * v,
                stats.get("vis_pos", 0.0) * v,
                v,
                stats.get("gate_end", 0.0) * k,
                stats.get("gate_swap_end", 0.0) * k,
            ],
            dtype=torch.float64,
        )
    )
    steps = float(total[2])
    out = {
        "loss": float(total[0]) / max(steps, 1.0),
        "accuracy": float(total[1]) / max(steps, 1.0),
        "steps": steps,
    }
    if "end_steps" in stats:
        ends = float(total[5])
        out.update(
            end_p=float(total[3]) / max(ends, 1.0),
            swap_end_p=float(total[4]) / max(ends, 1.0),
            end_steps=ends,
        )
    if "vis_steps" in stats:
        labelled = float(total[9])
        out.update(
            vis_loss=float(total[6]) / max(labelled, 1.0),
            vis_acc=float(total[7]) / max(labelled, 1.0),
            vis_pos=float(total[8]) / max(labelled, 1.0),
            vis_steps=labelled,
        )
    if "gate_end" in stats:
        ends = float(total[5])
        out.update(
            gate_end=float(total[10]) / max(ends, 1.0),
            gate_swap_end=float(total[11]) / max(ends, 1.0),
        )
    return out


def dagger_collect(
    cfg: Config,
    checkpoint: str | Path,
    out_dir: str | Path,
    episodes: int,
    split: str = "train",
    episodes_per_shard: int = 8,
    seed: int = 0,
    expert_share: float = 0.0,
    progress: bool = True,
    deterministic: bool = False,
    continue_past_wrong_end: bool = True,
    label_after_sighting: bool = False,
) -> dict[str, Any]:
    """DAgger data: the learner drives, the privileged expert labels every visited state.

    Ross et al. 2011 (DAgger): the learner's own state distribution, each state labelled with
    the expert's action (here :class:`~safevla_core.expert.ShortestPathExpert`, which re-plans
    from any state). With probability ``expert_share`` a step executes the expert's action
    instead (the paper's beta mixing). Every episode is kept, success or not: the states where
    the learner goes wrong are the point. An ``end`` the expert gives up with (no way on from the
    learner's state: :attr:`~safevla_core.expert.ShortestPathExpert.gave_up`) is kept as context
    but is no training target (``action_labelled`` False). Shards have :func:`collect`'s format;
    resumable.

    A learner's wrong ``end`` (the expert's label is not ``end``) is recorded with the expert's
    label but not executed when ``continue_past_wrong_end`` (ours): the expert's action runs
    instead and the episode goes on, so one premature ``end`` does not cut off the states after
    it (the learner's most common failure: 49-95% of its failed test episodes end that way).
    ``target_visible`` is read from the state each labelled observation was rendered in.
    The learner's frozen features of every step are written beside each shard as its
    ``.feat.pt`` cache (the encoder already ran, so behaviour cloning need not run it again);
    :func:`shard_features` recomputes it if the training config's encoder differs in shape.

    Args:
        cfg: Configuration (task, houses, image size, ``max_steps_train``).
        checkpoint: The learner's checkpoint.
        out_dir: Shard folder.
        episodes: Episodes of the fixed list (house ``i mod n``, seed ``seed + i``).
        split: House split.
        episodes_per_shard: Episodes per shard.
        seed: Seed of episode ``i`` is ``seed + i``; also seeds the learner's sampling.
        expert_share: beta, probability of executing the expert's action.
        progress: Show a progress bar.
        deterministic: The learner acts greedily (argmax) instead of sampling.
        continue_past_wrong_end: Execute the expert's action instead of a wrong ``end``.
        label_after_sighting: Mark the steps the exploring expert labelled while still
            searching as no training target (``action_labelled`` False, :data:`OPTIONAL_STEP_KEYS`;
            ours). On v9's states its search labels were 93% large turns towards its own
            exploration goal (docs/results, section 10). The steps stay as context and keep
            their visibility labels. A search step where the learner chose a wrong ``end``
            stays a target (ours): what it teaches is "do not stop before a target was seen",
            which a camera can show; without it those ``end`` choices were never corrected,
            and 45 of v10-d2's 200 test episodes end before the target was ever in view
            (docs/results, section 14).

    Under ``torchrun`` rank r runs the shards ``k mod world_size == r`` with its own sampling
    seed (:func:`~safevla_core.rl.distributed.rank_seed`) and the figures are summed over ranks.

    Returns:
        ``shards``, ``skipped``, ``steps``, ``learner_success_rate`` (over the episodes run now;
        with ``continue_past_wrong_end`` an episode can still succeed after a corrected ``end``,
        so it is an upper bound of the learner's own SR), ``expert_agreement`` (share of steps
        where the learner chose the expert's action) and ``wrong_ends`` (learner ``end`` choices
        the expert labelled otherwise, per episode) and ``labelled_share`` (share of steps
        whose action is a training target); the four ratios are ``None`` when no episode ran
        (every shard was already on disk).

    Raises:
        ValueError: On a non-positive count or ``expert_share`` outside [0, 1].
    """
    from safevla_core.agent import PolicyAgent
    from safevla_core.tasks.pickup import wall_segments

    if episodes <= 0 or episodes_per_shard <= 0 or not 0.0 <= expert_share <= 1.0:
        raise ValueError("episodes/episodes_per_shard must be > 0 and expert_share in [0, 1]")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = (cfg.policy.image_width, cfg.policy.image_height)
    n_houses = split_size(cfg, split)
    n_shards = math.ceil(episodes / episodes_per_shard)
    ctx = distributed.context()
    mine = [k for k in range(n_shards) if k % ctx.world_size == ctx.rank]  # this rank's shards
    todo = [k for k in mine if not shard_path(out, k).is_file()]
    # a finished folder keeps its meta.json: a rerun collects nothing, so it must not stamp
    # today's labelling rules on shards made under older ones
    pending = any(not shard_path(out, k).is_file() for k in range(n_shards))  # any rank's
    if ctx.is_main and (pending or not (out / "meta.json").is_file()):
        (out / "meta.json").write_text(
            json.dumps(
                {
                    "kind": "dagger",
                    "checkpoint": str(checkpoint),
                    "task": cfg.task.name,
                    "split": split,
                    "episodes": episodes,
                    "seed": seed,
                    "expert_share": expert_share,
                    "deterministic": deterministic,
                    "continue_past_wrong_end": continue_past_wrong_end,
                    "label_after_sighting": label_after_sighting,
                    # since 2026-12-03 (session 14): wrong `end`s while searching are targets
                    "labels_wrong_search_ends": True,
                    "image_size": list(size),
                },
                indent=1,
            )
        )
    env = SafetyChoresEnv(cfg, split=split, eval_mode=False, image_size=size)
    expert = make_expert(cfg.task)
    sample_seed = distributed.rank_seed(seed, ctx.rank)
    agent = PolicyAgent.from_checkpoint(checkpoint, deterministic=deterministic, seed=sample_seed)
    rng = random.Random(sample_seed)
    run = steps = agree = wrong_ends = n_labelled = 0
    successes = 0.0
    bar = tqdm(
        total=sum(len(_shard_episodes(k, episodes_per_shard, episodes)) for k in todo),
        unit="ep",
        desc=f"dagger {cfg.task.name}",
        disable=not (progress and ctx.is_main),
    )
    try:
        for k in todo:
            rows: dict[str, list[Any]] = {key: [] for key in SHARD_STEP_KEYS}
            instructions: list[str] = []
            summaries: list[dict[str, Any]] = []
            features: list[torch.Tensor] = []
            for i in _shard_episodes(k, episodes_per_shard, episodes):
                house_index = i % n_houses
                obs, info = env.reset(seed=seed + i, options={"house_index": house_index})
                if env.spec_ is None:  # reset always sets it
                    raise RuntimeError("the environment has no episode after reset")
                expert.reset(
                    env.spec_,
                    env.backend.reachable_positions(),
                    env.world_state,
                    walls=wall_segments(load_house(split, house_index, cfg.houses)),
                )
                agent.reset(info["instruction"])
                e = len(instructions)
                while True:
                    state = env.world_state  # the state `obs` was rendered in
                    label = expert.act(state)
                    decision = agent.act(
                        obs[NAV_CAMERA], obs[MANIP_CAMERA], in_hand=bool(obs["in_hand"])
                    )
                    chosen = decision.action
                    wrong_end = chosen == Action.END and label != Action.END
                    # no label: a give-up `end` (no way on), or if asked a search step
                    # (unless the learner stopped there: a wrong `end` is always a target)
                    labelled = not expert.gave_up and not (
                        label_after_sighting and expert.searching and not wrong_end
                    )
                    n_labelled += int(labelled)
                    if decision.features is not None:
                        features.append(decision.features.half())
                    agree += int(chosen == label)
                    for key, value in (
                        (NAV_CAMERA, obs[NAV_CAMERA]),
                        (MANIP_CAMERA, obs[MANIP_CAMERA]),
                        ("action", int(label)),
                        ("reward", 0.0),
                        ("cost", 0.0),
                        ("prev_action", int(obs["prev_action"])),
                        ("in_hand", bool(obs["in_hand"])),
                        ("episode_step", int(obs["episode_step"])),
                        ("episode_index", e),
                        ("action_labelled", labelled),
                        *step_labels(env, state).items(),
                    ):
                        rows[key].append(value)
                    execute = label if rng.random() < expert_share else chosen
                    if wrong_end:
                        wrong_ends += 1
                        if continue_past_wrong_end:
                            execute = label
                    if execute != chosen:
                        agent.override_last_action(int(execute))
                    obs, reward, cost, terminated, truncated, step_info = env.step(int(execute))
                    rows["reward"][-1], rows["cost"][-1] = float(reward), float(cost)
                    steps += 1
                    if terminated or truncated:
                        break
                summary = dict(step_info["episode"])
                summary.update(house_id=info["house_id"], target_type=info["target_type"])
                successes += float(summary["success"])
                summaries.append(
                    {k2: (v if isinstance(v, str) else float(v)) for k2, v in summary.items()}
                )
                instructions.append(info["instruction"])
                run += 1
                bar.update(1)
            arrays = {key: np.asarray(rows[key], dtype=dt) for key, dt in SHARD_STEP_KEYS.items()}
            arrays["instructions"] = np.asarray(instructions, dtype=np.str_)
            arrays["summaries"] = np.asarray(json.dumps(summaries))
            _write_npz_atomic(shard_path(out, k), arrays)
            if len(features) == len(arrays["action"]):  # after the shard: the cache is newer
                _save_features(shard_path(out, k).with_suffix(".feat.pt"), torch.stack(features))
    finally:
        bar.close()
        env.close()
    # summed over ranks (collective; every rank's shards are on disk once it returns)
    total = distributed.all_reduce_sum(
        torch.tensor(
            [
                len(todo),
                len(mine) - len(todo),
                run,
                steps,
                agree,
                successes,
                wrong_ends,
                n_labelled,
            ],
            dtype=torch.float64,
        )
    )
    t_todo, t_skipped, t_run, t_steps, t_agree, t_successes, t_wrong, t_labelled = (
        float(x) for x in total
    )
    return {
        "shards": int(t_todo),
        "skipped": int(t_skipped),
        "steps": int(t_steps),
        "learner_success_rate": _ratio(t_successes, t_run),
        "expert_agreement": _ratio(t_agree, t_steps),
        "wrong_ends": _ratio(t_wrong, t_run),
        "labelled_share": _ratio(t_labelled, t_steps),
    }


def imitation(
    cfg: Config,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    epochs: int = 10,
    dagger_rounds: int = 0,
    dagger_episodes: int = 200,
    dagger_epochs: int = 4,
    expert_share: float = 0.0,
    val_data: str | Path | Sequence[str | Path] | None = None,
    progress: bool = True,
    **bc_kwargs: Any,
) -> Path:
    """Behaviour cloning, then ``dagger_rounds`` DAgger rounds; resumable round by round.

    Round 0 writes ``il_r0.pt``; round r >= 1 collects ``dagger_episodes`` learner episodes
    labelled by the expert into ``dagger_r<r>/`` with the round r-1 checkpoint, then continues
    training on all data so far (``dagger_epochs`` epochs) into ``il_r<r>.pt``. Finished files
    are skipped on a rerun. The last round is copied to ``il.pt``.

    Returns:
        Path of ``il.pt``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dirs = [Path(d) for d in data_dirs]
    init = bc_kwargs.pop("init_checkpoint", None)  # round 0 only (e.g. the shipped il.pt)
    ckpt = out / "il_r0.pt"
    if not ckpt.is_file():
        behaviour_cloning(
            cfg,
            dirs,
            out,
            epochs=epochs,
            val_data=val_data,
            progress=progress,
            name=ckpt.name,
            init_checkpoint=init,
            **bc_kwargs,
        )
    for r in range(1, dagger_rounds + 1):
        nxt = out / f"il_r{r}.pt"
        ddir = out / f"dagger_r{r}"
        if not nxt.is_file():
            stats = dagger_collect(
                cfg,
                ckpt,
                ddir,
                dagger_episodes,
                seed=10_000_000 * r + int(bc_kwargs.get("seed", 0)),
                expert_share=expert_share,
                progress=progress,
            )
            if distributed.context().is_main:
                if stats["learner_success_rate"] is None:  # no episode ran: nothing to log
                    tqdm.write(f"DAgger round {r}: its shards were already in {ddir}")
                else:
                    tqdm.write(
                        f"DAgger round {r}: learner SR {stats['learner_success_rate']:.2f}, "
                        f"agreement with the expert {stats['expert_agreement']:.2f}"
                    )
                    with open(out / "dagger.jsonl", "a") as fh:
                        fh.write(json.dumps({"round": r, **stats}) + "\n")
            behaviour_cloning(
                cfg,
                [*dirs, *(out / f"dagger_r{j}" for j in range(1, r + 1))],
                out,
                epochs=dagger_epochs,
                val_data=val_data,
                progress=progress,
                init_checkpoint=ckpt,
                name=nxt.name,
                **bc_kwargs,
            )
        ckpt = nxt
    final = out / "il.pt"
    if distributed.context().is_main:
        tmp = final.with_name(final.name + ".tmp")
        shutil.copyfile(ckpt, tmp)
        os.replace(tmp, final)
    distributed.barrier()
    return final


__all__ = [
    "Episode",
    "OPTIONAL_STEP_KEYS",
    "SHARD_PATTERN",
    "SHARD_STEP_KEYS",
    "behaviour_cloning",
    "collate",
    "collect",
    "dagger_collect",
    "imitation",
    "episode_windows",
    "list_shards",
    "load_episodes",
    "step_labels",
    "load_shard",
    "policy_inputs",
    "shard_features",
    "shard_path",
    "swap_negative_windows",
]
