"""The one protocol every sandbox backend implements, and the records that cross it.

A backend starts a run described by a `RunSpec`, returns a `RunHandle` that the state store keeps, and answers
`poll` and `cancel` for that handle, also from a server process that did not start the run (runs outlive the
server: a restarted server reattaches through the stored handle). It never touches the state store itself;
`runs.RunManager` does the books.

The run folder (`RunSpec.run_dir`, absolute, inside the workspace) is laid out before `start`:

    runs/<id>/code/      the snapshot, hashed, never written after
    runs/<id>/work/      a writable copy of code/: the run's working tree (`RunSpec.workdir` is relative to it)
    runs/<id>/outputs/   where RESEARCH_OUT points
    runs/<id>/log.txt    stdout and stderr interleaved, written by the backend, capped with a marker

Inside the sandbox the working tree is `/work` (the cwd is `/work/<workdir>`) and outputs are `/outputs`;
`RESEARCH_OUT=/outputs`. Everything else a backend binds is read-only, and nothing else of the host is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from research_mcp.errors import SandboxError
from research_mcp.sandbox._layout import LOG_CAP_MARKER, SANDBOX_OUTPUTS, SANDBOX_WORK

__all__ = [
    "LOG_CAP_MARKER",
    "SANDBOX_OUTPUTS",
    "SANDBOX_WORK",
    "Backend",
    "Capacity",
    "Failure",
    "Mount",
    "RunHandle",
    "RunSpec",
    "RunStatus",
]


Failure = Literal["timeout", "oom", "cancelled", "error"]


class Mount(BaseModel):
    """A host folder or file (or, on docker, a named volume) made visible in the sandbox at `dest`."""

    source: str = Field(description="Absolute host path, or a docker volume's name when `volume`.")
    dest: str = Field(description="Absolute path inside the sandbox.")
    writable: bool = False
    volume: bool = Field(default=False, description="`source` names a docker volume (the docker backend only).")


class RunSpec(BaseModel):
    """Everything a backend needs to start one run."""

    run_id: str
    run_dir: Path = Field(description="Absolute runs/<id>/ folder, laid out as the module docstring says.")
    command: str = Field(description="Shell command line, run by /bin/sh -c in /work/<workdir>.")
    workdir: str = Field(default=".", description="Folder of the working tree to run in, relative to work/.")
    image: str | None = Field(default=None, description="Container image (docker); None for the backend's default.")
    env: dict[str, str] = Field(default_factory=dict[str, str], description="Extra environment; nothing of the host's.")
    gpus: list[int] = Field(default_factory=list[int], description="GPU indices to expose; empty for none.")
    cpus: float | None = Field(default=None, gt=0, description="CPU cores the run may use.")
    memory_bytes: int | None = Field(
        default=None, gt=0, description="Memory limit (RSS, swap included where possible)."
    )
    pids: int = Field(default=512, gt=0, description="Most processes and threads at once.")
    timeout_s: float = Field(gt=0, description="Wall-clock limit; the whole tree is killed when it passes.")
    network: bool = Field(default=False, description="Give the run a network; refused where it cannot be isolated.")
    own_network: bool = Field(
        default=False,
        description="The server's own job (an environment build): its network does not wait on the setting that "
        "governs user runs' network (docker_allow_network).",
    )
    unsandboxed: bool = Field(
        default=False,
        description="Run without bubblewrap, as RESEARCH_MCP_ALLOW_UNSANDBOXED allows where bwrap is missing.",
    )
    ro_paths: list[str] = Field(
        default_factory=list[str],
        description="Absolute host folders bound read-only at the same path (a Python environment and its base).",
    )
    mounts: list[Mount] = Field(
        default_factory=list[Mount],
        description="Further binds: datasets at /data, earlier runs' files, an environment or its build folders.",
    )
    log_cap_bytes: int = Field(default=32 << 20, gt=0, description="Largest log.txt; past it only the tail is kept.")


class RunHandle(BaseModel):
    """What the state store keeps to find a run again, also after a server restart."""

    backend: str
    ref: str = Field(description="Container id, supervisor pid:start-time, or cluster job id.")
    data: dict[str, Any] = Field(default_factory=dict[str, Any], description="Backend-specific extras.")


class RunStatus(BaseModel):
    """A backend's answer to `poll`."""

    state: Literal["running", "exited", "lost"] = Field(
        description="lost: the backend no longer knows the run (its container or supervisor vanished)."
    )
    exit_code: int | None = None
    failure: Failure | None = Field(default=None, description="Why it ended, when it did not end by itself with 0.")
    started_at: float | None = None
    ended_at: float | None = None
    peak_memory_bytes: int | None = None
    detail: str | None = Field(default=None, description="One line for the model: what the backend saw.")


class Capacity(BaseModel):
    """What a backend can take at once; the run manager claims slots and GPUs against it, never against the host."""

    runs: int = Field(ge=1, description="Runs it takes at once; more wait in the queue.")
    cpus: int = Field(ge=1, description="Cores its runs share: a run that names no `cpus` gets cpus // runs threads.")
    gpus: list[int] = Field(default_factory=list[int], description="GPU indices it can give a run.")
    pool: str = Field(default="host", description="Where its runs execute; backends of one pool share its GPUs.")


class Backend(Protocol):
    """A place runs can happen. Every method may be called from a process that did not call `start`.

    A class gets `start_batch` by naming `Backend` as its base."""

    name: str

    def capacity(self) -> Capacity:
        """How many runs it takes at once, the cores they share and the GPUs it can give. May block briefly (it may
        ask the machine or the cluster): call it from a worker thread."""
        ...

    async def start_batch(self, specs: Sequence[RunSpec]) -> list[RunHandle | SandboxError]:
        """Start several runs in one submission (a cluster's job array): per spec, in order, its handle or why it
        could not start. Here each is started on its own; a backend with a cheaper way overrides it."""
        started: list[RunHandle | SandboxError] = []
        for spec in specs:
            try:
                started.append(await self.start(spec))
            except SandboxError as exc:
                started.append(exc)
        return started

    async def start(self, spec: RunSpec) -> RunHandle:
        """Start the run and return at once; raise `SandboxError` with what to do when it cannot start."""
        ...

    async def poll(self, handle: RunHandle) -> RunStatus:
        """Where the run is now; keeps `log.txt` current. Never raises for a run that vanished: `lost`."""
        ...

    async def cancel(self, handle: RunHandle) -> None:
        """Kill the run's whole tree; returns once nothing of it is left running. Idempotent."""
        ...

    async def wait(self, handle: RunHandle, timeout_s: float) -> None:
        """Return as soon as the run may have ended, at the latest after `timeout_s`: a cue to `poll` now, never a
        verdict. Lets a caller that waits for a run learn of its end at once instead of at its next tick."""
        ...

    async def adopt(self, spec: RunSpec) -> RunHandle | None:
        """The handle of the run `start(spec)` began, found again without the handle `start` returned (its caller
        died before recording it); None when nothing of it was started."""
        ...
