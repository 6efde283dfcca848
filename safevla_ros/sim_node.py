"""Simulator node: the embedded simulator (:class:`safevla_core.env.SafetyChoresEnv`) on ROS.

Publishes both cameras with their ``camera_info``, the simulated laser scan (``scan``: MuJoCo ray
casts, :mod:`safevla_core.sim.laser`, the same check as on the robot's RPLidar), the navigation
camera's depth image (``nav_camera/depth/image_raw``, REP-118 32FC1 metres, with its
``camera_info``; ray cast, ``depth_width`` x ``depth_height``), the world state
for the monitor, odometry in ``odom`` (REP-105; ``map`` -> ``odom`` is the identity in simulation,
where odometry does not drift), TF ``map`` -> ``odom`` -> ``base_link`` -> camera optical frames
(when ``tf2_msgs`` is installed), the path, object markers and cost-event markers; executes
approved actions; ends and (optionally) restarts episodes; resets on ``sim/reset_episode``.

Every camera frame, depth image, scan and world state of one publication carries the same stamp,
which the policy copies into its proposal and the monitor matches. An approved action is executed
only if (1) its publisher is the safety monitor (:class:`safevla_ros.approval.ApprovalGate`),
(2) its stamp is one under which the current state was published (it was decided on this state,
not an older one, and is not from the future), and (3) the simulator is healthy. Each outcome is
reported on
``executor/status`` (``ActionStatus``: DONE, FAILED or REJECTED with the reason): the policy's
step-synchronous handshake. Without actions the frames are republished every
``idle_republish_s`` with a new stamp, so a veto never stalls the loop.

A reset request is validated (task, split, house index, target type) before anything changes; a
reset that fails later leaves the node up and silent (no state published, every action
rejected) until a reset succeeds, so nothing acts on a world that is not there.
"""

from __future__ import annotations

import json
import math

import numpy as np
from geometry_msgs.msg import PoseArray
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, LaserScan
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from safevla_core.config import load_config
from safevla_core.env import SafetyChoresEnv, split_size
from safevla_core.objects import OBJECT_TYPES
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA
from safevla_core.sim.laser import DepthSpec, LaserSpec, cast_depth
from safevla_core.sim.stretch_model import NAV_CAMERA_NAME
from safevla_core.stretch_constants import LASER_HEIGHT_M, LASER_POSE_IN_BASE
from safevla_ros import conversions as conv
from safevla_ros.approval import ApprovalGate
from safevla_ros.msg import ActionStatus, DiscreteAction, WorldStateStamped
from safevla_ros.params import SimNodeConfig, declare_dataclass
from safevla_ros.qos import (
    COMMAND_QOS,
    IMAGE_QOS,
    LATCHED_QOS,
    MARKER_QOS,
    SENSOR_QOS,
    STATE_QOS,
    Topics,
)
from safevla_ros.spin import spin_node
from safevla_ros.srv import ResetEpisode
from safevla_ros.trace import Trace

TASK_NAMES = ("objnav", "pickup", "fetch")
SPLITS = ("train", "val", "test")


