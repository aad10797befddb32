"""How domain code says what a long call is doing, without knowing who listens.

A tool that can run for more than a few seconds takes a `Progress` (async code) or a `BlockingProgress` (sync code
run in a worker thread) and calls it with one line as each phase starts: a pass, an entry, a source asked, a wait
and its length. The server turns each line into an MCP progress notification; clients show it, and some reset their
request timeout on each one. Domain code never needs to check whether anyone listens: the defaults do nothing.

    async def verify(..., progress: Progress = no_progress) -> ...:
        await progress(f"entry {n}/{total}: {key}")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["BlockingProgress", "Progress", "format_bytes", "no_blocking_progress", "no_progress"]

Progress = Callable[[str], Awaitable[None]]
"""Told one line as each phase of an async call starts."""

BlockingProgress = Callable[[str], None]
"""The same for sync code: it returns once the line is sent, and may be called from any thread."""


async def no_progress(message: str) -> None:
    """A `Progress` that tells no one."""


def no_blocking_progress(message: str) -> None:
    """A `BlockingProgress` that tells no one."""


def format_bytes(size: int) -> str:
    """A byte count as people read it: 812 B, 40.1 KiB, 3.2 MiB."""
    if size < 1024:
        return f"{size} B"
    if size < 1 << 20:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1 << 20):.1f} MiB"
