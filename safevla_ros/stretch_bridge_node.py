"""Stretch bridge node: approved actions -> the Stretch driver (stretch_core), one at a time.

Plans each approved action with :func:`safevla_core.stretch_commands.command_for` and executes it
step-synchronously: one action at a time, reported on ``executor/status`` (``ActionStatus``: BUSY
when it starts, then DONE, FAILED, CANCELLED or REJECTED with the reason and the finish time).
An approval that arrives while an action runs is rejected, never queued or substituted, so
actions cannot pile up; the policy proposes its next action only after the report.

Execution: the driver mode the command needs (``navigation`` for twists, ``position`` for
trajectory goals) is requested through ``switch_to_<mode>_mode`` and awaited: the command starts
only once the driver's ``mode`` topic confirms it (the driver drops twists in the wrong mode).
Base twists go to ``stretch/cmd_vel`` at ``twist_rate_hz`` for the planned duration, then one zero
twist. Trajectory goals (lift, arm, wrist, gripper, and the base in ``base_mode: position``,
the default: closed loop) go to the FollowJointTrajectory action; the goal handle is kept, its
result awaited, and the goal cancelled when needed. ``control_msgs`` (the action type) is absent
on PyPI-only installs: trajectory commands are then rejected (logged, reported), never faked.

Fail closed: an approval is executed only if its publisher is the safety monitor
(:class:`safevla_ros.approval.ApprovalGate`), it is approved, fresh (``max_action_age_s``, not from
the future), the runstop state is fresh and off, and both cameras are live. A running action is
cancelled (zero twist, goal cancel) when the runstop engages or goes stale, a camera goes silent,
the monitor reports stale inputs, the mode switch is not confirmed in time, or a goal overruns.
Every planned or ignored action is also reported as JSON on ``stretch_bridge/commands``
(:func:`safevla_ros.conversions.command_report`); the status goes to ``/diagnostics``.
"""

from __future__ import annotations

import json

from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String

from safevla_core.shield import Watchdog
from safevla_core.stretch_commands import (
    StretchCommand,
    StretchJoints,
    command_for,
    joints_from_joint_state,
)
from safevla_ros import conversions as conv
from safevla_ros.approval import ApprovalGate
from safevla_ros.diagnostics import DiagnosticsPublisher
from safevla_ros.msg import ActionStatus, DiscreteAction
from safevla_ros.params import BridgeNodeConfig, declare_dataclass
from safevla_ros.qos import COMMAND_QOS, STATE_QOS, Topics, image_qos
from safevla_ros.spin import spin_node

#: Log/report note when the FollowJointTrajectory action type is not installed.
NO_CONTROL_MSGS = "control_msgs is not installed: joint-trajectory goals cannot be sent"


class _Running:
    """The action being executed: its message, plan and progress."""

    def __init__(self, msg: DiscreteAction, cmd: StretchCommand, started_s: float) -> None:
        self.msg, self.cmd, self.started_s = msg, cmd, started_s
        self.phase = "switching"  # -> "twist" | "goal" (sending) | "goal_active"
        self.twists_left = 0
        self.goal_handle = None
        self.deadline_s = float("inf")


