"""Datasets, manifests, inputs and rerun checks, with a fake backend (no sandbox): what a run binds at /data,
what it records, and what a rerun refuses."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research_mcp.errors import BadInputError
from research_mcp.sandbox import datasets as data
from research_mcp.sandbox.base import RunStatus
from research_mcp.sandbox.dataprep import prepare_data
from research_mcp.sandbox.inputs import InputSpec, code_hash_with, parse_inputs, resolve_source
from research_mcp.sandbox.rerun import DataChangedError, rerun
from research_mcp.sandbox.runs import RunManager, RunRequest
from research_mcp.store import Store
from research_mcp.workspace import Workspace
from tests.unit.test_runs import FakeBackend

pytestmark = pytest.mark.anyio

NAMES = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,8}", fullmatch=True).filter(lambda n: ".." not in n)
ENTRIES = st.dictionaries(
    st.lists(NAMES, min_size=1, max_size=3).map("/".join),
    st.tuples(st.integers(0, 1 << 40), st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
    max_size=8,
)


@given(ENTRIES)
def test_a_manifest_hash_depends_on_its_entries_not_their_order(files: dict[str, tuple[int, str]]) -> None:
    backwards = dict(reversed(list(files.items())))
    assert data.hash_entries(backwards) == data.hash_entries(files)
    for rel, (size, sha) in files.items():
        assert data.hash_entries({**files, rel: (size + 1, sha)}) != data.hash_entries(files)
        rest = {k: v for k, v in files.items() if k != rel}
        assert data.hash_entries(rest) != data.hash_entries(files)


def test_a_manifest_lists_every_file_with_its_size_and_sha256_and_symlinks_by_target(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "a.csv").write_text("x,y\n1,2\n")
    (root / "sub" / "b.bin").write_bytes(b"\0" * 10)
    (root / "link").symlink_to("/etc/passwd")
    found = data.make_manifest(root)
    assert found.files == {
        "a.csv": (8, hashlib.sha256(b"x,y\n1,2\n").hexdigest()),
        "link": (0, "symlink:/etc/passwd"),
        "sub/b.bin": (10, hashlib.sha256(b"\0" * 10).hexdigest()),
    }
    assert found.hash == data.hash_entries(found.files) and found.size_bytes == 18
    assert data.make_manifest(root / "a.csv").files == {"a.csv": found.files["a.csv"]}  # a dataset may be one file


def test_a_dataset_is_hashed_again_only_when_its_files_change(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path / "d"
    root.mkdir()
    (root / "a").write_text("1")
    first = data.current_manifest(state, root)
    index = next((state / "manifests" / "index").iterdir())
    planted = json.loads(index.read_text())
    stored = state / "manifests" / f"{first.hash}.json"
    stored.write_text(json.dumps({"hash": first.hash, "files": {"a": [1, "planted"]}}))  # read back, not re-hashed
    assert data.current_manifest(state, root).files["a"] == (1, "planted")
    (root / "a").write_text("22")
    again = data.current_manifest(state, root)
    assert again.files["a"] == (2, hashlib.sha256(b"22").hexdigest()) and again.hash != planted["hash"]
    assert data.compare(data.make_manifest(root), again) == []
    (root / "b").write_text("new")
    assert data.compare(again, data.make_manifest(root)) == ["added b"]
    assert data.compare(None, again) == ["its earlier manifest is not kept, so the files that changed cannot be named"]


def test_a_dataset_past_the_hashing_cap_is_recorded_by_size_and_time_until_hashed_in_full(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path / "d"
    root.mkdir()
    (root / "big").write_bytes(b"\1" * 100)
    stat = data.current_manifest(state, root, max_hash_bytes=99)
    assert stat.files == {"big": (100, f"mtime:{(root / 'big').stat().st_mtime_ns}")}
    assert data.current_manifest(state, root, max_hash_bytes=99) == stat
    full = data.current_manifest(state, root)  # prepare_data's: always read whole
    assert full.files == {"big": (100, hashlib.sha256(b"\1" * 100).hexdigest())}
    assert data.current_manifest(state, root, max_hash_bytes=99) == full  # a full manifest is kept


def test_the_workspace_datasets_win_a_name_clash_and_dot_entries_are_the_servers(tmp_path: Path) -> None:
    ws, shared = tmp_path / "ws", tmp_path / "shared"
    for folder in (ws / "datasets" / "mnist", ws / "datasets" / ".incoming", shared / "mnist", shared / "imagenet"):
        folder.mkdir(parents=True)
    (ws / "datasets" / "notes.csv").write_text("a\n")
    found = data.find_datasets(ws, shared)
    assert sorted(found) == ["imagenet", "mnist", "notes.csv"]
    assert found["mnist"].path == (ws / "datasets" / "mnist").resolve() and not found["mnist"].shared
    assert found["imagenet"].shared
    mounts = data.dataset_mounts(found.values(), taken=["/data/imagenet"])
    assert [(m.dest, m.writable) for m in mounts] == [("/data/mnist", False), ("/data/notes.csv", False)]


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "..", "x" * 101, "a b"])
def test_a_dataset_name_that_is_not_one_folder_name_is_refused(name: str) -> None:
    with pytest.raises(BadInputError, match="one folder name"):
        data.check_name(name)


@settings(max_examples=200)
@given(st.dictionaries(st.lists(NAMES, min_size=1, max_size=3).map("/".join), NAMES, min_size=1, max_size=5))
def test_inputs_parse_to_their_places_and_sources(raw: dict[str, str]) -> None:
    asked = {dest: f"20260101-000000-abcdef:{path}" for dest, path in raw.items()}
    dests = sorted(asked)
    nested = any(b.startswith(a + "/") for a in dests for b in dests)
    if nested:
        with pytest.raises(BadInputError, match="overlap"):
            parse_inputs(asked)
        return
    found = parse_inputs(asked)
    assert [(s.dest, s.run_id, s.path) for s in found] == [(d, "20260101-000000-abcdef", raw[d]) for d in dests]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"/abs": "r1:x"}, "relative path"),
        ({"a/../b": "r1:x"}, "without '..'"),
        ({"a": "r1:../x"}, "without '..'"),
        ({"a": "r1:/etc"}, "relative path"),
        ({"a": ":x"}, "'<run_id>:<path>'"),
        ({"a": "-rf:x"}, "'<run_id>:<path>'"),
        ({"a": "r1:x", "a/b": "r2:y"}, "overlap"),
        ({f"d{i}": "r1:x" for i in range(65)}, "at most 64"),
    ],
)
def test_bad_inputs_are_refused_with_what_to_give(raw: dict[str, str], says: str) -> None:
    with pytest.raises(BadInputError, match=says.replace("(", r"\(")):
        parse_inputs(raw)


def test_a_run_alone_is_its_outputs_and_a_source_leaving_its_run_folder_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    (run / "work" / "run_0").mkdir(parents=True)
    (run / "outputs").mkdir()
    (run / "work" / "escape").symlink_to(tmp_path)
    [alone] = parse_inputs({"prev": "r1"})
    assert resolve_source(run, alone) == ("outputs", (run / "outputs").resolve())
    assert resolve_source(run, InputSpec("x", "r1", "run_0"))[0] == "work/run_0"
    with pytest.raises(BadInputError, match="leads outside"):
        resolve_source(run, InputSpec("x", "r1", "escape"))
    with pytest.raises(BadInputError, match="Its files start with: escape, run_0"):
        resolve_source(run, InputSpec("x", "r1", "nope"))


def test_inputs_change_the_code_hash_by_place_and_content() -> None:
    base = "ab" * 32
    assert code_hash_with(base, []) == base
    one = code_hash_with(base, [("run_0", "1" * 64)])
    assert one != base
    assert code_hash_with(base, [("run_1", "1" * 64)]) != one
    assert code_hash_with(base, [("run_0", "2" * 64)]) != one


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "exp").mkdir(parents=True)
    (root / "exp" / "train.py").write_text("print('hi')\n")
    (root / "datasets" / "toy").mkdir(parents=True)
    (root / "datasets" / "toy" / "points.csv").write_text("1,2\n")
    return Workspace(root.resolve(), "setting")


def lab(ws: Workspace, backend: FakeBackend) -> RunManager:
    return RunManager(ws, Store(ws.state_dir / "state.db"), {"fake": lambda: backend}, choose=lambda: "fake")


async def finished(runs: RunManager, backend: FakeBackend, run_id: str, exit_code: int = 0) -> None:
    await runs.pump()
    backend.outcome[run_id] = RunStatus(state="exited", exit_code=exit_code, started_at=1.0, ended_at=2.0)
    await runs.pump()


async def test_a_run_binds_the_datasets_read_only_records_their_hashes_and_never_snapshots_them(
    ws: Workspace,
) -> None:
    backend = FakeBackend()
    runs = lab(ws, backend)
    run = runs.prepare(RunRequest(command="python train.py", workdir="."))
    assert run.datasets == {"toy": data.make_manifest(ws.root / "datasets" / "toy").hash[:12]}
    assert not (runs.run_dir(run.id) / "code" / "datasets").exists()
    await runs.pump()
    [spec] = backend.started
    assert [(m.dest, m.writable) for m in spec.mounts] == [("/data/toy", False)]
    assert spec.env["HF_HUB_OFFLINE"] == "1" and spec.env["HF_HOME"] == "/tmp/cache/huggingface"
    assert spec.command == "python train.py"  # no dataset has a cache: no cache layer


async def test_a_data_run_writes_its_dataset_into_place_with_a_manifest_or_leaves_nothing(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = lab(ws, backend)
    run = prepare_data(runs, "toy", "download", network=False)
    await runs.pump()
    [spec] = backend.started
    assert [(m.dest, m.writable) for m in spec.mounts] == [("/data/toy", True), ("/tmp/cache", True)]
    staging = Path(spec.mounts[0].source)
    (staging / "new.csv").write_text("3,4\n")  # what the command wrote
    (staging / ".cache" / "hub").mkdir()
    (staging / ".cache" / "hub" / "w.bin").write_text("w")
    await finished(runs, backend, run.id)
    done = runs.get(run.id)
    assert done.state == "succeeded" and done.kind == "data"
    assert sorted(p.name for p in (ws.root / "datasets" / "toy").iterdir()) == [".cache", "new.csv"]
    manifest = data.make_manifest(ws.root / "datasets" / "toy")
    assert done.datasets == {"toy": manifest.hash[:12]} and manifest.hash[:12] in (done.detail or "")
    assert not list((ws.root / "datasets" / ".incoming").iterdir())
    # a later run links the dataset's cache into its writable cache layer before its command
    later = runs.prepare(RunRequest(command="python train.py", workdir="exp"))
    await runs.pump()
    assert backend.started[-1].command == data.cache_layer_command(["toy"]) + "python train.py"
    assert runs.get(later.id).datasets == done.datasets
    # a failed preparation leaves the dataset as it was and nothing of itself
    failed = prepare_data(runs, "toy", "download", network=False)
    await runs.pump()
    (Path(backend.started[-1].mounts[0].source) / "half.csv").write_text("x")
    await finished(runs, backend, failed.id, exit_code=1)
    assert runs.get(failed.id).state == "failed"
    assert sorted(p.name for p in (ws.root / "datasets" / "toy").iterdir()) == [".cache", "new.csv"]
    assert not list((ws.root / "datasets" / ".incoming").iterdir())


async def test_a_queued_preparation_that_is_cancelled_leaves_nothing(ws: Workspace) -> None:
    runs = lab(ws, FakeBackend())
    run = prepare_data(runs, "other", "download", network=False)
    with pytest.raises(BadInputError, match="is being prepared by run"):
        prepare_data(runs, "other", "download", network=False)
    await runs.cancel(run.id)
    assert not list((ws.root / "datasets" / ".incoming").iterdir())


async def test_rerun_refuses_changed_data_naming_the_files_and_runs_when_told(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = lab(ws, backend)
    first = runs.prepare(RunRequest(command="python train.py", workdir="exp", seed=1, env={"A": "b"}))
    await finished(runs, backend, first.id)
    (ws.root / "exp" / "train.py").write_text("changed since\n")
    again = rerun(runs, first.id)
    assert (again.parent, again.seed, again.code_hash, again.workdir) == (first.id, 1, first.code_hash, "exp")
    assert (runs.run_dir(again.id) / "code" / "train.py").read_text() == "print('hi')\n"
    other = rerun(runs, first.id, seed=7, note="seed 7")
    await runs.pump()
    spec = next(s for s in backend.started if s.run_id == other.id)
    assert spec.env["RESEARCH_SEED"] == "7" and spec.env["A"] == "b" and other.note == "seed 7"
    (ws.root / "datasets" / "toy" / "points.csv").write_text("1,3\n")
    os.utime(ws.root / "datasets" / "toy" / "points.csv", ns=(1, 1))
    (ws.root / "datasets" / "toy" / "extra.csv").write_text("x")
    with pytest.raises(DataChangedError, match=r"/data/toy: added extra.csv, changed points.csv") as caught:
        rerun(runs, first.id)
    assert "changed_data_ok=true" in str(caught.value)
    anyway = rerun(runs, first.id, changed_data_ok=True)
    assert anyway.datasets != first.datasets
    with pytest.raises(BadInputError, match="call prepare_data"):
        rerun(runs, prepare_data(runs, "x", "download", network=False).id)


async def test_two_pollers_seeing_a_data_run_end_at_once_record_its_dataset_once(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import anyio

    from research_mcp.sandbox import dataprep

    real = dataprep.finish_data_run

    calls: list[float] = []

    def slow(*args: Any, **kwargs: Any) -> dataprep.DataEnd | None:
        calls.append(time.monotonic())
        found = real(*args, **kwargs)
        if len(calls) == 1:
            time.sleep(0.3)  # the dataset is in place, its end not yet recorded: the other poller looks now
        return found

    monkeypatch.setattr(dataprep, "finish_data_run", slow)
    backend = FakeBackend()
    runs = lab(ws, backend)
    run = prepare_data(runs, "twice", "download", network=False)
    await runs.pump()
    (Path(backend.started[0].mounts[0].source) / "a.csv").write_text("1\n")
    ended = RunStatus(state="exited", exit_code=0, started_at=1.0, ended_at=2.0, detail="Exited with code 0.")
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(runs._end, run.id, ended, None)
    done = runs.get(run.id)
    assert done.state == "succeeded" and (done.detail or "").startswith("Dataset twice is ready"), done.detail
    assert (ws.root / "datasets" / "twice" / "a.csv").is_file()
    events = runs.store.connection().execute("SELECT kind FROM run_events WHERE run_id = ?", (run.id,)).fetchall()
    assert [row[0] for row in events].count("dataset") == 1
