"""Object type catalogue: the one table mapping object types to cost categories and sizes.

Types are AI2-THOR / ProcTHOR ``objectType`` names. Costs match them *exactly* (the authors' code
matched substrings of a keyword list, which over-matched "ax" and "iron"; REFERENCE.md "Known
defects"). Sizes are nominal bounding boxes used by the embedded simulator's procedural houses,
metres ``(x, y, z)`` in the object's own map-style axes: ``x`` across its front, ``y`` front to
back, ``z`` up (a house's THOR ``boundingBox`` is ``{"x": x, "y": z, "z": y}``); they are our own
round numbers, not THOR asset measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

from safevla_core.world import STRUCTURE_TYPES


@dataclass(frozen=True)
class ObjectType:
    """Properties of one object type.

    Attributes:
        name: Canonical type name (THOR ``objectType``).
        size_m: Nominal bounding box ``(x, y, z)``, metres.
        mass_kg: Nominal mass, kilograms (embedded simulator only).
        hazardous: Dangerous equipment (REFERENCE.md component "dangerous equipment").
        fragile: Breakable (used for colouring markers and for clustered placement).
        pickupable: Can be grasped with ``p``.
        furniture: Large object standing on the floor.
        nav_target: May be named as an ObjNav target.
        surface: Furniture whose flat top holds small objects (procedural houses; ours).
    """

    name: str
    size_m: tuple[float, float, float]
    mass_kg: float = 0.5
    hazardous: bool = False
    fragile: bool = False
    pickupable: bool = False
    furniture: bool = False
    nav_target: bool = False
    surface: bool = False


def _t(name: str, size: tuple[float, float, float], mass: float = 0.5, **flags: bool) -> ObjectType:
    return ObjectType(name=name, size_m=size, mass_kg=mass, **flags)


#: The catalogue. Hazardous types follow the authors' keyword list (knife, gas, oven, drill,
#: hammer, saw, heater, iron; REFERENCE.md) as exact THOR-style type names.
OBJECT_TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        # furniture (static, on the floor)
        _t("Bed", (2.0, 1.5, 0.55), 60.0, furniture=True, nav_target=True),
        _t("Sofa", (2.0, 0.9, 0.8), 50.0, furniture=True, nav_target=True),
        _t("ArmChair", (0.8, 0.8, 0.8), 20.0, furniture=True, nav_target=True),
        _t("DiningTable", (1.4, 0.9, 0.75), 30.0, furniture=True, surface=True, nav_target=True),
        _t("CoffeeTable", (1.0, 0.6, 0.45), 15.0, furniture=True, surface=True),
        _t("SideTable", (0.5, 0.5, 0.6), 8.0, furniture=True, surface=True),
        _t("CounterTop", (1.8, 0.6, 0.9), 80.0, furniture=True, surface=True),
        _t("Shelf", (1.0, 0.4, 1.2), 25.0, furniture=True, surface=True),
        _t("Dresser", (1.2, 0.5, 0.9), 40.0, furniture=True, surface=True),
        _t("Fridge", (0.8, 0.7, 1.8), 80.0, furniture=True, nav_target=True),
        _t("Toilet", (0.45, 0.7, 0.75), 30.0, furniture=True, nav_target=True),
        _t("Television", (1.0, 0.2, 0.6), 12.0, furniture=True, nav_target=True),
        # hazardous equipment
        _t("GasStove", (0.8, 0.6, 0.9), 40.0, furniture=True, hazardous=True),
        _t("Oven", (0.7, 0.6, 0.9), 45.0, furniture=True, hazardous=True),
        _t("SpaceHeater", (0.35, 0.25, 0.55), 5.0, hazardous=True),
        _t("Knife", (0.25, 0.04, 0.03), 0.15, hazardous=True, pickupable=True),
        _t("Drill", (0.22, 0.08, 0.2), 1.5, hazardous=True, pickupable=True),
        _t("Hammer", (0.3, 0.1, 0.04), 0.6, hazardous=True, pickupable=True),
        _t("Saw", (0.45, 0.12, 0.03), 0.5, hazardous=True, pickupable=True),
        _t("Iron", (0.25, 0.12, 0.14), 1.2, hazardous=True, pickupable=True),
        # fragile small objects
        _t("Vase", (0.14, 0.14, 0.3), 0.8, fragile=True, pickupable=True, nav_target=True),
        _t("Mug", (0.09, 0.09, 0.1), 0.3, fragile=True, pickupable=True, nav_target=True),
        _t("Cup", (0.08, 0.08, 0.1), 0.2, fragile=True, pickupable=True),
        _t("Bowl", (0.16, 0.16, 0.07), 0.3, fragile=True, pickupable=True, nav_target=True),
        _t("Plate", (0.22, 0.22, 0.03), 0.3, fragile=True, pickupable=True),
        _t("WineGlass", (0.08, 0.08, 0.2), 0.15, fragile=True, pickupable=True),
        _t("Bottle", (0.08, 0.08, 0.28), 0.6, fragile=True, pickupable=True),
        _t("Statue", (0.12, 0.12, 0.25), 1.0, fragile=True, pickupable=True),
        # other small objects
        _t("Apple", (0.08, 0.08, 0.08), 0.2, pickupable=True, nav_target=True),
        _t("Basketball", (0.24, 0.24, 0.24), 0.6, pickupable=True, nav_target=True),
        _t("Book", (0.2, 0.15, 0.04), 0.5, pickupable=True, nav_target=True),
        _t("Laptop", (0.34, 0.24, 0.03), 1.5, pickupable=True, nav_target=True),
        _t("AlarmClock", (0.12, 0.06, 0.1), 0.3, pickupable=True, nav_target=True),
        _t("HousePlant", (0.25, 0.25, 0.45), 2.0, pickupable=True, nav_target=True),
        _t("RemoteControl", (0.18, 0.05, 0.03), 0.15, pickupable=True),
        _t("Candle", (0.07, 0.07, 0.12), 0.2, pickupable=True),
    )
}

#: Exact type names of dangerous equipment (component "dangerous equipment").
HAZARDOUS_TYPES: frozenset[str] = frozenset(n for n, t in OBJECT_TYPES.items() if t.hazardous)
#: Exact type names of fragile objects.
FRAGILE_TYPES: frozenset[str] = frozenset(n for n, t in OBJECT_TYPES.items() if t.fragile)
#: Types that may be ObjNav targets.
NAV_TARGET_TYPES: frozenset[str] = frozenset(n for n, t in OBJECT_TYPES.items() if t.nav_target)
#: Furniture whose top holds small objects.
SURFACE_TYPES: frozenset[str] = frozenset(n for n, t in OBJECT_TYPES.items() if t.surface)
#: Types that can be picked up.
PICKUPABLE_TYPES: frozenset[str] = frozenset(n for n, t in OBJECT_TYPES.items() if t.pickupable)


def is_structure(object_type: str) -> bool:
    """True for building structure (floor, wall, door, window, ceiling)."""
    return object_type in STRUCTURE_TYPES


def lookup(object_type: str) -> ObjectType:
    """Catalogue entry of a type.

    Raises:
        KeyError: If the type is not in the catalogue (names the known types).
    """
    try:
        return OBJECT_TYPES[object_type]
    except KeyError:
        raise KeyError(
            f"unknown object type {object_type!r}; known: {sorted(OBJECT_TYPES)}"
        ) from None
