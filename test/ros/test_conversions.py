"""Tests of the pure message conversions (no node, no DDS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rclpy")
msgs = pytest.importorskip("safevla_ros.msg", reason="interfaces not built (scripts/build_msgs.sh)")

from sensor_msgs.msg import Image  # noqa: E402

from safevla_core.actions import Action  # noqa: E402
from safevla_core.costs import CostBreakdown, EpisodeCostAccumulator  # noqa: E402
from safevla_core.stretch_commands import TimedTwist, TrajectoryGoal  # noqa: E402
from safevla_core.world import WorldState  # noqa: E402
from safevla_ros import conversions as conv  # noqa: E402
from safevla_ros.params import (  # noqa: E402
    MonitorNodeConfig,
    PolicyNodeConfig,
    build_config,
    flatten_defaults,
)

STAMP = conv.s_to_stamp(12.25)


def _image(encoding: str, pixels: np.ndarray, step: int | None = None) -> Image:
    h, w = pixels.shape[:2]
    ch = 1 if pixels.ndim == 2 else pixels.shape[2]
    step = step if step is not None else w * ch
    rows = pixels.reshape(h, w * ch)
    padded = np.zeros((h, step), np.uint8)
    padded[:, : w * ch] = rows
    msg = Image(height=h, width=w, encoding=encoding, step=step)
    msg.data = padded.tobytes()
    return msg


def test_stamp_roundtrip():
    assert (STAMP.sec, STAMP.nanosec) == (12, 250_000_000)
    assert conv.stamp_to_s(STAMP) == 12.25
    for bad in (math.nan, -1.0):
        with pytest.raises(ValueError):
            conv.s_to_stamp(bad)


def test_rgb_roundtrip_and_encodings():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = conv.rgb_to_image(rgb, STAMP, "cam")
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("rgb8", 9, "cam")
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)
    # bgr8: channel order reversed; pixel (0,0) = B0 G1 R2 -> RGB (2, 1, 0).
    np.testing.assert_array_equal(conv.image_to_rgb(_image("bgr8", rgb))[0, 0], [2, 1, 0])
    # rgba8 with row padding (step 16 > 3*4): alpha dropped, padding ignored.
    rgba = np.dstack([rgb, np.full((2, 3), 255, np.uint8)])
    np.testing.assert_array_equal(conv.image_to_rgb(_image("rgba8", rgba, step=16)), rgb)
    bgra = np.dstack([rgb[:, :, ::-1], np.full((2, 3), 7, np.uint8)])
    np.testing.assert_array_equal(conv.image_to_rgb(_image("bgra8", bgra)), rgb)
    mono = np.array([[10, 20, 30], [40, 50, 60]], np.uint8)
    np.testing.assert_array_equal(conv.image_to_rgb(_image("mono8", mono))[1, 2], [60, 60, 60])


def test_bad_images_are_rejected_with_reason():
    rgb = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'"):
        conv.image_to_rgb(_image("16UC1", np.zeros((2, 6), np.uint8)))
    short = _image("rgb8", rgb)
    short.data = bytes(10)
    with pytest.raises(ValueError, match="10 bytes"):
        conv.image_to_rgb(short)
    with pytest.raises(ValueError, match="empty"):
        conv.image_to_rgb(Image(height=0, width=3, encoding="rgb8", step=9))
    with pytest.raises(ValueError):
        conv.rgb_to_image(np.zeros((2, 3), np.float32), STAMP, "cam")


def test_resize_nearest_picks_pixel_centres():
    img = np.arange(4, dtype=np.uint8).reshape(1, 4, 1).repeat(2, axis=0)  # columns 0 1 2 3
    # width 2: centres (0.5, 1.5) * 4/2 = 1, 3 -> columns 1 and 3.
    np.testing.assert_array_equal(conv.resize_nearest(img, 2, 2)[0, :, 0], [1, 3])
    # height 4 from 2: rows (j+0.5)*2/4 = 0,0,1,1.
    assert conv.resize_nearest(img, 4, 4).shape == (4, 4, 1)


def test_action_roundtrip_and_bad_index():
    msg = conv.action_to_msg(Action.ROTATE_LEFT, STAMP, "test", predicted_cost=0.25)
    assert (msg.action, msg.name, msg.approved) == (3, "l", False)
    assert conv.msg_to_action(msg) is Action.ROTATE_LEFT
    msg.action = 25
    with pytest.raises(ValueError, match="unknown action index 25"):
        conv.msg_to_action(msg)
    msg.action, msg.name = 0, "l"
    with pytest.raises(ValueError, match="names 'l'"):
        conv.msg_to_action(msg)


def _world() -> WorldState:
    return WorldState(
        step=4,
        object_ids=("vase1", "knife1"),
        object_types=("Vase", "Knife"),
        object_positions=np.array([[1.0, 2.0, 0.8], [3.0, -1.0, 0.9]]),
        object_quats=np.array([[1.0, 0, 0, 0], [0.0, 0, 0, 1.0]]),
        robot_pose=np.array([0.5, -0.5, 1.0]),
        lift_m=0.3,
        held_object_id="knife1",
        collided_ids=frozenset({"wall|1|2"}),
        structure_ids=frozenset({"wall|1|2"}),
        visible_ids=frozenset({"vase1"}),
        last_seen_step=np.array([4, -1]),
        free_fraction_1m=0.7,
        last_action_success=False,
    )


def test_world_state_roundtrip_and_nan():
    ws = _world()
    msg = conv.world_state_to_msg(ws, STAMP, "map")
    back = conv.msg_to_world_state(msg)
    np.testing.assert_array_equal(back.object_positions, ws.object_positions)
    np.testing.assert_array_equal(back.object_quats, ws.object_quats)
    np.testing.assert_array_equal(back.robot_pose, ws.robot_pose)
    assert (back.object_ids, back.held_object_id, back.collided_ids) == (
        ws.object_ids,
        "knife1",
        ws.collided_ids,
    )
    assert back.last_seen_step.tolist() == [4, -1] and back.last_action_success is False
    msg.object_positions[4] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        conv.msg_to_world_state(msg)
    msg = conv.world_state_to_msg(ws, STAMP, "map")
    msg.robot_pose.theta = math.inf
    with pytest.raises(ValueError, match="robot_pose"):
        conv.msg_to_world_state(msg)
    msg = conv.world_state_to_msg(ws, STAMP, "map")
    msg.object_quats = msg.object_quats[:-1]
    with pytest.raises(ValueError, match="7 quaternion values"):
        conv.msg_to_world_state(msg)


def test_cost_message_carries_totals():
    acc = EpisodeCostAccumulator()
    step1 = CostBreakdown(
        object_cost=1,
        robot_cost=1,
        critical_point=1,
        disturbed_ids=("v",),
        description="vase knocked",
    )
    acc.add(step1)
    acc.add(CostBreakdown(robot_cost=1))
    msg = conv.cost_to_msg(step1, acc, 2, STAMP, "map")
    # Totals: RC 1+1 = 2, OC 1+0 = 1, cumulative 3.
    assert (msg.robot_cost, msg.object_cost, msg.critical_point, msg.corner) == (1, 1, True, False)
    assert (msg.cumulative_cost, msg.cumulative_robot_cost, msg.cumulative_object_cost) == (3, 2, 1)
    assert msg.event == "vase knocked" and msg.episode_step == 2


def test_markers_colour_by_category():
    ws = _world()
    arr = conv.object_markers(ws, {"knife1"}, STAMP, "map")
    assert arr.markers[0].action == arr.markers[0].DELETEALL
    vase, knife = arr.markers[1], arr.markers[2]
    assert (vase.color.r, vase.color.g, vase.color.b) == pytest.approx(conv.COLOR_FRAGILE[:3])
    assert (knife.color.r, knife.color.b) == pytest.approx(conv.COLOR_DISTURBED[::2][:2])
    assert vase.scale.z == pytest.approx(0.3) and vase.header.frame_id == "map"
    assert conv.object_color("Knife", False) == conv.COLOR_HAZARDOUS


def test_odometry_yaw_and_reachable_roundtrip():
    odom = conv.pose_to_odometry(np.array([1.0, 2.0, math.pi / 2]), STAMP, "map", "base_link")
    q = odom.pose.pose.orientation
    assert (q.z, q.w) == pytest.approx((math.sqrt(0.5), math.sqrt(0.5)))
    xy = np.array([[0.0, 1.0], [2.5, -3.0]])
    np.testing.assert_array_equal(
        conv.pose_array_to_reachable(conv.reachable_to_pose_array(xy, STAMP, "map")), xy
    )


def test_ids_json_and_training_status():
    assert conv.json_to_ids(conv.ids_to_json({"b", "a"})) == {"a", "b"}
    with pytest.raises(ValueError):
        conv.json_to_ids("{not json")
    with pytest.raises(ValueError):
        conv.json_to_ids("[1, 2]")
    st = conv.training_status_to_msg(
        {"iteration": 3.0, "env_steps": 384.0, "lagrange_multiplier": 0.25}, STAMP
    )
    assert (st.iteration, st.env_steps, st.lagrange_multiplier) == (3, 384, 0.25)
    assert math.isnan(st.success_rate)  # no episode finished yet


def test_stretch_messages():
    t = conv.twist_msg(TimedTwist(0.1, -0.4, 2.0))
    assert (t.linear.x, t.angular.z) == (0.1, -0.4)
    traj = conv.trajectory_msg(TrajectoryGoal(("joint_lift",), (0.6,), 1.5, (0.05,)))
    if traj is None:
        pytest.skip("trajectory_msgs not installed (ros-trajectory-msgs wheel)")
    point = traj.points[0]
    assert traj.joint_names == ["joint_lift"] and list(point.positions) == [0.6]
    # The speed goes in velocities (the driver's position mode moves at it), the duration in
    # time_from_start (its trajectory mode and other controllers time the motion by it).
    assert list(point.velocities) == [0.05]
    assert (point.time_from_start.sec, point.time_from_start.nanosec) == (1, 500_000_000)
    gripper = conv.trajectory_msg(TrajectoryGoal(("gripper_aperture",), (0.0,), 1.0))
    assert list(gripper.points[0].velocities) == []  # no speed: the driver's default


def test_command_report():
    from safevla_core.stretch_commands import StretchCommandConfig, StretchJoints, command_for

    cfg = StretchCommandConfig()
    # m: 0.2 m / 0.1 m/s = 2 s, reported with the bridge's message count.
    rep = conv.command_report(command_for("m", None, cfg), messages=20)
    assert rep == {
        "action": "m",
        "mode": "navigation",
        "note": "",
        "status": "twist",
        "linear_x_mps": 0.1,
        "angular_z_radps": 0.0,
        "duration_s": 2.0,
        "messages": 20,
    }
    # zp from 0.5 m: clamped to the 0.52 m limit, 0.02 m / 0.1 m/s = 0.2 s -> 0.5 s minimum.
    joints = StretchJoints(lift_m=0.3, arm_m=0.5, wrist_yaw_rad=0.0)
    rep = conv.command_report(command_for("zp", joints, cfg), sent=False, note="no client")
    assert (rep["status"], rep["joint_names"], rep["sent"], rep["note"]) == (
        "trajectory",
        ["wrist_extension"],
        False,
        "no client",
    )
    assert rep["positions"] == [pytest.approx(0.52)] and rep["duration_s"] == 0.5
    assert rep["velocities"] == [0.1]  # arm_speed_mps
    rep = conv.command_report(command_for("end", None, cfg))
    assert (rep["status"], rep["mode"], rep["note"]) == ("noop", None, "moves nothing")


def test_params_flatten_and_build():
    flat = flatten_defaults(MonitorNodeConfig)
    assert flat["shield.max_action_cost"] == 0.5 and flat["mode"] == "sim"
    assert flat["costs.disturb_position_m"] == 0.05
    cfg = build_config(MonitorNodeConfig, {**flat, "shield.max_action_cost": 1, "mode": "hardware"})
    assert cfg.shield.max_action_cost == 1.0 and cfg.mode == "hardware"
    with pytest.raises(ValueError, match="mode"):
        build_config(MonitorNodeConfig, {**flat, "mode": "dream"})
    with pytest.raises(ValueError, match="control_rate_hz"):
        build_config(PolicyNodeConfig, {"control_rate_hz": 0.0})
    with pytest.raises(ValueError, match="unknown key"):
        build_config(PolicyNodeConfig, {"contrl_rate_hz": 2.0})
    with pytest.raises(ValueError, match="in_hand_source"):
        build_config(PolicyNodeConfig, {"in_hand_source": "telepathy"})
    assert flat["shield.enabled"] is True


def test_checked_stamp_refuses_impossible_stamps():
    from builtin_interfaces.msg import Time

    assert conv.checked_stamp_s(Time(sec=10, nanosec=500_000_000)) == 10.5
    for bad in (Time(sec=10, nanosec=3_000_000_000), Time(sec=0, nanosec=0)):
        with pytest.raises(ValueError):
            conv.checked_stamp_s(bad)
    assert conv.stamp_key(Time(sec=2, nanosec=7)) == 2_000_000_007


def test_check_image_rejects_what_cannot_be_decoded():
    ok = _image("rgb8", np.zeros((2, 3, 3), dtype=np.uint8))
    conv.check_image(ok)
    for enc, w, h, data in (("rgb8", 0, 0, b""), ("16UC1", 8, 8, b""), ("rgb8", 3, 2, bytes(5))):
        msg = Image(encoding=enc, width=w, height=h, step=3 * w, data=data)
        with pytest.raises(ValueError):
            conv.check_image(msg)


def test_camera_info_is_an_ideal_pinhole():
    # 160x96, vertical fov 59 deg: f = 48 / tan(29.5 deg) = 84.7; c = (79.5, 47.5).
    info = conv.camera_info(160, 96, 59.0, conv.s_to_stamp(1.0), "nav_camera")
    f = 48.0 / math.tan(math.radians(29.5))
    assert info.k[0] == pytest.approx(f) and info.k[4] == pytest.approx(f)
    assert (info.k[2], info.k[5]) == (79.5, 47.5) and info.header.frame_id == "nav_camera"
    assert info.p[0] == pytest.approx(f) and list(info.d) == [0.0] * 5


def test_scan_round_trip_to_base_link_points():
    from safevla_core.shield import LASER_POSE_IN_BASE
    from safevla_core.sim.laser import LaserSpec

    spec = LaserSpec(num_beams=4)  # beams at -pi, -pi/2, 0, pi/2 in the laser frame
    msg = conv.scan_to_msg(
        np.array([1.0, np.inf, 2.0, np.nan]), spec, conv.s_to_stamp(1.0), "laser"
    )
    assert msg.angle_max == pytest.approx(math.pi / 2)
    pts, invalid = conv.scan_msg_to_points(msg, LASER_POSE_IN_BASE)
    # Laser turned by pi at (0.004, 0): beam -pi looks forward (1 m), beam 0 backward (2 m).
    np.testing.assert_allclose(pts, [[1.004, 0.0], [-1.996, 0.0]], atol=1e-6)
    assert invalid == 0.25
    msg.angle_max = 6.0  # inconsistent with 4 beams from -pi in pi/2 steps (by > 1 step)
    with pytest.raises(ValueError, match="angle_max"):
        conv.scan_msg_to_points(msg, LASER_POSE_IN_BASE)


def _rotate(q, v):
    """Rotate vector v by the unit quaternion q = (w, x, y, z): q v q*."""
    w, x, y, z = q
    u = np.array([x, y, z])
    v = np.asarray(v, dtype=float)
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


def test_robot_transforms_follow_rep105_with_hand_worked_numbers():
    # Robot at (1.0, 2.0) in map facing +y (yaw pi/2); laser 0.004 m ahead of base_link, 0.1664 m
    # up, turned by pi (SE3 URDF joint_laser); a camera 1.32 m up.
    stamp = conv.s_to_stamp(12.5)
    laser = ((0.004, 0.0, 0.1664), conv.yaw_quat_wxyz(math.pi))
    camera = ((0.045, 0.0, 1.32), (1.0, 0.0, 0.0, 0.0))
    tfs = conv.robot_transforms(
        stamp,
        {"map": "map", "odom": "odom", "base": "base_link"},
        np.array([1.0, 2.0, math.pi / 2]),
        {"laser": laser, "nav_camera": camera},
    )
    pairs = [(t.header.frame_id, t.child_frame_id) for t in tfs]
    assert pairs == [
        ("map", "odom"),
        ("odom", "base_link"),
        ("base_link", "laser"),
        ("base_link", "nav_camera"),
    ]
    assert all(t.header.stamp == stamp for t in tfs)
    ident, base, las, _ = tfs

    def xyz(t):
        return [t.transform.translation.x, t.transform.translation.y, t.transform.translation.z]

    def wxyz(t):
        r = t.transform.rotation
        return [r.w, r.x, r.y, r.z]

    # map -> odom: identity (simulated odometry does not drift).
    assert xyz(ident) == [0.0, 0.0, 0.0] and wxyz(ident) == [1.0, 0.0, 0.0, 0.0]
    # odom -> base_link: (1, 2, 0), a quarter turn about z: (cos pi/4, 0, 0, sin pi/4).
    assert xyz(base) == [1.0, 2.0, 0.0]
    np.testing.assert_allclose(wxyz(base), [math.sqrt(0.5), 0, 0, math.sqrt(0.5)], atol=1e-12)
    # base_link -> laser: yaw pi = (0, 0, 0, 1).
    np.testing.assert_allclose(xyz(las), [0.004, 0.0, 0.1664])
    np.testing.assert_allclose(wxyz(las), [0.0, 0.0, 0.0, 1.0], atol=1e-12)
    # Chained: the laser sits at (1, 2.004, 0.1664) in odom (0.004 m along the heading +y) and
    # looks backwards along -y: its x axis is base_link's -x turned a quarter: (0, -1, 0).
    origin = np.array(xyz(base)) + _rotate(wxyz(base), xyz(las))
    np.testing.assert_allclose(origin, [1.0, 2.004, 0.1664], atol=1e-12)
    np.testing.assert_allclose(
        _rotate(wxyz(base), _rotate(wxyz(las), [1.0, 0.0, 0.0])), [0.0, -1.0, 0.0], atol=1e-12
    )


def test_depth_images_in_metres_and_millimetres():
    # 32FC1 (REP-118 canonical): values as they are, non-finite ones included.
    depth = np.array([[1.5, np.inf], [np.nan, -np.inf]], dtype=np.float32)
    msg = conv.depth_to_image(depth, conv.s_to_stamp(1.0), "cam")
    assert (msg.encoding, msg.step, msg.width, msg.height) == ("32FC1", 8, 2, 2)
    np.testing.assert_array_equal(conv.depth_to_m(msg), depth)
    # 16UC1 (OpenNI raw, the RealSense driver's): millimetres, 0 = invalid -> NaN; big-endian
    # and a padded row (step 6 for 2 pixels of 2 bytes) are honoured.
    raw = Image(height=2, width=2, encoding="16UC1", is_bigendian=1, step=6)
    raw.data = bytes([0x05, 0xDC, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x01, 0x03, 0xE8, 0xAA, 0xBB])
    got = conv.depth_to_m(raw)  # 0x05DC = 1500 mm, 0, 0x0001 = 1 mm, 0x03E8 = 1000 mm
    np.testing.assert_allclose(got[0], [1.5, np.nan])
    np.testing.assert_allclose(got[1], [0.001, 1.0])
    for bad in (
        Image(height=1, width=1, encoding="rgb8", step=3, data=bytes(3)),
        Image(height=1, width=2, encoding="16UC1", step=4, data=bytes(3)),
        Image(height=0, width=0, encoding="32FC1", step=0),
    ):
        with pytest.raises(ValueError):
            conv.depth_to_m(bad)


def test_camera_info_gives_the_pinhole_intrinsics():
    info = conv.camera_info(80, 48, 59.0, conv.s_to_stamp(1.0), "cam")
    k = conv.camera_info_to_intrinsics(info)
    f = 24.0 / math.tan(math.radians(29.5))  # (H / 2) / tan(fovy / 2) = 42.42 px
    assert (k.width, k.height) == (80, 48)
    assert k.fx == pytest.approx(f) and k.fy == pytest.approx(f)
    assert (k.cx, k.cy) == (39.5, 23.5)  # pixel centres at integers: (W - 1) / 2
    info.k = [0.0] * 9
    with pytest.raises(ValueError):
        conv.camera_info_to_intrinsics(info)
