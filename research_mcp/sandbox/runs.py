"""The run manager: the books of every run in a workspace, on top of the backends.

A run is a row in the state store from the moment it is asked for: queued, then claimed and started by
whichever server has a free slot (the claim is one `BEGIN IMMEDIATE` transaction, so two servers never start
the same run), then polled until it ends. Nothing lives only in memory: a restarted server polls the stored
handles again, finalises what ended while it was away, and marks what vanished `lost`.

`RunManager` asks for runs as `_preparing.Preparer` does and reads them as `_books.Books` does; this module is the
pump that starts, polls, ends and cancels them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from research_mcp.errors import SandboxError
from research_mcp.sandbox._files import changed_files, folder_bytes
from research_mcp.sandbox._preparing import Preparer, new_run_id
from research_mcp.sandbox.base import Backend, Capacity, RunHandle, RunSpec, RunStatus
from research_mcp.sandbox.logs import failure_from_log
from research_mcp.sandbox.models import ACTIVE, FINISHED, WAIT_TICK_S, Run, RunRequest, RunState
from research_mcp.sandbox.pyenv import PythonEnv, resolve_python_env
from research_mcp.sandbox.slots import THREAD_VARS, Busy, Waiting, assign
from research_mcp.store import Store
from research_mcp.workspace import Workspace

if TYPE_CHECKING:
    from research_mcp.sandbox.envs import Envs

__all__ = [
    "ACTIVE",
    "FINISHED",
    "THREAD_VARS",
    "Run",
    "RunManager",
    "RunRequest",
    "RunState",
    "changed_files",
    "folder_bytes",
    "new_run_id",
]

logger = logging.getLogger(__name__)

_STARTING_GRACE_S = 120.0


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_gone(owner: str | None) -> bool:
    """True when the owning server ran on this host and its process is gone."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


_WAITING = "Waiting in this server's queue: "


def _say_why_waiting(conn: sqlite3.Connection, names: Sequence[str], away: Mapping[str, str]) -> None:
    """The queued runs of a backend that cannot take runs now say why in their detail (not only the log); once it
    can, that is taken back. A statement per backend, in the claim's transaction."""
    for name in names:
        said = None if name not in away else f"{_WAITING}the {name} backend cannot take runs now: {away[name]}"
        conn.execute(
            "UPDATE runs SET detail = ? WHERE state = 'queued' AND backend = ? AND detail IS NOT ? "
            "AND (detail IS NULL OR detail LIKE ?)",
            (said, name, said, _WAITING + "%"),
        )


