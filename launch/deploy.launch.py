"""Deploy a trained policy: policy -> safety monitor (shield) -> simulator or the real Stretch.

    ros2 launch safevla_ros deploy.launch.py checkpoint:=/path/to/ckpt.pt robot:=sim task:=objnav
    ros2 launch safevla_ros deploy.launch.py checkpoint:=... robot:=stretch \
        instruction:="go to the mug"

robot:=sim starts the embedded simulator (it publishes the cameras, the world state and the task's
instruction; the policy reads its object-in-hand flag from the world state); robot:=stretch starts
the Stretch bridge, remaps the cameras to the robot's head and gripper cameras and the driver's
topics (/scan, /stretch/joint_states, /is_runstopped, /mode, /stretch/cmd_vel), reads the
object-in-hand flag from a std_msgs/Bool on `in_hand` (remap it with in_hand_topic:=...) and runs
the monitor in hardware mode (laser scan swept footprint, joint states, runstop; the learned
per-action cost as a second opinion; the head camera's depth image when depth_topic:= names it,
e.g. /camera/depth/image_rect_raw, with the depth.* pose in config/safety_monitor.yaml set to the
head camera's optical frame at the deploy head pose: docs/ros.md). String arguments are passed
as strings (ParameterValue with value_type=str), so instruction:="task: bring the mug" and
instruction:=yes arrive verbatim.
Declarative on purpose: test/ros/test_nodes_integration.py starts the same executables with the
same parameter files where `ros2 launch` is not available.
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "safevla_ros"
STRETCH_CAMERAS = [
    ("nav_camera/image_raw", "/camera/color/image_raw"),
    ("manip_camera/image_raw", "/gripper_camera/color/image_rect_raw"),
]
#: The Stretch driver's interfaces live in the root namespace (REFERENCE.md).
STRETCH_DRIVER = [
    ("scan", "/scan"),
    ("stretch/joint_states", "/stretch/joint_states"),
    ("is_runstopped", "/is_runstopped"),
    ("mode", "/mode"),
    ("stretch/cmd_vel", "/stretch/cmd_vel"),
]


def _config(name: str) -> PathJoinSubstitution:
    return PathJoinSubstitution([FindPackageShare(PACKAGE), "config", name])


def _string(name: str) -> ParameterValue:
    """A launch argument passed to a node as a string parameter, never YAML-parsed."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def generate_launch_description() -> LaunchDescription:
    """Policy, monitor and (by `robot`) the simulator or the Stretch bridge."""
    robot = LaunchConfiguration("robot")
    is_sim = PythonExpression(["'", robot, "' == 'sim'"])
    # Strings stay strings: without value_type=str launch parses an argument as YAML
    # (instruction:="task: bring the mug" aborts, instruction:=yes becomes True).
    policy_params = [
        _config("policy_node.yaml"),
        {
            "checkpoint": _string("checkpoint"),
            "instruction": _string("instruction"),
            "task": _string("task"),
        },
    ]
    robot_policy_params = [*policy_params, {"in_hand_source": "topic"}]
    robot_remaps = [*STRETCH_CAMERAS, ("in_hand", LaunchConfiguration("in_hand_topic"))]
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="training checkpoint (.pt); default: the shipped "
                "SafeVLA policy of the task (checkpoints/<task>/safevla.pt)",
            ),
            DeclareLaunchArgument("robot", default_value="sim", choices=["sim", "stretch"]),
            DeclareLaunchArgument(
                "task", default_value="objnav", choices=["objnav", "pickup", "fetch"]
            ),
            DeclareLaunchArgument(
                "instruction",
                default_value="",
                description="instruction for the robot (sim: from the task)",
            ),
            DeclareLaunchArgument(
                "depth_topic",
                default_value="",
                description="robot: depth image topic for the shield (16UC1 or 32FC1), e.g. "
                "/camera/depth/image_rect_raw; empty: laser only",
            ),
            DeclareLaunchArgument(
                "in_hand_topic",
                default_value="in_hand",
                description="robot: std_msgs/Bool topic saying an object is held",
            ),
            Node(
                package=PACKAGE,
                executable="safevla_policy_node",
                name="safevla_policy_node",
                parameters=policy_params,
                condition=IfCondition(is_sim),
                output="screen",
            ),
            Node(
                package=PACKAGE,
                executable="safevla_policy_node",
                name="safevla_policy_node",
                parameters=robot_policy_params,
                remappings=robot_remaps,
                condition=UnlessCondition(is_sim),
                output="screen",
            ),
            Node(
                package=PACKAGE,
                executable="safevla_safety_monitor",
                name="safevla_safety_monitor",
                parameters=[_config("safety_monitor.yaml"), {"mode": "sim"}],
                condition=IfCondition(is_sim),
                output="screen",
            ),
            Node(
                package=PACKAGE,
                executable="safevla_safety_monitor",
                name="safevla_safety_monitor",
                parameters=[
                    _config("safety_monitor.yaml"),
                    {"mode": "hardware"},
                    {"watchdog.scan_timeout_s": 0.5, "watchdog.depth_timeout_s": 0.5},
                    {"depth_topic": _string("depth_topic")},
                ],
                remappings=[*STRETCH_CAMERAS, *STRETCH_DRIVER],
                condition=UnlessCondition(is_sim),
                output="screen",
            ),
            Node(
                package=PACKAGE,
                executable="safevla_sim_node",
                name="safevla_sim_node",
                parameters=[_config("sim_node.yaml"), {"task": _string("task")}],
                condition=IfCondition(is_sim),
                output="screen",
            ),
            Node(
                package=PACKAGE,
                executable="safevla_stretch_bridge",
                name="safevla_stretch_bridge",
                parameters=[_config("stretch_bridge.yaml")],
                remappings=[*STRETCH_CAMERAS, *STRETCH_DRIVER],
                condition=UnlessCondition(is_sim),
                output="screen",
            ),
        ]
    )
