"""Range sensors in MuJoCo: the simulated twins of the Stretch's RPLidar and depth camera.

One horizontal fan of rays from the laser's pose on the robot
(:data:`safevla_core.stretch_constants.LASER_POSE_IN_BASE` and ``LASER_HEIGHT_M``: ``joint_laser``
of the SE3 URDF) cast with ``mujoco.mj_multiRay`` against the house's structure and objects
(the robot's own geoms and the hidden floor are not in the ray's geom groups). The ranges follow the
``sensor_msgs/LaserScan`` conventions of REP-117 (``+inf``: no return within ``range_max_m``;
``-inf``: closer than ``range_min_m``), so the shield reads simulated and real scans with the same
code (:func:`safevla_core.shield.scan_to_points`).

A depth image (:func:`cast_depth`) is one ray per pixel through a camera of the model, with the
same geom groups (the rooms' visible floor boxes are structure, so the floor is seen): the depth
along the optical axis in metres (REP-118), ``+inf`` / ``-inf`` as above. Ray casting instead
of reading the renderer's depth buffer keeps the robot's own body out of the image and the
renderer untouched; at 80x48 pixels it costs about 4 ms of CPU per image on this machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from safevla_core.stretch_constants import LASER_HEIGHT_M, LASER_POSE_IN_BASE


@dataclass(frozen=True)
class LaserSpec:
    """Geometry of the simulated scan, in the laser frame (REP-103: counter-clockwise angles).

    Attributes:
        num_beams: Beams over the full turn (RPLidar A1 on the Stretch: ~0.5-1 deg steps; ours
            360, one per degree).
        range_min_m: Minimum range, metres (RPLidar A1 data sheet: 0.15 m).
        range_max_m: Maximum range, metres (RPLidar A1 data sheet: 12 m).
        geom_groups: MuJoCo geom groups the rays hit (structure 0 and objects 2,
            :mod:`safevla_core.sim.scene`).
    """

    num_beams: int = 360
    range_min_m: float = 0.15
    range_max_m: float = 12.0
    geom_groups: tuple[int, ...] = (0, 2)

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on a non-positive beam count or bad range limits."""
        if self.num_beams <= 0:
            raise ValueError(f"num_beams must be positive, got {self.num_beams}")
        if not (0.0 <= self.range_min_m < self.range_max_m and math.isfinite(self.range_max_m)):
            raise ValueError(f"bad range limits {self.range_min_m}..{self.range_max_m}")

    @property
    def angle_min_rad(self) -> float:
        """Angle of the first beam, radians (-pi)."""
        return -math.pi

    @property
    def angle_increment_rad(self) -> float:
        """Angle between beams, radians."""
        return 2.0 * math.pi / self.num_beams


def cast_scan(
    model: Any, data: Any, base_pose: np.ndarray, spec: LaserSpec | None = None
) -> np.ndarray:
    """Ranges of one scan from the laser on a base at ``base_pose``.

    Args:
        model: ``mujoco.MjModel`` of the house and robot.
        data: ``mujoco.MjData`` after ``mj_forward`` (geom poses current).
        base_pose: ``(3,)`` base pose ``(x_m, y_m, yaw_rad)`` in the world (``map``).
        spec: Scan geometry (default :class:`LaserSpec`).

    Returns:
        ``(num_beams,)`` float64 ranges, metres, beam ``i`` at angle
        ``angle_min_rad + i * angle_increment_rad`` in the laser frame; ``+inf`` / ``-inf`` as in
        REP-117.
    """
    import mujoco

    spec = spec or LaserSpec()
    x, y, yaw = (float(v) for v in base_pose)
    lx, ly, lyaw = LASER_POSE_IN_BASE
    c, s = math.cos(yaw), math.sin(yaw)
    origin = np.array([x + c * lx - s * ly, y + s * lx + c * ly, LASER_HEIGHT_M])
    ang = yaw + lyaw + spec.angle_min_rad + spec.angle_increment_rad * np.arange(spec.num_beams)
    vec = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], axis=1)
    groups = np.zeros(6, dtype=np.uint8)
    groups[list(spec.geom_groups)] = 1
    geomid = np.full(spec.num_beams, -1, dtype=np.int32)
    dist = np.full(spec.num_beams, -1.0)
    mujoco.mj_multiRay(
        model,
        data,
        origin,
        vec.ravel(),
        groups,
        True,
        -1,
        geomid,
        dist,
        None,
        spec.num_beams,
        spec.range_max_m,
    )
    ranges = np.where((geomid >= 0) & (dist >= 0.0), dist, np.inf)
    ranges = np.where(ranges > spec.range_max_m, np.inf, ranges)
    return np.where(ranges < spec.range_min_m, -np.inf, ranges)


