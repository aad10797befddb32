"""run_with_deadline, which runs each program of a compile: at the deadline everything the program started is
gone by the time it returns."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from research_mcp.latex._process import run_with_deadline

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the processes are looked up in /proc")


def alive_with(marker: str) -> list[int]:
    """Processes (zombies excepted) whose command line holds `marker`."""
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                stat = (proc / "stat").read_text()
                if stat[stat.rfind(")") + 2] not in "ZX":
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_process_that_left_the_process_group_is_killed_at_the_deadline_too(tmp_path: Path) -> None:
    marker = f"1000.{uuid.uuid4().int % 10**9}"  # `sleep 1000.123456789`: found by its argument
    program = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setpgid(0, 0)\n"
        f"    os.execv({shutil.which('sleep')!r}, ['sleep', {marker!r}])\n"
        "time.sleep(1000)\n"
    )
    try:
        with open(tmp_path / "out", "wb") as out:
            code = run_with_deadline(
                lambda _: [sys.executable, "-c", program],
                cwd=None,
                env=None,
                out=out.fileno(),
                deadline=time.monotonic() + 2,
                sandboxed=False,
            )
        assert code is None
        assert alive_with(marker) == []
    finally:
        for pid in alive_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_program_that_ends_in_time_gives_its_exit_code(tmp_path: Path) -> None:
    with open(tmp_path / "out", "wb") as out:
        code = run_with_deadline(
            lambda _: [sys.executable, "-c", "raise SystemExit(3)"],
            cwd=None,
            env=None,
            out=out.fileno(),
            deadline=time.monotonic() + 30,
            sandboxed=False,
        )
    assert code == 3
