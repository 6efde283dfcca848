"""Train in the embedded simulator and watch it: trainer + simulator + safety monitor.

    ros2 launch safevla_ros sim_train.launch.py train_config:=config/train_objnav.yaml \
        overrides:="train.num_envs=2,train.total_env_steps=4096" resume:=true

train_config may be relative to the current directory or to the installed package share.
The trainer publishes training/status and the cameras of training environment 0; the simulator
and the monitor run one inspection episode loop beside it (rviz: config/safevla.rviz).
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "safevla_ros"


def _config(name: str) -> PathJoinSubstitution:
    return PathJoinSubstitution([FindPackageShare(PACKAGE), "config", name])


def _resolve_train_config(context) -> list:
    """Make ``train_config`` independent of the working directory.

    An absolute path is kept; a relative one is taken relative to the current directory if it
    exists there, else to the installed package share (``config/train_objnav.yaml`` then works
    from anywhere). A path that exists nowhere is passed on unchanged: the trainer reports it.
    """
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import SetLaunchConfiguration

    path = LaunchConfiguration("train_config").perform(context)
    if path and not os.path.isabs(path) and not os.path.exists(path):
        shared = os.path.join(get_package_share_directory(PACKAGE), path)
        if os.path.exists(shared):
            path = shared
    elif path and not os.path.isabs(path):
        path = os.path.abspath(path)
    return [SetLaunchConfiguration("train_config", path)]


def _string(name: str) -> ParameterValue:
    """A launch argument passed as a string parameter, never YAML-parsed."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def generate_launch_description() -> LaunchDescription:
    """Trainer, simulator and monitor with their parameter files."""
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "train_config",
                default_value="",
                description="core training YAML (safevla_core.config)",
            ),
            DeclareLaunchArgument(
                "overrides",
                default_value="",
                description="comma-separated section.key=value overrides",
            ),
            DeclareLaunchArgument(
                "task", default_value="objnav", choices=["objnav", "pickup", "fetch"]
            ),
            DeclareLaunchArgument(
                "resume",
                default_value="true",
                choices=["true", "false"],
                description="continue from the newest checkpoint in train.out_dir",
            ),
            OpaqueFunction(function=_resolve_train_config),
            Node(
                package=PACKAGE,
                executable="safevla_trainer_node",
                name="safevla_trainer_node",
                parameters=[
                    _config("trainer_node.yaml"),
                    {
                        "config_file": _string("train_config"),
                        "overrides": _string("overrides"),
                        "resume": ParameterValue(LaunchConfiguration("resume"), value_type=bool),
                    },
                ],
                output="screen",
            ),
            Node(
                package=PACKAGE,
                executable="safevla_sim_node",
                name="safevla_sim_node",
                parameters=[_config("sim_node.yaml"), {"task": _string("task")}],
                output="screen",
            ),
            Node(
                package=PACKAGE,
                executable="safevla_safety_monitor",
                name="safevla_safety_monitor",
                parameters=[_config("safety_monitor.yaml")],
                output="screen",
            ),
        ]
    )
