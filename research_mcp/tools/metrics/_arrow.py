"""The fast path for clean CSV/TSV and JSONL files: pyarrow's parsers, one block of the file at a time.

The file is cut into blocks of a few MiB at line ends; pyarrow parses each in C++ and the block is summarised and
dropped, so memory stays bounded and a million-row log is summarised faster than pandas reads it. CSV is parsed on
the calling thread: the threaded reader let go of its last reference to the block's bytes and the bad-row
callback (Python objects) on a pool thread after `read_csv` had returned, and when the interpreter was shutting
down by then, that thread's wait for the GIL aborted the process ("terminate called without an active exception").
It is strict: a column whose type changes, a line that is not JSON, a line over a MiB. On any such surprise these
functions return None and the tolerant line readers in `_text` read the file instead, saying what they skipped
(rows of the wrong width are skipped here and counted).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from research_mcp.tools.metrics._records import TIME_BUDGET_NOTE, FileMetrics, Limits, lib, pick_step_key
from research_mcp.tools.metrics._series import Series

__all__ = ["fast_csv", "fast_jsonl"]

logger = logging.getLogger(__name__)

_BLOCK_BYTES = 4 << 20
_HEAD_BYTES = 1 << 20
_MAX_TAIL = 1 << 20


class _GiveUp(Exception):
    """The file needs the tolerant line reader (a very long line, a type that changes between blocks)."""


def _blocks(path: Path, skip_header: bool, limits: Limits, out: FileMetrics) -> Iterator[bytes]:
    """The file in blocks of about `_BLOCK_BYTES` that end at a line end, so each parses on its own.

    pyarrow's own streaming readers (`open_csv`, `open_json`) were measured to grow in memory with the file
    (about 100 MiB more over 400 MB), so the file is cut here and each block parsed and dropped in turn."""
    with path.open("rb") as fh:
        if skip_header:
            fh.readline()
        while True:
            if limits.over():
                out.warnings.append(f"{out.path}: {TIME_BUDGET_NOTE} (at byte {fh.tell()})")
                return
            block = fh.read(_BLOCK_BYTES)
            if not block:
                return
            if not block.endswith(b"\n"):
                rest = fh.readline(_MAX_TAIL)
                if len(rest) == _MAX_TAIL and not rest.endswith(b"\n"):
                    raise _GiveUp("a line of over a MiB")
                block += rest
            yield block


def fast_csv(path: Path, rel: str, limits: Limits, delimiter: str) -> FileMetrics | None:
    pa, pcsv = lib("pyarrow"), lib("pyarrow.csv")
    serial = pcsv.ReadOptions(use_threads=False)  # see the module's docstring

    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    cut = head.rfind(b"\n")
    if cut <= 0 or b"\x00" in head:
        return None
    try:
        sample = pcsv.read_csv(
            pa.BufferReader(head[: cut + 1]),
            read_options=serial,
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True),
        )
    except pa.ArrowException:
        return None
    names = sample.column_names
    if len(set(names)) != len(names) or any(not name or _numeric_name(name) for name in names):
        return None  # duplicate or missing header names, or no header row: the line reader names the columns
    numeric = [name for name, kind in zip(names, sample.schema.types, strict=True) if _is_number(kind)]
    if not numeric or any(_has_numbers(sample.column(name)) for name in names if name not in numeric):
        return None  # a column of numbers with text among them: the line reader counts and names the text
    out = FileMetrics(rel, "tsv" if delimiter == "\t" else "csv")
    bad_rows: list[int] = []

    def on_bad_row(row: Any) -> str:
        bad_rows.append(0)
        return "skip"

    header = head[: head.find(b"\n") + 1]
    parse = pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_bad_row)
    convert = pcsv.ConvertOptions(
        include_columns=numeric, column_types={name: pa.float64() for name in numeric}, null_values=[""]
    )

    def batches() -> Iterator[Any]:
        for block in _blocks(path, True, limits, out):
            table = pcsv.read_csv(
                pa.BufferReader(header + block), read_options=serial, parse_options=parse, convert_options=convert
            )
            yield from table.to_batches()

    try:
        _summarise(batches(), out, limits, pick_step_key(numeric))
    except (pa.ArrowException, OSError, _GiveUp) as exc:
        logger.debug("fast CSV path gave up on %s: %s", rel, exc)
        return None
    if bad_rows:
        out.warnings.append(f"{rel}: {len(bad_rows)} rows with the wrong number of fields skipped")
    return out


def fast_jsonl(path: Path, rel: str, limits: Limits) -> FileMetrics | None:
    pa, pjson, pt = lib("pyarrow"), lib("pyarrow.json"), lib("pyarrow.types")

    out = FileMetrics(rel, "jsonl")
    numeric: set[str] = set()
    other: set[str] = set()

    def batches() -> Iterator[Any]:
        for block in _blocks(path, False, limits, out):
            table = pjson.read_json(pa.BufferReader(block))
            for name, kind in _leaf_types(table.schema):
                (numeric if pt.is_integer(kind) or pt.is_floating(kind) or pt.is_null(kind) else other).add(name)
            if numeric & other:
                raise _GiveUp(f"columns change type between blocks: {sorted(numeric & other)[:3]}")
            yield from table.to_batches()

    try:
        stream = batches()
        first = next(stream, None)
        if first is None:
            return None
        names = first.schema.names
        if "key" in names and "value" in names and ("time_ms" in names or "metadata" in names):
            return None  # an MLPerf log as JSONL: its `value` column mixes types; the record reader handles it
        step_key = pick_step_key([name for name, _ in _leaf_types(first.schema)])
        _summarise(itertools.chain([first], stream), out, limits, step_key)
    except (pa.ArrowException, OSError, _GiveUp) as exc:
        logger.debug("fast JSONL path gave up on %s: %s", rel, exc)
        return None
    return out


def _has_numbers(column: Any) -> bool:
    pc, pt = lib("pyarrow.compute"), lib("pyarrow.types")
    if not (pt.is_string(column.type) or pt.is_large_string(column.type)):
        return False
    found = pc.match_substring_regex(column, r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
    return bool(pc.any(found).as_py())


def _numeric_name(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def _is_number(kind: Any) -> bool:
    pt = lib("pyarrow.types")
    return bool(pt.is_integer(kind) or pt.is_floating(kind) or pt.is_null(kind))


def _leaf_types(schema: Any) -> list[tuple[str, Any]]:
    """(dotted name, type) of every leaf field, struct fields flattened."""
    pt = lib("pyarrow.types")
    found: list[tuple[str, Any]] = []

    def walk(name: str, kind: Any) -> None:
        if pt.is_struct(kind):
            for i in range(kind.num_fields):
                child = kind.field(i)
                walk(f"{name}.{child.name}", child.type)
        else:
            found.append((name, kind))

    for field in schema:
        walk(field.name, field.type)
    return found


def _columns(batch: Any) -> list[tuple[str, Any]]:
    """Leaf columns of a batch, struct fields flattened to dotted names; only numbers (ints, floats, nulls)."""
    pt = lib("pyarrow.types")
    found: list[tuple[str, Any]] = []

    def walk(name: str, column: Any) -> None:
        kind = column.type
        if pt.is_struct(kind):
            for i in range(kind.num_fields):
                walk(f"{name}.{kind.field(i).name}", column.field(i))
        elif pt.is_integer(kind) or pt.is_floating(kind):
            found.append((name, column))

    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        walk(name, column)
    return found


def _numpy(array: Any, dtype: str = "float64") -> Any:
    """A null-free float64 (or uint64) arrow array as a numpy view of its data buffer. (pyarrow's `to_numpy`
    imports pandas when it is installed, a third of a second on the first call, and pandas is no dependency.)"""
    import numpy as np

    if array.null_count:
        raise ValueError("an array with nulls has no plain numpy view")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * 8)


def _summarise(reader: Any, out: FileMetrics, limits: Limits, step_key: str | None) -> None:
    import numpy as np

    pa, pc = lib("pyarrow"), lib("pyarrow.compute")

    rows = 0
    last_step = 0.0
    for batch in reader:
        columns = dict(_columns(batch))
        n = batch.num_rows
        if step_key is not None and step_key in columns:
            step_col = pc.cast(columns.pop(step_key), pa.float64())
            if step_col.null_count:
                step_col = pc.fill_null_forward(step_col).fill_null(last_step)
            steps = _numpy(step_col)
        elif step_key is not None:
            columns.pop(step_key, None)
            steps = np.full(n, last_step)
        else:
            steps = np.arange(rows, rows + n, dtype=np.float64)
        if n:
            last_step = float(steps[-1])
        rows += n
        for name, column in columns.items():
            values = pc.cast(column, pa.float64())
            if values.null_count == n:
                continue
            step_of = steps
            if values.null_count:
                step_of = steps[_numpy(pc.indices_nonzero(values.is_valid()), "uint64")]
                values = values.drop_null()
            series = out.series.get(name)
            if series is None:
                series = out.series[name] = Series(limits.max_points)
            series.add(step_of, _numpy(values))
    if rows == 0:
        out.warnings.append(f"{out.path}: no rows")
