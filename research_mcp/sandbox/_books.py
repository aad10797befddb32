"""The books of a run manager: reading the runs of a workspace as the state store has them.

Every run is a row of `runs` and its history rows of `run_events`; these read them (one run, a page, a sweep's
members, the files a run wrote, the spec a backend starts it from) and add to the history. `RunManager` (runs.py)
is built on them.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from research_mcp.errors import LabelNotFoundError, RunNotFoundError, SandboxError
from research_mcp.sandbox import datasets as data
from research_mcp.sandbox._files import changed_files, output_files
from research_mcp.sandbox.base import Mount, RunSpec
from research_mcp.sandbox.models import ACTIVE, CODE_HASH_SHOWN, Run
from research_mcp.sandbox.provenance import datasets_shown, inputs_shown
from research_mcp.sandbox.pyenv import PythonEnv
from research_mcp.sandbox.slots import thread_env

if TYPE_CHECKING:
    from research_mcp.store import Store
    from research_mcp.workspace import Workspace


def _short(code_hash: str | None) -> str | None:
    """A code hash as answers show it: its prefix (the store keeps it whole)."""
    return None if code_hash is None else code_hash[:CODE_HASH_SHOWN]


def _ms(stamp: float | None) -> float | None:
    return None if stamp is None else round(stamp, 3)


def _env_name(limits: str) -> str | None:
    found: dict[str, Any] | None = json.loads(limits).get("python_env")
    return None if found is None else str(found["name"])


class Books:
    """The runs of one workspace as stored: what `RunManager` reads and records them with."""

    ws: Workspace
    store: Store
    clock: Callable[[], float]
    log_cap_bytes: int

    def run_dir(self, run_id: str) -> Path:
        return self.ws.root / "runs" / run_id

    def _row(self, run_id: str) -> Any:
        row = self.store.connection().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            ids = [
                r[0] for r in self.store.connection().execute("SELECT id FROM runs ORDER BY created_at DESC, id DESC")
            ]
            raise RunNotFoundError(run_id, difflib.get_close_matches(run_id, ids, n=3, cutoff=0.5), ids[:3])
        return row

    def _to_run(self, row: Any) -> Run:
        ended = row["ended_at"] or (None if row["state"] in ACTIVE else row["created_at"])
        started = row["started_at"]
        return Run(
            id=row["id"], state=row["state"], backend=row["backend"], command=row["command"],
            workdir=row["workdir"], image=row["image"], code_hash=_short(row["code_hash"]), label=row["label"],
            config=json.loads(row["config"]) if row["config"] else None, seed=row["seed"], parent=row["parent"],
            note=row["note"], idea_id=row["idea_id"], kind=None if row["kind"] == "run" else row["kind"],
            python_env=None if row["env_id"] else _env_name(row["limits"]), env_id=row["env_id"],
            inputs=inputs_shown(row["inputs"]), datasets=datasets_shown(row["datasets"]), sweep_id=row["sweep_id"],
            exit_code=row["exit_code"], failure=row["failure"], detail=row["detail"],
            created_at=round(row["created_at"], 3), started_at=_ms(started), ended_at=_ms(row["ended_at"]),
            duration_s=round((ended or self.clock()) - started, 3) if started else None,
            peak_memory_bytes=row["peak_memory_bytes"], folder=f"runs/{row['id']}",
        )  # fmt: skip

    def get(self, run_id: str) -> Run:
        return self._to_run(self._row(run_id))

    def record(self, run_id: str) -> Any:
        """The run's stored row (every column), for code that repeats or audits it."""
        return self._row(run_id)

    def list(
        self,
        state: str | None,
        label: str | None,
        parent: str | None,
        limit: int,
        offset: int,
        sweep_id: str | None = None,
    ) -> tuple[list[Run], int]:
        """A page of runs, newest first; a sweep's members in the order they were asked for."""
        clauses: list[str] = []
        args: list[object] = []
        if sweep_id is not None:
            self.sweep_counts(sweep_id)  # an unknown sweep names the closest ids
        for column, value in (("state", state), ("label", label), ("parent", parent), ("sweep_id", sweep_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        conn = self.store.connection()
        if parent is not None:
            self._row(parent)  # an unknown parent names the closest ids
        total = int(conn.execute(f"SELECT count(*) FROM runs {where}", args).fetchone()[0])
        if label is not None and not total:
            self._check_label(label)
        order = "created_at, id" if sweep_id is not None else "created_at DESC, id DESC"
        rows = conn.execute(
            f"SELECT * FROM runs {where} ORDER BY {order} LIMIT ? OFFSET ?", [*args, limit, offset]
        ).fetchall()
        return [self._to_run(row) for row in rows], total

    # -- sweeps: their members are runs; these read them together -------------------------------------------------

    def sweep_counts(self, sweep_id: str) -> dict[str, int]:
        """How many members of the sweep are in each state (states without members left out)."""
        conn = self.store.connection()
        if conn.execute("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)).fetchone() is None:
            ids = [str(r[0]) for r in conn.execute("SELECT id FROM sweeps ORDER BY created_at DESC")]
            close = difflib.get_close_matches(sweep_id, ids, n=3, cutoff=0.5)
            known = f" (closest: {', '.join(close)})" if close else (f" (newest: {ids[0]})" if ids else "")
            raise SandboxError(
                f"No sweep {sweep_id!r}{known}. run_sweep gives a sweep id; list_runs shows each run's sweep_id."
            )
        rows = conn.execute("SELECT state, count(*) FROM runs WHERE sweep_id = ? GROUP BY state", (sweep_id,))
        return {str(row[0]): int(row[1]) for row in rows}

    def sweep_active(self, sweep_id: str) -> str | None:
        """The first member still queued, starting or running; None once every member ended."""
        row = (
            self.store.connection()
            .execute(
                "SELECT id FROM runs WHERE sweep_id = ? AND state IN ('queued', 'starting', 'running') "
                "ORDER BY created_at, id LIMIT 1",
                (sweep_id,),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def is_sweep(self, some_id: str) -> bool:
        return self.store.connection().execute("SELECT 1 FROM sweeps WHERE id = ?", (some_id,)).fetchone() is not None

    def python_env(self, run_id: str) -> PythonEnv | None:
        """The Python environment the run was started with, as it was resolved then."""
        found = json.loads(self._row(run_id)["limits"]).get("python_env")
        return None if found is None else PythonEnv.model_validate(found)

    def _spec(self, row: Any) -> RunSpec:
        limits: dict[str, Any] = json.loads(row["limits"])
        found = limits.get("python_env")
        pyenv = None if found is None else PythonEnv.model_validate(found)
        env: dict[str, str] = limits.get("env") or {}
        shared = thread_env(limits.get("threads"))
        if row["kind"] != "env":  # caches below /tmp/cache (datasets.py); offline switches without a network
            shared |= data.CACHE_ENV if limits.get("network") else data.CACHE_ENV | data.OFFLINE_ENV
        layers: list[str] = limits.get("cache_layers") or []
        return RunSpec(
            run_id=row["id"],
            run_dir=self.run_dir(row["id"]),
            command=(data.cache_layer_command(layers) if layers else "") + row["command"],
            workdir=".",  # the snapshot's root is the folder that was asked for
            image=row["image"],
            env={**shared, **env} if pyenv is None else {**shared, **pyenv.env(), **env},
            ro_paths=[] if pyenv is None else pyenv.ro_paths,
            gpus=limits.get("gpus") or [],
            cpus=limits.get("cpus"),
            memory_bytes=limits.get("memory_bytes"),
            timeout_s=limits["timeout_s"],
            network=bool(limits.get("network")),
            own_network=bool(limits.get("own_network")),
            mounts=[
                *(Mount.model_validate(mount) for mount in list[object](limits.get("mounts") or [])),
                *(
                    []
                    if pyenv is None or pyenv.volume is None
                    else [Mount(source=pyenv.volume, dest=pyenv.root, volume=True)]
                ),
            ],
            log_cap_bytes=self.log_cap_bytes,
        )

    def _check_label(self, label: str) -> None:
        """Refuse a label no run has, naming the closest labels there are first."""
        rows = self.store.connection().execute("SELECT DISTINCT label FROM runs WHERE label IS NOT NULL")
        labels = sorted(str(row[0]) for row in rows)
        if label not in labels:
            raise LabelNotFoundError(label, labels)

    def outputs(self, run_id: str, limit: int = 200) -> list[str]:
        """Files the run wrote, workspace-relative (`runs/<id>/outputs/...`, `runs/<id>/work/...`): everything in
        outputs/, and files in work/ that are new or changed; caches (`__pycache__`, ...) left out."""
        folder = self.run_dir(run_id)
        found = [f"outputs/{rel}" for rel in output_files(folder / "outputs")]
        row = self.store.connection().execute("SELECT inputs FROM runs WHERE id = ?", (run_id,)).fetchone()
        placed = {f"work/{dest}" for dest in json.loads(row["inputs"])} if row and row["inputs"] else set[str]()
        found += [rel for rel in changed_files(folder / "code", folder / "work") if rel not in placed]
        return [f"runs/{run_id}/{rel}" for rel in found[:limit]]

    def _event(self, run_id: str, kind: str, data: dict[str, Any]) -> None:
        self.store.connection().execute(
            "INSERT INTO run_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)",
            (run_id, self.clock(), kind, json.dumps(data)),
        )
