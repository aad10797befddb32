"""The slurm backend's batch scripts and its reading of Slurm's answers, as pure functions; the scripts are also
checked by bash itself and, where bubblewrap works, run outside Slurm (they are plain bash)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from research_mcp.sandbox._slurm_script import (
    Site,
    array_members,
    array_script,
    batch_key,
    job_script,
    time_limit,
)
from research_mcp.sandbox._slurm_states import (
    JobEnd,
    JobInfo,
    parse_gres,
    parse_sacct,
    parse_scontrol,
    parse_squeue,
    pending_words,
    status_of,
)
from research_mcp.sandbox.base import Mount, RunSpec
from research_mcp.sandbox.slurm_cluster import fs_type, shared_fs_problem
from tests.conftest import open_for_sandbox


def spec_in(folder: Path, run_id: str = "20261207-120000-abcdef", **fields: object) -> RunSpec:
    run_dir = folder / "runs" / run_id
    (run_dir / "work").mkdir(parents=True, exist_ok=True)
    (run_dir / "outputs").mkdir(exist_ok=True)
    values: dict[str, object] = {"run_id": run_id, "run_dir": run_dir, "command": "echo hi", "timeout_s": 30}
    return RunSpec.model_validate(values | fields)


def sbatch_options(script: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            name, _, value = line.removeprefix("#SBATCH ").partition("=")
            options[name] = value
    return options


def syntax_ok(script: str, tmp_path: Path) -> None:
    path = tmp_path / "check.sh"
    path.write_text(script)
    out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_time_is_the_timeout_plus_the_margin_rounded_up_to_minutes() -> None:
    assert time_limit(5, 60) == "0-00:02:00"  # 65 s -> 2 min
    assert time_limit(60, 0) == "0-00:01:00"
    assert time_limit(0.5, 0) == "0-00:01:00"
    assert time_limit(3601, 60) == "0-01:02:00"
    assert time_limit(3 * 86400 + 1, 0) == "3-00:01:00"


def test_a_plain_run_asks_for_one_cpu_its_time_and_names_itself_after_the_run(tmp_path: Path) -> None:
    spec = spec_in(tmp_path)
    script = job_script(spec, Site(), None)
    assert script.startswith("#!/bin/bash\n")
    options = sbatch_options(script)
    assert options == {
        "--job-name": f"rmcp-{spec.run_id}",
        "--output": f"{spec.run_dir}/slurm-%j.out",
        "--export": "PATH,HOME,USER,LANG,TMPDIR",  # not the server's tokens
        "--ntasks": "1",
        "--cpus-per-task": "1",
        "--time": "0-00:02:00",
    }
    syntax_ok(script, tmp_path)


def test_gpus_memory_cpus_account_partition_qos_and_extra_options(tmp_path: Path) -> None:
    spec = spec_in(tmp_path, gpus=[0, 1], cpus=2.5, memory_bytes=3 * 2**30 + 1, timeout_s=7200)
    site = Site(partition="gpu", account="proj42", qos="high", sbatch_args=("--constraint=a100",))
    options = sbatch_options(job_script(spec, site, None))
    assert options["--gres"] == "gpu:2" and "--gpus" not in options
    assert (options["--cpus-per-task"], options["--mem"]) == ("3", "3073M")  # rounded up, never down
    assert options["--time"] == "0-02:01:00"
    assert (options["--partition"], options["--account"], options["--qos"]) == ("gpu", "proj42", "high")
    assert options["--constraint"] == "a100"
    typed = sbatch_options(job_script(spec, Site(gpu_option="gpus", gpu_type="a100"), None))
    assert typed["--gpus"] == "gpu:a100:2" and "--gres" not in typed
    assert sbatch_options(job_script(spec, Site(gpu_type="v100"), None))["--gres"] == "gpu:v100:2"


def test_runs_with_equal_resources_share_an_array_whose_tasks_pick_their_run(tmp_path: Path) -> None:
    specs = [spec_in(tmp_path, f"run-{i}", command=f"echo {i}") for i in range(3)]
    assert len({batch_key(spec) for spec in specs}) == 1  # the command and environment differ, the script does not
    assert batch_key(spec_in(tmp_path, "big", memory_bytes=1 << 30)) != batch_key(specs[0])
    assert batch_key(spec_in(tmp_path, "long", timeout_s=31)) != batch_key(specs[0])
    script = array_script(specs, Site(array_throttle=2, partition="short"), None)
    options = sbatch_options(script)
    assert options["--array"] == "0-2%2" and options["--partition"] == "short"
    assert options["--output"] == f"{specs[0].run_dir}/slurm-%A_%a.out"
    assert sbatch_options(array_script(specs, Site(), None))["--array"] == "0-2"  # no throttle
    assert array_members(script) == [str(spec.run_dir) for spec in specs]
    syntax_ok(script, tmp_path)


@pytest.mark.bwrap
def test_each_array_task_runs_its_own_command_and_environment_in_its_own_folder(tmp_path: Path) -> None:
    user = (65534, 65534) if os.geteuid() == 0 else None
    open_for_sandbox(tmp_path, tmp_path)
    specs = [
        spec_in(tmp_path, f"member-{i}", command=f"echo task {i} lr=$LR; echo $RESEARCH_OUT; pwd", env={"LR": f"0.{i}"})
        for i in range(3)
    ]
    script = specs[0].run_dir / "array.sh"
    script.write_text(array_script(specs, Site(), user))
    env = {"PATH": "/usr/bin:/bin", "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_ID": "78"}
    subprocess.run(["bash", str(script)], env=env, check=False, timeout=60)
    assert (specs[1].run_dir / "log.txt").read_text() == "task 1 lr=0.1\n/outputs\n/work\n"
    assert json.loads((specs[1].run_dir / "end.json").read_text())["exit_code"] == 0
    assert json.loads((specs[1].run_dir / "started.json").read_text())["job_id"] == "77_1"
    assert not (specs[0].run_dir / "end.json").exists() and not (specs[2].run_dir / "end.json").exists()


def test_the_bwrap_script_runs_the_local_sandbox_with_the_site_binds_and_the_jobs_variables(tmp_path: Path) -> None:
    open_for_sandbox(tmp_path, tmp_path)  # else, as root, the run folder is staged (bwrap.py) and bound from there
    spec = spec_in(tmp_path, ro_paths=["/opt/envs/torch"], mounts=[Mount(source="/data/x", dest="/data")])
    script = job_script(spec, Site(binds=("/apps", "/scratch")), (65534, 65534))
    assert "--unshare-all" in script and "--share-net" not in script
    assert f"run={spec.run_dir}" in script  # the shared part names the run's folder "$run"
    assert '--bind "$run"/work /work' in script and '--bind "$run"/outputs /outputs' in script
    assert "--ro-bind /opt/envs/torch /opt/envs/torch" in script and "--ro-bind /data/x /data" in script
    assert "--ro-bind-try /apps /apps" in script and "--ro-bind-try /scratch /scratch" in script
    assert "setpriv --reuid=65534" in script and "chown -R -h -P 65534:65534" in script
    assert "SLURM_*|CUDA_VISIBLE_DEVICES" in script and "/dev/nvidia*" in script
    assert "timeout --kill-after=5 30 " in script
    networked = job_script(spec_in(tmp_path, "net", network=True), Site(), None)
    assert "--share-net" in networked and "--ro-bind-try /etc/resolv.conf" in networked
    syntax_ok(script, tmp_path)


def test_apptainer_and_pyxis_contain_the_command_in_the_sites_image(tmp_path: Path) -> None:
    spec = spec_in(tmp_path, gpus=[0], env={"LR": "0.1"})
    apptainer = job_script(spec, Site(container="apptainer", image="/images/torch.sif", binds=("/apps",)), None)
    assert "apptainer exec --containall --cleanenv --no-home --pwd /work" in apptainer
    assert "command='echo hi'" in apptainer and "envs=(LR 0.1)" in apptainer
    assert '--net --network none --nv /images/torch.sif /bin/sh -c "$command"' in apptainer
    assert '--bind "$run"/work:/work' in apptainer and "--bind /apps:/apps:ro" in apptainer
    assert 'export "APPTAINERENV_${envs[k]}=${envs[k+1]}"' in apptainer
    assert "APPTAINERENV_RESEARCH_OUT=/outputs" in apptainer
    syntax_ok(apptainer, tmp_path)
    pyxis = job_script(spec, Site(container="pyxis", image="nvcr.io#nvidia/pytorch:24.01-py3"), None)
    assert "srun --ntasks=1 '--container-image=nvcr.io#nvidia/pytorch:24.01-py3'" in pyxis
    assert '--container-mounts="$run"/work:/work,"$run"/outputs:/outputs' in pyxis
    assert "--container-workdir=/work" in pyxis and 'export "${envs[k]}=${envs[k+1]}"' in pyxis
    syntax_ok(pyxis, tmp_path)
    with pytest.raises(ValueError, match="RESEARCH_MCP_SLURM_IMAGE"):
        job_script(spec, Site(container="apptainer"), None)


def test_no_container_runs_in_the_run_folder_and_says_it_is_not_sandboxed(tmp_path: Path) -> None:
    spec = spec_in(tmp_path, workdir="sub")
    script = job_script(spec, Site(container="none"), None)
    assert "NOT sandboxed" in script and 'cd "$run"/work/sub' in script and "bwrap" not in script
    assert 'export RESEARCH_OUT="$run"/outputs' in script
    with pytest.raises(ValueError, match="workdir"):
        job_script(spec_in(tmp_path, "up", workdir="../.."), Site(container="none"), None)


def run_job(spec: RunSpec, site: Site, user: tuple[int, int] | None) -> tuple[dict[str, object], str]:
    """Run a job script the way a node would, without Slurm; its end record and log."""
    script = job_script(spec, site, user)
    (spec.run_dir / "job.sh").write_text(script)
    env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "4242", "SLURM_CPUS_ON_NODE": "2"}
    subprocess.run(["bash", str(spec.run_dir / "job.sh")], env=env, check=False, timeout=60)
    end: dict[str, object] = json.loads((spec.run_dir / "end.json").read_text())
    return end, (spec.run_dir / "log.txt").read_text()


@pytest.mark.bwrap
def test_a_job_script_enforces_its_timeout_and_records_its_end_without_slurm(tmp_path: Path) -> None:
    user = (65534, 65534) if os.geteuid() == 0 else None
    open_for_sandbox(tmp_path, tmp_path)
    spec = spec_in(tmp_path, "slow", command="echo start; echo $SLURM_JOB_ID; sleep 30", timeout_s=1.5)
    began = time.monotonic()
    end, log = run_job(spec, Site(), user)
    assert time.monotonic() - began < 10
    assert (end["exit_code"], end["failure"], end["timeout_s"]) == (124, "timeout", 1.5)
    assert isinstance(end["ended_at"], float) and isinstance(end["started_at"], float)
    assert 1.4 < end["ended_at"] - end["started_at"] < 8
    assert log.splitlines()[:2] == ["start", "4242"]  # the job's SLURM_* reach the sandbox
    assert json.loads((spec.run_dir / "started.json").read_text())["job_id"] == "4242"
    spec = spec_in(tmp_path, "fails", command="echo oops >&2; exit 3")
    end, log = run_job(spec, Site(), user)
    assert (end["exit_code"], end["failure"]) == (3, None) and log == "oops\n"


@pytest.mark.bwrap
def test_a_job_script_caps_the_log_keeping_its_head_and_the_final_lines(tmp_path: Path) -> None:
    user = (65534, 65534) if os.geteuid() == 0 else None
    open_for_sandbox(tmp_path, tmp_path)
    flood = "for i in $(seq 1 20000); do echo line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done; echo the end"
    spec = spec_in(tmp_path, "flood", command=flood, log_cap_bytes=64 << 10)
    end, log = run_job(spec, Site(), user)
    assert end["exit_code"] == 0
    assert len(log.encode()) <= (64 << 10) + 200
    assert log.startswith("line 1 ") and log.endswith("line 20000 xxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nthe end\n")
    assert "[research-mcp: log capped at 65536 bytes;" in log


def test_squeue_scontrol_and_sacct_answers_are_read() -> None:
    queue = parse_squeue("12_3|PENDING|QOSMaxGRESPerUser|rmcp-a\n13|RUNNING|None|train\nbad line\n")
    assert queue["12_3"] == JobInfo("12_3", "PENDING", "QOSMaxGRESPerUser", "rmcp-a")
    assert queue["13"].reason == "" and len(queue) == 2
    line = (
        "JobId=57 ArrayJobId=55 ArrayTaskId=2 JobName=rmcp-x UserId=u(1) JobState=FAILED Reason=NonZeroExitCode "
        "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0"
    )
    info = parse_scontrol(line)
    assert info == JobInfo("55_2", "FAILED", "NonZeroExitCode", "rmcp-x", 3, 0, 0, True)
    assert parse_scontrol("slurm_load_jobs error: Invalid job id specified") is None
    assert parse_scontrol("JobId=9 JobState=CANCELLED Reason=None ExitCode=0:15") == JobInfo(
        "9", "CANCELLED", "", "", 0, 15
    )
    sacct = parse_sacct("9|CANCELLED by 1000|0:15|rmcp-x\n10|COMPLETED|0:0|y\n", "9")
    assert sacct is not None and (sacct.state, sacct.signal, sacct.name) == ("CANCELLED", 15, "rmcp-x")


def test_pending_reasons_are_said_in_words() -> None:
    assert pending_words("Resources", True) == "waiting for GPUs: Resources"
    assert pending_words("Resources", False) == "waiting for free CPUs and memory: Resources"
    assert pending_words("QOSMaxGRESPerUser", True) == "over your group's limit: QOSMaxGRESPerUser"
    assert pending_words("AssocGrpCPULimit", False) == "over your group's limit: AssocGrpCPULimit"
    assert pending_words("Priority", False) == "waiting behind jobs of higher priority: Priority"
    assert pending_words("JobArrayTaskLimit", False).startswith("held back by its array's throttle")
    assert pending_words("SomethingNew", False) == "pending: SomethingNew"
    assert pending_words("", False) == "not yet looked at by the scheduler"


END = JobEnd(exit_code=0, failure=None, started_at=100.0, ended_at=102.5)


@pytest.mark.parametrize(
    ("state", "end", "expected"),
    [
        ("RUNNING", None, ("running", None, None)),
        ("COMPLETING", END, ("exited", 0, None)),
        ("COMPLETED", END, ("exited", 0, None)),
        ("COMPLETED", None, ("exited", 0, None)),
        ("FAILED", JobEnd(3, None, 100.0, 101.0), ("exited", 3, "error")),
        ("FAILED", None, ("exited", 2, "error")),
        ("TIMEOUT", None, ("exited", None, "timeout")),
        ("TIMEOUT", JobEnd(124, "timeout", 100.0, 105.0, 5.0), ("exited", 124, "timeout")),
        ("OUT_OF_MEMORY", JobEnd(137, None, 100.0, 101.0), ("exited", 137, "oom")),
        ("CANCELLED", None, ("exited", None, "cancelled")),
        ("NODE_FAIL", None, ("exited", None, "error")),
        ("PREEMPTED", None, ("exited", None, "error")),
    ],
)
def test_job_states_map_to_run_states(state: str, end: JobEnd | None, expected: tuple[object, ...]) -> None:
    info = JobInfo("5", state, exit_code=2 if state == "FAILED" else None)
    status = status_of(info, end, gpus=False, started_at=99.0)
    assert (status.state, status.exit_code, status.failure) == expected
    if state == "NODE_FAIL":
        assert status.detail == "Its node failed (Slurm: NODE_FAIL); run it again."
    if state == "PREEMPTED":
        assert status.detail is not None and "not requeued" in status.detail
    if state == "TIMEOUT" and end is None:
        assert status.detail is not None and "Slurm's time limit" in status.detail


def test_a_pending_job_says_why_and_a_requeued_one_says_so() -> None:
    waiting = status_of(JobInfo("5", "PENDING", "Resources"), None, gpus=True, started_at=None)
    assert (waiting.state, waiting.detail) == ("running", "Pending in Slurm's queue: waiting for GPUs: Resources.")
    requeued = status_of(JobInfo("5", "PENDING", "BeginTime", restarts=1), END, gpus=False, started_at=None)
    assert requeued.state == "running" and requeued.detail is not None
    assert requeued.detail.startswith("Requeued by Slurm (restart 1")  # the old end.json is not its end


def test_the_end_a_job_wrote_is_its_status_once_slurm_forgot_it() -> None:
    from research_mcp.sandbox._slurm_states import ended_status

    timed_out = ended_status(JobEnd(124, "timeout", 100.0, 105.0, 5.0))
    assert (timed_out.failure, timed_out.detail) == (
        "timeout",
        "Killed at its wall-clock limit of 5 s (timeout_s), with every process.",
    )
    signalled = ended_status(JobEnd(143, "cancelled", 100.0, 103.0))
    assert signalled.failure == "cancelled" and "scancel, preemption or its time limit" in (signalled.detail or "")
    never = ended_status(JobEnd(None, "cancelled", 100.0, 100.0))
    assert (never.exit_code, never.detail) == (None, "Cancelled while it waited in Slurm's queue: it never ran.")


def test_gres_strings_count_gpus_per_type() -> None:
    assert parse_gres("gpu:a100:4(S:0-1),gpu:v100:2") == {"a100": 4, "v100": 2}
    assert parse_gres("gpu:2") == {"gpu": 2}
    assert parse_gres("(null)") == {} and parse_gres("mps:100,gpu:1(S:0)") == {"gpu": 1}


def test_a_workspace_on_a_local_disk_of_a_multi_node_cluster_is_warned_about(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\nnfs:/home /home nfs4 rw 0 0\n/dev/sdb /home/u/local xfs rw 0 0\n"
        "tmpfs /tmp tmpfs rw 0 0\n"
    )
    assert fs_type(Path("/home/u/project"), mounts) == "nfs4"
    assert fs_type(Path("/home/u/local/p"), mounts) == "xfs"
    assert shared_fs_problem(Path("/home/u/project"), 8, mounts) is None
    warning = shared_fs_problem(Path("/home/u/local/p"), 8, mounts)
    assert warning is not None and "local file system (xfs)" in warning and "8 nodes" in warning
    assert shared_fs_problem(Path("/tmp/x"), 1, mounts) is None  # a single node sees its own disk


@pytest.mark.anyio
async def test_waiting_ends_at_a_new_end_record_not_at_a_requeued_jobs_old_one(tmp_path: Path) -> None:
    import anyio

    from research_mcp.sandbox.base import RunHandle
    from research_mcp.sandbox.slurm import SlurmBackend

    backend, end = SlurmBackend(), tmp_path / "end.json"
    handle = RunHandle(backend="slurm", ref="5", data={"run_dir": str(tmp_path)})
    end.write_text("{}")
    os.utime(end, (time.time() - 600, time.time() - 600))  # the end of the job's run before it was requeued
    began = time.monotonic()
    await backend.wait(handle, 0.4)
    assert time.monotonic() - began >= 0.4

    async def ends_soon() -> None:
        await anyio.sleep(0.2)
        end.write_text("{}")

    began = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ends_soon)
        await backend.wait(handle, 10)
    assert time.monotonic() - began < 2
    began = time.monotonic()
    await backend.wait(handle, 10)  # a fresh end: at once
    assert time.monotonic() - began < 0.1
