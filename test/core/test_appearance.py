"""Tests of the out-of-distribution appearance perturbations (colour, lighting, material).

Pure functions on the compiled fixture house (test/fixtures/two_room_house.json, see test_sim.py),
then the backend: images change, world states do not, None restores the default look.
"""

from __future__ import annotations

import colorsys
import copy
import json
from pathlib import Path

import mujoco
import numpy as np
import pytest

from safevla_core.sim.appearance import (
    EMISSION_RANGE,
    HEADLIGHT_AMBIENT_RANGE,
    HEADLIGHT_DIFFUSE_RANGE,
    VALUE_CLIP,
    appearance_rng,
    apply_appearance,
    capture_defaults,
    perturb_colour,
    perturb_lighting,
    perturb_material,
    restore_defaults,
    scene_geoms,
)
from safevla_core.sim.mujoco_backend import MujocoBackend
from safevla_core.sim.scene import (
    NUM_OOD_LIGHTS,
    NUM_OOD_MATERIALS,
    WALL_RGBA,
    layout_scene_xml,
    parse_house,
)
from safevla_core.sim.stretch_model import ROBOT_GEOM_GROUP, build_robot

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "two_room_house.json"


@pytest.fixture(scope="module")
def house() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture()
def model(house):
    return mujoco.MjModel.from_xml_string(layout_scene_xml(parse_house(house), build_robot()))


def geom_names(model) -> list[str]:
    return [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "" for g in range(model.ngeom)]


def test_scene_hooks_are_invisible_by_default(model):
    # The scene carries the hooks but they do nothing until perturbed: no geom uses a material
    # and the extra lights are off.
    assert model.nmat == NUM_OOD_MATERIALS and model.nlight == NUM_OOD_LIGHTS
    assert np.all(model.geom_matid == -1)
    assert not np.any(model.light_active)


def test_colour_keeps_opaque_and_groups_entities(model):
    before = model.geom_rgba.copy()
    perturb_colour(model, np.random.default_rng(0))
    geoms = scene_geoms(model)
    robot = np.flatnonzero(model.geom_group == ROBOT_GEOM_GROUP)
    np.testing.assert_array_equal(model.geom_rgba[robot], before[robot])  # robot untouched
    assert np.all(model.geom_rgba[geoms, 3] == 1.0)  # opaque
    assert np.all((model.geom_rgba >= 0) & (model.geom_rgba <= 1))
    changed = np.any(np.abs(model.geom_rgba[geoms] - before[geoms]) > 1e-3, axis=1)
    assert changed.mean() > 0.9
    names = geom_names(model)
    walls = [g for g, n in enumerate(names) if n.startswith("wall_")]
    for g in walls:
        # Wall colour (0.88, 0.86, 0.8): HSV saturation (0.88 - 0.8) / 0.88 = 0.091, value 0.88.
        # After: saturation >= 0.091 + 0.1 (SATURATION_ADD_RANGE), value in 0.88 * [0.7, 1.3]
        # clipped to VALUE_CLIP.
        h, s, v = colorsys.rgb_to_hsv(*model.geom_rgba[g, :3])
        assert s >= 0.191 - 1e-6
        assert max(0.616, VALUE_CLIP[0]) - 1e-6 <= v <= min(1.144, VALUE_CLIP[1]) + 1e-6
    assert tuple(before[walls[0]]) == pytest.approx(WALL_RGBA)
    # Pieces of one wall share one colour: wall 0 of the fixture is a single piece, the shared
    # wall with the doorway (room 1's side, x = 4) has 3 pieces, and room 2's side of the same
    # wall line coincides with it and must show the same colour (no fighting faces).
    by_wall: dict[str, set] = {}
    for g in walls:
        by_wall.setdefault(names[g].rsplit("_", 1)[0], set()).add(tuple(model.geom_rgba[g]))
    assert all(len(c) == 1 for c in by_wall.values())
    shared = [w for w, c in by_wall.items() if sum(1 for n in names if n.startswith(w + "_")) == 3]
    assert len(shared) == 2 and by_wall[shared[0]] == by_wall[shared[1]]
    assert len({next(iter(c)) for c in by_wall.values()}) >= 4  # 8 wall lines, 7 entities


def test_lighting_switches_on_random_lights(model):
    perturb_lighting(model, np.random.default_rng(1))
    assert np.all(model.light_active == 1)
    hl = model.vis.headlight
    assert HEADLIGHT_AMBIENT_RANGE[0] <= hl.ambient[0] <= HEADLIGHT_AMBIENT_RANGE[1]
    assert HEADLIGHT_DIFFUSE_RANGE[0] <= hl.diffuse[0] <= HEADLIGHT_DIFFUSE_RANGE[1]
    # Unit directions pointing down (elevation 20..80 deg below the horizon: z in
    # -sin 80 = -0.985 .. -sin 20 = -0.342), and not all the same.
    np.testing.assert_allclose(np.linalg.norm(model.light_dir, axis=1), 1.0, atol=1e-9)
    assert np.all((model.light_dir[:, 2] <= -0.342) & (model.light_dir[:, 2] >= -0.985))
    assert not np.allclose(model.light_dir[0], model.light_dir[1])


