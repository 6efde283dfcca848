"""The robot constants against their sources: the installed Stretch URDFs and collision mesh."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from safevla_core import stretch_constants as sc
from safevla_core.sim.stretch_model import ROBOT_URDFS

stretch_urdf = pytest.importorskip("stretch_urdf", reason="hello-robot-stretch-urdf not installed")
URDF_ROOT = Path(stretch_urdf.__file__).parent


def _stl_vertices(path: Path) -> np.ndarray:
    """``(M, 3)`` vertices of an ASCII or binary STL file."""
    data = path.read_bytes()
    if data[:5] == b"solid" and b"facet" in data[:512]:
        rows = [
            ln.split()[1:] for ln in data.decode().splitlines() if ln.strip().startswith("vertex")
        ]
        return np.array(rows, dtype=np.float64)
    (n,) = struct.unpack("<I", data[80:84])
    rec = np.dtype([("normal", "<3f4"), ("v", "<9f4"), ("attr", "<u2")])
    return np.frombuffer(data[84 : 84 + 50 * n], dtype=rec)["v"].reshape(-1, 3).astype(np.float64)


def _limits(urdf: ET.Element, joint: str) -> tuple[float, float]:
    lim = urdf.find(f"joint[@name='{joint}']/limit")
    assert lim is not None, joint
    return float(lim.get("lower")), float(lim.get("upper"))


@pytest.mark.parametrize("model", sorted(ROBOT_URDFS))
def test_joint_ranges_are_the_urdfs(model):
    folder, name = ROBOT_URDFS[model]
    urdf = ET.parse(URDF_ROOT / folder / name).getroot()
    assert _limits(urdf, "joint_lift") == sc.LIFT_RANGE_M == (0.0, 1.1)
    arm = sorted(
        j.get("name")
        for j in urdf.iter("joint")
        if j.get("name", "").startswith("joint_arm_l") and j.get("type") == "prismatic"
    )
    assert arm == [f"joint_arm_l{i}" for i in range(sc.ARM_SEGMENTS)]  # l0..l3: four segments
    assert [_limits(urdf, j) for j in arm] == [(0.0, sc.ARM_SEGMENT_MAX_M)] * 4
    # wrist_extension = sum of the four segments: 0 .. 4 x 0.13 = 0.52 m.
    assert sc.ARM_RANGE_M == pytest.approx((0.0, 0.52))
    assert _limits(urdf, "joint_wrist_yaw") == sc.WRIST_YAW_RANGE_RAD == (-1.75, 4.0)


@pytest.mark.parametrize("model", sorted(ROBOT_URDFS))
def test_base_footprint_is_the_collision_mesh(model):
    folder, name = ROBOT_URDFS[model]
    urdf = ET.parse(URDF_ROOT / folder / name).getroot()
    mesh = urdf.find("link[@name='base_link']/collision/geometry/mesh")
    origin = urdf.find("link[@name='base_link']/collision/origin")
    assert origin is None or origin.get("xyz", "0 0 0").split() == ["0", "0", "0"]
    v = _stl_vertices((URDF_ROOT / folder / mesh.get("filename")).resolve())
    lo, hi = v[:, :2].min(axis=0), v[:, :2].max(axis=0)
    assert lo[0] == pytest.approx(sc.BASE_X_MIN_M, abs=1e-4)  # -0.2865
    assert hi[0] == pytest.approx(sc.BASE_X_MAX_M, abs=1e-4)  # 0.0585
    assert lo[1] == pytest.approx(sc.BASE_Y_MIN_M, abs=1e-4)  # -0.1805
    assert hi[1] == pytest.approx(sc.BASE_Y_MAX_M, abs=1e-4)  # 0.1815
    assert sc.BASE_WIDTH_M == pytest.approx(0.362) and sc.BASE_DEPTH_M == pytest.approx(0.345)
    # Turn-in-place circle about base_link: rear corners hypot(0.2865, 0.1815) = 0.3392 -> 0.34.
    r_origin = np.hypot(v[:, 0], v[:, 1]).max()
    assert r_origin == pytest.approx(0.3392, abs=1e-4)
    assert sc.BASE_TURN_RADIUS_M == 0.34 and r_origin <= sc.BASE_TURN_RADIUS_M
    # Circle about the footprint's centre x = (-0.2865 + 0.0585) / 2 = -0.114:
    # hypot(0.345 / 2, 0.363 / 2) = hypot(0.1725, 0.1815) = 0.2504; every vertex inside it.
    assert sc.BASE_CENTRE_X_M == pytest.approx(-0.114)
    assert sc.BASE_CENTRED_RADIUS_M == pytest.approx(0.25040, abs=1e-5)
    r_centre = np.hypot(v[:, 0] - sc.BASE_CENTRE_X_M, v[:, 1]).max()
    assert r_centre <= sc.BASE_CENTRED_RADIUS_M + 1e-6
    # ... whereas a 0.24 m circle about base_link (the shield's radius) misses the rear half.
    assert np.hypot(v[:, 0], v[:, 1]).max() > 0.24 + 0.09


def test_grasp_reach_hand_number():
    # Grasp point at arm 0 is 0.415 m to the right and 0.021 m behind base_link; full extension
    # adds 0.52 m: hypot(0.021, 0.935) = 0.93524 m.
    assert sc.GRASP_REACH_M == pytest.approx(0.93524, abs=1e-5)
