"""What the run tools answer: a run's status with its last lines, files and next step, a page of its log, a page
of runs; every answer within the output budget, every path workspace-relative."""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from research_mcp.model import NextStep, ToolModel
from research_mcp.sandbox.logs import count_lines, line_cost, read_range, read_tail
from research_mcp.sandbox.models import Run, is_metric_file, is_plot

if TYPE_CHECKING:
    from research_mcp.sandbox.runs import RunManager

__all__ = [
    "CancelRunResult",
    "ListRunsResult",
    "RunLogsResult",
    "RunStatusResult",
    "SweepCounts",
    "last_line",
    "list_of",
    "logs_of",
    "status_of",
    "sweep_counts",
]

_STATUS_TAIL_LINES = 20
_STATUS_TAIL_CHARS = 4000
_PATHS_CHARS = 6000
"""Most characters the listed files of one status take; past it they are counted, not listed."""
_ENVELOPE_CHARS = 1000
"""Room kept in an answer for everything but its lines or runs."""
_LONG_TEXT = 500
"""A run's command or note longer than this is shortened in list_runs, and in run_status when its answer would
pass the budget otherwise."""

_WAIT = {
    "queued": "It waits for a free slot; this follows it for up to 50 s.",
    "starting": "It is starting; this follows it for up to 50 s.",
    "running": "It is still running; this waits up to 50 s for its end (run_logs shows its output so far).",
}
_FAILED = {
    "timeout": "Killed at its timeout: read how far it got, then raise timeout_s or make it faster or shorter.",
    "oom": "Killed for using more memory than its limit: raise memory_gb or lower the batch size.",
    "disk": "Killed for writing more than its disk limit: write less (fewer checkpoints), or raise "
    "RESEARCH_MCP_MAX_RUN_DISK_BYTES.",
    "cuda_oom": "The GPU ran out of memory: lower the batch size or model size, or use more GPUs.",
    "error": "Exited with an error: read the traceback, fix the code, run again with parent set to this run.",
}
_INTERPRETER_SIGNS = re.compile(r"bad interpreter|not found|No such file|Permission denied|cannot execute|Exec format")


def _none_of(value: object) -> bool:
    """An empty list of files, or no file left out: left out of the answer (absent reads as none)."""
    return not value


class RunStatusResult(ToolModel):
    run: Run
    log_tail: list[str] = Field(description="The last lines of output (a final traceback whole).")
    outputs: list[str] = Field(
        default_factory=list[str],
        exclude_if=_none_of,
        description="Files the run wrote (workspace paths), caches left out, other than its metric files and plots.",
    )
    outputs_not_listed: int = Field(0, exclude_if=_none_of, description="Files past the answer's budget.")
    metric_files: list[str] = Field(
        default_factory=list[str],
        exclude_if=_none_of,
        description="The metric files it wrote (final_info.json, JSON, CSV, ...).",
    )
    plots: list[str] = Field(
        default_factory=list[str],
        exclude_if=_none_of,
        description="The images it wrote (PNG, JPEG): read_file shows them.",
    )
    next_step: NextStep


class RunLogsResult(ToolModel):
    run_id: str
    lines: list[str]
    first_line: int | None = Field(description="Line number of the first line shown; null when none is.")
    lines_asked: int = Field(description="tail, or limit with offset.")
    lines_left_out: int = Field(description="Asked for but left out to stay within the output budget.")
    total_lines: int
    prev_offset: int | None = Field(description="Pass as offset to read the lines before these; null at the start.")
    next_offset: int | None = Field(description="Pass as offset to read on; null at the end.")
    size_bytes: int = Field(description="Size of log.txt.")
    capped: bool = Field(description="True when the log on disk was capped (its middle dropped).")


class SweepCounts(ToolModel):
    """A sweep at a glance: how many of its members are in each state, and what to call next."""

    id: str
    members: int
    counts: dict[str, int] = Field(description="State -> members in it.")
    cancelled_now: int | None = Field(None, exclude_if=_none_of, description="Members this call cancelled.")
    next_step: NextStep


class ListRunsResult(ToolModel):
    runs: list[Run] = Field(description="A command or note past 500 characters is shortened.")
    total: int
    next_offset: int | None = Field(description="Pass as offset for the next page.")
    sweep: SweepCounts | None = Field(None, exclude_if=_none_of, description="With sweep_id: its counts by state.")


class CancelRunResult(RunStatusResult):
    sweep: SweepCounts | None = Field(
        None, exclude_if=_none_of, description="For a sweep id: its counts (run is then its first member)."
    )


