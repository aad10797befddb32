"""Run one program with a deadline and kill everything it started when the deadline passes.

The program is started in a new session; a bubblewrap sandbox also reports the host pid of its first process
(`--json-status-fd`), and killing that process ends the sandbox's whole pid namespace. A kill returns only once
every process of the session is gone: SIGKILL is only pending until the scheduler runs the process, and on a busy
machine pdflatex outlived the wait for latexmk by enough to still be there when the compile returned.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["run_with_deadline"]


def run_with_deadline(
    command: Callable[[int | None], list[str]],
    *,
    cwd: str | None,
    env: dict[str, str] | None,
    out: int,
    deadline: float,
    sandboxed: bool,
) -> int | None:
    """Run `command(status_fd)` (the fd bwrap reports to, None unsandboxed); its exit code, or None when the
    deadline killed it and everything it started."""
    status_read, status_write = os.pipe()
    try:
        proc = subprocess.Popen(
            command(status_write if sandboxed else None),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            pass_fds=(status_write,) if sandboxed else (),
        )
        os.close(status_write)
        status_write = -1
        try:
            return _wait(proc, max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_tree(proc, _sandbox_child(status_read) if sandboxed else None)
            return None
    finally:
        os.close(status_read)
        if status_write >= 0:
            os.close(status_write)


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """`proc.wait(timeout)` without its polling: Popen.wait sleeps up to 50 ms between checks, which a no-op
    recompile (about 0.1 s) would feel; a pidfd wakes up the moment the process exits."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return proc.wait(timeout=timeout_s)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(int(timeout_s * 1000)):
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
    finally:
        os.close(pidfd)
    return proc.wait()


def _sandbox_child(status_read: int) -> int | None:
    """The host pid of the sandbox's first process (bwrap's --json-status-fd), if bwrap reported it."""
    os.set_blocking(status_read, False)
    try:
        data = os.read(status_read, 4096)
    except BlockingIOError:
        return None
    found = re.search(rb'"child-pid"\s*:\s*(\d+)', data)
    return int(found.group(1)) if found else None


def _kill_tree(proc: subprocess.Popen[bytes], child: int | None) -> None:
    """Kill the session we started (its process group, and any process that left the group) and, for a sandbox,
    its pid namespace (killing the namespace's first process kills every process in it); return once they are
    all gone, or after 5 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if child is not None:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(child, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = _session(proc.pid)
        if child is not None and _state(child) not in (None, "Z", "X"):
            left.append(child)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _await_exit(left, deadline)


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, Z, ...), None when there is no such pid."""
    fields = _stat(pid)
    return fields[0] if fields else None


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _session(sid: int) -> list[int]:
    """The processes of session `sid` that have not exited yet (zombies are dead: they only wait to be reaped)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    found: list[int] = []
    for name in names:
        fields = _stat(name) if name.isdigit() else None
        if fields and fields[3] == str(sid) and fields[0] not in ("Z", "X"):
            found.append(int(name))
    return found


def _await_exit(pids: list[int], deadline: float) -> None:
    """Wait until every one of `pids` has exited or the deadline passed; a pidfd wakes up at the exit."""
    fds: list[int] = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                continue
            except (AttributeError, OSError):  # no pidfds here: the caller looks again shortly
                time.sleep(0.02)
                return
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        waiting = len(fds)
        while waiting and (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            for fd, _ in poller.poll(left_ms):
                poller.unregister(fd)
                waiting -= 1
    finally:
        for fd in fds:
            os.close(fd)
