"""Section 6, `python -m evals.bench --sweeps`: sweeps on the local backend, against what they replace.

- drain: a sweep of N short runs (`python3 t.py`, each writing one final_info.json) at concurrency C (the
  workspace's `max_concurrent_runs`), from the start of the submission to the last member's recorded end, with
  the server's own pump starting and finishing them (`AppState.runs` with a task group, as the server runs it);
  against the same N commands run raw under bubblewrap, C at a time, with the argv the local backend builds
  (setpriv when root, the same synthetic /etc files and status pipe). Each side runs one command first, untimed,
  as a server that has run anything before has its launcher up (its first start costs about 0.4 s more). Target:
  ours at most 2x raw (a sweep drains at least half as fast).
- submit: one `run_sweep` of N members against N separate `run_experiment` calls, both through an in-process MCP
  client session on a fresh workspace (each call as a model makes it: `wait_s=0`); the server's pump starts the
  runs meanwhile in both. Target: the sweep at most 0.5x. For information, the same at the domain level:
  `prepare_sweep` against N `RunManager.prepare` calls, with no pump.

Rounds alternate which side goes first; each side gets a fresh workspace, and every run ends before the next side
starts. Supervisors left behind are killed and reported, as section 4 does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from evals.bench.measure import summary
from evals.bench.sandbox import _supervisors_under, available  # pyright: ignore[reportPrivateUsage]

__all__ = ["COMMAND", "DRAIN_TARGET", "SUBMIT_TARGET", "measure_sweeps", "render_sweeps"]

COMMAND = "python3 t.py"
SCRIPT = (
    "import json, os\n"
    "json.dump({'toy': {'means': {'loss': 0.5}}}, open(os.path.join(os.environ['RESEARCH_OUT'], 'final_info.json'), "
    "'w'))\n"
)
DRAIN_TARGET = 2.0
"""Ours (draining the sweep) may take at most this multiple of the raw bwrap runs at the same concurrency."""
SUBMIT_TARGET = 0.5
"""One run_sweep may take at most this fraction of the separate run_experiment calls."""
DRAIN_TIMEOUT_S = 600.0

Timed = Callable[[Path], Awaitable[float]]


def _workspace(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "exp").mkdir(parents=True)
    (folder / "exp" / "t.py").write_text(SCRIPT)
    return folder


def _settings(workspace: Path, concurrency: int) -> Any:
    from research_mcp.config import Settings

    return Settings(
        workspace=workspace, data_dir=workspace.parent / "data", backend="local", max_concurrent_runs=concurrency
    )


async def _until_drained(manager: Any, sweep_id: str | None) -> None:
    """Until no run of the workspace (or of the sweep) is queued, starting or running."""
    query = "SELECT count(*) FROM runs WHERE state IN ('queued', 'starting', 'running')"
    args: tuple[str, ...] = ()
    if sweep_id is not None:
        query, args = query + " AND sweep_id = ?", (sweep_id,)
    with anyio.fail_after(DRAIN_TIMEOUT_S):  # a look from outside, as a client's: the pump is not ours to wake on
        while await anyio.to_thread.run_sync(lambda: manager.store.connection().execute(query, args).fetchone()[0]):  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def drain_ours(root: Path, runs: int, concurrency: int) -> dict[str, Any]:
    """Seconds from the submission's start to the last member's end, with the server's pump; the states."""
    from research_mcp.sandbox.runs import RunRequest
    from research_mcp.sandbox.sweeps import prepare_sweep
    from research_mcp.server.state import AppState

    workspace = _workspace(root, f"drain-{time.monotonic_ns()}")
    state = AppState(_settings(workspace, concurrency))
    found: dict[str, Any] = {}
    try:
        async with anyio.create_task_group() as tg:
            state.task_group = tg
            manager = state.runs(state.resolve_workspace(None).require())
            base = RunRequest(command=COMMAND, workdir="exp", backend="local")
            warm = await anyio.to_thread.run_sync(manager.prepare, base)  # a server that has run before
            await manager.wait(warm.id, DRAIN_TIMEOUT_S)
            start = time.time()
            sweep_id = await anyio.to_thread.run_sync(prepare_sweep, manager, base, None, list(range(runs)))
            await state.pump_now(manager)  # as run_sweep does: its members start now, not at the pump's next tick
            await _until_drained(manager, sweep_id)
            [(last,)] = manager.store.connection().execute(
                "SELECT max(ended_at) FROM runs WHERE sweep_id = ?", (sweep_id,)
            )
            found = {"seconds": last - start, "counts": manager.sweep_counts(sweep_id)}
            tg.cancel_scope.cancel()
    finally:
        state.close()
    return found


