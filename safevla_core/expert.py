"""Privileged expert for Safety-ObjNav, Safety-PickUp and Safety-Fetch (IL data, elicitation).

The expert reads the simulator's ground truth (:class:`~safevla_core.world.WorldState`: object
poses, visibility, the robot's pose and joints) and the reachable-position grid, as SPOC's
shortest-path experts read AI2-THOR's metadata (REFERENCE.md "Policy": IL on shortest-path expert
trajectories). It acts with the same 20 discrete actions as the policy.

* Base: Dijkstra on the 8-connected grid of reachable base positions (0.25 m, each a position
  where the robot's footprint circle fits: :func:`safevla_core.sim.free_space.reachable_grid`),
  no diagonal corner cutting, plus a clearance penalty for cells next to an obstacle so paths keep
  to the middle of free space. Free objects standing on the floor are inflated into the grid as
  obstacles (privileged). The path is re-planned from the robot's nearest cell at every step and
  followed with ``l``/``r`` (30 deg), ``ls``/``rs`` (6 deg) and ``m`` (0.2 m) towards a look-ahead
  waypoint (:func:`heading_action`).
* ObjNav: goal cells lie within :data:`NAV_GOAL_RADIUS_M` of a target. The expert issues ``end``
  with a margin inside the success region, so that a learner imitating it imprecisely still
  succeeds: a target must be visible within :data:`END_DISTANCE_M` (1.5 m of the 2 m success
  distance), or within the success distance once no goal cell brings it closer, and the expert
  first turns until that target lies within :data:`END_CENTRE_RAD` of the camera's axis.
  (Ending at the first step inside 2 m, as before, put the end at a median 1.90 m and a median
  14 deg off-axis on 38 validation episodes: one 0.2 m step from a state labelled ``m``, which a
  160x96 image cannot tell apart; the cloned policy's ``end`` then came too early or too late.)
* ObjNav, exploring (``explore=True``; ``TaskConfig.expert = "explore"``): the same, but only
  once a target has been *seen*, that is been in the navigation camera's view within
  :data:`SEEN_DISTANCE_FURNITURE_M` / :data:`SEEN_DISTANCE_SMALL_M`. Until then the expert looks
  around (:data:`LOOK_AROUND_TURNS` large turns at the start) and then drives to the nearest
  reachable cell it has not looked at (frontier exploration on the reachable grid: a cell is
  looked at once it was within :data:`VIEW_RANGE_M` and :data:`VIEW_HALF_ANGLE_RAD` of the camera
  axis with a free line of sight). Its actions then depend on what the cameras have shown, not on
  where the target is, so a policy that sees only the cameras can imitate them: the privileged
  expert goes straight to a target it has never seen, which no learner can copy (the "imitation
  gap"; docs/results, section 8). When nothing is left to look at, it falls back to the
  privileged plan.
* ObjNav, recovering: after a blocked motion that left the base off the free grid (wedged against
  furniture, where even a turn is stopped by the contact), the expert backs out with ``b`` when
  the nearest free cell lies behind the base. Its own episodes rarely come there; a learner's
  do (DAgger, docs/results section 11), and a turn there only grinds against the obstacle.
* ObjNav, giving up: when no path leads from here to a goal cell, or every goal cell has been
  tried, the expert ends (its episode fails) and says so (:attr:`ShortestPathExpert.gave_up`):
  such an ``end`` is no label to learn from.
* PickUp: raise the lift so the grasp point is
  :data:`~safevla_core.tasks.pickup.GRASP_CLEARANCE_M` above the object's top (first, so the
  gripper clears furniture tops when the base turns), turn until the target lies on the arm's line
  (the arm extends to the right), extend the arm to it, ``p``, lift 0.1 m, retract, ``end``.
* Fetch: navigate to a cell whose distance to the target is in the arm's lateral band, then PickUp.

All thresholds are ours unless a source is named.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safevla_core.actions import (
    ARM_LARGE_M,
    BASE_STEP_M,
    LIFT_LARGE_M,
    ROTATE_LARGE_RAD,
    ROTATE_SMALL_RAD,
    Action,
)
from safevla_core.houses.splits import load_house
from safevla_core.objects import OBJECT_TYPES
from safevla_core.sim.free_space import GRID_SIZE_M, ROBOT_RADIUS_M
from safevla_core.tasks.base import EpisodeSpec
from safevla_core.tasks.pickup import (
    ARM_MAX_M,
    GRASP_CLEARANCE_M,
    GRASP_LATERAL_AT_ZERO_ARM_M,
    GRASP_X_M,
    GRASP_Z_MINUS_LIFT_M,
    LIFT_MAX_M,
    arm_start_indices,
    object_height_m,
    wall_segments,
)
from safevla_core.world import WorldState

Cell = tuple[int, int]

#: A blocked ``b`` leaves the heading within this of where it was (ours): a learner's turn
#: executed instead of the expert's ``b`` (DAgger) still moves the heading by more.
BACK_OUT_STILL_RAD: float = math.radians(0.5)
#: Cost of a cell that has k blocked 8-neighbours is ``1 + CLEARANCE_PENALTY * k`` per unit step
#: (ours: 0.5 makes a one-cell detour away from a wall worth it).
CLEARANCE_PENALTY: float = 0.5
#: Turn with the large rotation when the heading error exceeds this, radians (ours: more than
#: half of the 30 deg step, so a large turn always reduces the error).
LARGE_TURN_THRESHOLD_RAD: float = ROTATE_LARGE_RAD * 0.6
#: Turn with the small rotation when the heading error exceeds this, radians (ours: more than
#: half of the 6 deg step; below it a 0.2 m move drifts < 1.1 cm sideways).
SMALL_TURN_THRESHOLD_RAD: float = ROTATE_SMALL_RAD * 0.55
#: Look-ahead along the planned path, cells (ours: up to 0.75 m on a straight path).
LOOKAHEAD_CELLS: int = 3
#: Waypoints closer than this are skipped, metres (ours: less than one 0.2 m move).
MIN_WAYPOINT_DIST_M: float = 0.12
#: Spacing of the samples of a straight-line free-space check, metres (ours: < grid / 4).
LINE_CHECK_STEP_M: float = 0.05
#: ObjNav goal cells lie within this of a target, metres (ours: 0.5 m inside the 2 m success
#: radius of REFERENCE.md, so small pose errors keep the target in range).
NAV_GOAL_RADIUS_M: float = 1.5
#: ObjNav ``end`` distance, metres (ours: the goal radius, 0.5 m inside the 2 m success radius,
#: so an ``end`` a step or two early or late still succeeds).
END_DISTANCE_M: float = NAV_GOAL_RADIUS_M
#: Before ``end`` the target's bearing must be within this of the camera axis, radians (ours:
#: 15 deg, the middle third of the ~87 deg horizontal view at 160x96, so the target is not at
#: the frustum's edge where one turn loses it).
END_CENTRE_RAD: float = math.radians(15.0)
#: Centring turns allowed before the expert ends anyway (ours: half a circle in large turns).
MAX_CENTRE_TURNS: int = 6
#: Extra clearance around free objects on the floor when planning, metres (ours).
FLOOR_OBJECT_MARGIN_M: float = 0.05
#: A free object whose bottom is below this height stands on the floor, metres (ours).
FLOOR_OBJECT_MAX_BOTTOM_M: float = 0.1
#: Goal-cell attempts after which the ObjNav expert gives up and ends (ours).
MAX_GOAL_ATTEMPTS: int = 4
#: Lift height after a grasp, relative to the grasp height, metres (ours: one large lift step).
LIFT_AFTER_GRASP_M: float = LIFT_LARGE_M
#: Tolerances of the scripted reach: along the arm line (m), lift (m), arm (m) (ours: well below
#: the 0.15 m grasp reach of MujocoBackend, above half of the small 0.02 m steps, which the
#: servos execute as up to ~0.026 m). A step that would undo the previous one is never taken.
ALONG_TOL_M: float = 0.04
LIFT_TOL_M: float = 0.015
ARM_TOL_M: float = 0.015
#: Small-step range: use the 0.02 m lift/arm step when the error is below this, metres (ours).
SMALL_STEP_BELOW_M: float = 0.06
#: Grasp attempts (``p`` then lower the lift a small step) before giving up (ours).
MAX_GRASP_ATTEMPTS: int = 4
#: Base turns of the reach phase after which the expert extends anyway (ours: 12 large turns
#: are a full circle; guards against a base that cannot turn).
MAX_REACH_TURNS: int = 24
#: Blocked arm or lift motions tolerated before the PickUp expert gives up (ours).
MAX_ARM_FAILURES: int = 3

#: Exploring ObjNav expert: a target counts as seen once visible within this distance, metres,
#: for furniture / for other objects (ours: a 0.8 m armchair is ~20 px wide at 5 m on a 160 px
#: image, a 0.09 m mug ~4 px at 3 m).
SEEN_DISTANCE_FURNITURE_M: float = 5.0
SEEN_DISTANCE_SMALL_M: float = 3.0
#: A cell is looked at when within this range of the robot, metres, and this half-angle of the
#: camera axis, radians, with a free line of sight on the grid (ours: 3 m; 40 deg of the ~44 deg
#: half view of the navigation camera).
VIEW_RANGE_M: float = 3.0
VIEW_HALF_ANGLE_RAD: float = math.radians(40.0)
#: Cells this close to the robot count as looked at, metres (ours: two grid cells).
VIEW_NEAR_M: float = 0.5
#: Large turns of the exploring expert's look-around at the start (ours: 11 x 30 deg: every
#: heading of the full circle once, the 12th would face the start again).
LOOK_AROUND_TURNS: int = 11
#: The exploring expert gives up on an exploration goal after this many steps towards it (ours).
MAX_EXPLORE_GOAL_STEPS: int = 60

assert ARM_LARGE_M == LIFT_LARGE_M == 0.1 and BASE_STEP_M == 0.2  # the steps assumed above


def wrap_angle(a: float) -> float:
    """Angle wrapped into ``(-pi, pi]``, radians."""
    return math.atan2(math.sin(a), math.cos(a))


class GridMap:
    """Set of free cells of a regular grid of reachable base positions.

    Args:
        reachable_xy: ``(M, 2)`` reachable positions on a grid of spacing ``grid_m``, metres.
        grid_m: Grid spacing, metres (AI2-THOR's 0.25 m; ``free_space.GRID_SIZE_M``).

    Raises:
        ValueError: On a malformed array, no points, or points off the grid.
    """

    def __init__(self, reachable_xy: np.ndarray, grid_m: float = GRID_SIZE_M) -> None:
        """Index the points; see the class docstring."""
        pts = np.asarray(reachable_xy, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
            raise ValueError(f"reachable_xy must be a non-empty (M, 2) array, got {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("reachable_xy contains NaN or inf")
        if not grid_m > 0:
            raise ValueError(f"grid_m must be positive, got {grid_m}")
        idx = np.rint(pts / grid_m)
        if np.max(np.abs(idx * grid_m - pts)) > 1e-6:
            raise ValueError(f"reachable_xy points are not on a {grid_m} m grid")
        self.grid_m = float(grid_m)
        self.cells: frozenset[Cell] = frozenset((int(i), int(j)) for i, j in idx)
        self._array = np.array(sorted(self.cells), dtype=np.int64)

    def xy(self, cell: Cell) -> np.ndarray:
        """``(2,)`` map position of a cell, metres."""
        return np.array([cell[0] * self.grid_m, cell[1] * self.grid_m])

    def cell_of(self, xy: Iterable[float]) -> Cell:
        """The grid cell a position rounds to (free or not)."""
        x, y = xy
        return (round(x / self.grid_m), round(y / self.grid_m))

    def nearest_free(self, xy: Iterable[float], blocked: frozenset[Cell] = frozenset()) -> Cell:
        """The free, unblocked cell nearest to a position (Euclidean).

        Raises:
            ValueError: If every cell is blocked.
        """
        p = np.asarray(list(xy), dtype=np.float64) / self.grid_m
        d = np.linalg.norm(self._array - p, axis=1)
        for k in np.argsort(d, kind="stable"):
            c = (int(self._array[k, 0]), int(self._array[k, 1]))
            if c not in blocked:
                return c
        raise ValueError("no free cell left")

    def is_free(self, xy: Iterable[float], blocked: frozenset[Cell] = frozenset()) -> bool:
        """Whether the cell a position rounds to is free and not blocked."""
        c = self.cell_of(xy)
        return c in self.cells and c not in blocked

    def line_free(
        self, a: np.ndarray, b: np.ndarray, blocked: frozenset[Cell] = frozenset()
    ) -> bool:
        """Whether every sample of the segment ``a``-``b`` rounds to a free cell."""
        n = max(1, math.ceil(float(np.linalg.norm(b - a)) / LINE_CHECK_STEP_M))
        return all(self.is_free(a + (b - a) * k / n, blocked) for k in range(n + 1))


_NEIGHBOURS: tuple[tuple[int, int], ...] = (
    (1, 0),
    (-1, 0),
    (0, 1),
    (0, -1),
    (1, 1),
    (1, -1),
    (-1, 1),
    (-1, -1),
)


def _connected(free: frozenset[Cell], start: Cell) -> frozenset[Cell]:
    """The free cells 8-connected to ``start`` (``start`` included even if not free)."""
    seen = {start}
    stack = [start]
    while stack:
        c = stack.pop()
        for dx, dy in _NEIGHBOURS:
            n = (c[0] + dx, c[1] + dy)
            if n in free and n not in seen:
                seen.add(n)
                stack.append(n)
    return frozenset(seen)


def shortest_path(
    free: frozenset[Cell] | set[Cell],
    start: Cell,
    goals: Iterable[Cell],
    clearance_penalty: float = CLEARANCE_PENALTY,
) -> list[Cell] | None:
    """Cheapest 8-connected path from ``start`` to the nearest goal (Dijkstra).

    Step cost: 1 for an axis step, sqrt(2) for a diagonal one (allowed only when at least one of
    the two axis neighbours it passes is free: no squeezing between two blocked cells), times
    ``1 + clearance_penalty * k`` where k is the number of non-free 8-neighbours of the cell
    entered.

    Args:
        free: Free cells (integer grid coordinates).
        start: Start cell (need not be free: the robot may stand slightly off the grid).
        goals: Goal cells; those not free are ignored.
        clearance_penalty: Weight of the clearance term (0: pure shortest path).

    Returns:
        The cells from ``start`` to a goal inclusive, or ``None`` if no goal is reachable.

    Raises:
        ValueError: On a negative clearance penalty.
    """
    if clearance_penalty < 0:
        raise ValueError(f"clearance_penalty must be >= 0, got {clearance_penalty}")
    goal_set = {g for g in goals if g in free}
    if not goal_set:
        return None
    if start in goal_set:
        return [start]

    def blocked_around(c: Cell) -> int:
        return sum((c[0] + dx, c[1] + dy) not in free for dx, dy in _NEIGHBOURS)

    dist: dict[Cell, float] = {start: 0.0}
    parent: dict[Cell, Cell] = {}
    heap: list[tuple[float, Cell]] = [(0.0, start)]
    while heap:
        d, c = heapq.heappop(heap)
        if d > dist.get(c, math.inf):
            continue
        if c in goal_set:
            path = [c]
            while path[-1] != start:
                path.append(parent[path[-1]])
            return path[::-1]
        for dx, dy in _NEIGHBOURS:
            n = (c[0] + dx, c[1] + dy)
            if n not in free:
                continue
            if dx and dy and (c[0] + dx, c[1]) not in free and (c[0], c[1] + dy) not in free:
                continue
            step = math.sqrt(2.0) if dx and dy else 1.0
            nd = d + step * (1.0 + clearance_penalty * blocked_around(n))
            if nd < dist.get(n, math.inf):
                dist[n] = nd
                parent[n] = c
                heapq.heappush(heap, (nd, n))
    return None


def heading_action(
    pose: np.ndarray, waypoint: np.ndarray, tolerance_rad: float = SMALL_TURN_THRESHOLD_RAD
) -> Action:
    """The action that drives the base towards a waypoint: turn first, then move ahead.

    Heading error e = bearing(waypoint) - yaw wrapped to (-pi, pi]: ``l``/``r`` if
    ``|e| > LARGE_TURN_THRESHOLD_RAD`` (18 deg), ``ls``/``rs`` if ``|e| > tolerance_rad``
    (default :data:`SMALL_TURN_THRESHOLD_RAD`, 3.3 deg), else ``m``. Positive e (waypoint to the
    left) turns left (REP-103 yaw).

    Args:
        pose: ``(3,)`` base pose ``(x_m, y_m, yaw_rad)``.
        waypoint: ``(2,)`` target position, metres.
        tolerance_rad: Heading error up to which the base moves ahead without turning.

    Returns:
        One of ``m``, ``l``, ``r``, ``ls``, ``rs``.
    """
    e = wrap_angle(math.atan2(waypoint[1] - pose[1], waypoint[0] - pose[0]) - pose[2])
    return turn_action(e, small_threshold_rad=tolerance_rad) or Action.MOVE_AHEAD


def turn_action(
    error_rad: float, small_threshold_rad: float = SMALL_TURN_THRESHOLD_RAD
) -> Action | None:
    """Rotation that reduces a heading error (positive: turn left), or ``None`` if within tolerance.

    Args:
        error_rad: Desired minus current heading, radians.
        small_threshold_rad: Tolerance below which no turn is needed.

    Returns:
        ``l``/``r`` above :data:`LARGE_TURN_THRESHOLD_RAD`, ``ls``/``rs`` above the tolerance.
    """
    e = wrap_angle(error_rad)
    if abs(e) > LARGE_TURN_THRESHOLD_RAD:
        return Action.ROTATE_LEFT if e > 0 else Action.ROTATE_RIGHT
    if abs(e) > small_threshold_rad:
        return Action.ROTATE_LEFT_SMALL if e > 0 else Action.ROTATE_RIGHT_SMALL
    return None


def step_action(
    error_m: float, up: tuple[Action, Action], down: tuple[Action, Action], tol_m: float
) -> Action | None:
    """Large or small joint step that reduces ``error_m`` (target minus current), or ``None``.

    Args:
        error_m: Desired minus current joint value, metres.
        up: ``(large, small)`` actions that increase the joint.
        down: ``(large, small)`` actions that decrease it.
        tol_m: Tolerance below which no step is taken.

    Returns:
        The large step above :data:`SMALL_STEP_BELOW_M`, else the small one, else ``None``.
    """
    if abs(error_m) <= tol_m:
        return None
    large, small = up if error_m > 0 else down
    return large if abs(error_m) > SMALL_STEP_BELOW_M else small


@dataclass
class _EpisodeMemory:
    """What the expert remembers within an episode."""

    blocked: set[Cell] = field(default_factory=set)
    failed_goals: set[Cell] = field(default_factory=set)
    goal_attempts: int = 0
    centre_turns: int = 0
    grasp_attempts: int = 0
    arm_failures: int = 0
    target_id: str | None = None
    reach_turns: int = 0
    lift_goal_m: float | None = None
    grasp_lift_m: float | None = None
    phase: str = "navigate"
    last_pose: np.ndarray | None = None
    last_action: Action | None = None
    target_seen: bool = False
    viewed: set[Cell] = field(default_factory=set)
    look_turns: int = 0
    explore_goal: Cell | None = None
    explore_goal_steps: int = 0
    gave_up: bool = False


_ARM_ACTIONS = frozenset(
    {
        Action.LIFT_UP,
        Action.LIFT_DOWN,
        Action.LIFT_UP_SMALL,
        Action.LIFT_DOWN_SMALL,
        Action.ARM_EXTEND,
        Action.ARM_RETRACT,
        Action.ARM_EXTEND_SMALL,
        Action.ARM_RETRACT_SMALL,
    }
)


_INVERSE: dict[Action, Action] = {
    Action.LIFT_UP: Action.LIFT_DOWN,
    Action.LIFT_DOWN: Action.LIFT_UP,
    Action.LIFT_UP_SMALL: Action.LIFT_DOWN_SMALL,
    Action.LIFT_DOWN_SMALL: Action.LIFT_UP_SMALL,
    Action.ARM_EXTEND: Action.ARM_RETRACT,
    Action.ARM_RETRACT: Action.ARM_EXTEND,
    Action.ARM_EXTEND_SMALL: Action.ARM_RETRACT_SMALL,
    Action.ARM_RETRACT_SMALL: Action.ARM_EXTEND_SMALL,
}


class ShortestPathExpert:
    """Privileged expert for the three tasks; call :meth:`reset` then :meth:`act` every step.

    Args:
        success_distance_m: ObjNav success radius, metres (TaskConfig; REFERENCE.md 2 m).
        grid_m: Reachable grid spacing, metres.
        explore: ObjNav: explore until a target has been seen (module docstring).
        heading_tolerance_rad: Heading error towards the path's waypoint up to which the base
            moves ahead without turning (:func:`heading_action`). The default 3.3 deg follows a
            path closely but labels ~30% of an episode's steps with a 6 deg turn that depends on
            a few degrees of heading, which images cannot show (docs/results, section 10); must
            be in [0, :data:`LARGE_TURN_THRESHOLD_RAD`) so small turns still close the gap.

    Raises:
        ValueError: On a non-positive success distance or a tolerance outside its range.
    """

    def __init__(
        self,
        success_distance_m: float = 2.0,
        grid_m: float = GRID_SIZE_M,
        explore: bool = False,
        heading_tolerance_rad: float = SMALL_TURN_THRESHOLD_RAD,
    ) -> None:
        """See the class docstring."""
        if not success_distance_m > 0:
            raise ValueError(f"success_distance_m must be positive, got {success_distance_m}")
        if not 0.0 <= heading_tolerance_rad < LARGE_TURN_THRESHOLD_RAD:
            raise ValueError(
                f"heading_tolerance_rad must be in [0, {LARGE_TURN_THRESHOLD_RAD:.4f}), "
                f"got {heading_tolerance_rad}"
            )
        self.success_distance_m = float(success_distance_m)
        self.grid_m = float(grid_m)
        self.explore = bool(explore)
        self.heading_tolerance_rad = float(heading_tolerance_rad)
        self._cells: list[Cell] = []
        self._cells_xy = np.zeros((0, 2))
        self._component: frozenset[Cell] = frozenset()
        self.spec: EpisodeSpec | None = None
        self.grid: GridMap | None = None
        self._free: frozenset[Cell] = frozenset()
        self._mem = _EpisodeMemory()

    # ----------------------------------------------------------------------- episode
    def reset(
        self,
        spec: EpisodeSpec,
        reachable_xy: np.ndarray,
        state: WorldState,
        walls: np.ndarray | None = None,
    ) -> None:
        """Start an episode: index the grid and mark free objects on the floor as obstacles.

        Args:
            spec: The episode (task, targets).
            reachable_xy: ``(M, 2)`` reachable base positions, metres.
            state: The state after reset.
            walls: ``(K, 2, 2)`` wall segments
                (:func:`~safevla_core.tasks.pickup.wall_segments`); Fetch never reaches across
                them. ``None``: no walls known.

        Raises:
            ValueError: On an unknown task or a malformed grid.
        """
        if spec.task not in ("objnav", "pickup", "fetch"):
            raise ValueError(f"unknown task {spec.task!r}")
        self.spec = spec
        self.grid = GridMap(reachable_xy, self.grid_m)
        self._walls = np.zeros((0, 2, 2)) if walls is None else np.asarray(walls, dtype=np.float64)
        free = set(self.grid.cells)
        for i, otype in enumerate(state.object_types):
            info = OBJECT_TYPES.get(otype)
            if info is None or info.furniture or state.object_ids[i] in spec.target_ids:
                continue
            pos = state.object_positions[i]
            if pos[2] - info.size_m[2] / 2 > FLOOR_OBJECT_MAX_BOTTOM_M:
                continue  # on a surface, not in the robot's way
            r = ROBOT_RADIUS_M + 0.5 * math.hypot(info.size_m[0], info.size_m[1])
            r += FLOOR_OBJECT_MARGIN_M
            free = {c for c in free if np.linalg.norm(self.grid.xy(c) - pos[:2]) >= r}
        start = self.grid.cell_of(state.robot_pose[:2])
        if start in self.grid.cells:
            free.add(start)
        self._free = frozenset(free)
        self._mem = _EpisodeMemory(phase="navigate" if spec.task != "pickup" else "grasp")
        if self.explore:  # the view-cone cells and the reachable component, once per episode
            self._cells = sorted(self.grid.cells)
            self._cells_xy = np.array([self.grid.xy(c) for c in self._cells]).reshape(-1, 2)
            self._component = _connected(self._free, start)

    @property
    def searching(self) -> bool:
        """Whether the exploring expert's last action came from its search (no target seen yet).

        Such an action heads for the expert's own exploration goal (the nearest cell it has not
        looked at, kept for up to :data:`MAX_EXPLORE_GOAL_STEPS`): a fact about its history,
        which a learner driving elsewhere does not share (docs/results, section 10). False for the
        non-exploring expert, and once a target has been seen or nothing is left to look at.
        """
        return self.explore and not self._mem.target_seen

    @property
    def gave_up(self) -> bool:
        """Whether the last action was an ObjNav ``end`` for want of a way on, not of success.

        True when :meth:`act` ended because no path leads from the base's cell to a goal cell
        (e.g. a learner drove into a pocket of the grid cut off from the target's) or every goal
        cell has been tried: the expert's own episode fails there, and on a learner's state
        (DAgger) it is no label to learn from. False after any other action, and after an
        ``end`` with a target in the success region.
        """
        return self._mem.gave_up

    def act(self, state: WorldState) -> Action:
        """The expert's action in ``state``.

        Raises:
            RuntimeError: Before :meth:`reset`.
        """
        if self.spec is None or self.grid is None:
            raise RuntimeError("call reset() before act()")
        mem = self._mem
        mem.gave_up = False
        self._note_blocked_move(state)
        if not self.spec.target_ids:
            action = Action.END  # nothing to find: the "extreme failure" episodes
        elif self.spec.task == "objnav":
            action = self._act_objnav(state)
        else:
            action = self._act_pickup(state)
        mem.last_pose = state.robot_pose.copy()
        mem.last_action = action
        return action

    # ----------------------------------------------------------------------- helpers
    @property
    def _grid(self) -> GridMap:
        """The episode's grid; RuntimeError before :meth:`reset`."""
        if self.grid is None:
            raise RuntimeError("call reset() before act()")
        return self.grid

    @property
    def _spec(self) -> EpisodeSpec:
        """The episode; RuntimeError before :meth:`reset`."""
        if self.spec is None:
            raise RuntimeError("call reset() before act()")
        return self.spec

    def _note_blocked_move(self, state: WorldState) -> None:
        """After a blocked ``m``, block the cell ahead so the next plan goes around it."""
        mem = self._mem
        if mem.last_action != Action.MOVE_AHEAD or mem.last_pose is None:
            return
        moved = float(np.linalg.norm(state.robot_pose[:2] - mem.last_pose[:2]))
        if state.last_action_success or moved > BASE_STEP_M / 2:
            return
        yaw = state.robot_pose[2]
        ahead = state.robot_pose[:2] + self.grid_m * np.array([math.cos(yaw), math.sin(yaw)])
        cell = self._grid.cell_of(ahead)
        if cell != self._grid.cell_of(state.robot_pose[:2]):
            mem.blocked.add(cell)

    def _targets(self, state: WorldState) -> list[tuple[str, np.ndarray]]:
        return [
            (t, state.object_positions[state.index_of(t)])
            for t in self._spec.target_ids
            if t in state.object_ids
        ]

    def _start_cell(self, pos: np.ndarray, free: frozenset[Cell]) -> Cell:
        """Where a plan from ``pos`` starts: its cell if free, else the nearest cell of ``free``.

        The base stands off the free grid when it is wedged against furniture, or near a floor
        object inflated out of the grid.
        """
        grid = self._grid
        here = grid.cell_of(pos)
        return here if here in free else grid.nearest_free(pos, frozenset(grid.cells - free))

    def _plan_step(self, state: WorldState, goals: set[Cell]) -> Action | None:
        """One step along the path to the nearest goal cell; ``None`` when at a goal."""
        grid, mem = self._grid, self._mem
        free = self._free - mem.blocked
        blocked = frozenset(mem.blocked)
        pos = state.robot_pose[:2]
        start = self._start_cell(pos, free)
        path = shortest_path(free | {start}, start, goals - mem.failed_goals)
        if path is None and mem.blocked:
            mem.blocked.clear()  # an object may have moved away: forget the blocks and retry
            return self._plan_step(state, goals)
        if path is None and self._free != grid.cells:
            # The inflated floor objects close the way: plan through them (it may push one).
            self._free = grid.cells
            return self._plan_step(state, goals)
        if path is None:
            return Action.END
        if len(path) == 1 and np.linalg.norm(grid.xy(path[0]) - pos) < MIN_WAYPOINT_DIST_M * 1.5:
            return None
        waypoint = grid.xy(path[-1] if len(path) == 1 else path[1])
        for c in path[1 : 1 + LOOKAHEAD_CELLS]:
            xy = grid.xy(c)
            if grid.line_free(pos, xy, blocked):
                waypoint = xy
        if np.linalg.norm(waypoint - pos) < MIN_WAYPOINT_DIST_M and len(path) > 2:
            waypoint = grid.xy(path[2])
        return heading_action(state.robot_pose, waypoint, self.heading_tolerance_rad)

    # ----------------------------------------------------------------------- ObjNav
    def _visible_target_in_range(self, state: WorldState) -> bool:
        return self._nearest_visible_target(state) is not None

    def _nearest_visible_target(self, state: WorldState) -> tuple[float, float] | None:
        """The nearest target visible within the success distance, or None.

        Returns:
            ``(distance_m, bearing_error_rad)``; the bearing error is positive to the left.
        """
        xy = state.robot_pose[:2]
        best: tuple[float, float] | None = None
        for t, p in self._targets(state):
            d = float(np.linalg.norm(p[:2] - xy))
            if t in state.visible_ids and d <= self.success_distance_m:
                if best is None or d < best[0]:
                    e = wrap_angle(math.atan2(p[1] - xy[1], p[0] - xy[0]) - state.robot_pose[2])
                    best = (d, e)
        return best

    def _centre_then_end(self, bearing_error_rad: float) -> Action:
        """Turn the target towards the camera axis (within END_CENTRE_RAD), then ``end``."""
        mem = self._mem
        if abs(bearing_error_rad) > END_CENTRE_RAD and mem.centre_turns < MAX_CENTRE_TURNS:
            turn = turn_action(bearing_error_rad, small_threshold_rad=END_CENTRE_RAD)
            if turn is not None:
                mem.centre_turns += 1
                return turn
        return Action.END

    def _target_in_sight(self, state: WorldState) -> bool:
        """Whether a target is visible within its seen distance (exploring expert)."""
        xy = state.robot_pose[:2]
        for t, p in self._targets(state):
            info = OBJECT_TYPES.get(state.object_types[state.index_of(t)])
            reach = (
                SEEN_DISTANCE_FURNITURE_M
                if info is not None and info.furniture
                else SEEN_DISTANCE_SMALL_M
            )
            if t in state.visible_ids and float(np.linalg.norm(p[:2] - xy)) <= reach:
                return True
        return False

    def _mark_viewed(self, state: WorldState) -> None:
        """Add the free cells in the camera's view cone (line of sight on the grid) to memory."""
        grid, mem = self._grid, self._mem
        cells = self._cells
        pos, yaw = state.robot_pose[:2], float(state.robot_pose[2])
        d = self._cells_xy - pos
        dist = np.hypot(d[:, 0], d[:, 1])
        bearing = np.arctan2(d[:, 1], d[:, 0]) - yaw
        bearing = (bearing + math.pi) % (2 * math.pi) - math.pi
        near = dist <= VIEW_NEAR_M
        cone = (dist <= VIEW_RANGE_M) & (np.abs(bearing) <= VIEW_HALF_ANGLE_RAD) & ~near
        mem.viewed.update(cells[i] for i in np.flatnonzero(near))
        for i in np.flatnonzero(cone):
            c = cells[i]
            if c not in mem.viewed and grid.line_free(pos, self._cells_xy[i]):
                mem.viewed.add(c)

    def _explore(self, state: WorldState) -> Action | None:
        """The exploring expert's action before a target is seen.

        Returns:
            ``None`` once a target is in sight, or when nothing is left to look at (the
            privileged plan then takes over).
        """
        mem, grid = self._mem, self._grid
        if self._target_in_sight(state):
            mem.target_seen = True
            return None
        self._mark_viewed(state)
        if mem.look_turns < LOOK_AROUND_TURNS:
            mem.look_turns += 1
            return Action.ROTATE_LEFT
        here = grid.cell_of(state.robot_pose[:2])
        for _ in range(3):
            goal = mem.explore_goal
            if (
                goal is None
                or goal == here
                or mem.explore_goal_steps >= MAX_EXPLORE_GOAL_STEPS
                or np.linalg.norm(grid.xy(goal) - state.robot_pose[:2]) <= VIEW_NEAR_M
            ):
                if goal is not None:
                    mem.viewed.add(goal)
                unviewed = self._component - mem.viewed - mem.blocked
                free = self._free - mem.blocked
                start = self._start_cell(state.robot_pose[:2], free)
                path = shortest_path(free | {start}, start, unviewed) if unviewed else None
                if path is None:
                    mem.target_seen = True  # nothing left to look at: use the privileged plan
                    return None
                goal = path[-1]
                mem.explore_goal, mem.explore_goal_steps = goal, 0
            action = self._plan_step(state, {goal})
            if action is None or action == Action.END:  # at the goal, or it became unreachable
                mem.viewed.add(goal)
                mem.explore_goal = None
                continue
            mem.explore_goal_steps += 1
            return action
        mem.target_seen = True
        return None

    def _back_out(self, state: WorldState) -> Action | None:
        """``b`` when the last motion was blocked off the free grid and free space lies behind.

        Wedged against furniture (the base's cell is not a free one, :class:`GridMap`), the
        contact stops turns as well as moves ahead (the simulator's servos are force-limited),
        so a plan that starts with a turn only grinds. When the nearest free cell lies behind
        the base (more than 90 deg off its heading), one step back (:data:`BASE_STEP_M`) frees
        it. ``None`` otherwise (the plan decides), including after a ``b`` that moved nothing.
        """
        if state.last_action_success:
            return None
        grid, mem = self._grid, self._mem
        pos, yaw = state.robot_pose[:2], float(state.robot_pose[2])
        start = self._start_cell(pos, self._free - mem.blocked)
        if start == grid.cell_of(pos):
            return None  # on the free grid
        to_free = grid.xy(start) - pos
        if abs(wrap_angle(math.atan2(to_free[1], to_free[0]) - yaw)) <= math.pi / 2:
            return None  # free space ahead or beside: a turn or a move ahead gets there
        last = mem.last_pose
        if mem.last_action == Action.MOVE_BACK and last is not None:
            moved = float(np.linalg.norm(pos - last[:2]))
            if (
                moved < BASE_STEP_M / 2
                and abs(wrap_angle(yaw - float(last[2]))) < BACK_OUT_STILL_RAD
            ):
                return None  # the last ``b`` was blocked too (nothing moved): the plan decides
        return Action.MOVE_BACK

    def _give_up(self) -> Action:
        """``end`` for want of a way on (:attr:`gave_up`)."""
        self._mem.gave_up = True
        return Action.END

    def _act_objnav(self, state: WorldState) -> Action:
        mem, grid = self._mem, self._grid
        back = self._back_out(state)
        if back is not None:
            return back
        if self.explore and not mem.target_seen:
            action = self._explore(state)
            if action is not None:
                return action
        seen = self._nearest_visible_target(state)
        if seen is not None and seen[0] <= END_DISTANCE_M:
            return self._centre_then_end(seen[1])
        targets = self._targets(state)
        txy = np.stack([p[:2] for _, p in targets])
        goals = {
            c
            for c in grid.cells
            if np.min(np.linalg.norm(txy - grid.xy(c), axis=1)) <= NAV_GOAL_RADIUS_M
        }
        action = self._plan_step(state, goals)
        if action == Action.END:  # no path to any goal cell from here
            return self._give_up()
        if action is not None:
            return action
        if seen is not None:  # at a goal cell and the target in the success region: no closer
            return self._centre_then_end(seen[1])
        # At a goal cell: face the nearest target; if it is still not visible, try another cell.
        pos = state.robot_pose[:2]
        k = int(np.argmin(np.linalg.norm(txy - pos, axis=1)))
        e = math.atan2(txy[k, 1] - pos[1], txy[k, 0] - pos[0]) - state.robot_pose[2]
        turn = turn_action(e)
        if turn is not None:
            return turn
        mem.goal_attempts += 1
        if mem.goal_attempts > MAX_GOAL_ATTEMPTS:
            return self._give_up()
        here = grid.cell_of(pos)
        mem.failed_goals |= {
            c for c in goals if np.linalg.norm(grid.xy(c) - grid.xy(here)) <= 2 * self.grid_m
        }
        action = self._plan_step(state, goals)
        if action is None or action == Action.END:
            return self._give_up()
        return action

    # ----------------------------------------------------------------------- PickUp / Fetch
    def _act_pickup(self, state: WorldState) -> Action:
        mem = self._mem
        if state.held_object_id is not None:
            return self._after_grasp(state)
        targets = self._targets(state)
        if mem.phase == "navigate":
            cells = sorted(self._grid.cells)
            xy = np.array([self._grid.xy(c) for c in cells])
            goals = {
                cells[i] for _, p in targets for i in arm_start_indices(p[:2], xy, self._walls)
            }
            action = self._plan_step(state, goals)
            if action is not None:
                return action
            mem.phase = "grasp"
        if mem.target_id is None:
            pos = state.robot_pose[:2]
            mem.target_id = targets[
                int(np.argmin([np.linalg.norm(p[:2] - pos) for _, p in targets]))
            ][0]
        return self._reach(
            state, mem.target_id, state.object_positions[state.index_of(mem.target_id)]
        )

    def _reach(self, state: WorldState, target_id: str, tpos: np.ndarray) -> Action:
        """Scripted reach and grasp of one target (arm towards the robot's right)."""
        mem = self._mem
        if mem.last_action in _ARM_ACTIONS and not state.last_action_success:
            mem.arm_failures += 1
            if mem.arm_failures > MAX_ARM_FAILURES:
                return Action.END
        x, y, yaw = state.robot_pose
        c, s = math.cos(yaw), math.sin(yaw)
        d = tpos[:2] - (x, y)
        tx, ty = c * d[0] + s * d[1], -s * d[0] + c * d[1]  # target in the base frame
        dist = math.hypot(tx, ty)
        lateral = math.sqrt(max(dist**2 - GRASP_X_M**2, 0.0))
        # 1. Lift first, so the gripper clears furniture tops before the base turns: grasp point
        #    GRASP_CLEARANCE_M above the object's top.
        if mem.lift_goal_m is None:
            top = tpos[2] + object_height_m(state.type_of(target_id)) / 2
            mem.lift_goal_m = float(
                np.clip(top + GRASP_CLEARANCE_M - GRASP_Z_MINUS_LIFT_M, 0.0, LIFT_MAX_M)
            )
        lift = step_action(
            mem.lift_goal_m - state.lift_m,
            (Action.LIFT_UP, Action.LIFT_UP_SMALL),
            (Action.LIFT_DOWN, Action.LIFT_DOWN_SMALL),
            LIFT_TOL_M,
        )
        if lift is not None and _INVERSE.get(lift) == mem.last_action:
            lift = None
        if lift is not None and mem.grasp_attempts == 0:
            return lift
        # 2. Put the target on the arm's line: bearing atan2(-lateral, GRASP_X_M).
        along_err = tx - GRASP_X_M
        if (ty > 0 or abs(along_err) > ALONG_TOL_M) and mem.reach_turns < MAX_REACH_TURNS:
            mem.reach_turns += 1
            e = math.atan2(ty, tx) - math.atan2(-lateral, GRASP_X_M)
            turn = turn_action(e, small_threshold_rad=0.0)
            if state.arm_m > ARM_TOL_M and turn is not None:
                return (
                    Action.ARM_RETRACT
                    if state.arm_m > SMALL_STEP_BELOW_M
                    else (Action.ARM_RETRACT_SMALL)
                )  # never swing an extended arm
            if turn is not None:
                return turn
        # 2b. Unstow: bring the wrist from its stowed yaw (the robot starts with the gripper tucked
        #     inside the base footprint) back to 0, 10 deg per wp/wm, before extending.
        if abs(state.wrist_yaw_rad) > math.radians(5.0):
            return Action.WRIST_POS if state.wrist_yaw_rad > 0 else Action.WRIST_NEG
        # 3. Extend the arm until the grasp point is above the target.
        arm_goal = float(np.clip(lateral - GRASP_LATERAL_AT_ZERO_ARM_M, 0.0, ARM_MAX_M))
        arm = step_action(
            arm_goal - state.arm_m,
            (Action.ARM_EXTEND, Action.ARM_EXTEND_SMALL),
            (Action.ARM_RETRACT, Action.ARM_RETRACT_SMALL),
            ARM_TOL_M,
        )
        if arm is not None and _INVERSE.get(arm) == mem.last_action:
            arm = None  # within one small step: stop instead of oscillating
        if arm is not None and mem.grasp_attempts == 0:
            return arm
        # 4. Grasp; after a failed grasp lower the lift one small step and try again.
        if mem.last_action == Action.PICKUP and not state.last_action_success:
            if mem.grasp_attempts >= MAX_GRASP_ATTEMPTS:
                return Action.END
            return Action.LIFT_DOWN_SMALL
        mem.grasp_attempts += 1
        mem.grasp_lift_m = float(state.lift_m)
        return Action.PICKUP

    def _after_grasp(self, state: WorldState) -> Action:
        """Lift the object a little, retract the arm, ``end`` (a non-target held: drop it)."""
        mem = self._mem
        if state.held_object_id not in self._spec.target_ids:
            return Action.DROP
        base = mem.grasp_lift_m if mem.grasp_lift_m is not None else state.lift_m
        goal = min(base + LIFT_AFTER_GRASP_M, LIFT_MAX_M)
        lift = step_action(
            goal - state.lift_m,
            (Action.LIFT_UP, Action.LIFT_UP_SMALL),
            (Action.LIFT_DOWN, Action.LIFT_DOWN_SMALL),
            LIFT_TOL_M,
        )
        if lift is not None and mem.phase != "retract":
            return lift
        mem.phase = "retract"
        if state.arm_m > ARM_TOL_M:
            return (
                Action.ARM_RETRACT
                if state.arm_m > SMALL_STEP_BELOW_M
                else (Action.ARM_RETRACT_SMALL)
            )
        return Action.END


def make_expert(task: Any) -> ShortestPathExpert:
    """The expert a task configuration asks for (``TaskConfig.expert``).

    Args:
        task: A :class:`~safevla_core.config.TaskConfig`.

    Returns:
        ``ShortestPathExpert(task.success_distance_m, explore=task.expert == "explore",
        heading_tolerance_rad=radians(task.expert_heading_tolerance_deg))``.
    """
    return ShortestPathExpert(
        task.success_distance_m,
        explore=task.expert == "explore",
        heading_tolerance_rad=math.radians(task.expert_heading_tolerance_deg),
    )


def run_expert_episode(
    env: Any,
    expert: ShortestPathExpert,
    house_index: int,
    seed: int,
    target_type: str | None = None,
    on_step: (
        Callable[[dict[str, Any], Action, float, float, dict[str, Any], WorldState], None] | None
    ) = None,
) -> dict[str, Any]:
    """Run the expert for one episode of a :class:`~safevla_core.env.SafetyChoresEnv`.

    Args:
        env: The environment (6-tuple step).
        expert: The expert.
        house_index: House of the env's split.
        seed: Episode seed.
        target_type: Force the target category (``options["target_type"]``).
        on_step: Called after each step as ``on_step(obs, action, reward, cost, info, state)``
            with the observation the action was chosen on and ``state``, the world state that
            observation was rendered in (the one the expert acted on; ``env.world_state`` is
            already the next one) (data collection).

    Returns:
        The env's episode summary plus ``house_id``, ``target_type``, ``instruction``, ``seed``
        and ``spl``-ready ``path_length_m``.
    """
    options: dict[str, Any] = {"house_index": house_index}
    if target_type is not None:
        options["target_type"] = target_type
    obs, info = env.reset(seed=seed, options=options)
    house = load_house(env.split, house_index, env.cfg.houses)
    expert.reset(
        env.spec_, env.backend.reachable_positions(), env.world_state, walls=wall_segments(house)
    )
    path_m = 0.0
    while True:
        state = env.world_state
        prev_xy = state.robot_pose[:2].copy()
        action = expert.act(state)
        next_obs, reward, cost, terminated, truncated, step_info = env.step(int(action))
        path_m += float(np.linalg.norm(env.world_state.robot_pose[:2] - prev_xy))
        if on_step is not None:
            on_step(obs, action, reward, cost, step_info, state)
        obs = next_obs
        if terminated or truncated:
            summary = dict(step_info["episode"])
            summary.update(
                house_id=info["house_id"],
                target_type=info["target_type"],
                instruction=info["instruction"],
                seed=seed,
                path_length_m=path_m,
            )
            return summary


__all__ = [
    "GridMap",
    "ShortestPathExpert",
    "heading_action",
    "run_expert_episode",
    "shortest_path",
    "step_action",
    "turn_action",
    "wrap_angle",
]
