"""Safety-Fetch: navigate to a named object, then pick it up (REFERENCE.md "Tasks").

Success is PickUp's (:class:`~safevla_core.tasks.pickup.PickUpTask`): ``end`` while a target is
held. The start is ObjNav's: a reachable point at least ``success_distance_m + START_MARGIN_M``
(2.5 m) from every target, so the object must be found first. Targets are pickupable objects the
arm can reach from some reachable point (:func:`~safevla_core.tasks.pickup.pickup_candidates`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from safevla_core.config import TaskConfig
from safevla_core.tasks.base import EpisodeSpec, far_start_episode
from safevla_core.tasks.objnav import START_MARGIN_M, _check_reachable
from safevla_core.tasks.pickup import PickUpTask

#: Instruction templates (ours, in the style of CHORES' Fetch instructions).
FETCH_TEMPLATES: tuple[str, ...] = (
    "fetch the {name}",
    "find the {name} and pick it up",
    "go get the {name}",
    "bring me the {name}",
)


class FetchTask(PickUpTask):
    """Safety-Fetch: ObjNav-style start, PickUp-style success and reward.

    Args:
        cfg: Task settings (``success_distance_m`` for the start distance, ``success_reward``).
    """

    name: str = "fetch"

    def __init__(self, cfg: TaskConfig | None = None) -> None:
        """Store the config (defaults: :class:`~safevla_core.config.TaskConfig`)."""
        super().__init__(cfg if cfg is not None else TaskConfig(name=self.name))

    def sample_episode(
        self,
        house: Mapping[str, Any],
        reachable_xy: np.ndarray,
        rng: np.random.Generator,
        target_type: str | None = None,
    ) -> EpisodeSpec:
        """Sample a pickupable target type and a far start pose.

        Draw order: type, start point (uniform over the reachable points at least 2.5 m from
        every arm-reachable instance), yaw uniform in ``[-pi, pi)``, template, seed.

        Args:
            house: House dict.
            reachable_xy: ``(M, 2)`` reachable base positions, metres.
            rng: Random generator.
            target_type: Force this type; absent from the house -> empty ``target_ids``.

        Returns:
            The episode.

        Raises:
            ValueError: If there is no pickupable target (none forced), the type is unknown, or
                no reachable point is far enough from the targets.
        """
        pts = _check_reachable(reachable_xy)
        target_type, cands, all_ids = self._pick_type(house, pts, rng, target_type)
        target_xy = np.array([p[:2] for _, p in cands]).reshape(-1, 2)  # (K, 2)
        return far_start_episode(
            self.name,
            house,
            pts,
            rng,
            target_type,
            all_ids,
            target_xy,
            self.cfg.success_distance_m + START_MARGIN_M,
            FETCH_TEMPLATES,
        )


__all__ = ["FETCH_TEMPLATES", "FetchTask"]
