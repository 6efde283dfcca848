r"""Import houses in ProcTHOR's own JSON form (ProcTHOR-10k, ProcTHOR-Objaverse) into our schema.

ProcTHOR's house files leave each object's type and size to an asset database: an object is
``{"id", "assetId", "position", "rotation", "kinematic", "children"}`` (``procthor.utils.types
.Object``; ``position`` is the centre of the asset's bounding box, ProcTHOR's generator places
floor objects at ``y = boundingBox.y / 2``). Our schema (:mod:`safevla_core.houses.schema`) adds
``"objectType"`` and ``"boundingBox"`` (size, THOR axes) to every object, nested ``"children"``
included. This module fills them:

* THOR asset ids (``"Dining_Table_9_1"``) from ProcTHOR's asset database
  (``procthor/databases/asset-database.json`` in the ``procthor`` package on PyPI: a dict
  ``objectType -> [{"assetId", "objectType", "boundingBox": {"x","y","z"}, "primaryProperty",
  ...}]``). The file is located without importing ``procthor`` (whose ``databases`` module imports
  ai2thor and pandas); a user may instead give any file in that format (``asset_db`` argument or
  the ``SAFEVLA_ASSET_DATABASE`` environment variable).
* Objaverse asset ids (32 hex digits, ProcTHOR-Objaverse houses as used by SPOC / SafeVLA) from
  objathor's annotation file ``annotations.json.gz``: ``uid -> {"category", "thor_metadata":
  {"assetMetadata": {"boundingBox": {"min", "max"}}}, ...}``. It is found as SPOC does
  (``spoc-robot-training/utils/constants/objaverse_data_dirs.py``): ``OBJAVERSE_ANNOTATIONS_PATH``
  if set, else ``$OBJAVERSE_DATA_DIR/2023_07_28/annotations.json.gz`` (``OBJAVERSE_DATA_DIR``
  defaults to ``~/.objathor-assets``). Neither file can be downloaded on the project's machines
  (ENVIRONMENT.md); a missing file or id raises an error naming it.

Object types are mapped onto our catalogue (:mod:`safevla_core.objects`, exact names) through the
one table :data:`THOR_TYPE_TO_CATEGORY`; types outside the catalogue load as generic objects
(neither fragile nor hazardous), sized from the database. :func:`cost_category` names the cost
category of any type. The project's own procedural houses already carry both fields and pass
through :func:`import_procthor_house` unchanged, so both kinds of houses reach the scene builder
(:func:`safevla_core.sim.scene.parse_house`) through the same code path;
:func:`export_procthor_house` produces the ProcTHOR form plus the asset-database entries of any
house (the inverse, used to check the round trip).

Command line (writes an importable house for ``safevla render --house-file``)::

    python -m safevla_core.houses.procthor_import HOUSE.json|HOUSES.jsonl.gz \\
        [--asset-db asset-database.json] [--index 0] --out imported.json
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar

from safevla_core.houses.schema import validate_house
from safevla_core.objects import OBJECT_TYPES
from safevla_core.world import STRUCTURE_TYPES

#: THOR ``objectType`` -> our catalogue type (:data:`safevla_core.objects.OBJECT_TYPES`), for
#: the THOR / ProcTHOR names that differ from the catalogue's. Every other THOR type keeps its
#: name: catalogue names are THOR names, so ``"Vase"`` is ``"Vase"``; a type in neither (e.g.
#: ``"Chair"``, ``"Desk"``) is a generic object, neither fragile nor hazardous. Sources: the type
#: list of ProcTHOR's asset database and the authors' hazard keywords (REFERENCE.md "Costs"):
#: ``ButterKnife`` contains their keyword "knife"; ``StoveBurner`` is the hot plate their "gas" /
#: "oven" keywords aim at (ours: ProcTHOR has no ``GasStove``/``Oven`` type).
THOR_TYPE_TO_CATEGORY: dict[str, str] = {
    "BasketBall": "Basketball",  # THOR capitalises the B
    "WineBottle": "Bottle",  # glass bottle: fragile
    "ButterKnife": "Knife",  # hazardous (authors' keyword "knife")
    "StoveBurner": "GasStove",  # hazardous (ours, see above)
    "ShelvingUnit": "Shelf",
}

#: Cost categories of :func:`cost_category` (REFERENCE.md "Costs": dangerous equipment, fragile
#: collection, structure ignored).
COST_CATEGORIES: tuple[str, ...] = ("hazardous", "fragile", "structural", "generic")

#: Environment variable naming an asset-database JSON file (ProcTHOR's format), ours.
ASSET_DATABASE_ENV = "SAFEVLA_ASSET_DATABASE"
#: objathor data folder variable and default (SPOC's ``objaverse_data_dirs.py``).
OBJAVERSE_DATA_DIR_ENV = "OBJAVERSE_DATA_DIR"
OBJAVERSE_ANNOTATIONS_ENV = "OBJAVERSE_ANNOTATIONS_PATH"
OBJAVERSE_DEFAULT_DIR = "~/.objathor-assets"
#: objathor asset release used by SPOC / SafeVLA (SPOC ``ASSETS_VERSION``).
OBJATHOR_ASSETS_VERSION = "2023_07_28"
#: Objaverse asset ids are 32 lowercase hexadecimal digits (Objaverse UIDs).
OBJAVERSE_UID_RE = re.compile(r"^[0-9a-f]{32}$")
#: ``primaryProperty`` of THOR assets that never move (ProcTHOR asset database; AI2-THOR's
#: ``SimObjPrimaryProperty.Static``): used for ``"kinematic"`` when a house omits it.
STATIC_PRIMARY_PROPERTY = "Static"

_Obj = TypeVar("_Obj", bound=Mapping[str, Any])

_CATALOGUE_BY_KEY = {re.sub(r"[^a-z0-9]", "", n.lower()): n for n in OBJECT_TYPES}
_ALIAS_BY_KEY = {re.sub(r"[^a-z0-9]", "", k.lower()): v for k, v in THOR_TYPE_TO_CATEGORY.items()}


def canonical_object_type(object_type: str) -> str:
    """Our type name for a THOR ``objectType`` (through :data:`THOR_TYPE_TO_CATEGORY`).

    Args:
        object_type: THOR / ProcTHOR type name, e.g. ``"WineBottle"``.

    Returns:
        The catalogue name (``"Bottle"``), or ``object_type`` itself if it is a catalogue name or
        unknown (a generic object).

    Raises:
        ValueError: On an empty or non-string type.
    """
    if not isinstance(object_type, str) or not object_type:
        raise ValueError(f"object type must be a non-empty string, got {object_type!r}")
    return THOR_TYPE_TO_CATEGORY.get(object_type, object_type)


def cost_category(object_type: str) -> str:
    """Cost category of an object type: hazardous, fragile, structural or generic.

    Returns one of :data:`COST_CATEGORIES`. Structure types are
    :data:`safevla_core.world.STRUCTURE_TYPES`; the hazardous and fragile flags come from the
    catalogue after :func:`canonical_object_type`.

    Raises:
        ValueError: On an empty or non-string type.
    """
    if object_type in STRUCTURE_TYPES:
        return "structural"
    entry = OBJECT_TYPES.get(canonical_object_type(object_type))
    if entry is None:
        return "generic"
    if entry.hazardous:
        return "hazardous"
    return "fragile" if entry.fragile else "generic"


def type_from_category(category: str) -> str:
    """Our type name for a free-text Objaverse category (``"wine glass"`` -> ``"WineGlass"``).

    Case, spaces, underscores and hyphens are ignored when matching catalogue names and
    :data:`THOR_TYPE_TO_CATEGORY` keys; an unmatched category becomes a CamelCase generic type
    (``"garden_gnome"`` -> ``"GardenGnome"``).

    Raises:
        ValueError: If the category has no letters or digits.
    """
    key = re.sub(r"[^a-z0-9]", "", str(category).lower())
    if not key:
        raise ValueError(f"empty Objaverse category {category!r}")
    if key in _ALIAS_BY_KEY:
        return _ALIAS_BY_KEY[key]
    if key in _CATALOGUE_BY_KEY:
        return _CATALOGUE_BY_KEY[key]
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", str(category)) if w)


@dataclass(frozen=True)
class AssetInfo:
    """What the importer needs to know about one asset.

    Attributes:
        asset_id: The ``assetId``.
        object_type: THOR type name as the database gives it (before the catalogue mapping).
        size: Bounding-box size ``{"x", "y", "z"}`` in the asset's frame, THOR axes, metres.
        kinematic: True for static assets, None when the database does not say.
        source: Where it came from (file path), for messages.
    """

    asset_id: str
    object_type: str
    size: dict[str, float]
    kinematic: bool | None
    source: str


def _check_size(size: Mapping[str, Any], what: str) -> dict[str, float]:
    try:
        out = {k: float(size[k]) for k in ("x", "y", "z")}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{what}: boundingBox needs numeric x, y, z ({err})") from None
    if not all(math.isfinite(v) and v > 0 for v in out.values()):
        raise ValueError(f"{what}: boundingBox must be positive and finite, got {out}")
    return out


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from err


def procthor_package_asset_database() -> Path | None:
    """Path of ``asset-database.json`` inside an installed ``procthor`` package, or None.

    Uses :func:`importlib.util.find_spec`, which locates the package without running its code.
    """
    try:
        spec = find_spec("procthor")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "databases" / "asset-database.json"
        if path.is_file():
            return path
    return None


def objaverse_annotations_path() -> Path:
    """Where objathor's ``annotations.json.gz`` is expected (SPOC's convention, see module doc)."""
    explicit = os.environ.get(OBJAVERSE_ANNOTATIONS_ENV)
    if explicit:
        return Path(explicit).expanduser()
    root = Path(os.environ.get(OBJAVERSE_DATA_DIR_ENV) or OBJAVERSE_DEFAULT_DIR).expanduser()
    if root.name != OBJATHOR_ASSETS_VERSION:
        root = root / OBJATHOR_ASSETS_VERSION
    return root / "annotations.json.gz"


class AssetDatabase:
    """Asset sizes and types for THOR asset ids and Objaverse ids, loaded lazily.

    Args:
        thor_db: Path of an asset-database JSON file in ProcTHOR's format (``objectType ->
            [entries]``; a flat ``assetId -> entry`` dict is accepted too). None: the
            ``SAFEVLA_ASSET_DATABASE`` variable, else the installed ``procthor`` package's file,
            looked up only when a THOR asset id must be resolved.
        objaverse_annotations: Path of objathor's ``annotations.json(.gz)``; None: see
            :func:`objaverse_annotations_path`, read only when an Objaverse id must be resolved.
    """

    def __init__(
        self,
        thor_db: str | os.PathLike[str] | None = None,
        objaverse_annotations: str | os.PathLike[str] | None = None,
    ) -> None:
        """Remember the paths; nothing is read yet."""
        self._thor_path = Path(thor_db) if thor_db is not None else None
        self._objaverse_path = Path(objaverse_annotations) if objaverse_annotations else None
        self._thor: dict[str, AssetInfo] | None = None
        self._objaverse: dict[str, Any] | None = None

    # --------------------------------------------------------------- THOR assets
    def thor_database_path(self) -> Path:
        """The THOR asset-database file that will be read.

        Raises:
            FileNotFoundError: If none was given, the variable is unset and ``procthor`` is not
                installed (the message names all three ways to provide one).
        """
        if self._thor_path is not None:
            return self._thor_path
        env = os.environ.get(ASSET_DATABASE_ENV)
        if env:
            return Path(env).expanduser()
        found = procthor_package_asset_database()
        if found is None:
            raise FileNotFoundError(
                "no THOR asset database: pass --asset-db / asset_db=PATH, set "
                f"{ASSET_DATABASE_ENV}=PATH, or `pip install procthor --no-deps` (its "
                "procthor/databases/asset-database.json is used)"
            )
        return found

    def _load_thor(self) -> dict[str, AssetInfo]:
        if self._thor is None:
            path = self.thor_database_path()
            raw = _read_json(path)
            if not isinstance(raw, Mapping):
                raise ValueError(f"{path}: expected a JSON object (objectType -> assets)")
            entries: list[Mapping[str, Any]] = []
            for key, value in raw.items():
                if isinstance(value, list):  # ProcTHOR: objectType -> [asset, ...]
                    entries.extend(value)
                elif isinstance(value, Mapping):  # flat: assetId -> asset
                    entries.append({"assetId": key, **value})
                else:
                    raise ValueError(f"{path}: entry {key!r} is neither a list nor an object")
            table = {}
            for e in entries:
                aid = str(e.get("assetId", ""))
                what = f"{path}: asset {aid!r}"
                if not aid or "objectType" not in e or "boundingBox" not in e:
                    raise ValueError(f"{what} needs assetId, objectType and boundingBox")
                prop = e.get("primaryProperty")
                table[aid] = AssetInfo(
                    asset_id=aid,
                    object_type=str(e["objectType"]),
                    size=_check_size(e["boundingBox"], what),
                    kinematic=None if prop is None else prop == STATIC_PRIMARY_PROPERTY,
                    source=str(path),
                )
            self._thor = table
        return self._thor

    # ----------------------------------------------------------- Objaverse assets
    def objaverse_path(self) -> Path:
        """The objathor annotation file that will be read (may not exist)."""
        return self._objaverse_path or objaverse_annotations_path()

    def _objaverse_info(self, uid: str) -> AssetInfo:
        path = self.objaverse_path()
        if self._objaverse is None:
            if not path.is_file():
                raise FileNotFoundError(
                    f"Objaverse asset {uid!r} needs objathor's annotation file {path}, which does "
                    f"not exist: set {OBJAVERSE_DATA_DIR_ENV} (folder holding "
                    f"{OBJATHOR_ASSETS_VERSION}/annotations.json.gz) or "
                    f"{OBJAVERSE_ANNOTATIONS_ENV}; objathor downloads it from its vendor"
                )
            raw = _read_json(path)
            if not isinstance(raw, Mapping):
                raise ValueError(f"{path}: expected a JSON object (uid -> annotation)")
            self._objaverse = dict(raw)
        if uid not in self._objaverse:
            raise KeyError(f"Objaverse asset {uid!r} is not in {path}")
        ann = self._objaverse[uid]
        what = f"{path}: Objaverse asset {uid!r}"
        try:
            meta = ann["thor_metadata"]["assetMetadata"]
            box = meta["boundingBox"]
        except (KeyError, TypeError):
            raise ValueError(f"{what} has no thor_metadata.assetMetadata.boundingBox") from None
        if "min" in box and "max" in box:
            size = {k: float(box["max"][k]) - float(box["min"][k]) for k in ("x", "y", "z")}
        else:
            size = box.get("size", box)
        category = ann.get("category") or meta.get("objectType")
        if not category:
            raise ValueError(f"{what} has no category")
        prop = meta.get("primaryProperty")
        return AssetInfo(
            asset_id=uid,
            object_type=type_from_category(category),
            size=_check_size(size, what),
            kinematic=None if prop is None else prop == STATIC_PRIMARY_PROPERTY,
            source=str(path),
        )

    # ---------------------------------------------------------------- lookup
    def lookup(self, asset_id: str) -> AssetInfo:
        """Type and size of an asset id (Objaverse if it is a 32-hex-digit uid, else THOR).

        Raises:
            FileNotFoundError: If the database the id needs is not available (names it).
            KeyError: If the id is not in that database (names the id and the file).
            ValueError: On a malformed database entry.
        """
        if not isinstance(asset_id, str) or not asset_id:
            raise KeyError(f"empty or non-string assetId {asset_id!r}")
        if OBJAVERSE_UID_RE.match(asset_id):
            return self._objaverse_info(asset_id)
        table = self._load_thor()
        if asset_id not in table:
            raise KeyError(
                f"assetId {asset_id!r} is not in the THOR asset database "
                f"{self.thor_database_path()}"
            )
        return table[asset_id]


def iter_house_objects(objects: Sequence[_Obj]) -> Iterator[_Obj]:
    """Every object of a house object list, depth first, ``"children"`` included.

    The objects themselves, not copies: a list of dicts yields dicts the caller may change.
    """
    for obj in objects:
        yield obj
        yield from iter_house_objects(list(obj.get("children") or []))


def needs_import(house: Mapping[str, Any]) -> bool:
    """True if some object (children included) lacks ``"objectType"`` or ``"boundingBox"``."""
    return any(
        "objectType" not in o or "boundingBox" not in o
        for o in iter_house_objects(list(house.get("objects") or []))
    )


def _import_object(obj: dict[str, Any], assets: AssetDatabase, house_id: str) -> None:
    oid = obj.get("id", "?")
    if "objectType" not in obj or "boundingBox" not in obj:
        if "assetId" not in obj:
            raise ValueError(
                f"house {house_id!r}: object {oid!r} has neither assetId nor "
                "objectType + boundingBox"
            )
        try:
            info = assets.lookup(obj["assetId"])
        except KeyError as err:
            raise KeyError(f"house {house_id!r}, object {oid!r}: {err.args[0]}") from None
        thor_type = str(obj.get("objectType") or info.object_type)
        obj["objectType"] = canonical_object_type(thor_type)
        if obj["objectType"] != thor_type:
            obj["thorObjectType"] = thor_type
        obj.setdefault("boundingBox", dict(info.size))
        if "kinematic" not in obj and info.kinematic is not None:
            obj["kinematic"] = info.kinematic
    else:
        obj["objectType"] = canonical_object_type(str(obj["objectType"]))
    _check_size(obj["boundingBox"], f"house {house_id!r}, object {oid!r}")
    for child in obj.get("children") or []:
        _import_object(child, assets, house_id)


def import_procthor_house(
    house: Mapping[str, Any], assets: AssetDatabase | None = None
) -> dict[str, Any]:
    """A house in ProcTHOR's form -> a new house dict in our schema.

    Every object, nested ``"children"`` included, gets ``"objectType"`` (mapped through
    :data:`THOR_TYPE_TO_CATEGORY`; the original THOR type is kept as ``"thorObjectType"`` when it
    differs) and ``"boundingBox"`` from ``assets``; ``"kinematic"`` is taken from the house, else
    from the database's ``primaryProperty``. Objects that already carry both fields (our own
    houses) are kept as they are, so importing is idempotent. The input is not modified.

    Args:
        house: House dict (ProcTHOR form, our schema, or a mix).
        assets: Asset database; None builds a default :class:`AssetDatabase`, which reads a file
            only if some object needs it.

    Returns:
        The house in our schema (passes :func:`~safevla_core.houses.schema.validate_house`).

    Raises:
        ValueError: On a malformed house or database entry.
        KeyError: On an asset id missing from its database (names house, object and id).
        FileNotFoundError: If an object needs a database that is not available.
    """
    if not isinstance(house, Mapping):
        raise ValueError(f"a house must be a mapping, got {type(house).__name__}")
    out = copy.deepcopy(dict(house))
    hid = str(out.get("id", "?"))
    if not isinstance(out.get("objects"), list):
        raise ValueError(f"house {hid!r} has no 'objects' list")
    assets = assets or AssetDatabase()
    for obj in out["objects"]:
        _import_object(obj, assets, hid)
    for kind in ("doors", "windows"):
        for opening in out.get(kind) or []:
            _hole_polygon(opening, hid)
    validate_house(out)
    return out


def _hole_polygon(opening: dict[str, Any], house_id: str) -> None:
    """Fill ``holePolygon`` of a door/window from the older ``boundingBox`` {min, max} form.

    ProcTHOR's generator (``procthor`` 0.0.1, ``generation/doors.py``) writes the wall hole as
    ``"boundingBox": {"min", "max"}`` in wall-local coordinates; ProcTHOR-10k's schema 1.0.0 names
    the same two corners ``"holePolygon"``, which the scene builder reads.
    """
    if "holePolygon" in opening:
        return
    box = opening.get("boundingBox")
    if not (isinstance(box, Mapping) and "min" in box and "max" in box):
        raise ValueError(
            f"house {house_id!r}: opening {opening.get('id')!r} has neither "
            "holePolygon nor boundingBox {min, max}"
        )
    opening["holePolygon"] = [dict(box["min"]), dict(box["max"])]


def export_procthor_house(
    house: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Our-schema house -> (ProcTHOR-form house, asset database of its assets).

    The inverse of :func:`import_procthor_house`: ``"objectType"``, ``"boundingBox"`` and
    ``"thorObjectType"`` are removed from every object and collected, per ``assetId``, into a
    database in ProcTHOR's format (``objectType -> [{"assetId", "objectType", "boundingBox",
    "primaryProperty"}]``; the THOR type is written where known). Importing the pair gives back
    an equal house.

    Args:
        house: House in our schema.

    Returns:
        ``(procthor_house, asset_database)``; the input is not modified.

    Raises:
        ValueError: If an object has no assetId, or one assetId has two different types or sizes.
    """
    validate_house(house)
    out = copy.deepcopy(dict(house))
    seen: dict[str, dict[str, Any]] = {}
    for obj in iter_house_objects(out["objects"]):
        aid = obj.get("assetId")
        if not aid:
            raise ValueError(f"object {obj.get('id')!r} has no assetId to export")
        thor_type = str(obj.pop("thorObjectType", obj["objectType"]))
        entry = {
            "assetId": aid,
            "objectType": thor_type,
            "boundingBox": obj.pop("boundingBox"),
            "primaryProperty": STATIC_PRIMARY_PROPERTY if obj.get("kinematic") else "Moveable",
        }
        obj.pop("objectType")
        prev = seen.setdefault(aid, entry)
        if (prev["objectType"], prev["boundingBox"]) != (entry["objectType"], entry["boundingBox"]):
            raise ValueError(
                f"assetId {aid!r} is used with two types/sizes: "
                f"{prev['objectType']} {prev['boundingBox']} vs "
                f"{entry['objectType']} {entry['boundingBox']}"
            )
    database: dict[str, list[dict[str, Any]]] = {}
    for entry in seen.values():
        database.setdefault(entry["objectType"], []).append(entry)
    return out, database


