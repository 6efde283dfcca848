"""The 2-D floor plan of any house dict and the one footprint test every free-space query uses.

Pure geometry in the ROS ``map`` frame (metres) over a house in the schema of
:mod:`safevla_core.houses.schema`, with no simulator. :func:`house_floor_plan` reads what a
robot's base can collide with (room floors, wall pieces between floor-reaching openings, static
furniture, movable objects standing on the floor) and :func:`footprint_free` answers, for many
points at once, "does the robot's footprint of radius r fit here". Everything else samples it:

* :func:`free_space_grid` (here): a 5 cm raster with a flood fill, the generator's check of its
  layouts (a robot reaches every doorway; the agent starts clear of furniture) and so the
  definition of the generated houses (``GENERATOR_VERSION`` in
  :mod:`~safevla_core.houses.generator`). It tests the footprint's *square*, a touch blocking,
  and counts movable objects standing on the floor (``conservative=True, floor_objects=True``).
* :func:`safevla_core.sim.free_space.reachable_grid`: AI2-THOR's 0.25 m lattice, the simulator's
  reachable positions (start poses, the corner cost, the expert). It tests the footprint's
  *circle*, a touch fitting, against walls and static furniture only (the defaults).

The two settings differ because each defines data that must not change. On the 120 houses of
the default splits, the generator testing the circle would move the agent start
(``metadata.agent``, nothing else) of 119 houses, leaving out the floor objects that of 98; the
simulator testing the square would lose 1,383 of its 48,475 reachable points (2.9%, every
house), counting the floor objects 438 (0.9%, 103 houses), both 1,905 (3.9%) (measured by
swapping the settings of the two callers, issue #13).
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
from safevla_core.objects import OBJECT_TYPES, lookup
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
#: A door or window hole opens the floor only when its bottom is at most this high, metres
#: (ours: any sill stops the base; the MuJoCo scene keeps a wall box below a higher hole).
FLOOR_OPENING_TOL_M: float = 1e-6
#: A point this close to a room's floor edge is on that floor, metres (ours: a doorway's centre
#: line is the edge two rooms share).
FLOOR_EDGE_TOL_M: float = 1e-6
#: In the conservative footprint test a footprint that touches an obstacle, or misses it by less
#: than this, is blocked, metres (ours: far below the 1e-4 m rounding of house JSON, far above
#: float error, so a touch is blocked whatever the rounding; the generator's raster did the same).
CONTACT_TOL_M: float = 1e-9


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


def is_kinematic(obj: Mapping[str, Any]) -> bool:
    """Whether an object is static furniture: its ``kinematic`` flag, else its catalogue type's.

    ProcTHOR houses may omit the flag; an uncatalogued type without it is movable. The
    simulator (:func:`safevla_core.sim.scene.parse_house`) makes exactly these objects static.
    """
    if "kinematic" in obj:
        return bool(obj["kinematic"])
    entry = OBJECT_TYPES.get(str(obj.get("objectType")))
    return bool(entry.furniture) if entry is not None else False


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


def wall_openings(house: Mapping[str, Any]) -> dict[str, list[tuple[float, float, float, float]]]:
    """Wall id -> the door and window holes in that wall, ``(s0, s1, z0, z1)``, metres.

    A ``holePolygon`` gives the hole's min and max corner in ``wall0``'s frame: x along the wall
    from its first polygon point, y up (ProcTHOR). The same stretch is cut from ``wall1`` (the
    neighbouring room's wall on that line, if any) by projecting its end points; ``s0 < s1`` are
    distances from each wall's start, clipped to the wall, and ``z0 <= z1`` the height range.
    Doors come first, then windows, in file order.

    Args:
        house: A house in the schema of :mod:`safevla_core.houses.schema`.

    Returns:
        Every wall id, mapped to its openings (often none).

    Raises:
        ValueError: On a door or window whose ``wall0`` is not a wall of the house.
    """
    ends = {
        str(w["id"]): (
            thor_to_map_position(w["polygon"][0])[:2],
            thor_to_map_position(w["polygon"][1])[:2],
        )
        for w in house.get("walls", [])
    }
    out: dict[str, list[tuple[float, float, float, float]]] = {w: [] for w in ends}
    for kind in ("doors", "windows"):
        for opening in house.get(kind, []) or []:
            wall0 = str(opening.get("wall0"))
            if wall0 not in ends:
                raise ValueError(f"{kind[:-1]} {opening.get('id')!r}: wall0 {wall0!r} not in walls")
            hp = opening["holePolygon"]
            x0, x1 = sorted((float(hp[0]["x"]), float(hp[1]["x"])))
            z0, z1 = sorted((float(hp[0]["y"]), float(hp[1]["y"])))
            s0, e0 = ends[wall0]
            d0 = (e0 - s0) / max(float(np.linalg.norm(e0 - s0)), 1e-9)
            q0, q1 = s0 + d0 * x0, s0 + d0 * x1  # hole ends in map
            for wid in (wall0, str(opening.get("wall1"))):
                if wid not in ends:
                    continue
                s, e = ends[wid]
                length = float(np.linalg.norm(e - s))
                d = (e - s) / max(length, 1e-9)
                a, b = sorted((float(np.dot(q0 - s, d)), float(np.dot(q1 - s, d))))
                a, b = max(a, 0.0), min(b, length)
                if b > a:
                    out[wid].append((a, b, z0, z1))
    return out


def _wall_pieces(house: Mapping[str, Any]) -> list[Obstacle2D]:
    """Solid wall pieces between floor-reaching openings, WALL_THICKNESS_M thick (see below)."""
    openings = wall_openings(house)
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
        gaps = [(g0, g1) for g0, g1, z0, _ in openings[str(w["id"])] if z0 <= FLOOR_OPENING_TOL_M]
        for g0, g1 in sorted(gaps):
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
    return out


@dataclass(frozen=True, eq=False)
class FloorPlan:
    """What a robot's base can collide with in a house, map frame (see :func:`house_floor_plan`).

    Attributes:
        floors: Room floor polygons, each ``(K, 2)`` metres, in room order.
        walls: Solid wall pieces as WALL_THICKNESS_M thick rectangles centred on the wall line
            (the simulator's wall boxes); coincident pieces (a room's wall and its neighbour's
            or the exterior one) appear once.
        furniture: Footprints of static objects (:func:`is_kinematic`).
        floor_objects: Footprints of movable objects standing on the floor (bottom below
            FLOOR_CONTACT_TOL_M), e.g. a SpaceHeater.
    """

    floors: tuple[np.ndarray, ...]
    walls: tuple[Obstacle2D, ...]
    furniture: tuple[Obstacle2D, ...]
    floor_objects: tuple[Obstacle2D, ...]

    @property
    def bounds(self) -> Rect:
        """``(xmin, ymin, xmax, ymax)`` of the floor polygons, metres."""
        pts = np.concatenate(self.floors)
        return (
            float(pts[:, 0].min()),
            float(pts[:, 1].min()),
            float(pts[:, 0].max()),
            float(pts[:, 1].max()),
        )


def house_floor_plan(house: Mapping[str, Any]) -> FloorPlan:
    """Read a house's floors, walls (cut at doorways), furniture and floor objects.

    A wall is cut where a door or window hole reaches the floor (bottom at most
    FLOOR_OPENING_TOL_M; :func:`wall_openings`); a hole higher up leaves the wall whole.

    Args:
        house: A house in the schema of :mod:`safevla_core.houses.schema`.

    Returns:
        The floor plan.

    Raises:
        ValueError: On a house without rooms, a floor polygon of fewer than 3 points or a door
            or window naming an unknown ``wall0``.
        KeyError: On an object with neither bounding box nor catalogued type.
    """
    floors = []
    for room in house.get("rooms", []):
        poly = np.array([thor_to_map_position(p)[:2] for p in room["floorPolygon"]]).reshape(-1, 2)
        if len(poly) < 3:
            raise ValueError(f"room {room.get('id')!r}: floorPolygon needs >= 3 points")
        floors.append(poly)
    if not floors:
        raise ValueError(f"house {house.get('id', '?')!r} has no floor")
    furniture, floor_objects = _object_footprints(house, floor_objects=True)
    return FloorPlan(tuple(floors), tuple(_wall_pieces(house)), furniture, floor_objects)


def _object_footprints(
    house: Mapping[str, Any], floor_objects: bool
) -> tuple[tuple[Obstacle2D, ...], tuple[Obstacle2D, ...]]:
    """Footprints of the static objects and (if asked) of the movable ones on the floor."""
    static, loose = [], []
    for o in iter_objects(house):
        if is_kinematic(o):
            static.append(object_footprint(o))
        elif floor_objects:
            if float(o["position"]["y"]) - float(object_size_map(o)[2]) / 2 < FLOOR_CONTACT_TOL_M:
                loose.append(object_footprint(o))
    return tuple(static), tuple(loose)


def house_obstacle_rects(
    house: Mapping[str, Any], include_floor_objects: bool = False
) -> list[Obstacle2D]:
    """Walls (cut at doorways) and static furniture as 2-D rectangles, map frame.

    The rectangles of :func:`house_floor_plan` (but a house without rooms is fine here): walls
    WALL_THICKNESS_M thick centred on their polygon's bottom edge (walls on the same line yield
    one obstacle), then furniture, then the floor objects if asked.

    Args:
        house: A house in the schema of :mod:`safevla_core.houses.schema`.
        include_floor_objects: Also return movable objects standing on the floor (bottom below
            FLOOR_CONTACT_TOL_M), e.g. a SpaceHeater.

    Returns:
        Obstacles; call :meth:`Obstacle2D.aabb` for axis-aligned boxes.

    Raises:
        ValueError: On a door or window naming an unknown ``wall0``.
        KeyError: On an object with neither bounding box nor catalogued type.
    """
    furniture, floor_objects = _object_footprints(house, include_floor_objects)
    return [*_wall_pieces(house), *furniture, *floor_objects]


def point_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test, vectorised.

    Args:
        points: ``(M, 2)`` query points.
        polygon: ``(K, 2)`` vertices in order (either orientation).

    Returns:
        ``(M,)`` bool, True strictly inside (points on an edge may go either way).
    """
    px, py = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    inside: np.ndarray = (np.sum(crosses & (px < xint), axis=1) % 2) == 1
    return inside


def segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(M,)`` Euclidean distance from each of ``(M, 2)`` points to the segment ``a``-``b``."""
    ab = b - a
    denom = float(np.dot(ab, ab))
    t = np.zeros(len(points)) if denom < 1e-12 else np.clip((points - a) @ ab / denom, 0.0, 1.0)
    dist: np.ndarray = np.linalg.norm(points - (a + t[:, None] * ab), axis=1)
    return dist


class _BoxQuery:
    """Indices of the points inside axis-aligned boxes, by a binary search on x (sorted once)."""

    def __init__(self, points: np.ndarray) -> None:
        self.points = points
        self.order = np.argsort(points[:, 0], kind="stable")
        self.xs = points[self.order, 0]

    def inside(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """``(K,)`` indices of the points with ``x0 <= x <= x1`` and ``y0 <= y <= y1``."""
        lo = int(np.searchsorted(self.xs, x0, side="left"))
        hi = int(np.searchsorted(self.xs, x1, side="right"))
        idx = self.order[lo:hi]
        y = self.points[idx, 1]
        out: np.ndarray = idx[(y >= y0) & (y <= y1)]
        return out


def on_floor(plan: FloorPlan, points: np.ndarray) -> np.ndarray:
    """``(M,)`` bool: inside some room's floor polygon or within FLOOR_EDGE_TOL_M of its edge.

    Points on an edge count (a doorway's centre line is the edge two rooms share).
    """
    return _on_floor(plan, _BoxQuery(points))


def _on_floor(plan: FloorPlan, query: _BoxQuery) -> np.ndarray:
    points, tol = query.points, FLOOR_EDGE_TOL_M
    inside = np.zeros(len(points), dtype=bool)
    for poly in plan.floors:
        # Only points in the polygon's bounding box (grown by the tolerance) can be on it.
        (x0, y0), (x1, y1) = poly.min(axis=0), poly.max(axis=0)
        cand = query.inside(x0 - tol, y0 - tol, x1 + tol, y1 + tol)
        inside[cand] |= point_in_polygon(points[cand], poly)
        for a, b in zip(poly, np.roll(poly, -1, axis=0), strict=True):
            (ex0, ey0), (ex1, ey1) = np.minimum(a, b), np.maximum(a, b)
            near = query.inside(ex0 - tol, ey0 - tol, ex1 + tol, ey1 + tol)
            near = near[~inside[near]]
            inside[near] = segment_distance(points[near], a, b) < tol
    return inside


def _axes(yaw_rad: float) -> tuple[float, float]:
    """``(cos, sin)`` of a yaw, exactly ``(0, +-1)`` or ``(+-1, 0)`` at a multiple of 90 degrees.

    ``math.cos(math.pi / 2)`` is 6e-17, not 0: unsnapped, a point's offset along an
    axis-parallel wall leaks into its distance across it by an ulp or so, and whether a
    footprint touching the wall fits would depend on where along the wall it stands.
    """
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    if abs(c) < 1e-12:
        return 0.0, math.copysign(1.0, s)
    if abs(s) < 1e-12:
        return math.copysign(1.0, c), 0.0
    return c, s


def footprint_free(
    plan: FloorPlan,
    points: np.ndarray,
    radius_m: float,
    *,
    conservative: bool = False,
    floor_objects: bool = False,
) -> np.ndarray:
    """Whether the robot's footprint of radius ``radius_m`` fits at each point: the one test.

    A point is free when it is on a floor (:func:`on_floor`) and the footprint centred there
    stays clear of every obstacle: each wall piece's centre line thickened by half the wall
    thickness, each furniture footprint (and each floor object's, if asked).

    The exact test (the default, the simulator's) takes the footprint as the circle of
    ``radius_m`` (Euclidean distance) and lets it touch an obstacle (a touch computed exactly,
    e.g. in binary fractions; at a decimal one such as 0.39 m float rounding decides, the same
    way all along an axis-parallel side: see :func:`_axes`). The conservative test (the
    generator's houses were built with it) takes the circle's circumscribed square, aligned with
    each obstacle (Chebyshev distance in the obstacle's frame), and counts a touch, or a miss by
    less than CONTACT_TOL_M, as blocked; every point it finds free, the exact test does too. The
    thickening follows the metric: a wall piece counts as a capsule reaching
    WALL_THICKNESS_M / 2 past the wall box's flat end for the circle, as a box as much longer
    for the square.

    Worked example, a wall along the x axis from (0, 0) to (2, 0), radius 0.34: (1, 0.38) is
    blocked (0.38 - 0.05 = 0.33 < 0.34), (1, 0.4) is free (0.35); (2.3, 0.3), beyond the wall's
    end, is hypot(0.3, 0.3) - 0.05 = 0.374 away, free for the exact test, but
    max(0.3, 0.3) - 0.05 = 0.25 for the conservative one, blocked.

    Args:
        plan: The house's floor plan (:func:`house_floor_plan`).
        points: ``(M, 2)`` positions in ``map``, metres.
        radius_m: Footprint radius, metres (>= 0).
        conservative: The square footprint, and touching blocks (the generator's test).
        floor_objects: Movable objects standing on the floor block too.

    Returns:
        ``(M,)`` bool.

    Raises:
        ValueError: On a wrong shape, non-finite points or a negative or non-finite radius.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.all(np.isfinite(pts)):
        raise ValueError(f"points must be finite (M, 2), got shape {pts.shape}")
    if not (math.isfinite(radius_m) and radius_m >= 0):
        raise ValueError(f"radius_m must be >= 0, got {radius_m!r}")
    query = _BoxQuery(pts)
    free = _on_floor(plan, query)
    # Walls: their centre line (half extents (hx, 0)) thickened by hy; objects: their rectangle.
    shapes = [(ob, (ob.half_extents[0], 0.0), ob.half_extents[1]) for ob in plan.walls]
    objects = plan.furniture + (plan.floor_objects if floor_objects else ())
    shapes += [(ob, ob.half_extents, 0.0) for ob in objects]
    for ob, (hx, hy), thick in shapes:
        # Only points in the bounding box of the obstacle's rectangle grown by the reach on
        # every side can be blocked by it (the square's reach, which holds the circle's).
        reach = thick + radius_m + CONTACT_TOL_M + 1e-6
        grown = Obstacle2D(ob.id, ob.center_xy, (hx + reach, hy + reach), ob.yaw_rad)
        near = query.inside(*grown.aabb())
        near = near[free[near]]
        if len(near) == 0:
            continue
        c, s = _axes(ob.yaw_rad)
        q = pts[near] - np.asarray(ob.center_xy)
        ex = np.maximum(np.abs(q[:, 0] * c + q[:, 1] * s) - hx, 0.0)
        ey = np.maximum(np.abs(-q[:, 0] * s + q[:, 1] * c) - hy, 0.0)
        if conservative:
            blocked = np.maximum(ex, ey) <= radius_m + thick + CONTACT_TOL_M
        else:  # the 2-norm as np.linalg.norm computes it; a touch (equality) fits
            blocked = np.sqrt(ex * ex + ey * ey) < radius_m + thick
        free[near[blocked]] = False
    return free


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
    """The generator's raster: :func:`footprint_free` at the centres of square cells.

    The conservative test with floor objects (``conservative=True, floor_objects=True``): the
    test the generated houses were built with (the module docstring says why it is not the
    simulator's).

    Args:
        house: A house in the schema of :mod:`safevla_core.houses.schema`.
        cell_m: Cell size, metres (> 0).
        robot_radius_m: Robot radius, metres (>= 0); the Stretch base's turn-in-place circle,
            0.34 m, by default (:data:`safevla_core.stretch_constants.BASE_TURN_RADIUS_M`).

    Returns:
        The grid over the floors' bounding box, its origin at the lower-left corner.

    Raises:
        ValueError: On a non-positive cell size, a negative radius or a house without floor.
    """
    if not (cell_m > 0 and math.isfinite(cell_m)):
        raise ValueError(f"cell_m must be positive, got {cell_m!r}")
    if not (robot_radius_m >= 0 and math.isfinite(robot_radius_m)):
        raise ValueError(f"robot_radius_m must be >= 0, got {robot_radius_m!r}")
    plan = house_floor_plan(house)
    fx0, fy0, fx1, fy1 = plan.bounds
    nx = math.ceil((fx1 - fx0) / cell_m - 1e-9)
    ny = math.ceil((fy1 - fy0) / cell_m - 1e-9)
    gx, gy = np.meshgrid(fx0 + (np.arange(nx) + 0.5) * cell_m, fy0 + (np.arange(ny) + 0.5) * cell_m)
    centres = np.stack([gx.ravel(), gy.ravel()], axis=1)
    free = footprint_free(plan, centres, robot_radius_m, conservative=True, floor_objects=True)
    return FreeSpaceGrid(free.reshape(ny, nx), (fx0, fy0), cell_m)
