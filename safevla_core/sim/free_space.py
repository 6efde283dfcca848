"""Free space of a house: the reachable base-position grid and the corner test's free fraction.

Both are pure 2-D geometry in the ``map`` frame (metres), computed from a parsed house
(:class:`safevla_core.sim.scene.HouseLayout`), with no simulator. The house generator checks
its layouts on a different, conservative raster; :mod:`safevla_core.houses.floor_plan` says
why both exist.
"""

from __future__ import annotations

import math

import numpy as np

from safevla_core.houses.floor_plan import WALL_THICKNESS_M, point_in_polygon
from safevla_core.sim.scene import HouseLayout
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


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(M,)`` distance from each point to the segment ``a``-``b``."""
    ab = b - a
    denom = float(np.dot(ab, ab))
    t = np.zeros(len(points)) if denom < 1e-12 else np.clip((points - a) @ ab / denom, 0.0, 1.0)
    dist: np.ndarray = np.linalg.norm(points - (a + t[:, None] * ab), axis=1)
    return dist


def _box_distance(
    points: np.ndarray, centre: np.ndarray, yaw: float, half: np.ndarray
) -> np.ndarray:
    """``(M,)`` distance from each point to a yawed rectangle (0 inside)."""
    c, s = math.cos(yaw), math.sin(yaw)
    d = points - centre
    local = np.stack([d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c], axis=1)
    out = np.maximum(np.abs(local) - half, 0.0)
    dist: np.ndarray = np.linalg.norm(out, axis=1)
    return dist


def reachable_grid(
    layout: HouseLayout,
    grid_m: float = GRID_SIZE_M,
    radius_m: float = ROBOT_RADIUS_M,
) -> np.ndarray:
    """Grid of base positions where the robot's footprint circle is free.

    A grid point (multiples of ``grid_m`` in ``map``) is reachable when it lies inside a room's
    floor polygon (or on a shared room edge, e.g. in a doorway), the circle of ``radius_m`` about
    it stays clear of every solid wall piece (walls are ``WALL_THICKNESS_M`` thick; door and
    window holes reaching down to the floor are open) and of every static furniture footprint.
    Free (movable) objects do not block.

    Args:
        layout: Parsed house.
        grid_m: Grid spacing, metres.
        radius_m: Footprint radius, metres.

    Returns:
        ``(M, 2)`` float64 positions, row-major by y then x.

    Raises:
        ValueError: On a non-positive grid spacing or radius.
    """
    if not (grid_m > 0 and radius_m > 0):
        raise ValueError(f"grid_m and radius_m must be positive, got {grid_m}, {radius_m}")
    xmin, ymin, xmax, ymax = layout.bounds
    xs = np.arange(math.ceil(xmin / grid_m - 1e-9), math.floor(xmax / grid_m + 1e-9) + 1) * grid_m
    ys = np.arange(math.ceil(ymin / grid_m - 1e-9), math.floor(ymax / grid_m + 1e-9) + 1) * grid_m
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    free: np.ndarray = pts[footprint_free(layout, pts, radius_m)]
    return free


def footprint_free(
    layout: HouseLayout, points: np.ndarray, radius_m: float = ROBOT_RADIUS_M
) -> np.ndarray:
    """Whether the robot's footprint circle fits at each point (the test of :func:`reachable_grid`).

    Args:
        layout: Parsed house.
        points: ``(M, 2)`` positions in ``map``, metres.
        radius_m: Footprint radius, metres.

    Returns:
        ``(M,)`` bool.

    Raises:
        ValueError: On a wrong shape or non-finite points.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.all(np.isfinite(pts)):
        raise ValueError(f"points must be finite (M, 2), got shape {pts.shape}")
    inside = np.zeros(len(pts), dtype=bool)
    for room in layout.rooms:
        poly = room.polygon
        inside |= point_in_polygon(pts, poly)
        # Points on a room edge (between two rooms, in doorways) count as inside.
        for a, b in zip(poly, np.roll(poly, -1, axis=0), strict=True):
            inside |= _segment_distance(pts, a, b) < 1e-6
    clearance = radius_m + WALL_THICKNESS_M / 2
    ok = inside
    for wall in layout.walls:
        length = wall.length_m
        if length < 1e-9:
            continue
        d = (wall.end - wall.start) / length
        # Openings that reach the floor (doors) leave a gap; windows above the base do not.
        floor_holes = [(a, b) for a, b, z0, _ in wall.holes if z0 <= 1e-6]
        for a, b in _solid_intervals(length, floor_holes):
            ok &= _segment_distance(pts, wall.start + d * a, wall.start + d * b) >= clearance
    for obj in layout.objects:
        if obj.kinematic:
            half = np.asarray(obj.size_m[:2], dtype=np.float64) / 2
            ok &= _box_distance(pts, obj.position[:2], obj.yaw_rad, half) >= radius_m
    return ok


def _solid_intervals(length: float, holes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Solid intervals of ``[0, length]`` minus the ``holes`` (metres along the wall)."""
    out, s = [], 0.0
    for a, b in sorted(holes):
        if a > s:
            out.append((s, a))
        s = max(s, b)
    if s < length:
        out.append((s, length))
    return [(a, b) for a, b in out if b - a > 1e-9]
