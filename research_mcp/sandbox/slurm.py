"""The slurm backend: each run a batch job (several with the same resources, one job array), contained inside the
job as runs are elsewhere (`_slurm_script.py` writes the scripts), its state read from Slurm and from what the job
itself writes into the run folder (`_slurm_states.py`).

The workspace must be on the file system the cluster's nodes share: the job reads its script and writes its log,
outputs and end into `runs/<id>/`. Jobs outlive the server: a handle's ref is the job id (`123`, or `123_4` for an
array task); a restarted server asks `squeue`, then `scontrol show job` (then `sacct` where accounting is kept),
and once Slurm has forgotten the job (`MinJobAge`) it reads the job's own `end.json`. Everything here runs the
Slurm client tools (`sbatch`, `squeue`, `scontrol`, `scancel`, `sinfo`) of the machine the server runs on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from research_mcp.errors import SandboxError
from research_mcp.probe import PartStatus, part, run_probe, version_of
from research_mcp.sandbox._slurm_script import (
    END_FILE,
    JOB_PREFIX,
    STARTED_FILE,
    Site,
    array_members,
    array_script,
    batch_key,
    job_name,
    job_script,
)
from research_mcp.sandbox._slurm_states import (
    ACTIVE_STATES,
    SQUEUE_FORMAT,
    JobEnd,
    JobInfo,
    ended_status,
    parse_gres,
    parse_sacct,
    parse_scontrol,
    parse_squeue,
    status_of,
)
from research_mcp.sandbox.base import Backend, Capacity, RunHandle, RunSpec, RunStatus
from research_mcp.sandbox.bwrap import can_stage, sandbox_user, unreachable
from research_mcp.sandbox.slurm_cluster import user_name

__all__ = ["SlurmBackend", "probe"]

logger = logging.getLogger(__name__)

_CLIENT = "Slurm's client tools (sbatch, squeue, scontrol, sinfo)"
_INSTALL = (
    "Run the server on the cluster's login node, where Slurm's client tools are (or `apt-get install slurm-client`)"
)
_SNAPSHOT_S = 0.5
"""How long one `squeue` answer serves every poll: a tick polls all running runs, and Slurm is asked once."""
_DOWN_S = 10.0
"""How long a failed squeue or sinfo answers for Slurm before it is asked again."""
_T = TypeVar("_T")
_CAPACITY_S = 30.0
_FRESH_END_S = 5.0
_MAX_ARRAY = 1000


class SlurmBackend(Backend):
    """Runs as Slurm batch jobs, submitted with this machine's `sbatch`."""

    name = "slurm"

    def __init__(
        self,
        site: Site | None = None,
        *,
        max_jobs: int = 100,
        allow_unsandboxed: bool = False,
        cancel_timeout_s: float = 60.0,
        command_timeout_s: float = 30.0,
    ) -> None:
        self.site = site or Site()
        self.max_jobs = max_jobs
        self.allow_unsandboxed = allow_unsandboxed
        self.cancel_timeout_s = cancel_timeout_s
        self.command_timeout_s = command_timeout_s
        self._lock = threading.Lock()
        self._snapshot: tuple[float, dict[str, JobInfo] | SandboxError] | None = None
        self._capacity: tuple[float, Capacity | SandboxError] | None = None
        self._accounting: bool | None = None

    # -- the protocol --------------------------------------------------------------------------------------------

    def capacity(self) -> Capacity:
        """The cluster's (its partition's) CPUs and GPUs; runs: how many jobs this server keeps in Slurm at once."""
        now = time.monotonic()
        known = _remembered(self._capacity, _CAPACITY_S)  # a failure: queued runs wait in the server's queue
        if known is not None:
            return known
        argv = ["sinfo", "-h", "-N", "-o", "%N|%c|%G|%t"]
        if self.site.partition:
            argv += ["-p", self.site.partition]
        try:
            answer = self._run(argv)
        except SandboxError as exc:
            self._capacity = (time.monotonic(), exc)
            raise
        nodes: dict[str, tuple[int, int]] = {}
        for line in answer.splitlines():
            parts = line.split("|")
            if len(parts) != 4 or parts[3].rstrip("*~#!%$@^-").lower() in ("down", "drain", "drained", "fail"):
                continue
            cpus = int(parts[1]) if parts[1].isdigit() else 0
            nodes[parts[0]] = (cpus, sum(parse_gres(parts[2]).values()))
        cpus = sum(c for c, _ in nodes.values())
        gpus = sum(g for _, g in nodes.values())
        found = Capacity(runs=self.max_jobs, cpus=max(1, cpus), gpus=list(range(gpus)), pool="slurm")
        self._capacity = (now, found)
        return found

    async def start(self, spec: RunSpec) -> RunHandle:
        [result] = await self._submit([spec])
        if isinstance(result, SandboxError):
            raise result
        return result

    async def start_batch(self, specs: Sequence[RunSpec]) -> list[RunHandle | SandboxError]:
        """One job array per group of runs with the same resources (at most 1000 each), one job per lone run."""
        return await self._submit(list(specs))

    async def poll(self, handle: RunHandle) -> RunStatus:
        import anyio

        return await anyio.to_thread.run_sync(self._poll, handle)

    async def cancel(self, handle: RunHandle) -> None:
        import anyio

        await anyio.to_thread.run_sync(self._cancel, handle)

    async def wait(self, handle: RunHandle, timeout_s: float) -> None:
        """Until the job writes its end into the run folder (looked at every 0.1 s), at the latest `timeout_s`. An
        end older than a few seconds is a requeued job's last one: only a new one counts."""
        import anyio

        end = Path(str(handle.data.get("run_dir", ""))) / END_FILE
        seen = _mtime(end)
        if seen is not None and seen > time.time() - _FRESH_END_S:
            return
        deadline = anyio.current_time() + timeout_s
        while anyio.current_time() < deadline:
            await anyio.sleep(min(0.1, max(0.0, deadline - anyio.current_time())))
            if _mtime(end) != seen:
                return

    async def adopt(self, spec: RunSpec) -> RunHandle | None:
        """The job of a run whose submission was never recorded: by the id the job wrote when it started, else by
        its name in Slurm's queue."""
        import anyio

        return await anyio.to_thread.run_sync(self._adopt, spec)

    # -- submitting ----------------------------------------------------------------------------------------------

    async def _submit(self, specs: list[RunSpec]) -> list[RunHandle | SandboxError]:
        """Group by `batch_key`; each group of several is one array script (in its first run's folder), a lone
        run its own `job.sh`; one sbatch each. Kept lean (what is true of one run of a batch is checked once, and
        the event loop waits for sbatch's answer itself, without a worker thread): a sweep of 100 costs little
        more than one sbatch."""
        results: list[RunHandle | SandboxError | None] = [None] * len(specs)
        try:
            unsandboxed = self._containment()
        except SandboxError as exc:
            return [exc] * len(specs)
        user = sandbox_user()
        groups: dict[tuple[object, ...], list[int]] = {}
        for index, spec in enumerate(specs):
            if unsandboxed:
                spec = specs[index] = spec.model_copy(update={"unsandboxed": True})
            groups.setdefault(batch_key(spec), []).append(index)
        for members in groups.values():
            for chunk in (members[i : i + _MAX_ARRAY] for i in range(0, len(members), _MAX_ARRAY)):
                chosen = [specs[i] for i in chunk]
                try:
                    self._check(chosen, user)
                    handles = await self._sbatch(chosen, user)
                except SandboxError as exc:
                    handles = [exc] * len(chunk)
                except ValueError as exc:
                    handles = [SandboxError(f"Cannot run this spec on Slurm: {exc}.")] * len(chunk)
                for i, handle in zip(chunk, handles, strict=True):
                    results[i] = handle
        return [r if r is not None else SandboxError("not submitted") for r in results]

    def _containment(self) -> bool:
        """Whether runs go unsandboxed (the user allowed it where bwrap is missing); raises what to set when the
        container setting cannot hold a run here."""
        container = self.site.container
        if container == "none" and not self.allow_unsandboxed:
            raise SandboxError(
                "slurm_container=none runs experiments with no sandbox: set RESEARCH_MCP_ALLOW_UNSANDBOXED=1 to "
                "accept that, or set RESEARCH_MCP_SLURM_CONTAINER to bwrap, apptainer or pyxis."
            )
        if container == "bwrap" and shutil.which("bwrap") is None:
            if not self.allow_unsandboxed:
                raise SandboxError(
                    "The slurm backend contains runs with bubblewrap, which is not installed here (the nodes need it "
                    "too): install it (`apt-get install -y bubblewrap`), or set RESEARCH_MCP_SLURM_CONTAINER to "
                    "apptainer or pyxis (with RESEARCH_MCP_SLURM_IMAGE), or set RESEARCH_MCP_ALLOW_UNSANDBOXED=1 to "
                    "run without a sandbox at your own risk."
                )
            return True
        return False

    def _check(self, specs: list[RunSpec], user: tuple[int, int] | None) -> None:
        """The first run of a group stands for all: their folders are laid out alike, side by side."""
        first = specs[0]
        run_dir = first.run_dir
        if not run_dir.is_absolute() or not (run_dir / "work").is_dir() or not (run_dir / "outputs").is_dir():
            raise SandboxError(f"Run folder {run_dir} is not laid out (absolute, with work/ and outputs/).")
        if len(specs) == 1 and (run_dir / STARTED_FILE).exists():
            raise SandboxError(f"Run {first.run_id} already ran in {run_dir}; start a new run instead.")
        if self.site.container == "bwrap" and user is not None and not first.unsandboxed and not can_stage():
            for path in [run_dir, *first.ro_paths, *(m.source for m in first.mounts if not m.volume)]:
                blocked = unreachable(Path(path), *user)
                if blocked is not None:
                    raise SandboxError(
                        f"The sandbox user (uid {user[0]}) cannot reach {path}: {blocked} is not searchable by "
                        f"others. Run `chmod o+x {blocked}` or use a workspace outside it."
                    )

    async def _sbatch(self, specs: list[RunSpec], user: tuple[int, int] | None) -> list[RunHandle | SandboxError]:
        """sbatch starts first and reads the script from its stdin (no file to write): the script is made while
        sbatch loads, the handles while it waits for the controller. Slurm keeps the script (`scontrol write
        batch_script <job> -`), and each job copies it into its run folder as job.sh when it starts."""
        first = specs[0]
        proc = self._start_sbatch(first.run_dir)  # it loads while the script is made
        assert proc.stdin is not None
        try:
            text = job_script(first, self.site, user) if len(specs) == 1 else array_script(specs, self.site, user)
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(text)
                proc.stdin.close()
            handles = [self._handle(spec, "", array="" if len(specs) > 1 else None) for spec in specs]
            rc, out, err = await _answer(proc, self.command_timeout_s)
        except BaseException:  # a bad spec, or the call cancelled: sbatch must not submit half a batch later
            _reap(proc)
            raise
        if rc is None:
            took = f"{self.command_timeout_s:g} s"
            raise self._away(f"sbatch did not answer within {took}; is the controller up? (`scontrol ping`)")
        if rc != 0:
            said = f"sbatch failed (exit {rc}): {(err or out).strip()[:500]}"
            raise self._away(said) if "Unable to contact slurm controller" in said else SandboxError(said)
        job_id = out.strip().split(";")[0]  # `<id>;<cluster>` on a multi-cluster site
        if not job_id.isdigit():
            raise SandboxError(f"sbatch answered {out.strip()!r}, not a job id.")
        self._snapshot = None  # the next poll asks Slurm again, so it sees the new jobs
        if len(specs) == 1:
            handles[0].ref = job_id
        else:
            for i, handle in enumerate(handles):
                handle.ref = f"{job_id}_{i}"
                handle.data["array"] = job_id
        return list[RunHandle | SandboxError](handles)

    def _away(self, said: str) -> SandboxError:
        """The controller did not answer: runs still queued here wait (`capacity` fails for `_DOWN_S`)."""
        error = SandboxError(said)
        self._capacity = (time.monotonic(), error)
        return error

    def _start_sbatch(self, cwd: Path) -> subprocess.Popen[str]:
        try:
            return subprocess.Popen(
                ["sbatch", "--parsable"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=cwd, text=True,
            )  # fmt: skip  # noqa: SIM115 - _answer or _reap reaps it
        except FileNotFoundError as exc:
            raise SandboxError(f"sbatch is not installed here: {_INSTALL}.") from exc

    def _handle(self, spec: RunSpec, ref: str, array: str | None = None) -> RunHandle:
        data: dict[str, Any] = {"run_dir": str(spec.run_dir), "gpus": len(spec.gpus)}
        if array is not None:
            data["array"] = array
        return RunHandle(backend=self.name, ref=ref, data=data)

    # -- reading ---------------------------------------------------------------------------------------------------

    def _poll(self, handle: RunHandle) -> RunStatus:
        run_dir = Path(str(handle.data.get("run_dir", "")))
        gpus = bool(handle.data.get("gpus"))
        end = _read_end(run_dir)
        started = _read_json(run_dir / STARTED_FILE)
        started_at = _float(started.get("started_at")) if started else None
        try:
            info = self._queue().get(handle.ref)
        except SandboxError:
            if end is not None:  # the job said how it ended: that holds while the controller is away
                return ended_status(end)
            raise
        if info is None:
            info = self._job(handle.ref)
        if info is not None:
            return status_of(info, end, gpus, started_at)
        if end is not None:
            return ended_status(end)
        return RunStatus(
            state="lost",
            started_at=started_at,
            detail=f"Slurm no longer knows job {handle.ref} and the job left no end record in its run folder "
            "(its node may have failed before it could write one); see slurm-*.out there.",
        )

    def _queue(self) -> dict[str, JobInfo]:
        """This user's jobs, every array task on its own line; one answer serves polls for half a second. When
        squeue fails (the controller is away: it retries for seconds first), that failure answers every poll
        for `_DOWN_S`, so a tick over many runs does not wait on each in turn."""
        with self._lock:
            now = time.monotonic()
            known = _remembered(self._snapshot, _SNAPSHOT_S)
            if known is not None:
                return known
            argv = ["squeue", "-h", "-r", "-t", "all", "-u", user_name(), "-o", SQUEUE_FORMAT]
            try:
                found = parse_squeue(self._run(argv))
            except SandboxError as exc:
                said = str(exc).rstrip(".")
                self._snapshot = (
                    time.monotonic(),
                    SandboxError(
                        f"Slurm cannot be asked now ({said}); `scontrol ping` says whether its controller is up."
                    ),
                )
                raise self._snapshot[1] from exc
            self._snapshot = (now, found)
            return found

    def _job(self, ref: str) -> JobInfo | None:
        """One job Slurm's queue did not list: `scontrol show job`, then `sacct` where accounting is kept."""
        try:
            out = subprocess.run(
                ["scontrol", "show", "job", "-o", ref], capture_output=True, text=True,
                timeout=self.command_timeout_s, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(f"scontrol failed: {exc}; is Slurm's controller up (`scontrol ping`)?") from exc
        said = out.stdout + out.stderr
        if out.returncode == 0:
            info = parse_scontrol(out.stdout)
            if info is not None:
                return info
        elif "Invalid job id" not in said and "not found" not in said:  # gone: `Job 7_1 not found` for a task
            raise SandboxError(f"scontrol show job {ref} failed: {said.strip()[:300]}")
        if not self._has_accounting():
            return None
        with contextlib.suppress(SandboxError):
            text = self._run(["sacct", "-X", "-n", "-P", "-j", ref, "-o", "JobID,State,ExitCode,JobName"])
            return parse_sacct(text, ref)
        return None

    def _has_accounting(self) -> bool:
        if self._accounting is None:
            try:
                config = self._run(["scontrol", "show", "config"])
            except SandboxError:
                return False
            line = next((ln for ln in config.splitlines() if ln.startswith("AccountingStorageType")), "")
            self._accounting = bool(line) and not line.rstrip().endswith("accounting_storage/none")
        return self._accounting

    def _adopt(self, spec: RunSpec) -> RunHandle | None:
        started = _read_json(spec.run_dir / STARTED_FILE)
        ref = str(started.get("job_id") or "") if started else ""
        if ref:
            return self._handle(spec, ref, array=ref.split("_")[0] if "_" in ref else None)
        name = job_name(spec.run_id)
        queue = self._queue()
        for info in queue.values():
            if info.name == name and "_" not in info.job_id:
                return self._handle(spec, info.job_id)
        return self._member(spec, queue)

    def _member(self, spec: RunSpec, queue: dict[str, JobInfo]) -> RunHandle | None:
        """A run submitted in a job array (named after its first run): the array of ours whose script, as Slurm
        keeps it, lists this run's folder."""
        folder = str(spec.run_dir)
        seen: set[str] = set()
        for info in queue.values():
            if "_" not in info.job_id or not info.name.startswith(JOB_PREFIX):
                continue
            array = info.job_id.split("_", 1)[0]
            if array in seen:
                continue
            seen.add(array)
            try:
                members = array_members(self._run(["scontrol", "write", "batch_script", array, "-"]))
            except SandboxError:
                continue
            if folder in members:
                return self._handle(spec, f"{array}_{members.index(folder)}", array=array)
        return None

    # -- cancelling ----------------------------------------------------------------------------------------------

    def _cancel(self, handle: RunHandle) -> None:
        """scancel, then wait until Slurm says the job ended (its processes get SIGTERM, then SIGKILL)."""
        try:
            self._run(["scancel", handle.ref], what="scancel")
        except SandboxError as exc:
            if "Invalid job id" not in str(exc) and "already completing or completed" not in str(exc):
                raise
        deadline = time.monotonic() + self.cancel_timeout_s
        info: JobInfo | None = None
        while time.monotonic() < deadline:
            self._snapshot = None
            info = self._queue().get(handle.ref) or self._job(handle.ref)
            if info is None or info.state not in ACTIVE_STATES:
                _record_cancel(Path(str(handle.data.get("run_dir", ""))))
                return
            time.sleep(0.1)
        logger.warning(
            "job %s still %s %g s after scancel", handle.ref, info.state if info else "?", self.cancel_timeout_s
        )

    # -- running the client tools --------------------------------------------------------------------------------

    def _run(self, argv: list[str], cwd: Path | None = None, what: str | None = None) -> str:
        try:
            out = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.command_timeout_s, check=False,
                cwd=cwd, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise SandboxError(f"{argv[0]} is not installed here: {_INSTALL}.") from exc
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(
                f"{argv[0]} did not answer within {self.command_timeout_s:g} s; is the controller up (`scontrol ping`)?"
            ) from exc
        if out.returncode != 0:
            message = (out.stderr or out.stdout).strip()[:500]
            raise SandboxError(f"{what or argv[0]} failed (exit {out.returncode}): {message}")
        return out.stdout


async def _answer(proc: subprocess.Popen[str], timeout_s: float) -> tuple[int | None, str, str]:
    """The exit code, stdout and stderr of a process whose stdin is closed; rc None (and killed) when it has not
    ended within `timeout_s`. The event loop waits for its exit (a pidfd: one wake-up, no worker thread), then its
    pipes are read: sbatch writes a line or a few, never the 64 KiB that would hold it up."""
    import anyio

    with anyio.move_on_after(timeout_s) as waited:
        await _exited(proc)
    if waited.cancelled_caught:
        _reap(proc)
        return None, "", ""
    said: list[str] = []
    for pipe in (proc.stdout, proc.stderr):
        assert pipe is not None
        os.set_blocking(pipe.fileno(), False)
        chunks: list[bytes] = []
        with contextlib.suppress(BlockingIOError):
            while data := os.read(pipe.fileno(), 65536):
                chunks.append(data)
        said.append(b"".join(chunks).decode(errors="replace"))
    _reap(proc)
    return proc.returncode, said[0], said[1]


async def _exited(proc: subprocess.Popen[str]) -> None:
    """Until `proc` has exited (its pipes closing comes a moment before): through a pidfd where Linux has them."""
    import anyio

    if proc.poll() is not None:
        return
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfds (Linux before 5.3)
        await anyio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)
        return
    try:
        await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    proc.wait()


def _reap(proc: subprocess.Popen[str]) -> None:
    """Kill `proc` if it still runs, wait for it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _remembered(entry: tuple[float, _T | SandboxError] | None, fresh_s: float) -> _T | None:
    """A cached answer while it is fresh (`fresh_s`), else None; a cached failure is raised for `_DOWN_S`, so the
    client tools' seconds of retries are not waited out again at every tick."""
    if entry is None:
        return None
    took, known = entry
    age = time.monotonic() - took
    if isinstance(known, SandboxError):
        if age < _DOWN_S:
            raise known
        return None
    return known if age < fresh_s else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: object = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None  # pyright: ignore[reportUnknownVariableType]


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _record_cancel(run_dir: Path) -> None:
    """The end of a job cancelled before its script could write one (it was pending): Slurm forgets it soon."""
    if not run_dir.is_dir() or (run_dir / END_FILE).exists():
        return
    now = time.time()
    record = {"exit_code": None, "failure": "cancelled", "started_at": now, "ended_at": now, "timeout_s": None}
    tmp = run_dir / f".{END_FILE}.server"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, run_dir / END_FILE)


