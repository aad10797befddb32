"""A cgroup per run: memory (swap included where possible), pids and CPU limits, OOM and peak memory, kill-all.

Version 2 is used where the unified hierarchy is mounted and the controllers can be had: under the root cgroup
when we may write there (root), else under our own cgroup (a delegated `systemd-run --scope -p Delegate=yes`).
Version 1 (separate memory/pids/cpu mounts, as on the machines VERIFIED.md section 7 describes) is used as root.
Runs live at `<controller root>/research-mcp/run-<supervisor pid>-<random>`: the supervisor makes its run's
cgroup before it knows the run id, and its supervisor.json names the folders. Where neither is possible,
`fallback_rlimits` gives the rlimits a supervisor can set instead, which are much weaker (see `detect`).

A run's first process joins its cgroup before it execs (`RunCgroup.join`), so nothing it starts can escape the
accounting; `kill_all` freezes the group where it can and SIGKILLs every process until none is left, daemonised
grandchildren included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

__all__ = [
    "PARENT",
    "CgroupStats",
    "Limits",
    "Mechanism",
    "RunCgroup",
    "detect",
    "fallback_rlimits",
    "sweep_stale",
]

PARENT = "research-mcp"
_ROOT = Path("/sys/fs/cgroup")
_SELF = Path("/proc/self/cgroup")
_V1_CONTROLLERS = ("memory", "pids", "cpu")
_V2_CONTROLLERS = ("memory", "pids", "cpu")
_CPU_PERIOD_US = 100_000
_LOOK_EVERY_S = 0.0005
"""How often `kill_all` looks whether the group froze or emptied (each look reads a few small files)."""
_SETTLE_S = 0.05
"""How long `kill_all` waits for killed processes to be gone before it kills again."""
_SUPERVISED = re.compile(r"run-(\d+)-[0-9a-f]+")
"""The name a supervisor gives its run's cgroup: its own pid, then a random part."""
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

Kind = Literal["cgroup v2", "cgroup v1", "rlimits only"]


@dataclass(frozen=True, slots=True)
class Mechanism:
    """What holds a run's resources on this machine, for lab_info and the README."""

    kind: Kind
    detail: str
    parent: Path | None = None
    """v2: the folder run cgroups go into; v1: the memory controller's `research-mcp` folder."""


@dataclass(frozen=True, slots=True)
class Limits:
    memory_bytes: int | None = None
    pids: int | None = None
    cpus: float | None = None


@dataclass(frozen=True, slots=True)
class CgroupStats:
    peak_memory_bytes: int | None
    oom_kills: int
    memory_bytes: int | None


_RLIMITS_DETAIL = (
    "rlimits only: RLIMIT_AS caps address space, not memory (RSS), and breaks programs that reserve large "
    "virtual areas (CUDA, JVMs); RLIMIT_NPROC counts every process of the sandbox uid, so it is only set when "
    "runs have a uid of their own and is shared by concurrent runs; there is no CPU-share limit, and a "
    "timeout kill reaches only the sandbox's pid namespace. {why}"
)


def detect(root: Path = _ROOT, self_cgroup: Path = _SELF, euid: int | None = None) -> Mechanism:
    """Which mechanism can hold a run's memory, pids and CPU here, with a one-line detail."""
    euid = os.geteuid() if euid is None else euid
    if (root / "cgroup.controllers").is_file():
        return _detect_v2(root, self_cgroup, euid)
    mounted = [c for c in _V1_CONTROLLERS if (root / c / "cgroup.procs").is_file()]
    if not mounted:
        return Mechanism("rlimits only", _RLIMITS_DETAIL.format(why=f"No cgroup controllers under {root}."))
    writable = [c for c in mounted if os.access(root / c, os.W_OK)]
    if len(writable) < len(_V1_CONTROLLERS) or euid != 0:
        why = f"cgroup v1 {', '.join(mounted)} mounted but only {', '.join(writable) or 'none'} writable: run as root."
        return Mechanism("rlimits only", _RLIMITS_DETAIL.format(why=why))
    swap = "memory+swap" if (root / "memory" / "memory.memsw.limit_in_bytes").exists() else "memory (swap not"
    swap += "" if swap == "memory+swap" else " limited: boot with swapaccount=1)"
    detail = f"cgroup v1 at {root}/{{{','.join(_V1_CONTROLLERS)}}}/{PARENT}: {swap}, pids, cpu quota"
    return Mechanism("cgroup v1", detail, root / "memory" / PARENT)


