"""The safety shield between the policy and the robot: a pure decision plus a watchdog.

The shield sees one proposed discrete action and either approves it unchanged or vetoes it with a
reason; it never substitutes another motion (a veto means "do nothing": STYLE.md, "anything doubtful
on a robot becomes do nothing"). It works from whatever evidence is available:

* in simulation, the :class:`~safevla_core.world.WorldState` and the reachable-position grid: a base
  translation that would leave the free space, repeat a translation that just collided, or bring the
  base closer than a clearance to a fragile or hazardous object is vetoed;
* on hardware, where no world state exists, a predicted cost from the policy's learned cost critic
  (the per-step safety head idea of SafeDojo, ``shared/seeds/safedojo-review.txt``) compared with a
  limit, and robot signals (the runstop).

The :class:`Watchdog` turns input freshness into the same "do nothing": stale cameras, a stale
proposal or a silent policy mean nothing is approved, and a clock that jumps backwards invalidates
every stamp. Everything here is ROS-free and deterministic; the ROS node only adds I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from safevla_core.actions import ACTION_EFFECTS, Action, parse_action
from safevla_core.objects import OBJECT_TYPES
from safevla_core.world import WorldState

#: Half the diagonal of the Stretch 3 base footprint (about 0.34 m x 0.33 m, Hello Robot's
#: published dimensions): the radius of a circle that contains the base, metres.
STRETCH_BASE_RADIUS_M = 0.24


class Verdict(enum.Enum):
    """Why an action was approved or vetoed (the string goes into the ROS report)."""

    APPROVED = "approved"
    INVALID_INPUT = "invalid_input"
    NO_EVIDENCE = "no_evidence"
    STALE_INPUT = "stale_input"
    RUNSTOP = "runstop"
    LEAVES_FREE_SPACE = "leaves_free_space"
    REPEATED_COLLISION = "repeated_collision"
    HAZARD_PROXIMITY = "hazard_proximity"
    PREDICTED_COST = "predicted_cost"


@dataclass(frozen=True)
class ShieldLimits:
    """Limits of the shield decision.

    Attributes:
        robot_radius_m: Radius of a circle containing the base, metres
            (:data:`STRETCH_BASE_RADIUS_M`).
        hazard_margin_m: Extra clearance kept between that circle and the centre of a fragile or
            hazardous object, metres (ours: a little more than one 0.2 m move step's error).
        reachable_tolerance_m: A predicted base position farther than this from every reachable
            grid point leaves the free space, metres (ours: about one grid cell of the backend).
        max_predicted_cost: Veto when the learned cost critic predicts more than this
            (ours: 0.5, half of one unit cost event; per-step costs are 0/1 flags, REFERENCE.md).
        require_evidence: Veto motion when neither a world state nor a predicted cost is
            available (True: doubtful means do nothing).
        enabled: False switches the cost checks off (evidence, predicted cost, free space,
            repeated collision, hazards): every valid action is approved unless the runstop is
            engaged. For experiments that measure what the shield prevents (ours); the watchdog
            of the monitor node stays on.
    """

    robot_radius_m: float = STRETCH_BASE_RADIUS_M
    hazard_margin_m: float = 0.15
    reachable_tolerance_m: float = 0.25
    max_predicted_cost: float = 0.5
    require_evidence: bool = True
    enabled: bool = True

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a negative or non-finite limit.
        """
        for name in ("robot_radius_m", "hazard_margin_m", "reachable_tolerance_m",
                     "max_predicted_cost"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"ShieldLimits.{name} must be finite and >= 0, got {value!r}")

    @property
    def hazard_clearance_m(self) -> float:
        """Minimum distance from the base centre to a fragile/hazardous object, metres."""
        return self.robot_radius_m + self.hazard_margin_m


@dataclass(frozen=True)
class ShieldDecision:
    """Outcome of :func:`decide`.

    Attributes:
        action: The approved action (the proposal unchanged), or ``None`` on a veto.
        verdict: Why.
        reason: Human-readable detail for logs and the cost report.
    """

    action: Action | None
    verdict: Verdict
    reason: str

    @property
    def approved(self) -> bool:
        """True if the proposal was approved."""
        return self.verdict is Verdict.APPROVED


def _veto(verdict: Verdict, reason: str) -> ShieldDecision:
    return ShieldDecision(None, verdict, reason)


def predicted_base_xy(robot_pose: np.ndarray, action: Action) -> np.ndarray:
    """Base position after an action, from its nominal effect (:data:`ACTION_EFFECTS`).

    Args:
        robot_pose: ``(3,)`` ``(x_m, y_m, yaw_rad)`` in ``map``.
        action: The action.

    Returns:
        ``(2,)`` predicted ``(x_m, y_m)``: the pose moved ``base_forward_m`` along the heading.
    """
    d = ACTION_EFFECTS[action].base_forward_m
    x, y, yaw = (float(v) for v in robot_pose)
    return np.array([x + d * math.cos(yaw), y + d * math.sin(yaw)])


def _distance_to_set(xy: np.ndarray, points: np.ndarray) -> float:
    if points.shape[0] == 0:
        return math.inf
    return float(np.min(np.linalg.norm(points - xy[None, :], axis=1)))


def _check_free_space(
    world: WorldState, reachable_xy: np.ndarray, new_xy: np.ndarray, limits: ShieldLimits
) -> ShieldDecision | None:
    here = _distance_to_set(world.robot_pose[:2], reachable_xy)
    there = _distance_to_set(new_xy, reachable_xy)
    if there > limits.reachable_tolerance_m and there > here:
        return _veto(
            Verdict.LEAVES_FREE_SPACE,
            f"predicted base position ({new_xy[0]:.2f}, {new_xy[1]:.2f}) is {there:.2f} m from "
            f"the reachable grid (tolerance {limits.reachable_tolerance_m:.2f} m)",
        )
    return None


def _check_hazards(
    world: WorldState, new_xy: np.ndarray, exempt_ids: frozenset[str], limits: ShieldLimits
) -> ShieldDecision | None:
    clearance = limits.hazard_clearance_m
    for i, (oid, otype) in enumerate(zip(world.object_ids, world.object_types, strict=True)):
        info = OBJECT_TYPES.get(otype)
        if oid in exempt_ids or oid == world.held_object_id or info is None:
            continue
        if not (info.fragile or info.hazardous):
            continue
        obj_xy = world.object_positions[i, :2]
        there = float(np.linalg.norm(new_xy - obj_xy))
        here = float(np.linalg.norm(world.robot_pose[:2] - obj_xy))
        if there < clearance and there < here:
            kind = "hazardous" if info.hazardous else "fragile"
            return _veto(
                Verdict.HAZARD_PROXIMITY,
                f"move would bring the base {there:.2f} m from {kind} {oid} "
                f"(clearance {clearance:.2f} m)",
            )
    return None


def _check_world(
    action: Action,
    world: WorldState,
    reachable_xy: np.ndarray | None,
    previous_action: Action | None,
    exempt_ids: frozenset[str],
    limits: ShieldLimits,
) -> ShieldDecision | None:
    effect = ACTION_EFFECTS[action]
    if effect.base_forward_m == 0.0:
        return None  # rotations in place and arm/gripper actions: no base-footprint check
    if previous_action == action and world.collided_ids and not world.last_action_success:
        hit = ", ".join(sorted(world.collided_ids)[:3])
        return _veto(Verdict.REPEATED_COLLISION,
                     f"the same base move just collided with {hit}; not repeating it")
    new_xy = predicted_base_xy(world.robot_pose, action)
    if reachable_xy is not None:
        veto = _check_free_space(world, reachable_xy, new_xy, limits)
        if veto is not None:
            return veto
    return _check_hazards(world, new_xy, exempt_ids, limits)


def decide(
    proposed: int | str | Action,
    limits: ShieldLimits,
    *,
    world: WorldState | None = None,
    reachable_xy: np.ndarray | None = None,
    predicted_cost: float | None = None,
    previous_action: Action | None = None,
    runstopped: bool = False,
    exempt_ids: Iterable[str] = (),
) -> ShieldDecision:
    """Approve a proposed action or veto it with a reason (pure; STYLE.md rule 8).

    Checks, in order: the action is valid; the runstop is off; some evidence exists (unless the
    action moves nothing); the predicted cost (hardware) is finite and within the limit; with a
    world state, a base translation must not repeat a move that just collided, must keep the base
    within ``reachable_tolerance_m`` of the reachable grid, and must not bring it closer than
    ``robot_radius_m + hazard_margin_m`` to a fragile or hazardous object (moves that increase
    the distance are allowed, so a robot that starts too close can back away). ``end`` and
    ``sub_done`` move nothing and are approved once the input is valid. With
    ``limits.enabled`` False only the validity and runstop checks remain.

    Args:
        proposed: Action index, short name or :class:`Action` from the policy.
        limits: The limits.
        world: Current simulator world state, or ``None`` on hardware.
        reachable_xy: ``(M, 2)`` reachable base positions in ``map``, metres, or ``None``.
        predicted_cost: The policy's learned cost-critic output for this step, or ``None``.
        previous_action: The last approved action (for the repeated-collision check).
        runstopped: The robot's runstop is engaged.
        exempt_ids: Object ids never counted as hazards (the task's target).

    Returns:
        The decision; ``action`` is the proposal itself when approved, ``None`` when vetoed.
    """
    try:
        action = parse_action(proposed)
    except ValueError as exc:
        return _veto(Verdict.INVALID_INPUT, str(exc))
    if runstopped:
        return _veto(Verdict.RUNSTOP, "runstop engaged")
    if predicted_cost is not None and not math.isfinite(predicted_cost):
        return _veto(Verdict.INVALID_INPUT, f"predicted cost is {predicted_cost!r}")
    if reachable_xy is not None:
        reachable_xy = np.asarray(reachable_xy, dtype=np.float64).reshape(-1, 2)
        if not np.all(np.isfinite(reachable_xy)):
            return _veto(Verdict.INVALID_INPUT, "reachable positions contain NaN or inf")
    effect = ACTION_EFFECTS[action]
    if effect.terminal or effect.sub_done:
        return ShieldDecision(action, Verdict.APPROVED, "moves nothing")
    if not limits.enabled:
        return ShieldDecision(action, Verdict.APPROVED, "shield disabled")
    if world is None and predicted_cost is None and limits.require_evidence:
        return _veto(Verdict.NO_EVIDENCE, "neither a world state nor a predicted cost")
    if predicted_cost is not None and predicted_cost > limits.max_predicted_cost:
        return _veto(Verdict.PREDICTED_COST,
                     f"predicted cost {predicted_cost:.3f} > limit {limits.max_predicted_cost:.3f}")
    if world is not None:
        veto = _check_world(action, world, reachable_xy, previous_action,
                            frozenset(exempt_ids), limits)
        if veto is not None:
            return veto
    return ShieldDecision(action, Verdict.APPROVED, "ok")


@dataclass(frozen=True)
class WatchdogConfig:
    """Freshness limits of the inputs the shield depends on.

    Attributes:
        camera_timeout_s: A camera whose last image arrived longer ago is stale (ours: 1 s,
            several control periods at the 2-5 Hz control rate of the policy node).
        proposal_timeout_s: The policy is silent if no proposal arrived within this (ours: 2 s).
        max_proposal_age_s: A proposal whose camera stamp is older than this when it reaches the
            shield is stale (ours: 1 s).
        world_state_timeout_s: The simulator's world state is stale after this (ours: 2 s).
        clock_jump_tolerance_s: An input stamped further than this in the future (the clock
            jumped backwards, e.g. a bag restarted) invalidates the stamps (ours: 0.5 s).
    """

    camera_timeout_s: float = 1.0
    proposal_timeout_s: float = 2.0
    max_proposal_age_s: float = 1.0
    world_state_timeout_s: float = 2.0
    clock_jump_tolerance_s: float = 0.5

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a non-positive or non-finite timeout.
        """
        for name in ("camera_timeout_s", "proposal_timeout_s", "max_proposal_age_s",
                     "world_state_timeout_s", "clock_jump_tolerance_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"WatchdogConfig.{name} must be finite and > 0, got {value!r}")


class Watchdog:
    """Tracks when each named input last arrived and says which are stale.

    An input is stale if it never arrived, arrived more than its timeout ago, or carries a time
    more than ``jump_tolerance_s`` in the future (the clock jumped backwards: every stamp taken
    before the jump is then meaningless, so all are forgotten and must arrive afresh).
    """

    def __init__(self, timeouts_s: Mapping[str, float], jump_tolerance_s: float = 0.5) -> None:
        """Create a watchdog.

        Args:
            timeouts_s: Input name -> timeout, seconds (positive, finite).
            jump_tolerance_s: Allowed backwards jump of the clock, seconds.

        Raises:
            ValueError: On an empty mapping or a non-positive timeout.
        """
        if not timeouts_s:
            raise ValueError("a watchdog needs at least one input")
        for name, t in timeouts_s.items():
            if not (math.isfinite(t) and t > 0.0):
                raise ValueError(f"timeout of {name!r} must be finite and > 0, got {t!r}")
        self._timeouts = dict(timeouts_s)
        self._jump_tolerance_s = jump_tolerance_s
        self._last: dict[str, float] = {}

    def feed(self, name: str, now_s: float) -> None:
        """Record that input ``name`` arrived at time ``now_s`` (seconds, any monotone epoch).

        Raises:
            KeyError: If ``name`` is not a watched input.
            ValueError: If ``now_s`` is not finite.
        """
        if name not in self._timeouts:
            raise KeyError(f"unknown watchdog input {name!r}; known: {sorted(self._timeouts)}")
        if not math.isfinite(now_s):
            raise ValueError(f"watchdog time must be finite, got {now_s!r}")
        self._last[name] = now_s

    def reset(self) -> None:
        """Forget every arrival (everything is stale until fed again)."""
        self._last.clear()

    def stale(self, now_s: float) -> dict[str, str]:
        """Stale inputs at time ``now_s`` with the reason for each (empty: all fresh).

        A backwards clock jump (any arrival later than ``now_s + jump_tolerance_s``, or a
        non-finite ``now_s``) forgets all arrivals.
        """
        if not math.isfinite(now_s) or any(
            t > now_s + self._jump_tolerance_s for t in self._last.values()
        ):
            self._last.clear()
            return {name: "clock jumped backwards" for name in self._timeouts}
        out: dict[str, str] = {}
        for name, timeout in self._timeouts.items():
            last = self._last.get(name)
            if last is None:
                out[name] = "never received"
            elif now_s - last > timeout:
                out[name] = f"silent for {now_s - last:.2f} s (timeout {timeout:.2f} s)"
        return out


def proposal_age_ok(
    camera_stamp_s: float, now_s: float, cfg: WatchdogConfig
) -> tuple[bool, str]:
    """Whether a proposal computed from images stamped ``camera_stamp_s`` is fresh at ``now_s``.

    Args:
        camera_stamp_s: Stamp of the camera images the proposal was computed from, seconds.
        now_s: Current time on the same clock, seconds.
        cfg: The limits (``max_proposal_age_s``, ``clock_jump_tolerance_s``).

    Returns:
        ``(ok, reason)``; ``reason`` is empty when fresh.
    """
    if not (math.isfinite(camera_stamp_s) and math.isfinite(now_s)):
        return False, "non-finite stamp"
    age = now_s - camera_stamp_s
    if age < -cfg.clock_jump_tolerance_s:
        return False, f"proposal stamped {-age:.2f} s in the future (clock jump)"
    if age > cfg.max_proposal_age_s:
        return False, f"proposal is {age:.2f} s old (limit {cfg.max_proposal_age_s:.2f} s)"
    return True, ""
