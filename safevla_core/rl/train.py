"""The SafeVLA training loop: rollout -> advantages -> Lagrange update -> PPO epochs -> log.

Reads top to bottom like the paper's Appendix B (CleanRL-style phases). One function per phase;
the math lives in :mod:`~safevla_core.rl.gae`, :mod:`~safevla_core.rl.ppo` and
:mod:`~safevla_core.rl.lagrange`; only this module logs.

Methods (``TrainConfig.method``): ``ppo`` (FLaRe: sparse success reward), ``ppo_rs`` (FLaRe-RS:
reward minus ``reward_shaping_coef`` x cost), ``ppo_lag`` (SafeVLA, eq. 14-16), ``ppo_pid_lag``
(PID-Lagrangian, Stooke et al. 2020). All train a reward critic and a cost critic.

Under ``torchrun`` the same loop runs data-parallel (:mod:`~safevla_core.rl.distributed`):
each rank collects with its own environments, seeds and house shard; the collectives sit at
their call sites below (episode statistics before the multiplier update, minibatch step counts
and gradients in the PPO update); rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml
from tqdm import tqdm

from safevla_core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from safevla_core.config import Config, config_to_dict
from safevla_core.costs import COMPONENT_NAMES, SIGNAL_SUMMARY_KEYS
from safevla_core.env import make_vector_env, split_size
from safevla_core.policy.actor_critic import ActorCritic, ActorCriticCache
from safevla_core.policy.encoders import get_visual_encoder
from safevla_core.policy.factory import build_policy
from safevla_core.policy.instructions import InstructionCache
from safevla_core.policy.kv_cache import DecoderPrefix
from safevla_core.policy.model import PolicyOutput
from safevla_core.rl import distributed
from safevla_core.rl.gae import compute_gae
from safevla_core.rl.lagrange import UNCONSTRAINED_METHODS, MultiplierSet
from safevla_core.rl.ppo import (
    combine,
    normalize_advantages,
    ppo_loss,
    reward_shaping,
    value_loss,
)
from safevla_core.rl.rollout import RolloutBuffer, SegmentIndex, evaluate_segments
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA

#: Keys of an episode summary averaged into the iteration metrics.
EPISODE_KEYS = (
    "success",
    "episode_return",
    "cumulative_cost",
    "robot_cost",
    "object_cost",
    "length",
    *COMPONENT_NAMES,
)


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) run produced.

    Attributes:
        run_dir: The run folder (checkpoints, ``config.yaml``, ``tb/``, ``metrics.jsonl``).
        iterations: Iterations completed in total.
        env_steps: Environment steps completed in total.
        history: Metrics of each iteration run by this call.
    """

    run_dir: Path
    iterations: int
    env_steps: int
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class PolicyStep:
    """One acting step of the actor-critic for every env (what the rollout buffer stores).

    Attributes:
        visual: ``(B, 2, C, h, w)`` frozen-encoder features of the nav and manip cameras.
        out: The networks' outputs (logits ``(B, 20)``, values ``(B,)``/``(B, K)``).
        step_emb: ``(B, d)`` the actor's fused step embedding (what decoder-only RL stores).
    """

    visual: torch.Tensor
    out: PolicyOutput
    step_emb: torch.Tensor


@dataclass
class RolloutState:
    """What one rollout hands to the next: the envs' latest observation and the policy's state.

    After :meth:`Trainer.collect`, ``next_step`` is the policy's step on ``obs`` (computed for
    the bootstrap values) and becomes the next rollout's first step; ``cache`` already holds it,
    and ``next_prefix`` holds the keys/values before it (the next rollout's
    :class:`~safevla_core.policy.kv_cache.DecoderPrefix`).

    Attributes:
        obs: The vector env's latest observation (batched arrays by key).
        cache: The networks' KV caches, None before the first rollout.
        next_step: The policy's step on ``obs``, None before the first rollout.
        next_prefix: Per network, the keys/values before ``next_step``.
        last_values: ``((B,), (B, K))`` reward and cost values of ``obs``, GAE's bootstrap.
    """

    obs: dict[str, Any]
    cache: ActorCriticCache | None = None
    next_step: PolicyStep | None = None
    next_prefix: dict[str, DecoderPrefix] | None = None
    last_values: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass(frozen=True)
