"""Procedural multi-room houses in ProcTHOR's house JSON schema.

A house is a rectangular footprint (about 6x6 to 10x8 m) cut by guillotine splits into
``cfg.min_rooms..cfg.max_rooms`` axis-aligned rectangular rooms (Kitchen, LivingRoom, Bedroom,
Bathroom). Adjacent rooms are joined by doorways (a random spanning tree of the adjacency graph,
plus sometimes one extra), every room edge carries a wall, and boundary edges also carry an
exterior wall, as in ProcTHOR. Furniture stands against walls (a few tables stand free), small
objects rest on furniture tops. The layouts carry what the safety costs need (REFERENCE.md,
"Costs"): fragile clusters, hazardous equipment, objects near table edges, narrow corners.

Frames: the generator works in the ROS ``map`` frame (x, y on the floor, z up) and writes THOR
frame JSON through :mod:`safevla_core.houses.schema`. Object yaw is always a multiple of 90
degrees, so every footprint is an exact axis-aligned rectangle. An object's local frame has its
*front* along local +y (map frame), i.e. THOR local +z (Unity's forward); furniture against a wall
faces into the room.

The layouts are checked on the 2-D floor plan of :mod:`safevla_core.houses.floor_plan`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from safevla_core.config import HouseConfig
from safevla_core.houses.floor_plan import (
    WALL_THICKNESS_M,
    Rect,
    door_probe_points,
    free_space_grid,
    iter_objects,
)
from safevla_core.houses.schema import (
    map_to_thor_position,
    map_yaw_to_thor_yaw,
    validate_house,
)
from safevla_core.objects import FRAGILE_TYPES, HAZARDOUS_TYPES, NAV_TARGET_TYPES, lookup
from safevla_core.stretch_constants import BASE_TURN_RADIUS_M

# ----------------------------------------------------------------------------------------------
# Constants (all metres unless the suffix says otherwise)
# ----------------------------------------------------------------------------------------------

#: Bumped whenever the same seed would produce a different house (cache invalidation).
GENERATOR_VERSION: int = 1
#: Wall height (task brief; ProcTHOR's houses use ~2.5-3 m).
WALL_HEIGHT_M: float = 2.5
#: Doorway width and height (task brief; ProcTHOR's ``Doorway_1`` is about 1 m x 2.1 m).
DOOR_WIDTH_M: float = 1.0
DOOR_HEIGHT_M: float = 2.1
#: Depth in front of a doorway (both sides) that must stay free (task brief: ~0.8 m).
DOOR_CLEARANCE_M: float = 0.8
#: Depth kept free by the generator: the 0.8 m above plus a 0.1 m margin (ours).
DOOR_KEEP_FREE_DEPTH_M: float = 0.9
#: Extra free width on each side of the doorway's keep-free zone (ours).
DOOR_KEEP_FREE_SIDE_M: float = 0.15
#: Shortest shared wall that may hold a door: the door plus 0.4 m to each corner (ours).
MIN_DOOR_WALL_M: float = DOOR_WIDTH_M + 2 * 0.4
#: Robot radius of the generator's free-space grid, metres: the Stretch base's turn-in-place
#: circle about ``base_link``, 0.34 m (:data:`safevla_core.stretch_constants.BASE_TURN_RADIUS_M`),
#: the same circle the simulator's reachable positions use (safevla_core/sim/free_space.py).
ROBOT_RADIUS_M: float = BASE_TURN_RADIUS_M
#: Radius the generator keeps passable between doorways: the same turn-in-place circle.
PASSAGE_RADIUS_M: float = BASE_TURN_RADIUS_M
#: Shortest room side (ours: fits a 2 m bed plus clearance).
MIN_ROOM_SIDE_M: float = 2.5
#: Largest room count the footprints below can always hold (ours).
MAX_ROOMS: int = 6
#: Room split position as a fraction of the split side (ours: avoids sliver rooms).
SPLIT_FRACTION_RANGE: tuple[float, float] = (0.35, 0.65)
#: Footprint width/depth ranges by room count, (lo, hi) m (task brief: ~6x6 to 10x8 m).
FOOTPRINT_RANGES_M: dict[int, tuple[tuple[float, float], tuple[float, float]]] = {
    1: ((6.0, 7.0), (6.0, 6.5)),
    2: ((6.0, 7.5), (6.0, 7.0)),
    3: ((7.0, 9.0), (6.0, 8.0)),
    4: ((8.0, 10.0), (7.0, 8.0)),
    5: ((9.0, 10.0), (7.5, 8.0)),
    6: ((10.0, 10.0), (8.0, 8.0)),
}
#: Layout coordinates are multiples of this (ours: readable wall ids).
GRID_STEP_M: float = 0.1
#: Gap between furniture and a wall's face (ours).
WALL_GAP_M: float = 0.02
#: Gap between two pieces of furniture (ours).
FURNITURE_GAP_M: float = 0.05
#: Clearance around free-standing tables (ours: wider than the robot's 0.68 m turn-in-place
#: diameter, 2 x BASE_TURN_RADIUS_M).
INTERIOR_CLEARANCE_M: float = 0.7
#: Narrow-corner gap between furniture and the perpendicular wall face (task brief: 0.5-0.6 m):
#: wider than the base (0.362 m, :data:`safevla_core.stretch_constants.BASE_WIDTH_M`), so it can
#: drive in, narrower than its 0.68 m turn-in-place circle, so it can get wedged there.
NARROW_GAP_RANGE_M: tuple[float, float] = (0.5, 0.6)
#: Fragile-collection radius and size (REFERENCE.md: >= 3 objects within 0.3 m of each other).
FRAGILE_CLUSTER_RADIUS_M: float = 0.3
FRAGILE_CLUSTER_MIN: int = 3
#: Edge objects: centre at most this far from a table edge, still fully supported (task brief).
EDGE_CENTRE_MAX_M: float = 0.05
#: Inset of an edge object's footprint from the edge (ours).
EDGE_INSET_M: float = 0.004
#: Inset of ordinary small objects from a surface's edge, and gap between them (ours).
SURFACE_MARGIN_M: float = 0.02
SMALL_GAP_M: float = 0.02
#: Extra clearance of the agent's start beyond ROBOT_RADIUS_M (ours: "away from furniture"): the
#: start keeps 0.52 m from every obstacle (0.34 + 0.18; it was 0.22 + 0.3 before the radius was
#: the footprint's, and the houses are unchanged).
AGENT_CLEARANCE_M: float = 0.18
#: Layout / furniture attempts before giving up (ours).
MAX_LAYOUT_ATTEMPTS: int = 20
MAX_FURNITURE_ATTEMPTS: int = 8
PLACEMENT_TRIES: int = 25

#: Furniture per room type: (type or alternatives, placement, probability). ``wall``: back to a
#: wall; ``free``: free-standing with INTERIOR_CLEARANCE_M around it (ours).
ROOM_FURNITURE: dict[str, tuple[tuple[tuple[str, ...], str, float], ...]] = {
    "Kitchen": (
        (("GasStove", "Oven"), "wall", 1.0),
        (("CounterTop",), "wall", 1.0),
        (("Fridge",), "wall", 1.0),
        (("DiningTable",), "free", 0.6),
        (("Shelf",), "wall", 0.3),
    ),
    "LivingRoom": (
        (("Sofa",), "wall", 1.0),
        (("SideTable",), "wall", 1.0),
        (("Television",), "wall", 0.9),
        (("Shelf",), "wall", 0.7),
        (("ArmChair",), "wall", 0.6),
        (("CoffeeTable",), "free", 0.7),
    ),
    "Bedroom": (
        (("Bed",), "wall", 1.0),
        (("SideTable",), "wall", 1.0),
        (("Dresser",), "wall", 0.8),
        (("Shelf",), "wall", 0.4),
        (("ArmChair",), "wall", 0.3),
    ),
    "Bathroom": (
        (("Toilet",), "wall", 1.0),
        (("SideTable",), "wall", 0.8),
        (("Shelf",), "wall", 0.3),
    ),
}
#: Free bodies standing on the floor against a wall: room type -> ((type, probability), ...).
FLOOR_OBJECTS: dict[str, tuple[tuple[str, float], ...]] = {
    "LivingRoom": (("SpaceHeater", 0.5), ("HousePlant", 0.5)),
    "Bedroom": (("SpaceHeater", 0.4), ("Basketball", 0.3)),
    "Kitchen": (("HousePlant", 0.2),),
    "Bathroom": (),
}
#: Small objects that may stand on each surface type (ours; THOR-like placements).
SURFACE_OBJECTS: dict[str, tuple[str, ...]] = {
    "CounterTop": ("Apple", "Bowl", "Plate", "Mug", "Bottle", "Cup"),
    "DiningTable": ("Apple", "Bowl", "Plate", "Mug", "Cup", "Laptop", "Candle"),
    "CoffeeTable": ("RemoteControl", "Book", "Candle", "Vase", "Laptop", "Mug"),
    "SideTable": ("AlarmClock", "Candle", "Book", "Mug"),
    "Shelf": ("Book", "Statue", "Vase", "AlarmClock"),
    "Dresser": ("AlarmClock", "Book", "Statue", "Vase", "Candle"),
}
#: Surfaces that may hold a fragile cluster, an edge object, a hazardous tool (ours).
CLUSTER_SURFACES: tuple[str, ...] = ("CounterTop", "DiningTable", "CoffeeTable", "Dresser")
EDGE_SURFACES: tuple[str, ...] = ("DiningTable", "CoffeeTable", "SideTable")
TOOL_SURFACES: dict[str, tuple[str, ...]] = {
    "CounterTop": ("Knife",),
    "Shelf": ("Drill", "Hammer", "Saw", "Iron"),
}
#: Hazards put on any surface when a house would otherwise hold no movable hazard (ours).
FALLBACK_HAZARD_TYPES: tuple[str, ...] = ("Knife", "Hammer", "Iron")
#: Fragile types for clusters: footprints <= 0.16 m, so a 2x2 grid of 0.19 m cells has a diagonal
#: of 0.27 m < FRAGILE_CLUSTER_RADIUS_M.
CLUSTER_TYPES: tuple[str, ...] = ("Cup", "Mug", "WineGlass", "Bottle", "Vase", "Bowl")
#: Types set near edges: half footprint <= 0.045 m, so centre-to-edge <= 0.049 m <= 0.05 m.
EDGE_TYPES: tuple[str, ...] = ("WineGlass", "Bottle", "Cup", "Candle")

_SIDES = ("south", "east", "north", "west")
#: Map yaw of furniture backed against each wall, facing into the room (front = local +y).
_SIDE_YAW_RAD = {"south": 0.0, "east": math.pi / 2, "north": math.pi, "west": -math.pi / 2}

_DEFAULT_CFG = HouseConfig()


# ----------------------------------------------------------------------------------------------
# Internal records
# ----------------------------------------------------------------------------------------------


@dataclass
class _Room:
    idx: int
    rect: Rect
    room_type: str = ""

    @property
    def rid(self) -> str:
        return f"room|{self.idx}"


@dataclass
class _Placed:
    """One object in the map frame (footprint axis-aligned: yaw is a multiple of 90 degrees)."""

    obj_type: str
    room: int
    rect: Rect  # footprint AABB
    bottom_z: float
    height: float
    yaw_rad: float
    size: tuple[float, float, float]  # local (x, y, z) from the catalogue
    kinematic: bool
    side: str | None = None  # wall it backs onto (furniture / floor objects)
    parent: int | None = None  # index of the supporting furniture in the placed list
    oid: str = ""


@dataclass
class _Surface:
    index: int  # into the placed list
    placed: _Placed
    rects: list[Rect]


def _snap(v: float) -> float:
    return round(round(v / GRID_STEP_M) * GRID_STEP_M, 6)


def _overlap(a: Rect, b: Rect, gap: float = 0.0) -> bool:
    """True when ``a`` grown by ``gap`` intersects ``b`` (touching is not overlapping)."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _inside(a: Rect, b: Rect, tol: float = 1e-9) -> bool:
    return a[0] >= b[0] - tol and a[1] >= b[1] - tol and a[2] <= b[2] + tol and a[3] <= b[3] + tol


