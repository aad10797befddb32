"""Run cgroups against fake cgroup trees in tmp_path, plus one real cgroup where this machine has them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from research_mcp.sandbox.cgroups import (
    PARENT,
    Limits,
    Mechanism,
    RunCgroup,
    detect,
    fallback_rlimits,
    sweep_stale,
)
from tests.conftest import needs_cgroup


def fake_v1(root: Path, memsw: bool = True) -> Path:
    for controller in ("memory", "pids", "cpu", "freezer"):
        (root / controller).mkdir(parents=True)
        (root / controller / "cgroup.procs").write_text("")
    if memsw:
        (root / "memory" / "memory.memsw.limit_in_bytes").write_text("9223372036854771712\n")
    return root


def fake_v2(root: Path, own: str = "/", controllers: str = "cpuset cpu io memory pids") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    self_cgroup = root.parent / "self-cgroup"
    self_cgroup.write_text(f"0::{own}\n")
    return self_cgroup


def test_v1_as_root_limits_memory_with_swap_pids_and_cpu(tmp_path: Path) -> None:
    mechanism = detect(fake_v1(tmp_path / "cg"), tmp_path / "none", euid=0)
    assert mechanism.kind == "cgroup v1"
    assert "memory+swap" in mechanism.detail and mechanism.parent == tmp_path / "cg" / "memory" / PARENT


def test_v1_without_memsw_says_swap_is_not_limited(tmp_path: Path) -> None:
    mechanism = detect(fake_v1(tmp_path / "cg", memsw=False), tmp_path / "none", euid=0)
    assert mechanism.kind == "cgroup v1" and "swapaccount=1" in mechanism.detail


def test_v1_as_a_user_falls_back_to_rlimits_and_says_they_are_not_a_memory_limit(tmp_path: Path) -> None:
    mechanism = detect(fake_v1(tmp_path / "cg"), tmp_path / "none", euid=1000)
    assert mechanism.kind == "rlimits only"
    assert "RLIMIT_AS caps address space, not memory" in mechanism.detail and "run as root" in mechanism.detail
    assert "RLIMIT_NPROC counts every process of the sandbox uid" in mechanism.detail


def test_no_cgroups_at_all_is_rlimits_only(tmp_path: Path) -> None:
    (tmp_path / "cg").mkdir()
    assert detect(tmp_path / "cg", tmp_path / "none", euid=0).kind == "rlimits only"


def test_v2_as_root_puts_runs_under_the_root_cgroup(tmp_path: Path) -> None:
    self_cgroup = fake_v2(tmp_path / "cg")
    mechanism = detect(tmp_path / "cg", self_cgroup, euid=0)
    assert mechanism == Mechanism("cgroup v2", mechanism.detail, tmp_path / "cg" / PARENT)


def test_v2_without_delegation_is_rlimits_only_and_says_how_to_delegate(tmp_path: Path) -> None:
    self_cgroup = fake_v2(tmp_path / "cg", own="/user.slice/app.scope")
    (tmp_path / "cg" / "user.slice" / "app.scope").mkdir(parents=True)
    mechanism = detect(tmp_path / "cg", self_cgroup, euid=1000)
    assert mechanism.kind == "rlimits only" and "Delegate=yes" in mechanism.detail


def test_v2_delegated_to_us_is_used_under_our_own_cgroup(tmp_path: Path) -> None:
    self_cgroup = fake_v2(tmp_path / "cg", own="/user.slice/app.scope")
    own = tmp_path / "cg" / "user.slice" / "app.scope"
    own.mkdir(parents=True)
    (own / "cgroup.subtree_control").write_text("cpu memory pids\n")
    mechanism = detect(tmp_path / "cg", self_cgroup, euid=1000)
    assert mechanism.kind == "cgroup v2" and mechanism.parent == own / PARENT


def test_a_v1_run_cgroup_gets_every_limit(tmp_path: Path) -> None:
    root = fake_v1(tmp_path / "cg")
    mechanism = detect(root, tmp_path / "none", euid=0)
    group = RunCgroup.create("run-1", Limits(64 << 20, 50, 1.5), mechanism, root=root)
    assert group is not None and set(group.paths) == {"memory", "pids", "cpu", "freezer"}
    memory = root / "memory" / PARENT / "run-1"
    assert (memory / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (memory / "memory.memsw.limit_in_bytes").read_text() == str(64 << 20)
    assert (root / "pids" / PARENT / "run-1" / "pids.max").read_text() == "50"
    assert (root / "cpu" / PARENT / "run-1" / "cpu.cfs_quota_us").read_text() == "150000"
    assert (root / "cpu" / PARENT / "run-1" / "cpu.cfs_period_us").read_text() == "100000"


def test_a_v2_run_cgroup_gets_every_limit_and_enables_the_controllers(tmp_path: Path) -> None:
    self_cgroup = fake_v2(tmp_path / "cg")
    mechanism = detect(tmp_path / "cg", self_cgroup, euid=0)
    group = RunCgroup.create("run-2", Limits(1 << 30, 100, 2), mechanism, root=tmp_path / "cg")
    assert group is not None and group.version == 2
    path = tmp_path / "cg" / PARENT / "run-2"
    assert (path / "memory.max").read_text() == str(1 << 30)
    assert (path / "pids.max").read_text() == "100"
    assert (path / "cpu.max").read_text() == "200000 100000"
    assert "+memory" in (tmp_path / "cg" / "cgroup.subtree_control").read_text()
    assert "+pids" in (tmp_path / "cg" / PARENT / "cgroup.subtree_control").read_text()


def test_stats_read_peak_memory_and_the_oom_kill_counter(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (v1 / "memory.max_usage_in_bytes").write_text("67108864\n")
    stats = RunCgroup(1, {"memory": v1}).stats()
    assert (stats.peak_memory_bytes, stats.oom_kills) == (64 << 20, 2)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n")
    (v2 / "memory.peak").write_text("1048576\n")
    stats = RunCgroup(2, {"unified": v2}).stats()
    assert (stats.peak_memory_bytes, stats.oom_kills) == (1 << 20, 1)


def test_join_writes_the_pid_into_every_controller(tmp_path: Path) -> None:
    paths = {name: tmp_path / name for name in ("memory", "pids")}
    for path in paths.values():
        path.mkdir()
    RunCgroup(1, paths).join(4242)
    assert all((path / "cgroup.procs").read_text() == "4242" for path in paths.values())


def test_a_handle_round_trip_keeps_the_paths_and_refuses_foreign_ones(tmp_path: Path) -> None:
    group = RunCgroup(1, {"memory": tmp_path / PARENT / "r"})
    again = RunCgroup.from_data(group.to_data())
    assert again is not None and again.paths == group.paths
    assert RunCgroup.from_data({"version": 1, "paths": {"memory": "/sys/fs/cgroup/memory"}}) is None
    assert RunCgroup.from_data({"version": 3, "paths": {}}) is None


@pytest.mark.parametrize("run_id", ["../escape", "", "a/b", ".hidden"])
def test_a_run_id_that_is_not_a_plain_name_is_refused(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(ValueError):
        RunCgroup.create(run_id, Limits(), Mechanism("cgroup v1", "", tmp_path), root=tmp_path)


def test_rlimits_only_sets_nproc_only_for_a_uid_of_its_own() -> None:
    import resource

    shared = dict(fallback_rlimits(Limits(1 << 30, 64, None), own_uid=False))
    assert shared[resource.RLIMIT_AS] == 1 << 30 and resource.RLIMIT_NPROC not in shared
    assert dict(fallback_rlimits(Limits(None, 64, None), own_uid=True))[resource.RLIMIT_NPROC] == 64


@pytest.mark.bwrap
@needs_cgroup
def test_a_real_cgroup_holds_daemonised_children_and_kill_all_empties_it() -> None:
    group = RunCgroup.create(f"unit-{uuid.uuid4().hex[:8]}", Limits(256 << 20, 32, 1.0), detect())
    assert group is not None
    try:
        script = "import subprocess; subprocess.Popen(['setsid', 'sleep', '1000.501']); import time; time.sleep(1000)"
        child = subprocess.Popen([sys.executable, "-c", script], preexec_fn=group.join)
        try:
            for _ in range(200):
                if len(group.pids()) >= 2:
                    break
                subprocess.run(["sleep", "0.05"], check=True)
            assert child.pid in group.pids() and len(group.pids()) >= 2
            assert group.kill_all(timeout_s=5)
            assert group.pids() == set()
        finally:
            child.kill()
            child.wait(timeout=5)
        assert group.stats().peak_memory_bytes
    finally:
        group.remove()
    assert not any(path.exists() for path in group.paths.values())
    assert os.path.isdir(detect().parent or "/")


def test_sweep_removes_only_empty_run_cgroups_of_gone_supervisors(tmp_path: Path) -> None:
    root = fake_v1(tmp_path / "cg")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has now
    kept = {f"run-{os.getpid()}-ab12", "run-1-cd34", "notes"}  # a live supervisor's, PID 1's, not a run cgroup
    for controller in ("memory", "pids", "cpu", "freezer"):
        for name in (*kept, f"run-{gone.pid}-ef56"):
            (root / controller / PARENT / name).mkdir(parents=True)
    (root / "pids" / PARENT / f"run-{gone.pid}-0000").mkdir()
    (root / "pids" / PARENT / f"run-{gone.pid}-0000" / "cgroup.procs").write_text("")  # not empty: left alone
    mechanism = Mechanism("cgroup v1", "", root / "memory" / PARENT)
    removed = sweep_stale(mechanism, root=root)
    assert sorted(removed) == [f"run-{gone.pid}-ef56"] * 4
    for controller in ("memory", "pids", "cpu", "freezer"):
        assert {p.name for p in (root / controller / PARENT).iterdir()} >= kept
        assert not (root / controller / PARENT / f"run-{gone.pid}-ef56").exists()
    assert (root / "pids" / PARENT / f"run-{gone.pid}-0000").exists()
    assert sweep_stale(Mechanism("rlimits only", ""), root=root) == []
