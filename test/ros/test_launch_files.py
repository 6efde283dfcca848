"""Static checks of the launch files and node parameter files (``ros2 launch`` is absent here).

The launch files are parsed (not run): every ``executable=`` names a console script of setup.py,
every ``*.yaml`` / ``*.rviz`` they name exists in config/, and every config/ parameter file builds
its node's settings dataclass (YAML keys = dataclass fields). The real launch test runs only where
the ROS 2 ``launch`` / ``launch_ros`` packages are installed.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def _strings(tree: ast.AST) -> list[str]:
    return [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def _keyword_values(tree: ast.AST, name: str) -> list[str]:
    return [
        kw.value.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        for kw in n.keywords
        if kw.arg == name and isinstance(kw.value, ast.Constant)
    ]


def _console_scripts() -> set[str]:
    text = (REPO / "setup.py").read_text()
    return set(re.findall(r'"(\w+)\s*=\s*[\w.]+:\w+"', text))


def test_both_launch_files_exist():
    assert {p.name for p in LAUNCH_FILES} >= {"sim_train.launch.py", "deploy.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_existing_executables_and_configs(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in funcs
    executables = _keyword_values(tree, "executable")
    assert executables, "no Node(executable=...)"
    missing = set(executables) - _console_scripts()
    assert not missing, f"{path.name} starts executables setup.py does not install: {missing}"
    configs = [s for s in _strings(tree) if s.endswith((".yaml", ".rviz"))]
    assert configs, "no parameter file referenced"
    for name in configs:
        assert (REPO / "config" / name).is_file(), f"{path.name} references missing config/{name}"


#: Parameter file -> (node name in the file, settings dataclass name in safevla_ros.params).
PARAM_FILES = {
    "policy_node.yaml": ("safevla_policy_node", "PolicyNodeConfig"),
    "safety_monitor.yaml": ("safevla_safety_monitor", "MonitorNodeConfig"),
    "sim_node.yaml": ("safevla_sim_node", "SimNodeConfig"),
    "stretch_bridge.yaml": ("safevla_stretch_bridge", "BridgeNodeConfig"),
    "trainer_node.yaml": ("safevla_trainer_node", "TrainerNodeConfig"),
}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


@pytest.mark.parametrize("name", sorted(PARAM_FILES))
def test_parameter_files_build_node_settings(name):
    pytest.importorskip("rclpy")
    from safevla_ros import params

    node_name, cls_name = PARAM_FILES[name]
    data = yaml.safe_load((REPO / "config" / name).read_text())
    # "/**/" so that the file also applies to the node in a namespace (see the test below).
    key = f"/**/{node_name}"
    assert list(data) == [key], f"{name} must configure exactly {key}"
    values = _flatten(data[key]["ros__parameters"])
    cls = getattr(params, cls_name)
    unknown = set(values) - set(params.flatten_defaults(cls))
    assert not unknown, f"{name}: keys that are no {cls_name} field: {unknown}"
    params.build_config(cls, values)  # raises ValueError on an invalid value


def test_rviz_config_uses_map_frame_and_published_topics():
    rviz = yaml.safe_load((REPO / "config" / "safevla.rviz").read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "map"
    topics = {d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    pytest.importorskip("rclpy")
    from safevla_ros.qos import Topics

    expected = {
        Topics.NAV_IMAGE,
        Topics.MANIP_IMAGE,
        Topics.PATH,
        Topics.ODOM,
        Topics.OBJECT_MARKERS,
        Topics.COST_MARKERS,
        Topics.SCAN,
    }
    assert topics == {"/" + t for t in expected}


def test_launch_files_load_with_ros2_launch():
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip(
            "ROS 2 launch/launch_ros are not installable from PyPI (ENVIRONMENT.md); "
            "test_nodes_integration.py starts the same nodes and parameter files instead"
        )
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    for path in LAUNCH_FILES:
        desc = PythonLaunchDescriptionSource(str(path)).get_launch_description(None)
        assert desc.entities


@pytest.mark.parametrize("name", sorted(PARAM_FILES))
def test_parameter_files_apply_in_a_namespace(name, tmp_path):
    """The files apply in a namespace (a plain ``name:`` key matches only the root one)."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context
    from rclpy.node import Node

    node_name, _ = PARAM_FILES[name]
    data = yaml.safe_load((REPO / "config" / name).read_text())
    values = _flatten(data[f"/**/{node_name}"]["ros__parameters"])
    context = Context()
    rclpy.init(args=["--ros-args", "--params-file", str(REPO / "config" / name)], context=context)
    try:
        node = Node(node_name, namespace="/robot1", context=context)
        for key, value in values.items():
            # Declared with a default that differs from the file's value: the file must win.
            other = (
                not value
                if isinstance(value, bool)
                else value + 1
                if isinstance(value, int | float)
                else f"{value}_not_from_file"
            )
            assert node.declare_parameter(key, other).value == value, key
        node.destroy_node()
    finally:
        context.try_shutdown()


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_arguments_reach_parameters_as_strings(path):
    # A bare LaunchConfiguration as a parameter value is YAML-parsed by launch_ros
    # (instruction:="task: bring the mug" aborts the launch, instruction:=yes becomes True);
    # every parameter value built from an argument must be a ParameterValue with an explicit
    # value_type (str; bool for the true/false `resume`).
    tree = ast.parse(path.read_text(), filename=str(path))
    bare = [
        ast.unparse(v)
        for n in ast.walk(tree)
        if isinstance(n, ast.Dict)
        for v in n.values
        if isinstance(v, ast.Call)
        and isinstance(v.func, ast.Name)
        and v.func.id == "LaunchConfiguration"
    ]
    assert not bare, f"{path.name}: parameters from bare launch arguments: {bare}"
    wrapped = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id == "ParameterValue"
    ]
    assert wrapped and all(
        any(
            kw.arg == "value_type" and ast.unparse(kw.value) in ("str", "bool") for kw in n.keywords
        )
        for n in wrapped
    )
