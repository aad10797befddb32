"""Adapters for the environment tools of the sandbox toolset: prepare_env (a build is a run of kind "env") and
list_envs (with its remove mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import anyio
from mcp_types import ToolAnnotations
from pydantic import Field

from research_mcp.config import BackendChoice
from research_mcp.errors import SandboxError
from research_mcp.sandbox.envs import ENV_ID, EnvAnswer, EnvList, Envs
from research_mcp.sandbox.models import ACTIVE, WAIT_TICK_S
from research_mcp.server._adapt import AppContext, ToolRegistry, WorkspaceParam, in_thread, need_workspace, state_of
from research_mcp.server._progress import progress_of

if TYPE_CHECKING:
    from research_mcp.sandbox.runs import RunManager

__all__ = ["register"]

BUILDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
LISTS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
MAX_WAIT_S = 50.0


def _envs(runs: RunManager) -> Envs:
    if runs.envs is None:
        raise SandboxError("This server keeps no environments (no user data folder).")
    return runs.envs


def register(tools: ToolRegistry) -> None:
    @tools.tool(BUILDS)
    async def prepare_env(
        ctx: AppContext,
        ws: WorkspaceParam,
        requirements: Annotated[str | None, Field(description="requirements.txt text", max_length=100_000)] = None,
        path: Annotated[str | None, Field(description="Dependency file or repo folder.")] = None,
        python: Annotated[str | None, Field(description="e.g. '3.11'", max_length=200)] = None,
        backend: BackendChoice = "auto",
        wait_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = 0,
    ) -> EnvAnswer:
        """Build (once, cached by content) a Python environment for runs; pass its id as run_experiment's
        python_env. Returns the id, state, build run and lock."""
        from research_mcp.sandbox.envspec import read_spec
        from research_mcp.sandbox.registry import choose_backend

        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        runs = state.runs(workspace)
        envs = _envs(runs)
        spec = await in_thread(read_spec, workspace, requirements, path)
        chosen = backend if backend != "auto" else await in_thread(choose_backend, state.settings)
        answer = await in_thread(envs.prepare, runs, spec, backend=chosen, python=python)
        if answer.env.state != "building":
            return answer
        await state.pump_now(runs)
        run_id = answer.env.build_run
        progress = progress_of(ctx)
        started = anyio.current_time()
        deadline = started + wait_s
        while anyio.current_time() < deadline:
            await state.wait_for(runs, run_id, min(WAIT_TICK_S * 8, max(0.0, deadline - anyio.current_time())))
            run = await in_thread(runs.get, run_id)
            elapsed = anyio.current_time() - started
            await progress(f"building {answer.env.id}: {run.state} ({min(elapsed, wait_s):.0f} s of {wait_s:.0f})")
            if run.state not in ACTIVE:
                break
        record = await in_thread(envs.load, answer.env.id)
        if record is None:
            return answer
        found = await in_thread(envs.finalise, record, runs)
        return found.model_copy(update={"cached": answer.cached, "note": answer.note})

    @tools.tool(LISTS)
    async def list_envs(
        ctx: AppContext,
        ws: WorkspaceParam,
        remove: Annotated[str | None, Field(description="Env id to delete.")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> EnvList:
        """Environments from prepare_env: backend, state, size, packages, last use; remove deletes one."""
        runs = state_of(ctx).runs(need_workspace(ctx, ws))
        envs = _envs(runs)
        if remove is not None:
            ending = await in_thread(envs.ending_build, remove, runs) if ENV_ID.fullmatch(remove) else None
            if ending is not None:  # built: let its build run end first, so nothing holds the folder or volume
                await state_of(ctx).wait_for(runs, ending, 10.0)
            await in_thread(envs.remove, remove, runs)
        found = await in_thread(envs.listing, runs, limit, offset)
        return found.model_copy(update={"removed": remove})