def _why_interpreter(runs: RunManager, run: Run) -> str:
    """Why the environment's interpreter did not start: a link of its bin/ that leads nowhere, and the end of the
    log when it says."""
    why = ""
    env = runs.python_env(run.id)
    links = [] if env is None else [Path(env.root, "bin", name) for name in ("python", "python3")]
    broken = next((link for link in links if link.is_symlink() and not link.exists()), None)
    if broken is not None:
        why = f"; its bin/{broken.name} leads to {os.readlink(broken)}, which does not exist"
    tail = read_tail(runs.run_dir(run.id) / "log.txt", 20, 2000)
    said = next((line.strip() for line in reversed(tail) if _INTERPRETER_SIGNS.search(line)), None)
    return why + (f"; the log says: {said[:300]}" if said else "")


def _next_step(runs: RunManager, run: Run, outputs: list[str], metrics: list[str], plots: list[str]) -> NextStep:
    if run.state in _WAIT:
        return NextStep(tool="run_status", arguments={"run_id": run.id, "wait_s": 50}, why=_WAIT[run.state])
    if run.state == "succeeded" and run.kind == "data" and run.config and "dataset" in run.config:
        name = str(run.config["dataset"])
        why = f"The dataset is ready: every run reads it at /data/{name}; see what it holds."
        return NextStep(tool="list_files", arguments={"path": f"datasets/{name}"}, why=why)
    if run.state == "succeeded":
        if metrics:
            why = "Done: read the metrics it wrote (metric_files)."
            return NextStep(tool="read_metrics", arguments={"source": run.id}, why=why)
        if outputs:
            return NextStep(tool="read_file", arguments={"path": outputs[0]}, why="Done: read what it wrote.")
        if plots:
            return NextStep(tool="read_file", arguments={"path": plots[0]}, why="Done: look at the plot it drew.")
        return NextStep(tool="run_logs", arguments={"run_id": run.id}, why="Done; it wrote no files, read its output.")
    if run.state == "cancelled":
        return NextStep(tool="list_runs", arguments={}, why="Cancelled; nothing of it is running.")
    if run.state == "lost":
        why = "The backend no longer knows this run (its container or supervisor vanished): see how far it got."
        return NextStep(tool="run_logs", arguments={"run_id": run.id}, why=why)
    if run.started_at is None and run.detail:  # nothing ran, so there is no traceback to read
        return NextStep(tool="lab_info", arguments={}, why=f"The run could not start: {run.detail}")
    if run.python_env is not None and run.exit_code in (126, 127) and run.failure == "error":
        why = (
            f"The environment's interpreter could not be started (exit {run.exit_code}){_why_interpreter(runs, run)}; "
            "make python_env from an interpreter the sandbox can run, not fix the code."
        )
        return NextStep(tool="run_logs", arguments={"run_id": run.id, "tail": 20}, why=why)
    why = _FAILED.get(run.failure or "error", _FAILED["error"])
    return NextStep(tool="run_logs", arguments={"run_id": run.id}, why=why)


def _within(paths: list[str], budget: int) -> list[str]:
    used, kept = 0, list[str]()
    for path in paths:
        used += line_cost(path)
        if used > budget:
            break
        kept.append(path)
    return kept


def status_of(runs: RunManager, run_id: str, max_chars: int) -> RunStatusResult:
    """The run with its last lines, files and next step, within `max_chars` as the indented text of the answer:
    past it, a long command or note is shortened, then the oldest lines of the tail are dropped."""
    found = _status(runs, run_id)
    if _text_size(found) > max_chars:
        found.run = _shortened(found.run)
    while found.log_tail and _text_size(found) > max_chars:
        found.log_tail = found.log_tail[1:]
    return found


def _text_size(model: ToolModel) -> int:
    return len(model.model_dump_json(indent=2))


