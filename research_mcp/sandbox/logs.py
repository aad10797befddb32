"""Reading a run's log.txt in bounded pieces: a tail, a line range, and the last traceback kept whole."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TRACEBACK_START", "failure_from_log", "read_range", "read_tail"]

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


def read_tail(path: Path, lines: int, max_chars: int) -> tuple[list[str], int | None]:
    """The last `lines` lines (fewer if `max_chars` runs out), extended back to the start of the last traceback
    when the tail would cut it. Returns the lines and the 1-based number of the first, when known."""
    if not path.exists():
        return [], None
    data = _tail_bytes(path, lines + 400, max(8 * max_chars, 1 << 20))
    text = data.decode("utf-8", errors="replace")
    all_lines = text.splitlines()
    whole_file = len(data) == path.stat().st_size
    if not whole_file and all_lines:
        all_lines = all_lines[1:]  # the first line may be cut in the middle
    chosen = all_lines[-lines:] if lines else []
    first = len(all_lines) - len(chosen)
    last_tb = max((i for i, line in enumerate(all_lines) if line.startswith(TRACEBACK_START)), default=None)
    if last_tb is not None and last_tb < first:
        first = last_tb  # a final traceback is always shown whole
        chosen = all_lines[first:]
    used, kept = 0, 0
    for line in reversed(chosen):
        used += len(line) + 1
        if used > max_chars and kept:
            break
        kept += 1
    chosen = chosen[len(chosen) - kept :]
    if whole_file:
        return chosen, len(all_lines) - len(chosen) + 1
    return chosen, None


def read_range(path: Path, offset: int, limit: int, max_chars: int) -> tuple[list[str], int | None, int]:
    """Lines `offset`.. (1-based), at most `limit` and about `max_chars`; also the next offset (None at the end)
    and the number of lines read so far in the file."""
    out: list[str] = []
    used = 0
    number = 0
    if not path.exists():
        return out, None, 0
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        for number, raw in enumerate(fh, start=1):
            if number < offset:
                continue
            line = raw.rstrip("\r\n")
            if len(out) >= limit or (out and used + len(line) + 1 > max_chars):
                return out, number, number - 1
            out.append(line)
            used += len(line) + 1
    return out, None, number


def failure_from_log(path: Path) -> str | None:
    """`cuda_oom` when the end of the log shows CUDA running out of memory."""
    if not path.exists():
        return None
    tail = _tail_bytes(path, 200, 256 << 10).decode("utf-8", errors="replace")
    return "cuda_oom" if any(marker in tail for marker in _CUDA_OOM) else None
