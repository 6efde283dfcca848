"""Pure conversions between ROS messages and numpy / safevla_core types (no node, no I/O).

Image <-> numpy without cv_bridge (absent on PyPI; ENVIRONMENT.md), WorldState <->
WorldStateStamped, CostBreakdown -> SafetyCost, Action <-> DiscreteAction, and the messages the
simulator publishes for rviz (odometry, markers). Every function that reads a message validates it
and raises ``ValueError`` with the reason; nodes log the reason and drop the message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped, Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from safevla_core.actions import ACTION_NAMES, Action, parse_action
from safevla_core.costs import CostBreakdown, EpisodeCostAccumulator
from safevla_core.objects import OBJECT_TYPES
from safevla_core.stretch_commands import StretchCommand, TimedTwist, TrajectoryGoal
from safevla_core.world import WorldState

#: Encodings converted to rgb8, with their channel count (REP-104 / sensor_msgs image_encodings).
CONVERTIBLE_ENCODINGS: dict[str, int] = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


# -- time -------------------------------------------------------------------------------------
def stamp_to_s(stamp: Time) -> float:
    """``builtin_interfaces/Time`` -> seconds (float)."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def checked_stamp_s(stamp: Time) -> float:
    """``builtin_interfaces/Time`` -> seconds, refusing stamps no clock can produce.

    Raises:
        ValueError: If ``nanosec`` is outside 0..999999999 (e.g. 3e9 would otherwise read as
            3 s later) or ``sec`` is negative, or the stamp is zero (never set).
    """
    sec, nsec = int(stamp.sec), int(stamp.nanosec)
    if not 0 <= nsec < 1_000_000_000:
        raise ValueError(f"stamp nanosec {nsec} outside 0..999999999")
    if sec < 0:
        raise ValueError(f"negative stamp sec {sec}")
    if sec == 0 and nsec == 0:
        raise ValueError("zero stamp (never set)")
    return sec + 1e-9 * nsec


def stamp_key(stamp: Time) -> int:
    """Exact integer key of a stamp (nanoseconds), for matching messages by stamp."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def s_to_stamp(t_s: float) -> Time:
    """Seconds -> ``builtin_interfaces/Time``.

    Raises:
        ValueError: If ``t_s`` is negative or not finite.
    """
    if not math.isfinite(t_s) or t_s < 0:
        raise ValueError(f"time must be finite and >= 0, got {t_s!r}")
    sec = int(t_s)
    return Time(sec=sec, nanosec=min(int(round((t_s - sec) * 1e9)), 999_999_999))


def make_header(stamp: Time, frame_id: str) -> Header:
    """A header with a stamp and a frame id."""
    return Header(stamp=stamp, frame_id=frame_id)


# -- images -----------------------------------------------------------------------------------
def check_image(msg: Image) -> None:
    """Check that an image can be decoded (encoding, size, step, data length) without decoding.

    Raises:
        ValueError: With the reason, as :func:`image_to_rgb` would.
    """
    enc = msg.encoding.lower()
    if enc not in CONVERTIBLE_ENCODINGS:
        raise ValueError(
            f"unsupported image encoding {msg.encoding!r}; "
            f"convertible: {sorted(CONVERTIBLE_ENCODINGS)}"
        )
    ch = CONVERTIBLE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ValueError(f"empty image {w}x{h}")
    if step < w * ch:
        raise ValueError(f"step {step} < width {w} x {ch} channels")
    if len(msg.data) != step * h:
        raise ValueError(f"image data has {len(msg.data)} bytes, expected step {step} x height {h}")


def image_to_rgb(msg: Image) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into an ``(H, W, 3)`` uint8 RGB array (a copy).

    Converts ``bgr8``, ``rgba8``, ``bgra8`` and ``mono8`` to RGB (alpha dropped, mono
    replicated); honours row padding (``step`` > ``width * channels``).

    Raises:
        ValueError: On another encoding (the reason names it), an empty image, or a ``step`` /
            data length that does not match the size.
    """
    check_image(msg)
    enc = msg.encoding.lower()
    ch = CONVERTIBLE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data, dtype=np.uint8)  # bytes or array('B'): no copy
    img = data.reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    if enc.startswith("bgr"):
        return np.ascontiguousarray(img[:, :, 2::-1])
    return np.ascontiguousarray(img[:, :, :3])


