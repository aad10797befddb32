"""`rerun`: a run again from its own code snapshot, environment, inputs and data, optionally with another seed,
linked to it as its parent.

Before anything is queued, every dataset the run could read and every input it read is hashed again and
compared with the manifest recorded then. A rerun on other data is no reproduction, so a change refuses the
rerun, naming the dataset and its changed, added or removed files; `changed_data_ok=True` runs it anyway on the
data as it is now (the new run records the new hashes, so the two runs show the difference).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from research_mcp.errors import BadInputError
from research_mcp.sandbox import datasets as data
from research_mcp.sandbox.inputs import InputSpec, resolve_source
from research_mcp.sandbox.models import Run, RunRequest

if TYPE_CHECKING:
    from research_mcp.sandbox.runs import RunManager

__all__ = ["DataChangedError", "data_changes", "rerun"]

_FILES_SHOWN = 8


class DataChangedError(BadInputError):
    """The data a run read changed since: a rerun would not reproduce it."""

    def __init__(self, run_id: str, changes: dict[str, list[str]]) -> None:
        said = "; ".join(
            f"{name}: {', '.join(files[:_FILES_SHOWN])}"
            + (f" and {len(files) - _FILES_SHOWN} more" if len(files) > _FILES_SHOWN else "")
            for name, files in changes.items()
        )
        super().__init__(
            f"The data run {run_id} read has changed since, so a rerun would not reproduce it ({said}). Restore "
            "those files (or prepare_data them again as they were), or call rerun with changed_data_ok=true to "
            "run on the data as it is now."
        )
        self.changes = changes


def data_changes(runs: RunManager, row: Any) -> dict[str, list[str]]:
    """Per dataset (`/data/<name>`) or input (its place), what changed since the run recorded it."""
    state_dir = runs.ws.state_dir
    changes: dict[str, list[str]] = {}
    recorded: dict[str, dict[str, Any]] = json.loads(row["datasets"]) if row["datasets"] else {}
    found = data.find_datasets(runs.ws.root, runs.shared_data)
    for name, item in recorded.items():
        if item.get("made"):
            continue  # the dataset a data run wrote, not one it read
        dataset = found.get(name)
        if dataset is None:
            changes[f"/data/{name}"] = ["the dataset is gone"]
            continue
        now = data.current_manifest(state_dir, dataset.path, data.HASH_AT_START_BYTES)
        if now.hash != item["hash"]:
            changes[f"/data/{name}"] = data.compare(data.load_manifest(state_dir, item["hash"]), now)
    inputs: dict[str, dict[str, str]] = json.loads(row["inputs"]) if row["inputs"] else {}
    for dest, item in inputs.items():
        try:
            _, source = resolve_source(runs.run_dir(item["run"]), InputSpec(dest, item["run"], item["path"]))
        except BadInputError:
            changes[f"input {dest}"] = [f"{item['run']}:{item['path']} is gone"]
            continue
        now = data.current_manifest(state_dir, source, data.HASH_AT_START_BYTES)
        if now.hash != item["hash"]:
            changes[f"input {dest}"] = data.compare(data.load_manifest(state_dir, item["hash"]), now)
    return changes


def rerun(
    runs: RunManager, run_id: str, seed: int | None = None, note: str | None = None, changed_data_ok: bool = False
) -> Run:
    """Queue the run again (sync: call it in a worker thread). Another seed reaches the program as $RESEARCH_SEED."""
    row = runs.record(run_id)
    if row["kind"] != "run":
        raise BadInputError(
            f"Run {run_id} is a {'dataset preparation' if row['kind'] == 'data' else 'build'}, not an experiment: "
            "call prepare_data (or prepare_env) again to redo it."
        )
    changes = data_changes(runs, row)
    if changes and not changed_data_ok:
        raise DataChangedError(run_id, changes)
    limits: dict[str, Any] = json.loads(row["limits"])
    env: dict[str, str] = dict(limits.get("env") or {})
    if seed is not None:
        env["RESEARCH_SEED"] = str(seed)
    pyenv = limits.get("python_env")
    inputs: dict[str, dict[str, str]] = json.loads(row["inputs"]) if row["inputs"] else {}
    memory = limits.get("memory_bytes")
    request = RunRequest(
        command=row["command"],
        workdir=row["workdir"] or None,
        image=row["image"],
        gpus=limits.get("gpu_count") or 0,
        cpus=limits.get("cpus"),
        memory_gb=None if memory is None else memory / 2**30,
        timeout_s=limits["timeout_s"],
        env=env,
        network=bool(limits.get("network")),
        python_env=None if pyenv is None else str(pyenv["name"]),
        label=row["label"],
        config=json.loads(row["config"]) if row["config"] else None,
        seed=row["seed"] if seed is None else seed,
        parent=run_id,
        note=note if note is not None else f"rerun of {run_id}",
        idea_id=row["idea_id"],
        inputs={dest: f"{item['run']}:{item['path']}" for dest, item in inputs.items()} or None,
    )
    # the backend it ran on, not a new choice (its name was checked when it was asked for)
    return runs.prepare(request.model_copy(update={"backend": row["backend"]}), snapshot_of=run_id)
