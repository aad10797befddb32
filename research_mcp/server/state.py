"""The server's state for its lifetime: settings, a state store and a run manager per workspace, and the
background pump that starts queued runs, records the ones that end while no tool call is asking, and tells
`AppState.run_ended` of every run that ends (here, or in another server on the same workspace)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from research_mcp.config import Settings
from research_mcp.errors import ResearchError, WorkspaceError
from research_mcp.workspace import Workspace, choose_workspace

if TYPE_CHECKING:  # loaded on first use: the server starts without the run manager, backends or store
    from research_mcp.sandbox.runs import RunManager
    from research_mcp.store import Store

__all__ = ["PUMP_INTERVAL_S", "AppState", "ResolvedWorkspace"]

logger = logging.getLogger(__name__)

PUMP_INTERVAL_S = 0.5
"""Longest the pump sleeps; a run's end, or a run started or ended by this server, wakes it at once."""
_MIN_PUMP_GAP_S = 0.02


@dataclass(frozen=True, slots=True)
class ResolvedWorkspace:
    """The workspace for this call, or why there is none (`lab_info` reports the reason instead of failing)."""

    workspace: Workspace | None
    problem: str | None

    def require(self) -> Workspace:
        if self.workspace is None:
            raise WorkspaceError(self.problem or "No workspace.")
        return self.workspace


@dataclass
class AppState:
    """What the lifespan yields: settings, plus a state store and a run manager per workspace, made on first use."""

    settings: Settings
    task_group: TaskGroup | None = None
    run_ended: Callable[[str], Awaitable[None]] | None = None
    """Told the id of each run that ends, by the pump (subscribed clients hear of it)."""
    stores: dict[Path, Store] = field(default_factory=dict)  # pyright: ignore[reportUnknownVariableType]
    managers: dict[Path, RunManager] = field(default_factory=dict)  # pyright: ignore[reportUnknownVariableType]
    _workspaces: dict[tuple[str, ...] | None, Workspace] = field(
        default_factory=dict[tuple[str, ...] | None, Workspace]
    )

    def resolve_workspace(self, roots: list[str] | None) -> ResolvedWorkspace:
        """The workspace for these client roots; remembered while its folder exists, since resolving costs."""
        key = tuple(roots) if roots is not None else None
        found = self._workspaces.get(key)
        if found is None or not os.path.isdir(found.root):
            try:
                found = self._workspaces[key] = choose_workspace(self.settings.workspace, roots)
            except WorkspaceError as exc:
                return ResolvedWorkspace(None, str(exc))
        return ResolvedWorkspace(found, None)

    def known_workspace(self) -> ResolvedWorkspace:
        """The workspace for a request that carries no client roots (a resource read, a completion): the setting
        or the current folder, else the one the client's roots named last."""
        found = self.resolve_workspace(None)
        if found.workspace is None:
            for key, ws in reversed(self._workspaces.items()):
                if key is not None and os.path.isdir(ws.root):
                    return ResolvedWorkspace(ws, None)
        return found

    def store(self, ws: Workspace) -> Store:
        from research_mcp.store import Store

        found = self.stores.get(ws.root)
        if found is None:
            found = self.stores[ws.root] = Store(ws.state_dir / "state.db")
        return found

    def runs(self, ws: Workspace) -> RunManager:
        """The run manager of a workspace; its pump starts with it and runs until the server stops."""
        from research_mcp.sandbox.envs import Envs
        from research_mcp.sandbox.registry import choose_backend, factories
        from research_mcp.sandbox.runs import RunManager

        found = self.managers.get(ws.root)
        if found is None:
            found = self.managers[ws.root] = RunManager(
                ws,
                self.store(ws),
                factories(self.settings),
                choose=lambda: choose_backend(self.settings),
                max_concurrent=self.settings.max_concurrent_runs,
                max_snapshot_bytes=self.settings.max_snapshot_bytes,
                default_image=self.settings.docker_image,
                log_cap_bytes=self.settings.max_log_bytes,
                max_run_disk_bytes=self.settings.max_run_disk_bytes,
                python_envs=self.settings.python_envs,
                envs=Envs(self.settings.user_data_dir() / "envs", ca_setting=self.settings.ca_bundle),
                shared_data=self.settings.shared_data,
            )
            if self.task_group is not None:
                self.task_group.start_soon(
                    _pump_forever, found, self.run_ended, time.time(), name=f"run pump {ws.root}"
                )
        return found

    async def attach(self, ws: Workspace) -> None:
        """Open the workspace's store in a worker thread, then start its run manager and pump."""
        try:
            await anyio.to_thread.run_sync(self.store, ws)
        except ResearchError as exc:
            logger.warning("cannot reattach the runs of %s: %s", ws.root, exc)
            return
        self.runs(ws)

    async def pump_now(self, runs: RunManager) -> None:
        """One pump step at once (a tool call that waits wants fresh states, not the next tick)."""
        try:
            await runs.pump()
        except ResearchError as exc:
            logger.warning("run pump of %s: %s", runs.ws.root, exc)

    async def wait_for(self, runs: RunManager, run_id: str, timeout_s: float) -> None:
        """Pump at once, then again as soon as the run ends, within `timeout_s` (a tool call that waits wants
        the end when it comes, not at the next tick)."""
        try:
            await runs.wait(run_id, timeout_s)
        except ResearchError as exc:
            logger.warning("run pump of %s: %s", runs.ws.root, exc)
            await anyio.sleep(timeout_s)  # no busy loop while the store or a backend fails

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()
        self.managers.clear()