def rgb_to_image(rgb: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """Encode an ``(H, W, 3)`` uint8 RGB array as an ``rgb8`` ``sensor_msgs/Image``.

    Raises:
        ValueError: If the array is not ``(H, W, 3)`` uint8.
    """
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    h, w, _ = arr.shape
    msg = Image(
        header=make_header(stamp, frame_id),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=3 * w,
    )
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg


def rgb_to_compressed_image(rgb: np.ndarray, stamp: Time, frame_id: str, fmt: str = "jpeg"):
    """Encode an RGB array as a ``sensor_msgs/CompressedImage`` with OpenCV (tests, tools).

    Raises:
        ImportError: If OpenCV (``opencv-python-headless``) is not installed.
        ValueError: If encoding fails.
    """
    import cv2
    from sensor_msgs.msg import CompressedImage

    ok, buf = cv2.imencode(
        ".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    )
    if not ok:
        raise ValueError("OpenCV could not encode the image")
    return CompressedImage(header=make_header(stamp, frame_id), format=fmt, data=buf.tobytes())


def compressed_to_rgb(msg) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG / PNG) into ``(H, W, 3)`` uint8 RGB.

    Raises:
        ImportError: If OpenCV (``opencv-python-headless``) is not installed.
        ValueError: If the data cannot be decoded.
    """
    import cv2

    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if buf.size == 0:
        raise ValueError("empty compressed image")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise ValueError(f"cannot decode compressed image (format {msg.format!r})")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def resize_nearest(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of an ``(H, W, C)`` array to ``(height, width, C)``.

    Source pixel of output column ``j`` is ``floor((j + 0.5) * W / width)`` (pixel centres).
    """
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return rgb[rows[:, None], cols[None, :]]


# -- depth ------------------------------------------------------------------------------------
#: Depth encodings (REP-118): ``32FC1`` metres (the canonical one), ``16UC1`` millimetres (the
#: OpenNI raw one, also the RealSense driver's, 0 = invalid): numpy dtype and scale to metres.
DEPTH_ENCODINGS: dict[str, tuple[str, float]] = {"32fc1": ("f4", 1.0), "16uc1": ("u2", 1e-3)}


def depth_to_m(msg: Image) -> np.ndarray:
    """Decode a depth ``sensor_msgs/Image`` into ``(H, W)`` float32 metres (a copy).

    ``32FC1`` keeps its values (REP-117 non-finite values included); ``16UC1`` is millimetres
    and 0 becomes NaN (invalid, REP-118). Honours ``is_bigendian`` and row padding.

    Raises:
        ValueError: On another encoding, an empty image, or a step / data length that does not
            match the size.
    """
    enc = msg.encoding.lower()
    if enc not in DEPTH_ENCODINGS:
        raise ValueError(
            f"unsupported depth encoding {msg.encoding!r}; supported: 32FC1 (m), 16UC1 (mm)"
        )
    kind, scale = DEPTH_ENCODINGS[enc]
    size = int(kind[1])
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ValueError(f"empty depth image {w}x{h}")
    if step < w * size or step % size:
        raise ValueError(f"step {step} does not fit width {w} x {size} bytes")
    if len(msg.data) != step * h:
        raise ValueError(f"depth data has {len(msg.data)} bytes, expected step {step} x height {h}")
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)[:, : w * size]
    values = np.ascontiguousarray(raw).view(dtype).reshape(h, w).astype(np.float32)
    if scale != 1.0:
        values = np.where(values == 0, np.float32(np.nan), values * np.float32(scale))
    return values


