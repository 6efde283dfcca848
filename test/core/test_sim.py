"""Tests of the embedded MuJoCo backend on a hand-written two-room house.

The fixture ``test/fixtures/two_room_house.json`` (THOR frame; map = THOR (x, z, y)):
room 1 spans map x 0..4, y 0..3, room 2 x 4..7, y 0..3, walls 2.5 m high and 0.1 m thick (our
WALL_THICKNESS_M), a doorway in the shared wall x = 4 at y 1..2 (2.1 m high). A DiningTable
(static) covers x 1.3..2.7, y 1.55..2.45, top at z 0.75; three vases (0.14 m wide, 0.3 m tall)
stand on it at (1.8, 1.65), (1.97, 1.65), (1.885, 1.81); a knife (0.25 x 0.04 x 0.03 m) lies at
(2.45, 1.75, 0.765); a Sofa (static) covers x 4.5..6.5, y 2.05..2.95. The agent starts at
(1.0, 0.75) facing +x.

Robot geometry used below (SE3 URDF, see stretch_model): base collision mesh x -0.286..0.058 m
about the base_link origin; the grasp point is 0.415 m to the robot's right (-y) and 0.11 m
above the lift, 0.021 m behind base_link; the gripper spans 0.063..0.201 m above the lift. With
the wrist yaw at 0 (the original start pose, ``stow_gripper=False``, used by the older tests
below) the fingertips reach 0.424 m from the base axis; stowed (wrist yaw 190 deg, lift 0.2 m)
the farthest robot point is the base's rear corner at 0.339 m.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import mujoco
import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.bench import benchmark_steps
from safevla_core.config import SimConfig
from safevla_core.houses.floor_plan import FloorPlan, Obstacle2D, house_floor_plan
from safevla_core.objects import NAV_TARGET_TYPES, OBJECT_TYPES
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA, SimBackend
from safevla_core.sim.free_space import (
    GRID_SIZE_M,
    ROBOT_RADIUS_M,
    free_fraction,
    reachable_grid,
)
from safevla_core.sim.mujoco_backend import MujocoBackend
from safevla_core.sim.scene import (
    DEFAULT_FLOOR_RGBA,
    ROOM_RGBA,
    TYPE_RGBA,
    WALL_RGBA,
    house_scene_xml,
    object_body_name,
    parse_house,
)
from safevla_core.sim.snapshot import main, write_png
from safevla_core.sim.stretch_model import (
    BASE_BODY,
    ROBOT_GEOM_GROUP,
    STOW_LIFT_M,
    STOW_WRIST_RAD,
    build_robot,
    horizontal_extent_m,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "two_room_house.json"
WALL_X4 = "wall|1|4.00|0.00|4.00|3.00"  # room 1's side of the shared wall (with the doorway)
VASES = ("Vase|1|2", "Vase|1|3", "Vase|1|4")
KNIFE = "Knife|1|5"


@pytest.fixture(scope="module")
def house() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def backend():
    # Small images keep the test fast; one backend (one GL context) for the whole module.
    b = MujocoBackend(SimConfig(), width=160, height=96)
    yield b
    b.close()


@pytest.fixture(scope="module")
def stowed():
    # Physics-only tests of the stow pose: never renders, so no GL context.
    b = MujocoBackend(SimConfig(), width=64, height=48, stow_gripper=True)
    yield b
    b.close()


def run(b: MujocoBackend, actions: list[str]):
    return [b.step(a) for a in actions]


def robot_extent(b: MujocoBackend) -> float:
    """Swept radius of every robot geom about the base axis, metres."""
    m = b.model
    base = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, BASE_BODY)
    return horizontal_extent_m(m, b.data, m.geom_group == ROBOT_GEOM_GROUP, base)


def robot_contacts(b: MujocoBackend) -> int:
    """Number of current contacts that involve a robot geom."""
    g = b.data.contact.geom[: b.data.ncon]
    robot = b.model.geom_group == ROBOT_GEOM_GROUP
    return int(np.count_nonzero(robot[g[:, 0]] | robot[g[:, 1]]))


# ----------------------------------------------------------------------------- scene / geometry


def test_scene_walls_have_a_door_gap(house):
    model = mujoco.MjModel.from_xml_string(house_scene_xml(house))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) for g in range(model.ngeom)]
    # 8 walls; the 2 sides of the shared wall are cut into 2 pieces + a lintel: 6 + 2 * 3 = 12.
    assert sum(1 for n in names if n and n.startswith("wall_")) == 12
    geomid = np.zeros(1, dtype=np.int32)
    groups = np.array([1, 0, 1, 0, 0, 0], dtype=np.uint8)
    # A ray along +x at z = 1 m through the doorway (y = 1.5) first hits room 2's far wall at
    # x = 7 - 0.05: distance 6.95 - 3.5 = 3.45 m. At y = 0.5 the shared wall's face at
    # x = 4 - 0.05 is hit after 3.95 - 3.5 = 0.45 m.
    d_door = mujoco.mj_ray(
        model, data, np.array([3.5, 1.5, 1.0]), np.array([1.0, 0, 0]), groups, 1, -1, geomid
    )
    d_wall = mujoco.mj_ray(
        model, data, np.array([3.5, 0.5, 1.0]), np.array([1.0, 0, 0]), groups, 1, -1, geomid
    )
    assert d_door == pytest.approx(3.45, abs=1e-6)
    assert d_wall == pytest.approx(0.45, abs=1e-6)


def test_objnav_targets_are_told_apart_by_colour(house):
    # Every catalogue type has its own entry; the 16 ObjNav target types are >= 0.3 apart in RGB
    # (closest pair: Bowl (0.95, 0.9, 0.1) and DiningTable (0.85, 0.68, 0.3), distance
    # sqrt(0.01 + 0.0484 + 0.04) = 0.314; the old palette had Sofa and ArmChair 0.092 apart) and
    # >= 0.2 from the walls and every floor (closest: Toilet (0.98, 0.98, 0.98) and the walls
    # (0.88, 0.86, 0.8), sqrt(0.01 + 0.0144 + 0.0324) = 0.238; the old bed was 0.05 from the
    # bedroom floor).
    assert set(TYPE_RGBA) == set(OBJECT_TYPES)
    rgb = {t: np.array(TYPE_RGBA[t][:3]) for t in sorted(NAV_TARGET_TYPES)}
    pairs = [(np.linalg.norm(rgb[a] - rgb[b]), a, b) for a in rgb for b in rgb if a < b]
    closest = min(pairs)
    assert closest[0] == pytest.approx(0.3137, abs=1e-4) and closest[1:] == ("Bowl", "DiningTable")
    backgrounds = [WALL_RGBA, DEFAULT_FLOOR_RGBA, *ROOM_RGBA.values()]
    nearest_bg = min(np.linalg.norm(c - np.array(b[:3])) for c in rgb.values() for b in backgrounds)
    assert nearest_bg == pytest.approx(0.2383, abs=1e-4)
    # The compiled scene paints each object geom in its type's colour.
    model = mujoco.MjModel.from_xml_string(house_scene_xml(house))
    painted = {}
    for i, obj in enumerate(parse_house(house).objects):
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, object_body_name(i))
        (geom,) = np.flatnonzero(model.geom_bodyid == body)
        painted[obj.object_type] = tuple(model.geom_rgba[geom])
    assert set(painted) == {"Sofa", "DiningTable", "Vase", "Knife"}
    for t, c in painted.items():
        assert c == pytest.approx(TYPE_RGBA[t])


def test_parse_house_converts_frames(house):
    layout = parse_house(house)
    table = next(o for o in layout.objects if o.object_type == "DiningTable")
    # THOR position (2.0, 0.375, 2.0) -> map (2.0, 2.0, 0.375); THOR size (1.4, 0.75, 0.9) ->
    # map (1.4, 0.9, 0.75).
    np.testing.assert_allclose(table.position, [2.0, 2.0, 0.375])
    np.testing.assert_allclose(table.size_m, [1.4, 0.9, 0.75])
    assert table.kinematic and not table.pickupable
    # The children of the table are flattened: 6 objects in all.
    assert len(layout.objects) == 6
    # THOR agent yaw 90 deg faces THOR +x = map +x: map heading 0.
    assert layout.agent_pose == pytest.approx((1.0, 0.75, 0.0))


def test_bad_houses_raise(house):
    broken = copy.deepcopy(house)
    del broken["rooms"]
    with pytest.raises(ValueError, match="rooms"):
        parse_house(broken)
    broken = copy.deepcopy(house)
    broken["doors"][0]["wall0"] = "wall|nope"
    with pytest.raises(ValueError, match="wall0"):
        parse_house(broken)
    broken = copy.deepcopy(house)
    broken["objects"][1]["objectType"] = "NoSuchThing"
    del broken["objects"][1]["boundingBox"]
    with pytest.raises(KeyError, match="NoSuchThing"):
        parse_house(broken)


def test_re1_robot_compiles():
    robot = build_robot("RE1")
    xml = (
        f'<mujoco><compiler angle="radian"/><asset>{robot.asset_xml}</asset>'
        f"<worldbody>{robot.body_xml}</worldbody><actuator>{robot.actuator_xml}</actuator>"
        "</mujoco>"
    )
    model = mujoco.MjModel.from_xml_string(xml)
    # 3 base + lift + 4 arm segments + wrist servos.
    assert model.nu == 9
    assert robot.arm_range_m == pytest.approx((0.0, 0.52))  # 4 segments x 0.13 m


# --------------------------------------------------------------------------- free space


def test_free_fraction_hand_numbers():
    # 0.25 m grid on [0, 4]^2: 17 x 17 = 289 points. Within 1 m = 4 cells of the centre lie the
    # lattice points with i^2 + j^2 <= 16: 49 (Gauss circle N(4)), so 49 of the 100 nearest.
    g = np.arange(17) * 0.25
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    assert free_fraction((2.0, 2.0), grid, k=100, radius_m=1.0) == pytest.approx(0.49)
    # In the corner only i, j >= 0 count: j <= 4, 3, 3, 2, 0 for i = 0..4 -> 5+4+4+3+1 = 17.
    assert free_fraction((0.0, 0.0), grid, k=100, radius_m=1.0) == pytest.approx(0.17)
    # Fewer points than k: all of them are used (3 points, 2 within 1 m).
    few = np.array([[0.0, 0.0], [0.5, 0.0], [3.0, 0.0]])
    assert free_fraction((0.0, 0.0), few, k=100, radius_m=1.0) == pytest.approx(2 / 3)
    assert free_fraction((0.0, 0.0), np.zeros((0, 2))) == 1.0
    with pytest.raises(ValueError):
        free_fraction((np.nan, 0.0), grid)
    with pytest.raises(ValueError):
        free_fraction((0.0, 0.0), grid[:, :1])


def test_reachable_grid(house):
    pts = reachable_grid(house_floor_plan(house))

    def has(x, y):
        return bool(np.any(np.all(np.isclose(pts, [x, y]), axis=1)))

    # Multiples of the 0.25 m grid.
    np.testing.assert_allclose(pts / GRID_SIZE_M, np.round(pts / GRID_SIZE_M), atol=1e-9)
    # Clearance from a wall face = 0.34 (footprint) + 0.05 (half wall): 0.25 is too close,
    # 0.5 is fine.
    assert not has(0.25, 1.0) and has(0.5, 1.0)
    # The doorway (x = 4, y 1..2): its centre (4, 1.5) is 0.5 m from both jambs -> reachable;
    # (4, 1.25) is 0.25 m from the jamb at y = 1 -> not.
    assert has(4.0, 1.5) and not has(4.0, 1.25)
    # Nothing closer than the footprint radius to the table (x 1.3..2.7, y 1.55..2.45).
    dx = np.maximum(np.abs(pts[:, 0] - 2.0) - 0.7, 0)
    dy = np.maximum(np.abs(pts[:, 1] - 2.0) - 0.45, 0)
    assert np.all(np.hypot(dx, dy) >= ROBOT_RADIUS_M)
    assert not has(2.0, 1.25) and has(2.0, 1.0)  # 0.30 < 0.34 <= 0.55 from the table edge


def test_reachable_grid_hand_count():
    # Floor x 0..2, y 0..1: 9 x 5 = 45 lattice points, edges included. A wall on y = 0, 0.25 m
    # thick, and a 0.25 m square table centred at (1, 0.875); radius 0.375, binary fractions
    # throughout, so touches are exact. The wall reaches 0.375 + 0.125 = 0.5: rows y = 0 and
    # 0.25 are blocked, row 0.5 touches it and is free (27 left). The table (x 0.875..1.125,
    # y 0.75..1) blocks x = 0.75, 1, 1.25 in rows 0.5 (0.25 and hypot(0.125, 0.25) = 0.28 away),
    # 0.75 and 1 (0.125 or 0 away); x = 0.5 and 1.5 touch it in rows 0.75 and 1 (0.375 away)
    # and fit: 27 - 9 = 18 points.
    floor = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    wall = Obstacle2D("wall", (1.0, 0.0), (1.0, 0.125), 0.0)
    table = Obstacle2D("table", (1.0, 0.875), (0.125, 0.125), 0.0)
    pts = reachable_grid(FloorPlan((floor,), (wall,), (table,), ()), radius_m=0.375)
    assert len(pts) == 18
    got = {(float(x), float(y)) for x, y in pts}
    assert {(x, 0.5) for x in (0.0, 0.25, 0.5, 1.5, 1.75, 2.0)} <= got
    assert {(0.5, 0.75), (1.5, 1.0)} <= got and (1.25, 0.5) not in got
    assert not any(y < 0.5 for _, y in got)
    # A movable object never blocks the simulator's positions.
    assert len(reachable_grid(FloorPlan((floor,), (wall,), (), (table,)), radius_m=0.375)) == 27
    with pytest.raises(ValueError, match="positive"):
        reachable_grid(FloorPlan((floor,), (), (), ()), grid_m=0.0)


def test_free_fraction_corner_lower_than_middle(backend, house):
    # Room 2 corner (6.5, 0.5): the reachable points within 1 m are the 17 of a quarter disc
    # (all of x 5.5..6.5, y 0.5..1.5 are reachable) -> 17/100. Middle (5.5, 1.0): rows
    # y = 1.0 (9 points), 0.75 and 1.25 (7 each), 0.5 and 1.5 (7 each) -> 37/100.
    corner = backend.reset(house, robot_pose=(6.5, 0.5, 0.0))
    assert corner.free_fraction_1m == pytest.approx(0.17)
    middle = backend.reset(house, robot_pose=(5.5, 1.0, 0.0))
    assert middle.free_fraction_1m == pytest.approx(0.37)
    assert len(backend.reachable_positions()) >= 100


# ------------------------------------------------------------------------------ backend


def test_protocol_and_cameras(backend, house, tmp_path):
    assert isinstance(backend, SimBackend)
    state = backend.reset(house)
    # metadata.agent is reachable: the robot starts there.
    np.testing.assert_allclose(state.robot_pose, [1.0, 0.75, 0.0], atol=1e-6)
    assert state.step == 0 and state.collided_ids == frozenset()
    assert state.num_objects == 6 and WALL_X4 in state.structure_ids
    images = backend.render()
    assert set(images) == {NAV_CAMERA, MANIP_CAMERA}
    for img in images.values():
        assert img.shape == (96, 160, 3) and img.dtype == np.uint8
        assert img.std() > 10.0  # not a constant image
    diff = np.abs(images[NAV_CAMERA].astype(int) - images[MANIP_CAMERA].astype(int)).mean()
    assert diff > 10.0  # the cameras look in orthogonal directions
    image_lib = pytest.importorskip("matplotlib.image", reason="PNG decoding needs matplotlib")
    for name, img in images.items():
        path = tmp_path / f"{name}.png"
        write_png(path, img)
        decoded = image_lib.imread(path)  # float32 in [0, 1] for PNG
        assert decoded.shape == img.shape
        np.testing.assert_array_equal(np.round(decoded * 255).astype(np.uint8), img)  # lossless


def test_move_and_turn(backend, house):
    backend.reset(house, robot_pose=(1.0, 0.75, 0.0))
    s = backend.step(Action.MOVE_AHEAD)
    # 0.2 m along +x. Servos settle to within SETTLE_SERVO_ERROR = 2 mm of the target before the
    # step returns, so 3 mm covers it.
    assert s.last_action_success and s.collided_ids == frozenset()
    np.testing.assert_allclose(s.robot_pose[:2], [1.2, 0.75], atol=3e-3)
    s = backend.step("l")
    assert s.last_action_success
    assert s.robot_pose[2] == pytest.approx(math.radians(30.0), abs=3e-3)
    np.testing.assert_allclose(s.robot_pose[:2], [1.2, 0.75], atol=3e-3)  # turn in place
    s = backend.step("m")  # now along 30 deg: +0.2 cos 30 = 0.1732, +0.2 sin 30 = 0.1
    np.testing.assert_allclose(s.robot_pose[:2], [1.3732, 0.85], atol=3e-3)
    assert s.step == 3


def test_wall_stops_the_base(backend, house):
    # Facing +x at y = 0.5, where the shared wall x = 4 is solid. Its face is at 3.95; the
    # base's front is 0.058 m ahead of base_link, so the base stops at x = 3.892. Two moves
    # reach 3.8 freely, the third (target 4.0) is blocked.
    backend.reset(house, robot_pose=(3.4, 0.5, 0.0))
    a, b, c, d = run(backend, ["m", "m", "m", "m"])
    assert a.last_action_success and b.last_action_success
    assert b.robot_pose[0] == pytest.approx(3.8, abs=3e-3)
    assert not c.last_action_success
    assert c.robot_pose[0] == pytest.approx(3.892, abs=0.01)
    assert WALL_X4 in c.collided_ids and WALL_X4 in c.structure_ids
    assert not d.last_action_success and d.robot_pose[0] == pytest.approx(c.robot_pose[0], abs=5e-3)


def test_arm_sweep_knocks_vases(backend, house):
    # Facing -x (yaw pi) at y = 1.30 the gripper is 0.415 m to the robot's right, i.e. over the
    # table at y = 1.715 (vases span y 1.58..1.88). Lifted to 0.8 m the gripper spans z
    # 0.863..1.0, inside the vases' 0.75..1.05 and above the knife (top 0.78). Starting at
    # x = 2.85 the gripper (x = 2.871) is clear of the table's end (2.7); five moves take it to
    # x = 1.871, through the cluster.
    s0 = backend.reset(house, robot_pose=(2.85, 1.30, math.pi))
    states = run(backend, ["yp"] * 5 + ["m"] * 5 + ["end"] * 2)
    assert all(s.last_action_success for s in states)
    assert states[4].lift_m == pytest.approx(0.8, abs=3e-3)
    hit = set().union(*(s.collided_ids for s in states))
    assert hit & set(VASES)
    end = states[-1]
    moved = [
        np.linalg.norm(end.object_positions[end.index_of(v)] - s0.object_positions[s0.index_of(v)])
        for v in VASES
    ]
    assert max(moved) > 0.05  # pushed well past CostConfig.disturb_position_m
    table = end.index_of("DiningTable|1|1")
    np.testing.assert_allclose(end.object_positions[table], [2.0, 2.0, 0.375])  # static
    knife = end.index_of(KNIFE)
    assert np.linalg.norm(end.object_positions[knife] - s0.object_positions[knife]) < 0.01


def test_pick_lift_and_drop(backend, house):
    # At (2.43, 1.10), yaw pi, the grasp point is at x = 2.43 + 0.021 = 2.451, y = 1.515,
    # z = lift + 0.11. Lift 0.8 -> 0.7 puts it at z 0.81 (3 cm above the knife's top, inside
    # GRASP_REACH_M = 0.15); extending the arm by 0.24 m brings y to 1.755 over the knife.
    s0 = backend.reset(house, robot_pose=(2.43, 1.10, math.pi))
    assert not backend.step("p").last_action_success  # nothing within reach at the start
    states = run(backend, ["yp"] * 5 + ["ym", "zp", "zp", "zps", "zps"])
    assert all(s.last_action_success for s in states)
    assert states[-1].arm_m == pytest.approx(0.24, abs=3e-3)
    k = s0.index_of(KNIFE)
    z0 = s0.object_positions[k, 2]
    picked = backend.step("p")
    assert picked.last_action_success and picked.held_object_id == KNIFE
    assert abs(picked.object_positions[k, 2] - z0) < 5e-3  # the weld keeps the pose: no jump
    lifted = backend.step("yp")
    assert lifted.held_object_id == KNIFE
    assert lifted.object_positions[k, 2] - z0 == pytest.approx(0.1, abs=0.01)  # follows the lift
    assert KNIFE not in lifted.collided_ids  # the held object is not a collision
    dropped = backend.step("d")
    assert dropped.last_action_success and dropped.held_object_id is None
    after = run(backend, ["end", "end"])[-1]
    # Falls back onto the table top: centre at 0.75 + 0.03 / 2 = 0.765.
    assert after.object_positions[k, 2] == pytest.approx(0.765, abs=0.01)
    assert not backend.step("d").last_action_success  # nothing to drop


def test_visibility(backend, house):
    # Facing +y from (2.0, 0.6) the table and vases are ~1-1.3 m ahead and below the camera.
    s = backend.reset(house, robot_pose=(2.0, 0.6, math.pi / 2))
    assert set(VASES) <= s.visible_ids and "DiningTable|1|1" in s.visible_ids
    assert all(s.last_seen_step[s.index_of(v)] == 0 for v in VASES)
    # Facing the other way (-y) they are behind the navigation camera.
    s = backend.reset(house, robot_pose=(2.0, 0.6, -math.pi / 2))
    assert not (set(VASES) & s.visible_ids)
    # The sofa (room 2) is seen through the doorway from the start pose: the ray from the
    # camera (1.045, 0.75, 1.32) to its centre (5.5, 2.5, 0.4) crosses x = 4 at y = 1.91,
    # z = 0.71, inside the 1..2 m x 2.1 m hole.
    assert "Sofa|2|1" in backend.reset(house, robot_pose=(1.0, 0.75, 0.0)).visible_ids
    # From (1.0, 2.6) the same ray crosses x = 4 at y = 2.53, above the hole's y = 2: the wall
    # occludes it although it is inside the frustum (11.7 deg below the horizon).
    assert "Sofa|2|1" not in backend.reset(house, robot_pose=(1.0, 2.6, 0.0)).visible_ids
    # Turning away (6 x 30 deg = 180 deg) keeps the last time the vases were seen.
    backend.reset(house, robot_pose=(2.0, 0.6, math.pi / 2))
    s = run(backend, ["r"] * 6)[-1]
    assert not (set(VASES) & s.visible_ids)
    for v in VASES:
        assert 0 <= s.last_seen_step[s.index_of(v)] < s.step


def test_determinism(house):
    free = copy.deepcopy(house)
    del free["metadata"]  # the start pose comes from the seed
    actions = ["m", "l", "yp", "zp", "m", "p", "rs", "b", "d", "wm", "zm"]
    runs = []
    for _ in range(2):
        b = MujocoBackend(width=64, height=48)  # a fresh backend per run: no hidden state
        runs.append([b.reset(free, seed=7)] + run(b, actions))
        b.close()
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a.robot_pose, b.robot_pose)
        np.testing.assert_array_equal(a.object_positions, b.object_positions)
        np.testing.assert_array_equal(a.object_quats, b.object_quats)
        assert (a.lift_m, a.arm_m, a.wrist_yaw_rad) == (b.lift_m, b.arm_m, b.wrist_yaw_rad)
        assert a.collided_ids == b.collided_ids and a.visible_ids == b.visible_ids
        assert a.last_action_success == b.last_action_success
    b = MujocoBackend(width=64, height=48)
    other = b.reset(free, seed=8)
    b.close()
    assert not np.array_equal(other.robot_pose, runs[0][0].robot_pose)


def test_bad_input(house):
    b = MujocoBackend(width=64, height=48)
    with pytest.raises(RuntimeError):
        b.step("m")
    b.reset(house)
    with pytest.raises(ValueError):
        b.step("jump")
    with pytest.raises(ValueError):
        b.step(20)
    with pytest.raises(ValueError):
        b.reset(house, robot_pose=(1.0, float("nan"), 0.0))
    with pytest.raises(ValueError):
        MujocoBackend(width=0)
    b.close()


def test_benchmark_and_script(backend, house, tmp_path):
    backend.reset(house)
    rate = benchmark_steps(backend, 3, render=True)
    assert rate > 0 and backend.world_state().step == 3
    assert (
        main(["--house", str(FIXTURE), "--out", str(tmp_path), "--width", "64", "--height", "48"])
        == 0
    )
    image_lib = pytest.importorskip("matplotlib.image", reason="PNG decoding needs matplotlib")
    for name in (NAV_CAMERA, MANIP_CAMERA):
        assert image_lib.imread(tmp_path / f"{name}.png").shape == (48, 64, 3)


# ------------------------------------------------------------------- stow pose and turning


def test_stowed_start_fits_the_footprint(stowed, house):
    s = stowed.reset(house)
    assert s.arm_m == pytest.approx(0.0, abs=2e-3)
    assert s.lift_m == pytest.approx(STOW_LIFT_M, abs=2e-3)
    assert s.wrist_yaw_rad == pytest.approx(STOW_WRIST_RAD, abs=0.01)  # 190 deg = 3.316 rad
    # Stowed, the farthest point is the base's rear corner: hypot(0.286, 0.181) = 0.338 m
    # (measured 0.339 on the mesh), inside the 0.34 m footprint of the reachable grid. The
    # original pose sticks the fingertips out to 0.424 m.
    assert robot_extent(stowed) == pytest.approx(0.339, abs=2e-3)
    assert robot_extent(stowed) <= ROBOT_RADIUS_M
    legacy = MujocoBackend(width=64, height=48)
    legacy.reset(house)
    assert robot_extent(legacy) == pytest.approx(0.424, abs=3e-3)
    legacy.close()


def test_unstow_with_wp_reaches_wrist_zero(stowed, house):
    s0 = stowed.reset(house, robot_pose=(5.5, 1.0, 0.0))
    # wp turns the wrist by -10 deg: 19 of them take 190 deg exactly to 0.
    states = run(stowed, ["wp"] * 19)
    assert all(s.last_action_success for s in states)
    assert states[-1].wrist_yaw_rad == pytest.approx(0.0, abs=math.radians(1))
    # Then the grasp point is the original one: 0.021 m behind and 0.415 m right of base_link,
    # lift 0.2 + 0.11 = 0.31 m high (robot at (5.5, 1.0) facing +x: right is -y).
    np.testing.assert_allclose(stowed.grasp_point(), [5.5 - 0.021, 1.0 - 0.415, 0.31], atol=0.01)
    assert s0.collided_ids == frozenset() and not set().union(*(s.collided_ids for s in states))
    # 19 wm fold it back to 190 deg; 3 more reach 220 deg = 3.840 rad; a 4th would need
    # 3.840 + 0.175 = 4.014 > 4.0 rad, the URDF limit: clamped and reported as a failure.
    back = run(stowed, ["wm"] * 22)
    assert all(s.last_action_success for s in back)
    assert back[18].wrist_yaw_rad == pytest.approx(STOW_WRIST_RAD, abs=math.radians(1))
    assert back[-1].wrist_yaw_rad == pytest.approx(math.radians(220), abs=math.radians(1))
    clamped = stowed.step("wm")
    assert not clamped.last_action_success
    assert clamped.wrist_yaw_rad == pytest.approx(4.0, abs=math.radians(1))


def test_turning_beside_furniture_only_the_legacy_gripper_collides(stowed, house):
    # (2.0, 1.19) is 1.55 - 1.19 = 0.36 m from the table's edge (y = 1.55): the 0.34 m footprint
    # fits, so it is a legal start. Turning a full circle in place, the stowed robot (0.339 m)
    # touches nothing; the original pose's fingertips (0.424 m, at lift 0.3 m below the 0.75 m
    # table top) hit the table.
    pose = (2.0, 1.19, 0.0)
    states = [stowed.reset(house, robot_pose=pose)] + run(stowed, ["l"] * 12)
    assert not set().union(*(s.collided_ids for s in states))
    assert all(s.last_action_success for s in states)
    legacy = MujocoBackend(width=64, height=48)
    legacy.reset(house, robot_pose=pose)
    hit = set().union(*(s.collided_ids for s in run(legacy, ["l"] * 12)))
    legacy.close()
    assert "DiningTable|1|1" in hit


def _free_room_house(house: dict) -> dict:
    free = copy.deepcopy(house)
    free["objects"] = [o for o in free["objects"] if o["objectType"] != "Sofa"]
    return free


@pytest.mark.parametrize("arm", ["stowed", "extended"])
def test_turns_return_to_the_start_heading(stowed, house, arm):
    # Room 2 without the sofa: from (5.5, 1.5) the walls are >= 1.45 m away, more than the
    # extended arm's 0.5 + 0.424 = 0.92 m reach. 12 x 30 deg = 360 deg, 5 x 6 deg = 30 deg.
    # The extended arm (lift 0.8 m, arm 0.5 m) doubles the base's yaw inertia: before the servo
    # gains were scheduled on it, each `l` overshot to ~40 deg and failed.
    free = _free_room_house(house)
    start = (5.5, 1.5, 0.3)
    prep = ["zp"] * 5 + ["yp"] * 5 if arm == "extended" else []

    def heading_error_deg(s, want_rad):
        d = s.robot_pose[2] - want_rad
        return abs(math.degrees(math.atan2(math.sin(d), math.cos(d))))

    for seq, total_rad in (
        (["l"] * 12, 0.0),
        (["r"] * 12, 0.0),
        (["ls"] * 5, math.radians(30)),
        (["rs"] * 5, -math.radians(30)),
    ):
        stowed.reset(free, robot_pose=start)
        ready = run(stowed, prep)
        assert all(s.last_action_success for s in ready)
        states = run(stowed, seq)
        assert all(s.last_action_success and not s.collided_ids for s in states), seq[0]
        step_rad = math.radians({"l": 30, "r": -30, "ls": 6, "rs": -6}[seq[0]])
        for k, s in enumerate(states, start=1):  # every single turn lands within 1 deg
            assert heading_error_deg(s, start[2] + k * step_rad) < 1.0, (seq[0], k)
        assert heading_error_deg(states[-1], start[2] + total_rad) < 1.0
        np.testing.assert_allclose(states[-1].robot_pose[:2], start[:2], atol=0.01)


def test_reset_avoids_interpenetration(house):
    # A basketball (0.24 m) on the floor right at metadata.agent (1.0, 0.75): the footprint test
    # ignores free objects, so the agent pose is a candidate, but the robot would stand in the
    # ball. The reset must pick another seeded pose where no robot geom touches anything.
    blocked = copy.deepcopy(house)
    blocked["objects"].append(
        {
            "id": "Basketball|1|9",
            "objectType": "Basketball",
            "position": {"x": 1.0, "y": 0.12, "z": 0.75},
            "rotation": {"x": 0, "y": 0, "z": 0},
            "boundingBox": {"x": 0.24, "y": 0.24, "z": 0.24},
            "kinematic": False,
        }
    )
    for stow in (True, False):
        b = MujocoBackend(width=64, height=48, stow_gripper=stow)
        s = b.reset(blocked, seed=3)
        assert np.hypot(s.robot_pose[0] - 1.0, s.robot_pose[1] - 0.75) > 0.2
        assert robot_contacts(b) == 0
        # Every reachable start is checked: the chosen one is on the grid.
        assert np.min(np.linalg.norm(b.reachable_positions() - s.robot_pose[:2], axis=1)) < 1e-6
        # An explicit robot_pose is used as is, even in contact.
        s = b.reset(blocked, robot_pose=(1.0, 0.75, 0.0))
        np.testing.assert_allclose(s.robot_pose[:2], [1.0, 0.75], atol=0.02)
        assert robot_contacts(b) > 0
        b.close()