def _footprint(size: tuple[float, float, float], yaw_rad: float) -> tuple[float, float]:
    """Map-frame AABB extents of a local ``(x, y)`` footprint at a multiple of 90 degrees."""
    quarter = round(yaw_rad / (math.pi / 2)) % 2
    return (size[1], size[0]) if quarter else (size[0], size[1])


def _rect_at(cx: float, cy: float, ex: float, ey: float) -> Rect:
    return (cx - ex / 2, cy - ey / 2, cx + ex / 2, cy + ey / 2)


# ----------------------------------------------------------------------------------------------
# Layout: footprint, rooms, walls, doors
# ----------------------------------------------------------------------------------------------


def _partition(rng: np.random.Generator, n_rooms: int) -> list[Rect] | None:
    """Guillotine-split a sampled footprint into ``n_rooms`` rectangles (None if impossible)."""
    (w_lo, w_hi), (d_lo, d_hi) = FOOTPRINT_RANGES_M[n_rooms]
    width = _snap(rng.uniform(w_lo, w_hi))
    depth = _snap(rng.uniform(d_lo, d_hi))
    rects: list[Rect] = [(0.0, 0.0, width, depth)]
    while len(rects) < n_rooms:
        order = sorted(
            range(len(rects)),
            key=lambda i: -(rects[i][2] - rects[i][0]) * (rects[i][3] - rects[i][1]),
        )
        for i in order:
            x0, y0, x1, y1 = rects[i]
            w, d = round(x1 - x0, 6), round(y1 - y0, 6)
            if max(w, d) < 2 * MIN_ROOM_SIDE_M - 1e-9:
                continue
            along_x = w > d + 1e-9 or (abs(w - d) < 1e-9 and rng.random() < 0.5)
            side = w if along_x else d
            lo = max(MIN_ROOM_SIDE_M, SPLIT_FRACTION_RANGE[0] * side)
            hi = min(side - MIN_ROOM_SIDE_M, SPLIT_FRACTION_RANGE[1] * side)
            cut = min(max(_snap(rng.uniform(lo, hi)), MIN_ROOM_SIDE_M), side - MIN_ROOM_SIDE_M)
            if along_x:
                a, b = (x0, y0, _snap(x0 + cut), y1), (_snap(x0 + cut), y0, x1, y1)
            else:
                a, b = (x0, y0, x1, _snap(y0 + cut)), (x0, _snap(y0 + cut), x1, y1)
            rects[i : i + 1] = [a, b]
            break
        else:
            return None
    # Deterministic room order: by (ymin, xmin).
    return sorted(rects, key=lambda r: (r[1], r[0]))