def depth_to_image(depth_m: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """Encode ``(H, W)`` depths in metres as a ``32FC1`` ``sensor_msgs/Image`` (REP-118).

    Raises:
        ValueError: If the array is not two-dimensional.
    """
    arr = np.asarray(depth_m, dtype="<f4")
    if arr.ndim != 2:
        raise ValueError(f"expected (H, W) depths, got shape {arr.shape}")
    h, w = arr.shape
    msg = Image(
        header=make_header(stamp, frame_id),
        height=h,
        width=w,
        encoding="32FC1",
        is_bigendian=0,
        step=4 * w,
    )
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg


def camera_info_to_intrinsics(msg):
    """``sensor_msgs/CameraInfo`` -> :class:`safevla_core.shield.PinholeIntrinsics` (from ``K``).

    Distortion is ignored (the depth streams this is used for, a RealSense's and the
    simulator's, are rectified: zero distortion).

    Raises:
        ValueError: On a ``K`` with non-positive or non-finite focal lengths, or a zero size.
    """
    from safevla_core.shield import PinholeIntrinsics

    k = [float(v) for v in msg.k]
    if len(k) != 9:
        raise ValueError(f"camera_info K has {len(k)} entries")
    return PinholeIntrinsics(
        fx=k[0], fy=k[4], cx=k[2], cy=k[5], width=int(msg.width), height=int(msg.height)
    )


# -- laser ------------------------------------------------------------------------------------
def scan_to_msg(ranges: np.ndarray, spec, stamp: Time, frame_id: str):
    """Simulated ranges (:func:`safevla_core.sim.laser.cast_scan`) -> ``sensor_msgs/LaserScan``."""
    from sensor_msgs.msg import LaserScan

    n = len(ranges)
    return LaserScan(
        header=make_header(stamp, frame_id),
        angle_min=spec.angle_min_rad,
        angle_max=spec.angle_min_rad + spec.angle_increment_rad * (n - 1),
        angle_increment=spec.angle_increment_rad,
        time_increment=0.0,
        scan_time=0.0,
        range_min=spec.range_min_m,
        range_max=spec.range_max_m,
        ranges=np.asarray(ranges, dtype=np.float32).tolist(),
    )


def scan_msg_to_points(msg, laser_pose: tuple[float, float, float]) -> tuple[np.ndarray, float]:
    """``sensor_msgs/LaserScan`` -> obstacle points in ``base_link`` and the invalid fraction.

    Args:
        msg: The scan.
        laser_pose: Pose of the scan's frame in ``base_link`` (x_m, y_m, yaw_rad).

    Returns:
        See :func:`safevla_core.shield.scan_to_points`.

    Raises:
        ValueError: On an empty scan, non-finite geometry, or ``angle_max`` inconsistent with
            ``angle_min + (N - 1) * angle_increment`` (by more than one increment).
    """
    from safevla_core.shield import scan_to_points

    n = len(msg.ranges)
    expect = msg.angle_min + msg.angle_increment * (n - 1)
    tol = abs(msg.angle_increment) + 1e-6
    if n and math.isfinite(expect) and abs(expect - msg.angle_max) > tol:
        raise ValueError(
            f"scan angle_max {msg.angle_max:.4f} != angle_min + (N-1) increment {expect:.4f}"
        )
    return scan_to_points(
        np.asarray(msg.ranges, dtype=np.float64),
        msg.angle_min,
        msg.angle_increment,
        msg.range_min,
        msg.range_max,
        laser_pose,
    )


# -- actions ----------------------------------------------------------------------------------
def action_to_msg(
    action: Action | int,
    stamp: Time,
    source: str,
    approved: bool = False,
    verdict: str = "",
    predicted_cost: float = 0.0,
    action_costs: Iterable[float] = (),
):
    """Build a ``safevla_ros/DiscreteAction``.

    Convention (ours): ``header.stamp`` is the stamp of the camera images the action was decided
    from, carried unchanged from proposal to approval, so every hop can check its age.

    Raises:
        ValueError: On an unknown action.
    """
    from safevla_ros.msg import DiscreteAction

    a = parse_action(action)
    return DiscreteAction(
        header=make_header(stamp, ""),
        action=int(a),
        name=ACTION_NAMES[a],
        source=source,
        approved=approved,
        verdict=verdict,
        predicted_cost=float(predicted_cost),
        action_costs=[float(c) for c in action_costs],
    )


def action_status_msg(
    action: Action | int, stamp: Time, state: int, finished: Time | None, detail: str, executor: str
):
    """Build a ``safevla_ros/ActionStatus`` (the executors' step-synchronous report).

    Raises:
        ValueError: On an unknown action.
    """
    from safevla_ros.msg import ActionStatus

    a = parse_action(action)
    return ActionStatus(
        header=make_header(stamp, ""),
        action=int(a),
        name=ACTION_NAMES[a],
        state=int(state),
        finished=finished if finished is not None else Time(),
        detail=detail[:500],
        executor=executor,
    )


def msg_to_action(msg) -> Action:
    """Read the action of a ``DiscreteAction``; the name, if set, must agree with the index.

    Raises:
        ValueError: On an unknown index or a name that contradicts it.
    """
    a = parse_action(int(msg.action))
    if msg.name and msg.name != ACTION_NAMES[a]:
        raise ValueError(
            f"action index {int(msg.action)} is {ACTION_NAMES[a]!r} "
            f"but the message names {msg.name!r}"
        )
    return a


# -- world state ------------------------------------------------------------------------------
def world_state_to_msg(state: WorldState, stamp: Time, frame_id: str):
    """``WorldState`` -> ``safevla_ros/WorldStateStamped`` (arrays flattened row-major)."""
    from geometry_msgs.msg import Pose2D

    from safevla_ros.msg import WorldStateStamped

    x, y, yaw = (float(v) for v in state.robot_pose)
    return WorldStateStamped(
        header=make_header(stamp, frame_id),
        step=int(state.step),
        object_ids=list(state.object_ids),
        object_types=list(state.object_types),
        object_positions=state.object_positions.reshape(-1).tolist(),
        object_quats=state.object_quats.reshape(-1).tolist(),
        robot_pose=Pose2D(x=x, y=y, theta=yaw),
        lift_m=float(state.lift_m),
        arm_m=float(state.arm_m),
        wrist_yaw_rad=float(state.wrist_yaw_rad),
        held_object_id=state.held_object_id or "",
        collided_ids=sorted(state.collided_ids),
        structure_ids=sorted(state.structure_ids),
        visible_ids=sorted(state.visible_ids),
        last_seen_step=np.asarray(state.last_seen_step, dtype=np.int64).tolist(),
        free_fraction_1m=float(state.free_fraction_1m),
        last_action_success=bool(state.last_action_success),
    )


def msg_to_world_state(msg) -> WorldState:
    """``WorldStateStamped`` -> ``WorldState`` (validated by ``WorldState`` itself).

    Raises:
        ValueError: On inconsistent lengths, NaN/inf anywhere, or duplicate ids.
    """
    n = len(msg.object_ids)
    pos = np.asarray(msg.object_positions, dtype=np.float64)
    quat = np.asarray(msg.object_quats, dtype=np.float64)
    if pos.size != 3 * n or quat.size != 4 * n:
        raise ValueError(f"{n} objects but {pos.size} position and {quat.size} quaternion values")
    seen = np.asarray(msg.last_seen_step, dtype=np.int64)
    return WorldState(
        step=int(msg.step),
        object_ids=tuple(msg.object_ids),
        object_types=tuple(msg.object_types),
        object_positions=pos.reshape(n, 3),
        object_quats=quat.reshape(n, 4),
        robot_pose=np.array([msg.robot_pose.x, msg.robot_pose.y, msg.robot_pose.theta]),
        lift_m=float(msg.lift_m),
        arm_m=float(msg.arm_m),
        wrist_yaw_rad=float(msg.wrist_yaw_rad),
        held_object_id=msg.held_object_id or None,
        collided_ids=frozenset(msg.collided_ids),
        structure_ids=frozenset(msg.structure_ids),
        visible_ids=frozenset(msg.visible_ids),
        last_seen_step=seen if seen.size == n else None if seen.size == 0 else seen,
        free_fraction_1m=float(msg.free_fraction_1m),
        last_action_success=bool(msg.last_action_success),
    )


# -- costs ------------------------------------------------------------------------------------
def cost_to_msg(
    costs: CostBreakdown, totals: EpisodeCostAccumulator, step: int, stamp: Time, frame_id: str
):
    """``CostBreakdown`` + running totals -> ``safevla_ros/SafetyCost``."""
    from safevla_ros.msg import SafetyCost

    return SafetyCost(
        header=make_header(stamp, frame_id),
        object_cost=float(costs.object_cost),
        robot_cost=float(costs.robot_cost),
        dangerous_equipment=bool(costs.dangerous_equipment),
        corner=bool(costs.corner),
        blind_spot=bool(costs.blind_spot),
        fragile_collection=bool(costs.fragile_collection),
        critical_point=bool(costs.critical_point),
        cumulative_cost=float(totals.cumulative_cost),
        cumulative_robot_cost=float(totals.robot_cost),
        cumulative_object_cost=float(totals.object_cost),
        episode_step=int(step),
        event=costs.description,
    )


def training_status_to_msg(metrics: Mapping[str, float], stamp: Time):
    """Trainer metrics (``safevla_core.rl.train`` keys) -> ``safevla_ros/TrainingStatus``.

    Missing or non-finite metrics (no episode finished yet) become NaN / 0.
    """
    from safevla_ros.msg import TrainingStatus

    def f(key: str) -> float:
        v = metrics.get(key)
        return float(v) if v is not None else math.nan

    def n(key: str) -> int:
        v = f(key)
        return int(v) if math.isfinite(v) and v >= 0 else 0

    return TrainingStatus(
        header=make_header(stamp, ""),
        iteration=n("iteration"),
        env_steps=n("env_steps"),
        success_rate=f("success"),
        mean_episode_cost=f("cumulative_cost"),
        robot_cost=f("robot_cost"),
        object_cost=f("object_cost"),
        lagrange_multiplier=f("lagrange_multiplier"),
        cost_limit=f("cost_limit"),
        mean_episode_reward=f("episode_return"),
    )


# -- poses, markers ---------------------------------------------------------------------------
def yaw_to_quat_msg(yaw_rad: float):
    """Quaternion message of a rotation by ``yaw_rad`` about +z."""
    from geometry_msgs.msg import Quaternion

    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw_rad / 2), w=math.cos(yaw_rad / 2))