def _detect_v2(root: Path, self_cgroup: Path, euid: int) -> Mechanism:
    wanted = set(_V2_CONTROLLERS)
    if euid == 0 and os.access(root, os.W_OK):
        available = set((root / "cgroup.controllers").read_text().split())
        if wanted <= available:
            return Mechanism("cgroup v2", f"cgroup v2 at {root / PARENT}: memory+swap, pids, cpu", root / PARENT)
    own = "/"
    with contextlib.suppress(OSError):
        own = next((ln[3:] for ln in self_cgroup.read_text().splitlines() if ln.startswith("0::")), "/")
    here = root / own.strip().lstrip("/")
    enabled = set(_read(here / "cgroup.subtree_control").split()) if here != root else set[str]()
    if wanted <= enabled and os.access(here, os.W_OK):
        return Mechanism("cgroup v2", f"cgroup v2 delegated at {here / PARENT}: memory+swap, pids, cpu", here / PARENT)
    why = (
        f"cgroup v2 at {here}: memory, pids and cpu are not enabled in its cgroup.subtree_control for us; run the "
        "server in a delegated leaf (`systemd-run --user --scope -p Delegate=yes research-mcp`, then move it into a "
        "child cgroup) or as root."
    )
    return Mechanism("rlimits only", _RLIMITS_DETAIL.format(why=why))