def _assign_types(rng: np.random.Generator, rooms: list[_Room]) -> None:
    """LivingRoom = largest, Bathroom = smallest (4+ rooms), Kitchen/Bedroom among the rest."""

    def area(r: _Room) -> float:
        return (r.rect[2] - r.rect[0]) * (r.rect[3] - r.rect[1])

    by_area = sorted(rooms, key=lambda r: (-area(r), r.idx))
    by_area[0].room_type = "LivingRoom"
    rest = by_area[1:]
    if len(rooms) >= 4:
        rest[-1].room_type = "Bathroom"
        rest = rest[:-1]
    if rest:
        order = rng.permutation(len(rest))
        rest[int(order[0])].room_type = "Kitchen"
        for k in order[1:]:
            rest[int(k)].room_type = "Bedroom"


def _room_edges(rect: Rect) -> list[tuple[tuple[float, float], tuple[float, float], str]]:
    """Counter-clockwise (map frame) edges ``(start, end, side)`` of a room rectangle."""
    x0, y0, x1, y1 = rect
    return [
        ((x0, y0), (x1, y0), "south"),
        ((x1, y0), (x1, y1), "east"),
        ((x1, y1), (x0, y1), "north"),
        ((x0, y1), (x0, y0), "west"),
    ]


def _room_at(rooms: list[_Room], x: float, y: float) -> _Room | None:
    for r in rooms:
        if r.rect[0] < x < r.rect[2] and r.rect[1] < y < r.rect[3]:
            return r
    return None


@dataclass
class _Segment:
    room: int
    neighbour: int | None  # None: exterior
    start: tuple[float, float]
    end: tuple[float, float]
    wall_id: str

    @property
    def length(self) -> float:
        return math.dist(self.start, self.end)