def test_material_assigns_random_materials_to_the_scene_only(model):
    perturb_material(model, np.random.default_rng(2))
    geoms = scene_geoms(model)
    robot = np.flatnonzero(model.geom_group == ROBOT_GEOM_GROUP)
    assert np.all(model.geom_matid[robot] == -1)
    assert np.all((model.geom_matid[geoms] >= 0) & (model.geom_matid[geoms] < model.nmat))
    assert len(np.unique(model.geom_matid[geoms])) > 3
    assert np.all(
        (model.mat_emission >= EMISSION_RANGE[0]) & (model.mat_emission <= EMISSION_RANGE[1])
    )
    assert np.ptp(model.mat_specular) > 0.2 and np.ptp(model.mat_shininess) > 0.2


def test_apply_is_deterministic_and_restore_undoes_it(house, model):
    other = mujoco.MjModel.from_xml_string(layout_scene_xml(parse_house(house), build_robot()))
    defaults = capture_defaults(model)
    apply_appearance(model, "all", "fixture_two_rooms", 5)
    apply_appearance(other, "all", "fixture_two_rooms", 5)
    for name in ("geom_rgba", "geom_matid", "mat_specular", "light_dir", "light_diffuse"):
        np.testing.assert_array_equal(getattr(model, name), getattr(other, name))
    # Another seed or another house gives another look.
    assert not np.array_equal(
        appearance_rng("h", 5, "colour").random(3), appearance_rng("h", 6, "colour").random(3)
    )
    assert not np.array_equal(
        appearance_rng("h", 5, "colour").random(3), appearance_rng("g", 5, "colour").random(3)
    )
    restore_defaults(model, defaults)
    fresh = capture_defaults(
        other.__class__.from_xml_string(layout_scene_xml(parse_house(house), build_robot()))
    )
    for name, value in fresh.fields.items():
        np.testing.assert_array_equal(capture_defaults(model).fields[name], value, err_msg=name)
    before = model.geom_rgba.copy()
    apply_appearance(model, None, "x", 0)  # None changes nothing
    np.testing.assert_array_equal(model.geom_rgba, before)


def test_bad_input_raises(model):
    with pytest.raises(ValueError, match="perturbation"):
        apply_appearance(model, "texture", "h", 0)
    with pytest.raises(ValueError, match="seed"):
        apply_appearance(model, "colour", "h", -1)
    with pytest.raises(ValueError, match="kind"):
        appearance_rng("h", 0, "all")
    b = MujocoBackend(width=32, height=24)
    with pytest.raises(ValueError):
        b.set_appearance("colour", seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b.set_appearance("Colour")
    b.close()


# ---------------------------------------------------------------------------- backend


def run_episode(b: MujocoBackend, house: dict, actions: list[str]):
    states = [b.reset(house, seed=11)]
    images = [b.render()]
    for a in actions:
        states.append(b.step(a))
        images.append(b.render())
    return states, images


def test_backend_images_change_states_do_not(house):
    free = copy.deepcopy(house)
    del free["metadata"]  # the start pose comes from the seed
    actions = ["m", "l", "yp", "zp", "m", "p", "rs", "b", "d", "wm", "zm"]
    b = MujocoBackend(width=64, height=48)
    try:
        ref_states, ref_images = run_episode(b, free, actions)
        for perturbation in ("colour", "lighting", "material", "all"):
            b.set_appearance(perturbation, seed=3)
            assert b.appearance == (perturbation, 3)
            states, images = run_episode(b, free, actions)
            for a, c in zip(ref_states, states, strict=True):
                np.testing.assert_array_equal(a.robot_pose, c.robot_pose)
                np.testing.assert_array_equal(a.object_positions, c.object_positions)
                np.testing.assert_array_equal(a.object_quats, c.object_quats)
                assert (a.lift_m, a.arm_m, a.wrist_yaw_rad) == (c.lift_m, c.arm_m, c.wrist_yaw_rad)
                assert a.collided_ids == c.collided_ids and a.visible_ids == c.visible_ids
                assert a.last_action_success == c.last_action_success
                assert a.free_fraction_1m == c.free_fraction_1m
            diff = np.mean(
                [
                    np.abs(i[k].astype(int) - r[k].astype(int)).mean()
                    for i, r in zip(images, ref_images, strict=True)
                    for k in i
                ]
            )
            assert diff > 5.0, perturbation  # mean absolute pixel change, of 255
        # Same (house, seed): the same look after another reset; another seed: another look.
        b.set_appearance("all", seed=3)
        b.reset(free, seed=11)
        again = b.render()
        b.set_appearance("all", seed=4)  # applied at once to the loaded house
        other = b.render()
        b.set_appearance("all", seed=3)
        np.testing.assert_array_equal(b.render()["nav_rgb"], again["nav_rgb"])
        assert not np.array_equal(other["nav_rgb"], again["nav_rgb"])
        # None restores the default look exactly, without a reset.
        b.set_appearance(None)
        for k, img in b.render().items():
            np.testing.assert_array_equal(img, ref_images[0][k])
    finally:
        b.close()
