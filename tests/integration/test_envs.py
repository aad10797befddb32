"""Environments through the real MCP tools, on each real backend: built with a network from the package registry,
used by runs without one, answered from the record the second time, failing cleanly, read-only in runs.

The builds reach the registry (through this machine's TLS-intercepting proxy, whose CA the build is given); every
test uses its own user data folder, so each starts with an empty uv cache, as a new user's machine would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from mcp import Client

from research_mcp.config import Settings
from research_mcp.errors import SandboxError
from research_mcp.server import build_server
from tests.conftest import open_for_sandbox
from tests.integration._client import call, call_raw, error_text

pytestmark = pytest.mark.anyio

SMALL = "six==1.16.0"
TORCH_TRAIN = """\
import torch
torch.manual_seed(0)
x = torch.randn(64, 4)
y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
losses = []
for step in range(20):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
    loss.backward()
    opt.step()
    losses.append(loss.item())
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "first", losses[0], "last", losses[-1])
assert losses[-1] < losses[0] / 10, losses
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    open_for_sandbox(tmp_path, root)
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    open_for_sandbox(tmp_path, folder)
    return folder


@pytest.fixture
async def lab(workspace: Path, data_dir: Path, backend: Literal["local", "docker"]) -> AsyncIterator[Client]:
    settings = Settings(workspace=workspace, backend=backend, data_dir=data_dir, max_concurrent_runs=4)
    async with Client(build_server(settings), raise_exceptions=True) as client:
        yield client
        for env in (await call(client, "list_envs", {"limit": 200}))["envs"]:  # docker volumes outlive tmp_path
            if env["state"] == "ready":
                await call(client, "list_envs", {"remove": env["id"]})


async def built(client: Client, args: dict[str, Any], timeout_s: float = 600) -> dict[str, Any]:
    """prepare_env, then wait for its build run and ask again: the environment's final answer."""
    answer = await call(client, "prepare_env", {**args, "wait_s": 50}, timeout_s=70)
    deadline = time.monotonic() + timeout_s
    while answer["env"]["state"] == "building":
        assert time.monotonic() < deadline, answer
        await call(client, "run_status", {"run_id": answer["env"]["build_run"], "wait_s": 30}, timeout_s=45)
        answer = await call(client, "prepare_env", args, timeout_s=70)
    return answer


