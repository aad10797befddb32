"""What a local run's supervisor works from: the spec it reads without pydantic, the bwrap sandbox built from it,
and the capped log it writes. Split from `supervisor.py`, which runs the process; standard library and
pydantic-free modules only (the supervisor is forked per run and must stay light)."""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from research_mcp.sandbox._layout import LOG_CAP_MARKER, SANDBOX_OUTPUTS, SANDBOX_WORK
from research_mcp.sandbox.bwrap import Bind, Sandbox

__all__ = [
    "SLIRP_DNS",
    "TAIL_WINDOW_BYTES",
    "CappedLog",
    "UNSANDBOXED_NOTICE",
    "Spec",
    "build_sandbox",
    "gpu_devices",
    "proc_starttime",
    "unsandboxed_command",
    "unsandboxed_env",
    "write_json_atomic",
]

TAIL_WINDOW_BYTES = 1 << 20
SLIRP_DNS = "10.0.2.3"
"""The DNS forwarder slirp4netns offers inside the namespace (its default 10.0.2.0/24 network)."""


class CappedLog:
    """log.txt with a cap: the head up to `cap - tail window`, the marker once, then the last tail window.

    Until the cap, every write reaches the file at once (a reader sees each line as it comes); past it, the tail
    is rewritten in place on `flush()`, so the file always ends with the latest output and a final traceback is
    kept whole (the tail starts at a line boundary).
    """

    def __init__(self, path: Path, cap_bytes: int, tail_bytes: int = TAIL_WINDOW_BYTES) -> None:
        self.cap_bytes = cap_bytes
        self.tail_window = min(tail_bytes, cap_bytes // 2)
        self.head_limit = cap_bytes - self.tail_window
        self._file = path.open("wb")
        self._head = 0
        self._tail = bytearray()
        self._dropped = 0
        self._capped = False
        self._dirty = False

    def write(self, data: bytes) -> None:
        if not self._capped:
            room = self.head_limit - self._head
            self._file.write(data[:room])
            self._head += min(room, len(data))
            data = data[room:]
            self._capped = bool(data)
            self._file.flush()
        if data:
            self._tail += data
            over = len(self._tail) - self.tail_window
            if over > 0:
                self._dropped += over
                del self._tail[:over]
            self._dirty = True

    def flush(self) -> None:
        if self._capped and self._dirty:
            tail, dropped = bytes(self._tail), self._dropped
            newline = tail.find(b"\n", 0, 4096)
            if dropped and newline >= 0:
                tail, dropped = tail[newline + 1 :], dropped + newline + 1
            self._file.seek(self._head)
            self._file.truncate()
            self._file.write(LOG_CAP_MARKER.format(cap=self.cap_bytes, dropped=dropped).encode())
            self._file.write(tail)
            self._dirty = False
        self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()


class MountLike(Protocol):
    """A `base.Mount` or a `SpecMount`."""

    @property
    def source(self) -> str: ...
    @property
    def dest(self) -> str: ...
    @property
    def writable(self) -> bool: ...
    @property
    def volume(self) -> bool: ...


class SandboxSpec(Protocol):
    """What `build_sandbox` reads of a run's spec: a `RunSpec` or a `Spec`."""

    @property
    def run_dir(self) -> Path: ...
    @property
    def command(self) -> str: ...
    @property
    def workdir(self) -> str: ...
    @property
    def env(self) -> Mapping[str, str]: ...
    @property
    def gpus(self) -> Sequence[int]: ...
    @property
    def network(self) -> bool: ...
    @property
    def ro_paths(self) -> Sequence[str]: ...
    @property
    def mounts(self) -> Sequence[MountLike]: ...


_REQUIRED: Any = object()


def _take(data: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any = _REQUIRED) -> Any:
    if name not in data:
        if default is _REQUIRED:
            raise ValueError(f"spec.json has no {name!r}")
        return default
    value = data[name]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"spec.json: {name!r} is {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class SpecMount:
    """One of `spec.json`'s mounts (a `base.Mount`)."""

    source: str
    dest: str
    writable: bool = False
    volume: bool = False

    @classmethod
    def from_dict(cls, data: object) -> SpecMount:
        if not isinstance(data, dict):
            raise ValueError("spec.json: a mount is not an object")
        raw: dict[str, Any] = data  # pyright: ignore[reportUnknownVariableType]
        source, dest = _take(raw, "source", (str,)), _take(raw, "dest", (str,))
        if not dest.startswith("/"):
            raise ValueError(f"spec.json: mount destination {dest!r} is not absolute")
        return cls(source, dest, _take(raw, "writable", (bool,), False), _take(raw, "volume", (bool,), False))


@dataclass(frozen=True, slots=True)
class Spec:
    """The fields of `spec.json` (a `RunSpec` dumped as JSON, same names and defaults) the supervisor uses."""

    run_id: str
    run_dir: Path
    command: str
    timeout_s: float
    workdir: str = "."
    env: dict[str, str] = field(default_factory=dict[str, str])
    gpus: list[int] = field(default_factory=list[int])
    cpus: float | None = None
    memory_bytes: int | None = None
    pids: int = 512
    network: bool = False
    log_cap_bytes: int = 32 << 20
    ro_paths: list[str] = field(default_factory=list[str])
    mounts: list[SpecMount] = field(default_factory=list[SpecMount])
    unsandboxed: bool = False

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """Parse and check a `RunSpec`'s JSON; raises ValueError naming the first bad field."""
        raw: object = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("spec.json is not a JSON object")
        data: dict[str, Any] = raw  # pyright: ignore[reportUnknownVariableType]
        none, num = type(None), (int, float)
        env = _take(data, "env", (dict,), {})
        gpus = _take(data, "gpus", (list,), [])
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise ValueError("spec.json: env must map names to strings")
        if not all(isinstance(g, int) and not isinstance(g, bool) for g in gpus):
            raise ValueError("spec.json: gpus must be integers")
        cpus = _take(data, "cpus", (*num, none), None)
        ro_paths = _take(data, "ro_paths", (list,), [])
        if not all(isinstance(p, str) and p.startswith("/") for p in ro_paths):
            raise ValueError("spec.json: ro_paths must be absolute paths")
        return cls(
            run_id=_take(data, "run_id", (str,)),
            run_dir=Path(_take(data, "run_dir", (str,))),
            command=_take(data, "command", (str,)),
            timeout_s=float(_take(data, "timeout_s", num)),
            workdir=_take(data, "workdir", (str,), "."),
            env=dict(env),
            gpus=list(gpus),
            cpus=None if cpus is None else float(cpus),
            memory_bytes=_take(data, "memory_bytes", (int, none), None),
            pids=_take(data, "pids", (int,), 512),
            network=_take(data, "network", (bool,), False),
            log_cap_bytes=_take(data, "log_cap_bytes", (int,), 32 << 20),
            ro_paths=list(ro_paths),
            mounts=[SpecMount.from_dict(m) for m in _take(data, "mounts", (list,), [])],
            unsandboxed=_take(data, "unsandboxed", (bool,), False),
        )


def gpu_devices(gpus: Sequence[int]) -> list[str]:
    """Device nodes a run with these GPU indices needs (they may not exist: check before starting)."""
    if not gpus:
        return []
    return ["/dev/nvidiactl", "/dev/nvidia-uvm", *(f"/dev/nvidia{i}" for i in gpus)]


def build_sandbox(
    spec: SandboxSpec,
    user: tuple[int, int] | None,
    data: dict[str, int] | None = None,
    status_fd: int | None = None,
    tools: tuple[str, str] = ("bwrap", "setpriv"),
    block_fd: int | None = None,
) -> Sandbox:
    """The bwrap sandbox of a run (raises ValueError for a spec it cannot express)."""
    cwd = posixpath.normpath(posixpath.join(SANDBOX_WORK, spec.workdir))
    if spec.workdir.startswith("/") or not (cwd == SANDBOX_WORK or cwd.startswith(SANDBOX_WORK + "/")):
        raise ValueError(f"workdir {spec.workdir!r} must be a folder inside the working tree")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **spec.env,
        "RESEARCH_OUT": SANDBOX_OUTPUTS,
    }
    if spec.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.gpus)
    run_dir = spec.run_dir
    binds = [
        Bind(str(run_dir / "work"), SANDBOX_WORK, writable=True),
        Bind(str(run_dir / "outputs"), SANDBOX_OUTPUTS, writable=True),
        *(Bind(dev, dev, device=True, optional=dev.endswith("-uvm")) for dev in gpu_devices(spec.gpus)),
        *(Bind(path, path) for path in spec.ro_paths),
    ]
    for mount in spec.mounts:
        if mount.volume:
            raise ValueError(f"{mount.source!r} is a docker volume, which only the docker backend can mount")
        binds.append(Bind(mount.source, mount.dest, writable=mount.writable))
    command = ["/bin/sh", "-c", spec.command]
    return Sandbox(
        command,
        binds,
        env,
        cwd,
        False,  # never the host's network: network=True gets its own user-mode one (see supervisor.py)
        data or {},
        status_fd=status_fd,
        block_fd=block_fd,
        user=user,
        bwrap=tools[0],
        setpriv=tools[1],
    )


