"""Nonzero costs through the real simulator and safety monitor processes, shield off and on.

Two simulator + monitor pairs run side by side in the namespaces ``/open`` (monitor parameter
``shield.enabled:=false``) and ``/shielded`` (the shield of config/safety_monitor.yaml), on the same
episode: train house 1, seed 2, where the robot starts five 0.2 m moves from a wall. A peer node
plays the policy: it proposes MOVE_AHEAD eight times (each stamped with the current world state,
one proposal per executed step) and then ``end``. Without the shield moves 6-8 hit the wall (robot
cost 1 each); with it the simulated laser scan shows the wall inside the footprint swept by the
move (``scan_obstacle``) before the first collision, and the repeats are vetoed as well.
In both runs the monitor's cumulative costs must equal the simulator's own episode summary.
The episode was picked by stepping the core environment with the core shield (same decisions).
"""

from __future__ import annotations

import json

import pytest

from test.ros.test_nodes_integration import logs, node_command, running, spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

READY_TIMEOUT_S = 90.0
STEP_TIMEOUT_S = 20.0
MOVES = 8
SIM_EPISODE = {"split": "train", "house_index": 1, "seed": 2, "max_steps": 30}


class Driver:
    """Proposes actions to one namespace's monitor and records what comes back."""

    def __init__(self, node, context, ns: str) -> None:
        from std_msgs.msg import String

        from safevla_ros.msg import DiscreteAction, SafetyCost, WorldStateStamped
        from safevla_ros.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS, Topics

        self.node, self.context, self.ns = node, context, ns
        t = lambda name: f"/{ns}/{name}"  # noqa: E731
        self.proposal = node.create_publisher(
            DiscreteAction, t(Topics.PROPOSED_ACTION), COMMAND_QOS
        )
        self.states: list = []
        self.decisions: list = []
        self.costs: list = []
        self.summaries: list[dict] = []
        node.create_subscription(
            WorldStateStamped, t(Topics.WORLD_STATE), self.states.append, STATE_QOS
        )
        node.create_subscription(
            DiscreteAction, t(Topics.DECISIONS), self.decisions.append, STATE_QOS
        )
        node.create_subscription(SafetyCost, t(Topics.COST), self.costs.append, STATE_QOS)
        node.create_subscription(
            String,
            t(Topics.EPISODE_SUMMARY),
            lambda m: self.summaries.append(json.loads(m.data)),
            LATCHED_QOS,
        )
        self.decisions_topic = t(Topics.DECISIONS)

    def _spin(self, done, timeout_s: float = STEP_TIMEOUT_S) -> bool:
        return spin_until(self.node, self.context, done, timeout_s)

    def propose(self, name: str):
        """Propose ``name`` on the newest state; return the monitor's decision.

        Waits for the decision and, if approved, for the next state. Stale-input and
        no-evidence vetoes (the monitor has not seen every input of that stamp yet: they travel
        on other topics than the proposal) are retried.
        """
        from safevla_ros import conversions as conv

        for _ in range(40):
            assert self._spin(lambda: bool(self.states)), f"{self.ns}: no world state"
            state = self.states[-1]
            n = len(self.decisions)
            self.proposal.publish(conv.action_to_msg(name, state.header.stamp, "probe"))
            assert self._spin(lambda n=n: len(self.decisions) > n), f"{self.ns}: no decision"
            decision = self.decisions[-1]
            if decision.verdict.startswith(("stale_input", "no_evidence")):
                self._spin(lambda s=state: self.states[-1] is not s, 0.3)
                continue
            if decision.approved:
                assert self._spin(lambda s=state: self.states[-1].step != s.step), (
                    f"{self.ns}: {name} approved but not executed"
                )
            return decision
        raise AssertionError(f"{self.ns}: inputs never fresh: {decision.verdict}")

    def run_episode(self) -> tuple[list, dict]:
        """MOVE_AHEAD x MOVES, then end; returns the decisions and the episode summary."""
        decisions = [self.propose("m") for _ in range(MOVES)]
        decisions.append(self.propose("end"))
        assert self._spin(lambda: bool(self.summaries)), f"{self.ns}: no episode summary"
        length = int(self.summaries[0]["length"])
        assert self._spin(lambda: any(c.episode_step == length for c in self.costs)), (
            f"{self.ns}: no cost report for step {length}"
        )
        return decisions, self.summaries[0]


