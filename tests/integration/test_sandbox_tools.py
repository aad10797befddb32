"""The sandbox conformance suite: the same experiments through the real MCP tools, against each real backend.

Each test runs once per backend: `local` (bubblewrap), `docker` (a real engine with the offline image) and `slurm`
(the single-node cluster `.ci/slurm-up` starts; SLURM_CONF names it). Backend-specific escape attempts live beside
each backend's own tests.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import ImageContent

from research_mcp.config import Settings
from research_mcp.server import build_server
from tests.conftest import open_for_sandbox
from tests.integration._client import call

pytestmark = pytest.mark.anyio

BACKENDS = [
    pytest.param("local", marks=pytest.mark.bwrap),
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("slurm", marks=[pytest.mark.slurm, pytest.mark.bwrap]),
]
Backend = Literal["local", "docker", "slurm"]
COMMAND = str(Path(sys.executable).parent / "research-mcp")

AI_SCIENTIST_EXPERIMENT = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", default="run_0")
args = parser.parse_args()
os.makedirs(args.out_dir, exist_ok=True)
final = {"shakespeare_char": {"means": {"final_train_loss_mean": 0.81, "best_val_loss_mean": 1.47}}}
with open(os.path.join(args.out_dir, "final_info.json"), "w") as f:
    json.dump(final, f)
with open(os.path.join(os.environ["RESEARCH_OUT"], "curve.csv"), "w") as f:
    f.write("step,loss\\n0,2.0\\n1,1.5\\n")
print("done", args.out_dir)
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """As root, runs are made by an unprivileged uid, which must be able to reach the run folders: pytest's
    temporary folders are 0700, so their parents are opened for search (o+x), as a user's would need to be."""
    root = tmp_path / "project"
    root.mkdir()
    open_for_sandbox(tmp_path, root)
    return root


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    found: Backend = request.param
    return found


@pytest.fixture
async def lab(workspace: Path, backend: Backend) -> AsyncIterator[Client]:
    settings = Settings(
        workspace=workspace, backend=backend, max_concurrent_runs=4, max_log_bytes=1 << 20, max_run_disk_bytes=64 << 20
    )
    async with Client(build_server(settings), raise_exceptions=True) as client:
        yield client


