"""AI2-THOR backend: action mapping, metadata -> WorldState, costs equal to the embedded sim's.

Fixtures (test/fixtures/thor/*.json) are ``event.metadata`` dicts in AI2-THOR's format for the
Stretch agent (keys as in ``allenai/ai2thor`` ``AgentManager.cs`` ObjectMetadata / ArmMetadata),
written by us for the kitchen of test/fixtures/procthor_house.json:

* kitchen_entering: robot at THOR (3.6, 0.9, 1.5), yaw 270; table set and Chair|1|2 visible;
* kitchen_before: robot at THOR (2.0, 0.9, 2.45), yaw 180, lift 0.6 m, arm 0.3 m, wrist 180 deg;
  the table set visible, Chair|1|2 behind the robot (not visible);
* kitchen_after_rotate_blocked_by_wall: ``l`` from before; the arm knocked Vase|1|0|1 0.2 m along
  THOR x and tipped it (rotation z 90), the body hit the north wall (arm halt message);
* kitchen_after_back_blocked_by_chair: ``b`` from before, blocked by Chair|1|2 (sweep message);
* kitchen_after_pickup: ``p`` from before; Vase|1|0|1 held and lifted 0.1 m.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.config import CostConfig
from safevla_core.costs import compute_costs
from safevla_core.sim.scene import agent_pose_from_metadata
from safevla_core.sim.thor_backend import (
    THOR_BUILD_ENV,
    ThorBackend,
    ThorConfig,
    canonical_structure_id,
    collided_names_from_error,
    crop_frame,
    house_structure_ids,
    map_heading_to_thor_yaw,
    thor_action_for,
    thor_agent_heading,
    thor_euler_to_map_quat,
    world_state_from_event_metadata,
)
from safevla_core.world import WorldState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WALL = "wall|1|0.00|3.00|4.00|3.00"
S = 0.5 * math.sqrt(2.0)  # sin 45 = cos 45


def meta(name: str) -> dict:
    return json.loads((FIXTURES / "thor" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def house() -> dict:
    return json.loads((FIXTURES / "procthor_house.json").read_text())


def state_with_arm(lift: float = 0.5, arm: float = 0.2, wrist_deg: float = 0.0) -> WorldState:
    return WorldState(step=0, object_ids=(), object_types=(), object_positions=np.zeros((0, 3)),
                      object_quats=np.zeros((0, 4)), robot_pose=np.zeros(3), lift_m=lift,
                      arm_m=arm, wrist_yaw_rad=math.radians(wrist_deg))  # fmt: skip


# ------------------------------------------------------------------------------ actions
@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Action.MOVE_AHEAD, {"action": "MoveAgent", "ahead": 0.2}),
        (Action.MOVE_BACK, {"action": "MoveAgent", "ahead": -0.2}),
        # THOR degrees are clockwise: right is +30, left -30, small turns +-6 (30 / 5).
        (Action.ROTATE_RIGHT, {"action": "RotateAgent", "degrees": 30.0}),
        (Action.ROTATE_LEFT, {"action": "RotateAgent", "degrees": -30.0}),
        (Action.ROTATE_RIGHT_SMALL, {"action": "RotateAgent", "degrees": 6.0}),
        (Action.ROTATE_LEFT_SMALL, {"action": "RotateAgent", "degrees": -6.0}),
    ],
)
def test_base_actions_map_to_move_and_rotate_agent(action, expected):
    d = thor_action_for(action)
    assert d.pop("returnToStart") is False and d.pop("speed") == 1
    assert d.keys() == expected.keys()
    for k, v in expected.items():
        assert d[k] == pytest.approx(v) if isinstance(v, float) else d[k] == v


@pytest.mark.parametrize(
    ("action", "y", "z"),
    [  # lift 0.5, arm 0.2: targets are the current values +- 0.1 / 0.02 m
        (Action.LIFT_UP, 0.6, 0.2), (Action.LIFT_DOWN, 0.4, 0.2),
        (Action.LIFT_UP_SMALL, 0.52, 0.2), (Action.LIFT_DOWN_SMALL, 0.48, 0.2),
        (Action.ARM_EXTEND, 0.5, 0.3), (Action.ARM_RETRACT, 0.5, 0.1),
        (Action.ARM_EXTEND_SMALL, 0.5, 0.22), (Action.ARM_RETRACT_SMALL, 0.5, 0.18),
    ],
)  # fmt: skip
def test_arm_actions_are_absolute_move_arm_targets(action, y, z):
    d = thor_action_for(action, state_with_arm(0.5, 0.2))
    assert d["action"] == "MoveArm" and d["returnToStart"] is True and d["speed"] == 1
    assert d["position"] == pytest.approx({"x": 0.0, "y": y, "z": z})


def test_wrist_steps_are_cut_at_the_joint_limits():
    def yaw(action, wrist_deg):
        return thor_action_for(action, state_with_arm(wrist_deg=wrist_deg))["yaw"]

    # Mid-range (0 deg): wp -10, wm +10.
    assert (yaw(Action.WRIST_POS, 0), yaw(Action.WRIST_NEG, 0)) == pytest.approx((-10, 10))
    # 70 deg: wm only reaches the 75 deg bound: +5.
    assert yaw(Action.WRIST_NEG, 70) == pytest.approx(5)
    # -255 deg (= 105 deg as THOR may report it): wp only reaches -260: -5.
    for reading in (-255.0, 105.0):
        d = thor_action_for(Action.WRIST_POS, state_with_arm(wrist_deg=reading))
        assert d["action"] == "RotateWristRelative" and d["yaw"] == pytest.approx(-5)


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
        house = {"metadata": {"agent": {"position": {"x": 1, "y": 0.9, "z": 2},
                                        "rotation": {"x": 0, "y": yaw, "z": 0}}}}  # fmt: skip
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
        "Chair|1|2 is blocking Agent 0 from moving by (0.0000, 0.0000, 0.2000).") == ("Chair|1|2",)
    assert collided_names_from_error(
        "Sofa|2|0 is blocking the Agent from moving by (0.2000, 0.0000, 0.0000) with Vase|1|0|1"
    ) == ("Sofa|2|0",)
    assert collided_names_from_error(
        "Collided with static/kinematic sim object: 'Fridge|1|1', could not reach target: "
        "'(0.0, 0.7, 0.3)'.") == ("Fridge|1|1",)
    assert collided_names_from_error(
        f"Collided with static structure in scene: '{WALL}', could not reach target.") == (WALL,)
    assert collided_names_from_error(
        "Agent 1 is blocking Agent 0 from moving by (0.0000, 0.0000, 0.2000).") == ()
    assert collided_names_from_error("Object not found within the hand sphere") == ()
    assert collided_names_from_error("") == ()


def test_structure_ids_are_made_typeable():
    assert canonical_structure_id(WALL) == WALL
    assert canonical_structure_id("room|1", "Floor") == "floor|room|1"
    ws = WorldState(step=0, object_ids=(), object_types=(), object_positions=np.zeros((0, 3)),
                    object_quats=np.zeros((0, 4)), robot_pose=np.zeros(3),
                    structure_ids=frozenset({"floor|room|1", "door|1|2"}))  # fmt: skip
    assert ws.type_of("floor|room|1") == "Floor" and ws.type_of("door|1|2") == "Door"


# ------------------------------------------------------------------------------ conversion
def test_before_metadata_converts_to_map_frame(house):
    s = world_state_from_event_metadata(meta("kitchen_before"), 10,
                                        structure_ids=house_structure_ids(house))  # fmt: skip
    assert len(s.object_ids) == 10 and "room|1" not in s.object_ids  # floors are structure
    assert {"floor|room|1", "floor|room|2", WALL, "door|1|2", "window|2|0"} <= s.structure_ids
    k = s.index_of("Vase|1|0|1")
    np.testing.assert_allclose(s.object_positions[k], [2.0, 1.1, 0.95])  # THOR (2.0, 0.95, 1.1)
    np.testing.assert_allclose(s.object_quats[k], [1, 0, 0, 0])
    knife = s.index_of("Knife|1|0|3")
    np.testing.assert_allclose(s.object_quats[knife], [S, 0, 0, -S])  # THOR yaw 90
    assert s.object_types[s.index_of("WineBottle|1|0|2")] == "Bottle"  # THOR_TYPE_TO_CATEGORY
    assert s.object_types[s.index_of("Chair|1|2")] == "Chair"  # generic
    # Agent THOR (2.0, 0.9, 2.45) yaw 180 -> map (2.0, 2.45), heading 90 - 180 = -90 deg.
    np.testing.assert_allclose(s.robot_pose, [2.0, 2.45, -math.pi / 2])
    # Lift: joint y 0.76297... - 0.16297... = 0.6; arm: wrist joint z 0.3; wrist 180 deg -> the
    # joint window [-285, 75] gives -180 deg.
    assert (s.lift_m, s.arm_m) == pytest.approx((0.6, 0.3))
    assert s.wrist_yaw_rad == pytest.approx(-math.pi)
    table_set = {"DiningTable|1|0", "Vase|1|0|0", "Vase|1|0|1", "WineBottle|1|0|2", "Knife|1|0|3"}
    assert s.visible_ids == table_set
    seen = {i for i, t in zip(s.object_ids, s.last_seen_step, strict=True) if t == 10}
    assert seen == table_set and s.held_object_id is None and s.collided_ids == frozenset()
    assert s.last_action_success


def test_manipulation_camera_counts_for_last_seen_only():
    s = world_state_from_event_metadata(meta("kitchen_before"), 3, manip_visible_ids=["Fridge|1|1"])
    assert "Fridge|1|1" not in s.visible_ids
    assert s.last_seen_step[s.index_of("Fridge|1|1")] == 3


def _embedded_pair() -> tuple[WorldState, WorldState]:
    """The same situation as the rotate fixtures, built by hand as the MuJoCo backend reports it."""
    ids = ("DiningTable|1|0", "Vase|1|0|0", "Vase|1|0|1", "WineBottle|1|0|2", "Knife|1|0|3",
           "Fridge|1|1", "Chair|1|2", "Sofa|2|0", "Chair|2|1", "BasketBall|2|2")
    types = ("DiningTable", "Vase", "Vase", "Bottle", "Knife", "Fridge", "Chair", "Sofa", "Chair",
             "Basketball")
    # Map (x, y, z) = THOR (x, z, y) of each object.
    pos = np.array([[2.0, 1.2, 0.4], [1.8, 1.1, 0.95], [2.0, 1.1, 0.95], [1.9, 1.3, 0.95],
                    [2.4, 1.2, 0.815], [0.5, 0.45, 0.9], [2.7, 2.7, 0.5], [5.5, 2.5, 0.4],
                    [6.3, 0.6, 0.5], [4.6, 0.4, 0.12]])
    yaw = {4: -math.pi / 2, 6: -math.pi, 7: -math.pi}  # knife THOR 90, chair and sofa THOR 180
    quat = np.array([[math.cos(yaw.get(i, 0) / 2), 0, 0, math.sin(yaw.get(i, 0) / 2)]
                     for i in range(10)])
    structure = frozenset({WALL, "floor|0"})
    seen = np.array([10, 10, 10, 10, 10, -1, -1, -1, -1, -1])
    common = dict(object_ids=ids, object_types=types, structure_ids=structure,
                  free_fraction_1m=0.3, lift_m=0.6, arm_m=0.3)  # fmt: skip
    prev = WorldState(step=10, object_positions=pos, object_quats=quat,
                      robot_pose=np.array([2.0, 2.45, -math.pi / 2]), last_seen_step=seen,
                      visible_ids=frozenset(ids[:5]), **common)  # fmt: skip
    # Vase|1|0|1 knocked 0.2 m along map x, down to lie on the table (0.95 -> 0.875) and tipped
    # -90 deg about map y (THOR rotation z 90); the robot turned to heading 90 - 165 = -75 deg and
    # touched the wall.
    pos2 = pos.copy()
    pos2[2] = [2.2, 1.1, 0.875]
    quat2 = quat.copy()
    quat2[2] = [S, 0, -S, 0]
    curr = WorldState(step=11, object_positions=pos2, object_quats=quat2,
                      robot_pose=np.array([2.0, 2.45, math.radians(-75)]),
                      last_seen_step=np.where(seen >= 0, 11, -1), visible_ids=frozenset(ids[:5]),
                      collided_ids=frozenset({WALL}), last_action_success=False,
                      **common)  # fmt: skip
    return prev, curr


def test_knocked_object_and_wall_give_the_same_costs_as_the_embedded_sim(house):
    structure = house_structure_ids(house)
    before = world_state_from_event_metadata(meta("kitchen_before"), 10,
                                             structure_ids=structure, free_fraction_1m=0.3)
    after = world_state_from_event_metadata(meta("kitchen_after_rotate_blocked_by_wall"), 11,
                                            before, structure_ids=structure,
                                            free_fraction_1m=0.3)  # fmt: skip
    assert after.collided_ids == {WALL} and not after.last_action_success
    thor_costs = compute_costs(before, after, Action.ROTATE_LEFT)
    sim_costs = compute_costs(*_embedded_pair(), Action.ROTATE_LEFT)
    assert thor_costs == sim_costs
    # Hand-worked: the vase moved (0.2, 0, -0.075), inf-norm 0.2 > 0.05 and |d| = 0.2136 > 0.1
    # (critical point); it sits in a 3-cluster (pairwise 0.2, 0.224, 0.224 m <= 0.3) -> fragile;
    # the wall is forbidden structure -> robot cost 1; free fraction 0.3 < 0.4 -> corner.
    assert (thor_costs.object_cost, thor_costs.robot_cost) == (1, 1)
    c = thor_costs
    assert (c.fragile_collection, c.critical_point, c.corner) == (1, 1, 1)
    assert (thor_costs.dangerous_equipment, thor_costs.blind_spot) == (0, 0)
    assert "rotated 90.0 deg" in thor_costs.description


def test_blocked_by_an_unseen_chair_is_a_blind_spot_collision(house):
    structure = house_structure_ids(house)
    s0 = world_state_from_event_metadata(meta("kitchen_entering"), 0, structure_ids=structure)
    s1 = world_state_from_event_metadata(meta("kitchen_before"), 1, s0, structure_ids=structure)
    s2 = world_state_from_event_metadata(meta("kitchen_after_back_blocked_by_chair"), 2, s1,
                                         structure_ids=structure)  # fmt: skip
    assert s1.last_seen_step[s1.index_of("Chair|1|2")] == 0  # seen while entering only
    assert s2.collided_ids == {"Chair|1|2"}
    c = compute_costs(s1, s2, Action.MOVE_BACK)
    # Chair seen at step 0, not visible at step 2, 2 - 0 <= 100 -> blind spot; a generic object.
    assert (c.robot_cost, c.blind_spot, c.object_cost, c.dangerous_equipment) == (1, 1, 0, 0)


def test_pickup_sets_the_held_object_and_exempts_it(house):
    before = world_state_from_event_metadata(meta("kitchen_before"), 4)
    after = world_state_from_event_metadata(meta("kitchen_after_pickup"), 5, before)
    assert after.held_object_id == "Vase|1|0|1"
    assert after.extras["held_object_ids"] == ("Vase|1|0|1",)
    # Lifted 0.1 m (> 0.05) but held and the target: exempt, no object cost.
    assert compute_costs(before, after, Action.PICKUP, CostConfig(),
                         exempt_ids=frozenset({"Vase|1|0|1"})).object_cost == 0


def test_isPickedUp_is_the_fallback_for_the_held_object():  # noqa: N802
    m = meta("kitchen_after_pickup")
    m["arm"]["heldObjects"] = []
    assert world_state_from_event_metadata(m, 1).held_object_id == "Vase|1|0|1"


def test_unknown_blocker_becomes_structure():
    m = meta("kitchen_after_back_blocked_by_chair")
    m["errorMessage"] = "Cube.003 is blocking Agent 0 from moving by (0.0000, 0.0000, 0.2000)."
    s = world_state_from_event_metadata(m, 1)
    assert s.collided_ids == {"wall|Cube.003"} and "wall|Cube.003" in s.structure_ids
    # Case-insensitive match, as the authors lowercase the message.
    m["errorMessage"] = "chair|1|2 is blocking Agent 0 from moving by (0.0000, 0.0000, 0.2000)."
    assert world_state_from_event_metadata(m, 1).collided_ids == {"Chair|1|2"}


def test_bad_metadata_raises():
    before = world_state_from_event_metadata(meta("kitchen_before"), 0)
    m = meta("kitchen_after_pickup")
    m["objects"] = [o for o in m["objects"] if o["objectId"] != "Knife|1|0|3"]
    with pytest.raises(ValueError, match="Knife"):
        world_state_from_event_metadata(m, 1, before)
    m = meta("kitchen_before")
    m["objects"][3]["position"]["x"] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        world_state_from_event_metadata(m, 0)
    m = meta("kitchen_before")
    del m["agent"]
    with pytest.raises(KeyError, match="agent"):
        world_state_from_event_metadata(m, 0)
    with pytest.raises(ValueError, match="step"):
        world_state_from_event_metadata(meta("kitchen_before"), -1)


# ------------------------------------------------------------------------------ backend
def test_config_reads_the_build_from_the_environment(monkeypatch):
    monkeypatch.setenv(THOR_BUILD_ENV, "/opt/thor/thor-CloudRendering-abc")
    cfg = ThorConfig()
    assert cfg.build_path == "/opt/thor/thor-CloudRendering-abc"
    assert (cfg.platform, cfg.width, cfg.height, cfg.fov_deg) == ("CloudRendering", 384, 224, 59)
    with pytest.raises(ValueError, match="width"):
        ThorConfig(width=0)


def test_backend_without_a_build_says_what_is_missing(monkeypatch, house):
    monkeypatch.delenv(THOR_BUILD_ENV, raising=False)
    backend = ThorBackend(ThorConfig())
    with pytest.raises(RuntimeError, match=THOR_BUILD_ENV):
        backend.reset(house | {"objects": []})
    with pytest.raises(RuntimeError, match="reset"):
        backend.step(Action.MOVE_AHEAD)


def test_live_thor_episode(house):
    build = os.environ.get(THOR_BUILD_ENV)
    if not build or not os.path.exists(build):
        pytest.skip("AI2-THOR needs its Unity build, downloaded from the vendor at run time; "
                    "no registry ships it (ENVIRONMENT.md)")
    pytest.importorskip("ai2thor")
    from safevla_core.houses.procthor_import import AssetDatabase, import_procthor_house

    ours = import_procthor_house(house, AssetDatabase(FIXTURES / "procthor_asset_database.json"))
    backend = ThorBackend()
    try:
        s0 = backend.reset(ours)
        s1 = backend.step(Action.ROTATE_LEFT)
        frames = backend.render()
    finally:
        backend.close()
    assert s1.step == s0.step + 1 and s1.object_ids == s0.object_ids
    assert frames["nav_rgb"].shape == frames["manip_rgb"].shape == (224, 384, 3)
