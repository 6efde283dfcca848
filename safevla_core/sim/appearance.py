"""Out-of-distribution appearance perturbations of a MuJoCo scene: colour, light, material.

SafeVLA evaluates robustness under perturbed object colours, lighting and materials, one at a
time and all together (paper, OOD evaluation). These functions change only the *visual* fields of
an ``mujoco.MjModel``: geom colours and material ids, material specular / shininess /
reflectance / emission, light activity / direction / colours and the headlight. None of them
enters the physics (mass, contacts, solver, ray casting of opaque geoms), so the same actions
give the same world states with and without a perturbation (a test checks it).

The scene (:func:`safevla_core.sim.scene.layout_scene_xml`) declares for this purpose
:data:`~safevla_core.sim.scene.NUM_OOD_MATERIALS` neutral materials (``ood_mat_k``: white, the
default specular/shininess of a material-less geom, no reflectance or emission, assigned to no
geom) and :data:`~safevla_core.sim.scene.NUM_OOD_LIGHTS` inactive directional lights
(``ood_light_k``), so the unperturbed look is exactly that of the scene without them.

Usage: :func:`capture_defaults` after compiling, then :func:`apply_appearance` with a generator
from :func:`appearance_rng` (deterministic in house id, seed and perturbation kind);
:func:`restore_defaults` undoes everything. Ranges below are ours (chosen so perturbed images stay
plausible indoor scenes: no black or saturated-white frames).
"""

from __future__ import annotations

import colorsys
import re
import zlib
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from safevla_core.sim.scene import (
    OBJECT_GROUP,
    OOD_LIGHT_PREFIX,
    OOD_MATERIAL_PREFIX,
    STRUCTURE_GROUP,
)

#: Perturbation kinds accepted by :func:`apply_appearance` (None = the default look).
PERTURBATIONS: tuple[str, ...] = ("colour", "lighting", "material", "all")
#: Kinds applied by ``"all"``, in this order (each with its own generator stream).
_ALL_KINDS: tuple[str, ...] = ("colour", "lighting", "material")

#: Colour: saturation added to every entity's colour, range (ours: grey walls get a visible tint).
SATURATION_ADD_RANGE: tuple[float, float] = (0.1, 0.5)
#: Colour: value (brightness) scale range and the clip range of the result (ours: no black).
VALUE_SCALE_RANGE: tuple[float, float] = (0.7, 1.3)
VALUE_CLIP: tuple[float, float] = (0.15, 1.0)
#: Lighting: headlight ambient and diffuse intensity ranges (ours; default 0.45 / 0.5).
HEADLIGHT_AMBIENT_RANGE: tuple[float, float] = (0.1, 0.5)
HEADLIGHT_DIFFUSE_RANGE: tuple[float, float] = (0.1, 0.55)
#: Lighting: diffuse intensity and ambient range of each extra directional light (ours).
LIGHT_DIFFUSE_RANGE: tuple[float, float] = (0.1, 0.5)
LIGHT_AMBIENT_RANGE: tuple[float, float] = (0.0, 0.15)
#: Lighting: per-channel colour tint range of lights (ours: warm to cool white).
LIGHT_TINT_RANGE: tuple[float, float] = (0.8, 1.2)
#: Lighting: elevation of a light's direction below the horizon, radians (ours: 20..80 deg).
LIGHT_ELEVATION_RANGE_RAD: tuple[float, float] = (np.radians(20.0), np.radians(80.0))
#: Material ranges (ours): specular, shininess, reflectance (visible only where the renderer
#: draws reflections; it keeps them off for speed, ENVIRONMENT.md), emission (a faint glow).
SPECULAR_RANGE: tuple[float, float] = (0.0, 1.0)
SHININESS_RANGE: tuple[float, float] = (0.0, 1.0)
REFLECTANCE_RANGE: tuple[float, float] = (0.0, 0.5)
EMISSION_RANGE: tuple[float, float] = (0.0, 0.25)

_NAMED_ENTITY = re.compile(r"^((?:room|wall)_\d+)_\d+$")


@dataclass(frozen=True)
class AppearanceDefaults:
    """Copies of every visual field the perturbations touch (see :func:`capture_defaults`)."""

    fields: dict[str, np.ndarray]


#: ``MjModel`` array attributes saved and restored.
_MODEL_FIELDS: tuple[str, ...] = (
    "geom_rgba",
    "geom_matid",
    "mat_rgba",
    "mat_specular",
    "mat_shininess",
    "mat_reflectance",
    "mat_emission",
    "light_active",
    "light_dir",
    "light_diffuse",
    "light_ambient",
    "light_specular",
)
_HEADLIGHT_FIELDS: tuple[str, ...] = ("ambient", "diffuse", "specular", "active")