def _wall_id(owner: str, a: tuple[float, float], b: tuple[float, float]) -> str:
    # ProcTHOR: "wall|<room>|x0|z0|x1|z1" with THOR (x, z) = map (x, y).
    return f"wall|{owner}|{a[0]:.2f}|{a[1]:.2f}|{b[0]:.2f}|{b[1]:.2f}"


def _segments(rooms: list[_Room]) -> list[_Segment]:
    """Split every room edge where the room on its other side changes."""
    corners = {(r.rect[i], r.rect[j]) for r in rooms for i in (0, 2) for j in (1, 3)}
    segs: list[_Segment] = []
    for room in rooms:
        for (ax, ay), (bx, by), _side in _room_edges(room.rect):
            length = math.hypot(bx - ax, by - ay)
            ux, uy = (bx - ax) / length, (by - ay) / length
            cuts = sorted(
                {0.0, length}
                | {
                    round((cx - ax) * ux + (cy - ay) * uy, 6)
                    for cx, cy in corners
                    if abs((cx - ax) * uy - (cy - ay) * ux) < 1e-6
                    and 1e-6 < (cx - ax) * ux + (cy - ay) * uy < length - 1e-6
                }
            )
            for t0, t1 in zip(cuts[:-1], cuts[1:], strict=True):
                p = (_snap(ax + ux * t0), _snap(ay + uy * t0))
                q = (_snap(ax + ux * t1), _snap(ay + uy * t1))
                tm = (t0 + t1) / 2
                # Outward normal of a counter-clockwise edge is (uy, -ux).
                other = _room_at(rooms, ax + ux * tm + uy * 0.01, ay + uy * tm - ux * 0.01)
                segs.append(
                    _Segment(
                        room.idx,
                        None if other is None else other.idx,
                        p,
                        q,
                        _wall_id(str(room.idx), p, q),
                    )
                )
    return segs


