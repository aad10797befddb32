"""The run as tools show it, its states, and what a run may ask for: what the server needs at start-up to describe
the run tools, without loading the run manager, the backends or the store."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from research_mcp.config import BackendChoice
from research_mcp.model import ToolModel

__all__ = [
    "ACTIVE",
    "FINISHED",
    "METRIC_PATTERNS",
    "WAIT_TICK_S",
    "Command",
    "Cpus",
    "GpuCount",
    "Label",
    "MemoryGb",
    "Note",
    "PythonEnvName",
    "Run",
    "RunRequest",
    "RunState",
    "TimeoutS",
    "is_metric_file",
    "is_plot",
]

RunState = Literal["queued", "starting", "running", "succeeded", "failed", "cancelled", "lost"]
ACTIVE: tuple[RunState, ...] = ("queued", "starting", "running")
FINISHED: tuple[RunState, ...] = ("succeeded", "failed", "cancelled", "lost")
WAIT_TICK_S = 0.25
"""Longest a caller waiting for a run sleeps between two looks while it goes on (its end wakes it at once)."""

# The limits of a run request, written once: `runs.RunRequest` and the `run_experiment` adapter both read them
# (the adapter adds its descriptions), so the tool's schema refuses what the request would refuse.
Command = Annotated[str, Field(min_length=1, max_length=20_000)]
GpuCount = Annotated[int, Field(ge=0, le=64)]
Cpus = Annotated[float | None, Field(gt=0, le=1024)]
MemoryGb = Annotated[float | None, Field(gt=0, le=4096)]
TimeoutS = Annotated[float, Field(gt=0, le=7 * 24 * 3600)]
PythonEnvName = Annotated[str | None, Field(max_length=4096)]
Label = Annotated[str | None, Field(max_length=200)]
Note = Annotated[str | None, Field(max_length=4000)]

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
    python_env: str | None = Field(None, description="The Python environment it ran with; null: the sandbox's.")
    exit_code: int | None = None
    failure: str | None = Field(None, description="timeout, oom, cuda_oom, disk, cancelled, error or lost.")
    detail: str | None = None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    duration_s: float | None = None
    peak_memory_bytes: int | None = None
    folder: str = Field(description="The run's folder in the workspace: code/, work/, outputs/, log.txt.")


PLOT_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_plot(path: str) -> bool:
    return path.lower().endswith(PLOT_SUFFIXES)


def is_metric_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(pattern in name for pattern in METRIC_PATTERNS) and not name.endswith(("spec.json", "status.json"))


class RunRequest(ToolModel):
    """What `run_experiment` asks for, validated. Its limits are the types above, which the adapter reads too."""

    command: Command
    workdir: str | None = "."
    files: dict[str, str] | None = None
    backend: BackendChoice = "auto"
    image: str | None = None
    gpus: Annotated[GpuCount, Field(description="How many GPUs; which ones is chosen when the run starts.")] = 0
    cpus: Cpus = None
    memory_gb: MemoryGb = None
    timeout_s: TimeoutS = 3600
    env: dict[str, str] = Field(default_factory=dict[str, str])
    network: bool = False
    python_env: PythonEnvName = None
    label: Label = None
    config: dict[str, Any] | None = None
    seed: int | None = None
    parent: str | None = None
    note: Note = None
