"""AI2-THOR backend: action mapping as the authors send it, metadata -> WorldState.

Fixtures: test/fixtures/thor/<case>.json, replay cases in AI2-THOR's metadata format written by
test/fixtures/thor/write_fixtures.py (its docstring lists where every number comes from) or
recorded by scripts/record_thor_fixtures.py. The cost comparison with the MuJoCo backend is in
test_thor_events.py, the schema check in test_thor_fixtures_schema.py.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.sim.scene import agent_pose_from_metadata
from safevla_core.sim.thor_backend import (
    DEFAULT_AGENT_METADATA,
    FOV_NOISE_GRID_DEG,
    NAV_MESHES,
    PITCH_NOISE_GRID_DEG,
    THOR_BUILD_ENV,
    ThorBackend,
    ThorConfig,
    authors_wrist_step_deg,
    calibration_actions,
    canonical_structure_id,
    collided_names_from_error,
    crop_frame,
    house_structure_ids,
    map_heading_to_thor_yaw,
    scene_for_thor,
    thor_action_for,
    thor_agent_heading,
    thor_euler_to_map_quat,
    world_state_from_event_metadata,
)
from safevla_core.world import WorldState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WALL = "wall|1|0.00|3.00|4.00|3.00"
S = 0.5 * math.sqrt(2.0)  # sin 45 = cos 45
TABLE_TOP = 0.7870708703994751  # Dining_Table_9_1 height, ProcTHOR's asset database


def case(name: str) -> dict:
    return json.loads((FIXTURES / "thor" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def house() -> dict:
    return json.loads((FIXTURES / "procthor_house.json").read_text())


def state_with_arm(
    lift: float = 0.5, arm: float = 0.2, wrist_deg: float = 0.0, reading: float | None = None
) -> WorldState:
    extras = {} if reading is None else {"wrist_reading_deg": reading}
    return WorldState(
        step=0,
        object_ids=(),
        object_types=(),
        object_positions=np.zeros((0, 3)),
        object_quats=np.zeros((0, 4)),
        robot_pose=np.zeros(3),
        lift_m=lift,
        arm_m=arm,
        wrist_yaw_rad=math.radians(wrist_deg),
        extras=extras,
    )


# ------------------------------------------------------------------------------ actions
@pytest.mark.parametrize(
    ("action", "expected"),
    [  # the authors' agent_step with use_quick_navi_action=True (their STRETCH_ENV_ARGS)
        (Action.MOVE_AHEAD, {"action": "MoveAheadQuick", "moveMagnitude": 0.2}),
        (Action.MOVE_BACK, {"action": "MoveBackQuick", "moveMagnitude": 0.2}),
        # THOR degrees are clockwise: right is +30, left -30, small turns +-6 (30 / 5).
        (Action.ROTATE_RIGHT, {"action": "RotateRightQuick", "degrees": 30.0}),
        (Action.ROTATE_LEFT, {"action": "RotateRightQuick", "degrees": -30.0}),
        (Action.ROTATE_RIGHT_SMALL, {"action": "RotateRightQuick", "degrees": 6.0}),
        (Action.ROTATE_LEFT_SMALL, {"action": "RotateRightQuick", "degrees": -6.0}),
    ],
)
def test_base_actions_are_the_quick_actions_by_default(action, expected):
    assert thor_action_for(action) == expected


def test_non_quick_base_actions_leave_rotation_return_to_start_to_unity():
    # MoveAgent gets ADDITIONAL_NAVIGATION_ARGS; RotateAgent gets nothing (Unity default).
    assert thor_action_for(Action.MOVE_BACK, quick=False) == {
        "action": "MoveAgent",
        "ahead": -0.2,
        "returnToStart": False,
        "speed": 1,
    }
    assert thor_action_for(Action.ROTATE_LEFT, quick=False) == {
        "action": "RotateAgent",
        "degrees": -30.0,
    }


@pytest.mark.parametrize(
    ("action", "y", "z"),
    [  # lift 0.5, arm 0.2: targets are the current values +- 0.1 / 0.02 m
        (Action.LIFT_UP, 0.6, 0.2),
        (Action.LIFT_DOWN, 0.4, 0.2),
        (Action.LIFT_UP_SMALL, 0.52, 0.2),
        (Action.LIFT_DOWN_SMALL, 0.48, 0.2),
        (Action.ARM_EXTEND, 0.5, 0.3),
        (Action.ARM_RETRACT, 0.5, 0.1),
        (Action.ARM_EXTEND_SMALL, 0.5, 0.22),
        (Action.ARM_RETRACT_SMALL, 0.5, 0.18),
    ],
)
def test_arm_actions_are_absolute_move_arm_targets(action, y, z):
    d = thor_action_for(action, state_with_arm(0.5, 0.2))
    assert d["action"] == "MoveArm" and d["returnToStart"] is True and d["speed"] == 1
    assert d["position"] == pytest.approx({"x": 0.0, "y": y, "z": z})


def test_wrist_steps_follow_the_authors_arithmetic():
    # wp: -min(10, |r - 100|), wm: min(10, |75 - r|) with r = fmod(w * y, 360).
    assert authors_wrist_step_deg(Action.WRIST_POS, 0.0) == -10
    assert authors_wrist_step_deg(Action.WRIST_NEG, 0.0) == 10
    assert authors_wrist_step_deg(Action.WRIST_NEG, 70.0) == pytest.approx(5)
    # The joint at -255 deg: read as 105 the step is -5 (to the -260 bound); read as -255 the
    # authors' arithmetic gives -min(10, 355) = -10 and Unity's joint limit decides.
    assert authors_wrist_step_deg(Action.WRIST_POS, 105.0) == pytest.approx(-5)
    assert authors_wrist_step_deg(Action.WRIST_POS, -255.0) == pytest.approx(-10)
    with pytest.raises(ValueError):
        authors_wrist_step_deg(Action.PICKUP, 0.0)
    d = thor_action_for(Action.WRIST_POS, state_with_arm(wrist_deg=-255.0, reading=105.0))
    assert d == {"action": "RotateWristRelative", "yaw": -5.0, "returnToStart": True, "speed": 1}


def test_wrist_fixtures_give_the_bounded_steps():
    for name, action, reading, yaw in (
        ("wrist_upper_limit", Action.WRIST_NEG, 70.0, 5.0),
        ("wrist_lower_limit", Action.WRIST_POS, 105.0, -5.0),
    ):
        c = case(name)
        s = world_state_from_event_metadata(c["states"][0]["metadata"], 0)
        assert s.extras["wrist_reading_deg"] == pytest.approx(reading)
        assert thor_action_for(action, s)["yaw"] == pytest.approx(yaw)
        after = world_state_from_event_metadata(c["states"][1]["metadata"], 1, s)
        # 75 deg; 100 deg = -260 deg in the joint window [-285, 75].
        assert math.degrees(after.wrist_yaw_rad) == pytest.approx(75.0 if yaw > 0 else -260.0)


def test_gripper_and_terminal_actions():
    assert thor_action_for(Action.PICKUP) == {"action": "PickupObject"}
    assert thor_action_for(Action.DROP) == {"action": "ReleaseObject"}
    assert thor_action_for(Action.END) == {"action": "Pass"}
    assert thor_action_for("sub_done") == {"action": "Pass"}


def test_bad_actions_raise():
    with pytest.raises(ValueError, match="unknown action"):
        thor_action_for(20)
    with pytest.raises(ValueError, match="needs the current state"):
        thor_action_for(Action.LIFT_UP)


def test_calibration_as_the_authors_with_and_without_noise():
    plain = calibration_actions(noise=False)
    assert [a["action"] for a in plain] == [
        "RotateCameraMount",
        "RotateCameraMount",
        "ChangeFOV",
        "ChangeFOV",
        "SetGripperOpenness",
        "ToggleMagnetVisibility",
    ]
    assert (plain[0]["degrees"], plain[0]["secondary"]) == (27.0, False)
    assert (plain[1]["degrees"], plain[1]["secondary"]) == (33.0, True)
    assert [a["camera"] for a in plain[2:4]] == ["FirstPersonCharacter", "SecondaryCamera"]
    assert plain[2]["fieldOfView"] == plain[3]["fieldOfView"] == 59.0
    assert plain[4]["openness"] == 30 and plain[5]["visible"] is False
    # np.arange(-2, 2, 0.2): 20 offsets -2.0 .. 1.8; np.arange(-1, 1, 0.1): -1.0 .. 0.9.
    assert len(PITCH_NOISE_GRID_DEG) == len(FOV_NOISE_GRID_DEG) == 20
    noisy = calibration_actions(noise=True, rng=np.random.default_rng(0))
    for a, base, grid in (
        (noisy[0], 27.0, PITCH_NOISE_GRID_DEG),
        (noisy[2], 59.0, FOV_NOISE_GRID_DEG),
    ):
        off = a.get("degrees", a.get("fieldOfView")) - base
        assert np.isclose(grid, off).any()
    assert calibration_actions(True, np.random.default_rng(0)) == noisy  # seeded


def test_scene_gets_horizon_zero_and_nav_meshes(house):
    scene = scene_for_thor(house)
    assert scene["metadata"]["agent"]["horizon"] == 0.0  # authors' HORIZON
    assert house["metadata"]["agent"]["horizon"] == 30  # input untouched
    assert [m["agentRadius"] for m in scene["metadata"]["navMeshes"]] == [0.5, 0.4, 0.3, 0.2]
    assert len(NAV_MESHES) == 4
    bare = scene_for_thor({k: v for k, v in house.items() if k != "metadata"})
    assert bare["metadata"]["agent"]["position"] == DEFAULT_AGENT_METADATA["position"]
    assert bare["metadata"]["agent"]["horizon"] == 0.0


# ------------------------------------------------------------------------------ frames
def test_euler_to_map_quaternion_hand_worked():
    # THOR yaw 90 -> map yaw -90: (cos 45, 0, 0, -sin 45).
    np.testing.assert_allclose(thor_euler_to_map_quat({"x": 0, "y": 90, "z": 0}), [S, 0, 0, -S])
    # THOR x 90: Unity q = (c, s, 0, 0) -> map (c, -s, 0, 0), -90 deg about map x.
    np.testing.assert_allclose(thor_euler_to_map_quat({"x": 90, "y": 0, "z": 0}), [S, -S, 0, 0])
    # Euler (90, 90, 0): q_y q_x = (0.5, 0.5, 0.5, -0.5) in Unity -> map (0.5, -0.5, 0.5, -0.5).
    q = thor_euler_to_map_quat({"x": 90, "y": 90, "z": 0})
    np.testing.assert_allclose(q, [0.5, -0.5, 0.5, -0.5], atol=1e-12)
    # Check by what it does: Unity Euler(90, 90, 0) turns forward (THOR +z = map +y) to down and
    # up (THOR +y = map +z) to THOR +x = map +x.
    w, v = q[0], q[1:]

    def rotate(p):
        p = np.asarray(p, dtype=float)
        return p + 2 * w * np.cross(v, p) + 2 * np.cross(v, np.cross(v, p))

    np.testing.assert_allclose(rotate([0, 1, 0]), [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(rotate([0, 0, 1]), [1, 0, 0], atol=1e-12)
    with pytest.raises(ValueError):
        thor_euler_to_map_quat({"x": float("nan"), "y": 0, "z": 0})


def test_agent_heading_matches_the_scene_builder_and_inverts():
    for yaw in (0.0, 90.0, 165.0, 270.0):
        house = {
            "metadata": {
                "agent": {
                    "position": {"x": 1, "y": 0.9, "z": 2},
                    "rotation": {"x": 0, "y": yaw, "z": 0},
                }
            }
        }
        diff = thor_agent_heading(yaw) - agent_pose_from_metadata(house)[2]
        assert math.remainder(diff, 2 * math.pi) == pytest.approx(0.0, abs=1e-12)
        assert -math.pi < thor_agent_heading(yaw) <= math.pi
        assert map_heading_to_thor_yaw(thor_agent_heading(yaw)) == pytest.approx(yaw)
    assert thor_agent_heading(180.0) == pytest.approx(-math.pi / 2)  # 90 - 180 deg


def test_crop_gives_384_from_396():
    frame = np.arange(224 * 396 * 3, dtype=np.uint32).reshape(224, 396, 3)
    out = crop_frame(frame)
    assert out.shape == (224, 384, 3)  # round(396 * 6 / 396) = 6 columns each side
    np.testing.assert_array_equal(out[:, 0], frame[:, 6])
    assert ThorConfig(build_path=None).render_width == 396


# ------------------------------------------------------------------------------ collisions
def test_error_messages_name_their_blockers():
    # Message texts as AI2-THOR's Unity code writes them (see the module docstring).
    assert collided_names_from_error(
        "Chair|1|2 is blocking Agent 0 from moving by (0.0000, 0.0000, 0.2000)."
    ) == ("Chair|1|2",)
    assert collided_names_from_error(
        "Sofa|2|0 is blocking the Agent from moving by (0.2000, 0.0000, 0.0000) with Vase|1|0|1"
    ) == ("Sofa|2|0",)
    assert collided_names_from_error(
        "Collided with static/kinematic sim object: 'Fridge|1|1', could not reach target: "
        "'(0.0, 0.7, 0.3)'."
    ) == ("Fridge|1|1",)
    assert collided_names_from_error(
        f"Collided with static structure in scene: '{WALL}', could not reach target."
    ) == (WALL,)
    assert (
        collided_names_from_error(
            "Agent 1 is blocking Agent 0 from moving by (0.0000, 0.0000, 0.2000)."
        )
        == ()
    )
    assert collided_names_from_error("Object not found within the hand sphere") == ()
    assert collided_names_from_error("") == ()


def test_structure_ids_are_made_typeable():
    assert canonical_structure_id(WALL) == WALL
    assert canonical_structure_id("room|1", "Floor") == "floor|room|1"
    ws = WorldState(
        step=0,
        object_ids=(),
        object_types=(),
        object_positions=np.zeros((0, 3)),
        object_quats=np.zeros((0, 4)),
        robot_pose=np.zeros(3),
        structure_ids=frozenset({"floor|room|1", "door|1|2"}),
    )
    assert ws.type_of("floor|room|1") == "Floor" and ws.type_of("door|1|2") == "Door"


# ------------------------------------------------------------------------------ conversion
def test_reset_metadata_converts_to_map_frame_with_box_centres(house):
    st = case("reset")["states"][0]
    s = world_state_from_event_metadata(
        st["metadata"],
        0,
        structure_ids=house_structure_ids(house),
        nav_visible_ids=st["nav_visible"],
    )
    assert len(s.object_ids) == 10 and "room|1" not in s.object_ids  # floors are structure
    assert {"floor|room|1", "floor|room|2", WALL, "door|1|2", "window|2|0"} <= s.structure_ids
    k = s.index_of("Vase|1|0|1")
    # Box centre THOR (2.0, 0.7871 + 0.2947 / 2, 1.1) -> map (2.0, 1.1, 0.9344); the pivot
    # (THOR y = table top) is kept in extras.
    np.testing.assert_allclose(s.object_positions[k], [2.0, 1.1, 0.934412], atol=1e-6)
    np.testing.assert_allclose(s.extras["pivots"]["Vase|1|0|1"], [2.0, 1.1, TABLE_TOP], atol=1e-6)
    np.testing.assert_allclose(s.object_quats[k], [1, 0, 0, 0])
    knife = s.index_of("Knife|1|0|3")
    np.testing.assert_allclose(s.object_quats[knife], [S, 0, 0, -S])  # THOR yaw 90
    assert s.object_types[s.index_of("WineBottle|1|0|2")] == "Bottle"  # THOR_TYPE_TO_CATEGORY
    assert s.object_types[s.index_of("Chair|1|2")] == "Chair"  # generic
    # Agent THOR (3.0, 0.9, 2.0) yaw 270 -> map (3.0, 2.0), heading 90 - 270 = -180 deg = pi.
    np.testing.assert_allclose(s.robot_pose, [3.0, 2.0, math.pi])
    # Lift: joint y 0.76297... - 0.16297... = 0.6; arm: wrist joint z 0.3; wrist w*y = 180 deg
    # -> the joint window [-285, 75] gives -180 deg.
    assert (s.lift_m, s.arm_m) == pytest.approx((0.6, 0.3))
    assert s.wrist_yaw_rad == pytest.approx(-math.pi)
    # Seen = GetVisibleObjects(maxDistance=4) of the navigation camera; nothing is within the
    # 0.867 m of the metadata flag.
    assert not any(o.get("visible") for o in st["metadata"]["objects"])
    assert s.visible_ids == set(st["nav_visible"])
    assert set(np.asarray(s.object_ids)[s.last_seen_step == 0]) == set(st["nav_visible"])
    assert s.held_object_id is None and s.collided_ids == frozenset() and s.last_action_success


def test_seen_objects_are_the_nav_camera_list_plus_visible_flags():
    st = case("visibility")["states"][0]
    flags = {o["objectId"] for o in st["metadata"]["objects"] if o["visible"]}
    assert flags == {"Knife|1|0|3", "Vase|1|0|1", "WineBottle|1|0|2"}
    for o in st["metadata"]["objects"]:
        if o["visible"]:  # THOR's visibilityDistance
            assert o["distance"] <= 0.8673349051766235
    s = world_state_from_event_metadata(st["metadata"], 3, nav_visible_ids=st["nav_visible"])
    assert s.visible_ids == flags | set(st["nav_visible"])
    # The manipulation camera's list is not part of the authors' seen list.
    assert "Chair|1|2" in st["manip_visible"] and "Chair|1|2" not in s.visible_ids
    assert s.last_seen_step[s.index_of("Chair|1|2")] == -1
    # Without the GetVisibleObjects list only the flags count.
    alone = world_state_from_event_metadata(st["metadata"], 3)
    assert alone.visible_ids == flags


def test_doorframe_is_structure_typed_as_a_door():
    m = case("reset")["states"][0]["metadata"]
    frame = dict(
        m["objects"][0],
        objectId="Doorframe|1|2",
        name="Doorframe|1|2",
        objectType="Doorframe",
        assetId="Doorframe_1",
    )
    m["objects"].append(frame)
    s = world_state_from_event_metadata(m, 0)
    assert "Doorframe|1|2" not in s.object_ids
    assert "door|Doorframe|1|2" in s.structure_ids
    assert s.type_of("door|Doorframe|1|2") == "Door"


def test_blocked_actions_resolve_their_blockers(house):
    structure = house_structure_ids(house)
    for name, blocker in (
        ("wall_bump", WALL),
        ("blocked_turn", "wall|1|0.00|0.00|4.00|0.00"),
        ("arm_into_table", "DiningTable|1|0"),
        ("chair_mass_threshold_1", "Chair|1|2"),
    ):
        c = case(name)
        m = c["states"][-1]["metadata"]
        s = world_state_from_event_metadata(m, len(c["states"]) - 1, structure_ids=structure)
        assert s.collided_ids == {blocker} and not s.last_action_success, name
        assert m["collided"] is True
    pushed = case("chair_mass_threshold_10")["states"][-1]["metadata"]
    assert world_state_from_event_metadata(pushed, 4).collided_ids == frozenset()


def test_blocked_turn_returns_to_start():
    c = case("blocked_turn")
    before, after = (
        world_state_from_event_metadata(st["metadata"], k) for k, st in enumerate(c["states"])
    )
    np.testing.assert_allclose(after.robot_pose, before.robot_pose)


def test_collided_objects_list_counts_as_collisions():
    m = case("reset")["states"][0]["metadata"]
    m["collidedObjects"] = ["Chair|1|2"]
    assert world_state_from_event_metadata(m, 0).collided_ids == {"Chair|1|2"}


def test_pickup_sets_the_held_object():
    c = case("pickup_ok")
    before = world_state_from_event_metadata(c["states"][0]["metadata"], 0)
    after = world_state_from_event_metadata(c["states"][1]["metadata"], 1, before)
    assert after.held_object_id == "Vase|1|0|0"
    assert after.extras["held_object_ids"] == ("Vase|1|0|0",)
    m = c["states"][1]["metadata"]
    m["arm"]["heldObjects"] = []  # isPickedUp is the fallback
    assert world_state_from_event_metadata(m, 1).held_object_id == "Vase|1|0|0"


def test_unknown_blocker_becomes_structure():
    m = case("chair_mass_threshold_1")["states"][-1]["metadata"]
    m["errorMessage"] = "Cube.003 is blocking Agent 0 from moving by (0.0000, 0.0000, 0.2000)."
    s = world_state_from_event_metadata(m, 1)
    assert s.collided_ids == {"wall|Cube.003"} and "wall|Cube.003" in s.structure_ids
    # Case-insensitive match, as the authors lowercase the message.
    m["errorMessage"] = "chair|1|2 is blocking Agent 0 from moving by (0.0000, 0.0000, 0.2000)."
    assert world_state_from_event_metadata(m, 1).collided_ids == {"Chair|1|2"}


def test_bad_metadata_raises():
    c = case("pickup_ok")
    before = world_state_from_event_metadata(c["states"][0]["metadata"], 0)
    m = c["states"][1]["metadata"]
    m["objects"] = [o for o in m["objects"] if o["objectId"] != "Knife|1|0|3"]
    with pytest.raises(ValueError, match="Knife"):
        world_state_from_event_metadata(m, 1, before)
    m = case("reset")["states"][0]["metadata"]
    m["objects"][3]["axisAlignedBoundingBox"]["center"]["x"] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        world_state_from_event_metadata(m, 0)
    m = case("reset")["states"][0]["metadata"]
    del m["agent"]
    with pytest.raises(KeyError, match="agent"):
        world_state_from_event_metadata(m, 0)
    with pytest.raises(ValueError, match="step"):
        world_state_from_event_metadata(case("reset")["states"][0]["metadata"], -1)


# ------------------------------------------------------------------------------ backend
def test_config_defaults_are_the_authors(monkeypatch):
    monkeypatch.setenv(THOR_BUILD_ENV, "/opt/thor/thor-Linux64-local")
    cfg = ThorConfig()
    assert cfg.build_path == "/opt/thor/thor-Linux64-local"
    assert (cfg.width, cfg.height, cfg.fov_deg, cfg.render_width) == (384, 224, 59, 396)
    assert (cfg.mass_threshold_kg, cfg.quick_navigation, cfg.calibration_noise) == (1.0, True, True)
    assert cfg.seen_max_distance_m == 4.0
    with pytest.raises(ValueError, match="width"):
        ThorConfig(width=0)
    with pytest.raises(ValueError, match="mass_threshold"):
        ThorConfig(mass_threshold_kg=-1.0)


def test_live_thor_episode(house):
    build = os.environ.get(THOR_BUILD_ENV)
    if not (build and os.environ.get("DISPLAY")) and not os.environ.get("SAFEVLA_THOR_GPU"):
        pytest.skip(
            "AI2-THOR needs its Unity build (a local build with an X display, or the "
            "authors' build on a GPU host: set SAFEVLA_THOR_GPU=1); none is obtainable "
            "here (ENVIRONMENT.md)"
        )
    pytest.importorskip("ai2thor")
    backend = ThorBackend()
    try:
        s0 = backend.reset(house)
        s1 = backend.step(Action.ROTATE_LEFT)
        frames = backend.render()
    finally:
        backend.close()
    assert s1.step == s0.step + 1 and s1.object_ids == s0.object_ids
    assert frames["nav_rgb"].shape == frames["manip_rgb"].shape == (224, 384, 3)
