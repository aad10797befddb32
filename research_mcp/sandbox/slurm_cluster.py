"""The Slurm cluster as `lab_info` shows it: partitions, GPUs per type, idle nodes, the user's jobs, and a warning
when the workspace does not look like it is on the file system the nodes share. Light to import (the doctor's
module imports it at its top); every function that asks Slurm blocks: call it from a worker thread."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pydantic import Field

from research_mcp.model import ToolModel

__all__ = ["Cluster", "Partition", "SlurmJob", "cluster_info", "fs_type", "shared_fs_problem", "user_name"]

_LOCAL_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "overlayfs", "zfs", "f2fs", "ramfs", "vfat"}
_SHOWN_JOBS = 20


def user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class Partition(ToolModel):
    """One partition of the cluster."""

    name: str
    default: bool = False
    state: str = Field(description="up, down, drain or inactive.")
    time_limit: str = Field(description="Longest --time a job may ask for.")
    nodes: int
    idle_nodes: int
    cpus: int
    gpus: dict[str, int] = Field(default_factory=dict[str, int], description="GPUs per type over its nodes.")


class SlurmJob(ToolModel):
    """One of the user's jobs."""

    job_id: str
    name: str
    state: str
    reason: str | None = Field(default=None, description="Why it waits, in words, then Slurm's reason.")


class Cluster(ToolModel):
    """The Slurm cluster the slurm backend submits to."""

    name: str | None = None
    partitions: list[Partition]
    running: int = Field(description="The user's running jobs.")
    pending: int = Field(description="The user's pending jobs.")
    jobs: list[SlurmJob] = Field(description="The first of them.")
    warning: str | None = Field(default=None, description="What looks wrong for runs (the workspace's file system).")


def cluster_info(workspace: Path | None, partition: str | None = None, timeout_s: float = 10.0) -> Cluster | None:
    """The cluster as `sinfo` and `squeue` show it, or None when no controller answers. Blocks (worker thread)."""
    # its readers, imported here: this module's models are imported when the server starts
    from research_mcp.sandbox._slurm_states import SQUEUE_FORMAT, parse_gres, parse_squeue, pending_words

    def run(argv: list[str]) -> str | None:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    nodes = run(["sinfo", "-h", "-N", "-o", "%N|%P|%c|%G|%t|%l|%a"])
    if nodes is None:
        return None
    parts: dict[str, Partition] = {}
    seen: dict[str, set[str]] = {}
    all_nodes: set[str] = set()
    for line in nodes.splitlines():
        fields = line.split("|")
        if len(fields) != 7:
            continue
        node, name, cpus, gres, state, limit, avail = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        all_nodes.add(node)
        found = parts.setdefault(
            name, Partition(name=name, default=default, state=avail, time_limit=limit, nodes=0, idle_nodes=0, cpus=0)
        )
        if node in seen.setdefault(name, set()):
            continue
        seen[name].add(node)
        found.nodes += 1
        found.idle_nodes += state.rstrip("*~#!%$@^-") == "idle"
        found.cpus += int(cpus) if cpus.isdigit() else 0
        for kind, count in parse_gres(gres).items():
            found.gpus[kind] = found.gpus.get(kind, 0) + count
    queue = run(["squeue", "-h", "-r", "-u", user_name(), "-o", SQUEUE_FORMAT]) or ""
    jobs = list(parse_squeue(queue).values())
    shown = [
        SlurmJob(
            job_id=job.job_id,
            name=job.name,
            state=job.state,
            reason=pending_words(job.reason, False) if job.state == "PENDING" else None,
        )
        for job in jobs[:_SHOWN_JOBS]
    ]
    config = run(["scontrol", "show", "config"]) or ""
    cluster = next((ln.split("=", 1)[1].strip() for ln in config.splitlines() if ln.startswith("ClusterName")), None)
    chosen = [p for p in parts.values() if p.name == partition] if partition else list(parts.values())
    return Cluster(
        name=cluster,
        partitions=chosen or list(parts.values()),
        running=sum(job.state == "RUNNING" for job in jobs),
        pending=sum(job.state == "PENDING" for job in jobs),
        jobs=shown,
        warning=None if workspace is None else shared_fs_problem(workspace, len(all_nodes)),
    )


def fs_type(path: Path, mounts: Path = Path("/proc/mounts")) -> str | None:
    """The file system type of the mount holding `path` (the longest mount point above it)."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    target = str(path.resolve())
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def shared_fs_problem(workspace: Path, nodes: int, mounts: Path = Path("/proc/mounts")) -> str | None:
    """A warning when the cluster has several nodes and the workspace sits on a local file system, which the
    other nodes cannot see."""
    kind = fs_type(workspace, mounts)
    if nodes <= 1 or kind is None or kind not in _LOCAL_FS:
        return None
    return (
        f"The workspace {workspace} is on a local file system ({kind}) but the cluster has {nodes} nodes: jobs on "
        "other nodes cannot read their scripts or write their results. Put the workspace on the shared file system "
        "(NFS, Lustre, GPFS, BeeGFS: usually your home or project folder)."
    )
