"""Trainer node: runs the core PPO-Lagrangian loop and publishes its progress.

After each training iteration :func:`safevla_core.rl.train.train` calls back with the metrics and
the latest vector-env observation; the node publishes a ``TrainingStatus`` and, for inspection,
both cameras of training environment 0 (``training/nav_camera/image_raw``,
``training/manip_camera/image_raw``). Training runs in the main thread (the node has no
subscriptions, so nothing needs spinning); Ctrl-C stops it between steps, and the newest
checkpoint in ``train.out_dir`` lets the next start resume (``resume`` parameter).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image

from safevla_core.config import Config, load_config, parse_dotted
from safevla_core.sim.backend import MANIP_CAMERA, NAV_CAMERA
from safevla_ros import conversions as conv
from safevla_ros.msg import TrainingStatus
from safevla_ros.params import TrainerNodeConfig, declare_dataclass
from safevla_ros.qos import SENSOR_QOS, STATUS_HISTORY_QOS, Topics


class TrainerNode(Node):
    """Publishes the status and cameras of a training run."""

    def __init__(self, **node_kwargs) -> None:
        """Declare parameters and resolve the training config.

        Args:
            **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``).

        Raises:
            ValueError: On an invalid parameter, override or training config.
            FileNotFoundError: If ``config_file`` does not exist.
        """
        super().__init__("safevla_trainer_node", **node_kwargs)
        self.cfg: TrainerNodeConfig = declare_dataclass(self, TrainerNodeConfig)
        items = [s.strip() for s in self.cfg.overrides.split(",") if s.strip()]
        self.core: Config = load_config(self.cfg.config_file or None, parse_dotted(items))
        self.status_pub = self.create_publisher(
            TrainingStatus, Topics.TRAINING_STATUS, STATUS_HISTORY_QOS
        )
        self.nav_pub = self.create_publisher(Image, Topics.TRAINING_NAV_IMAGE, SENSOR_QOS)
        self.manip_pub = self.create_publisher(Image, Topics.TRAINING_MANIP_IMAGE, SENSOR_QOS)

    def on_iteration(self, metrics: dict[str, float], obs: dict[str, Any]) -> None:
        """Train-loop callback: publish the status and environment 0's cameras.

        Args:
            metrics: The iteration's metrics (``safevla_core.rl.train`` keys).
            obs: The vector env's observation; ``"nav_rgb"`` / ``"manip_rgb"`` are
                ``(num_envs, H, W, 3)`` uint8 (anything else is skipped).
        """
        stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(conv.training_status_to_msg(metrics, stamp))
        for key, pub, frame in (
            (NAV_CAMERA, self.nav_pub, self.cfg.camera_frame),
            (MANIP_CAMERA, self.manip_pub, self.cfg.manip_camera_frame),
        ):
            frames = np.asarray(obs.get(key)) if key in obs else None
            if frames is not None and frames.ndim == 4 and frames.dtype == np.uint8:
                pub.publish(conv.rgb_to_image(frames[0], stamp, frame))

    def run(self) -> None:
        """Train until the configured budget is spent."""
        from safevla_core.rl.train import train

        self.get_logger().info(
            f"training {self.core.train.method} on {self.core.task.name} "
            f"into {self.core.train.out_dir}"
        )
        result = train(
            self.core, resume=self.cfg.resume, progress=False, callback=self.on_iteration
        )
        self.get_logger().info(
            f"training finished: {result.iterations} iterations, "
            f"{result.env_steps} env steps, checkpoints in {result.run_dir}"
        )


def main(args: list[str] | None = None) -> None:
    """Run the training until done or Ctrl-C."""
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = TrainerNode()
        node.run()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, FileNotFoundError) as exc:  # bad config or corrupt checkpoint (a
        # CheckpointError is a ValueError): report, exit 1
        if node is not None:
            node.get_logger().error(f"training failed: {exc}")
        else:
            print(f"safevla_trainer_node: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
