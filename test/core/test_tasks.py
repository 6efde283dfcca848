"""Hand-worked checks of the task definitions (safevla_core.tasks), on hand-built house dicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.config import TaskConfig
from safevla_core.tasks import EpisodeSpec, ObjNavTask, Task, instruction_name, make_task
from safevla_core.tasks.objnav import OBJNAV_TEMPLATES
from safevla_core.world import WorldState


def thor_obj(oid: str, otype: str, x: float, y_up: float, z: float, children=None) -> dict:
    """An object in the house schema; THOR position (x, y up, z) maps to map (x, z, y)."""
    return {
        "id": oid,
        "objectType": otype,
        "position": {"x": x, "y": y_up, "z": z},
        "rotation": {"x": 0, "y": 0, "z": 0},
        "children": children or [],
    }


def make_house() -> dict:
    """Two alarm clocks, a bed, a knife (not a nav target) and an apple nested on a table."""
    return {
        "id": "test_0001",
        "rooms": [],
        "walls": [],
        "doors": [],
        "objects": [
            thor_obj("AlarmClock|1", "AlarmClock", 1.0, 0.8, 1.0),  # map (1, 1)
            thor_obj("AlarmClock|2", "AlarmClock", 7.0, 0.8, 1.0),  # map (7, 1)
            thor_obj("Bed|1", "Bed", 4.0, 0.3, 4.0),  # map (4, 4)
            thor_obj("Knife|1", "Knife", 2.0, 0.9, 4.0),
            thor_obj(
                "CoffeeTable|1",
                "CoffeeTable",
                6.0,
                0.2,
                4.0,
                children=[thor_obj("Apple|1", "Apple", 6.0, 0.5, 4.0)],
            ),
        ],
    }


def grid(x_max: float = 8.0, y_max: float = 5.0, step: float = 0.25) -> np.ndarray:
    """Reachable (M, 2) points on a regular grid."""
    xs, ys = np.meshgrid(np.arange(0.0, x_max + 1e-9, step), np.arange(0.0, y_max + 1e-9, step))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def state_with(target_xy, robot_xy, visible: bool = True, held=None) -> WorldState:
    """A state with one target ``Apple|1`` (0.8 m high) and the robot at ``robot_xy``."""
    return WorldState(
        step=20,
        object_ids=("Apple|1",),
        object_types=("Apple",),
        object_positions=np.array([[target_xy[0], target_xy[1], 0.8]]),
        object_quats=np.array([[1.0, 0.0, 0.0, 0.0]]),
        robot_pose=np.array([robot_xy[0], robot_xy[1], 0.3]),
        visible_ids=frozenset({"Apple|1"}) if visible else frozenset(),
        held_object_id=held,
    )


def apple_spec() -> EpisodeSpec:
    return EpisodeSpec(
        task="objnav",
        house_id="h",
        target_type="Apple",
        target_ids=("Apple|1",),
        instruction="find a apple",
        robot_pose=(0.0, 0.0, 0.0),
        seed=0,
    )


# --- success and reward -------------------------------------------------------------------------


def test_success_at_exactly_two_metres_not_beyond():
    task = ObjNavTask(TaskConfig())
    spec = apple_spec()
    # Horizontal distance sqrt(1.2^2 + 1.6^2) = sqrt(4.0) = 2.0 m (the 0.8 m height is ignored).
    assert task.is_success(spec, state_with((1.2, 1.6), (0.0, 0.0)), Action.END)
    # sqrt(1.206^2 + 1.608^2) = 2.01 m > 2.0 -> fail.
    assert not task.is_success(spec, state_with((1.206, 1.608), (0.0, 0.0)), Action.END)


def test_success_needs_visibility_and_end():
    task = ObjNavTask(TaskConfig())
    spec = apple_spec()
    near = (0.5, 0.0)  # 0.5 m away
    assert not task.is_success(spec, state_with(near, (0.0, 0.0), visible=False), Action.END)
    assert not task.is_success(spec, state_with(near, (0.0, 0.0)), Action.MOVE_AHEAD)
    assert not task.is_success(spec, state_with(near, (0.0, 0.0)), Action.SUB_DONE)
    assert task.is_success(spec, state_with(near, (0.0, 0.0)), int(Action.END))
    with pytest.raises(ValueError):
        task.is_success(spec, state_with(near, (0.0, 0.0)), 99)
    # An "extreme failure" episode (no targets) never succeeds.
    empty = EpisodeSpec("objnav", "h", "Vase", (), "find a vase", (0.0, 0.0, 0.0), 0)
    assert not task.is_success(empty, state_with(near, (0.0, 0.0)), Action.END)


def test_reward_values():
    task = ObjNavTask(TaskConfig())
    s = state_with((0.5, 0.0), (0.0, 0.0))
    assert task.reward(apple_spec(), s, s, Action.END, success=True) == 10.0
    assert task.reward(apple_spec(), s, s, Action.END, success=False) == 0.0
    # No step penalty on ordinary steps.
    assert task.reward(apple_spec(), s, s, Action.MOVE_AHEAD, success=False) == 0.0
    assert (
        ObjNavTask(TaskConfig(success_reward=5.0)).reward(
            apple_spec(), s, s, Action.END, success=True
        )
        == 5.0
    )


def test_exempt_ids_are_the_targets_a_task_means_to_hold():
    import dataclasses

    from safevla_core.costs import compute_costs

    # Apple|1 (the target) held and lifted 0.3 m; Mug|1 not held.
    before = WorldState(
        step=1,
        object_ids=("Apple|1", "Mug|1"),
        object_types=("Apple", "Mug"),
        object_positions=np.array([[0.5, 0.0, 0.8], [0.5, 1.0, 0.8]]),
        object_quats=np.tile([1.0, 0, 0, 0], (2, 1)),
        robot_pose=np.zeros(3),
    )
    after = dataclasses.replace(
        before,
        step=2,
        held_object_id="Apple|1",
        object_positions=np.array([[0.5, 0.0, 1.1], [0.5, 1.0, 0.8]]),
    )
    pick = dataclasses.replace(apple_spec(), task="pickup", instruction="pick up the apple")
    fetch = dataclasses.replace(pick, task="fetch")
    # PickUp and Fetch end with the target held: the target is named; the held object is not
    # added for being held (a held Mug would not be exempt).
    for spec, name in ((pick, "pickup"), (fetch, "fetch")):
        task = make_task(TaskConfig(name=name))
        assert task.exempt_ids(spec, after) == {"Apple|1"}
        # Lift 0.3 m > D = 0.05 of the held target: exempt -> c_object = 0.
        assert (
            compute_costs(
                before, after, Action.LIFT_UP, exempt_ids=task.exempt_ids(spec, after)
            ).object_cost
            == 0
        )
    # ObjNav never intends holding: nothing is exempt, so the same lift is c_object = 1.
    objnav = ObjNavTask(TaskConfig())
    assert objnav.exempt_ids(apple_spec(), after) == frozenset()
    assert (
        compute_costs(
            before, after, Action.LIFT_UP, exempt_ids=objnav.exempt_ids(apple_spec(), after)
        ).object_cost
        == 1
    )


# --- sampling -----------------------------------------------------------------------------------


def test_start_pose_is_far_from_every_target():
    task = ObjNavTask(TaskConfig())
    house, pts = make_house(), grid()
    # Map positions of the targets, from the THOR (x, z) of make_house.
    target_xy = {
        "AlarmClock": [(1.0, 1.0), (7.0, 1.0)],
        "Bed": [(4.0, 4.0)],
        "Apple": [(6.0, 4.0)],
    }
    for seed in range(40):
        spec = task.sample_episode(house, pts, np.random.default_rng(seed))
        x, y, yaw = spec.robot_pose
        d_min = min(math.hypot(x - tx, y - ty) for tx, ty in target_xy[spec.target_type])
        assert d_min >= 2.5  # success distance 2.0 + margin 0.5
        assert -math.pi <= yaw < math.pi
        assert any(np.allclose((x, y), p) for p in pts)


def test_sample_targets_and_types():
    task = ObjNavTask(TaskConfig())
    house, pts = make_house(), grid()
    types = {
        task.sample_episode(house, pts, np.random.default_rng(s)).target_type for s in range(60)
    }
    # Nav targets present: AlarmClock, Apple (nested child), Bed; Knife and CoffeeTable are not.
    # P(missing one of 3 in 60 uniform draws) <= 3 * (2/3)^60 ~ 1e-10.
    assert types == {"AlarmClock", "Apple", "Bed"}
    spec = task.sample_episode(house, pts, np.random.default_rng(0), target_type="AlarmClock")
    assert spec.target_ids == ("AlarmClock|1", "AlarmClock|2")
    assert spec.task == "objnav" and spec.house_id == "test_0001"
    assert spec.instruction in {t.format(name="alarm clock") for t in OBJNAV_TEMPLATES}


def test_sampling_is_deterministic_under_a_seed():
    task = ObjNavTask(TaskConfig())
    house, pts = make_house(), grid()
    a = task.sample_episode(house, pts, np.random.default_rng(123))
    b = task.sample_episode(house, pts, np.random.default_rng(123))
    assert a == b
    others = [task.sample_episode(house, pts, np.random.default_rng(s)) for s in range(5)]
    assert len({(o.robot_pose, o.instruction) for o in others}) > 1


def test_absent_target_type_gives_empty_targets():
    task = ObjNavTask(TaskConfig())
    spec = task.sample_episode(make_house(), grid(), np.random.default_rng(0), target_type="Vase")
    assert spec.target_ids == () and spec.target_type == "Vase"
    assert "vase" in spec.instruction


def test_sampling_errors():
    task = ObjNavTask(TaskConfig())
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown target type"):
        task.sample_episode(make_house(), grid(), rng, target_type="Vaze")
    no_nav = dict(make_house(), objects=[thor_obj("Knife|1", "Knife", 2.0, 0.9, 4.0)])
    with pytest.raises(ValueError, match="no navigation target"):
        task.sample_episode(no_nav, grid(), rng)
    # Every reachable point within 1 m of the bed at map (4, 4): none is 2.5 m away.
    near_bed = np.array([[4.0, 3.0], [4.5, 4.0], [3.5, 4.5]])
    with pytest.raises(ValueError, match="at least 2.5 m"):
        task.sample_episode(make_house(), near_bed, rng, target_type="Bed")
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        task.sample_episode(make_house(), np.zeros((4, 3)), rng)
    with pytest.raises(ValueError, match="NaN"):
        task.sample_episode(make_house(), np.array([[np.nan, 0.0]]), rng)
    bad = dict(make_house(), objects=[{"id": "x", "objectType": "Bed"}])
    with pytest.raises(ValueError, match="position"):
        task.sample_episode(bad, grid(), rng)


# --- names, factory, spec -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("otype", "name"),
    [
        ("AlarmClock", "alarm clock"),
        ("Apple", "apple"),
        ("HousePlant", "house plant"),
        ("WineGlass", "wine glass"),
        ("ArmChair", "armchair"),
        ("TVStand", "tv stand"),
    ],
)
def test_instruction_names(otype, name):
    assert instruction_name(otype) == name


def test_instruction_name_rejects_empty():
    with pytest.raises(ValueError):
        instruction_name("")


def test_make_task():
    task = make_task(TaskConfig(name="objnav"))
    assert isinstance(task, ObjNavTask) and isinstance(task, Task) and task.name == "objnav"
    for name in ("pickup", "fetch"):
        other = make_task(TaskConfig(name=name, cost_limit=0.2))
        assert isinstance(other, Task) and other.name == name


def test_episode_spec_validation():
    with pytest.raises(ValueError, match="robot_pose"):
        EpisodeSpec("objnav", "h", "Apple", ("Apple|1",), "find a apple", (0.0, float("nan"), 0), 0)
    with pytest.raises(ValueError, match="duplicate"):
        EpisodeSpec("objnav", "h", "Apple", ("A", "A"), "find a apple", (0.0, 0.0, 0.0), 0)
