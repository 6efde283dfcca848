"""Node parameters <-> frozen core dataclasses.

Each node has one frozen, validated settings dataclass below; :func:`declare_dataclass` declares
one ROS parameter per field (nested dataclasses become dotted names, ``shield.max_predicted_cost``,
which is how a nested map under ``ros__parameters`` in a YAML file reaches them) and builds the
dataclass back from the values with :func:`safevla_core.config.from_dict`, so YAML keys, parameter
names and dataclass fields are one and the same. ``str | None`` fields use ``""`` for ``None``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from safevla_core.config import CostConfig, from_dict
from safevla_core.shield import ShieldLimits, WatchdogConfig
from safevla_core.stretch_commands import StretchCommandConfig


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{type(obj).__name__}.{name} must be positive, got {v!r}")


#: Values of ``PolicyNodeConfig.in_hand_source``.
IN_HAND_WORLD_STATE = "world_state"
IN_HAND_TOPIC = "topic"
IN_HAND_NONE = "none"
IN_HAND_SOURCES = (IN_HAND_WORLD_STATE, IN_HAND_TOPIC, IN_HAND_NONE)


@dataclass(frozen=True)
class PolicyNodeConfig:
    """Policy node settings.

    Attributes:
        checkpoint: Path of the training checkpoint to act with.
        instruction: Instruction to start with (on the robot); ``""`` waits for the
            ``instruction`` topic (the simulator publishes its task's instruction there).
        control_rate_hz: Rate of the control loop, Hz (ours: 5 Hz, SPOC-like step rate).
        pair_tolerance_s: Nav and manip images pair if their stamps differ by at most this, s.
        max_image_age_s: Images older than this at the control tick are not acted on, s.
        deterministic: Greedy (argmax) actions instead of sampling.
        seed: Sampling seed.
        torch_threads: ``torch.set_num_threads`` (1: one core, ENVIRONMENT.md).
        in_hand_source: Where the policy's object-in-hand input (REFERENCE.md, Policy) comes
            from: ``"world_state"`` (simulator: ``held_object_id`` of ``sim/world_state``),
            ``"topic"`` (hardware: a ``std_msgs/Bool`` on ``in_hand``, e.g. from a grasp
            detector) or ``"none"`` (always False). Until a first message arrives it is False.
    """

    checkpoint: str = ""
    instruction: str = ""
    control_rate_hz: float = 5.0
    pair_tolerance_s: float = 0.05
    max_image_age_s: float = 1.0
    deterministic: bool = True
    seed: int = 0
    torch_threads: int = 1
    in_hand_source: str = IN_HAND_WORLD_STATE

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a non-positive rate, tolerance or age, or an unknown in-hand source.
        """
        _positive(self, "control_rate_hz", "pair_tolerance_s", "max_image_age_s", "torch_threads")
        if self.in_hand_source not in IN_HAND_SOURCES:
            raise ValueError(f"in_hand_source must be one of {IN_HAND_SOURCES}, "
                             f"got {self.in_hand_source!r}")


@dataclass(frozen=True)
class MonitorNodeConfig:
    """Safety monitor settings.

    Attributes:
        mode: ``"sim"`` (world states and the cost functions) or ``"hardware"`` (the policy's
            predicted cost and the runstop; no world state).
        frame_id: Frame of the cost reports.
        check_rate_hz: Rate of the watchdog check that reports stale inputs, Hz.
        shield: Limits of the shield decision.
        watchdog: Input freshness limits.
        costs: Cost thresholds for the cost report (sim mode).
    """

    mode: str = "sim"
    frame_id: str = "map"
    check_rate_hz: float = 5.0
    shield: ShieldLimits = field(default_factory=ShieldLimits)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    costs: CostConfig = field(default_factory=CostConfig)

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on an unknown mode or a non-positive rate."""
        if self.mode not in ("sim", "hardware"):
            raise ValueError(f"mode must be 'sim' or 'hardware', got {self.mode!r}")
        _positive(self, "check_rate_hz")


@dataclass(frozen=True)
class SimNodeConfig:
    """Simulator node settings.

    Attributes:
        config_file: Core YAML (``safevla_core.config.load_config``) for the house, sim and cost
            settings; ``""`` uses the defaults.
        task: Task of the episodes (``objnav``, ``pickup``, ``fetch``).
        split: House split.
        house_index: House of the first episode; ``-1`` samples one.
        seed: Seed of the first episode (later episodes use seed + n).
        target_type: Target category; ``""`` samples one.
        max_steps: Episode step limit (REFERENCE.md: 600 in evaluation).
        image_width: Rendered width, pixels.
        image_height: Rendered height, pixels.
        idle_republish_s: Re-render and republish the cameras if no action arrived for this
            long (a veto must not stall the loop), seconds.
        auto_reset: Start the next episode when one ends.
        map_frame: Fixed frame of poses and markers.
        base_frame: Robot base frame (odometry child frame).
        nav_camera_frame: Frame id of the navigation camera images.
        manip_camera_frame: Frame id of the manipulation camera images.
    """

    config_file: str = ""
    task: str = "objnav"
    split: str = "train"
    house_index: int = -1
    seed: int = 0
    target_type: str = ""
    max_steps: int = 600
    image_width: int = 160
    image_height: int = 96
    idle_republish_s: float = 1.0
    auto_reset: bool = True
    map_frame: str = "map"
    base_frame: str = "base_link"
    nav_camera_frame: str = "nav_camera"
    manip_camera_frame: str = "manip_camera"

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on non-positive sizes or limits."""
        _positive(self, "max_steps", "image_width", "image_height", "idle_republish_s")


@dataclass(frozen=True)
class BridgeNodeConfig:
    """Stretch bridge settings.

    Attributes:
        commands: How actions become driver commands.
        max_action_age_s: An approved action whose stamp is older than this is ignored, s.
        clock_jump_tolerance_s: An approved action stamped further than this in the future
            (the clock jumped) is ignored, s (ours: the monitor's ``clock_jump_tolerance_s``).
        trajectory_action: Name of the driver's FollowJointTrajectory action.
    """

    commands: StretchCommandConfig = field(default_factory=StretchCommandConfig)
    max_action_age_s: float = 1.0
    clock_jump_tolerance_s: float = 0.5
    trajectory_action: str = "stretch_controller/follow_joint_trajectory"

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on a non-positive age or tolerance."""
        _positive(self, "max_action_age_s", "clock_jump_tolerance_s")


@dataclass(frozen=True)
class TrainerNodeConfig:
    """Trainer node settings.

    Attributes:
        config_file: Core training YAML; ``""`` uses the defaults.
        overrides: Dotted overrides (``"train.num_envs=1,train.total_env_steps=64"``).
        resume: Continue from the newest checkpoint in ``train.out_dir`` if there is one (a
            finished run then ends at once); False starts afresh in that folder.
        camera_frame: Frame id of the published training navigation camera.
        manip_camera_frame: Frame id of the published training manipulation camera.
    """

    config_file: str = ""
    overrides: str = ""
    resume: bool = True
    camera_frame: str = "nav_camera"
    manip_camera_frame: str = "manip_camera"


# -- ROS parameters -------------------------------------------------------------------------
def flatten_defaults(cls: type, prefix: str = "") -> dict[str, Any]:
    """Dotted parameter name -> default value of a (nested) settings dataclass.

    ``None`` defaults become ``""``; tuples are not supported as parameters.

    Raises:
        TypeError: On a field type that is not bool, int, float, str or a dataclass.
    """
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    base = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        value = getattr(base, f.name)
        name = prefix + f.name
        if dataclasses.is_dataclass(tp):
            out.update(flatten_defaults(tp, name + "."))
        elif value is None or isinstance(value, bool | int | float | str):
            out[name] = "" if value is None else value
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported parameter type {tp}")
    return out


def unflatten(values: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def build_config(cls: type, values: dict[str, Any]) -> Any:
    """Build a settings dataclass from dotted parameter values.

    ``""`` becomes ``None`` for fields that admit ``None``.

    Raises:
        ValueError: On an unknown key or an invalid value.
    """
    hints = typing.get_type_hints(cls)
    cleaned = dict(values)
    for f in dataclasses.fields(cls):
        if cleaned.get(f.name) == "" and type(None) in typing.get_args(hints[f.name]):
            cleaned[f.name] = None
    return from_dict(cls, unflatten(cleaned))


def declare_dataclass(node: Any, cls: type) -> Any:
    """Declare one ROS parameter per field of ``cls`` and build it from their values.

    Parameters are declared with dynamic typing so that ``5`` in a YAML file may set a float.

    Args:
        node: The ``rclpy.node.Node``.
        cls: The settings dataclass.

    Returns:
        The validated settings instance.

    Raises:
        ValueError: On an invalid value (the node should log it and stop).
    """
    from rcl_interfaces.msg import ParameterDescriptor

    desc = ParameterDescriptor(dynamic_typing=True)
    defaults = flatten_defaults(cls)
    for name, default in defaults.items():
        node.declare_parameter(name, default, desc)
    values = {name: node.get_parameter(name).value for name in defaults}
    return build_config(cls, values)


@dataclass(frozen=True)
class RecorderNodeConfig:
    """Episode recorder settings.

    Attributes:
        output_dir: rosbag2 folder to create (must not exist yet).
        topics: Comma-separated topic names to record; ``""`` records every safevla_ros topic.
    """

    output_dir: str = "runs/bags/safevla"
    topics: str = ""