@dataclass(frozen=True)
class DepthSpec:
    """Geometry of the simulated depth image.

    Attributes:
        width: Image width, pixels (ours: 80, half the navigation camera's 160: one ray per
            pixel costs ~1 us).
        height: Image height, pixels (ours: 48).
        range_min_m: Minimum depth, metres (ours: 0.1; a RealSense D435 measures from ~0.2 m).
        range_max_m: Maximum depth, metres (ours: 10).
        geom_groups: MuJoCo geom groups the rays hit (structure 0 and objects 2).
    """

    width: int = 80
    height: int = 48
    range_min_m: float = 0.1
    range_max_m: float = 10.0
    geom_groups: tuple[int, ...] = (0, 2)

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on a non-positive size or bad range limits."""
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"DepthSpec.{name} must be a positive int, got {v!r}")
        if not (0.0 <= self.range_min_m < self.range_max_m and math.isfinite(self.range_max_m)):
            raise ValueError(f"bad range limits {self.range_min_m}..{self.range_max_m}")

    def focal_px(self, vertical_fov_deg: float) -> float:
        """Focal length, pixels: ``(height / 2) / tan(fovy / 2)`` (square pixels)."""
        return (self.height / 2.0) / math.tan(math.radians(vertical_fov_deg) / 2.0)


def cast_depth(model: Any, data: Any, camera: str, spec: DepthSpec | None = None) -> np.ndarray:
    """Depth image of one camera of the model, by ray casting.

    Pixel ``(u, v)`` looks along ``((u - cx) / f, (v - cy) / f, 1)`` in the camera's optical
    frame (REP-103: x right, y down, z forward), with ``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``
    and ``f`` from the camera's vertical field of view (MuJoCo ``cam_fovy``): the intrinsics
    :func:`safevla_ros.conversions.camera_info` publishes for it. ``mj_multiRay`` measures the
    distance in units of the (unnormalised) direction, whose optical-z component is 1, so it is
    the depth along the optical axis directly.

    Args:
        model: ``mujoco.MjModel``.
        data: ``mujoco.MjData`` after ``mj_forward`` (camera and geom poses current).
        camera: Camera name in the model (e.g. ``"nav_camera"``).
        spec: Image geometry (default :class:`DepthSpec`).

    Returns:
        ``(H, W)`` float32 depths, metres; ``+inf`` no return within ``range_max_m``, ``-inf``
        closer than ``range_min_m`` (REP-117/118).

    Raises:
        KeyError: If the model has no camera of that name.
    """
    import mujoco

    cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    if cid < 0:
        raise KeyError(f"no camera {camera!r} in the model")
    # MuJoCo's camera frame looks along -z with y up; the optical frame is it turned by pi about x.
    rot = data.cam_xmat[cid].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
    return cast_depth_at(model, data, data.cam_xpos[cid], rot, float(model.cam_fovy[cid]), spec)


def cast_depth_at(
    model: Any,
    data: Any,
    origin: np.ndarray,
    optical_to_world: np.ndarray,
    vertical_fov_deg: float,
    spec: DepthSpec | None = None,
) -> np.ndarray:
    """Depth image of a pinhole camera at any pose in the world, by ray casting.

    As :func:`cast_depth`, for a camera that is not in the model (e.g. a head camera tilted
    otherwise than the navigation camera).

    Args:
        model: ``mujoco.MjModel``.
        data: ``mujoco.MjData`` after ``mj_forward``.
        origin: ``(3,)`` optical centre in the world, metres.
        optical_to_world: ``(3, 3)`` rotation, columns the optical x (right), y (down) and z
            (forward) axes in the world.
        vertical_fov_deg: Vertical field of view, degrees.
        spec: Image geometry (default :class:`DepthSpec`).

    Returns:
        ``(H, W)`` float32 depths, metres (REP-117/118 non-finite values).
    """
    import mujoco

    spec = spec or DepthSpec()
    f = spec.focal_px(vertical_fov_deg)
    v, u = np.mgrid[0 : spec.height, 0 : spec.width]
    opt = np.stack(
        [(u - (spec.width - 1) / 2.0) / f, (v - (spec.height - 1) / 2.0) / f, np.ones(u.shape)],
        axis=-1,
    ).reshape(-1, 3)
    vec = np.ascontiguousarray(opt @ np.asarray(optical_to_world, dtype=np.float64).T)
    n = vec.shape[0]
    groups = np.zeros(6, dtype=np.uint8)
    groups[list(spec.geom_groups)] = 1
    geomid = np.full(n, -1, dtype=np.int32)
    dist = np.full(n, -1.0)
    mujoco.mj_multiRay(
        model,
        data,
        np.asarray(origin, dtype=np.float64),
        vec.ravel(),
        groups,
        True,
        -1,
        geomid,
        dist,
        None,
        n,
        spec.range_max_m,
    )
    depth = np.where((geomid >= 0) & (dist >= 0.0), dist, np.inf)
    depth = np.where(depth > spec.range_max_m, np.inf, depth)
    depth = np.where(depth < spec.range_min_m, -np.inf, depth)
    return depth.reshape(spec.height, spec.width).astype(np.float32)
