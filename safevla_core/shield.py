"""The safety shield between the policy and the robot: a pure decision plus a watchdog.

The shield sees one proposed discrete action and either approves it unchanged or vetoes it with a
reason; it never substitutes another motion (a veto means "do nothing": STYLE.md, "anything doubtful
on a robot becomes do nothing"). Its evidence, strongest first:

* **the 2D laser scan** (the Stretch's RPLidar on ``/scan``; in simulation the same
  ``sensor_msgs/LaserScan`` from MuJoCo ray casts, :mod:`safevla_core.sim.laser`): the Stretch's
  footprint polygons (base, telescoping arm at its current extension, gripper at its current
  wrist yaw; :func:`footprint_polygons`) are swept along the action's motion
  (:func:`motion_samples`: translation, rotation in place, arm extension, wrist yaw) and any scan
  point that enters them is a veto (the approach of nav2's collision_monitor). Points already
  inside the current footprint (self hits, an obstacle already touched) are not evidence against
  a motion that does not sweep new area; lowering the lift over a scan point is a veto;
* **the depth camera**, when one is configured (the Stretch's head RealSense, or the simulator's
  ray-cast twin of the navigation camera): its pixels become 3D points in ``base_link``
  (:func:`depth_to_points`, REP-118 depth images), and a point vetoes a motion when the swept
  footprint meets it at a height where that part of the robot is (:func:`check_depth`: the base,
  mast and head from the floor to the robot's top, the arm and gripper around the lift height),
  so a table top the laser plane passes under stops the base but not an arm reaching over it;
* in simulation, also the :class:`~safevla_core.world.WorldState` and the reachable grid: a base
  translation that would leave the free space, repeat a translation that just collided, or bring
  the base closer than a clearance to a fragile or hazardous object is vetoed;
* an optional **second opinion** of a learned per-action one-step cost head ``Q_c(s, a)``: it can
  add a veto (above ``max_action_cost``), never approve on its own. The policy's state-value cost
  critic ``V_c(s)`` (discounted future cost of the state, the same for every action) is no evidence
  about an action: it is only checked to be a valid number.

The :class:`Watchdog` turns input freshness into the same "do nothing": stale cameras, a stale
proposal or a silent policy mean nothing is approved, and a clock that jumps backwards invalidates
every stamp. Everything here is ROS-free and deterministic; the ROS node only adds I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from safevla_core.actions import ACTION_EFFECTS, NUM_ACTIONS, Action, parse_action
from safevla_core.config import SimConfig
from safevla_core.objects import OBJECT_TYPES
from safevla_core.sim.stretch_model import HEAD_CAMERA_POS_M
from safevla_core.stretch_constants import (
    ARM_RANGE_M,
    BASE_X_MAX_M,
    BASE_X_MIN_M,
    BASE_Y_MAX_M,
    BASE_Y_MIN_M,
    LASER_POSE_IN_BASE,
    LIFT_RANGE_M,
    WRIST_YAW_RANGE_RAD,
)
from safevla_core.stretch_constants import (
    BASE_TURN_RADIUS_M as ROBOT_RADIUS_M,
)
from safevla_core.world import WorldState

# -- Stretch geometry in base_link (x forward, y left), metres -------------------------------------
# Measured from the collision meshes of the Stretch 3 URDF shipped in hello-robot-stretch-urdf
# (stretch_description_SE3_eoa_wrist_dw3_tool_sg3.urdf) as loaded by safevla_core.sim.stretch_model:
# projections of every robot collision geom onto the floor at arm extension 0 and 0.52 m, wrist
# yaw 0 and 90 deg (2026-11-30; the numbers in the comments are the measured extremes).
#: Base rectangle: x -0.286..0.058 (the base reaches 0.286 m behind base_link), y -0.181..0.181.
BASE_X_RANGE_M = (BASE_X_MIN_M, BASE_X_MAX_M)
BASE_Y_RANGE_M = (BASE_Y_MIN_M, BASE_Y_MAX_M)
#: Telescoping arm: x -0.142..0.001; its outer end at y = ARM_ROOT_Y_M - extension (it points to
#: the robot's right, -y).
ARM_X_RANGE_M = (-0.142, 0.001)
ARM_ROOT_Y_M = -0.170
#: Wrist yaw axis at zero extension (x, y); y moves by -extension.
WRIST_AXIS_XY_M = (-0.021, -0.145)
#: Gripper (wrist, camera, fingers) as a rectangle from the wrist axis along its pointing
#: direction (sin yaw, -cos yaw): fingertips 0.278 m from the axis, fingers 0.119 m wide.
GRIPPER_LENGTH_M = 0.28
GRIPPER_BACK_M = 0.03
GRIPPER_HALF_WIDTH_M = 0.065
#: Heights of the robot's parts above the floor (base_link z), measured the same way on the same
#: model at lift 0, 0.3, 0.6 and 1.1 m (2026-12): every geom but the arm and gripper (base, mast,
#: lift carriage, head) lies within 0..1.410 m; the arm's segments within lift + 0.157..0.233 m;
#: wrist and gripper within lift + 0.063..0.202 m (independent of extension and wrist yaw).
ROBOT_HEIGHT_M = 1.41
ARM_Z_ABOVE_LIFT_M = (0.157, 0.233)
GRIPPER_Z_ABOVE_LIFT_M = (0.063, 0.202)
#: Plausible range of the policy's reported state-value cost V_c(s): a discounted sum of per-step
#: costs of 0..5 (REFERENCE.md) with gamma 0.99 lies in 0..500; a critic's estimate may stray a
#: little outside (ours: 10%), anything beyond (-1e9, inf) is a broken model.
STATE_COST_RANGE = (-50.0, 550.0)
#: Sampling of a swept motion (ours): translation / extension step and rotation step.
SWEEP_STEP_M = 0.02
SWEEP_STEP_RAD = math.radians(2.0)


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
    SCAN_OBSTACLE = "scan_obstacle"
    DEPTH_OBSTACLE = "depth_obstacle"
    LEARNED_COST = "learned_cost"
    PREDICTED_COST = "predicted_cost"  # kept for old decision logs; no longer produced


@dataclass(frozen=True)
class ShieldLimits:
    """Limits of the shield decision.

    Attributes:
        robot_radius_m: Radius of a circle containing the base for the hazard clearance, metres
            (:data:`safevla_core.stretch_constants.BASE_TURN_RADIUS_M`, 0.34 m: the base rectangle's
            circumscribed circle about base_link).
        hazard_margin_m: Extra clearance kept between that circle and the centre of a fragile or
            hazardous object, metres (ours).
        reachable_tolerance_m: A predicted base position farther than this from every reachable
            grid point leaves the free space, metres (ours: about one grid cell of the backend).
        sweep_margin_m: The swept footprint goes this much beyond a translation's or an arm
            extension's nominal end (overshoot, odometry error), metres (ours).
        sweep_margin_rad: The same for rotations of the base and the wrist, radians (ours: 5 deg).
        max_action_cost: Veto when the learned per-action one-step cost head ``Q_c(s, a)``
            (optional second opinion, same units as the per-step cost: 0..5 flags, REFERENCE.md)
            predicts more than this for the proposed action (ours: 0.5, half of one cost event).
        max_invalid_scan_fraction: A scan with a larger share of NaN ranges is no evidence
            (ours: half the beams).
        max_invalid_depth_fraction: A depth image with a larger share of invalid pixels (NaN,
            or 0 in a 16UC1 image) among those sampled is no evidence (ours: half; a
            RealSense leaves some pixels invalid in any room, a covered lens all of them).
        use_reachable_grid: Simulation only: also veto a base translation whose end is
            farther than ``reachable_tolerance_m`` from the reachable grid (positions where the
            0.34 m circle about base_link is free). Off by default: the swept-footprint scan check
            covers it, and the circle vetoed 10% of the safe moves in the scan of
            scripts/shield_scan.py.
        require_scan: Veto motion without a laser scan (True: the scan is the independent
            evidence; doubtful means do nothing). False only for tests of the other checks.
        enabled: False switches the cost checks off (evidence, scan, learned cost, free space,
            repeated collision, hazards): every valid action is approved unless the runstop is
            engaged. For experiments that measure what the shield prevents (ours); the watchdog
            and the input validation of the monitor node stay on.
    """

    robot_radius_m: float = ROBOT_RADIUS_M
    hazard_margin_m: float = 0.0
    reachable_tolerance_m: float = 0.25
    sweep_margin_m: float = 0.03
    sweep_margin_rad: float = math.radians(5.0)
    max_action_cost: float = 0.5
    max_invalid_scan_fraction: float = 0.5
    max_invalid_depth_fraction: float = 0.5
    use_reachable_grid: bool = False
    require_scan: bool = True
    enabled: bool = True

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a negative or non-finite limit, or a fraction outside 0..1.
        """
        for name in (
            "robot_radius_m",
            "hazard_margin_m",
            "reachable_tolerance_m",
            "sweep_margin_m",
            "sweep_margin_rad",
            "max_action_cost",
            "max_invalid_scan_fraction",
            "max_invalid_depth_fraction",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0.0)
            ):
                raise ValueError(f"ShieldLimits.{name} must be finite and >= 0, got {value!r}")
        for name in ("max_invalid_scan_fraction", "max_invalid_depth_fraction"):
            if getattr(self, name) > 1.0:
                raise ValueError(f"ShieldLimits.{name} must be <= 1, got {getattr(self, name)!r}")
        for name in ("use_reachable_grid", "require_scan", "enabled"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ShieldLimits.{name} must be a bool, got {getattr(self, name)!r}")

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


# -- footprint and scan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmPose:
    """The joints that shape the footprint.

    Attributes:
        lift_m: ``joint_lift``, metres.
        arm_m: ``wrist_extension`` (sum of the arm segments), metres.
        wrist_yaw_rad: ``joint_wrist_yaw``, radians.
    """

    lift_m: float
    arm_m: float
    wrist_yaw_rad: float

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on NaN or inf."""
        for name in ("lift_m", "arm_m", "wrist_yaw_rad"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"ArmPose.{name} is not finite: {getattr(self, name)!r}")


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)  # CCW


def _footprints(arm_m: np.ndarray, wrist_yaw_rad: np.ndarray) -> np.ndarray:
    """``(S, 3, 4, 2)`` footprint rectangles for ``S`` arm configurations (see below)."""
    ext = np.clip(np.asarray(arm_m, dtype=np.float64).reshape(-1), *ARM_RANGE_M)
    yaw = np.asarray(wrist_yaw_rad, dtype=np.float64).reshape(-1)
    out = np.empty((ext.size, 3, 4, 2))
    out[:, 0] = _rect(*BASE_X_RANGE_M, *BASE_Y_RANGE_M)
    out[:, 1] = _rect(*ARM_X_RANGE_M, 0.0, 0.0)
    out[:, 1, :2, 1] = (ARM_ROOT_Y_M - ext)[:, None]  # the arm's outer end (y0 of the rect)
    c = np.stack([np.full_like(ext, WRIST_AXIS_XY_M[0]), WRIST_AXIS_XY_M[1] - ext], axis=1)
    u = np.stack([np.sin(yaw), -np.cos(yaw)], axis=1)  # (S, 2) gripper direction
    n = np.stack([-u[:, 1], u[:, 0]], axis=1)
    back, front = c - GRIPPER_BACK_M * u, c + GRIPPER_LENGTH_M * u
    w = GRIPPER_HALF_WIDTH_M * n
    out[:, 2] = np.stack([back - w, front - w, front + w, back + w], axis=1)
    return out


def footprint_polygons(arm_m: float, wrist_yaw_rad: float) -> list[np.ndarray]:
    """Convex polygons covering the Stretch seen from above, in ``base_link``.

    Args:
        arm_m: Arm extension, metres (clamped to the joint range).
        wrist_yaw_rad: Wrist yaw, radians (0: gripper along the arm, pointing -y).

    Returns:
        Three ``(4, 2)`` counter-clockwise rectangles (metres): the base, the arm from the mast
        to its end, the gripper from the wrist axis along ``(sin yaw, -cos yaw)``. Constants:
        :data:`BASE_X_RANGE_M` and the others above (SE3 URDF collision meshes).
    """
    return list(_footprints(np.array([arm_m]), np.array([wrist_yaw_rad]))[0])


def _inside_convex(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Mask of points inside (or on) convex polygons of either orientation, batched.

    Args:
        points: ``(..., N, 2)`` points.
        poly: ``(..., V, 2)`` polygons (leading dimensions broadcast with ``points``').

    Returns:
        ``(..., N)`` bool.
    """
    edges = np.roll(poly, -1, axis=-2) - poly  # (..., V, 2)
    rel = points[..., :, None, :] - poly[..., None, :, :]  # (..., N, V, 2)
    cross = edges[..., None, :, 0] * rel[..., 1] - edges[..., None, :, 1] * rel[..., 0]
    inside: np.ndarray = np.all(cross >= -1e-12, axis=-1) | np.all(cross <= 1e-12, axis=-1)
    return inside


def inside_footprint(points: np.ndarray, polygons: Sequence[np.ndarray]) -> np.ndarray:
    """``(N,)`` mask of ``(N, 2)`` points inside any of the polygons."""
    mask = np.zeros(len(points), dtype=bool)
    for poly in polygons:
        mask |= _inside_convex(points, poly)
    return mask


def motion_samples(
    action: Action, arm: ArmPose, limits: ShieldLimits
) -> list[tuple[float, float, float, float]]:
    """Intermediate configurations of an action's motion, beyond its start.

    Args:
        action: The action.
        arm: Current arm pose.
        limits: ``sweep_margin_m`` / ``sweep_margin_rad`` extend the motion past its nominal end.

    Returns:
        ``[(forward_m, yaw_rad, arm_m, wrist_yaw_rad), ...]``: base displacement along the start
        heading and base rotation relative to the start pose, and the arm joints, sampled every
        :data:`SWEEP_STEP_M` / :data:`SWEEP_STEP_RAD` up to the nominal effect plus the margin
        (arm and wrist clamped to their joint ranges). Empty for actions that move nothing in
        the floor plane (lift, grasp, end).
    """
    eff = ACTION_EFFECTS[action]

    def ramp(total: float, margin: float, step: float) -> np.ndarray:
        if total == 0.0:
            return np.zeros(0)
        end = abs(total) + margin
        n = max(1, math.ceil(end / step))
        return math.copysign(1.0, total) * np.linspace(end / n, end, n)

    out: list[tuple[float, float, float, float]] = []
    for d in ramp(eff.base_forward_m, limits.sweep_margin_m, SWEEP_STEP_M):
        out.append((float(d), 0.0, arm.arm_m, arm.wrist_yaw_rad))
    for a in ramp(eff.base_yaw_rad, limits.sweep_margin_rad, SWEEP_STEP_RAD):
        out.append((0.0, float(a), arm.arm_m, arm.wrist_yaw_rad))
    for e in ramp(eff.arm_m, limits.sweep_margin_m, SWEEP_STEP_M):
        out.append((0.0, 0.0, float(np.clip(arm.arm_m + e, *ARM_RANGE_M)), arm.wrist_yaw_rad))
    for w in ramp(eff.wrist_yaw_rad, limits.sweep_margin_rad, SWEEP_STEP_RAD):
        out.append(
            (0.0, 0.0, arm.arm_m, float(np.clip(arm.wrist_yaw_rad + w, *WRIST_YAW_RANGE_RAD)))
        )
    return out


def scan_to_points(
    ranges: Sequence[float] | np.ndarray,
    angle_min_rad: float,
    angle_increment_rad: float,
    range_min_m: float,
    range_max_m: float,
    laser_pose: tuple[float, float, float] = LASER_POSE_IN_BASE,
) -> tuple[np.ndarray, float]:
    """A ``sensor_msgs/LaserScan`` as obstacle points in ``base_link``.

    Range conventions follow REP-117: ``+inf`` (no return within range) is free space, ``-inf``
    (too close) is an obstacle at ``range_min_m``, NaN is an invalid reading; finite ranges
    outside ``[range_min_m, range_max_m]`` are invalid too.

    Args:
        ranges: ``(N,)`` ranges, metres.
        angle_min_rad: Angle of the first beam in the laser frame, radians.
        angle_increment_rad: Angle between beams, radians.
        range_min_m: Minimum valid range, metres.
        range_max_m: Maximum valid range, metres.
        laser_pose: Laser frame in ``base_link`` (x_m, y_m, yaw_rad); default
            :data:`LASER_POSE_IN_BASE`.

    Returns:
        ``((M, 2) points in base_link, metres; fraction of invalid beams in 0..1)``.

    Raises:
        ValueError: On an empty scan, non-finite angles or limits, or ``range_min_m >
            range_max_m``.
    """
    r = np.asarray(ranges, dtype=np.float64).reshape(-1)
    vals = (angle_min_rad, angle_increment_rad, range_min_m, range_max_m, *laser_pose)
    if r.size == 0:
        raise ValueError("empty laser scan")
    if not all(math.isfinite(v) for v in vals) or range_min_m > range_max_m or range_min_m < 0:
        raise ValueError(f"invalid laser scan geometry {vals!r}")
    r = np.where(np.isneginf(r), range_min_m, r)
    valid = np.isfinite(r) & (r >= range_min_m) & (r <= range_max_m)
    invalid = np.isnan(r) | (np.isfinite(r) & ~valid)
    ang = angle_min_rad + angle_increment_rad * np.arange(r.size)
    lx, ly, lyaw = laser_pose
    a = ang[valid] + lyaw
    pts = np.stack([lx + r[valid] * np.cos(a), ly + r[valid] * np.sin(a)], axis=1)
    return pts, float(invalid.mean())


def _fmt_xy(p: np.ndarray) -> str:
    return f"({p[0]:+.2f}, {p[1]:+.2f}) m"


def check_scan(
    action: Action, scan_xy: np.ndarray, arm: ArmPose, limits: ShieldLimits
) -> ShieldDecision | None:
    """Veto an action whose swept footprint meets a scan point (pure).

    Points inside the current footprint are set aside (self hits, an obstacle already touched);
    every other point that any configuration of :func:`motion_samples` covers is a veto. Lowering
    the lift is vetoed when a point lies under the arm or gripper (outside the base): the arm
    would come down on what the scan sees.

    Args:
        action: The action.
        scan_xy: ``(N, 2)`` obstacle points in ``base_link``, metres (:func:`scan_to_points`).
        arm: Current arm pose.
        limits: Sweep margins.

    Returns:
        A veto, or ``None`` if the scan shows nothing in the way.
    """
    pts = np.asarray(scan_xy, dtype=np.float64).reshape(-1, 2)
    start = footprint_polygons(arm.arm_m, arm.wrist_yaw_rad)
    inside_now = inside_footprint(pts, start)
    eff = ACTION_EFFECTS[action]
    if eff.lift_m < 0.0:
        under = inside_footprint(pts, start[1:]) & ~inside_footprint(pts, start[:1])
        if np.any(under):
            return _veto(
                Verdict.SCAN_OBSTACLE,
                f"lowering the lift over a scan point at {_fmt_xy(pts[under][0])}",
            )
        return None
    cand = pts[~inside_now]
    samples = np.asarray(motion_samples(action, arm, limits), dtype=np.float64).reshape(-1, 4)
    if cand.size == 0 or samples.size == 0:
        return None
    polys = _footprints(samples[:, 2], samples[:, 3])  # (S, 3, 4, 2), each in its own frame
    # Only points within reach can be met: every footprint lies in the disc of its farthest
    # vertex about its base frame's origin, which the motion moves at most max|forward| from
    # base_link. Typically a few dozen of the 360 beams remain.
    reach = float(np.max(np.linalg.norm(polys, axis=-1))) + float(np.max(np.abs(samples[:, 0])))
    cand = cand[np.einsum("ij,ij->i", cand, cand) <= reach * reach]
    if cand.size == 0:
        return None
    # Every configuration at once: the candidates in each sampled base frame, (S, N, 2), tested
    # against that configuration's footprint (one numpy pass instead of a loop over samples).
    fwd, yaw = samples[:, 0:1], samples[:, 1:2]
    c, s = np.cos(yaw), np.sin(yaw)
    rx, ry = cand[None, :, 0] - fwd, cand[None, :, 1]
    local = np.stack([c * rx + s * ry, -s * rx + c * ry], axis=-1)
    hit: np.ndarray = np.asarray(_inside_convex(local[:, None], polys).any(axis=1))  # (S, N)
    if not hit.any():
        return None
    first = cand[hit[int(np.argmax(hit.any(axis=1)))]][0]  # the first configuration that hits
    return _veto(
        Verdict.SCAN_OBSTACLE,
        f"scan point at {_fmt_xy(first)} in base_link inside the footprint swept by {action.name}",
    )


# -- depth camera ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DepthCamera:
    """Pose of a depth camera's optical frame in ``base_link`` and how its pixels are sampled.

    The optical frame follows REP-103 (z along the optical axis, x right, y down in the image);
    its pose is given as a position and the heading and downward pitch of the optical axis (no
    roll: a pan-tilt head). Defaults: the embedded simulator's navigation camera
    (:data:`safevla_core.sim.stretch_model.HEAD_CAMERA_POS_M`, looking forward pitched
    :attr:`safevla_core.config.SimConfig.nav_pitch_deg` = 27 deg down). On the robot, set them to
    the head camera's ``camera_depth_optical_frame`` at the head pose used while deploying.

    Attributes:
        x_m: Optical centre in base_link, x, metres.
        y_m: Optical centre in base_link, y, metres.
        z_m: Optical centre in base_link, z (height above the floor), metres.
        yaw_rad: Heading of the optical axis in base_link, radians (0: forward, +x).
        pitch_rad: Pitch of the optical axis below horizontal, radians (positive looks down).
        stride: Use every ``stride``-th pixel of every ``stride``-th row (ours: 2; a 640x480
            RealSense frame wants 8).
        min_height_m: Points lower than this are the floor and ignored, metres (ours: 5 cm of
            floor unevenness and depth noise; nav2's collision monitor filters its point
            sources by a height band in the same way).
        max_height_m: Points higher than this are above the robot and ignored, metres (ours:
            :data:`ROBOT_HEIGHT_M` plus 5 cm).
        min_range_m: A ``-Inf`` pixel (closer than the camera can measure, REP-117) is an
            obstacle at this depth, metres (ours).
    """

    x_m: float = HEAD_CAMERA_POS_M[0]
    y_m: float = HEAD_CAMERA_POS_M[1]
    z_m: float = HEAD_CAMERA_POS_M[2]
    yaw_rad: float = 0.0
    pitch_rad: float = math.radians(SimConfig().nav_pitch_deg)
    stride: int = 2
    min_height_m: float = 0.05
    max_height_m: float = ROBOT_HEIGHT_M + 0.05
    min_range_m: float = 0.1

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on a non-finite pose, a bad stride or height band."""
        for name in ("x_m", "y_m", "z_m", "yaw_rad", "pitch_rad", "min_height_m", "max_height_m"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"DepthCamera.{name} must be finite, got {getattr(self, name)!r}")
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"DepthCamera.stride must be an int >= 1, got {self.stride!r}")
        if not self.min_height_m < self.max_height_m:
            raise ValueError("DepthCamera.min_height_m must be below max_height_m")
        if not (math.isfinite(self.min_range_m) and self.min_range_m > 0):
            raise ValueError(f"DepthCamera.min_range_m must be > 0, got {self.min_range_m!r}")

    def rotation(self) -> np.ndarray:
        """``(3, 3)`` rotation optical frame -> base_link (columns: optical x, y, z in base)."""
        cy, sy = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        cp, sp = math.cos(self.pitch_rad), math.sin(self.pitch_rad)
        z = np.array([cp * cy, cp * sy, -sp])  # optical axis
        x = np.array([sy, -cy, 0.0])  # image right
        return np.stack([x, np.cross(z, x), z], axis=1)  # y = z x x: image down


@dataclass(frozen=True)
class PinholeIntrinsics:
    """Pinhole camera intrinsics of a depth image (``sensor_msgs/CameraInfo`` ``K``).

    Attributes:
        fx: Focal length along image x, pixels.
        fy: Focal length along image y, pixels.
        cx: Principal point x, pixels (pixel centres at integers).
        cy: Principal point y, pixels.
        width: Image width, pixels.
        height: Image height, pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on non-positive focal lengths or sizes, or NaN."""
        if not all(math.isfinite(v) for v in (self.fx, self.fy, self.cx, self.cy)):
            raise ValueError("camera intrinsics must be finite")
        if self.fx <= 0 or self.fy <= 0 or self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"camera intrinsics need fx, fy, width, height > 0, got {self.fx}, {self.fy}, "
                f"{self.width}, {self.height}"
            )


def depth_to_points(
    depth_m: np.ndarray, intrinsics: PinholeIntrinsics, camera: DepthCamera
) -> tuple[np.ndarray, float]:
    """A depth image as obstacle points in ``base_link`` (REP-118, pinhole back-projection).

    Pixel ``(u, v)`` with depth ``d`` (along the optical axis) is the point
    ``((u - cx) d / fx, (v - cy) d / fy, d)`` in the optical frame, moved into base_link by the
    camera's pose. Values follow REP-117/118: ``NaN`` (and 0 in a millimetre image, converted
    to NaN by the caller) is invalid, ``+Inf`` is no return (free), ``-Inf`` is an obstacle at
    ``camera.min_range_m``. Every ``camera.stride``-th pixel is used; points outside the height
    band ``camera.min_height_m .. max_height_m`` (the floor, above the robot) are dropped.

    Args:
        depth_m: ``(H, W)`` depths, metres (float).
        intrinsics: The image's intrinsics (``H, W`` must match).
        camera: Pose and sampling.

    Returns:
        ``((M, 3) points in base_link, metres; fraction of invalid sampled pixels in 0..1)``.

    Raises:
        ValueError: On an empty image or one whose size differs from the intrinsics'.
    """
    d = np.asarray(depth_m, dtype=np.float64)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"depth image must be (H, W) and non-empty, got shape {d.shape}")
    if d.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(
            f"depth image is {d.shape[1]}x{d.shape[0]} but its camera_info says "
            f"{intrinsics.width}x{intrinsics.height}"
        )
    k = camera.stride
    d = d[::k, ::k]
    v, u = np.mgrid[0 : intrinsics.height : k, 0 : intrinsics.width : k]
    invalid = np.isnan(d) | (np.isfinite(d) & (d <= 0.0))
    d = np.where(np.isneginf(d), camera.min_range_m, d)
    use = np.isfinite(d) & (d > 0.0)
    z = d[use]
    opt = np.stack(
        [
            (u[use] - intrinsics.cx) * z / intrinsics.fx,
            (v[use] - intrinsics.cy) * z / intrinsics.fy,
            z,
        ],
        axis=1,
    )
    pts = opt @ camera.rotation().T + np.array([camera.x_m, camera.y_m, camera.z_m])
    keep = (pts[:, 2] >= camera.min_height_m) & (pts[:, 2] <= camera.max_height_m)
    return pts[keep], float(invalid.mean())


def _height_bands(lift_m: np.ndarray, margin_m: float) -> np.ndarray:
    """``(S, 3, 2)`` z intervals of the base, arm and gripper polygons at lift heights ``(S,)``."""
    lift = np.asarray(lift_m, dtype=np.float64).reshape(-1, 1)
    out = np.empty((lift.shape[0], 3, 2))
    out[:, 0] = (-np.inf, ROBOT_HEIGHT_M + margin_m)  # base, mast, carriage, head
    out[:, 1] = lift + np.array(ARM_Z_ABOVE_LIFT_M) + (-margin_m, margin_m)
    out[:, 2] = lift + np.array(GRIPPER_Z_ABOVE_LIFT_M) + (-margin_m, margin_m)
    return out


def check_depth(
    action: Action, depth_xyz: np.ndarray, arm: ArmPose, limits: ShieldLimits
) -> ShieldDecision | None:
    """Veto an action whose swept footprint meets a depth point at the height of that part (pure).

    The footprint of :func:`footprint_polygons` is swept as in :func:`check_scan`, but each
    polygon only meets points within its height band (:data:`ROBOT_HEIGHT_M`,
    :data:`ARM_Z_ABOVE_LIFT_M`, :data:`GRIPPER_Z_ABOVE_LIFT_M`, widened by
    ``limits.sweep_margin_m``): the base meets anything up to the robot's top, the arm and
    gripper only what is at their height. Lift motions (which :func:`check_scan` cannot judge)
    sweep the arm's and gripper's bands from the current lift to the new one plus the margin.
    Points the current footprint already meets are set aside (the robot's own arm in view, an
    obstacle already touched).

    Args:
        action: The action.
        depth_xyz: ``(N, 3)`` points in base_link, metres (:func:`depth_to_points`).
        arm: Current arm pose (lift height, extension, wrist yaw).
        limits: Sweep margins.

    Returns:
        A veto, or ``None`` if no depth point is in the way.
    """
    pts = np.asarray(depth_xyz, dtype=np.float64).reshape(-1, 3)
    margin = limits.sweep_margin_m
    eff = ACTION_EFFECTS[action]

    def meets(p: np.ndarray, samples: np.ndarray, bands: np.ndarray) -> np.ndarray:
        """``(S, N)``: sample s's footprint meets point n (in 2D and in height)."""
        polys = _footprints(samples[:, 2], samples[:, 3])
        c, s = np.cos(samples[:, 1:2]), np.sin(samples[:, 1:2])
        rx, ry = p[None, :, 0] - samples[:, 0:1], p[None, :, 1]
        local = np.stack([c * rx + s * ry, -s * rx + c * ry], axis=-1)
        inside = _inside_convex(local[:, None], polys)  # (S, 3, N)
        z = p[None, None, :, 2]
        in_band = (z >= bands[:, :, 0:1]) & (z <= bands[:, :, 1:2])
        return np.asarray((inside & in_band).any(axis=1))

    now = np.array([[0.0, 0.0, arm.arm_m, arm.wrist_yaw_rad]])
    if eff.lift_m != 0.0:
        new_lift = float(np.clip(arm.lift_m + eff.lift_m, *LIFT_RANGE_M))
        lo, hi = sorted((arm.lift_m, new_lift))
        bands = _height_bands(np.array([lo]), margin)
        bands[:, 1:, 1] += hi - lo  # the arm and gripper sweep from lo to hi
        bands[:, 0] = (np.inf, -np.inf)  # the base does not move
        samples = now
    else:
        samples = np.asarray(motion_samples(action, arm, limits), dtype=np.float64).reshape(-1, 4)
        bands = np.broadcast_to(_height_bands(np.array([arm.lift_m]), margin), (len(samples), 3, 2))
    if pts.size == 0 or samples.size == 0:
        return None
    # Only points within reach can be met (as in check_scan); the rest need no further test.
    reach = float(np.max(np.linalg.norm(_footprints(samples[:, 2], samples[:, 3]), axis=-1)))
    reach += float(np.max(np.abs(samples[:, 0])))
    pts = pts[np.einsum("ij,ij->i", pts[:, :2], pts[:, :2]) <= reach * reach]
    if pts.size:  # set aside what the current footprint already meets
        pts = pts[~meets(pts, now, _height_bands(np.array([arm.lift_m]), 0.0))[0]]
    if pts.size == 0:
        return None
    hit = meets(pts, samples, bands)
    if not hit.any():
        return None
    p = pts[hit[int(np.argmax(hit.any(axis=1)))]][0]
    return _veto(
        Verdict.DEPTH_OBSTACLE,
        f"depth point at ({p[0]:+.2f}, {p[1]:+.2f}, {p[2]:.2f}) m in base_link inside the "
        f"footprint swept by {action.name}",
    )


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
        return None  # rotations and arm motions: the scan check sweeps them
    if previous_action == action and world.collided_ids and not world.last_action_success:
        hit = ", ".join(sorted(world.collided_ids)[:3])
        return _veto(
            Verdict.REPEATED_COLLISION,
            f"the same base move just collided with {hit}; not repeating it",
        )
    new_xy = predicted_base_xy(world.robot_pose, action)
    if reachable_xy is not None and limits.use_reachable_grid:
        veto = _check_free_space(world, reachable_xy, new_xy, limits)
        if veto is not None:
            return veto
    return _check_hazards(world, new_xy, exempt_ids, limits)