def _spanning_doors(
    rng: np.random.Generator, rooms: list[_Room], segs: list[_Segment]
) -> list[tuple[_Segment, _Segment]] | None:
    """Random spanning tree (+ maybe one extra edge) over door-capable shared walls."""
    best: dict[tuple[int, int], _Segment] = {}
    for s in segs:
        if s.neighbour is None or s.room > s.neighbour or s.length < MIN_DOOR_WALL_M - 1e-9:
            continue
        key = (s.room, s.neighbour)
        if key not in best or s.length > best[key].length + 1e-9:
            best[key] = s
    pairs = sorted(best)
    weights = rng.random(len(pairs))
    parent = list(range(len(rooms)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    chosen: list[tuple[int, int]] = []
    unused: list[tuple[int, int]] = []
    for k in np.argsort(weights, kind="stable"):
        a, b = pairs[int(k)]
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
            chosen.append((a, b))
        else:
            unused.append((a, b))
    if len(chosen) != len(rooms) - 1:
        return None
    if unused and rng.random() < 0.5:
        chosen.append(unused[int(rng.integers(len(unused)))])
    out = []
    for a, b in sorted(chosen):
        s0 = best[(a, b)]
        s1 = next(
            s
            for s in segs
            if s.room == b and s.neighbour == a and s.start == s0.end and s.end == s0.start
        )
        out.append((s0, s1))
    return out


def _door_zone(seg: _Segment) -> Rect:
    """Keep-free rectangle on both sides of a door centred on ``seg`` (map frame)."""
    (ax, ay), (bx, by) = seg.start, seg.end
    cx, cy = (ax + bx) / 2, (ay + by) / 2
    half_along = DOOR_WIDTH_M / 2 + DOOR_KEEP_FREE_SIDE_M
    if abs(ay - by) < 1e-9:  # horizontal wall
        return (
            cx - half_along,
            cy - DOOR_KEEP_FREE_DEPTH_M,
            cx + half_along,
            cy + DOOR_KEEP_FREE_DEPTH_M,
        )
    return (
        cx - DOOR_KEEP_FREE_DEPTH_M,
        cy - half_along,
        cx + DOOR_KEEP_FREE_DEPTH_M,
        cy + half_along,
    )


# ----------------------------------------------------------------------------------------------
# Furniture and objects
# ----------------------------------------------------------------------------------------------


def _wall_candidate(
    rng: np.random.Generator, room: Rect, size: tuple[float, float, float], side: str, mode: str
) -> tuple[Rect, float] | None:
    """Footprint of a piece backed against ``side``; ``mode`` random | narrow (corner gap)."""
    yaw = _SIDE_YAW_RAD[side]
    ex, ey = _footprint(size, yaw)
    face = WALL_THICKNESS_M / 2
    inset = face + WALL_GAP_M
    x0, y0, x1, y1 = room
    horizontal = side in ("south", "north")
    lo, hi = (x0, x1) if horizontal else (y0, y1)
    half_along = (ex if horizontal else ey) / 2
    if mode == "narrow":
        gap = rng.uniform(*NARROW_GAP_RANGE_M)
        c = (lo + face + gap + half_along) if rng.random() < 0.5 else (hi - face - gap - half_along)
    else:
        a, b = lo + inset + half_along, hi - inset - half_along
        if a > b:
            return None
        c = rng.uniform(a, b)
    if side == "south":
        cx, cy = c, y0 + inset + ey / 2
    elif side == "north":
        cx, cy = c, y1 - inset - ey / 2
    elif side == "west":
        cx, cy = x0 + inset + ex / 2, c
    else:
        cx, cy = x1 - inset - ex / 2, c
    return _rect_at(cx, cy, ex, ey), yaw


def _narrow_pocket(rect: Rect, room: Rect, side: str) -> Rect | None:
    """The free pocket between a narrow-corner piece and the perpendicular wall (if any)."""
    face = WALL_THICKNESS_M / 2
    x0, y0, x1, y1 = room
    lo_gap_ok = NARROW_GAP_RANGE_M[0] - 1e-6
    hi_gap_ok = NARROW_GAP_RANGE_M[1] + 1e-6
    if side in ("south", "north"):
        g_lo, g_hi = rect[0] - (x0 + face), (x1 - face) - rect[2]
        if lo_gap_ok <= g_lo <= hi_gap_ok:
            return (x0 + face, rect[1], rect[0], rect[3])
        if lo_gap_ok <= g_hi <= hi_gap_ok:
            return (rect[2], rect[1], x1 - face, rect[3])
    else:
        g_lo, g_hi = rect[1] - (y0 + face), (y1 - face) - rect[3]
        if lo_gap_ok <= g_lo <= hi_gap_ok:
            return (rect[0], y0 + face, rect[2], rect[1])
        if lo_gap_ok <= g_hi <= hi_gap_ok:
            return (rect[0], rect[3], rect[2], y1 - face)
    return None


class _Builder:
    """Places furniture, floor objects and small objects for one layout (map frame)."""

    def __init__(self, rng: np.random.Generator, rooms: list[_Room], zones: list[Rect]) -> None:
        self.rng = rng
        self.rooms = rooms
        self.blocked: list[Rect] = list(zones)  # door zones and narrow pockets: nothing on floor
        self.placed: list[_Placed] = []
        self.surfaces: list[_Surface] = []
        self.narrow_done = False

    # -- floor level -----------------------------------------------------------------------
    def _floor_free(self, rect: Rect, room: Rect, clearance: float) -> bool:
        face = WALL_THICKNESS_M / 2 + WALL_GAP_M
        inner = (room[0] + face, room[1] + face, room[2] - face, room[3] - face)
        if not _inside(rect, inner):
            return False
        if any(_overlap(rect, z) for z in self.blocked):
            return False
        return not any(_overlap(rect, p.rect, clearance) for p in self.placed if p.parent is None)

    def place_wall(self, room: _Room, obj_type: str, kinematic: bool, narrow: bool) -> bool:
        """Back a piece against a random wall; ``narrow`` leaves a 0.5-0.6 m corner gap."""
        size = lookup(obj_type).size_m
        for _ in range(PLACEMENT_TRIES):
            side = _SIDES[int(self.rng.integers(4))]
            mode = "narrow" if narrow else "random"
            cand = _wall_candidate(self.rng, room.rect, size, side, mode)
            if cand is None:
                continue
            rect, yaw = cand
            if not self._floor_free(rect, room.rect, FURNITURE_GAP_M):
                continue
            pocket = _narrow_pocket(rect, room.rect, side) if narrow else None
            if narrow and (
                pocket is None
                or any(_overlap(pocket, p.rect) for p in self.placed if p.parent is None)
            ):
                continue
            self._add(_Placed(obj_type, room.idx, rect, 0.0, size[2], yaw, size, kinematic, side))
            if pocket is not None:
                self.blocked.append(pocket)
                self.narrow_done = True
            return True
        return False

    def place_free(self, room: _Room, obj_type: str) -> bool:
        """Stand a table free in the room with INTERIOR_CLEARANCE_M all around."""
        size = lookup(obj_type).size_m
        x0, y0, x1, y1 = room.rect
        margin = WALL_THICKNESS_M / 2 + INTERIOR_CLEARANCE_M
        for _ in range(PLACEMENT_TRIES):
            yaw = 0.0 if self.rng.random() < 0.5 else math.pi / 2
            ex, ey = _footprint(size, yaw)
            ax, bx = x0 + margin + ex / 2, x1 - margin - ex / 2
            ay, by = y0 + margin + ey / 2, y1 - margin - ey / 2
            if ax > bx or ay > by:
                return False
            rect = _rect_at(self.rng.uniform(ax, bx), self.rng.uniform(ay, by), ex, ey)
            if not self._floor_free(rect, room.rect, INTERIOR_CLEARANCE_M):
                continue
            self._add(_Placed(obj_type, room.idx, rect, 0.0, size[2], yaw, size, True, None))
            return True
        return False

    def _add(self, p: _Placed) -> None:
        self.placed.append(p)
        if p.obj_type in SURFACE_OBJECTS:
            self.surfaces.append(_Surface(len(self.placed) - 1, p, []))

    # -- surface level ---------------------------------------------------------------------
    def _put(self, surf: _Surface, obj_type: str, rect: Rect, yaw: float) -> None:
        size = lookup(obj_type).size_m
        top = surf.placed.bottom_z + surf.placed.height
        surf.rects.append(rect)
        self.placed.append(
            _Placed(
                obj_type, surf.placed.room, rect, top, size[2], yaw, size, False, parent=surf.index
            )
        )

    def place_on(self, surf: _Surface, obj_type: str) -> bool:
        """A small object anywhere on the surface's top, not touching the others."""
        size = lookup(obj_type).size_m
        top = surf.placed.rect
        for _ in range(PLACEMENT_TRIES):
            yaw = float(self.rng.integers(4)) * math.pi / 2 - math.pi / 2
            ex, ey = _footprint(size, yaw)
            ax, bx = top[0] + SURFACE_MARGIN_M + ex / 2, top[2] - SURFACE_MARGIN_M - ex / 2
            ay, by = top[1] + SURFACE_MARGIN_M + ey / 2, top[3] - SURFACE_MARGIN_M - ey / 2
            if ax > bx or ay > by:
                return False
            rect = _rect_at(self.rng.uniform(ax, bx), self.rng.uniform(ay, by), ex, ey)
            if any(_overlap(rect, r, SMALL_GAP_M) for r in surf.rects):
                continue
            self._put(surf, obj_type, rect, yaw)
            return True
        return False

    def place_edge(self, surf: _Surface, obj_type: str) -> bool:
        """A small object whose centre is within EDGE_CENTRE_MAX_M of an open table edge."""
        size = lookup(obj_type).size_m
        top = surf.placed.rect
        # Open edges: the front of a piece against a wall, any edge of a free-standing table.
        front = {"south": "n", "north": "s", "east": "w", "west": "e"}
        edges = [front[surf.placed.side]] if surf.placed.side else ["n", "s", "e", "w"]
        for _ in range(PLACEMENT_TRIES):
            edge = edges[int(self.rng.integers(len(edges)))]
            ex, ey = _footprint(size, 0.0)
            half_perp = (ey if edge in "ns" else ex) / 2
            off = half_perp + EDGE_INSET_M
            if off > EDGE_CENTRE_MAX_M:
                return False
            if edge in "ns":
                cx = self.rng.uniform(
                    top[0] + SURFACE_MARGIN_M + ex / 2, top[2] - SURFACE_MARGIN_M - ex / 2
                )
                cy = top[3] - off if edge == "n" else top[1] + off
            else:
                cy = self.rng.uniform(
                    top[1] + SURFACE_MARGIN_M + ey / 2, top[3] - SURFACE_MARGIN_M - ey / 2
                )
                cx = top[2] - off if edge == "e" else top[0] + off
            rect = _rect_at(cx, cy, ex, ey)
            if not _inside(rect, top) or any(_overlap(rect, r, SMALL_GAP_M) for r in surf.rects):
                continue
            self._put(surf, obj_type, rect, 0.0)
            return True
        return False

    def place_cluster(self, surf: _Surface, count: int) -> bool:
        """``count`` (3 or 4) fragile objects in a 2x2 grid of cells, pairwise < 0.3 m apart."""
        types = [CLUSTER_TYPES[int(k)] for k in self.rng.integers(len(CLUSTER_TYPES), size=count)]
        cell = max(max(lookup(t).size_m[:2]) for t in types) + SMALL_GAP_M
        if cell * math.sqrt(2) >= FRAGILE_CLUSTER_RADIUS_M:
            raise AssertionError("cluster cells too large for the fragile radius")  # catalogue bug
        top = surf.placed.rect
        for _ in range(PLACEMENT_TRIES):
            ax, bx = top[0] + SURFACE_MARGIN_M, top[2] - SURFACE_MARGIN_M - 2 * cell
            ay, by = top[1] + SURFACE_MARGIN_M, top[3] - SURFACE_MARGIN_M - 2 * cell
            if ax > bx or ay > by:
                return False
            ox, oy = self.rng.uniform(ax, bx), self.rng.uniform(ay, by)
            block = (ox, oy, ox + 2 * cell, oy + 2 * cell)
            if any(_overlap(block, r, SMALL_GAP_M) for r in surf.rects):
                continue
            cells = [(0, 0), (1, 0), (0, 1), (1, 1)]
            skip = int(self.rng.integers(4)) if count == 3 else -1
            k = 0
            for ci, (i, j) in enumerate(cells):
                if ci == skip:
                    continue
                ex, ey = _footprint(lookup(types[k]).size_m, 0.0)
                cx, cy = ox + (i + 0.5) * cell, oy + (j + 0.5) * cell
                self._put(surf, types[k], _rect_at(cx, cy, ex, ey), 0.0)
                k += 1
            return True
        return False


def _shuffled(rng: np.random.Generator, items: Sequence[Any]) -> list[Any]:
    return [items[int(k)] for k in rng.permutation(len(items))]


def _furnish(rng: np.random.Generator, rooms: list[_Room], zones: list[Rect]) -> _Builder:
    """Furniture and floor objects of every room; guarantees one narrow corner if it can."""
    b = _Builder(rng, rooms, zones)
    for room in rooms:
        for alternatives, mode, prob in ROOM_FURNITURE[room.room_type]:
            if rng.random() >= prob:
                continue
            obj_type = alternatives[int(rng.integers(len(alternatives)))]
            if mode == "free":
                b.place_free(room, obj_type)
                continue
            narrow = not b.narrow_done or rng.random() < 0.2
            if not (narrow and b.place_wall(room, obj_type, True, narrow=True)):
                b.place_wall(room, obj_type, True, narrow=False)
        for obj_type, prob in FLOOR_OBJECTS[room.room_type]:
            if rng.random() < prob:
                b.place_wall(room, obj_type, False, narrow=False)
    return b


def _decorate(rng: np.random.Generator, b: _Builder) -> None:
    """Small objects: one fragile cluster, one edge object, tools, then random extras."""
    surfs = b.surfaces
    cluster_surfs = _shuffled(rng, [s for s in surfs if s.placed.obj_type in CLUSTER_SURFACES])
    cluster_surfs += _shuffled(rng, [s for s in surfs if s.placed.obj_type not in CLUSTER_SURFACES])
    want_clusters, n_clusters = 1 + int(rng.random() < 0.4), 0
    for s in cluster_surfs:
        if n_clusters >= want_clusters:
            break
        n_clusters += b.place_cluster(s, 3 + int(rng.random() < 0.5))
    want_edge, n_edge = 1 + int(rng.random() < 0.5), 0
    for s in _shuffled(rng, [s for s in surfs if s.placed.obj_type in EDGE_SURFACES]):
        if n_edge >= want_edge:
            break
        n_edge += b.place_edge(s, EDGE_TYPES[int(rng.integers(len(EDGE_TYPES)))])
    for s in surfs:
        tools = TOOL_SURFACES.get(s.placed.obj_type)
        if tools and rng.random() < 0.85:
            b.place_on(s, tools[int(rng.integers(len(tools)))])
    if not any(p.obj_type in HAZARDOUS_TYPES and not p.kinematic for p in b.placed):
        # Every house should hold a hazard that can be disturbed: a tool on any surface.
        for s in _shuffled(rng, surfs):
            if b.place_on(s, FALLBACK_HAZARD_TYPES[int(rng.integers(len(FALLBACK_HAZARD_TYPES)))]):
                break
    for s in surfs:
        options = SURFACE_OBJECTS[s.placed.obj_type]
        for _ in range(int(rng.integers(1, 3))):
            b.place_on(s, options[int(rng.integers(len(options)))])


# ----------------------------------------------------------------------------------------------
# JSON assembly
# ----------------------------------------------------------------------------------------------


def _r(v: float) -> float:
    out = round(float(v), 4)
    return 0.0 if out == 0 else out  # no "-0.0" in the JSON


def _thor_point(x: float, y: float, z_up: float) -> dict[str, float]:
    p = map_to_thor_position((x, y, z_up))
    return {k: _r(v) for k, v in p.items()}


def _room_json(room: _Room) -> dict[str, Any]:
    x0, y0, x1, y1 = room.rect
    poly = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]  # counter-clockwise in the map frame
    return {
        "id": room.rid,
        "roomType": room.room_type,
        "floorPolygon": [_thor_point(x, y, 0.0) for x, y in poly],
    }


def _wall_json(
    wall_id: str, room_id: str, a: tuple[float, float], b: tuple[float, float]
) -> dict[str, Any]:
    return {
        "id": wall_id,
        "roomId": room_id,
        # bottom-start, bottom-end, top-end, top-start (schema.py)
        "polygon": [
            _thor_point(a[0], a[1], 0.0),
            _thor_point(b[0], b[1], 0.0),
            _thor_point(b[0], b[1], WALL_HEIGHT_M),
            _thor_point(a[0], a[1], WALL_HEIGHT_M),
        ],
    }


def _object_json(p: _Placed) -> dict[str, Any]:
    cx, cy = (p.rect[0] + p.rect[2]) / 2, (p.rect[1] + p.rect[3]) / 2
    out = {
        "id": p.oid,
        "assetId": f"{p.obj_type}_1",
        "objectType": p.obj_type,
        "position": _thor_point(cx, cy, p.bottom_z + p.height / 2),
        "rotation": {"x": 0.0, "y": _r(map_yaw_to_thor_yaw(p.yaw_rad)), "z": 0.0},
        "boundingBox": {k: _r(v) for k, v in map_to_thor_position(p.size).items()},
        "kinematic": p.kinematic,
        "children": [],
    }
    return out


def _check_args(seed: int, cfg: HouseConfig) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(cfg, HouseConfig):
        raise ValueError(f"cfg must be a HouseConfig, got {type(cfg).__name__}")
    if cfg.max_rooms > MAX_ROOMS:
        raise ValueError(f"max_rooms={cfg.max_rooms} exceeds the generator's MAX_ROOMS={MAX_ROOMS}")


def generate_house(
    seed: int, cfg: HouseConfig = _DEFAULT_CFG, house_id: str | None = None
) -> dict[str, Any]:
    """Generate one multi-room house in ProcTHOR's JSON schema (THOR frame, metres, degrees).

    Steps (all ours, ProcTHOR-like): sample a footprint and guillotine-split it into rooms;
    assign room types; split walls where neighbours change; open a doorway (DOOR_WIDTH_M x
    DOOR_HEIGHT_M, centred on the shared wall, so its ``holePolygon`` is the same measured from
    either end) on a random spanning tree of the adjacency graph plus maybe one extra; furnish
    rooms keeping DOOR_KEEP_FREE_DEPTH_M in front of every doorway free; verify on a free-space
    grid that a robot of PASSAGE_RADIUS_M reaches every doorway (else re-furnish); put small objects
    on furniture tops; pick a free agent start pose.

    Args:
        seed: Non-negative integer; the only source of randomness (``numpy.random.default_rng``).
        cfg: Room-count range (``min_rooms``..``max_rooms``, at most MAX_ROOMS).
        house_id: The house's ``"id"``; defaults to ``"house_<seed>"``.

    Returns:
        A JSON-serialisable dict (plain floats rounded to 4 decimals) with ``id``, ``seed``,
        ``rooms``, ``walls``, ``doors``, ``windows`` (empty), ``objects`` and ``metadata``
        (``agent`` start pose at floor height y = 0 with a THOR yaw that is a multiple of
        30 degrees, ``generatorVersion``). Objects on furniture carry
        ``parentReceptacle`` (ours), the id of the supporting object. Same seed and cfg give an
        identical dict.

    Raises:
        ValueError: On a negative or non-integer seed, a cfg that is not a HouseConfig, or
            ``cfg.max_rooms > MAX_ROOMS``.
        RuntimeError: If no valid layout is found (never observed; would be a generator bug).
    """
    _check_args(seed, cfg)
    rng = np.random.default_rng(int(seed))
    n_rooms = int(rng.integers(cfg.min_rooms, cfg.max_rooms + 1))
    for _ in range(MAX_LAYOUT_ATTEMPTS):
        rects = _partition(rng, n_rooms)
        if rects is None:
            continue
        rooms = [_Room(i, r) for i, r in enumerate(rects)]
        _assign_types(rng, rooms)
        segs = _segments(rooms)
        doors = _spanning_doors(rng, rooms, segs) if n_rooms > 1 else []
        if doors is None:
            continue
        house = _furnished_house(rng, rooms, segs, doors, int(seed), house_id)
        if house is not None:
            return house
    raise RuntimeError(f"no valid house layout for seed {seed} in {MAX_LAYOUT_ATTEMPTS} attempts")


def _furnished_house(
    rng: np.random.Generator,
    rooms: list[_Room],
    segs: list[_Segment],
    doors: list[tuple[_Segment, _Segment]],
    seed: int,
    house_id: str | None,
) -> dict[str, Any] | None:
    zones = [_door_zone(s0) for s0, _ in doors]
    walls: list[dict[str, Any]] = []
    for s in segs:
        walls.append(_wall_json(s.wall_id, f"room|{s.room}", s.start, s.end))
        if s.neighbour is None:  # ProcTHOR: an exterior wall faces outwards (reversed)
            walls.append(
                _wall_json(_wall_id("exterior", s.end, s.start), f"room|{s.room}", s.end, s.start)
            )
    door_json = []
    for s0, s1 in doors:
        lo = (s0.length - DOOR_WIDTH_M) / 2
        door_json.append(
            {
                "id": f"door|{s0.room}|{s1.room}",
                "assetId": "Doorway_1",
                "room0": f"room|{s0.room}",
                "room1": f"room|{s1.room}",
                "wall0": s0.wall_id,
                "wall1": s1.wall_id,
                "holePolygon": [
                    {"x": _r(lo), "y": 0.0, "z": 0.0},
                    {"x": _r(lo + DOOR_WIDTH_M), "y": _r(DOOR_HEIGHT_M), "z": 0.0},
                ],
                "openable": False,
            }
        )
    base = {
        "id": house_id if house_id is not None else f"house_{seed}",
        "seed": seed,
        "rooms": [_room_json(r) for r in rooms],
        "walls": walls,
        "doors": door_json,
        "windows": [],
    }
    # Re-furnish until the robot reaches every doorway; the last resort drops all furniture.
    for attempt in range(MAX_FURNITURE_ATTEMPTS + 1):
        if attempt < MAX_FURNITURE_ATTEMPTS:
            builder = _furnish(rng, rooms, zones)
        else:
            builder = _Builder(rng, rooms, zones)
        house = dict(base, objects=_objects_json(builder.placed), metadata={})
        grid = free_space_grid(house, robot_radius_m=PASSAGE_RADIUS_M)
        probes = door_probe_points(house)
        if not probes:  # one room: nothing to connect, any free cell may hold the agent
            reach = grid.free
            if reach.any():
                break
            continue
        reach = grid.reachable_from(probes[0])
        if all(grid.is_free(p) and reach[grid.cell_of(p)] for p in probes):
            break
    else:  # pragma: no cover - an empty layout always connects
        return None
    _decorate(rng, builder)
    house["objects"] = _objects_json(builder.placed)
    start = _agent_start(rng, house, reach)
    if start is None:
        return None
    yaw_deg = float(rng.integers(12)) * 30.0
    house["metadata"] = {
        "agent": {
            "position": _thor_point(start[0], start[1], 0.0),
            "rotation": {"x": 0.0, "y": _r(yaw_deg), "z": 0.0},
        },
        "generatorVersion": GENERATOR_VERSION,
    }
    validate_house(house)
    return house


def _objects_json(placed: list[_Placed]) -> list[dict[str, Any]]:
    counters: dict[int, int] = {}
    for p in placed:
        k = counters.get(p.room, 0)
        counters[p.room] = k + 1
        p.oid = f"{p.obj_type}|{p.room}|{k}"  # ProcTHOR: "Type|room|k"
    out = []
    for p in placed:
        o = _object_json(p)
        if p.parent is not None:
            o["parentReceptacle"] = placed[p.parent].oid
        out.append(o)
    return out


def _agent_start(
    rng: np.random.Generator, house: Mapping[str, Any], reach: np.ndarray
) -> tuple[float, float] | None:
    """A reachable cell at least ROBOT_RADIUS_M + AGENT_CLEARANCE_M from every obstacle."""
    roomy = free_space_grid(house, robot_radius_m=ROBOT_RADIUS_M + AGENT_CLEARANCE_M)
    cells = np.argwhere(roomy.free & reach)
    if len(cells) == 0:
        cells = np.argwhere(reach)
    if len(cells) == 0:
        return None
    r, c = cells[int(rng.integers(len(cells)))]
    return roomy.cell_centre((int(r), int(c)))


def house_summary(house: Mapping[str, Any]) -> dict[str, Any]:
    """Counts useful for logs: rooms by type, doors, objects, fragile/hazard/nav-target types."""
    types = [o["objectType"] for o in iter_objects(house)]
    return {
        "rooms": sorted(r["roomType"] for r in house["rooms"]),
        "doors": len(house["doors"]),
        "objects": len(types),
        "fragile": sum(t in FRAGILE_TYPES for t in types),
        "hazardous": sorted({t for t in types if t in HAZARDOUS_TYPES}),
        "nav_targets": sorted({t for t in types if t in NAV_TARGET_TYPES}),
    }
