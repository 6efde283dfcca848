"""Opt-in latency trace of the deciding chain: one JSON line per callback event, per process.

Off unless the environment variable ``SAFEVLA_TRACE`` names a directory; then every traced node
appends to ``<dir>/<node>.<pid>.jsonl`` records of::

    {"t": wall ns, "ev": event, "key": stamp key or null, "cpu": thread CPU ns,
     "wait": run-queue wait ns, ...event fields}

``t`` is the system clock (``time.time_ns``), the clock of the ROS header stamps and of
``MessageInfo["received_timestamp"]``, so records of all processes and the stamps share one
axis. ``cpu`` is this thread's CPU time (``time.thread_time_ns``) and ``wait`` the time it spent
runnable but not running (second field of ``/proc/thread-self/schedstat``, Linux
``Documentation/scheduler/sched-stats.rst``): between two records of a callback,
wall = cpu + wait + time blocked, so a slow step shows whether it computed, queued for a core
or waited on something. Python garbage collections are recorded too (``gc``: generation, wall
and CPU milliseconds). ``scripts/measure_latency.py --trace`` turns it on and attributes
the slow steps.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TRACE_ENV = "SAFEVLA_TRACE"
_SCHEDSTAT = "/proc/thread-self/schedstat"


def _run_delay_ns() -> int:
    try:
        with open(_SCHEDSTAT) as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return -1


class Trace:
    """Writes trace records for one node; every method is a no-op when tracing is off."""

    def __init__(self, node_name: str) -> None:
        """Open the node's trace file if ``SAFEVLA_TRACE`` is set.

        Args:
            node_name: Used in the file name.
        """
        self._file: IO[str] | None = None
        self._gc_start: tuple[int, int, int] | None = None
        folder = os.environ.get(TRACE_ENV, "")
        if not folder:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._file = open(  # noqa: SIM115 - kept open for the node's life, closed in close()
            Path(folder) / f"{node_name}.{os.getpid()}.jsonl", "w", buffering=1
        )
        gc.callbacks.append(self._on_gc)

    @property
    def enabled(self) -> bool:
        """Whether records are written."""
        return self._file is not None

    def __call__(self, event: str, key: int | None = None, **fields: Any) -> None:
        """Record ``event`` now (``key``: the stamp key of the message concerned)."""
        if self._file is None:
            return
        record = {
            "t": time.time_ns(),
            "ev": event,
            "key": key,
            "cpu": time.thread_time_ns(),
            "wait": _run_delay_ns(),
            **fields,
        }
        self._file.write(json.dumps(record) + "\n")

    def wrap(self, event: str, callback: Callable[..., None], with_info: bool = False):
        """``callback`` as a subscription callback that records its entry and exit.

        The entry record carries the message's stamp key and when the middleware received it
        (``rx``, wall ns), so ``t - rx`` is how long it waited for the executor. Returns
        ``callback`` itself when tracing is off.

        Args:
            event: Record name (the exit is ``event + ".end"``).
            callback: Takes the message (and the ``MessageInfo`` if ``with_info``).
            with_info: Pass the ``MessageInfo`` on.
        """
        if self._file is None:
            return callback

        def traced(msg: Any, info: Any) -> None:
            header = getattr(msg, "header", None)
            key = (
                None if header is None else header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            )
            self(event, key, rx=info["received_timestamp"])
            if with_info:
                callback(msg, info)
            else:
                callback(msg)
            self(event + ".end", key)

        return traced

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = (time.time_ns(), time.thread_time_ns(), int(info["generation"]))
        elif self._gc_start is not None:
            t0, cpu0, generation = self._gc_start
            self._gc_start = None
            wall_ms, cpu_ms = (time.time_ns() - t0) * 1e-6, (time.thread_time_ns() - cpu0) * 1e-6
            self("gc", generation=generation, ms=wall_ms, cpu_ms=cpu_ms)

    def close(self) -> None:
        """Stop recording and close the file."""
        if self._file is not None:
            gc.callbacks.remove(self._on_gc)
            self._file.close()
            self._file = None