async def finish(client: Client, run_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status = await call(client, "run_status", {"run_id": run_id, "wait_s": 10})
        if status["run"]["state"] not in ("queued", "starting", "running"):
            return status
        assert time.monotonic() < deadline, status


async def test_a_run_succeeds_and_its_output_is_logged(lab: Client) -> None:
    started = await call(lab, "run_experiment", {"command": "python3 -c 'print(6 * 7)'", "workdir": None,
                                                 "files": {"x.txt": "x"}, "wait_s": 30})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert (done["run"]["state"], done["run"]["exit_code"]) == ("succeeded", 0)
    assert re.fullmatch(r"Exited with code 0 after \d+\.\d s\.", done["run"]["detail"])  # the same on every backend
    assert "42" in done["log_tail"]
    assert re.fullmatch(r"[0-9a-f]{12}", done["run"]["code_hash"])
    assert done["run"]["created_at"] == round(done["run"]["created_at"], 3)
    assert not [key for key, value in done["run"].items() if value is None]  # a field without a value is left out
    assert "label" not in done["run"] and "python_env" not in done["run"]
    assert not {"outputs", "metric_files", "plots", "outputs_not_listed"} & done.keys()  # wrote none: no empty lists
    assert done["next_step"]["tool"] == "run_logs"


async def test_a_non_zero_exit_is_a_failed_run_with_its_code(lab: Client) -> None:
    started = await call(lab, "run_experiment", {"command": "echo about to fail; exit 3", "workdir": None,
                                                 "files": {"a": ""}, "wait_s": 30})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert (done["run"]["state"], done["run"]["exit_code"], done["run"]["failure"]) == ("failed", 3, "error")
    assert re.fullmatch(r"Exited with code 3 after \d+\.\d s; the end of log.txt says why\.", done["run"]["detail"])
    assert "about to fail" in done["log_tail"]


async def test_a_run_past_its_timeout_is_killed_within_five_seconds(lab: Client) -> None:
    started = await call(lab, "run_experiment", {"command": "sleep 60", "workdir": None, "files": {"a": ""},
                                                 "timeout_s": 2})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert (done["run"]["state"], done["run"]["failure"]) == ("failed", "timeout")
    assert done["run"]["detail"] == "Killed at its wall-clock limit of 2 s (timeout_s), with every process."
    assert done["run"]["duration_s"] < 2 + 5


async def test_cancel_stops_a_run_and_leaves_nothing_running(lab: Client) -> None:
    marker = "61.2345"
    started = await call(lab, "run_experiment", {"command": f"sleep {marker} & sleep {marker}; wait",
                                                 "workdir": None, "files": {"a": ""}})  # fmt: skip
    run_id = started["run"]["id"]
    deadline = time.monotonic() + 60
    while (await call(lab, "run_status", {"run_id": run_id}))["run"]["state"] != "running":
        assert time.monotonic() < deadline
        await anyio.sleep(0.1)
    cancelled = await call(lab, "cancel_run", {"run_id": run_id})
    assert (cancelled["run"]["state"], cancelled["run"]["failure"]) == ("cancelled", "cancelled")
    ps = (await anyio.run_process(["ps", "-ww", "-eo", "args"])).stdout.decode()
    assert f"sleep {marker}" not in ps


# Not on Slurm: the test cluster has no task/cgroup plugin, so it does not hold --mem (a site's does); the mapping
# of Slurm's OUT_OF_MEMORY is unit-tested (tests/unit/test_slurm_script.py).
@pytest.mark.parametrize("backend", BACKENDS[:2])
async def test_a_memory_bomb_is_reported_as_oom(lab: Client, backend: Backend) -> None:
    bomb = "python3 -c 'x = [bytearray(8 << 20) for _ in range(64)]'"
    started = await call(lab, "run_experiment", {"command": bomb, "workdir": None, "files": {"a": ""},
                                                 "memory_gb": 0.0625})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert (done["run"]["state"], done["run"]["failure"]) == ("failed", "oom")
    assert "memory_gb" in done["next_step"]["why"]


async def test_an_output_flood_is_capped_and_keeps_the_final_traceback(lab: Client) -> None:
    flood = "import sys\nfor i in range(200_000): print('line', i, 'x' * 20)\nraise RuntimeError('the end')\n"
    started = await call(lab, "run_experiment", {"command": "python3 flood.py", "workdir": None,
                                                 "files": {"flood.py": flood}})  # fmt: skip
    run_id = started["run"]["id"]
    done = await finish(lab, run_id)
    assert done["run"]["state"] == "failed"
    logs = await call(lab, "run_logs", {"run_id": run_id, "tail": 3})
    assert logs["capped"] and logs["size_bytes"] <= (1 << 20) + 4096
    assert logs["lines"][0].startswith("Traceback (most recent call last):")
    assert logs["lines"][-1] == "RuntimeError: the end"


def make_venv(folder: Path) -> Path:
    """A virtualenv made from the system Python (its base /usr is in every sandbox) with a module only it has,
    and the system's site-packages (numpy) visible, as `python3 -m venv --system-site-packages` makes it."""
    subprocess.run(
        ["/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages", str(folder)], check=True
    )
    (site,) = (folder / "lib").glob("python3*/site-packages")
    (site / "labhelper.py").write_text("VALUE = 42\n")
    return folder


async def test_a_run_uses_the_python_environment_it_names(lab: Client, workspace: Path) -> None:
    venv = make_venv(workspace / ".venv")
    code = "import labhelper, numpy, sys; print('helper', labhelper.VALUE, numpy.ones(3).sum(), sys.prefix)"
    started = await call(lab, "run_experiment", {"command": f'python -c "{code}"', "workdir": None,
                                                 "files": {"a": ""}, "python_env": ".venv", "wait_s": 30})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert (done["run"]["state"], done["run"]["exit_code"]) == ("succeeded", 0), done["log_tail"]
    assert f"helper 42 3.0 {venv}" in done["log_tail"]
    # the environment is read-only to the run
    started = await call(lab, "run_experiment", {"command": f"touch {venv}/bin/x", "workdir": None,
                                                 "files": {"a": ""}, "python_env": ".venv", "wait_s": 30})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert done["run"]["state"] == "failed" and not (venv / "bin" / "x").exists()


async def test_a_named_python_environment_from_the_settings(workspace: Path, tmp_path: Path, backend: Backend) -> None:
    envs = tmp_path / "envs"
    envs.mkdir()
    envs.chmod(0o755)
    venv = make_venv(envs / "torchish")
    settings = Settings(workspace=workspace, backend=backend, python_envs={"torchish": venv})
    async with Client(build_server(settings), raise_exceptions=True) as client:
        command = "python -c 'import labhelper, sys; print(sys.prefix)'"
        started = await call(client, "run_experiment", {"command": command, "workdir": None, "files": {"a": ""},
                                                        "python_env": "torchish", "wait_s": 30})  # fmt: skip
        done = await finish(client, started["run"]["id"])
        assert done["run"]["exit_code"] == 0 and str(venv) in done["log_tail"], done["log_tail"]
        for wanted, says in (("nope", "neither a workspace folder nor a named environment (named: torchish)"),
                             ("../envs/torchish", "neither a workspace folder"),
                             (".", "has no bin/python")):  # fmt: skip
            result = await client.call_tool("run_experiment", {"command": "true", "files": {"a": ""},
                                                               "workdir": None, "python_env": wanted})  # fmt: skip
            assert result.is_error and says in result.content[0].text, result.content  # type: ignore[union-attr]


async def test_an_ai_scientist_script_with_out_dir_runs_unmodified_and_its_files_are_found(
    lab: Client, workspace: Path
) -> None:
    (workspace / "templates" / "nanoGPT").mkdir(parents=True)
    (workspace / "templates" / "nanoGPT" / "experiment.py").write_text(AI_SCIENTIST_EXPERIMENT)
    started = await call(lab, "run_experiment", {"command": "python3 experiment.py --out_dir run_1",
                                                 "workdir": "templates/nanoGPT", "label": "baseline", "seed": 0,
                                                 "config": {"lr": 0.001}, "wait_s": 30})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    folder = done["run"]["folder"]
    assert f"{folder}/work/run_1/final_info.json" in done["metric_files"]
    assert f"{folder}/outputs/curve.csv" in done["metric_files"]
    folder = workspace / folder
    info = json.loads((folder / "work" / "run_1" / "final_info.json").read_text())
    assert info["shakespeare_char"]["means"]["best_val_loss_mean"] == 1.47
    assert not (workspace / "templates" / "nanoGPT" / "run_1").exists()  # the workspace copy is untouched


async def test_twenty_runs_at_once_stay_under_the_limit_and_all_finish(lab: Client) -> None:
    ids = []
    for i in range(20):
        started = await call(lab, "run_experiment", {"command": f"sleep 0.3; echo run {i}", "workdir": None,
                                                     "files": {"a": ""}, "label": "swarm", "seed": i})  # fmt: skip
        ids.append(started["run"]["id"])
    finished = [await finish(lab, run_id, timeout_s=240) for run_id in ids]
    bad = [(f["run"]["failure"], f["run"]["detail"]) for f in finished if f["run"]["state"] != "succeeded"]
    assert not bad, bad
    spans = sorted((f["run"]["started_at"], f["run"]["ended_at"]) for f in finished)
    most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most <= 4
    listed = await call(lab, "list_runs", {"label": "swarm", "limit": 50})
    assert listed["total"] == 20


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_run_survives_the_server_being_killed_and_a_new_server_finds_it(workspace: Path, backend: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_MCP_")},
        "RESEARCH_MCP_BACKEND": backend,
    }
    params = StdioServerParameters(command=COMMAND, args=["serve", "--workspace", str(workspace)], env=env)
    with anyio.fail_after(60):
        async with Client(params, mode="legacy") as first:
            started = await call(first, "run_experiment", {"command": "sleep 3; echo survived", "workdir": None,
                                                           "files": {"a": ""}})  # fmt: skip
            run_id = started["run"]["id"]
            server_pid = _server_pid(workspace)
            os.kill(server_pid, signal.SIGKILL)
    async with Client(params, mode="legacy") as second:
        done = await finish(second, run_id)
    assert done["run"]["state"] == "succeeded" and "survived" in done["log_tail"]


def _server_pid(workspace: Path) -> int:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    pids = [int(line.split()[0]) for line in out.splitlines() if f"serve --workspace {workspace}" in line]
    assert len(pids) == 1, out
    return pids[0]


async def test_waiting_streams_the_latest_log_line_as_progress(lab: Client) -> None:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    script = "import time\nfor i in range(6):\n    print('step', i, flush=True)\n    time.sleep(0.4)\n"
    with anyio.fail_after(90):
        result = await lab.call_tool(
            "run_experiment",
            {"command": "python3 -u steps.py", "workdir": None, "files": {"steps.py": script}, "wait_s": 45},
            progress_callback=on_progress,
        )
    assert result.structured_content is not None and result.structured_content["run"]["state"] == "succeeded"
    steps = [m for m in seen if "step" in m]
    assert len(steps) >= 2 and steps[-1].endswith("step 5")


async def test_a_quiet_run_still_gets_a_progress_notification_every_few_seconds(lab: Client) -> None:
    at: list[tuple[float, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        at.append((time.monotonic(), message or ""))

    with anyio.fail_after(90):
        called = time.monotonic()
        result = await lab.call_tool(
            "run_experiment",
            {"command": "sleep 6", "workdir": None, "files": {"a": ""}, "wait_s": 30},
            progress_callback=on_progress,
        )
        returned = time.monotonic()
    assert result.structured_content is not None and result.structured_content["run"]["state"] == "succeeded"
    running = [message for _, message in at if message.startswith("running")]
    assert len(running) >= 2, at
    times = [called, *(t for t, _ in at), returned]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 3.5, at


@pytest.fixture
def other_netns() -> Iterator[tuple[str, int]]:
    """A network namespace made for this test, joined to the host by a veth pair, with a listener inside.
    Yields the listener's address and port; the host itself can reach it (so the sandbox test can fail)."""
    name = f"rmcp{os.getpid() % 100000}"
    host_if, ns_if = f"{name}h", f"{name}n"
    subnet = 200 + os.getpid() % 50
    host_ip, ns_ip, port = f"10.231.{subnet}.1", f"10.231.{subnet}.2", 18000 + os.getpid() % 1000
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
        ["ip", "link", "set", ns_if, "netns", name],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_if],
        ["ip", "-n", name, "link", "set", ns_if, "up"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
    ]
    listener: subprocess.Popen[bytes] | None = None
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=10)
        server = (
            "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('{ns_ip}', {port})); s.listen(); s.settimeout(120)\n"
            "while True:\n    c, _ = s.accept(); c.sendall(b'inside'); c.close()\n"
        )
        listener = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", server])
        deadline = time.monotonic() + 10
        while True:  # the host reaches it: the namespace and listener are real
            try:
                with socket.create_connection((ns_ip, port), timeout=1) as conn:
                    assert conn.recv(16) == b"inside"
                break
            except OSError:
                assert time.monotonic() < deadline, "the test's own listener never came up"
                time.sleep(0.05)
        yield ns_ip, port
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)


