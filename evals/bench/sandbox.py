"""Section 4, `python -m evals.bench --sandbox`: the overhead of a sandboxed run, from call to final status.

What is timed, per backend, interleaved (one of ours, one raw, the order swapped every round):

- ours: the domain path of a `run_experiment(..., wait_s=60)` call, in-process: `RunManager.prepare(RunRequest(
  command="python3 -c pass", workdir=None, files={"a": ""}, backend=...))` in a worker thread, then
  `RunManager.wait` (what the tool's wait does: pump, sleep on the backend's end signal, pump) until the run's
  state is final. The manager is the one the server builds (`AppState(settings).runs`), against a fresh
  workspace in a temporary folder whose parents the sandbox uid can search.
- raw docker: `docker run --rm --network none <image> python3 -c pass` (target: ours at most 1.3x).
- raw bwrap: the argv the local backend builds for the same spec (`setpriv ... -- bwrap ...` when root, with the
  same synthetic /etc files and status pipe), run directly (target: ours at most 2x).

Every wait is under `anyio.fail_after`. Afterwards nothing may be left: supervisors of the bench's runs are waited
for (and killed if they linger), containers labelled with a run folder of the bench are removed, and both are
reported. Zombies re-parented to PID 1 are counted before and after, for information (where PID 1 reaps, 0):
raw bwrap leaves one per run (its outer process exits without waiting for its inner one), the local backend's
supervisor reaps its own.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from evals.bench.measure import summary

__all__ = ["COMMAND", "TARGETS", "SandboxBench", "available", "measure_sandbox", "render_sandbox"]

COMMAND = "python3 -c pass"
TARGETS = {"docker": 1.3, "local": 2.0}
"""Ours (median) may be at most this multiple of the raw command (median), per backend."""
RUN_TIMEOUT_S = 60.0
"""Longest one run, ours or raw, may take before the bench gives up."""
SUPERVISOR_MODULE = "research_mcp.sandbox.supervisor"

Timed = Callable[[], Awaitable[float]]


def available(backend: str, image: str) -> str | None:
    """Why `backend` cannot be measured here, or None when it can."""
    if backend == "docker":
        if shutil.which("docker") is None:
            return "the docker CLI is not installed"
        try:
            found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`docker image inspect {image}` failed: {exc}"
        return None if found.returncode == 0 else f"no engine answers or image {image} is missing"
    if backend == "local":
        if shutil.which("bwrap") is None:
            return "bubblewrap is not installed"
        return None if os.geteuid() != 0 or shutil.which("setpriv") else "setpriv is not installed"
    return f"unknown backend {backend!r}"


@dataclass
class SandboxBench:
    """A fresh workspace in `root` and the run manager the server would build for it."""

    root: Path
    image: str

    def __post_init__(self) -> None:
        from research_mcp.config import Settings
        from research_mcp.server.state import AppState

        self.root.chmod(0o711)  # mkdtemp makes it 0700; as root the sandbox uid must reach the runs under it
        workspace = self.root / "workspace"
        workspace.mkdir()
        self.settings = Settings(workspace=workspace, data_dir=self.root / "data", docker_image=self.image)
        self.state = AppState(self.settings)
        self.manager = self.state.runs(self.state.resolve_workspace(None).require())
        self.run_ids: list[str] = []
        self._raw_dirs = 0

    async def ours(self, backend: str) -> float:
        """Seconds from the call to the final state of one `python3 -c pass` run; raises unless it succeeded."""
        from research_mcp.sandbox.runs import FINISHED, RunRequest

        request = RunRequest.model_validate(
            {"command": COMMAND, "workdir": None, "files": {"a": ""}, "backend": backend}
        )
        with anyio.fail_after(RUN_TIMEOUT_S):
            start = time.perf_counter()
            run = await anyio.to_thread.run_sync(self.manager.prepare, request)
            self.run_ids.append(run.id)
            run = await self.manager.wait(run.id, RUN_TIMEOUT_S)
            elapsed = time.perf_counter() - start
        if run.state not in FINISHED:
            raise RuntimeError(f"{backend} run {run.id} did not end within {RUN_TIMEOUT_S:g} s")
        if run.state != "succeeded":
            raise RuntimeError(f"{backend} run {run.id} ended {run.state}: {run.detail}")
        return elapsed

    async def raw_docker(self) -> float:
        argv = ["docker", "run", "--rm", "--network", "none", self.image, *COMMAND.split()]
        with anyio.fail_after(RUN_TIMEOUT_S):
            start = time.perf_counter()
            await anyio.run_process(argv, stdin=subprocess.DEVNULL)
            return time.perf_counter() - start

    async def raw_bwrap(self) -> float:
        """The local backend's own argv for this command (same binds, /etc data fds, status pipe), run directly."""
        from research_mcp.sandbox.base import RunSpec
        from research_mcp.sandbox.bwrap import etc_identity_files, sandbox_user
        from research_mcp.sandbox.supervisor import build_sandbox

        self._raw_dirs += 1
        run_dir = self.root / "raw" / str(self._raw_dirs)
        for sub in ("work", "outputs"):
            (run_dir / sub).mkdir(parents=True)
        spec = RunSpec(run_id="raw", run_dir=run_dir, command=COMMAND, timeout_s=RUN_TIMEOUT_S)
        user = sandbox_user()
        uid, gid = user or (os.getuid(), os.getgid())
        fds: dict[str, int] = {}
        for dest, content in etc_identity_files(uid, gid).items():
            fds[dest] = os.memfd_create("etc", 0)
            os.write(fds[dest], content)
            os.lseek(fds[dest], 0, os.SEEK_SET)
        status_r, status_w = os.pipe()
        tools = (shutil.which("bwrap") or "bwrap", shutil.which("setpriv") or "setpriv")
        argv = build_sandbox(spec, user, fds, status_w, tools).argv()
        try:
            with anyio.fail_after(RUN_TIMEOUT_S):
                start = time.perf_counter()
                await anyio.run_process(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                    pass_fds=(*fds.values(), status_w),
                    env={"PATH": "/usr/bin:/bin"},
                )
                return time.perf_counter() - start
        finally:
            for fd in (*fds.values(), status_w, status_r):
                os.close(fd)

    async def interleaved(self, a: Timed, b: Timed, runs: int, warmup: int) -> tuple[list[float], list[float]]:
        """`warmup` untimed pairs, then `runs` timed pairs; odd rounds run b first."""
        times_a: list[float] = []
        times_b: list[float] = []
        for i in range(warmup + runs):
            pair = [(a, times_a), (b, times_b)]
            for timed, into in pair if i % 2 == 0 else reversed(pair):
                elapsed = await timed()
                if i >= warmup:
                    into.append(elapsed)
        return times_a, times_b

    async def cleanup(self) -> dict[str, Any]:
        """Cancel what is still active, wait for the supervisors to exit, remove containers; report what was left."""
        from research_mcp.sandbox.runs import ACTIVE

        unfinished = [run_id for run_id in self.run_ids if self.manager.get(run_id).state in ACTIVE]
        with anyio.fail_after(30):
            for run_id in unfinished:
                await self.manager.cancel(run_id)
        supervisors: list[int] = []
        with anyio.move_on_after(5):
            while True:
                supervisors = _supervisors_under(self.root)
                if not supervisors:
                    break
                await anyio.sleep(0.02)
        for pid in supervisors:
            os.kill(pid, signal.SIGKILL)
        containers = await anyio.to_thread.run_sync(_remove_containers_under, self.root)
        from research_mcp.sandbox.local import close_launchers

        await anyio.to_thread.run_sync(close_launchers)  # the local backend's launcher; it would end at exit
        self.state.close()
        return {"cancelled": unfinished, "supervisors_killed": supervisors, "containers_removed": containers}


