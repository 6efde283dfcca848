"""The simulator backend protocol every backend (embedded MuJoCo, AI2-THOR) implements.

The environment (:mod:`safevla_core.env`) only talks to this protocol, so a backend plugs in by
implementing these methods. Images are ``(H, W, 3)`` uint8 RGB, row 0 at the top.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from safevla_core.actions import Action
from safevla_core.world import WorldState

#: Observation keys of the two cameras (SPOC / SafeVLA naming).
NAV_CAMERA = "nav_rgb"
MANIP_CAMERA = "manip_rgb"
CAMERAS: tuple[str, str] = (NAV_CAMERA, MANIP_CAMERA)


@runtime_checkable
class SimBackend(Protocol):
    """A simulator that executes the 20 discrete actions and reports :class:`WorldState`."""

    def reset(
        self,
        house: Mapping[str, Any],
        robot_pose: tuple[float, float, float] | None = None,
        seed: int | None = None,
    ) -> WorldState:
        """Load a house (ProcTHOR JSON schema) and place the robot.

        Args:
            house: House dict in ProcTHOR's schema (see :mod:`safevla_core.houses`).
            robot_pose: ``(x_m, y_m, yaw_rad)`` in ``map``; ``None`` picks a free pose from
                the seed.
            seed: Seeds every random choice of the reset.

        Returns:
            The world state after the scene settled (step 0).
        """
        ...

    def step(self, action: Action) -> WorldState:
        """Execute one discrete action and return the world state after it settled."""
        ...

    def render(self) -> dict[str, np.ndarray]:
        """Render both cameras: ``{NAV_CAMERA: (H, W, 3) uint8, MANIP_CAMERA: (H, W, 3) uint8}``."""
        ...

    def world_state(self) -> WorldState:
        """The current world state (the one the last reset/step returned)."""
        ...

    def reachable_positions(self) -> np.ndarray:
        """``(M, 2)`` float64 grid of base positions (x_m, y_m) the robot fits at, in ``map``."""
        ...

    def close(self) -> None:
        """Release renderer and simulator resources."""
        ...
