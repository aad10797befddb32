"""The local backend: each run in bubblewrap, held by a detached supervisor of its own (`supervisor.py`).

`start` writes `spec.json` into the run folder and asks this server's launcher (one `launcher.py` process,
started on first use and ended at exit) to fork a supervisor, which detaches into a session of its own, so the
run goes on when the client disconnects and when the server exits. Forking from a launcher that has already
imported everything starts a run in milliseconds; a fresh interpreter per run cost more than the run. The
handle's ref is the supervisor's `<pid>:<start time>`, so `poll` and `cancel` recognise it (and not a process
that reused its pid) from any server process. `status.json`, written by the supervisor at the end, is the run's
result.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

from research_mcp.errors import SandboxError
from research_mcp.probe import PartStatus, part, probe_tool, run_probe, version_of
from research_mcp.sandbox.base import Backend, Capacity, RunHandle, RunSpec, RunStatus
from research_mcp.sandbox.bwrap import NOBODY, Sandbox, can_stage, sandbox_user, unreachable
from research_mcp.sandbox.cgroups import RunCgroup
from research_mcp.sandbox.supervisor import build_sandbox, gpu_devices, proc_starttime

__all__ = ["LocalBackend", "close_launchers", "probe", "probe_cgroups", "probe_network"]

logger = logging.getLogger(__name__)

_INSTALL_BWRAP = "Install bubblewrap: `apt-get install -y bubblewrap`"
_USERNS_HINT = (
    "Allow unprivileged user namespaces: `sysctl -w kernel.unprivileged_userns_clone=1` and "
    "`sysctl -w user.max_user_namespaces=10000` "
    "(Ubuntu 24.04+: `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`)"
)
_SLIRP = (
    "apt-get install -y slirp4netns  (the network of local runs that ask for one)",
    "Linux only: on macOS runs that need a network use the docker backend",
)
_CGROUP_CONTROLLERS = ("memory", "pids", "cpu")
_NETWORK = (
    "network=True is refused by the local (bubblewrap) backend here: it gives a run a network only through "
    "slirp4netns (a user-mode network that keeps the host's loopback services, such as databases and the Docker "
    "API, out of reach), which is not installed: `apt-get install -y slirp4netns`. Or use the docker backend, or "
    "run without a network (download data beforehand into the workspace)."
)


class LocalBackend(Backend):
    """Runs in bubblewrap on this machine, as uid/gid `uid`:`gid` when the server is root."""

    name = "local"

    def __init__(
        self,
        uid: int = NOBODY,
        gid: int = NOBODY,
        python: str = sys.executable,
        start_timeout_s: float = 5.0,
        cancel_timeout_s: float = 5.0,
        allow_unsandboxed: bool = False,
    ) -> None:
        self.uid, self.gid = uid, gid
        self.allow_unsandboxed = allow_unsandboxed
        self.python = python
        self.start_timeout_s = start_timeout_s
        self.cancel_timeout_s = cancel_timeout_s

    def capacity(self) -> Capacity:
        """This machine's cores and GPUs: one run per core."""
        from research_mcp.sandbox.gpus import host_gpus

        cpus = max(1, os.cpu_count() or 1)
        return Capacity(runs=cpus, cpus=cpus, gpus=list(host_gpus()), pool="host")

    async def start(self, spec: RunSpec) -> RunHandle:
        import anyio

        return await anyio.to_thread.run_sync(self._start, spec)

    async def poll(self, handle: RunHandle) -> RunStatus:
        import anyio

        return await anyio.to_thread.run_sync(self._poll, handle)

    async def cancel(self, handle: RunHandle) -> None:
        import anyio

        await anyio.to_thread.run_sync(self._cancel, handle)

    async def wait(self, handle: RunHandle, timeout_s: float) -> None:
        """Until the run's supervisor exits (it writes status.json just before), through a pidfd: no polling."""
        import anyio

        pid = _pid(handle.ref)
        if pid is None or not _alive(handle.ref):
            return
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        except OSError:  # no pidfds here (Linux before 5.3): a plain sleep, and the caller polls after it
            await anyio.sleep(timeout_s)
            return
        try:
            if _alive(handle.ref):  # the pidfd is the supervisor's, not a process' that took its pid meanwhile
                with anyio.move_on_after(timeout_s):
                    await anyio.wait_readable(pidfd)
        finally:
            os.close(pidfd)

    def _start(self, spec: RunSpec) -> RunHandle:
        _check_platform()
        run_dir = spec.run_dir
        if not run_dir.is_absolute() or not (run_dir / "work").is_dir() or not (run_dir / "outputs").is_dir():
            raise SandboxError(f"Run folder {run_dir} is not laid out (absolute, with work/ and outputs/).")
        if (run_dir / "supervisor.json").exists():
            raise SandboxError(f"Run {spec.run_id} was already started in {run_dir}; start a new run instead.")
        if self.allow_unsandboxed and shutil.which("bwrap") is None:
            # the user's explicit choice: the log's first line and lab_info say the run is not isolated
            spec = spec.model_copy(update={"unsandboxed": True})
        if spec.network and not spec.unsandboxed and shutil.which("slirp4netns") is None:
            raise SandboxError(_NETWORK)
        missing = [dev for dev in gpu_devices(spec.gpus) if not dev.endswith("-uvm") and not os.path.exists(dev)]
        if missing:
            raise SandboxError(
                f"GPU(s) {spec.gpus} asked for, but {', '.join(missing)} do not exist here. Call lab_info to see the "
                "GPUs of this machine, or run without gpus."
            )
        user = sandbox_user(self.uid, self.gid)
        try:
            build_sandbox(spec, user)
        except ValueError as exc:
            raise SandboxError(f"Cannot run this spec in bubblewrap: {exc}.") from exc
        if user is not None:  # folders closed to the sandbox user are staged where root can (bwrap.py)
            blocked = unreachable(run_dir, *user)
            if blocked is not None and (spec.unsandboxed or not can_stage()):
                raise SandboxError(
                    f"The sandbox user (uid {user[0]}) cannot reach {run_dir}: {blocked} is not searchable by others. "
                    f"Run `chmod o+x {blocked}` or use a workspace outside it."
                )
            for path in [*spec.ro_paths, *(m.source for m in spec.mounts if not m.volume)]:
                blocked = unreachable(Path(path), *user)
                if blocked is not None and (spec.unsandboxed or not can_stage()):
                    raise SandboxError(
                        f"The sandbox user (uid {user[0]}) cannot read the folder {path} the run binds: "
                        f"{blocked} is not searchable by others. Run `chmod o+x {blocked}`, or make the environment "
                        "from a Python outside it (e.g. `/usr/bin/python3 -m venv .venv`)."
                    )
        _check_bwrap(user, need_bwrap=not spec.unsandboxed)
        (run_dir / "spec.json").write_text(spec.model_dump_json())
        answer = _launcher(self.python).start(run_dir, self.uid, self.gid, self.start_timeout_s)
        info: object = answer.get("ready")
        if not isinstance(info, dict):
            status = _status(run_dir)
            detail = status.detail if status else "it ended without a result"
            log = run_dir / "supervisor.log"
            raise SandboxError(f"The run supervisor failed before the run started: {detail}. See {log}.")
        info = cast(dict[str, Any], info)
        return RunHandle(
            backend=self.name,
            ref=f"{info['pid']}:{info['starttime']}",
            data={"run_dir": str(run_dir), "cgroup": info.get("cgroup"), "limits": info.get("limits")},
        )

    async def adopt(self, spec: RunSpec) -> RunHandle | None:
        """The supervisor a lost `start` launched, from the supervisor.json it wrote in the run folder."""
        import anyio

        info = await anyio.to_thread.run_sync(_supervisor_info, spec.run_dir)
        if info is None:
            return None
        return RunHandle(
            backend=self.name,
            ref=f"{info['pid']}:{info['starttime']}",
            data={"run_dir": str(spec.run_dir), "cgroup": info.get("cgroup"), "limits": info.get("limits")},
        )

    def _poll(self, handle: RunHandle) -> RunStatus:
        run_dir = Path(str(handle.data.get("run_dir", "")))
        status = _status(run_dir)
        if status is not None:
            return status
        info = _supervisor_info(run_dir) or {}
        if _alive(handle.ref):
            peak = None
            if (cgroup := _cgroup(handle)) is not None:
                peak = cgroup.stats().peak_memory_bytes
            return RunStatus(state="running", started_at=info.get("started_at"), peak_memory_bytes=peak)
        status = _status(run_dir)  # it may have finished between the two looks
        if status is not None:
            return status
        left = self._reap(handle)
        return RunStatus(
            state="lost",
            started_at=info.get("started_at"),
            detail=f"the run's supervisor vanished without a result{left}",
        )

    def _cancel(self, handle: RunHandle) -> None:
        run_dir = Path(str(handle.data.get("run_dir", "")))
        pid = _pid(handle.ref)
        if pid is not None and _alive(handle.ref):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.cancel_timeout_s
            while _alive(handle.ref) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(handle.ref):
                logger.warning("supervisor %s ignored SIGTERM; killing it", handle.ref)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if _status(run_dir) is None:
            self._reap(handle)

    def _reap(self, handle: RunHandle) -> str:
        """Kill whatever is left of a run whose supervisor is gone; say what was found."""
        cgroup = _cgroup(handle)
        if cgroup is None:
            return ""
        left = cgroup.pids()
        cgroup.kill_all()
        cgroup.remove()
        return f"; killed {len(left)} process(es) it left behind" if left else ""


