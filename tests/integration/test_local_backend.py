"""The local (bubblewrap) backend against real bwrap and, where the machine has them, real cgroups.

Each test lays out a run folder as `RunManager` would (code/, work/, outputs/) and drives `LocalBackend`
directly. Every wait is bounded; every run is cancelled in teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from research_mcp.errors import SandboxError
from research_mcp.sandbox.base import LOG_CAP_MARKER, RunHandle, RunSpec, RunStatus
from research_mcp.sandbox.cgroups import RunCgroup, detect
from research_mcp.sandbox.local import LocalBackend
from research_mcp.sandbox.supervisor import proc_starttime
from tests.conftest import needs_cgroup, open_for_sandbox

pytestmark = [pytest.mark.bwrap, pytest.mark.anyio]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """runs/ of a workspace; as root, the path is made searchable for the sandbox uid (pytest's is 0700)."""
    root = tmp_path / "ws" / "runs"
    root.mkdir(parents=True)
    open_for_sandbox(tmp_path, root)
    return root


class Runs:
    """Starts runs and remembers them, so the teardown cancels every one."""

    def __init__(self, root: Path, backend: LocalBackend) -> None:
        self.root = root
        self.backend = backend
        self.handles: list[RunHandle] = []

    def lay_out(self, files: dict[str, str] | None = None) -> Path:
        run_dir = self.root / f"t{uuid.uuid4().hex[:12]}"
        for sub in ("code", "work", "outputs"):
            (run_dir / sub).mkdir(parents=True)
        for name, text in (files or {}).items():
            (run_dir / "work" / name).write_text(text)
        return run_dir

    def spec(self, command: str, files: dict[str, str] | None = None, **limits: object) -> RunSpec:
        run_dir = self.lay_out(files)
        fields: dict[str, object] = {"timeout_s": 30, **limits}
        return RunSpec.model_validate({"run_id": run_dir.name, "run_dir": run_dir, "command": command, **fields})

    async def start(self, command: str, files: dict[str, str] | None = None, **limits: object) -> RunHandle:
        handle = await self.backend.start(self.spec(command, files, **limits))
        self.handles.append(handle)
        return handle

    async def wait(self, handle: RunHandle, timeout_s: float = 20) -> RunStatus:
        with anyio.fail_after(timeout_s):
            while True:
                status = await self.backend.poll(handle)
                if status.state != "running":
                    return status
                await anyio.sleep(0.05)

    async def run(self, command: str, files: dict[str, str] | None = None, **limits: object) -> RunStatus:
        return await self.wait(await self.start(command, files, **limits))


@pytest.fixture
async def lab(runs: Path) -> AsyncIterator[Runs]:
    lab = Runs(runs, LocalBackend())
    try:
        yield lab
    finally:
        with anyio.fail_after(30):
            for handle in lab.handles:
                await lab.backend.cancel(handle)


async def until(check: Callable[[], bool], timeout_s: float = 10) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            if check():
                return
            await anyio.sleep(0.05)


def log_of(handle: RunHandle) -> str:
    return (Path(handle.data["run_dir"]) / "log.txt").read_text(errors="replace")


def sleeper() -> str:
    """A `sleep` command line no other test (or parallel test run) shares."""
    return f"sleep 1000.{uuid.uuid4().int % 10**8:08d}"


def host_processes_with(marker: str) -> list[str]:
    """Host processes whose command line starts with `marker` (bwrap's and sh's lines merely contain it)."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith(marker)]


def cgroup_is_gone(handle: RunHandle) -> bool:
    data = handle.data.get("cgroup")
    if data is None:
        return True
    group = RunCgroup.from_data(data)
    return group is None or not any(path.exists() for path in group.paths.values())


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on the host's loopback, as a database or the Docker API would be."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


async def test_a_run_prints_to_the_log_and_writes_its_outputs(lab: Runs) -> None:
    script = "import numpy, os, pathlib\nprint('mean', numpy.arange(5).mean())\n"
    script += "pathlib.Path(os.environ['RESEARCH_OUT'], 'result.json').write_text('{\"acc\": 1}')\n"
    script += "pathlib.Path('scratch.txt').write_text('in work')\n"
    handle = await lab.start("python3 train.py", {"train.py": script})
    status = await lab.wait(handle)
    run_dir = Path(handle.data["run_dir"])
    assert (status.state, status.exit_code, status.failure) == ("exited", 0, None), log_of(handle)
    assert "mean 2.0" in log_of(handle)
    assert json.loads((run_dir / "outputs" / "result.json").read_text()) == {"acc": 1}
    assert (run_dir / "work" / "scratch.txt").read_text() == "in work"
    assert status.started_at is not None and status.ended_at is not None and status.ended_at >= status.started_at
    assert cgroup_is_gone(handle)


async def test_wait_returns_when_the_run_ends_and_not_before(lab: Runs) -> None:
    sleep = sleeper()
    long = await lab.start(sleep)
    started = time.monotonic()
    await lab.backend.wait(long, 0.3)  # a run that goes on: wait lasts its timeout
    assert time.monotonic() - started >= 0.3 and (await lab.backend.poll(long)).state == "running"
    short = await lab.start("sleep 0.5")
    started = time.monotonic()
    await lab.backend.wait(short, 20)  # woken by the supervisor's exit, not at the timeout
    assert 0.5 <= time.monotonic() - started < 5
    assert (await lab.backend.poll(short)).exit_code == 0
    started = time.monotonic()
    await lab.backend.wait(short, 20)  # a run that has ended: at once
    assert time.monotonic() - started < 1


async def test_a_non_zero_exit_is_an_error_with_its_code(lab: Runs) -> None:
    status = await lab.run("echo failing >&2; exit 3")
    assert (status.exit_code, status.failure) == (3, "error")


async def test_a_sleep_past_its_timeout_is_killed_within_five_seconds(lab: Runs) -> None:
    started = time.monotonic()
    sleep = sleeper()
    handle = await lab.start(sleep, timeout_s=1)
    status = await lab.wait(handle, timeout_s=10)
    assert status.failure == "timeout" and time.monotonic() - started < 1 + 5
    assert not host_processes_with(sleep) and cgroup_is_gone(handle)


async def test_cpu_spin_past_its_timeout_is_killed_within_five_seconds(lab: Runs) -> None:
    started = time.monotonic()
    status = await lab.run("python3 -c 'while True: pass'", timeout_s=1)
    assert status.failure == "timeout" and time.monotonic() - started < 1 + 5


async def test_cancel_kills_the_run_and_its_daemonised_children(lab: Runs) -> None:
    sleep = sleeper()
    command = f"setsid {sleep} & ({sleep} &) ; nohup {sleep} >/dev/null 2>&1 & {sleep}"
    handle = await lab.start(command)
    await until(lambda: len(host_processes_with(sleep)) == 4)
    with anyio.fail_after(10):
        await lab.backend.cancel(handle)
    status = await lab.backend.poll(handle)
    assert (status.state, status.failure) == ("exited", "cancelled")
    assert not host_processes_with(sleep) and cgroup_is_gone(handle)
    with anyio.fail_after(10):
        await lab.backend.cancel(handle)  # idempotent


async def test_a_daemonised_child_does_not_outlive_a_run_that_ends(lab: Runs) -> None:
    sleep = sleeper()
    status = await lab.run(f"setsid {sleep} & echo started")
    assert status.exit_code == 0 and not host_processes_with(sleep)


@needs_cgroup
async def test_allocating_past_the_memory_limit_is_an_oom(lab: Runs) -> None:
    status = await lab.run("python3 -c 'x = bytearray(256 << 20); print(len(x))'", memory_bytes=64 << 20)
    assert status.failure == "oom", status
    assert status.peak_memory_bytes is not None and status.peak_memory_bytes <= 64 << 20


async def test_an_output_flood_is_capped_and_keeps_the_final_traceback(lab: Runs) -> None:
    script = (
        "import sys\nline = 'x' * 99 + '\\n'\nfor i in range(500_000):\n    sys.stdout.write(line)\n"
        "print('last line before the error')\ndef fail():\n    raise ValueError('the final error')\nfail()\n"
    )
    cap = 1 << 20
    handle = await lab.start("python3 flood.py", {"flood.py": script}, log_cap_bytes=cap)
    status = await lab.wait(handle, timeout_s=30)
    log = log_of(handle)
    assert status.exit_code == 1
    marker = LOG_CAP_MARKER.split("{")[0]
    assert log.count(marker) == 1
    assert len(log.encode()) <= cap + len(LOG_CAP_MARKER) + 40
    tail = log[log.index("last line before the error") :]
    assert "Traceback (most recent call last):" in tail and tail.rstrip().endswith("ValueError: the final error")


async def test_the_supervisor_outlives_the_process_that_started_the_run(lab: Runs) -> None:
    spec = lab.spec("sleep 0.5; echo finished")
    code = (
        "import anyio, sys\nfrom research_mcp.sandbox.base import RunSpec\n"
        "from research_mcp.sandbox.local import LocalBackend\n"
        "spec = RunSpec.model_validate_json(sys.stdin.read())\n"
        "print(anyio.run(LocalBackend().start, spec).model_dump_json())\n"
    )
    with anyio.fail_after(20):
        done = await anyio.run_process([sys.executable, "-c", code], input=spec.model_dump_json().encode())
    handle = RunHandle.model_validate_json(done.stdout)
    lab.handles.append(handle)
    fresh = Runs(lab.root, LocalBackend())  # a restarted server: a new backend, only the stored handle
    status = await fresh.wait(handle)
    assert status.exit_code == 0 and "finished" in log_of(handle)


async def test_a_supervisor_killed_mid_run_is_lost_and_leaves_nothing(lab: Runs) -> None:
    sleep = sleeper()
    handle = await lab.start(sleep)
    await until(lambda: bool(host_processes_with(sleep)))
    os.kill(int(handle.ref.split(":")[0]), signal.SIGKILL)
    status = await lab.wait(handle)
    assert status.state == "lost"
    await until(lambda: not host_processes_with(sleep))
    assert cgroup_is_gone(handle)


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(word) for word in out.stdout.split()]


def memory_cgroup_of(pid: int) -> Path:
    """The cgroup folder that holds `pid`'s memory (the v1 memory controller's, or the unified one)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory", path.lstrip("/"))
        if hierarchy == "0" and detect().kind == "cgroup v2":
            return Path("/sys/fs/cgroup", path.lstrip("/"))
    raise AssertionError(f"no memory cgroup for {pid}")


