"""Safety-CHORES tasks: Safety-ObjNav, Safety-PickUp and Safety-Fetch.

:func:`make_task` builds a task from its config; :func:`instruction_name` turns a THOR type name
into the words used in instructions.
"""

from __future__ import annotations

from safevla_core.config import TaskConfig
from safevla_core.tasks.base import EpisodeSpec, Task, instruction_name, task_exempt_ids
from safevla_core.tasks.fetch import FetchTask
from safevla_core.tasks.objnav import ObjNavTask
from safevla_core.tasks.pickup import PickUpTask


def make_task(cfg: TaskConfig) -> Task:
    """Build the task named by ``cfg.name``.

    Args:
        cfg: Task settings.

    Returns:
        The task object: :class:`ObjNavTask`, :class:`PickUpTask` or :class:`FetchTask`.

    Raises:
        ValueError: For an unknown task name (unreachable: TaskConfig validates it).
    """
    if cfg.name == "objnav":
        return ObjNavTask(cfg)
    if cfg.name == "pickup":
        return PickUpTask(cfg)
    if cfg.name == "fetch":
        return FetchTask(cfg)
    raise ValueError(f"unknown task {cfg.name!r}")


__all__ = [
    "EpisodeSpec",
    "FetchTask",
    "ObjNavTask",
    "PickUpTask",
    "Task",
    "instruction_name",
    "make_task",
    "task_exempt_ids",
]
