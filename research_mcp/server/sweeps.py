"""The adapter of `run_sweep` (toolset `sandbox`): a grid of configurations times seeds in one call. A sweep's
status is `list_runs(sweep_id=...)`, its cancel `cancel_run` on the sweep id (both in `server/sandbox.py`)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from pydantic import Field

from research_mcp.config import BackendChoice
from research_mcp.sandbox.models import FINISHED, Command
from research_mcp.sandbox.status import ListRunsResult, list_of
from research_mcp.server._adapt import AppContext, ToolRegistry, WorkspaceParam, in_thread, need_workspace, state_of
from research_mcp.server.sandbox import MAX_WAIT_S, RUNS_CODE

__all__ = ["register"]

MEMBERS_SHOWN = 10
"""Members listed in run_sweep's answer; list_runs(sweep_id) pages through the rest."""
PROGRESS_EVERY_S = 1.0
"""Longest a waiting run_sweep goes without telling how many members ended."""


async def _follow(ctx: AppContext, ws: WorkspaceParam, sweep_id: str, wait_s: float) -> ListRunsResult:
    """Wait (bounded) while members are active, reporting how many ended; then the sweep's counts and members."""
    state = state_of(ctx)
    runs = state.runs(need_workspace(ctx, ws))
    started = anyio.current_time()
    deadline = started + wait_s
    while (left := deadline - anyio.current_time()) > 0:
        waiting = await in_thread(runs.sweep_active, sweep_id)
        if waiting is None:
            break
        counts = await in_thread(runs.sweep_counts, sweep_id)
        total, done = sum(counts.values()), sum(counts.get(name, 0) for name in FINISHED)
        await ctx.report_progress(done, total, f"{done} of {total} ended ({anyio.current_time() - started:.0f} s)")
        await state.wait_for(runs, waiting, min(PROGRESS_EVERY_S, left))
    return await in_thread(list_of, runs, None, None, None, MEMBERS_SHOWN, 0, state.settings.max_output_chars, sweep_id)


def register(tools: ToolRegistry) -> None:
    # The run options carry no limits in the schema (the listing is pasted into every conversation, and
    # run_experiment's shows them): `RunRequest` checks them, and a value past one is answered with its field.
    @tools.tool(RUNS_CODE)
    async def run_sweep(
        ctx: AppContext,
        ws: WorkspaceParam,
        command: Annotated[Command, Field(description="{key}, {seed} take their values.")],
        grid: Annotated[dict[str, list[Any]] | None, Field(description="key -> values")] = None,
        seeds: list[int] | None = None,
        workdir: str = ".",
        backend: BackendChoice = "auto",
        image: str | None = None,
        gpus: int = 0,
        cpus: float | None = None,
        memory_gb: float | None = None,
        timeout_s: float = 3600,
        env: dict[str, str] | None = None,
        network: bool = False,
        python_env: str | None = None,
        label: str | None = None,
        note: str | None = None,
        idea_id: str | None = None,
        wait_s: float = 0,
    ) -> ListRunsResult:
        """Run command per grid configuration x seed on one snapshot: runs with config ($RESEARCH_CONFIG) and seed
        ($RESEARCH_SEED). list_runs(sweep_id) follows it."""
        from research_mcp.sandbox.runs import RunRequest
        from research_mcp.sandbox.sweeps import prepare_sweep

        base = RunRequest(
            command=command, workdir=workdir, backend=backend, image=image, gpus=gpus, cpus=cpus,
            memory_gb=memory_gb, timeout_s=timeout_s, env=env or {}, network=network, python_env=python_env,
            label=label, note=note, idea_id=idea_id,
        )  # fmt: skip
        state = state_of(ctx)
        runs = state.runs(need_workspace(ctx, ws))
        sweep_id = await in_thread(prepare_sweep, runs, base, grid, seeds)
        await state.pump_now(runs)
        return await _follow(ctx, ws, sweep_id, min(max(wait_s, 0.0), MAX_WAIT_S))