def launcher_of_this_process() -> int:
    """The local backend's launcher, which this test process started (its supervisors are forks of it)."""
    found: list[int] = []
    for pid in children_of(os.getpid()):  # `ps` itself is one, gone by now
        with contextlib.suppress(OSError):
            if b"research_mcp.sandbox.launcher" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    [pid] = found
    return pid


@needs_cgroup
async def test_a_spare_supervisor_waits_in_its_cgroup_and_leaves_nothing_when_the_launcher_exits() -> None:
    argv = [sys.executable, "-P", "-m", "research_mcp.sandbox.launcher", "--parent", str(os.getpid())]
    launcher = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd="/")  # noqa: ASYNC220
    assert launcher.stdin is not None
    try:
        await until(lambda: any(children_of(spare) for spare in children_of(launcher.pid)))
        [spare] = children_of(launcher.pid)
        [starter] = children_of(spare)
        cgroup = memory_cgroup_of(starter)  # the run's first process is in the run's cgroup before any run
        assert cgroup.parent.name == "research-mcp" and cgroup.name.startswith(f"run-{spare}-")
    finally:
        launcher.stdin.close()
        launcher.wait(timeout=10)
    assert not Path(f"/proc/{spare}").exists(), "the launcher reaps its spare: no zombie for PID 1"
    assert not Path(f"/proc/{starter}").exists() or proc_starttime(starter) is None
    assert not cgroup.exists()


