"""Adapter for `lab_info`, the doctor: always offered, whatever the toolsets."""

from __future__ import annotations

from research_mcp.server._adapt import READ_ONLY_LOCAL, AppContext, ToolRegistry, WorkspaceParam, state_of, workspace_of
from research_mcp.tools.lab import LabInfo, probe_lab

__all__ = ["register"]


def register(tools: ToolRegistry) -> None:
    @tools.tool(READ_ONLY_LOCAL)
    async def lab_info(ctx: AppContext, ws: WorkspaceParam) -> LabInfo:
        """What this lab can do here: working sandbox backends, GPUs and free memory, TeX Live, API tokens set (never
        their values), the workspace, and each missing part's install step. Call it first, and when a tool says a
        part is missing."""
        found = workspace_of(ctx, ws)

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await probe_lab(state_of(ctx).settings, found.workspace, found.problem, progress)