def _read_end(run_dir: Path) -> JobEnd | None:
    data = _read_json(run_dir / END_FILE)
    if data is None:
        return None
    code, started, ended = data.get("exit_code"), _float(data.get("started_at")), _float(data.get("ended_at"))
    failure = data.get("failure")
    if not isinstance(code, int | None) or started is None or ended is None:
        return None
    if failure not in (None, "timeout", "oom", "cancelled", "error"):
        failure = "error"
    return JobEnd(code, failure, started, ended, _float(data.get("timeout_s")))


async def probe(partition: str | None = None) -> PartStatus:
    """The controller answers and the partition has nodes."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return part("slurm", "missing", f"{_CLIENT} are not on PATH", _INSTALL)
    version = version_of((await run_probe(["sinfo", "--version"])).line)
    ping = await run_probe(["scontrol", "ping"])
    if ping.rc != 0 or "UP" not in ping.stdout:
        detail = f"no Slurm controller answers `scontrol ping`: {ping.line}"
        return part("slurm", "unreachable", detail, "Check SLURM_CONF and that slurmctld runs", version)
    argv = ["sinfo", "-h", "-o", "%P %a %D %t"] + (["-p", partition] if partition else [])
    info = await run_probe(argv)
    if info.rc != 0 or not info.stdout.strip():
        where = f"partition {partition}" if partition else "any partition"
        return part("slurm", "error", f"sinfo shows no nodes in {where}: {info.line}", None, version)
    lines = [ln.split() for ln in info.stdout.splitlines() if ln.strip()]
    summary = ", ".join(f"{p[0]} {p[3]}" for p in lines[:4] if len(p) == 4)
    return part("slurm", "ok", f"controller up; {summary}", version=version)
