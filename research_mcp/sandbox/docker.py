"""The Docker backend: each run is one detached container, found again by its id or its labels.

What a run gets (`create_kwargs`, a pure function the unit tests check): no network (`network_mode="none"`)
unless the server allows it, memory with no swap beyond it, a pids limit, CPUs, a read-only root with a
tmpfs /tmp, a non-root user, no capabilities, `no-new-privileges`, exactly two binds (`<run_dir>/work` on
/work and `<run_dir>/outputs` on /outputs), only the environment the spec names, and GPUs by device request.

Runs outlive the server. All state lives in the engine (the container and its labels) and in the run folder:
`poll` keeps `log.txt` current from the engine's logs, enforces the deadline kept in the handle, and when the
container has ended writes `status.json` once and removes the container; later polls answer from that file.
Any server process can therefore poll or cancel any run, and `find_runs` lists every container this project
made. Nothing here kills a run whose deadline passed unless some process polls it: the run manager must keep
polling running runs (a few seconds apart) and poll everything `find_runs` returns when it starts.

The docker SDK is imported lazily (the server starts without it) and untyped; `DockerEngine` is the only
class that touches it, and it maps every docker error to a `SandboxError` that says what to do.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, cast

import anyio.to_thread

from research_mcp.errors import SandboxError
from research_mcp.probe import PartStatus
from research_mcp.sandbox._docker_engine import (
    LABEL_RUN,
    NVIDIA_TOOLKIT_URL,
    ContainerGoneError,
    DockerEngine,
    connect,
    probe_engine,
)
from research_mcp.sandbox._layout import ended_detail
from research_mcp.sandbox.base import (
    LOG_CAP_MARKER,
    SANDBOX_OUTPUTS,
    SANDBOX_WORK,
    Backend,
    Capacity,
    RunHandle,
    RunSpec,
    RunStatus,
)

__all__ = [
    "DEFAULT_IMAGE",
    "ContainerGoneError",
    "LABEL_RUN",
    "LABEL_RUN_DIR",
    "NVIDIA_TOOLKIT_URL",
    "DockerBackend",
    "DockerEngine",
    "connect",
    "create_kwargs",
    "probe",
    "sandbox_user",
    "write_capped_log",
]

logger = logging.getLogger(__name__)

DEFAULT_IMAGE = "research-sandbox:base"
LABEL_RUN_DIR = "research-mcp.run-dir"
LABEL_TIMEOUT = "research-mcp.timeout-s"
LABEL_LOG_CAP = "research-mcp.log-cap-bytes"
NOBODY = (65534, 65534)
TAIL_WINDOW_BYTES = 1 << 20
"""How much of the end of the output log.txt always keeps, so a final traceback is whole."""
STATUS_FILE = "status.json"
LOG_FILE = "log.txt"
_ENGINE_LOG_FILES = 5
_RUNNING = ("created", "running", "paused", "restarting", "removing")


# --- the container a run gets (pure) --------------------------------------------------------------------


def sandbox_user() -> tuple[int, int]:
    """uid and gid runs use: nobody when the server is root, else the server's own ids (so it can read results)."""
    return NOBODY if os.geteuid() == 0 else (os.getuid(), os.getgid())


def sandbox_workdir(workdir: str) -> str:
    """The cwd inside the container for `RunSpec.workdir`; refuses paths that leave /work."""
    rel = PurePosixPath(workdir)
    if rel.is_absolute() or ".." in rel.parts:
        raise SandboxError(f"workdir {workdir!r} must be a folder inside the working tree, relative, without '..'.")
    return str(PurePosixPath(SANDBOX_WORK, rel))


