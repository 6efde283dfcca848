"""The simulated laser (safevla_core.sim.laser) on a hand-built MuJoCo scene, hand-worked ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safevla_core.shield import scan_to_points
from safevla_core.sim.laser import LaserSpec, cast_scan

mujoco = pytest.importorskip("mujoco")

# A wall whose near face is the plane x = 1.0 (box centre 1.05, half thickness 0.05), 4 m long,
# in geom group 0 (structure); a post 0.10 m from the laser on its left, closer than range_min;
# a geom in group 1 (the robot's own) right behind, which the rays must ignore.
SCENE = """
<mujoco>
  <worldbody>
    <geom name="wall" type="box" pos="1.05 0 0.5" size="0.05 2 0.5" group="0"/>
    <geom name="post" type="box" pos="0.004 0.12 0.5" size="0.02 0.02 0.5" group="2"/>
    <geom name="self" type="box" pos="-0.5 0 0.5" size="0.05 0.5 0.5" group="1"/>
  </worldbody>
</mujoco>
"""


def test_cast_scan_ranges_follow_the_geometry_and_rep117():
    model = mujoco.MjModel.from_xml_string(SCENE)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    spec = LaserSpec(num_beams=360)
    ranges = cast_scan(model, data, np.array([0.0, 0.0, 0.0]), spec)
    # The laser sits at (0.004, 0) in base_link, turned by pi: beam i looks along bearing i deg.
    assert ranges[0] == pytest.approx(1.0 - 0.004, abs=1e-6)  # straight at the wall
    assert ranges[30] == pytest.approx((1.0 - 0.004) / math.cos(math.radians(30)), abs=1e-6)
    assert ranges[90] == -math.inf  # the post: 0.10 m < range_min 0.15 m
    assert ranges[180] == math.inf  # behind: only the robot's own geom (ignored), then nothing
    # Turned by 90 deg (facing +y), the wall is on the robot's right (bearing -90 = beam 270).
    turned = cast_scan(model, data, np.array([0.0, 0.0, math.pi / 2]), spec)
    assert turned[270] == pytest.approx(1.0, abs=1e-6)  # the laser offset is now along +y
    # The shield reads it back: the wall points lie on x = 1.0 in base_link.
    pts, invalid = scan_to_points(
        ranges, spec.angle_min_rad, spec.angle_increment_rad, spec.range_min_m, spec.range_max_m
    )
    ahead = pts[np.abs(pts[:, 1]) < 1.0]
    wall = ahead[ahead[:, 0] > 0.5]
    np.testing.assert_allclose(wall[:, 0], 1.0, atol=1e-6)
    assert invalid == 0.0


# A camera 1 m above the origin looking along +x (MuJoCo cameras look along their -z: x axis
# (0, -1, 0) = image right, y axis (0, 0, 1) = image up), 90 deg vertical FOV; a wall whose
# near face is x = 2.0, from the floor to 1.5 m; a post 0.05 m in front of the lens (closer than
# range_min); a robot geom (group 1) in between, which the rays must ignore.
DEPTH_SCENE = """
<mujoco>
  <worldbody>
    <camera name="cam" pos="0 0 1" xyaxes="0 -1 0 0 0 1" fovy="90"/>
    <geom name="wall" type="box" pos="2.05 0 0.75" size="0.05 5 0.75" group="0"/>
    <geom name="self" type="box" pos="1.0 0 1" size="0.01 0.01 0.01" group="1"/>
    <geom name="post" type="box" pos="0.05 -0.02 1.0" size="0.01 0.01 0.005" group="2"/>
  </worldbody>
</mujoco>
"""


def test_cast_depth_is_depth_along_the_optical_axis():
    from safevla_core.shield import DepthCamera, PinholeIntrinsics, depth_to_points
    from safevla_core.sim.laser import DepthSpec, cast_depth

    model = mujoco.MjModel.from_xml_string(DEPTH_SCENE)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    spec = DepthSpec(width=5, height=5, range_min_m=0.1, range_max_m=10.0)
    # f = (5 / 2) / tan(45 deg) = 2.5 px, principal point (2, 2): pixel (u, v) looks along
    # ((u - 2) / 2.5, (v - 2) / 2.5, 1) in the optical frame (x right, y down, z forward).
    assert spec.focal_px(90.0) == pytest.approx(2.5)
    depth = cast_depth(model, data, "cam", spec)
    assert depth.shape == (5, 5) and depth.dtype == np.float32
    # The wall is perpendicular to the axis: every pixel that meets it reads 2.0 m (depth, not
    # range), through the robot geom on the centre ray.
    np.testing.assert_allclose(depth[2, [0, 1, 2, 4]], 2.0, atol=1e-6)
    # Row 3 looks 0.4 down per metre: z = 1 - 0.8 = 0.2 at the wall; row 4 would meet it at
    # z = -0.6 (below it; nothing else there) -> +inf; rows 0 and 1 pass over its top (z 2.6,
    # 1.8 > 1.5) -> +inf.
    assert depth[3, 2] == pytest.approx(2.0, abs=1e-6)
    assert depth[4, 2] == math.inf and depth[0, 2] == math.inf and depth[1, 2] == math.inf
    # Pixel (3, 2) looks 0.4 to the right per metre: y = -0.016 at the post's face 0.04 m ahead
    # (y -0.03..-0.01), closer than range_min -> -inf (REP-117: too close).
    assert depth[2, 3] == -math.inf
    # The shield reads it back: the wall points lie on x = 2.0 in the camera's base frame, row 2
    # (but the post's pixel) at the camera's height, row 3 at 0.2 m.
    k = PinholeIntrinsics(fx=2.5, fy=2.5, cx=2.0, cy=2.0, width=5, height=5)
    cam = DepthCamera(x_m=0.0, y_m=0.0, z_m=1.0, pitch_rad=0.0, stride=1, min_range_m=0.1)
    pts, invalid = depth_to_points(depth, k, cam)
    wall = pts[pts[:, 0] > 1.0]
    np.testing.assert_allclose(wall[:, 0], 2.0, atol=1e-6)
    np.testing.assert_allclose(np.sort(wall[:, 2]), [0.2] * 5 + [1.0] * 4, atol=1e-6)
    assert invalid == 0.0
    with pytest.raises(KeyError):
        cast_depth(model, data, "nope", spec)


def test_cast_depth_at_a_pose_outside_the_model():
    from safevla_core.shield import DepthCamera
    from safevla_core.sim.laser import DepthSpec, cast_depth_at

    model = mujoco.MjModel.from_xml_string(DEPTH_SCENE)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    # The same lens 1 m up, tilted 20 deg down: the centre ray (cos 20, 0, -sin 20) meets the
    # wall x = 2 at z = 1 - 2 tan 20 = 0.272 m, 2 / cos 20 = 2.128 m along the axis.
    rot = DepthCamera(pitch_rad=math.radians(20.0)).rotation()
    depth = cast_depth_at(model, data, np.array([0.0, 0.0, 1.0]), rot, 90.0, DepthSpec(5, 5))
    assert depth[2, 2] == pytest.approx(2.0 / math.cos(math.radians(20.0)), abs=1e-6)
    # Row 4 looks along z + 0.8 y of the optical frame = (cos 20 - 0.8 sin 20, 0, -(sin 20 +
    # 0.8 cos 20)) = (0.666, 0, -1.094): at x = 2 it is at z = 1 - 2 x 1.094 / 0.666 = -2.3,
    # under the wall (no floor in this scene) -> no return.
    assert depth[4, 2] == math.inf
