"""What every reader shares: the per-file result, warnings, bounded line reading and record flattening.

A reader never raises for a bad file: it reads as far as the file goes and says, in a warning naming the file,
what it skipped and where. Warnings are counted per kind (bad lines, non-numbers), not one per line.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from research_mcp.tools.metrics._series import Series

__all__ = [
    "STEP_KEYS",
    "TIME_BUDGET_NOTE",
    "Buffer",
    "FileMetrics",
    "Limits",
    "Problems",
    "bounded_lines",
    "bounded_warnings",
    "flatten",
    "lib",
    "number",
    "pick_step_key",
]

STEP_KEYS = ("step", "global_step", "_step", "trainer/global_step", "iteration", "iter", "epoch")
"""Names of the step column, in order of preference (case-insensitive); the first present is the x axis."""

_FLUSH = 65_536


_MAX_WARNINGS = 40
_WARNING_CHARS = 600


@dataclass(frozen=True)
class Limits:
    max_points: int = 200
    max_line_bytes: int = 1 << 20
    max_json_bytes: int = 64 << 20
    deadline: float = math.inf
    """`time.monotonic()` past which readers stop (and say so): one tool call must answer within ~50 s."""

    def over(self) -> bool:
        return self.deadline != math.inf and time.monotonic() > self.deadline


@dataclass
class FileMetrics:
    """The metrics of one file (or one MLflow run folder)."""

    path: str
    kind: str
    series: dict[str, Series] = field(default_factory=dict[str, Series])
    run: str | None = None
    warnings: list[str] = field(default_factory=list[str])


class Problems:
    """Counts of one kind of problem with the first place it happened, turned into one warning each."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: dict[str, tuple[int, str]] = {}

    def note(self, what: str, where: str) -> None:
        count, first = self._seen.get(what, (0, where))
        self._seen[what] = (count + 1, first)

    def warnings(self) -> list[str]:
        return [
            f"{self.path}: {what}: {count} skipped (first at {first})"
            if count > 1
            else f"{self.path}: {what} at {first}"
            for what, (count, first) in self._seen.items()
        ]


class Buffer:
    """Points of many metrics gathered one at a time and handed to their `Series` in chunks."""

    def __init__(self, out: FileMetrics, max_points: int) -> None:
        self.out = out
        self.max_points = max_points
        self._pending: dict[str, tuple[list[float], list[float]]] = {}
        self._size = 0

    def add(self, name: str, step: float, value: float) -> None:
        found = self._pending.get(name)
        if found is None:
            found = self._pending[name] = ([], [])
        found[0].append(step)
        found[1].append(value)
        self._size += 1
        if self._size >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        import numpy as np

        for name, (steps, values) in self._pending.items():
            series = self.out.series.get(name)
            if series is None:
                series = self.out.series[name] = Series(self.max_points)
            series.add(np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64))
        self._pending.clear()
        self._size = 0


TIME_BUDGET_NOTE = "stopped at the time budget of one call; the rest of the file is not summarised"


def bounded_lines(fh: IO[bytes], limits: Limits, problems: Problems) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a binary file; a line longer than the limit is skipped without holding it whole,
    and a last line without a newline is flagged when it does not parse (the caller decides)."""
    max_line_bytes = limits.max_line_bytes
    number = 0
    while True:
        if number % 8192 == 0 and limits.over():
            problems.note(TIME_BUDGET_NOTE, f"line {number + 1}")
            return
        line = fh.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            size = len(line)
            while True:  # drop the rest of the long line a MiB at a time
                more = fh.readline(1 << 20)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    break
            problems.note(f"line over the {max_line_bytes}-byte limit ({size} bytes)", f"line {number}")
            continue
        yield number, line


def bounded_warnings(warnings: list[str], max_chars: int) -> list[str]:
    """At most `_MAX_WARNINGS` warnings of at most `max_chars` in all, the rest counted."""
    kept: list[str] = []
    used = 0
    for warning in warnings[:_MAX_WARNINGS]:
        text = warning if len(warning) <= _WARNING_CHARS else warning[: _WARNING_CHARS - 3] + "..."
        if used + len(text) > max_chars:
            break
        kept.append(text)
        used += len(text) + 4
    if len(kept) < len(warnings):
        kept.append(f"... and {len(warnings) - len(kept)} more warnings")
    return kept


def lib(name: str) -> Any:
    """An untyped third-party module (pyarrow, scipy, tensorboard's protobufs) as `Any`, imported on first use."""
    return importlib.import_module(name)


def flatten(value: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested dicts as one level, keys joined with '.'; lists and other values kept as they are."""
    found: dict[str, Any] = {} if out is None else out
    if isinstance(value, dict):
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            flatten(item, f"{prefix}.{key}" if prefix else str(key), found)  # pyright: ignore[reportUnknownArgumentType]
    else:
        found[prefix] = value
    return found


def number(value: Any) -> float | None:
    """A logged number as float (NaN and Inf kept, to be counted); None for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return math.inf if value > 0 else -math.inf


def pick_step_key(keys: list[str]) -> str | None:
    lowered = {key.lower(): key for key in keys}
    for candidate in STEP_KEYS:
        if candidate in lowered:
            return lowered[candidate]
    return None