class StretchBridgeNode(Node):
    """Sends approved actions to the Stretch driver, one at a time."""

    def __init__(self, **node_kwargs) -> None:
        """Declare parameters, create the driver interfaces that are installed.

        Args:
            **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``).
        """
        super().__init__("safevla_stretch_bridge", **node_kwargs)
        self.cfg: BridgeNodeConfig = declare_dataclass(self, BridgeNodeConfig)
        self.joints: StretchJoints | None = None
        self.driver_mode: str | None = None
        self.runstopped = True  # until the driver says otherwise
        self.running: _Running | None = None
        self._warned: dict[str, float] = {}
        self.counts = {"done": 0, "failed": 0, "cancelled": 0, "rejected": 0}
        self.watchdog = Watchdog(
            {
                "nav_camera": self.cfg.camera_timeout_s,
                "manip_camera": self.cfg.camera_timeout_s,
                "runstop": self.cfg.runstop_timeout_s,
            }
        )
        self.cmd_vel = self.create_publisher(Twist, Topics.STRETCH_CMD_VEL, COMMAND_QOS)
        self.report_pub = self.create_publisher(String, Topics.BRIDGE_COMMANDS, STATE_QOS)
        self.status_pub = self.create_publisher(ActionStatus, Topics.ACTION_STATUS, STATE_QOS)
        self.diagnostics = DiagnosticsPublisher(self, "safevla: stretch bridge")
        sub = self.create_subscription(
            DiscreteAction, Topics.APPROVED_ACTION, self._on_action, COMMAND_QOS
        )
        self.gate = ApprovalGate(self, sub.topic_name)
        self.create_subscription(DiscreteAction, Topics.DECISIONS, self._on_decision, STATE_QOS)
        self.create_subscription(
            JointState, Topics.STRETCH_JOINT_STATES, self._on_joints, STATE_QOS
        )
        self.create_subscription(Bool, Topics.STRETCH_RUNSTOP, self._on_runstop, STATE_QOS)
        self.create_subscription(String, Topics.STRETCH_MODE, self._on_mode, STATE_QOS)
        iq = image_qos(self.cfg.image_reliability)
        for name, topic in (("nav_camera", Topics.NAV_IMAGE), ("manip_camera", Topics.MANIP_IMAGE)):
            self.create_subscription(
                Image, topic, lambda _m, n=name: self._feed(n), iq, raw=True
            )  # arrival only: no deserialisation
        self.create_timer(1.0 / self.cfg.commands.twist_rate_hz, self._twist_tick)
        self.create_timer(1.0 / self.cfg.check_rate_hz, self._check)
        self.trajectory_client = self._make_action_client()
        self.mode_clients = self._make_mode_clients()

    def _make_action_client(self):
        try:
            from control_msgs.action import FollowJointTrajectory
            from rclpy.action import ActionClient
        except ImportError:
            self.get_logger().warning(NO_CONTROL_MSGS)
            return None
        return ActionClient(self, FollowJointTrajectory, self.cfg.trajectory_action)

    def _make_mode_clients(self) -> dict:
        try:
            from std_srvs.srv import Trigger
        except ImportError:
            self.get_logger().warning(
                "std_srvs is not installed: driver mode switches impossible; every motion will fail"
            )
            return {}
        return {
            mode: self.create_client(Trigger, f"switch_to_{mode}_mode")
            for mode in ("navigation", "position")
        }

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- inputs ----------------------------------------------------------------------------
    def _feed(self, name: str) -> None:
        self.watchdog.feed(name, self._now_s())

    def _on_joints(self, msg: JointState) -> None:
        try:
            self.joints = joints_from_joint_state(list(msg.name), list(msg.position))
        except (KeyError, ValueError) as exc:
            self.joints = None  # doubtful state: arm actions do nothing
            self.get_logger().warning(f"joint state unusable: {exc}", throttle_duration_sec=5.0)

    def _on_runstop(self, msg: Bool) -> None:
        self.runstopped = bool(msg.data)
        self._feed("runstop")
        if self.runstopped:
            self._cancel("runstop engaged")

    def _on_mode(self, msg: String) -> None:
        self.driver_mode = msg.data
        r = self.running
        if r is not None and r.phase == "switching" and msg.data == r.cmd.mode:
            self._begin(r)

    def _on_decision(self, msg: DiscreteAction) -> None:
        if not msg.approved and msg.verdict.startswith("stale_input"):
            self._cancel(f"monitor reports stale inputs: {msg.verdict[:200]}")

    def _blocked(self) -> str:
        """Why nothing may run now ("" if all is well)."""
        stale = self.watchdog.stale(self._now_s())
        if stale:
            return "; ".join(f"{k}: {v}" for k, v in stale.items())
        return "runstop engaged" if self.runstopped else ""

    def _on_action(self, msg: DiscreteAction, info) -> None:
        name = msg.name[:32] or str(msg.action)
        ok, why = self.gate.check(info)
        if not ok:
            return self._reject(msg, name, f"unauthenticated: {why}")
        if not msg.approved:
            return self._reject(msg, name, "not approved")
        try:
            conv.msg_to_action(msg)
            t = conv.checked_stamp_s(msg.header.stamp)
        except ValueError as exc:
            return self._reject(msg, name, f"bad action: {exc}")
        age_s = self._now_s() - t
        if not -self.cfg.clock_jump_tolerance_s <= age_s <= self.cfg.max_action_age_s:
            return self._reject(
                msg,
                name,
                f"stale: stamped {age_s:.2f} s ago (accepted "
                f"-{self.cfg.clock_jump_tolerance_s:.2f}.."
                f"{self.cfg.max_action_age_s:.2f} s)",
            )
        if self.running is not None:
            return self._reject(msg, name, f"busy executing {self.running.cmd.action.name}")
        blocked = self._blocked()
        if blocked:
            return self._reject(msg, name, blocked)
        cmd = command_for(int(msg.action), self.joints, self.cfg.commands)
        if cmd.is_noop:
            self.get_logger().info(f"{cmd.action.name}: {cmd.note}")
            self._report(conv.command_report(cmd))
            return self._status(msg, ActionStatus.DONE, cmd.note or "nothing to do")
        if cmd.trajectory is not None and (
            self.trajectory_client is None or conv.trajectory_msg(cmd.trajectory) is None
        ):
            self.get_logger().warning(
                f"{cmd.action.name}: {NO_CONTROL_MSGS}; would send {cmd.trajectory}",
                throttle_duration_sec=5.0,
            )
            self._report(conv.command_report(cmd, sent=False, note=NO_CONTROL_MSGS))
            return self._status(msg, ActionStatus.REJECTED, NO_CONTROL_MSGS)
        self.running = _Running(msg, cmd, self._now_s())
        self._status(msg, ActionStatus.BUSY, f"switching to {cmd.mode} mode")
        if self.driver_mode == cmd.mode:
            self._begin(self.running)
        else:
            self._request_mode(cmd.mode)

    # -- execution -------------------------------------------------------------------------
    def _request_mode(self, mode: str) -> None:
        client = self.mode_clients.get(mode)
        if client is None or not client.service_is_ready():
            return self._finish(
                ActionStatus.FAILED,
                f"service switch_to_{mode}_mode not available (is the driver running?)",
            )
        from std_srvs.srv import Trigger

        future = client.call_async(Trigger.Request())
        future.add_done_callback(lambda f: self._on_mode_reply(f, mode))

    def _on_mode_reply(self, future, mode: str) -> None:
        r = self.running
        if r is None or r.phase != "switching":
            return
        try:
            res = future.result()
        except Exception as exc:  # noqa: BLE001 - a failed call is a failed switch
            return self._finish(ActionStatus.FAILED, f"switch_to_{mode}_mode failed: {exc}")
        if res is None or not res.success:
            why = res.message if res is not None else "no reply"
            return self._finish(ActionStatus.FAILED, f"switch_to_{mode}_mode refused: {why}")
        # Success of the call is not enough: wait for the driver's mode topic (_on_mode).

    def _begin(self, r: _Running) -> None:
        cmd = r.cmd
        if cmd.twist is not None:
            r.phase = "twist"
            self._twist = conv.twist_msg(cmd.twist)
            r.twists_left = cmd.twist.num_messages(self.cfg.commands.twist_rate_hz)
            self._report(conv.command_report(cmd, messages=r.twists_left))
            self._twist_tick()  # the first twist now, the rest on the timer
            return
        from control_msgs.action import FollowJointTrajectory

        r.phase = "goal"
        if not self.trajectory_client.server_is_ready():
            why = f"action server {self.cfg.trajectory_action} not ready"
            self._report(conv.command_report(cmd, sent=False, note=why))
            return self._finish(ActionStatus.FAILED, why)
        goal = FollowJointTrajectory.Goal(trajectory=conv.trajectory_msg(cmd.trajectory))
        r.deadline_s = self._now_s() + cmd.trajectory.duration_s + self.cfg.goal_timeout_margin_s
        future = self.trajectory_client.send_goal_async(goal)
        future.add_done_callback(lambda f, run=r: self._on_goal_accepted(f, run))
        self._report(conv.command_report(cmd, sent=True))

    def _on_goal_accepted(self, future, r: _Running) -> None:
        try:
            handle = future.result()
        except Exception as exc:  # noqa: BLE001
            handle, why = None, str(exc)
        else:
            why = "goal rejected by the driver"
        if self.running is not r:  # cancelled meanwhile: cancel the goal that got through
            if handle is not None and handle.accepted:
                handle.cancel_goal_async()
            return
        if handle is None or not handle.accepted:
            return self._finish(ActionStatus.FAILED, why)
        r.goal_handle, r.phase = handle, "goal_active"
        handle.get_result_async().add_done_callback(lambda f, run=r: self._on_goal_result(f, run))

    def _on_goal_result(self, future, r: _Running) -> None:
        if self.running is not r:
            return
        try:
            res = future.result()
            code = res.result.error_code
            ok = res.status == 4 and code == 0  # GoalStatus.STATUS_SUCCEEDED, SUCCESSFUL
            why = "" if ok else f"status {res.status}, error code {code} {res.result.error_string}"
        except Exception as exc:  # noqa: BLE001
            ok, why = False, str(exc)
        self._finish(ActionStatus.DONE if ok else ActionStatus.FAILED, why or "goal reached")

    def _twist_tick(self) -> None:
        r = self.running
        if r is None or r.phase != "twist":
            return
        if r.twists_left > 0:
            self.cmd_vel.publish(self._twist)
            r.twists_left -= 1
        else:
            self.cmd_vel.publish(Twist())  # zero twist: the move is over
            t = r.cmd.twist
            self._finish(
                ActionStatus.DONE,
                f"twist ({t.linear_x_mps:.3f} m/s, "
                f"{t.angular_z_radps:.3f} rad/s) for "
                f"{t.duration_s:.2f} s",
            )

    def _check(self) -> None:
        blocked = self._blocked()
        r = self.running
        if r is not None:
            now = self._now_s()
            if blocked:
                self._cancel(blocked)
            elif r.phase == "switching" and now - r.started_s > self.cfg.mode_switch_timeout_s:
                self._cancel(
                    f"driver did not confirm {r.cmd.mode} mode within "
                    f"{self.cfg.mode_switch_timeout_s:.1f} s (mode topic says "
                    f"{self.driver_mode!r})"
                )
            elif r.phase.startswith("goal") and now > r.deadline_s:
                self._cancel("trajectory goal overran its planned duration")
        self.diagnostics.publish(
            [blocked] if blocked else [],
            {
                "driver_mode": self.driver_mode,
                "running": r.cmd.action.name if r else "",
                **self.counts,
            },
        )

    def _cancel(self, why: str) -> None:
        """Stop whatever runs now (zero twist, goal cancel) and report it CANCELLED."""
        r = self.running
        if r is None:
            return
        if r.phase == "twist":
            self.cmd_vel.publish(Twist())
        if r.goal_handle is not None:
            r.goal_handle.cancel_goal_async()
        self.get_logger().warning(f"cancelled {r.cmd.action.name}: {why}")
        self._finish(ActionStatus.CANCELLED, why)

    def _finish(self, state: int, detail: str) -> None:
        r, self.running = self.running, None
        if r is not None:
            self._status(r.msg, state, detail)

    # -- outputs ---------------------------------------------------------------------------
    def _status(self, msg: DiscreteAction, state: int, detail: str) -> None:
        key = {
            ActionStatus.DONE: "done",
            ActionStatus.FAILED: "failed",
            ActionStatus.CANCELLED: "cancelled",
            ActionStatus.REJECTED: "rejected",
        }.get(state)
        if key:
            self.counts[key] += 1
        try:
            out = conv.action_status_msg(
                int(msg.action),
                msg.header.stamp,
                state,
                self.get_clock().now().to_msg(),
                detail,
                "stretch_bridge",
            )
        except ValueError:
            return
        self.status_pub.publish(out)

    def _report(self, report: dict) -> None:
        self.report_pub.publish(String(data=json.dumps(report)))

    def _reject(self, msg: DiscreteAction, name: str, why: str) -> None:
        kind = why.split(":", 1)[0][:40]  # log at most once a second per kind of reason
        now = self._now_s()
        if abs(now - self._warned.get(kind, -1e18)) >= 1.0:
            self._warned[kind] = now
            self.get_logger().warning(f"rejected action {name}: {why}")
        self._report({"action": name, "status": "ignored", "note": why})
        self._status(msg, ActionStatus.REJECTED, why)


def main(args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C."""
    spin_node(StretchBridgeNode, args)


if __name__ == "__main__":
    main()
