"""The detached supervisor of one local run, and the launcher that forks one per run.

`python -P -m research_mcp.sandbox.supervisor --serve --parent <server pid>` is the launcher: the local backend
starts one per server and keeps it (`local.py`). It reads one JSON request a line on stdin,
`{"run_dir": ..., "uid": ..., "gid": ...}`, forks a supervisor for it and answers one JSON line on stdout,
`{"run_dir": ..., "pid": ..., "ready": <supervisor.json> | null}`, once the run has started (or its supervisor
ended first: then `status.json` says why). It reaps the supervisors it forked and exits when its stdin closes or
its parent changes; supervisors still running then go on, re-parented. Forking from an interpreter that has
already imported everything makes a run start in milliseconds instead of an interpreter start-up.

A supervisor detaches (new session, stdin/stdout/stderr on /dev/null), becomes a child subreaper (the processes
bwrap leaves behind are re-parented to it, not to PID 1, and it reaps them), then: reads `<run_dir>/spec.json`
(a `RunSpec` as JSON, read without pydantic); creates the run's cgroup; starts bwrap, whose child joins the
cgroup before it execs; writes `supervisor.json` (its pid and /proc start time, so its identity survives pid
reuse); pipes the sandbox's output into `log.txt` under the cap; kills the whole tree on timeout or SIGTERM
(cancel); and at the end writes `status.json` (a `RunStatus`'s fields) atomically, removes the cgroup, reaps what
is left and exits. Its own messages go to `<run_dir>/supervisor.log`.

`python -m research_mcp.sandbox.supervisor <run_dir> [--uid N --gid N]` supervises one run in the foreground
(debugging). This module imports only the standard library and pydantic-free modules of the package.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
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
from research_mcp.sandbox.cgroups import Limits, RunCgroup, detect, fallback_rlimits

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

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        started_at = time.time()
        try:
            spec = Spec.from_json((self.run_dir / "spec.json").read_text())
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

    def _supervise(self, spec: Spec, cgroup: RunCgroup | None, kind: str, limits: Limits) -> int:
        if spec.unsandboxed:
            (self.run_dir / "tmp").mkdir(exist_ok=True)
        if self.user is not None:
            for folder in ("work", "outputs", "tmp") if spec.unsandboxed else ("work", "outputs"):
                _chown_tree(self.run_dir / folder, *self.user)
        uid, gid = self.user or (os.getuid(), os.getgid())
        fds: dict[str, int] = {}
        user_net = spec.network and not spec.unsandboxed
        if not spec.unsandboxed:
            files = etc_identity_files(uid, gid)
            if user_net:
                files["/etc/resolv.conf"] = f"nameserver {SLIRP_DNS}\n".encode()
            for dest, content in files.items():
                fd = os.memfd_create("etc", 0)
                os.write(fd, content)
                os.lseek(fd, 0, os.SEEK_SET)
                fds[dest] = fd
        status_r, status_w = os.pipe()
        block_r, block_w = os.pipe() if user_net else (None, None)
        rlimits = fallback_rlimits(limits, own_uid=self.user is not None) if cgroup is None else []

        def preexec() -> None:  # in the child, before exec: nothing it runs escapes the cgroup
            if cgroup is not None:
                cgroup.join()
            for which, value in rlimits:
                resource.setrlimit(which, (value, value))

        tools = (shutil.which("bwrap") or "bwrap", shutil.which("setpriv") or "setpriv")
        if spec.unsandboxed:
            argv, cwd = unsandboxed_command(spec, self.user, tools[1])
            env = unsandboxed_env(spec)
            os.write(status_w, b'{"exit-code": null}\n')  # no bwrap to report that the command started: it will
        else:
            argv, cwd = build_sandbox(spec, self.user, fds, status_w, tools, block_r).argv(), None
            env = {"PATH": "/usr/bin:/bin"}  # bwrap's own environment, which /proc/1/environ shows inside
        inherited = (*fds.values(), status_w, *((block_r,) if block_r is not None else ()))
        started_at = time.time()
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=inherited,
                preexec_fn=preexec,  # safe: the supervisor has no other thread
                process_group=0,
                cwd=cwd,
                env=env,
            )
        except OSError as exc:
            logger.exception("bwrap did not start")
            return self._finish(spec, cgroup, started_at, "error", f"could not start bwrap: {exc}", None)
        finally:
            for fd in inherited:
                os.close(fd)
        me = {"pid": os.getpid(), "starttime": proc_starttime(os.getpid()), "started_at": started_at}
        me |= {"child_pid": child.pid, "cgroup": cgroup.to_data() if cgroup else None, "limits": kind}
        write_json_atomic(self.run_dir / "supervisor.json", json.dumps(me))
        self._ready(json.dumps(me))
        assert child.stdout is not None
        log = CappedLog(self.run_dir / "log.txt", spec.log_cap_bytes)
        if spec.unsandboxed:
            log.write(UNSANDBOXED_NOTICE.encode())
        status_seen, network = b"", None
        try:
            if block_w is not None:
                status_seen, network = _user_network(status_r, block_w, log)
            self._pump(child, child.stdout.fileno(), log, cgroup, started_at + spec.timeout_s)
        finally:
            log.close()
            child.stdout.close()
            if network is not None:
                network.kill()
                network.wait()
        with os.fdopen(status_r, "rb") as status_file:
            sandbox_started = b"exit-code" in status_seen + status_file.read()  # bwrap writes it once the command ran
        rc = child.returncode
        exit_code = rc if rc >= 0 else 128 - rc
        return self._finish(spec, cgroup, started_at, self.stop, None, exit_code, sandbox_started)

    def _ready(self, info: str) -> None:
        """Tell the launcher the run started (once); it answers the server with `info`."""
        if self.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.ready_fd, info.encode() + b"\n")
            os.close(self.ready_fd)
            self.ready_fd = None

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


def _supervise_one(run_dir: Path, uid: int, gid: int, ready_fd: int | None) -> int:
    logging.basicConfig(
        filename=run_dir / "supervisor.log", level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    _become_subreaper()
    try:
        return _Supervisor(run_dir, uid, gid, ready_fd).run()
    except BaseException:
        logger.exception("supervisor crashed")
        raise
    finally:
        _reap(deadline_s=1.0)  # what the run left (already killed) is re-parented to us: no zombies for PID 1


def _fork_supervisor(request: dict[str, Any]) -> dict[str, Any]:
    """Fork a supervisor for one request; return once it reported the run started, or ended without doing so."""
    run_dir = Path(str(request["run_dir"])).resolve()
    uid, gid = int(request.get("uid", NOBODY)), int(request.get("gid", NOBODY))
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the supervisor: never returns into the launcher's loop
        code = 1
        try:
            os.close(ready_r)
            _detach()
            code = _supervise_one(run_dir, uid, gid, ready_w)
        finally:
            os._exit(code)
    os.close(ready_w)
    chunks: list[bytes] = []
    while chunk := os.read(ready_r, 1 << 16):  # EOF once the supervisor reported or exited
        chunks.append(chunk)
    os.close(ready_r)
    text = b"".join(chunks).decode(errors="replace").strip()
    ready: object = json.loads(text) if text.startswith("{") else None
    return {"run_dir": str(request["run_dir"]), "pid": pid, "ready": ready}


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
    """The launcher's loop: requests on stdin, answers on stdout; reaps its supervisors as they end."""
    buffered = b""
    while True:
        _reap()
        if os.getppid() != parent:
            return 0  # the server is gone (its stdin pipe may be held by a stray fork): running runs go on
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
            try:
                answer = _fork_supervisor(json.loads(line))
            except (ValueError, KeyError, OSError) as exc:
                answer = {"error": f"bad request {line[:200]!r}: {exc}"}
            os.write(1, json.dumps(answer).encode() + b"\n")


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
    return _supervise_one(args.run_dir.resolve(), args.uid, args.gid, None)


if __name__ == "__main__":
    sys.exit(main())