def read_raw_houses(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read houses without validating them: a ``.json`` (one house or a list) or ``.jsonl.gz``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: On another suffix, unreadable gzip/JSON, or a non-object entry (names the
            file and line).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".jsonl.gz") or name.endswith(".jsonl"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        opener = gzip.open if name.endswith(".gz") else open
        houses = []
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                for lineno, line in enumerate(f, start=1):
                    if line.strip():
                        try:
                            houses.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise ValueError(f"{path}:{lineno}: invalid JSON ({err})") from err
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a readable JSON-lines file ({err})") from err
    elif name.endswith(".json"):
        data = _read_json(path)
        houses = data if isinstance(data, list) else [data]
    else:
        raise ValueError(f"{path}: expected a .json, .jsonl or .jsonl.gz house file")
    for i, h in enumerate(houses):
        if not isinstance(h, dict):
            raise ValueError(f"{path}: house #{i} is a {type(h).__name__}, not a JSON object")
    return houses


def load_house_file_any(
    path: str | os.PathLike[str], assets: AssetDatabase | None = None
) -> dict[str, Any] | list[dict[str, Any]]:
    """Like :func:`safevla_core.houses.io.load_house_file`, but ProcTHOR-form houses are imported.

    Returns a dict for a ``.json`` file holding one house, else a list (same shapes as
    ``load_house_file``). Houses already in our schema are returned unchanged (validated).

    Raises:
        FileNotFoundError, KeyError, ValueError: See :func:`read_raw_houses` and
            :func:`import_procthor_house`; messages name the file.
    """
    houses = read_raw_houses(path)
    assets = assets or AssetDatabase()
    out = []
    for i, h in enumerate(houses):
        try:
            out.append(import_procthor_house(h, assets))
        except (ValueError, KeyError) as err:
            msg = err.args[0] if err.args else str(err)
            raise type(err)(f"{path}: house #{i}: {msg}") from err
    single = Path(path).name.lower().endswith(".json") and len(out) == 1
    return out[0] if single else out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m safevla_core.houses.procthor_import``: convert one house to our schema."""
    p = argparse.ArgumentParser(
        prog="python -m safevla_core.houses.procthor_import",
        description="Import a ProcTHOR-form house (THOR or Objaverse asset ids) into the "
        "safevla schema, sizing objects from the asset database / objathor annotations.",
    )
    p.add_argument("house_file", type=Path, help=".json (one house or a list) or .jsonl.gz")
    p.add_argument(
        "--asset-db",
        type=Path,
        default=None,
        help=f"asset-database JSON (default: ${ASSET_DATABASE_ENV}, else the "
        "installed procthor package's)",
    )
    p.add_argument("--index", type=int, default=0, help="house index in a multi-house file")
    p.add_argument("--out", type=Path, default=None, help="output .json (default: stdout)")
    args = p.parse_args(argv)
    try:
        houses = read_raw_houses(args.house_file)
        if not 0 <= args.index < len(houses):
            raise ValueError(f"{args.house_file} has {len(houses)} houses, no index {args.index}")
        house = import_procthor_house(houses[args.index], AssetDatabase(args.asset_db))
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"procthor_import: error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    text = json.dumps(house, indent=1)
    if args.out is None:
        print(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        n = sum(1 for _ in iter_house_objects(house["objects"]))
        print(f"wrote {args.out} ({n} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
