"""Sweeps in the domain: the grid times the seeds, the braces filled in shell-quoted, one snapshot and one
transaction for every member, and the members claimed and started together (a fake backend, no sandbox)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from research_mcp.errors import BadInputError, NotFoundError, SandboxError
from research_mcp.sandbox.base import Capacity
from research_mcp.sandbox.runs import RunManager, RunRequest
from research_mcp.sandbox.sweeps import MAX_MEMBERS, config_name, members, prepare_sweep, substitute
from research_mcp.store import Store
from research_mcp.workspace import Workspace
from tests.unit.test_runs import FakeBackend

pytestmark = pytest.mark.anyio


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "exp" / "data").mkdir(parents=True)
    (root / "exp" / "train.py").write_text("print('hi')\n")
    (root / "exp" / "data" / "x.csv").write_text("a,b\n1,2\n")
    return Workspace(root.resolve(), "setting")


def manager(ws: Workspace, backend: FakeBackend, limit: int | None = None) -> RunManager:
    store = Store(ws.state_dir / "state.db")
    return RunManager(ws, store, {"fake": lambda: backend}, choose=lambda: "fake", max_concurrent=limit)


def base(**extra: object) -> RunRequest:
    return RunRequest.model_validate({"command": "python3 train.py --lr {lr} --seed {seed}", "workdir": "exp", **extra})


def test_the_grid_times_the_seeds_goes_seed_by_seed_over_every_configuration() -> None:
    found = members({"lr": [0.1, 0.01], "wd": [0, 1]}, [7, 8])
    assert [(m.config, m.seed) for m in found[:4]] == [
        ({"lr": 0.1, "wd": 0}, 7), ({"lr": 0.1, "wd": 1}, 7), ({"lr": 0.01, "wd": 0}, 7), ({"lr": 0.01, "wd": 1}, 7),
    ]  # fmt: skip
    assert len(found) == 8 and {m.seed for m in found[4:]} == {8}
    assert [(m.config, m.seed) for m in members(None, [1, 2])] == [({}, 1), ({}, 2)]
    assert [(m.config, m.seed) for m in members({"lr": [1]}, None)] == [({"lr": 1}, None)]


@pytest.mark.parametrize(
    ("grid", "seeds", "says"),
    [
        (None, None, "nothing to sweep"),
        ({}, [], "nothing to sweep"),
        ({"lr": []}, None, "no values"),
        ({"lr": [0.1, 0.1]}, None, "twice"),
        ({"seed": [1, 2]}, None, "seeds=[...]"),
        ({"learning rate": [1]}, None, "must be a name"),
        (None, [1, 1], "distinct"),
        ({"a": list(range(11)), "b": list(range(10))}, list(range(10)), f"1100 runs; at most {MAX_MEMBERS}"),
    ],
)
def test_a_sweep_that_cannot_be_run_is_refused_with_what_to_change(
    grid: dict[str, list[object]] | None, seeds: list[int] | None, says: str
) -> None:
    with pytest.raises(BadInputError, match=re.escape(says)):
        members(grid, seeds)


def test_braces_that_name_no_grid_key_stay_as_they_are() -> None:
    command = 'python3 -c "d = {}; print(d, {x})" --lr {lr} {seed} {{lr}} {lr2}'
    assert substitute(command, {"lr": 0.1, "seed": 3}) == ('python3 -c "d = {}; print(d, {x})" --lr 0.1 3 {0.1} {lr2}')
    assert substitute("run {name}", {"name": "a b"}) == "run 'a b'"
    assert substitute("run {flag}", {"flag": True}) == "run true"  # not a string: JSON, as RESEARCH_CONFIG has it
    assert config_name({"lr": 0.1, "opt": "adam", "wd": 0}) == "lr=0.1,opt=adam,wd=0"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_a_value_reaches_the_program_as_one_literal_argument(value: str) -> None:
    command = substitute(
        f"{shlex.quote(sys.executable)} -c 'import sys; print(repr(sys.argv[1:]))' {{v}}", {"v": value}
    )
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout.strip() == repr([value])


def test_a_sweep_records_every_member_with_one_snapshot_in_one_transaction(ws: Workspace) -> None:
    runs = manager(ws, FakeBackend())
    statements: list[str] = []
    runs.store.connection().set_trace_callback(statements.append)
    sweep_id = prepare_sweep(runs, base(label="abl", env={"A": "1"}), {"lr": [0.1, 0.01, 0.001]}, [0, 1, 2])
    runs.store.connection().set_trace_callback(None)
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == ["BEGIN IMMEDIATE", "COMMIT"]
    found, total = runs.list(None, None, None, 100, 0, sweep_id)
    assert total == 9 and runs.sweep_counts(sweep_id) == {"queued": 9}
    assert [(r.config, r.seed, r.label) for r in found[:3]] == [
        ({"lr": 0.1}, 0, "abl/lr=0.1"), ({"lr": 0.01}, 0, "abl/lr=0.01"), ({"lr": 0.001}, 0, "abl/lr=0.001"),
    ]  # fmt: skip
    assert {r.code_hash for r in found} == {found[0].code_hash} and all(r.sweep_id == sweep_id for r in found)
    assert found[4].command == "python3 train.py --lr 0.01 --seed 1"
    limits = json.loads(runs._row(found[4].id)["limits"])
    assert limits["env"] == {"A": "1", "RESEARCH_CONFIG": '{"lr": 0.01}', "RESEARCH_SEED": "1"}
    for run in found:  # every member has its own working tree, the same code
        folder = ws.root / run.folder
        assert (folder / "work" / "data" / "x.csv").read_text() == "a,b\n1,2\n" and (folder / "outputs").is_dir()
        assert json.loads((folder / "manifest.json").read_text()).keys() == {"train.py", "data/x.csv"}
    first, other = (ws.root / found[0].folder / "work" / "train.py"), (ws.root / found[1].folder / "work" / "train.py")
    assert first.stat().st_ino != other.stat().st_ino  # work/ is each run's own copy, writable apart
    [row] = runs.store.connection().execute("SELECT * FROM sweeps").fetchall()
    assert (row["id"], json.loads(row["grid"]), json.loads(row["seeds"]), row["backend"]) == (
        sweep_id, {"lr": [0.1, 0.01, 0.001]}, [0, 1, 2], "fake",
    )  # fmt: skip


def test_a_label_names_only_the_keys_that_tell_configurations_apart(ws: Workspace) -> None:
    runs = manager(ws, FakeBackend())
    fixed = prepare_sweep(runs, base(label="mlp"), {"lr": [0.1], "hidden": [64]}, [0, 1])
    found, _ = runs.list(None, None, None, 10, 0, fixed)
    assert {r.label for r in found} == {"mlp"} and found[0].config == {"lr": 0.1, "hidden": 64}
    varied = prepare_sweep(runs, base(label="abl"), {"lr": [0.1, 0.01], "wd": [0]}, [0])
    found, _ = runs.list(None, None, None, 10, 0, varied)
    assert [r.label for r in found] == ["abl/lr=0.1", "abl/lr=0.01"]
    unnamed = prepare_sweep(runs, base(), {"lr": [0.1], "wd": [0]}, [0])
    assert runs.list(None, None, None, 10, 0, unnamed)[0][0].label == "lr=0.1,wd=0"


def test_a_sweep_that_fails_to_record_leaves_no_member_and_no_folder(ws: Workspace) -> None:
    runs = manager(ws, FakeBackend())
    with pytest.raises(SandboxError, match="No run"):
        prepare_sweep(runs, base(parent="20260101-000000-abcdef"), {"lr": [1, 2]}, None)
    with pytest.raises(NotFoundError, match="missing"):
        prepare_sweep(runs, base(workdir="missing"), {"lr": [1, 2]}, None)
    assert runs.store.connection().execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    assert runs.store.connection().execute("SELECT count(*) FROM sweeps").fetchone()[0] == 0
    assert not list((ws.root / "runs").iterdir())


async def test_the_members_go_to_the_backend_together_in_one_batch_in_their_order(ws: Workspace) -> None:
    backend = FakeBackend(Capacity(runs=64, cpus=8))
    runs = manager(ws, backend)
    lone = runs.prepare(base(command="python3 train.py"))
    sweep_id = prepare_sweep(runs, base(), {"lr": [1, 2, 3]}, [0, 1])
    await runs.pump()
    found, _ = runs.list(None, None, None, 100, 0, sweep_id)
    assert backend.batches == [[lone.id, *(r.id for r in found)]]
    assert runs.sweep_counts(sweep_id) == {"running": 6}


async def test_cancel_on_a_sweep_stops_its_running_members_and_drops_its_queued_ones(ws: Workspace) -> None:
    backend = FakeBackend()
    runs = manager(ws, backend, limit=2)
    other = runs.prepare(base(command="python3 train.py"))
    sweep_id = prepare_sweep(runs, base(), {"lr": [1, 2, 3]}, None)
    await runs.pump()  # the lone run and the first member take both slots
    assert runs.sweep_counts(sweep_id) == {"queued": 2, "running": 1}
    assert await runs.cancel_sweep(sweep_id) == 3
    assert runs.sweep_counts(sweep_id) == {"cancelled": 3}
    assert len(backend.cancelled) == 1 and runs.get(other.id).state == "running"  # not a member: left alone
    with pytest.raises(SandboxError, match="No sweep 'sweep-nope'.*run_sweep"):
        runs.sweep_counts("sweep-nope")
