"""Config loading/validation, the action table and WorldState validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safevla_core.actions import (
    ACTION_EFFECTS,
    ACTION_NAMES,
    Action,
    action_name,
    parse_action,
)
from safevla_core.config import Config, config_to_dict, from_dict, load_config, parse_dotted
from safevla_core.world import WorldState


def test_action_table_matches_reference():
    assert len(ACTION_NAMES) == len(ACTION_EFFECTS) == 20
    assert ACTION_EFFECTS[Action.MOVE_AHEAD].base_forward_m == pytest.approx(0.2)
    assert ACTION_EFFECTS[Action.MOVE_BACK].base_forward_m == pytest.approx(-0.2)
    # r turns right = negative yaw in REP-103; 30 deg = 0.5236 rad
    assert ACTION_EFFECTS[Action.ROTATE_RIGHT].base_yaw_rad == pytest.approx(-math.pi / 6)
    assert ACTION_EFFECTS[Action.ROTATE_LEFT_SMALL].base_yaw_rad == pytest.approx(math.pi / 30)
    assert ACTION_EFFECTS[Action.LIFT_DOWN_SMALL].lift_m == pytest.approx(-0.02)
    assert ACTION_EFFECTS[Action.ARM_EXTEND].arm_m == pytest.approx(0.1)
    assert ACTION_EFFECTS[Action.WRIST_POS].wrist_yaw_rad == pytest.approx(-math.pi / 18)
    assert ACTION_EFFECTS[Action.END].terminal and not ACTION_EFFECTS[Action.END].moves_base


@pytest.mark.parametrize(
    "value,expected",
    [
        (0, Action.MOVE_AHEAD),
        ("zps", Action.ARM_EXTEND_SMALL),
        ("end", Action.END),
        ("pickup", Action.PICKUP),
        (Action.DROP, Action.DROP),
    ],
)
def test_parse_action_accepts_indices_and_names(value, expected):
    assert parse_action(value) is expected


@pytest.mark.parametrize("bad", [20, -1, "jump", True, 3.0, None])
def test_parse_action_rejects_unknown(bad):
    with pytest.raises(ValueError):
        parse_action(bad)


def test_start_action_is_one_past_the_actions_everywhere():
    from safevla_core.actions import START_ACTION
    from safevla_core.env import START_ACTION as ENV_START
    from safevla_core.policy.model import START_ACTION as POLICY_START

    # 20 actions, indices 0..19: the start token is 20, which parse_action rejects.
    assert START_ACTION == ENV_START == POLICY_START == 20
    with pytest.raises(ValueError, match="unknown action"):
        parse_action(START_ACTION)


def test_action_name():
    assert action_name(19) == "sub_done"


def test_config_overrides_and_validation(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  num_envs: 3\ntask:\n  cost_limit: 4\n")
    cfg = load_config(f, parse_dotted(["train.method=ppo", "policy.d_model=128"]))
    assert cfg.train.num_envs == 3 and cfg.task.cost_limit == 4.0
    assert cfg.train.method == "ppo" and cfg.policy.d_model == 128
    # round trip through the plain dict saved with checkpoints
    assert from_dict(Config, config_to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown key"):
        load_config(None, {"train": {"num_env": 3}})
    with pytest.raises(ValueError, match="method"):
        load_config(None, {"train": {"method": "sac"}})
    with pytest.raises(ValueError, match="divisible"):
        load_config(None, {"policy": {"d_model": 100, "num_heads": 8}})
    with pytest.raises(ValueError, match="expected int"):
        load_config(None, {"train": {"num_envs": 2.5}})
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ValueError, match="malformed YAML"):
        load_config(bad)


def test_repository_training_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "config"
    files = sorted(root.glob("train_*.yaml")) + [root / "paper.yaml"]
    assert len(files) >= 2
    # Each task's limit is the paper's (REFERENCE.md): ObjNav 2.31964 (20% of FLaRe's 12.356),
    # PickUp 0.2, Fetch 4.
    paper_limit = {"objnav": 2.31964, "pickup": 0.2, "fetch": 4.0}
    for path in files:
        cfg = load_config(path)
        assert cfg.task.cost_limit == paper_limit[cfg.task.name], path.name
    paper = load_config(root / "paper.yaml")
    assert (paper.train.num_envs, paper.train.num_steps, paper.policy.d_model) == (32, 128, 512)


def _state(**kw):
    base = dict(
        step=0,
        object_ids=("a",),
        object_types=("Vase",),
        object_positions=[[0, 0, 1]],
        object_quats=[[1, 0, 0, 0]],
        robot_pose=[0, 0, 0],
    )
    base.update(kw)
    return WorldState(**base)


def test_world_state_validates():
    s = _state()
    assert s.last_seen_step.tolist() == [-1]
    assert s.type_of("a") == "Vase"
    s2 = _state(structure_ids=frozenset({"wall|1|2", "floor|0", "door|1|2"}))
    assert s2.type_of("wall|1|2") == "Wall" and s2.type_of("door|1|2") == "Door"
    assert s2.type_of("floor|0") == "Floor"
    with pytest.raises(KeyError):
        s.type_of("b")
    with pytest.raises(ValueError, match="NaN"):
        _state(object_positions=[[np.nan, 0, 1]])
    with pytest.raises(ValueError, match=r"\(1, 4\)"):
        _state(object_quats=[[1, 0, 0]])
    with pytest.raises(ValueError, match="unique"):
        _state(
            object_ids=("a", "a"),
            object_types=("Vase", "Vase"),
            object_positions=[[0, 0, 0]] * 2,
            object_quats=[[1, 0, 0, 0]] * 2,
        )
    with pytest.raises(ValueError, match="not finite"):
        _state(lift_m=float("inf"))


def test_type_visible_reads_the_navigation_cameras_visible_ids():
    # two mugs and a vase; only mug "m2" is in view: Mug is visible, Vase (in the state but not in
    # view) and Apple (not in the state) are not
    s = _state(
        object_ids=("m1", "v", "m2"),
        object_types=("Mug", "Vase", "Mug"),
        object_positions=[[0, 0, 1]] * 3,
        object_quats=[[1, 0, 0, 0]] * 3,
        visible_ids=frozenset({"m2"}),
        last_seen_step=[-1, 0, 0],  # seen in the manipulation camera does not count
    )
    assert s.type_visible("Mug")
    assert not s.type_visible("Vase") and not s.type_visible("Apple")


def test_cost_limits_name_known_signals():
    from safevla_core.config import COST_SIGNALS, TaskConfig
    from safevla_core.costs import COMPONENT_NAMES, SIGNAL_SUMMARY_KEYS

    assert set(SIGNAL_SUMMARY_KEYS) == set(COST_SIGNALS)
    assert COST_SIGNALS[3:] == COMPONENT_NAMES
    assert TaskConfig().constraints() == {"total": 2.31964}
    assert TaskConfig(cost_limits={"robot": 1, "corner": 0.5}).constraints() == {
        "robot": 1.0,
        "corner": 0.5,
    }
    with pytest.raises(ValueError, match="unknown cost signal"):
        TaskConfig(cost_limits={"collisions": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        TaskConfig(cost_limits={"robot": -1.0})
    with pytest.raises(ValueError, match="at least one"):
        TaskConfig(cost_limits={})


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        # Negative radius: no object is ever "near" (distance >= 0 > radius): object cost off.
        ({"settle_ignore_radius_m": -1.0}, r"settle_ignore_radius_m must be >= 0\.935 m"),
        # 0.5 m < the gripper's 0.935 m reach: what the extended arm knocks over is ignored.
        ({"settle_ignore_radius_early_m": 0.5}, r"settle_ignore_radius_early_m must be >= 0\.935"),
        ({"settle_ignore_radius_m": math.nan}, r"must be >= 0\.935 m"),
        ({"settle_steps": -1}, r"settle_steps must be an integer >= 0"),
        # step - last_seen >= 1 for an object not seen now, so a memory < 1 never fires.
        ({"blind_spot_memory_steps": -1}, r"blind_spot_memory_steps must be an integer >= 1"),
        ({"blind_spot_memory_steps": 0}, r"blind_spot_memory_steps must be an integer >= 1"),
        # free fraction < 0 is impossible, so 0 never fires; > 1 is not a fraction.
        ({"corner_free_fraction": 0.0}, r"corner_free_fraction must be in \(0, 1\]"),
        ({"corner_free_fraction": -0.1}, r"corner_free_fraction must be in \(0, 1\]"),
        ({"corner_free_fraction": 1.5}, r"corner_free_fraction must be in \(0, 1\]"),
        # A rotation's angle is at most 180 deg: Theta = 180 never fires.
        ({"disturb_rotation_deg": 180.0}, r"disturb_rotation_deg must be in \(0, 180\)"),
        ({"disturb_position_m": -0.05}, r"disturb_position_m must be a finite number > 0"),
        ({"critical_point_m": math.inf}, r"critical_point_m must be a finite number > 0"),
        ({"corner_samples": 0}, r"corner_samples must be an integer >= 1"),
        ({"fragile_cluster_size": 1}, r"fragile_cluster_size must be an integer >= 2"),
        ({"forbidden_objects": "no"}, r"forbidden_objects(:| must be) (expected )?true"),
    ],
)
def test_cost_config_rejects_settings_that_switch_a_cost_off(overrides, match):
    from safevla_core.config import CostConfig

    with pytest.raises(ValueError, match=match):
        CostConfig(**overrides)
    # The same through a YAML override.
    with pytest.raises(ValueError, match=match):
        load_config(None, {"costs": overrides})


def test_cost_config_accepts_the_range_ends():
    from safevla_core.config import MIN_SETTLE_RADIUS_M, CostConfig
    from safevla_core.costs import compute_costs

    # The reach: hypot(0.021, 0.415 + 0.52) = hypot(0.021, 0.935) = 0.93524 m.
    assert MIN_SETTLE_RADIUS_M == pytest.approx(0.93524, abs=1e-5)
    cfg = CostConfig(
        settle_ignore_radius_early_m=MIN_SETTLE_RADIUS_M,
        settle_ignore_radius_m=math.inf,
        settle_steps=0,
        blind_spot_memory_steps=1,
        corner_free_fraction=1.0,
        disturb_rotation_deg=179.0,
    )
    # Memory 1 still fires: chair last seen at 199, not visible at 200, 200 - 199 = 1 <= 1.
    prev = _state(step=199, object_types=("ArmChair",))
    curr = _state(
        step=200,
        object_types=("ArmChair",),
        collided_ids=frozenset({"a"}),
        last_seen_step=np.array([199]),
    )
    assert compute_costs(prev, curr, Action.MOVE_AHEAD, cfg).blind_spot == 1


def test_task_config_rejects_an_infinite_cost_limit():
    from safevla_core.config import TaskConfig

    # b = inf: J_c - b < 0 always, the multiplier only ever decreases -> no constraint.
    with pytest.raises(ValueError, match="cost_limit must be a finite number >= 0"):
        TaskConfig(cost_limit=math.inf)
    with pytest.raises(ValueError, match="success_distance_m"):
        TaskConfig(success_distance_m=math.nan)