async def drain_raw(root: Path, runs: int, concurrency: int) -> float:
    """Seconds for the same commands run raw under bubblewrap, `concurrency` at a time."""
    from research_mcp.sandbox._supervised import build_sandbox
    from research_mcp.sandbox.base import RunSpec
    from research_mcp.sandbox.bwrap import etc_identity_files, sandbox_user

    user = sandbox_user()
    uid, gid = user or (os.getuid(), os.getgid())
    tools = (shutil.which("bwrap") or "bwrap", shutil.which("setpriv") or "setpriv")
    base = root / f"raw-{time.monotonic_ns()}"
    dirs: list[Path] = []
    for i in range(runs + 1):
        run_dir = base / str(i)
        (run_dir / "work").mkdir(parents=True)
        (run_dir / "outputs").mkdir()
        (run_dir / "work" / "t.py").write_text(SCRIPT)
        for folder in (base, run_dir, run_dir / "work", run_dir / "outputs"):
            folder.chmod(0o777)  # as root the command runs as another uid, which writes final_info.json
        dirs.append(run_dir)
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(run_dir: Path) -> None:
        async with limiter:
            spec = RunSpec(run_id="raw", run_dir=run_dir, command=COMMAND, timeout_s=DRAIN_TIMEOUT_S)
            fds: dict[str, int] = {}
            for dest, content in etc_identity_files(uid, gid).items():
                fds[dest] = os.memfd_create("etc", 0)
                os.write(fds[dest], content)
                os.lseek(fds[dest], 0, os.SEEK_SET)
            status_r, status_w = os.pipe()
            try:
                await anyio.run_process(
                    build_sandbox(spec, user, fds, status_w, tools).argv(),
                    stdin=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                    pass_fds=(*fds.values(), status_w),
                    env={"PATH": "/usr/bin:/bin", "RESEARCH_OUT": "/outputs"},
                )
            finally:
                for fd in (*fds.values(), status_w, status_r):
                    os.close(fd)

    with anyio.fail_after(DRAIN_TIMEOUT_S):
        await one(dirs.pop())  # as ours: one run first, untimed
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for run_dir in dirs:
                tg.start_soon(one, run_dir)
        elapsed = time.perf_counter() - start
    missing = [d for d in dirs if not (d / "outputs" / "final_info.json").is_file()]
    if missing:
        raise RuntimeError(f"{len(missing)} raw runs wrote no final_info.json, e.g. {missing[0]}")
    return elapsed


async def submit_tools(root: Path, runs: int, concurrency: int, sweep: bool) -> float:
    """Seconds for one run_sweep of `runs` members, or for `runs` run_experiment calls, through an in-process MCP
    client session; then waits (untimed) until every run ended."""
    from mcp import Client

    from research_mcp.server import build_server

    workspace = _workspace(root, f"submit-{'sweep' if sweep else 'calls'}-{time.monotonic_ns()}")
    async with Client(build_server(_settings(workspace, concurrency)), raise_exceptions=True) as client:
        start = time.perf_counter()
        if sweep:
            result = await client.call_tool(
                "run_sweep", {"command": COMMAND, "workdir": "exp", "seeds": list(range(runs))}
            )
            assert not result.is_error, result.content
        else:
            for seed in range(runs):
                result = await client.call_tool(
                    "run_experiment", {"command": COMMAND, "workdir": "exp", "seed": seed, "label": "calls"}
                )
                assert not result.is_error, result.content
        elapsed = time.perf_counter() - start
        with anyio.fail_after(DRAIN_TIMEOUT_S):
            while True:
                found = await client.call_tool("list_runs", {"status": "succeeded", "limit": 1})
                assert found.structured_content is not None
                if found.structured_content["total"] >= runs:
                    break
                await anyio.sleep(0.1)
    return elapsed


def submit_domain(root: Path, runs: int, sweep: bool) -> float:
    """Seconds for `prepare_sweep` of `runs` members, or for `runs` `RunManager.prepare` calls; no pump runs."""
    from research_mcp.sandbox.runs import RunRequest
    from research_mcp.sandbox.sweeps import prepare_sweep
    from research_mcp.server.state import AppState

    workspace = _workspace(root, f"domain-{'sweep' if sweep else 'calls'}-{time.monotonic_ns()}")
    state = AppState(_settings(workspace, 2))
    try:
        manager = state.runs(state.resolve_workspace(None).require())
        manager.store.connection()
        base = RunRequest(command=COMMAND, workdir="exp", backend="local")
        start = time.perf_counter()
        if sweep:
            prepare_sweep(manager, base, None, list(range(runs)))
        else:
            for seed in range(runs):
                manager.prepare(base.model_copy(update={"seed": seed}))
        return time.perf_counter() - start
    finally:
        state.close()


