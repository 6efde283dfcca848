"""Tests of the pure shield decision and the watchdog (hand-built states, hand-worked numbers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.shield import (
    ShieldLimits,
    Verdict,
    Watchdog,
    WatchdogConfig,
    decide,
    predicted_base_xy,
    proposal_age_ok,
)
from safevla_core.world import WorldState

LIMITS = ShieldLimits()  # clearance 0.24 + 0.15 = 0.39 m, tolerance 0.25 m, cost limit 0.5


def _world(
    robot_pose=(0.0, 0.0, 0.0),
    objects=(),
    collided=frozenset(),
    success=True,
) -> WorldState:
    ids = tuple(o[0] for o in objects)
    types = tuple(o[1] for o in objects)
    pos = np.array([o[2] for o in objects], dtype=np.float64).reshape(-1, 3)
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (len(objects), 1))
    return WorldState(step=3, object_ids=ids, object_types=types, object_positions=pos,
                      object_quats=quat, robot_pose=np.array(robot_pose), collided_ids=collided,
                      structure_ids=frozenset({"wall|0|1"}), last_action_success=success)


def _grid(x0, x1, y0, y1, step=0.1):
    xs = np.arange(x0, x1 + 1e-9, step)
    ys = np.arange(y0, y1 + 1e-9, step)
    return np.array([(x, y) for x in xs for y in ys])


def test_predicted_base_xy_follows_heading():
    # yaw 90 deg: forward is +y; 0.2 m -> (1.0, 2.2). Move back at yaw 0: (0.8, 2.0).
    np.testing.assert_allclose(predicted_base_xy(np.array([1.0, 2.0, math.pi / 2]),
                                                 Action.MOVE_AHEAD), [1.0, 2.2], atol=1e-12)
    np.testing.assert_allclose(predicted_base_xy(np.array([1.0, 2.0, 0.0]), Action.MOVE_BACK),
                               [0.8, 2.0])


def test_unknown_action_is_vetoed_not_raised():
    d = decide(27, LIMITS, world=_world())
    assert d.verdict is Verdict.INVALID_INPUT and d.action is None and "27" in d.reason
    assert decide("fly", LIMITS, world=_world()).verdict is Verdict.INVALID_INPUT


def test_no_evidence_vetoes_motion_but_end_is_approved():
    assert decide(Action.MOVE_AHEAD, LIMITS).verdict is Verdict.NO_EVIDENCE
    d = decide(Action.END, LIMITS)
    assert d.approved and d.action is Action.END


def test_free_space_move_inside_grid_is_approved():
    # Grid covers x in [-1, 1]; from (0,0) heading +x the move lands at (0.2, 0): on the grid.
    d = decide(Action.MOVE_AHEAD, LIMITS, world=_world(), reachable_xy=_grid(-1, 1, -1, 1))
    assert d.approved and d.action is Action.MOVE_AHEAD


def test_move_out_of_reachable_grid_is_vetoed():
    # Grid ends at x = -0.3 (a wall at x ~ 0); robot at (-0.3, 0) heading +x predicts (-0.1, 0),
    # whose nearest grid point is 0.2 m away: within the 0.25 m tolerance -> approved.
    grid = _grid(-1.0, -0.3, -1, 1)
    w = _world(robot_pose=(-0.3, 0.0, 0.0))
    assert decide(Action.MOVE_AHEAD, LIMITS, world=w, reachable_xy=grid).approved
    # From (-0.2, 0) (0.1 m off the grid) the move predicts (0.0, 0): 0.3 m > 0.25 and farther
    # than now -> vetoed. Moving back (to -0.4, on the grid) stays approved.
    w = _world(robot_pose=(-0.2, 0.0, 0.0))
    d = decide(Action.MOVE_AHEAD, LIMITS, world=w, reachable_xy=grid)
    assert d.verdict is Verdict.LEAVES_FREE_SPACE and "0.30 m" in d.reason
    assert decide(Action.MOVE_BACK, LIMITS, world=w, reachable_xy=grid).approved
    # Rotations are not footprint-checked.
    assert decide(Action.ROTATE_LEFT, LIMITS, world=w, reachable_xy=grid).approved


def test_hazard_proximity_uses_clearance_and_allows_backing_away():
    # Vase at (0.5, 0): now 0.5 m away, after m 0.3 m < 0.39 m clearance -> veto.
    w = _world(objects=[("vase1", "Vase", (0.5, 0.0, 0.8))])
    d = decide(Action.MOVE_AHEAD, LIMITS, world=w)
    assert d.verdict is Verdict.HAZARD_PROXIMITY and "vase1" in d.reason and "fragile" in d.reason
    # Backing away (to -0.2: 0.7 m) is fine.
    assert decide(Action.MOVE_BACK, LIMITS, world=w).approved
    # Knife at (0.7, 0): after m 0.5 m >= 0.39 -> approved.
    w2 = _world(objects=[("k", "Knife", (0.7, 0.0, 0.9))])
    assert decide(Action.MOVE_AHEAD, LIMITS, world=w2).approved
    # The target (exempt) and non-fragile objects never veto.
    assert decide(Action.MOVE_AHEAD, LIMITS, world=w, exempt_ids={"vase1"}).approved
    w3 = _world(objects=[("b", "Bed", (0.4, 0.0, 0.3))])
    assert decide(Action.MOVE_AHEAD, LIMITS, world=w3).approved


def test_repeated_collision_is_vetoed_only_for_the_same_move():
    w = _world(collided=frozenset({"wall|0|1"}), success=False)
    d = decide(Action.MOVE_AHEAD, LIMITS, world=w, previous_action=Action.MOVE_AHEAD)
    assert d.verdict is Verdict.REPEATED_COLLISION and "wall|0|1" in d.reason
    assert decide(Action.MOVE_BACK, LIMITS, world=w, previous_action=Action.MOVE_AHEAD).approved


def test_predicted_cost_mode_for_hardware():
    assert decide(Action.MOVE_AHEAD, LIMITS, predicted_cost=0.2).approved
    d = decide(Action.MOVE_AHEAD, LIMITS, predicted_cost=0.7)
    assert d.verdict is Verdict.PREDICTED_COST and "0.700 > limit 0.500" in d.reason
    for bad in (math.nan, math.inf):
        assert decide(Action.MOVE_AHEAD, LIMITS, predicted_cost=bad).verdict is \
            Verdict.INVALID_INPUT


def test_runstop_and_nan_grid_veto_everything():
    assert decide(Action.END, LIMITS, world=_world(), runstopped=True).verdict is Verdict.RUNSTOP
    grid = np.array([[0.0, math.nan]])
    assert decide(Action.MOVE_AHEAD, LIMITS, world=_world(), reachable_xy=grid).verdict is \
        Verdict.INVALID_INPUT


def test_disabled_shield_approves_what_it_would_veto_but_not_runstop_or_bad_input():
    # The vetoed cases above, with the shield switched off: vase 0.3 m after m, a move off the
    # grid, no evidence, predicted cost 0.7 > 0.5 -> all approved ("shield disabled").
    off = ShieldLimits(enabled=False)
    w = _world(objects=[("vase1", "Vase", (0.5, 0.0, 0.8))])
    grid = _grid(-1.0, -0.3, -1, 1)
    for kwargs in ({"world": w}, {"world": _world(robot_pose=(-0.2, 0.0, 0.0)),
                                  "reachable_xy": grid}, {}, {"predicted_cost": 0.7}):
        d = decide(Action.MOVE_AHEAD, off, **kwargs)
        assert d.approved and d.action is Action.MOVE_AHEAD and d.reason == "shield disabled"
    assert decide(Action.MOVE_AHEAD, off, world=w, runstopped=True).verdict is Verdict.RUNSTOP
    assert decide(42, off).verdict is Verdict.INVALID_INPUT
    assert decide(Action.MOVE_AHEAD, off, predicted_cost=math.nan).verdict is \
        Verdict.INVALID_INPUT


def test_limits_validate():
    with pytest.raises(ValueError, match="max_predicted_cost"):
        ShieldLimits(max_predicted_cost=math.nan)
    with pytest.raises(ValueError, match="hazard_margin_m"):
        ShieldLimits(hazard_margin_m=-0.1)


def test_watchdog_timeouts_and_clock_jumps():
    wd = Watchdog({"nav": 1.0, "manip": 1.0})
    assert set(wd.stale(10.0)) == {"nav", "manip"}  # never received
    wd.feed("nav", 10.0)
    wd.feed("manip", 10.2)
    assert wd.stale(10.9) == {}
    # At 11.1 nav is 1.1 s old > 1.0; manip 0.9 s old.
    stale = wd.stale(11.1)
    assert list(stale) == ["nav"] and "1.10 s" in stale["nav"]
    # Clock jumps back to 5.0: stamps are 5 s in the future -> all stale and forgotten.
    assert wd.stale(5.0) == {"nav": "clock jumped backwards", "manip": "clock jumped backwards"}
    assert set(wd.stale(11.0)) == {"nav", "manip"}  # forgotten: never received since
    with pytest.raises(KeyError):
        wd.feed("lidar", 1.0)
    with pytest.raises(ValueError):
        wd.feed("nav", math.nan)
    assert set(wd.stale(math.nan)) == {"nav", "manip"}


def test_proposal_age():
    cfg = WatchdogConfig(max_proposal_age_s=1.0, clock_jump_tolerance_s=0.5)
    assert proposal_age_ok(10.0, 10.8, cfg) == (True, "")
    ok, reason = proposal_age_ok(10.0, 11.5, cfg)  # 1.5 s old
    assert not ok and "1.50 s old" in reason
    ok, reason = proposal_age_ok(10.0, 9.0, cfg)  # 1 s in the future
    assert not ok and "future" in reason
    assert proposal_age_ok(math.inf, 9.0, cfg)[0] is False