def _status(runs: RunManager, run_id: str) -> RunStatusResult:
    run = runs.get(run_id)
    tail = read_tail(runs.run_dir(run_id) / "log.txt", _STATUS_TAIL_LINES, _STATUS_TAIL_CHARS)
    found = runs.outputs(run_id, limit=5000)
    images = [path for path in found if is_plot(path)]
    metric = [path for path in found if not is_plot(path) and is_metric_file(path)]
    plots = _within(images, _PATHS_CHARS // 4)
    metrics = _within(metric, _PATHS_CHARS // 4)
    outputs = _within([path for path in found if not is_plot(path) and not is_metric_file(path)], _PATHS_CHARS // 2)
    return RunStatusResult(
        run=run,
        log_tail=tail,
        outputs=outputs,
        outputs_not_listed=len(found) - len(outputs) - len(metrics) - len(plots),
        metric_files=metrics,
        plots=plots,
        next_step=_next_step(runs, run, outputs, metrics, plots),
    )


def last_line(runs: RunManager, run_id: str) -> tuple[Run, str]:
    """The run and the last line of its log: what a waiting call checks every quarter second."""
    lines = read_tail(runs.run_dir(run_id) / "log.txt", 1, 1000)
    return runs.get(run_id), lines[-1] if lines else ""


def logs_of(runs: RunManager, run_id: str, tail: int, offset: int | None, limit: int, max_chars: int) -> RunLogsResult:
    """The last `tail` lines, or `limit` lines from `offset`, as many as `max_chars` holds, with where they sit in
    the log and the offsets to page back and on."""
    runs.get(run_id)  # a clear error for an unknown id
    path = runs.run_dir(run_id) / "log.txt"
    size = path.stat().st_size if path.exists() else 0
    capped = False
    if size:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            capped = view.find(b"[research-mcp: log capped") >= 0
    total = count_lines(path) if size else 0
    budget = max(max_chars - _ENVELOPE_CHARS, 1000)
    if offset is None:
        lines = read_tail(path, tail, budget)
        first = total - len(lines) + 1
        asked, wanted, next_offset = tail, min(tail, total), None
    else:
        lines, next_offset = read_range(path, offset, limit, budget)
        first = offset
        asked, wanted = limit, max(0, min(limit, total - offset + 1))
    return RunLogsResult(
        run_id=run_id,
        lines=lines,
        first_line=first if lines else None,
        lines_asked=asked,
        lines_left_out=max(0, wanted - len(lines)),
        total_lines=total,
        prev_offset=max(1, first - max(len(lines), 1)) if lines and first > 1 else None,
        next_offset=next_offset,
        size_bytes=size,
        capped=capped,
    )


def _shortened(run: Run) -> Run:
    long = {
        name: f"{value[:_LONG_TEXT]} [... {len(value) - _LONG_TEXT} more characters]"
        for name, value in (("command", run.command), ("note", run.note))
        if value is not None and len(value) > _LONG_TEXT + 40
    }
    return run.model_copy(update=long) if long else run


def sweep_counts(runs: RunManager, sweep_id: str, cancelled_now: int | None = None) -> SweepCounts:
    """The sweep's members by state, and the next call: follow it while members are active, else read one's
    metrics (then compare_runs on the sweep id)."""
    counts = runs.sweep_counts(sweep_id)
    members = sum(counts.values())
    active = sum(counts.get(state, 0) for state in ("queued", "starting", "running"))
    if active:
        why = f"{active} of {members} members are still queued or running; this shows their states."
        step = NextStep(tool="list_runs", arguments={"sweep_id": sweep_id}, why=why)
    else:
        first, _ = runs.list("succeeded", None, None, 1, 0, sweep_id)
        if first:
            why = "Done: read one member's metric names, then compare_runs with sweep_id groups them by config."
            step = NextStep(tool="read_metrics", arguments={"source": first[0].id}, why=why)
        else:
            why = "Every member ended and none succeeded: read a member's log."
            step = NextStep(tool="list_runs", arguments={"sweep_id": sweep_id, "status": "failed"}, why=why)
    return SweepCounts(id=sweep_id, members=members, counts=counts, cancelled_now=cancelled_now, next_step=step)


def list_of(
    runs: RunManager,
    state: str | None,
    label: str | None,
    parent: str | None,
    limit: int,
    offset: int,
    max_chars: int,
    sweep_id: str | None = None,
) -> ListRunsResult:
    """A page of runs, newest first (a sweep's members in their order, with its counts): at most `limit`, and as
    many as `max_chars` holds (at least one)."""
    sweep = None if sweep_id is None else sweep_counts(runs, sweep_id)
    found, total = runs.list(state, label, parent, limit, offset, sweep_id)
    budget, used, page = max_chars - _ENVELOPE_CHARS, 0, list[Run]()
    for run in map(_shortened, found):
        text = run.model_dump_json(indent=2)
        used += len(text) + 4 * text.count("\n") + 6  # as a list item in the indented answer
        if page and used > budget:
            break
        page.append(run)
    end = offset + len(page)
    return ListRunsResult(runs=page, total=total, next_offset=end if end < total else None, sweep=sweep)
