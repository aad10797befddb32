"""The three measurements: cold start, trivial tool calls, and the size of the `tools/list` answer.

Every server is spawned through the SDK's stdio client, so the SDK's shutdown sequence (close stdin, wait, then
kill the process group) ends it; every wait sits under `anyio.fail_after`, and the PID of every spawned server is
recorded so the caller can check that none is left running.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import Implementation, ListToolsResult

__all__ = [
    "CALL_TIMEOUT_S",
    "SESSION_TIMEOUT_S",
    "Launch",
    "Spawned",
    "child_pids",
    "cold_start",
    "list_tools_as",
    "model_chars",
    "percentile",
    "still_running",
    "summary",
    "tool_calls",
    "tools_list_size",
]

SESSION_TIMEOUT_S = 60.0
"""Longest one spawn, handshake, `tools/list` and shutdown may take (the SDK's own shutdown waits up to 6 s)."""
CALL_TIMEOUT_S = 10.0
"""Longest one trivial tool call may take."""


@dataclass(frozen=True)
class Launch:
    """How to start one server: a label for the report and the argv the stdio client spawns."""

    label: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict[str, str])

    def params(self) -> StdioServerParameters:
        return StdioServerParameters(command=self.argv[0], args=self.argv[1:], cwd=self.cwd, env=self.env)


@dataclass
class Spawned:
    """Every server process the bench started, by PID and command line, so leftovers can be found."""

    processes: list[tuple[int, str]] = field(default_factory=list[tuple[int, str]])

    def note_new_children(self, before: set[int]) -> None:
        for pid in sorted(child_pids() - before):
            self.processes.append((pid, _cmdline(pid)))


def child_pids() -> set[int]:
    """PIDs of this process's live children (Linux: read from /proc; elsewhere an empty set)."""
    me = str(os.getpid())
    found: set[int] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        state_ppid = _state_and_ppid(entry.name)
        if state_ppid is not None and state_ppid[0] != "Z" and state_ppid[1] == me:
            found.add(int(entry.name))
    return found


def still_running(processes: Sequence[tuple[int, str]]) -> list[int]:
    """The recorded servers that are still alive (same PID, same command line, not a zombie)."""
    alive: list[int] = []
    for pid, cmdline in processes:
        state_ppid = _state_and_ppid(str(pid))
        if state_ppid is not None and state_ppid[0] != "Z" and _cmdline(pid) == cmdline:
            alive.append(pid)
    return alive


