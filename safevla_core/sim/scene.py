"""House dict (ProcTHOR schema) -> parsed layout -> MuJoCo MJCF scene.

:func:`parse_house` reads a house in the schema of :mod:`safevla_core.houses.schema` into plain
geometry in the ``map`` frame (the THOR -> map conversions of that module); :func:`house_scene_xml`
turns it into MJCF, optionally with the robot of :mod:`safevla_core.sim.stretch_model` merged in.

Modelling choices (ours, documented here once):

* Floors: one collision plane at z = 0 (geom group 3: not drawn) plus per-room visual boxes
  (rectilinear decomposition of the floor polygon, coloured by ``roomType``).
* Walls: ProcTHOR walls have no thickness; ours are boxes ``WALL_THICKNESS_M`` thick centred on
  the wall line, cut into pieces around each door/window hole (``holePolygon`` = min and max
  corner in wall-local coordinates of ``wall0``; the hole is projected onto ``wall1`` too:
  :func:`safevla_core.houses.floor_plan.wall_openings`).
  Doorways stay open (no door leaf). Walls shared by two rooms appear twice, coinciding.
* Objects: kinematic ones (``"kinematic"``, else the catalogue type's furniture flag:
  :func:`safevla_core.houses.floor_plan.is_kinematic`) -> a static box (furniture); otherwise a
  free body (free joint) with box collision geometry, a cylinder for round types and a sphere for
  balls, sized from ``"boundingBox"`` (fallback: the catalogue's nominal size) and weighted with
  the catalogue mass.
  Only the yaw of ``"rotation"`` is used (objects stand upright). ``"children"`` are flattened.
* Collision bitmasks: floor ``contype=2 conaffinity=2``; walls and furniture ``2/1``; free
  objects ``2/3``; the robot ``1/0``. So the robot hits walls, furniture and objects but not the
  floor or itself; objects hit everything; static geoms never collide with each other.
* Appearance hooks: unused materials and inactive lights for the out-of-distribution
  perturbations of :mod:`safevla_core.sim.appearance` (``OOD_MATERIAL_PREFIX``, ...).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safevla_core.houses.floor_plan import (
    WALL_THICKNESS_M,
    is_kinematic,
    point_in_polygon,
    wall_openings,
)
from safevla_core.houses.schema import (
    thor_size_to_map_size,
    thor_to_map_position,
    thor_yaw_to_map_yaw,
    validate_house,
)
from safevla_core.objects import OBJECT_TYPES, PICKUPABLE_TYPES

#: Wall height when a wall polygon is degenerate, metres (ProcTHOR's default wall height).
DEFAULT_WALL_HEIGHT_M = 2.5
#: Mass of an object whose type is not in the catalogue, kilograms (ours).
DEFAULT_MASS_KG = 1.0
#: Physics timestep, seconds (ours: contacts of 3 cm thin objects stay stable; ENVIRONMENT.md
#: measured ~100 us per mj_step at this scale).
TIMESTEP_S = 0.005
#: Bodies at rest sleep (MuJoCo's island sleeping, ``mjENBL_SLEEP``): resting objects cost no
#: collision or solver time until something touches them; the actuated robot never sleeps.
#: Velocity tolerance, MuJoCo's default (ours: measured 3x faster physics in a 30-object house).
SLEEP_TOLERANCE = 1e-3
#: Round objects get a cylinder, balls a sphere (ours: closer to their THOR meshes than a box).
CYLINDER_TYPES: frozenset[str] = frozenset(
    {"Vase", "Mug", "Cup", "Bowl", "Plate", "WineGlass", "Bottle", "Candle", "HousePlant", "Statue"}
)
SPHERE_TYPES: frozenset[str] = frozenset({"Apple", "Basketball"})

#: Geom groups: 0 structure, 1 robot (stretch_model), 2 objects, 3 hidden collision floor.
STRUCTURE_GROUP = 0
OBJECT_GROUP = 2
HIDDEN_GROUP = 3
#: Collision bitmasks (see the module docstring).
FLOOR_CONTYPE, FLOOR_CONAFFINITY = 2, 2
STATIC_CONTYPE, STATIC_CONAFFINITY = 2, 1
FREE_CONTYPE, FREE_CONAFFINITY = 2, 3

WALL_RGBA = (0.88, 0.86, 0.8, 1.0)
#: Per-type colours (ours). Every ObjNav target type
#: (:data:`~safevla_core.objects.NAV_TARGET_TYPES`) has its own hue or lightness, distinct from
#: the other targets, the walls and the floors, as a bed, a sofa and a television are told apart
#: at a glance in AI2-THOR by their meshes and textures; our box world has only colour and size
#: to carry that. Other furniture is wood or neutral, hazardous tools steel/dark/rust, other
#: small objects muted. (Before 2026-12, bed, sofa, armchair and dining table were four
#: near-identical browns, the bed the colour of the bedroom floor and the fridge and toilet near
#: the walls' off-white: docs/results, section 8.) ``test_sim`` checks the distances.
TYPE_RGBA: dict[str, tuple[float, float, float, float]] = {
    # ObjNav targets: one colour each
    "Bed": (0.15, 0.25, 0.85, 1),  # blue
    "Sofa": (0.1, 0.5, 0.2, 1),  # green
    "ArmChair": (0.45, 0.15, 0.65, 1),  # purple
    "DiningTable": (0.85, 0.68, 0.3, 1),  # light oak
    "Fridge": (0.55, 0.75, 0.95, 1),  # sky blue
    "Toilet": (0.98, 0.98, 0.98, 1),  # white
    "Television": (0.04, 0.04, 0.05, 1),  # black
    "Vase": (0.9, 0.1, 0.8, 1),  # magenta
    "Mug": (1.0, 0.6, 0.75, 1),  # pink
    "Bowl": (0.95, 0.9, 0.1, 1),  # yellow
    "Apple": (0.85, 0.08, 0.08, 1),  # red
    "Basketball": (0.95, 0.5, 0.05, 1),  # orange
    "Book": (0.0, 0.5, 0.5, 1),  # teal
    "Laptop": (0.22, 0.22, 0.28, 1),  # charcoal
    "AlarmClock": (0.2, 0.9, 0.95, 1),  # cyan
    "HousePlant": (0.55, 0.85, 0.1, 1),  # lime
    # other furniture: wood and neutral
    "CoffeeTable": (0.5, 0.33, 0.18, 1),
    "SideTable": (0.56, 0.38, 0.24, 1),
    "CounterTop": (0.62, 0.58, 0.52, 1),
    "Shelf": (0.47, 0.34, 0.22, 1),
    "Dresser": (0.52, 0.36, 0.26, 1),
    # hazardous equipment: dark, steel, rust
    "GasStove": (0.3, 0.3, 0.32, 1),
    "Oven": (0.2, 0.2, 0.22, 1),
    "SpaceHeater": (0.6, 0.25, 0.1, 1),
    "Knife": (0.75, 0.75, 0.8, 1),
    "Drill": (0.35, 0.3, 0.1, 1),
    "Hammer": (0.3, 0.22, 0.2, 1),
    "Saw": (0.65, 0.68, 0.72, 1),
    "Iron": (0.4, 0.45, 0.55, 1),
    # other small objects: muted
    "Cup": (0.7, 0.55, 0.4, 1),
    "Plate": (0.9, 0.88, 0.84, 1),
    "WineGlass": (0.8, 0.85, 0.85, 1),
    "Bottle": (0.55, 0.35, 0.05, 1),
    "Statue": (0.6, 0.45, 0.25, 1),
    "RemoteControl": (0.15, 0.15, 0.15, 1),
    "Candle": (0.9, 0.85, 0.7, 1),
}
#: Floor colours per ``roomType`` (ours; greys, so no target blends into a floor).
ROOM_RGBA: dict[str, tuple[float, float, float, float]] = {
    "Kitchen": (0.7, 0.7, 0.66, 1),
    "LivingRoom": (0.6, 0.57, 0.53, 1),
    "Bedroom": (0.56, 0.55, 0.57, 1),
    "Bathroom": (0.78, 0.8, 0.82, 1),
}
DEFAULT_FLOOR_RGBA = (0.6, 0.58, 0.56, 1.0)

#: Out-of-distribution appearance hooks (:mod:`safevla_core.sim.appearance`), invisible by
#: default: ``NUM_OOD_MATERIALS`` neutral materials named ``ood_mat_k`` assigned to no geom
#: (white, MuJoCo's default specular 0.5 / shininess 0.5, no reflectance or emission) and
#: ``NUM_OOD_LIGHTS`` inactive directional lights named ``ood_light_k`` without shadows. They have
#: no physical effect (ours: 12 materials give a varied scene, 2 lights a key and a fill light).
OOD_MATERIAL_PREFIX = "ood_mat_"
OOD_LIGHT_PREFIX = "ood_light_"
NUM_OOD_MATERIALS = 12
NUM_OOD_LIGHTS = 2


@dataclass(frozen=True)
class Room:
    """One room: id, type and floor polygon ``(K, 2)`` in ``map``, metres."""

    room_id: str
    room_type: str
    polygon: np.ndarray


@dataclass(frozen=True)
class Wall:
    """One wall line with its openings.

    Attributes:
        wall_id: ProcTHOR id (``"wall|..."``).
        start: ``(2,)`` start point in ``map``, metres.
        end: ``(2,)`` end point in ``map``, metres.
        height_m: Wall height, metres.
        holes: ``(s0, s1, z0, z1)`` openings: distance along the wall from ``start`` and
            height range, metres.
    """

    wall_id: str
    start: np.ndarray
    end: np.ndarray
    height_m: float
    holes: tuple[tuple[float, float, float, float], ...] = ()

    @property
    def length_m(self) -> float:
        """Length of the wall line, metres."""
        return float(np.linalg.norm(self.end - self.start))

    def solid_intervals(self) -> list[tuple[float, float]]:
        """Intervals ``(s0, s1)`` along the wall without any opening (full height).

        Returns:
            Sorted intervals (metres from ``start``) where the wall is full height.
        """
        cuts = sorted((h[0], h[1]) for h in self.holes)
        out, s = [], 0.0
        for a, b in cuts:
            if a > s:
                out.append((s, a))
            s = max(s, b)
        if s < self.length_m:
            out.append((s, self.length_m))
        return [(a, b) for a, b in out if b - a > 1e-6]


@dataclass(frozen=True)
class SceneObject:
    """One object of the house, in ``map``.

    Attributes:
        object_id: House id (``"Vase|3|1"``).
        object_type: Canonical type name.
        position: ``(3,)`` centre of the bounding box, metres.
        yaw_rad: Rotation about +z, radians.
        size_m: ``(3,)`` full size along the object's own x, y, z, metres.
        kinematic: True for static furniture.
        mass_kg: Mass, kilograms.
        shape: ``"box"``, ``"cylinder"`` or ``"sphere"``.
        rgba: Colour.
    """

    object_id: str
    object_type: str
    position: np.ndarray
    yaw_rad: float
    size_m: np.ndarray
    kinematic: bool
    mass_kg: float
    shape: str
    rgba: tuple[float, float, float, float]

    @property
    def pickupable(self) -> bool:
        """Whether ``p`` may grasp it (catalogue flag; static furniture never)."""
        return (not self.kinematic) and self.object_type in PICKUPABLE_TYPES


@dataclass(frozen=True)
class HouseLayout:
    """Everything the simulator needs from a house, in ``map`` (metres, radians)."""

    house_id: str
    rooms: tuple[Room, ...]
    walls: tuple[Wall, ...]
    door_ids: tuple[str, ...]
    window_ids: tuple[str, ...]
    objects: tuple[SceneObject, ...]
    agent_pose: tuple[float, float, float] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of all room polygons, metres."""
        pts = np.concatenate([r.polygon for r in self.rooms])
        return (
            float(pts[:, 0].min()),
            float(pts[:, 1].min()),
            float(pts[:, 0].max()),
            float(pts[:, 1].max()),
        )

    @property
    def structure_ids(self) -> frozenset[str]:
        """Ids of walls, doors, windows and the floor."""
        return frozenset(
            {*(w.wall_id for w in self.walls), *self.door_ids, *self.window_ids, FLOOR_ID}
        )


