"""Train in the embedded simulator and watch it: trainer + simulator + safety monitor.

    ros2 launch safevla_ros sim_train.launch.py train_config:=config/train_objnav.yaml \
        overrides:="train.num_envs=2,train.total_env_steps=4096" resume:=true

The trainer publishes training/status and the cameras of training environment 0; the simulator
and the monitor run one inspection episode loop beside it (rviz: config/safevla.rviz).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "safevla_ros"


def _config(name: str) -> PathJoinSubstitution:
    return PathJoinSubstitution([FindPackageShare(PACKAGE), "config", name])


def generate_launch_description() -> LaunchDescription:
    """Trainer, simulator and monitor with their parameter files."""
    return LaunchDescription([
        DeclareLaunchArgument("train_config", default_value="",
                              description="core training YAML (safevla_core.config)"),
        DeclareLaunchArgument("overrides", default_value="",
                              description="comma-separated section.key=value overrides"),
        DeclareLaunchArgument("task", default_value="objnav",
                              choices=["objnav", "pickup", "fetch"]),
        DeclareLaunchArgument("resume", default_value="true", choices=["true", "false"],
                              description="continue from the newest checkpoint in train.out_dir"),
        Node(package=PACKAGE, executable="safevla_trainer_node", name="safevla_trainer_node",
             parameters=[_config("trainer_node.yaml"),
                         {"config_file": LaunchConfiguration("train_config"),
                          "overrides": LaunchConfiguration("overrides"),
                          "resume": LaunchConfiguration("resume")}],
             output="screen"),
        Node(package=PACKAGE, executable="safevla_sim_node", name="safevla_sim_node",
             parameters=[_config("sim_node.yaml"), {"task": LaunchConfiguration("task")}],
             output="screen"),
        Node(package=PACKAGE, executable="safevla_safety_monitor", name="safevla_safety_monitor",
             parameters=[_config("safety_monitor.yaml")], output="screen"),
    ])
