"""`prepare_data`: a download or preprocessing command run as a sandboxed run of kind `data`, whose outputs become
`datasets/<name>/` with a manifest.

The run writes into `/data/<name>` (`$RESEARCH_DATA`), bound writable to `datasets/.incoming/<name>-<run id>/`, and
its caches (`HF_HOME`, `TORCH_HOME`, ... below /tmp/cache) into that folder's `.cache/`; the other datasets are
read-only at /data as in any run (preprocessing reads a raw dataset and writes another). When the run succeeds,
its folder is hashed (the manifest), then renamed into place in one step, replacing an earlier version; when it
fails or is cancelled, nothing of it is left.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from research_mcp.errors import BadInputError, SandboxError
from research_mcp.sandbox.base import Mount
from research_mcp.sandbox.datasets import (
    CACHE_FOLDER,
    DATA_ROOT,
    INCOMING,
    SANDBOX_CACHE,
    check_name,
    current_manifest,
    shown,
)
from research_mcp.sandbox.models import ACTIVE, Command, Run, RunRequest, TimeoutS

if TYPE_CHECKING:
    from research_mcp.config import BackendChoice
    from research_mcp.sandbox.runs import RunManager

__all__ = ["DataEnd", "finish_data_run", "prepare_data", "staged_dataset"]

logger = logging.getLogger(__name__)

_OPEN = stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO
"""The staging folder is the sandbox user's to write (nobody under a root server, on both backends)."""


def prepare_data(
    runs: RunManager,
    name: str,
    command: Command,
    *,
    workdir: str = ".",
    network: bool = True,
    backend: BackendChoice = "auto",
    timeout_s: TimeoutS = 3600,
    docker_allow_network: bool = True,
) -> Run:
    """Queue the run that prepares dataset `name` (sync: call it in a worker thread)."""
    check_name(name)
    chosen = runs.choose(backend)
    if chosen == "docker" and network and not docker_allow_network:
        raise SandboxError(
            "prepare_data runs the command you gave, so on Docker its network is governed as any run's: "
            "RESEARCH_MCP_DOCKER_ALLOW_NETWORK is off (Docker's bridge reaches host services on 0.0.0.0). Ask the "
            'user to set it, or use backend="local" (its own user-mode network), or put the files into '
            "datasets/ yourself and prepare with network=false."
        )
    busy = runs.store.connection().execute(
        f"SELECT id FROM runs WHERE kind = 'data' AND state IN ({', '.join('?' * len(ACTIVE))}) "
        "AND json_extract(config, '$.dataset') = ?",
        (*ACTIVE, name),
    )
    if (row := busy.fetchone()) is not None:
        raise BadInputError(
            f"Dataset {name!r} is being prepared by run {row[0]}: wait for it (run_status) or cancel it first."
        )
    incoming = runs.ws.root / "datasets" / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    staging = Path(_fresh_folder(incoming, name))
    try:
        (staging / CACHE_FOLDER).mkdir()
        for folder in (staging, staging / CACHE_FOLDER):
            folder.chmod(_OPEN)
        dest = f"{DATA_ROOT}/{name}"
        mounts = [
            Mount(source=str(staging), dest=dest, writable=True),
            Mount(source=str(staging / CACHE_FOLDER), dest=SANDBOX_CACHE, writable=True),
        ]
        request = RunRequest(
            command=command,
            workdir=workdir,
            backend=backend,
            timeout_s=timeout_s,
            network=network,
            env={"RESEARCH_DATA": dest},
            config={"dataset": name},
        )
        return runs.prepare(request, kind="data", mounts=mounts)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fresh_folder(parent: Path, name: str) -> str:
    for attempt in range(1000):
        folder = parent / (name if attempt == 0 else f"{name}.{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return str(folder)
    raise SandboxError(f"Too many unfinished preparations of {name!r} in datasets/{INCOMING}/; remove them.")


def staged_dataset(limits: dict[str, Any]) -> tuple[str, Path] | None:
    """The dataset a data run writes, and its staging folder, from its recorded mounts."""
    for raw in list[object](limits.get("mounts") or []):
        mount = Mount.model_validate(raw)
        if mount.writable and mount.dest.startswith(DATA_ROOT + "/"):
            return mount.dest.removeprefix(DATA_ROOT + "/"), Path(mount.source)
    return None


class DataEnd:
    """How a data run ended once its dataset was put in place (or not): the run's final verdict. `elsewhere`:
    another thread or server is finishing it, and records its end."""

    def __init__(
        self, failed: bool, detail: str | None, record: dict[str, Any] | None, *, elsewhere: bool = False
    ) -> None:
        self.failed = failed
        self.detail = detail
        self.record = record
        self.elsewhere = elsewhere


def finish_data_run(ws_root: Path, state_dir: Path, limits: dict[str, Any], succeeded: bool) -> DataEnd | None:
    """Put a succeeded data run's dataset in place with its manifest; drop what a failed one wrote. None when
    there is nothing to do (it was finished before).

    The run's end may be seen by two pollers at once (the pump and a waiting call, or two servers): the one that
    renames the staging folder to `<name>.finishing` does the work, the other is told so."""
    found = staged_dataset(limits)
    if found is None:
        return None
    name, incoming = found
    staging = incoming.with_name(incoming.name + ".finishing")
    try:
        os.rename(incoming, staging)
    except FileNotFoundError:
        return DataEnd(False, None, None, elsewhere=True) if staging.exists() else None
    if not succeeded:
        shutil.rmtree(staging, ignore_errors=True)
        return None
    cache = staging / CACHE_FOLDER
    if cache.is_dir() and not any(cache.iterdir()):
        cache.rmdir()
    if not any(staging.iterdir()):
        staging.rmdir()
        return DataEnd(True, f"The command wrote nothing into $RESEARCH_DATA ({DATA_ROOT}/{name}): no dataset.", None)
    staging.chmod(0o755)
    target = ws_root / "datasets" / name
    old = staging.with_name(staging.name + ".old")
    try:
        if target.exists() or target.is_symlink():
            os.replace(target, old)
        os.replace(staging, target)
    except OSError as exc:
        logger.warning("cannot put dataset %s in place: %s", name, exc)
        shutil.rmtree(staging, ignore_errors=True)
        return DataEnd(True, f"The dataset could not be moved into datasets/{name}: {exc}.", None)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
    manifest = current_manifest(state_dir, target.resolve())
    record = {name: {**manifest.summary(), "made": True}}
    mib = manifest.size_bytes / 2**20
    detail = (
        f"Dataset {name} is ready at datasets/{name} (/data/{name} in runs): {len(manifest.files)} files, "
        f"{mib:.1f} MiB, manifest {shown(manifest.hash)}."
    )
    return DataEnd(False, detail, record)


def manifest_record(record: dict[str, Any] | None) -> str | None:
    return None if record is None else json.dumps(record)