UNSANDBOXED_NOTICE = (
    "[research-mcp] RESEARCH_MCP_ALLOW_UNSANDBOXED=1 and bubblewrap is missing: this run is NOT sandboxed. It sees "
    "the host's files, network and processes; only its cgroup limits and its user hold.\n"
)


def unsandboxed_command(spec: Spec, user: tuple[int, int] | None, setpriv: str = "setpriv") -> tuple[list[str], str]:
    """argv and working folder of a run started without bubblewrap (the host's paths, not /work and /outputs)."""
    work = spec.run_dir / "work"
    cwd = posixpath.normpath(posixpath.join(str(work), spec.workdir))
    if spec.workdir.startswith("/") or not (cwd == str(work) or cwd.startswith(str(work) + "/")):
        raise ValueError(f"workdir {spec.workdir!r} must be a folder inside the working tree")
    argv = ["/bin/sh", "-c", spec.command]
    if user is not None:
        argv = [setpriv, f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--", *argv]
    return argv, cwd


def unsandboxed_env(spec: Spec) -> dict[str, str]:
    """What an unsandboxed run gets of an environment: the same as a sandboxed one, with host paths."""
    scratch = str(spec.run_dir / "tmp")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"}
    env |= {"PYTHONUNBUFFERED": "1", **spec.env, "RESEARCH_OUT": str(spec.run_dir / "outputs")}
    if spec.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.gpus)
    return env


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None when the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def write_json_atomic(path: Path, payload: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(payload)
    os.replace(tmp, path)
