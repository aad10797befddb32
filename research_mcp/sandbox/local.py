"""The local backend: each run in bubblewrap, held by a detached supervisor of its own (`supervisor.py`).

`start` writes `spec.json` into the run folder and launches the supervisor, which daemonises, so the run goes
on when the client disconnects and when the server exits. The handle's ref is the supervisor's
`<pid>:<start time>`, so `poll` and `cancel` recognise it (and not a process that reused its pid) from any server
process. `status.json`, written by the supervisor at the end, is the run's result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from research_mcp.errors import SandboxError
from research_mcp.sandbox.base import RunHandle, RunSpec, RunStatus
from research_mcp.sandbox.bwrap import NOBODY, sandbox_user
from research_mcp.sandbox.cgroups import RunCgroup
from research_mcp.sandbox.supervisor import build_sandbox, gpu_devices, proc_starttime

__all__ = ["LocalBackend"]

logger = logging.getLogger(__name__)

_INSTALL_BWRAP = "Install bubblewrap: `apt-get install -y bubblewrap`"
_NETWORK = (
    "network=True is refused by the local (bubblewrap) backend: sharing the host network would also expose the "
    "host's loopback services (databases, the Docker API, this server). {found}Use the docker backend for runs "
    "that need a network, or run without one (download data beforehand into the workspace)."
)


class LocalBackend:
    """Runs in bubblewrap on this machine, as uid/gid `uid`:`gid` when the server is root."""

    name = "local"

    def __init__(
        self,
        uid: int = NOBODY,
        gid: int = NOBODY,
        python: str = sys.executable,
        start_timeout_s: float = 5.0,
        cancel_timeout_s: float = 5.0,
    ) -> None:
        self.uid, self.gid = uid, gid
        self.python = python
        self.start_timeout_s = start_timeout_s
        self.cancel_timeout_s = cancel_timeout_s

    async def start(self, spec: RunSpec) -> RunHandle:
        import anyio

        return await anyio.to_thread.run_sync(self._start, spec)

    async def poll(self, handle: RunHandle) -> RunStatus:
        import anyio

        return await anyio.to_thread.run_sync(self._poll, handle)

    async def cancel(self, handle: RunHandle) -> None:
        import anyio

        await anyio.to_thread.run_sync(self._cancel, handle)

    def _start(self, spec: RunSpec) -> RunHandle:
        _check_platform()
        run_dir = spec.run_dir
        if not run_dir.is_absolute() or not (run_dir / "work").is_dir() or not (run_dir / "outputs").is_dir():
            raise SandboxError(f"Run folder {run_dir} is not laid out (absolute, with work/ and outputs/).")
        if (run_dir / "supervisor.json").exists():
            raise SandboxError(f"Run {spec.run_id} was already started in {run_dir}; start a new run instead.")
        if spec.network:
            found = [tool for tool in ("pasta", "slirp4netns") if shutil.which(tool)]
            seen = f"{' and '.join(found)} is installed, but this backend does not use it yet. " if found else (
                "Neither pasta (`apt-get install -y passt`) nor slirp4netns is installed, and this backend does not "
                "use them yet. "
            )  # fmt: skip
            raise SandboxError(_NETWORK.format(found=seen))
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
        if user is not None:
            blocked = _unreachable(run_dir, *user)
            if blocked is not None:
                raise SandboxError(
                    f"The sandbox user (uid {user[0]}) cannot reach {run_dir}: {blocked} is not searchable by others. "
                    f"Run `chmod o+x {blocked}` or use a workspace outside it."
                )
        _check_bwrap(user)
        (run_dir / "spec.json").write_text(spec.model_dump_json())
        argv = [self.python, "-m", "research_mcp.sandbox.supervisor", str(run_dir)]
        argv += ["--uid", str(self.uid), "--gid", str(self.gid)]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH")}
        launcher = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True, env=env, timeout=30
        )
        if launcher.returncode != 0:
            tail = launcher.stderr.decode(errors="replace").strip()[-500:]
            raise SandboxError(f"The run supervisor did not start (exit {launcher.returncode}): {tail}")
        deadline = time.monotonic() + self.start_timeout_s
        while (info := _supervisor_info(run_dir)) is None:
            if (run_dir / "status.json").exists() or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if info is None:
            status = _status(run_dir)
            detail = status.detail if status else f"no supervisor.json within {self.start_timeout_s:g} s"
            log = run_dir / "supervisor.log"
            raise SandboxError(f"The run supervisor failed before the run started: {detail}. See {log}.")
        return RunHandle(
            backend=self.name,
            ref=f"{info['pid']}:{info['starttime']}",
            data={"run_dir": str(run_dir), "cgroup": info.get("cgroup"), "limits": info.get("limits")},
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


def _check_platform() -> None:
    if sys.platform == "darwin":
        raise SandboxError("The local backend needs Linux (bubblewrap); on macOS use the docker backend.")
    if not sys.platform.startswith("linux"):
        raise SandboxError(f"The local backend needs Linux (bubblewrap), not {sys.platform}; use the docker backend.")


def _check_bwrap(user: tuple[int, int] | None) -> None:
    if shutil.which("bwrap") is None:
        raise SandboxError(f"bubblewrap (bwrap) is not installed. {_INSTALL_BWRAP}.")
    if user is not None and shutil.which("setpriv") is None:
        raise SandboxError(
            "The server runs as root, so the sandbox drops to an unprivileged uid with setpriv, which is missing: "
            "`apt-get install -y util-linux`."
        )


def _unreachable(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder on the way to `path` that uid:gid cannot search, if any."""
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except OSError:
            return folder
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        if not st.st_mode & bit:
            return folder
    return None


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