async def test_a_listener_in_another_network_namespace_is_unreachable(
    lab: Client, other_netns: tuple[str, int]
) -> None:
    address, port = other_netns
    probe = (
        "import socket\n"
        f"try:\n    socket.create_connection(('{address}', {port}), timeout=3).recv(16)\n    print('REACHED')\n"
        "except OSError as exc:\n    print('blocked', exc)\n"
    )
    started = await call(lab, "run_experiment", {"command": "python3 probe.py", "workdir": None,
                                                 "files": {"probe.py": probe}})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    assert any(line.startswith("blocked") for line in done["log_tail"]) and "REACHED" not in done["log_tail"]


async def test_a_multi_file_disk_fill_is_killed_while_a_healthy_run_beside_it_finishes(
    lab: Client, workspace: Path
) -> None:
    fill = (
        "import os, time\n"
        "for i in range(400):\n"  # 1.6 GB at most: past that the test has failed anyway
        "    with open(f'chunk{i}.bin', 'wb') as f: f.write(b'\\1' * (4 << 20))\n"
        "    time.sleep(0.01)\n"
    )
    filler = await call(lab, "run_experiment", {"command": "python3 fill.py", "workdir": None,
                                                "files": {"fill.py": fill}})  # fmt: skip
    healthy = await call(lab, "run_experiment", {"command": "sleep 2; echo healthy", "workdir": None,
                                                 "files": {"a": ""}})  # fmt: skip
    filled = await finish(lab, filler["run"]["id"])
    assert (filled["run"]["state"], filled["run"]["failure"]) == ("failed", "disk"), filled
    assert "RESEARCH_MCP_MAX_RUN_DISK_BYTES" in filled["next_step"]["why"]
    done = await finish(lab, healthy["run"]["id"])
    assert done["run"]["state"] == "succeeded" and "healthy" in done["log_tail"]
    written = sum(p.stat().st_size for p in (workspace / filled["run"]["folder"]).rglob("chunk*.bin"))
    assert written < 1 << 30


