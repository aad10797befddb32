"""What every tool adapter shares: the app state, the workspace resolver, annotations and error mapping.

Adapters stay thin: they unpack flat arguments, find the workspace, call the domain function (in a worker
thread when it is sync) and turn a `ResearchError` into the SDK's `ToolError`, whose text the model reads.
Any other exception is a crash the model sees only as `Error executing tool <name>`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import ListRoots, Resolve
from mcp_types import ListRootsResult, ToolAnnotations

from research_mcp.config import Settings
from research_mcp.errors import ResearchError, WorkspaceError
from research_mcp.store import Store
from research_mcp.workspace import Workspace, choose_workspace

__all__ = [
    "READ_ONLY_LOCAL",
    "WRITES_LOCAL",
    "AppContext",
    "AppState",
    "ResolvedWorkspace",
    "ToolRegistry",
    "WorkspaceParam",
    "in_thread",
    "state_of",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

READ_ONLY_LOCAL = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
WRITES_LOCAL = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)


@dataclass
class AppState:
    """What the lifespan yields: settings, plus state stores opened on first use, one per workspace."""

    settings: Settings
    stores: dict[Path, Store] = field(default_factory=dict[Path, Store])

    def store(self, ws: Workspace) -> Store:
        found = self.stores.get(ws.root)
        if found is None:
            found = self.stores[ws.root] = Store(ws.state_dir / "state.db")
        return found

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()


AppContext = Context[AppState, Any]
"""The context every adapter takes: its lifespan state is the `AppState`."""


@dataclass(frozen=True, slots=True)
class ResolvedWorkspace:
    """The workspace for this call, or why there is none (`lab_info` reports the reason instead of failing)."""

    workspace: Workspace | None
    problem: str | None

    def require(self) -> Workspace:
        if self.workspace is None:
            raise WorkspaceError(self.problem or "No workspace.")
        return self.workspace


def _ask_roots(ctx: AppContext) -> ListRoots | None:
    """Ask the client for its roots, unless a workspace was set or the client has no roots."""
    state = ctx.request_context.lifespan_context
    capabilities = ctx.client_capabilities
    if state.settings.workspace is None and capabilities is not None and capabilities.roots is not None:
        return ListRoots()
    return None


def _resolve_workspace(
    ctx: AppContext, roots: Annotated[ListRootsResult | None, Resolve(_ask_roots)]
) -> ResolvedWorkspace:
    state = ctx.request_context.lifespan_context
    uris = [str(root.uri) for root in roots.roots] if roots is not None else None
    try:
        return ResolvedWorkspace(choose_workspace(state.settings.workspace, uris), None)
    except WorkspaceError as exc:
        return ResolvedWorkspace(None, str(exc))


WorkspaceParam = Annotated[ResolvedWorkspace, Resolve(_resolve_workspace)]
"""An adapter parameter of this type receives the call's workspace; it is not part of the input schema."""


def state_of(ctx: AppContext) -> AppState:
    return ctx.request_context.lifespan_context


async def in_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run sync domain code in a worker thread, so the event loop keeps serving."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def _map_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ResearchError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper


class ToolRegistry:
    """Registers adapters on the server, mapping errors; in read-only mode it skips every tool that is not."""

    def __init__(self, mcp: MCPServer[Any], *, read_only: bool) -> None:
        self.mcp = mcp
        self.read_only = read_only
        self.names: list[str] = []

    def tool(
        self, annotations: ToolAnnotations, *, title: str | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        def decorator(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            if self.read_only and not annotations.read_only_hint:
                return fn
            self.mcp.tool(annotations=annotations, title=title)(_map_errors(fn))
            self.names.append(fn.__name__)
            return fn

        return decorator