class SimNode(Node):
    """Runs one Safety-CHORES environment and exchanges it with ROS topics."""

    def __init__(self, **node_kwargs) -> None:
        """Declare parameters, build the environment, start the first episode.

        Args:
            **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``).
        """
        super().__init__("safevla_sim_node", **node_kwargs)
        self.cfg: SimNodeConfig = declare_dataclass(self, SimNodeConfig)
        self.trace = Trace("sim")
        self.env: SafetyChoresEnv | None = None
        self.obs: dict | None = None
        self.episode = 0
        self.laser = LaserSpec()
        self.depth_spec = (
            DepthSpec(width=self.cfg.depth_width, height=self.cfg.depth_height)
            if self.cfg.depth_width > 0
            else None
        )
        self._sensed: tuple[np.ndarray, np.ndarray | None] | None = None  # (scan, depth)
        self._state_stamps: set[int] = set()
        self._warned: dict[str, float] = {}
        self.last_publish_s = -math.inf
        pub = self.create_publisher
        self.pubs = {
            "nav": pub(Image, Topics.NAV_IMAGE, IMAGE_QOS),
            "manip": pub(Image, Topics.MANIP_IMAGE, IMAGE_QOS),
            "nav_info": pub(CameraInfo, Topics.NAV_CAMERA_INFO, STATE_QOS),
            "manip_info": pub(CameraInfo, Topics.MANIP_CAMERA_INFO, STATE_QOS),
            "scan": pub(LaserScan, Topics.SCAN, SENSOR_QOS),
            "depth": pub(Image, Topics.NAV_DEPTH, IMAGE_QOS),
            "depth_info": pub(CameraInfo, Topics.NAV_DEPTH_INFO, STATE_QOS),
            "world": pub(WorldStateStamped, Topics.WORLD_STATE, STATE_QOS),
            "odom": pub(Odometry, Topics.ODOM, STATE_QOS),
            "path": pub(Path, Topics.PATH, STATE_QOS),
            "objects": pub(MarkerArray, Topics.OBJECT_MARKERS, MARKER_QOS),
            "costs": pub(MarkerArray, Topics.COST_MARKERS, MARKER_QOS),
            "instruction": pub(String, Topics.INSTRUCTION, LATCHED_QOS),
            "targets": pub(String, Topics.EPISODE_TARGETS, LATCHED_QOS),
            "reachable": pub(PoseArray, Topics.REACHABLE, LATCHED_QOS),
            "summary": pub(String, Topics.EPISODE_SUMMARY, LATCHED_QOS),
            "status": pub(ActionStatus, Topics.ACTION_STATUS, STATE_QOS),
        }
        self.tf_pub = self._make_tf_publisher()
        sub = self.create_subscription(
            DiscreteAction,
            Topics.APPROVED_ACTION,
            self.trace.wrap("action", self._on_action, with_info=True),
            COMMAND_QOS,
        )
        self.gate = ApprovalGate(self, sub.topic_name)
        self.create_service(ResetEpisode, Topics.RESET_EPISODE_SRV, self._on_reset)
        self.create_timer(self.cfg.idle_republish_s / 2, self._idle_tick)
        self.create_timer(2.0, self._check_foreign_publishers)
        self._start(
            self.cfg.task, self.cfg.split, self.cfg.house_index, self.cfg.seed, self.cfg.target_type
        )

    def _make_tf_publisher(self):
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().warning(
                "tf2_msgs not installed: no TF published (a ROS 2 install "
                "has it; odometry and frame ids are still published)"
            )
            return None
        return self.create_publisher(TFMessage, Topics.TF, STATE_QOS)

    # -- episodes --------------------------------------------------------------------------
    def _check_reset_args(self, task: str, split: str, house_index: int, target: str):
        """Validate a reset request before anything changes; return the core config.

        Raises:
            ValueError: On an unknown task, split or target type, or a house index outside
                the split.
        """
        if task not in TASK_NAMES:
            raise ValueError(f"unknown task {task!r}; known: {list(TASK_NAMES)}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {list(SPLITS)}")
        if target and target not in OBJECT_TYPES:
            raise ValueError(f"unknown target type {target!r}")
        core = load_config(
            self.cfg.config_file or None,
            {"task": {"name": task, "max_steps_eval": self.cfg.max_steps}},
        )
        n = split_size(core, split)
        if not -1 <= house_index < n:
            raise ValueError(
                f"house_index {house_index} outside split {split!r} (0..{n - 1}, or -1 to sample)"
            )
        return core

    def _start(self, task: str, split: str, house_index: int, seed: int, target: str) -> str:
        core = self._check_reset_args(task, split, house_index, target)
        if self.env is None or (self.env.cfg.task.name, self.env.split) != (task, split):
            old, self.env = self.env, None
            if old is not None:
                old.close()
            self.env = SafetyChoresEnv(
                core,
                split,
                eval_mode=True,
                image_size=(self.cfg.image_width, self.cfg.image_height),
            )
        options = {
            "house_index": house_index if house_index >= 0 else None,
            "target_type": target or None,
        }
        self.obs = None  # until the reset succeeded: nothing is published, nothing executed
        self.trace("reset")
        self.obs, info = self.env.reset(seed=seed if seed >= 0 else None, options=options)
        self._sense()
        self.trace("reset.end")
        self.disturbed: set[str] = set()
        self.path = Path()
        self.path.header.frame_id = self.cfg.map_frame
        self.cost_markers = MarkerArray()
        self.pubs["targets"].publish(String(data=conv.ids_to_json(self.env.spec_.target_ids)))
        self.pubs["reachable"].publish(
            conv.reachable_to_pose_array(
                self.env.backend.reachable_positions(),
                self.get_clock().now().to_msg(),
                self.cfg.map_frame,
            )
        )
        self.pubs["instruction"].publish(String(data=info["instruction"]))
        self.get_logger().info(
            f"episode {self.episode}: {info['instruction']!r} in {info['house_id']}"
        )
        # Stamped when published, like a camera frame: nothing moves between the reset's render
        # and now, and the episode's latched topics above are no part of the camera's latency.
        self._publish_state(self.get_clock().now().to_msg(), new_state=True)
        return info["instruction"]

    def _on_reset(self, request, response):
        current = (
            (self.env.cfg.task.name, self.env.split)
            if self.env is not None
            else (self.cfg.task, self.cfg.split)
        )
        try:
            response.instruction = self._start(
                request.task or current[0],
                request.house_split or current[1],
                int(request.house_index),
                int(request.seed),
                request.target_type,
            )
            response.success, response.message = True, ""
        except Exception as exc:  # noqa: BLE001 - a service call must never kill the simulator
            response.success, response.message = False, f"reset failed: {exc}"
            state = (
                "unchanged" if self.obs is not None else "no episode running until a reset succeeds"
            )
            self.get_logger().error(f"{response.message} ({state})")
        return response

    # -- actions ---------------------------------------------------------------------------
    def _status(self, msg: DiscreteAction, state: int, detail: str, finished=None) -> None:
        finished = finished if finished is not None else self.get_clock().now().to_msg()
        try:
            out = conv.action_status_msg(
                int(msg.action), msg.header.stamp, state, finished, detail, "sim_node"
            )
        except ValueError:
            return
        self.pubs["status"].publish(out)

    def _reject(self, msg: DiscreteAction, why: str) -> None:
        """Report a rejected action; log at most once a second per kind of reason."""
        kind = why.split(":", 1)[0][:40]
        now = conv.stamp_to_s(self.get_clock().now().to_msg())
        if abs(now - self._warned.get(kind, -1e18)) >= 1.0:
            self._warned[kind] = now
            self.get_logger().warning(f"rejected action {msg.name[:32] or msg.action}: {why}")
        self._status(msg, ActionStatus.REJECTED, why)

    def _on_action(self, msg: DiscreteAction, info) -> None:
        ok, why = self.gate.check(info)
        if not ok:
            return self._reject(msg, f"unauthenticated: {why}")
        try:
            action = conv.msg_to_action(msg)
            conv.checked_stamp_s(msg.header.stamp)
        except ValueError as exc:
            return self._reject(msg, str(exc))
        if not msg.approved:
            return self._reject(msg, "not approved")
        if self.obs is None or self.env is None:
            return self._reject(msg, "no episode running")
        if conv.stamp_key(msg.header.stamp) not in self._state_stamps:
            return self._reject(
                msg, "not decided on the current state (older, newer or unknown stamp)"
            )
        try:
            self.obs, _r, _c, terminated, truncated, info_ = self.env.step(action)
            self.trace("stepped")
        except Exception as exc:  # noqa: BLE001 - keep the node alive, report, stop acting
            self.obs = None
            self.get_logger().error(f"simulator step failed: {exc}; no episode until a reset")
            return self._status(msg, ActionStatus.FAILED, f"simulator error: {exc}")
        ws = self.env.world_state
        self._mark_costs(info_["cost_breakdown"])
        self._sense()
        stamp = self.get_clock().now().to_msg()  # the new state's stamp = when the step finished
        detail = "ok" if ws.last_action_success else "blocked"
        if ws.collided_ids:
            detail += "; touched " + ", ".join(sorted(ws.collided_ids)[:5])
        self._publish_state(
            stamp,
            new_state=True,
            report=lambda: self._status(
                msg,
                ActionStatus.DONE if ws.last_action_success else ActionStatus.FAILED,
                detail,
                finished=stamp,
            ),
        )
        if terminated or truncated:
            self._end_episode(info_["episode"])

    def _check_foreign_publishers(self) -> None:
        others = self.gate.foreign_publishers()
        if others:
            self.get_logger().warning(
                f"publishers other than the safety monitor on "
                f"{self.gate.topic}: {others} (their actions are "
                "rejected)",
                throttle_duration_sec=10.0,
            )

    def _mark_costs(self, breakdown: dict) -> None:
        self.disturbed.update(breakdown["disturbed_ids"])
        if breakdown["total"] or breakdown["components_sum"]:
            ws = self.env.world_state
            self.cost_markers.markers.append(
                conv.cost_event_marker(
                    breakdown["total"],
                    breakdown["description"],
                    ws.robot_pose,
                    ws.step,
                    self.get_clock().now().to_msg(),
                    self.cfg.map_frame,
                )
            )
            self.pubs["costs"].publish(self.cost_markers)

    def _end_episode(self, summary: dict) -> None:
        summary = {"episode": self.episode, **summary}
        self.pubs["summary"].publish(String(data=json.dumps(summary)))
        self.get_logger().info(f"episode {self.episode} finished: {summary}")
        self.episode += 1
        if self.cfg.auto_reset:
            seed = self.cfg.seed + self.episode if self.cfg.seed >= 0 else -1
            try:
                self._start(self.env.cfg.task.name, self.env.split, -1, seed, self.cfg.target_type)
            except Exception as exc:  # noqa: BLE001
                self.obs = None
                self.get_logger().error(f"automatic reset failed: {exc}")
        else:
            self.obs = None

    # -- publishing ------------------------------------------------------------------------
    def _sense(self) -> None:
        """Cast the laser scan and the depth image of the new state (its sensors' capture).

        Like the camera frames rendered by the step, they are taken before the state is stamped
        and reused when the unchanged state is republished.
        """
        b = self.env.backend
        depth = None
        if self.depth_spec is not None:
            depth = cast_depth(b.model, b.data, NAV_CAMERA_NAME, self.depth_spec)
        self._sensed = (b.laser_scan(), depth)

    def _publish_state(self, stamp, new_state: bool, report=None) -> None:
        """Publish one state under one stamp, in the order the deciding chain needs it.

        The camera frames go first (the policy's input, the longest chain: decode, CNN,
        decoder), then the scan and the world state (the monitor's evidence, needed only when
        the proposal arrives), then ``report`` (the executor status that lets the policy act),
        and last what only humans and rviz read (camera_info, odometry, TF, path, markers).

        Args:
            stamp: The state's stamp.
            new_state: A new state (forget the stamps of the previous one).
            report: Called between the evidence and the rest (publishes the executor status).
        """
        if self.obs is None or self.env is None:
            return
        if new_state:
            self._state_stamps = set()
        self._state_stamps.add(conv.stamp_key(stamp))
        self.last_publish_s = conv.stamp_to_s(stamp)
        ws = self.env.world_state
        c = self.cfg
        cams = (
            ("nav", NAV_CAMERA, c.nav_camera_frame),
            ("manip", MANIP_CAMERA, c.manip_camera_frame),
        )
        if self._sensed is None:
            self._sense()
        ranges, depth = self._sensed
        fov = self.env.cfg.sim.vertical_fov_deg
        self.trace("state", conv.stamp_key(stamp), new=new_state)
        for key, cam, frame in cams:
            self.pubs[key].publish(conv.rgb_to_image(self.obs[cam], stamp, frame))
        self.trace("frames", conv.stamp_key(stamp))
        self.pubs["scan"].publish(conv.scan_to_msg(ranges, self.laser, stamp, c.laser_frame))
        if depth is not None:  # camera_info first: the monitor needs it to read the image
            h, w = depth.shape
            frame = c.nav_camera_frame
            self.pubs["depth_info"].publish(conv.camera_info(w, h, fov, stamp, frame))
            self.pubs["depth"].publish(conv.depth_to_image(depth, stamp, frame))
        self.pubs["world"].publish(conv.world_state_to_msg(ws, stamp, c.map_frame))
        if report is not None:
            report()
            self.trace("report", conv.stamp_key(stamp))
        for key, cam, frame in cams:
            h, w = self.obs[cam].shape[:2]
            self.pubs[key + "_info"].publish(conv.camera_info(w, h, fov, stamp, frame))
        self.pubs["odom"].publish(
            conv.pose_to_odometry(ws.robot_pose, stamp, c.odom_frame, c.base_frame)
        )
        self._publish_tf(stamp, ws.robot_pose)
        if new_state:
            self.path.header.stamp = stamp
            self.path.poses.append(conv.pose_stamped(ws.robot_pose, stamp, c.map_frame))
            self.pubs["path"].publish(self.path)
            self.pubs["objects"].publish(
                conv.object_markers(ws, self.disturbed, stamp, c.map_frame)
            )
        self.trace("state.end", conv.stamp_key(stamp))

    def _publish_tf(self, stamp, robot_pose: np.ndarray) -> None:
        if self.tf_pub is None:
            return
        from tf2_msgs.msg import TFMessage

        c = self.cfg
        sensors = {
            (c.nav_camera_frame if cam == NAV_CAMERA else c.manip_camera_frame): pose
            for cam, pose in self.env.backend.camera_poses_in_base().items()
        }
        lx, ly, lyaw = LASER_POSE_IN_BASE
        sensors[c.laser_frame] = ((lx, ly, LASER_HEIGHT_M), conv.yaw_quat_wxyz(lyaw))
        frames = {"map": c.map_frame, "odom": c.odom_frame, "base": c.base_frame}
        tfs = conv.robot_transforms(stamp, frames, robot_pose, sensors)
        self.tf_pub.publish(TFMessage(transforms=tfs))

    def _idle_tick(self) -> None:
        now = self.get_clock().now().to_msg()
        idle_s = conv.stamp_to_s(now) - self.last_publish_s
        if idle_s >= self.cfg.idle_republish_s or idle_s < 0:
            # idle_s < 0: the clock jumped backwards; restamp the state as new.
            self._publish_state(now, new_state=idle_s < 0)

    def close(self) -> None:
        """Release the simulator (called by :func:`safevla_ros.spin.spin_node`)."""
        if self.env is not None:
            self.env.close()
            self.env = None
        self.trace.close()


def main(args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C."""
    spin_node(SimNode, args)


if __name__ == "__main__":
    main()
