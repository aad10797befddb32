"""Readers for text metric files: JSON documents, JSONL records, CSV/TSV tables, MLPerf `:::MLLOG` logs and MLflow
file-store runs. These are the tolerant paths: line by line, each bad line counted and skipped. Clean CSV and
JSONL files are first tried on the fast path (`_arrow`), which hands over to these on the first surprise.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, cast

from research_mcp.tools.metrics._records import (
    Buffer,
    FileMetrics,
    Limits,
    Problems,
    bounded_lines,
    flatten,
    number,
    pick_step_key,
)

__all__ = ["read_csv", "read_json", "read_jsonl", "read_mlflow_run", "read_mllog"]

_MLLOG = b":::MLLOG"
_RANK = re.compile(rb"^\s*(\d+)\s*:\s*:::MLLOG")
_MLLOG_STEP_KEYS = ("epoch_num", "step_num", "step", "samples_count")


class _Records:
    """Flattened records (one dict each) to points: a step per record, every numeric field a metric."""

    def __init__(self, out: FileMetrics, limits: Limits, problems: Problems) -> None:
        self.buffer = Buffer(out, limits.max_points)
        self.problems = problems
        self.step_key: str | None = None
        self.chosen = False
        self.ordinal = 0
        self.last_step = 0.0
        self.numeric: set[str] = set()
        self.non_numeric: dict[str, tuple[int, str]] = {}

    def add(self, record: dict[str, Any], where: str) -> None:
        flat = flatten(record)
        if not self.chosen:
            self.chosen = True
            self.step_key = pick_step_key(list(flat))
        step = number(flat.get(self.step_key)) if self.step_key is not None else float(self.ordinal)
        if step is None or not math.isfinite(step):
            step = self.last_step
        self.last_step = step
        self.ordinal += 1
        for key, raw in flat.items():
            if key == self.step_key:
                continue
            value = number(raw)
            if value is not None:
                self.numeric.add(key)
                self.buffer.add(key, step, value)
            elif raw is not None and not isinstance(raw, dict | list):
                count, first = self.non_numeric.get(key, (0, where))
                self.non_numeric[key] = (count + 1, first)

    def finish(self) -> None:
        self.buffer.flush()
        for key, (count, first) in self.non_numeric.items():
            if key in self.numeric:  # a column of numbers with some text in it: say so; pure text columns are labels
                self.problems.note(f"{count} values of {key!r} are not numbers", first)


def read_jsonl(path: Path, rel: str, limits: Limits) -> FileMetrics:
    """JSON Lines: one object per line (MLPerf `key`/`value` records are read as an MLPerf log)."""
    out = FileMetrics(rel, "jsonl")
    problems = Problems(rel)
    records = _Records(out, limits, problems)
    mllog: _MLLog | None = None
    with path.open("rb") as fh:
        for number_, line in bounded_lines(fh, limits, problems):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                cut = not line.endswith(b"\n")
                problems.note("truncated last line" if cut else "line that is not valid JSON", f"line {number_}")
                continue
            if not isinstance(record, dict):
                problems.note("line that is not a JSON object", f"line {number_}")
                continue
            record = cast(dict[str, Any], record)
            if mllog is not None or (not records.chosen and _is_mllog_record(record)):
                if mllog is None:
                    mllog = _MLLog(out, limits)
                    out.kind = "mllog"
                mllog.add(record)
                continue
            records.add(record, f"line {number_}")
    records.finish()
    if mllog is not None:
        mllog.buffer.flush()
    out.warnings += problems.warnings()
    return out


def read_json(path: Path, rel: str, limits: Limits) -> FileMetrics:
    """A JSON document: numeric leaves are one-point metrics, lists of numbers are series (step = index, as the
    per-seed lists of an AI Scientist `final_info.json`), lists of objects are records."""
    kind = "final_info" if path.name.startswith("final_info") else "json"
    out = FileMetrics(rel, kind)
    size = path.stat().st_size
    if size > limits.max_json_bytes:
        out.warnings.append(
            f"{rel}: {size} bytes, over the {limits.max_json_bytes}-byte limit for one JSON document; not read. "
            "Write per-step metrics as JSONL instead."
        )
        return out
    raw = path.read_bytes()
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        out.warnings.append(f"{rel}: not valid JSON ({str(exc)[:120]}); nothing read")
        return out
    buffer = Buffer(out, limits.max_points)
    problems = Problems(rel)
    for key, value in flatten(document, "").items():
        found = number(value)
        if found is not None:
            buffer.add(key or "value", 0.0, found)
        elif isinstance(value, list):
            _json_list(key or "value", value, buffer, out, limits, problems)  # pyright: ignore[reportUnknownArgumentType]
    buffer.flush()
    if not out.series:
        out.warnings.append(f"{rel}: no numbers in this JSON document")
    out.warnings += problems.warnings()
    return out


def _json_list(
    key: str, items: list[Any], buffer: Buffer, out: FileMetrics, limits: Limits, problems: Problems
) -> None:
    if items and all(isinstance(item, dict) for item in items):
        sub = FileMetrics(out.path, out.kind)
        records = _Records(sub, limits, problems)
        for i, item in enumerate(items):
            records.add(item, f"{key}[{i}]")
        records.finish()
        for name, series in sub.series.items():
            out.series[f"{key}.{name}"] = series
        return
    for i, item in enumerate(items):
        found = number(item)
        if found is not None:
            buffer.add(key, float(i), found)


def read_csv(path: Path, rel: str, limits: Limits, delimiter: str) -> FileMetrics:
    """A CSV/TSV table with a header row (a first row of numbers is data, columns then named column_1, ...)."""
    out = FileMetrics(rel, "tsv" if delimiter == "\t" else "csv")
    problems = Problems(rel)
    buffer = Buffer(out, limits.max_points)
    sep = delimiter.encode()
    names: list[str] | None = None
    step_col: int | None = None
    has_numbers: set[int] = set()
    text_in: dict[int, tuple[int, str]] = {}
    ordinal = 0
    last_step = 0.0
    with path.open("rb") as fh:
        for number_, line in bounded_lines(fh, limits, problems):
            cells = [cell.strip().strip(b'"').decode("utf-8", "replace") for cell in line.rstrip(b"\r\n").split(sep)]
            if names is None:
                if not line.strip():
                    continue
                if all(_float(cell) is not None for cell in cells):
                    names = [f"column_{i + 1}" for i in range(len(cells))]
                else:
                    names = [cell or f"column_{i + 1}" for i, cell in enumerate(cells)]
                    step_name = pick_step_key(names)
                    step_col = names.index(step_name) if step_name is not None else None
                    continue
            if len(cells) != len(names):
                if line.strip():
                    what = "truncated last line" if not line.endswith(b"\n") else "row with the wrong number of fields"
                    problems.note(what, f"line {number_}")
                continue
            step = _float(cells[step_col]) if step_col is not None else float(ordinal)
            if step is None or not math.isfinite(step):
                step = last_step
            last_step = step
            ordinal += 1
            for i, cell in enumerate(cells):
                if i == step_col or not cell:
                    continue
                value = _float(cell)
                if value is None:
                    count, first = text_in.get(i, (0, f"line {number_}"))
                    text_in[i] = (count + 1, first)
                    continue
                has_numbers.add(i)
                buffer.add(names[i], step, value)
    buffer.flush()
    for i, (count, first) in text_in.items():
        if i in has_numbers and names is not None:
            problems.note(f"{count} values of {names[i]!r} are not numbers", first)
    if names is None:
        out.warnings.append(f"{rel}: empty file")
    out.warnings += problems.warnings()
    return out


def _float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _is_mllog_record(record: dict[str, Any]) -> bool:
    return "key" in record and "value" in record and ("time_ms" in record or "metadata" in record)


class _MLLog:
    """MLPerf log records: each numeric `value` is a point of metric `key`; its step is the epoch or step the
    metadata names, else the count of that key so far."""

    def __init__(self, out: FileMetrics, limits: Limits) -> None:
        self.buffer = Buffer(out, limits.max_points)
        self.counts: dict[str, int] = {}

    def add(self, record: dict[str, Any]) -> None:
        value = number(record.get("value"))
        key = record.get("key")
        if value is None or not isinstance(key, str):
            return
        metadata: Any = record.get("metadata")
        step: float | None = None
        if isinstance(metadata, dict):
            found = cast(dict[str, Any], metadata)
            for name in _MLLOG_STEP_KEYS:
                step = number(found.get(name))
                if step is not None:
                    break
        seen = self.counts.get(key, 0)
        self.counts[key] = seen + 1
        self.buffer.add(key, float(seen) if step is None else step, value)


def read_mllog(path: Path, rel: str, limits: Limits) -> FileMetrics:
    """An MLPerf log: `:::MLLOG {json}` lines among any other output. With several ranks (`0: :::MLLOG ...`),
    rank 0's lines are read."""
    out = FileMetrics(rel, "mllog")
    problems = Problems(rel)
    mllog = _MLLog(out, limits)
    with path.open("rb") as fh:
        for number_, line in bounded_lines(fh, limits, problems):
            at = line.find(_MLLOG)
            if at < 0:
                continue
            rank = _RANK.match(line)
            if rank is not None and rank.group(1) != b"0":
                continue
            try:
                record = json.loads(line[at + len(_MLLOG) :])
            except ValueError:
                problems.note("MLLOG line that is not valid JSON", f"line {number_}")
                continue
            if isinstance(record, dict):
                mllog.add(record)  # pyright: ignore[reportUnknownArgumentType]
    mllog.buffer.flush()
    out.warnings += problems.warnings()
    return out