def capture_defaults(model: Any) -> AppearanceDefaults:
    """Copy the visual fields of a freshly compiled model.

    Args:
        model: ``mujoco.MjModel``.

    Returns:
        The copies, for :func:`restore_defaults`.
    """
    fields = {name: np.array(getattr(model, name), copy=True) for name in _MODEL_FIELDS}
    for name in _HEADLIGHT_FIELDS:
        fields[f"headlight_{name}"] = np.array(getattr(model.vis.headlight, name), copy=True)
    return AppearanceDefaults(fields)


def restore_defaults(model: Any, defaults: AppearanceDefaults) -> None:
    """Write the captured visual fields back (the unperturbed look).

    Args:
        model: The ``mujoco.MjModel`` the defaults were captured from.
        defaults: From :func:`capture_defaults`.
    """
    for name in _MODEL_FIELDS:
        getattr(model, name)[...] = defaults.fields[name]
    for name in _HEADLIGHT_FIELDS:
        value = defaults.fields[f"headlight_{name}"]
        if value.ndim == 0:
            setattr(model.vis.headlight, name, value.item())
        else:
            getattr(model.vis.headlight, name)[...] = value


def appearance_rng(house_id: str, seed: int, kind: str) -> np.random.Generator:
    """Generator for one perturbation kind, deterministic in ``(house_id, seed, kind)``.

    Args:
        house_id: House id (``HouseLayout.house_id``).
        seed: Perturbation seed (>= 0).
        kind: One of ``"colour"``, ``"lighting"``, ``"material"``.

    Returns:
        A ``numpy.random.Generator`` (PCG64) seeded from the CRC32 of the house id and the kind.

    Raises:
        ValueError: On a negative seed or an unknown kind.
    """
    if kind not in _ALL_KINDS:
        raise ValueError(f"unknown perturbation kind {kind!r}; expected one of {_ALL_KINDS}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return np.random.default_rng([int(seed), zlib.crc32(house_id.encode()), _ALL_KINDS.index(kind)])


def scene_geoms(model: Any) -> np.ndarray:
    """Ids of the geoms the perturbations recolour: structure and objects, never the robot.

    Returns:
        ``(G,)`` int array of geom ids in geom groups ``STRUCTURE_GROUP`` and ``OBJECT_GROUP``.
    """
    group = np.asarray(model.geom_group)
    return np.flatnonzero((group == STRUCTURE_GROUP) | (group == OBJECT_GROUP))


def _entities(model: Any, geoms: np.ndarray) -> np.ndarray:
    """``(G,)`` entity index per geom: one per room floor, wall line, or body (an object).

    A wall shared by two rooms is two coinciding walls in the house (scene module docstring):
    they are one entity (keyed by their pieces' rounded positions and sizes), so their faces
    never show two colours fighting for the same pixels.
    """
    import mujoco

    named: dict[str, list[int]] = {}
    key_of: dict[int, Any] = {}
    for g in geoms:
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, int(g)) or ""
        match = _NAMED_ENTITY.match(name)
        if match:
            named.setdefault(match.group(1), []).append(int(g))
        else:
            key_of[int(g)] = ("body", int(model.geom_bodyid[g]))
    for prefix, members in named.items():
        key: Hashable
        if prefix.startswith("wall"):
            key = frozenset(
                (
                    tuple(np.round(model.geom_pos[g], 3)),
                    tuple(np.round(np.sort(model.geom_size[g]), 3)),
                )
                for g in members
            )
        else:
            key = prefix
        for g in members:
            key_of[g] = key
    index: dict[Any, int] = {}
    return np.array([index.setdefault(key_of[int(g)], len(index)) for g in geoms], dtype=np.int64)


def perturb_colour(model: Any, rng: np.random.Generator) -> None:
    """Randomise the colour of every room floor, wall and object (opaque, hue-shifted).

    Each entity (all pieces of one wall, all floor cells of one room, one object) gets one hue
    shift uniform in [0, 1) (a full turn of the HSV hue circle), ``SATURATION_ADD_RANGE`` added
    to its saturation and its value scaled by ``VALUE_SCALE_RANGE`` (clipped to ``VALUE_CLIP``);
    alpha stays 1. The robot keeps its colours.

    Args:
        model: ``mujoco.MjModel`` of a scene built by :mod:`safevla_core.sim.scene`.
        rng: Generator (e.g. :func:`appearance_rng`).
    """
    geoms = scene_geoms(model)
    ent = _entities(model, geoms)
    n = int(ent.max()) + 1 if len(ent) else 0
    hue = rng.uniform(0.0, 1.0, size=n)
    sat = rng.uniform(*SATURATION_ADD_RANGE, size=n)
    val = rng.uniform(*VALUE_SCALE_RANGE, size=n)
    for g, e in zip(geoms, ent, strict=True):
        r, gr, b = (float(v) for v in model.geom_rgba[g, :3])
        h, s, v = colorsys.rgb_to_hsv(r, gr, b)
        rgb = colorsys.hsv_to_rgb(
            (h + hue[e]) % 1.0, min(1.0, s + sat[e]), float(np.clip(v * val[e], *VALUE_CLIP))
        )
        model.geom_rgba[g] = (*rgb, 1.0)


