"""Tests of the pure shield decision and the watchdog (hand-built states, hand-worked numbers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.shield import (
    ArmPose,
    ShieldLimits,
    Verdict,
    Watchdog,
    WatchdogConfig,
    check_scan,
    decide,
    footprint_polygons,
    inside_footprint,
    motion_samples,
    predicted_base_xy,
    proposal_age_ok,
    scan_to_points,
)
from safevla_core.world import WorldState

# World-state checks alone (no scan required): clearance 0.24 + 0.15 = 0.39 m, tolerance 0.25 m.
LIMITS = ShieldLimits(
    robot_radius_m=0.24, hazard_margin_m=0.15, require_scan=False, use_reachable_grid=True
)
STOWED = ArmPose(lift_m=0.2, arm_m=0.0, wrist_yaw_rad=math.radians(190))
ARM_OUT = ArmPose(lift_m=0.5, arm_m=0.3, wrist_yaw_rad=0.0)


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
    return WorldState(
        step=3,
        object_ids=ids,
        object_types=types,
        object_positions=pos,
        object_quats=quat,
        robot_pose=np.array(robot_pose),
        collided_ids=collided,
        structure_ids=frozenset({"wall|0|1"}),
        last_action_success=success,
    )


def _grid(x0, x1, y0, y1, step=0.1):
    xs = np.arange(x0, x1 + 1e-9, step)
    ys = np.arange(y0, y1 + 1e-9, step)
    return np.array([(x, y) for x in xs for y in ys])


def test_predicted_base_xy_follows_heading():
    # yaw 90 deg: forward is +y; 0.2 m -> (1.0, 2.2). Move back at yaw 0: (0.8, 2.0).
    np.testing.assert_allclose(
        predicted_base_xy(np.array([1.0, 2.0, math.pi / 2]), Action.MOVE_AHEAD),
        [1.0, 2.2],
        atol=1e-12,
    )
    np.testing.assert_allclose(
        predicted_base_xy(np.array([1.0, 2.0, 0.0]), Action.MOVE_BACK), [0.8, 2.0]
    )


def test_unknown_action_is_vetoed_not_raised():
    d = decide(27, LIMITS, world=_world())
    assert d.verdict is Verdict.INVALID_INPUT and d.action is None and "27" in d.reason
    assert decide("fly", LIMITS, world=_world()).verdict is Verdict.INVALID_INPUT


def test_no_evidence_vetoes_motion_but_end_is_approved():
    assert decide(Action.MOVE_AHEAD, ShieldLimits()).verdict is Verdict.NO_EVIDENCE
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
    # Rotations are not checked against the grid (the scan check sweeps them).
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


def test_state_value_cost_is_validated_but_is_no_evidence():
    # V_c(s) is the same for every action: it neither approves (no scan -> no evidence) nor
    # vetoes a valid action; garbage there (NaN, inf, -1e9, outside -50..550) is invalid.
    d = decide(Action.MOVE_AHEAD, ShieldLimits(), predicted_cost=0.2)
    assert d.verdict is Verdict.NO_EVIDENCE
    assert decide(
        Action.MOVE_AHEAD, ShieldLimits(), scan_xy=np.zeros((0, 2)), arm=STOWED, predicted_cost=7.0
    ).approved
    assert decide(Action.MOVE_AHEAD, LIMITS, predicted_cost=-0.3).approved  # critic noise
    for bad in (math.nan, math.inf, -1e9, -51.0, 551.0):
        assert (
            decide(Action.MOVE_AHEAD, LIMITS, predicted_cost=bad).verdict is Verdict.INVALID_INPUT
        )


def test_learned_action_cost_is_a_second_opinion_only():
    q = np.full(20, math.nan)
    q[0] = 0.7  # Q_c(s, m) = 0.7 > 0.5; Q_c(s, b) unknown
    free = {"scan_xy": np.zeros((0, 2)), "arm": STOWED}
    d = decide(Action.MOVE_AHEAD, ShieldLimits(), action_costs=q, **free)
    assert d.verdict is Verdict.LEARNED_COST and "0.700 > limit 0.500" in d.reason
    assert decide(Action.MOVE_BACK, ShieldLimits(), action_costs=q, **free).approved
    # Low learned cost never replaces the scan.
    assert (
        decide(Action.MOVE_AHEAD, ShieldLimits(), action_costs=np.zeros(20)).verdict
        is Verdict.NO_EVIDENCE
    )
    for bad in (np.zeros(19), np.full(20, -1.0), np.full(20, math.inf)):
        assert (
            decide(Action.MOVE_BACK, ShieldLimits(), action_costs=bad, **free).verdict
            is Verdict.INVALID_INPUT
        )
    assert decide(Action.MOVE_BACK, ShieldLimits(), action_costs=np.zeros(0), **free).approved


def test_footprint_polygons_hand_worked():
    base, arm, grip = footprint_polygons(0.3, 0.0)
    # the base_link collision mesh's extremes (safevla_core/stretch_constants.py)
    assert base.min(axis=0) == pytest.approx([-0.2865, -0.1805])
    assert base.max(axis=0) == pytest.approx([0.0585, 0.1815])
    # Arm end at -0.170 - 0.3 = -0.470; gripper axis at (-0.021, -0.445), pointing -y:
    # fingertips at -0.445 - 0.28 = -0.725, back edge at -0.445 + 0.03 = -0.415.
    assert arm.min(axis=0)[1] == pytest.approx(-0.470)
    assert grip.min(axis=0) == pytest.approx([-0.086, -0.725])
    assert grip.max(axis=0) == pytest.approx([0.044, -0.415])
    # Wrist yaw 90 deg points the gripper forward (+x): tips at x = -0.021 + 0.28 = 0.259.
    grip90 = footprint_polygons(0.3, math.pi / 2)[2]
    assert grip90.max(axis=0)[0] == pytest.approx(0.259)
    pts = np.array([[0.0, 0.0], [0.0, -0.6], [0.3, 0.0], [-0.3, 0.0]])
    assert inside_footprint(pts, footprint_polygons(0.3, 0.0)).tolist() == [
        True,
        True,
        False,
        False,
    ]


def test_motion_samples_cover_the_motion_plus_margin():
    lim = ShieldLimits(sweep_margin_m=0.03, sweep_margin_rad=math.radians(4))
    s = motion_samples(Action.MOVE_AHEAD, STOWED, lim)  # 0.23 m in ceil(0.23/0.02) = 12 steps
    assert len(s) == 12 and s[-1][0] == pytest.approx(0.23) and s[0][0] == pytest.approx(0.23 / 12)
    s = motion_samples(Action.ROTATE_RIGHT, STOWED, lim)  # -(30 + 4) deg in 2 deg steps: 17
    assert len(s) == 17 and s[-1][1] == pytest.approx(-math.radians(34))
    s = motion_samples(Action.ARM_EXTEND, ArmPose(0.5, 0.45, 0.0), lim)  # clamped at 0.52 m
    assert max(x[2] for x in s) == pytest.approx(0.52)
    assert motion_samples(Action.LIFT_UP, STOWED, lim) == []


def test_scan_to_points_follows_rep117_and_the_laser_pose():
    # Laser at (0.004, 0, yaw pi): beam 0 at angle 0 in the laser frame looks backwards (-x).
    pts, bad = scan_to_points(
        [1.0, math.inf, math.nan, -math.inf, 20.0], 0.0, math.pi / 2, 0.15, 12.0
    )
    # beam 0: 1 m behind -> (0.004 - 1, 0); beam 1 +inf: free; beam 2 NaN: invalid;
    # beam 3 -inf (angle 3pi/2 + pi = pi/2 in base): 0.15 m to the left; beam 4: 20 > 12 invalid.
    np.testing.assert_allclose(pts, [[-0.996, 0.0], [0.004, 0.15]], atol=1e-12)
    assert bad == pytest.approx(2 / 5)
    with pytest.raises(ValueError):
        scan_to_points([], 0.0, 0.1, 0.1, 1.0)
    with pytest.raises(ValueError):
        scan_to_points([1.0], math.nan, 0.1, 0.1, 1.0)


def test_scan_vetoes_only_what_the_swept_footprint_meets():
    lim = ShieldLimits(sweep_margin_m=0.03, sweep_margin_rad=math.radians(5))
    wall = np.array([[0.25, y] for y in np.linspace(-1, 1, 81)])  # 0.192 m ahead of the front
    d = check_scan(Action.MOVE_AHEAD, wall, STOWED, lim)  # front reaches 0.058 + 0.23 = 0.288
    assert d is not None and d.verdict is Verdict.SCAN_OBSTACLE and "MOVE_AHEAD" in d.reason
    assert check_scan(Action.MOVE_BACK, wall, STOWED, lim) is None
    # Wall 0.30 m ahead: the swept front stops at 0.288 -> approved.
    assert check_scan(Action.MOVE_AHEAD, wall + [0.05, 0.0], STOWED, lim) is None
    # Rotation in place: the rear right corner (-0.286, -0.181) is 0.338 m from base_link at
    # bearing -147.7 deg. A post at (-0.30, -0.10) is 0.316 m away at bearing -161.6 deg, just
    # behind the back edge (0.301 m along that bearing). Turning right (clockwise) brings the
    # corner to the post after 13.9 deg of the 30 -> veto; turning left moves the corner away.
    post = np.array([[-0.30, -0.10]])
    assert check_scan(Action.ROTATE_RIGHT, post, STOWED, lim) is not None
    assert check_scan(Action.ROTATE_LEFT, post, STOWED, lim) is None
    assert check_scan(Action.ROTATE_RIGHT, np.array([[-0.40, 0.0]]), STOWED, lim) is None
    # The extended arm: gripper tips at y = -0.725. A point at (0.1, -0.6) lies 0.056 m ahead of
    # the gripper's front edge (x 0.044): turning left (ls, 6 deg + 5 deg margin) swings the
    # right side forward by 0.6 * sin(11 deg) = 0.114 m at that radius -> veto; turning right
    # swings it back, and retracting the arm moves it away -> fine.
    side = np.array([[0.1, -0.6]])
    assert check_scan(Action.ROTATE_RIGHT_SMALL, side, ARM_OUT, lim) is None  # turns away
    assert check_scan(Action.ROTATE_LEFT_SMALL, side, ARM_OUT, lim) is not None
    assert check_scan(Action.ARM_RETRACT, side, ARM_OUT, lim) is None
    # Points already inside the footprint (self hits, touching) are set aside for motions...
    inside = np.array([[0.0, 0.0], [-0.05, -0.5]])
    assert check_scan(Action.MOVE_AHEAD, inside, ARM_OUT, lim) is None
    # ... but lowering the lift over a point under the arm / gripper is vetoed.
    d = check_scan(Action.LIFT_DOWN, inside, ARM_OUT, lim)
    assert d is not None and "lowering" in d.reason
    assert check_scan(Action.LIFT_DOWN, np.array([[0.0, 0.0]]), ARM_OUT, lim) is None


def test_decide_uses_the_scan_and_fails_closed_on_a_bad_scan():
    lim = ShieldLimits()
    wall = np.array([[0.25, y] for y in np.linspace(-1, 1, 81)])
    assert decide(Action.MOVE_AHEAD, lim, scan_xy=wall, arm=STOWED).verdict is Verdict.SCAN_OBSTACLE
    assert decide(Action.MOVE_BACK, lim, scan_xy=wall, arm=STOWED).approved
    assert decide(Action.MOVE_BACK, lim, scan_xy=wall).verdict is Verdict.NO_EVIDENCE  # no arm
    d = decide(Action.MOVE_BACK, lim, scan_xy=wall, arm=STOWED, scan_invalid_fraction=0.6)
    assert d.verdict is Verdict.NO_EVIDENCE and "60%" in d.reason
    d = decide(Action.MOVE_BACK, lim, scan_xy=np.array([[math.nan, 0.0]]), arm=STOWED)
    assert d.verdict is Verdict.INVALID_INPUT


def test_runstop_and_nan_grid_veto_everything():
    assert decide(Action.END, LIMITS, world=_world(), runstopped=True).verdict is Verdict.RUNSTOP
    grid = np.array([[0.0, math.nan]])
    assert (
        decide(Action.MOVE_AHEAD, LIMITS, world=_world(), reachable_xy=grid).verdict
        is Verdict.INVALID_INPUT
    )


def test_disabled_shield_approves_what_it_would_veto_but_not_runstop_or_bad_input():
    # The vetoed cases above, with the shield switched off: vase 0.3 m after m, a move off the
    # grid, no evidence, learned cost 0.7 > 0.5 -> all approved ("shield disabled").
    off = ShieldLimits(enabled=False, use_reachable_grid=True)
    w = _world(objects=[("vase1", "Vase", (0.5, 0.0, 0.8))])
    grid = _grid(-1.0, -0.3, -1, 1)
    for kwargs in (
        {"world": w},
        {"world": _world(robot_pose=(-0.2, 0.0, 0.0)), "reachable_xy": grid},
        {},
        {"action_costs": np.full(20, 0.7)},
    ):
        d = decide(Action.MOVE_AHEAD, off, **kwargs)
        assert d.approved and d.action is Action.MOVE_AHEAD and d.reason == "shield disabled"
    assert decide(Action.MOVE_AHEAD, off, world=w, runstopped=True).verdict is Verdict.RUNSTOP
    assert decide(42, off).verdict is Verdict.INVALID_INPUT
    assert decide(Action.MOVE_AHEAD, off, predicted_cost=math.nan).verdict is Verdict.INVALID_INPUT


def test_limits_validate():
    with pytest.raises(ValueError, match="max_action_cost"):
        ShieldLimits(max_action_cost=math.nan)
    with pytest.raises(ValueError, match="max_invalid_scan_fraction"):
        ShieldLimits(max_invalid_scan_fraction=1.5)
    with pytest.raises(ValueError, match="enabled"):
        ShieldLimits(enabled="no")
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