def _check_learned(
    action: Action, action_costs: Sequence[float] | np.ndarray | None, limits: ShieldLimits
) -> ShieldDecision | None:
    if action_costs is None:
        return None
    q = np.asarray(action_costs, dtype=np.float64).reshape(-1)
    if q.size == 0:
        return None
    if q.size != NUM_ACTIONS:
        return _veto(
            Verdict.INVALID_INPUT,
            f"learned per-action costs have {q.size} entries, expected {NUM_ACTIONS}",
        )
    finite = q[np.isfinite(q)]
    if np.any(np.isinf(q)) or np.any(finite < 0.0):
        return _veto(Verdict.INVALID_INPUT, "learned per-action costs contain inf or negatives")
    qa = float(q[int(action)])
    if math.isfinite(qa) and qa > limits.max_action_cost:
        return _veto(
            Verdict.LEARNED_COST,
            f"learned Q_c(s, {action.name}) = {qa:.3f} > limit {limits.max_action_cost:.3f}",
        )
    return None


def decide(
    proposed: int | str | Action,
    limits: ShieldLimits,
    *,
    world: WorldState | None = None,
    reachable_xy: np.ndarray | None = None,
    scan_xy: np.ndarray | None = None,
    scan_invalid_fraction: float = 0.0,
    depth_xyz: np.ndarray | None = None,
    depth_invalid_fraction: float = 0.0,
    arm: ArmPose | None = None,
    action_costs: Sequence[float] | np.ndarray | None = None,
    predicted_cost: float | None = None,
    previous_action: Action | None = None,
    runstopped: bool = False,
    exempt_ids: Iterable[str] = (),
) -> ShieldDecision:
    """Approve a proposed action or veto it with a reason (pure; STYLE.md rule 8).

    Checks, in order: the action is valid; the runstop is off; the reported state-value cost
    ``predicted_cost`` (if given) lies in :data:`STATE_COST_RANGE` (it is not evidence, but
    garbage there means a broken policy); ``end`` and ``sub_done`` move nothing and are
    approved; the laser scan exists (``require_scan``), has at most
    ``max_invalid_scan_fraction`` invalid beams, the arm pose is known, and the swept
    footprint meets no scan point (:func:`check_scan`); if depth points are given, the depth
    image has at most ``max_invalid_depth_fraction`` invalid pixels and the swept footprint
    meets no depth point at the height of the part that moves there (:func:`check_depth`); the
    learned per-action cost, if given, is within ``max_action_cost``; with a world state
    (simulation), a base translation must not repeat a move that just collided, must keep the base
    within ``reachable_tolerance_m`` of the reachable grid, and must not bring it closer than
    ``robot_radius_m + hazard_margin_m`` to a fragile or hazardous object (moves that increase
    the distance are allowed, so a robot that starts too close can back away). With
    ``limits.enabled`` False only the validity and runstop checks remain.

    Args:
        proposed: Action index, short name or :class:`Action` from the policy.
        limits: The limits.
        world: Simulator world state the proposal was computed on, or ``None`` on hardware.
        reachable_xy: ``(M, 2)`` reachable base positions in ``map``, metres, or ``None``.
        scan_xy: ``(N, 2)`` laser obstacle points in ``base_link``, metres
            (:func:`scan_to_points`), or ``None`` if no usable scan.
        scan_invalid_fraction: Fraction of invalid beams of that scan, 0..1.
        depth_xyz: ``(N, 3)`` depth-camera obstacle points in ``base_link``, metres
            (:func:`depth_to_points`), or ``None`` when no depth camera is used (a configured
            but missing or stale one is the caller's veto).
        depth_invalid_fraction: Fraction of invalid sampled pixels of that depth image, 0..1.
        arm: Current arm pose (footprint shape); from ``world`` when not given.
        action_costs: ``(20,)`` learned one-step costs ``Q_c(s, a)`` (second opinion; NaN or
            an empty array = no opinion), or ``None``.
        predicted_cost: The policy's state-value cost ``V_c(s)`` as reported, or ``None``.
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
    lo, hi = STATE_COST_RANGE
    if predicted_cost is not None and not (
        math.isfinite(predicted_cost) and lo <= predicted_cost <= hi
    ):
        return _veto(
            Verdict.INVALID_INPUT,
            f"reported state cost is {predicted_cost!r} "
            f"(a working critic stays within {lo:g}..{hi:g})",
        )
    if reachable_xy is not None:
        reachable_xy = np.asarray(reachable_xy, dtype=np.float64).reshape(-1, 2)
        if not np.all(np.isfinite(reachable_xy)):
            return _veto(Verdict.INVALID_INPUT, "reachable positions contain NaN or inf")
    if scan_xy is not None:
        scan_xy = np.asarray(scan_xy, dtype=np.float64).reshape(-1, 2)
        if not np.all(np.isfinite(scan_xy)):
            return _veto(Verdict.INVALID_INPUT, "scan points contain NaN or inf")
    if depth_xyz is not None:
        depth_xyz = np.asarray(depth_xyz, dtype=np.float64).reshape(-1, 3)
        if not np.all(np.isfinite(depth_xyz)):
            return _veto(Verdict.INVALID_INPUT, "depth points contain NaN or inf")
    effect = ACTION_EFFECTS[action]
    if effect.terminal or effect.sub_done:
        return ShieldDecision(action, Verdict.APPROVED, "moves nothing")
    if not limits.enabled:
        return ShieldDecision(action, Verdict.APPROVED, "shield disabled")
    if arm is None and world is not None:
        arm = ArmPose(world.lift_m, world.arm_m, world.wrist_yaw_rad)
    if scan_xy is None:
        if limits.require_scan:
            return _veto(Verdict.NO_EVIDENCE, "no usable laser scan")
    elif not (0.0 <= scan_invalid_fraction <= limits.max_invalid_scan_fraction):
        return _veto(
            Verdict.NO_EVIDENCE, f"{scan_invalid_fraction:.0%} of the scan's beams are invalid"
        )
    elif arm is None:
        return _veto(Verdict.NO_EVIDENCE, "arm pose unknown: the footprint cannot be checked")
    else:
        veto = check_scan(action, scan_xy, arm, limits)
        if veto is not None:
            return veto
    if depth_xyz is not None:
        if not (0.0 <= depth_invalid_fraction <= limits.max_invalid_depth_fraction):
            return _veto(
                Verdict.NO_EVIDENCE,
                f"{depth_invalid_fraction:.0%} of the depth image's pixels are invalid",
            )
        if arm is None:
            return _veto(Verdict.NO_EVIDENCE, "arm pose unknown: the footprint cannot be checked")
        veto = check_depth(action, depth_xyz, arm, limits)
        if veto is not None:
            return veto
    veto = _check_learned(action, action_costs, limits)
    if veto is not None:
        return veto
    if world is not None:
        veto = _check_world(
            action, world, reachable_xy, previous_action, frozenset(exempt_ids), limits
        )
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
        scan_timeout_s: The laser scan is stale after this (ours: 0.5 s, five periods of the
            RPLidar's ~10 Hz).
        runstop_timeout_s: The runstop state is stale after this (hardware; ours: 1 s, the
            driver publishes it with every status update).
        joint_state_timeout_s: The joint states (arm pose for the footprint) are stale after
            this (hardware; ours: 0.5 s).
        depth_timeout_s: The depth image, when a depth camera is configured, is stale after
            this (ours: 0.5 s, several frames of a RealSense at 15-30 Hz).
    """

    camera_timeout_s: float = 1.0
    proposal_timeout_s: float = 2.0
    max_proposal_age_s: float = 1.0
    world_state_timeout_s: float = 2.0
    clock_jump_tolerance_s: float = 0.5
    scan_timeout_s: float = 0.5
    runstop_timeout_s: float = 1.0
    joint_state_timeout_s: float = 0.5
    depth_timeout_s: float = 0.5

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a non-positive or non-finite timeout.
        """
        for name in (
            "camera_timeout_s",
            "proposal_timeout_s",
            "max_proposal_age_s",
            "world_state_timeout_s",
            "clock_jump_tolerance_s",
            "scan_timeout_s",
            "runstop_timeout_s",
            "joint_state_timeout_s",
            "depth_timeout_s",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0.0)
            ):
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


def proposal_age_ok(camera_stamp_s: float, now_s: float, cfg: WatchdogConfig) -> tuple[bool, str]:
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
