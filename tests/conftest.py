"""Shared fixtures: settings pointing at a temporary workspace, in-process clients, component markers.

A test marked `docker`, `bwrap`, `slurm`, `latex`, `node` or `slirp` is skipped when that component is missing on a
developer's machine; under `CI=true` the same skip is a failure, because CI installs every component. A test that
finds out for itself that something it needs is missing (a cgroup, the shared fixtures) calls `skip_or_fail`, which
does the same.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from mcp import Client

from research_mcp.config import Settings

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
"""The recorded traffic and real papers, in the ``shared`` folder beside the repository checkout."""
TS_CLIENT_DIR = REPO / "tests" / "integration" / "ts_client"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FUZZ_SEED = int(os.environ.get("RESEARCH_MCP_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
"""The seed of the tool fuzz (tests/integration/test_fuzz.py), new each run; printed in the header and at the end."""


def _fuzz_seed_line() -> str:
    return f"tool fuzz seed: {FUZZ_SEED} (replay with RESEARCH_MCP_FUZZ_SEED={FUZZ_SEED})"


def pytest_report_header() -> str:
    return _fuzz_seed_line()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The seed again at the end: `-q`, as `make test` runs, leaves the header out."""
    terminalreporter.write_line(_fuzz_seed_line())


def _runs(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def component_missing(name: str) -> str | None:
    """Why a component cannot be used here, or None when it can."""
    if name == "node":
        if shutil.which("node") is None:
            return "node is not installed"
        if not (TS_CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
            return f"run `npm ci --prefix {TS_CLIENT_DIR}` (the Makefile's `make node` does it)"
        return None
    if name == "docker":
        return None if _runs(["docker", "info"]) else "no Docker engine answers `docker info`"
    if name == "bwrap":
        ok = _runs(
            ["bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
             "--symlink", "usr/lib64", "/lib64", "--dev", "/dev", "/usr/bin/true"]
        )  # fmt: skip
        return None if ok else "bubblewrap cannot start a namespace"
    if name == "latex":
        return None if shutil.which("latexmk") and shutil.which("pdflatex") else "TeX Live/latexmk are not installed"
    if name == "slurm":
        return None if _runs(["scontrol", "ping"]) else "no Slurm controller answers `scontrol ping`"
    if name == "slirp":
        return None if shutil.which("slirp4netns") else "slirp4netns is not installed (apt-get install -y slirp4netns)"
    return None


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the calling test for want of `reason` on a developer's machine; fail it under CI=true, where
    everything the tests need is installed, so that no test there passes by not running."""
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name in ("docker", "bwrap", "slurm", "latex", "node", "slirp"):
        if item.get_closest_marker(name) is None:
            continue
        reason = component_missing(name)
        if reason is not None:
            skip_or_fail(f"{name}: {reason}")


def open_for_sandbox(tmp_path: Path, folder: Path) -> None:
    """As root, sandboxes (runs, compiles) drop to an unprivileged uid, which must be able to enter the folder:
    pytest's temporary folders are 0700, so the folder and its parents below pytest's base are opened for search
    (o+x), as a user's own folders would need to be."""
    if os.geteuid() == 0:
        for parent in [folder, *folder.parents]:
            if str(parent).startswith(str(tmp_path.parents[1])):
                parent.chmod(parent.stat().st_mode | 0o011)


def fixtures_dir(name: str) -> Path:
    """A folder of ../shared/fixtures; skipped where it is absent, except in CI where it must exist."""
    folder = FIXTURES / name
    if not folder.is_dir():
        skip_or_fail(f"{folder} is absent")
    return folder.resolve()  # ../shared may be a symlink; tools resolve workspaces, so tests compare resolved paths


@pytest.fixture
def cgroup() -> None:
    """For a test that needs a cgroup to hold a run's memory and processes (not rlimits alone)."""
    from research_mcp.sandbox.cgroups import detect

    if detect().kind == "rlimits only":
        skip_or_fail("no cgroup can hold a run's memory/pids here")


needs_cgroup = pytest.mark.usefixtures("cgroup")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads the developer's tokens or settings, or writes to their data folder."""
    for key in list(os.environ):
        if key.startswith("RESEARCH_MCP_") or key in ("GITHUB_TOKEN", "S2_API_KEY"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RESEARCH_MCP_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    yield


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def settings(workspace: Path) -> Settings:
    return Settings(workspace=workspace, probe_timeout_s=3)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    from research_mcp.server import build_server

    async with Client(build_server(settings), raise_exceptions=True) as c:
        yield c
