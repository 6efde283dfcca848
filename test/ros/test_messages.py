"""The generated safevla_ros interfaces: field contract, CDR round trips and range checks.

ROS packages are imported inside the tests: the ``ros`` marker makes conftest.py skip them, with
the reason, when rclpy or the generated messages (scripts/build_msgs.sh) are missing.
"""

from __future__ import annotations

import array
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]

#: safevla_ros/__init__.py turns rosidl's field checks on unless the user set the variable.
requires_field_checks = pytest.mark.skipif(
    os.environ.get("ROS_PYTHON_CHECK_FIELDS", "1") != "1",
    reason="ROS_PYTHON_CHECK_FIELDS is set to disable rosidl's field checks",
)


def _round_trip(msg):
    """Serialize to CDR bytes and back, as a publisher/subscriber pair would."""
    from rclpy.serialization import deserialize_message, serialize_message

    data = serialize_message(msg)
    assert isinstance(data, bytes) and len(data) > 0
    return deserialize_message(data, type(msg))


def _header(sec: int, nanosec: int, frame_id: str):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def test_fields_match_the_interface_contract():
    # The names and types other nodes rely on (float32 -> 'float', float64 -> 'double').
    from safevla_ros.msg import DiscreteAction, SafetyCost, TrainingStatus, WorldStateStamped
    from safevla_ros.srv import ResetEpisode

    hdr = {"header": "std_msgs/Header"}
    assert DiscreteAction.get_fields_and_field_types() == {
        **hdr,
        "action": "uint8",
        "name": "string",
        "source": "string",
        "approved": "boolean",
        "verdict": "string",
        "predicted_cost": "float",
        "action_costs": "sequence<float>",
    }
    flags = ("dangerous_equipment", "corner", "blind_spot", "fragile_collection", "critical_point")
    assert SafetyCost.get_fields_and_field_types() == {
        **hdr,
        "object_cost": "float",
        "robot_cost": "float",
        **dict.fromkeys(flags, "boolean"),
        "cumulative_cost": "float",
        "cumulative_robot_cost": "float",
        "cumulative_object_cost": "float",
        "episode_step": "uint32",
        "event": "string",
    }
    assert TrainingStatus.get_fields_and_field_types() == {
        **hdr,
        "iteration": "uint32",
        "env_steps": "uint64",
        "success_rate": "float",
        "mean_episode_cost": "float",
        "robot_cost": "float",
        "object_cost": "float",
        "lagrange_multiplier": "float",
        "cost_limit": "float",
        "mean_episode_reward": "float",
    }
    assert WorldStateStamped.get_fields_and_field_types() == {
        **hdr,
        "step": "uint32",
        "object_ids": "sequence<string>",
        "object_types": "sequence<string>",
        "object_positions": "sequence<double>",
        "object_quats": "sequence<double>",
        "robot_pose": "geometry_msgs/Pose2D",
        "lift_m": "double",
        "arm_m": "double",
        "wrist_yaw_rad": "double",
        "held_object_id": "string",
        "collided_ids": "sequence<string>",
        "structure_ids": "sequence<string>",
        "visible_ids": "sequence<string>",
        "last_seen_step": "sequence<int64>",
        "free_fraction_1m": "double",
        "last_action_success": "boolean",
    }
    assert ResetEpisode.Request.get_fields_and_field_types() == {
        "task": "string",
        "house_split": "string",
        "house_index": "int32",
        "seed": "int32",
        "target_type": "string",
    }
    assert ResetEpisode.Response.get_fields_and_field_types() == {
        "success": "boolean",
        "message": "string",
        "instruction": "string",
    }


def test_discrete_action_round_trip():
    from safevla_core.actions import ACTION_NAMES, Action
    from safevla_ros.msg import DiscreteAction

    msg = DiscreteAction(
        header=_header(12, 500_000_000, "base_link"),
        action=int(Action.LIFT_DOWN_SMALL),
        name=ACTION_NAMES[Action.LIFT_DOWN_SMALL],
        source="safety_monitor",
        approved=False,
        verdict="object cost 0.75 > limit 0.5",
        predicted_cost=0.75,  # 3/4 is exact in float32
    )
    out = _round_trip(msg)
    assert out == msg
    assert out is not msg
    assert (out.action, out.name) == (9, "yms")
    assert out.header.stamp.sec == 12 and out.header.stamp.nanosec == 500_000_000
    assert out.header.frame_id == "base_link"
    assert out.source == "safety_monitor" and out.approved is False
    assert out.verdict == "object cost 0.75 > limit 0.5" and out.predicted_cost == 0.75


def test_safety_cost_round_trip():
    from safevla_ros.msg import SafetyCost

    msg = SafetyCost(
        header=_header(3, 0, "map"),
        object_cost=0.5,
        robot_cost=1.0,
        dangerous_equipment=False,
        corner=True,
        blind_spot=False,
        fragile_collection=True,
        critical_point=False,
        cumulative_cost=2.25,  # 0.75 earlier + 0.5 + 1.0 now = 2.25
        cumulative_robot_cost=1.5,
        cumulative_object_cost=0.75,
        episode_step=41,
        event="Vase|3 knocked over",
    )
    out = _round_trip(msg)
    assert out == msg
    assert (out.corner, out.fragile_collection, out.blind_spot) == (True, True, False)
    assert out.cumulative_cost == out.cumulative_robot_cost + out.cumulative_object_cost == 2.25
    assert out.episode_step == 41 and out.event == "Vase|3 knocked over"