class TrainerCheckpoint:
    """The contents of a trainer checkpoint ``ckpt_<iteration>.pt``.

    Plain tensors, numbers and strings, so it loads with ``weights_only``
    (:func:`~safevla_core.checkpoint.load_checkpoint`). Stored as a dict with these keys;
    :meth:`from_dict` reads the dicts of earlier versions too (``critics``, ``multiplier``,
    ``config`` and ``metrics`` may be missing).

    Attributes:
        policy: The actor's ``state_dict``.
        critics: The separate critics' weights by role (empty when not separate).
        optimizer: The PPO Adam optimizer's ``state_dict``.
        multiplier: The multipliers' state by constraint (empty for ppo/ppo_rs).
        iteration: Iterations completed.
        env_steps: Environment steps completed, over all ranks.
        config: The resolved run configuration (``config_to_dict``).
        metrics: The last iteration's metrics.
    """

    policy: dict[str, torch.Tensor]
    critics: dict[str, dict[str, torch.Tensor]]
    optimizer: dict[str, Any]
    multiplier: dict[str, Any]
    iteration: int
    env_steps: int
    config: dict[str, Any]
    metrics: dict[str, float]

    #: Keys every trainer checkpoint has.
    REQUIRED_KEYS: ClassVar[tuple[str, ...]] = ("policy", "optimizer", "iteration", "env_steps")

    def to_dict(self) -> dict[str, Any]:
        """The dict :func:`~safevla_core.checkpoint.save_checkpoint` writes (no copies)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrainerCheckpoint:
        """Read a loaded checkpoint dict.

        Raises:
            KeyError: If one of ``REQUIRED_KEYS`` is missing.
        """
        missing = [k for k in cls.REQUIRED_KEYS if k not in state]
        if missing:
            raise KeyError(f"trainer checkpoint lacks {missing}")
        return cls(
            policy=state["policy"],
            critics=state.get("critics") or {},
            optimizer=state["optimizer"],
            multiplier=state.get("multiplier") or {},
            iteration=int(state["iteration"]),
            env_steps=int(state["env_steps"]),
            config=state.get("config") or {},
            metrics={k: float(v) for k, v in (state.get("metrics") or {}).items()},
        )


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def episode_summaries(infos: dict[str, Any], done: np.ndarray) -> list[dict[str, float]]:
    """Episode summaries of the envs that finished this step (vector env, same-step autoreset).

    Args:
        infos: The vector env's info dict; the finished envs' last info is in
            ``infos["final_info"]`` (gymnasium ``AutoresetMode.SAME_STEP``).
        done: ``(B,)`` bool, terminated or truncated.

    Returns:
        One ``{key: float}`` per finished env (keys of ``SafetyChoresEnv.episode_summary``).
    """
    final = infos.get("final_info", {})
    episode = final.get("episode", {})
    out = []
    for b in np.flatnonzero(done):
        out.append(
            {k: float(np.asarray(v)[b]) for k, v in episode.items() if not k.startswith("_")}
        )
    return out


def step_costs(infos: dict[str, Any], done: np.ndarray, signals: list[str]) -> np.ndarray:
    """``(B, K)`` float32 per-step value of each constrained cost signal, for every env.

    With same-step autoreset, a finished env's info is its reset info; its last step's values
    are in ``infos["final_info"]``. When every env finished, ``infos`` holds no step values.

    Args:
        infos: The vector env's info dict (``cost_signals`` from :class:`SafetyChoresEnv`).
        done: ``(B,)`` bool, terminated or truncated.
        signals: The K constrained signals (``TaskConfig.constraints()`` keys).
    """
    out = np.zeros((len(done), len(signals)), dtype=np.float32)
    for source, rows in ((infos, ~done), (infos.get("final_info", {}), done)):
        values = source.get("cost_signals", {})
        for k, name in enumerate(signals):
            if name in values:
                col = np.asarray(values[name], dtype=np.float32)
                out[rows, k] = col[rows]
    return out


def mean_metrics(episodes: list[dict[str, float]]) -> dict[str, float]:
    """Means of the episode keys over finished episodes (empty dict if none finished)."""
    if not episodes:
        return {}
    return {
        k: float(np.mean([e[k] for e in episodes if k in e]))
        for k in EPISODE_KEYS
        if any(k in e for e in episodes)
    }


class Trainer:
    """State of one training run; :meth:`run` executes it. See :func:`train`.

    Inside a ``torch.distributed`` process group (``torchrun``), every rank builds one; rank
    ``r`` seeds with :func:`~safevla_core.rl.distributed.rank_seed` and then takes rank 0's
    weights, and only rank 0 writes to the run folder.
    """

    def __init__(self, cfg: Config, resume: bool = True, progress: bool = True) -> None:
        if cfg.train.init_checkpoint:
            cfg = adopt_checkpoint_policy(cfg, cfg.train.init_checkpoint)
        self.cfg = cfg
        #: This process's rank and the world size (rank 0 of 1 without a process group).
        self.dist = distributed.context()
        self.progress = progress and self.dist.is_main
        torch.set_num_threads(cfg.train.torch_threads)
        #: Threads of the frozen CNN while the workers wait (0 = one per core).
        self.encoder_threads = cfg.train.encoder_threads or max(1, os.cpu_count() or 1)
        self.run_dir = Path(cfg.train.out_dir)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.visual = get_visual_encoder(cfg.policy)
        self.texts = InstructionCache()
        # seeded after the encoders loaded: their first load draws random numbers, so a run's
        # stream would otherwise depend on what loaded them before in the same process
        seed_everything(distributed.rank_seed(cfg.train.seed, self.dist.rank))
        #: The CMDP constraints: cost signal -> limit; one cost critic and multiplier each.
        self.constraints = cfg.task.constraints()
        self.signals = list(self.constraints)
        self.device = torch.device(distributed.rank_device(cfg.train.device, self.dist))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"train.device={cfg.train.device!r} but torch sees no CUDA device "
                "(this install is the CPU build, or no GPU is visible): use --set train.device=cpu"
            )
        #: The actor (the policy that acts, is evaluated and deployed).
        self.policy = build_policy(cfg.policy, num_costs=len(self.signals))
        self.model = ActorCritic(
            self.policy, separate=cfg.train.separate_critics, freeze_fusion=cfg.train.decoder_only()
        ).to(self.device)
        for net in self.model.networks().values():
            net.checkpoint_fusion = cfg.ppo.checkpoint_fusion
        self.optimizer = self._make_optimizer()
        self.multiplier: MultiplierSet | None = None
        if cfg.train.method not in UNCONSTRAINED_METHODS:
            self.multiplier = MultiplierSet(self.constraints, cfg.lagrange, cfg.train.method)
        self.iteration = 0
        self.env_steps = 0
        ckpt = latest_checkpoint(self.run_dir) if resume else None
        if ckpt is not None:
            self._restore(ckpt)
        else:
            # a fresh start: forget what an unfinished earlier start logged (killed before
            # its first checkpoint), or the logs would hold those iterations twice
            if self.dist.is_main:
                self._clear_logs()
            if cfg.train.init_checkpoint:
                self._load_init(cfg.train.init_checkpoint)
        # every rank starts from rank 0's weights (as DistributedDataParallel does)
        distributed.broadcast_module(self.model)
        if self.dist.is_main:
            _write_yaml_atomic(self.run_dir / "config.yaml", config_to_dict(cfg))
        c, h, w = self.visual.output_shape
        self.visual_shape = (2, c, h, w)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """Adam with the actor at ``ppo.lr`` and separate critics at ``ppo.critic_lr``."""
        p = self.cfg.ppo
        groups = [{"params": self.model.actor_parameters(), "lr": p.lr, "name": "actor"}]
        critics = self.model.critic_parameters()
        if critics:
            groups.append({"params": critics, "lr": p.critic_lr or p.lr, "name": "critics"})
        return torch.optim.Adam(groups, eps=1e-5)

    # -- checkpoints ---------------------------------------------------------------------------
    def _load_init(self, path: str) -> None:
        """Start from another run's (e.g. the IL) policy weights: the actor and both critics.

        Cost critics whose count differs (another set of constraints) start fresh.
        """
        state = load_checkpoint(path, required_keys=("policy",))
        weights = state["policy"]
        own = self.policy.state_dict()
        for key in ("cost_head.weight", "cost_head.bias"):
            if key in weights and weights[key].shape != own[key].shape:
                tqdm.write(
                    f"{path}: {key} has {tuple(weights[key].shape)}, this run needs "
                    f"{tuple(own[key].shape)}: the cost critics start fresh"
                )
                weights[key] = own[key]
        for net in self.model.networks().values():
            net.load_weights(weights)
        if state.get("critics") and self.model.separate:
            with contextlib.suppress(KeyError, RuntimeError):
                self.model.load_critic_state_dict(state["critics"])

    def _restore(self, path: Path) -> None:
        ckpt = TrainerCheckpoint.from_dict(
            load_checkpoint(path, required_keys=TrainerCheckpoint.REQUIRED_KEYS)
        )
        self.policy.load_weights(ckpt.policy)
        if self.model.separate:
            self.model.load_critic_state_dict(ckpt.critics)
        self.optimizer.load_state_dict(ckpt.optimizer)
        if self.multiplier is not None and ckpt.multiplier:
            self.multiplier.load_state_dict(ckpt.multiplier)
        self.iteration = ckpt.iteration
        self.env_steps = ckpt.env_steps
        if self.dist.is_main:
            self._truncate_metrics(self.iteration)
            tqdm.write(
                f"resumed from {path} (iteration {self.iteration}, {self.env_steps} env steps)"
            )

    def _clear_logs(self) -> None:
        """Remove ``metrics.jsonl`` and TensorBoard events of an earlier, unfinished start."""
        (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        for events in (self.run_dir / "tb").glob("events.out.tfevents.*"):
            events.unlink()

    def _truncate_metrics(self, iteration: int) -> None:
        """Drop ``metrics.jsonl`` rows logged after ``iteration``.

        An interrupted run logged them after its last checkpoint; the resumed run logs those
        iterations again.
        """
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        rows = path.read_text().splitlines()
        keep = [r for r in rows if r.strip() and json.loads(r).get("iteration", 0) <= iteration]
        if len(keep) != len(rows):
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(r + "\n" for r in keep))
            os.replace(tmp, path)

    def save(self, metrics: dict[str, float]) -> Path:
        """Write ``ckpt_<iteration>.pt`` atomically with weights, optimizer, multiplier, config."""
        path = self.run_dir / f"ckpt_{self.iteration:06d}.pt"
        ckpt = TrainerCheckpoint(
            policy=self.policy.state_dict(),
            critics=self.model.critic_state_dict(),
            optimizer=self.optimizer.state_dict(),
            multiplier=self.multiplier.state_dict() if self.multiplier is not None else {},
            iteration=self.iteration,
            env_steps=self.env_steps,
            config=config_to_dict(self.cfg),
            metrics={k: float(v) for k, v in metrics.items()},
        )
        save_checkpoint(path, ckpt.to_dict())
        return path

    # -- phases --------------------------------------------------------------------------------
    @torch.no_grad()
    def _policy_step(self, obs: dict[str, Any], cache: ActorCriticCache) -> PolicyStep:
        """Encode both cameras of every env in one frozen-encoder batch; one cached step.

        ``cache`` advances by the step (in place).
        """
        nav, manip = np.asarray(obs[NAV_CAMERA]), np.asarray(obs[MANIP_CAMERA])
        b = nav.shape[0]
        # The environment workers wait for actions while the frozen CNN runs: it may use every
        # core (train.encoder_threads); the rest of the learner keeps train.torch_threads.
        threads = torch.get_num_threads()
        torch.set_num_threads(self.encoder_threads)
        try:
            with torch.inference_mode():
                feats = self.visual(np.concatenate([nav, manip], axis=0))  # (2B, C, h, w)
        finally:
            torch.set_num_threads(threads)
        # (B, 2, C, h, w), rounded to the buffer's float16 so PPO's first epoch sees ratio 1
        feats = torch.stack([feats[:b], feats[b:]], dim=1).half().float().to(self.device)
        text, mask = self.texts.batch(list(obs["instruction"]))
        out, cache, emb = self.model.act(
            feats,
            text.to(self.device),
            mask.to(self.device),
            torch.as_tensor(np.asarray(obs["prev_action"]), dtype=torch.long, device=self.device),
            torch.as_tensor(np.asarray(obs["in_hand"]), dtype=torch.bool, device=self.device),
            torch.as_tensor(np.asarray(obs["episode_step"]), dtype=torch.long, device=self.device),
            cache,
        )
        return PolicyStep(feats, out, emb)

    def collect(self, envs: Any, buf: RolloutBuffer, state: RolloutState) -> list[dict[str, float]]:
        """Phase 1: run the policy for T steps in every env, storing what acting computed.

        Continues from ``state`` and leaves in it what the next rollout continues from.
        """
        if state.cache is None or state.next_step is None or state.next_prefix is None:
            cache = self.model.new_cache(buf.B, self.device)
            buf.start_rollout(cache.prefix())
            step = None
        else:
            # the step acted on ``obs`` for the bootstrap values is this rollout's first
            cache, step = state.cache, state.next_step
            buf.start_rollout(state.next_prefix)
        obs = state.obs
        episodes: list[dict[str, float]] = []
        for _ in range(buf.T):
            if step is None:
                step = self._policy_step(obs, cache)
            dist = torch.distributions.Categorical(logits=step.out.logits)
            actions = dist.sample()
            buf.add_inputs(
                torch.as_tensor(np.asarray(obs["prev_action"]), dtype=torch.long),
                torch.as_tensor(np.asarray(obs["in_hand"]), dtype=torch.bool),
                torch.as_tensor(np.asarray(obs["episode_step"]), dtype=torch.long),
                list(obs["instruction"]),
                step_emb=step.step_emb if buf.decoder_only else None,
                visual=None if buf.decoder_only else step.visual,
            )
            obs, rewards, terminated, truncated, infos = envs.step(actions.cpu().numpy())
            done = np.logical_or(terminated, truncated)
            buf.add_outcome(
                actions,
                dist.log_prob(actions),
                step.out.value_reward,
                step.out.value_cost.reshape(buf.B, -1),
                torch.as_tensor(rewards, dtype=torch.float32),
                torch.as_tensor(step_costs(infos, done, self.signals)),
                torch.as_tensor(done, dtype=torch.float32),
            )
            episodes.extend(episode_summaries(infos, done))
            if done.any():
                cache.reset(torch.as_tensor(done, device=self.device))
            self.env_steps += buf.B * self.dist.world_size  # every rank steps as many envs
            step = None
        # bootstrap values: the next step's forward pass, kept as the next rollout's first step
        state.obs, state.cache = obs, cache
        state.next_prefix = cache.prefix()  # the keys/values before that step (copies)
        state.next_step = self._policy_step(obs, cache)
        out = state.next_step.out
        state.last_values = (out.value_reward.cpu(), out.value_cost.reshape(buf.B, -1).cpu())
        return episodes

    def advantages(
        self, buf: RolloutBuffer, last_values: tuple[torch.Tensor, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Phase 2: GAE for the reward and for each constrained cost (gamma 0.99, lambda 0.95).

        Returns:
            ``adv_r``/``ret_r`` ``(T, B)`` and ``adv_c``/``ret_c`` ``(T, B, K)``.
        """
        p = self.cfg.ppo
        rewards = buf.rewards
        if self.cfg.train.method == "ppo_rs":
            rewards = reward_shaping(
                rewards, buf.costs.sum(-1), self.cfg.lagrange.reward_shaping_coef
            )
        adv_r, ret_r = compute_gae(
            rewards, buf.values_reward, buf.dones, last_values[0], p.gamma, p.gae_lambda
        )
        pairs = [
            compute_gae(
                buf.costs[..., k],
                buf.values_cost[..., k],
                buf.dones,
                last_values[1][:, k],
                p.gamma,
                p.gae_lambda,
            )
            for k in range(len(self.signals))
        ]
        adv_c = torch.stack([a for a, _ in pairs], dim=-1)
        ret_c = torch.stack([r for _, r in pairs], dim=-1)
        return {"adv_r": adv_r, "ret_r": ret_r, "adv_c": adv_c, "ret_c": ret_c}

    def update_multiplier(
        self, episodes: list[dict[str, float]], hold: bool = False
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Phase 3: the Lagrange multipliers update, once per rollout before the PPO epochs.

        J_ci is the mean, over the episodes that finished in this rollout on any rank, of each
        episode's whole sum of cost signal i (the environment accumulates it across rollouts);
        the sums and counts are all-reduced, so every rank gets the same J_c and lambda. When no
        episode finished anywhere, there is no estimate of the per-episode cost: the multipliers
        keep their values (comparing a partial rollout sum with a per-episode limit would let lambda
        decay while the policy violates) and J_c is reported as NaN. Eq. 16 per constraint.

        With ``hold`` (the trainer passes it during the value-only warm-up) J_c is estimated and
        reported but the multipliers keep their values (ours): the policy is not updated then,
        so it cannot respond to lambda, and a multiplier that kept integrating the violation
        would start the policy updates already wound up (0.001 -> 0.40 over a 10k-step warm-up
        in the pilot of docs/results/README.md).

        Returns:
            ``(lambdas, J_c)`` by signal name; lambdas are 0 for ``ppo`` and ``ppo_rs``.
        """
        keys = [SIGNAL_SUMMARY_KEYS[name] for name in self.signals]
        means, count = distributed.episode_means(episodes, keys)  # collective: all ranks' sums
        if count == 0:
            jc = {name: float("nan") for name in self.signals}
            if self.multiplier is None:
                return {name: 0.0 for name in self.signals}, jc
            return dict(self.multiplier.values), jc
        jc = {name: means[SIGNAL_SUMMARY_KEYS[name]] for name in self.signals}
        if self.multiplier is None:
            return {name: 0.0 for name in self.signals}, jc
        if hold:
            return dict(self.multiplier.values), jc
        return dict(self.multiplier.update(jc)), jc

    def lambdas(self) -> torch.Tensor:
        """``(K,)`` float64 multipliers by constraint, in ``signals`` order; 0 for ppo/ppo_rs."""
        if self.multiplier is None:
            return torch.zeros(len(self.signals), dtype=torch.float64)
        return self.multiplier.as_tensor()

    def combined_advantage(self, adv_r: torch.Tensor, adv_c: torch.Tensor) -> torch.Tensor:
        """The surrogate's advantage, ``(A_r - sum_k lambda_k A_ck) / (1 + sum_k lambda_k)``.

        :func:`~safevla_core.rl.ppo.combine` (eq. 14) with the current multipliers; A_r for
        ``ppo`` and ``ppo_rs`` (all multipliers 0). With ``ppo.normalize_advantages`` A_r and
        each column of A_c are first normalised separately with the statistics of the global
        batch (Bessel-corrected std).

        Args:
            adv_r: ``(N,)`` reward advantages.
            adv_c: ``(N, K)`` cost advantages, one column per constraint.

        Returns:
            ``(N,)`` advantages for the clipped surrogate.
        """
        if self.cfg.ppo.normalize_advantages:
            # the statistics of the global batch (collective: every rank's advantages)
            adv_r = normalize_advantages(adv_r, *distributed.global_mean_std(adv_r))
            adv_c = normalize_advantages(adv_c, *distributed.global_mean_std(adv_c))
        return combine(adv_r, adv_c, self.lambdas())

    def in_warmup(self, env_steps_before: int) -> bool:
        """Whether an update after ``env_steps_before`` steps trains only the critics."""
        return env_steps_before < self.cfg.train.warmup_env_steps()

    def evaluate_rollout(
        self, buf: RolloutBuffer, seg: SegmentIndex, rows: torch.Tensor
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """:func:`~safevla_core.rl.rollout.evaluate_segments` with this run's model and texts."""
        return evaluate_segments(self.model, buf, seg, rows, self.texts.batch, self.device)

    def update_policy(
        self, buf: RolloutBuffer, adv: dict[str, torch.Tensor], warmup: bool = False
    ) -> dict[str, float]:
        """Phase 4: PPO-Lagrangian epochs over the rollout's episode pieces (eq. 14).

        Each minibatch is one optimizer step; it is evaluated in micro-batches of at most
        ``ppo.microbatch_steps`` steps whose gradients accumulate (the same gradient, bounded
        memory). During the value-only warm-up the policy loss is left out, so only the critics
        learn (the authors' first stage).

        With several ranks, minibatch k of an epoch is the union of every rank's k-th share of
        its own episode pieces: a micro-batch's loss weight is its steps over the minibatch's
        steps on all ranks, and the gradients are summed over ranks before clipping, so with one
        minibatch (the paper's setting) the update equals a single process's on the
        concatenated rollout. With more minibatches each rank shuffles its own pieces, so the
        minibatches differ from any single-process split (a different, equally valid shuffle).
        """
        p = self.cfg.ppo
        n_costs = len(self.signals)
        seg = buf.segments()
        flat = {
            k: v.reshape(v.shape[0] * v.shape[1], *v.shape[2:]).to(self.device)
            for k, v in adv.items()
        }
        combined = self.combined_advantage(flat["adv_r"], flat["adv_c"])
        actions = buf.actions.reshape(-1).to(self.device)
        step_target = buf.costs.sum(-1).reshape(-1).to(self.device)  # (T*B,) per-step cost
        old_logp = buf.log_probs.reshape(-1).to(self.device)
        # dropout off: the ratio starts at exactly 1 (acting ran in eval mode)
        self.model.eval()
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        stats_sum: dict[str, float] = {}
        n_updates = 0
        rows = seg.step_index.shape[0]
        steps_per_row = seg.num_steps
        trainable = [q for q in self.model.parameters() if q.requires_grad]
        # the same number of minibatches on every rank (collective), none of them empty
        n_minibatches = distributed.all_reduce_min(min(p.num_minibatches, rows))
        for _ in range(p.update_epochs):
            order = torch.randperm(rows)
            chunks = torch.tensor_split(order, n_minibatches)
            # steps in each minibatch over all ranks (collective): the loss weights' denominator
            totals = distributed.all_reduce_sum(
                torch.stack([steps_per_row[c].sum() for c in chunks])
            )
            for chunk, total in zip(chunks, totals.tolist(), strict=True):
                self.optimizer.zero_grad(set_to_none=True)
                stats_acc: dict[str, float] = {}
                nonfinite: dict[str, Any] | None = None
                for micro in _micro_batches(chunk, steps_per_row, p.microbatch_steps):
                    with autocast:
                        out, valid, idx = self.evaluate_rollout(buf, seg, micro)
                    logits = out.logits[valid].float()
                    dist = torch.distributions.Categorical(logits=logits)
                    terms = ppo_loss(
                        log_prob=dist.log_prob(actions[idx]),
                        old_log_prob=old_logp[idx],
                        advantages=combined[idx],
                        value_reward=out.value_reward[valid].float(),
                        returns_reward=flat["ret_r"][idx],
                        value_cost=out.value_cost[valid].float().reshape(-1, n_costs),
                        returns_cost=flat["ret_c"][idx],
                        entropy=dist.entropy(),
                        cfg=p,
                    )
                    # the one-step cost head regresses the taken action's per-step cost
                    step_cost = out.step_cost[valid].float().gather(1, actions[idx][:, None])
                    step_loss = value_loss(values=step_cost[:, 0], returns=step_target[idx])
                    finite = all(
                        bool(torch.isfinite(x)) for x in (terms.total, terms.critics, step_loss)
                    )
                    # the value-only warm-up leaves the policy loss out
                    loss = (terms.critics if warmup else terms.total) + p.value_coef * step_loss
                    stats = {**terms.stats, "step_cost_loss": float(step_loss.detach())}
                    if not finite:
                        nonfinite = stats
                        break
                    weight = len(idx) / max(total, 1)
                    (loss * weight).backward()
                    for k, v in stats.items():
                        stats_acc[k] = stats_acc.get(k, 0.0) + float(v) * weight
                if distributed.any_rank(nonfinite is not None):  # collective: all stop together
                    self.optimizer.zero_grad(set_to_none=True)
                    raise FloatingPointError(
                        f"non-finite PPO loss at iteration {self.iteration + 1} "
                        f"({nonfinite if nonfinite is not None else 'on another rank'}); "
                        "the weights were not updated and the last checkpoint is intact: "
                        "lower ppo.lr or check the rewards and costs"
                    )
                distributed.all_reduce_gradients(trainable)  # collective: sum over ranks
                for net in self.model.networks().values():
                    torch.nn.utils.clip_grad_norm_(
                        [q for q in net.parameters() if q.requires_grad], p.max_grad_norm
                    )
                self.optimizer.step()
                for k, v in stats_acc.items():
                    stats_sum[k] = stats_sum.get(k, 0.0) + v
                n_updates += 1
        # each rank's stats are weighted by its share of the global steps: their sum is global
        names = sorted(stats_sum)
        summed = distributed.all_reduce_sum(
            torch.tensor([stats_sum[k] for k in names], dtype=torch.float64)
        )
        out_stats = {k: float(v) / max(n_updates, 1) for k, v in zip(names, summed, strict=True)}
        out_stats["critic_warmup"] = float(warmup)
        return out_stats

    # -- the loop ------------------------------------------------------------------------------
    def run(
        self, callback: Callable[[dict[str, float], dict[str, Any]], None] | None = None
    ) -> TrainResult:
        """Train until ``total_env_steps``; checkpoint every ``checkpoint_every`` iterations.

        ``total_env_steps`` counts the steps of all ranks, and so does ``env_steps``.

        Args:
            callback: Called after each iteration, on every rank, with the metrics (the same,
                all-reduced, on every rank) and this rank's latest vector-env observation (the
                trainer node publishes status and cameras from it).

        Returns:
            The run's result.
        """
        cfg = self.cfg
        # env steps per iteration over all ranks (``num_envs`` is per rank)
        per_iter = cfg.train.num_envs * cfg.train.num_steps * self.dist.world_size
        # the budget is in env steps: a run resumed with another world size (or num_envs)
        # continues the iteration counter until the steps are done
        remaining = max(0, cfg.train.total_env_steps - self.env_steps)
        total_iters = self.iteration + math.ceil(remaining / per_iter)
        result = TrainResult(self.run_dir, self.iteration, self.env_steps)
        if self.iteration >= total_iters:
            tqdm.write(f"run in {self.run_dir} already finished ({self.iteration} iterations)")
            return result
        from torch.utils.tensorboard import SummaryWriter

        envs = make_vector_env(cfg, house_indices=self.house_shard())
        # purge_step: events a killed run logged after its last checkpoint are dropped
        writer = (
            SummaryWriter(str(self.run_dir / "tb"), purge_step=self.env_steps + 1)
            if self.dist.is_main
            else None
        )
        bar = tqdm(
            total=self.env_steps + (total_iters - self.iteration) * per_iter,
            initial=self.env_steps,
            unit="step",
            desc=f"{cfg.train.method} {cfg.task.name}",
            disable=not self.progress,
        )
        try:
            obs, _ = envs.reset(
                seed=distributed.rank_seed(cfg.train.seed + 7919 * self.iteration, self.dist.rank)
            )
            state = RolloutState(obs)
            buf = self.new_buffer()
            while self.iteration < total_iters:
                t0 = time.perf_counter()
                steps_before = self.env_steps
                episodes = self.collect(envs, buf, state)
                t_collect = time.perf_counter() - t0
                assert state.last_values is not None  # collect set them
                adv = self.advantages(buf, state.last_values)
                warmup = self.in_warmup(steps_before)
                lams, jc = self.update_multiplier(episodes, hold=warmup)
                t_update = time.perf_counter()
                losses = self.update_policy(buf, adv, warmup=warmup)
                t_update = time.perf_counter() - t_update
                self.iteration += 1
                # every rank's finished episodes (collective)
                episode_means, n_episodes = distributed.episode_means(episodes, EPISODE_KEYS)
                metrics = {
                    "iteration": float(self.iteration),
                    "env_steps": float(self.env_steps),
                    "episodes": float(n_episodes),
                    # the sum over constraints (the one multiplier of eq. 14 by default)
                    "lagrange_multiplier": float(sum(lams.values())),
                    "cost_estimate": float(sum(jc.values())),
                    "cost_limit": float(sum(self.constraints.values())),
                    "rollout_cost_per_step": distributed.all_reduce_mean(
                        float(buf.costs.sum(-1).mean())
                    ),
                    "fps": per_iter / max(time.perf_counter() - t0, 1e-9),
                    "collect_fps": per_iter / max(t_collect, 1e-9),
                    "collect_s": t_collect,
                    "update_s": t_update,
                    **episode_means,
                    **losses,
                }
                if len(self.signals) > 1:
                    for name in self.signals:
                        metrics[f"lagrange_multiplier/{name}"] = lams[name]
                        metrics[f"cost_estimate/{name}"] = jc[name]
                        metrics[f"cost_limit/{name}"] = self.constraints[name]
                if self.dist.is_main:
                    self._log(writer, metrics)
                bar.update(per_iter)
                result.history.append(metrics)
                if self.dist.is_main and (
                    self.iteration % cfg.train.checkpoint_every == 0
                    or self.iteration == total_iters
                ):
                    self.save(metrics)
                if callback is not None:
                    callback(metrics, state.obs)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            envs.close()
        result.iterations, result.env_steps = self.iteration, self.env_steps
        return result

    def house_shard(self) -> list[int] | None:
        """This rank's training houses (:func:`~safevla_core.rl.distributed.shard`); None = all."""
        if not self.dist.enabled:
            return None
        n = split_size(self.cfg, "train")
        return distributed.shard(n, self.dist.rank, self.dist.world_size)

    def new_buffer(self) -> RolloutBuffer:
        """An empty rollout buffer of the kind the update mode needs."""
        cfg = self.cfg
        if cfg.train.decoder_only():
            return RolloutBuffer(
                cfg.train.num_steps,
                cfg.train.num_envs,
                len(self.signals),
                embed_dim=cfg.policy.d_model,
            )
        return RolloutBuffer(
            cfg.train.num_steps,
            cfg.train.num_envs,
            len(self.signals),
            visual_shape=self.visual_shape,
        )

    def _log(self, writer: Any, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            writer.add_scalar(f"train/{k}", v, int(self.env_steps))
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        sr = metrics.get("success", float("nan"))
        tqdm.write(
            f"iter {int(metrics['iteration']):4d} | steps {int(metrics['env_steps']):7d} | "
            f"episodes {int(metrics['episodes']):3d} | SR {sr:.2f} | "
            f"cost {metrics.get('cumulative_cost', float('nan')):.2f} "
            f"(RC {metrics.get('robot_cost', float('nan')):.2f}, "
            f"OC {metrics.get('object_cost', float('nan')):.2f}) | "
            f"lambda {metrics['lagrange_multiplier']:.4f} | "
            f"pi {metrics.get('policy_loss', float('nan')):+.4f} | {metrics['fps']:.1f} steps/s"
        )


def train(
    cfg: Config,
    resume: bool = True,
    progress: bool = True,
    callback: Callable[[dict[str, float], dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a policy with the configured method on the configured task.

    Resumes from the newest checkpoint in ``cfg.train.out_dir`` when ``resume`` is set (weights,
    optimizer, multiplier, iteration and step counters; environments start new episodes).
    Data-parallel when a process group is initialised (under ``torchrun``, call
    :func:`~safevla_core.rl.distributed.init_distributed` first, as ``safevla train`` does;
    docs/scaling.md).

    Args:
        cfg: Resolved configuration.
        resume: Continue an interrupted run in the same folder.
        progress: Show a progress bar.
        callback: See :meth:`Trainer.run`.

    Returns:
        The run's result.

    Raises:
        CheckpointError: If a checkpoint to resume from or to start from is corrupt.
    """
    return Trainer(cfg, resume=resume, progress=progress).run(callback)


def adopt_checkpoint_policy(cfg: Config, path: str | Path) -> Config:
    """``cfg`` with the policy architecture of the checkpoint it starts from.

    RL fine-tunes the IL network as it is (SafeVLA and FLaRe start from SPOC's checkpoint), so
    its sizes (``d_model``, layers, context, image size) come from the checkpoint's stored
    config, whatever the run's config says; a difference is reported.

    Raises:
        CheckpointError: If the file is missing or corrupt.
    """
    from safevla_core.config import PolicyConfig, from_dict

    state = load_checkpoint(path, required_keys=("policy",))
    if not isinstance(state.get("config"), dict) or "policy" not in state["config"]:
        return cfg  # weights only: the run's own policy config must match them
    stored = from_dict(PolicyConfig, state["config"]["policy"])
    if stored != cfg.policy:
        tqdm.write(f"{path}: using its policy architecture {stored}")
        cfg = dataclasses.replace(cfg, policy=stored)
    return cfg


def _micro_batches(
    rows: torch.Tensor, steps_per_row: torch.Tensor, max_steps: int
) -> list[torch.Tensor]:
    """Split segment ``rows`` into consecutive groups of at most ``max_steps`` real steps.

    A single row longer than that is a group of its own.
    """
    groups: list[torch.Tensor] = []
    start, acc = 0, 0
    for i, r in enumerate(rows.tolist()):
        n = int(steps_per_row[r])
        if i > start and acc + n > max_steps:
            groups.append(rows[start:i])
            start, acc = i, 0
        acc += n
    groups.append(rows[start:])
    return groups


def _write_yaml_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


__all__ = [
    "EPISODE_KEYS",
    "PolicyStep",
    "RolloutState",
    "TrainResult",
    "Trainer",
    "TrainerCheckpoint",
    "episode_summaries",
    "mean_metrics",
    "step_costs",
    "train",
]
