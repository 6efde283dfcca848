"""Setuptools build of the `safevla` distribution: packages and console scripts.

Metadata lives in pyproject.toml. ``package_dir={"": "."}`` makes ``pip install -e .`` use a
plain ``.pth`` path entry for the repository root instead of setuptools' import-hook finder: the
hook is consulted only after Python's path finder, which would otherwise settle on the generated
``site-packages/safevla_ros`` namespace portion as the package itself, so that the source
``safevla_ros/__init__.py`` never runs (measured with setuptools 84; see safevla_ros/__init__.py).

CONSOLE_SCRIPTS is also the list CMakeLists.txt installs for ``ros2 run``; its helper
cmake/safevla_python.cmake parses the entries below, so keep one per line, indented, quoted and
followed by a comma.
"""

from setuptools import find_packages, setup

CONSOLE_SCRIPTS = [
    "safevla = safevla_core.cli:main",
    "safevla_policy_node = safevla_ros.policy_node:main",
    "safevla_safety_monitor = safevla_ros.safety_monitor_node:main",
    "safevla_sim_node = safevla_ros.sim_node:main",
    "safevla_stretch_bridge = safevla_ros.stretch_bridge_node:main",
    "safevla_trainer_node = safevla_ros.trainer_node:main",
    "safevla_recorder = safevla_ros.recorder_node:main",
]

setup(
    package_dir={"": "."},
    packages=find_packages(
        where=".", include=["safevla_core", "safevla_core.*", "safevla_ros", "safevla_ros.*"]
    ),
    include_package_data=True,
    package_data={"safevla_core": ["**/*.json", "**/*.yaml", "**/*.xml"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
