"""Recorder node: writes the safevla_ros topics to a rosbag2 folder with MCAP storage.

Uses ``rosbags`` (pure Python; rosbag2 itself is not installable from PyPI, ENVIRONMENT.md) and
``raw=True`` subscriptions, so messages are stored exactly as serialised on the wire. The bag opens
in ``ros2 bag play`` (Humble, Jazzy, Kilted: the metadata is rewritten as version 5 on close,
:func:`safevla_ros.bag.downgrade_metadata`), Foxglove and Lichtblick. The custom safevla_ros
message definitions come from the installed ``share/safevla_ros/msg`` (ament index, then
``AMENT_PREFIX_PATH``, then the Python prefix; the source tree last), so the MCAP file carries
their schemas. The open chunk is flushed to disk every ``flush_period_s``; after a SIGKILL,
``python -m safevla_ros.bag repair BAG`` recovers everything flushed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from geometry_msgs.msg import PoseArray
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from safevla_ros.msg import DiscreteAction, SafetyCost, TrainingStatus, WorldStateStamped
from safevla_ros.params import RecorderNodeConfig, declare_dataclass
from safevla_ros.qos import LATCHED_QOS, RECORD_QOS, SENSOR_QOS, Topics
from safevla_ros.spin import spin_node

#: Recorded topics: name -> (message class, ROS type name, subscription QoS).
RECORDED = {
    Topics.NAV_IMAGE: (Image, "sensor_msgs/msg/Image", SENSOR_QOS),
    Topics.MANIP_IMAGE: (Image, "sensor_msgs/msg/Image", SENSOR_QOS),
    Topics.INSTRUCTION: (String, "std_msgs/msg/String", LATCHED_QOS),
    Topics.PROPOSED_ACTION: (DiscreteAction, "safevla_ros/msg/DiscreteAction", RECORD_QOS),
    Topics.APPROVED_ACTION: (DiscreteAction, "safevla_ros/msg/DiscreteAction", RECORD_QOS),
    Topics.DECISIONS: (DiscreteAction, "safevla_ros/msg/DiscreteAction", RECORD_QOS),
    Topics.COST: (SafetyCost, "safevla_ros/msg/SafetyCost", RECORD_QOS),
    Topics.WORLD_STATE: (WorldStateStamped, "safevla_ros/msg/WorldStateStamped", RECORD_QOS),
    Topics.EPISODE_SUMMARY: (String, "std_msgs/msg/String", LATCHED_QOS),
    Topics.REACHABLE: (PoseArray, "geometry_msgs/msg/PoseArray", LATCHED_QOS),
    Topics.ODOM: (Odometry, "nav_msgs/msg/Odometry", RECORD_QOS),
    Topics.PATH: (PathMsg, "nav_msgs/msg/Path", RECORD_QOS),
    Topics.OBJECT_MARKERS: (MarkerArray, "visualization_msgs/msg/MarkerArray", RECORD_QOS),
    Topics.COST_MARKERS: (MarkerArray, "visualization_msgs/msg/MarkerArray", RECORD_QOS),
    Topics.TRAINING_STATUS: (TrainingStatus, "safevla_ros/msg/TrainingStatus", RECORD_QOS),
}


def msg_dir() -> Path:
    """Folder of the installed safevla_ros ``.msg`` files.

    Searched in order: the ament index (``get_package_share_directory``, a colcon install),
    every prefix of ``AMENT_PREFIX_PATH``, the Python prefix (the pip venv, where
    scripts/build_msgs.sh installs them), and last the source tree.

    Raises:
        FileNotFoundError: If none holds them.
    """
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("safevla_ros")) / "msg")
    except (ImportError, LookupError, ValueError, OSError):
        pass  # not a colcon install (OSError: AMENT_PREFIX_PATH unset)
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "safevla_ros" / "msg")
    candidates += [
        Path(sys.prefix) / "share" / "safevla_ros" / "msg",
        Path(__file__).resolve().parents[1] / "msg",
    ]
    for candidate in candidates:
        if any(candidate.glob("*.msg")):
            return candidate
    raise FileNotFoundError(f"safevla_ros msg/*.msg definitions not found in {candidates}")


def make_typestore():
    """A Kilted typestore with the safevla_ros messages registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict = {}
    for f in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"safevla_ros/msg/{f.stem}"))
    store.register(types)
    return store


class RecorderNode(Node):
    """Subscribes raw to each topic and appends the bytes to an MCAP rosbag2."""

    def __init__(self, **node_kwargs) -> None:
        """Declare parameters, open the bag, subscribe.

        Args:
            **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``).
        """
        from rosbags.rosbag2 import StoragePlugin, Writer

        super().__init__("safevla_recorder", **node_kwargs)
        self.cfg: RecorderNodeConfig = declare_dataclass(self, RecorderNodeConfig)
        names = [t.strip() for t in self.cfg.topics.split(",") if t.strip()] or list(RECORDED)
        unknown = [t for t in names if t not in RECORDED]
        if unknown:
            raise ValueError(f"cannot record {unknown}: known topics are {sorted(RECORDED)}")
        store = make_typestore()
        # Version 8 keeps the QoS profiles as the string versions 4..8 use; close() rewrites
        # the metadata as version 5 (Humble).
        self.writer = Writer(
            Path(self.cfg.output_dir), version=8, storage_plugin=StoragePlugin.MCAP
        )
        self.writer.open()
        ns = self.get_namespace().rstrip("/")
        for topic in names:
            cls, type_name, qos = RECORDED[topic]
            conn = self.writer.add_connection(f"{ns}/{topic}", type_name, typestore=store)
            self.create_subscription(
                cls, topic, lambda data, c=conn: self._write(c, data), qos, raw=True
            )
        self.create_timer(self.cfg.flush_period_s, self._flush)
        self.get_logger().info(f"recording {len(names)} topics to {self.cfg.output_dir}")

    def _flush(self) -> None:
        """Write the open chunk to disk, so a SIGKILL loses at most one flush period."""
        storage = getattr(self.writer, "storage", None)  # rosbags' MCAP writer
        chunk = getattr(storage, "chunk", None)
        if chunk is not None and chunk.msgs and hasattr(storage, "close_chunk"):
            storage.close_chunk()
            bio = getattr(storage, "bio", None)
            if bio is not None:
                bio.flush()

    def _write(self, connection, data: bytes) -> None:
        self.writer.write(connection, self.get_clock().now().nanoseconds, data)

    def close(self) -> None:
        """Finish the bag: metadata.yaml (version 5) that players of every distribution read."""
        from safevla_ros.bag import downgrade_metadata

        self.writer.close()
        downgrade_metadata(self.cfg.output_dir)


def main(args: list[str] | None = None) -> None:
    """Record until Ctrl-C, then close the bag."""
    spin_node(RecorderNode, args)


if __name__ == "__main__":
    main()
