"""The 2-D floor plan of any house dict: floors, obstacles, door probes and an occupancy raster.

Pure geometry in the ROS ``map`` frame (metres) over a house in the schema of
:mod:`safevla_core.houses.schema`, with no simulator: the generator checks its layouts with it
(:func:`free_space_grid`: a robot reaches every doorway; the agent starts clear of furniture),
and tasks read obstacles from it (:func:`house_obstacle_rects`).

Two free-space tests exist on purpose, with different jobs and different inputs:

* :func:`free_space_grid` (here) rasterises a house dict at 5 cm and grows every obstacle by the
  robot radius as a *square* (a conservative Minkowski sum), floor-standing loose objects
  included. The generator's houses are defined by it: its cells decide which layouts pass and
  where the agent starts (``GENERATOR_VERSION`` in :mod:`~safevla_core.houses.generator`).
* :func:`safevla_core.sim.free_space.reachable_grid` tests the robot's footprint *circle*
  exactly on AI2-THOR's 0.25 m lattice against the simulator's parsed layout (kinematic
  furniture only): the simulator's reachable positions (start poses, the corner cost, the
  expert).

On the generated houses of seeds 0-5 the two disagree on 3-7% of the reachable lattice points
(rounded versus square corners, wall ends, floor-standing objects), so one cannot replace the
other without changing the houses or the simulator's reachable positions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from safevla_core.houses.schema import (
    thor_size_to_map_size,
    thor_to_map_position,
    thor_yaw_to_map_yaw,
)
from safevla_core.objects import lookup
from safevla_core.stretch_constants import BASE_TURN_RADIUS_M

Rect = tuple[float, float, float, float]
"""Axis-aligned rectangle ``(xmin, ymin, xmax, ymax)`` in the map frame, metres."""

#: Wall thickness of 2-D obstacles, furniture clearance and the simulator's wall boxes (ours:
#: ProcTHOR's JSON walls are zero-thickness polygons; 0.1 m is a common interior wall).
WALL_THICKNESS_M: float = 0.1
#: Cell size of the free-space grid (ours: 5 cm resolves 0.5 m gaps into 10 cells).
GRID_CELL_M: float = 0.05
#: An unkinematic object whose bottom is below this height stands on the floor (ours).
FLOOR_CONTACT_TOL_M: float = 0.02


@dataclass(frozen=True)
class Obstacle2D:
    """A rotated rectangle on the floor, map frame.

    Attributes:
        id: Wall id (``"#k"`` appended per piece between doorways) or object id.
        center_xy: Centre ``(x, y)``, metres.
        half_extents: Half sizes ``(hx, hy)`` along the rectangle's own axes, metres.
        yaw_rad: Rotation of the rectangle's x axis from map +x, radians.
    """

    id: str
    center_xy: tuple[float, float]
    half_extents: tuple[float, float]
    yaw_rad: float

    def aabb(self) -> Rect:
        """Axis-aligned bounding box ``(xmin, ymin, xmax, ymax)``, metres."""
        c, s = abs(math.cos(self.yaw_rad)), abs(math.sin(self.yaw_rad))
        hx, hy = self.half_extents
        ex, ey = c * hx + s * hy, s * hx + c * hy
        return (
            self.center_xy[0] - ex,
            self.center_xy[1] - ey,
            self.center_xy[0] + ex,
            self.center_xy[1] + ey,
        )


def iter_objects(house: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """All objects of a house, depth first through ``children`` (THOR nests some)."""
    stack = list(reversed(house.get("objects", [])))
    while stack:
        o = stack.pop()
        yield o
        stack.extend(reversed(o.get("children", []) or []))


def object_size_map(obj: Mapping[str, Any]) -> np.ndarray:
    """Map-frame local size ``(sx, sy, sz)`` of an object, metres.

    From its ``boundingBox`` (THOR axes, local to the object before its rotation), else the
    catalogue size of its ``objectType``.

    Raises:
        KeyError: If it has neither a bounding box nor a catalogued type.
    """
    if "boundingBox" in obj:
        return thor_size_to_map_size(obj["boundingBox"])
    return np.array(lookup(obj["objectType"]).size_m, dtype=np.float64)


def object_footprint(obj: Mapping[str, Any]) -> Obstacle2D:
    """The floor footprint of an object as a rotated rectangle (map frame)."""
    p = thor_to_map_position(obj["position"])
    s = object_size_map(obj)
    yaw = thor_yaw_to_map_yaw(float(obj.get("rotation", {}).get("y", 0.0)))
    return Obstacle2D(
        str(obj["id"]), (float(p[0]), float(p[1])), (float(s[0]) / 2, float(s[1]) / 2), yaw
    )


def house_floor_rects(house: Mapping[str, Any]) -> list[Rect]:
    """Floor of every room as axis-aligned rectangles ``(xmin, ymin, xmax, ymax)``, map frame.

    Rectilinear (axis-parallel edged, e.g. L-shaped) floor polygons are cut into vertical
    slabs at their distinct x coordinates; each slab contributes the y intervals inside the
    polygon (even-odd rule), so the union of the rectangles is the floor.

    Args:
        house: A house in the schema of :mod:`safevla_core.houses.schema`.

    Returns:
        Rectangles in room order, metres.

    Raises:
        ValueError: If a floor polygon has fewer than 3 points or a non axis-parallel edge.
    """
    out: list[Rect] = []
    for room in house["rooms"]:
        pts = [thor_to_map_position(p)[:2] for p in room["floorPolygon"]]
        if len(pts) < 3:
            raise ValueError(f"room {room.get('id')!r}: floorPolygon needs >= 3 points")
        edges = list(zip(pts, pts[1:] + pts[:1], strict=True))
        for a, b in edges:
            if abs(a[0] - b[0]) > 1e-6 and abs(a[1] - b[1]) > 1e-6:
                raise ValueError(
                    f"room {room.get('id')!r}: floor edge {a}->{b} is not axis-parallel"
                )
        xs = sorted({round(float(p[0]), 6) for p in pts})
        for xa, xb in zip(xs[:-1], xs[1:], strict=True):
            xm = (xa + xb) / 2
            ys = sorted(
                float(a[1])
                for a, b in edges
                if abs(a[1] - b[1]) <= 1e-6 and min(a[0], b[0]) < xm < max(a[0], b[0])
            )
            for ya, yb in zip(ys[0::2], ys[1::2], strict=False):
                out.append((xa, ya, xb, yb))
    return out


def _door_gaps(house: Mapping[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Wall id -> door intervals along that wall (metres from its start).

    A ``holePolygon`` is measured along ``wall0`` from its start (ProcTHOR); the same stretch of
    floor is cut from ``wall1`` (and any other wall on that line) by projecting its end points.
    """
    walls = {w["id"]: w for w in house.get("walls", [])}
    gaps: dict[str, list[tuple[float, float]]] = {}
    for door in house.get("doors", []):
        w0 = walls.get(door.get("wall0"))
        if w0 is None:
            raise ValueError(f"door {door.get('id')!r}: unknown wall0 {door.get('wall0')!r}")
        hole = door["holePolygon"]
        if float(min(hole[0]["y"], hole[1]["y"])) > FLOOR_CONTACT_TOL_M:
            continue  # a window-like hole does not open the floor
        a = thor_to_map_position(w0["polygon"][0])[:2]
        b = thor_to_map_position(w0["polygon"][1])[:2]
        u = (b - a) / max(float(np.linalg.norm(b - a)), 1e-12)
        h0, h1 = sorted((float(hole[0]["x"]), float(hole[1]["x"])))
        p0, p1 = a + u * h0, a + u * h1
        for wid in (door.get("wall0"), door.get("wall1")):
            w = walls.get(wid)
            if w is None:
                continue
            wa = thor_to_map_position(w["polygon"][0])[:2]
            wb = thor_to_map_position(w["polygon"][1])[:2]
            wu = (wb - wa) / max(float(np.linalg.norm(wb - wa)), 1e-12)
            t0, t1 = sorted((float((p0 - wa) @ wu), float((p1 - wa) @ wu)))
            gaps.setdefault(wid, []).append((t0, t1))
    return gaps


