"""``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``) for the monitor and the bridge.

One ``DiagnosticStatus`` per node, at the node's check rate: level OK with "ok", or ERROR with the
list of problems (stale inputs, runstop, ...), and key/value counters (rejected inputs, decisions).
``rqt_robot_monitor`` and ``diagnostic_aggregator`` read it. When ``diagnostic_msgs`` is not
installed the publisher says so once and does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from safevla_ros.qos import STATE_QOS, Topics


class DiagnosticsPublisher:
    """Publishes one node's status on ``/diagnostics``.

    Args:
        node: The ``rclpy.node.Node``.
        name: Status name (``"safevla: safety monitor"``).
    """

    def __init__(self, node: Any, name: str) -> None:
        """Create the publisher if ``diagnostic_msgs`` is installed."""
        self.node, self.name = node, name
        try:
            from diagnostic_msgs.msg import DiagnosticArray
        except ImportError:
            node.get_logger().warning("diagnostic_msgs not installed: no /diagnostics")
            self.pub = None
            return
        self.pub = node.create_publisher(DiagnosticArray, Topics.DIAGNOSTICS, STATE_QOS)

    def publish(self, problems: Sequence[str], values: Mapping[str, object]) -> None:
        """Publish the status: OK if ``problems`` is empty, else ERROR listing them."""
        if self.pub is None:
            return
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        status = DiagnosticStatus(
            level=DiagnosticStatus.ERROR if problems else DiagnosticStatus.OK,
            name=self.name,
            hardware_id=self.node.get_fully_qualified_name(),
            message="; ".join(problems)[:500] if problems else "ok",
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
