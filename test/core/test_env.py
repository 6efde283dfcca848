"""The gymnasium environment on the real embedded simulator: short real episodes."""

from __future__ import annotations

import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.config import Config, load_config
from safevla_core.costs import COMPONENT_NAMES
from safevla_core.env import START_ACTION, SafetyChoresEnv, make_vector_env
from safevla_core.tasks import instruction_name


@pytest.fixture(scope="module")
def cfg() -> Config:
    # small houses split, short episodes, policy-size images (160x96)
    return load_config(
        None,
        {"houses": {"num_train": 4, "num_val": 1, "num_test": 2}, "task": {"max_steps_train": 30}},
    )


def _rollout(env: SafetyChoresEnv, seed: int, actions: list[int]):
    obs, info = env.reset(seed=seed)
    out = [(obs["nav_rgb"].copy(), info["instruction"])]
    for a in actions:
        obs, r, c, term, trunc, step_info = env.step(a)
        ws = env.world_state
        out.append(
            (
                obs["nav_rgb"].copy(),
                r,
                c,
                term,
                trunc,
                ws.robot_pose.copy(),
                ws.object_positions.copy(),
            )
        )
    return out


def test_reset_observation_layout(cfg):
    env = SafetyChoresEnv(cfg)
    try:
        obs, info = env.reset(seed=0)
        assert obs["nav_rgb"].shape == (96, 160, 3) and obs["nav_rgb"].dtype == np.uint8
        assert obs["manip_rgb"].shape == (96, 160, 3)
        assert obs["prev_action"] == START_ACTION and obs["episode_step"] == 0
        assert obs["instruction"] == info["instruction"]
        assert instruction_name(info["target_type"]) in obs["instruction"]
        assert env.observation_space.contains(obs)
        assert obs["nav_rgb"].std() > 5  # a real rendered scene, not a blank frame
    finally:
        env.close()


def test_episode_is_deterministic_under_a_seed(cfg):
    actions = [0, 0, 3, 0, 2, 6, 10, 0, 1, 5]
    a, b = SafetyChoresEnv(cfg), SafetyChoresEnv(cfg)
    try:
        ra, rb = _rollout(a, 7, actions), _rollout(b, 7, actions)
    finally:
        a.close()
        b.close()
    assert ra[0][1] == rb[0][1]
    np.testing.assert_array_equal(ra[0][0], rb[0][0])
    for x, y in zip(ra[1:], rb[1:], strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:5] == y[1:5]
        np.testing.assert_array_equal(x[5], y[5])
        np.testing.assert_array_equal(x[6], y[6])


def test_six_tuple_end_and_truncation(cfg):
    env = SafetyChoresEnv(cfg)
    try:
        env.reset(seed=1)
        obs, reward, cost, terminated, truncated, info = env.step(Action.ROTATE_LEFT)
        assert obs["prev_action"] == int(Action.ROTATE_LEFT) and obs["episode_step"] == 1
        assert not terminated and not truncated and "episode" not in info
        assert set(COMPONENT_NAMES) <= set(info["cost_breakdown"])
        _, _, _, terminated, truncated, info = env.step(Action.END)
        assert terminated and not truncated
        assert info["episode"]["length"] == 2.0
        # truncation at max_steps_train (30)
        env.reset(seed=2)
        for i in range(30):
            _, _, _, terminated, truncated, info = env.step(Action.ROTATE_LEFT_SMALL)
            assert terminated is False
            assert truncated is (i == 29)
        assert info["episode"]["length"] == 30.0
    finally:
        env.close()


def test_driving_straight_collides_and_costs_add_up(cfg):
    env = SafetyChoresEnv(cfg)
    try:
        env.reset(seed=3)
        per_step = []
        for _ in range(29):  # 29 x 0.2 m = 5.8 m straight: longer than any room (<= 5.5 m)
            _, _, cost, _, _, info = env.step(Action.MOVE_AHEAD)
            per_step.append((cost, info["robot_cost"], info["object_cost"]))
        _, _, cost, _, truncated, info = env.step(Action.MOVE_AHEAD)
        per_step.append((cost, info["robot_cost"], info["object_cost"]))
        assert truncated
        ep = info["episode"]
        assert ep["robot_cost"] >= 1.0  # it hit something
        assert ep["robot_cost"] == sum(p[1] for p in per_step)
        assert ep["object_cost"] == sum(p[2] for p in per_step)
        assert ep["cumulative_cost"] == pytest.approx(sum(p[0] for p in per_step))
    finally:
        env.close()


def test_bad_use_raises(cfg):
    env = SafetyChoresEnv(cfg)
    try:
        with pytest.raises(RuntimeError):
            env.step(0)
        env.reset(seed=0)
        with pytest.raises(ValueError):
            env.step(20)
        with pytest.raises(ValueError):
            env.reset(seed=0, options={"house_index": 4})
    finally:
        env.close()
    with pytest.raises(ValueError):
        SafetyChoresEnv(cfg, split="holdout")


def test_sync_vector_env_moves_cost_into_info(cfg):
    envs = make_vector_env(cfg, num_envs=2, mode="sync")
    try:
        obs, _ = envs.reset(seed=0)
        assert obs["nav_rgb"].shape == (2, 96, 160, 3)
        obs, rewards, terminated, truncated, infos = envs.step(np.array([int(Action.END), 0]))
        assert infos["cost"].shape == (2,)
        assert terminated.tolist() == [True, False]
        # same-step autoreset: env 0 already shows its next episode's first observation
        assert obs["episode_step"].tolist() == [0, 1]
        assert infos["final_info"]["episode"]["length"][0] == 1.0
    finally:
        envs.close()


def test_vector_env_final_step_cost_comes_from_final_info(cfg):
    """Same-step autoreset replaces a finished env's info: its last cost is in final_info."""
    from safevla_core.rl.train import step_costs

    envs = make_vector_env(cfg, num_envs=2, mode="sync")
    try:
        envs.reset(seed=3)
        # both envs drive straight until one of them is pressed against something
        for _ in range(29):
            _, _, term, trunc, infos = envs.step(np.array([0, 0]))
            assert not (term.any() or trunc.any())
        pressed = step_costs(infos, np.zeros(2, dtype=bool), ["total"])[:, 0]
        # step 30 truncates both envs at once: no env has a step info any more
        _, _, term, trunc, infos = envs.step(np.array([0, 0]))
        done = np.logical_or(term, trunc)
        assert done.tolist() == [True, True]
        assert "cost" not in infos and "cost_signals" not in infos
        final = step_costs(infos, done, ["total", "robot"])
        np.testing.assert_array_equal(final[:, 0], infos["final_info"]["cost"])
        np.testing.assert_array_equal(final[:, 1], infos["final_info"]["robot_cost"])
        final = final[:, 0]
        # an env pressed against a wall at step 29 is still pressed at step 30 (it cannot move)
        assert final[pressed > 0].min(initial=1.0) >= 1.0
    finally:
        envs.close()