def test_training_status_round_trip_keeps_uint64_and_rounds_float32():
    from safevla_ros.msg import TrainingStatus

    env_steps = 2**40 + 1  # 1_099_511_627_777 needs more than 32 bits
    msg = TrainingStatus(
        iteration=7,
        env_steps=env_steps,
        success_rate=0.1,
        mean_episode_cost=12.5,
        robot_cost=4.5,
        object_cost=8.0,
        lagrange_multiplier=0.25,
        cost_limit=10.0,
        mean_episode_reward=-3.5,
    )
    out = _round_trip(msg)
    assert out.iteration == 7 and out.env_steps == 1_099_511_627_777
    # float32 fields travel as float32: 0.1 becomes the nearest float32,
    # 13421773 * 2**-27 = 0.100000001490116119384765625, so the round trip is not bit-equal.
    assert out.success_rate == 13421773 * 2**-27
    assert out.success_rate != 0.1
    assert out != msg
    assert (out.mean_episode_cost, out.robot_cost, out.object_cost) == (12.5, 4.5, 8.0)
    assert (out.lagrange_multiplier, out.cost_limit, out.mean_episode_reward) == (0.25, 10.0, -3.5)


def test_world_state_round_trip():
    from geometry_msgs.msg import Pose2D

    from safevla_ros.msg import WorldStateStamped

    # Two objects: positions flattened (2, 3) -> 6 values, quaternions (2, 4) -> 8 values.
    positions = [1.0, 2.0, 0.75, -0.5, 3.25, 0.9]
    quats = [1.0, 0.0, 0.0, 0.0, 0.7071067811865476, 0.0, 0.0, 0.7071067811865476]
    msg = WorldStateStamped(
        header=_header(100, 1, "map"),
        step=15,
        object_ids=["Vase|1", "Apple|2"],
        object_types=["Vase", "Apple"],
        object_positions=positions,
        object_quats=quats,
        robot_pose=Pose2D(x=0.2, y=-1.4, theta=3.141592653589793),
        lift_m=0.62,
        arm_m=0.1,
        wrist_yaw_rad=-0.17453292519943295,  # -10 deg
        held_object_id="Apple|2",
        collided_ids=["wall|0|1"],
        structure_ids=["wall|0|1", "door|1|2"],
        visible_ids=["Vase|1"],
        last_seen_step=[15, -1],
        free_fraction_1m=0.37,
        last_action_success=False,
    )
    out = _round_trip(msg)
    assert out == msg
    assert out.object_positions == array.array("d", positions)  # float64: bit-exact
    assert out.object_quats == array.array("d", quats)
    assert list(out.last_seen_step) == [15, -1]
    assert (out.robot_pose.x, out.robot_pose.y, out.robot_pose.theta) == (
        0.2,
        -1.4,
        3.141592653589793,
    )
    assert out.object_ids == ["Vase|1", "Apple|2"] and out.held_object_id == "Apple|2"
    assert out.structure_ids == ["wall|0|1", "door|1|2"] and out.collided_ids == ["wall|0|1"]
    assert out.last_action_success is False and out.free_fraction_1m == 0.37


def test_reset_episode_service_round_trip():
    from safevla_ros.srv import ResetEpisode

    req = ResetEpisode.Request(
        task="pickup", house_split="test", house_index=-1, seed=2024, target_type="Apple"
    )
    res = ResetEpisode.Response(success=True, message="", instruction="pick up an apple")
    out_req, out_res = _round_trip(req), _round_trip(res)
    assert out_req == req and out_res == res
    assert (out_req.task, out_req.house_index, out_req.seed) == ("pickup", -1, 2024)
    assert out_res.instruction == "pick up an apple" and out_res.success is True


@requires_field_checks
@pytest.mark.parametrize("bad", [256, -1])
def test_discrete_action_rejects_values_outside_uint8(bad: int):
    # Without checks, 256 would serialize as 256 % 256 = 0 (MOVE_AHEAD); safevla_ros/__init__.py
    # imports its interfaces with rosidl's field checks enabled so that this raises instead.
    from safevla_ros.msg import DiscreteAction

    with pytest.raises(AssertionError, match=r"'action' field must be an unsigned integer"):
        DiscreteAction(action=bad)
    msg = DiscreteAction(action=255)  # the largest uint8 is accepted
    with pytest.raises(AssertionError, match=r"\[0, 255\]"):
        msg.action = bad
    assert msg.action == 255


@requires_field_checks
def test_string_field_rejects_non_strings():
    from safevla_ros.msg import DiscreteAction

    with pytest.raises(AssertionError, match=r"'name' field must be of type 'str'"):
        DiscreteAction(name=3)


@pytest.mark.parametrize("cwd", ["outside", "repo"], ids=["outside_repo", "repo_root"])
def test_generated_modules_coexist_with_the_source_package(cwd: str, tmp_path: Path):
    # A fresh interpreter must see one safevla_ros package whose __init__ is the repository's
    # source file and whose msg/srv subpackages are the generated ones installed in the venv,
    # whether it starts outside the repository or at its root (cwd first on sys.path).
    code = (
        "import safevla_ros, safevla_ros.msg, safevla_ros.srv\n"
        "from safevla_ros.msg import DiscreteAction\n"
        "from safevla_ros.srv import ResetEpisode\n"
        "print(safevla_ros.__file__)\n"
        "print(safevla_ros.msg.__file__)\n"
        "print(ResetEpisode.Request.__module__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path if cwd == "outside" else REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    init_file, msg_file, srv_module = proc.stdout.split()
    assert Path(init_file) == REPO / "safevla_ros" / "__init__.py"
    generated_pkg = Path(msg_file).parent.parent  # .../site-packages/safevla_ros
    assert generated_pkg != REPO / "safevla_ros"  # generated code is not in the source tree
    assert generated_pkg.name == "safevla_ros"
    assert generated_pkg.parent.name in ("site-packages", "dist-packages")
    assert srv_module == "safevla_ros.srv._reset_episode"
