"""Named QoS profiles of every safevla_ros topic (STYLE.md rule 7: no bare depths).

Each profile says what the data is and why it is delivered that way. On ROS 2 a best-effort
subscription matches reliable and best-effort publishers; a transient-local subscription matches
only transient-local publishers.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

#: Small sensor streams (laser scans, the monitor's arrival-only checks): the newest sample
#: matters, a lost one does not (ROS 2 sensor-data profile: best effort, keep last 5, volatile).
#: A best-effort subscription matches reliable and best-effort publishers.
SENSOR_QOS: QoSProfile = qos_profile_sensor_data

#: Camera images, the default: reliable, keep last 1, volatile. Measured on this machine
#: (ENVIRONMENT.md): best-effort rgb8 frames above ~0.4 MB (640x480 and up: every Stretch camera)
#: were not delivered at all over Fast DDS on loopback (a lost UDP fragment loses the whole
#: sample); reliable delivery repairs fragments, and keep-last-1 means a slow subscriber gets the
#: newest frame instead of a queue (the writer never blocks on KEEP_LAST). Needs a reliable
#: publisher (realsense2_camera's default; our simulator). For a best-effort camera driver set the
#: node parameter ``image_reliability: best_effort`` (then large frames need shared memory or a
#: larger socket buffer: docs/ros.md).
IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: Camera images from a best-effort driver (``image_reliability: best_effort``): keep last 1.
IMAGE_BEST_EFFORT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)


def image_qos(reliability: str) -> QoSProfile:
    """The camera subscription profile for an ``image_reliability`` parameter value."""
    return IMAGE_BEST_EFFORT_QOS if reliability == "best_effort" else IMAGE_QOS


#: Instruction, episode target ids, reachable grid: few messages that late joiners must receive
#: (latched: reliable, transient local, keep last 1).
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: Proposed and approved actions: every command must arrive, but only the newest may be acted
#: on, so nothing queues behind a slow subscriber (reliable, keep last 1).
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: World states, cost reports, odometry, training status: consecutive messages are paired
#: (cost of step t needs state t-1 and t), so keep a short reliable queue (reliable, keep last 20).
STATE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=20,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: Training status: one message per PPO iteration (minutes apart at paper scale); a dashboard,
#: recorder or test that joins late still gets the recent history (reliable, transient local,
#: keep last 100). Volatile subscribers (e.g. the recorder) match it too.
STATUS_HISTORY_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: rviz markers: rviz subscribes reliable/volatile by default (reliable, keep last 5).
MARKER_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: Recording: a best-effort volatile subscription matches every volatile publisher, so the
#: recorder never blocks a publisher (best effort, keep last 50).
RECORD_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)


class Topics:
    """Relative topic and service names (remap them, or push the nodes into a namespace)."""

    NAV_IMAGE = "nav_camera/image_raw"
    MANIP_IMAGE = "manip_camera/image_raw"
    INSTRUCTION = "instruction"
    PROPOSED_ACTION = "policy/proposed_action"
    APPROVED_ACTION = "safety/approved_action"
    DECISIONS = "safety/decisions"
    COST = "safety/cost"
    WORLD_STATE = "sim/world_state"
    REACHABLE = "sim/reachable_positions"
    EPISODE_TARGETS = "sim/episode_targets"
    EPISODE_SUMMARY = "sim/episode_summary"
    ODOM = "odom"
    PATH = "robot_path"
    OBJECT_MARKERS = "sim/object_markers"
    COST_MARKERS = "sim/cost_markers"
    TRAINING_STATUS = "training/status"
    TRAINING_NAV_IMAGE = "training/nav_camera/image_raw"
    TRAINING_MANIP_IMAGE = "training/manip_camera/image_raw"
    STRETCH_CMD_VEL = "stretch/cmd_vel"
    STRETCH_JOINT_STATES = "stretch/joint_states"
    STRETCH_RUNSTOP = "is_runstopped"
    STRETCH_MODE = "mode"
    SCAN = "scan"
    NAV_CAMERA_INFO = "nav_camera/camera_info"
    NAV_DEPTH = "nav_camera/depth/image_raw"  # REP-118 32FC1, the simulator's depth twin
    NAV_DEPTH_INFO = "nav_camera/depth/camera_info"
    MANIP_CAMERA_INFO = "manip_camera/camera_info"
    ACTION_STATUS = "executor/status"
    DIAGNOSTICS = "/diagnostics"  # absolute by convention (diagnostic_aggregator reads it)
    TF = "/tf"
    TF_STATIC = "/tf_static"
    IN_HAND = "in_hand"
    BRIDGE_COMMANDS = "stretch_bridge/commands"
    RESET_EPISODE_SRV = "sim/reset_episode"
    POLICY_RESET_SRV = "policy/reset"