async def test_a_run_starts_when_the_spare_supervisor_was_killed(lab: Runs) -> None:
    assert (await lab.run("true")).exit_code == 0  # the launcher is up, with a spare made after this run
    launcher = launcher_of_this_process()
    await until(lambda: bool(children_of(launcher)))
    spares = children_of(launcher)
    for spare in spares:
        os.kill(spare, signal.SIGKILL)
    await until(lambda: all(proc_starttime(spare) is None for spare in spares))  # dead, its pipes closed
    handle = await lab.start("echo started again")
    status = await lab.wait(handle)
    assert status.exit_code == 0 and "started again" in log_of(handle)


def host_mounts_at(path: str) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if line.split()[4] == path]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server drops to a uid that closed folders keep out")
async def test_a_workspace_in_a_folder_closed_to_others_runs_through_staged_binds(tmp_path: Path) -> None:
    home = tmp_path / "home"  # 0700 like /root, and not opened for the sandbox uid as the other tests' folders are
    (home / "ws" / "runs").mkdir(parents=True)
    home.chmod(0o700)
    (home / "secret.txt").write_text("not for the run")
    lab = Runs(home / "ws" / "runs", LocalBackend())
    shm = host_mounts_at("/dev/shm")
    command = "cat data.txt; echo done > $RESEARCH_OUT/r.txt; cat " + str(home / "secret.txt") + " || echo unseen"
    handle = await lab.start(command, {"data.txt": "staged hello\n"})
    try:
        status = await lab.wait(handle)
    finally:
        await lab.backend.cancel(handle)
    log = log_of(handle)
    assert status.exit_code == 0, log
    assert "staged hello" in log and "unseen" in log and "not for the run" not in log
    assert (Path(handle.data["run_dir"]) / "outputs" / "r.txt").read_text() == "done\n"
    assert host_mounts_at("/dev/shm") == shm  # the staging tmpfs lived in the run's own mount namespace