def house_obstacle_rects(
    house: Mapping[str, Any], include_floor_objects: bool = False
) -> list[Obstacle2D]:
    """Walls (cut at doorways) and kinematic furniture as 2-D rectangles, map frame.

    Walls are WALL_THICKNESS_M thick, centred on their polygon's bottom edge; walls on the same
    line (a room's wall and its neighbour's or the exterior one) yield one obstacle.

    Args:
        house: A house in the schema of :mod:`safevla_core.houses.schema`.
        include_floor_objects: Also return non-kinematic objects standing on the floor
            (bottom below FLOOR_CONTACT_TOL_M), e.g. a SpaceHeater.

    Returns:
        Obstacles; call :meth:`Obstacle2D.aabb` for axis-aligned boxes.

    Raises:
        ValueError: On a door naming an unknown ``wall0``.
        KeyError: On an object with neither bounding box nor catalogued type.
    """
    gaps = _door_gaps(house)
    out: list[Obstacle2D] = []
    seen: set[tuple[float, ...]] = set()
    for w in house.get("walls", []):
        a = thor_to_map_position(w["polygon"][0])[:2]
        b = thor_to_map_position(w["polygon"][1])[:2]
        length = float(np.linalg.norm(b - a))
        if length < 1e-9:
            continue
        u = (b - a) / length
        yaw = math.atan2(u[1], u[0])
        pieces = [(0.0, length)]
        for g0, g1 in sorted(gaps.get(w["id"], [])):
            nxt = []
            for p0, p1 in pieces:
                if g1 <= p0 or g0 >= p1:
                    nxt.append((p0, p1))
                    continue
                if g0 > p0:
                    nxt.append((p0, g0))
                if g1 < p1:
                    nxt.append((g1, p1))
            pieces = nxt
        for k, (p0, p1) in enumerate(pieces):
            if p1 - p0 < 1e-6:
                continue
            c = a + u * (p0 + p1) / 2
            line_angle = yaw % math.pi  # a wall and its reverse lie on the same line
            if line_angle > math.pi - 1e-6:
                line_angle = 0.0
            key = (
                round(float(c[0]), 3),
                round(float(c[1]), 3),
                round(p1 - p0, 3),
                round(line_angle, 3),
            )
            if key in seen:
                continue
            seen.add(key)
            out.append(
                Obstacle2D(
                    f"{w['id']}#{k}",
                    (float(c[0]), float(c[1])),
                    ((p1 - p0) / 2, WALL_THICKNESS_M / 2),
                    yaw,
                )
            )
    for o in iter_objects(house):
        if o.get("kinematic", False):
            out.append(object_footprint(o))
        elif include_floor_objects:
            bottom = float(o["position"]["y"]) - float(object_size_map(o)[2]) / 2
            if bottom < FLOOR_CONTACT_TOL_M:
                out.append(object_footprint(o))
    return out


