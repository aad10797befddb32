"""The container a Docker run gets, checked without an engine: `create_kwargs`, the log cap, the refusals."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from research_mcp.errors import SandboxError
from research_mcp.sandbox import docker as docker_backend
from research_mcp.sandbox import images
from research_mcp.sandbox.base import LOG_CAP_MARKER, Mount, RunSpec
from research_mcp.sandbox.docker import (
    LABEL_RUN,
    LABEL_RUN_DIR,
    NOBODY,
    DockerBackend,
    create_kwargs,
    sandbox_user,
    write_capped_log,
)

RUN_DIR = Path("/ws/project/runs/r-0001")


def spec(**overrides: Any) -> RunSpec:
    values: dict[str, Any] = {"run_id": "r-0001", "run_dir": RUN_DIR, "command": "python3 train.py", "timeout_s": 60}
    return RunSpec(**{**values, **overrides})


def kwargs_for(**overrides: Any) -> dict[str, Any]:
    return create_kwargs(spec(**overrides), image="research-sandbox:base", user=NOBODY)


def test_a_run_has_no_network_unless_the_spec_asks() -> None:
    assert kwargs_for()["network_mode"] == "none"
    assert kwargs_for(network=True)["network_mode"] == "bridge"


def test_memory_has_no_swap_beyond_the_limit_and_pids_and_cpus_are_limited() -> None:
    kwargs = kwargs_for(memory_bytes=256 << 20, cpus=1.5, pids=64)
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == 256 << 20
    assert kwargs["pids_limit"] == 64
    assert kwargs["nano_cpus"] == 1_500_000_000


def test_unset_memory_and_cpus_leave_the_engine_defaults() -> None:
    kwargs = kwargs_for()
    assert "mem_limit" not in kwargs and "memswap_limit" not in kwargs and "nano_cpus" not in kwargs
    assert kwargs["pids_limit"] == 512


def test_the_root_is_read_only_with_a_tmpfs_for_scratch() -> None:
    kwargs = kwargs_for()
    assert kwargs["read_only"] is True
    assert set(kwargs["tmpfs"]) == {"/tmp", "/var/tmp"}
    assert all("size=" in opts and "nosuid" in opts for opts in kwargs["tmpfs"].values())


def test_the_run_is_an_unprivileged_user_without_capabilities() -> None:
    kwargs = kwargs_for()
    assert kwargs["user"] == "65534:65534"
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert "privileged" not in kwargs and "cap_add" not in kwargs and "devices" not in kwargs


def test_a_root_server_runs_its_runs_as_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_backend.os, "geteuid", lambda: 0)
    assert sandbox_user() == NOBODY
    monkeypatch.setattr(docker_backend.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(docker_backend.os, "getuid", lambda: 1000)
    monkeypatch.setattr(docker_backend.os, "getgid", lambda: 1001)
    assert sandbox_user() == (1000, 1001)


def test_only_work_and_outputs_of_the_run_folder_are_bound() -> None:
    kwargs = kwargs_for()
    assert kwargs["volumes"] == {
        str(RUN_DIR / "work"): {"bind": "/work", "mode": "rw"},
        str(RUN_DIR / "outputs"): {"bind": "/outputs", "mode": "rw"},
    }
    assert "mounts" not in kwargs and "volumes_from" not in kwargs


def test_mounts_are_read_only_unless_marked_writable_and_volumes_bind_by_name() -> None:
    mounts = [
        Mount(source="/ws/project/datasets", dest="/data"),
        Mount(source="research-env-abc", dest="/opt/research-env", volume=True),
        Mount(source="/cache/uv", dest="/cache/uv", writable=True),
    ]
    volumes = kwargs_for(mounts=mounts)["volumes"]
    assert volumes["/ws/project/datasets"] == {"bind": "/data", "mode": "ro"}
    assert volumes["research-env-abc"] == {"bind": "/opt/research-env", "mode": "ro"}
    assert volumes["/cache/uv"] == {"bind": "/cache/uv", "mode": "rw"}


def test_the_command_runs_under_sh_in_the_workdir_with_stderr_joined_to_stdout() -> None:
    kwargs = kwargs_for(workdir="exp/a", command="python3 main.py --out_dir run_1")
    assert kwargs["command"] == ["/bin/sh", "-c", "exec 2>&1\npython3 main.py --out_dir run_1"]
    assert kwargs["working_dir"] == "/work/exp/a"
    assert kwargs_for()["working_dir"] == "/work"


@pytest.mark.parametrize("workdir", ["../x", "/etc", "a/../../b"])
def test_a_workdir_outside_the_working_tree_is_refused(workdir: str) -> None:
    with pytest.raises(SandboxError, match="relative"):
        kwargs_for(workdir=workdir)


def test_the_environment_is_the_spec_s_plus_research_out_and_nothing_of_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret")
    env = kwargs_for(env={"SEED": "3", "RESEARCH_OUT": "/elsewhere"})["environment"]
    assert env == {"PYTHONUNBUFFERED": "1", "SEED": "3", "RESEARCH_OUT": "/outputs", "HOME": "/tmp"}


def test_an_environment_name_with_an_equals_sign_is_refused() -> None:
    with pytest.raises(SandboxError, match="Environment variable"):
        kwargs_for(env={"A=B": "1"})


def test_labels_carry_the_run_id_and_folder() -> None:
    labels = kwargs_for()["labels"]
    assert labels[LABEL_RUN] == "r-0001"
    assert labels[LABEL_RUN_DIR] == str(RUN_DIR)
    assert kwargs_for()["name"] == "research-mcp-r-0001"


def test_gpus_are_pinned_by_a_device_request() -> None:
    assert "device_requests" not in kwargs_for()
    [request] = kwargs_for(gpus=[0, 2])["device_requests"]
    assert request == {"device_ids": ["0", "2"], "capabilities": [["gpu"]]}


def test_docker_py_turns_the_gpu_request_into_the_engine_s_device_request() -> None:
    types = pytest.importorskip("docker.types")
    [request] = kwargs_for(gpus=[0, 2])["device_requests"]
    assert dict(types.DeviceRequest(**request)) == {
        "Driver": "",
        "Count": 0,
        "DeviceIDs": ["0", "2"],
        "Capabilities": [["gpu"]],
        "Options": {},
    }


def test_the_engine_keeps_a_bounded_log_of_its_own() -> None:
    log_config = kwargs_for(log_cap_bytes=1 << 20)["log_config"]
    assert log_config["type"] == "local"
    assert int(log_config["config"]["max-size"]) * int(log_config["config"]["max-file"]) >= 2 << 20


def test_a_log_under_the_cap_is_copied_whole(tmp_path: Path) -> None:
    chunks = [b"line %d\n" % i for i in range(1000)]
    total = write_capped_log(chunks, tmp_path / "log.txt", cap_bytes=1 << 20)
    assert (tmp_path / "log.txt").read_bytes() == b"".join(chunks)
    assert total == len(b"".join(chunks))


def test_a_log_over_the_cap_keeps_head_marker_and_a_whole_final_traceback(tmp_path: Path) -> None:
    flood = [b"%08d %s\n" % (i, b"x" * 90) for i in range(100_000)]  # 10 MB in 100-byte lines
    traceback = b'Traceback (most recent call last):\n  File "main.py", line 3\nRuntimeError: boom\n'
    cap = 256 << 10
    total = write_capped_log([*flood, traceback], tmp_path / "log.txt", cap_bytes=cap, tail_bytes=64 << 10)
    data = (tmp_path / "log.txt").read_bytes()
    marker_start = LOG_CAP_MARKER.split("{")[0].encode()
    assert data.count(marker_start) == 1
    assert len(data) <= cap + 200
    assert data.startswith(flood[0])
    head, tail = data.split(marker_start)
    kept_tail = tail.split(b"\n", 1)[1]
    assert head.endswith(b"\n") and kept_tail.startswith(b"000")  # both cut at line ends
    assert kept_tail.endswith(flood[-1] + traceback)
    dropped = total - len(head) - len(kept_tail)
    assert f"{dropped} bytes of output dropped".encode() in data


def test_network_is_refused_unless_the_server_allows_it(tmp_path: Path) -> None:
    async def start() -> None:
        await DockerBackend().start(spec(run_dir=tmp_path, network=True))

    with pytest.raises(SandboxError, match="0.0.0.0"):
        anyio.run(start)


def test_a_missing_docker_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(SandboxError, match=r"pip install 'docker>=7'"):
        docker_backend.connect()


def test_an_engine_that_does_not_answer_says_where_it_looked(tmp_path: Path) -> None:
    pytest.importorskip("docker")
    socket = f"unix://{tmp_path}/no-engine.sock"
    with pytest.raises(SandboxError, match=f"Docker engine not reachable at {socket}: start dockerd"):
        docker_backend.connect(socket)


def test_building_the_image_as_a_normal_user_says_to_use_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxError, match="needs root"):
        images.build_image("research-sandbox:base")


def test_building_the_image_without_debootstrap_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images.os, "geteuid", lambda: 0)

    def which(name: str) -> str | None:
        return None if name == "debootstrap" else f"/usr/bin/{name}"

    monkeypatch.setattr(images.shutil, "which", which)
    with pytest.raises(SandboxError, match="apt-get install -y debootstrap"):
        images.build_image("research-sandbox:base")


@pytest.mark.parametrize("bad", [{"tag": "-x"}, {"suite": "bookworm --foreign"}, {"packages": ("python3,curl",)}])
def test_image_build_arguments_cannot_smuggle_options(bad: dict[str, Any]) -> None:
    values: dict[str, Any] = {"tag": "research-sandbox:base", **bad}
    tag = values.pop("tag")
    with pytest.raises(SandboxError, match="Bad"):
        images.build_image(tag, **values)


def test_engine_answers_only_when_a_ping_gets_200(tmp_path: Path) -> None:
    import socket
    import threading

    from research_mcp.sandbox._docker_engine import engine_answers

    assert not engine_answers(f"unix://{tmp_path}/none.sock")
    path = tmp_path / "engine.sock"
    replies = [b"HTTP/1.1 200 OK\r\n\r\nOK", b"HTTP/1.1 500 Internal Server Error\r\n\r\n"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()

        def answer() -> None:
            for reply in replies:
                conn, _ = server.accept()
                with conn:
                    conn.recv(1024)
                    conn.sendall(reply)

        thread = threading.Thread(target=answer)
        thread.start()
        assert engine_answers(f"unix://{path}", timeout_s=5)
        assert not engine_answers(f"unix://{path}", timeout_s=5)
        thread.join(timeout=5)
