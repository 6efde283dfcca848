"""Our procedural houses in the form AI2-THOR's ``CreateHouse`` loads, or a clear refusal.

Our generator (:mod:`safevla_core.houses.generator`) writes ``assetId = "<Type>_1"`` and our own
box sizes; many such ids (``Vase_1``, ``Sofa_1``, ...) are not THOR assets, and THOR skips
unknown assets. It also writes no ``proceduralParameters`` and no floor or wall materials, which
``CreateHouse`` reads. :func:`export_house_for_thor` fixes all three:

* every object gets a real asset of its THOR type from ProcTHOR's asset database
  (``procthor/databases/asset-database.json``, :class:`~safevla_core.houses.procthor_import
  .AssetDatabase`): the one whose bounding box is nearest ours (sum of absolute size
  differences, ties by asset id). Its ``position`` stays the box centre in x and z (ProcTHOR's
  convention, ``procthor_import``) and is re-centred in y so the object keeps its bottom; an
  object on furniture (our ``parentReceptacle``) sits on its parent's new top. Catalogue types
  map to THOR types through :data:`~safevla_core.houses.procthor_import.THOR_TYPE_TO_CATEGORY`
  (its inverse, used when the database lacks the catalogue name). Types with no THOR asset
  (ProcTHOR's database has no ``Drill``, ``Hammer``, ``Saw``, ``Iron``, ``Oven``,
  ``SpaceHeater``, ``WineGlass``, nor assets of type ``StoveBurner``) refuse the export, or are
  dropped and listed in ``metadata.droppedObjects`` when the caller asks for it.
* ``proceduralParameters`` as ProcTHOR's generator writes them (``procthor`` 0.0.1
  ``generation/house.py``: ``floorColliderThickness`` 1.0, ``receptacleHeight`` 0.7;
  ``generation/lights.py``: one directional light and a point light 0.2 m under the ceiling at
  each room's centroid, with their intensities, colours and shadows; ``skyboxId``), in
  ProcTHOR-10k's schema 1.0.0 form for materials (``{"name": ...}``).
* floor and wall materials drawn (from the house's seed) from ProcTHOR's material database
  (``procthor/databases/material-database.json``: floors from ``"Wood"``, walls from
  ``"Wall"``, as ``generation/materials.py``), ceiling ``PureWhite``.

The result passes :func:`safevla_core.houses.procthor_import.import_procthor_house` with the same
asset database (checked by the tests).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from safevla_core.houses.procthor_import import (
    THOR_TYPE_TO_CATEGORY,
    AssetDatabase,
    procthor_package_asset_database,
)
from safevla_core.houses.schema import validate_house

#: ProcTHOR's ``proceduralParameters`` constants (``procthor`` 0.0.1 generation/house.py).
FLOOR_COLLIDER_THICKNESS_M = 1.0
RECEPTACLE_HEIGHT_M = 0.7
#: Skybox of the exported houses (an entry of procthor/databases/skyboxes.json).
SKYBOX_ID = "Sky1"
#: Ceiling material (ProcTHOR's solid-colour wall material, generation/materials.py).
CEILING_MATERIAL = "PureWhite"
#: Point lights hang this far under the ceiling (generation/lights.py ``ceiling_height - 0.2``).
LIGHT_BELOW_CEILING_M = 0.2
#: Agent height in ``metadata.agent.position.y`` when the house gives 0 (the authors' default
#: agent metadata, ``StretchController.reset``: y 0.95).
AGENT_Y_M = 0.95
_SHADOW = {
    "type": "Soft",
    "strength": 1,
    "normalBias": 0,
    "nearPlane": 0.2,
    "resolution": "FromQualitySettings",
}
#: Our fields that THOR does not read.
_OUR_OBJECT_FIELDS = ("objectType", "boundingBox", "thorObjectType", "parentReceptacle")


class ThorExportError(ValueError):
    """A house cannot be exported for THOR; the message names the objects and types."""


def _database_file(name: str) -> Path:
    found = procthor_package_asset_database()
    if found is None:
        raise FileNotFoundError(
            f"ProcTHOR's {name} ships in the procthor wheel: `pip install --no-deps procthor`"
        )
    return found.parent / name


def load_asset_table(assets: AssetDatabase | None = None) -> dict[str, list[dict[str, Any]]]:
    """THOR type -> asset entries (``assetId``, ``boundingBox``, ...) of ProcTHOR's database.

    Raises:
        FileNotFoundError: If no database is available (see ``AssetDatabase``).
    """
    path = (assets or AssetDatabase()).thor_database_path()
    raw = json.loads(Path(path).read_text())
    table: dict[str, list[dict[str, Any]]] = {}
    for key, value in raw.items():
        for e in value if isinstance(value, list) else [{"assetId": key, **value}]:
            table.setdefault(str(e["objectType"]), []).append(e)
    return table


def load_materials(path: str | Path | None = None) -> dict[str, list[str]]:
    """ProcTHOR's material database: group (``"Wood"``, ``"Wall"``, ...) -> material names."""
    materials: dict[str, list[str]] = json.loads(
        Path(path or _database_file("material-database.json")).read_text()
    )
    return materials


