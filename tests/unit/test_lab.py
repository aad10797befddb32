"""The doctor (`research_mcp.tools.lab`) against real and fake programs, sockets and folders: no mocks."""

from __future__ import annotations

import ast
import os
import select
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from pydantic import SecretStr

from research_mcp.config import Settings
from research_mcp.sandbox import docker as docker_backend
from research_mcp.sandbox import gpus, local
from research_mcp.sandbox.registry import REGISTRY
from research_mcp.tools import lab
from research_mcp.tools.lab import Component, Gpu, LabInfo, format_report, probe_lab
from research_mcp.workspace import Workspace
from tests.conftest import skip_or_fail

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux")
ABSENT_SOCKET = "/nonexistent-research-mcp/docker.sock"


@pytest.fixture(autouse=True)
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only a folder of fake programs; no real engine, token or config file is seen."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{ABSENT_SOCKET}")
    for name in ("GITHUB_TOKEN", "S2_API_KEY", "RESEARCH_MCP_GITHUB_TOKEN", "RESEARCH_MCP_S2_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("RESEARCH_MCP_PROBE_TIMEOUT_S", "RESEARCH_MCP_DOCKER_IMAGE", "DOCKER_TLS_VERIFY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return folder


def tool(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def component(info: LabInfo, name: str) -> Component:
    [found] = [c for c in info.components if c.name == name]
    return found


def wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    """True once `pid` has exited (a zombie counts as gone), waiting on a pidfd rather than sleeping."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)
        return bool(readable)
    finally:
        os.close(fd)


class FakeEngine(socketserver.BaseRequestHandler):
    """Answers /_ping, /version and /images/<name>/json like a Docker engine speaking HTTP/1.0."""

    images: frozenset[str] = frozenset()

    def handle(self) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            request += chunk
        path = request.split()[1].decode()
        status, body = 404, b'{"message":"page not found"}'
        if path == "/_ping":
            status, body = 200, b"OK"
        elif path == "/version":
            status, body = 200, b'{"Version":"20.10.24","ApiVersion":"1.41","Os":"linux"}'
        elif path.startswith("/images/") and path.endswith("/json"):
            name = unquote(path[len("/images/") : -len("/json")])
            if name in self.images:
                status, body = 200, b'{"Id":"sha256:abc"}'
            else:
                status, body = 404, b'{"message":"No such image"}'
        head = f"HTTP/1.0 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        self.request.sendall(head.encode() + body)


@pytest.fixture
def short_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("s")  # a short path: AF_UNIX socket paths stop at 107 bytes


@pytest.fixture
def engine_socket(short_dir: Path) -> Iterator[Path]:
    path = short_dir / "docker.sock"
    handler = type("Engine", (FakeEngine,), {"images": frozenset({"research-sandbox:base"})})
    server = socketserver.ThreadingUnixStreamServer(str(path), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.anyio
@linux_only
async def test_a_docker_cli_without_an_engine_is_unreachable_and_says_how_to_start_one() -> None:
    info = await probe_lab(Settings(), None, "none")
    docker = component(info, "docker")
    assert (docker.ok, docker.status) == (False, "unreachable")
    assert f"engine not reachable at {ABSENT_SOCKET}" in docker.detail
    assert docker.install is not None and "apt-get install -y docker.io" in docker.install
    assert "docker" not in info.backends


@pytest.mark.anyio
async def test_a_reachable_engine_reports_its_version_and_that_the_image_is_present(
    engine_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine_socket}")
    info = await probe_lab(Settings(docker_image="research-sandbox:base"), None)
    docker = component(info, "docker")
    assert (docker.ok, docker.status, docker.version, docker.install) == (True, "ok", "20.10.24", None)
    assert "API 1.41" in docker.detail and "image research-sandbox:base present" in docker.detail
    assert "no docker CLI on PATH" in docker.detail  # the CLI is not needed when the engine answers
    assert info.backends[0] == "docker"


@pytest.mark.anyio
async def test_a_missing_sandbox_image_names_the_build_command(
    engine_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine_socket}")
    info = await probe_lab(Settings(docker_image="research-sandbox:gpu"), None)
    docker = component(info, "docker")
    assert docker.ok and "image research-sandbox:gpu missing" in docker.detail
    assert docker.install is not None and "docker import - research-sandbox:gpu" in docker.install
    assert "debootstrap --variant=minbase" in format_report(info)


@pytest.mark.anyio
async def test_a_tcp_docker_host_is_asked_over_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = type("Engine", (FakeEngine,), {"images": frozenset({"img:1"})})
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.server_address[1]}")
        try:
            info = await probe_lab(Settings(docker_image="img:1"), None)
        finally:
            server.shutdown()
            thread.join(5)
    docker = component(info, "docker")
    assert docker.ok and "image img:1 present" in docker.detail


@pytest.mark.anyio
async def test_an_unsupported_docker_host_scheme_is_reported_not_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@host")
    docker = component(await probe_lab(Settings(), None), "docker")
    assert (docker.ok, docker.status) == (False, "unsupported") and "ssh://me@host" in docker.detail


@pytest.mark.anyio
@linux_only
async def test_hanging_probes_stop_at_the_timeout_and_their_processes_are_killed(
    fake_bin: Path, tmp_path: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    tool(fake_bin, "latexmk", f'/bin/sleep 30 &\necho $! > "{pids}"\necho $$ >> "{pids}"\nwait')
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # accepts connections into its backlog, never answers
    mute_path = short_dir / "mute.sock"
    mute.bind(str(mute_path))
    mute.listen(4)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{mute_path}")
    started = time.monotonic()
    try:
        info = await probe_lab(Settings(probe_timeout_s=0.5), None)
    finally:
        mute.close()
    assert time.monotonic() - started < 0.5 + 2
    for name in ("latexmk", "docker"):
        timed_out = component(info, name)
        assert (timed_out.ok, timed_out.status) == (False, "timeout") and "0.5 s" in timed_out.detail
    started_pids = [int(line) for line in pids.read_text().split()]
    assert len(started_pids) == 2  # the script and the sleep it left in the background
    assert all(wait_gone(pid) for pid in started_pids)


@pytest.mark.anyio
@linux_only
async def test_fake_nvidia_smi_rows_become_gpus_with_memory_and_driver(fake_bin: Path) -> None:
    rows = "0, NVIDIA A100-SXM4-40GB, 40960, 40311, 535.104.05\n1, NVIDIA A100-SXM4-40GB, 40960, 12, 535.104.05"
    tool(fake_bin, "nvidia-smi", f'case "$1" in --query-gpu=*) printf "{rows}\\n";; *) exit 2;; esac')
    info = await probe_lab(Settings(), None)
    nvidia = component(info, "nvidia")
    assert (nvidia.ok, nvidia.version) == (True, "535.104.05")
    assert info.gpus == [
        Gpu(index=0, name="NVIDIA A100-SXM4-40GB", memory_total_mib=40960, memory_free_mib=40311, driver="535.104.05"),
        Gpu(index=1, name="NVIDIA A100-SXM4-40GB", memory_total_mib=40960, memory_free_mib=12, driver="535.104.05"),
    ]
    assert nvidia.install is not None and "container-toolkit" in nvidia.install  # nvidia-ctk is not on PATH
    assert "GPU 1: NVIDIA A100-SXM4-40GB, 40960 MiB (12 MiB free)" in format_report(info)


@pytest.mark.anyio
@linux_only
async def test_no_nvidia_driver_is_reported_with_the_driver_and_toolkit_steps() -> None:
    info = await probe_lab(Settings(), None)
    nvidia = component(info, "nvidia")
    assert (nvidia.ok, nvidia.status, nvidia.detail) == (False, "missing", "no NVIDIA driver (nvidia-smi not found)")
    assert nvidia.install is not None and "NVIDIA Container Toolkit" in nvidia.install
    assert info.gpus == [] and "GPUs: none" in format_report(info)


@pytest.mark.anyio
@linux_only
async def test_a_driver_that_fails_is_an_error_with_its_message(fake_bin: Path) -> None:
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    tool(fake_bin, "nvidia-smi", f'echo "{message}"\nexit 9')
    info = await probe_lab(Settings(), None)
    nvidia = component(info, "nvidia")
    assert nvidia.status == "error" and message in nvidia.detail and info.gpus == []


@pytest.mark.anyio
async def test_tex_tools_report_their_versions(fake_bin: Path) -> None:
    tool(fake_bin, "pdflatex", 'echo "pdfTeX 3.141592653-2.6-1.40.24 (TeX Live 2022/Debian)"\necho "kpathsea 6.3.4"')
    tool(fake_bin, "latexmk", 'echo ""\necho "Latexmk, John Collins, 17 Mar. 2022. Version 4.77"')
    tool(fake_bin, "biber", 'echo "biber version: 2.18"')
    tool(fake_bin, "bibtex", 'echo "BibTeX 0.99d (TeX Live 2022/Debian)"')
    info = await probe_lab(Settings(), None)
    versions = {name: component(info, name).version for name in ("tex", "latexmk", "biber", "bibtex")}
    assert versions == {"tex": "3.141592653-2.6-1.40.24", "latexmk": "4.77", "biber": "2.18", "bibtex": "0.99d"}
    assert all(component(info, name).ok for name in versions)
    assert f"({fake_bin / 'pdflatex'})" in component(info, "tex").detail


@pytest.mark.anyio
async def test_tex_is_looked_for_in_the_tex_bin_setting_as_compiles_use_it(fake_bin: Path, tmp_path: Path) -> None:
    tool(fake_bin, "pdflatex", 'echo "pdfTeX 3.1 (the one on PATH)"')
    tex_bin = tmp_path / "texlive" / "bin"
    tex_bin.mkdir(parents=True)
    tool(tex_bin, "pdflatex", 'echo "pdfTeX 3.141592653-2.6-1.40.26 (TeX Live 2024)"')
    tex = component(await probe_lab(Settings(tex_bin=tex_bin), None), "tex")
    assert tex.ok and tex.version == "3.141592653-2.6-1.40.26" and f"({tex_bin / 'pdflatex'})" in tex.detail
    latexmk = component(await probe_lab(Settings(tex_bin=tex_bin), None), "latexmk")
    assert latexmk.status == "missing" and "RESEARCH_MCP_TEX_BIN" in latexmk.detail
    assert latexmk.install is not None and "RESEARCH_MCP_TEX_BIN" in latexmk.install


@pytest.mark.anyio
@linux_only
async def test_missing_tex_gives_one_install_line_for_all_tex_tools(fake_bin: Path) -> None:
    tool(fake_bin, "biber", 'echo "perl: broken" >&2\nexit 1')
    info = await probe_lab(Settings(), None)
    assert component(info, "tex").status == "missing" and component(info, "biber").status == "error"
    report = format_report(info)
    [line] = [line for line in report.splitlines() if "texlive-latex-extra" in line]
    assert line.strip().startswith("tex, latexmk, biber, bibtex:") and "lmodern" in line and "latexmk biber" in line
    assert "perl: broken" in component(info, "biber").detail


@pytest.mark.anyio
async def test_slurm_without_its_client_tools_is_missing_and_not_a_backend(fake_bin: Path) -> None:
    tool(fake_bin, "sinfo", 'echo "slurm 22.05.8"')
    tool(fake_bin, "scontrol", 'echo "Slurmctld(primary) at vm is UP"')
    info = await probe_lab(Settings(), None)
    slurm = component(info, "slurm")
    assert slurm.status == "missing" and "sbatch" in slurm.detail and slurm.install
    assert "slurm" not in info.backends and info.cluster is None
    assert set(info.backends) <= set(REGISTRY)


SINFO = """\
case "$*" in
  --version) echo "slurm 22.05.8" ;;
  *%N*) printf 'a1|gpu*|64|gpu:a100:4(S:0-1)|idle|2-00:00:00|up\\na2|gpu*|64|gpu:a100:4(S:0-1)|mix|2-00:00:00|up\\n'
        printf 'c1|cpu|32|(null)|idle|1-00:00:00|up\\n' ;;
  *) echo "gpu* up 2 idle" ;;