async def test_list_runs_filters_by_status(lab: Client) -> None:
    started = await call(lab, "run_experiment", {"command": "exit 4", "workdir": None, "files": {"a": ""}})
    await finish(lab, started["run"]["id"])
    failed = await call(lab, "list_runs", {"status": "failed"})
    assert [r["id"] for r in failed["runs"]] == [started["run"]["id"]]
    assert (await call(lab, "list_runs", {"status": "succeeded"}))["total"] == 0


LIMIT_KEYS = ("minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum")


def limits_of(prop: dict[str, Any]) -> dict[str, Any]:
    """The limits a JSON schema property sets, also inside the anyOf of a nullable one."""
    found = {key: prop[key] for key in LIMIT_KEYS if key in prop}
    for option in prop.get("anyOf", []):
        found |= limits_of(option)
    return found


async def test_run_experiment_takes_every_run_request_field_with_the_same_limits(tmp_path: Path) -> None:
    """The adapter's own schema (what the server validates) has RunRequest's limits; the listed one may leave out
    a long maxLength to save the model's context, and states no other limit."""
    from mcp.server.mcpserver.tools import Tool

    from research_mcp.sandbox.runs import RunRequest
    from research_mcp.server._manifest import collect

    [spec] = [spec for spec in collect("sandbox") if spec.name == "run_experiment"]
    adapter: dict[str, dict[str, Any]] = Tool.from_function(spec.fn).parameters["properties"]
    request: dict[str, dict[str, Any]] = RunRequest.model_json_schema()["properties"]
    assert set(request) <= set(adapter)
    assert {name: limits_of(adapter[name]) for name in request} == {name: limits_of(p) for name, p in request.items()}
    assert limits_of(adapter["label"]) == {"maxLength": 200}  # the comparison above compares something
    async with Client(build_server(Settings(workspace=tmp_path)), raise_exceptions=True) as client:
        [tool] = [t for t in (await client.list_tools()).tools if t.name == "run_experiment"]
    listed: dict[str, dict[str, Any]] = tool.input_schema["properties"]
    for name in request:
        assert limits_of(listed[name]).items() <= limits_of(adapter[name]).items(), name


