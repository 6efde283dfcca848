"""Safety-PickUp and Safety-Fetch: arm geometry, sampling, success, and real expert episodes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.config import Config, TaskConfig
from safevla_core.tasks import FetchTask, ObjNavTask, PickUpTask, make_task
from safevla_core.tasks.pickup import (
    PICKUP_LATERAL_RANGE_M,
    arm_start_indices,
    grasp_point_at,
    grasp_point_in_base,
    gripper_clear,
    segments_cross,
)
from safevla_core.world import WorldState


def thor_obj(oid: str, otype: str, x: float, y_up: float, z: float) -> dict:
    """An object in the house schema; THOR (x, y up, z) is map (x, z, y)."""
    return {
        "id": oid,
        "objectType": otype,
        "position": {"x": x, "y": y_up, "z": z},
        "rotation": {"x": 0, "y": 0, "z": 0},
        "children": [],
    }


def wall(wid: str, x0: float, y0: float, x1: float, y1: float) -> dict:
    """A wall along map (x0, y0) -> (x1, y1) (THOR x, z)."""
    return {
        "id": wid,
        "roomId": "room|0",
        "polygon": [
            {"x": x0, "y": 0.0, "z": y0},
            {"x": x1, "y": 0.0, "z": y1},
            {"x": x1, "y": 2.5, "z": y1},
            {"x": x0, "y": 2.5, "z": y0},
        ],
    }


def grid(x_max: float, y_max: float, step: float = 0.25) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(0.0, x_max + 1e-9, step), np.arange(0.0, y_max + 1e-9, step))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def state(held: str | None, ids=("Apple|1", "Mug|1")) -> WorldState:
    n = len(ids)
    return WorldState(
        step=3,
        object_ids=tuple(ids),
        object_types=("Apple", "Mug")[:n],
        object_positions=np.zeros((n, 3)),
        object_quats=np.tile([1, 0, 0, 0], (n, 1)),
        robot_pose=np.zeros(3),
        held_object_id=held,
    )


# ------------------------------------------------------------------------- geometry
def test_grasp_point_in_base_frame():
    # x = -0.021; y = -(0.415 + arm); z = lift + 0.11 (measured constants).
    np.testing.assert_allclose(grasp_point_in_base(0.5, 0.2), [-0.021, -0.615, 0.61])


def test_grasp_point_at_rotates_with_the_base():
    # Yaw +90 deg (c = 0, s = 1); base-frame (gx, gy) = (-0.021, -0.415) at lift 0.3:
    # x = 1 + c*gx - s*gy = 1 + 0.415 = 1.415; y = 2 + s*gx + c*gy = 2 - 0.021 = 1.979;
    # z = 0.3 + 0.11 = 0.41.
    np.testing.assert_allclose(
        grasp_point_at((1.0, 2.0, math.pi / 2)), [1.415, 1.979, 0.41], atol=1e-12
    )


def test_grasp_constants_match_the_simulator():
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    from safevla_core.env import make_backend
    from safevla_core.houses.splits import load_house

    cfg = Config()
    backend = make_backend(cfg, 64, 48)
    try:
        backend.reset(load_house("test", 0, cfg.houses), robot_pose=(3.0, 3.0, 0.7), seed=0)
        for _ in range(40):  # unstow: wrist yaw back to 0 in 10 deg steps
            yaw = backend.world_state().wrist_yaw_rad
            if abs(yaw) < math.radians(5):
                break
            backend.step("wp" if yaw > 0 else "wm")
        for a in ("zp", "zp", "yp"):
            backend.step(a)
        s = backend.world_state()
        expected = grasp_point_at(s.robot_pose, s.lift_m, s.arm_m)
        np.testing.assert_allclose(backend.grasp_point(), expected, atol=0.01)
    finally:
        backend.close()


def test_segments_cross():
    segs = np.array([[[1.0, -1.0], [1.0, 1.0]]])  # a wall along x = 1
    a = np.array([[0.0, 0.0], [0.0, 2.0], [1.5, 0.0]])
    # (0,0)-(2,0) crosses x=1 at y=0 (inside the wall); (0,2)-(2,0) crosses x=1 at y=1: an
    # endpoint touch, not a proper crossing; (1.5,0)-(2,0) stays right of the wall.
    assert segments_cross(a, np.array([2.0, 0.0]), segs).tolist() == [True, False, False]
    assert segments_cross(a, np.array([2.0, 0.0]), np.zeros((0, 2, 2))).tolist() == [False] * 3


def test_arm_start_indices_band_and_walls():
    pts = np.array([[0.0, 0.0], [0.5, 0.0], [-0.6, 0.0], [0.0, 0.3], [0.0, -0.9]])
    segs = np.array([[[-0.3, -1.0], [-0.3, 1.0]]])  # wall at x = -0.3
    # Distances to the origin: 0, 0.5, 0.6, 0.3, 0.9 -> band [0.46, 0.82] keeps 1 and 2;
    # point 2 at x = -0.6 is behind the wall.
    assert PICKUP_LATERAL_RANGE_M == (0.46, 0.82)
    assert arm_start_indices(np.zeros(2), pts, segs).tolist() == [1]


def test_gripper_clear():
    # Robot at origin facing +x: gripper near (-0.021, -0.415). A box around it blocks; a box
    # 0.2 m further (gap 0.2 - 0.08 radius > 0) does not.
    assert not gripper_clear((0.0, 0.0, 0.0), np.array([[-0.1, -0.5, 0.1, -0.4]]))
    assert gripper_clear((0.0, 0.0, 0.0), np.array([[-0.1, -0.9, 0.1, -0.615]]))
    assert gripper_clear((0.0, 0.0, 0.0), np.zeros((0, 4)))


# ------------------------------------------------------------------------- tasks
def test_make_task_builds_all_three():
    assert isinstance(make_task(TaskConfig(name="objnav")), ObjNavTask)
    assert isinstance(make_task(TaskConfig(name="pickup")), PickUpTask)
    assert isinstance(make_task(TaskConfig(name="fetch")), FetchTask)


def test_pickup_success_only_with_a_held_target_at_end():
    task = PickUpTask()
    from safevla_core.tasks import EpisodeSpec

    spec = EpisodeSpec("pickup", "h", "Apple", ("Apple|1",), "pick up the apple", (0, 0, 0), 1)
    assert task.is_success(spec, state("Apple|1"), Action.END)
    assert not task.is_success(spec, state("Apple|1"), Action.PICKUP)  # not ended
    assert not task.is_success(spec, state(None), Action.END)  # nothing held
    assert not task.is_success(spec, state("Mug|1"), Action.END)  # wrong object
    assert task.reward(spec, state(None), state("Apple|1"), Action.END, True) == 10.0
    assert task.reward(spec, state(None), state(None), Action.END, False) == 0.0
    with pytest.raises(ValueError):
        task.is_success(spec, state(None), 25)


def test_pickup_sampling_places_target_within_reach_and_in_view():
    # An apple on a table at map (2, 2, 0.8); open floor around; one wall far away.
    house = {
        "id": "h",
        "rooms": [],
        "walls": [wall("w", 0.0, 4.0, 4.0, 4.0)],
        "doors": [],
        "objects": [thor_obj("Apple|1", "Apple", 2.0, 0.8, 2.0)],
    }
    pts = grid(4.0, 4.0)
    for seed in range(5):
        spec = PickUpTask().sample_episode(house, pts, np.random.default_rng(seed))
        x, y, yaw = spec.robot_pose
        d = math.hypot(2.0 - x, 2.0 - y)
        assert 0.46 <= d <= 0.82
        bearing = math.atan2(2.0 - y, 2.0 - x)
        err = math.atan2(math.sin(yaw - bearing), math.cos(yaw - bearing))
        assert abs(err) <= math.radians(20.0) + 1e-9  # facing it within the jitter
        assert spec.target_ids == ("Apple|1",) and "apple" in spec.instruction


def test_pickup_rejects_unreachable_heights_and_absent_targets():
    # A book at 1.3 m: its top 1.32 + 0.04 > 1.21 (lift 1.1 + 0.11): not a candidate.
    high = {
        "id": "h",
        "rooms": [],
        "walls": [],
        "doors": [],
        "objects": [thor_obj("Book|1", "Book", 2.0, 1.3, 2.0)],
    }
    with pytest.raises(ValueError, match="no pickupable"):
        PickUpTask().sample_episode(high, grid(4, 4), np.random.default_rng(0))
    spec = PickUpTask().sample_episode(
        high, grid(4, 4), np.random.default_rng(0), target_type="Apple"
    )  # absent: extreme failure
    assert spec.target_ids == ()


def test_fetch_starts_far_from_the_target():
    house = {
        "id": "h",
        "rooms": [],
        "walls": [],
        "doors": [],
        "objects": [thor_obj("Apple|1", "Apple", 1.0, 0.8, 1.0)],
    }
    for seed in range(5):
        spec = FetchTask().sample_episode(house, grid(6.0, 6.0), np.random.default_rng(seed))
        assert math.hypot(spec.robot_pose[0] - 1.0, spec.robot_pose[1] - 1.0) >= 2.5
        assert spec.task == "fetch"


# ------------------------------------------------------------------------- real simulator
@pytest.mark.parametrize("task,n", [("pickup", 2), ("fetch", 1)])
def test_expert_picks_up_in_generated_houses(task: str, n: int):
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    from safevla_core.env import SafetyChoresEnv
    from safevla_core.expert import ShortestPathExpert, run_expert_episode

    cfg = dataclasses.replace(Config(), task=TaskConfig(name=task))
    env = SafetyChoresEnv(cfg, split="test", eval_mode=True, image_size=(64, 48))
    try:
        results = [run_expert_episode(env, ShortestPathExpert(), i, 1000 + i) for i in range(n)]
    finally:
        env.close()
    # Measured on 50 test episodes: PickUp 50/50, Fetch 44/50 (docs/results/README.md); these
    # seeds succeed.
    assert all(r["success"] == 1.0 for r in results)
