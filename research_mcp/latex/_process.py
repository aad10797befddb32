"""Run one program with a deadline and kill everything it started when the deadline passes.

The program is started in a new session; a bubblewrap sandbox also reports the host pid of its first process
(`--json-status-fd`), and killing that process ends the sandbox's whole pid namespace.
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
    """Kill the process group we started and, for a sandbox, its pid namespace (killing the namespace's first
    process kills every process in it); return once they are gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if child is not None:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(child, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while child is not None and _running(child) and time.monotonic() < deadline:
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")