async def _pump_forever(runs: RunManager, run_ended: Callable[[str], Awaitable[None]] | None, since: float) -> None:
    seen = 0  # the last run event looked at; ends recorded before `since` (this manager's start) are no news
    while True:
        changes = runs.changes
        try:
            await runs.pump()
        except ResearchError as exc:
            logger.warning("run pump of %s: %s", runs.ws.root, exc)
        except Exception:  # the pump must outlive any one bad poll; the run stays and is polled again
            logger.exception("run pump of %s failed; retrying", runs.ws.root)
        if run_ended is not None:
            seen = await _tell_ends(runs, seen, since, run_ended)
        started = anyio.current_time()
        try:
            await runs.watch(PUMP_INTERVAL_S)
        except Exception:  # a backend's wait failing (inside a task group: an ExceptionGroup) must not stop the pump
            logger.exception("watching the runs of %s failed; pumping on the timer", runs.ws.root)
            await anyio.sleep(PUMP_INTERVAL_S)
        # a run whose end is seen but cannot be recorded would wake the watch at once: never spin. A pump that
        # started or ended a run made progress, so the next one goes at once (a queued run takes a freed slot now)
        if runs.changes == changes:
            await anyio.sleep(max(0.0, _MIN_PUMP_GAP_S - (anyio.current_time() - started)))


def _ends_after(runs: RunManager, seen: int, since: float) -> tuple[list[str], int]:
    """The runs whose end was recorded after event `seen` and at or after `since` (by any server on the
    workspace), and the last event id."""
    from research_mcp.sandbox.models import FINISHED

    rows = (
        runs.store.connection()
        .execute("SELECT id, run_id, kind, at FROM run_events WHERE id > ? ORDER BY id", (seen,))
        .fetchall()
    )
    ended = [str(row["run_id"]) for row in rows if row["kind"] in FINISHED and row["at"] >= since]
    return ended, int(rows[-1]["id"]) if rows else seen


async def _tell_ends(runs: RunManager, seen: int, since: float, run_ended: Callable[[str], Awaitable[None]]) -> int:
    """Tell `run_ended` of each run that ended since event `seen`; the event to look after next time."""
    try:
        ended, seen = await anyio.to_thread.run_sync(_ends_after, runs, seen, since)
        for run_id in ended:
            await run_ended(run_id)
    except Exception:  # a client that cannot be told, or a store that cannot be read, must not stop the pump
        logger.exception("telling subscribers of the runs that ended in %s failed", runs.ws.root)
    return seen
