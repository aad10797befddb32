"""What a run reads besides its code, bound and recorded when it is asked for: earlier runs' files (`inputs`)
and the datasets at /data, each with its manifest hash (`runs.inputs`, `runs.datasets`), and how a run's answer
shows them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from research_mcp.errors import BadInputError
from research_mcp.sandbox import datasets as data
from research_mcp.sandbox.base import SANDBOX_WORK, Mount
from research_mcp.sandbox.inputs import InputSpec, resolve_source

__all__ = ["attach_datasets", "attach_inputs", "datasets_shown", "inputs_shown"]


def attach_inputs(
    state_dir: Path, run_dir: Callable[[str], Path], wanted: Sequence[InputSpec], folder: Path, mounts: list[Mount]
) -> dict[str, dict[str, str]]:
    """Bind each input read-only at its place in the run's working tree (`folder` is the new run's folder; a
    placeholder in its work/ holds the bind), and return the record: place -> source run, path, manifest hash."""
    found: dict[str, dict[str, str]] = {}
    sources: set[Path] = set()
    for spec in wanted:
        rel, source = resolve_source(run_dir(spec.run_id), spec)
        if (folder / "code" / spec.dest).exists() or (folder / "code" / spec.dest).is_symlink():
            raise BadInputError(
                f"inputs[{spec.dest!r}]: the code already has {spec.dest}; give the input another place "
                "(or remove it from the code folder)."
            )
        if source in sources:
            raise BadInputError(f"inputs: {spec.run_id}:{rel} is asked for twice; bind it once.")
        sources.add(source)
        placeholder = folder / "work" / spec.dest
        placeholder.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            placeholder.mkdir()
        else:
            placeholder.touch()
        mounts.append(Mount(source=str(source), dest=f"{SANDBOX_WORK}/{spec.dest}"))
        digest = data.current_manifest(state_dir, source, data.HASH_AT_START_BYTES).hash
        found[spec.dest] = {"run": spec.run_id, "path": rel, "hash": digest}
    return found


def attach_datasets(
    state_dir: Path, workspace: Path, shared: Path | None, kind: str, mounts: list[Mount]
) -> tuple[dict[str, Any], list[str]]:
    """Bind every dataset read-only at /data/<name> (an environment build gets none; a mount already at that place
    wins), and return the record (name -> manifest summary) and the datasets whose caches the run's cache layer
    links (a data run's cache is its own dataset's)."""
    if kind == "env":
        return {}, []
    taken = {mount.dest for mount in mounts}
    found = data.find_datasets(workspace, shared)
    chosen = [d for d in found.values() if f"{data.DATA_ROOT}/{d.name}" not in taken]
    mounts += data.dataset_mounts(chosen)
    seen: dict[str, Any] = {}
    for dataset in chosen:
        summary = data.current_manifest(state_dir, dataset.path, data.HASH_AT_START_BYTES).summary()
        seen[dataset.name] = {**summary, "shared": True} if dataset.shared else summary
    caches = [d.name for d in chosen if (d.path / data.CACHE_FOLDER).is_dir()] if kind == "run" else []
    return seen, caches


def inputs_shown(raw: str | None) -> dict[str, str] | None:
    """`runs.inputs` as a run's answer shows it: place -> run_id:path."""
    found: dict[str, dict[str, str]] = json.loads(raw) if raw else {}
    return {dest: f"{item['run']}:{item['path']}" for dest, item in found.items()} or None


def datasets_shown(raw: str | None) -> dict[str, str] | None:
    """`runs.datasets` as a run's answer shows it: name -> the manifest hash's first 12 hex digits."""
    found: dict[str, dict[str, Any]] = json.loads(raw) if raw else {}
    return {name: data.shown(str(item["hash"])) for name, item in found.items()} or None
