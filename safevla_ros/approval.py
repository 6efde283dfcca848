"""Who may command the robot: executors accept approved actions only from the safety monitor.

Any process on the ROS graph can publish on ``safety/approved_action``. An executor (the simulator
node, the Stretch bridge) therefore checks the publisher of every approved action: the message
info of an rclpy subscription callback carries the publisher's GID (rclpy >= Jazzy:
``MessageInfo["publisher_gid"]``), and the graph (``Node.get_publishers_info_by_topic``) says
which node owns each publisher GID. Only publishers of the node named
:data:`MONITOR_NODE_NAME` in the executor's own namespace are accepted; any other publisher on the
topic is warned about. Without a publisher GID in the message info (Humble), an action is accepted
only while the monitor is the topic's sole publisher.

This is defence against mistakes and stray processes, not against an attacker who can run code
on the robot: a hostile process can name itself ``safevla_safety_monitor``. For that, SROS2
(enclaves with access control: docs/ros.md) must restrict who may publish on the topic.
"""

from __future__ import annotations

from typing import Any

#: Node name of the safety monitor (safevla_ros.safety_monitor_node).
MONITOR_NODE_NAME = "safevla_safety_monitor"


class ApprovalGate:
    """Checks that an approved action comes from the safety monitor.

    Args:
        node: The executor node (``rclpy.node.Node``).
        topic: Resolved (absolute) name of the approved-action topic.
        monitor_node_name: Name of the node whose publishers are trusted.
    """

    def __init__(self, node: Any, topic: str, monitor_node_name: str = MONITOR_NODE_NAME) -> None:
        """Remember the node and topic; the graph is read at every check."""
        self.node = node
        self.topic = topic
        self.monitor = monitor_node_name
        self.namespace = node.get_namespace()

    def _publishers(self) -> tuple[list[bytes], list[str]]:
        trusted: list[bytes] = []
        others: list[str] = []
        for info in self.node.get_publishers_info_by_topic(self.topic):
            ns = info.node_namespace or "/"
            if info.node_name == self.monitor and ns == (self.namespace or "/"):
                trusted.append(bytes(info.endpoint_gid))
            else:
                others.append(f"{ns.rstrip('/')}/{info.node_name}")
        return trusted, others

    def check(self, msg_info: Any) -> tuple[bool, str]:
        """Whether a message with this message info may be executed.

        Args:
            msg_info: The ``MessageInfo`` mapping rclpy passes to two-argument callbacks.

        Returns:
            ``(ok, reason)``; the reason names the offending publisher(s) when not ok.
        """
        trusted, others = self._publishers()
        gid = None
        if isinstance(msg_info, dict) and isinstance(msg_info.get("publisher_gid"), dict):
            gid = msg_info["publisher_gid"].get("data")
        if gid is None:
            if trusted and not others:
                return True, ""
            return False, (
                "no publisher GID in the message info and the topic has publishers "
                f"other than {self.monitor}: {others or 'none'}"
            )
        if bytes(gid) in trusted:
            return True, ""
        return False, (
            f"publisher is not {self.monitor} in {self.namespace}; publishers on the "
            f"topic besides it: {others or 'none'}"
        )

    def foreign_publishers(self) -> list[str]:
        """Publishers on the topic that are not the safety monitor (to warn about)."""
        return self._publishers()[1]