def create_kwargs(
    spec: RunSpec,
    *,
    image: str,
    user: tuple[int, int],
    tmp_size_bytes: int = 1 << 30,
) -> dict[str, Any]:
    """The keyword arguments of `docker.DockerClient().containers.create` for `spec`.

    Pure: no engine, no docker import. GPUs are a device request in the dict form docker-py turns into
    `docker.types.DeviceRequest(device_ids=[...], capabilities=[["gpu"]])`.
    """
    for key, value in spec.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise SandboxError(f"Environment variable {key!r} cannot be passed: names need no '=' and no NUL bytes.")
    tmpfs_options = f"rw,nosuid,nodev,size={tmp_size_bytes},mode=1777"
    kwargs: dict[str, Any] = {
        "image": image,
        # stderr joins stdout at the source: the engine stamps each pipe as it reads it, so with two pipes a final
        # traceback on stderr lands before the last stdout lines (1.6 MB early in a 50 MB flood, measured).
        "command": ["/bin/sh", "-c", "exec 2>&1\n" + spec.command],
        "name": "research-mcp-" + re.sub(r"[^a-zA-Z0-9_.-]", "-", spec.run_id),
        "user": f"{user[0]}:{user[1]}",
        "working_dir": sandbox_workdir(spec.workdir),
        # Python buffers a pipe: without this a killed or timed-out run would lose its last lines.
        "environment": {"PYTHONUNBUFFERED": "1", **spec.env, "RESEARCH_OUT": SANDBOX_OUTPUTS, "HOME": "/tmp"},
        "labels": {
            LABEL_RUN: spec.run_id,
            LABEL_RUN_DIR: str(spec.run_dir),
            LABEL_TIMEOUT: repr(spec.timeout_s),
            LABEL_LOG_CAP: str(spec.log_cap_bytes),
        },
        "volumes": {
            str(spec.run_dir / "work"): {"bind": SANDBOX_WORK, "mode": "rw"},
            str(spec.run_dir / "outputs"): {"bind": SANDBOX_OUTPUTS, "mode": "rw"},
            **{path: {"bind": path, "mode": "ro"} for path in spec.ro_paths},
            **{m.source: {"bind": m.dest, "mode": "rw" if m.writable else "ro"} for m in spec.mounts},
        },
        # network=True means Docker's default bridge. Its gateway (172.17.0.1 on docker0) is an address of the
        # host, so every host service bound to 0.0.0.0 (or to docker0) answers the run; only services bound to
        # 127.0.0.1 stay out of reach. DockerBackend refuses network=True unless the server allows it.
        "network_mode": "bridge" if spec.network else "none",
        "read_only": True,
        "tmpfs": {"/tmp": tmpfs_options, "/var/tmp": tmpfs_options},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "ipc_mode": "private",
        "pids_limit": spec.pids,
        # The engine keeps the output until poll has copied it into log.txt; bounded on the engine's disk too.
        "log_config": {
            "type": "local",
            "config": {"max-size": str(max(spec.log_cap_bytes, 32 << 20)), "max-file": str(_ENGINE_LOG_FILES)},
        },
    }
    if spec.memory_bytes is not None:
        kwargs["mem_limit"] = spec.memory_bytes
        kwargs["memswap_limit"] = spec.memory_bytes  # equal: no swap beyond the limit
    if spec.cpus is not None:
        kwargs["nano_cpus"] = int(spec.cpus * 1e9)
    if spec.gpus:
        kwargs["device_requests"] = [{"device_ids": [str(i) for i in spec.gpus], "capabilities": [["gpu"]]}]
    return kwargs


# --- log.txt (pure file I/O) ---------------------------------------------------------------------------------


