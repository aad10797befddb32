"""Which queued runs start now: the run manager's claim as a pure function of what is busy, what waits, and what
each backend can take (`Backend.capacity`), and the thread counts a run gets from its share of the cores."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from research_mcp.sandbox.base import Capacity

__all__ = ["THREAD_VARS", "Busy", "Waiting", "assign", "thread_env"]

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
"""The thread counts of the usual numeric libraries (torch reads OMP_NUM_THREADS), set to a run's share of the cores:
left alone, each run starts a thread per core, and two torch runs on 2 cores took 344 s each against 168 s for both
one after the other."""


@dataclass(frozen=True, slots=True)
class Busy:
    """A run that holds a slot (starting or running)."""

    backend: str
    gpus: Sequence[int]


@dataclass(frozen=True, slots=True)
class Waiting:
    """A queued run, oldest first; `limits` is its stored limits (gpu_count, cpus, ...)."""

    id: str
    backend: str
    limits: dict[str, Any]


def assign(
    busy: Sequence[Busy], queued: Iterable[Waiting], capacity: Mapping[str, Capacity], max_concurrent: int | None
) -> list[Waiting]:
    """The queued runs that get a slot now, in order, their limits completed with the GPUs pinned to them (`gpus`)
    and their thread count (`threads`).

    A run goes when its backend has a free slot, the workspace is under `max_concurrent`, and the backend's pool has
    as many GPUs no busy run holds as it asks for; a run whose GPUs are busy waits, and later runs that fit go first.
    A run of a backend missing from `capacity` waits. A run that names `cpus` gets ceil(cpus) threads, else the
    backend's cores divided by the runs it may run at once.
    """
    free = math.inf if max_concurrent is None else max_concurrent - len(busy)
    running = Counter(run.backend for run in busy)
    taken: dict[str, set[int]] = {}  # pool -> GPUs pinned to its busy runs
    for run in busy:
        found = capacity.get(run.backend)
        taken.setdefault(found.pool if found else run.backend, set()).update(run.gpus)
    chosen: list[Waiting] = []
    open_backends = {name for name, cap in capacity.items() if running[name] < cap.runs}
    for run in queued:  # read lazily: nothing after the last free slot
        if len(chosen) >= free or not open_backends:
            break
        cap = capacity.get(run.backend)
        if cap is None or running[run.backend] >= cap.runs:
            continue
        pinned = taken.setdefault(cap.pool, set())
        idle = [gpu for gpu in cap.gpus if gpu not in pinned]
        wanted = int(run.limits.get("gpu_count") or 0)
        if wanted > len(idle):
            continue
        pinned.update(idle[:wanted])
        cpus = run.limits.get("cpus")
        at_once = min(cap.runs, max_concurrent or cap.runs)
        threads = math.ceil(cpus) if cpus else max(1, cap.cpus // at_once)
        running[run.backend] += 1
        if running[run.backend] >= cap.runs:
            open_backends.discard(run.backend)
        chosen.append(Waiting(run.id, run.backend, {**run.limits, "gpus": idle[:wanted], "threads": threads}))
    return chosen


def thread_env(threads: int | None) -> dict[str, str]:
    """The environment that holds a run to `threads` threads per library; nothing when it has no share recorded."""
    return {name: str(threads) for name in THREAD_VARS} if threads else {}
