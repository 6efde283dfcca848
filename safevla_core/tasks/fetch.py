"""Safety-Fetch: navigate to a named object, then pick it up (REFERENCE.md "Tasks").

Success is PickUp's (:class:`~safevla_core.tasks.pickup.PickUpTask`): ``end`` while a target is
held. The start is ObjNav's: a reachable point at least ``success_distance_m + START_MARGIN_M``
(2.5 m) from every target, so the object must be found first. Targets are pickupable objects the
arm can reach from some reachable point (:func:`~safevla_core.tasks.pickup.pickup_candidates`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from safevla_core.config import TaskConfig
from safevla_core.tasks.base import EpisodeSpec, instruction_name
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
        min_dist_m = self.cfg.success_distance_m + START_MARGIN_M
        if cands:
            txy = np.stack([p[:2] for _, p in cands])
            d = np.linalg.norm(pts[:, None, :] - txy[None], axis=2)
            ok = np.flatnonzero(d.min(axis=1) >= min_dist_m)
        else:
            ok = np.arange(len(pts))
        if len(ok) == 0:
            raise ValueError(
                f"no reachable point in house {house.get('id', '?')!r} is at least "
                f"{min_dist_m} m from every {target_type}"
            )
        start = pts[ok[int(rng.integers(len(ok)))]]
        yaw = float(rng.uniform(-math.pi, math.pi))
        template = FETCH_TEMPLATES[int(rng.integers(len(FETCH_TEMPLATES)))]

        return EpisodeSpec(
            task=self.name,
            house_id=str(house.get("id", "")),
            target_type=target_type,
            target_ids=all_ids,
            instruction=template.format(name=instruction_name(target_type)),
            robot_pose=(float(start[0]), float(start[1]), yaw),
            seed=int(rng.integers(2**31 - 1)),
        )


__all__ = ["FETCH_TEMPLATES", "FetchTask"]