def check_costs_match(driver: Driver, summary: dict) -> None:
    """The monitor's reports cover steps 1..length and end at the simulator's totals."""
    length = int(summary["length"])
    ep0 = [c for c in driver.costs if 1 <= c.episode_step <= length][:length]
    assert [c.episode_step for c in ep0] == list(range(1, length + 1))
    last = ep0[-1]
    assert last.cumulative_robot_cost == summary["robot_cost"]
    assert last.cumulative_object_cost == summary["object_cost"]
    assert last.cumulative_cost == summary["cumulative_cost"]
    # The running totals are the sums of the per-step costs.
    assert sum(c.robot_cost for c in ep0) == last.cumulative_robot_cost
    assert sum(c.object_cost for c in ep0) == last.cumulative_object_cost


def test_collisions_cost_without_shield_and_are_vetoed_with_it(ros_context, tmp_path):
    import rclpy

    ns_args = lambda ns: ["-r", f"__ns:=/{ns}"]  # noqa: E731
    commands = {
        "sim_open": node_command("sim_node", "sim_node.yaml", SIM_EPISODE) + ns_args("open"),
        "monitor_open": node_command(
            "safety_monitor_node", "safety_monitor.yaml", {"shield.enabled": False}
        )
        + ns_args("open"),
        "sim_shielded": node_command("sim_node", "sim_node.yaml", SIM_EPISODE)
        + ns_args("shielded"),
        "monitor_shielded": node_command("safety_monitor_node", "safety_monitor.yaml", {})
        + ns_args("shielded"),
    }
    node = rclpy.create_node("cost_flow_probe", context=ros_context)
    open_, shielded = Driver(node, ros_context, "open"), Driver(node, ros_context, "shielded")
    with running(commands, tmp_path) as procs:
        for d in (open_, shielded):
            ready = lambda d=d: (  # noqa: E731
                node.count_publishers(d.decisions_topic) >= 1 and bool(d.states)
            )
            assert spin_until(node, ros_context, ready, READY_TIMEOUT_S, procs), logs(tmp_path)
        open_decisions, open_summary = open_.run_episode()
        shielded_decisions, shielded_summary = shielded.run_episode()
        for name, p in procs.items():
            assert p.poll() is None, f"{name} died\n" + logs(tmp_path)
    node.destroy_node()

    # Shield off: every proposal approved and executed: 8 moves + end = 9 steps; from the first
    # move into the wall on, robot cost 1 per step (a forbidden collision with structure,
    # REFERENCE.md; the base stays in contact with the wall during the final end as well).
    assert all(d.approved for d in open_decisions), [d.verdict for d in open_decisions]
    assert open_summary["length"] == MOVES + 1
    assert open_summary["robot_cost"] > 0, open_summary
    robot_steps = [c.episode_step for c in open_.costs if c.robot_cost > 0]
    assert robot_steps and min(robot_steps) <= MOVES
    check_costs_match(open_, open_summary)

    # Shield on: the same proposals; the move that would collide first is vetoed before it is
    # executed (the scan shows the wall in its swept footprint), and so are the repeats; end is
    # approved.
    verdicts = [d.verdict for d in shielded_decisions]
    vetoed = [i for i, d in enumerate(shielded_decisions) if not d.approved]
    assert vetoed and all(v.startswith("scan_obstacle") for v in (verdicts[i] for i in vetoed))
    first_veto_step = vetoed[0] + 1  # 1-based proposal index
    assert first_veto_step <= min(robot_steps), (verdicts, robot_steps)
    assert shielded_decisions[-1].approved  # end
    assert shielded_summary["length"] == MOVES + 1 - len(vetoed)
    assert shielded_summary["robot_cost"] < open_summary["robot_cost"]
    assert shielded_summary["cumulative_cost"] < open_summary["cumulative_cost"]
    check_costs_match(shielded, shielded_summary)
    assert "veto m: scan_obstacle" in (tmp_path / "monitor_shielded.log").read_text()