async def measure_sweeps(runs: int, rounds: int, concurrency: int) -> dict[str, Any]:
    """Both measurements on the local backend, or why they cannot run here."""
    result: dict[str, Any] = {"command": COMMAND, "runs": runs, "rounds": rounds, "concurrency": concurrency}
    why = available("local", "")
    if why is not None:
        return {**result, "skipped": why, "passed": True}
    ours: list[float] = []
    raw: list[float] = []
    calls: list[float] = []
    swept: list[float] = []
    domain_calls: list[float] = []
    domain_sweep: list[float] = []
    counts: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory(prefix="research-mcp-bench-sweeps-") as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # mkdtemp makes it 0700; as root the sandbox uid must reach the runs under it
        try:
            for i in range(rounds):
                for first in (i % 2 == 0, i % 2 == 1):
                    if first:
                        drained = await drain_ours(root, runs, concurrency)
                        ours.append(drained["seconds"])
                        counts.append(drained["counts"])
                        swept.append(await submit_tools(root, runs, concurrency, sweep=True))
                        domain_sweep.append(await anyio.to_thread.run_sync(submit_domain, root, runs, True))
                    else:
                        raw.append(await drain_raw(root, runs, concurrency))
                        calls.append(await submit_tools(root, runs, concurrency, sweep=False))
                        domain_calls.append(await anyio.to_thread.run_sync(submit_domain, root, runs, False))
        finally:
            left = _supervisors_under(root)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            from research_mcp.sandbox.local import close_launchers

            await anyio.to_thread.run_sync(close_launchers)
    drain: dict[str, Any] = {"ours": summary(ours), "raw": summary(raw), "counts": counts}
    drain["ratio"] = drain["ours"]["p50_ms"] / drain["raw"]["p50_ms"]
    drain["ours_runs_per_s"] = runs / (drain["ours"]["p50_ms"] / 1000)
    drain["raw_runs_per_s"] = runs / (drain["raw"]["p50_ms"] / 1000)
    drain["target_ratio"] = DRAIN_TARGET
    drain["passed"] = drain["ratio"] <= DRAIN_TARGET and all(c == {"succeeded": runs} for c in counts)
    submit: dict[str, Any] = {"run_sweep": summary(swept), "run_experiment_calls": summary(calls)}
    submit["ratio"] = submit["run_sweep"]["p50_ms"] / submit["run_experiment_calls"]["p50_ms"]
    submit["domain"] = {"prepare_sweep": summary(domain_sweep), "prepare_calls": summary(domain_calls)}
    submit["domain"]["ratio"] = (
        submit["domain"]["prepare_sweep"]["p50_ms"] / submit["domain"]["prepare_calls"]["p50_ms"]
    )
    submit["target_ratio"] = SUBMIT_TARGET
    submit["passed"] = submit["ratio"] <= SUBMIT_TARGET
    result.update(drain=drain, submit=submit, supervisors_killed=left)
    result["passed"] = drain["passed"] and submit["passed"] and not left
    return result


def render_sweeps(result: dict[str, Any]) -> str:
    head = (
        f"6. sweeps on local: {result['runs']} runs of `{result['command']}` at concurrency {result['concurrency']}, "
        f"{result['rounds']} rounds, alternating"
    )
    if "skipped" in result:
        return f"{head}\n   skipped ({result['skipped']})"
    drain, submit = result["drain"], result["submit"]
    lines = [head, f"   {'':46}{'median':>10}{'min':>10}{'max':>10}"]
    rows = (
        ("raw bwrap, C at a time (all end)", drain["raw"]),
        ("run_sweep drained (submit -> last end)", drain["ours"]),
        (f"{result['runs']} run_experiment calls (MCP)", submit["run_experiment_calls"]),
        (f"one run_sweep of {result['runs']} (MCP)", submit["run_sweep"]),
        (f"{result['runs']} RunManager.prepare (domain)", submit["domain"]["prepare_calls"]),
        (f"prepare_sweep of {result['runs']} (domain)", submit["domain"]["prepare_sweep"]),
    )
    for label, s in rows:
        lines.append(f"   {label:46}{s['p50_ms']:10.1f}{s['min_ms']:10.1f}{s['max_ms']:10.1f} ms")
    lines += [
        f"   {'drain ratio sweep/raw (median)':46}{drain['ratio']:9.2f}x   target <= {drain['target_ratio']:.1f}x   "
        f"{'PASS' if drain['passed'] else 'FAIL'}   ({drain['ours_runs_per_s']:.1f} vs {drain['raw_runs_per_s']:.1f} "
        "runs/s)",
        f"   {'submit ratio run_sweep/calls (median)':46}{submit['ratio']:9.2f}x   target <= "
        f"{submit['target_ratio']:.1f}x   {'PASS' if submit['passed'] else 'FAIL'}",
        f"   {'submit ratio, domain (information)':46}{submit['domain']['ratio']:9.2f}x",
        f"   left behind: {result['supervisors_killed'] or 'NONE'}",
    ]
    return "\n".join(lines)