def sweep_stale(mechanism: Mechanism, root: Path = _ROOT) -> list[str]:
    """Remove empty run cgroups whose supervisor is gone (`run-<pid>-<random>` with no process <pid>): what a
    supervisor killed from outside before it could clean up leaves. Returns the names removed."""
    if mechanism.kind == "cgroup v2" and mechanism.parent is not None:
        folders = [mechanism.parent]
    elif mechanism.kind == "cgroup v1":
        folders = [root / controller / PARENT for controller in (*_V1_CONTROLLERS, "freezer")]
    else:
        return []
    removed: list[str] = []
    for folder in folders:
        try:
            names = [entry.name for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for name in names:
            owner = _SUPERVISED.fullmatch(name)
            if owner is None or Path(f"/proc/{owner[1]}").exists():
                continue
            with contextlib.suppress(OSError):  # not empty (or already gone): left alone
                (folder / name).rmdir()
                removed.append(name)
    return removed


def fallback_rlimits(limits: Limits, own_uid: bool) -> list[tuple[int, int]]:
    """(resource, value) pairs a supervisor sets in the child when no cgroup holds: weak, see `detect`."""
    pairs = [(resource.RLIMIT_CORE, 0)]
    if limits.memory_bytes is not None:
        pairs.append((resource.RLIMIT_AS, limits.memory_bytes))
    if limits.pids is not None and own_uid:
        pairs.append((resource.RLIMIT_NPROC, limits.pids))
    return pairs


class RunCgroup:
    """One run's cgroup: a folder per controller (v1) or one folder (v2)."""

    def __init__(self, version: Literal[1, 2], paths: dict[str, Path]) -> None:
        self.version: Literal[1, 2] = version
        self.paths = paths
        """v1: controller → folder; v2: {"unified": folder}."""

    @classmethod
    def create(cls, run_id: str, limits: Limits, mechanism: Mechanism, root: Path = _ROOT) -> RunCgroup | None:
        """Make the run's cgroup and set its limits; None when the mechanism is rlimits only."""
        if not _RUN_ID.fullmatch(run_id):
            raise ValueError(f"run id {run_id!r} cannot name a cgroup")
        if mechanism.kind == "rlimits only" or mechanism.parent is None:
            return None
        if mechanism.kind == "cgroup v2":
            parent = mechanism.parent
            if not parent.is_dir():
                with contextlib.suppress(FileExistsError):
                    parent.mkdir()
            _enable_v2(parent.parent)
            _enable_v2(parent)
            group = cls(2, {"unified": parent / run_id})
        else:
            paths: dict[str, Path] = {}
            for controller in _V1_CONTROLLERS:
                (root / controller / PARENT).mkdir(exist_ok=True)
                paths[controller] = root / controller / PARENT / run_id
            freezer = root / "freezer"
            if (freezer / "cgroup.procs").is_file() and os.access(freezer, os.W_OK):
                (freezer / PARENT).mkdir(exist_ok=True)
                paths["freezer"] = freezer / PARENT / run_id
            group = cls(1, paths)
        made: dict[str, Path] = {}
        try:
            for name, path in group.paths.items():
                path.mkdir()  # an existing one belongs to another run: never share it
                made[name] = path
            group.set_limits(limits)
        except OSError:
            cls(group.version, made).remove()
            raise
        return group

    @classmethod
    def from_data(cls, data: dict[str, object]) -> RunCgroup | None:
        """Rebuild from `to_data()` (as kept in a RunHandle); None when it holds nothing usable."""
        version, raw = data.get("version"), data.get("paths")
        if version not in (1, 2) or not isinstance(raw, dict):
            return None
        items = cast(dict[object, object], raw).items()
        paths = {str(k): Path(str(v)) for k, v in items}
        if not all(p.is_absolute() and PARENT in p.parts for p in paths.values()):
            return None
        return cls(1 if version == 1 else 2, paths)

    def to_data(self) -> dict[str, object]:
        return {"version": self.version, "paths": {k: str(v) for k, v in self.paths.items()}}

    def join(self, pid: int = 0) -> None:
        """Move `pid` (0: the calling process) into the run's cgroup; call in a child before it execs."""
        text = str(pid or os.getpid())
        for path in self.paths.values():
            (path / "cgroup.procs").write_text(text)

    def pids(self) -> set[int]:
        """Live (non-zombie) processes in the cgroup."""
        found: set[int] = set()
        for path in self.paths.values():
            for line in _read(path / "cgroup.procs").split():
                if line.isdigit() and not _is_zombie(int(line)):
                    found.add(int(line))
        return found

    def kill_all(self, timeout_s: float = 10.0) -> bool:
        """SIGKILL every process in the cgroup until none is left; True when it is empty."""
        deadline = time.monotonic() + timeout_s
        kill_file = self.paths.get("unified", Path("/nonexistent")) / "cgroup.kill"
        while True:
            if not self.pids():
                return True  # nothing left that could fork: no need to freeze (which polls until frozen)
            frozen = self._freeze(True)
            if kill_file.is_file():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if frozen:
                self._freeze(False)
            settle = time.monotonic() + _SETTLE_S  # a killed process is gone in well under a millisecond
            while time.monotonic() < settle:
                if not self.pids():
                    return True
                time.sleep(_LOOK_EVERY_S)
            if time.monotonic() > deadline:
                return False

    def stats(self) -> CgroupStats:
        if self.version == 2:
            path = self.paths["unified"]
            events = _keyed(_read(path / "memory.events"))
            return CgroupStats(
                _int(_read(path / "memory.peak")), events.get("oom_kill", 0), _int(_read(path / "memory.current"))
            )
        memory = self.paths.get("memory")
        if memory is None:
            return CgroupStats(None, 0, None)
        oom = _keyed(_read(memory / "memory.oom_control")).get("oom_kill", 0)
        return CgroupStats(
            _int(_read(memory / "memory.max_usage_in_bytes")), oom, _int(_read(memory / "memory.usage_in_bytes"))
        )

    def remove(self) -> None:
        """Remove the run's cgroup folders (they must be empty of processes; call `kill_all` first)."""
        for path in self.paths.values():
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break
                    time.sleep(0.02)

    def set_limits(self, limits: Limits) -> None:
        """Set the limits given (None leaves one as it is); a v1 memory limit below what the group already uses
        fails with EBUSY."""
        if self.version == 2:
            path = self.paths["unified"]
            if limits.memory_bytes is not None:
                (path / "memory.max").write_text(str(limits.memory_bytes))
                with contextlib.suppress(FileNotFoundError):
                    (path / "memory.swap.max").write_text("0")
            if limits.pids is not None:
                (path / "pids.max").write_text(str(limits.pids))
            if limits.cpus is not None:
                (path / "cpu.max").write_text(f"{_quota_us(limits.cpus)} {_CPU_PERIOD_US}")
            return
        memory, pids, cpu = self.paths["memory"], self.paths["pids"], self.paths["cpu"]
        if limits.memory_bytes is not None:
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            if (memory.parent.parent / "memory.memsw.limit_in_bytes").exists():  # swap accounting is on
                (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
        if limits.pids is not None:
            (pids / "pids.max").write_text(str(limits.pids))
        if limits.cpus is not None:
            (cpu / "cpu.cfs_period_us").write_text(str(_CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(_quota_us(limits.cpus)))

    def _freeze(self, frozen: bool) -> bool:
        if self.version == 2:
            target = self.paths["unified"] / "cgroup.freeze"
            value, state_file, want = ("1" if frozen else "0"), target, ("1" if frozen else "0")
        elif "freezer" in self.paths:
            target = self.paths["freezer"] / "freezer.state"
            value, state_file, want = ("FROZEN" if frozen else "THAWED"), target, ("FROZEN" if frozen else "THAWED")
        else:
            return False
        try:
            target.write_text(value)
        except OSError:
            return False
        deadline = time.monotonic() + 1.0
        while frozen and _read(state_file).strip() != want and time.monotonic() < deadline:
            time.sleep(_LOOK_EVERY_S)
        return True


def _enable_v2(folder: Path) -> None:
    control = folder / "cgroup.subtree_control"
    enabled = set(_read(control).split())
    missing = [c for c in _V2_CONTROLLERS if c not in enabled]
    if missing:
        control.write_text(" ".join(f"+{c}" for c in missing))


def _quota_us(cpus: float) -> int:
    return max(1000, round(cpus * _CPU_PERIOD_US))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _keyed(text: str) -> dict[str, int]:
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] in ("Z", "X")