esac
"""


@pytest.mark.anyio
async def test_a_cluster_that_answers_is_a_backend_and_lab_info_shows_its_partitions_and_jobs(
    fake_bin: Path, tmp_path: Path
) -> None:
    tool(fake_bin, "sinfo", SINFO)
    tool(fake_bin, "sbatch", "exit 1")
    tool(fake_bin, "scontrol", 'case "$1" in ping) echo "Slurmctld(primary) at head is UP" ;; '
         'show) echo "ClusterName             = delta" ;; esac')  # fmt: skip
    tool(fake_bin, "squeue", "printf '7_1|PENDING|QOSMaxGRESPerUser|rmcp-a\\n8|RUNNING|None|train\\n'")
    info = await probe_lab(Settings(), Workspace(tmp_path, "setting"))
    assert component(info, "slurm").ok and "slurm" in info.backends
    cluster = info.cluster
    assert cluster is not None and cluster.name == "delta"
    gpu, cpu = cluster.partitions
    assert (gpu.name, gpu.default, gpu.nodes, gpu.idle_nodes, gpu.cpus, gpu.gpus) == (
        "gpu",
        True,
        2,
        1,
        128,
        {"a100": 8},
    )
    assert (cpu.name, cpu.nodes, cpu.gpus, cpu.time_limit) == ("cpu", 1, {}, "1-00:00:00")
    assert (cluster.running, cluster.pending) == (1, 1)
    assert cluster.jobs[0].reason == "over your group's limit: QOSMaxGRESPerUser"
    assert "slurm gpu: 2 nodes (1 idle), 128 CPUs, 8 a100" in format_report(info)
    # three nodes, and a workspace on this machine's own disk: the other nodes would not see the run folders
    assert cluster.warning is not None and "local file system" in cluster.warning and "3 nodes" in cluster.warning


@pytest.mark.anyio
@pytest.mark.bwrap
@linux_only
async def test_the_real_bubblewrap_starts_a_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("bwrap", path="/usr/bin:/bin") is None:
        skip_or_fail("bubblewrap is not installed in /usr/bin or /bin (apt-get install -y bubblewrap)")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    info = await probe_lab(Settings(), None)
    bwrap = component(info, "bubblewrap")
    assert bwrap.ok, bwrap.detail
    assert bwrap.version and "local" in info.backends
    assert ("uid 65534" in bwrap.detail) == (os.geteuid() == 0)
    assert ("mount namespace" in bwrap.detail) == (os.geteuid() == 0)


@pytest.mark.anyio
@linux_only
async def test_missing_bubblewrap_names_the_apt_line() -> None:
    info = await probe_lab(Settings(), None)
    bwrap = component(info, "bubblewrap")
    assert (bwrap.ok, bwrap.status, bwrap.install) == (False, "missing", "apt-get install -y bubblewrap")
    assert "local" not in info.backends


@pytest.mark.anyio
@linux_only
async def test_missing_slirp4netns_names_the_apt_line_for_the_network_of_local_runs() -> None:
    slirp = component(await probe_lab(Settings(), None), "slirp4netns")
    assert (slirp.ok, slirp.status) == (False, "missing")
    assert slirp.install is not None and slirp.install.startswith("apt-get install -y slirp4netns")


@pytest.mark.anyio
@linux_only
async def test_allowed_unsandboxed_runs_offer_the_local_backend_and_say_they_are_not_isolated() -> None:
    info = await probe_lab(Settings(allow_unsandboxed=True), None)
    bwrap = component(info, "bubblewrap")
    assert not bwrap.ok and "WITHOUT a sandbox" in bwrap.detail
    assert "local" in info.backends


@pytest.mark.anyio
@linux_only
async def test_bubblewrap_that_cannot_make_a_namespace_points_at_user_namespaces(
    fake_bin: Path, tmp_path: Path
) -> None:
    argv_log = tmp_path / "setpriv-argv"
    tool(fake_bin, "setpriv", f'echo "$@" > "{argv_log}"\nshift 4\nexec "$@"')
    tool(
        fake_bin,
        "bwrap",
        '[ "$1" = --version ] && echo "bubblewrap 0.8.0" && exit 0\necho "bwrap: No permissions" >&2\nexit 1',
    )
    bwrap = component(await probe_lab(Settings(), None), "bubblewrap")
    assert (bwrap.status, bwrap.version) == ("error", "0.8.0") and "bwrap: No permissions" in bwrap.detail
    assert bwrap.install is not None and "user namespaces" in bwrap.install
    if os.geteuid() == 0:  # root starts the sandbox as nobody, as VERIFIED.md section 7.4 requires
        assert argv_log.read_text().startswith("--reuid=65534 --regid=65534 --clear-groups -- ")


@pytest.mark.anyio
async def test_linux_only_parts_are_unsupported_elsewhere_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    bwrap = await local.probe("darwin")
    cgroups = local.probe_cgroups("darwin")
    nvidia = await gpus.probe([], "darwin")
    assert [c.status for c in (bwrap, cgroups, nvidia)] == ["unsupported"] * 3
    assert "Linux" in bwrap.detail and "Linux" in cgroups.detail
    engine = await docker_backend.probe("img", 1.0, "darwin")
    assert engine.install == "Start Docker Desktop"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_with_memory_pids_and_cpu_delegated_is_usable(tmp_path: Path) -> None:
    write(tmp_path / "fs" / "cgroup.controllers", "cpuset cpu io memory pids\n")
    write(tmp_path / "fs" / "user.slice" / "me" / "cgroup.controllers", "cpu memory pids\n")
    write(tmp_path / "self", "0::/user.slice/me\n")
    found = local.probe_cgroups("linux", tmp_path / "fs", tmp_path / "self")
    assert found.ok and "cgroup v2" in found.detail and "user.slice/me" in found.detail


def test_cgroup_v2_without_delegation_falls_back_to_rlimits_and_says_so(tmp_path: Path) -> None:
    write(tmp_path / "fs" / "cgroup.controllers", "cpu memory pids\n")
    write(tmp_path / "fs" / "app" / "cgroup.controllers", "cpu\n")
    write(tmp_path / "self", "0::/app\n")
    found = local.probe_cgroups("linux", tmp_path / "fs", tmp_path / "self")
    assert not found.ok and "memory, pids not delegated" in found.detail and "rlimits only" in found.detail
    assert found.install


def test_writable_cgroup_v1_controllers_are_usable(tmp_path: Path) -> None:
    for controller in ("memory", "pids", "cpu"):
        write(tmp_path / controller / "cgroup.procs", "")
    found = local.probe_cgroups("linux", tmp_path, tmp_path / "unused")
    assert found.ok and found.detail == f"cgroup v1: {tmp_path}/{{memory,pids,cpu}} writable"


def test_no_cgroups_means_rlimits_only(tmp_path: Path) -> None:
    found = local.probe_cgroups("linux", tmp_path, tmp_path / "unused")
    assert (found.ok, found.status) == (False, "missing") and "rlimits only" in found.detail


@pytest.mark.anyio
async def test_tokens_are_booleans_and_their_values_never_leak() -> None:
    secret = "ghp_TopSecretValue42"
    info = await probe_lab(Settings(github_token=SecretStr(secret), s2_api_key=SecretStr("s2-AnotherSecret")), None)
    assert info.tokens == {"GITHUB_TOKEN": True, "S2_API_KEY": True}
    for text in (format_report(info), info.model_dump_json(), repr(info)):
        assert secret not in text and "s2-AnotherSecret" not in text
    bare = await probe_lab(Settings(), None)
    assert bare.tokens == {"GITHUB_TOKEN": False, "S2_API_KEY": False}


@pytest.mark.anyio
async def test_a_workspace_reports_its_folder_source_state_db_and_free_disk(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path.resolve(), "setting")
    info = await probe_lab(Settings(), workspace)
    assert (info.workspace, info.workspace_source) == (str(tmp_path.resolve()), "setting")
    assert info.state_db == str(tmp_path.resolve() / ".research" / "state.db")
    assert info.workspace_problem is None and info.limits["disk_free_gib"] >= 0
    assert f"workspace: {tmp_path.resolve()} (from setting)" in format_report(info)


@pytest.mark.anyio
async def test_without_a_workspace_the_report_carries_the_problem() -> None:
    problem = "No workspace folder is set. Start the server with --workspace."
    info = await probe_lab(Settings(), None, problem)
    assert (info.workspace, info.state_db, info.workspace_problem) == (None, None, problem)
    assert problem in format_report(info)


@pytest.mark.anyio
async def test_the_report_has_one_marked_line_per_component_and_the_limits() -> None:
    info = await probe_lab(Settings(max_output_chars=9000), None)
    names = [c.name for c in info.components]
    assert names == [
        "docker", "bubblewrap", "slurm", "slirp4netns", "cgroups", "nvidia", "tex", "latexmk", "biber", "bibtex"
    ]  # fmt: skip
    report = format_report(info)
    for c in info.components:
        assert any(line.startswith(f"{'✓' if c.ok else '✗'} {c.name} ") for line in report.splitlines())
    assert info.limits["max_output_chars"] == 9000 and "max_output_chars=9000" in report
    assert info.limits["cpus"] == os.cpu_count() and info.version and info.python


def test_every_field_the_model_sees_has_a_description() -> None:
    for model in (Component, Gpu, LabInfo):
        assert all(field.description for field in model.model_fields.values()), model.__name__


def test_the_module_imports_only_the_stdlib_pydantic_and_its_own_package_at_top_level() -> None:
    tree = ast.parse(Path(lab.__file__).read_text(encoding="utf-8"))
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert top <= set(sys.stdlib_module_names) | {"__future__", "pydantic", "research_mcp"}


def test_no_probe_writes_to_the_servers_stdout(fake_bin: Path) -> None:
    tool(fake_bin, "pdflatex", 'echo "pdfTeX 3.14 on stdout"\necho "noise on stderr" >&2')
    tool(fake_bin, "sinfo", 'echo "slurm 22.05.8"')
    code = (
        "import anyio; from research_mcp.config import Settings; from research_mcp.tools.lab import probe_lab; "
        "anyio.run(probe_lab, Settings(probe_timeout_s=5), None)"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=30, check=True)
    assert done.stdout == b""
