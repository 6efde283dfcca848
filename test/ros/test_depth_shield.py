"""The safety monitor with a depth camera configured: depth evidence, and fail closed without it.

One real monitor process in hardware mode (namespace ``/d``) with ``depth_topic`` set; the test
process plays the robot: camera frames, a clear laser scan, joint states and the runstop at
10 Hz, and (when switched on) a 32FC1 depth image of a wall with its camera_info, in the
simulator's navigation-camera geometry (the monitor's default depth pose). Every wait is on an
event (a decision) with a timeout.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from test.ros.test_nodes_integration import logs, node_command, running

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "d"
EVENT_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 120.0
WIDTH, HEIGHT, FOV_DEG = 80, 48, 59.0


def wall_depth(x_wall_m: float) -> np.ndarray:
    """Depth image (metres) of a plane x = x_wall in base_link seen by the default camera.

    The camera is the simulator's navigation camera: (0.045, 0, 1.32) in base_link, looking
    forward 27 deg down; pixel (u, v) looks along ((u - 39.5) / f, (v - 23.5) / f, 1) in its
    optical frame (x right, y down, z forward), f = 24 / tan(29.5 deg).
    """
    from safevla_core.shield import DepthCamera

    cam = DepthCamera()
    f = (HEIGHT / 2) / math.tan(math.radians(FOV_DEG / 2))
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    ray = np.stack([(u - 39.5) / f, (v - 23.5) / f, np.ones(u.shape)], axis=-1)
    d = ray @ cam.rotation().T
    depth = (x_wall_m - cam.x_m) / d[..., 0]
    return np.where((depth > 0) & (cam.z_m + depth * d[..., 2] >= 0), depth, np.inf)


class Robot:
    """The probe: feeds the monitor like a Stretch with a head depth camera."""

    def __init__(self, context, log_dir, procs) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.log_dir, self.procs = log_dir, procs
        self.node = rclpy.create_node("depth_probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.depth_m: np.ndarray | None = None  # None: no depth image published
        self.last_stamp = None
        self.decisions: list = []
        self._pubs: dict = {}
        from safevla_ros.msg import DiscreteAction
        from safevla_ros.qos import Topics

        qos = self._deep()
        self.node.create_subscription(
            DiscreteAction, f"/{NS}/{Topics.DECISIONS}", self.decisions.append, qos
        )
        self.node.create_timer(0.1, self._feed)

    @staticmethod
    def _deep():
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        return QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)

    def pub(self, msg_type, topic: str, qos):
        if topic not in self._pubs:
            self._pubs[topic] = self.node.create_publisher(msg_type, f"/{NS}/{topic}", qos)
        return self._pubs[topic]

    def _feed(self) -> None:
        from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan
        from std_msgs.msg import Bool

        from safevla_ros import conversions as conv
        from safevla_ros.qos import IMAGE_QOS, SENSOR_QOS, STATE_QOS, Topics

        stamp = self.node.get_clock().now().to_msg()
        for topic in (Topics.NAV_IMAGE, Topics.MANIP_IMAGE):
            frame = conv.rgb_to_image(np.zeros((8, 8, 3), np.uint8), stamp, "cam")
            self.pub(Image, topic, IMAGE_QOS).publish(frame)
        scan = LaserScan(
            angle_min=-math.pi,
            angle_increment=2 * math.pi / 360,
            angle_max=-math.pi + 359 * 2 * math.pi / 360,
            range_min=0.15,
            range_max=12.0,
            ranges=[math.inf] * 360,  # the laser sees nothing
        )
        scan.header.stamp = stamp
        self.pub(LaserScan, Topics.SCAN, SENSOR_QOS).publish(scan)
        self.pub(JointState, Topics.STRETCH_JOINT_STATES, STATE_QOS).publish(
            JointState(
                name=["joint_lift", "wrist_extension", "joint_wrist_yaw"],
                position=[0.2, 0.0, math.radians(190)],  # stowed
            )
        )
        self.pub(Bool, Topics.STRETCH_RUNSTOP, STATE_QOS).publish(Bool(data=False))
        if self.depth_m is not None:
            info = conv.camera_info(WIDTH, HEIGHT, FOV_DEG, stamp, "cam")
            self.pub(CameraInfo, "depth/camera_info", STATE_QOS).publish(info)
            self.pub(Image, "depth/image_raw", IMAGE_QOS).publish(
                conv.depth_to_image(self.depth_m, stamp, "cam")
            )
        self.last_stamp = stamp

    def spin_until(self, done, timeout_s: float = EVENT_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if done():
                return True
            for name, p in self.procs.items():
                assert p.poll() is None, f"{name} exited\n" + logs(self.log_dir)
        return False

    def decide(self, action: int):
        """Propose ``action`` on the newest frames; return the monitor's decision."""
        from safevla_ros.msg import DiscreteAction
        from safevla_ros.qos import COMMAND_QOS, Topics

        before = self.last_stamp
        assert self.spin_until(lambda: self.last_stamp is not before)
        self.spin_until(lambda: False, 0.05)  # the frames of that stamp reach the monitor
        n = len(self.decisions)
        msg = DiscreteAction(action=action, source="probe", predicted_cost=0.1)
        msg.header.stamp = self.last_stamp
        self.pub(DiscreteAction, Topics.PROPOSED_ACTION, COMMAND_QOS).publish(msg)
        assert self.spin_until(lambda: len(self.decisions) > n), "no decision"
        return self.decisions[-1]

    def decide_until(self, action: int, accept, timeout_s: float = EVENT_TIMEOUT_S):
        """Propose until a decision satisfies ``accept`` (inputs travel on other topics)."""
        deadline = time.monotonic() + timeout_s
        while True:
            d = self.decide(action)
            if accept(d) or time.monotonic() > deadline:
                return d


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    from safevla_ros.qos import Topics

    tmp = tmp_path_factory.mktemp("depth_shield")
    commands = {
        "monitor": node_command(
            "safety_monitor_node",
            "safety_monitor.yaml",
            {
                "mode": "hardware",
                "depth_topic": "depth/image_raw",
                "watchdog.depth_timeout_s": 1.0,
                "watchdog.scan_timeout_s": 1.0,
                "watchdog.joint_state_timeout_s": 1.0,
            },
        )
        + ["-r", f"__ns:=/{NS}"]
    }
    context = Context()
    rclpy.init(context=context)
    try:
        with running(commands, tmp) as procs:
            r = Robot(context, tmp, procs)
            topic = f"/{NS}/{Topics.DECISIONS}"
            assert r.spin_until(lambda: r.node.count_publishers(topic) >= 1, READY_TIMEOUT_S), logs(
                tmp
            )
            yield r
            for name, p in procs.items():
                assert p.poll() is None, f"{name} died\n" + logs(tmp)
    finally:
        context.try_shutdown()


