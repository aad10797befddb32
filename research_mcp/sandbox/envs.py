"""Experiment environments: Python packages installed once per specification, then bound read-only into runs.

What an environment is built from, and the key naming it, are read in envspec.py: the same key finds the same
environment, with no build and no request.

Everything lives under the user data folder, shared by every workspace:

    envs/<id>/env.json   the record: specification, state, build run, lock (the resolved versions), size
    envs/<id>/venv/      the environment itself (local backend), at the path runs see it at
    envs/uv-cache/       the installer's cache, shared by every build
    docker volume research-env-<hex>-<tag>   the environment of the docker backend, mounted at DOCKER_ROOT

A build is a run of kind "env" (run_status, run_logs and cancel_run work on it) with a network, sandboxed like any
run, that writes the environment where runs will find it (a virtualenv cannot move) and, as its last steps, the
lock (`uv pip freeze`), the size and a ready marker into its outputs. Whoever looks next (prepare_env, list_envs, a
run naming it) finalises the record from those files, also after a server restart; a build that ended without
the marker is removed, folder or volume and record, and its failure is told once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from research_mcp.errors import BadInputError, SandboxError
from research_mcp.model import NextStep, ToolModel
from research_mcp.sandbox.base import Mount
from research_mcp.sandbox.envspec import (
    EnvSpec,
    build_script,
    ca_bundle,
    env_key,
    failed_package,
    find_links,
    find_uv,
    index_env,
    torch_variant,
    wants_torch,
)
from research_mcp.sandbox.models import ACTIVE, FINISHED, RunRequest
from research_mcp.sandbox.pyenv import PythonEnv

if TYPE_CHECKING:
    from research_mcp.sandbox.runs import RunManager

__all__ = [
    "DOCKER_ROOT",
    "ENV_ID",
    "EnvAnswer",
    "EnvInfo",
    "EnvList",
    "Envs",
]

ENV_ID = re.compile(r"env-[0-9a-f]{12}")
DOCKER_ROOT = "/opt/research-env"
"""Where a docker environment's volume is mounted, in its build (writable) and in runs (read-only)."""
UV_IN_SANDBOX = "/opt/research-uv/uv"
CACHE_IN_SANDBOX = "/opt/research-uv-cache"
CA_IN_SANDBOX = "/opt/research-ca/ca.pem"
VOLUME_PREFIX = "research-env-"
LABEL_ENV = "research-mcp.env"
BUILD_TIMEOUT_S = 3600.0
IMAGE_ID_TTL_S = 30.0
"""How long an image tag's id is taken as known: an image rebuilt under the same tag keys new environments after."""
LOCK_SHOWN = 200
"""Lines of a lock an answer shows; env.json keeps all of them."""
TAIL_LINES = 12
"""The installer's last lines a failure quotes."""
_STATES = Literal["building", "ready", "failed"]


# --- records and answers --------------------------------------------------------------------------------------


class EnvRecord(ToolModel):
    """envs/<id>/env.json."""

    id: str
    key: str
    state: Literal["building", "ready"]
    backend: str
    python: str
    image: str | None = None
    installer: str
    torch: str | None = None
    requirements: list[str]
    sources: list[str]
    root: str = Field(description="Where the environment is, in builds and runs (its host folder on local).")
    volume: str | None = None
    build_run: str
    workspace: str
    created_at: float
    built_at: float | None = None
    last_used: float | None = None
    size_bytes: int | None = None
    lock: list[str] = Field(default_factory=list[str])
    used_by: list[str] = Field(default_factory=list[str], description="Workspaces whose runs used it.")


class EnvInfo(ToolModel):
    """One environment as the model sees it."""

    id: str
    state: _STATES
    backend: str
    python: str
    packages: int | None = Field(default=None, description="Installed distributions (from the lock), when built.")
    size_bytes: int | None = None
    sources: list[str]
    build_run: str = Field(description="The run that built it (run_status / run_logs / cancel_run take it).")
    created_at: float
    last_used: float | None = None


