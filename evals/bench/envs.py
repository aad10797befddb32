"""Section 6, `python -m evals.bench --envs`: what an environment costs, per backend.

- cached: `prepare_env` for an environment already built, against a trivial tool call (`list_files` of an empty
  folder), both through one in-process MCP client session, interleaved (target: p50 at most 2x). While the cached
  calls run, the server's process counts its outgoing TCP connections (`socket.connect` to an IPv4/IPv6 address;
  the Docker engine's unix socket is not a request), and the run store counts new runs: both must stay 0.
- fresh build of one small package (`six==1.16.0`), from the call to a ready record: the domain path of
  `prepare_env` (the build run queued, waited for as the tool waits, then finalised), the environment removed after
  each round, with the uv cache warm as on any machine after its first build. Against the raw `uv venv` +
  `uv pip install` of the same package into a fresh virtualenv on the same backend (target: ours at most 1.3x):
  on docker a `docker run` of the same image with the same uv binary, cache and CA; on local the same commands on
  the host as the sandbox user, without bubblewrap, so the sandbox's own cost is counted against us. A raw
  `python3 -m venv` + `pip install` is shown beside them (local only: the image has neither pip nor venv).
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from evals.bench.measure import summary

__all__ = ["PACKAGE", "TARGETS", "measure_envs", "render_envs"]

PACKAGE = "six==1.16.0"
TARGETS = {"cached": 2.0, "fresh": 1.3}
BUILD_TIMEOUT_S = 300.0


@contextmanager
def counted_connections() -> Generator[list[Any]]:
    """Every TCP connection this process opens meanwhile (its address), through socket.connect/connect_ex."""
    seen: list[Any] = []
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(address)
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]


class EnvBench:
    """A workspace and data folder in `root`, the run manager and environments the server would build."""

    def __init__(self, root: Path, image: str) -> None:
        from research_mcp.config import Settings
        from research_mcp.server.state import AppState

        root.chmod(0o711)  # as root the sandbox uid must reach the runs and the data folder under it
        self.root = root
        workspace = root / "workspace"
        (workspace / "empty").mkdir(parents=True)
        self.settings = Settings(workspace=workspace, data_dir=root / "data", docker_image=image)
        self.image = image
        self.state = AppState(self.settings)
        self.manager = self.state.runs(self.state.resolve_workspace(None).require())
        envs = self.manager.envs
        assert envs is not None
        self.envs = envs
        self._raw = 0

    # -- ours --------------------------------------------------------------------------------------------------

    async def fresh(self, backend: str) -> float:
        """Seconds from the call to the ready record of a new environment; then it is removed (untimed)."""
        from research_mcp.sandbox.envspec import read_spec

        spec = read_spec(self.manager.ws, PACKAGE, None)
        with anyio.fail_after(BUILD_TIMEOUT_S):
            start = time.perf_counter()
            answer = await anyio.to_thread.run_sync(
                lambda: self.envs.prepare(self.manager, spec, backend=backend, python=None)
            )
            if answer.cached:
                raise RuntimeError(f"{answer.env.id} was found built: the bench needs a fresh build")
            await self.manager.wait(answer.env.build_run, BUILD_TIMEOUT_S)
            record = self.envs.load(answer.env.id)
            assert record is not None
            done = await anyio.to_thread.run_sync(self.envs.finalise, record, self.manager)
            elapsed = time.perf_counter() - start
        if done.env.state != "ready":
            raise RuntimeError(f"{backend} build of {PACKAGE} ended {done.env.state}: {done.error}")
        await anyio.to_thread.run_sync(self.envs.remove, answer.env.id, self.manager)
        return elapsed

    async def built(self, backend: str) -> str:
        """An environment of PACKAGE that stays built (for the cached calls)."""
        from research_mcp.sandbox.envspec import read_spec

        spec = read_spec(self.manager.ws, PACKAGE, None)
        answer = await anyio.to_thread.run_sync(
            lambda: self.envs.prepare(self.manager, spec, backend=backend, python=None)
        )
        await self.manager.wait(answer.env.build_run, BUILD_TIMEOUT_S)
        record = self.envs.load(answer.env.id)
        assert record is not None
        done = await anyio.to_thread.run_sync(self.envs.finalise, record, self.manager)
        if done.env.state != "ready":
            raise RuntimeError(f"{backend} build of {PACKAGE} ended {done.env.state}: {done.error}")
        return done.env.id

    # -- raw ---------------------------------------------------------------------------------------------------

    def _fresh_dir(self) -> Path:
        from research_mcp.sandbox.envs import _sandbox_owner  # pyright: ignore[reportPrivateUsage]

        self._raw += 1
        folder = self.root / "raw" / str(self._raw)
        folder.mkdir(parents=True)
        owner = _sandbox_owner()
        if owner is not None:
            for path in (folder.parent, folder):
                os.chown(path, *owner)
        return folder

    def _as_sandbox_user(self) -> list[str]:
        from research_mcp.sandbox.envs import _sandbox_owner  # pyright: ignore[reportPrivateUsage]

        owner = _sandbox_owner()
        if owner is None:
            return []
        return ["setpriv", f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups", "--"]

    def _raw_env(self, cache: str, ca: str | None) -> dict[str, str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "UV_CACHE_DIR": cache, "UV_LINK_MODE": "copy",
               "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}  # fmt: skip
        if ca is not None:
            env |= {"SSL_CERT_FILE": ca, "PIP_CERT": ca, "REQUESTS_CA_BUNDLE": ca}
        return env

    async def raw_uv(self, backend: str) -> float:
        from research_mcp.sandbox.envspec import ca_bundle, find_uv

        uv = find_uv()
        assert uv is not None
        ca = ca_bundle(self.settings.ca_bundle)
        if backend == "docker":
            script = (f"/opt/research-uv/uv venv -q -p /usr/bin/python3 /tmp/v && "
                      f"/opt/research-uv/uv pip install -q -p /tmp/v/bin/python {PACKAGE}")  # fmt: skip
            env = self._raw_env("/opt/research-uv-cache", "/opt/research-ca/ca.pem" if ca else None)
            argv = ["docker", "run", "--rm", "--network", "bridge", "--user", "65534:65534" if os.geteuid() == 0
                    else f"{os.getuid()}:{os.getgid()}", "--tmpfs", "/tmp",
                    "-v", f"{os.path.realpath(uv)}:/opt/research-uv/uv:ro",
                    "-v", f"{self.envs.cache}:/opt/research-uv-cache",
                    *(["-v", f"{os.path.realpath(ca)}:/opt/research-ca/ca.pem:ro"] if ca else []),
                    *(arg for key, value in env.items() if key not in ("PATH",) for arg in ("-e", f"{key}={value}")),
                    self.image, "sh", "-c", script]  # fmt: skip
            return await _timed(argv, None)
        target = self._fresh_dir() / "venv"
        script = f"{uv} venv -q -p /usr/bin/python3 {target} && {uv} pip install -q -p {target}/bin/python {PACKAGE}"
        env = self._raw_env(str(self.envs.cache), str(ca) if ca else None)
        return await _timed([*self._as_sandbox_user(), "/bin/sh", "-c", script], env)

    async def raw_pip(self) -> float:
        from research_mcp.sandbox.envspec import ca_bundle

        ca = ca_bundle(self.settings.ca_bundle)
        target = self._fresh_dir() / "venv"
        script = (f"/usr/bin/python3 -m venv {target} && {target}/bin/pip install -q --disable-pip-version-check "
                  f"{PACKAGE}")  # fmt: skip
        env = self._raw_env(str(self.envs.cache), str(ca) if ca else None)
        env["PIP_CACHE_DIR"] = str(self.envs.cache / "pip")
        return await _timed([*self._as_sandbox_user(), "/bin/sh", "-c", script], env)

    async def close(self) -> list[str]:
        """Remove every environment the bench left (docker volumes outlive the folder); their ids."""
        left = [record.id for record in self.envs.records()]
        for env_id in left:
            await anyio.to_thread.run_sync(self.envs.remove, env_id, self.manager)
        from research_mcp.sandbox.local import close_launchers

        await anyio.to_thread.run_sync(close_launchers)
        self.state.close()
        return left


async def _timed(argv: list[str], env: dict[str, str] | None) -> float:
    with anyio.fail_after(BUILD_TIMEOUT_S):
        start = time.perf_counter()
        done = await anyio.run_process(argv, env=env, check=False, stdin=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} ... exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return elapsed


async def _interleaved(timed: list[Callable[[], Awaitable[float]]], runs: int, warmup: int) -> list[list[float]]:
    """`warmup` untimed rounds, then `runs` timed ones; each round runs them all, its order rotated."""
    times: list[list[float]] = [[] for _ in timed]
    for i in range(warmup + runs):
        order = list(range(len(timed)))
        order = order[i % len(order) :] + order[: i % len(order)]
        for k in order:
            elapsed = await timed[k]()
            if i >= warmup:
                times[k].append(elapsed)
    return times


@asynccontextmanager
async def _session(bench: EnvBench) -> AsyncGenerator[Any]:
    from mcp import Client

    from research_mcp.server import build_server

    async with Client(build_server(bench.settings)) as client:
        yield client


async def _cached(bench: EnvBench, backend: str, calls: int, warmup: int) -> dict[str, Any]:
    env_id = await bench.built(backend)
    before = bench.manager.list(None, None, None, 1, 0)[1]
    async with _session(bench) as client:

        async def trivial() -> float:
            start = time.perf_counter()
            result = await client.call_tool("list_files", {"path": "empty"})
            elapsed = time.perf_counter() - start
            assert not result.is_error, result.content
            return elapsed

        async def cached() -> float:
            start = time.perf_counter()
            result = await client.call_tool("prepare_env", {"requirements": PACKAGE, "backend": backend})
            elapsed = time.perf_counter() - start
            found = result.structured_content
            assert not result.is_error and found is not None, result.content
            assert found["cached"] and found["env"]["id"] == env_id, found
            return elapsed

        with counted_connections() as connections:
            trivial_times, cached_times = await _interleaved([trivial, cached], calls, warmup)
    after = bench.manager.list(None, None, None, 1, 0)[1]
    entry: dict[str, Any] = {"trivial": summary(trivial_times), "cached": summary(cached_times)}
    entry["ratio"] = entry["cached"]["p50_ms"] / entry["trivial"]["p50_ms"]
    entry["tcp_connections"] = len(connections)
    entry["new_runs"] = after - before
    entry["target_ratio"] = TARGETS["cached"]
    entry["passed"] = entry["ratio"] <= TARGETS["cached"] and not connections and after == before
    return entry


async def measure_envs(backends: list[str], runs: int, warmup: int, calls: int, image: str) -> dict[str, Any]:
    """Each backend that can run here: the cached answer and the fresh build against raw installs."""
    from evals.bench.sandbox import available

    result: dict[str, Any] = {"package": PACKAGE, "runs": runs, "warmup": warmup, "calls": calls}
    with tempfile.TemporaryDirectory(prefix="research-mcp-bench-envs-") as tmp:
        bench = EnvBench(Path(tmp), image)
        try:
            for backend in backends:
                why = available(backend, image)
                if why is not None:
                    result[backend] = {"skipped": why}
                    continue
                entry: dict[str, Any] = {}
                timed: list[Callable[[], Awaitable[float]]] = [
                    lambda b=backend: bench.fresh(b),
                    lambda b=backend: bench.raw_uv(b),
                ]
                if backend == "local":  # the image has neither pip nor venv
                    timed.append(bench.raw_pip)
                times = await _interleaved(timed, runs, warmup)
                entry["ours"], entry["raw_uv"] = summary(times[0]), summary(times[1])
                if len(times) > 2:
                    entry["raw_pip"] = summary(times[2])
                entry["ratio"] = entry["ours"]["p50_ms"] / entry["raw_uv"]["p50_ms"]
                entry["target_ratio"] = TARGETS["fresh"]
                entry["passed"] = entry["ratio"] <= TARGETS["fresh"]
                entry["cached"] = await _cached(bench, backend, calls, warmup)
                result[backend] = entry
        finally:
            result["left"] = await bench.close()
    measured = [result[b] for b in backends if "passed" in result[b]]
    result["passed"] = all(entry["passed"] and entry["cached"]["passed"] for entry in measured)
    return result


def render_envs(result: dict[str, Any], backends: list[str]) -> str:
    lines = [
        f"6. environments of `{result['package']}` ({result['runs']} builds each after {result['warmup']} warm-up, "
        f"uv cache warm, interleaved; cached: {result['calls']} calls each in one MCP session)",
        f"   {'':46}{'median':>9}{'p90':>9}{'min':>9}",
    ]
    for backend in backends:
        entry = result[backend]
        if "skipped" in entry:
            lines.append(f"   {backend}: skipped ({entry['skipped']})")
            continue
        rows = [("raw_uv", f"{backend} raw uv venv + uv pip install"), ("ours", f"{backend} prepare_env, fresh build"),
                ("raw_pip", f"{backend} raw python3 -m venv + pip install")]  # fmt: skip
        for key, label in rows:
            if key in entry:
                s = entry[key]
                lines.append(f"   {label:46}{s['p50_ms']:9.1f}{s['p90_ms']:9.1f}{s['min_ms']:9.1f} ms")
        lines.append(
            f"   {backend + ' fresh build / raw uv (median)':46}{entry['ratio']:8.2f}x   "
            f"target <= {entry['target_ratio']:.1f}x   {'PASS' if entry['passed'] else 'FAIL'}"
        )
        cached = entry["cached"]
        for key, label in (("trivial", "trivial call (list_files, p50)"), ("cached", "prepare_env, cached (p50)")):
            s = cached[key]
            lines.append(f"   {backend + ' ' + label:46}{s['p50_ms']:9.2f}{s['p90_ms']:9.2f}{s['min_ms']:9.2f} ms")
        lines.append(
            f"   {backend + ' cached / trivial (p50)':46}{cached['ratio']:8.2f}x   target <= "
            f"{cached['target_ratio']:.1f}x, TCP connections {cached['tcp_connections']}, new runs "
            f"{cached['new_runs']}   {'PASS' if cached['passed'] else 'FAIL'}"
        )
    lines.append(f"   environments removed at the end: {len(result['left'])}")
    return "\n".join(lines)
