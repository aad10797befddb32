"""What a part of the lab answers when the doctor asks whether it works here: a `PartStatus`, and the helpers each
part's probe uses to run a program (its own session, captured output, its process group killed when the doctor
gives up on it).

Each part owns its probe (the backends in `sandbox/`, TeX in `latex/`); `tools/lab.py` only gathers them. Only the
stdlib and pydantic are imported at module level, nothing Linux-only, so importing it is cheap everywhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from research_mcp.model import ToolModel

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream

__all__ = ["PartStatus", "ProbeOutput", "part", "probe_tool", "run_probe", "step", "version_of"]

_MAX_OUTPUT_BYTES = 64 << 10


class PartStatus(ToolModel):
    """One part of the lab as its probe found it."""

    name: str = Field(
        description="What was probed: docker, bubblewrap, slirp4netns, cgroups, nvidia, tex, latexmk, biber, ..."
    )
    ok: bool = Field(description="True when it works on this machine.")
    status: str = Field(description="ok, missing, unreachable, timeout, error or unsupported.")
    version: str | None = Field(default=None, description="Version found, if any.")
    detail: str = Field(description="One line: what was found or what went wrong.")
    install: str | None = Field(default=None, description="The exact step that fixes it on this platform.")


def part(name: str, status: str, detail: str, install: str | None = None, version: str | None = None) -> PartStatus:
    """A `PartStatus`, ok exactly when `status` is "ok", its detail flattened to one line."""
    return PartStatus(name=name, ok=status == "ok", status=status, version=version, detail=_one_line(detail),
                      install=install)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProbeOutput:
    rc: int
    stdout: str
    stderr: str

    @property
    def line(self) -> str:
        """The first non-blank line of stdout, else of stderr."""
        return _first_line(self.stdout) or _first_line(self.stderr)


async def run_probe(argv: Sequence[str]) -> ProbeOutput:
    """Run argv in its own session with captured output; on cancellation kill its whole process group.

    Children never inherit our stdout (the stdio protocol stream). Raises FileNotFoundError when the program does
    not exist. The caller bounds the time.
    """
    from subprocess import DEVNULL, PIPE

    import anyio

    env = {**os.environ, "LC_ALL": "C"}
    buffers = (bytearray(), bytearray())
    async with await anyio.open_process(
        list(argv), stdin=DEVNULL, stdout=PIPE, stderr=PIPE, cwd="/", env=env, start_new_session=True
    ) as process:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, process.stdout, buffers[0])
                tg.start_soon(_drain, process.stderr, buffers[1])
            rc = await process.wait()
        except BaseException:
            _kill_group(process.pid)
            raise
    return ProbeOutput(rc, buffers[0].decode(errors="replace"), buffers[1].decode(errors="replace"))


async def probe_tool(name: str, argv: list[str], install: str) -> PartStatus:
    """A program that prints its version: present and working, or the step that installs it."""
    try:
        out = await run_probe(argv)
    except FileNotFoundError:
        return part(name, "missing", f"{argv[0]} not found on PATH", install)
    if out.rc != 0:
        return part(name, "error", f"`{' '.join(argv)}` exited with {out.rc}: {out.line}", install)
    return part(name, "ok", f"{out.line} ({shutil.which(argv[0]) or argv[0]})", version=version_of(out.line))


def step(system: str, debian: str, macos: str) -> str:
    """The install step for this platform: Homebrew's on macOS, Debian's elsewhere."""
    return macos if system == "darwin" else debian


def version_of(line: str) -> str | None:
    match = re.search(r"\d+(?:\.\d+)+[\w.+~-]*", line)
    return match.group(0) if match else None


async def _drain(stream: ByteReceiveStream | None, into: bytearray) -> None:
    if stream is None:
        return
    async for chunk in stream:
        if len(into) < _MAX_OUTPUT_BYTES:
            into += chunk[: _MAX_OUTPUT_BYTES - len(into)]


def _kill_group(pid: int) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # start_new_session made the child its group's leader


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