class _Launcher:
    """This server's launcher process for one interpreter: started on first use, ended at exit."""

    def __init__(self, python: str) -> None:
        self.python = python
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def start(self, run_dir: Path, uid: int, gid: int, timeout_s: float) -> dict[str, Any]:
        """Have a supervisor forked for `run_dir`; its answer once the run started (or its supervisor ended)."""
        request = json.dumps({"run_dir": str(run_dir), "uid": uid, "gid": gid}).encode() + b"\n"
        with self._lock:
            proc = self._process()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
            except BrokenPipeError:
                self._failed(proc)
            deadline = time.monotonic() + timeout_s
            while True:  # a late answer to a request that timed out may come first: skip it
                line = self._line(proc, proc.stdout.fileno(), deadline)
                if line is None:
                    raise SandboxError(
                        f"The run supervisor did not report within {timeout_s:g} s; see {run_dir / 'supervisor.log'}."
                    )
                answer: object = json.loads(line)
                if isinstance(answer, dict) and answer.get("run_dir") == str(run_dir):  # pyright: ignore[reportUnknownMemberType]
                    return cast(dict[str, Any], answer)
                if isinstance(answer, dict) and "error" in answer:
                    raise SandboxError(f"The run launcher refused the request: {answer['error']}")

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._close_pipes()
        argv = [self.python, "-P", "-m", "research_mcp.sandbox.launcher", "--parent", str(os.getpid())]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH")}
        self._proc = subprocess.Popen(
            argv,  # -P and cwd=/: no module of the server's cwd (a workspace, model-written) shadows ours
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env=env,
            start_new_session=True,
        )
        self._buffer = b""
        return self._proc

    def _line(self, proc: subprocess.Popen[bytes], fd: int, deadline: float) -> bytes | None:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self._failed(proc)
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _failed(self, proc: subprocess.Popen[bytes]) -> None:
        """The launcher is gone: raise with what it said (it is started again on the next run)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        err = proc.stderr.read().decode(errors="replace").strip()[-500:] if proc.stderr else ""
        raise SandboxError(f"The run launcher exited ({proc.returncode}): {err or 'no message'}")

    def _close_pipes(self) -> None:
        if self._proc is not None:
            for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()

    def close(self) -> None:
        """End the launcher (its stdin closes); running supervisors go on, re-parented."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            self._close_pipes()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            self._proc = None


