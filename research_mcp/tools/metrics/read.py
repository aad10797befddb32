"""`read_metrics`: every metric of a run or a path, summarised (last, best, min, max, steps) with a short series."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from collections.abc import Callable

from pydantic import Field

from research_mcp.errors import BadInputError
from research_mcp.model import ToolModel
from research_mcp.tools.metrics._names import candidates, spelling
from research_mcp.tools.metrics._records import FileMetrics, Limits, bounded_warnings
from research_mcp.tools.metrics._series import Direction, Series, direction_of
from research_mcp.tools.metrics._sources import RunBook, read_source, resolve
from research_mcp.workspace import Workspace

__all__ = ["MetricSummary", "ReadMetricsResult", "read_metrics", "summarise"]

_SPELLED = 12
_FRAME = 200
"""The answer's keys and punctuation around its lists, in characters."""


class MetricSummary(ToolModel):
    name: str
    file: str = Field(description="Workspace path of the file (or MLflow run folder) it was read from.")
    run: str | None = Field(default=None, description="The MLflow run id, for metrics of an MLflow store.")
    direction: Direction | None = Field(
        None, description="max: higher is better; min: lower is better; None: unknown from the name, not guessed."
    )
    last: float | None = Field(default=None, description="The last finite value logged.")
    last_step: float | None = None
    best: float | None = Field(default=None, description="max or min by direction; None when the direction is unknown.")
    best_step: float | None = None
    min: float | None = None
    max: float | None = None
    count: int = Field(description="Finite values logged.")
    non_finite: int = Field(default=0, description="NaN/Inf values logged (left out of every statistic).")
    step_min: float | None = None
    step_max: float | None = None
    steps: list[float] = Field(
        description="Steps of the series, downsampled to max_points keeping each stretch's lowest and highest point."
    )
    values: list[float] = Field(description="The value at each of `steps`.")


class ReadMetricsResult(ToolModel):
    source: str = Field(description="The run id or workspace path read.")
    files: list[str] = Field(description="Files of this page's metrics, with their format: 'path (format)'.")
    file_count: int = Field(description="Metric files read in all.")
    metrics: list[MetricSummary]
    total: int = Field(description="Metrics found in all (after the `metrics` filter), before paging.")
    next_offset: int | None = Field(default=None, description="Pass as `offset` to get the next metrics.")
    warnings: list[str] = Field(
        default_factory=list[str], description="What was skipped in which file (bad lines, NaN/Inf, cut files)."
    )


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _short(value: float) -> float:
    return float(f"{value:.7g}")


def summarise(name: str, fm: FileMetrics, series: Series, direction: Direction | None) -> MetricSummary:
    best = series.max if direction == "max" else series.min if direction == "min" else math.nan
    best_step = series.max_step if direction == "max" else series.min_step if direction == "min" else math.nan
    points = series.points()
    return MetricSummary(
        name=name,
        file=fm.path,
        run=fm.run if fm.kind == "mlflow" else None,
        direction=direction,
        last=_num(series.last),
        last_step=_num(series.last_step),
        best=_num(best),
        best_step=_num(best_step),
        min=_num(series.min),
        max=_num(series.max),
        count=series.count,
        non_finite=series.non_finite,
        step_min=_num(series.step_min),
        step_max=_num(series.step_max),
        steps=[_short(step) for step, _ in points],
        values=[_short(value) for _, value in points],
    )


def non_finite_warnings(fm: FileMetrics) -> list[str]:
    return [
        f"{fm.path}: {name!r} has {s.non_finite} NaN/Inf values, left out (first at step {s.first_non_finite_step:g})"
        for name, s in fm.series.items()
        if s.non_finite
    ]


def _selected(files: list[FileMetrics], patterns: list[str], base: str) -> tuple[set[tuple[int, str]], list[str]]:
    """(file index, metric name) of every metric a filter picks, and a note per name that picks several. A name
    picks what it stands for in the other metrics tools (`val_acc`: `val_acc` or `<anything>.val_acc`, see
    `_names`), all of it where several files or datasets have it, since this answer shows each with its file; a
    glob matches whole names or their dot-separated tails."""
    index = {id(fm): i for i, fm in enumerate(files)}
    picked: set[tuple[int, str]] = set()
    notes: list[str] = []
    for pattern in patterns:
        if any(char in pattern for char in "*?["):
            for i, fm in enumerate(files):
                picked.update(
                    (i, name)
                    for name in fm.series
                    if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*." + pattern)
                )
            continue
        matches = candidates(files, pattern)
        picked.update((index[id(match.file)], match.name) for match in matches)
        if len(matches) > 1:
            spelled = ", ".join(repr(spelling(files, match, base)) for match in matches[:_SPELLED])
            more = f" and {len(matches) - _SPELLED} more" if len(matches) > _SPELLED else ""
            notes.append(
                f"{pattern!r} matches {len(matches)} metrics; compare_runs, plot_metrics and results_table need "
                f"one of them: {spelled}{more}"
            )
    return picked, notes


def read_metrics(
    ws: Workspace,
    source: str,
    book: Callable[[], RunBook | None],
    metrics: list[str] | None = None,
    higher_is_better: dict[str, bool] | None = None,
    max_points: int = 200,
    offset: int = 0,
    limits: Limits | None = None,
    max_chars: int = 24_000,
) -> ReadMetricsResult:
    limits = dataclasses.replace(limits or Limits(), max_points=max_points)
    found = resolve(ws, source, book)
    notes: list[str] = []
    files = read_source(ws, found, limits, notes)
    warnings = [*notes]
    picked: set[tuple[int, str]] | None = None
    if metrics:
        picked, hints = _selected(files, metrics, ws.relative(found.path))
        warnings = [*hints, *warnings]
    chosen: list[tuple[str, FileMetrics, Series]] = []
    for i, fm in enumerate(files):
        warnings += fm.warnings + non_finite_warnings(fm)
        for name, series in fm.series.items():
            if picked is None or (i, name) in picked:
                chosen.append((name, fm, series))
    if metrics and not chosen and files:
        names = sorted({name for fm in files for name in fm.series})
        shown = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
        raise BadInputError(
            f"No metric matches {metrics} in {found.name!r} (a name matches the metric named so or ending in "
            f"'.<name>'; a glob, whole names). Metrics there: {shown or 'none'}."
        )
    if offset > len(chosen) and chosen:
        raise BadInputError(f"offset {offset} is past the {len(chosen)} metrics found.")
    warnings = bounded_warnings(warnings, max_chars // 4)
    page: list[MetricSummary] = []
    page_files: dict[str, None] = {}  # the files of the page's metrics, in order
    used = len(json.dumps(warnings)) + len(found.name) + _FRAME
    for name, fm, series in chosen[offset:]:
        override = (higher_is_better or {}).get(name)
        direction = direction_of(name) if override is None else ("max" if override else "min")
        summary = summarise(name, fm, series, direction)
        label = f"{fm.path} ({fm.kind})"
        cost = (
            len(json.dumps(summary.model_dump(mode="json")))
            + 2
            + (0 if label in page_files else len(json.dumps(label)) + 2)
        )
        if page and used + cost > max_chars:
            break
        page.append(summary)
        page_files[label] = None
        used += cost
    end = offset + len(page)
    return ReadMetricsResult(
        source=found.name,
        files=list(page_files) if chosen else [f"{fm.path} ({fm.kind})" for fm in files[:_SPELLED]],
        file_count=len(files),
        metrics=page,
        total=len(chosen),
        next_offset=end if end < len(chosen) else None,
        warnings=warnings,
    )
