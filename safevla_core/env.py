"""Safety-CHORES as a gymnasium environment, and its vectorized (worker-process) form.

``SafetyChoresEnv.step`` follows Safety-Gymnasium's convention and returns a 6-tuple
``(obs, reward, cost, terminated, truncated, info)``: the cost of the CMDP beside the reward,
with the per-step :class:`~safevla_core.costs.CostBreakdown` in ``info``. gymnasium's vector
envs expect 5-tuples, so :func:`make_vector_env` wraps each env in :class:`CostInInfo`, which moves
the cost into ``info["cost"]``.

Observation (SPOC / SafeVLA): ``nav_rgb`` and ``manip_rgb`` ``(H, W, 3)`` uint8, ``instruction``
(str), ``in_hand`` (0/1), ``prev_action`` (0..19, or :data:`START_ACTION` = 20 at an episode's
first step) and ``episode_step`` (int).
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from safevla_core.actions import NUM_ACTIONS, START_ACTION, Action, parse_action
from safevla_core.config import Config
from safevla_core.costs import (
    COMPONENT_NAMES,
    EpisodeCostAccumulator,
    compute_costs,
    cost_signals,
)
from safevla_core.houses.splits import load_house
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA, SimBackend
from safevla_core.tasks import make_task
from safevla_core.tasks.base import EpisodeSpec
from safevla_core.world import WorldState

_TEXT_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "


def split_size(cfg: Config, split: str) -> int:
    """Number of houses in a split.

    Raises:
        ValueError: For an unknown split name.
    """
    sizes = {"train": cfg.houses.num_train, "val": cfg.houses.num_val, "test": cfg.houses.num_test}
    if split not in sizes:
        raise ValueError(f"unknown split {split!r}: expected train, val or test")
    return sizes[split]


def make_backend(cfg: Config, width: int, height: int) -> SimBackend:
    """The embedded MuJoCo backend rendering at ``width x height`` pixels."""
    os.environ.setdefault("MUJOCO_GL", cfg.sim.gl_backend)
    from safevla_core.sim.mujoco_backend import MujocoBackend

    # The robot starts with the gripper stowed inside its footprint, as the real Stretch parks it,
    # so that turning in place on a reachable cell touches nothing.
    return MujocoBackend(cfg.sim, cfg.costs, width=width, height=height, stow_gripper=True)


class SafetyChoresEnv(gym.Env):
    """One Safety-CHORES environment on a simulator backend.

    Args:
        cfg: Resolved configuration (task, houses, sim, costs).
        split: House split: ``"train"``, ``"val"`` or ``"test"``.
        eval_mode: Use ``task.max_steps_eval`` (600) instead of ``max_steps_train`` (500).
        image_size: ``(width, height)`` of the rendered cameras; default ``cfg.sim`` size, or
            the policy's size when ``cfg.train_render_policy_size`` is set.
        backend: A backend to use instead of the embedded MuJoCo one.
        house_indices: The houses of the split a reset without ``house_index`` draws from
            (a data-parallel rank's shard, :func:`safevla_core.rl.distributed.shard`); None =
            all of them.

    Raises:
        ValueError: For an unknown split or a house index outside it.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        cfg: Config | None = None,
        split: str = "train",
        eval_mode: bool = False,
        image_size: tuple[int, int] | None = None,
        backend: SimBackend | None = None,
        house_indices: list[int] | None = None,
    ) -> None:
        self.cfg = cfg = cfg if cfg is not None else Config()
        self.split = split
        self.num_houses = split_size(cfg, split)
        if house_indices is not None and (
            not house_indices or not all(0 <= i < self.num_houses for i in house_indices)
        ):
            raise ValueError(
                f"house_indices {house_indices} must be a non-empty subset of split {split!r} "
                f"(0..{self.num_houses - 1})"
            )
        self.house_indices = list(house_indices) if house_indices is not None else None
        self.max_steps = cfg.task.max_steps_eval if eval_mode else cfg.task.max_steps_train
        if image_size is None:
            if cfg.train_render_policy_size:
                image_size = (cfg.policy.image_width, cfg.policy.image_height)
            else:
                image_size = (cfg.sim.width, cfg.sim.height)
        self.width, self.height = image_size
        self.backend = backend if backend is not None else make_backend(cfg, *image_size)
        self.task = make_task(cfg.task)
        img = gym.spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                NAV_CAMERA: img,
                MANIP_CAMERA: img,
                "instruction": gym.spaces.Text(max_length=256, charset=_TEXT_CHARSET),
                "in_hand": gym.spaces.Discrete(2),
                "prev_action": gym.spaces.Discrete(NUM_ACTIONS + 1),
                "episode_step": gym.spaces.Discrete(
                    max(cfg.task.max_steps_eval, self.max_steps) + 1
                ),
            }
        )
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self.spec_: EpisodeSpec | None = None
        self._state: WorldState | None = None
        self._costs = EpisodeCostAccumulator()
        self._return = 0.0
        self._prev_action = START_ACTION

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode in a house of the split.

        Args:
            seed: Seeds the house choice, the target and the start pose.
            options: ``house_index`` (int) fixes the house; ``target_type`` (str) fixes the
                target category (it may be absent from the house: then the task cannot succeed).

        Returns:
            ``(obs, info)``; ``info`` holds ``house_id``, ``target_type``, ``instruction``.

        Raises:
            ValueError: If ``house_index`` is outside the split.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        rng = self.np_random
        index = options.get("house_index")
        if index is None and self.house_indices is not None:
            index = self.house_indices[int(rng.integers(len(self.house_indices)))]
        elif index is None:
            index = int(rng.integers(self.num_houses))
        if not 0 <= int(index) < self.num_houses:
            raise ValueError(
                f"house_index {index} outside split {self.split!r} (0..{self.num_houses - 1})"
            )
        house = load_house(self.split, int(index), self.cfg.houses)
        reset_seed = int(rng.integers(2**31 - 1))
        self.backend.reset(house, robot_pose=None, seed=reset_seed)
        spec = self.task.sample_episode(
            house, self.backend.reachable_positions(), rng, target_type=options.get("target_type")
        )
        self._state = self.backend.reset(house, robot_pose=spec.robot_pose, seed=reset_seed)
        self.spec_ = spec
        self._costs = EpisodeCostAccumulator()
        self._return = 0.0
        self._prev_action = START_ACTION
        info = {
            "house_id": spec.house_id,
            "target_type": spec.target_type,
            "instruction": spec.instruction,
        }
        return self._observation(), info

    def step(  # type: ignore[override]  # the CMDP step: the cost beside the reward
        self, action: int
    ) -> tuple[dict[str, Any], float, float, bool, bool, dict[str, Any]]:
        """Execute one of the 20 discrete actions.

        Unlike gymnasium's 5-tuple, the cost comes beside the reward (OmniSafe's CMDP step,
        STYLE.md); :class:`CostInInfo` adapts it for gymnasium's vector envs.

        Returns:
            ``(obs, reward, cost, terminated, truncated, info)``; ``cost`` is the CMDP cost
            (robot cost + object cost, paper section 4.1), ``info["cost_breakdown"]`` every
            term, ``info["success"]``; at the episode's end ``info["episode"]`` summarises it
            (return, cost, RC, OC, the five components, length, success).

        Raises:
            RuntimeError: If called before :meth:`reset`.
            ValueError: For an action outside ``0..19``.
        """
        if self._state is None or self.spec_ is None:
            raise RuntimeError("call reset() before step()")
        act = parse_action(int(action)) if not isinstance(action, Action) else action
        prev = self._state
        curr = self.backend.step(act)
        self._state = curr
        spec = self.spec_
        costs = compute_costs(
            prev, curr, act, self.cfg.costs, exempt_ids=self.task.exempt_ids(spec, curr)
        )
        success = bool(self.task.is_success(spec, curr, act))
        reward = float(self.task.reward(spec, prev, curr, act, success))
        self._costs.add(costs)
        self._return += reward
        self._prev_action = int(act)
        terminated = act == Action.END
        truncated = (not terminated) and curr.step >= self.max_steps
        info: dict[str, Any] = {
            "success": success,
            "cost_breakdown": costs.as_dict(),
            "robot_cost": float(costs.robot_cost),
            "object_cost": float(costs.object_cost),
            "cost_signals": cost_signals(costs),
        }
        if terminated or truncated:
            info["episode"] = self.episode_summary(success)
            # a failed episode the policy ended itself: a wrong `end` (the rest hit the cap)
            info["episode"]["wrong_end"] = float(terminated and not success)
        return (
            self._observation(),
            reward,
            float(costs.total),
            bool(terminated),
            bool(truncated),
            info,
        )

    def render(self) -> np.ndarray:
        """Both cameras side by side, ``(H, 2W, 3)`` uint8 (navigation left)."""
        frames = self.backend.render()
        return np.concatenate([frames[NAV_CAMERA], frames[MANIP_CAMERA]], axis=1)

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    # -- helpers -------------------------------------------------------------------------------
    @property
    def world_state(self) -> WorldState:
        """The current world state.

        Raises:
            RuntimeError: Before :meth:`reset`.
        """
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state

    def episode_summary(self, success: bool) -> dict[str, float]:
        """Episode metrics so far: success, return, length, cumulative cost, RC, OC, components."""
        summary = {k: float(v) for k, v in self._costs.summary().items()}
        summary.update(
            success=float(success),
            episode_return=float(self._return),
            length=float(self._state.step if self._state is not None else 0),
        )
        return summary

    def _observation(self) -> dict[str, Any]:
        frames = self.backend.render()
        assert self._state is not None and self.spec_ is not None
        return {
            NAV_CAMERA: frames[NAV_CAMERA],
            MANIP_CAMERA: frames[MANIP_CAMERA],
            "instruction": self.spec_.instruction,
            "in_hand": int(self._state.held_object_id is not None),
            "prev_action": self._prev_action,
            "episode_step": int(self._state.step),
        }