#: Structure id of the collision floor (``WorldState.type_of`` maps the prefix to "Floor").
FLOOR_ID = "floor|0"


def _type_rgba(object_type: str) -> tuple[float, float, float, float]:
    if object_type in TYPE_RGBA:
        return TYPE_RGBA[object_type]
    h = hashlib.md5(object_type.encode()).digest()
    return (0.25 + 0.7 * h[0] / 255, 0.25 + 0.7 * h[1] / 255, 0.25 + 0.7 * h[2] / 255, 1.0)


def _flatten(objects: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out = []
    for obj in objects:
        out.append(obj)
        out.extend(_flatten(list(obj.get("children", []) or [])))
    return out


def agent_pose_from_metadata(house: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """Robot pose ``(x_m, y_m, yaw_rad)`` from ``metadata.agent``, or None.

    The THOR agent faces its local +z: at THOR yaw ``a`` its heading is THOR
    ``(sin a, 0, cos a)``, i.e. map ``(sin a, cos a)``, so the map heading is
    ``pi/2 - radians(a)`` = ``pi/2 + thor_yaw_to_map_yaw(a)`` (the robot faces its +x).

    Raises:
        ValueError: If the agent entry is present but has no position or a non-finite value.
    """
    agent = (house.get("metadata") or {}).get("agent")
    if not agent:
        return None
    if "position" not in agent:
        raise ValueError("metadata.agent has no 'position'")
    p = thor_to_map_position(agent["position"])
    yaw = math.pi / 2 + thor_yaw_to_map_yaw(float((agent.get("rotation") or {}).get("y", 0.0)))
    yaw = math.atan2(math.sin(yaw), math.cos(yaw))
    if not (np.all(np.isfinite(p)) and math.isfinite(yaw)):
        raise ValueError(f"metadata.agent pose is not finite: {p}, {yaw}")
    return float(p[0]), float(p[1]), yaw


def parse_house(house: Mapping[str, Any]) -> HouseLayout:
    """Read a ProcTHOR-schema house dict into ``map``-frame geometry.

    Args:
        house: House dict (:mod:`safevla_core.houses.schema`).

    Returns:
        The parsed layout.

    Raises:
        ValueError: On a malformed house (missing keys, a degenerate room polygon, a door whose
            ``wall0`` does not exist, non-finite numbers, non-positive sizes).
        KeyError: On an object with an unknown type and no ``boundingBox``.
    """
    validate_house(house)
    rooms = []
    for room in house["rooms"]:
        poly = np.array([[float(p["x"]), float(p["z"])] for p in room["floorPolygon"]])
        if len(poly) < 3 or not np.all(np.isfinite(poly)):
            raise ValueError(f"room {room.get('id')!r} needs >= 3 finite floor polygon points")
        rooms.append(Room(str(room["id"]), str(room.get("roomType", "")), poly))

    raw_walls: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for wall in house["walls"]:
        pts = [thor_to_map_position(p) for p in wall["polygon"]]
        if len(pts) < 2:
            raise ValueError(f"wall {wall.get('id')!r} needs a polygon of >= 2 points")
        height = max(p[2] for p in pts) - min(p[2] for p in pts)
        start, end = pts[0][:2], pts[1][:2]
        if not np.all(np.isfinite(np.concatenate([start, end]))):
            raise ValueError(f"wall {wall.get('id')!r} has non-finite coordinates")
        raw_walls[str(wall["id"])] = (
            start,
            end,
            height if height > 1e-6 else DEFAULT_WALL_HEIGHT_M,
        )

    door_ids = [str(door["id"]) for door in house.get("doors", []) or []]
    window_ids = [str(window["id"]) for window in house.get("windows", []) or []]
    holes = wall_openings(house)
    walls = tuple(Wall(wid, s, e, h, tuple(holes[wid])) for wid, (s, e, h) in raw_walls.items())

    objects = []
    for obj in _flatten(list(house["objects"])):
        otype = str(obj["objectType"])
        entry = OBJECT_TYPES.get(otype)
        if "boundingBox" in obj:
            size = thor_size_to_map_size(obj["boundingBox"])
        elif entry is not None:
            size = np.array(entry.size_m, dtype=np.float64)
        else:
            raise KeyError(f"object {obj['id']!r}: unknown type {otype!r} and no boundingBox")
        if not (np.all(np.isfinite(size)) and np.all(size > 0)):
            raise ValueError(f"object {obj['id']!r}: size must be positive and finite: {size}")
        pos = thor_to_map_position(obj["position"])
        yaw = thor_yaw_to_map_yaw(float(obj["rotation"].get("y", 0.0)))
        if not (np.all(np.isfinite(pos)) and math.isfinite(yaw)):
            raise ValueError(f"object {obj['id']!r}: non-finite position or rotation")
        shape = (
            "sphere" if otype in SPHERE_TYPES else "cylinder" if otype in CYLINDER_TYPES else "box"
        )
        objects.append(
            SceneObject(
                object_id=str(obj["id"]),
                object_type=otype,
                position=pos,
                yaw_rad=yaw,
                size_m=size,
                kinematic=is_kinematic(obj),
                mass_kg=entry.mass_kg if entry else DEFAULT_MASS_KG,
                shape=shape,
                rgba=_type_rgba(otype),
            )
        )
    ids = [o.object_id for o in objects]
    if len(set(ids)) != len(ids):
        raise ValueError(f"house {house.get('id')!r} has duplicate object ids")
    return HouseLayout(
        house_id=str(house.get("id", "")),
        rooms=tuple(rooms),
        walls=walls,
        door_ids=tuple(door_ids),
        window_ids=tuple(window_ids),
        objects=tuple(objects),
        agent_pose=agent_pose_from_metadata(house),
    )


def rectilinear_cells(polygon: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Cover a (rectilinear) polygon with rectangles ``(x0, y0, x1, y1)``.

    Cells of the grid spanned by the polygon's distinct x and y coordinates are kept when their
    centre is inside; each row's consecutive cells are merged. Exact for rectilinear polygons
    (ProcTHOR rooms), an approximation otherwise.
    """
    xs, ys = np.unique(polygon[:, 0]), np.unique(polygon[:, 1])
    cells = []
    for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
        run = None
        for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
            inside = point_in_polygon(np.array([[(x0 + x1) / 2, (y0 + y1) / 2]]), polygon)[0]
            if inside and run is None:
                run = x0
            if not inside and run is not None:
                cells.append((run, y0, x0, y1))
                run = None
        if run is not None:
            cells.append((run, y0, xs[-1], y1))
    return cells


def _fmt(*vals: float) -> str:
    return " ".join(f"{v:.6g}" for v in vals)


def _yaw_quat(yaw: float) -> str:
    return _fmt(math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


def object_body_name(index: int) -> str:
    """MJCF body name of the object with this index in ``HouseLayout.objects``."""
    return f"obj_{index}"


def weld_name(index: int) -> str:
    """MJCF weld-equality name of the grasp constraint of object ``index``."""
    return f"grasp_{index}"


def wall_geom_prefix(index: int) -> str:
    """Prefix of the MJCF geom names of wall ``index`` (pieces ``_0``, ``_1``, ...)."""
    return f"wall_{index}_"


def _object_geom(obj: SceneObject) -> str:
    sx, sy, sz = (float(v) for v in obj.size_m)
    if obj.shape == "sphere":
        size = _fmt(min(sx, sy, sz) / 2)
        gtype = "sphere"
    elif obj.shape == "cylinder":
        size = _fmt(min(sx, sy) / 2, sz / 2)
        gtype = "cylinder"
    else:
        size = _fmt(sx / 2, sy / 2, sz / 2)
        gtype = "box"
    if obj.kinematic:
        bits = f'contype="{STATIC_CONTYPE}" conaffinity="{STATIC_CONAFFINITY}"'
        group = STRUCTURE_GROUP
    else:
        bits = f'contype="{FREE_CONTYPE}" conaffinity="{FREE_CONAFFINITY}"'
        group = OBJECT_GROUP
    mass = f' mass="{obj.mass_kg:.6g}"' if not obj.kinematic else ""
    return (
        f'<geom type="{gtype}" size="{size}" rgba="{_fmt(*obj.rgba)}" {bits} '
        f'group="{group}"{mass}/>'
    )


def layout_scene_xml(
    layout: HouseLayout,
    robot: Any = None,
    offscreen_size: tuple[int, int] = (384, 224),
) -> str:
    """MJCF of a parsed house, optionally with the robot (see :func:`house_scene_xml`)."""
    xmin, ymin, xmax, ymax = layout.bounds
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    half = max(xmax - xmin, ymax - ymin) / 2 + 5.0
    world = [
        f'<geom name="floor" type="plane" size="{_fmt(half, half, 0.1)}" pos="{_fmt(cx, cy, 0)}" '
        f'contype="{FLOOR_CONTYPE}" conaffinity="{FLOOR_CONAFFINITY}" group="{HIDDEN_GROUP}"/>'
    ]
    for r, room in enumerate(layout.rooms):
        rgba = _fmt(*ROOM_RGBA.get(room.room_type, DEFAULT_FLOOR_RGBA))
        for k, (x0, y0, x1, y1) in enumerate(rectilinear_cells(room.polygon)):
            centre = _fmt((x0 + x1) / 2, (y0 + y1) / 2, -0.01)
            world.append(
                f'<geom name="room_{r}_{k}" type="box" pos="{centre}" '
                f'size="{_fmt((x1 - x0) / 2, (y1 - y0) / 2, 0.01)}" rgba="{rgba}" contype="0" '
                f'conaffinity="0" group="{STRUCTURE_GROUP}"/>'
            )
    wall_rgba = _fmt(*WALL_RGBA)
    for w, wall in enumerate(layout.walls):
        if wall.length_m < 1e-6:
            continue
        d = (wall.end - wall.start) / wall.length_m
        yaw = math.atan2(d[1], d[0])
        pieces = [(a, b, 0.0, wall.height_m) for a, b in wall.solid_intervals()]
        for a, b, z0, z1 in wall.holes:
            if z0 > 1e-6:
                pieces.append((a, b, 0.0, z0))
            if z1 < wall.height_m - 1e-6:
                pieces.append((a, b, z1, wall.height_m))
        for k, (a, b, z0, z1) in enumerate(pieces):
            c = wall.start + d * (a + b) / 2
            world.append(
                f'<geom name="{wall_geom_prefix(w)}{k}" type="box" '
                f'pos="{_fmt(c[0], c[1], (z0 + z1) / 2)}" quat="{_yaw_quat(yaw)}" '
                f'size="{_fmt((b - a) / 2, WALL_THICKNESS_M / 2, (z1 - z0) / 2)}" '
                f'rgba="{wall_rgba}" '
                f'contype="{STATIC_CONTYPE}" conaffinity="{STATIC_CONAFFINITY}" '
                f'group="{STRUCTURE_GROUP}"/>'
            )
    welds = []
    for i, obj in enumerate(layout.objects):
        joint = "" if obj.kinematic else f'<freejoint name="objjoint_{i}"/>'
        world.append(
            f'<body name="{object_body_name(i)}" pos="{_fmt(*obj.position)}" '
            f'quat="{_yaw_quat(obj.yaw_rad)}">{joint}{_object_geom(obj)}</body>'
        )
        if robot is not None and obj.pickupable:
            from safevla_core.sim.stretch_model import GRASP_BODY

            welds.append(
                f'<weld name="{weld_name(i)}" body1="{GRASP_BODY}" '
                f'body2="{object_body_name(i)}" active="false"/>'
            )
    if robot is not None:
        world.append(robot.body_xml)
    for k in range(NUM_OOD_LIGHTS):
        world.append(
            f'<light name="{OOD_LIGHT_PREFIX}{k}" directional="true" active="false" '
            f'castshadow="false" pos="{_fmt(cx, cy, 3.0)}" dir="0 0 -1" '
            'diffuse="0.3 0.3 0.3" ambient="0 0 0" specular="0 0 0"/>'
        )
    materials = "".join(
        f'<material name="{OOD_MATERIAL_PREFIX}{k}" rgba="1 1 1 1" specular="0.5" '
        'shininess="0.5" reflectance="0" emission="0"/>'
        for k in range(NUM_OOD_MATERIALS)
    )
    w, h = offscreen_size
    return (
        f'<mujoco model="{layout.house_id or "house"}">'
        '<compiler angle="radian" autolimits="true"/>'
        f'<option timestep="{TIMESTEP_S}" integrator="implicitfast" iterations="30" '
        f'ls_iterations="10" sleep_tolerance="{SLEEP_TOLERANCE}"><flag sleep="enable"/></option>'
        f'<visual><global offwidth="{int(w)}" offheight="{int(h)}"/>'
        '<quality offsamples="0" shadowsize="0"/>'
        '<headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>'
        '<map znear="0.005"/></visual>'
        f"<asset>{materials}{robot.asset_xml if robot is not None else ''}</asset>"
        f"<worldbody>{''.join(world)}</worldbody>"
        f"<equality>{''.join(welds)}</equality>"
        f"<actuator>{robot.actuator_xml if robot is not None else ''}</actuator>"
        "</mujoco>"
    )


def house_scene_xml(
    house: Mapping[str, Any],
    robot: Any = None,
    offscreen_size: tuple[int, int] = (384, 224),
) -> str:
    """MJCF scene of a house (ProcTHOR schema), optionally with the Stretch robot.

    Args:
        house: House dict.
        robot: A :class:`safevla_core.sim.stretch_model.RobotMjcf` or None for the house alone
            (without the robot there are no grasp welds).
        offscreen_size: ``(width, height)`` of the offscreen render buffer, pixels.

    Returns:
        A self-contained MJCF string (``<compiler angle="radian"/>``; meshes by absolute path).

    Raises:
        ValueError, KeyError: On a malformed house (see :func:`parse_house`).
    """
    return layout_scene_xml(parse_house(house), robot, offscreen_size)
