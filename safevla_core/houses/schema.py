"""ProcTHOR house JSON schema (the subset this package reads and writes) and frame conversion.

A house is a plain dict, as in ProcTHOR's published house sets (``.jsonl.gz``, one house a line):

.. code-block:: text

    {
      "id": "train_0007",                       # ours: split + index
      "seed": 12345,                            # ours: generator seed
      "rooms":   [{"id": "room|2", "roomType": "Kitchen",
                   "floorPolygon": [{"x": 0, "y": 0, "z": 0}, ...]}],     # counter-clockwise
      "walls":   [{"id": "wall|2|0.00|0.00|4.00|0.00", "roomId": "room|2",
                   "polygon": [{"x","y","z"} x 4]}],
                   # corners: bottom-start, bottom-end, top-end, top-start
      "doors":   [{"id": "door|2|3", "room0": "room|2", "room1": "room|3",
                   "wall0": "wall|2|...", "wall1": "wall|3|...", "assetId": "Doorway_1",
                   "holePolygon": [{"x": 1.0, "y": 0, "z": 0}, {"x": 2.0, "y": 2.1, "z": 0}]}],
                   # holePolygon: min and max corner in wall-local coordinates
                   # (x along the wall from its start, y height), metres
      "windows": [],
      "objects": [{"id": "Vase|3|1", "assetId": "Vase_1", "objectType": "Vase",
                   "position": {"x","y","z"},   # centre of the bounding box, THOR frame
                   "rotation": {"x": 0, "y": 90, "z": 0},   # degrees, THOR frame
                   "boundingBox": {"x": 0.14, "y": 0.3, "z": 0.14},  # size, THOR axes (ours)
                   "kinematic": false,          # true: static furniture
                   "children": []}],
      "metadata": {"agent": {"position": {"x","y","z"}, "rotation": {"x": 0, "y": 0, "z": 0}}}
    }

"objectType" and "boundingBox" are our additions: THOR's own files leave them to the asset
database, and the importer (a later issue) fills them from it.

THOR uses Unity's left-handed frame (x right, y up, z forward). The ROS ``map`` frame is
right-handed REP-103 (z up). We map THOR ``(x, y, z)`` to map ``(x, z, y)``; a THOR yaw
(rotation about +y, clockwise seen from above) of ``a`` degrees is a map yaw of ``-radians(a)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Keys every house must have.
REQUIRED_KEYS: tuple[str, ...] = ("rooms", "walls", "doors", "objects")


def thor_to_map_position(p: Mapping[str, float]) -> np.ndarray:
    """THOR ``{"x", "y", "z"}`` (metres, y up) -> map ``(x, y, z)`` (metres, z up)."""
    return np.array([float(p["x"]), float(p["z"]), float(p["y"])], dtype=np.float64)


def map_to_thor_position(p: np.ndarray | tuple[float, float, float]) -> dict[str, float]:
    """Map ``(x, y, z)`` -> THOR ``{"x", "y", "z"}``; inverse of :func:`thor_to_map_position`."""
    return {"x": float(p[0]), "y": float(p[2]), "z": float(p[1])}


def thor_yaw_to_map_yaw(yaw_deg: float) -> float:
    """THOR rotation about +y in degrees -> map yaw about +z in radians, wrapped to (-pi, pi]."""
    a = -math.radians(float(yaw_deg))
    return math.atan2(math.sin(a), math.cos(a))


def map_yaw_to_thor_yaw(yaw_rad: float) -> float:
    """Map yaw in radians -> THOR rotation about +y in degrees, in [0, 360)."""
    return (-math.degrees(yaw_rad)) % 360.0


def thor_size_to_map_size(s: Mapping[str, float]) -> np.ndarray:
    """THOR bounding-box size ``{"x", "y", "z"}`` -> map ``(sx, sy, sz)`` (y and z swapped)."""
    return np.array([float(s["x"]), float(s["z"]), float(s["y"])], dtype=np.float64)


def validate_house(house: Mapping[str, Any]) -> None:
    """Check that a house dict has what the embedded simulator needs.

    Raises:
        ValueError: Naming the first missing key, an empty room list, or an object without
            position/rotation/objectType.
    """
    if not isinstance(house, Mapping):
        raise ValueError(f"a house must be a mapping, got {type(house).__name__}")
    for key in REQUIRED_KEYS:
        if key not in house:
            raise ValueError(f"house {house.get('id', '?')!r} has no {key!r} list")
    if not house["rooms"]:
        raise ValueError(f"house {house.get('id', '?')!r} has no rooms")
    for obj in house["objects"]:
        for key in ("id", "position", "rotation", "objectType"):
            if key not in obj:
                raise ValueError(f"object {obj.get('id', '?')!r} has no {key!r}")