async def test_escape_attempts_are_contained(
    lab: Runs, runs: Path, listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_TEST_SECRET", "s3cr3t-value")
    state_db = runs.parent / ".research" / "state.db"
    state_db.parent.mkdir()
    state_db.write_text("runs table")
    host_tmp = Path("/tmp") / f"escape-{uuid.uuid4().hex}"
    probe = f"""
import os, socket
def attempt(name, fn):
    try:
        fn()
        print(name, "ESCAPED")
    except Exception as exc:
        print(name, "contained", type(exc).__name__)
attempt("loopback", lambda: socket.create_connection(("127.0.0.1", {listener}), timeout=2))
attempt("shadow", lambda: open("/etc/shadow").read())
attempt("state_db", lambda: open({str(state_db)!r}).read())
attempt("docker_sock", lambda: socket.socket(socket.AF_UNIX).connect("/run/docker.sock"))
attempt("write_usr", lambda: open("/usr/escape", "w"))
attempt("write_etc", lambda: open("/etc/escape", "w"))
open({str(host_tmp)!r}, "w").write("private tmp")
print("host_pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("net", os.listdir("/sys/class/net") if os.path.isdir("/sys/class/net") else "none")
print("pid1_env", open("/proc/1/environ").read())
print("uid", os.getuid())
"""
    handle = await lab.start("python3 probe.py; env", {"probe.py": probe})
    status = await lab.wait(handle)
    log = log_of(handle)
    assert status.exit_code == 0, log
    assert "ESCAPED" not in log
    for name in ("loopback", "shadow", "state_db", "docker_sock", "write_usr", "write_etc"):
        assert f"{name} contained" in log
    assert not host_tmp.exists()
    assert "s3cr3t-value" not in log and "RESEARCH_MCP_TEST_SECRET" not in log
    assert "net none" in log
    assert max(json.loads(log.split("host_pids ")[1].splitlines()[0])) < 20
    if os.geteuid() == 0:
        assert "uid 65534" in log


@needs_cgroup
async def test_a_fork_bomb_is_held_by_the_pids_limit_while_a_healthy_run_finishes(lab: Runs) -> None:
    # the run's own shell forks twice and then only waits: a fork it still had to make once the bomb filled the
    # pids limit would fail, and dash exits on that, ending the run early instead of at the timeout tested here
    bomb = await lab.start("sleep 30 & (bomb() { bomb | bomb & }; bomb) & wait", pids=64, timeout_s=4)
    healthy = await lab.run("python3 -c 'print(sum(range(10**6)))'")
    assert healthy.exit_code == 0
    status = await lab.wait(bomb, timeout_s=15)
    assert status.failure == "timeout" and cgroup_is_gone(bomb)


async def test_filling_tmp_stops_at_the_tmpfs_size(lab: Runs) -> None:
    status = await lab.run("head -c 1500M /dev/zero > /tmp/fill; echo rc=$?; du -sm /tmp", timeout_s=60)
    assert "No space left on device" in log_of(lab.handles[-1]) or status.failure == "oom"


async def test_network_is_refused_without_a_user_mode_network(lab: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which

    def which(name: str, mode: int = os.F_OK | os.X_OK, path: str | None = None) -> str | None:
        return None if name == "slirp4netns" else real(name, mode, path)

    monkeypatch.setattr(shutil, "which", which)
    with pytest.raises(SandboxError, match=r"network=True is refused.*apt-get install -y slirp4netns"):
        await lab.backend.start(lab.spec("true", network=True))


def host_address() -> str:
    """This host's address on its default route (no packet is sent), where a service bound to 0.0.0.0 answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))
        return str(probe.getsockname()[0])


@pytest.mark.slirp
async def test_network_true_reaches_out_through_slirp4netns_but_not_the_hosts_loopback(
    lab: Runs, listener: int
) -> None:
    outside = host_address()
    assert not outside.startswith("127.")
    with socket.socket() as public:  # a service on the host's own address: what "the network" reaches here
        public.bind((outside, 0))
        public.listen()
        public_port = public.getsockname()[1]
        probe = f"""
import socket
def attempt(name, host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(name, "reached")
    except OSError as exc:
        print(name, "blocked", type(exc).__name__)
attempt("public", {outside!r}, {public_port})
attempt("loopback", "127.0.0.1", {listener})
attempt("gateway_loopback", "10.0.2.2", {listener})
attempt("public_loopback_port", {outside!r}, {listener})
print(open("/etc/resolv.conf").read().strip())
"""
        status = await lab.run("python3 probe.py", {"probe.py": probe}, network=True)
    log = log_of(lab.handles[-1])
    assert status.exit_code == 0, log
    assert "public reached" in log, log
    for name in ("loopback", "gateway_loopback", "public_loopback_port"):
        assert f"{name} blocked" in log, log
    assert "nameserver 10.0.2.3" in log
    assert not host_processes_with("slirp4netns"), "the network helper ends with its run"


async def test_a_missing_gpu_is_refused_with_what_to_do(lab: Runs) -> None:
    if Path("/dev/nvidia7").exists():
        pytest.skip("this machine has a GPU 7")
    with pytest.raises(SandboxError, match="lab_info"):
        await lab.backend.start(lab.spec("true", gpus=[7]))


async def test_a_missing_workdir_is_an_error_that_points_at_the_log(lab: Runs) -> None:
    handle = await lab.start("true", workdir="no/such/folder")
    status = await lab.wait(handle)
    assert status.failure == "error" and status.detail is not None and "log.txt" in status.detail
    assert "no/such/folder" in log_of(handle)


async def test_a_workdir_outside_the_working_tree_is_refused(lab: Runs) -> None:
    with pytest.raises(SandboxError, match="inside the working tree"):
        await lab.backend.start(lab.spec("true", workdir="../outputs"))


def _no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """This server process finds no bwrap on PATH (the launcher and supervisors are other processes)."""
    real = shutil.which

    def which(name: str, mode: int = os.F_OK | os.X_OK, path: str | None = None) -> str | None:
        return None if name == "bwrap" else real(name, mode, path)

    monkeypatch.setattr(shutil, "which", which)


async def test_without_bubblewrap_a_run_is_refused_with_the_install_step(
    lab: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_bwrap(monkeypatch)
    with pytest.raises(SandboxError, match=r"apt-get install -y bubblewrap.*RESEARCH_MCP_ALLOW_UNSANDBOXED=1"):
        await lab.start("true")


async def test_allowed_unsandboxed_runs_say_so_and_keep_the_layout_limits_and_kill(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_bwrap(monkeypatch)
    lab = Runs(runs, LocalBackend(allow_unsandboxed=True))
    try:
        command = 'pwd; echo "$RESEARCH_OUT"; id -u; python3 -c "print(6 * 7)" > "$RESEARCH_OUT/answer.txt"'
        handle = await lab.start(command, {"train.py": ""})
        status = await lab.wait(handle)
        run_dir = Path(handle.data["run_dir"])
        assert (status.state, status.exit_code) == ("exited", 0), log_of(handle)
        log = log_of(handle)
        assert log.startswith("[research-mcp] RESEARCH_MCP_ALLOW_UNSANDBOXED=1") and "NOT sandboxed" in log
        assert f"{run_dir / 'work'}\n{run_dir / 'outputs'}\n" in log
        if os.geteuid() == 0:
            assert "\n65534\n" in log  # still dropped to the unprivileged user
        assert (run_dir / "outputs" / "answer.txt").read_text() == "42\n"
        marker = sleeper()
        handle = await lab.start(f"{marker} & {marker}; wait", timeout_s=1)
        status = await lab.wait(handle)
        assert status.failure == "timeout"
        await until(lambda: not host_processes_with(marker))
    finally:
        for handle in lab.handles:
            await lab.backend.cancel(handle)
