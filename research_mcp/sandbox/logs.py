"""Reading a run's log.txt in bounded pieces: a tail, a line range, and the last traceback kept whole."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["TRACEBACK_START", "count_lines", "failure_from_log", "line_cost", "read_range", "read_tail"]

TRACEBACK_START = "Traceback (most recent call last):"
_BLOCK = 64 << 10
_CUDA_OOM = (
    "CUDA out of memory",
    "torch.cuda.OutOfMemoryError",
    "torch.OutOfMemoryError",
    "CUBLAS_STATUS_ALLOC_FAILED",
)


def _tail_bytes(path: Path, lines: int, max_bytes: int) -> bytes:
    """At least the last `lines` lines of the file (or its last `max_bytes`), read backwards in blocks."""
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        start, data = end, b""
        while start > 0 and data.count(b"\n") <= lines and len(data) < max_bytes:
            step = min(_BLOCK, start)
            start -= step
            fh.seek(start)
            data = fh.read(step) + data
        return data


def line_cost(line: str) -> int:
    """Characters a line takes as an item of a JSON list, escapes counted as `json.dumps` writes them, with the
    indent, comma and newline of the answer's text (the SDK writes it indented)."""
    return len(json.dumps(line)) + 6


def clip(line: str, max_chars: int) -> str:
    """The line cut to fit `max_chars` as JSON, marked where it was cut: one line longer than a whole answer."""
    mark = f" [research-mcp: line cut, {len(line)} characters]"
    keep = max(0, max_chars - len(mark) - 8)
    while keep and line_cost(line[:keep] + mark) > max_chars:
        keep = keep * max_chars // line_cost(line[:keep] + mark) - 1 if keep > 1 else 0
    return line[: max(keep, 0)] + mark


def count_lines(path: Path) -> int:
    """Lines of the file: its newlines, plus one for a last line without one."""
    count, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _split(text: str) -> list[str]:
    """Lines split at newlines only (a progress bar's carriage returns stay inside its line), as `count_lines`
    counts them."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_tail(path: Path, lines: int, max_chars: int) -> list[str]:
    """The last `lines` lines (fewer if `max_chars` runs out, counted as JSON), extended back to the start of the
    last traceback when the tail would cut it."""
    if not path.exists():
        return []
    data = _tail_bytes(path, lines + 400, max(8 * max_chars, 1 << 20))
    all_lines = _split(data.decode("utf-8", errors="replace"))
    if len(data) < path.stat().st_size and all_lines:
        all_lines = all_lines[1:]  # the first line may be cut in the middle
    chosen = all_lines[-lines:] if lines else []
    first = len(all_lines) - len(chosen)
    last_tb = max((i for i, line in enumerate(all_lines) if line.startswith(TRACEBACK_START)), default=None)
    if last_tb is not None and last_tb < first:
        chosen = all_lines[last_tb:]  # a final traceback is always shown whole
    used, kept = 0, 0
    for line in reversed(chosen):
        used += line_cost(line)
        if used > max_chars:
            break
        kept += 1
    if not kept and chosen:
        return [clip(chosen[-1], max_chars)]
    return chosen[len(chosen) - kept :]


def read_range(path: Path, offset: int, limit: int, max_chars: int) -> tuple[list[str], int | None]:
    """Lines `offset`.. (1-based), at most `limit` and `max_chars` (counted as JSON); also the next offset (None
    at the end)."""
    out: list[str] = []
    used = 0
    if not path.exists():
        return out, None
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number < offset:
                continue
            line = raw.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
            if len(out) >= limit or (out and used + line_cost(line) > max_chars):
                return out, number
            if line_cost(line) > max_chars:
                line = clip(line, max_chars)
            out.append(line)
            used += line_cost(line)
    return out, None


def failure_from_log(path: Path) -> str | None:
    """`cuda_oom` when the end of the log shows CUDA running out of memory."""
    if not path.exists():
        return None
    tail = _tail_bytes(path, 200, 256 << 10).decode("utf-8", errors="replace")
    return "cuda_oom" if any(marker in tail for marker in _CUDA_OOM) else None