def _supervisors_under(root: Path) -> list[int]:
    """Live supervisor processes whose run folder is under `root`."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] == "Z":
            continue
        if SUPERVISOR_MODULE.encode() in argv and any(arg.startswith(str(root).encode()) for arg in argv):
            found.append(int(entry.name))
    return found


def _remove_containers_under(root: Path) -> list[str]:
    """Remove every container labelled as a run whose run folder is under `root`; their ids."""
    if shutil.which("docker") is None:
        return []
    listed = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            "label=research-mcp.run",
            "--format",
            '{{.ID}} {{.Label "research-mcp.run-dir"}}',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    ids = [line.split()[0] for line in listed.stdout.splitlines() if f" {root}/" in line]
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60, check=False)
    return ids


def orphan_zombies() -> int:
    """Zombies whose parent is PID 1 (where PID 1 does not reap, each finished orphan leaves one)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            count += fields[0] == "Z" and fields[1] == "1"
    return count


async def measure_sandbox(backends: list[str], runs: int, warmup: int, image: str) -> dict[str, Any]:
    """Ours against raw for each backend that can run here; a backend that cannot is reported as skipped."""
    result: dict[str, Any] = {"command": COMMAND, "runs": runs, "warmup": warmup}
    zombies_before = orphan_zombies()
    with tempfile.TemporaryDirectory(prefix="research-mcp-bench-sandbox-") as tmp:
        bench = SandboxBench(Path(tmp), image)
        try:
            for backend in backends:
                why = available(backend, image)
                if why is not None:
                    result[backend] = {"skipped": why}
                    continue
                raw = bench.raw_docker if backend == "docker" else bench.raw_bwrap
                ours, theirs = await bench.interleaved(functools.partial(bench.ours, backend), raw, runs, warmup)
                entry: dict[str, Any] = {"ours": summary(ours), "raw": summary(theirs)}
                entry["raw_command"] = (
                    f"docker run --rm --network none {image} {COMMAND}"
                    if backend == "docker"
                    else ("setpriv ... -- " if os.geteuid() == 0 else "") + f"bwrap ... -- /bin/sh -c '{COMMAND}'"
                )
                entry["overhead_ms"] = entry["ours"]["p50_ms"] - entry["raw"]["p50_ms"]
                entry["ratio"] = entry["ours"]["p50_ms"] / entry["raw"]["p50_ms"]
                entry["target_ratio"] = TARGETS[backend]
                entry["passed"] = entry["ratio"] <= TARGETS[backend]
                result[backend] = entry
        finally:
            result["left"] = await bench.cleanup()
    result["orphan_zombies"] = {"before": zombies_before, "after": orphan_zombies()}
    measured = [result[b] for b in backends if "passed" in result[b]]
    result["passed"] = all(entry["passed"] for entry in measured)
    return result


