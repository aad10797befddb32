"""The slurm backend against a real cluster (the single node `.ci/slurm-up` starts; SLURM_CONF names it): what
the conformance suite (test_sandbox_tools.py) does not cover. Runs go through a real MCP client session, except
where the backend's own calls (job arrays, adopting a job whose submission was never recorded) are the subject."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from research_mcp.config import Settings
from research_mcp.errors import SandboxError
from research_mcp.sandbox._slurm_script import Site
from research_mcp.sandbox.base import RunHandle, RunSpec
from research_mcp.sandbox.slurm import SlurmBackend
from research_mcp.server import build_server
from tests.conftest import open_for_sandbox
from tests.integration._client import call, call_raw, error_text

pytestmark = [pytest.mark.anyio, pytest.mark.slurm, pytest.mark.bwrap]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    open_for_sandbox(tmp_path, root)
    return root


@pytest.fixture
async def lab(workspace: Path) -> AsyncIterator[Client]:
    async with Client(build_server(Settings(workspace=workspace, backend="slurm")), raise_exceptions=True) as client:
        yield client


async def finish(client: Client, run_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status = await call(client, "run_status", {"run_id": run_id, "wait_s": 10})
        if status["run"]["state"] not in ("queued", "starting", "running"):
            return status
        assert time.monotonic() < deadline, status


def slurm_knows(job_id: str) -> bool:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False)
    return out.returncode == 0


def cluster_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, check=True).stdout
    return int(out.strip().split("/")[-1])  # allocated/idle/other/total


async def test_runs_beyond_the_clusters_cpus_wait_in_slurms_queue_saying_why(lab: Client) -> None:
    per_run = max(1, cluster_cpus() // 2)  # two runs fill the cluster, the other eight wait
    ids = []
    for i in range(10):
        started = await call(lab, "run_experiment", {"command": "sleep 30", "workdir": None, "files": {"a": ""},
                                                     "cpus": per_run, "label": "crowd", "seed": i})  # fmt: skip
        ids.append(started["run"]["id"])
    try:
        deadline = time.monotonic() + 30
        while True:
            runs = [(await call(lab, "run_status", {"run_id": run_id}))["run"] for run_id in ids]
            waiting = [run for run in runs if "Pending in Slurm's queue" in run.get("detail", "")]
            said = {run["detail"] for run in waiting} - {
                "Pending in Slurm's queue: not yet looked at by the scheduler."
            }
            if len(waiting) == 8 and said:  # the scheduler looks at the queue in turns: some say so sooner
                break
            assert time.monotonic() < deadline, runs
            await anyio.sleep(0.3)
        assert said <= {
            "Pending in Slurm's queue: waiting for free CPUs and memory: Resources.",
            "Pending in Slurm's queue: waiting behind jobs of higher priority: Priority.",
        }, said
        assert all(run["state"] == "running" for run in runs), runs  # in Slurm's hands: submitted, not queued here
    finally:
        for run_id in ids:
            await call(lab, "cancel_run", {"run_id": run_id})
    listed = await call(lab, "list_runs", {"label": "crowd", "limit": 20})
    assert {run["state"] for run in listed["runs"]} == {"cancelled"}


async def test_a_restarted_server_learns_how_a_run_ended_after_slurm_forgot_the_job(workspace: Path) -> None:
    settings = Settings(workspace=workspace, backend="slurm")
    async with Client(build_server(settings), raise_exceptions=True) as first:
        started = await call(first, "run_experiment", {"command": "sleep 1; echo leaving; exit 5", "workdir": None,
                                                       "files": {"a": ""}, "wait_s": 0.5})  # fmt: skip
        run_id = started["run"]["id"]
        assert started["run"]["state"] == "running"  # submitted before this server goes
    folder = workspace / "runs" / run_id  # the server is gone; the job goes on, ends, and Slurm forgets it
    deadline = time.monotonic() + 60
    while not (folder / "end.json").exists():
        assert time.monotonic() < deadline
        await anyio.sleep(0.2)
    job_id = json.loads((folder / "started.json").read_text())["job_id"]
    assert f"#SBATCH --job-name=rmcp-{run_id}" in (folder / "job.sh").read_text()  # the job kept its script there
    while slurm_knows(job_id):  # MinJobAge=2 in the test cluster; slurmctld purges about every 10 s
        assert time.monotonic() < deadline + 60, f"Slurm still knows job {job_id}"
        await anyio.sleep(0.5)
    async with Client(build_server(settings), raise_exceptions=True) as second:
        done = await finish(second, run_id)
    run = done["run"]
    assert (run["state"], run["exit_code"], run["failure"]) == ("failed", 5, "error")
    assert run["detail"].startswith("Exited with code 5 after 1.")
    assert "leaving" in done["log_tail"]


ESCAPE = """\
import os, socket, subprocess
def attempt(name, action):
    try:
        action()
        print("ESCAPED", name)
    except Exception as exc:
        print("blocked", name, type(exc).__name__)