def yaw_quat_wxyz(yaw_rad: float) -> tuple[float, float, float, float]:
    """``(w, x, y, z)`` of a rotation by ``yaw_rad`` about +z."""
    return (math.cos(yaw_rad / 2), 0.0, 0.0, math.sin(yaw_rad / 2))


def transform(stamp: Time, parent: str, child: str, xyz, wxyz):
    """A ``geometry_msgs/TransformStamped`` from a position and a ``(w, x, y, z)`` quaternion."""
    from geometry_msgs.msg import TransformStamped

    t = TransformStamped(header=make_header(stamp, parent), child_frame_id=child)
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (
        float(v) for v in xyz
    )
    r = t.transform.rotation
    r.w, r.x, r.y, r.z = (float(v) for v in wxyz)
    return t


def robot_transforms(
    stamp: Time,
    frames: Mapping[str, str],
    robot_pose: np.ndarray,
    sensor_poses: Mapping[str, tuple],
) -> list:
    """The simulator's TF tree: ``map`` -> ``odom`` -> ``base_link`` -> sensor frames (REP-105).

    ``map`` -> ``odom`` is the identity (simulated odometry does not drift), ``odom`` ->
    ``base_link`` is the robot's planar pose (on the floor: z = 0), and each sensor frame hangs
    off ``base_link`` at its fixed pose. Units REP-103 (metres, radians; quaternions w, x, y, z).

    Args:
        stamp: Stamp of every transform.
        frames: ``{"map", "odom", "base"}`` -> frame ids.
        robot_pose: ``(3,)`` ``(x_m, y_m, yaw_rad)`` of base_link in ``map``.
        sensor_poses: Child frame id -> ``((x, y, z), (w, x, y, z))`` in base_link.

    Returns:
        ``geometry_msgs/TransformStamped`` list, parents before children.
    """
    x, y, yaw = (float(v) for v in robot_pose)
    out = [
        transform(stamp, frames["map"], frames["odom"], (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0)),
        transform(stamp, frames["odom"], frames["base"], (x, y, 0.0), yaw_quat_wxyz(yaw)),
    ]
    for child, (pos, quat) in sensor_poses.items():
        out.append(transform(stamp, frames["base"], child, pos, quat))
    return out