def read_mlflow_run(folder: Path, rel: str, limits: Limits) -> FileMetrics:
    """An MLflow file-store run folder: `metrics/<name>` files of `timestamp value [step]` lines, the whole
    history of each. The run is named by its id (the folder name)."""
    out = FileMetrics(rel, "mlflow", run=folder.name)
    problems = Problems(rel)
    buffer = Buffer(out, limits.max_points)
    metrics_dir = folder / "metrics"
    for top, dirs, files in os.walk(metrics_dir):
        dirs.sort()
        for name in sorted(files):
            file = Path(top, name)
            metric = file.relative_to(metrics_dir).as_posix()
            with file.open("rb") as fh:
                for number_, line in bounded_lines(fh, limits, problems):
                    parts = line.split()
                    if not parts:
                        continue
                    value = _float(parts[1].decode("ascii", "replace")) if len(parts) >= 2 else None
                    step = _float(parts[2].decode("ascii", "replace")) if len(parts) >= 3 else float(number_ - 1)
                    if value is None or step is None:
                        problems.note("metric line that is not 'timestamp value step'", f"metrics/{metric}:{number_}")
                        continue
                    buffer.add(metric, step, value)
    buffer.flush()
    if not out.series:
        out.warnings.append(f"{rel}: this MLflow run logged no metrics")
    out.warnings += problems.warnings()
    return out
