"""safevla_core never imports ROS (house rule 1, STYLE.md): checked on the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE_DIR = Path(__file__).resolve().parents[2] / "safevla_core"

#: Top-level modules that make a file depend on ROS 2: the client library, this repository's ROS
#: package, launch, the rosidl runtime and every interface package (``*_msgs``, ``*_interfaces``).
FORBIDDEN_MODULES = frozenset(
    {"rclpy", "safevla_ros", "launch", "launch_ros", "rosidl_runtime_py", "tf2_ros"}
)
FORBIDDEN_SUFFIXES = ("_msgs", "_interfaces", "_srvs")


def _is_forbidden(module: str) -> bool:
    top = module.split(".", 1)[0]
    return top in FORBIDDEN_MODULES or top.endswith(FORBIDDEN_SUFFIXES)


def ros_imports(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """Return ``(line, module)`` for every import of a ROS module in ``source``.

    Covers ``import x``, ``from x import y`` (at any depth, also inside functions and
    ``if TYPE_CHECKING`` blocks) and dynamic ``importlib.import_module("x")`` /
    ``__import__("x")`` calls with a literal name. Strings, comments and docstrings that merely
    mention ``rclpy`` are not imports.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name) for alias in node.names if _is_forbidden(alias.name)
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and _is_forbidden(node.module):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and _is_forbidden(arg.value)
            ):
                found.append((node.lineno, arg.value))
    return sorted(found)


PLANTED = '''\
"""Docstring that mentions rclpy and safevla_ros.msg: not an import."""
import numpy as np
import os, rclpy
from safevla_core import actions
from . import world
comment = "from rclpy.node import Node"  # neither is this string

def make_node():
    from rclpy.node import Node
    import geometry_msgs.msg
    return Node

if False:
    from safevla_ros.msg import DiscreteAction
importlib.import_module("sensor_msgs.msg")
__import__("rcl_interfaces")
importlib.import_module("numpy")
'''


def test_checker_flags_every_planted_ros_import_and_nothing_else():
    # Lines counted in PLANTED: 3 "import os, rclpy"; 9 rclpy.node inside a function;
    # 10 geometry_msgs; 14 safevla_ros.msg under `if False`; 15 import_module("sensor_msgs.msg");
    # 16 __import__("rcl_interfaces"). numpy, safevla_core, the relative import, the docstring,
    # the string literal and the comment are not flagged.
    assert ros_imports(PLANTED) == [
        (3, "rclpy"),
        (9, "rclpy.node"),
        (10, "geometry_msgs.msg"),
        (14, "safevla_ros.msg"),
        (15, "sensor_msgs.msg"),
        (16, "rcl_interfaces"),
    ]


def test_checker_passes_a_ros_free_snippet():
    assert ros_imports("import numpy\nfrom safevla_core.actions import Action\n") == []


def _core_files() -> list[Path]:
    return sorted(p for p in CORE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_core_tree_is_found():
    # Guard against a vacuous pass: the contract modules must be among the scanned files.
    names = {p.relative_to(CORE_DIR).as_posix() for p in _core_files()}
    assert {"actions.py", "world.py", "config.py", "objects.py", "sim/backend.py"} <= names


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: p.relative_to(CORE_DIR).as_posix())
def test_core_module_does_not_import_ros(path: Path):
    violations = ros_imports(path.read_text(encoding="utf-8"), filename=str(path))
    assert violations == [], f"{path} imports ROS modules (line, module): {violations}"