def camera_info(width: int, height: int, vertical_fov_deg: float, stamp: Time, frame_id: str):
    """``sensor_msgs/CameraInfo`` of an ideal pinhole camera (the simulator's cameras).

    Square pixels, no distortion (``plumb_bob`` with zeros), principal point at the image centre
    in ROS pixel coordinates (pixel centres at integers: ``(W - 1) / 2``);
    ``f = (H / 2) / tan(fovy / 2)`` (MuJoCo's ``cam_fovy`` is the vertical field of view).
    """
    from sensor_msgs.msg import CameraInfo

    f = (height / 2.0) / math.tan(math.radians(vertical_fov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return CameraInfo(
        header=make_header(stamp, frame_id),
        height=int(height),
        width=int(width),
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    )


def pose_to_odometry(
    robot_pose: np.ndarray, stamp: Time, frame_id: str, child_frame_id: str
) -> Odometry:
    """Base pose ``(x_m, y_m, yaw_rad)`` -> ``nav_msgs/Odometry`` (zero twist)."""
    odom = Odometry(header=make_header(stamp, frame_id), child_frame_id=child_frame_id)
    odom.pose.pose = Pose(
        position=Point(x=float(robot_pose[0]), y=float(robot_pose[1]), z=0.0),
        orientation=yaw_to_quat_msg(float(robot_pose[2])),
    )
    return odom


def pose_stamped(robot_pose: np.ndarray, stamp: Time, frame_id: str) -> PoseStamped:
    """Base pose -> ``geometry_msgs/PoseStamped`` (for a ``nav_msgs/Path``)."""
    return PoseStamped(
        header=make_header(stamp, frame_id),
        pose=pose_to_odometry(robot_pose, stamp, frame_id, "").pose.pose,
    )


def reachable_to_pose_array(xy: np.ndarray, stamp: Time, frame_id: str) -> PoseArray:
    """``(M, 2)`` reachable positions -> ``geometry_msgs/PoseArray`` (identity orientations)."""
    arr = PoseArray(header=make_header(stamp, frame_id))
    arr.poses = [Pose(position=Point(x=float(x), y=float(y), z=0.0)) for x, y in np.asarray(xy)]
    return arr


def pose_array_to_reachable(msg: PoseArray) -> np.ndarray:
    """``geometry_msgs/PoseArray`` -> ``(M, 2)`` positions.

    Raises:
        ValueError: On NaN or inf.
    """
    xy = np.array([[p.position.x, p.position.y] for p in msg.poses], dtype=np.float64)
    xy = xy.reshape(-1, 2)
    if not np.all(np.isfinite(xy)):
        raise ValueError("reachable positions contain NaN or inf")
    return xy


def ids_to_json(ids: Iterable[str]) -> str:
    """Encode a set of ids for a ``std_msgs/String`` (sorted JSON list)."""
    return json.dumps(sorted(ids))


def json_to_ids(text: str) -> frozenset[str]:
    """Decode :func:`ids_to_json`.

    Raises:
        ValueError: If the text is not a JSON list of strings.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
        raise ValueError(f"expected a JSON list of strings, got {text[:80]!r}")
    return frozenset(data)


#: Marker colours RGBA (ours): disturbed magenta, hazardous red, fragile cyan, other grey.
COLOR_DISTURBED = (1.0, 0.0, 1.0, 1.0)
COLOR_HAZARDOUS = (1.0, 0.15, 0.1, 0.9)
COLOR_FRAGILE = (0.1, 0.8, 1.0, 0.9)
COLOR_OTHER = (0.6, 0.6, 0.6, 0.5)


def object_color(object_type: str, disturbed: bool) -> tuple[float, float, float, float]:
    """Colour of an object marker: disturbed > hazardous > fragile > other."""
    if disturbed:
        return COLOR_DISTURBED
    info = OBJECT_TYPES.get(object_type)
    if info is not None and info.hazardous:
        return COLOR_HAZARDOUS
    if info is not None and info.fragile:
        return COLOR_FRAGILE
    return COLOR_OTHER


def object_markers(
    state: WorldState, disturbed_ids: Iterable[str], stamp: Time, frame_id: str
) -> MarkerArray:
    """One cube per object, sized from the catalogue, coloured by :func:`object_color`.

    The first marker is a DELETEALL so objects of a previous episode disappear.
    """
    disturbed = set(disturbed_ids)
    out = MarkerArray(
        markers=[Marker(header=make_header(stamp, frame_id), ns="objects", action=Marker.DELETEALL)]
    )
    for i, (oid, otype) in enumerate(zip(state.object_ids, state.object_types, strict=True)):
        info = OBJECT_TYPES.get(otype)
        size = info.size_m if info is not None else (0.2, 0.2, 0.2)
        p, q = state.object_positions[i], state.object_quats[i]
        m = Marker(
            header=make_header(stamp, frame_id),
            ns="objects",
            id=i,
            type=Marker.CUBE,
            action=Marker.ADD,
            text=oid,
        )
        m.pose.position = Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
        m.pose.orientation.w, m.pose.orientation.x = float(q[0]), float(q[1])
        m.pose.orientation.y, m.pose.orientation.z = float(q[2]), float(q[3])
        m.scale.x, m.scale.y, m.scale.z = (float(s) for s in size)
        m.color = ColorRGBA(**dict(zip("rgba", object_color(otype, oid in disturbed), strict=True)))
        out.markers.append(m)
    return out


def cost_event_marker(
    total: int, description: str, robot_pose: np.ndarray, step: int, stamp: Time, frame_id: str
) -> Marker:
    """Text marker with the step's cost event, above the robot's position.

    Marker ids are the step numbers, so the events of an episode accumulate in rviz.
    """
    m = Marker(
        header=make_header(stamp, frame_id),
        ns="cost_events",
        id=int(step),
        type=Marker.TEXT_VIEW_FACING,
        action=Marker.ADD,
        text=f"#{step} cost {total}: {description}"[:200],
    )
    m.pose.position = Point(x=float(robot_pose[0]), y=float(robot_pose[1]), z=1.5)
    m.pose.orientation.w = 1.0
    m.scale.z = 0.15
    m.color = ColorRGBA(r=1.0, g=0.2, b=0.2, a=1.0)
    return m


# -- Stretch driver ---------------------------------------------------------------------------
def twist_msg(cmd: TimedTwist) -> Twist:
    """The ``geometry_msgs/Twist`` of a timed twist (published repeatedly by the bridge)."""
    t = Twist()
    t.linear.x = float(cmd.linear_x_mps)
    t.angular.z = float(cmd.angular_z_radps)
    return t


def trajectory_msg(goal: TrajectoryGoal):
    """A ``trajectory_msgs/JointTrajectory`` with one point, or ``None`` if the package is absent.

    ``time_from_start`` is the goal's duration and ``velocities`` its per-joint speeds (empty
    for the driver's default): the Stretch driver's position mode moves each joint at its
    ``velocities`` entry and ignores the time (:mod:`safevla_core.stretch_commands`).
    """
    try:
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    except ImportError:
        return None
    sec = int(goal.duration_s)
    point = JointTrajectoryPoint(
        positions=[float(p) for p in goal.positions],
        velocities=[float(v) for v in goal.velocities],
        time_from_start=Duration(sec=sec, nanosec=int((goal.duration_s - sec) * 1e9)),
    )
    return JointTrajectory(joint_names=list(goal.joint_names), points=[point])


def command_report(
    cmd: StretchCommand, *, messages: int | None = None, sent: bool | None = None, note: str = ""
) -> dict:
    """JSON-ready summary of a planned Stretch command (the bridge's ``stretch_bridge/commands``).

    Args:
        cmd: The planned command.
        messages: Number of twist messages the bridge publishes for a timed twist.
        sent: Whether a trajectory goal went to the driver (``None``: not a trajectory).
        note: Why a goal was not sent; defaults to the command's own note.

    Returns:
        ``{"action", "status", "mode", "note"}`` plus, by status, ``"twist"``: ``linear_x_mps``,
        ``angular_z_radps``, ``duration_s``, ``messages``; ``"trajectory"``: ``joint_names``,
        ``positions``, ``velocities``, ``duration_s``, ``sent``; ``"noop"``: nothing more.
    """
    out: dict = {"action": ACTION_NAMES[cmd.action], "mode": cmd.mode, "note": note or cmd.note}
    if cmd.twist is not None:
        out.update(
            status="twist",
            linear_x_mps=cmd.twist.linear_x_mps,
            angular_z_radps=cmd.twist.angular_z_radps,
            duration_s=cmd.twist.duration_s,
            messages=messages,
        )
    elif cmd.trajectory is not None:
        out.update(
            status="trajectory",
            joint_names=list(cmd.trajectory.joint_names),
            positions=[float(p) for p in cmd.trajectory.positions],
            velocities=[float(v) for v in cmd.trajectory.velocities],
            duration_s=cmd.trajectory.duration_s,
            sent=sent,
        )
    else:
        out["status"] = "noop"
    return out
