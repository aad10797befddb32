"""DockerBackend against a real engine and the offline image: the run lifecycle, then escape attempts.

Each test lays out a run folder (`<workspace>/runs/<id>/{code,work,outputs}`, next to `<workspace>/.research/`)
in tmp_path, drives the backend directly and waits only in bounded polling loops. Every container a test
makes is removed at teardown (found by its research-mcp.run label and its run folder under pytest's basetemp).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from research_mcp.sandbox.base import LOG_CAP_MARKER, RunHandle, RunSpec, RunStatus
from research_mcp.sandbox.docker import LABEL_RUN, LABEL_RUN_DIR, DockerBackend, DockerEngine
from research_mcp.sandbox.images import image_exists

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

IMAGE = "research-sandbox:base"
MARKER_START = LOG_CAP_MARKER.split("{")[0]


@pytest.fixture(autouse=True)
def _remove_test_containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    root = tmp_path_factory.getbasetemp()
    engine = DockerBackend().engine()
    for summary in engine.labelled():
        if Path(summary["Labels"].get(LABEL_RUN_DIR, "/")).is_relative_to(root):
            engine.remove(summary["Id"])


@pytest.fixture
def backend() -> DockerBackend:
    return DockerBackend(image=IMAGE)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".research").mkdir(parents=True)
    (root / ".research" / "state.db").write_bytes(b"SQLite format 3\0 the-state-db-secret")
    return root


def make_spec(workspace: Path, command: str, files: dict[str, str] | None = None, **limits: Any) -> RunSpec:
    run_id = "t-" + uuid.uuid4().hex[:10]
    run_dir = workspace / "runs" / run_id
    for sub in ("code", "work", "outputs"):
        (run_dir / sub).mkdir(parents=True)
    for name, text in (files or {}).items():
        for sub in ("code", "work"):
            path = run_dir / sub / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    values: dict[str, Any] = {"timeout_s": 60, **limits}
    return RunSpec(run_id=run_id, run_dir=run_dir, command=command, **values)


async def wait_done(backend: DockerBackend, handle: RunHandle, within_s: float = 30) -> RunStatus:
    with anyio.fail_after(within_s):
        while True:
            status = await backend.poll(handle)
            if status.state != "running":
                return status
            await anyio.sleep(0.1)


async def wait_for(path: Path, within_s: float = 20) -> None:
    with anyio.fail_after(within_s):
        while True:
            if path.exists():
                return
            await anyio.sleep(0.1)


async def wait_for_log(backend: DockerBackend, handle: RunHandle, text: str, within_s: float = 20) -> None:
    """Poll a running run until its log.txt shows `text`."""
    log = Path(handle.data["run_dir"]) / "log.txt"
    with anyio.fail_after(within_s):
        while True:
            status = await backend.poll(handle)
            if log.exists() and text in log.read_text(errors="replace"):
                return
            assert status.state == "running", status
            await anyio.sleep(0.1)


def log_of(spec: RunSpec) -> str:
    return (spec.run_dir / "log.txt").read_text(errors="replace")


def report_of(spec: RunSpec) -> dict[str, Any]:
    """The JSON object a probe script printed as its last log line."""
    return json.loads(log_of(spec).strip().splitlines()[-1])


def engine(backend: DockerBackend) -> DockerEngine:
    return backend.engine()


# --- lifecycle -----------------------------------------------------------------------------------------------


async def test_a_successful_run_logs_its_output_and_writes_its_outputs(backend: DockerBackend, workspace: Path) -> None:
    script = (
        "import json, os, numpy\n"
        "print('hello from the sandbox', numpy.__version__)\n"
        "open(os.path.join(os.environ['RESEARCH_OUT'], 'result.json'), 'w').write(json.dumps({'acc': 0.9}))\n"
        "os.makedirs('run_1', exist_ok=True)\n"
        "open('run_1/final_info.json', 'w').write('{}')\n"
    )
    spec = make_spec(workspace, "python3 main.py --out_dir run_1", {"exp/main.py": script}, workdir="exp")
    handle = await backend.start(spec)
    status = await wait_done(backend, handle)
    assert (status.state, status.exit_code, status.failure) == ("exited", 0, None)
    assert status.started_at is not None and status.ended_at is not None and status.ended_at >= status.started_at
    assert "hello from the sandbox 1." in log_of(spec)
    assert json.loads((spec.run_dir / "outputs" / "result.json").read_text()) == {"acc": 0.9}
    assert (spec.run_dir / "work" / "exp" / "run_1" / "final_info.json").is_file()
    assert json.loads((spec.run_dir / "status.json").read_text())["exit_code"] == 0
    assert engine(backend).inspect(handle.ref) is None  # removed once its status was written
    assert await backend.poll(handle) == status  # later polls answer from status.json


async def test_wait_returns_when_the_container_exits_and_not_before(backend: DockerBackend, workspace: Path) -> None:
    spec = make_spec(workspace, "sleep 2")
    handle = await backend.start(spec)
    try:
        started = time.monotonic()
        await backend.wait(handle, 0.3)  # still running: wait lasts its timeout
        assert time.monotonic() - started >= 0.3 and (await backend.poll(handle)).state == "running"
        await backend.wait(handle, 30)  # woken by the engine when the container exits
        assert time.monotonic() - started < 10
        assert (await backend.poll(handle)).exit_code == 0
        started = time.monotonic()
        await backend.wait(handle, 30)  # ended and finished: at once
        assert time.monotonic() - started < 1
    finally:
        await backend.cancel(handle)


async def test_a_failing_run_reports_its_exit_code_and_its_traceback(backend: DockerBackend, workspace: Path) -> None:
    spec = make_spec(workspace, "python3 -c \"print('before'); raise ValueError('bad input')\"")
    status = await wait_done(backend, await backend.start(spec))
    assert (status.exit_code, status.failure) == (1, "error")
    log = log_of(spec)
    assert "before" in log and "Traceback (most recent call last)" in log and "ValueError: bad input" in log


async def test_a_run_past_its_timeout_is_killed_within_five_seconds(backend: DockerBackend, workspace: Path) -> None:
    spec = make_spec(workspace, "echo started; sleep 600", timeout_s=2)
    started = time.monotonic()
    status = await wait_done(backend, await backend.start(spec), within_s=20)
    assert status.failure == "timeout" and status.exit_code == 137
    assert time.monotonic() - started < 2 + 5
    assert "started" in log_of(spec)


async def test_cancel_kills_the_run_and_is_idempotent(backend: DockerBackend, workspace: Path) -> None:
    spec = make_spec(workspace, "echo up > /work/up; sleep 600")
    handle = await backend.start(spec)
    await wait_for(spec.run_dir / "work" / "up")
    with anyio.fail_after(30):
        await backend.cancel(handle)
    assert engine(backend).inspect(handle.ref) is None
    status = await backend.poll(handle)
    assert (status.state, status.failure) == ("exited", "cancelled")
    with anyio.fail_after(10):
        await backend.cancel(handle)
    assert await backend.poll(handle) == status


async def test_allocating_past_the_memory_limit_is_reported_as_oom(backend: DockerBackend, workspace: Path) -> None:
    script = (
        "chunks = []\n"
        "for i in range(40):\n"
        "    chunks.append(b'x' * (10 << 20))\n"
        "    print('allocated', 10 * (i + 1), 'MiB')\n"
    )
    spec = make_spec(workspace, "python3 alloc.py", {"alloc.py": script}, memory_bytes=64 << 20)
    status = await wait_done(backend, await backend.start(spec))
    assert (status.exit_code, status.failure) == (137, "oom")
    assert status.peak_memory_bytes == 64 << 20
    assert "allocated 10 MiB" in log_of(spec) and "allocated 400 MiB" not in log_of(spec)


async def test_an_output_flood_leaves_a_bounded_log_with_the_final_traceback_whole(
    backend: DockerBackend, workspace: Path
) -> None:
    script = (
        "import sys\n"
        "out = sys.stdout\n"
        "for block in range(500):\n"
        "    out.write(''.join('%08d %s\\n' % (block * 1000 + i, 'x' * 90) for i in range(1000)))\n"
        "out.write('last line of the flood\\n')\n"
        "raise RuntimeError('final failure after the flood')\n"
    )
    cap = 1 << 20
    spec = make_spec(workspace, "python3 flood.py", {"flood.py": script}, log_cap_bytes=cap)
    status = await wait_done(backend, await backend.start(spec), within_s=120)
    assert status.failure == "error"
    data = (spec.run_dir / "log.txt").read_text()
    assert len(data) <= cap + 200
    assert data.count(MARKER_START) == 1
    assert data.startswith("00000000 xxx")
    head, tail = data.split(MARKER_START)
    assert head.endswith("\n") and len(head) >= cap // 2 - 200
    dropped = int(tail.split("; ")[1].split(" bytes")[0])
    assert dropped > 48_000_000
    assert "last line of the flood\nTraceback (most recent call last):\n" in tail
    assert tail.endswith("RuntimeError: final failure after the flood\n")


async def test_a_daemonised_child_does_not_survive_cancel(backend: DockerBackend, workspace: Path) -> None:
    tag = "daemon-" + uuid.uuid4().hex
    script = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        "            open('/work/beat', 'a').write('.')\n"
        "            time.sleep(0.05)\n"
        "    os._exit(0)\n"
        "time.sleep(600)\n"
    )
    spec = make_spec(workspace, f"python3 daemon.py {tag}", {"daemon.py": script})
    handle = await backend.start(spec)
    await wait_for(spec.run_dir / "work" / "beat")
    assert _host_processes_with(tag)
    with anyio.fail_after(30):
        await backend.cancel(handle)
    assert _host_processes_with(tag) == []


async def test_a_fresh_backend_instance_reattaches_to_a_running_run(backend: DockerBackend, workspace: Path) -> None:
    spec = make_spec(workspace, "while [ ! -e /work/go ]; do sleep 0.1; done; echo finished")
    handle = await backend.start(spec)
    restarted = DockerBackend(image=IMAGE)  # as after a server restart: only the stored handle is known
    stored = RunHandle.model_validate_json(handle.model_dump_json())
    assert (await restarted.poll(stored)).state == "running"
    (spec.run_dir / "work" / "go").touch()
    status = await wait_done(restarted, stored)
    assert (status.exit_code, status.failure) == (0, None)
    assert "finished" in log_of(spec)


async def test_servers_polling_a_finished_run_at_once_agree_and_keep_its_whole_log(
    backend: DockerBackend, workspace: Path
) -> None:
    spec = make_spec(workspace, "seq 1 50000; echo the-end")
    handle = await backend.start(spec)
    with anyio.fail_after(20):
        while True:
            attrs = engine(backend).inspect(handle.ref)
            if attrs is None or attrs["State"]["Status"] != "running":
                break
            await anyio.sleep(0.1)
    statuses: list[RunStatus] = []

    async def poll_from_another_server() -> None:
        statuses.append(await DockerBackend(image=IMAGE).poll(handle))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(poll_from_another_server)
    assert [s.exit_code for s in statuses] == [0] * 4 and all(s == statuses[0] for s in statuses)
    assert log_of(spec).startswith("1\n2\n") and log_of(spec).endswith("50000\nthe-end\n")


async def test_containers_carry_the_run_id_label_and_can_be_found_again(
    backend: DockerBackend, workspace: Path
) -> None:
    spec = make_spec(workspace, "sleep 600")
    handle = await backend.start(spec)
    attrs = engine(backend).inspect(handle.ref)
    assert attrs is not None and attrs["Config"]["Labels"][LABEL_RUN] == spec.run_id
    [found] = await backend.find_runs(under=workspace)
    assert found.ref == handle.ref and found.data["run_dir"] == str(spec.run_dir)
    assert found.data["deadline"] == pytest.approx(handle.data["deadline"], abs=5)
    with anyio.fail_after(30):
        await backend.cancel(found)
    assert await backend.find_runs(under=workspace) == []


async def test_a_restarted_server_finds_an_overdue_run_and_enforces_its_timeout(workspace: Path) -> None:
    first = DockerBackend(image=IMAGE)
    spec = make_spec(workspace, "sleep 600", timeout_s=1)
    handle = await first.start(spec)  # and this server never polls again
    restarted = DockerBackend(image=IMAGE)
    [found] = await restarted.find_runs(under=workspace)
    assert found.ref == handle.ref
    started = time.monotonic()
    status = await wait_done(restarted, found, within_s=15)
    assert status.failure == "timeout" and time.monotonic() - started < 1 + 5


async def test_a_container_created_by_a_server_that_died_before_starting_it_is_adopted_and_run(
    backend: DockerBackend, workspace: Path
) -> None:
    from research_mcp.sandbox.docker import create_kwargs, sandbox_user

    spec = make_spec(workspace, "echo adopted")
    kwargs = create_kwargs(spec, image=IMAGE, user=sandbox_user())
    await anyio.to_thread.run_sync(lambda: engine(backend).create(kwargs))  # and the server died here
    restarted = DockerBackend(image=IMAGE)
    handle = await restarted.adopt(spec)
    assert handle is not None
    status = await wait_done(restarted, handle)
    assert (status.exit_code, status.failure) == (0, None) and "adopted" in log_of(spec)


async def test_image_exists_knows_the_base_image() -> None:
    assert await anyio.to_thread.run_sync(lambda: image_exists(IMAGE))
    assert not await anyio.to_thread.run_sync(lambda: image_exists("research-sandbox:does-not-exist"))


async def test_a_container_removed_behind_the_backend_s_back_is_lost(backend: DockerBackend, workspace: Path) -> None:
    spec = make_spec(workspace, "sleep 600")
    handle = await backend.start(spec)
    engine(backend).remove(handle.ref)
    status = await backend.poll(handle)
    assert status.state == "lost" and status.detail is not None and "removed outside" in status.detail


async def test_a_missing_image_says_how_to_build_it(backend: DockerBackend, workspace: Path) -> None:
    from research_mcp.errors import SandboxError

    spec = make_spec(workspace, "true", image="research-sandbox:does-not-exist")
    with pytest.raises(SandboxError, match="research-mcp sandbox build-image"):
        await backend.start(spec)


# --- escape attempts -----------------------------------------------------------------------------------------

NET_PROBE = """
import json, socket, sys
results = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(':', 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            results[target] = 'connected'
    except OSError as exc:
        results[target] = type(exc).__name__ + ': ' + str(exc)
print(json.dumps(results))
"""


def _listener(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(8)
    return sock


def _bridge_gateway() -> str:
    """The host's address on Docker's default bridge (docker0): what a bridged container reaches the host by."""
    argv = ["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"]
    [config] = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=20).stdout)
    gateway = config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    assert gateway
    return gateway


def _host_addresses() -> list[str]:
    """The host's own non-loopback address, when it has a route out (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.connect(("192.0.2.1", 9))
        except OSError:
            return []
        return [udp.getsockname()[0]]


def _host_processes_with(tag: str) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_no_host_listener_is_reachable_without_network(backend: DockerBackend, workspace: Path) -> None:
    with _listener("127.0.0.1") as loopback, _listener("0.0.0.0") as anywhere:
        lo_port, any_port = loopback.getsockname()[1], anywhere.getsockname()[1]
        gateway = _bridge_gateway()
        hosts = ["127.0.0.1", gateway, *_host_addresses()]
        targets = [f"{host}:{port}" for host in hosts for port in (lo_port, any_port)]
        spec = make_spec(workspace, "python3 probe.py " + " ".join(targets), {"probe.py": NET_PROBE})
        status = await wait_done(backend, await backend.start(spec))
    assert status.exit_code == 0
    results = report_of(spec)
    assert set(results) == set(targets)
    assert all(not outcome.startswith("connected") for outcome in results.values()), results


async def test_a_bridge_network_would_reach_host_services_on_0_0_0_0_so_it_needs_permission(
    workspace: Path,
) -> None:
    permissive = DockerBackend(image=IMAGE, allow_network=True)
    with _listener("127.0.0.1") as loopback, _listener("0.0.0.0") as anywhere:
        gateway = _bridge_gateway()
        targets = [f"{gateway}:{anywhere.getsockname()[1]}", f"{gateway}:{loopback.getsockname()[1]}"]
        spec = make_spec(workspace, "python3 probe.py " + " ".join(targets), {"probe.py": NET_PROBE}, network=True)
        await wait_done(permissive, await permissive.start(spec))
    results = report_of(spec)
    assert results[targets[0]] == "connected"  # the pitfall DockerBackend(allow_network=False) guards against
    assert results[targets[1]] != "connected"


async def test_host_files_are_not_visible(backend: DockerBackend, workspace: Path) -> None:
    state_db = workspace / ".research" / "state.db"
    probe = """
import hashlib, json, sys
out = {}
for path in sys.argv[1:]:
    try:
        out[path] = hashlib.sha256(open(path, 'rb').read()).hexdigest()
    except OSError as exc:
        out[path] = type(exc).__name__
print(json.dumps(out))
"""
    paths = [str(state_db), "/work/../.research/state.db", "../../.research/state.db", "/etc/shadow", "/root/.bashrc"]
    spec = make_spec(workspace, "python3 probe.py " + " ".join(paths), {"probe.py": probe})
    await wait_done(backend, await backend.start(spec))
    results = report_of(spec)
    for path in paths[:3]:
        assert results[path] == "FileNotFoundError"
    host_shadow = hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest()
    assert results["/etc/shadow"] in ("PermissionError", "FileNotFoundError") or results["/etc/shadow"] != host_shadow
    assert results["/root/.bashrc"] in ("PermissionError", "FileNotFoundError")


async def test_the_server_s_environment_does_not_reach_the_run(
    backend: DockerBackend, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    monkeypatch.setenv("SANDBOX_TEST_SECRET", secret)
    spec = make_spec(workspace, "env", env={"SEED": "7"})
    await wait_done(backend, await backend.start(spec))
    names = {line.split("=", 1)[0] for line in log_of(spec).splitlines() if "=" in line}
    assert secret not in log_of(spec)
    assert names <= {"SEED", "RESEARCH_OUT", "HOME", "PYTHONUNBUFFERED", "PATH", "LANG", "HOSTNAME", "PWD"}
    assert "SEED=7" in log_of(spec) and "RESEARCH_OUT=/outputs" in log_of(spec)


async def test_nothing_outside_work_outputs_and_tmp_is_writable(backend: DockerBackend, workspace: Path) -> None:
    probe = """
import json, os, sys
out = {}
for folder in sys.argv[1:]:
    try:
        with open(os.path.join(folder, 'probe-write'), 'w') as f:
            f.write('x')
        out[folder] = 'written'
    except OSError as exc:
        out[folder] = type(exc).__name__ + ': ' + exc.strerror
out['uid'] = os.getuid()
out['sock'] = [p for p in ('/run/docker.sock', '/var/run/docker.sock') if os.path.exists(p)]
out['capeff'] = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]
print(json.dumps(out))
"""
    folders = ["/", "/etc", "/usr/lib", "/root", "/var", "/run", "/work", "/outputs", "/tmp"]
    spec = make_spec(workspace, "python3 probe.py " + " ".join(folders), {"probe.py": probe})
    await wait_done(backend, await backend.start(spec))
    results = report_of(spec)
    for folder in folders[:6]:
        assert not results[folder].startswith("written"), (folder, results[folder])
    assert "Read-only file system" in results["/etc"]
    assert [results[f] for f in ("/work", "/outputs", "/tmp")] == ["written"] * 3
    assert results["uid"] == (65534 if os.geteuid() == 0 else os.getuid())
    assert results["sock"] == [] and results["capeff"] == "0000000000000000"


async def test_a_fork_bomb_hits_the_pids_limit_while_a_healthy_run_finishes(
    backend: DockerBackend, workspace: Path
) -> None:
    counter = """
import os, signal, time
children = []
try:
    while True:
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        children.append(pid)
except OSError as exc:
    print('forked', len(children), 'then', type(exc).__name__, flush=True)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""
    # first count how far forks go, then the classic shell bomb, which must be stopped the same way
    command = "python3 count.py; b(){ b | b & }; b; exec sleep 600"
    bomb_spec = make_spec(workspace, command, {"count.py": counter}, pids=64)
    bomb_spec = bomb_spec.model_copy(update={"timeout_s": 6})
    healthy = make_spec(workspace, "python3 -c 'print(sum(range(10**7)))'")
    bomb_handle = await backend.start(bomb_spec)
    await wait_for_log(backend, bomb_handle, "forked")
    await wait_for_log(backend, bomb_handle, "Cannot fork")  # the shell bomb is at the limit now
    pids_current = Path("/sys/fs/cgroup/pids/docker", bomb_handle.ref, "pids.current")  # cgroup v1 + cgroupfs
    if pids_current.exists():
        assert int(pids_current.read_text()) <= 64
    healthy_status = await wait_done(backend, await backend.start(healthy))
    assert (healthy_status.exit_code, healthy_status.failure) == (0, None)
    assert "49999995000000" in log_of(healthy)
    bomb_status = await wait_done(backend, bomb_handle, within_s=30)
    assert bomb_status.failure == "timeout"
    forked = [line for line in log_of(bomb_spec).splitlines() if line.startswith("forked")]
    assert forked and int(forked[0].split()[1]) < 64


async def test_a_memory_bomb_of_several_processes_is_stopped(backend: DockerBackend, workspace: Path) -> None:
    bomb = """
import os, sys
pids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        hog = []
        while True:
            hog.append(bytearray(8 << 20))
    pids.append(pid)
killed = sum(os.WIFSIGNALED(os.waitpid(p, 0)[1]) for p in pids)
print('children killed:', killed)
sys.exit(137 if killed else 0)
"""
    spec = make_spec(workspace, "python3 bomb.py", {"bomb.py": bomb}, memory_bytes=128 << 20)
    status = await wait_done(backend, await backend.start(spec))
    assert (status.exit_code, status.failure) == (137, "oom")


async def test_a_cpu_spin_past_the_timeout_is_killed(backend: DockerBackend, workspace: Path) -> None:
    spec = make_spec(workspace, "python3 -c 'while True: pass'", timeout_s=2, cpus=0.5)
    started = time.monotonic()
    status = await wait_done(backend, await backend.start(spec), within_s=20)
    assert status.failure == "timeout"
    assert time.monotonic() - started < 2 + 5
