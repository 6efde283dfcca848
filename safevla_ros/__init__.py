"""ROS 2 nodes of SafeVLA and their generated interfaces (``safevla_ros.msg``, ``safevla_ros.srv``).

This package is assembled from two directories:

* the source tree (this file, the nodes, ``conversions.py``, ``qos.py``), installed editable by
  ``pip install -e .`` (a ``.pth`` entry for the repository root; see setup.py); and
* the rosidl output of CMakeLists.txt (``msg/``, ``srv/`` and the typesupport extension modules),
  which scripts/build_msgs.sh installs into ``site-packages/safevla_ros/`` *without* an
  ``__init__.py``, i.e. as a PEP 420 namespace portion.

A regular package found anywhere on ``sys.path`` wins over namespace portions, so ``import
safevla_ros`` always runs this file; ``pkgutil.extend_path`` then appends every other
``safevla_ros`` directory on ``sys.path`` to ``__path__``. ``safevla_ros.msg`` therefore resolves
to the generated code and everything else to the source tree, whether Python starts inside the
repository (cwd first on ``sys.path``) or outside it. In a colcon install both parts share one
directory (this ``__init__.py`` replaces rosidl's empty one) and the call adds nothing.

Field checks: since Iron (rosidl_generator_py 0.18.0, ros2/rosidl_python#194, so on Jazzy and
Kilted), generated Python classes validate field values only when the environment variable
``ROS_PYTHON_CHECK_FIELDS`` is ``"1"`` when their module is first imported. Otherwise
``DiscreteAction(action=256)`` is accepted and serializes as ``256 % 256 = 0`` (MOVE_AHEAD):
unacceptable for a safety shield's messages. This file therefore imports this package's
interfaces with the checks on (unless the user set the variable), after importing their
dependencies std_msgs/geometry_msgs normally, so only safevla_ros's small messages pay for the
checks and large ones such as ``sensor_msgs/Image`` keep their speed. The checks are assertions:
``python -O`` disables them, so converters still validate their inputs.
"""

import importlib
import os
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

_CHECK_FIELDS_ENV = "ROS_PYTHON_CHECK_FIELDS"


def _import_interfaces_with_field_checks() -> None:
    """Import ``safevla_ros.msg``/``.srv`` with rosidl field checks on, if they are built."""
    try:
        # Dependencies first, with the user's setting: their modules read the variable now.
        importlib.import_module("std_msgs.msg")
        importlib.import_module("geometry_msgs.msg")
    except ImportError:
        return  # no ROS 2 Python packages at all: safevla_ros's nodes cannot run anyway
    if _CHECK_FIELDS_ENV in os.environ:
        return  # the user decided; the interfaces import lazily with that setting
    os.environ[_CHECK_FIELDS_ENV] = "1"
    try:
        for name in ("msg", "srv"):
            try:
                importlib.import_module(f"{__name__}.{name}")
            except ImportError:
                pass  # interfaces not generated yet: run scripts/build_msgs.sh
    finally:
        del os.environ[_CHECK_FIELDS_ENV]


_import_interfaces_with_field_checks()
