"""Where metrics come from: a sandbox run (by id) or a workspace path, and the metric files found there.

A run's files are what it wrote: everything under `runs/<id>/outputs/`, the files of its working copy
`runs/<id>/work/` that are new or changed (an AI Scientist script writes `run_1/final_info.json` next to itself),
and its `log.txt` when MLPerf `:::MLLOG` lines are in it. A folder is searched (depth and file count bounded) for
metric files by name; an MLflow run folder (`meta.yaml` beside `metrics/`) counts as one source of metrics.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from research_mcp.errors import BadInputError, NotFoundError
from research_mcp.tools.metrics._records import FileMetrics, Limits
from research_mcp.workspace import Workspace

if TYPE_CHECKING:
    from research_mcp.store import Store

__all__ = ["RunBook", "RunRecord", "Source", "discover", "read_file_metrics", "read_source", "resolve"]

_MAX_FILES = 500
_MAX_DEPTH = 8
_SNIFF_BYTES = 1 << 20
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
_NOT_METRICS = frozenset(
    {"spec.json", "status.json", "manifest.json", "package.json", "package-lock.json", "tsconfig.json",
     "composer.json", "launch.json", "settings.json"}
)  # fmt: skip
_SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".mypy_cache", ".pytest_cache",
     ".ruff_cache", ".tox", ".ipynb_checkpoints", ".research"}
)  # fmt: skip


@dataclass(frozen=True)
class RunRecord:
    """A sandbox run as the store keeps it: what grouping needs."""

    id: str
    label: str | None
    config: dict[str, Any] | None
    seed: int | None
    state: str


class RunBook:
    """Reads run records from a workspace's state store (never writes)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, run_id: str) -> RunRecord | None:
        row = (
            self.store.connection()
            .execute("SELECT id, label, config, seed, state FROM runs WHERE id = ?", (run_id,))
            .fetchone()
        )
        return None if row is None else _record(row)

    def labels(self) -> list[str]:
        """Every label a run of the workspace has, sorted."""
        rows = self.store.connection().execute("SELECT DISTINCT label FROM runs WHERE label IS NOT NULL")
        return sorted(str(row[0]) for row in rows)

    def with_labels(self, labels: list[str]) -> list[RunRecord]:
        marks = ", ".join("?" for _ in labels)
        rows = self.store.connection().execute(
            f"SELECT id, label, config, seed, state FROM runs WHERE label IN ({marks}) ORDER BY created_at, id", labels
        )
        return [_record(row) for row in rows]

    def in_sweep(self, sweep_id: str) -> list[RunRecord] | None:
        """The members of a sweep in the order they were asked for; None when there is no such sweep."""
        conn = self.store.connection()
        if conn.execute("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)).fetchone() is None:
            return None
        rows = conn.execute(
            "SELECT id, label, config, seed, state FROM runs WHERE sweep_id = ? ORDER BY created_at, id", (sweep_id,)
        )
        return [_record(row) for row in rows]


def _record(row: sqlite3.Row) -> RunRecord:
    config: Any = json.loads(row["config"]) if row["config"] else None
    return RunRecord(
        id=str(row["id"]),
        label=row["label"],
        config=config if isinstance(config, dict) else None,  # pyright: ignore[reportUnknownArgumentType]
        seed=row["seed"],
        state=str(row["state"]),
    )


@dataclass(frozen=True)
class Source:
    """A resolved `source`: a run (id and record) or a workspace path."""

    name: str
    path: Path
    run: RunRecord | None = None


def resolve(ws: Workspace, source: str, book: Callable[[], RunBook | None]) -> Source:
    """A run id (as run_experiment and list_runs give it) or a path relative to the workspace."""
    text = source.strip()
    if _RUN_ID.match(text):
        found = book()
        record = found.get(text) if found is not None else None
        if record is not None:
            return Source(text, ws.root / "runs" / text, record)
        if not (ws.root / "runs" / text).is_dir():
            raise BadInputError(f"No run {text!r} in this workspace. Call list_runs to see the run ids.")
        return Source(text, ws.root / "runs" / text)
    target = ws.resolve(text, must_exist=False)
    if not target.exists():
        raise NotFoundError(text, "Give a run id (list_runs) or a workspace path to a metric file or folder.")
    return Source(ws.relative(target), target)


def _sniff_mllog(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return b":::MLLOG" in fh.read(_SNIFF_BYTES)
    except OSError:
        return False


def _kind(path: Path) -> str | None:
    name = path.name
    lower = name.lower()
    if "tfevents" in lower:
        return "tensorboard"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lower.endswith(".json"):
        return None if lower in _NOT_METRICS else "json"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".tsv"):
        return "tsv"
    if lower.endswith((".txt", ".log")) and _sniff_mllog(path):
        return "mllog"
    return None


def _is_mlflow_run(folder: Path) -> bool:
    return (folder / "meta.yaml").is_file() and (folder / "metrics").is_dir()


def discover(top: Path, notes: list[str]) -> list[tuple[Path, str]]:
    """Metric files (and MLflow run folders) under `top`, sorted, bounded; a file is itself."""
    if top.is_file():
        kind = _kind(top)
        if kind is None:
            raise BadInputError(
                f"{top.name!r} is not a metric file this reads (final_info/JSON, JSONL, CSV/TSV, TensorBoard "
                "tfevents, MLflow mlruns/, MLPerf :::MLLOG log)."
            )
        return [(top, kind)]
    if _is_mlflow_run(top):
        return [(top, "mlflow")]
    if _is_run_folder(top):
        return _run_files(top, notes)
    found: list[tuple[Path, str]] = []
    for folder, dirs, files in os.walk(top):
        here = Path(folder)
        depth = len(here.relative_to(top).parts)
        kept: list[str] = []
        for name in sorted(dirs):
            child = here / name
            if name in _SKIP_DIRS or child.is_symlink():
                continue
            if _is_mlflow_run(child):
                found.append((child, "mlflow"))
            elif _is_run_folder(child):
                found += _run_files(child, notes)
            elif depth < _MAX_DEPTH:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            path = here / name
            if path.is_symlink():
                continue
            kind = _kind(path)
            if kind is not None:
                found.append((path, kind))
        if len(found) > _MAX_FILES:
            notes.append(f"stopped after {_MAX_FILES} metric files; name a subfolder to read the others")
            found = found[:_MAX_FILES]
            break
    return sorted(found, key=lambda item: str(item[0]))


def _run_files(folder: Path, notes: list[str]) -> list[tuple[Path, str]]:
    from research_mcp.sandbox.runs import changed_files

    found: list[tuple[Path, str]] = []
    if (folder / "outputs").is_dir():
        found += discover(folder / "outputs", notes)
    if (folder / "work").is_dir() and (folder / "code").is_dir():
        for rel in changed_files(folder / "code", folder / "work"):
            path = folder / rel
            kind = _kind(path)
            if kind is not None and path.is_file():
                found.append((path, kind))
    log = folder / "log.txt"
    if log.is_file() and _sniff_mllog(log):
        found.append((log, "mllog"))
    return found[:_MAX_FILES]


def _is_run_folder(folder: Path) -> bool:
    return (folder / "code").is_dir() and (folder / "outputs").is_dir()


def read_file_metrics(ws: Workspace, path: Path, kind: str, limits: Limits) -> FileMetrics:
    """One file's metrics, by kind, through the fast path where there is one."""
    from research_mcp.tools.metrics import _arrow, _text, _tfevents

    rel = ws.relative(path)
    try:
        if kind == "tensorboard":
            return _tfevents.read_tfevents(path, rel, limits)
        if kind == "mlflow":
            return _text.read_mlflow_run(path, rel, limits)
        if path.stat().st_size == 0:
            return FileMetrics(rel, kind, warnings=[f"{rel}: empty file"])
        if kind == "json":
            return _text.read_json(path, rel, limits)
        if kind == "mllog":
            return _text.read_mllog(path, rel, limits)
        if kind == "jsonl":
            return _arrow.fast_jsonl(path, rel, limits) or _text.read_jsonl(path, rel, limits)
        delimiter = "\t" if kind == "tsv" else _delimiter(path)
        return _arrow.fast_csv(path, rel, limits, delimiter) or _text.read_csv(path, rel, limits, delimiter)
    except OSError as exc:
        return FileMetrics(rel, kind, warnings=[f"{rel}: cannot be read ({exc.strerror or exc})"])


def _delimiter(path: Path) -> str:
    with path.open("rb") as fh:
        first = fh.readline(1 << 16)
    return "\t" if b"\t" in first and b"," not in first else ","


def read_source(ws: Workspace, source: Source, limits: Limits, notes: list[str]) -> list[FileMetrics]:
    files = discover(source.path, notes)
    if not files and source.path.is_dir():
        notes.append(f"no metric files under {source.name!r}")
    found: list[FileMetrics] = []
    for i, (path, kind) in enumerate(files):
        if limits.over():
            notes.append(f"{len(files) - i} metric files not read: the time budget of one call ran out; name fewer")
            break
        found.append(read_file_metrics(ws, path, kind, limits))
    return found
