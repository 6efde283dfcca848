"""Simulator node: the embedded simulator (:class:`safevla_core.env.SafetyChoresEnv`) on ROS.

Publishes both cameras, the world state for the monitor, odometry and the path in ``map``, object
markers (fragile / hazardous / disturbed) and cost-event markers; executes approved actions; ends
and (optionally) restarts episodes; resets on the ``sim/reset_episode`` service. The environment
computes the same costs as training, so markers and episode summaries match the trained metrics.
An approved action is executed only if it was decided on the current state (its stamp is not older
than the first publication of that state); without actions the frames are republished every
``idle_republish_s`` with a new stamp, so a veto never stalls the loop.
"""

from __future__ import annotations

import json

from geometry_msgs.msg import PoseArray
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from safevla_core.config import load_config
from safevla_core.env import SafetyChoresEnv
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA
from safevla_ros import conversions as conv
from safevla_ros.msg import DiscreteAction, WorldStateStamped
from safevla_ros.params import SimNodeConfig, declare_dataclass
from safevla_ros.qos import COMMAND_QOS, LATCHED_QOS, MARKER_QOS, SENSOR_QOS, STATE_QOS, Topics
from safevla_ros.spin import spin_node
from safevla_ros.srv import ResetEpisode


class SimNode(Node):
    """Runs one Safety-CHORES environment and exchanges it with ROS topics."""

    def __init__(self, **node_kwargs) -> None:
        """Declare parameters, build the environment, start the first episode.

        Args:
            **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``).
        """
        super().__init__("safevla_sim_node", **node_kwargs)
        self.cfg: SimNodeConfig = declare_dataclass(self, SimNodeConfig)
        self.env: SafetyChoresEnv | None = None
        self.obs: dict | None = None
        self.episode = 0
        pub = self.create_publisher
        self.pubs = {
            "nav": pub(Image, Topics.NAV_IMAGE, SENSOR_QOS),
            "manip": pub(Image, Topics.MANIP_IMAGE, SENSOR_QOS),
            "world": pub(WorldStateStamped, Topics.WORLD_STATE, STATE_QOS),
            "odom": pub(Odometry, Topics.ODOM, STATE_QOS),
            "path": pub(Path, Topics.PATH, STATE_QOS),
            "objects": pub(MarkerArray, Topics.OBJECT_MARKERS, MARKER_QOS),
            "costs": pub(MarkerArray, Topics.COST_MARKERS, MARKER_QOS),
            "instruction": pub(String, Topics.INSTRUCTION, LATCHED_QOS),
            "targets": pub(String, Topics.EPISODE_TARGETS, LATCHED_QOS),
            "reachable": pub(PoseArray, Topics.REACHABLE, LATCHED_QOS),
            "summary": pub(String, Topics.EPISODE_SUMMARY, LATCHED_QOS),
        }
        self.create_subscription(DiscreteAction, Topics.APPROVED_ACTION, self._on_action,
                                 COMMAND_QOS)
        self.create_service(ResetEpisode, Topics.RESET_EPISODE_SRV, self._on_reset)
        self.create_timer(self.cfg.idle_republish_s / 2, self._idle_tick)
        self._start(self.cfg.task, self.cfg.split, self.cfg.house_index, self.cfg.seed,
                    self.cfg.target_type)

    # -- episodes --------------------------------------------------------------------------
    def _make_env(self, task: str, split: str) -> SafetyChoresEnv:
        if self.env is not None and (self.env.cfg.task.name, self.env.split) == (task, split):
            return self.env
        if self.env is not None:
            self.env.close()
        core = load_config(self.cfg.config_file or None,
                           {"task": {"name": task, "max_steps_eval": self.cfg.max_steps}})
        self.env = SafetyChoresEnv(core, split, eval_mode=True,
                                   image_size=(self.cfg.image_width, self.cfg.image_height))
        return self.env

    def _start(self, task: str, split: str, house_index: int, seed: int, target: str) -> str:
        env = self._make_env(task, split)
        options = {"house_index": house_index if house_index >= 0 else None,
                   "target_type": target or None}
        self.obs, info = env.reset(seed=seed if seed >= 0 else None, options=options)
        self.disturbed: set[str] = set()
        self.path = Path()
        self.path.header.frame_id = self.cfg.map_frame
        self.cost_markers = MarkerArray()
        stamp = self.get_clock().now().to_msg()
        self.pubs["targets"].publish(String(data=conv.ids_to_json(env.spec_.target_ids)))
        self.pubs["reachable"].publish(conv.reachable_to_pose_array(
            env.backend.reachable_positions(), stamp, self.cfg.map_frame))
        self.pubs["instruction"].publish(String(data=info["instruction"]))
        self.get_logger().info(f"episode {self.episode}: {info['instruction']!r} in "
                               f"{info['house_id']}")
        self._publish_state(stamp, new_state=True)
        return info["instruction"]

    def _on_reset(self, request, response):
        try:
            response.instruction = self._start(request.task or self.env.cfg.task.name,
                                               request.house_split or self.env.split,
                                               request.house_index, request.seed,
                                               request.target_type)
            response.success, response.message = True, ""
        except (ValueError, KeyError, FileNotFoundError) as exc:
            response.success, response.message = False, f"reset failed: {exc}"
            self.get_logger().error(response.message)
        return response

    # -- actions ---------------------------------------------------------------------------
    def _on_action(self, msg: DiscreteAction) -> None:
        try:
            action = conv.msg_to_action(msg)
        except ValueError as exc:
            self.get_logger().error(f"dropped action: {exc}")
            return
        if not msg.approved:
            self.get_logger().error(f"dropped unapproved action {action.name}")
            return
        if conv.stamp_to_s(msg.header.stamp) < self.state_since_s - 1e-6:
            return  # decided on an older state: the policy will act on the current one
        self.obs, _r, _c, terminated, truncated, info = self.env.step(action)
        self._mark_costs(info["cost_breakdown"])
        self._publish_state(self.get_clock().now().to_msg(), new_state=True)
        if terminated or truncated:
            self._end_episode(info["episode"])

    def _mark_costs(self, breakdown: dict) -> None:
        self.disturbed.update(breakdown["disturbed_ids"])
        if breakdown["total"] or breakdown["components_sum"]:
            ws = self.env.world_state
            self.cost_markers.markers.append(conv.cost_event_marker(
                breakdown["total"], breakdown["description"], ws.robot_pose, ws.step,
                self.get_clock().now().to_msg(), self.cfg.map_frame))
            self.pubs["costs"].publish(self.cost_markers)

    def _end_episode(self, summary: dict) -> None:
        summary = {"episode": self.episode, **summary}
        self.pubs["summary"].publish(String(data=json.dumps(summary)))
        self.get_logger().info(f"episode {self.episode} finished: {summary}")
        self.episode += 1
        if self.cfg.auto_reset:
            seed = self.cfg.seed + self.episode if self.cfg.seed >= 0 else -1
            self._start(self.env.cfg.task.name, self.env.split, -1, seed, self.cfg.target_type)
        else:
            self.obs = None

    # -- publishing ------------------------------------------------------------------------
    def _publish_state(self, stamp, new_state: bool) -> None:
        if self.obs is None:
            return
        if new_state:
            self.state_since_s = conv.stamp_to_s(stamp)
        self.last_publish_s = conv.stamp_to_s(stamp)
        ws = self.env.world_state
        self.pubs["world"].publish(conv.world_state_to_msg(ws, stamp, self.cfg.map_frame))
        self.pubs["nav"].publish(conv.rgb_to_image(self.obs[NAV_CAMERA], stamp,
                                                   self.cfg.nav_camera_frame))
        self.pubs["manip"].publish(conv.rgb_to_image(self.obs[MANIP_CAMERA], stamp,
                                                     self.cfg.manip_camera_frame))
        self.pubs["odom"].publish(conv.pose_to_odometry(ws.robot_pose, stamp, self.cfg.map_frame,
                                                        self.cfg.base_frame))
        if new_state:
            self.path.header.stamp = stamp
            self.path.poses.append(conv.pose_stamped(ws.robot_pose, stamp, self.cfg.map_frame))
            self.pubs["path"].publish(self.path)
            self.pubs["objects"].publish(conv.object_markers(ws, self.disturbed, stamp,
                                                             self.cfg.map_frame))

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


def main(args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C."""
    spin_node(SimNode, args)


if __name__ == "__main__":
    main()
