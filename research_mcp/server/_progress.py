"""Progress notifications for one tool call, from the domain's plain callbacks.

An adapter makes one `CallProgress` per call and hands it (or its `blocking` method, for sync code in a worker
thread) to the domain function:

    progress = progress_of(ctx)
    return await in_thread(tex.compile_paper, ..., progress=progress.blocking)

Each line becomes a `notifications/progress` whose `progress` counts the lines sent so far, so it increases with
every notification as the protocol requires; the line itself is the message. No total is sent: phases differ in
kind (a source asked, a wait, bytes received), so a fraction would mislead.

Progress is a courtesy: a notification that cannot be sent (the client went away, the stream closed) is logged
and dropped, and the call goes on; it must never turn a good answer into an error.
"""

from __future__ import annotations

import logging

import anyio
import anyio.from_thread
import anyio.lowlevel

from research_mcp.server._adapt import AppContext

__all__ = ["CallProgress", "progress_of"]

logger = logging.getLogger(__name__)


class CallProgress:
    """A `Progress` (call it) and a `BlockingProgress` (`blocking`) that send one tool call's notifications."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._sent = 0
        self._token = anyio.lowlevel.current_token()  # lets any thread, not only anyio's workers, send through us

    @property
    def sent(self) -> int:
        """Lines sent so far."""
        return self._sent

    async def __call__(self, message: str) -> None:
        self._sent += 1  # only ever on the event loop, so no lock
        try:
            await self._ctx.report_progress(self._sent, None, message)
        except Exception:  # the boundary of a courtesy: cancellation still passes (it is a BaseException)
            logger.warning("progress not sent: %s", message, exc_info=True)

    def blocking(self, message: str) -> None:
        """Send from sync code in another thread (a worker, or a thread it started); returns once sent. Never call
        it on the event loop's own thread: async code awaits the object itself."""
        try:
            anyio.from_thread.run(self, message, token=self._token)
        except anyio.RunFinishedError:  # the server is shutting down; the call's answer will not be read either
            logger.warning("progress not sent, the event loop has ended: %s", message)


def progress_of(ctx: AppContext) -> CallProgress:
    """The progress reporter of the call `ctx` belongs to."""
    return CallProgress(ctx)
