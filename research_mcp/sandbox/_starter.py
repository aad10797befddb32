"""The first process of a local run, forked by its supervisor before the run is asked for (`Starter`), and what
a supervisor prepares ahead: the run's cgroup, with that process already inside (`Prepared`).

Runs in the supervisor's process and its fork: standard library and pydantic-free modules only.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_mcp.sandbox._supervised import (
    SLIRP_DNS,
    Spec,
    build_sandbox,
    unsandboxed_command,
    unsandboxed_env,
)
from research_mcp.sandbox.bwrap import etc_identity_files
from research_mcp.sandbox.cgroups import Limits, RunCgroup, detect, fallback_rlimits

__all__ = ["Prepared", "Starter", "close_fds_but", "read_all", "start_when_told"]


class Starter:
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
                close_fds_but(theirs)
                start_when_told(cgroup, *theirs)
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
        error = read_all(self._err_r)
        self._close(self._err_r)
        if not error:
            return None
        self.wait()
        return error.decode(errors="replace")

    def take_block_w(self) -> int:
        """The write end of bwrap's block pipe, now the caller's to close."""
        fd = self._block_w
        self._open.remove(fd)
        return fd

    def read_status(self) -> bytes:
        """The rest of bwrap's status lines (until EOF: every holder of the write end is gone)."""
        return read_all(self.status_r)

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


def start_when_told(
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
    tools = (shutil.which("bwrap") or "bwrap", shutil.which("setpriv") or "setpriv")  # looked up while it waits
    asked = read_all(go_r)
    if not asked:
        return  # abandoned
    try:
        if joined is not None:
            raise OSError(f"could not join the run's cgroup: {joined}")
        request = json.loads(asked)
        run_dir, user_net = Path(request["run_dir"]), bool(request["user_net"])
        uid, gid = int(request["uid"]), int(request["gid"])
        spec = Spec.from_json((run_dir / "spec.json").read_text())
        user = (uid, gid) if os.geteuid() == 0 else None
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
class Prepared:
    """What a supervisor makes before its run is asked for: the run's cgroup (limits come with the spec) and
    the run's first process, already inside it."""

    kind: str
    cgroup: RunCgroup | None
    cgroup_error: OSError | None
    starter: Starter

    @classmethod
    def make(cls) -> Prepared:
        mechanism = detect()
        cgroup, error = None, None
        try:  # named after this supervisor: it exists before the run id is known
            cgroup = RunCgroup.create(f"run-{os.getpid()}-{secrets.token_hex(3)}", Limits(), mechanism)
        except OSError as exc:
            error = exc
        return cls(mechanism.kind, cgroup, error, Starter(cgroup))

    def discard(self) -> None:
        self.starter.abandon()
        if self.cgroup is not None:
            self.cgroup.kill_all()
            self.cgroup.remove()


def close_fds_but(keep: tuple[int, ...]) -> None:
    """Close every descriptor above 2 except `keep`: a fork holds no other run's pipes open."""
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def read_all(fd: int) -> bytes:
    """Everything `fd` gives until EOF (every holder of the write end closed it)."""
    chunks: list[bytes] = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)
