"""AI2-THOR event metadata: the keys its schema requires, checked without Unity.

Source of the field list: AI2-THOR's own JSON schema of ``event.metadata``,
``allenai/ai2thor`` ``ai2thor/tests/data/metadata-schema.json`` (commit 08df627861e5, the version
whose object entries require 39 keys), written down here as names and types (nothing copied).
Builds since then renamed ``ObjectTemperature`` to ``temperature`` and dropped ``obstructed``:
the metadata AI2-THOR's authors recorded from 120 iTHOR scenes and ship in the ``procthor``
wheel (``procthor/databases/ai2thor-object-metadata.json``, 8715 object entries) has
``temperature`` and no ``obstructed`` in every entry, and adds ``assetId``, ``controlledObjects``,
``isInteractable`` and ``openness``. :func:`metadata_problems` accepts either name, so fixtures
recorded by ``scripts/record_thor_fixtures.py`` on the authors' build validate unchanged.

Top level: of the schema's required keys we require the ones the backend or the authors' cost
code reads (:data:`REQUIRED_TOP_KEYS`: ``collided`` and ``collidedObjects`` are read by SafeVLA's
``tasks/abstract_task.py``); the Stretch agent adds ``arm`` (its joints are read by the authors'
``get_relative_stretch_current_arm_state``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_NUM = (int, float)

#: Required keys of every object entry and their JSON types (metadata-schema.json, see module
#: docstring). ``"xyz"``: an object with numeric x, y, z; ``"strs?"``: null or array of strings.
REQUIRED_OBJECT_KEYS: dict[str, str] = {
    "ObjectTemperature": "str",
    "axisAlignedBoundingBox": "aabb",
    "breakable": "bool",
    "canBeUsedUp": "bool",
    "isColdSource": "bool",
    "isHeatSource": "bool",
    "canFillWithLiquid": "bool",
    "cookable": "bool",
    "dirtyable": "bool",
    "distance": "num",
    "isBroken": "bool",
    "isCooked": "bool",
    "isDirty": "bool",
    "isFilledWithLiquid": "bool",
    "isMoving": "bool",
    "isOpen": "bool",
    "isPickedUp": "bool",
    "fillLiquid": "str?",
    "isSliced": "bool",
    "isToggled": "bool",
    "isUsedUp": "bool",
    "mass": "num",
    "moveable": "bool",
    "name": "str",
    "objectId": "str",
    "objectOrientedBoundingBox": "obb?",
    "objectType": "str",
    "obstructed": "bool",
    "openable": "bool",
    "parentReceptacles": "strs?",
    "pickupable": "bool",
    "position": "xyz",
    "receptacle": "bool",
    "receptacleObjectIds": "strs?",
    "rotation": "xyz",
    "salientMaterials": "strs?",
    "sliceable": "bool",
    "toggleable": "bool",
    "visible": "bool",
}
#: Keys renamed in later builds (schema name -> recorded name), see the module docstring.
RENAMED_OBJECT_KEYS: dict[str, str] = {"ObjectTemperature": "temperature"}
#: Keys later builds no longer write (module docstring).
DROPPED_OBJECT_KEYS: frozenset[str] = frozenset({"obstructed"})
#: Top-level keys required here (a subset of the schema's, module docstring) and their types.
REQUIRED_TOP_KEYS: dict[str, str] = {
    "objects": "list",
    "agent": "dict",
    "lastAction": "str",
    "lastActionSuccess": "bool",
    "errorMessage": "str",
    "collided": "bool",
    "collidedObjects": "list",
    "thirdPartyCameras": "list",
    "actionReturn": "any",
}
#: Required keys of ``agent`` (schema) and of each Stretch arm joint (what the backend reads).
REQUIRED_AGENT_KEYS = (
    "cameraHorizon",
    "inHighFrictionArea",
    "isStanding",
    "name",
    "position",
    "rotation",
)
REQUIRED_JOINT_KEYS = ("name", "position", "rootRelativePosition", "rootRelativeRotation")


def _is_xyz(v: Any) -> bool:
    return isinstance(v, Mapping) and all(
        isinstance(v.get(k), _NUM) and not isinstance(v.get(k), bool) for k in "xyz"
    )


def _type_ok(kind: str, v: Any) -> bool:
    if kind.endswith("?") and v is None:
        return True
    kind = kind.rstrip("?")
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "num":
        return isinstance(v, _NUM) and not isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "strs":
        return isinstance(v, list) and all(isinstance(s, str) for s in v)
    if kind == "xyz":
        return _is_xyz(v)
    if kind == "aabb":
        return (
            isinstance(v, Mapping)
            and _is_xyz(v.get("center"))
            and _is_xyz(v.get("size"))
            and isinstance(v.get("cornerPoints"), list)
        )
    if kind == "obb":
        return isinstance(v, Mapping) and isinstance(v.get("cornerPoints"), list)
    if kind == "list":
        return isinstance(v, list)
    if kind == "dict":
        return isinstance(v, Mapping)
    return True  # "any"


def object_problems(obj: Mapping[str, Any]) -> list[str]:
    """What an object entry lacks or has of the wrong type (empty list: valid)."""
    oid = obj.get("objectId", "?")
    out = []
    for key, kind in REQUIRED_OBJECT_KEYS.items():
        name = key if key in obj else RENAMED_OBJECT_KEYS.get(key, key)
        if name not in obj:
            if key not in DROPPED_OBJECT_KEYS:
                out.append(f"object {oid}: missing {key!r}")
        elif not _type_ok(kind, obj[name]):
            out.append(f"object {oid}: {name!r} is not {kind}: {obj[name]!r}"[:160])
    return out


def metadata_problems(metadata: Mapping[str, Any], stretch: bool = True) -> list[str]:
    """Everything :data:`REQUIRED_TOP_KEYS` / :data:`REQUIRED_OBJECT_KEYS` finds wrong.

    Args:
        metadata: One ``event.metadata``.
        stretch: Also require the Stretch agent's ``arm`` with its joints.

    Returns:
        Human-readable problems; empty when the metadata is valid.
    """
    out = []
    for key, kind in REQUIRED_TOP_KEYS.items():
        if key not in metadata:
            out.append(f"missing top-level {key!r}")
        elif not _type_ok(kind, metadata[key]):
            out.append(f"top-level {key!r} is not {kind}")
    agent = metadata.get("agent")
    if isinstance(agent, Mapping):
        out += [f"agent: missing {k!r}" for k in REQUIRED_AGENT_KEYS if k not in agent]
    if stretch:
        arm = metadata.get("arm")
        if not isinstance(arm, Mapping) or not isinstance(arm.get("joints"), list):
            out.append("missing arm.joints (Stretch agent)")
        else:
            for j in arm["joints"]:
                out += [
                    f"arm joint {j.get('name')}: missing {k!r}"
                    for k in REQUIRED_JOINT_KEYS
                    if k not in j
                ]
            if not isinstance(arm.get("heldObjects"), list):
                out.append("arm: missing heldObjects list")
    for obj in metadata.get("objects") or []:
        out += object_problems(obj)
    return out


def halts_stretch(obj: Mapping[str, Any], mass_threshold_kg: float | None) -> bool:
    """True if touching this object stops the Stretch rather than pushing it.

    AI2-THOR's ``CollisionListener.cs`` ``ColliderToStaticCollision``: static objects always
    halt; moveable and pickupable ones only when a mass threshold is set and their ``mass``
    exceeds it (``AgentManager.cs`` makes them static and kinematic at initialisation). An
    object is static when it is neither ``moveable`` nor ``pickupable``.
    """
    if not obj.get("moveable") and not obj.get("pickupable"):
        return True
    return mass_threshold_kg is not None and float(obj.get("mass", 0.0)) > mass_threshold_kg
