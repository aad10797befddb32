"""The run as tools show it, its states, and what a run may ask for: what the server needs at start-up to describe
the run tools, without loading the run manager, the backends or the store."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from research_mcp.config import BackendChoice
from research_mcp.model import ToolModel

__all__ = [
    "ACTIVE",
    "CODE_HASH_SHOWN",
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


def _unset(value: object) -> bool:
    return value is None


def _absent(description: str | None = None) -> Any:
    """A field left out of the answer while it has no value (absent reads as null)."""
    return Field(None, description=description, exclude_if=_unset)


CODE_HASH_SHOWN = 12
"""Hex digits of a run's code hash in its answers; the store keeps all 64."""


class Run(ToolModel):
    """One run as the model sees it. A field without a value is left out."""

    id: str
    state: RunState
    backend: str
    command: str
    workdir: str = Field(description="The workspace folder that was snapshotted; empty for inline files only.")
    image: str | None = _absent()
    code_hash: str | None = _absent(
        f"The first {CODE_HASH_SHOWN} hex digits of the sha256 over the snapshot's paths and contents (equal "
        "prefixes: the same code)."
    )
    label: str | None = _absent()
    config: dict[str, Any] | None = _absent()
    seed: int | None = _absent()
    parent: str | None = _absent()
    note: str | None = _absent()
    idea_id: str | None = _absent()
    kind: str | None = _absent("env: an environment's build; data: a dataset's preparation.")
    python_env: str | None = _absent("The Python environment it ran with; absent: the sandbox's.")
    env_id: str | None = _absent("The prepare_env environment it ran in (or built).")
    inputs: dict[str, str] | None = _absent("Earlier runs' files it read: place -> run_id:path.")
    datasets: dict[str, str] | None = _absent("Datasets it could read at /data/<name>: manifest hash prefixes.")
    sweep_id: str | None = _absent()
    exit_code: int | None = _absent()
    failure: str | None = _absent("timeout, oom, cuda_oom, disk, cancelled, error or lost.")
    detail: str | None = _absent()
    created_at: float = Field(description="Unix time, to the millisecond, as are started_at and ended_at.")
    started_at: float | None = _absent()
    ended_at: float | None = _absent()
    duration_s: float | None = _absent()
    peak_memory_bytes: int | None = _absent()
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
    idea_id: str | None = None  # checked against the workspace's ideas: no length limit to keep in step
    inputs: dict[str, str] | None = None  # checked by `inputs.parse_inputs`
