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
