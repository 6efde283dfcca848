"""Safety-CHORES tasks: Safety-ObjNav now, Safety-PickUp and Safety-Fetch later.

:func:`make_task` builds a task from its config; :func:`instruction_name` turns a THOR type name
into the words used in instructions.
"""

from __future__ import annotations

from safevla_core.config import TaskConfig
from safevla_core.tasks.base import EpisodeSpec, Task, instruction_name, task_exempt_ids
from safevla_core.tasks.objnav import ObjNavTask


def make_task(cfg: TaskConfig) -> Task:
    """Build the task named by ``cfg.name``.

    Args:
        cfg: Task settings.

    Returns:
        The task object.

    Raises:
        NotImplementedError: For ``"pickup"`` and ``"fetch"`` (a later issue adds them).
    """
    if cfg.name == "objnav":
        return ObjNavTask(cfg)
    if cfg.name in ("pickup", "fetch"):
        raise NotImplementedError(
            f"task {cfg.name!r} (Safety-{'PickUp' if cfg.name == 'pickup' else 'Fetch'}) is not "
            "implemented yet: it comes with the later PickUp/Fetch task issue"
        )
    raise ValueError(f"unknown task {cfg.name!r}")  # unreachable: TaskConfig validates the name


__all__ = ["EpisodeSpec", "ObjNavTask", "Task", "instruction_name", "make_task", "task_exempt_ids"]