async def finished(client: Client, run_id: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status = await call(client, "run_status", {"run_id": run_id, "wait_s": 30}, timeout_s=45)
        if status["run"]["state"] not in ("queued", "starting", "running"):
            return status
        assert time.monotonic() < deadline, status


async def test_an_environment_is_built_once_and_used_by_a_run_without_network(
    lab: Client, backend: str, data_dir: Path
) -> None:
    args = {"requirements": f"{SMALL}\n# the one package\n", "backend": backend}
    first = await built(lab, args)
    env = first["env"]
    assert env["state"] == "ready", first
    assert first["lock"] == [SMALL]
    assert env["packages"] == 1 and env["size_bytes"] > 0 and env["backend"] == backend
    build = (await call(lab, "run_status", {"run_id": env["build_run"]}))["run"]
    assert (build["kind"], build["state"], build["env_id"]) == ("env", "succeeded", env["id"])

    before = (await call(lab, "list_runs", {}))["total"]
    started = time.perf_counter()
    again = await call(lab, "prepare_env", {"requirements": SMALL, "backend": backend})  # same set, other text
    took = time.perf_counter() - started
    assert again["cached"] is True and again["env"]["id"] == env["id"] and again["lock"] == [SMALL]
    assert (await call(lab, "list_runs", {}))["total"] == before  # no new build run
    assert took < 2.0, took

    script = "import six, sys; print('six', six.__version__, sys.prefix)"
    run = await call(lab, "run_experiment", {"command": f'python -c "{script}"', "workdir": None,
                                             "files": {"a": ""}, "python_env": env["id"], "wait_s": 30})  # fmt: skip
    done = await finished(lab, run["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    assert done["run"]["env_id"] == env["id"] and "python_env" not in done["run"]
    assert "six 1.16.0" in "\n".join(done["log_tail"])
    listed = await call(lab, "list_envs", {})
    [entry] = listed["envs"]
    assert entry["id"] == env["id"] and entry["last_used"] is not None and entry["packages"] == 1


async def test_a_run_cannot_write_into_its_environment(lab: Client, backend: str) -> None:
    env = (await built(lab, {"requirements": SMALL, "backend": backend}))["env"]
    assert env["state"] == "ready", env
    script = (
        "import os, six, sys\n"
        "target = os.path.join(sys.prefix, 'planted.txt')\n"
        "try:\n    open(target, 'w').write('x')\nexcept OSError as exc:\n    print('refused', exc.errno)\n"
        "else:\n    print('WROTE')\n"
        "try:\n    open(six.__file__, 'a').write('#')\nexcept OSError as exc:\n    print('refused', exc.errno)\n"
        "else:\n    print('WROTE')\n"
    )
    run = await call(lab, "run_experiment", {"command": "python check.py", "workdir": None,
                                             "files": {"check.py": script}, "python_env": env["id"]})  # fmt: skip
    done = await finished(lab, run["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    assert done["log_tail"].count("refused 30") == 2 and not [line for line in done["log_tail"] if "WROTE" in line]


async def test_a_requirement_that_does_not_exist_fails_naming_it_and_leaves_nothing(
    lab: Client, backend: str, data_dir: Path
) -> None:
    missing = "research-mcp-no-such-package-zz9"
    answer = await built(lab, {"requirements": f"{SMALL}\n{missing}==1.0\n", "backend": backend})
    assert answer["env"]["state"] == "failed", answer
    assert f"failed at {missing}" in answer["error"] and "not found" in answer["error"], answer["error"]
    assert not [p for p in (data_dir / "envs").iterdir() if p.name.startswith("env-")]
    assert (await call(lab, "list_envs", {}))["total"] == 0
    if backend == "docker":
        listed = await anyio.run_process(["docker", "volume", "ls", "-q", "--filter", "name=research-env-"])
        volumes = listed.stdout.decode().split()
        assert not [v for v in volumes if v.startswith(f"research-env-{answer['env']['id'].removeprefix('env-')}-")]
    run = await call_raw(lab, "run_experiment", {"command": "true", "workdir": None, "files": {"a": ""},
                                                 "python_env": answer["env"]["id"]})  # fmt: skip
    assert "No environment" in error_text(run)


async def test_an_environment_is_refused_on_another_backend_and_removed_on_request(
    lab: Client, backend: str, data_dir: Path
) -> None:
    env = (await built(lab, {"requirements": SMALL, "backend": backend}))["env"]
    assert env["state"] == "ready", env
    other = "docker" if backend == "local" else "local"
    run = await call_raw(lab, "run_experiment", {"command": "true", "workdir": None, "files": {"a": ""},
                                                 "backend": other, "python_env": env["id"]})  # fmt: skip
    assert f'backend="{other}"' in error_text(run)
    gone = await call(lab, "list_envs", {"remove": env["id"]})
    assert gone["removed"] == env["id"] and gone["total"] == 0
    assert not (data_dir / "envs" / env["id"]).exists()


async def test_a_repository_folder_gives_its_requirements(lab: Client, backend: str, workspace: Path) -> None:
    repo = workspace / "repos" / "demo"
    (repo / "requirements").mkdir(parents=True)
    (repo / "requirements.txt").write_text(f"-r requirements/base.txt\n{SMALL}\n")
    (repo / "requirements" / "base.txt").write_text("# shared\n")
    (repo / "requirements-dev.txt").write_text("pytest\n")
    answer = await built(lab, {"path": "repos/demo", "backend": backend})
    assert answer["env"]["sources"] == ["repos/demo/requirements.txt", "repos/demo/requirements/base.txt"]
    assert answer["lock"] == [SMALL]


async def test_torch_cpu_environment_trains_a_tiny_model_in_the_sandbox(lab: Client, backend: str) -> None:
    """The torch build: a CPU wheel (no GPU here), then a few SGD steps of a linear model in a run without
    network. The costly test of this file (a 190 MB wheel unpacked into a fresh environment)."""
    answer = await built(lab, {"requirements": "torch==2.13.0", "backend": backend}, timeout_s=900)
    assert answer["env"]["state"] == "ready", answer
    [torch] = [line for line in answer["lock"] if line.startswith("torch==")]
    assert torch.endswith("+cpu") and not [line for line in answer["lock"] if line.startswith("nvidia")]
    run = await call(lab, "run_experiment", {"command": "python train.py", "workdir": None,
                                             "files": {"train.py": TORCH_TRAIN}, "python_env": answer["env"]["id"],
                                             "memory_gb": 4})  # fmt: skip
    done = await finished(lab, run["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    assert "cuda False" in "\n".join(done["log_tail"])


@pytest.mark.docker
@pytest.mark.bwrap
def test_the_envs_bench_times_both_backends_and_removes_what_it_built(tmp_path: Path) -> None:
    out = tmp_path / "envs.json"
    argv = ["--envs", "--env-runs", "1", "--env-warmup", "1", "--env-calls", "5", "--out", str(out)]
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "evals.bench", *argv], cwd=repo, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "target <= 1.3x" in done.stdout and "target <= 2.0x" in done.stdout
    section = json.loads(out.read_text(encoding="utf-8"))["envs"]
    for backend in ("docker", "local"):
        entry = section[backend]
        for key in ("ours", "raw_uv", *(("raw_pip",) if backend == "local" else ())):
            assert entry[key]["n"] == 1 and entry[key]["min_ms"] > 0
        assert (entry["cached"]["tcp_connections"], entry["cached"]["new_runs"]) == (0, 0)
        assert entry["cached"]["cached"]["n"] == 5 and entry["ratio"] > 0
    assert len(section["left"]) == 2  # the two kept for the cached calls, removed at the end
    listed = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True, check=True).stdout
    assert not [v for v in listed.split() if any(v.startswith(f"research-env-{i[4:]}-") for i in section["left"])]


async def test_a_build_the_server_left_running_is_finalised_by_the_next_server(
    workspace: Path, data_dir: Path, backend: Literal["local", "docker"]
) -> None:
    settings = Settings(workspace=workspace, backend=backend, data_dir=data_dir)
    async with Client(build_server(settings), raise_exceptions=True) as first:
        queued = await call(first, "prepare_env", {"requirements": SMALL, "backend": backend})
    assert (queued["env"]["state"], queued["cached"]) == ("building", False)  # its server is gone now
    ready = workspace / "runs" / queued["env"]["build_run"] / "outputs" / "ready"
    async with Client(build_server(settings), raise_exceptions=True) as second:
        deadline = time.monotonic() + 120
        while not ready.exists():  # the build goes on without a server; the docker one needs the pump to start
            assert time.monotonic() < deadline
            await call(second, "list_runs", {})
            await anyio.sleep(0.2)
        again = await call(second, "prepare_env", {"requirements": SMALL, "backend": backend})
        assert (again["env"]["state"], again["cached"], again["lock"]) == ("ready", True, [SMALL])
        assert again["env"]["build_run"] == queued["env"]["build_run"]
        await call(second, "list_envs", {"remove": again["env"]["id"]})


async def test_a_cancelled_build_leaves_nothing_and_the_next_call_builds_again(
    lab: Client, backend: str, data_dir: Path
) -> None:
    queued = await call(lab, "prepare_env", {"requirements": SMALL, "backend": backend})
    cancelled = await call(lab, "cancel_run", {"run_id": queued["env"]["build_run"]})
    assert cancelled["run"]["state"] == "cancelled"
    told = await call(lab, "prepare_env", {"requirements": SMALL, "backend": backend})
    assert told["env"]["state"] == "failed" and "cancelled" in told["error"] and not told["cached"]
    assert not (data_dir / "envs" / queued["env"]["id"]).exists()
    rebuilt = await built(lab, {"requirements": SMALL, "backend": backend})
    assert rebuilt["env"]["state"] == "ready" and rebuilt["env"]["build_run"] != queued["env"]["build_run"]


async def test_an_environment_in_use_is_not_removed(lab: Client, backend: str) -> None:
    env = (await built(lab, {"requirements": SMALL, "backend": backend}))["env"]
    run = await call(lab, "run_experiment", {"command": "sleep 60", "workdir": None, "files": {"a": ""},
                                             "python_env": env["id"], "wait_s": 1})  # fmt: skip
    refused = await call_raw(lab, "list_envs", {"remove": env["id"]})
    assert f"in use by run(s) {run['run']['id']}" in error_text(refused)
    await call(lab, "cancel_run", {"run_id": run["run"]["id"]})
    assert (await call(lab, "list_envs", {"remove": env["id"]}))["removed"] == env["id"]


@pytest.mark.bwrap
async def test_without_uv_a_local_environment_is_built_with_pip(workspace: Path, data_dir: Path) -> None:
    from research_mcp.sandbox.envspec import read_spec
    from research_mcp.server.state import AppState

    state = AppState(Settings(workspace=workspace, backend="local", data_dir=data_dir))
    runs = state.runs(state.resolve_workspace(None).require())
    assert runs.envs is not None
    envs = runs.envs
    envs.uv = None  # as where the uv binary is missing
    try:
        answer = await anyio.to_thread.run_sync(
            lambda: envs.prepare(runs, read_spec(runs.ws, SMALL, None), backend="local", python=None)
        )
        await runs.wait(answer.env.build_run, 300)
        record = envs.load(answer.env.id)
        assert record is not None and record.installer == "pip"
        done = envs.finalise(record, runs)
        assert done.env.state == "ready", done
        assert done.lock is not None and SMALL in done.lock
        assert "pip install" in (workspace / "runs" / answer.env.build_run / "code" / "build.sh").read_text()
        with pytest.raises(SandboxError, match="pip install uv"):
            envs.prepare(runs, read_spec(runs.ws, SMALL, None), backend="docker", python=None)
    finally:
        state.close()


async def test_the_build_trusts_the_ca_bundle_setting_and_only_it(
    workspace: Path, data_dir: Path, backend: Literal["local", "docker"], tmp_path: Path
) -> None:
    """Behind this machine's TLS-intercepting proxy a bundle without the proxy's CA must fail the build (so the
    setting is what the installer trusts, with verification on), and the host's bundle must pass it."""
    host = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    end = "-----END CERTIFICATE-----"
    other = tmp_path / "one-root.pem"
    other.write_text(host[: host.index(end) + len(end)] + "\n")  # one public root, not the proxy's CA
    open_for_sandbox(tmp_path, other.parent)
    for bundle, works in ((other, False), (Path("/etc/ssl/certs/ca-certificates.crt"), True)):
        settings = Settings(workspace=workspace, backend=backend, data_dir=data_dir, ca_bundle=bundle)
        async with Client(build_server(settings), raise_exceptions=True) as client:
            answer = await built(client, {"requirements": SMALL, "backend": backend})
            if works:
                assert answer["env"]["state"] == "ready", answer
                await call(client, "list_envs", {"remove": answer["env"]["id"]})
            else:
                assert answer["env"]["state"] == "failed", answer
                assert "certificate" in answer["error"].lower() or "UnknownIssuer" in answer["error"], answer["error"]


async def test_a_run_of_another_workspace_keeps_its_environment(
    lab: Client, backend: Literal["local", "docker"], tmp_path: Path, data_dir: Path
) -> None:
    env = (await built(lab, {"requirements": SMALL, "backend": backend}))["env"]
    other = tmp_path / "other"
    other.mkdir()
    open_for_sandbox(tmp_path, other)
    settings = Settings(workspace=other, backend=backend, data_dir=data_dir)
    async with Client(build_server(settings), raise_exceptions=True) as second:
        run = await call(second, "run_experiment", {"command": "sleep 60", "workdir": None, "files": {"a": ""},
                                                    "python_env": env["id"], "wait_s": 1})  # fmt: skip
        refused = await call_raw(lab, "list_envs", {"remove": env["id"]})
        assert f"{run['run']['id']} (in {other.resolve()})" in error_text(refused)
        await call(second, "cancel_run", {"run_id": run["run"]["id"]})
    assert (await call(lab, "list_envs", {"remove": env["id"]}))["removed"] == env["id"]
