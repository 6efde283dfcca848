"""Node parameters <-> frozen core dataclasses.

Each node has one frozen, validated settings dataclass below; :func:`declare_dataclass` declares
one ROS parameter per field (nested dataclasses become dotted names, ``shield.max_predicted_cost``,
which is how a nested map under ``ros__parameters`` in a YAML file reaches them) and builds the
dataclass back from the values with :func:`safevla_core.config.from_dict`, so YAML keys, parameter
names and dataclass fields are one and the same. ``str | None`` fields use ``""`` for ``None``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from safevla_core.config import TASKS, CostConfig, from_dict
from safevla_core.shield import LASER_POSE_IN_BASE, DepthCamera, ShieldLimits, WatchdogConfig
from safevla_core.stretch_commands import StretchCommandConfig


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{type(obj).__name__}.{name} must be positive, got {v!r}")


#: Values of the ``image_reliability`` parameters (QoS of the camera subscriptions).
IMAGE_RELIABILITIES = ("reliable", "best_effort")

#: Values of ``PolicyNodeConfig.in_hand_source``.
IN_HAND_WORLD_STATE = "world_state"
IN_HAND_TOPIC = "topic"
IN_HAND_NONE = "none"
IN_HAND_SOURCES = (IN_HAND_WORLD_STATE, IN_HAND_TOPIC, IN_HAND_NONE)


@dataclass(frozen=True)
class PolicyNodeConfig:
    """Policy node settings.

    Attributes:
        checkpoint: Path of the training checkpoint to act with; ``""`` = the shipped policy
            of ``task`` (``checkpoints/<task>/safevla.pt``, else ``il.pt``).
        task: Task whose shipped policy an empty ``checkpoint`` selects.
        instruction: Instruction to start with (on the robot); ``""`` waits for the
            ``instruction`` topic (the simulator publishes its task's instruction there).
        control_rate_hz: Rate of the control loop, Hz (ours: 5 Hz, SPOC-like step rate).
        pair_tolerance_s: Nav and manip images pair if their stamps differ by at most this, s.
        max_image_age_s: Images older than this at the control tick are not acted on, s.
        deterministic: Greedy (argmax) actions instead of sampling.
        temperature: When sampling, draw from ``softmax(logits / temperature)``
            (:func:`safevla_core.agent.choose_action`; 1 = the policy's own distribution).
        seed: Sampling seed.
        torch_threads: ``torch.set_num_threads`` (1: one core, ENVIRONMENT.md).
        in_hand_source: Where the policy's object-in-hand input (REFERENCE.md, Policy) comes
            from: ``"world_state"`` (simulator: ``held_object_id`` of ``sim/world_state``),
            ``"topic"`` (hardware: a ``std_msgs/Bool`` on ``in_hand``, e.g. from a grasp
            detector) or ``"none"`` (always False). Until a first message arrives it is False.
        step_synchronous: Propose the next action only after the executor reported the
            previous one finished (``executor/status``) or the monitor vetoed it, and camera
            frames stamped after that arrived.
        step_timeout_s: Stop waiting for that report after this, seconds (warned; the monitor
            still judges the next proposal).
        image_reliability: QoS reliability of the camera subscriptions (``"reliable"``:
            large frames arrive, needs a reliable publisher; ``"best_effort"``).
        image_transport: ``"raw"`` (``sensor_msgs/Image``) or ``"compressed"``
            (``sensor_msgs/CompressedImage`` on ``<camera>/image_raw/compressed``, decoded with
            OpenCV, which must then be installed).
    """

    checkpoint: str = ""
    task: str = "objnav"
    instruction: str = ""
    control_rate_hz: float = 5.0
    pair_tolerance_s: float = 0.05
    max_image_age_s: float = 1.0
    deterministic: bool = True
    temperature: float = 1.0
    seed: int = 0
    torch_threads: int = 1
    in_hand_source: str = IN_HAND_WORLD_STATE
    step_synchronous: bool = True
    step_timeout_s: float = 10.0
    image_reliability: str = "reliable"
    image_transport: str = "raw"

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On a non-positive rate, tolerance, age or temperature, or an unknown
                in-hand source, reliability or transport.
        """
        _positive(
            self,
            "control_rate_hz",
            "pair_tolerance_s",
            "max_image_age_s",
            "torch_threads",
            "step_timeout_s",
            "temperature",
        )
        if self.image_reliability not in IMAGE_RELIABILITIES:
            raise ValueError(f"image_reliability must be one of {IMAGE_RELIABILITIES}")
        if self.image_transport not in ("raw", "compressed"):
            raise ValueError(
                f"image_transport must be 'raw' or 'compressed', got {self.image_transport!r}"
            )
        if self.in_hand_source not in IN_HAND_SOURCES:
            raise ValueError(
                f"in_hand_source must be one of {IN_HAND_SOURCES}, got {self.in_hand_source!r}"
            )
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")


@dataclass(frozen=True)
class MonitorNodeConfig:
    """Safety monitor settings.

    Attributes:
        mode: ``"sim"`` (world states, the simulated scan and the cost functions) or
            ``"hardware"`` (the robot's laser scan, joint states and runstop; no world state).
        frame_id: Frame of the cost reports.
        check_rate_hz: Rate of the watchdog check and the diagnostics, Hz.
        image_reliability: QoS reliability of the camera subscriptions: ``"reliable"`` (large
            frames arrive; needs a reliable publisher) or ``"best_effort"`` (matches any).
        stamp_tolerance_s: A camera frame matches a proposal if their stamps differ by at most
            this, seconds (the policy pairs nav and manip frames within its pair tolerance).
        laser_x_m: Laser frame position in base_link, x, metres (URDF joint_laser: 0.004).
        laser_y_m: Laser frame position in base_link, y, metres (URDF joint_laser: 0).
        laser_yaw_rad: Laser frame yaw in base_link, radians (URDF joint_laser: 3.1416).
        depth_topic: Depth image topic (``sensor_msgs/Image``, 32FC1 metres or 16UC1
            millimetres, REP-118), e.g. the simulator's ``nav_camera/depth/image_raw`` or a
            RealSense's ``/camera/depth/image_rect_raw``; ``""``: no depth camera, laser only.
            When set, a missing, stale or unreadable depth image vetoes every motion.
        depth_info_topic: Its ``sensor_msgs/CameraInfo`` topic; ``""``: ``camera_info`` beside
            the image topic.
        depth: Pose of the depth camera's optical frame in base_link and pixel sampling.
        shield: Limits of the shield decision.
        watchdog: Input freshness limits.
        costs: Cost thresholds for the cost report (sim mode).
    """

    mode: str = "sim"
    frame_id: str = "map"
    check_rate_hz: float = 5.0
    image_reliability: str = "reliable"
    stamp_tolerance_s: float = 0.05
    laser_x_m: float = LASER_POSE_IN_BASE[0]
    laser_y_m: float = LASER_POSE_IN_BASE[1]
    laser_yaw_rad: float = LASER_POSE_IN_BASE[2]
    depth_topic: str = ""
    depth_info_topic: str = ""
    depth: DepthCamera = field(default_factory=DepthCamera)
    shield: ShieldLimits = field(default_factory=ShieldLimits)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    costs: CostConfig = field(default_factory=CostConfig)

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            ValueError: On an unknown mode or reliability, a non-positive rate, a negative
                tolerance or a non-finite laser pose.
        """
        if self.mode not in ("sim", "hardware"):
            raise ValueError(f"mode must be 'sim' or 'hardware', got {self.mode!r}")
        if self.image_reliability not in IMAGE_RELIABILITIES:
            raise ValueError(
                f"image_reliability must be one of {IMAGE_RELIABILITIES}, got "
                f"{self.image_reliability!r}"
            )
        _positive(self, "check_rate_hz")
        if not (math.isfinite(self.stamp_tolerance_s) and self.stamp_tolerance_s >= 0):
            raise ValueError(f"stamp_tolerance_s must be >= 0, got {self.stamp_tolerance_s!r}")
        for name in ("laser_x_m", "laser_y_m", "laser_yaw_rad"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")

    @property
    def depth_camera_info_topic(self) -> str:
        """The depth camera_info topic (``camera_info`` beside the image topic by default)."""
        if self.depth_info_topic or not self.depth_topic:
            return self.depth_info_topic
        head, _, _ = self.depth_topic.rpartition("/")
        return f"{head}/camera_info" if head else "camera_info"

    @property
    def laser_pose(self) -> tuple[float, float, float]:
        """``(x_m, y_m, yaw_rad)`` of the laser frame in base_link."""
        return (self.laser_x_m, self.laser_y_m, self.laser_yaw_rad)


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
        odom_frame: Odometry frame (REP-105; ``map`` -> ``odom`` is the identity here).
        base_frame: Robot base frame (odometry child frame).
        laser_frame: Frame id of the simulated laser scan.
        nav_camera_frame: Frame id of the navigation camera images (and of its depth image:
            the same optical frame).
        manip_camera_frame: Frame id of the manipulation camera images.
        depth_width: Width of the navigation camera's depth image (MuJoCo ray casts,
            :func:`safevla_core.sim.laser.cast_depth`), pixels; 0 publishes no depth image.
        depth_height: Its height, pixels (0 with ``depth_width`` 0).
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
    odom_frame: str = "odom"
    base_frame: str = "base_link"
    laser_frame: str = "laser"
    nav_camera_frame: str = "nav_camera"
    manip_camera_frame: str = "manip_camera"
    depth_width: int = 80
    depth_height: int = 48

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on non-positive sizes or limits."""
        _positive(self, "max_steps", "image_width", "image_height", "idle_republish_s")
        if (self.depth_width == 0) != (self.depth_height == 0) or min(
            self.depth_width, self.depth_height
        ) < 0:
            raise ValueError(
                "depth_width and depth_height must both be positive, or both 0 (no depth image)"
            )


@dataclass(frozen=True)
class BridgeNodeConfig:
    """Stretch bridge settings.

    Attributes:
        commands: How actions become driver commands.
        max_action_age_s: An approved action whose stamp is older than this is ignored, s.
        clock_jump_tolerance_s: An approved action stamped further than this in the future
            (the clock jumped) is ignored, s (ours: the monitor's ``clock_jump_tolerance_s``).
        trajectory_action: Name of the driver's FollowJointTrajectory action.
        camera_timeout_s: A running action is cancelled when either camera was silent for
            longer, s (ours: the monitor's camera timeout on the robot).
        runstop_timeout_s: Nothing is executed, and a running action is cancelled, when the
            driver's runstop state is older than this, s.
        mode_switch_timeout_s: An action fails when the driver did not confirm the mode switch
            on its ``mode`` topic within this, s.
        goal_timeout_margin_s: A trajectory goal that has not finished this long after its
            planned duration is cancelled, s.
        image_reliability: QoS reliability of the camera arrival watch (``"reliable"`` /
            ``"best_effort"``, as the policy node).
        check_rate_hz: Rate of the freshness checks and diagnostics, Hz.
    """

    commands: StretchCommandConfig = field(default_factory=StretchCommandConfig)
    max_action_age_s: float = 1.0
    clock_jump_tolerance_s: float = 0.5
    trajectory_action: str = "stretch_controller/follow_joint_trajectory"
    camera_timeout_s: float = 1.0
    runstop_timeout_s: float = 1.0
    mode_switch_timeout_s: float = 3.0
    goal_timeout_margin_s: float = 5.0
    image_reliability: str = "reliable"
    check_rate_hz: float = 20.0

    def __post_init__(self) -> None:
        """Validate. Raises: ValueError on a non-positive age, timeout, tolerance or rate."""
        _positive(
            self,
            "max_action_age_s",
            "clock_jump_tolerance_s",
            "camera_timeout_s",
            "runstop_timeout_s",
            "mode_switch_timeout_s",
            "goal_timeout_margin_s",
            "check_rate_hz",
        )
        if self.image_reliability not in IMAGE_RELIABILITIES:
            raise ValueError(f"image_reliability must be one of {IMAGE_RELIABILITIES}")


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


def field_docs(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted parameter name -> its description, from the ``Attributes:`` docstring sections.

    Nested dataclasses contribute their own fields' descriptions under their prefix.
    """
    out: dict[str, str] = {}
    doc = inspect.getdoc(cls) or ""
    current = None
    in_attrs = False
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            in_attrs = True
            continue
        if not in_attrs:
            continue
        if line and not line.startswith(" "):
            break  # next section
        m = re.match(r"^    (\w+)(?: \([^)]*\))?: ?(.*)$", line)
        if m:
            current = prefix + m.group(1)
            out[current] = m.group(2).strip()
        elif current and line.strip():
            out[current] += " " + line.strip()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(field_docs(hints[f.name], prefix + f.name + "."))
    return out


#: Parameter ranges declared in the descriptors (rclpy refuses values outside them), by name
#: suffix; the settings dataclasses validate the rest. Ours: generous bounds of sane values.
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "check_rate_hz": (0.1, 100.0),
    "control_rate_hz": (0.1, 100.0),
    "camera_timeout_s": (0.01, 60.0),
    "proposal_timeout_s": (0.01, 60.0),
    "max_proposal_age_s": (0.01, 60.0),
    "world_state_timeout_s": (0.01, 60.0),
    "scan_timeout_s": (0.01, 60.0),
    "runstop_timeout_s": (0.01, 60.0),
    "joint_state_timeout_s": (0.01, 60.0),
    "depth_timeout_s": (0.01, 60.0),
    "max_invalid_depth_fraction": (0.0, 1.0),
    "clock_jump_tolerance_s": (0.001, 60.0),
    "sweep_margin_m": (0.0, 1.0),
    "sweep_margin_rad": (0.0, 1.0),
    "max_action_cost": (0.0, 5.0),
    "max_invalid_scan_fraction": (0.0, 1.0),
    "hazard_margin_m": (0.0, 2.0),
    "robot_radius_m": (0.0, 2.0),
    "reachable_tolerance_m": (0.0, 5.0),
    "stamp_tolerance_s": (0.0, 1.0),
}


def _type_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p or (p.endswith(".") and name.startswith(p)) for p in patterns)


def declare_dataclass(
    node: Any,
    cls: type,
    live: tuple[str, ...] = (),
    on_change: Callable[[Any], None] | None = None,
    fixed: tuple[str, ...] = (),
) -> Any:
    """Declare one ROS parameter per field of ``cls`` and build it from their values.

    Every parameter gets a descriptor with its description (from the dataclass docstring) and,
    for the names in :data:`PARAM_RANGES`, a floating-point range. Parameters named in ``live``
    (exact names, or prefixes ending in ``"."``) can be changed at run time: a validating
    callback rebuilds the settings with the new values, refuses a wrong type or any value the
    dataclass rejects with the reason, and passes the new settings to ``on_change``. All other
    parameters are read-only (a change could not take effect). Parameters are declared with
    dynamic typing so that ``5`` in a YAML file may set a float; the callback checks types.

    Args:
        node: The ``rclpy.node.Node``.
        cls: The settings dataclass.
        live: Names of the parameters that may change at run time.
        on_change: Called with the new settings after an accepted change.
        fixed: Names excluded from ``live`` (read-only although a prefix matches).

    Returns:
        The validated settings instance.

    Raises:
        ValueError: On an invalid value at start-up (the node should log it and stop).
    """
    from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult

    defaults = flatten_defaults(cls)
    docs = field_docs(cls)
    for name, default in defaults.items():
        desc = ParameterDescriptor(
            name=name,
            description=docs.get(name, ""),
            dynamic_typing=True,
            read_only=not _matches(name, live) or name in fixed,
        )
        bounds = PARAM_RANGES.get(name.rsplit(".", 1)[-1])
        if bounds is not None and isinstance(default, float):
            desc.floating_point_range = [
                FloatingPointRange(from_value=bounds[0], to_value=bounds[1], step=0.0)
            ]
        node.declare_parameter(name, default, desc)
    values = {name: node.get_parameter(name).value for name in defaults}
    for name, value in values.items():
        if not _type_ok(defaults[name], value):
            raise ValueError(
                f"parameter {name}: expected {type(defaults[name]).__name__}, got {value!r}"
            )
    cfg = build_config(cls, values)

    def validate(params: list) -> Any:
        new = {name: node.get_parameter(name).value for name in defaults}
        for p in params:
            if p.name not in defaults:
                continue  # not ours (use_sim_time, ...)
            if not _type_ok(defaults[p.name], p.value):
                return SetParametersResult(
                    successful=False,
                    reason=f"{p.name}: expected {type(defaults[p.name]).__name__}, got {p.value!r}",
                )
            new[p.name] = p.value
        try:
            built = build_config(cls, new)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if any(p.name in defaults for p in params) and on_change is not None:
            on_change(built)
            node.get_logger().info(
                "parameters changed: "
                + ", ".join(f"{p.name}={p.value!r}" for p in params if p.name in defaults)
            )
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(validate)
    return cfg


@dataclass(frozen=True)
class RecorderNodeConfig:
    """Episode recorder settings.

    Attributes:
        output_dir: rosbag2 folder to create (must not exist yet).
        topics: Comma-separated topic names to record; ``""`` records every safevla_ros topic.
        flush_period_s: The open chunk is written to disk this often, seconds (a SIGKILL loses
            at most that much).
    """

    output_dir: str = "runs/bags/safevla"
    topics: str = ""
    flush_period_s: float = 1.0
