"""Rollout storage for a causal-transformer policy, with cached frozen-encoder features.

The learner stores the frozen visual encoder's features of every step, so PPO epochs never re-run
the CNN (ARCHITECTURE.md "Scale"). The decoder attends over up to ``context_steps`` steps of the
current episode; to recompute exactly what acting computed, each environment's sequence is cut
into *segments* (one per episode piece inside the rollout), and the first segment of an
environment is prefixed with the last ``context_steps - 1`` steps of its ongoing episode from
the previous rollout. Segments are padded to one length; only rollout steps carry a loss.

Shapes: ``T`` steps per rollout, ``B`` environments, visual features ``(2, C, h, w)``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

#: Step inputs the policy's decoder needs, besides the visual features.
_INPUT_KEYS = ("prev_action", "in_hand", "episode_step", "text_id")


@dataclass
class SegmentBatch:
    """Padded segments, ready for :meth:`SafeVLAPolicy.forward`.

    Attributes:
        visual: ``(S, L, 2, C, h, w)`` features in the buffer's storage dtype.
        prev_action: ``(S, L)`` long.
        in_hand: ``(S, L)`` bool.
        episode_step: ``(S, L)`` long.
        episode_start: ``(S, L)`` bool.
        text_id: ``(S,)`` long, index into the rollout's instruction list.
        valid: ``(S, L)`` bool, True at prefix and rollout steps (False at padding).
        loss_mask: ``(S, L)`` bool, True where the position is a step of this rollout.
        step_index: ``(S, L)`` long, ``t * B + b`` of that rollout step (``-1`` elsewhere).
    """

    visual: torch.Tensor
    prev_action: torch.Tensor
    in_hand: torch.Tensor
    episode_step: torch.Tensor
    episode_start: torch.Tensor
    text_id: torch.Tensor
    valid: torch.Tensor
    loss_mask: torch.Tensor
    step_index: torch.Tensor

    def select(self, rows: torch.Tensor) -> SegmentBatch:
        """The sub-batch of the given segment rows."""
        return SegmentBatch(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


class RolloutBuffer:
    """``T x B`` storage of one rollout plus each environment's episode context.

    Args:
        num_steps: T, steps per environment per rollout.
        num_envs: B, environments.
        visual_shape: ``(2, C, h, w)`` shape of one step's frozen features.
        context_steps: The decoder's window W.
        feature_dtype: Storage dtype of the features (float16 halves memory; ours).
        prefix_steps: Earlier steps of an ongoing episode kept as prefix. A step's output
            depends on the last ``decoder_layers * (W - 1)`` steps (each layer widens the
            receptive field by ``W - 1``), so that many reproduce acting exactly; default
            ``W - 1``, which only approximates the deeper layers' keys of the oldest steps.
        num_costs: K, constrained cost signals: ``costs`` and ``values_cost`` are ``(T, B, K)``.
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        visual_shape: tuple[int, ...],
        context_steps: int,
        feature_dtype: torch.dtype = torch.float16,
        prefix_steps: int | None = None,
        num_costs: int = 1,
    ) -> None:
        self.T, self.B = num_steps, num_envs
        self.context_steps = context_steps
        self.visual = torch.zeros((num_steps, num_envs, *visual_shape), dtype=feature_dtype)
        self.prev_action = torch.zeros((num_steps, num_envs), dtype=torch.long)
        self.in_hand = torch.zeros((num_steps, num_envs), dtype=torch.bool)
        self.episode_step = torch.zeros((num_steps, num_envs), dtype=torch.long)
        self.episode_start = torch.zeros((num_steps, num_envs), dtype=torch.bool)
        self.text_id = torch.zeros((num_steps, num_envs), dtype=torch.long)
        self.actions = torch.zeros((num_steps, num_envs), dtype=torch.long)
        self.log_probs = torch.zeros((num_steps, num_envs))
        self.values_reward = torch.zeros((num_steps, num_envs))
        self.values_cost = torch.zeros((num_steps, num_envs, num_costs))
        self.rewards = torch.zeros((num_steps, num_envs))
        self.costs = torch.zeros((num_steps, num_envs, num_costs))
        self.dones = torch.zeros((num_steps, num_envs))
        self.instructions: list[str] = []
        self._text_index: dict[str, int] = {}
        maxlen = max(context_steps - 1 if prefix_steps is None else prefix_steps, 0)
        self._history: list[deque] = [deque(maxlen=maxlen) for _ in range(num_envs)]
        self._prefix: list[list] = [[] for _ in range(num_envs)]
        self.t = 0

    def text_id_of(self, instruction: str) -> int:
        """Index of an instruction in :attr:`instructions` (added on first use)."""
        if instruction not in self._text_index:
            self._text_index[instruction] = len(self.instructions)
            self.instructions.append(instruction)
        return self._text_index[instruction]

    def start_rollout(self) -> None:
        """Begin a new rollout: each env's recent history becomes its prefix.

        Instructions stay registered (prefix steps refer to them).
        """
        self._prefix = [list(h) for h in self._history]
        self.t = 0

    def add_inputs(
        self,
        visual: torch.Tensor,
        prev_action: torch.Tensor,
        in_hand: torch.Tensor,
        episode_step: torch.Tensor,
        instructions: list[str],
    ) -> None:
        """Store the policy inputs of step ``t`` for all envs (before acting).

        Args:
            visual: ``(B, 2, C, h, w)`` features.
            prev_action: ``(B,)`` previous action (20 = start).
            in_hand: ``(B,)`` bool.
            episode_step: ``(B,)`` steps since the episode began (0 = first step).
            instructions: B instruction strings.

        Raises:
            IndexError: If the rollout is full.
        """
        t = self.t
        if t >= self.T:
            raise IndexError("rollout buffer is full")
        start = episode_step == 0
        self.visual[t] = visual.to(self.visual.dtype)
        self.prev_action[t] = prev_action
        self.in_hand[t] = in_hand
        self.episode_step[t] = episode_step
        self.episode_start[t] = start
        ids = torch.tensor([self.text_id_of(s) for s in instructions])
        self.text_id[t] = ids
        for b in range(self.B):
            if bool(start[b]):
                self._history[b].clear()
            self._history[b].append(
                (
                    self.visual[t, b].clone(),
                    int(prev_action[b]),
                    bool(in_hand[b]),
                    int(episode_step[b]),
                    int(ids[b]),
                )
            )

    def add_outcome(
        self,
        actions: torch.Tensor,
        log_probs: torch.Tensor,
        values_reward: torch.Tensor,
        values_cost: torch.Tensor,
        rewards: torch.Tensor,
        costs: torch.Tensor,
        dones: torch.Tensor,
    ) -> None:
        """Store what happened at step ``t`` and advance ``t``.

        All ``(B,)``, except ``values_cost`` and ``costs``: ``(B, K)`` (``(B,)`` when K = 1).
        """
        t = self.t
        self.actions[t] = actions
        self.log_probs[t] = log_probs
        self.values_reward[t] = values_reward
        self.values_cost[t] = values_cost.reshape(self.B, -1)
        self.rewards[t] = rewards
        self.costs[t] = costs.reshape(self.B, -1)
        self.dones[t] = dones
        for b in range(self.B):
            if bool(dones[b]):
                self._history[b].clear()
        self.t += 1

    def segments(self) -> SegmentBatch:
        """Cut the (full) rollout into padded per-episode segments with their prefixes.

        Raises:
            RuntimeError: If the rollout is not full.
        """
        if self.t != self.T:
            raise RuntimeError(f"rollout holds {self.t} of {self.T} steps")
        pieces: list[tuple[list, list[int], int, int]] = []  # (prefix, steps t, b, text id)
        for b in range(self.B):
            cur: list[int] = []
            for t in range(self.T):
                if bool(self.episode_start[t, b]) and cur:
                    pieces.append(([], cur, b, int(self.text_id[cur[0], b])))
                    cur = []
                cur.append(t)
            prefix = self._prefix[b] if not bool(self.episode_start[0, b]) else []
            if cur:
                pieces.append(([], cur, b, int(self.text_id[cur[0], b])))
            # the env's first piece gets the prefix of its ongoing episode
            first = next(i for i, p in enumerate(pieces) if p[2] == b)
            pieces[first] = (prefix, pieces[first][1], b, pieces[first][3])
        length = max(len(p[0]) + len(p[1]) for p in pieces)
        s = len(pieces)
        vshape = self.visual.shape[2:]
        out = SegmentBatch(
            visual=torch.zeros((s, length, *vshape), dtype=self.visual.dtype),
            prev_action=torch.zeros((s, length), dtype=torch.long),
            in_hand=torch.zeros((s, length), dtype=torch.bool),
            episode_step=torch.zeros((s, length), dtype=torch.long),
            episode_start=torch.ones((s, length), dtype=torch.bool),
            text_id=torch.zeros(s, dtype=torch.long),
            valid=torch.zeros((s, length), dtype=torch.bool),
            loss_mask=torch.zeros((s, length), dtype=torch.bool),
            step_index=torch.full((s, length), -1, dtype=torch.long),
        )
        for i, (prefix, steps, b, text_id) in enumerate(pieces):
            p = len(prefix)
            for j, (vis, pa, ih, es, _tid) in enumerate(prefix):
                out.visual[i, j] = vis
                out.prev_action[i, j], out.in_hand[i, j], out.episode_step[i, j] = pa, ih, es
                out.episode_start[i, j] = j == 0
            idx = torch.tensor(steps)
            out.visual[i, p : p + len(steps)] = self.visual[idx, b]
            out.prev_action[i, p : p + len(steps)] = self.prev_action[idx, b]
            out.in_hand[i, p : p + len(steps)] = self.in_hand[idx, b]
            out.episode_step[i, p : p + len(steps)] = self.episode_step[idx, b]
            starts = self.episode_start[idx, b].clone()
            if p > 0:
                starts[0] = False
            else:
                starts[0] = True
            out.episode_start[i, p : p + len(steps)] = starts
            out.valid[i, : p + len(steps)] = True
            out.loss_mask[i, p : p + len(steps)] = True
            out.step_index[i, p : p + len(steps)] = idx * self.B + b
            out.text_id[i] = text_id
        return out


__all__ = ["RolloutBuffer", "SegmentBatch"]
