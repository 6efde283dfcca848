"""A planar laser scanner in MuJoCo: the simulated twin of the Stretch's RPLidar (``/scan``).

One horizontal fan of rays from the laser's pose on the robot
(:data:`safevla_core.stretch_constants.LASER_POSE_IN_BASE` and ``LASER_HEIGHT_M``: ``joint_laser``
of the SE3 URDF) cast with ``mujoco.mj_multiRay`` against the house's structure and objects
(the robot's own geoms and the hidden floor are not in the ray's geom groups). The ranges follow the
``sensor_msgs/LaserScan`` conventions of REP-117 (``+inf``: no return within ``range_max_m``;
``-inf``: closer than ``range_min_m``), so the shield reads simulated and real scans with the same
code (:func:`safevla_core.shield.scan_to_points`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from safevla_core.stretch_constants import LASER_HEIGHT_M, LASER_POSE_IN_BASE


@dataclass(frozen=True)
class LaserSpec:
    """Geometry of the simulated scan, in the laser frame (REP-103: counter-clockwise angles).

    Attributes:
        num_beams: Beams over the full turn (RPLidar A1 on the Stretch: ~0.5-1 deg steps; ours
            360, one per degree).
        range_min_m: Minimum range, metres (RPLidar A1 data sheet: 0.15 m).
        range_max_m: Maximum range, metres (RPLidar A1 data sheet: 12 m).
        geom_groups: MuJoCo geom groups the rays hit (structure 0 and objects 2,
            :mod:`safevla_core.sim.scene`).
    """

    num_beams: int = 360
    range_min_m: float = 0.15
    range_max_m: float = 12.0
    geom_groups: tuple[int, ...] = (0, 2)

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on a non-positive beam count or bad range limits."""
        if self.num_beams <= 0:
            raise ValueError(f"num_beams must be positive, got {self.num_beams}")
        if not (0.0 <= self.range_min_m < self.range_max_m and math.isfinite(self.range_max_m)):
            raise ValueError(f"bad range limits {self.range_min_m}..{self.range_max_m}")

    @property
    def angle_min_rad(self) -> float:
        """Angle of the first beam, radians (-pi)."""
        return -math.pi

    @property
    def angle_increment_rad(self) -> float:
        """Angle between beams, radians."""
        return 2.0 * math.pi / self.num_beams


def cast_scan(
    model: Any, data: Any, base_pose: np.ndarray, spec: LaserSpec | None = None
) -> np.ndarray:
    """Ranges of one scan from the laser on a base at ``base_pose``.

    Args:
        model: ``mujoco.MjModel`` of the house and robot.
        data: ``mujoco.MjData`` after ``mj_forward`` (geom poses current).
        base_pose: ``(3,)`` base pose ``(x_m, y_m, yaw_rad)`` in the world (``map``).
        spec: Scan geometry (default :class:`LaserSpec`).

    Returns:
        ``(num_beams,)`` float64 ranges, metres, beam ``i`` at angle
        ``angle_min_rad + i * angle_increment_rad`` in the laser frame; ``+inf`` / ``-inf`` as in
        REP-117.
    """
    import mujoco

    spec = spec or LaserSpec()
    x, y, yaw = (float(v) for v in base_pose)
    lx, ly, lyaw = LASER_POSE_IN_BASE
    c, s = math.cos(yaw), math.sin(yaw)
    origin = np.array([x + c * lx - s * ly, y + s * lx + c * ly, LASER_HEIGHT_M])
    ang = yaw + lyaw + spec.angle_min_rad + spec.angle_increment_rad * np.arange(spec.num_beams)
    vec = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], axis=1)
    groups = np.zeros(6, dtype=np.uint8)
    groups[list(spec.geom_groups)] = 1
    geomid = np.full(spec.num_beams, -1, dtype=np.int32)
    dist = np.full(spec.num_beams, -1.0)
    mujoco.mj_multiRay(
        model,
        data,
        origin,
        vec.ravel(),
        groups,
        True,
        -1,
        geomid,
        dist,
        None,
        spec.num_beams,
        spec.range_max_m,
    )
    ranges = np.where((geomid >= 0) & (dist >= 0.0), dist, np.inf)
    ranges = np.where(ranges > spec.range_max_m, np.inf, ranges)
    return np.where(ranges < spec.range_min_m, -np.inf, ranges)
