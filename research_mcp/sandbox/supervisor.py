"""The detached supervisor of one local run, and the launcher that forks one per run.

`python -P -m research_mcp.sandbox.supervisor --serve --parent <server pid>` is the launcher: the local backend
starts one per server and keeps it (`local.py`). It reads one JSON request a line on stdin,
`{"run_dir": ..., "uid": ..., "gid": ...}`, hands it to a supervisor and answers one JSON line on stdout,
`{"run_dir": ..., "pid": ..., "ready": <supervisor.json> | null}`, once the run has started (or its supervisor
ended first: then `status.json` says why). It reaps the supervisors it forked and exits when its stdin closes or
its parent changes; supervisors still running then go on, re-parented. Forking from an interpreter that has
already imported everything makes a run start in milliseconds instead of an interpreter start-up.

The launcher keeps one spare supervisor forked ahead of the next request. A supervisor detaches (new session,
stdin/stdout/stderr on /dev/null), becomes a child subreaper (the processes bwrap leaves behind are re-parented
to it, not to PID 1, and it reaps them), creates the run's cgroup (`research-mcp/run-<its pid>-<random>`, with
no limits yet) and forks the run's first process, which joins that cgroup at once and waits (`_Starter`); then
it waits for its request. Given one, it reads `<run_dir>/spec.json` (a `RunSpec` as JSON, read without
pydantic), sets the limits, lets the first process exec bwrap (through setpriv as root), writes
`supervisor.json` (its pid and /proc start time, so its identity survives pid reuse), pipes the sandbox's output
into `log.txt` under the cap, kills the whole tree on timeout or SIGTERM (cancel), and at the end writes
`status.json` (a `RunStatus`'s fields) atomically, removes the cgroup, reaps what is left and exits. Its own
messages go to `<run_dir>/supervisor.log`. A spare that is never used (the server exits) removes its cgroup.

`python -m research_mcp.sandbox.supervisor <run_dir> [--uid N --gid N]` supervises one run in the foreground
(debugging). This module imports only the standard library and pydantic-free modules of the package.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal, cast

from research_mcp.sandbox._supervised import (
    UNSANDBOXED_NOTICE,
    CappedLog,
    Spec,
    build_sandbox,
    gpu_devices,
    proc_starttime,
    unsandboxed_command,
    unsandboxed_env,
    write_json_atomic,
)
from research_mcp.sandbox.bwrap import NOBODY, etc_identity_files
from research_mcp.sandbox.cgroups import Limits, RunCgroup, detect, fallback_rlimits, sweep_stale

__all__ = [
    "CappedLog",
    "Spec",
    "build_sandbox",
    "gpu_devices",
    "main",
    "proc_starttime",
    "serve",
    "write_json_atomic",
]

logger = logging.getLogger(__name__)

_FLUSH_EVERY_S = 0.5
_DRAIN_S = 2.0
_REAP_EVERY_S = 0.5
_PR_SET_CHILD_SUBREAPER = 36

Failure = Literal["timeout", "oom", "cancelled", "error"]


class _Supervisor:
    def __init__(self, run_dir: Path, uid: int, gid: int, ready_fd: int | None = None) -> None:
        self.run_dir = run_dir
        self.user = (uid, gid) if os.geteuid() == 0 else None
        self.stop: Failure | None = None
        self.ready_fd = ready_fd

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop is None:
            self.stop = "cancelled"

    def run(self, prepared: _Prepared) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        started_at = time.time()
        cgroup = prepared.cgroup
        try:
            spec = Spec.from_json((self.run_dir / "spec.json").read_text())
        except (OSError, ValueError) as exc:
            logger.exception("unreadable spec")
            prepared.starter.abandon()
            return self._finish(None, cgroup, started_at, "error", f"unreadable spec.json: {exc}", None)
        if prepared.cgroup_error is not None:
            logger.error("cgroup creation failed: %s", prepared.cgroup_error)
            prepared.starter.abandon()
            detail = f"could not create the run's cgroup: {prepared.cgroup_error}"
            return self._finish(None, None, started_at, "error", detail, None)
        limits = Limits(spec.memory_bytes, spec.pids, spec.cpus)
        try:
            if cgroup is not None:
                cgroup.set_limits(limits)
        except OSError as exc:
            logger.exception("setting the limits failed")
            prepared.starter.abandon()
            detail = f"could not set the run's limits ({limits}): {exc}"
            if exc.errno == errno.EBUSY:
                detail += "; a memory limit under a few MiB cannot hold even the sandbox's first process"
            return self._finish(spec, cgroup, started_at, "error", detail, None)
        try:
            return self._supervise(spec, prepared.starter, cgroup, prepared.kind)
        except Exception as exc:
            logger.exception("supervisor failed")
            if cgroup is not None:
                cgroup.kill_all()
            return self._finish(spec, cgroup, started_at, "error", f"the supervisor failed: {exc!r}", None)
        finally:
            prepared.starter.abandon()  # a no-op once it ran
            if cgroup is not None:
                cgroup.kill_all()
                cgroup.remove()

    def _supervise(self, spec: Spec, child: _Starter, cgroup: RunCgroup | None, kind: str) -> int:
        if spec.unsandboxed:
            (self.run_dir / "tmp").mkdir(exist_ok=True)
        if self.user is not None:
            for folder in ("work", "outputs", "tmp") if spec.unsandboxed else ("work", "outputs"):
                _chown_tree(self.run_dir / folder, *self.user)
        uid, gid = self.user or (os.getuid(), os.getgid())
        user_net = spec.network and not spec.unsandboxed
        started_at = time.time()
        error = child.go({"run_dir": str(self.run_dir), "uid": uid, "gid": gid}, user_net)
        if error is not None:
            logger.error("the sandbox did not start: %s", error)
            return self._finish(spec, cgroup, started_at, "error", f"could not start bwrap: {error}", None)
        me = {"pid": os.getpid(), "starttime": proc_starttime(os.getpid()), "started_at": started_at}
        me |= {"child_pid": child.pid, "cgroup": cgroup.to_data() if cgroup else None, "limits": kind}
        write_json_atomic(self.run_dir / "supervisor.json", json.dumps(me))
        self._ready(json.dumps(me))
        log = CappedLog(self.run_dir / "log.txt", spec.log_cap_bytes)
        if spec.unsandboxed:
            log.write(UNSANDBOXED_NOTICE.encode())
        status_seen, network = b"", None
        try:
            if user_net:
                status_seen, network = _user_network(child.status_r, child.take_block_w(), log)
            self._pump(child, log, cgroup, started_at + spec.timeout_s)
        finally:
            log.close()
            if network is not None:
                network.kill()
                network.wait()
        sandbox_started = b"exit-code" in status_seen + child.read_status()  # bwrap writes it once the command ran
        rc = child.wait()
        exit_code = rc if rc >= 0 else 128 - rc
        return self._finish(spec, cgroup, started_at, self.stop, None, exit_code, sandbox_started)

    def _ready(self, info: str) -> None:
        """Tell the launcher the run started (once); it answers the server with `info`."""
        if self.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.ready_fd, info.encode() + b"\n")
            os.close(self.ready_fd)
            self.ready_fd = None

    def _pump(self, child: _Starter, log: CappedLog, cgroup: RunCgroup | None, end: float) -> None:
        fd = child.stdout_r
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
        spec: Spec | None,
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
        status = {  # a RunStatus, field for field
            "state": "exited",
            "exit_code": exit_code,
            "failure": failure,
            "started_at": started_at,
            "ended_at": time.time(),
            "peak_memory_bytes": peak,
            "detail": detail,
        }
        if cgroup is not None:  # nothing of the run is left once status.json says it ended
            cgroup.kill_all()
            cgroup.remove()
        write_json_atomic(self.run_dir / "status.json", json.dumps(status))
        return 0


class _Starter:
    """The run's first process, forked before the run is asked for: it joins the run's cgroup at once, then waits
    for `go` and execs the sandbox (bwrap, through setpriv as root). Joining is the slow part of starting a run:
    moving a process between cgroups makes the kernel wait out an RCU grace period (about 10 ms, measured), so a
    spare supervisor does it ahead of time. To the supervisor it is what a Popen was: pid, the read end of the
    run's output, wait() and poll().

    Every pipe the run needs is made before the fork, so the child has its ends without passing descriptors:
    `status` (bwrap's JSON status lines), `block` (bwrap waits on it while the user-mode network is set up),
    `stdout` (the run's output), `go` (the request, then EOF) and `err` (close-on-exec: EOF once the child
    exec'd, else why it could not)."""

    def __init__(self, cgroup: RunCgroup | None) -> None:
        self.returncode: int | None = None
        go_r, self._go_w = os.pipe()
        self._err_r, err_w = os.pipe()
        self.status_r, status_w = os.pipe()
        block_r, self._block_w = os.pipe()
        self.stdout_r, stdout_w = os.pipe()
        theirs = (go_r, err_w, status_w, block_r, stdout_w)
        self.pid = os.fork()
        if self.pid == 0:  # never returns: execs the sandbox or exits
            try:
                _close_fds_but(theirs)
                _start_when_told(cgroup, *theirs)
            finally:
                os._exit(127)
        for fd in theirs:
            os.close(fd)
        self._open = [self._go_w, self._err_r, self.status_r, self._block_w, self.stdout_r]

    def go(self, request: dict[str, Any], user_net: bool) -> str | None:
        """Let the child start the run; None once it exec'd, else why it could not (it has exited then)."""
        os.write(self._go_w, json.dumps({**request, "user_net": user_net}).encode())
        self._close(self._go_w)
        if not user_net:
            self._close(self._block_w)
        chunks: list[bytes] = []
        while chunk := os.read(self._err_r, 4096):
            chunks.append(chunk)
        self._close(self._err_r)
        if not chunks:
            return None
        self.wait()
        return b"".join(chunks).decode(errors="replace")

    def take_block_w(self) -> int:
        """The write end of bwrap's block pipe, now the caller's to close."""
        fd = self._block_w
        self._open.remove(fd)
        return fd

    def read_status(self) -> bytes:
        """The rest of bwrap's status lines (until EOF: every holder of the write end is gone)."""
        chunks: list[bytes] = []
        while chunk := os.read(self.status_r, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def abandon(self) -> None:
        """Give the child up: one still waiting for `go` reads EOF and exits, one that started is killed with its
        process group; then reap it. A no-op once it was reaped."""
        went = self._go_w not in self._open
        for fd in list(self._open):
            self._close(fd)
        if went and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            self.wait()

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.remove(fd)
            os.close(fd)


def _start_when_told(
    cgroup: RunCgroup | None, go_r: int, err_w: int, status_w: int, block_r: int, stdout_w: int
) -> None:
    """The starter's side (in the forked child): join the cgroup, wait for the request, exec the sandbox. Returns
    only when it cannot (the supervisor went away, or the sandbox could not be started: `err_w` says why)."""
    joined: OSError | None = None
    try:
        if cgroup is not None:
            cgroup.join()
    except OSError as exc:
        joined = exc  # nothing runs outside the run's cgroup: said below, once there is someone to tell
    chunks: list[bytes] = []
    while chunk := os.read(go_r, 1 << 16):
        chunks.append(chunk)
    if not chunks:
        return  # abandoned
    try:
        if joined is not None:
            raise OSError(f"could not join the run's cgroup: {joined}")
        request = json.loads(b"".join(chunks))
        run_dir, user_net = Path(request["run_dir"]), bool(request["user_net"])
        uid, gid = int(request["uid"]), int(request["gid"])
        spec = Spec.from_json((run_dir / "spec.json").read_text())
        user = (uid, gid) if os.geteuid() == 0 else None
        tools = (shutil.which("bwrap") or "bwrap", shutil.which("setpriv") or "setpriv")
        passed = [status_w]
        if spec.unsandboxed:
            argv, cwd = unsandboxed_command(spec, user, tools[1])
            env = unsandboxed_env(spec)
            os.write(status_w, b'{"exit-code": null}\n')  # no bwrap to report that the command started: it will
        else:
            files = etc_identity_files(uid, gid)
            if user_net:
                files["/etc/resolv.conf"] = f"nameserver {SLIRP_DNS}\n".encode()
            fds: dict[str, int] = {}
            for dest, content in files.items():
                fds[dest] = os.memfd_create("etc", 0)
                os.write(fds[dest], content)
                os.lseek(fds[dest], 0, os.SEEK_SET)
            block = block_r if user_net else None
            argv = build_sandbox(spec, user, fds, status_w, tools, block).argv()
            cwd, env = None, {"PATH": "/usr/bin:/bin"}  # bwrap's own environment, which /proc/1/environ shows inside
            passed += [*fds.values(), *((block_r,) if user_net else ())]
        if cgroup is None:
            limits = Limits(spec.memory_bytes, spec.pids, spec.cpus)
            for which, value in fallback_rlimits(limits, own_uid=user is not None):
                resource.setrlimit(which, (value, value))
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)  # as Popen restores them: Python ignores SIGPIPE
        os.setpgid(0, 0)  # the run's own process group, which the supervisor kills
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(stdout_w, 1)
        os.dup2(stdout_w, 2)
        for fd in passed:
            os.set_inheritable(fd, True)
        if cwd is not None:
            os.chdir(cwd)
        os.execvpe(argv[0], argv, env)
    except BaseException as exc:  # noqa: BLE001 - whatever it was, the supervisor must hear of it
        with contextlib.suppress(OSError):
            os.write(err_w, (str(exc) or repr(exc)).encode()[:4000])


@dataclass
class _Prepared:
    """What a supervisor makes before its run is asked for: the run's cgroup (limits come with the spec) and
    the run's first process, already inside it."""

    kind: str
    cgroup: RunCgroup | None
    cgroup_error: OSError | None
    starter: _Starter

    @classmethod
    def make(cls) -> _Prepared:
        mechanism = detect()
        cgroup, error = None, None
        try:  # named after this supervisor: it exists before the run id is known
            cgroup = RunCgroup.create(f"run-{os.getpid()}-{secrets.token_hex(3)}", Limits(), mechanism)
        except OSError as exc:
            error = exc
        return cls(mechanism.kind, cgroup, error, _Starter(cgroup))

    def discard(self) -> None:
        self.starter.abandon()
        if self.cgroup is not None:
            self.cgroup.kill_all()
            self.cgroup.remove()


def _close_fds_but(keep: tuple[int, ...]) -> None:
    """Close every descriptor above 2 except `keep`: a fork holds no other run's pipes open."""
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _read_some(fd: int) -> bytes | None:
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""
    return data or None


def _kill_tree(child: _Starter, cgroup: RunCgroup | None) -> None:
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


def _become_subreaper() -> None:
    """Orphans of the run (bwrap's inner process outlives the outer one) come to us, not to PID 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        logger.warning("PR_SET_CHILD_SUBREAPER failed (errno %d): orphans go to PID 1", ctypes.get_errno())


def _reap(deadline_s: float = 0.0) -> None:
    """Wait for every child that has ended; with a deadline, also for live ones until it passes."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no children left
        if pid == 0:
            if time.monotonic() >= end:
                return
            time.sleep(0.005)


def _detach() -> None:
    """A session of our own, and let go of the launcher's pipes (stdin, stdout, stderr on /dev/null)."""
    with contextlib.suppress(OSError):
        os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _supervise_one(run_dir: Path, uid: int, gid: int, ready_fd: int | None, prepared: _Prepared) -> int:
    logging.basicConfig(
        filename=run_dir / "supervisor.log", level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        return _Supervisor(run_dir, uid, gid, ready_fd).run(prepared)
    except BaseException:
        logger.exception("supervisor crashed")
        raise
    finally:
        _reap(deadline_s=1.0)  # what the run left (already killed) is re-parented to us: no zombies for PID 1


class _Spare:
    """A supervisor forked before its run is asked for (the launcher's side of it): it has detached, made the
    run's cgroup and its first process in it, and waits for one request on `request_w`; it answers on `ready_r`
    (then EOF). Closing `request_w` unasked makes it clean up and exit."""

    def __init__(self) -> None:
        request_r, self.request_w = os.pipe()
        self.ready_r, ready_w = os.pipe()
        try:
            self.pid = os.fork()
        except OSError:
            for fd in (request_r, self.request_w, self.ready_r, ready_w):
                os.close(fd)
            raise
        if self.pid == 0:  # the supervisor: never returns into the launcher's loop
            code = 1
            try:
                _detach()
                _close_fds_but((request_r, ready_w))
                code = _wait_for_run(request_r, ready_w)
            finally:
                os._exit(code)
        os.close(request_r)
        os.close(ready_w)

    def hand_over(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Give it the run; its answer once the run started (or its supervisor ended first). None when it had
        died before it could take the request (then it took nothing)."""
        try:
            try:
                os.write(self.request_w, json.dumps(request).encode())
            except BrokenPipeError:
                return None
            os.close(self.request_w)
            self.request_w = -1
            chunks: list[bytes] = []
            while chunk := os.read(self.ready_r, 1 << 16):  # EOF once the supervisor reported or exited
                chunks.append(chunk)
        finally:
            self.close()
        text = b"".join(chunks).decode(errors="replace").strip()
        ready: object = json.loads(text) if text.startswith("{") else None
        return {"run_dir": request["run_dir"], "pid": self.pid, "ready": ready}

    def close(self, wait_s: float = 0.0) -> None:
        """Let it go (unused, it sees EOF, removes its cgroup and exits); reap it if it ends within `wait_s`."""
        for fd in (self.request_w, self.ready_r):
            if fd >= 0:
                os.close(fd)
        self.request_w = self.ready_r = -1
        deadline = time.monotonic() + wait_s
        with contextlib.suppress(ChildProcessError):
            while not os.waitpid(self.pid, os.WNOHANG)[0] and time.monotonic() < deadline:
                time.sleep(0.005)


def _wait_for_run(request_r: int, ready_w: int) -> int:
    """The spare supervisor: prepare, wait for the request (EOF: clean up), then supervise that run."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    _become_subreaper()
    prepared = _Prepared.make()
    try:
        chunks: list[bytes] = []
        while chunk := os.read(request_r, 1 << 16):  # the launcher writes one request and closes
            chunks.append(chunk)
    except BaseException:
        prepared.discard()
        raise
    os.close(request_r)
    if not chunks:
        prepared.discard()
        return 0
    request = json.loads(b"".join(chunks))
    run_dir = Path(str(request["run_dir"])).resolve()
    return _supervise_one(run_dir, int(request["uid"]), int(request["gid"]), ready_w, prepared)


SLIRP_DNS = "10.0.2.3"
"""The DNS forwarder slirp4netns offers inside the namespace (its default 10.0.2.0/24 network)."""
_NETWORK_READY_S = 5.0


def _user_network(status_r: int, block_w: int, log: CappedLog) -> tuple[bytes, subprocess.Popen[bytes] | None]:
    """Give the waiting sandbox a user-mode network (slirp4netns), then let its command start.

    bwrap reports the sandbox's pid on the status fd and waits on its block fd. slirp4netns joins the sandbox's
    network namespace through the user namespace that owns it (with --disable-userns bwrap runs the command in a
    nested one, which has no say over the network) and offers NAT to the outside with
    --disable-host-loopback: 10.0.2.2 does not lead to the host's 127.0.0.1, where databases and the Docker API
    listen. The command is let go in any case; without a network it sees no route and its connections fail.
    Returns what was read of the status fd and the slirp4netns process to end with the run."""
    seen = b""
    deadline = time.monotonic() + _NETWORK_READY_S
    try:
        pid = None
        while pid is None and time.monotonic() < deadline:
            ready, _, _ = select.select([status_r], [], [], 0.1)
            if ready:
                chunk = os.read(status_r, 4096)
                if not chunk:
                    break
                seen += chunk
                pid = _child_pid(seen)
        slirp = shutil.which("slirp4netns")
        if pid is None or slirp is None:
            log.write(b"[research-mcp] no network: the sandbox did not start or slirp4netns is missing\n")
            return seen, None
        netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        owner = fcntl.ioctl(netns, _NS_GET_USERNS)
        ready_r, ready_w = os.pipe()
        argv = [
            slirp, "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
            f"--ready-fd={ready_w}", f"--userns-path=/proc/self/fd/{owner}", "--netns-type=path",
            f"/proc/self/fd/{netns}", "tap0",
        ]  # fmt: skip
        network = subprocess.Popen(
            argv, pass_fds=(ready_w, owner, netns), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        for fd in (ready_w, owner, netns):
            os.close(fd)
        ready, _, _ = select.select([ready_r], [], [], max(0.1, deadline - time.monotonic()))
        answer = os.read(ready_r, 1) if ready else b""
        os.close(ready_r)
        if answer != b"1":
            log.write(b"[research-mcp] the user-mode network (slirp4netns) did not come up: the run has none\n")
        return seen, network
    finally:
        with contextlib.suppress(OSError):
            os.write(block_w, b"1")
        os.close(block_w)


def _child_pid(status: bytes) -> int | None:
    """The sandbox's pid from bwrap's JSON status lines, once a whole line has it."""
    for line in status.split(b"\n")[:-1]:
        try:
            data: object = json.loads(line)
        except ValueError:
            continue
        found = cast(dict[str, object], data).get("child-pid") if isinstance(data, dict) else None
        if isinstance(found, int):
            return found
    return None


_NS_GET_USERNS = 0xB701
"""ioctl on a namespace fd: an fd of the user namespace that owns it (Linux 4.9)."""


def serve(parent: int) -> int:
    """The launcher's loop: requests on stdin, answers on stdout; reaps its supervisors as they end.

    It keeps one spare supervisor made ahead (see `_Spare`), so a run's start does not wait for a fork, a cgroup
    and the move into it; each request takes the spare, and the next one is made while the run starts."""
    buffered = b""
    spare: _Spare | None = None
    sweep_stale(detect())  # what supervisors killed from outside left
    try:
        while True:
            _reap()
            if os.getppid() != parent:
                return 0  # the server is gone (its stdin pipe may be held by a stray fork): running runs go on
            if spare is None:
                with contextlib.suppress(OSError):  # no fork now (a pids limit?): the next request says why
                    spare = _Spare()
            readable, _, _ = select.select([0], [], [], _REAP_EVERY_S)
            if not readable:
                continue
            chunk = os.read(0, 1 << 16)
            if not chunk:
                return 0
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                request = _request(line)
                if isinstance(request, str):
                    answer: dict[str, Any] = {"error": request}
                else:
                    taken, spare = spare, None
                    answer = _start_run(request, taken)
                os.write(1, json.dumps(answer).encode() + b"\n")
    finally:
        if spare is not None:
            spare.close(wait_s=2.0)  # reaped here: the launcher's orphans would be PID 1's zombies


def _request(line: bytes) -> dict[str, Any] | str:
    """A request line checked, or why it is refused."""
    try:
        found: object = json.loads(line)
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
        asked = cast(dict[str, Any], found)
        return {
            "run_dir": str(asked["run_dir"]),
            "uid": int(asked.get("uid", NOBODY)),
            "gid": int(asked.get("gid", NOBODY)),
        }
    except (ValueError, KeyError, TypeError) as exc:
        return f"bad request {line[:200]!r}: {exc}"


def _start_run(request: dict[str, Any], spare: _Spare | None) -> dict[str, Any]:
    """Hand the request to the spare (or to a supervisor forked now); the answer for the server."""
    try:
        answer = (spare or _Spare()).hand_over(request)
        if answer is None:  # the spare had died (killed from outside): a fresh one takes the run
            answer = _Spare().hand_over(request)
    except OSError as exc:
        return {"error": f"could not start a supervisor for {request['run_dir']}: {exc}"}
    return answer or {"error": f"no supervisor could take {request['run_dir']}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research_mcp.sandbox.supervisor")
    parser.add_argument("run_dir", type=Path, nargs="?", help="supervise this run in the foreground")
    parser.add_argument("--uid", type=int, default=NOBODY)
    parser.add_argument("--gid", type=int, default=NOBODY)
    parser.add_argument("--serve", action="store_true", help="be the launcher: fork a supervisor per request")
    parser.add_argument("--parent", type=int, help="with --serve: exit once this process is no longer our parent")
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.parent if args.parent is not None else os.getppid())
    if args.run_dir is None:
        parser.error("give a run folder, or --serve")
    _become_subreaper()
    return _supervise_one(args.run_dir.resolve(), args.uid, args.gid, None, _Prepared.make())


if __name__ == "__main__":
    sys.exit(main())