attempt("shadow", lambda: open("/etc/shadow").read())
attempt("workspace", lambda: open(os.environ["TARGET"] + "/planted.txt", "w").write("x"))
attempt("var-tmp", lambda: open("/var/tmp/planted-by-run.txt", "w").write("x"))
def munge():
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["MUNGE"])
attempt("munge", munge)
def submit():
    out = subprocess.run(["sbatch", "--wrap", "true"], capture_output=True, text=True, timeout=5)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
attempt("sbatch", submit)
def slurmd():
    names = [open(f"/proc/{p}/comm").read().strip() for p in os.listdir("/proc") if p.isdigit()]
    if "slurmd" not in names:
        raise LookupError(names)
attempt("slurmd", slurmd)
print("uid", os.getuid(), "job", os.environ.get("SLURM_JOB_ID"))
"""


async def test_a_job_that_tries_to_leave_its_sandbox_on_the_node_is_held(lab: Client, workspace: Path) -> None:
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).read_text()
    socket_path = next(
        (part.split("=", 1)[1] for line in conf.splitlines() if line.startswith("AuthInfo")
         for part in line.split("=", 1)[1].split(",") if part.startswith("socket=")),
        "/run/munge/munge.socket.2",
    )  # fmt: skip
    env = {"TARGET": str(workspace), "MUNGE": socket_path}
    started = await call(lab, "run_experiment", {"command": "python3 escape.py", "workdir": None,
                                                 "files": {"escape.py": ESCAPE}, "env": env})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    log = done["log_tail"]
    blocked = {line.split()[1] for line in log if line.startswith("blocked")}
    assert blocked == {"shadow", "workspace", "var-tmp", "munge", "sbatch", "slurmd"}, log
    assert not [line for line in log if line.startswith("ESCAPED")]
    assert not (workspace / "planted.txt").exists() and not Path("/var/tmp/planted-by-run.txt").exists()
    [who] = [line for line in log if line.startswith("uid")]
    uid, job = who.split()[1], who.split()[3]
    assert uid == ("65534" if os.geteuid() == 0 else str(os.geteuid())) and job.isdigit()  # SLURM_* passed in


def spec_in(root: Path, run_id: str, **fields: Any) -> RunSpec:
    run_dir = root / "runs" / run_id
    (run_dir / "work").mkdir(parents=True)
    (run_dir / "outputs").mkdir()
    return RunSpec.model_validate({"run_id": run_id, "run_dir": run_dir, "command": "true", "timeout_s": 60} | fields)


async def test_a_batch_is_one_job_array_and_a_lost_submission_is_adopted_by_name(workspace: Path) -> None:
    held = SlurmBackend(Site(array_throttle=2, sbatch_args=("--hold",)))  # held: they stay pending, unstarted
    specs = [spec_in(workspace, f"member-{i}") for i in range(3)]
    odd = spec_in(workspace, "bigger", memory_bytes=64 << 20)
    handles: list[RunHandle] = []
    try:
        results = await held.start_batch([*specs, odd])
        handles = [h for h in results if isinstance(h, RunHandle)]
        assert len(handles) == 4, results
        array = handles[0].ref.split("_")[0]
        assert [h.ref for h in handles[:3]] == [f"{array}_{i}" for i in range(3)]
        assert handles[3].ref.isdigit() and handles[3].ref != array  # other resources: a job of its own
        shown = (await anyio.run_process(["scontrol", "show", "job", "-o", f"{array}_1"])).stdout.decode()
        assert "ArrayTaskThrottle=2" in shown and "JobName=rmcp-member-0" in shown
        # a server that died before recording the handles finds the same jobs again
        fresh = SlurmBackend(Site())
        adopted = [await fresh.adopt(spec) for spec in [*specs, odd]]
        assert [h.ref if h else None for h in adopted] == [h.ref for h in handles]
        status = await fresh.poll(handles[1])
        assert status.state == "running" and status.detail is not None
        assert status.detail.startswith("Pending in Slurm's queue: held by its user")
        assert await fresh.adopt(spec_in(workspace, "never-submitted")) is None
    finally:
        for handle in handles:
            await held.cancel(handle)
    ended = [await held.poll(handle) for handle in handles]
    assert {(s.state, s.failure) for s in ended} == {("exited", "cancelled")}


async def test_start_refuses_what_it_cannot_contain_and_says_what_to_set(workspace: Path) -> None:
    backend = SlurmBackend(Site(container="none"))
    [result] = await backend.start_batch([spec_in(workspace, "plain")])
    assert not isinstance(result, RunHandle) and "RESEARCH_MCP_ALLOW_UNSANDBOXED" in str(result)
    [result] = await SlurmBackend(Site(container="apptainer")).start_batch([spec_in(workspace, "image")])
    assert not isinstance(result, RunHandle) and "RESEARCH_MCP_SLURM_IMAGE" in str(result)
    assert not (workspace / "runs" / "plain" / "job.sh").exists()


def our_sbatch_children() -> list[int]:
    """Processes named sbatch whose parent is this test process (running or not yet reaped)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
        except (OSError, IndexError):
            continue
        if name == "sbatch" and int(fields[1].split()[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


def down_conf(folder: Path) -> Path:
    """This cluster's configuration with the controller's port moved to one nobody listens on: the real client
    tools retry for seconds (sbatch and squeue about 9), then fail."""
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).read_text()
    lines = [line for line in conf.splitlines() if not line.startswith("SlurmctldPort=")]
    (folder / "down.conf").write_text("\n".join([*lines, "SlurmctldPort=6999"]) + "\n")
    return folder / "down.conf"


@pytest.fixture
def controller_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CONF", str(down_conf(tmp_path)))


async def said(client: Client, run_id: str, prefix: str, state: str, timeout_s: float = 40) -> dict[str, Any]:
    """The run once its detail starts with `prefix` (the client tools retry for about 9 s before they fail),
    staying in `state` meanwhile."""
    deadline = time.monotonic() + timeout_s
    while (
        not (run := (await call(client, "run_status", {"run_id": run_id}))["run"]).get("detail", "").startswith(prefix)
    ):
        assert run["state"] == state and time.monotonic() < deadline, run
        await anyio.sleep(0.5)
    return run


async def test_a_controller_that_does_not_answer_fails_the_submission_saying_so(
    workspace: Path, controller_down: None
) -> None:
    backend = SlurmBackend(Site(), command_timeout_s=1.0)
    began = time.monotonic()
    results = await backend.start_batch([spec_in(workspace, f"m-{i}") for i in range(3)])
    assert time.monotonic() - began < 5
    assert all(not isinstance(r, RunHandle) and "did not answer within 1 s" in str(r) for r in results), results
    assert our_sbatch_children() == []  # killed and reaped
    began = time.monotonic()  # runs still queued in the server wait, without asking Slurm again at every tick
    with pytest.raises(SandboxError, match="did not answer within 1 s"):
        backend.capacity()
    assert time.monotonic() - began < 0.1
    with anyio.move_on_after(0.3) as waited:  # the caller gives up first: sbatch must not submit later
        await backend.start(spec_in(workspace, "cancelled"))
    assert waited.cancelled_caught and our_sbatch_children() == []


async def test_a_running_run_says_when_slurm_cannot_be_asked_and_is_cancelled_once_it_answers(
    lab: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = await call(lab, "run_experiment", {"command": "sleep 60", "workdir": None, "files": {"a": ""}})
    run_id = started["run"]["id"]
    up = os.environ["SLURM_CONF"]
    try:
        deadline = time.monotonic() + 60
        while (await call(lab, "run_status", {"run_id": run_id}))["run"]["state"] != "running":
            assert time.monotonic() < deadline
            await anyio.sleep(0.2)
        monkeypatch.setenv("SLURM_CONF", str(down_conf(tmp_path)))
        run = await said(lab, run_id, "Its state cannot be read now", "running")  # after squeue's retries
        assert run["detail"].startswith("Its state cannot be read now: Slurm cannot be asked now"), run
        assert "Unable to contact slurm controller" in run["detail"] and "scontrol ping" in run["detail"]
    finally:
        monkeypatch.setenv("SLURM_CONF", up)
        await call(lab, "cancel_run", {"run_id": run_id})
    assert (await call(lab, "run_status", {"run_id": run_id}))["run"]["state"] == "cancelled"


async def test_a_run_queued_while_the_controller_is_away_says_why_and_starts_once_it_answers(
    lab: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = os.environ["SLURM_CONF"]
    monkeypatch.setenv("SLURM_CONF", str(down_conf(tmp_path)))
    try:
        started = await call(lab, "run_experiment", {"command": "true", "workdir": None, "files": {"a": ""}})
        run_id = started["run"]["id"]
        run = await said(lab, run_id, "Waiting in this server's queue", "queued")  # after sinfo's retries
        assert run["state"] == "queued" and "the slurm backend cannot take runs now" in run["detail"], run
        assert "Unable to contact slurm controller" in run["detail"], run
    finally:
        monkeypatch.setenv("SLURM_CONF", up)
    done = await finish(lab, run_id)  # Slurm is asked again within 10 s
    assert done["run"]["state"] == "succeeded" and "Waiting" not in done["run"].get("detail", ""), done


async def test_sbatch_refusing_a_job_fails_the_submission_with_its_words(workspace: Path) -> None:
    backend = SlurmBackend(Site(partition="no-such-partition"))
    [result] = await backend.start_batch([spec_in(workspace, "lost")])
    assert not isinstance(result, RunHandle)
    assert "sbatch failed (exit 1)" in str(result) and "invalid partition" in str(result), result


async def test_lab_info_shows_the_cluster(lab: Client) -> None:
    info = await call(lab, "lab_info", {})
    assert "slurm" in info["backends"]
    cluster = info["cluster"]
    [partition] = [p for p in cluster["partitions"] if p.get("default")]
    assert partition["cpus"] == cluster_cpus() and partition["nodes"] >= 1 and partition["state"] == "up"


TRAIN = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
parser.add_argument("--seed", type=int)
args = parser.parse_args()
assert json.loads(os.environ["RESEARCH_CONFIG"]) == {"lr": args.lr}
loss = 1.0 / args.lr / 1000 + args.seed * 0.001
with open(os.path.join(os.environ["RESEARCH_OUT"], "final_info.json"), "w") as f:
    json.dump({"toy": {"means": {"val_loss": loss}}}, f)
"""


async def test_a_sweep_is_one_job_array_whose_runs_are_read_and_compared_by_config(
    lab: Client, workspace: Path
) -> None:
    (workspace / "exp").mkdir()
    (workspace / "exp" / "train.py").write_text(TRAIN)
    started = await call(lab, "run_sweep", {"command": "python3 train.py --lr {lr} --seed {seed}", "workdir": "exp",
                                            "grid": {"lr": [0.1, 0.01, 0.001]}, "seeds": [0, 1, 2],
                                            "timeout_s": 120})  # fmt: skip
    sweep_id = started["sweep"]["id"]
    deadline = time.monotonic() + 120
    while True:
        found = await call(lab, "list_runs", {"sweep_id": sweep_id, "limit": 20})
        if not {"queued", "starting", "running"} & found["sweep"]["counts"].keys():
            break
        assert time.monotonic() < deadline, found["sweep"]
        await anyio.sleep(0.3)
    assert found["sweep"]["counts"] == {"succeeded": 9}, found["runs"]
    jobs = [json.loads((workspace / r["folder"] / "started.json").read_text())["job_id"] for r in found["runs"]]
    assert len({job.split("_")[0] for job in jobs}) == 1 and all("_" in job for job in jobs), jobs  # one array
    assert sorted(int(job.split("_")[1]) for job in jobs) == list(range(9))
    compared = await call(lab, "compare_runs", {"metric": "val_loss", "run_ids": [sweep_id]})
    groups = {g["name"]: g for g in compared["groups"]}
    assert set(groups) == {"lr=0.1", "lr=0.01", "lr=0.001"} and {g["n"] for g in groups.values()} == {3}
    assert groups["lr=0.1"]["mean"] == pytest.approx(0.01 + 0.001)


async def test_an_environment_for_slurm_is_built_here_and_used_by_a_job(workspace: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # the nodes see it as they see the workspace (one node here)
    data_dir.mkdir()
    open_for_sandbox(tmp_path, data_dir)
    async with Client(build_server(Settings(workspace=workspace, backend="slurm", data_dir=data_dir)),
                      raise_exceptions=True) as client:  # fmt: skip
        args = {"requirements": "six==1.16.0", "backend": "slurm"}
        answer = await call(client, "prepare_env", {**args, "wait_s": 50}, timeout_s=70)
        deadline = time.monotonic() + 300
        while answer["env"]["state"] == "building":
            assert time.monotonic() < deadline, answer
            await call(client, "run_status", {"run_id": answer["env"]["build_run"], "wait_s": 30}, timeout_s=45)
            answer = await call(client, "prepare_env", args, timeout_s=70)
        env = answer["env"]
        assert env["state"] == "ready" and env["backend"] == "slurm" and answer["lock"] == ["six==1.16.0"], answer
        build = (await call(client, "run_status", {"run_id": env["build_run"]}))["run"]
        assert build["backend"] == "local" and build["kind"] == "env"  # built on this machine, which has the network
        script = "import six, sys; print('six', six.__version__, sys.prefix)"
        run = await call(client, "run_experiment", {"command": f'python -c "{script}"', "workdir": None,
                                                    "files": {"a": ""}, "python_env": env["id"]})  # fmt: skip
        done = await finish(client, run["run"]["id"])
        assert done["run"]["state"] == "succeeded" and done["run"]["backend"] == "slurm", done
        assert f"six 1.16.0 {data_dir}/envs/{env['id']}/venv" in "\n".join(done["log_tail"])
        local = await call_raw(client, "run_experiment", {"command": "true", "workdir": None, "files": {"a": ""},
                                                          "backend": "local", "python_env": env["id"]})  # fmt: skip
        assert 'backend="local"' in error_text(local)
        await call(client, "list_envs", {"remove": env["id"]})


async def test_an_environment_is_refused_where_slurm_runs_use_an_images_python(workspace: Path) -> None:
    settings = Settings(workspace=workspace, backend="slurm", slurm_container="apptainer", slurm_image="x.sif")
    async with Client(build_server(settings), raise_exceptions=True) as client:
        refused = await call_raw(client, "prepare_env", {"requirements": "six", "backend": "slurm"})
    assert "image's Python" in error_text(refused) and "RESEARCH_MCP_SLURM_CONTAINER=apptainer" in error_text(refused)
