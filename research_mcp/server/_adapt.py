"""What every tool adapter shares: the workspace resolver, annotations and error mapping.

Adapters stay thin: they unpack flat arguments, find the workspace, call the domain function (in a worker
thread when it is sync) and turn a `ResearchError` into the SDK's `ToolError`, whose text the model reads.
Any other exception is a crash the model sees only as `Error executing tool <name>`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, ParamSpec, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import ListRoots, Resolve
from mcp.server.mcpserver.tools import Tool
from mcp_types import ListRootsResult, ToolAnnotations

from research_mcp.errors import ResearchError
from research_mcp.server._schema import compact_tool
from research_mcp.server.state import AppState, ResolvedWorkspace
from research_mcp.workspace import Workspace

__all__ = [
    "READ_ONLY_LOCAL",
    "WRITES_LOCAL",
    "FETCHES",
    "AppContext",
    "AppState",
    "ResolvedWorkspace",
    "ToolRegistry",
    "ToolSpec",
    "WorkspaceParam",
    "in_thread",
    "need_workspace",
    "state_of",
    "workspace_of",
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
FETCHES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
"""Asks an outside service (arXiv, Semantic Scholar, GitHub) and keeps what it learns (cache, library, downloads):
not read-only, since it writes, but it never overwrites the user's work."""


AppContext = Context[AppState, Any]
"""The context every adapter takes: its lifespan state is the `AppState`."""


async def _workspace_or_roots(ctx: AppContext) -> ResolvedWorkspace | ListRoots:
    """The workspace at once, or a request for the client's roots when no workspace is set and it has roots.

    One resolver, not two chained ones: the SDK runs each resolver on every call, and this is on every call."""
    state = ctx.request_context.lifespan_context
    capabilities = ctx.client_capabilities
    if state.settings.workspace is None and capabilities is not None and capabilities.roots is not None:
        return ListRoots()
    return state.resolve_workspace(None)


WorkspaceParam = Annotated[ResolvedWorkspace | ListRootsResult, Resolve(_workspace_or_roots)]
"""An adapter parameter of this type receives the call's workspace (through `workspace_of`); it is not part
of the input schema."""


def workspace_of(ctx: AppContext, found: ResolvedWorkspace | ListRootsResult) -> ResolvedWorkspace:
    """The call's workspace, from a `WorkspaceParam` value."""
    if isinstance(found, ResolvedWorkspace):
        return found
    return state_of(ctx).resolve_workspace([str(root.uri) for root in found.roots])


def need_workspace(ctx: AppContext, found: ResolvedWorkspace | ListRootsResult) -> Workspace:
    """The call's workspace, or a `WorkspaceError` saying how to set one."""
    return workspace_of(ctx, found).require()


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


@dataclass(frozen=True)
class ToolSpec:
    """One adapter as registered: enough to build the SDK's `Tool`, which costs its schemas."""

    fn: Callable[..., Awaitable[Any]]
    name: str
    title: str | None
    description: str
    annotations: ToolAnnotations

    def build(self) -> Tool:
        return compact_tool(
            Tool.from_function(
                _map_errors(self.fn),
                name=self.name,
                title=self.title,
                description=self.description,
                annotations=self.annotations,
            )
        )


class ToolRegistry:
    """Collects a family's adapters as `ToolSpec`s; the server builds them (or lists them from the cache)."""

    def __init__(self) -> None:
        self.specs: list[ToolSpec] = []

    def tool(
        self, annotations: ToolAnnotations, *, title: str | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        def decorator(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            # cleandoc: the SDK sends the docstring as it is, indentation included, on every tools/list
            description = inspect.cleandoc(fn.__doc__ or "")
            self.specs.append(ToolSpec(fn, fn.__name__, title, description, annotations))
            return fn

        return decorator
