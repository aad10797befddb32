"""What the run tools answer: a run's status with its last lines and files, a page of its log, a list of runs."""

from __future__ import annotations

import mmap
from typing import TYPE_CHECKING

from pydantic import Field

from research_mcp.model import ToolModel
from research_mcp.sandbox.logs import read_range, read_tail
from research_mcp.sandbox.models import Run, is_metric_file

if TYPE_CHECKING:
    from research_mcp.sandbox.runs import RunManager

__all__ = ["ListRunsResult", "RunLogsResult", "RunStatusResult", "last_line", "logs_of", "status_of"]

_STATUS_TAIL_LINES = 20
_STATUS_TAIL_CHARS = 4000

_NEXT = {
    "queued": "Waiting for a free slot. Call run_status with wait_s to follow it.",
    "starting": "Starting. Call run_status with wait_s to follow it.",
    "running": "Still running. Call run_status with wait_s (up to 50 s) again, or run_logs for its output.",
    "succeeded": "Done. Read its results with read_file on the files listed (paths are under the run's folder).",
    "cancelled": "Cancelled; nothing of it is running.",
    "lost": "The backend no longer knows this run (its container or supervisor vanished). Start it again.",
}
_FAILED = {
    "timeout": "Killed at its timeout: raise timeout_s, or make it faster or shorter.",
    "oom": "Killed for using more memory than its limit: raise memory_gb or lower the batch size.",
    "disk": "Killed for writing more than its disk limit: write less (fewer checkpoints), or raise "
    "RESEARCH_MCP_MAX_RUN_DISK_BYTES.",
    "cuda_oom": "The GPU ran out of memory: lower the batch size or model size, or use more GPUs.",
    "error": "Exited with an error: read the traceback in log_tail or run_logs, fix the code, run again with "
    "parent set to this run.",
}


class RunStatusResult(ToolModel):
    run: Run
    log_tail: list[str] = Field(description="The last lines of output (a final traceback whole).")
    outputs: list[str] = Field(description="Files the run wrote, relative to its folder.")
    metric_files: list[str] = Field(description="Of those, the metric files (final_info.json, JSON, CSV, ...).")
    next_step: str = Field(description="What to do now.")


class RunLogsResult(ToolModel):
    run_id: str
    lines: list[str]
    first_line: int | None = Field(description="1-based number of the first line shown, when known.")
    next_offset: int | None = Field(description="Pass as offset to read on; None at the end.")
    size_bytes: int = Field(description="Size of log.txt.")
    capped: bool = Field(description="True when the log on disk was capped (its middle dropped).")


class ListRunsResult(ToolModel):
    runs: list[Run]
    total: int
    next_offset: int | None = Field(description="Pass as offset for the next page.")


def status_of(runs: RunManager, run_id: str) -> RunStatusResult:
    run = runs.get(run_id)
    tail, _ = read_tail(runs.run_dir(run_id) / "log.txt", _STATUS_TAIL_LINES, _STATUS_TAIL_CHARS)
    outputs = runs.outputs(run_id)
    if run.state == "failed" and run.started_at is None and run.detail:
        hint = f"The run could not start: {run.detail}"  # nothing ran, so there is no traceback to read
    elif run.state == "failed":
        hint = _FAILED.get(run.failure or "error", _FAILED["error"])
    else:
        hint = _NEXT[run.state]
    return RunStatusResult(
        run=run,
        log_tail=tail,
        outputs=outputs,
        metric_files=[path for path in outputs if is_metric_file(path)],
        next_step=hint,
    )


def last_line(runs: RunManager, run_id: str) -> tuple[Run, str]:
    """The run and the last line of its log: what a waiting call checks every quarter second."""
    lines, _ = read_tail(runs.run_dir(run_id) / "log.txt", 1, 1000)
    return runs.get(run_id), lines[-1] if lines else ""


def logs_of(runs: RunManager, run_id: str, tail: int, offset: int | None, limit: int, max_chars: int) -> RunLogsResult:
    runs.get(run_id)  # a clear error for an unknown id
    path = runs.run_dir(run_id) / "log.txt"
    size = path.stat().st_size if path.exists() else 0
    capped = False
    if size:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            capped = view.find(b"[research-mcp: log capped") >= 0
    if offset is None:
        lines, first = read_tail(path, tail, max_chars)
        return RunLogsResult(
            run_id=run_id, lines=lines, first_line=first, next_offset=None, size_bytes=size, capped=capped
        )
    lines, next_offset, _ = read_range(path, offset, limit, max_chars)
    return RunLogsResult(
        run_id=run_id, lines=lines, first_line=offset, next_offset=next_offset, size_bytes=size, capped=capped
    )