def thor_type_for(our_type: str, table: Mapping[str, Sequence[object]]) -> str | None:
    """The THOR type with assets for one of our catalogue types, or None."""
    if table.get(our_type):
        return our_type
    for thor, ours in THOR_TYPE_TO_CATEGORY.items():
        if ours == our_type and table.get(thor):
            return thor
    return None


def nearest_asset(
    size: Mapping[str, float], entries: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The entry whose ``boundingBox`` is nearest ``size`` (L1 over x, y, z; ties by id)."""

    def key(e: Mapping[str, Any]) -> tuple[float, str]:
        bb = e["boundingBox"]
        # Rounded to 1e-9 m so that float noise does not break ties.
        return round(sum(abs(float(bb[k]) - float(size[k])) for k in "xyz"), 9), str(e["assetId"])

    best = min(entries, key=key)
    return dict(best)


def _lights(house: Mapping[str, Any], ceiling_m: float) -> list[dict[str, Any]]:
    lights: list[dict[str, Any]] = [
        {
            "id": "DirectionalLight",
            "type": "directional",
            "position": {"x": 0.84, "y": 0.1855, "z": -1.09},
            "rotation": {"x": 43.375, "y": -3.902, "z": -63.618},
            "intensity": 0.35,
            "indirectMultiplier": 1.0,
            "rgb": {"r": 1.0, "g": 1.0, "b": 1.0},
            "shadow": dict(_SHADOW, bias=0),
        }
    ]
    for room in house["rooms"]:
        pts = np.array([[p["x"], p["z"]] for p in room["floorPolygon"]], dtype=float)
        x, z = pts.mean(axis=0)  # our rooms are rectangles: vertex mean = centroid
        num = str(room["id"]).rsplit("|", 1)[-1]
        lights.append(
            {
                "id": f"light_{num}",
                "type": "point",
                "position": {
                    "x": round(float(x), 4),
                    "y": round(ceiling_m - LIGHT_BELOW_CEILING_M, 4),
                    "z": round(float(z), 4),
                },
                "intensity": 0.75,
                "range": 15,
                "rgb": {"r": 1.0, "g": 0.855, "b": 0.722},
                "shadow": dict(_SHADOW, bias=0.05),
            }
        )
    return lights


def export_house_for_thor(
    house: Mapping[str, Any],
    assets: AssetDatabase | None = None,
    materials: Mapping[str, list[str]] | None = None,
    drop_unavailable: bool = False,
) -> dict[str, Any]:
    """One of our houses -> a ProcTHOR-form house THOR can create (module docstring).

    Args:
        house: A house in our schema (e.g. :func:`~safevla_core.houses.generator.generate_house`).
        assets: ProcTHOR's asset database (default: the installed ``procthor`` wheel's).
        materials: ProcTHOR's material database (default: the wheel's).
        drop_unavailable: Drop objects of types without THOR assets (listed in
            ``metadata.droppedObjects``) instead of refusing.

    Returns:
        A new house dict: objects with real asset ids and no fields of ours, rooms with
        ``floorMaterial``, walls with ``material``, ``proceduralParameters``, ``metadata.schema``
        ``"1.0.0"``. The input is not modified.

    Raises:
        ThorExportError: If some object's type has no THOR asset (names ids and types) and
            ``drop_unavailable`` is False.
        ValueError: On a house that fails :func:`~safevla_core.houses.schema.validate_house`.
        FileNotFoundError: Without ProcTHOR's databases.
    """
    validate_house(house)
    out = copy.deepcopy(dict(house))
    table = load_asset_table(assets)
    mats = materials if materials is not None else load_materials()
    objs = out["objects"]
    missing = {
        str(o["id"]): str(o["objectType"])
        for o in objs
        if thor_type_for(str(o["objectType"]), table) is None
    }
    if missing and not drop_unavailable:
        raise ThorExportError(
            "no THOR asset in ProcTHOR's asset database for "
            + ", ".join(f"{i} ({t})" for i, t in sorted(missing.items()))
            + "; drop them explicitly (drop_unavailable / --drop-unavailable) or leave the house "
            "to the MuJoCo backend"
        )
    dropped = set(missing)
    # Parents first, then what stands on them (ours: parentReceptacle names the support).
    kept = [
        o
        for o in objs
        if str(o["id"]) not in dropped and str(o.get("parentReceptacle") or "") not in dropped
    ]
    dropped |= {str(o["id"]) for o in objs} - {str(o["id"]) for o in kept}
    tops: dict[str, float] = {}
    for o in sorted(kept, key=lambda o: o.get("parentReceptacle") is not None):
        thor_type = thor_type_for(str(o["objectType"]), table)
        assert thor_type is not None  # the objects without a THOR type were dropped above
        size = o["boundingBox"]
        entry = nearest_asset(size, table[thor_type])
        bottom = float(o["position"]["y"]) - float(size["y"]) / 2
        parent = o.get("parentReceptacle")
        if parent is not None and str(parent) in tops:
            bottom = tops[str(parent)]
        new_h = float(entry["boundingBox"]["y"])
        o["assetId"] = str(entry["assetId"])
        o["position"] = dict(o["position"], y=round(bottom + new_h / 2, 4))
        tops[str(o["id"])] = bottom + new_h
        for k in _OUR_OBJECT_FIELDS:
            o.pop(k, None)
        o.setdefault("children", [])
    out["objects"] = kept
    rng = np.random.default_rng(int(out.get("seed") or 0))
    floors, walls = list(mats["Wood"]), list(mats["Wall"])
    for room in out["rooms"]:
        room["floorMaterial"] = {"name": floors[rng.integers(len(floors))]}
    wall_by_room = {str(r["id"]): {"name": walls[rng.integers(len(walls))]} for r in out["rooms"]}
    for wall in out["walls"]:
        wall["material"] = dict(wall_by_room.get(str(wall.get("roomId")), {"name": walls[0]}))
    ceiling = max(float(p["y"]) for w in out["walls"] for p in w["polygon"])
    out["proceduralParameters"] = {
        "ceilingMaterial": {"name": CEILING_MATERIAL},
        "floorColliderThickness": FLOOR_COLLIDER_THICKNESS_M,
        "receptacleHeight": RECEPTACLE_HEIGHT_M,
        "lights": _lights(out, ceiling),
        "reflections": [],
        "skyboxId": SKYBOX_ID,
    }
    meta = out.setdefault("metadata", {})
    meta["schema"] = "1.0.0"
    agent = meta.get("agent")
    if agent and math.isclose(float(agent["position"].get("y", 0.0)), 0.0):
        agent["position"] = dict(agent["position"], y=AGENT_Y_M)
    if dropped:
        meta["droppedObjects"] = sorted(dropped)
    return out


def unknown_asset_ids(house: Mapping[str, Any], assets: AssetDatabase | None = None) -> list[str]:
    """Asset ids of a house (objects, children, doors, windows) missing from the database."""
    from safevla_core.houses.procthor_import import iter_house_objects

    db = assets or AssetDatabase()
    ids = [str(o["assetId"]) for o in iter_house_objects(list(house.get("objects") or []))]
    ids += [str(d["assetId"]) for k in ("doors", "windows") for d in house.get(k) or []]
    out = []
    for aid in ids:
        try:
            db.lookup(aid)
        except KeyError:
            out.append(aid)
    return sorted(set(out))
