"""The simulator's free space: reachable base positions on AI2-THOR's lattice, the corner test.

Both are pure 2-D geometry in the ``map`` frame (metres), with no simulator. A position is
reachable when the robot's footprint *circle* fits there against walls and static furniture:
:func:`safevla_core.houses.floor_plan.footprint_free` with its defaults, the same test the house
generator samples with the square footprint (that module says why the two settings differ).
"""

from __future__ import annotations

import math

import numpy as np

from safevla_core.houses.floor_plan import FloorPlan, footprint_free
from safevla_core.stretch_constants import BASE_TURN_RADIUS_M

#: Grid spacing of reachable positions, metres (AI2-THOR's default ``gridSize`` 0.25).
GRID_SIZE_M = 0.25
#: Robot footprint radius, metres: the circle about the rotation axis (the ``base_link`` origin)
#: that contains the Stretch base's collision mesh, 0.34 m
#: (:data:`safevla_core.stretch_constants.BASE_TURN_RADIUS_M`). A position is reachable when the
#: robot can turn in place there, as with THOR's reachable positions.
ROBOT_RADIUS_M: float = BASE_TURN_RADIUS_M


def free_fraction(
    robot_xy: np.ndarray | tuple[float, float],
    reachable_xy: np.ndarray,
    k: int = 100,
    radius_m: float = 1.0,
) -> float:
    """Fraction of the ``k`` reachable points nearest the robot that lie within ``radius_m``.

    Implements the "corner" component of REFERENCE.md (authors' code): the robot is wedged in a
    narrow corner when fewer than 40% of k = 100 sampled reachable points lie within 1 m. We take
    the k *nearest* reachable grid points (deterministic, instead of a random sample) and count
    those within ``radius_m`` (Euclidean distance in the floor plane; the authors' code compared z
    with y, a known defect). With a 0.25 m grid at most 49 points lie within 1 m, so open space
    gives ~0.49 and a corner ~0.15-0.3.

    Args:
        robot_xy: ``(2,)`` robot position ``(x_m, y_m)``.
        reachable_xy: ``(M, 2)`` reachable positions.
        k: Number of nearest points considered (CostConfig.corner_samples); if fewer than ``k``
            points exist, all ``M`` are used.
        radius_m: Radius, metres (CostConfig.corner_radius_m).

    Returns:
        The fraction in [0, 1]; ``1.0`` when there are no reachable points (unknown).

    Raises:
        ValueError: On a wrong shape, non-finite input, ``k < 1`` or ``radius_m <= 0``.
    """
    p = np.asarray(robot_xy, dtype=np.float64)
    pts = np.asarray(reachable_xy, dtype=np.float64)
    if p.shape != (2,):
        raise ValueError(f"robot_xy must be (2,), got {p.shape}")
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"reachable_xy must be (M, 2), got {pts.shape}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(pts))):
        raise ValueError("free_fraction: NaN or inf in the input")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not (math.isfinite(radius_m) and radius_m > 0):
        raise ValueError(f"radius_m must be positive, got {radius_m}")
    if len(pts) == 0:
        return 1.0
    dist = np.linalg.norm(pts - p, axis=1)
    n = min(k, len(dist))
    nearest = np.partition(dist, n - 1)[:n]
    return float(np.count_nonzero(nearest <= radius_m) / n)


def reachable_grid(
    plan: FloorPlan,
    grid_m: float = GRID_SIZE_M,
    radius_m: float = ROBOT_RADIUS_M,
) -> np.ndarray:
    """Grid of base positions where the robot's footprint circle is free.

    A grid point (multiples of ``grid_m`` in ``map``, over the floors' bounding box) is
    reachable when :func:`~safevla_core.houses.floor_plan.footprint_free` holds there: on a
    room's floor (a shared room edge, e.g. in a doorway, counts), the circle of ``radius_m``
    clear of every solid wall piece (walls are ``WALL_THICKNESS_M`` thick; holes reaching down
    to the floor are open) and of every static furniture footprint. Movable objects do not
    block.

    Args:
        plan: The house's floor plan (:func:`safevla_core.houses.floor_plan.house_floor_plan`).
        grid_m: Grid spacing, metres.
        radius_m: Footprint radius, metres.

    Returns:
        ``(M, 2)`` float64 positions, row-major by y then x.

    Raises:
        ValueError: On a non-positive grid spacing or radius.
    """
    if not (grid_m > 0 and radius_m > 0):
        raise ValueError(f"grid_m and radius_m must be positive, got {grid_m}, {radius_m}")
    xmin, ymin, xmax, ymax = plan.bounds
    xs = np.arange(math.ceil(xmin / grid_m - 1e-9), math.floor(xmax / grid_m + 1e-9) + 1) * grid_m
    ys = np.arange(math.ceil(ymin / grid_m - 1e-9), math.floor(ymax / grid_m + 1e-9) + 1) * grid_m
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    free: np.ndarray = pts[footprint_free(plan, pts, radius_m)]
    return free
