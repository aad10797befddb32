"""Asking for a run: a request checked, its code snapshotted into a new run folder, and its row queued.

`RunManager` (runs.py) is built on this; the pump there starts what is queued here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from research_mcp.errors import BadInputError, SandboxError
from research_mcp.sandbox._books import Books
from research_mcp.sandbox.base import Backend, Mount
from research_mcp.sandbox.inputs import InputSpec, code_hash_with, parse_inputs
from research_mcp.sandbox.models import ACTIVE, Run, RunRequest
from research_mcp.sandbox.provenance import attach_datasets, attach_inputs
from research_mcp.sandbox.pyenv import PythonEnv, container_problem
from research_mcp.sandbox.snapshot import copy_snapshot, manifest, take_snapshot


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _lay_out(folder: Path, listing: str) -> None:
    """The rest of a run folder around its snapshot: work/ (a writable copy of code/), outputs/, manifest.json."""
    shutil.copytree(folder / "code", folder / "work", symlinks=True)
    (folder / "outputs").mkdir()
    (folder / "manifest.json").write_text(listing)


def _link_or_copy(source: str, dest: str) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def _limits(
    req: RunRequest, pyenv: PythonEnv | None, mounts: Sequence[Mount], own_network: bool, caches: Any
) -> dict[str, Any]:
    return {
        "gpu_count": req.gpus,
        "gpus": [],
        "cpus": req.cpus,
        "memory_bytes": int(req.memory_gb * 2**30) if req.memory_gb else None,
        "timeout_s": req.timeout_s,
        "network": req.network,
        "env": req.env,
        "python_env": None if pyenv is None else pyenv.model_dump(),
        "mounts": [mount.model_dump() for mount in mounts],
        "own_network": own_network,
        "cache_layers": caches,
    }


class Preparer(Books, ABC):
    """Runs asked for: checked, snapshotted and recorded as queued (sync: call these in a worker thread)."""

    max_snapshot_bytes: int
    default_image: str | None
    shared_data: Path | None
    _choose: Callable[[], str]

    @abstractmethod
    def backend(self, name: str) -> Backend:
        """The backend by its name (`RunManager` has them)."""

    @abstractmethod
    def _python_env(self, name: str, backend: str) -> PythonEnv:
        """A run's Python environment by the name it gave (`RunManager` knows where they are)."""

    def prepare(
        self,
        req: RunRequest,
        *,
        kind: str = "run",
        mounts: Sequence[Mount] = (),
        own_network: bool = False,
        env_id: str | None = None,
        snapshot_of: str | None = None,
    ) -> Run:
        """Snapshot the code and record the run as queued (sync: call it in a worker thread).

        The server's own jobs say so: `kind` ('env' builds an environment, 'data' prepares a dataset), `mounts`
        they bind beyond the run folder, and `own_network` for a network the user-run setting does not govern;
        `env_id` names the environment a build makes (a run's comes from its python_env). `snapshot_of` takes the
        code snapshot of that run instead of the workspace's code now (a rerun)."""
        backend, pyenv = self._checked(req, has_code=snapshot_of is not None)
        wanted_inputs = self._wanted_inputs(req)
        run_id, folder = self._new_folder()
        try:
            if snapshot_of is None:
                snap = take_snapshot(
                    self.ws, req.workdir, req.files, folder / "code", max_bytes=self.max_snapshot_bytes
                )
            else:
                snap = copy_snapshot(self.run_dir(snapshot_of) / "code", folder / "code")
            _lay_out(folder, json.dumps(manifest(folder / "code")))
            mounts = list(mounts)
            inputs = attach_inputs(self.ws.state_dir, self.run_dir, wanted_inputs, folder, mounts)
            code_hash = code_hash_with(snap.code_hash, [(dest, found["hash"]) for dest, found in inputs.items()])
            seen, caches = attach_datasets(self.ws.state_dir, self.ws.root, self.shared_data, kind, mounts)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        limits = _limits(req, pyenv, mounts, own_network, caches)
        self._insert(
            self.store.connection(), run_id, backend, req, code_hash, limits, kind, self.clock(),
            env_id=env_id or (pyenv.env_id if pyenv else None), inputs=inputs, datasets=seen,
        )  # fmt: skip
        self._event(run_id, "queued", {"files": snap.files, "size_bytes": snap.size_bytes})
        return self.get(run_id)

    def prepare_batch(
        self,
        reqs: Sequence[RunRequest],
        *,
        sweep_id: str | None = None,
        record: Callable[[Any, str], None] | None = None,
    ) -> list[str]:
        """Record runs that share their code and every run option but their env, label, config and seed (a sweep's
        members) as queued, in their order: the code is snapshotted and hashed once and linked into each run
        folder, and every row (with what `record(conn, backend)` writes: the sweep's own) goes in one transaction.
        Sync: call it in a worker thread."""
        if not reqs:
            return []
        first = reqs[0]
        backend, pyenv = self._checked(first)
        for req in reqs[1:]:
            self._check_env(req.env)
        folders: list[tuple[str, Path]] = []
        try:
            folders.extend(self._new_folder() for _ in reqs)
            code = folders[0][1] / "code"
            snap = take_snapshot(self.ws, first.workdir, first.files, code, max_bytes=self.max_snapshot_bytes)
            listing = json.dumps(manifest(code))
            for _, folder in folders[1:]:  # code/ is never written after: its files can be shared
                shutil.copytree(code, folder / "code", symlinks=True, copy_function=_link_or_copy)
            for _, folder in folders:
                _lay_out(folder, listing)
            mounts: list[Mount] = []  # every member reads the same datasets: hashed once
            seen, caches = attach_datasets(self.ws.state_dir, self.ws.root, self.shared_data, "run", mounts)
            now = self.clock()
            queued = json.dumps({"files": snap.files, "size_bytes": snap.size_bytes, "sweep_id": sweep_id})
            with self.store.transaction() as conn:
                if record is not None:
                    record(conn, backend)
                for i, (req, (run_id, _)) in enumerate(zip(reqs, folders, strict=True)):
                    limits = _limits(req, pyenv, mounts, False, caches)
                    # a microsecond apart: the queue (ordered by created_at) starts them in the order given
                    at = now + i * 1e-6
                    self._insert(
                        conn, run_id, backend, req, snap.code_hash, limits, "run", at,
                        sweep_id=sweep_id, env_id=pyenv.env_id if pyenv else None, datasets=seen,
                    )  # fmt: skip
                    conn.execute(
                        "INSERT INTO run_events (run_id, at, kind, data) VALUES (?, ?, 'queued', ?)",
                        (run_id, at, queued),
                    )
        except BaseException:
            for _, folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return [run_id for run_id, _ in folders]

    def _wanted_inputs(self, req: RunRequest) -> list[InputSpec]:
        """The earlier runs' files a run asks for, each from a run that has ended."""
        wanted = parse_inputs(req.inputs)
        for spec in wanted:
            if (source := self.get(spec.run_id)).state in ACTIVE:
                raise BadInputError(
                    f"inputs[{spec.dest!r}]: run {spec.run_id} is still {source.state}; wait for its end "
                    "(run_status with wait_s) before reading its files."
                )
        return wanted

    def _checked(self, req: RunRequest, *, has_code: bool = False) -> tuple[str, PythonEnv | None]:
        """Refuse what cannot run (no code, a bad variable name, an unknown parent or idea, more GPUs than the
        backend has); the backend it goes to and its resolved Python environment."""
        if req.workdir is None and not req.files and not has_code:
            raise BadInputError("Give a workdir (a workspace folder) or inline files: there is no code to run.")
        self._check_env(req.env)
        if req.parent is not None:
            self.get(req.parent)
        if req.idea_id is not None:
            self._check_idea(req.idea_id)
        backend = self._choose() if req.backend == "auto" else req.backend
        pyenv = None if req.python_env is None else self._python_env(req.python_env, backend)
        if backend == "docker" and pyenv is not None and (problem := container_problem(pyenv)):
            raise SandboxError(problem)
        if req.gpus and req.gpus > (has := len(self.backend(backend).capacity().gpus)):
            raise SandboxError(
                f"The run asks for {req.gpus} GPU(s) but the {backend} backend can give {has} (see lab_info); "
                "ask for fewer, or run it where there are more (the docker backend on a GPU host)."
            )
        return backend, pyenv

    @staticmethod
    def _check_env(env: Mapping[str, str]) -> None:
        for key in env:
            if not key or "=" in key or "\x00" in key or key[0].isdigit():
                raise BadInputError(f"Environment variable name {key!r} is not valid.")

    def _new_folder(self) -> tuple[str, Path]:
        """A new run id and its folder, made (an id is 24 random bits per second: a clash takes another)."""
        (self.ws.root / "runs").mkdir(parents=True, exist_ok=True)
        while True:
            run_id = new_run_id()
            folder = self.run_dir(run_id)
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            return run_id, folder

    def _insert(
        self,
        conn: Any,
        run_id: str,
        backend: str,
        req: RunRequest,
        code_hash: str,
        limits: dict[str, Any],
        kind: str,
        now: float,
        sweep_id: str | None = None,
        env_id: str | None = None,
        inputs: dict[str, Any] | None = None,
        datasets: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO runs (id, backend, image, command, workdir, code_hash, limits, label, config, seed, parent, "
            "note, idea_id, kind, sweep_id, env_id, inputs, datasets, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
            (
                run_id, backend, req.image or (self.default_image if backend == "docker" else None), req.command,
                req.workdir or "", code_hash,
                json.dumps(limits), req.label, json.dumps(req.config) if req.config is not None else None, req.seed,
                req.parent, req.note, req.idea_id, kind, sweep_id, env_id,
                json.dumps(inputs) if inputs else None, json.dumps(datasets) if datasets else None, now,
            ),
        )  # fmt: skip

    def _check_idea(self, idea_id: str) -> None:
        """Refuse an idea id the workspace has not recorded (runs are counted towards the idea they name)."""
        row = self.store.connection().execute("SELECT 1 FROM ideas WHERE id = ?", (idea_id,)).fetchone()
        if row is None:
            raise BadInputError(
                f"No idea {idea_id!r} in this workspace. Call ideas to record it first (research_status lists "
                "the ideas there are), or leave idea_id out."
            )
