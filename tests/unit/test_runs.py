"""The run manager's books, with a fake backend that implements the protocol (no sandbox needed)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research_mcp.errors import BadInputError, RunNotFoundError, SandboxError
from research_mcp.sandbox.base import Backend, Capacity, Mount, RunHandle, RunSpec, RunStatus
from research_mcp.sandbox.runs import THREAD_VARS, RunManager, RunRequest
from research_mcp.sandbox.slots import Busy, Waiting, assign
from research_mcp.store import Store
from research_mcp.workspace import Workspace

pytestmark = pytest.mark.anyio


class FakeBackend(Backend):
    """Starts nothing; the test says how each run ends."""

    name = "fake"

    def __init__(self, capacity: Capacity | None = None) -> None:
        self.size = capacity or Capacity(runs=64, cpus=8)
        self.batches: list[list[str]] = []
        self.started: list[RunSpec] = []
        self.outcome: dict[str, RunStatus] = {}
        self.cancelled: list[str] = []
        self.refuse: str | None = None
        self.away: str | None = None

    def capacity(self) -> Capacity:
        if self.away:
            raise SandboxError(self.away)
        return self.size

    async def start_batch(self, specs: Sequence[RunSpec]) -> list[RunHandle | SandboxError]:
        self.batches.append([spec.run_id for spec in specs])
        return await super().start_batch(specs)

    async def start(self, spec: RunSpec) -> RunHandle:
        if self.refuse:
            raise SandboxError(self.refuse)
        self.started.append(spec)
        return RunHandle(backend="fake", ref=spec.run_id, data={"run_dir": str(spec.run_dir)})

    async def poll(self, handle: RunHandle) -> RunStatus:
        return self.outcome.get(handle.ref, RunStatus(state="running", started_at=1.0))

    async def cancel(self, handle: RunHandle) -> None:
        self.cancelled.append(handle.ref)
        self.outcome[handle.ref] = RunStatus(state="exited", exit_code=-9, failure="cancelled")

    async def wait(self, handle: RunHandle, timeout_s: float) -> None:
        await anyio.sleep(min(timeout_s, 0.01))

    async def adopt(self, spec: RunSpec) -> RunHandle | None:
        found = [s for s in self.started if s.run_id == spec.run_id]
        return RunHandle(backend="fake", ref=spec.run_id) if found else None


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "exp").mkdir(parents=True)
    (root / "exp" / "train.py").write_text("print('hi')\n")
    (root / "exp" / "__pycache__").mkdir()
    (root / "exp" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (root / ".git").mkdir()
    return Workspace(root.resolve(), "setting")


def manager(ws: Workspace, backend: FakeBackend, limit: int = 2) -> RunManager:
    store = Store(ws.state_dir / "state.db")
    return RunManager(ws, store, {"fake": lambda: backend}, choose=lambda: "fake", max_concurrent=limit)


def request(**extra: object) -> RunRequest:
    return RunRequest.model_validate({"command": "python3 train.py", "workdir": "exp", "backend": "auto", **extra})


async def test_a_run_is_snapshotted_queued_then_started_with_its_spec(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = manager(ws, backend)
    run = runs.prepare(request(label="baseline", seed=1, config={"lr": 0.1}, note="first try"))
    assert run.state == "queued" and run.code_hash and len(run.code_hash) == 12
    [(stored,)] = runs.store.connection().execute("SELECT code_hash FROM runs WHERE id = ?", (run.id,)).fetchall()
    assert len(stored) == 64 and stored.startswith(run.code_hash)  # the store keeps the whole hash
    folder = ws.root / run.folder
    assert sorted(p.name for p in (folder / "code").iterdir()) == ["train.py"]  # caches left out
    assert (folder / "work" / "train.py").exists() and (folder / "outputs").is_dir()
    await runs.pump()
    [spec] = backend.started
    assert spec.command == "python3 train.py" and spec.run_dir == folder and spec.workdir == "."
    assert runs.get(run.id).state == "running"
    assert (runs.get(run.id).label, runs.get(run.id).config) == ("baseline", {"lr": 0.1})


async def test_the_servers_own_jobs_carry_their_kind_mounts_and_network_into_the_spec(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = manager(ws, backend)
    mount = Mount(source=str(ws.root / "exp"), dest="/data")
    job = runs.prepare(request(network=True), kind="env", mounts=[mount], own_network=True)
    plain = runs.prepare(request())
    assert (job.kind, plain.kind) == ("env", None)  # a model's run says nothing of its kind
    await runs.pump()
    specs = {spec.run_id: spec for spec in backend.started}
    assert specs[job.id].mounts == [mount] and specs[job.id].own_network and specs[job.id].network
    assert specs[plain.id].mounts == [] and not specs[plain.id].own_network


async def test_the_same_code_has_the_same_hash(ws: Workspace) -> None:
    runs = manager(ws, FakeBackend())
    assert runs.prepare(request()).code_hash == runs.prepare(request()).code_hash
    other = runs.prepare(request(files={"extra.py": "x = 1\n"}))
    assert other.code_hash != runs.prepare(request()).code_hash


async def test_the_concurrency_limit_queues_the_rest_and_loses_none(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = manager(ws, backend, limit=2)
    ids = [runs.prepare(request(label="sweep")).id for _ in range(5)]
    await runs.pump()
    assert len(backend.started) == 2
    for spec in list(backend.started):
        backend.outcome[spec.run_id] = RunStatus(state="exited", exit_code=0, ended_at=2.0)
    await runs.pump()
    assert len(backend.started) == 4
    for _ in range(2):
        for spec in backend.started:
            backend.outcome[spec.run_id] = RunStatus(state="exited", exit_code=0, ended_at=2.0)
        await runs.pump()
    assert sorted(s.run_id for s in backend.started) == sorted(ids)
    assert {runs.get(i).state for i in ids} == {"succeeded"}


async def test_wait_starts_a_queued_run_and_returns_when_it_ends_or_at_its_timeout(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = manager(ws, backend, limit=1)
    first, second = runs.prepare(request()).id, runs.prepare(request()).id
    with anyio.fail_after(5):
        assert (await runs.wait(second, 0.1)).state == "queued"  # behind the first, which holds the one slot
    assert runs.get(first).state == "running"

    async def end_first() -> None:
        await anyio.sleep(0.2)
        backend.outcome[first] = RunStatus(state="exited", exit_code=0, ended_at=2.0)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(end_first)
            started = anyio.current_time()
            assert (await runs.wait(first, 30)).state == "succeeded"
            assert anyio.current_time() - started < 1
        assert (await runs.wait(second, 0)).state == "running"  # the freed slot went to the queued one


async def test_two_servers_on_one_workspace_never_start_the_same_run(ws: Workspace) -> None:
    first, second = FakeBackend(), FakeBackend()
    a, b = manager(ws, first, limit=10), manager(ws, second, limit=10)
    ids = [a.prepare(request()).id for _ in range(6)]
    await b.pump()
    await a.pump()
    started = [s.run_id for s in first.started + second.started]
    assert sorted(started) == sorted(ids) and len(set(started)) == 6


async def test_endings_are_classified(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = manager(ws, backend, limit=10)
    cases = {
        "ok": (RunStatus(state="exited", exit_code=0), "succeeded", None),
        "bad": (RunStatus(state="exited", exit_code=1, failure="error"), "failed", "error"),
        "oom": (RunStatus(state="exited", exit_code=137, failure="oom"), "failed", "oom"),
        "slow": (RunStatus(state="exited", exit_code=-9, failure="timeout"), "failed", "timeout"),
        "gone": (RunStatus(state="lost"), "lost", "lost"),
        "cuda": (RunStatus(state="exited", exit_code=1, failure="error"), "failed", "cuda_oom"),
    }
    ids = {name: runs.prepare(request(label=name)).id for name in cases}
    (ws.root / "runs" / ids["cuda"] / "log.txt").write_text(
        "Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\n"
    )
    await runs.pump()
    for name, (status, _, _) in cases.items():
        backend.outcome[ids[name]] = status
    await runs.pump()
    for name, (_, state, failure) in cases.items():
        run = runs.get(ids[name])
        assert (run.state, run.failure) == (state, failure), name


async def test_a_backend_that_cannot_start_fails_the_run_with_its_reason(ws: Workspace) -> None:
    backend = FakeBackend()
    backend.refuse = "bubblewrap is not installed: apt-get install -y bubblewrap"
    runs = manager(ws, backend)
    run = runs.prepare(request())
    await runs.pump()
    found = runs.get(run.id)
    assert (found.state, found.failure) == ("failed", "error") and "apt-get install" in (found.detail or "")


async def test_cancel_works_queued_and_running(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = manager(ws, backend, limit=1)
    running, queued = runs.prepare(request()).id, runs.prepare(request()).id
    await runs.pump()
    assert (await runs.cancel(queued)).state == "cancelled"
    done = await runs.cancel(running)
    assert (done.state, done.failure) == ("cancelled", "cancelled") and backend.cancelled == [running]
    assert (await runs.cancel(running)).state == "cancelled"  # idempotent


async def test_lineage_is_stored_and_filtered(ws: Workspace) -> None:
    runs = manager(ws, FakeBackend())
    root = runs.prepare(request(label="base")).id
    child = runs.prepare(request(label="ablation", parent=root)).id
    runs.prepare(request(label="ablation"))
    children, total = runs.list(None, None, root, 10, 0)
    assert [r.id for r in children] == [child] and total == 1
    labelled, total = runs.list(None, "ablation", None, 1, 0)
    assert total == 2 and len(labelled) == 1
    with pytest.raises(RunNotFoundError, match="list_runs"):
        runs.prepare(request(parent="nope"))


async def test_new_and_changed_files_in_work_are_found(ws: Workspace) -> None:
    runs = manager(ws, FakeBackend())
    run = runs.prepare(request())
    folder = ws.root / run.folder
    (folder / "work" / "run_1").mkdir()
    (folder / "work" / "run_1" / "final_info.json").write_text(json.dumps({"loss": {"means": 1.0}}))
    (folder / "work" / "train.py").write_text("changed\n")
    (folder / "outputs" / "metrics.jsonl").write_text("{}\n")
    for cache in ("__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".mypy_cache"):
        for under in (folder / "outputs", folder / "work"):
            (under / cache).mkdir()
            (under / cache / "x.pyc").write_bytes(b"cache")
    listed = ["outputs/metrics.jsonl", "work/run_1/final_info.json", "work/train.py"]
    assert runs.outputs(run.id) == [f"runs/{run.id}/{rel}" for rel in listed]


async def test_bad_requests_are_refused_before_anything_is_written(ws: Workspace) -> None:
    runs = manager(ws, FakeBackend())
    with pytest.raises(BadInputError, match="no code"):
        runs.prepare(request(workdir=None))
    with pytest.raises(BadInputError, match="Environment variable"):
        runs.prepare(request(env={"A=B": "x"}))
    with pytest.raises(BadInputError, match=r"\.\."):
        runs.prepare(request(files={"../evil.py": "x"}))
    assert not any((ws.root / "runs").iterdir())


async def test_a_snapshot_over_the_cap_names_the_biggest_files(ws: Workspace) -> None:
    (ws.root / "exp" / "data.bin").write_bytes(b"\0" * (3 << 20))
    store = Store(ws.state_dir / "state.db")
    runs = RunManager(
        ws, store, {"fake": FakeBackend}, choose=lambda: "fake", max_concurrent=1, max_snapshot_bytes=1 << 20
    )
    with pytest.raises(SandboxError, match=r"data\.bin \(3\.0 MiB\)"):
        runs.prepare(request())
    assert not any((ws.root / "runs").iterdir())


async def test_free_gpus_are_pinned_per_run_and_a_run_waits_for_its_gpus(ws: Workspace) -> None:
    backend = FakeBackend(Capacity(runs=10, cpus=8, gpus=[0, 1, 2]))
    runs = manager(ws, backend, limit=10)
    two = runs.prepare(request(gpus=2)).id
    big = runs.prepare(request(gpus=2)).id  # only one GPU left: waits
    one = runs.prepare(request(gpus=1)).id  # fits beside the first
    cpu = runs.prepare(request()).id
    await runs.pump()
    pinned = {spec.run_id: spec.gpus for spec in backend.started}
    assert pinned == {two: [0, 1], one: [2], cpu: []}
    backend.outcome[two] = RunStatus(state="exited", exit_code=0)
    await runs.pump()
    await runs.pump()
    assert {spec.run_id: spec.gpus for spec in backend.started}[big] == [0, 1]
    with pytest.raises(SandboxError, match="can give 3"):
        runs.prepare(request(gpus=4))


async def test_a_run_left_starting_by_a_dead_server_is_adopted_or_queued_again(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = manager(ws, backend, limit=10)
    started, never = runs.prepare(request()).id, runs.prepare(request()).id
    backend.started.append(runs._spec(runs._row(started)))  # the dead server's start got this far
    dead_pid = 2**22 + 12345  # above pid_max: no such process
    for run_id in (started, never):
        runs.store.connection().execute(
            "UPDATE runs SET state = 'starting', owner = ? WHERE id = ?", (f"{socket.gethostname()}:{dead_pid}", run_id)
        )
    await runs.refresh()
    assert runs.get(started).state == "running"
    assert runs.get(never).state == "queued"
    await runs.pump()
    assert runs.get(never).state == "running"


async def test_a_run_that_could_not_start_says_why_in_its_next_step(ws: Workspace) -> None:
    from research_mcp.sandbox.status import status_of

    backend = FakeBackend()
    backend.refuse = "bubblewrap is not installed: apt-get install -y bubblewrap"
    runs = manager(ws, backend)
    run = runs.prepare(request())
    await runs.pump()
    step = status_of(runs, run.id, 24_000).next_step
    assert (step.tool, step.why) == ("lab_info", f"The run could not start: {backend.refuse}")


async def test_an_idle_pump_never_waits_for_the_write_lock(ws: Workspace) -> None:
    import sqlite3

    import anyio

    runs = manager(ws, FakeBackend())
    other = sqlite3.connect(ws.state_dir / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another server writing
    try:
        with anyio.fail_after(2):
            await runs.pump()
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_each_backend_takes_as_many_runs_as_its_capacity_in_one_batch(ws: Workspace) -> None:
    backend = FakeBackend(Capacity(runs=3, cpus=6))
    runs = RunManager(ws, Store(ws.state_dir / "state.db"), {"fake": lambda: backend}, choose=lambda: "fake")
    ids = [runs.prepare(request()).id for _ in range(5)]
    await runs.pump()
    assert backend.batches == [ids[:3]]  # one submission for the three that got a slot
    backend.outcome[ids[0]] = RunStatus(state="exited", exit_code=0)
    await runs.pump()
    assert backend.batches[1:] == [[ids[3]]] and runs.get(ids[4]).state == "queued"


async def test_a_run_gets_its_share_of_the_cores_as_thread_counts_unless_it_names_them(ws: Workspace) -> None:
    backend = FakeBackend(Capacity(runs=2, cpus=8))
    runs = RunManager(ws, Store(ws.state_dir / "state.db"), {"fake": lambda: backend}, choose=lambda: "fake")
    shared = runs.prepare(request()).id
    sized = runs.prepare(request(cpus=2.5)).id
    await runs.pump()
    mine = runs.prepare(request(env={"OMP_NUM_THREADS": "1"})).id
    backend.outcome[shared] = RunStatus(state="exited", exit_code=0)
    await runs.pump()
    env = {spec.run_id: spec.env for spec in backend.started}
    assert {name: env[shared][name] for name in THREAD_VARS} == dict.fromkeys(THREAD_VARS, "4")  # 8 cores, 2 runs
    assert {env[sized][name] for name in THREAD_VARS} == {"3"}  # ceil(2.5)
    assert env[mine]["OMP_NUM_THREADS"] == "1" and env[mine]["MKL_NUM_THREADS"] == "4"


async def test_the_workspace_cap_bounds_every_backend_and_widens_each_runs_share(ws: Workspace) -> None:
    backend = FakeBackend(Capacity(runs=4, cpus=8))
    runs = manager(ws, backend, limit=1)
    for _ in range(2):
        runs.prepare(request())
    await runs.pump()
    [spec] = backend.started
    assert spec.env["OMP_NUM_THREADS"] == "8"


async def test_backends_of_one_pool_never_pin_the_same_gpu(ws: Workspace) -> None:
    one = FakeBackend(Capacity(runs=4, cpus=4, gpus=[0, 1], pool="host"))
    other = FakeBackend(Capacity(runs=4, cpus=4, gpus=[0, 1], pool="host"))
    chosen = ["fake"]
    store = Store(ws.state_dir / "state.db")
    runs = RunManager(ws, store, {"fake": lambda: one, "other": lambda: other}, choose=lambda: chosen[0])
    runs.prepare(request(gpus=1))
    await runs.pump()
    chosen[0] = "other"
    runs.prepare(request(gpus=1))
    waiting = runs.prepare(request(gpus=1)).id
    await runs.pump()
    assert [spec.gpus for spec in one.started + other.started] == [[0], [1]]
    assert runs.get(waiting).state == "queued"


def test_the_registry_has_one_entry_per_backend_name() -> None:
    from typing import get_args

    from research_mcp.config import BackendChoice, BackendName
    from research_mcp.sandbox.registry import REGISTRY

    assert list(REGISTRY) == list(get_args(BackendName))
    assert all(entry.name == name for name, entry in REGISTRY.items())
    assert get_args(BackendChoice) == ("auto", *REGISTRY)


@settings(max_examples=200, deadline=None)
@given(
    busy=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.lists(st.integers(0, 3), max_size=2, unique=True))),
    asks=st.lists(st.tuples(st.sampled_from(["a", "b", "gone"]), st.integers(0, 3), st.none() | st.floats(0.1, 8))),
    cap=st.none() | st.integers(1, 6),
)
def test_assign_never_exceeds_a_slot_a_gpu_or_the_workspace_cap(
    busy: list[tuple[str, list[int]]], asks: list[tuple[str, int, float | None]], cap: int | None
) -> None:
    import math

    capacity = {"a": Capacity(runs=3, cpus=4, gpus=[0, 1, 2, 3]), "b": Capacity(runs=2, cpus=4, gpus=[0, 1, 2, 3])}
    held = [Busy(name, gpus) for name, gpus in busy]
    queued = [Waiting(str(i), name, {"gpu_count": n, "cpus": cpus}) for i, (name, n, cpus) in enumerate(asks)]
    chosen = assign(held, queued, capacity, cap)
    if cap is not None:
        assert len(chosen) <= max(0, cap - len(held))
    for name, size in capacity.items():
        already = sum(1 for run in held if run.backend == name)
        assert sum(1 for run in chosen if run.backend == name) <= max(0, size.runs - already)
    pinned = [gpu for run in chosen for gpu in run.limits["gpus"]]
    assert len(pinned) == len(set(pinned)) and not set(pinned) & {gpu for run in held for gpu in run.gpus}
    for run in chosen:
        assert run.backend != "gone" and len(run.limits["gpus"]) == run.limits["gpu_count"]
        cpus = run.limits["cpus"]
        assert run.limits["threads"] == (
            math.ceil(cpus) if cpus else max(1, 4 // min(capacity[run.backend].runs, cap or 9))
        )


async def test_queued_runs_say_why_while_their_backend_cannot_take_them_and_start_once_it_can(ws: Workspace) -> None:
    backend = FakeBackend()
    backend.away = "Slurm cannot be asked now (squeue failed)"
    runs = manager(ws, backend)
    run = runs.prepare(request())
    await runs.pump()
    waiting = runs.get(run.id)
    assert waiting.state == "queued" and backend.started == []
    assert waiting.detail == (
        "Waiting in this server's queue: the fake backend cannot take runs now: Slurm cannot be asked now "
        "(squeue failed)"
    )
    backend.away = None
    await runs.pump()
    started = runs.get(run.id)
    assert started.state == "running" and started.detail is None and [s.run_id for s in backend.started] == [run.id]


def test_assign_reads_the_queue_no_further_than_its_free_slots() -> None:
    read: list[int] = []

    def queue(backend: str) -> Iterator[Waiting]:
        for i in range(1000):
            read.append(i)
            yield Waiting(str(i), backend, {})

    assert len(assign([Busy("a", [])], queue("a"), {"a": Capacity(runs=8, cpus=4)}, 3)) == 2
    assert len(read) == 3  # two chosen; the third seen says the workspace is full
    read.clear()
    assert assign([Busy("a", [])], queue("a"), {"a": Capacity(runs=1, cpus=4)}, None) == []
    assert len(read) == 1  # the backend is full: no queued run can go


def test_a_run_id_that_clashes_with_an_existing_run_takes_another_and_leaves_that_run_alone(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["20260101-000000-aaaaaa", "20260101-000000-aaaaaa", "20260101-000000-bbbbbb"])
    monkeypatch.setattr("research_mcp.sandbox._preparing.new_run_id", lambda: next(ids))
    runs = manager(ws, FakeBackend())
    first = runs.prepare(request())
    second = runs.prepare(request())
    assert (first.id, second.id) == ("20260101-000000-aaaaaa", "20260101-000000-bbbbbb")
    assert (ws.root / first.folder / "code").is_dir() and (ws.root / first.folder / "manifest.json").is_file()
