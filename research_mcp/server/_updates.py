"""Telling a client that a run ended (`notifications/resources/updated` for `run://{id}` and `run://{id}/log`),
and the two requests of the handshake era that `MCPServer` leaves unserved.

The two protocol revisions deliver the notification differently:
- 2025-11-25 (the initialize handshake): the client sends `resources/subscribe` with the URI; the server sends the
  notification later on the connection's own channel (stdio's pipe, the streamable HTTP GET stream). `MCPServer`
  serves no `resources/subscribe`, so `serve_handshake_extras` registers it on the low-level server.
- 2026-07-28: `resources/subscribe` is gone and a server sends nothing outside a request's response. The client
  opens a `subscriptions/listen` request naming the URIs, and the notification rides that request's response
  stream for as long as the client keeps it open (the SDK serves it); the server publishes on its
  `SubscriptionBus`. A client that opens no listen request hears nothing.

`logging/setLevel` (2025-11-25; dropped in 2026-07-28) is answered, so clients that send it at start get no
`Method not found`: the server sends no log notifications at any level (its log goes to stderr).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    EmptyResult,
    SetLevelRequestParams,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)

from research_mcp.errors import ResearchError, RunNotFoundError
from research_mcp.server.state import AppState

__all__ = ["MAX_SUBSCRIPTIONS", "RunUpdates", "run_uris", "serve_handshake_extras"]

logger = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 4096
"""Most URI subscriptions held at once over every client (each is dropped when its run ends)."""
_RUN_URI = re.compile(r"run://([^/]+)(?:/log)?")


def run_uris(run_id: str) -> tuple[str, str]:
    """The resources that change when a run ends."""
    return f"run://{run_id}", f"run://{run_id}/log"


def _peer(session: ServerSession) -> int:
    """One key per client connection: a request's session is a new proxy each time, but the initialize
    parameters it shows are the connection's own object."""
    return id(session.client_params) if session.client_params is not None else id(session)


class RunUpdates:
    """Who wants to hear that a run ended: sessions subscribed with `resources/subscribe`, and the listen streams
    of `bus`. `run_ended` tells them all, once."""

    def __init__(self, bus: SubscriptionBus | None = None) -> None:
        self.bus: SubscriptionBus = bus if bus is not None else InMemorySubscriptionBus()
        self._sessions: dict[str, dict[int, ServerSession]] = {}

    def subscribed(self, uri: str) -> int:
        """How many connections subscribed to `uri` with `resources/subscribe`."""
        return len(self._sessions.get(uri, {}))

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        run = _RUN_URI.fullmatch(uri)
        if run is None:  # nothing else changes under a reader: honoured, never notified
            return EmptyResult()
        held = self._sessions.setdefault(uri, {})
        if _peer(ctx.session) not in held and sum(map(len, self._sessions.values())) >= MAX_SUBSCRIPTIONS:
            raise MCPError(
                INVALID_PARAMS, f"Too many subscriptions ({MAX_SUBSCRIPTIONS}): unsubscribe from some first."
            )
        held[_peer(ctx.session)] = ctx.session
        # held first, looked at second: a run that ends in between is told, not missed
        if await _over(ctx.lifespan_context, run.group(1)):
            self._drop(uri, _peer(ctx.session))
        return EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        self._drop(str(params.uri), _peer(ctx.session))
        return EmptyResult()

    def _drop(self, uri: str, peer: int) -> None:
        held = self._sessions.get(uri, {})
        held.pop(peer, None)
        if not held:
            self._sessions.pop(uri, None)

    async def run_ended(self, run_id: str) -> None:
        """Send `notifications/resources/updated` for the run's record and log to every subscriber; the
        subscriptions end with it (a run ends once)."""
        for uri in run_uris(run_id):
            await self.bus.publish(ResourceUpdated(uri=uri))
            for session in self._sessions.pop(uri, {}).values():
                try:
                    await session.send_resource_updated(uri)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:  # that client has gone
                    logger.info("not told of %s: %r", uri, exc)


async def _over(state: object, run_id: str) -> bool:
    """Whether nothing more will happen to the run: it ended already, or the workspace has no such run (a
    subscription to it would be held for ever)."""
    from research_mcp.sandbox.models import ACTIVE

    ws = state.known_workspace().workspace if isinstance(state, AppState) else None
    if not isinstance(state, AppState) or ws is None:
        return False
    try:
        await anyio.to_thread.run_sync(state.store, ws)  # opening it waits on the disk
        run = await anyio.to_thread.run_sync(state.runs(ws).get, run_id)
    except RunNotFoundError:
        return True
    except ResearchError as exc:  # no store here: held, as any subscription
        logger.info("subscription to run %s held without a look at it: %s", run_id, exc)
        return False
    return run.state not in ACTIVE


async def _set_level(_: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
    logger.debug("client asked for log level %s; no log notifications are sent", params.level)
    return EmptyResult()


def serve_handshake_extras(server: MCPServer[Any], updates: RunUpdates) -> None:
    """Serve `resources/subscribe`, `resources/unsubscribe` and `logging/setLevel` (2025-11-25) on `server`.

    `MCPServer` has no public way to add a request handler: its low-level server's `add_request_handler` is
    that way, and the capabilities it advertises (`resources.subscribe`, `logging`) follow from it."""
    lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, updates.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, updates.unsubscribe)
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)