async def test_an_overlong_label_is_refused_with_a_message_naming_it(tmp_path: Path) -> None:
    async with Client(build_server(Settings(workspace=tmp_path))) as client:
        result = await client.call_tool("run_experiment", {"command": "true", "label": "x" * 201})
    assert result.is_error
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert "label" in text and "200" in text and not (tmp_path / "runs").exists()


async def test_a_run_gets_its_share_of_the_cores_as_the_thread_counts_of_numeric_libraries(lab: Client) -> None:
    names = (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
    )
    script = f"import os\nprint('threads', *[os.environ.get(n) for n in {names!r}])\n"
    cores = os.cpu_count() or 1
    share = str(max(1, cores // min(cores, 4)))  # the lab fixture allows 4 runs at once
    asks: list[tuple[dict[str, Any], list[str]]] = [
        ({}, [share] * 5),
        ({"cpus": 1.5}, ["2"] * 5),
        ({"env": {"OMP_NUM_THREADS": "7"}}, ["7", *[share] * 4]),
    ]
    for extra, expected in asks:
        started = await call(lab, "run_experiment", {"command": "python3 t.py", "workdir": None,
                                                     "files": {"t.py": script}, "wait_s": 30, **extra})  # fmt: skip
        done = await finish(lab, started["run"]["id"])
        [line] = [line for line in done["log_tail"] if line.startswith("threads")]
        assert line.split()[1:] == expected, extra


@pytest.mark.bwrap
async def test_a_queued_run_starts_as_soon_as_the_slot_it_waits_for_frees(workspace: Path) -> None:
    from research_mcp.sandbox.models import WAIT_TICK_S

    settings = Settings(workspace=workspace, backend="local", max_concurrent_runs=1)
    gaps: list[float] = []
    async with Client(build_server(settings), raise_exceptions=True) as client:
        for _ in range(5):  # a waiter that looked at every tick would land this close by luck now and then
            first = await call(client, "run_experiment", {"command": "sleep 0.5", "workdir": None, "files": {"a": ""}})
            second = await call(client, "run_experiment", {"command": "true", "workdir": None, "files": {"a": ""}})
            assert second["run"]["state"] == "queued"
            await finish(client, second["run"]["id"])  # waits on the queued run, not on the one holding the slot
            ended = (await call(client, "run_status", {"run_id": first["run"]["id"]}))["run"]["ended_at"]
            started = (await call(client, "run_status", {"run_id": second["run"]["id"]}))["run"]["started_at"]
            gaps.append(started - ended)
    # the gap is the pump seeing the end and starting the next run (a few ms); a tick's look would be 0 to 250 ms
    assert all(0 <= gap < WAIT_TICK_S / 2 for gap in gaps), gaps


PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001"
    "0d0a2db40000000049454e44ae426082"
)
MAKES_RESULTS = f"""\
import os, helper
out = os.environ["RESEARCH_OUT"]
os.makedirs(os.path.join(out, ".ipynb_checkpoints"))
open(os.path.join(out, ".ipynb_checkpoints", "x.json"), "w").write("{{}}")
with open(os.path.join(out, "metrics.jsonl"), "w") as f:
    f.write('{{"step": 1, "loss": 0.5}}\\n{{"step": 2, "loss": 0.25}}\\n')
open(os.path.join(out, "curve.png"), "wb").write(bytes.fromhex("{PNG_1X1.hex()}"))
open("notes.txt", "w").write("lr 0.1 was stable\\n")
"""


async def test_a_finished_run_suggests_a_call_that_works_and_lists_its_files_from_the_workspace(
    lab: Client, workspace: Path
) -> None:
    files = {"main.py": MAKES_RESULTS, "helper.py": "X = 1\n"}
    started = await call(lab, "run_experiment", {"command": "python3 main.py", "workdir": None, "files": files,
                                                 "wait_s": 30})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    run_id, folder = done["run"]["id"], done["run"]["folder"]
    assert done["run"]["state"] == "succeeded", done["log_tail"]
    assert done["outputs"] == [f"{folder}/work/notes.txt"]  # each file listed once: metric files and plots apart
    assert done["metric_files"] == [f"{folder}/outputs/metrics.jsonl"]
    assert (workspace / folder / "work" / "__pycache__").is_dir()  # made, but a cache: not listed
    assert done["plots"] == [f"{folder}/outputs/curve.png"] and (workspace / done["plots"][0]).is_file()
    step = done["next_step"]
    assert (step["tool"], step["arguments"]) == ("read_metrics", {"source": run_id})
    metrics = await call(lab, step["tool"], step["arguments"])
    assert {m["name"]: m["last"] for m in metrics["metrics"]}["loss"] == 0.25
    for path in [*done["outputs"], *done["metric_files"]]:
        assert (await call(lab, "read_file", {"path": path}))["text"]
    # without metric files the suggestion is to read what it wrote, and that works too
    plain = await call(lab, "run_experiment", {"command": "echo done > $RESEARCH_OUT/report.txt", "workdir": None,
                                               "files": {"a": ""}, "wait_s": 30})  # fmt: skip
    plain = await finish(lab, plain["run"]["id"])
    step = plain["next_step"]
    assert (step["tool"], step["arguments"]) == ("read_file", {"path": f"{plain['run']['folder']}/outputs/report.txt"})
    assert "done" in (await call(lab, step["tool"], step["arguments"]))["text"]
    # the plot itself, when asked for: as an image, beside the same record
    shown = await lab.call_tool("run_status", {"run_id": run_id, "plots": 1})
    [picture] = [block for block in shown.content if isinstance(block, ImageContent)]
    assert picture.mime_type == "image/png" and base64.b64decode(picture.data) == PNG_1X1
    assert shown.structured_content is not None and shown.structured_content["plots"] == done["plots"]
    plain_status = await lab.call_tool("run_status", {"run_id": run_id})
    assert not [block for block in plain_status.content if isinstance(block, ImageContent)]


async def test_an_environment_whose_interpreter_cannot_start_is_blamed_not_the_code(
    lab: Client, workspace: Path
) -> None:
    venv = make_venv(workspace / ".venv")
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").symlink_to("/nonexistent/python3")
    started = await call(lab, "run_experiment", {"command": "python -c pass", "workdir": None, "files": {"a": ""},
                                                 "python_env": ".venv", "wait_s": 30})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert (done["run"]["state"], done["run"]["exit_code"], done["run"]["python_env"]) == ("failed", 127, ".venv")
    why = done["next_step"]["why"]
    assert "the environment's interpreter could not be started (exit 127)" in why.lower(), why
    assert "its bin/python leads to /nonexistent/python3, which does not exist" in why
    assert "not found" in why and "fix the code" not in why.replace("not fix the code", "")
    # the same exit without a python_env is the code's to fix
    started = await call(lab, "run_experiment", {"command": "exit 127", "workdir": None, "files": {"a": ""}})
    done = await finish(lab, started["run"]["id"])
    assert "fix the code" in done["next_step"]["why"]
