"""Adapters for the review tools (toolset `review`): the paper audit."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from research_mcp.server._adapt import (
    FETCHES,
    AppContext,
    ToolRegistry,
    WorkspaceParam,
    need_workspace,
    state_of,
    store_of,
)
from research_mcp.server._progress import progress_of
from research_mcp.tools.review import audit
from research_mcp.tools.review.audit import AuditResult

__all__ = ["register"]


def register(tools: ToolRegistry) -> None:
    _register_audit(tools)


def _register_audit(tools: ToolRegistry) -> None:
    @tools.tool(FETCHES)
    async def audit_paper(
        ctx: AppContext,
        ws: WorkspaceParam,
        main: Annotated[str, Field(description="The paper's main .tex file.", min_length=1, max_length=1024)] = (
            "paper/main.tex"
        ),
        runs: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=4096)]] | None,
            Field(description="Run ids or paths; default every finished run.", max_length=500),
        ] = None,
        offset: Annotated[int, Field(ge=0, description="From next_offset.")] = 0,
    ) -> AuditResult:
        """Audit a paper, deterministically: every number traced to runs, tables or comparisons, citations verified,
        refs, figures, claims without a test, limitations, page limit, placeholders; findings with file:line and fix."""
        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        return await audit.audit_paper(
            workspace, await store_of(ctx, ws), state.settings, main, runs, progress=progress_of(ctx), offset=offset
        )
