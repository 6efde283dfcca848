"""The shield's depth-camera evidence: depth pixels -> points in base_link -> swept footprint.

Hand-built depth images with hand-worked numbers (safevla_core.shield.depth_to_points,
check_depth and decide with depth points).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from safevla_core.actions import Action
from safevla_core.shield import (
    ArmPose,
    DepthCamera,
    PinholeIntrinsics,
    ShieldLimits,
    Verdict,
    check_depth,
    decide,
    depth_to_points,
)

STOWED = ArmPose(lift_m=0.2, arm_m=0.0, wrist_yaw_rad=math.radians(190))
NO_SCAN = np.zeros((0, 2))  # a valid laser scan that sees nothing
PITCH = math.radians(27.0)


def test_depth_camera_axes_at_27_deg_down():
    r = DepthCamera().rotation()  # columns: optical x (image right), y (image down), z (axis)
    np.testing.assert_allclose(r[:, 0], [0.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(r[:, 1], [-math.sin(PITCH), 0.0, -math.cos(PITCH)], atol=1e-12)
    np.testing.assert_allclose(r[:, 2], [math.cos(PITCH), 0.0, -math.sin(PITCH)], atol=1e-12)
    # Turned to look left (yaw 90 deg), horizontally: the axis is +y, image right is +x.
    r = DepthCamera(yaw_rad=math.pi / 2, pitch_rad=0.0).rotation()
    np.testing.assert_allclose(r[:, 2], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(r[:, 0], [1.0, 0.0, 0.0], atol=1e-12)


def test_depth_to_points_hand_worked():
    # Camera 0.5 m above base_link's origin looking forward horizontally; 3x3 pixels, f = 2 px,
    # principal point (1, 1). Pixel (u, v) at depth d -> optical ((u-1) d/2, (v-1) d/2, d) ->
    # base_link (d, -(u-1) d/2, 0.5 - (v-1) d/2).
    cam = DepthCamera(x_m=0.0, y_m=0.0, z_m=0.5, yaw_rad=0.0, pitch_rad=0.0, stride=1)
    k = PinholeIntrinsics(fx=2.0, fy=2.0, cx=1.0, cy=1.0, width=3, height=3)
    depth = np.array(
        [
            [1.0, np.inf, 1.0],  # (0,0): (1, 0.5, 1.0); +inf: no return; (2,0): (1, -0.5, 1.0)
            [np.nan, 1.0, -np.inf],  # NaN: invalid; centre: (1, 0, 0.5); -inf: at 0.1 m
            [1.0, 2.0, 0.0],  # (0,2): z = 0 (floor, dropped); (1,2): (2, 0, -0.5) dropped; 0
        ]
    )
    pts, invalid = depth_to_points(depth, k, cam)
    expected = [[1.0, 0.5, 1.0], [1.0, -0.5, 1.0], [1.0, 0.0, 0.5], [0.1, -0.05, 0.5]]
    np.testing.assert_allclose(pts, expected, atol=1e-12)
    assert invalid == pytest.approx(2 / 9)  # the NaN and the 0 (a 16UC1 "no data")
    # stride 2 samples pixels (0,0), (2,0), (0,2), (2,2).
    pts2, invalid2 = depth_to_points(depth, k, DepthCamera(**{**cam.__dict__, "stride": 2}))
    np.testing.assert_allclose(pts2, [[1.0, 0.5, 1.0], [1.0, -0.5, 1.0]], atol=1e-12)
    assert invalid2 == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="camera_info says"):
        depth_to_points(np.ones((2, 3)), k, cam)


def _wall_depth(x_wall_m: float, cam: DepthCamera, k: PinholeIntrinsics) -> np.ndarray:
    """Depth image of a plane x = x_wall in base_link (floor below z = 0: +inf)."""
    v, u = np.mgrid[0 : k.height, 0 : k.width]
    ray = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones(u.shape)], axis=-1)
    d = ray @ cam.rotation().T  # per pixel, direction in base_link with optical z = 1
    depth = (x_wall_m - cam.x_m) / d[..., 0]  # ray parameter = depth along the axis
    z = cam.z_m + depth * d[..., 2]
    return np.where((depth > 0) & (z >= 0.0), depth, np.inf)


def test_a_wall_in_depth_vetoes_the_forward_move_but_not_the_turns():
    # The simulator's navigation camera: (0.045, 0, 1.32), 27 deg down, 81x49 px with a 59 deg
    # vertical FOV (odd sizes: the centre pixel looks along the axis). A wall 0.25 m ahead of
    # base_link: the centre ray (cos 27, 0, -sin 27) meets it after 0.205 / cos 27 = 0.2301 m,
    # at height 1.32 - 0.2301 sin 27 = 1.2155 m; the bottom row's pixel centres look
    # atan(24 / f) = 29.0 deg below the axis (f = 24.5 / tan 29.5: the FOV edge is the pixel's
    # edge), 56.0 deg down, and meet it at 1.32 - 0.205 tan 56.0 = 1.016 m. The camera sees the
    # wall from 1.02 m up; only the depth image is given here (the laser sees nothing).
    cam = DepthCamera()
    f = 24.5 / math.tan(math.radians(29.5))
    k = PinholeIntrinsics(fx=f, fy=f, cx=40.0, cy=24.0, width=81, height=49)
    pts, invalid = depth_to_points(_wall_depth(0.25, cam, k), k, DepthCamera(stride=1))
    assert invalid == 0.0
    centre = pts[np.argmin(np.abs(pts[:, 1]) + np.abs(pts[:, 2] - 1.2155))]
    np.testing.assert_allclose(centre, [0.25, 0.0, 1.32 - 0.205 * math.tan(PITCH)], atol=1e-9)
    bottom = PITCH + math.atan(24.0 / f)
    assert pts[:, 2].min() == pytest.approx(1.32 - 0.205 * math.tan(bottom), abs=1e-9)
    assert pts[:, 2].min() == pytest.approx(1.016, abs=1e-3)
    lim = ShieldLimits()
    # m: the front edge (0.0585) swept 0.2 + 0.03 m reaches 0.2885 > 0.25, and the base's
    # height band (0 .. 1.41 m + margin) holds the wall points -> veto.
    d = decide(Action.MOVE_AHEAD, lim, scan_xy=NO_SCAN, depth_xyz=pts, arm=STOWED)
    assert d.verdict is Verdict.DEPTH_OBSTACLE and "MOVE_AHEAD" in d.reason
    # Turning in place: the front corners (0.0585, +-0.1815) stay within 0.19 m of base_link,
    # the rear ones move backwards-out; nothing crosses x = 0.25 -> approved, as is backing up.
    for action in (Action.ROTATE_LEFT, Action.ROTATE_RIGHT, Action.MOVE_BACK):
        assert decide(action, lim, scan_xy=NO_SCAN, depth_xyz=pts, arm=STOWED).approved, action
    # The same wall 0.30 m ahead: the swept front (0.2885) stops short of it.
    far, _ = depth_to_points(_wall_depth(0.30, cam, k), k, DepthCamera(stride=1))
    assert decide(Action.MOVE_AHEAD, lim, scan_xy=NO_SCAN, depth_xyz=far, arm=STOWED).approved


def _slab(x0, x1, y0, y1, z, step=0.02) -> np.ndarray:
    xs, ys = np.arange(x0, x1 + 1e-9, step), np.arange(y0, y1 + 1e-9, step)
    return np.array([(x, y, z) for x in xs for y in ys])


def test_depth_points_only_meet_the_part_at_their_height():
    lim = ShieldLimits(sweep_margin_m=0.03)
    # Arm out to the right (y < 0) at lift 0.8 m: arm band 0.8 + 0.157..0.233, gripper band
    # 0.8 + 0.063..0.202 (each +-0.03 m when swept). A table top at 0.75 m under the arm and
    # gripper (x -0.2..0.8, y -1.0..-0.3; clear of the base, which ends at y = -0.1805).
    arm = ArmPose(lift_m=0.8, arm_m=0.3, wrist_yaw_rad=0.0)
    table = _slab(-0.2, 0.8, -1.0, -0.3, 0.75)
    # Extending the arm over the table: the arm (>= 0.927 m) passes 0.177 m above it.
    assert check_depth(Action.ARM_EXTEND, table, arm, lim) is None
    # Lowering by 0.1 m: the gripper's bottom comes down to 0.7 + 0.063 - 0.03 = 0.733 < 0.75.
    d = check_depth(Action.LIFT_DOWN, table, arm, lim)
    assert d is not None and d.verdict is Verdict.DEPTH_OBSTACLE and "LIFT_DOWN" in d.reason
    # Lowering by 0.02 m stops at 0.78 + 0.063 - 0.03 = 0.813 > 0.75; raising moves away.
    assert check_depth(Action.LIFT_DOWN_SMALL, table, arm, lim) is None
    assert check_depth(Action.LIFT_UP, table, arm, lim) is None
    # A shelf at 1.12 m over the arm: raising by 0.1 m lifts the arm's top to
    # 0.9 + 0.233 + 0.03 = 1.163 > 1.12 -> veto; by 0.02 m to 1.083 -> fine.
    shelf = _slab(-0.2, 0.8, -1.0, -0.3, 1.12)
    assert check_depth(Action.LIFT_UP, shelf, arm, lim) is not None
    assert check_depth(Action.LIFT_UP_SMALL, shelf, arm, lim) is None
    # A coffee-table top at 0.45 m from 0.25 m ahead of base_link: no laser beam at 0.166 m
    # sees it, but the base and mast (band 0 .. 1.44 m) would drive into it.
    coffee = _slab(0.25, 0.6, -0.3, 0.3, 0.45)
    d = check_depth(Action.MOVE_AHEAD, coffee, STOWED, lim)
    assert d is not None and "MOVE_AHEAD" in d.reason
    assert check_depth(Action.MOVE_BACK, coffee, STOWED, lim) is None
    # Points the current footprint already meets (the robot's own gripper in view) are set
    # aside: a point inside the gripper's rectangle at the gripper's height.
    own = np.array([[-0.021, -0.6, 0.8 + 0.1]])
    assert check_depth(Action.ROTATE_LEFT, own, arm, lim) is None


def test_decide_fails_closed_on_bad_depth():
    lim = ShieldLimits(max_invalid_depth_fraction=0.5)
    clear = np.zeros((0, 3))
    assert decide(Action.MOVE_AHEAD, lim, scan_xy=NO_SCAN, depth_xyz=clear, arm=STOWED).approved
    d = decide(
        Action.MOVE_AHEAD,
        lim,
        scan_xy=NO_SCAN,
        depth_xyz=clear,
        depth_invalid_fraction=0.6,
        arm=STOWED,
    )
    assert d.verdict is Verdict.NO_EVIDENCE and "60%" in d.reason
    bad = np.array([[0.3, 0.0, math.nan]])
    d = decide(Action.MOVE_AHEAD, lim, scan_xy=NO_SCAN, depth_xyz=bad, arm=STOWED)
    assert d.verdict is Verdict.INVALID_INPUT
    # end moves nothing: approved whatever the depth image says.
    d = decide(Action.END, lim, scan_xy=NO_SCAN, depth_xyz=clear, depth_invalid_fraction=1.0)
    assert d.approved
    with pytest.raises(ValueError):
        ShieldLimits(max_invalid_depth_fraction=1.5)
    with pytest.raises(ValueError):
        DepthCamera(stride=0)
    with pytest.raises(ValueError):
        PinholeIntrinsics(fx=0.0, fy=1.0, cx=0.0, cy=0.0, width=1, height=1)


def test_the_default_depth_camera_is_the_simulators_navigation_camera():
    # The monitor's default depth pose must be where the simulator's navigation camera is (it
    # back-projects the simulator's depth image with it): compare with the camera's optical
    # frame in base_link as the simulator publishes it on TF.
    pytest.importorskip("mujoco")
    import json
    from pathlib import Path

    from safevla_core.config import SimConfig
    from safevla_core.sim.backend import NAV_CAMERA
    from safevla_core.sim.laser import DepthSpec, cast_depth
    from safevla_core.sim.mujoco_backend import MujocoBackend
    from safevla_core.sim.stretch_model import NAV_CAMERA_NAME

    house = json.loads((Path(__file__).parents[1] / "fixtures" / "two_room_house.json").read_text())
    backend = MujocoBackend(SimConfig(), width=32, height=24)
    try:
        # Facing the dining table (x 1.3..2.7, y 1.55..2.45, top 0.75 m) from 0.6 m before it.
        backend.reset(house, robot_pose=(0.7, 2.0, 0.0))
        pos, wxyz = backend.camera_poses_in_base()[NAV_CAMERA]
        cam = DepthCamera()
        np.testing.assert_allclose(pos, [cam.x_m, cam.y_m, cam.z_m], atol=1e-6)
        w, x, y, z = wxyz
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
            ]
        )
        np.testing.assert_allclose(rot, cam.rotation(), atol=1e-6)
        # The simulator's depth image, read back with that pose, shows the table top at 0.75 m
        # from x = 1.3 - 0.7 = 0.6 m ahead of base_link.
        spec = DepthSpec(width=80, height=48)
        f = spec.focal_px(SimConfig().vertical_fov_deg)
        k = PinholeIntrinsics(fx=f, fy=f, cx=39.5, cy=23.5, width=80, height=48)
        depth = cast_depth(backend.model, backend.data, NAV_CAMERA_NAME, spec)
        pts, invalid = depth_to_points(depth, k, DepthCamera(stride=1))
        top = pts[np.abs(pts[:, 2] - 0.75) < 0.01]
        assert invalid == 0.0 and len(top) > 20
        assert top[:, 0].min() == pytest.approx(0.6, abs=0.02)
    finally:
        backend.close()
