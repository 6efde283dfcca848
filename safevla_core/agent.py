"""PolicyAgent: the trained policy plus its frozen encoders, acting one step at a time.

The same class serves evaluation (:mod:`safevla_core.evaluate`), the benchmark and the ROS
policy node, so all of them run exactly the policy that training produced. It keeps the
decoder's KV cache between steps (SPOC acts with a KV cache over a 100-step context).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from safevla_core.actions import NUM_ACTIONS, START_ACTION, Action
from safevla_core.checkpoint import CheckpointError, load_checkpoint
from safevla_core.config import Config, PolicyConfig, from_dict
from safevla_core.policy.encoders import get_visual_encoder
from safevla_core.policy.factory import build_policy
from safevla_core.policy.instructions import InstructionCache
from safevla_core.policy.kv_cache import KVCache
from safevla_core.policy.model import SafeVLAPolicy


@dataclass
class AgentStep:
    """What the agent decided for one step.

    Attributes:
        action: The chosen action.
        probs: ``(20,)`` action probabilities, the policy's own (temperature 1) distribution.
        value_reward: Reward critic's estimate.
        value_cost: Cost critic's estimate of the discounted future cost, summed over the
            constraints' critics (the same for every action of the state).
        action_costs: ``(20,)`` learned one-step cost of each action, Q_c1(s, a), in per-step
            cost units (:attr:`PolicyOutput.step_cost`), from the trained cost critic; NaN
            when the checkpoint has no trained cost critic (e.g. an IL checkpoint). A second
            opinion for the shield, never its only evidence.
        visible_p: The visibility head's probability for this step (``sigmoid`` of
            :attr:`PolicyOutput.visible_logit`: the label it was trained on, e.g. "an ``end``
            here would succeed"); what the end gate and the stop trigger read. NaN if unknown.
        features: ``(2, C, h, w)`` float32 frozen visual features of this step's (navigation,
            manipulation) images, the encoder output the policy read; what
            :func:`safevla_core.il.shard_features` caches for behaviour cloning.
    """

    action: Action
    probs: np.ndarray
    value_reward: float
    value_cost: float
    action_costs: np.ndarray = dataclasses.field(
        default_factory=lambda: np.full(NUM_ACTIONS, np.nan, dtype=np.float32)
    )
    visible_p: float = math.nan
    features: torch.Tensor | None = None


class PolicyAgent:
    """A single-environment acting wrapper around :class:`SafeVLAPolicy`.

    Args:
        policy: The trained policy (its weights are not changed).
        policy_cfg: Its configuration (image size for the encoders).
        deterministic: Take the most likely action instead of sampling.
        seed: Seed of the sampling generator.
        temperature: Sample from ``softmax(logits / temperature)`` (:func:`choose_action`);
            1 = the policy's own distribution, as the authors' evaluation samples. Ignored
            when ``deterministic``.
        cost_critic: The trained cost critic network (separate critics), or None; it provides
            ``value_cost`` and the per-action one-step costs.
        shared_fusion: The critic was trained with the fusion encoder frozen
            (``TrainConfig.freeze_fusion``): its fusion weights are the actor's, so it reuses
            the actor's step embedding instead of fusing the step again.
    """

    def __init__(
        self,
        policy: SafeVLAPolicy,
        policy_cfg: PolicyConfig,
        deterministic: bool = False,
        seed: int = 0,
        cost_critic: SafeVLAPolicy | None = None,
        shared_fusion: bool = False,
        temperature: float = 1.0,
    ) -> None:
        _check_temperature(temperature)
        self.temperature = float(temperature)
        self.policy = policy.eval()
        self.cost_critic = cost_critic.eval() if cost_critic is not None else None
        self.shared_fusion = bool(shared_fusion)
        self._critic_cache: KVCache | None = None
        self.cfg = policy_cfg
        self.visual = get_visual_encoder(policy_cfg)
        self.texts = InstructionCache()
        self.deterministic = deterministic
        self._gen = torch.Generator().manual_seed(seed)
        self._cache: KVCache | None = None
        self._instruction: str | None = None
        self._prev_action = START_ACTION
        self._step = 0

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        deterministic: bool = False,
        seed: int = 0,
        with_cost_critic: bool = True,
        end_gate: float | None = None,
        end_trigger: float | None = None,
        temperature: float = 1.0,
    ) -> PolicyAgent:
        """Load a training checkpoint (policy weights + resolved config).

        ``with_cost_critic`` also loads the trained cost critic when the checkpoint has one
        (its per-action one-step costs for the shield); evaluation leaves it out (faster).
        ``end_gate`` and ``end_trigger`` override the stored ``PolicyConfig.end_gate`` and
        ``end_trigger`` (None keeps them). ``temperature`` is the sampling temperature
        (:func:`choose_action`).

        Raises:
            CheckpointError: If the file is missing, corrupt, or holds no policy.
            ValueError: If an override is out of range (``PolicyConfig``'s checks), or the
                temperature is not a finite number > 0.
        """
        _check_temperature(temperature)
        state = load_checkpoint(path, required_keys=("policy", "config"))
        try:
            cfg = from_dict(Config, state["config"])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: stored config is invalid: {exc}") from exc
        overrides = {
            k: float(v)
            for k, v in (("end_gate", end_gate), ("end_trigger", end_trigger))
            if v is not None
        }
        if overrides:
            try:
                cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, **overrides))
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from exc
        policy = build_policy(cfg.policy, num_costs=len(cfg.task.constraints()))
        critic = None
        try:
            policy.load_weights(state["policy"])
            critics = state.get("critics")
            if with_cost_critic and isinstance(critics, dict) and "cost" in critics:
                critic = build_policy(cfg.policy, num_costs=len(cfg.task.constraints()))
                critic.load_weights(state["critics"]["cost"])
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{path}: policy weights do not fit the config: {exc}") from exc
        return cls(
            policy,
            cfg.policy,
            deterministic=deterministic,
            seed=seed,
            cost_critic=critic,
            shared_fusion=cfg.train.decoder_only(),
            temperature=temperature,
        )

    def reset(self, instruction: str, seed: int | None = None) -> None:
        """Start a new episode: forget the history and set the instruction.

        Args:
            instruction: The episode's text instruction.
            seed: Reseed the action-sampling generator for this episode, so an episode's
                sampled actions depend on its own seed only, not on the episodes run before it
                in this process (evaluation in shards then equals evaluation in one process).
                None keeps the generator running.

        Raises:
            ValueError: For an empty or whitespace-only instruction.
        """
        if not instruction or not instruction.strip():
            raise ValueError("the instruction must be a non-empty string")
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self.texts.get(instruction)
        self._instruction = instruction
        self._cache = None
        self._critic_cache = None
        self._prev_action = START_ACTION
        self._step = 0

    def override_last_action(self, action: int) -> None:
        """Record that another action than the one :meth:`act` chose was executed.

        The next step's previous-action input is then ``action`` (DAgger's expert mixing, or a
        shield's substitute).

        Raises:
            ValueError: If ``action`` is not one of the 20 actions.
        """
        if not 0 <= int(action) < NUM_ACTIONS:
            raise ValueError(f"action must be in [0, {NUM_ACTIONS}), got {action}")
        self._prev_action = int(action)

    @torch.no_grad()
    def act(self, nav_rgb: np.ndarray, manip_rgb: np.ndarray, in_hand: bool = False) -> AgentStep:
        """Choose the next action from both camera images.

        Args:
            nav_rgb: ``(H, W, 3)`` uint8 navigation camera image.
            manip_rgb: ``(H, W, 3)`` uint8 manipulation camera image.
            in_hand: Whether an object is held.

        Returns:
            The decision (action, probabilities, critic values).

        Raises:
            RuntimeError: Before :meth:`reset`.
            ValueError: For images of the wrong dtype or shape.
        """
        if self._instruction is None:
            raise RuntimeError("call reset(instruction) before act()")
        images = np.stack([_check_image(nav_rgb, "nav_rgb"), _check_image(manip_rgb, "manip_rgb")])
        feats = self.visual(images).unsqueeze(0)  # (1, 2, C, h, w)
        text, mask = self.texts.batch([self._instruction])
        step = (
            torch.tensor([self._prev_action]),
            torch.tensor([bool(in_hand)]),
            torch.tensor([self._step]),
        )
        emb = self.policy.embed_steps(feats, text, mask)
        out, self._cache = self.policy.decode_step(emb, *step, self._cache)
        value_cost = float(out.value_cost[0].sum())
        action_costs = np.full(NUM_ACTIONS, np.nan, dtype=np.float32)
        if self.cost_critic is not None:
            # a critic trained with the fusion encoder frozen shares the actor's embedding
            crit_emb = (
                emb if self.shared_fusion else self.cost_critic.embed_steps(feats, text, mask)
            )
            crit, self._critic_cache = self.cost_critic.decode_step(
                crit_emb, *step, self._critic_cache
            )
            value_cost = float(crit.value_cost[0].sum())
            action_costs = crit.step_cost[0].numpy().astype(np.float32)
        logits = out.logits[0]
        probs = torch.softmax(logits, dim=-1)
        index = choose_action(logits, self.deterministic, self.temperature, self._gen)
        self._prev_action = index
        self._step += 1
        return AgentStep(
            action=Action(index),
            probs=probs.numpy(),
            value_reward=float(out.value_reward[0]),
            value_cost=value_cost,
            action_costs=action_costs,
            visible_p=(
                math.nan
                if out.visible_logit is None
                else float(torch.sigmoid(out.visible_logit[0]))
            ),
            features=feats[0],
        )


def choose_action(
    logits: torch.Tensor,
    deterministic: bool = False,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> int:
    """Pick one action index from the policy's logits.

    Greedy: ``argmax(logits)``. Sampled: one draw from ``softmax(logits / temperature)``
    (the Boltzmann policy; temperature 1 is the policy's own distribution, lower sharpens it
    towards greedy, higher flattens it). At temperature 1 the draw is the same as before the
    temperature existed (``multinomial(softmax(logits))``), so reports made then reproduce.

    Args:
        logits: ``(20,)`` action logits (masked actions at a very negative value stay masked).
        deterministic: Take the argmax instead of sampling.
        temperature: Sampling temperature, a finite number > 0.
        generator: Sampling generator (None: torch's global one).

    Returns:
        The action index.

    Raises:
        ValueError: If the temperature is not a finite number > 0.
    """
    _check_temperature(temperature)
    if deterministic:
        return int(torch.argmax(logits))
    scaled = logits if temperature == 1.0 else logits / temperature
    return int(torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator))


def _check_temperature(temperature: float) -> None:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return arr


__all__ = ["AgentStep", "PolicyAgent", "choose_action"]