class RunManager(Preparer):
    """Runs of one workspace. `backends` maps a name to a backend; `choose` picks one for backend="auto".

    Each backend says how many runs it takes at once and which GPUs it can give (`Backend.capacity`);
    `max_concurrent`, when given, caps the runs of the workspace over every backend."""

    def __init__(
        self,
        ws: Workspace,
        store: Store,
        backends: Mapping[str, Callable[[], Backend]],
        *,
        choose: Callable[[], str],
        max_concurrent: int | None = None,
        max_snapshot_bytes: int = 200 << 20,
        default_image: str | None = None,
        log_cap_bytes: int = 32 << 20,
        max_run_disk_bytes: int | None = None,
        disk_interval_s: float = 1.0,
        python_envs: Mapping[str, Path] | None = None,
        envs: Envs | None = None,
        shared_data: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.shared_data = shared_data
        self._ending: dict[str, threading.Lock] = {}
        self._ending_guard = threading.Lock()
        self.python_envs = python_envs or {}
        self.envs = envs
        self.log_cap_bytes = log_cap_bytes
        self.max_run_disk_bytes = max_run_disk_bytes
        self.disk_interval_s = disk_interval_s
        self._disk_checked: dict[str, float] = {}
        self.ws = ws
        self.store = store
        self._factories = backends
        self._backends: dict[str, Backend] = {}
        self._choose = choose
        self.max_concurrent = max_concurrent
        self.max_snapshot_bytes = max_snapshot_bytes
        self.default_image = default_image
        self.clock = clock
        self._wake: anyio.Event | None = None
        self.changes = 0
        """Runs this process started or ended so far: a pump that changed nothing has this unchanged."""

    def backend(self, name: str) -> Backend:
        found = self._backends.get(name)
        if found is None:
            factory = self._factories.get(name)
            if factory is None:
                raise SandboxError(f"Unknown backend {name!r}; choose one of {', '.join(self._factories)}.")
            found = self._backends[name] = factory()
        return found

    def choose(self, backend: str) -> str:
        """The backend a run asking for `backend` gets ("auto": the server's choice)."""
        return self._choose() if backend == "auto" else backend

    def _python_env(self, name: str, backend: str) -> PythonEnv:
        """A prepare_env environment by its id (refused on another backend than its own), else a workspace folder
        or a python_envs name."""
        from research_mcp.sandbox.envs import ENV_ID

        if self.envs is not None and ENV_ID.fullmatch(name) and not (self.ws.root / name).exists():
            return self.envs.for_run(name, backend, self)
        return resolve_python_env(self.ws, name, self.python_envs)

    # -- the pump: start queued runs, poll running ones ---------------------------------------------------------

    def _claim(self) -> list[Any]:
        """Mark `starting` the queued runs `slots.assign` gives a slot (with their GPUs and thread counts); their rows.
        One transaction: two servers never claim the same run or the same GPU. Sync: call it in a worker thread."""
        conn = self.store.connection()
        if conn.execute("SELECT 1 FROM runs WHERE state = 'queued' LIMIT 1").fetchone() is None:
            return []  # the idle pump must not take the write lock twice a second
        found = conn.execute("SELECT DISTINCT backend FROM runs WHERE state IN ('queued', 'starting', 'running')")
        names = [str(row[0]) for row in found.fetchall()]
        capacity, away = self._capacities(names)
        with self.store.transaction() as conn:
            _say_why_waiting(conn, names, away)
            busy = [
                Busy(row["backend"], json.loads(row["limits"]).get("gpus") or [])
                for row in conn.execute("SELECT backend, limits FROM runs WHERE state IN ('starting', 'running')")
            ]
            queued = (  # read as far as `assign` looks: a sweep's hundredth member is not parsed for the first slot
                Waiting(row["id"], row["backend"], json.loads(row["limits"]))
                for row in conn.execute(
                    "SELECT id, backend, limits FROM runs WHERE state = 'queued' ORDER BY created_at, id"
                )
            )
            chosen = assign(busy, queued, capacity, self.max_concurrent)
            for run in chosen:
                conn.execute(
                    "UPDATE runs SET state = 'starting', owner = ?, limits = ?, detail = NULL WHERE id = ?",
                    (_owner(), json.dumps(run.limits), run.id),
                )
            return [self._row(run.id) for run in chosen]

    def _capacities(self, names: Iterable[str]) -> tuple[dict[str, Capacity], dict[str, str]]:
        """Each backend's capacity, and why a backend cannot take runs now (one this server does not have, or one
        that does not answer: its runs wait, for it or for a server that has it)."""
        found: dict[str, Capacity] = {}
        away: dict[str, str] = {}
        for name in names:
            try:
                found[name] = self.backend(name).capacity()
            except SandboxError as exc:
                logger.warning("runs of backend %r wait: %s", name, exc)
                away[name] = str(exc)
        return found, away

    async def start_queued(self) -> list[str]:
        """Start what the free slots allow, each backend's runs in one batch; a run that cannot start is failed
        with the reason."""
        rows = await anyio.to_thread.run_sync(self._claim)
        if not rows:
            return []
        batches: dict[str, list[RunSpec]] = {}
        for row in rows:
            batches.setdefault(row["backend"], []).append(self._spec(row))
        started: list[str] = []
        for name, specs in batches.items():
            try:
                results = await self.backend(name).start_batch(specs)
            except SandboxError as exc:
                results = [exc] * len(specs)
            started += await anyio.to_thread.run_sync(self._record_starts, specs, results)
        self._notify()
        return started

    def _record_starts(self, specs: Sequence[RunSpec], results: Sequence[RunHandle | SandboxError]) -> list[str]:
        started: list[str] = []
        for spec, result in zip(specs, results, strict=True):
            if isinstance(result, SandboxError):
                self._finish(spec.run_id, RunStatus(state="exited", failure="error", detail=str(result)), "failed")
                continue
            self.store.connection().execute(
                "UPDATE runs SET state = 'running', handle = ?, started_at = ? WHERE id = ? AND state = 'starting'",
                (result.model_dump_json(), self.clock(), spec.run_id),
            )
            self._event(spec.run_id, "started", {"backend": result.backend, "ref": result.ref})
            started.append(spec.run_id)
        return started

    async def refresh(self, run_id: str | None = None) -> None:
        """Poll running runs (one, or all) and record the ones that ended; adopt or queue again the runs a dead
        server left `starting`. One query finds both: each step of the pump is a trip to a worker thread, and the
        next queued run waits for the pump."""
        if run_id is None:
            query, args = (
                "SELECT * FROM runs WHERE state = 'running' OR (state = 'starting' AND owner != ?)",
                (_owner(),),
            )
        else:
            query, args = "SELECT * FROM runs WHERE state = 'running' AND id = ?", (run_id,)
        found = await self._sql(query, args)
        rows = [row for row in found if row["state"] == "running"]
        for row in rows:
            handle = RunHandle.model_validate_json(row["handle"])
            try:
                status = await self.backend(handle.backend).poll(handle)
            except SandboxError as exc:  # said in the run's detail until an answer comes, not only in a log
                logger.warning("poll of run %s failed: %s", row["id"], exc)
                await self._say(row, f"Its state cannot be read now: {exc}")
                continue
            if status.state == "running":
                await self._say(row, status.detail)  # e.g. why a cluster job is pending
                if status.peak_memory_bytes is not None and status.peak_memory_bytes != row["peak_memory_bytes"]:
                    await self._sql(
                        "UPDATE runs SET peak_memory_bytes = ? WHERE id = ?", (status.peak_memory_bytes, row["id"])
                    )
                await self._check_disk(row["id"], handle)
                continue
            await self._end(row["id"], status, None)
        if run_id is None:
            await self._adopt_orphans([row for row in found if row["state"] == "starting"])

    async def _say(self, row: Any, detail: str | None) -> None:
        """A running run's detail, where it changed and no failure (a full disk) was said first."""
        if detail != row["detail"] and row["failure"] is None:
            await self._sql(
                "UPDATE runs SET detail = ? WHERE id = ? AND state = 'running' AND failure IS NULL", (detail, row["id"])
            )

    async def _sql(self, query: str, args: Sequence[object] = ()) -> list[Any]:
        """One statement in a worker thread: SQLite waits on the disk and on other servers' locks."""
        return await anyio.to_thread.run_sync(lambda: self.store.connection().execute(query, args).fetchall())

    async def _adopt_orphans(self, rows: Sequence[Any]) -> None:
        """Runs left `starting` by a server that died in the middle of `start`: adopt what the backend did start,
        queue the rest again. A live owner on this host is left alone; one elsewhere gets a grace period."""
        for row in rows:
            if not _owner_gone(row["owner"]) and row["created_at"] > self.clock() - _STARTING_GRACE_S:
                continue
            try:
                handle = await self.backend(row["backend"]).adopt(self._spec(row))
            except SandboxError as exc:
                logger.warning("cannot adopt run %s: %s", row["id"], exc)
                continue
            await anyio.to_thread.run_sync(self._adopted, row["id"], handle)

    def _adopted(self, run_id: str, handle: RunHandle | None) -> None:
        conn = self.store.connection()
        if handle is not None:
            conn.execute(
                "UPDATE runs SET state = 'running', handle = ?, owner = ?, "
                "started_at = coalesce(started_at, ?) WHERE id = ? AND state = 'starting'",
                (handle.model_dump_json(), _owner(), self.clock(), run_id),
            )
            self._event(run_id, "adopted", {"ref": handle.ref})
        else:  # nothing of it ran: it goes back in the queue, so no run asked for is lost
            conn.execute(
                "UPDATE runs SET state = 'queued', owner = NULL WHERE id = ? AND state = 'starting'", (run_id,)
            )
            self._event(run_id, "requeued", {"after": "its server stopped while starting it"})

    async def _check_disk(self, run_id: str, handle: RunHandle) -> None:
        """Kill a run whose folder grew past `max_run_disk_bytes`: neither backend has a disk quota, so this
        watchdog (every `disk_check_interval_s` while the run runs) is what bounds a disk fill."""
        if self.max_run_disk_bytes is None:
            return
        # the first look comes an interval after the run is first seen: a short run costs no walk of its folder
        if self.clock() - self._disk_checked.setdefault(run_id, self.clock()) < self.disk_interval_s:
            return
        self._disk_checked[run_id] = self.clock()
        folder = self.run_dir(run_id)
        used = await anyio.to_thread.run_sync(folder_bytes, [folder / "work", folder / "outputs", folder / "log.txt"])
        if used <= self.max_run_disk_bytes:
            return
        detail = (
            f"its folder reached {used / 2**20:.0f} MiB, over the {self.max_run_disk_bytes / 2**20:.0f} MiB limit "
            "(RESEARCH_MCP_MAX_RUN_DISK_BYTES)"
        )
        # The verdict is recorded before the kill, so whichever poll sees the run end finalises it as a disk kill.
        await self._sql(
            "UPDATE runs SET failure = 'disk', detail = ? WHERE id = ? AND state = 'running'", (detail, run_id)
        )
        await self.backend(handle.backend).cancel(handle)
        await self._end(run_id, await self.backend(handle.backend).poll(handle), None)

    async def pump(self) -> None:
        await self.refresh()
        await self.start_queued()

    async def wait(self, run_id: str, timeout_s: float, tick_s: float = WAIT_TICK_S) -> Run:
        """Pump until the run is final or `timeout_s` passed; returns it as it is then.

        Between pumps it sleeps on the backend's `wait`, so an ending run is seen at once, and at least every
        `tick_s` (a caller may want the latest log line). A queued run sleeps until this process starts or ends a
        run (its slot may be free now), at the latest `tick_s`."""
        deadline = anyio.current_time() + timeout_s
        while True:
            await self.pump()
            wake = self._wake_event()
            row = await anyio.to_thread.run_sync(self._row, run_id)
            left = deadline - anyio.current_time()
            if row["state"] in FINISHED or left <= 0:
                return self._to_run(row)
            if row["handle"] is None:  # nothing to wait on yet: queued (a slot frees at a run's end) or starting
                with anyio.move_on_after(min(left, tick_s if row["state"] == "queued" else 0.05)):
                    await wake.wait()
                continue
            handle = RunHandle.model_validate_json(row["handle"])
            await self.backend(handle.backend).wait(handle, min(left, tick_s))

    async def watch(self, timeout_s: float) -> None:
        """Return as soon as a running run may have ended, or this process started or ended one, at the latest
        after `timeout_s`: the server's pump sleeps on it, so a freed slot goes to the next queued run at once."""
        wake = self._wake_event()
        rows = await self._sql("SELECT handle FROM runs WHERE state = 'running'")
        waits: list[Awaitable[None]] = [wake.wait()]
        for row in rows:
            handle = RunHandle.model_validate_json(row["handle"])
            try:
                waits.append(self.backend(handle.backend).wait(handle, timeout_s))
            except SandboxError:
                continue  # a backend this server does not have; its runs are not ours to watch
        with anyio.move_on_after(timeout_s):
            async with anyio.create_task_group() as tg:

                async def first(waiting: Awaitable[None]) -> None:
                    await waiting
                    tg.cancel_scope.cancel()

                for waiting in waits:
                    tg.start_soon(first, waiting)

    def _wake_event(self) -> anyio.Event:
        if self._wake is None:
            self._wake = anyio.Event()
        return self._wake

    def _notify(self) -> None:
        """Wake whoever sleeps in `wait` or `watch`: a run started or ended here."""
        self.changes += 1
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def _end(self, run_id: str, status: RunStatus, state: RunState | None) -> None:
        await anyio.to_thread.run_sync(self._finish, run_id, status, state)
        self._notify()

    def _finish(self, run_id: str, status: RunStatus, state: RunState | None) -> None:
        """Record a run's end. The pump and a waiting call may both see it: one end at a time per run, so a data
        run's dataset is put in place and recorded before the other looks."""
        with self._ending_guard:
            lock = self._ending.setdefault(run_id, threading.Lock())
        with lock:
            self._record_end(run_id, status, state)
        with self._ending_guard:
            self._ending.pop(run_id, None)

    def _record_end(self, run_id: str, status: RunStatus, state: RunState | None) -> None:
        failure: str | None = status.failure
        verdict = (
            self.store.connection()
            .execute("SELECT failure, detail, kind, limits, state FROM runs WHERE id = ?", (run_id,))
            .fetchone()
        )
        if verdict is not None and verdict["kind"] == "data" and verdict["state"] not in FINISHED:
            found = self._finish_data(run_id, verdict["limits"], status, state)
            if found is None:
                return  # another poller is putting its dataset in place, and records its end
            status, state = found
        if verdict is not None and verdict["failure"] == "disk":  # killed by the disk watchdog
            state, failure = "failed", "disk"
            status = status.model_copy(update={"detail": verdict["detail"]})
        if status.state == "lost":
            final: RunState = "lost"
            failure = "lost"
        elif state is not None:
            final = state
            failure = failure if state != "failed" or failure else "error"
        elif failure == "cancelled":
            final = "cancelled"
        elif status.exit_code == 0 and failure is None:
            final = "succeeded"
        else:
            final = "failed"
            if failure in (None, "error"):
                failure = failure_from_log(self.run_dir(run_id) / "log.txt") or failure or "error"
        self.store.connection().execute(
            "UPDATE runs SET state = ?, exit_code = ?, failure = ?, detail = ?, ended_at = ?, "
            "peak_memory_bytes = coalesce(?, peak_memory_bytes), started_at = coalesce(started_at, ?) "
            "WHERE id = ? AND state NOT IN ('succeeded', 'failed', 'cancelled', 'lost')",
            (
                final, status.exit_code, failure, status.detail, status.ended_at or self.clock(),
                status.peak_memory_bytes, status.started_at, run_id,
            ),
        )  # fmt: skip
        self._event(run_id, final, {"exit_code": status.exit_code, "failure": failure})

    def _finish_data(
        self, run_id: str, limits: str, status: RunStatus, state: RunState | None
    ) -> tuple[RunStatus, RunState | None] | None:
        """A data run's dataset put in place with its manifest (or dropped) before its end is recorded; None while
        another poller does it."""
        from research_mcp.sandbox.dataprep import finish_data_run

        ok = state is None and status.state == "exited" and status.exit_code == 0 and status.failure is None
        end = finish_data_run(self.ws.root, self.ws.state_dir, json.loads(limits), ok)
        if end is None:
            return status, state
        if end.elsewhere:
            return None
        if end.record is not None:
            row = self.store.connection().execute("SELECT datasets FROM runs WHERE id = ?", (run_id,)).fetchone()
            record: dict[str, Any] = json.loads(row["datasets"]) if row["datasets"] else {}
            record |= end.record
            self.store.connection().execute("UPDATE runs SET datasets = ? WHERE id = ?", (json.dumps(record), run_id))
            self._event(run_id, "dataset", end.record)
        if end.failed:
            return status.model_copy(update={"failure": "error", "detail": end.detail}), "failed"
        return status.model_copy(update={"detail": end.detail}), state

    # -- cancel ---------------------------------------------------------------------------------------------------

    async def cancel(self, run_id: str) -> Run:
        run = await anyio.to_thread.run_sync(self.get, run_id)
        if run.state in FINISHED:
            return run
        if await anyio.to_thread.run_sync(self._cancel_queued, run_id):
            return await anyio.to_thread.run_sync(self.get, run_id)
        row = await anyio.to_thread.run_sync(self._row, run_id)
        if row["handle"] is None:
            raise SandboxError(f"Run {run_id} is starting; call cancel_run again in a moment.")
        handle = RunHandle.model_validate_json(row["handle"])
        await self.backend(handle.backend).cancel(handle)
        status = await self.backend(handle.backend).poll(handle)
        if status.state == "running":
            raise SandboxError(f"Run {run_id} did not stop; call cancel_run again or check lab_info.")
        await self._end(run_id, status.model_copy(update={"failure": "cancelled"}), "cancelled")
        return await anyio.to_thread.run_sync(self.get, run_id)

    def _cancel_queued(self, run_id: str) -> bool:
        changed = (
            self.store.connection()
            .execute(
                "UPDATE runs SET state = 'cancelled', failure = 'cancelled', ended_at = ? "
                "WHERE id = ? AND state = 'queued'",
                (self.clock(), run_id),
            )
            .rowcount
        )
        if changed:
            self._event(run_id, "cancelled", {"while": "queued"})
            row = self.store.connection().execute("SELECT kind, limits FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row["kind"] == "data":  # what it would have written is dropped, as for a data run that ran
                from research_mcp.sandbox.dataprep import finish_data_run

                finish_data_run(self.ws.root, self.ws.state_dir, json.loads(row["limits"]), False)
        return bool(changed)

    # -- sweeps: their members are runs; these stop them together -------------------------------------------------

    async def cancel_sweep(self, sweep_id: str) -> int:
        """Cancel every member still queued or running: the queued ones in one statement first (so none of them
        starts meanwhile), then each running one. How many were cancelled."""
        await anyio.to_thread.run_sync(self.sweep_counts, sweep_id)
        queued = await anyio.to_thread.run_sync(self._cancel_queued_members, sweep_id)
        rows = await self._sql(
            "SELECT id FROM runs WHERE sweep_id = ? AND state IN ('starting', 'running') ORDER BY created_at",
            (sweep_id,),
        )
        stopped = 0
        for row in rows:
            for _ in range(100):  # a member caught `starting` has its handle within moments
                try:
                    run = await self.cancel(str(row["id"]))
                except SandboxError as exc:
                    if "is starting" not in str(exc):
                        raise
                    await anyio.sleep(0.05)
                    continue
                stopped += run.state == "cancelled"
                break
        return queued + stopped

    def _cancel_queued_members(self, sweep_id: str) -> int:
        with self.store.transaction() as conn:
            ids = [
                str(row[0])
                for row in conn.execute("SELECT id FROM runs WHERE sweep_id = ? AND state = 'queued'", (sweep_id,))
            ]
            now = self.clock()
            conn.execute(
                "UPDATE runs SET state = 'cancelled', failure = 'cancelled', ended_at = ? "
                "WHERE sweep_id = ? AND state = 'queued'",
                (now, sweep_id),
            )
            for run_id in ids:
                self._event(run_id, "cancelled", {"while": "queued", "sweep_id": sweep_id})
        return len(ids)