class EnvAnswer(ToolModel):
    env: EnvInfo
    cached: bool = Field(description="Answered from an environment built or building before: no new build.")
    lock: list[str] | None = Field(default=None, description="Resolved versions (name==version), when built.")
    lock_truncated: bool | None = None
    error: str | None = Field(default=None, description="Why the build failed; nothing of it is kept.")
    note: str | None = None
    next_step: NextStep | None = None


class EnvList(ToolModel):
    envs: list[EnvInfo]
    total: int
    next_offset: int | None = None
    removed: str | None = Field(
        default=None, description="The environment removed (remove=...), folder or volume and record."
    )


def _info(record: EnvRecord, state: _STATES | None = None) -> EnvInfo:
    return EnvInfo(
        id=record.id, state=state or record.state, backend=record.backend, python=record.python,
        packages=len(record.lock) if record.state == "ready" else None, size_bytes=record.size_bytes,
        sources=record.sources, build_run=record.build_run, created_at=round(record.created_at, 3),
        last_used=None if record.last_used is None else round(record.last_used, 3),
    )  # fmt: skip


# --- the store of environments ------------------------------------------------------------------------------


class Envs:
    """The environments under `root` (the user data folder's envs/), built through a workspace's run manager."""

    def __init__(
        self,
        root: Path,
        *,
        ca_setting: Path | None = None,
        host_env: dict[str, str] | None = None,
        uv: str | None = None,
        clock: Any = time.time,
    ) -> None:
        self.root = root
        self.ca_setting = ca_setting
        self.host_env = dict(os.environ) if host_env is None else host_env
        self.uv = find_uv() if uv is None else (uv or None)
        self.clock = clock
        self._image_ids: dict[str, tuple[str, float]] = {}

    # -- paths ----------------------------------------------------------------------------------------------

    def folder(self, env_id: str) -> Path:
        return self.root / env_id

    def record_path(self, env_id: str) -> Path:
        return self.folder(env_id) / "env.json"

    def _image_id(self, engine: Any, image: str) -> str:
        """The image's id, asked of the engine at most every IMAGE_ID_TTL_S (a cached answer needs no engine call)."""
        now = time.monotonic()
        found = self._image_ids.get(image)
        if found is None or now - found[1] > IMAGE_ID_TTL_S:
            found = self._image_ids[image] = (str(engine.image_id(image)), now)
        return found[0]

    def volume_name(self, env_id: str) -> str:
        """research-env-<id hex>-<data folder tag>: two users (two data folders) on one engine never share one."""
        tag = hashlib.sha256(str(self.root).encode()).hexdigest()[:6]
        return f"{VOLUME_PREFIX}{env_id.removeprefix('env-')}-{tag}"

    @property
    def cache(self) -> Path:
        return self.root / "uv-cache"

    @contextmanager
    def _locked(self, env_id: str) -> Generator[None]:
        """One process at a time decides about an environment (two prepare_env calls start one build)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f".{env_id}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self, env_id: str) -> EnvRecord | None:
        try:
            return EnvRecord.model_validate_json(self.record_path(env_id).read_text())
        except (OSError, ValueError):
            return None

    def _save(self, record: EnvRecord) -> None:
        path = self.record_path(record.id)
        tmp = path.with_name(f".env.json.{os.getpid()}.tmp")
        tmp.write_text(record.model_dump_json(indent=1))
        os.replace(tmp, path)

    # -- prepare ---------------------------------------------------------------------------------------------

    def prepare(
        self, runs: RunManager, spec: EnvSpec, *, backend: str, python: str | None, image: str | None = None
    ) -> EnvAnswer:
        """The environment for `spec` on `backend`: from its record (at once), or a new build run (queued). A slurm
        environment is built here, by a local run (a login node has the network compute nodes often lack), in
        the data folder the nodes must share; its runs bind it as local runs do."""
        if backend not in ("local", "docker", "slurm"):
            raise BadInputError(f"Environments are built for the local, docker and slurm backends, not {backend!r}.")
        if backend == "slurm":
            _slurm_can_use_venvs(runs)
        installer = "uv" if self.uv else "pip"
        if installer == "pip" and backend == "docker":
            raise SandboxError(
                "uv is not installed, and the docker image has no pip to fall back on: `pip install uv` into the "
                'server\'s environment, or prepare the environment with backend="local".'
            )
        engine = _docker_engine(runs) if backend == "docker" else None
        image = (image or runs.default_image) if backend == "docker" else None
        image_id = self._image_id(engine, image) if engine is not None and image else None
        interpreter = _interpreter(python, "docker" if backend == "docker" else "local")
        has_gpu = bool(runs.backend(backend).capacity().gpus) if wants_torch(spec) else False
        links = find_links(self.host_env)
        torch = torch_variant(wants_torch(spec), backend=backend, has_gpu=has_gpu, links=bool(links))
        key = env_key(spec, python=interpreter, backend=backend, image=image_id, installer=installer, torch=torch)
        env_id = f"env-{key[:12]}"
        with self._locked(env_id):
            record = self.load(env_id)
            if record is not None:  # built, building, or failed: told once, then gone, so the next call builds
                answer = self.finalise(record, runs)
                return answer.model_copy(update={"cached": answer.env.state != "failed", "note": spec.note})
            record = self._start_build(
                runs, env_id, key, spec, backend, interpreter, image, installer, torch, links, engine
            )
        return EnvAnswer(env=_info(record), cached=False, note=spec.note, next_step=_waiting(record))

    def _start_build(
        self, runs: RunManager, env_id: str, key: str, spec: EnvSpec, backend: str, python: str,
        image: str | None, installer: str, torch: str | None, links: list[str], engine: Any,
    ) -> EnvRecord:  # fmt: skip
        folder = self.folder(env_id)
        shutil.rmtree(folder, ignore_errors=True)  # a record that did not parse: start clean
        folder.mkdir(parents=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        user = _sandbox_owner()
        volume: str | None = None
        mounts: list[Mount] = []
        try:
            if backend in ("local", "slurm"):
                root = str(folder / "venv")
                Path(root).mkdir()
                _own(Path(root), user)
                mounts.append(Mount(source=root, dest=root, writable=True))
            else:
                root = DOCKER_ROOT
                volume = self.volume_name(env_id)
                _volume_for(engine, volume, env_id, image, user)
                mounts.append(Mount(source=volume, dest=root, writable=True, volume=True))
            _own(self.cache, user)
            env = {"UV_LINK_MODE": "copy", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
            env |= {"PIP_CACHE_DIR": f"{CACHE_IN_SANDBOX}/pip", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            env |= index_env(self.host_env, installer)
            mounts.append(Mount(source=str(self.cache), dest=CACHE_IN_SANDBOX, writable=True))
            env["UV_CACHE_DIR"] = CACHE_IN_SANDBOX
            if self.uv:
                mounts.append(Mount(source=os.path.realpath(self.uv), dest=UV_IN_SANDBOX))
                env["UV"] = UV_IN_SANDBOX
            bundle = ca_bundle(self.ca_setting)
            if bundle is not None:
                mounts.append(Mount(source=os.path.realpath(bundle), dest=CA_IN_SANDBOX))
                env |= {"SSL_CERT_FILE": CA_IN_SANDBOX, "PIP_CERT": CA_IN_SANDBOX, "REQUESTS_CA_BUNDLE": CA_IN_SANDBOX}
            mounts += [Mount(source=link, dest=link) for link in links if link.startswith("/")]
            script = build_script(installer=installer, python=python, root=root, torch=torch, links=links)
            request = RunRequest(
                command="sh build.sh",
                workdir=None,
                files={"build.sh": script, "requirements.in": "\n".join(spec.requirements) + "\n"},
                backend="docker" if backend == "docker" else "local",
                image=image,
                timeout_s=BUILD_TIMEOUT_S,
                env=env,
                network=True,
                note=f"builds environment {env_id}",
            )
            run = runs.prepare(request, kind="env", mounts=mounts, own_network=True, env_id=env_id)
        except BaseException:
            self._discard(env_id, volume, engine)
            raise
        record = EnvRecord(
            id=env_id, key=key, state="building", backend=backend, python=python, image=image, installer=installer,
            torch=torch, requirements=spec.requirements, sources=spec.sources, root=root, volume=volume,
            build_run=run.id, workspace=str(runs.ws.root), created_at=self.clock(),
        )  # fmt: skip
        self._save(record)
        return record

    # -- finalise, use, list, remove ---------------------------------------------------------------------------

    def finalise(self, record: EnvRecord, runs: RunManager | None) -> EnvAnswer:
        """The record as it is now: a building one whose build wrote its ready marker becomes ready; one whose
        build ended without it is removed (folder or volume and record) and its failure told."""
        if record.state == "ready":
            return self._answer(record)
        outputs = Path(record.workspace) / "runs" / record.build_run / "outputs"
        if (outputs / "ready").exists():
            lock = [line for line in _text(outputs / "lock.txt").splitlines() if line.strip()]
            size = _text(outputs / "size_kb").strip()
            record = record.model_copy(
                update={"state": "ready", "lock": lock, "built_at": self.clock(),
                        "size_bytes": int(size) * 1024 if size.isdigit() else None},
            )  # fmt: skip
            self._save(record)
            return self._answer(record)
        state = _run_state(record, runs)
        if state is not None and state not in FINISHED:
            return EnvAnswer(env=_info(record), cached=True, next_step=_waiting(record))
        error = self._failure(record, state)
        self._discard(record.id, record.volume, _docker_engine(runs) if record.volume and runs else None)
        return EnvAnswer(env=_info(record, "failed"), cached=False, error=error)

    def ending_build(self, env_id: str, runs: RunManager) -> str | None:
        """The build run of `env_id` when it wrote its ready marker but is not yet recorded as ended (its process or
        container is exiting: a docker volume cannot be removed until it is gone), else None."""
        record = self.load(env_id)
        if record is None or not (Path(record.workspace) / "runs" / record.build_run / "outputs" / "ready").exists():
            return None
        return record.build_run if _run_state(record, runs) in ACTIVE else None

    def _failure(self, record: EnvRecord, state: str | None) -> str:
        log = Path(record.workspace) / "runs" / record.build_run / "log.txt"
        lines = [line[:300] for line in _tail(log).splitlines() if line.strip()][-TAIL_LINES:]
        tail = "\n".join(lines)
        if state == "cancelled":
            return f"The build run {record.build_run} was cancelled; nothing of it is kept. Call prepare_env again."
        package = failed_package(tail, record.requirements)
        blamed = f" at {package}" if package else ""
        return (
            f"The environment build failed{blamed} (run {record.build_run}, {state or 'its record is gone'}); "
            f"nothing of it is kept. Fix the requirement and call prepare_env again. The installer's last lines:\n"
            f"{tail}"
        )

    def _answer(self, record: EnvRecord) -> EnvAnswer:
        more = len(record.lock) > LOCK_SHOWN
        return EnvAnswer(
            env=_info(record), cached=True, lock=record.lock[:LOCK_SHOWN] if record.state == "ready" else None,
            lock_truncated=True if more else None,
        )  # fmt: skip

    def _discard(self, env_id: str, volume: str | None, engine: Any) -> None:
        if volume is not None and engine is not None:
            engine.volume_remove(volume)
        shutil.rmtree(self.folder(env_id), ignore_errors=True)

    def for_run(self, env_id: str, backend: str, runs: RunManager) -> PythonEnv:
        """The PythonEnv a run uses for the environment `env_id`: its folder (local) or volume (docker), read-only."""
        with self._locked(env_id):
            record = self.load(env_id)
            if record is None:
                raise BadInputError(f"No environment {env_id}: call prepare_env (list_envs lists those there are).")
            answer = self.finalise(record, runs)
            if answer.env.state == "failed":
                raise BadInputError(answer.error or f"The build of {env_id} failed.")
            if answer.env.state != "ready":
                raise BadInputError(
                    f"Environment {env_id} is still building (run {record.build_run}): wait for it with "
                    "run_status, then start this run."
                )
            record = self.load(env_id) or record
            if record.backend != backend:
                raise BadInputError(
                    f"Environment {env_id} was built for the {record.backend} backend, and this run is on {backend}: "
                    f'call prepare_env with backend="{backend}" for the same requirements and use that id.'
                )
            used_by = record.used_by if str(runs.ws.root) in record.used_by else [*record.used_by, str(runs.ws.root)]
            self._save(record.model_copy(update={"last_used": self.clock(), "used_by": used_by}))
        if record.volume is not None:
            return PythonEnv(name=env_id, root=record.root, ro_paths=[], env_id=env_id, volume=record.volume)
        return PythonEnv(name=env_id, root=record.root, ro_paths=[record.root], base="/usr", env_id=env_id)

    def records(self) -> list[EnvRecord]:
        if not self.root.is_dir():
            return []
        found = [self.load(p.name) for p in self.root.iterdir() if ENV_ID.fullmatch(p.name)]
        return [r for r in found if r is not None]

    def listing(self, runs: RunManager | None, limit: int, offset: int) -> EnvList:
        infos: list[EnvInfo] = []
        for record in self.records():
            with self._locked(record.id):
                infos.append(self.finalise(record, runs).env)
        infos = [i for i in infos if i.state != "failed"]
        infos.sort(key=lambda i: (-(i.last_used or i.created_at), i.id))
        page = infos[offset : offset + limit]
        more = offset + len(page) < len(infos)
        return EnvList(envs=page, total=len(infos), next_offset=offset + len(page) if more else None)

    def remove(self, env_id: str, runs: RunManager) -> None:
        """Delete an environment, folder or volume and record; refused while a queued or running run uses it (in
        this workspace or any other whose runs used it)."""
        if not ENV_ID.fullmatch(env_id):
            raise BadInputError(f"{env_id!r} is not an environment id (env-<12 hex digits>, from list_envs).")
        with self._locked(env_id):
            record = self.load(env_id)
            if record is None:
                known = ", ".join(r.id for r in self.records()[:5]) or "none"
                raise BadInputError(f"No environment {env_id} (there are: {known}).")
            done = self.finalise(record, runs).env.state != "building"  # its build, ended or ending, is no user
            active = [
                run_id
                for workspace in dict.fromkeys([str(runs.ws.root), record.workspace, *record.used_by])
                for run_id in _active_users(env_id, Path(workspace), runs)
                if not (done and run_id == record.build_run)
            ]
            if active:
                raise BadInputError(
                    f"Environment {env_id} is in use by run(s) {', '.join(active[:5])}: wait for them to end or "
                    "cancel_run them, then remove it."
                )
            if self.load(env_id) is not None:  # a failed build was removed by finalise already
                self._discard(env_id, record.volume, _docker_engine(runs) if record.volume else None)
        (self.root / f".{env_id}.lock").unlink(missing_ok=True)


def _waiting(record: EnvRecord) -> NextStep:
    return NextStep(
        tool="run_status",
        arguments={"run_id": record.build_run, "wait_s": 50},
        why=f"Its build runs as {record.build_run}; once it ends, prepare_env again (or run_experiment with "
        f"python_env={record.id!r}).",
    )


def _slurm_can_use_venvs(runs: RunManager) -> None:
    """Refuse where Slurm runs use an image's Python, which a venv made from this machine's cannot run on."""
    backend: Any = runs.backend("slurm")
    container = backend.site.container
    if container in ("apptainer", "pyxis"):
        raise BadInputError(
            f"With RESEARCH_MCP_SLURM_CONTAINER={container} Slurm runs use the image's Python, which an environment "
            "made from this machine's cannot run on: put the packages into the image, or set the container to bwrap."
        )


def _interpreter(python: str | None, backend: str) -> str:
    """The interpreter path builds use: the sandbox's /usr/bin/python3, another /usr/bin/pythonX.Y, or a path
    under /usr (what the sandbox sees)."""
    if python is None:
        wanted = "/usr/bin/python3"
    elif re.fullmatch(r"3\.\d{1,2}", python):
        wanted = f"/usr/bin/python{python}"
    elif python.startswith("/usr/") and ".." not in python.split("/"):
        wanted = python
    else:
        raise BadInputError(f"python {python!r}: give a version such as '3.11' or a path under /usr/bin.")
    if backend == "local":
        real = os.path.realpath(wanted)
        if not os.path.isfile(real):
            raise BadInputError(f"python {wanted} does not exist here; lab_info shows the sandbox's Python.")
        return real
    return wanted


def _sandbox_owner() -> tuple[int, int] | None:
    """Whom the sandbox runs as, when that is not the server itself (root's runs are uid 65534)."""
    from research_mcp.sandbox.bwrap import NOBODY

    return (NOBODY, NOBODY) if os.geteuid() == 0 else None


def _own(path: Path, user: tuple[int, int] | None) -> None:
    if user is not None:
        os.chown(path, *user)


def _volume_for(engine: Any, volume: str, env_id: str, image: str | None, user: tuple[int, int] | None) -> None:
    """Make the docker volume and give it to the sandbox user: on this machine's disk directly, else through a
    root container (the engine is elsewhere)."""
    from research_mcp.sandbox.docker import sandbox_user

    owner = sandbox_user() if user is None else user
    mountpoint = engine.volume_create(volume, {LABEL_ENV: env_id})
    if os.geteuid() == 0 and mountpoint and os.path.isdir(mountpoint):
        os.chown(mountpoint, *owner)
        return
    code = engine.run_root(image, ["chown", f"{owner[0]}:{owner[1]}", DOCKER_ROOT],
                           {volume: {"bind": DOCKER_ROOT, "mode": "rw"}})  # fmt: skip
    if code != 0:
        raise SandboxError(f"Could not give the volume {volume} to the sandbox user (chown exited {code}).")


def _docker_engine(runs: RunManager | None) -> Any:
    if runs is None:
        return None
    backend: Any = runs.backend("docker")
    return backend.engine()


def _run_state(record: EnvRecord, runs: RunManager | None) -> str | None:
    """The build run's state: from this workspace's run manager, else read from its own workspace's store."""
    if runs is not None and Path(record.workspace) == runs.ws.root:
        row = runs.store.connection().execute("SELECT state FROM runs WHERE id = ?", (record.build_run,)).fetchone()
        return None if row is None else str(row[0])
    db = Path(record.workspace) / ".research" / "state.db"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT state FROM runs WHERE id = ?", (record.build_run,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def _active_users(env_id: str, workspace: Path, runs: RunManager) -> list[str]:
    """Queued or running runs of `workspace` that use (or build) the environment: from this workspace's store, else
    read from the other workspace's own."""
    query = f"SELECT id FROM runs WHERE env_id = ? AND state IN ({', '.join('?' * len(ACTIVE))})"
    if workspace == runs.ws.root:
        return [str(row[0]) for row in runs.store.connection().execute(query, (env_id, *ACTIVE)).fetchall()]
    db = workspace / ".research" / "state.db"
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return [f"{row[0]} (in {workspace})" for row in conn.execute(query, (env_id, *ACTIVE)).fetchall()]
    except sqlite3.Error:
        return []


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, size: int = 16 << 10) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""
