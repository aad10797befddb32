"""The doctor behind `research-mcp doctor` and `lab_info`: what the lab can do here, and how to fix the rest.

Each part answers its own probe (the backends through `sandbox.registry`, local runs' network and limits in
`sandbox.local`, GPUs in `sandbox.gpus`, TeX in `latex.probe`); the doctor only gathers them. Every probe runs the
real thing (a sandbox is started, the Docker engine is asked over its socket), all run concurrently, each bounded
by `Settings.probe_timeout_s`; a probe that hangs is reported as "timeout" and its process group killed. Children
never inherit our stdout (the stdio protocol stream). Only the stdlib, pydantic and cheap modules of this package
are imported at module level and nothing Linux-only at all, so the import is cheap on Linux and macOS alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pydantic import Field

from research_mcp.model import ToolModel
from research_mcp.probe import PartStatus, part
from research_mcp.sandbox.gpus import Gpu
from research_mcp.sandbox.slurm_cluster import Cluster

if TYPE_CHECKING:
    from research_mcp.config import Settings
    from research_mcp.workspace import Workspace

__all__ = ["Component", "Gpu", "LabInfo", "Progress", "format_report", "probe_lab"]

logger = logging.getLogger(__name__)

Component = PartStatus
"""One thing the lab was probed for (what each part's probe answers)."""


class LabInfo(ToolModel):
    """What the lab can do on this machine, and how to fix what it cannot."""

    version: str = Field(description="research-mcp version.")
    platform: str = Field(description="Operating system, release and machine.")
    python: str = Field(description="Python implementation and version running the server.")
    workspace: str | None = Field(default=None, description="Absolute workspace folder; null when there is none.")
    workspace_source: str | None = Field(default=None, description="Where it came from: setting, roots or cwd.")
    workspace_problem: str | None = Field(default=None, description="Why there is no workspace, and how to set one.")
    state_db: str | None = Field(default=None, description="Path of the workspace's state database.")
    backends: list[str] = Field(description="Sandbox backends usable here, most preferred first.")
    components: list[Component] = Field(description="Every probed component with its status and fix.")
    gpus: list[Gpu] = Field(description="NVIDIA GPUs found; empty when there are none.")
    tokens: dict[str, bool] = Field(description="Whether each API token is set (never its value).")
    limits: dict[str, float | int] = Field(description="Output budgets and machine size (cpus, memory_gib, ...).")
    cluster: Cluster | None = Field(default=None, description="The Slurm cluster, where one answers.")


Progress = Callable[[int, int, str], Awaitable[None]]
"""Told (done, total, message) as each probe finishes."""


async def probe_lab(
    settings: Settings,
    workspace: Workspace | None,
    workspace_problem: str | None = None,
    on_progress: Progress | None = None,
) -> LabInfo:
    """Ask every part concurrently, each bounded by `settings.probe_timeout_s`."""
    import platform

    import anyio

    from research_mcp.latex import probe as tex
    from research_mcp.sandbox import gpus as nvidia
    from research_mcp.sandbox import local
    from research_mcp.sandbox.registry import REGISTRY

    system, timeout_s = sys.platform, settings.probe_timeout_s
    gpus: list[Gpu] = []
    probes: list[tuple[str, Callable[[], Awaitable[Component]]]] = [
        *((entry.part, lambda entry=entry: entry.probe(settings)) for entry in REGISTRY.values()),
        ("slirp4netns", lambda: local.probe_network(system)),
        ("cgroups", lambda: anyio.to_thread.run_sync(local.probe_cgroups, system, abandon_on_cancel=True)),
        ("nvidia", lambda: nvidia.probe(gpus, system)),
        *((name, lambda name=name: tex.probe(name, system, settings.tex_bin)) for name in tex.PROGRAMS),
    ]
    found: dict[int, Component] = {}
    secrets = {"GITHUB_TOKEN": settings.github_token, "S2_API_KEY": settings.s2_api_key}
    limits: dict[str, float | int] = _base_limits(settings)

    async def bounded(index: int, name: str, probe: Callable[[], Awaitable[Component]]) -> None:
        with anyio.move_on_after(timeout_s) as scope:
            try:
                found[index] = await probe()
            except (OSError, ValueError, anyio.BrokenResourceError) as exc:
                logger.warning("lab probe %s failed: %r", name, exc)
                found[index] = part(name, "error", f"probe failed: {exc!r}")
        if scope.cancelled_caught:
            logger.info("lab probe %s timed out after %g s", name, timeout_s)
            found[index] = part(name, "timeout", f"no answer within {timeout_s:g} s (probe_timeout_s); probe stopped")
        if on_progress is not None:
            await on_progress(len(found), len(probes), f"{name}: {found[index].status}")

    async def disk_free() -> None:
        if workspace is not None:
            with anyio.move_on_after(timeout_s):
                usage = await anyio.to_thread.run_sync(shutil.disk_usage, workspace.root, abandon_on_cancel=True)
                limits["disk_free_gib"] = round(usage.free / 2**30, 1)

    async with anyio.create_task_group() as tg:
        for index, (name, probe) in enumerate(probes):
            tg.start_soon(bounded, index, name, probe)
        tg.start_soon(disk_free)

    components = [found[index] for index in range(len(probes))]
    cluster = None
    if any(c.name == "slurm" and c.ok for c in components):
        from research_mcp.sandbox.slurm_cluster import cluster_info

        root = workspace.root if workspace else None
        with anyio.move_on_after(timeout_s):
            cluster = await anyio.to_thread.run_sync(
                lambda: cluster_info(root, settings.slurm_partition, timeout_s), abandon_on_cancel=True
            )
    ok = {c.name for c in components if c.ok}
    backends = [entry.name for entry in REGISTRY.values() if entry.part in ok]
    if settings.allow_unsandboxed and "bubblewrap" not in ok and platform.system() == "Linux":
        backends.append("local")  # the user's choice; said loudly below and at the top of every such run's log
        for c in components:
            if c.name == "bubblewrap":
                c.detail += "; RESEARCH_MCP_ALLOW_UNSANDBOXED=1: local runs start WITHOUT a sandbox"
    return LabInfo(
        version=_package_version(),
        platform=platform.platform(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        workspace=str(workspace.root) if workspace else None,
        workspace_source=workspace.source if workspace else None,
        workspace_problem=workspace_problem,
        state_db=str(workspace.state_dir / "state.db") if workspace else None,
        backends=backends,
        components=components,
        gpus=sorted(gpus, key=lambda gpu: gpu.index),
        tokens={name: bool(secret and secret.get_secret_value()) for name, secret in secrets.items()},
        limits=limits,
        cluster=cluster,
    )


def format_report(info: LabInfo) -> str:
    """Human text for `research-mcp doctor`: one line per component, then the steps that fix what is missing."""
    lines = [f"research-mcp {info.version} · {info.python} · {info.platform}"]
    if info.workspace:
        lines.append(f"workspace: {info.workspace} (from {info.workspace_source}); state: {info.state_db}")
    else:
        lines.append(f"workspace: none ({info.workspace_problem or 'not set'})")
    lines.append(f"sandbox backends: {', '.join(info.backends) or 'none: no experiment can run until one is fixed'}")
    lines.append("")
    width = max((len(c.name) for c in info.components), default=0)
    lines.extend(f"{'✓' if c.ok else '✗'} {c.name:<{width}}  {c.status:<11}  {c.detail}" for c in info.components)
    lines.append("")
    gpu = "GPU {0.index}: {0.name}, {0.memory_total_mib} MiB ({0.memory_free_mib} MiB free), driver {0.driver}"
    lines.extend([gpu.format(g) for g in info.gpus] or ["GPUs: none"])
    lines.append("tokens: " + ", ".join(f"{name} {'set' if v else 'not set'}" for name, v in info.tokens.items()))
    lines.append("limits: " + ", ".join(f"{name}={value}" for name, value in info.limits.items()))
    if info.cluster is not None:
        for p in info.cluster.partitions:
            gpus = ", ".join(f"{n} {kind}" for kind, n in p.gpus.items()) or "no GPUs"
            lines.append(f"slurm {p.name}: {p.nodes} nodes ({p.idle_nodes} idle), {p.cpus} CPUs, {gpus}")
        lines.append(f"slurm jobs: {info.cluster.running} running, {info.cluster.pending} pending")
        if info.cluster.warning:
            lines.append(f"warning: {info.cluster.warning}")
    steps: dict[str, list[str]] = {}
    for component in info.components:
        if component.install:
            steps.setdefault(component.install, []).append(component.name)
    if steps:
        lines += ["", "To fix:"]
        lines.extend(f"  {', '.join(names)}: {step}" for step, names in steps.items())
    return "\n".join(lines)


def _base_limits(settings: Settings) -> dict[str, float | int]:
    limits: dict[str, float | int] = {
        "max_output_chars": settings.max_output_chars,
        "max_file_bytes": settings.max_file_bytes,
        "probe_timeout_s": settings.probe_timeout_s,
    }
    if cpus := os.cpu_count():
        limits["cpus"] = cpus
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return limits


def _package_version() -> str:
    from importlib import metadata

    import research_mcp

    declared: object = getattr(research_mcp, "__version__", None)
    if isinstance(declared, str):
        return declared
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version("research-mcp")
    return "0+unknown"