def write_capped_log(
    chunks: Iterable[bytes], path: Path, *, cap_bytes: int, tail_bytes: int = TAIL_WINDOW_BYTES
) -> int:
    """Write `chunks` to `path` (atomically), keeping at most about `cap_bytes`; returns the bytes seen.

    Past the cap the file holds the head (cut at a line end), `LOG_CAP_MARKER` once, then the last
    `min(tail_bytes, cap_bytes // 2)` bytes (starting at a line start), so a final traceback is whole. Streams:
    memory stays about twice the tail window whatever the output size.
    """
    tail_limit = min(tail_bytes, cap_bytes // 2)
    head_limit = cap_bytes - tail_limit
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    total = 0
    head_len = 0
    head_last_newline = -1  # offset just after the last b"\n" in the head
    tail = bytearray()
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                total += len(chunk)
                room = head_limit - head_len
                if room > 0:
                    part = chunk[:room]
                    out.write(part)
                    newline = part.rfind(b"\n")
                    if newline >= 0:
                        head_last_newline = head_len + newline + 1
                    head_len += len(part)
                    chunk = chunk[room:]
                if chunk:
                    tail += chunk
                    if len(tail) > 2 * tail_limit + (1 << 16):
                        del tail[: len(tail) - tail_limit]
            if total <= cap_bytes:
                out.write(tail)
            else:
                kept_tail = bytes(tail[-tail_limit:]) if tail_limit else b""
                newline = kept_tail.find(b"\n")
                if 0 <= newline < len(kept_tail) - 1 and newline < len(kept_tail) // 2:
                    kept_tail = kept_tail[newline + 1 :]
                if head_last_newline >= head_len - (1 << 16) and head_last_newline > 0:
                    out.truncate(head_last_newline)
                    out.seek(head_last_newline)
                    head_len = head_last_newline
                dropped = total - head_len - len(kept_tail)
                out.write(LOG_CAP_MARKER.format(cap=cap_bytes, dropped=dropped).encode())
                out.write(kept_tail)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return total


# --- the engine (the only code that touches the untyped docker SDK) -----------------------------------------


# --- the backend ----------------------------------------------------------------------------------------------


class DockerBackend(Backend):
    """Runs in containers of a local or remote Docker engine (`base.Backend`)."""

    name = "docker"

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        base_url: str | None = None,
        allow_network: bool = False,
        tmp_size_bytes: int = 1 << 30,
        tail_bytes: int = TAIL_WINDOW_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Args:
            image: Image for specs that name none (`Settings.docker_image`).
            base_url: Engine address; default DOCKER_HOST, else the local socket.
            allow_network: Accept `network=True` (the default bridge, which reaches host services on 0.0.0.0).
            tmp_size_bytes: Size of the run's /tmp tmpfs (charged to its memory limit as it fills).
            tail_bytes: Tail of the output log.txt always keeps past the cap.
            clock: Wall clock (epoch seconds) for deadlines, shared by every server process.
        """
        self.image = image
        self.base_url = base_url
        self.allow_network = allow_network
        self.tmp_size_bytes = tmp_size_bytes
        self.tail_bytes = tail_bytes
        self._clock = clock
        self._engine: DockerEngine | None = None
        self._engine_lock = threading.Lock()
        self._run_locks: dict[str, threading.Lock] = {}
        self._peaks: dict[str, int] = {}
        self._log_refreshes: dict[str, tuple[float, float]] = {}  # ref -> (monotonic time, seconds it took)

    def capacity(self) -> Capacity:
        """The cores and GPUs of this machine, where the engine is taken to run: one run per core."""
        from research_mcp.sandbox.gpus import host_gpus

        cpus = max(1, os.cpu_count() or 1)
        return Capacity(runs=cpus, cpus=cpus, gpus=list(host_gpus()), pool="host")

    def engine(self) -> DockerEngine:
        """The engine client, connected on first use (synchronous: call it from a worker thread)."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = connect(self.base_url)
            return self._engine

    async def start(self, spec: RunSpec) -> RunHandle:
        if spec.network and not (self.allow_network or spec.own_network):
            raise SandboxError(
                "network=True is refused by this server: on Docker's bridge a run reaches every host service "
                "bound to 0.0.0.0. Run without network (download data beforehand into the workspace), or ask "
                "the user to allow networked Docker runs."
            )
        image = spec.image or self.image
        user = sandbox_user()
        kwargs = create_kwargs(spec, image=image, user=user, tmp_size_bytes=self.tmp_size_bytes)
        return await anyio.to_thread.run_sync(lambda: self._start(spec, kwargs, user))

    def _start(self, spec: RunSpec, kwargs: dict[str, Any], user: tuple[int, int]) -> RunHandle:
        _prepare_run_dir(spec, user)
        engine = self.engine()
        container_id = engine.create(kwargs)
        try:
            engine.start(container_id)
        except SandboxError:
            engine.remove(container_id)
            raise
        deadline = self._clock() + spec.timeout_s
        logger.info("run %s started in container %s (image %s)", spec.run_id, container_id[:12], kwargs["image"])
        return RunHandle(
            backend=self.name,
            ref=container_id,
            data={
                "run_dir": str(spec.run_dir),
                "deadline": deadline,
                "timeout_s": spec.timeout_s,
                "log_cap_bytes": spec.log_cap_bytes,
            },
        )

    async def poll(self, handle: RunHandle) -> RunStatus:
        return await anyio.to_thread.run_sync(lambda: self._poll(handle, cancel=False))

    async def cancel(self, handle: RunHandle) -> None:
        await anyio.to_thread.run_sync(lambda: self._poll(handle, cancel=True))

    async def wait(self, handle: RunHandle, timeout_s: float) -> None:
        """Until the container exits (the engine says so at once) or `timeout_s` passes."""
        if _read_status(Path(cast(str, handle.data["run_dir"]))) is not None:
            return
        try:
            engine = await anyio.to_thread.run_sync(self.engine)
        except SandboxError:  # no engine to ask: the caller's poll says so
            await anyio.sleep(timeout_s)
            return
        # abandoned on cancel: a caller watching many runs stops waiting when the first ends; this thread returns
        # by itself within timeout_s
        await anyio.to_thread.run_sync(lambda: engine.wait_exit(handle.ref, timeout_s), abandon_on_cancel=True)

    async def adopt(self, spec: RunSpec) -> RunHandle | None:
        """The container a lost `start` created, found by its run label; started now if its server died between
        creating and starting it (else it would wait in `created`, polled as running, forever)."""
        for handle in await self.find_runs(spec.run_dir.parent):
            if handle.data.get("run_id") == spec.run_id:
                await anyio.to_thread.run_sync(self._start_if_created, handle.ref)
                return handle
        return None

    def _start_if_created(self, ref: str) -> None:
        engine = self.engine()
        attrs = engine.inspect(ref)
        if attrs is not None and cast(str, attrs["State"]["Status"]) == "created":
            logger.info("run container %s was created but never started; starting it", ref[:12])
            engine.start(ref)

    async def find_runs(self, under: Path | None = None) -> list[RunHandle]:
        """Handles of every container labelled as a research-mcp run (optionally only runs under `under`)."""
        found = await anyio.to_thread.run_sync(lambda: self.engine().labelled())
        handles: list[RunHandle] = []
        for summary in found:
            labels = cast(dict[str, str], summary.get("Labels") or {})
            run_dir = labels.get(LABEL_RUN_DIR, "")
            if under is not None and not Path(run_dir).is_relative_to(under):
                continue
            timeout_s = float(labels.get(LABEL_TIMEOUT, "inf"))
            handles.append(
                RunHandle(
                    backend=self.name,
                    ref=cast(str, summary["Id"]),
                    data={
                        "run_id": labels.get(LABEL_RUN, ""),
                        "run_dir": run_dir,
                        # a restarted server has no start time of its own: the container's creation is a bound
                        "deadline": float(cast(int, summary.get("Created", 0))) + timeout_s,
                        "timeout_s": timeout_s,
                        "log_cap_bytes": int(labels.get(LABEL_LOG_CAP, str(32 << 20))),
                    },
                )
            )
        return handles

    def _poll(self, handle: RunHandle, *, cancel: bool) -> RunStatus:
        if handle.backend != self.name:
            raise SandboxError(f"Run handle of backend {handle.backend!r} given to the docker backend.")
        with self._engine_lock:
            lock = self._run_locks.setdefault(handle.ref, threading.Lock())
        with lock:  # one poll per run at a time in this process; status.json guards across processes
            try:
                return self._poll_locked(handle, cancel=cancel)
            except ContainerGoneError:  # another process finished (and removed) it under us
                return _read_status(Path(cast(str, handle.data["run_dir"]))) or self._lost(handle.ref)

    def _lost(self, ref: str) -> RunStatus:
        return RunStatus(
            state="lost",
            detail=f"Container {ref[:12]} is gone and left no status: it was removed outside research-mcp "
            "(docker rm, a prune, an engine reset). Start the run again if its results are needed.",
        )

    # poll and cancel share one path: finish the run if it ended (or must end), else refresh its log.
    def _poll_locked(self, handle: RunHandle, *, cancel: bool) -> RunStatus:
        run_dir = Path(cast(str, handle.data["run_dir"]))
        deadline = float(handle.data.get("deadline", math.inf))
        cap = int(handle.data.get("log_cap_bytes", 32 << 20))
        done = _read_status(run_dir)
        if done is not None:
            if cancel:  # a process that died between writing status.json and removing may have left it
                self.engine().remove(handle.ref)
            return done
        engine = self.engine()
        ref = handle.ref
        attrs = engine.inspect(ref)
        if attrs is None:
            return _read_status(run_dir) or self._lost(ref)
        status = cast(str, attrs["State"]["Status"])
        if status in _RUNNING:
            if cancel:
                return self._finish(engine, ref, run_dir, cap, attrs, killed="cancelled")
            if self._clock() > deadline:
                return self._finish(engine, ref, run_dir, cap, attrs, killed="timeout")
            peak = engine.memory_peak(ref) if status == "running" else None
            if peak is not None:
                self._peaks[ref] = max(peak, self._peaks.get(ref, 0))
            self._refresh_running_log(engine, ref, run_dir, cap)
            return RunStatus(
                state="running",
                started_at=_timestamp(attrs["State"].get("StartedAt")),
                peak_memory_bytes=self._peaks.get(ref),
            )
        return self._finish(engine, ref, run_dir, cap, attrs, killed=None)

    def _refresh_running_log(self, engine: DockerEngine, ref: str, run_dir: Path, cap: int) -> None:
        """Copy the engine's log into log.txt, at most 20 % of the time: the engine serves about 100k lines/s."""
        now = time.monotonic()
        last_at, took = self._log_refreshes.get(ref, (-math.inf, 0.0))
        if now - last_at < 5 * took:
            return
        write_capped_log(engine.logs(ref), run_dir / LOG_FILE, cap_bytes=cap, tail_bytes=self.tail_bytes)
        self._log_refreshes[ref] = (now, time.monotonic() - now)

    def _finish(
        self, engine: DockerEngine, ref: str, run_dir: Path, cap: int, attrs: dict[str, Any], *, killed: str | None
    ) -> RunStatus:
        if killed is not None:
            engine.kill(ref)
            engine.wait(ref, timeout_s=30)
            attrs = engine.inspect(ref) or attrs
        done = _read_status(run_dir)
        if done is not None:  # another process finished it meanwhile: its log.txt is complete, keep it
            return done
        write_capped_log(engine.logs(ref), run_dir / LOG_FILE, cap_bytes=cap, tail_bytes=self.tail_bytes)
        self._log_refreshes.pop(ref, None)
        status = _ended_status(attrs, killed=killed, peak=self._peaks.pop(ref, None))
        _write_status(run_dir, status)  # before the removal: a concurrent poll that finds no container reads it
        engine.remove(ref)
        logger.info("run container %s finished: %s", ref[:12], status.detail)
        return status


async def probe(image: str, timeout_s: float, system: str = sys.platform) -> PartStatus:
    """Whether Docker runs can start here: the engine answers and has the image, or the step that fixes it."""
    # abandoned when the caller gives up: the thread's own socket timeout ends it soon after
    return await anyio.to_thread.run_sync(lambda: probe_engine(image, timeout_s + 1, system), abandon_on_cancel=True)


# --- helpers ----------------------------------------------------------------------------------------------------


def _prepare_run_dir(spec: RunSpec, user: tuple[int, int]) -> None:
    for sub in ("work", "outputs"):
        if not (spec.run_dir / sub).is_dir():
            raise SandboxError(f"{spec.run_dir / sub} is missing: the run folder must be laid out before start.")
    cwd = spec.run_dir / "work" / spec.workdir
    if not cwd.is_dir():
        raise SandboxError(f"workdir {spec.workdir!r} is not a folder of the run's working tree.")
    if os.geteuid() == 0 and user != (os.getuid(), os.getgid()):
        for sub in ("work", "outputs"):
            _chown_tree(spec.run_dir / sub, user)


def _chown_tree(root: Path, user: tuple[int, int]) -> None:
    os.lchown(root, *user)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.lchown(os.path.join(folder, name), *user)


def _timestamp(value: object) -> float | None:
    """Docker's RFC 3339 time with nanoseconds as epoch seconds; None for its zero time."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    match = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", value)
    if match is None:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone).timestamp()


def _ended_status(attrs: dict[str, Any], *, killed: str | None, peak: int | None) -> RunStatus:
    state = cast(dict[str, Any], attrs["State"])
    limit = cast(int, attrs.get("HostConfig", {}).get("Memory") or 0)
    started = _timestamp(state.get("StartedAt"))
    ended = _timestamp(state.get("FinishedAt"))
    code = cast(int | None, state.get("ExitCode"))
    if started is not None and ended is not None:
        ended = max(ended, started)  # the engine stamps the two from different clocks reads: can be 1 ms apart
    took = ended - started if started is not None and ended is not None else None
    failure: str | None = None
    if killed in ("timeout", "cancelled"):
        failure = killed
    elif state.get("OOMKilled") and code != 0:
        failure = "oom"
        peak = max(peak or 0, limit) or None
    elif code != 0:
        failure = "error"
    timeout = float(cast(str, attrs["Config"]["Labels"].get(LABEL_TIMEOUT, "nan"))) if killed == "timeout" else None
    detail = ended_detail(failure, code, took, memory_bytes=limit or None, timeout_s=timeout)
    if failure == "error" and state.get("Error"):
        detail += f" Docker: {state['Error']}"
    return RunStatus(
        state="exited",
        exit_code=code,
        failure=cast(Any, failure),
        started_at=started,
        ended_at=ended,
        peak_memory_bytes=peak,
        detail=detail,
    )


def _read_status(run_dir: Path) -> RunStatus | None:
    try:
        text = (run_dir / STATUS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return RunStatus.model_validate_json(text)


def _write_status(run_dir: Path, status: RunStatus) -> None:
    tmp = run_dir / f".{STATUS_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(json.dumps(status.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / STATUS_FILE)