def door_probe_points(house: Mapping[str, Any], depth_m: float = 0.5) -> list[tuple[float, float]]:
    """Points ``depth_m`` in front of each doorway's centre on both sides, map frame.

    Args:
        house: A house in the schema of :mod:`safevla_core.houses.schema`.
        depth_m: Distance from the wall line, metres (ours: 0.5 m is beyond an inflated wall).

    Returns:
        Two points per door (room0 side order not guaranteed), metres.
    """
    walls = {w["id"]: w for w in house.get("walls", [])}
    out = []
    for door in house.get("doors", []):
        w0 = walls[door["wall0"]]
        a = thor_to_map_position(w0["polygon"][0])[:2]
        b = thor_to_map_position(w0["polygon"][1])[:2]
        u = (b - a) / max(float(np.linalg.norm(b - a)), 1e-12)
        hole = door["holePolygon"]
        c = a + u * (float(hole[0]["x"]) + float(hole[1]["x"])) / 2
        n = np.array([-u[1], u[0]])
        for sgn in (1.0, -1.0):
            q = c + sgn * depth_m * n
            out.append((float(q[0]), float(q[1])))
    return out


@dataclass(frozen=True, eq=False)
class FreeSpaceGrid:
    """Occupancy of the floor for a disc robot, map frame.

    Attributes:
        free: ``(ny, nx)`` bool; True where the robot's centre may be (row = y, col = x).
        origin_xy: Map coordinates of the lower-left corner of cell ``(0, 0)``, metres.
        cell_m: Cell size, metres.
    """

    free: np.ndarray
    origin_xy: tuple[float, float]
    cell_m: float

    def cell_of(self, xy: Sequence[float]) -> tuple[int, int]:
        """Cell ``(row, col)`` holding map point ``xy``.

        Raises:
            ValueError: If the point is outside the grid or not finite.
        """
        x, y = float(xy[0]), float(xy[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"point {xy!r} is not finite")
        col = math.floor((x - self.origin_xy[0]) / self.cell_m)
        row = math.floor((y - self.origin_xy[1]) / self.cell_m)
        if not (0 <= row < self.free.shape[0] and 0 <= col < self.free.shape[1]):
            raise ValueError(f"point {xy!r} is outside the grid")
        return row, col

    def cell_centre(self, cell: tuple[int, int]) -> tuple[float, float]:
        """Map coordinates of a cell's centre, metres."""
        return (
            self.origin_xy[0] + (cell[1] + 0.5) * self.cell_m,
            self.origin_xy[1] + (cell[0] + 0.5) * self.cell_m,
        )

    def is_free(self, xy: Sequence[float]) -> bool:
        """True when the robot's centre may stand at ``xy`` (False outside the grid)."""
        try:
            return bool(self.free[self.cell_of(xy)])
        except ValueError:
            return False

    def reachable_from(self, xy: Sequence[float]) -> np.ndarray:
        """``(ny, nx)`` bool: free cells 4-connected to the cell of ``xy`` (empty if blocked)."""
        seed = np.zeros_like(self.free)
        if self.is_free(xy):
            seed[self.cell_of(xy)] = True
        return _flood_fill(self.free, seed)


def _run_fill(free: np.ndarray, reached: np.ndarray) -> np.ndarray:
    """Grow ``reached`` to whole horizontal runs of free cells (one row-wise sweep)."""
    prev = np.zeros_like(free)
    prev[:, 1:] = free[:, :-1]
    ids = np.cumsum((free & ~prev).ravel()).reshape(free.shape)
    hit = np.zeros(int(ids[-1, -1]) + 2, dtype=bool)
    hit[ids[reached & free]] = True
    grown: np.ndarray = hit[ids] & free
    return grown


def _flood_fill(free: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """4-connected flood fill by alternating row and column run sweeps (numpy only)."""
    reached: np.ndarray = seed & free
    while True:
        grown = _run_fill(free.T, _run_fill(free, reached).T).T
        if np.array_equal(grown, reached):
            return reached
        reached = grown


def free_space_grid(
    house: Mapping[str, Any],
    cell_m: float = GRID_CELL_M,
    robot_radius_m: float = BASE_TURN_RADIUS_M,
) -> FreeSpaceGrid:
    """Rasterise where a disc robot's centre may stand: on a floor, clear of inflated obstacles.

    Obstacles are walls, kinematic furniture and objects standing on the floor
    (:func:`house_obstacle_rects` with ``include_floor_objects=True``), each grown by
    ``robot_radius_m`` on every side (a square-cornered, slightly conservative Minkowski sum).
    A cell is free when its centre is on some room's floor and outside every grown obstacle.

    Args:
        house: A house in the schema of :mod:`safevla_core.houses.schema`.
        cell_m: Cell size, metres (> 0).
        robot_radius_m: Robot radius, metres (>= 0); the Stretch base's turn-in-place circle,
            0.34 m, by default (:data:`safevla_core.stretch_constants.BASE_TURN_RADIUS_M`).

    Returns:
        The grid over the floors' bounding box.

    Raises:
        ValueError: On a non-positive cell size, a negative radius or a house without floor.
    """
    if not (cell_m > 0 and math.isfinite(cell_m)):
        raise ValueError(f"cell_m must be positive, got {cell_m!r}")
    if not (robot_radius_m >= 0 and math.isfinite(robot_radius_m)):
        raise ValueError(f"robot_radius_m must be >= 0, got {robot_radius_m!r}")
    floors = house_floor_rects(house)
    if not floors:
        raise ValueError(f"house {house.get('id', '?')!r} has no floor")
    fx0 = min(r[0] for r in floors)
    fy0 = min(r[1] for r in floors)
    nx = math.ceil((max(r[2] for r in floors) - fx0) / cell_m - 1e-9)
    ny = math.ceil((max(r[3] for r in floors) - fy0) / cell_m - 1e-9)
    xs = fx0 + (np.arange(nx) + 0.5) * cell_m
    ys = fy0 + (np.arange(ny) + 0.5) * cell_m
    free = np.zeros((ny, nx), dtype=bool)

    def span(lo: float, hi: float, origin: float, n: int) -> slice:
        # cells whose centre c satisfies lo <= c <= hi
        a = max(0, math.ceil((lo - origin) / cell_m - 0.5 - 1e-9))
        b = min(n, math.floor((hi - origin) / cell_m - 0.5 + 1e-9) + 1)
        return slice(a, max(a, b))

    for x0, y0, x1, y1 in floors:
        free[span(y0, y1, fy0, ny), span(x0, x1, fx0, nx)] = True
    for ob in house_obstacle_rects(house, include_floor_objects=True):
        x0, y0, x1, y1 = ob.aabb()
        rs = span(y0 - robot_radius_m, y1 + robot_radius_m, fy0, ny)
        cs = span(x0 - robot_radius_m, x1 + robot_radius_m, fx0, nx)
        if rs.start >= rs.stop or cs.start >= cs.stop:
            continue
        if abs(math.sin(2 * ob.yaw_rad)) < 1e-9:  # axis-aligned: the AABB is exact
            free[rs, cs] = False
            continue
        gx, gy = np.meshgrid(xs[cs] - ob.center_xy[0], ys[rs] - ob.center_xy[1])
        c, s = math.cos(ob.yaw_rad), math.sin(ob.yaw_rad)
        lx, ly = c * gx + s * gy, -s * gx + c * gy
        hit = (np.abs(lx) <= ob.half_extents[0] + robot_radius_m) & (
            np.abs(ly) <= ob.half_extents[1] + robot_radius_m
        )
        free[rs, cs] &= ~hit
    return FreeSpaceGrid(free, (fx0, fy0), cell_m)
