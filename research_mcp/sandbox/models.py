"""The run as tools show it, and its states: what the server needs at start-up to describe the run tools,
without loading the run manager, the backends or the store."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from research_mcp.model import ToolModel

__all__ = ["ACTIVE", "FINISHED", "METRIC_PATTERNS", "WAIT_TICK_S", "Run", "RunState", "is_metric_file"]

RunState = Literal["queued", "starting", "running", "succeeded", "failed", "cancelled", "lost"]
ACTIVE: tuple[RunState, ...] = ("queued", "starting", "running")
FINISHED: tuple[RunState, ...] = ("succeeded", "failed", "cancelled", "lost")
WAIT_TICK_S = 0.25
"""Longest a caller waiting for a run sleeps between two looks while it goes on (its end wakes it at once)."""
METRIC_PATTERNS = ("final_info", ".json", ".jsonl", ".csv", ".tsv", "tfevents", "metrics", "MLmodel")


class Run(ToolModel):
    """One run as the model sees it."""

    id: str
    state: RunState
    backend: str
    command: str
    workdir: str = Field(description="The workspace folder that was snapshotted; empty for inline files only.")
    image: str | None = None
    code_hash: str | None = Field(None, description="sha256 over the snapshot's paths and contents.")
    label: str | None = None
    config: dict[str, Any] | None = None
    seed: int | None = None
    parent: str | None = None
    note: str | None = None
    exit_code: int | None = None
    failure: str | None = Field(None, description="timeout, oom, cuda_oom, disk, cancelled, error or lost.")
    detail: str | None = None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    duration_s: float | None = None
    peak_memory_bytes: int | None = None
    folder: str = Field(description="The run's folder in the workspace: code/, work/, outputs/, log.txt.")


def is_metric_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(pattern in name for pattern in METRIC_PATTERNS) and not name.endswith(("spec.json", "status.json"))