def render_sandbox(result: dict[str, Any], backends: list[str]) -> str:
    lines = [
        f"4. sandboxed run of `{result['command']}`, call -> final status ({result['runs']} runs each after "
        f"{result['warmup']} warm-up, interleaved; ours waits as run_experiment's wait_s does)",
        f"   {'':44}{'median':>9}{'p90':>9}{'min':>9}",
    ]
    for backend in backends:
        entry = result[backend]
        if "skipped" in entry:
            lines.append(f"   {backend}: skipped ({entry['skipped']})")
            continue
        for key, label in (("raw", f"{backend} raw"), ("ours", f"{backend} research-mcp (prepare + wait)")):
            s = entry[key]
            lines.append(f"   {label:44}{s['p50_ms']:9.1f}{s['p90_ms']:9.1f}{s['min_ms']:9.1f} ms")
        lines.append(
            f"   {backend + ' ratio (median), overhead':44}{entry['ratio']:8.2f}x {entry['overhead_ms']:+8.1f} ms   "
            f"target <= {entry['target_ratio']:.1f}x   {'PASS' if entry['passed'] else 'FAIL'}"
        )
        lines.append(f"   {'':44}raw: {entry['raw_command']}")
    left = result["left"]
    leftovers = left["supervisors_killed"] or left["containers_removed"] or left["cancelled"]
    lines.append(
        f"   left behind: {'NONE' if not leftovers else left}; zombies re-parented to PID 1: "
        f"{result['orphan_zombies']['before']} before, {result['orphan_zombies']['after']} after "
        "(raw bwrap leaves one per run)"
    )
    return "\n".join(lines)