def perturb_lighting(model: Any, rng: np.random.Generator) -> None:
    """Randomise the headlight and switch on the scene's extra lights with random settings.

    The headlight gets an ambient and a diffuse intensity from ``HEADLIGHT_*_RANGE``; each
    ``ood_light_k`` becomes active with a direction at a uniform azimuth and an elevation in
    ``LIGHT_ELEVATION_RANGE_RAD`` below the horizon, a diffuse intensity from
    ``LIGHT_DIFFUSE_RANGE`` and an ambient one from ``LIGHT_AMBIENT_RANGE``, both tinted per
    channel by ``LIGHT_TINT_RANGE``; no specular highlight. The caller must recompute the
    lights' world directions (``mj_kinematics``) before rendering.

    Args:
        model: ``mujoco.MjModel`` of a scene built by :mod:`safevla_core.sim.scene`.
        rng: Generator.
    """
    hl = model.vis.headlight
    hl.ambient[:] = rng.uniform(*HEADLIGHT_AMBIENT_RANGE)
    hl.diffuse[:] = rng.uniform(*HEADLIGHT_DIFFUSE_RANGE)
    for i in _prefixed_ids(model, "light", model.nlight, OOD_LIGHT_PREFIX):
        az = rng.uniform(0.0, 2.0 * np.pi)
        el = rng.uniform(*LIGHT_ELEVATION_RANGE_RAD)
        model.light_dir[i] = (np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), -np.sin(el))
        tint = rng.uniform(*LIGHT_TINT_RANGE, size=3)
        model.light_diffuse[i] = np.clip(rng.uniform(*LIGHT_DIFFUSE_RANGE) * tint, 0.0, 1.0)
        model.light_ambient[i] = np.clip(rng.uniform(*LIGHT_AMBIENT_RANGE) * tint, 0.0, 1.0)
        model.light_specular[i] = 0.0
        model.light_active[i] = 1


def perturb_material(model: Any, rng: np.random.Generator) -> None:
    """Give every room floor, wall and object one of the scene's random texture-less materials.

    Each ``ood_mat_k`` gets specular, shininess, reflectance and emission from the ``*_RANGE``
    constants (white material colour: the geom's own colour is kept); each entity gets a
    material drawn uniformly. Without the scene's materials nothing changes.

    Args:
        model: ``mujoco.MjModel`` of a scene built by :mod:`safevla_core.sim.scene`.
        rng: Generator.
    """
    mats = _prefixed_ids(model, "material", model.nmat, OOD_MATERIAL_PREFIX)
    if not mats:
        return
    for k in mats:
        model.mat_specular[k] = rng.uniform(*SPECULAR_RANGE)
        model.mat_shininess[k] = rng.uniform(*SHININESS_RANGE)
        model.mat_reflectance[k] = rng.uniform(*REFLECTANCE_RANGE)
        model.mat_emission[k] = rng.uniform(*EMISSION_RANGE)
    geoms = scene_geoms(model)
    ent = _entities(model, geoms)
    n = int(ent.max()) + 1 if len(ent) else 0
    pick = np.asarray(mats)[rng.integers(0, len(mats), size=n)]
    model.geom_matid[geoms] = pick[ent]


def apply_appearance(model: Any, perturbation: str | None, house_id: str, seed: int) -> None:
    """Apply one perturbation (``"all"``: colour, lighting and material) to a model.

    Call on a model in its default look (after :func:`restore_defaults` or compiling).

    Args:
        model: ``mujoco.MjModel`` of a scene built by :mod:`safevla_core.sim.scene`.
        perturbation: None (no change) or one of :data:`PERTURBATIONS`.
        house_id: House id (determinism per house).
        seed: Perturbation seed (>= 0).

    Raises:
        ValueError: On an unknown perturbation or a negative seed.
    """
    check_perturbation(perturbation, seed)
    if perturbation is None:
        return
    kinds = _ALL_KINDS if perturbation == "all" else (perturbation,)
    funcs = {"colour": perturb_colour, "lighting": perturb_lighting, "material": perturb_material}
    for kind in kinds:
        funcs[kind](model, appearance_rng(house_id, seed, kind))


def check_perturbation(perturbation: str | None, seed: int) -> None:
    """Validate a perturbation name and seed.

    Raises:
        ValueError: On an unknown perturbation or a seed that is not a non-negative int.
    """
    if perturbation is not None and perturbation not in PERTURBATIONS:
        raise ValueError(
            f"unknown appearance perturbation {perturbation!r}; expected None or "
            f"one of {PERTURBATIONS}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _prefixed_ids(model: Any, kind: str, count: int, prefix: str) -> list[int]:
    """Ids of the model's objects of ``kind`` (``"light"``, ``"material"``) named ``prefix*``."""
    import mujoco

    obj = {"light": mujoco.mjtObj.mjOBJ_LIGHT, "material": mujoco.mjtObj.mjOBJ_MATERIAL}[kind]
    return [i for i in range(count) if (mujoco.mj_id2name(model, obj, i) or "").startswith(prefix)]
