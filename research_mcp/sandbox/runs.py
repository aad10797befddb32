"""The run manager: the books of every run in a workspace, on top of the backends.

A run is a row in the state store from the moment it is asked for: queued, then claimed and started by
whichever server has a free slot (the claim is one `BEGIN IMMEDIATE` transaction, so two servers never start
the same run), then polled until it ends. Nothing lives only in memory: a restarted server polls the stored
handles again, finalises what ended while it was away, and marks what vanished `lost`.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from research_mcp.errors import BadInputError, LabelNotFoundError, RunNotFoundError, SandboxError
from research_mcp.sandbox import datasets as data
from research_mcp.sandbox._files import changed_files, folder_bytes, output_files
from research_mcp.sandbox.base import Backend, Capacity, Mount, RunHandle, RunSpec, RunStatus
from research_mcp.sandbox.inputs import InputSpec, code_hash_with, parse_inputs
from research_mcp.sandbox.logs import failure_from_log
from research_mcp.sandbox.models import (
    ACTIVE,
    CODE_HASH_SHOWN,
    FINISHED,
    WAIT_TICK_S,
    Run,
    RunRequest,
    RunState,
)
from research_mcp.sandbox.provenance import attach_datasets, attach_inputs, datasets_shown, inputs_shown
from research_mcp.sandbox.pyenv import PythonEnv, container_problem, resolve_python_env
from research_mcp.sandbox.slots import THREAD_VARS, Busy, Waiting, assign, thread_env
from research_mcp.sandbox.snapshot import copy_snapshot, manifest, take_snapshot
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


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


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


def _short(code_hash: str | None) -> str | None:
    """A code hash as answers show it: its prefix (the store keeps it whole)."""
    return None if code_hash is None else code_hash[:CODE_HASH_SHOWN]


def _ms(stamp: float | None) -> float | None:
    return None if stamp is None else round(stamp, 3)


def _env_name(limits: str) -> str | None:
    found: dict[str, Any] | None = json.loads(limits).get("python_env")
    return None if found is None else str(found["name"])


def _lay_out(folder: Path, listing: str) -> None:
    """The rest of a run folder around its snapshot: work/ (a writable copy of code/), outputs/, manifest.json."""
    shutil.copytree(folder / "code", folder / "work", symlinks=True)
    (folder / "outputs").mkdir()
    (folder / "manifest.json").write_text(listing)


def _link_or_copy(source: str, dest: str) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def _limits(
    req: RunRequest, pyenv: PythonEnv | None, mounts: Sequence[Mount], own_network: bool, caches: Any
) -> dict[str, Any]:
    return {
        "gpu_count": req.gpus,
        "gpus": [],
        "cpus": req.cpus,
        "memory_bytes": int(req.memory_gb * 2**30) if req.memory_gb else None,
        "timeout_s": req.timeout_s,
        "network": req.network,
        "env": req.env,
        "python_env": None if pyenv is None else pyenv.model_dump(),
        "mounts": [mount.model_dump() for mount in mounts],
        "own_network": own_network,
        "cache_layers": caches,
    }


class RunManager:
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

    def run_dir(self, run_id: str) -> Path:
        return self.ws.root / "runs" / run_id

    def choose(self, backend: str) -> str:
        """The backend a run asking for `backend` gets ("auto": the server's choice)."""
        return self._choose() if backend == "auto" else backend

    # -- asking for a run -------------------------------------------------------------------------------------

    def prepare(
        self,
        req: RunRequest,
        *,
        kind: str = "run",
        mounts: Sequence[Mount] = (),
        own_network: bool = False,
        env_id: str | None = None,
        snapshot_of: str | None = None,
    ) -> Run:
        """Snapshot the code and record the run as queued (sync: call it in a worker thread).

        The server's own jobs say so: `kind` ('env' builds an environment, 'data' prepares a dataset), `mounts`
        they bind beyond the run folder, and `own_network` for a network the user-run setting does not govern;
        `env_id` names the environment a build makes (a run's comes from its python_env). `snapshot_of` takes the
        code snapshot of that run instead of the workspace's code now (a rerun)."""
        backend, pyenv = self._checked(req, has_code=snapshot_of is not None)
        wanted_inputs = self._wanted_inputs(req)
        run_id, folder = self._new_folder()
        try:
            if snapshot_of is None:
                snap = take_snapshot(
                    self.ws, req.workdir, req.files, folder / "code", max_bytes=self.max_snapshot_bytes
                )
            else:
                snap = copy_snapshot(self.run_dir(snapshot_of) / "code", folder / "code")
            _lay_out(folder, json.dumps(manifest(folder / "code")))
            mounts = list(mounts)
            inputs = attach_inputs(self.ws.state_dir, self.run_dir, wanted_inputs, folder, mounts)
            code_hash = code_hash_with(snap.code_hash, [(dest, found["hash"]) for dest, found in inputs.items()])
            seen, caches = attach_datasets(self.ws.state_dir, self.ws.root, self.shared_data, kind, mounts)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        limits = _limits(req, pyenv, mounts, own_network, caches)
        self._insert(
            self.store.connection(), run_id, backend, req, code_hash, limits, kind, self.clock(),
            env_id=env_id or (pyenv.env_id if pyenv else None), inputs=inputs, datasets=seen,
        )  # fmt: skip
        self._event(run_id, "queued", {"files": snap.files, "size_bytes": snap.size_bytes})
        return self.get(run_id)

    def prepare_batch(
        self,
        reqs: Sequence[RunRequest],
        *,
        sweep_id: str | None = None,
        record: Callable[[Any, str], None] | None = None,
    ) -> list[str]:
        """Record runs that share their code and every run option but their env, label, config and seed (a sweep's
        members) as queued, in their order: the code is snapshotted and hashed once and linked into each run
        folder, and every row (with what `record(conn, backend)` writes: the sweep's own) goes in one transaction.
        Sync: call it in a worker thread."""
        if not reqs:
            return []
        first = reqs[0]
        backend, pyenv = self._checked(first)
        for req in reqs[1:]:
            self._check_env(req.env)
        folders: list[tuple[str, Path]] = []
        try:
            folders.extend(self._new_folder() for _ in reqs)
            code = folders[0][1] / "code"
            snap = take_snapshot(self.ws, first.workdir, first.files, code, max_bytes=self.max_snapshot_bytes)
            listing = json.dumps(manifest(code))
            for _, folder in folders[1:]:  # code/ is never written after: its files can be shared
                shutil.copytree(code, folder / "code", symlinks=True, copy_function=_link_or_copy)
            for _, folder in folders:
                _lay_out(folder, listing)
            mounts: list[Mount] = []  # every member reads the same datasets: hashed once
            seen, caches = attach_datasets(self.ws.state_dir, self.ws.root, self.shared_data, "run", mounts)
            now = self.clock()
            queued = json.dumps({"files": snap.files, "size_bytes": snap.size_bytes, "sweep_id": sweep_id})
            with self.store.transaction() as conn:
                if record is not None:
                    record(conn, backend)
                for i, (req, (run_id, _)) in enumerate(zip(reqs, folders, strict=True)):
                    limits = _limits(req, pyenv, mounts, False, caches)
                    # a microsecond apart: the queue (ordered by created_at) starts them in the order given
                    at = now + i * 1e-6
                    self._insert(
                        conn, run_id, backend, req, snap.code_hash, limits, "run", at,
                        sweep_id=sweep_id, env_id=pyenv.env_id if pyenv else None, datasets=seen,
                    )  # fmt: skip
                    conn.execute(
                        "INSERT INTO run_events (run_id, at, kind, data) VALUES (?, ?, 'queued', ?)",
                        (run_id, at, queued),
                    )
        except BaseException:
            for _, folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return [run_id for run_id, _ in folders]

    def _wanted_inputs(self, req: RunRequest) -> list[InputSpec]:
        """The earlier runs' files a run asks for, each from a run that has ended."""
        wanted = parse_inputs(req.inputs)
        for spec in wanted:
            if (source := self.get(spec.run_id)).state in ACTIVE:
                raise BadInputError(
                    f"inputs[{spec.dest!r}]: run {spec.run_id} is still {source.state}; wait for its end "
                    "(run_status with wait_s) before reading its files."
                )
        return wanted

    def _checked(self, req: RunRequest, *, has_code: bool = False) -> tuple[str, PythonEnv | None]:
        """Refuse what cannot run (no code, a bad variable name, an unknown parent or idea, more GPUs than the
        backend has); the backend it goes to and its resolved Python environment."""
        if req.workdir is None and not req.files and not has_code:
            raise BadInputError("Give a workdir (a workspace folder) or inline files: there is no code to run.")
        self._check_env(req.env)
        if req.parent is not None:
            self.get(req.parent)
        if req.idea_id is not None:
            self._check_idea(req.idea_id)
        backend = self._choose() if req.backend == "auto" else req.backend
        pyenv = None if req.python_env is None else self._python_env(req.python_env, backend)
        if backend == "docker" and pyenv is not None and (problem := container_problem(pyenv)):
            raise SandboxError(problem)
        if req.gpus and req.gpus > (has := len(self.backend(backend).capacity().gpus)):
            raise SandboxError(
                f"The run asks for {req.gpus} GPU(s) but the {backend} backend can give {has} (see lab_info); "
                "ask for fewer, or run it where there are more (the docker backend on a GPU host)."
            )
        return backend, pyenv

    @staticmethod
    def _check_env(env: Mapping[str, str]) -> None:
        for key in env:
            if not key or "=" in key or "\x00" in key or key[0].isdigit():
                raise BadInputError(f"Environment variable name {key!r} is not valid.")

    def _new_folder(self) -> tuple[str, Path]:
        """A new run id and its folder, made (an id is 24 random bits per second: a clash takes another)."""
        (self.ws.root / "runs").mkdir(parents=True, exist_ok=True)
        while True:
            run_id = new_run_id()
            folder = self.run_dir(run_id)
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            return run_id, folder

    def _insert(
        self,
        conn: Any,
        run_id: str,
        backend: str,
        req: RunRequest,
        code_hash: str,
        limits: dict[str, Any],
        kind: str,
        now: float,
        sweep_id: str | None = None,
        env_id: str | None = None,
        inputs: dict[str, Any] | None = None,
        datasets: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO runs (id, backend, image, command, workdir, code_hash, limits, label, config, seed, parent, "
            "note, idea_id, kind, sweep_id, env_id, inputs, datasets, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
            (
                run_id, backend, req.image or (self.default_image if backend == "docker" else None), req.command,
                req.workdir or "", code_hash,
                json.dumps(limits), req.label, json.dumps(req.config) if req.config is not None else None, req.seed,
                req.parent, req.note, req.idea_id, kind, sweep_id, env_id,
                json.dumps(inputs) if inputs else None, json.dumps(datasets) if datasets else None, now,
            ),
        )  # fmt: skip

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
        names = conn.execute("SELECT DISTINCT backend FROM runs WHERE state IN ('queued', 'starting', 'running')")
        capacity = self._capacities(str(row[0]) for row in names.fetchall())
        with self.store.transaction() as conn:
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
                    "UPDATE runs SET state = 'starting', owner = ?, limits = ? WHERE id = ?",
                    (_owner(), json.dumps(run.limits), run.id),
                )
            return [self._row(run.id) for run in chosen]

    def _capacities(self, names: Iterable[str]) -> dict[str, Capacity]:
        found: dict[str, Capacity] = {}
        for name in names:
            try:
                found[name] = self.backend(name).capacity()
            except SandboxError as exc:  # a backend this server does not have: its runs wait for one that does
                logger.warning("runs of backend %r wait: %s", name, exc)
        return found

    def _spec(self, row: Any) -> RunSpec:
        limits: dict[str, Any] = json.loads(row["limits"])
        found = limits.get("python_env")
        pyenv = None if found is None else PythonEnv.model_validate(found)
        env: dict[str, str] = limits.get("env") or {}
        shared = thread_env(limits.get("threads"))
        if row["kind"] != "env":  # caches below /tmp/cache (datasets.py); offline switches without a network
            shared |= data.CACHE_ENV if limits.get("network") else data.CACHE_ENV | data.OFFLINE_ENV
        layers: list[str] = limits.get("cache_layers") or []
        return RunSpec(
            run_id=row["id"],
            run_dir=self.run_dir(row["id"]),
            command=(data.cache_layer_command(layers) if layers else "") + row["command"],
            workdir=".",  # the snapshot's root is the folder that was asked for
            image=row["image"],
            env={**shared, **env} if pyenv is None else {**shared, **pyenv.env(), **env},
            ro_paths=[] if pyenv is None else pyenv.ro_paths,
            gpus=limits.get("gpus") or [],
            cpus=limits.get("cpus"),
            memory_bytes=limits.get("memory_bytes"),
            timeout_s=limits["timeout_s"],
            network=bool(limits.get("network")),
            own_network=bool(limits.get("own_network")),
            mounts=[
                *(Mount.model_validate(mount) for mount in list[object](limits.get("mounts") or [])),
                *(
                    []
                    if pyenv is None or pyenv.volume is None
                    else [Mount(source=pyenv.volume, dest=pyenv.root, volume=True)]
                ),
            ],
            log_cap_bytes=self.log_cap_bytes,
        )

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

    # -- cancel, read ------------------------------------------------------------------------------------------

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

    def _row(self, run_id: str) -> Any:
        row = self.store.connection().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            ids = [
                r[0] for r in self.store.connection().execute("SELECT id FROM runs ORDER BY created_at DESC, id DESC")
            ]
            raise RunNotFoundError(run_id, difflib.get_close_matches(run_id, ids, n=3, cutoff=0.5), ids[:3])
        return row

    def _to_run(self, row: Any) -> Run:
        ended = row["ended_at"] or (None if row["state"] in ACTIVE else row["created_at"])
        started = row["started_at"]
        return Run(
            id=row["id"], state=row["state"], backend=row["backend"], command=row["command"],
            workdir=row["workdir"], image=row["image"], code_hash=_short(row["code_hash"]), label=row["label"],
            config=json.loads(row["config"]) if row["config"] else None, seed=row["seed"], parent=row["parent"],
            note=row["note"], idea_id=row["idea_id"], kind=None if row["kind"] == "run" else row["kind"],
            python_env=None if row["env_id"] else _env_name(row["limits"]), env_id=row["env_id"],
            inputs=inputs_shown(row["inputs"]), datasets=datasets_shown(row["datasets"]), sweep_id=row["sweep_id"],
            exit_code=row["exit_code"], failure=row["failure"], detail=row["detail"],
            created_at=round(row["created_at"], 3), started_at=_ms(started), ended_at=_ms(row["ended_at"]),
            duration_s=round((ended or self.clock()) - started, 3) if started else None,
            peak_memory_bytes=row["peak_memory_bytes"], folder=f"runs/{row['id']}",
        )  # fmt: skip

    def get(self, run_id: str) -> Run:
        return self._to_run(self._row(run_id))

    def record(self, run_id: str) -> Any:
        """The run's stored row (every column), for code that repeats or audits it."""
        return self._row(run_id)

    def list(
        self,
        state: str | None,
        label: str | None,
        parent: str | None,
        limit: int,
        offset: int,
        sweep_id: str | None = None,
    ) -> tuple[list[Run], int]:
        """A page of runs, newest first; a sweep's members in the order they were asked for."""
        clauses: list[str] = []
        args: list[object] = []
        if sweep_id is not None:
            self.sweep_counts(sweep_id)  # an unknown sweep names the closest ids
        for column, value in (("state", state), ("label", label), ("parent", parent), ("sweep_id", sweep_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        conn = self.store.connection()
        if parent is not None:
            self._row(parent)  # an unknown parent names the closest ids
        total = int(conn.execute(f"SELECT count(*) FROM runs {where}", args).fetchone()[0])
        if label is not None and not total:
            self._check_label(label)
        order = "created_at, id" if sweep_id is not None else "created_at DESC, id DESC"
        rows = conn.execute(
            f"SELECT * FROM runs {where} ORDER BY {order} LIMIT ? OFFSET ?", [*args, limit, offset]
        ).fetchall()
        return [self._to_run(row) for row in rows], total

    # -- sweeps: their members are runs; these read and stop them together ------------------------------------

    def sweep_counts(self, sweep_id: str) -> dict[str, int]:
        """How many members of the sweep are in each state (states without members left out)."""
        conn = self.store.connection()
        if conn.execute("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)).fetchone() is None:
            ids = [str(r[0]) for r in conn.execute("SELECT id FROM sweeps ORDER BY created_at DESC")]
            close = difflib.get_close_matches(sweep_id, ids, n=3, cutoff=0.5)
            known = f" (closest: {', '.join(close)})" if close else (f" (newest: {ids[0]})" if ids else "")
            raise SandboxError(
                f"No sweep {sweep_id!r}{known}. run_sweep gives a sweep id; list_runs shows each run's sweep_id."
            )
        rows = conn.execute("SELECT state, count(*) FROM runs WHERE sweep_id = ? GROUP BY state", (sweep_id,))
        return {str(row[0]): int(row[1]) for row in rows}

    def sweep_active(self, sweep_id: str) -> str | None:
        """The first member still queued, starting or running; None once every member ended."""
        row = (
            self.store.connection()
            .execute(
                "SELECT id FROM runs WHERE sweep_id = ? AND state IN ('queued', 'starting', 'running') "
                "ORDER BY created_at, id LIMIT 1",
                (sweep_id,),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def is_sweep(self, some_id: str) -> bool:
        return self.store.connection().execute("SELECT 1 FROM sweeps WHERE id = ?", (some_id,)).fetchone() is not None

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

    def python_env(self, run_id: str) -> PythonEnv | None:
        """The Python environment the run was started with, as it was resolved then."""
        found = json.loads(self._row(run_id)["limits"]).get("python_env")
        return None if found is None else PythonEnv.model_validate(found)

    def _check_idea(self, idea_id: str) -> None:
        """Refuse an idea id the workspace has not recorded (runs are counted towards the idea they name)."""
        row = self.store.connection().execute("SELECT 1 FROM ideas WHERE id = ?", (idea_id,)).fetchone()
        if row is None:
            raise BadInputError(
                f"No idea {idea_id!r} in this workspace. Call ideas to record it first (research_status lists "
                "the ideas there are), or leave idea_id out."
            )

    def _check_label(self, label: str) -> None:
        """Refuse a label no run has, naming the closest labels there are first."""
        rows = self.store.connection().execute("SELECT DISTINCT label FROM runs WHERE label IS NOT NULL")
        labels = sorted(str(row[0]) for row in rows)
        if label not in labels:
            raise LabelNotFoundError(label, labels)

    def outputs(self, run_id: str, limit: int = 200) -> list[str]:
        """Files the run wrote, workspace-relative (`runs/<id>/outputs/...`, `runs/<id>/work/...`): everything in
        outputs/, and files in work/ that are new or changed; caches (`__pycache__`, ...) left out."""
        folder = self.run_dir(run_id)
        found = [f"outputs/{rel}" for rel in output_files(folder / "outputs")]
        row = self.store.connection().execute("SELECT inputs FROM runs WHERE id = ?", (run_id,)).fetchone()
        placed = {f"work/{dest}" for dest in json.loads(row["inputs"])} if row and row["inputs"] else set[str]()
        found += [rel for rel in changed_files(folder / "code", folder / "work") if rel not in placed]
        return [f"runs/{run_id}/{rel}" for rel in found[:limit]]

    def _event(self, run_id: str, kind: str, data: dict[str, Any]) -> None:
        self.store.connection().execute(
            "INSERT INTO run_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)",
            (run_id, self.clock(), kind, json.dumps(data)),
        )
