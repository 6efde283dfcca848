"""The one ``main`` every long-running node shares: init, spin until Ctrl-C, clean up."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def spin_node(factory: Callable[[], Node], args: list[str] | None = None) -> None:
    """Create a node, spin it until Ctrl-C or shutdown, then release it.

    ``rclpy.spin`` raises ``ExternalShutdownException`` on Ctrl-C under a signal handler
    (ENVIRONMENT.md); both it and ``KeyboardInterrupt`` end the node quietly. A node with a
    ``close()`` method (the recorder's bag, the simulator's environment) has it called first.

    Args:
        factory: Builds the node (after ``rclpy.init``).
        args: Command-line arguments (``--ros-args ...``); default ``sys.argv``.
    """
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.try_shutdown()
