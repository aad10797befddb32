"""The detached supervisor of one local run: `python -m research_mcp.sandbox.supervisor <run_dir> [--uid N --gid N]`.

It daemonises at once (the launcher exits, so nobody has to reap us and the run outlives the server), then:
reads `<run_dir>/spec.json` (a `RunSpec`); creates the run's cgroup; starts bwrap, whose child joins the cgroup
before it execs; writes `supervisor.json` (its pid and /proc start time, so its identity survives pid reuse);
pipes the sandbox's output into `log.txt` under the cap; kills the whole tree on timeout or SIGTERM (cancel);
and at the end writes `status.json` (a `RunStatus`) atomically, removes the cgroup and exits. Its own messages go
to `<run_dir>/supervisor.log`; it never writes to the stdout it was given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import posixpath
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from research_mcp.sandbox.base import LOG_CAP_MARKER, SANDBOX_OUTPUTS, SANDBOX_WORK, Failure, RunSpec, RunStatus
from research_mcp.sandbox.bwrap import NOBODY, Bind, Sandbox, etc_identity_files
from research_mcp.sandbox.cgroups import Limits, RunCgroup, detect, fallback_rlimits

__all__ = ["CappedLog", "build_sandbox", "gpu_devices", "main", "proc_starttime", "write_json_atomic"]

logger = logging.getLogger(__name__)

TAIL_WINDOW_BYTES = 1 << 20
_FLUSH_EVERY_S = 0.5
_DRAIN_S = 2.0


class CappedLog:
    """log.txt with a cap: the head up to `cap - tail window`, the marker once, then the last tail window.

    The tail is rewritten in place on `flush()`, so the file always ends with the latest output and a final
    traceback is kept whole (the tail starts at a line boundary).
    """

    def __init__(self, path: Path, cap_bytes: int, tail_bytes: int = TAIL_WINDOW_BYTES) -> None:
        self.cap_bytes = cap_bytes
        self.tail_window = min(tail_bytes, cap_bytes // 2)
        self.head_limit = cap_bytes - self.tail_window
        self._file = path.open("wb")
        self._head = 0
        self._tail = bytearray()
        self._dropped = 0
        self._capped = False
        self._dirty = False

    def write(self, data: bytes) -> None:
        if not self._capped:
            room = self.head_limit - self._head
            self._file.write(data[:room])
            self._head += min(room, len(data))
            data = data[room:]
            self._capped = bool(data)
        if data:
            self._tail += data
            over = len(self._tail) - self.tail_window
            if over > 0:
                self._dropped += over
                del self._tail[:over]
            self._dirty = True

    def flush(self) -> None:
        if self._capped and self._dirty:
            tail, dropped = bytes(self._tail), self._dropped
            newline = tail.find(b"\n", 0, 4096)
            if dropped and newline >= 0:
                tail, dropped = tail[newline + 1 :], dropped + newline + 1
            self._file.seek(self._head)
            self._file.truncate()
            self._file.write(LOG_CAP_MARKER.format(cap=self.cap_bytes, dropped=dropped).encode())
            self._file.write(tail)
            self._dirty = False
        self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()


def gpu_devices(gpus: list[int]) -> list[str]:
    """Device nodes a run with these GPU indices needs (they may not exist: check before starting)."""
    if not gpus:
        return []
    return ["/dev/nvidiactl", "/dev/nvidia-uvm", *(f"/dev/nvidia{i}" for i in gpus)]


def build_sandbox(
    spec: RunSpec,
    user: tuple[int, int] | None,
    data: dict[str, int] | None = None,
    status_fd: int | None = None,
    tools: tuple[str, str] = ("bwrap", "setpriv"),
) -> Sandbox:
    """The bwrap sandbox of a run (raises ValueError for a spec it cannot express)."""
    cwd = posixpath.normpath(posixpath.join(SANDBOX_WORK, spec.workdir))
    if spec.workdir.startswith("/") or not (cwd == SANDBOX_WORK or cwd.startswith(SANDBOX_WORK + "/")):
        raise ValueError(f"workdir {spec.workdir!r} must be a folder inside the working tree")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **spec.env,
        "RESEARCH_OUT": SANDBOX_OUTPUTS,
    }
    if spec.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.gpus)
    run_dir = spec.run_dir
    binds = [
        Bind(str(run_dir / "work"), SANDBOX_WORK, writable=True),
        Bind(str(run_dir / "outputs"), SANDBOX_OUTPUTS, writable=True),
        *(Bind(dev, dev, device=True, optional=dev.endswith("-uvm")) for dev in gpu_devices(spec.gpus)),
    ]
    command = ["/bin/sh", "-c", spec.command]
    return Sandbox(
        command,
        binds,
        env,
        cwd,
        spec.network,
        data or {},
        status_fd=status_fd,
        user=user,
        bwrap=tools[0],
        setpriv=tools[1],
    )


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None when the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def write_json_atomic(path: Path, payload: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(payload)
    os.replace(tmp, path)


class _Supervisor:
    def __init__(self, run_dir: Path, uid: int, gid: int) -> None:
        self.run_dir = run_dir
        self.user = (uid, gid) if os.geteuid() == 0 else None
        self.stop: Failure | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop is None:
            self.stop = "cancelled"

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        started_at = time.time()
        try:
            spec = RunSpec.model_validate_json((self.run_dir / "spec.json").read_text())
        except (OSError, ValueError) as exc:
            logger.exception("unreadable spec")
            return self._finish(None, None, started_at, "error", f"unreadable spec.json: {exc}", None)
        mechanism = detect()
        limits = Limits(spec.memory_bytes, spec.pids, spec.cpus)
        try:
            cgroup = RunCgroup.create(spec.run_id, limits, mechanism)
        except OSError as exc:
            logger.exception("cgroup creation failed")
            return self._finish(None, None, started_at, "error", f"could not create the run's cgroup: {exc}", None)
        try:
            return self._supervise(spec, cgroup, mechanism.kind, limits)
        except Exception as exc:
            logger.exception("supervisor failed")
            if cgroup is not None:
                cgroup.kill_all()
            return self._finish(spec, cgroup, started_at, "error", f"the supervisor failed: {exc!r}", None)
        finally:
            if cgroup is not None:
                cgroup.kill_all()
                cgroup.remove()

    def _supervise(self, spec: RunSpec, cgroup: RunCgroup | None, kind: str, limits: Limits) -> int:
        if self.user is not None:
            _chown_tree(self.run_dir / "work", *self.user)
            _chown_tree(self.run_dir / "outputs", *self.user)
        uid, gid = self.user or (os.getuid(), os.getgid())
        fds: dict[str, int] = {}
        for dest, content in etc_identity_files(uid, gid).items():
            fd = os.memfd_create("etc", 0)
            os.write(fd, content)
            os.lseek(fd, 0, os.SEEK_SET)
            fds[dest] = fd
        status_r, status_w = os.pipe()
        rlimits = fallback_rlimits(limits, own_uid=self.user is not None) if cgroup is None else []

        def preexec() -> None:  # in the child, before exec: nothing it runs escapes the cgroup
            if cgroup is not None:
                cgroup.join()
            for which, value in rlimits:
                resource.setrlimit(which, (value, value))

        tools = (shutil.which("bwrap") or "bwrap", shutil.which("setpriv") or "setpriv")
        sandbox = build_sandbox(spec, self.user, fds, status_w, tools)
        started_at = time.time()
        try:
            child = subprocess.Popen(
                sandbox.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(*fds.values(), status_w),
                preexec_fn=preexec,  # safe: the supervisor has no other thread
                process_group=0,
                env={"PATH": "/usr/bin:/bin"},  # bwrap's own environment, which /proc/1/environ shows inside
            )
        except OSError as exc:
            logger.exception("bwrap did not start")
            return self._finish(spec, cgroup, started_at, "error", f"could not start bwrap: {exc}", None)
        finally:
            for fd in (*fds.values(), status_w):
                os.close(fd)
        me = {"pid": os.getpid(), "starttime": proc_starttime(os.getpid()), "started_at": started_at}
        me |= {"child_pid": child.pid, "cgroup": cgroup.to_data() if cgroup else None, "limits": kind}
        write_json_atomic(self.run_dir / "supervisor.json", json.dumps(me))
        assert child.stdout is not None
        log = CappedLog(self.run_dir / "log.txt", spec.log_cap_bytes)
        try:
            self._pump(child, child.stdout.fileno(), log, cgroup, started_at + spec.timeout_s)
        finally:
            log.close()
            child.stdout.close()
        with os.fdopen(status_r, "rb") as status_file:
            sandbox_started = b"exit-code" in status_file.read()  # bwrap writes it once the command ran
        rc = child.returncode
        exit_code = rc if rc >= 0 else 128 - rc
        return self._finish(spec, cgroup, started_at, self.stop, None, exit_code, sandbox_started)

    def _pump(
        self, child: subprocess.Popen[bytes], fd: int, log: CappedLog, cgroup: RunCgroup | None, end: float
    ) -> None:
        os.set_blocking(fd, False)
        flushed, drain_until, killed = time.monotonic(), None, False
        while True:
            readable, _, _ = select.select([fd], [], [], 0.1)
            if readable:
                chunk = _read_some(fd)
                if chunk is None:
                    break  # EOF: every writer is gone
                log.write(chunk)
            now = time.monotonic()
            if now - flushed > _FLUSH_EVERY_S:
                log.flush()
                flushed = now
            if self.stop is None and time.time() > end:
                self.stop = "timeout"
            if self.stop is not None and not killed:
                logger.info("killing the run: %s", self.stop)
                _kill_tree(child, cgroup)
                killed = True
            if drain_until is None and child.poll() is not None:
                drain_until = now + _DRAIN_S
            if drain_until is not None and now > drain_until:
                break
        child.wait()

    def _finish(
        self,
        spec: RunSpec | None,
        cgroup: RunCgroup | None,
        started_at: float,
        failure: Failure | None,
        detail: str | None,
        exit_code: int | None,
        sandbox_started: bool = True,
    ) -> int:
        peak = None
        if cgroup is not None:
            stats = cgroup.stats()
            peak = stats.peak_memory_bytes
            if failure is None and exit_code and stats.oom_kills:
                failure = "oom"
                limit = spec.memory_bytes if spec else None
                detail = f"killed by the out-of-memory killer at the memory limit ({limit} bytes)"
        if failure is None and exit_code:
            failure = "error"
            if not sandbox_started:
                detail = "bubblewrap could not set up the sandbox; its message is at the end of log.txt"
            else:
                detail = f"the command exited with status {exit_code}"
        elif failure == "timeout" and spec is not None:
            detail = f"killed after the {spec.timeout_s:g} s timeout"
        elif failure == "cancelled":
            detail = "cancelled"
        status = RunStatus(
            state="exited",
            exit_code=exit_code,
            failure=failure,
            started_at=started_at,
            ended_at=time.time(),
            peak_memory_bytes=peak,
            detail=detail,
        )
        if cgroup is not None:  # nothing of the run is left once status.json says it ended
            cgroup.kill_all()
            cgroup.remove()
        write_json_atomic(self.run_dir / "status.json", status.model_dump_json())
        return 0


def _read_some(fd: int) -> bytes | None:
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""
    return data or None


def _kill_tree(child: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> None:
    """Everything in the cgroup first (no survivor can fork), then bwrap: its pid namespace goes with it."""
    if cgroup is not None:
        cgroup.kill_all()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """Give the sandbox user the tree (symlinks themselves, never what they point at)."""
    if not top.is_dir():
        return
    os.chown(top, uid, gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _daemonize() -> None:
    """Fork; the launcher returns at once and the supervisor is re-parented to init, which reaps it."""
    if os.fork() > 0:
        os._exit(0)
    with contextlib.suppress(OSError):
        os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # let go of the launcher's pipes: it returns once they close
        os.dup2(null, fd)
    os.close(null)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research_mcp.sandbox.supervisor")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--uid", type=int, default=NOBODY)
    parser.add_argument("--gid", type=int, default=NOBODY)
    parser.add_argument("--foreground", action="store_true", help="do not daemonise (tests, debugging)")
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir.resolve()
    if not args.foreground:
        _daemonize()
    logging.basicConfig(
        filename=run_dir / "supervisor.log", level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        return _Supervisor(run_dir, args.uid, args.gid).run()
    except BaseException:
        logger.exception("supervisor crashed")
        raise


if __name__ == "__main__":
    sys.exit(main())
