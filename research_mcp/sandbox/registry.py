"""The sandbox backends this server knows: one entry per name of `config.BackendName` (a test checks they agree).

An entry says how to make its backend from the settings and how to learn whether it works here (its probe: the
part the doctor lists, with the step that fixes it); the backend itself answers how many runs it takes at once and
which GPUs it can give (`Backend.capacity`). The backend modules are imported only when an entry is used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from research_mcp.config import BackendName, Settings

if TYPE_CHECKING:
    from research_mcp.probe import PartStatus
    from research_mcp.sandbox.base import Backend

__all__ = ["REGISTRY", "BackendEntry", "choose_backend", "factories"]


@dataclass(frozen=True, slots=True)
class BackendEntry:
    name: BackendName
    part: str
    """The name of the part its probe reports (bubblewrap for local)."""
    make: Callable[[Settings], Backend]
    probe: Callable[[Settings], Awaitable[PartStatus]]


def _local(settings: Settings) -> Backend:
    from research_mcp.sandbox.local import LocalBackend

    return LocalBackend(allow_unsandboxed=settings.allow_unsandboxed)


def _docker(settings: Settings) -> Backend:
    from research_mcp.sandbox.docker import DockerBackend

    return DockerBackend(image=settings.docker_image, allow_network=settings.docker_allow_network)


def _slurm(settings: Settings) -> Backend:
    from research_mcp.sandbox._slurm_script import Site
    from research_mcp.sandbox.slurm import SlurmBackend

    site = Site(
        partition=settings.slurm_partition,
        account=settings.slurm_account,
        qos=settings.slurm_qos,
        gpu_option=settings.slurm_gpu_option,
        gpu_type=settings.slurm_gpu_type,
        array_throttle=settings.slurm_array_throttle,
        container=settings.slurm_container,
        image=settings.slurm_image,
        binds=tuple(settings.slurm_binds),
        time_margin_s=settings.slurm_time_margin_s,
        sbatch_args=tuple(settings.slurm_sbatch_args),
    )
    return SlurmBackend(site, max_jobs=settings.slurm_max_jobs, allow_unsandboxed=settings.allow_unsandboxed)


async def _probe_local(settings: Settings) -> PartStatus:
    from research_mcp.sandbox.local import probe

    return await probe()


async def _probe_docker(settings: Settings) -> PartStatus:
    from research_mcp.sandbox.docker import probe

    return await probe(settings.docker_image, settings.probe_timeout_s)


async def _probe_slurm(settings: Settings) -> PartStatus:
    from research_mcp.sandbox.slurm import probe

    return await probe(settings.slurm_partition)


REGISTRY: dict[BackendName, BackendEntry] = {
    "docker": BackendEntry("docker", "docker", _docker, _probe_docker),
    "local": BackendEntry("local", "bubblewrap", _local, _probe_local),
    "slurm": BackendEntry("slurm", "slurm", _slurm, _probe_slurm),
}
"""Most preferred first. backend="auto" takes docker when its engine answers, else local (`choose_backend`); slurm
only when the `backend` setting names it: a cluster's queue is never a silent fallback."""


def factories(settings: Settings) -> dict[str, Callable[[], Backend]]:
    """What `RunManager` takes: each backend's name and how to make it, on first use."""
    return {name: (lambda entry=entry: entry.make(settings)) for name, entry in REGISTRY.items()}


def choose_backend(settings: Settings) -> BackendName:
    """For backend="auto": the setting (the only way to slurm), else docker when its engine answers, else local
    (bubblewrap). Blocks up to a second (it pings the engine)."""
    if settings.backend != "auto":
        return settings.backend
    from research_mcp.sandbox._docker_engine import engine_answers

    return "docker" if engine_answers() else "local"