_LAUNCHERS: dict[str, _Launcher] = {}
_LAUNCHERS_LOCK = threading.Lock()


def _launcher(python: str) -> _Launcher:
    with _LAUNCHERS_LOCK:
        found = _LAUNCHERS.get(python)
        if found is None:
            if not _LAUNCHERS:
                atexit.register(close_launchers)
            found = _LAUNCHERS[python] = _Launcher(python)
        return found


def close_launchers() -> None:
    """End this process's launchers (at exit; tests and the bench may call it earlier). Runs go on."""
    with _LAUNCHERS_LOCK:
        launchers = list(_LAUNCHERS.values())
    for launcher in launchers:
        launcher.close()


def _check_platform() -> None:
    if sys.platform == "darwin":
        raise SandboxError("The local backend needs Linux (bubblewrap); on macOS use the docker backend.")
    if not sys.platform.startswith("linux"):
        raise SandboxError(f"The local backend needs Linux (bubblewrap), not {sys.platform}; use the docker backend.")


def _check_bwrap(user: tuple[int, int] | None, *, need_bwrap: bool = True) -> None:
    if need_bwrap and shutil.which("bwrap") is None:
        raise SandboxError(
            f"bubblewrap (bwrap) is not installed. {_INSTALL_BWRAP}, or use the docker backend. To run experiments "
            "without any sandbox at your own risk, set RESEARCH_MCP_ALLOW_UNSANDBOXED=1."
        )
    if user is not None and shutil.which("setpriv") is None:
        raise SandboxError(
            "The server runs as root, so the sandbox drops to an unprivileged uid with setpriv, which is missing: "
            "`apt-get install -y util-linux`."
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: object = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None  # pyright: ignore[reportUnknownVariableType]


def _supervisor_info(run_dir: Path) -> dict[str, Any] | None:
    return _read_json(run_dir / "supervisor.json")


def _status(run_dir: Path) -> RunStatus | None:
    data = _read_json(run_dir / "status.json")
    if data is None:
        return None
    try:
        return RunStatus.model_validate(data)
    except ValueError:
        return None


def _pid(ref: str) -> int | None:
    pid, _, _ = ref.partition(":")
    return int(pid) if pid.isdigit() else None


def _alive(ref: str) -> bool:
    """The supervisor named by `pid:starttime` is alive (not a zombie, not a process that reused its pid)."""
    pid, _, start = ref.partition(":")
    return pid.isdigit() and start.isdigit() and proc_starttime(int(pid)) == int(start)


def _cgroup(handle: RunHandle) -> RunCgroup | None:
    data: object = handle.data.get("cgroup")
    return RunCgroup.from_data(data) if isinstance(data, dict) else None  # pyright: ignore[reportUnknownArgumentType]


# --- what the doctor asks: can local runs start here, with a network, with limits -----------------------------


async def probe(system: str = sys.platform) -> PartStatus:
    """Start a real sandbox, built as runs build theirs, as an unprivileged uid when we are root (VERIFIED.md
    section 7.4)."""
    if not system.startswith("linux"):
        return part("bubblewrap", "unsupported", f"bubblewrap needs Linux namespaces, not {system}; use docker")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return part("bubblewrap", "missing", "bwrap not found on PATH", "apt-get install -y bubblewrap")
    user, how = sandbox_user(), ""
    setpriv = shutil.which("setpriv") or "setpriv"
    if user is not None:
        if shutil.which("setpriv") is None:
            detail = "running as root: setpriv (util-linux) is needed to start bwrap as an unprivileged user"
            return part("bubblewrap", "missing", detail, "apt-get install -y util-linux")
        how = f" as uid {user[0]} (via setpriv)"
    version = version_of((await run_probe([bwrap, "--version"])).line)
    argv = Sandbox(command=["/usr/bin/true"], user=user, bwrap=bwrap, setpriv=setpriv, stage=False).argv()
    out = await run_probe(argv)
    if out.rc != 0:
        detail = f"bwrap could not start a namespace{how}: exit {out.rc}: {out.line}"
        return part("bubblewrap", "error", detail, _USERNS_HINT, version)
    if user is not None:
        import anyio.to_thread

        how += (
            "; folders closed to others on the way to a workspace (as /root is) are bound through a mount namespace"
            if await anyio.to_thread.run_sync(can_stage)
            else "; no mount namespace can be made here, so folders on the way to a workspace must be searchable by "
            "others (chmod o+x)"
        )
    return part("bubblewrap", "ok", f"{bwrap} started a namespace{how}", version=version)


async def probe_network(system: str = sys.platform) -> PartStatus:
    """slirp4netns, the only way a local run gets a network."""
    return await probe_tool("slirp4netns", ["slirp4netns", "--version"], _SLIRP[system == "darwin"])


def probe_cgroups(
    system: str = sys.platform, root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> PartStatus:
    """Which mechanism can hold a run's memory, pids and CPU: cgroup v2, cgroup v1, or rlimits only. Blocks briefly."""
    if not system.startswith("linux"):
        return part("cgroups", "unsupported", f"cgroups are Linux-only; runs on {system} get rlimits only")
    wanted = ", ".join(_CGROUP_CONTROLLERS)
    fallback = "runs are limited by rlimits only (no memory/RSS, pids or CPU-share limit)"
    if (root / "cgroup.controllers").is_file():  # unified hierarchy
        own = next((ln[3:] for ln in self_cgroup.read_text().splitlines() if ln.startswith("0::")), "/")
        here = root / own.strip().lstrip("/")
        available = (here / "cgroup.controllers").read_text().split() if here.is_dir() else []
        lacking = [c for c in _CGROUP_CONTROLLERS if c not in available]
        if not lacking and os.access(here, os.W_OK):
            return part("cgroups", "ok", f"cgroup v2: {wanted} delegated at {here}")
        why = f"controllers {', '.join(lacking)} not delegated" if lacking else "not writable"
        if os.geteuid() == 0:
            install = f"echo '+memory +pids +cpu' > {here.parent / 'cgroup.subtree_control'}"
        else:
            install = "Run the server in a delegated scope: `systemd-run --user --scope -p Delegate=yes research-mcp`"
        return part("cgroups", "missing", f"cgroup v2 at {here}: {why}; {fallback}", install)
    mounted = [c for c in _CGROUP_CONTROLLERS if (root / c / "cgroup.procs").is_file()]
    writable = [c for c in mounted if os.access(root / c, os.W_OK)]
    if len(writable) == len(_CGROUP_CONTROLLERS):
        return part("cgroups", "ok", f"cgroup v1: {root}/{{{','.join(writable)}}} writable")
    if mounted:
        detail = f"cgroup v1 mounted, but only {', '.join(writable) or 'none'} of {wanted} writable; {fallback}"
        return part("cgroups", "missing", detail, "Run the server as root")
    return part("cgroups", "missing", f"no cgroup controllers found; {fallback}")
