"""The privileged expert: grid planning on hand-built grids, action choice, and real episodes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.config import Config, TaskConfig
from safevla_core.expert import (
    GridMap,
    ShortestPathExpert,
    heading_action,
    make_expert,
    run_expert_episode,
    shortest_path,
    step_action,
    turn_action,
)
from safevla_core.tasks.base import EpisodeSpec
from safevla_core.world import WorldState


def cells(rows: list[str]) -> set[tuple[int, int]]:
    """Free cells of an ASCII map: '.' free, '#' blocked; row 0 is the top (largest y)."""
    h = len(rows)
    return {(x, h - 1 - y) for y, row in enumerate(rows) for x, ch in enumerate(row) if ch == "."}


# ------------------------------------------------------------------------- planning (pure)
def test_shortest_path_straight_line_has_length_three():
    free = cells(["...."])
    path = shortest_path(free, (0, 0), [(3, 0)], clearance_penalty=0.0)
    assert path == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_shortest_path_goes_around_a_wall_through_the_gap():
    # The wall '#' column x=2 is open only at the top row (y=2): the path must pass (2, 2).
    free = cells(
        [
            ".....",
            "..#..",
            "..#..",
        ]
    )
    path = shortest_path(free, (0, 0), [(4, 0)], clearance_penalty=0.0)
    assert path is not None and (2, 2) in path
    # Cost: (0,0)->(1,1) diag, (1,1)->(2,2) diag, (2,2)->(3,1) diag, (3,1)->(4,0) diag = 4 cells.
    assert len(path) == 5


def test_no_squeeze_between_two_blocked_cells():
    # (0,0) -> (1,1) diagonal passes between (1,0) and (0,1), both blocked: not allowed.
    free = cells(
        [
            "#.",
            ".#",
        ]
    )
    assert shortest_path(free, (0, 0), [(1, 1)]) is None


def test_diagonal_allowed_when_one_side_is_free():
    free = cells(
        [
            "..",
            ".#",
        ]
    )
    assert shortest_path(free, (0, 0), [(1, 1)], clearance_penalty=0.0) == [(0, 0), (1, 1)]


def test_nearest_of_several_goals_and_unreachable_goals():
    free = cells([".......", "#######", "......."])
    # Top row is y=2, bottom row y=0, separated by a wall row. From (3, 2) the goal (6, 2) is
    # 3 steps away; (0, 0) lies in the unconnected bottom row.
    path = shortest_path(free, (3, 2), [(0, 0), (6, 2)], clearance_penalty=0.0)
    assert path[-1] == (6, 2) and len(path) == 4  # (0,0) is in the other, unconnected row
    assert shortest_path(free, (3, 2), [(0, 0)]) is None
    assert shortest_path(free, (3, 2), [(3, 2)]) == [(3, 2)]


def test_clearance_penalty_prefers_the_middle_of_a_corridor():
    # A 3-wide corridor; start and goal on the bottom edge. With the penalty the path leaves the
    # wall-side row, without it it stays there (both 6 cells long in steps).
    free = cells(
        [
            "#######",
            ".......",
            ".......",
            ".......",
            "#######",
        ]
    )
    flat = shortest_path(free, (0, 1), [(6, 1)], clearance_penalty=0.0)
    assert all(c[1] == 1 for c in flat)
    mid = shortest_path(free, (0, 1), [(6, 1)], clearance_penalty=0.5)
    assert any(c[1] == 2 for c in mid)


def test_gridmap_rejects_off_grid_points_and_rounds_positions():
    with pytest.raises(ValueError, match="grid"):
        GridMap(np.array([[0.1, 0.0]]))
    with pytest.raises(ValueError):
        GridMap(np.zeros((0, 2)))
    g = GridMap(np.array([[0.0, 0.0], [0.25, 0.0], [0.5, 0.0]]))
    assert g.cell_of((0.3, 0.05)) == (1, 0)  # 0.3 / 0.25 = 1.2 -> 1
    assert g.is_free((0.49, 0.0)) and not g.is_free((0.0, 0.25))
    assert g.line_free(np.array([0.0, 0.0]), np.array([0.5, 0.0]))
    assert not g.line_free(np.array([0.0, 0.0]), np.array([0.5, 0.5]))


# ------------------------------------------------------------------------- action choice
def test_heading_action_turns_then_moves():
    pose = np.array([0.0, 0.0, 0.0])
    assert heading_action(pose, np.array([1.0, 0.0])) == Action.MOVE_AHEAD
    # Waypoint at 45 deg left: error 45 > 18 -> large left turn.
    assert heading_action(pose, np.array([1.0, 1.0])) == Action.ROTATE_LEFT
    # 10 deg right: 3.3 < 10 <= 18 -> small right turn.
    right10 = np.array([math.cos(math.radians(-10)), math.sin(math.radians(-10))])
    assert heading_action(pose, right10) == Action.ROTATE_RIGHT_SMALL
    # 2 deg: within the tolerance -> move.
    left2 = np.array([math.cos(math.radians(2)), math.sin(math.radians(2))])
    assert heading_action(pose, left2) == Action.MOVE_AHEAD
    # Behind: yaw pi - 0.1, bearing 0 -> error 0 - (pi - 0.1) = -3.04 rad, already in (-pi, pi]:
    # a large right turn.
    assert heading_action(np.array([0.0, 0.0, math.pi - 0.1]), np.array([1.0, 0.0])) == (
        Action.ROTATE_RIGHT
    )


def test_a_heading_tolerance_moves_ahead_where_the_default_turns():
    from safevla_core.expert import make_expert

    pose = np.array([0.0, 0.0, 0.0])

    def at(deg: float) -> np.ndarray:
        return np.array([math.cos(math.radians(deg)), math.sin(math.radians(deg))])

    tol = math.radians(12.0)
    # 10 deg right: a small turn at the default 3.3 deg, ahead within 12 deg
    assert heading_action(pose, at(-10)) == Action.ROTATE_RIGHT_SMALL
    assert heading_action(pose, at(-10), tol) == Action.MOVE_AHEAD
    # 15 deg left: 12 < 15 <= 18 -> still a small turn; 20 deg: 20 > 18 -> a large one
    assert heading_action(pose, at(15), tol) == Action.ROTATE_LEFT_SMALL
    assert heading_action(pose, at(20), tol) == Action.ROTATE_LEFT
    # the config reaches the expert; a tolerance at or above the 18 deg large turn is refused
    expert = make_expert(TaskConfig(expert="explore", expert_heading_tolerance_deg=12.0))
    assert expert.heading_tolerance_rad == pytest.approx(tol)
    for bad in (18.0, -1.0):
        with pytest.raises(ValueError, match="expert_heading_tolerance_deg"):
            TaskConfig(expert_heading_tolerance_deg=bad)
    with pytest.raises(ValueError, match="heading_tolerance_rad"):
        ShortestPathExpert(heading_tolerance_rad=math.radians(18.0))


def test_turn_action_sign_and_wrap():
    assert turn_action(math.radians(25)) == Action.ROTATE_LEFT
    assert turn_action(math.radians(-25)) == Action.ROTATE_RIGHT
    assert turn_action(math.radians(-5)) == Action.ROTATE_RIGHT_SMALL
    assert turn_action(math.radians(1)) is None
    # 350 deg is -10 deg after wrapping: a small right turn.
    assert turn_action(math.radians(350)) == Action.ROTATE_RIGHT_SMALL


def test_step_action_picks_large_small_or_none():
    up = (Action.LIFT_UP, Action.LIFT_UP_SMALL)
    down = (Action.LIFT_DOWN, Action.LIFT_DOWN_SMALL)
    assert step_action(0.25, up, down, 0.015) == Action.LIFT_UP  # 0.25 > 0.06
    assert step_action(-0.04, up, down, 0.015) == Action.LIFT_DOWN_SMALL  # 0.015 < 0.04 <= 0.06
    assert step_action(0.01, up, down, 0.015) is None


# ------------------------------------------------------------------------- real simulator
def _episodes(task: str, n: int) -> list[dict]:
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    import dataclasses

    from safevla_core.env import SafetyChoresEnv

    cfg = dataclasses.replace(Config(), task=TaskConfig(name=task))
    try:
        env = SafetyChoresEnv(cfg, split="test", eval_mode=True, image_size=(64, 48))
    except Exception as exc:  # no GL context on this machine
        pytest.skip(f"cannot start the embedded simulator: {exc}")
    expert = ShortestPathExpert(cfg.task.success_distance_m)
    try:
        return [run_expert_episode(env, expert, i, 1000 + i) for i in range(n)]
    finally:
        env.close()


def test_objnav_expert_succeeds_in_generated_test_houses():
    results = _episodes("objnav", 3)
    # Measured on 50 test episodes: 48/50 (docs/results/README.md); these 3 seeds succeed.
    assert [r["success"] for r in results] == [1.0, 1.0, 1.0]
    for r in results:
        assert r["length"] < 200 and r["path_length_m"] > 0


def test_expert_ends_at_once_when_the_target_is_absent():
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    from safevla_core.env import SafetyChoresEnv
    from safevla_core.houses.splits import load_house
    from safevla_core.objects import NAV_TARGET_TYPES
    from safevla_core.tasks.objnav import house_targets

    cfg = Config()
    absent = sorted(NAV_TARGET_TYPES - set(house_targets(load_house("test", 0, cfg.houses))))[0]
    env = SafetyChoresEnv(cfg, split="test", eval_mode=True, image_size=(64, 48))
    try:
        r = run_expert_episode(env, ShortestPathExpert(), 0, 5, target_type=absent)
    finally:
        env.close()
    assert r["length"] == 1.0 and r["success"] == 0.0


def test_expert_act_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        ShortestPathExpert().act(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ShortestPathExpert(success_distance_m=0.0)


def test_objnav_expert_ends_with_a_margin_inside_the_success_region():
    # The expert's `end` must leave room for a learner's imprecision: target visible, centred
    # within END_CENTRE_RAD (15 deg) of the camera axis, and at END_DISTANCE_M (1.5 m) or, when
    # no goal cell gets closer, at most one goal-cell offset beyond it. Goal cells lie within
    # 1.5 m of the target and the expert stops within 1.5 x MIN_WAYPOINT_DIST_M (0.18 m) of a
    # cell centre, so every `end` is within 1.5 + 0.18 = 1.68 m. (Ending at the first step
    # inside 2 m put the end at a median 1.90 m and 14 deg off-axis.)
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    from safevla_core.env import SafetyChoresEnv
    from safevla_core.expert import END_CENTRE_RAD, END_DISTANCE_M, wrap_angle

    assert END_DISTANCE_M == 1.5 and END_CENTRE_RAD == pytest.approx(math.radians(15))
    cfg = Config()
    env = SafetyChoresEnv(cfg, split="test", eval_mode=True, image_size=(64, 48))
    expert = ShortestPathExpert(cfg.task.success_distance_m)
    ends: list[tuple[float, float]] = []

    def on_step(obs, action, reward, cost, info, state):
        if action != Action.END:
            return
        st = env.world_state
        xy = st.robot_pose[:2]
        seen = [
            (
                float(np.linalg.norm(p[:2] - xy)),
                abs(wrap_angle(math.atan2(p[1] - xy[1], p[0] - xy[0]) - st.robot_pose[2])),
            )
            for t, p in expert._targets(st)
            if t in st.visible_ids
        ]
        ends.append(min(seen) if seen else (math.inf, math.inf))

    try:
        results = [run_expert_episode(env, expert, i, 2000 + i, on_step=on_step) for i in range(6)]
    finally:
        env.close()
    assert len(ends) == 6 and all(r["success"] == 1.0 for r in results)
    for dist, bearing in ends:
        assert dist <= 1.68 and bearing <= math.radians(15) + 1e-9


def test_unknown_expert_name_is_rejected():
    with pytest.raises(ValueError, match="task.expert"):
        TaskConfig(expert="oracle")
    assert make_expert(TaskConfig(expert="explore")).explore
    assert not make_expert(TaskConfig()).explore


def _twin_run(explore: bool, house: int, seed: int) -> tuple[list[Action], list[Action], int]:
    """Drive one test episode with the expert, and beside it a twin told another target.

    The twin's target is the nav-target object of another type farthest from the true targets.
    Returns both action sequences up to the first step at which either target is in sight, and
    that step.
    """
    import dataclasses

    from safevla_core.env import SafetyChoresEnv
    from safevla_core.houses.splits import load_house
    from safevla_core.objects import NAV_TARGET_TYPES
    from safevla_core.tasks.pickup import wall_segments

    cfg = Config()
    env = SafetyChoresEnv(cfg, split="test", eval_mode=True, image_size=(64, 48))
    try:
        env.reset(seed=seed, options={"house_index": house})
        spec, state = env.spec_, env.world_state
        assert spec is not None
        targets = np.stack([state.object_positions[state.index_of(t)][:2] for t in spec.target_ids])
        others = [
            (float(np.min(np.linalg.norm(targets - state.object_positions[i][:2], axis=1))), oid)
            for i, (oid, otype) in enumerate(zip(state.object_ids, state.object_types, strict=True))
            if otype in NAV_TARGET_TYPES and otype != spec.target_type
        ]
        other = max(others)[1]  # the nav target farthest from every true target
        twin_spec = dataclasses.replace(spec, target_ids=(other,))
        walls = wall_segments(load_house("test", house, cfg.houses))
        expert = ShortestPathExpert(explore=explore)
        twin = ShortestPathExpert(explore=explore)
        expert.reset(spec, env.backend.reachable_positions(), state, walls=walls)
        twin.reset(twin_spec, env.backend.reachable_positions(), state, walls=walls)
        mine: list[Action] = []
        theirs: list[Action] = []
        for step in range(200):
            state = env.world_state
            if expert._target_in_sight(state) or twin._target_in_sight(state):
                return mine, theirs, step
            mine.append(expert.act(state))
            theirs.append(twin.act(state))
            *_, terminated, truncated, _ = env.step(int(mine[-1]))
            if terminated or truncated:
                break
        return mine, theirs, len(mine)
    finally:
        env.close()


def test_exploring_expert_acts_without_knowing_where_the_target_is():
    # The point of the exploring expert (an imitable teacher): until a target is in sight, its
    # actions cannot depend on where the target is. An expert told that the target is another
    # object, not in sight either, must choose the very same actions on the same states: first the
    # look-around (11 large left turns), then frontier exploration. The shortest-path expert fails
    # the same check (it heads for the target it knows). Measured: the exploring pair agrees on
    # 23, 98, 18 and 0 steps before a sighting in test houses 0-3; the shortest-path pairs
    # differ in houses 0-2.
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    from safevla_core.expert import LOOK_AROUND_TURNS

    checked = contrasted = 0
    for house, seed in ((0, 7), (1, 8), (2, 9), (3, 10)):
        mine, theirs, steps = _twin_run(True, house, seed)
        assert mine == theirs
        look = min(steps, LOOK_AROUND_TURNS)
        assert mine[:look] == [Action.ROTATE_LEFT] * look
        checked += steps
        if steps > LOOK_AROUND_TURNS + 5:
            privileged, twin_privileged, _ = _twin_run(False, house, seed)
            assert privileged != twin_privileged
            contrasted += 1
    assert contrasted >= 1
    assert checked > 2 * LOOK_AROUND_TURNS  # the episodes explored before the target was seen


def test_exploring_expert_succeeds_with_longer_episodes():
    pytest.importorskip("mujoco", reason="the embedded simulator needs mujoco")
    import dataclasses

    from safevla_core.env import SafetyChoresEnv

    cfg = dataclasses.replace(Config(), task=TaskConfig(expert="explore"))
    env = SafetyChoresEnv(cfg, split="test", eval_mode=True, image_size=(64, 48))
    try:
        runs = [
            (
                run_expert_episode(env, make_expert(cfg.task), i, 1000 + i),
                run_expert_episode(env, ShortestPathExpert(), i, 1000 + i),
            )
            for i in range(3)
        ]
    finally:
        env.close()
    # Measured on 40 test episodes: SR 1.00, mean length 76.9 steps vs 38.9 for the
    # shortest-path expert (docs/results, section 8).
    for explored, direct in runs:
        assert explored["success"] == 1.0 and direct["success"] == 1.0
        assert explored["length"] >= direct["length"]
    assert sum(e["length"] for e, _ in runs) > sum(d["length"] for _, d in runs)


# ------------------------------------------------------------------------- giving up, backing out
def _objnav_state(
    x: float, y: float, yaw: float, target_xy: tuple[float, float], ok: bool = True
) -> WorldState:
    """A world with one bed (the target, ``bed_0``) and the robot at ``(x, y, yaw)``."""
    return WorldState(
        step=1,
        object_ids=("bed_0",),
        object_types=("Bed",),
        object_positions=np.array([[target_xy[0], target_xy[1], 0.3]]),
        object_quats=np.array([[1.0, 0.0, 0.0, 0.0]]),
        robot_pose=np.array([x, y, yaw]),
        last_action_success=ok,
    )


def _objnav_expert(reachable: set[tuple[int, int]], start: WorldState) -> ShortestPathExpert:
    spec = EpisodeSpec(
        task="objnav",
        house_id="h",
        target_type="Bed",
        target_ids=("bed_0",),
        instruction="find a bed",
        robot_pose=tuple(float(v) for v in start.robot_pose),
        seed=0,
    )
    expert = ShortestPathExpert()
    xy = np.array([[i * 0.25, j * 0.25] for i, j in sorted(reachable)])
    expert.reset(spec, xy, start)
    return expert


def test_the_expert_says_when_it_ends_for_want_of_a_path():
    # two pockets of the 0.25 m grid: x 0-0.5 m and x 2.5-3.0 m (y 0-0.5 m), nothing between;
    # the bed stands at (3.5, 0.25), so every goal cell (within 1.5 m of it) is in the far pocket
    near = {(i, j) for i in range(3) for j in range(3)}
    far = {(i, j) for i in range(10, 13) for j in range(3)}
    lost = _objnav_state(0.25, 0.25, 0.0, (3.5, 0.25))
    expert = _objnav_expert(near | far, lost)
    assert expert.act(lost) == Action.END and expert.gave_up  # no path from here: a give-up
    # from the far pocket the plan leads on (the bed is 1.0 m ahead but not visible: no end)
    there = _objnav_state(2.5, 0.25, 0.0, (3.5, 0.25))
    expert = _objnav_expert(near | far, there)
    assert expert.act(there) != Action.END and not expert.gave_up
    # in view, 1.0 m ahead and on the camera axis: the success `end` is no give-up
    seen = dataclasses.replace(there, visible_ids=frozenset({"bed_0"}))
    assert expert.act(seen) == Action.END and not expert.gave_up


def test_the_expert_backs_out_after_a_blocked_motion_off_the_free_grid():
    # free cells x 0-1.0 m, y 0-0.5 m; the bed 1 m beyond the -x edge: goal cells at x <= 0.5 m
    reachable = {(i, j) for i in range(5) for j in range(3)}
    bed = (-1.0, 0.25)
    on_grid = _objnav_state(0.5, 0.25, 0.0, bed)
    expert = _objnav_expert(reachable, on_grid)
    # at x 1.2 m, facing +x, the base rounds to cell (5, 1), off the grid; the nearest free
    # cell, (4, 1) at x 1.0 m, is straight behind
    wedged = _objnav_state(1.2, 0.25, 0.0, bed, ok=False)
    assert expert.act(wedged) == Action.MOVE_BACK
    # the same place after a motion that went through: the plan, which turns round (the path's
    # next cell, x 0.75 m, is 180 deg off the heading)
    moved = dataclasses.replace(wedged, last_action_success=True)
    assert expert.act(moved) in (Action.ROTATE_LEFT, Action.ROTATE_RIGHT)
    # the same place facing -x: the free cell is ahead, so the plan moves on to the goal cells
    facing_free = _objnav_state(1.2, 0.25, math.pi, bed, ok=False)
    assert expert.act(facing_free) == Action.MOVE_AHEAD
    # heading -114.6 deg (-2 rad): the free cell (bearing 180 deg) is 65.4 deg to the right,
    # ahead of the base's side, not behind it: no `b`
    beside = _objnav_state(1.2, 0.25, -2.0, bed, ok=False)
    assert expert.act(beside) not in (Action.MOVE_BACK, Action.END)
    # facing +x from (1.2, 0.4): the nearest free cell, (4, 2) at (1.0, 0.5), is 153 deg off
    assert expert.act(_objnav_state(1.2, 0.4, 0.0, bed, ok=False)) == Action.MOVE_BACK
    # a `b` that moved nothing (same pose, same heading) is not repeated
    expert = _objnav_expert(reachable, on_grid)
    assert expert.act(wedged) == Action.MOVE_BACK
    assert expert.act(wedged) not in (Action.MOVE_BACK, Action.END)