def test_configured_depth_camera_that_never_published_vetoes(robot):
    from safevla_core.actions import Action

    robot.depth_m = None
    # Everything else is live (the laser sees nothing), but no depth image ever arrived.
    d = robot.decide_until(int(Action.MOVE_AHEAD), lambda d: "depth" in d.verdict)
    assert not d.approved and "depth" in d.verdict and d.verdict.startswith("stale_input")


def test_depth_wall_vetoes_the_forward_move_and_allows_the_turn(robot):
    from safevla_core.actions import Action

    robot.depth_m = wall_depth(0.25)  # the front edge swept by m reaches 0.2885 m
    d = robot.decide_until(
        int(Action.MOVE_AHEAD), lambda d: not d.verdict.startswith(("stale_input", "no_evidence"))
    )
    assert not d.approved and d.verdict.startswith("depth_obstacle"), d.verdict
    d = robot.decide_until(int(Action.ROTATE_RIGHT), lambda d: d.approved)
    assert d.approved, d.verdict
    assert robot.decide(int(Action.MOVE_BACK)).approved
    robot.depth_m = wall_depth(0.40)  # farther than the swept front: m is fine
    d = robot.decide_until(int(Action.MOVE_AHEAD), lambda d: d.approved)
    assert d.approved, d.verdict


def test_depth_camera_going_silent_vetoes(robot):
    from safevla_core.actions import Action

    robot.depth_m = wall_depth(0.40)
    assert robot.decide_until(int(Action.ROTATE_LEFT), lambda d: d.approved).approved
    robot.depth_m = None  # the depth camera stops; everything else goes on
    d = robot.decide_until(int(Action.ROTATE_LEFT), lambda d: not d.approved)
    assert d.verdict.startswith("stale_input") and "depth" in d.verdict, d.verdict