def _state_and_ppid(pid: str) -> tuple[str, str] | None:
    try:
        stat = Path("/proc", pid, "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name in parentheses may hold spaces
    return fields[0], fields[1]


def _cmdline(pid: int) -> str:
    try:
        return Path("/proc", str(pid), "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated between the closest ranks, as numpy does by default."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples_s: Sequence[float]) -> dict[str, Any]:
    """Milliseconds: count, min, p50 (= median), p90, p99, max, and the raw samples."""
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "min_ms": min(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "samples_ms": [round(x, 4) for x in ms],
    }


@asynccontextmanager
async def _session(launch: Launch, errlog: TextIO, client_name: str | None = None) -> AsyncGenerator[ClientSession]:
    info = None if client_name is None else Implementation(name=client_name, version="0")
    async with (
        stdio_client(launch.params(), errlog=errlog) as (read, write),
        ClientSession(read, write, client_info=info) as session,
    ):
        await session.initialize()
        yield session


async def _start_once(launch: Launch, errlog: TextIO, spawned: Spawned) -> tuple[float, ListToolsResult]:
    """Seconds from just before the spawn to the `tools/list` answer, and that answer. Shutdown is not timed."""
    before = child_pids()
    with anyio.fail_after(SESSION_TIMEOUT_S):
        start = time.perf_counter()
        async with _session(launch, errlog) as session:
            listed = await session.list_tools()
            elapsed = time.perf_counter() - start
            spawned.note_new_children(before)
    return elapsed, listed


async def cold_start(
    launches: Sequence[Launch], runs: int, errlog: TextIO, spawned: Spawned
) -> tuple[dict[str, list[float]], dict[str, ListToolsResult]]:
    """`runs` timed starts of each launch, interleaved: iteration i rotates the order by i, so no launch always
    goes first. One untimed start of each comes before, to warm the page cache and the bytecode caches."""
    times: dict[str, list[float]] = {launch.label: [] for launch in launches}
    answers: dict[str, ListToolsResult] = {}
    for launch in launches:
        _, answers[launch.label] = await _start_once(launch, errlog, spawned)
    for i in range(runs):
        shift = i % len(launches)
        for launch in [*launches[shift:], *launches[:shift]]:
            elapsed, _ = await _start_once(launch, errlog, spawned)
            times[launch.label].append(elapsed)
    return times, answers


@dataclass(frozen=True)
class Call:
    """One kind of timed call: which server (0 research, 1 baseline), which tool, with which arguments."""

    label: str
    server: int
    tool: str
    arguments: dict[str, Any]


async def tool_calls(
    research: Launch, baseline: Launch, calls: Sequence[Call], count: int, warmup: int, errlog: TextIO, spawned: Spawned
) -> dict[str, list[float]]:
    """Both servers open at once; each round makes every call once, in an order rotated by the round number.

    The calls go through `ClientSession.call_tool`, which also checks structured content against the tool's
    outputSchema, as any client built on the SDK does; both servers return structured content, so both pay it.
    """
    times: dict[str, list[float]] = {call.label: [] for call in calls}
    before = child_pids()
    with anyio.fail_after(SESSION_TIMEOUT_S):
        async with _session(research, errlog) as ours, _session(baseline, errlog) as theirs:
            spawned.note_new_children(before)
            sessions = (ours, theirs)
            for session in sessions:
                await session.list_tools()  # call_tool would list them on its first call to find the outputSchema
            for i in range(warmup + count):
                shift = i % len(calls)
                for call in [*calls[shift:], *calls[:shift]]:
                    with anyio.fail_after(CALL_TIMEOUT_S):
                        start = time.perf_counter()
                        result = await sessions[call.server].call_tool(call.tool, call.arguments)
                        elapsed = time.perf_counter() - start
                    if result.is_error:
                        raise RuntimeError(f"{call.label}: the tool failed: {result.content}")
                    if i >= warmup:
                        times[call.label].append(elapsed)
    return times


def _chars(value: Any) -> int:
    """Characters of a value as compact JSON, the way the SDK writes it on the wire."""
    return 0 if value is None else len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def model_chars(tool: dict[str, Any]) -> int:
    """What a client puts in its model's context for one listed tool (a `tools/list` entry as JSON): the characters
    of its name and description plus its input schema as `json.dumps` writes it by default (`, ` and `: `, ASCII
    escaped), the larger of the usual ways a client re-serialises it."""
    schema = tool.get("inputSchema")
    return len(tool["name"]) + len(tool.get("description") or "") + (0 if schema is None else len(json.dumps(schema)))


def tools_list_size(listed: ListToolsResult, toolsets: dict[str, str] | None = None) -> dict[str, Any]:
    """Characters of the whole answer, of its `tools` array, and per tool of each part the model reads; with
    `toolsets` (tool name -> toolset), the tools and model characters of each toolset."""
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_unset=True) for tool in listed.tools]
    per_tool: list[dict[str, Any]] = [
        {
            "name": tool["name"],
            "toolset": (toolsets or {}).get(tool["name"], "?"),
            "total": _chars(tool),
            "model": model_chars(tool),
            "description": len(tool.get("description") or ""),
            "inputSchema": _chars(tool.get("inputSchema")),
            "outputSchema": _chars(tool.get("outputSchema")),
        }
        for tool in tools
    ]
    by_toolset: dict[str, dict[str, int]] = {}
    for tool in per_tool:
        entry = by_toolset.setdefault(tool["toolset"], {"tools": 0, "model": 0, "total": 0})
        entry["tools"] += 1
        entry["model"] += tool["model"]
        entry["total"] += tool["total"]
    answer = len(listed.model_dump_json(by_alias=True, exclude_unset=True))
    model = sum(tool["model"] for tool in per_tool)
    count = max(len(tools), 1)
    return {
        "tools": len(tools),
        "answer_chars": answer,
        "answer_chars_per_tool": answer / count,
        "tools_chars": _chars(tools),
        "model_chars": model,
        "model_chars_per_tool": model / count,
        "model_chars_max": max((tool["model"] for tool in per_tool), default=0),
        "per_toolset": by_toolset,
        "per_tool": per_tool,
    }


async def list_tools_as(launch: Launch, client_name: str, errlog: TextIO, spawned: Spawned) -> ListToolsResult:
    """The `tools/list` answer a client that names itself `client_name` at `initialize` gets."""
    before = child_pids()
    with anyio.fail_after(SESSION_TIMEOUT_S):
        async with _session(launch, errlog, client_name) as session:
            spawned.note_new_children(before)
            return await session.list_tools()