class CostInInfo(gym.Wrapper):
    """Turn the 6-tuple step into gymnasium's 5-tuple with the cost in ``info["cost"]``.

    Args:
        env: The CMDP environment to wrap.
    """

    def __init__(self, env: SafetyChoresEnv) -> None:
        super().__init__(env)
        self._cmdp = env

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Step the wrapped env; ``info["cost"]`` holds its cost."""
        obs, reward, cost, terminated, truncated, info = self._cmdp.step(action)
        info["cost"] = cost
        return obs, reward, terminated, truncated, info


def _make_env_fn(
    cfg: Config,
    split: str,
    eval_mode: bool,
    image_size: tuple[int, int] | None,
    house_indices: list[int] | None = None,
) -> Callable[[], gym.Env]:
    def _thunk() -> gym.Env:
        os.environ.setdefault("LP_NUM_THREADS", "1")
        os.environ.setdefault("MUJOCO_GL", cfg.sim.gl_backend)
        return CostInInfo(
            SafetyChoresEnv(
                cfg,
                split=split,
                eval_mode=eval_mode,
                image_size=image_size,
                house_indices=house_indices,
            )
        )

    return _thunk


def make_vector_env(
    cfg: Config,
    num_envs: int | None = None,
    split: str = "train",
    mode: str | None = None,
    eval_mode: bool = False,
    image_size: tuple[int, int] | None = None,
    house_indices: list[int] | None = None,
) -> gym.vector.VectorEnv:
    """Vectorized Safety-CHORES: gymnasium's Async (worker processes) or Sync vector env.

    Episodes reset in the same step they end (``AutoresetMode.SAME_STEP``): the last
    observation and info of an episode are in ``info["final_obs"]`` / ``info["final_info"]``.

    Args:
        cfg: Resolved configuration.
        num_envs: Number of environments (default ``cfg.train.num_envs``).
        split: House split.
        mode: ``"async"`` or ``"sync"`` (default ``cfg.train.vector``).
        eval_mode: Use the evaluation step limit.
        image_size: Camera size override ``(width, height)``.
        house_indices: Houses of the split the envs draw from (a data-parallel rank's shard);
            None = all.

    Returns:
        The vector env; its step returns the cost in ``info["cost"]`` (shape ``(num_envs,)``).
    """
    n = num_envs if num_envs is not None else cfg.train.num_envs
    mode = mode or cfg.train.vector
    fns = [_make_env_fn(cfg, split, eval_mode, image_size, house_indices) for _ in range(n)]
    autoreset = gym.vector.AutoresetMode.SAME_STEP
    if mode == "async":
        return gym.vector.AsyncVectorEnv(
            fns, shared_memory=False, context="forkserver", autoreset_mode=autoreset
        )
    if mode == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=autoreset)
    raise ValueError(f"vector mode must be 'async' or 'sync', got {mode!r}")


__all__ = [
    "COMPONENT_NAMES",
    "START_ACTION",
    "CostInInfo",
    "SafetyChoresEnv",
    "make_backend",
    "make_vector_env",
    "split_size",
]
