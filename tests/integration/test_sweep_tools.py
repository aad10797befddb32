"""Sweeps through the real MCP tools, on each real backend: run_sweep, list_runs(sweep_id), cancel_run on a
sweep id, and compare_runs / results_table grouping a sweep's runs by configuration."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from mcp import Client

from research_mcp.config import Settings
from research_mcp.server import build_server
from tests.conftest import open_for_sandbox
from tests.integration._client import call, call_raw, error_text

pytestmark = pytest.mark.anyio


TRAIN = """\
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
parser.add_argument("--seed", type=int)
args = parser.parse_args()
config = json.loads(os.environ["RESEARCH_CONFIG"])
assert config == {"lr": args.lr}, (config, args)
assert int(os.environ["RESEARCH_SEED"]) == args.seed
loss = 1.0 / args.lr / 1000 + args.seed * 0.001
final = {"toy": {"means": {"val_loss": loss}}}
json.dump(final, open(os.path.join(os.environ["RESEARCH_OUT"], "final_info.json"), "w"))
print("argv", sys.argv[1:])
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "exp").mkdir(parents=True)
    (root / "exp" / "train.py").write_text(TRAIN)
    open_for_sandbox(tmp_path, root)
    return root


@pytest.fixture
async def lab(workspace: Path, backend: Literal["local", "docker"]) -> AsyncIterator[Client]:
    settings = Settings(workspace=workspace, backend=backend, max_concurrent_runs=3, max_log_bytes=1 << 20)
    async with Client(build_server(settings), raise_exceptions=True) as client:
        yield client


async def drained(client: Client, sweep_id: str, timeout_s: float = 180) -> dict[str, Any]:
    """list_runs of the sweep once none of its runs is queued, starting or running."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await call(client, "list_runs", {"sweep_id": sweep_id, "limit": 20})
        if not {"queued", "starting", "running"} & found["sweep"]["counts"].keys():
            return found
        assert time.monotonic() < deadline, found["sweep"]
        await anyio.sleep(0.2)


async def test_a_sweep_of_three_configurations_times_three_seeds_runs_nine_runs_compared_by_config(
    lab: Client, workspace: Path
) -> None:
    started = await call(lab, "run_sweep", {"command": "python3 train.py --lr {lr} --seed {seed}", "workdir": "exp",
                                            "grid": {"lr": [0.1, 0.01, 0.001]}, "seeds": [0, 1, 2], "wait_s": 40,
                                            "timeout_s": 120})  # fmt: skip
    sweep_id = started["sweep"]["id"]
    assert started["total"] == 9 and started["sweep"]["members"] == 9
    done = await drained(lab, sweep_id)
    assert done["sweep"]["counts"] == {"succeeded": 9}, done["runs"]
    assert done["sweep"]["next_step"]["tool"] == "read_metrics"
    members = done["runs"]
    assert sorted((r["config"]["lr"], r["seed"]) for r in members) == sorted(
        (lr, seed) for lr in (0.1, 0.01, 0.001) for seed in (0, 1, 2)
    )
    assert {r["label"] for r in members} == {"lr=0.1", "lr=0.01", "lr=0.001"}
    assert len({r["code_hash"] for r in members}) == 1 and {r["sweep_id"] for r in members} == {sweep_id}
    one = next(r for r in members if r["config"]["lr"] == 0.01 and r["seed"] == 2)
    metrics = await call(lab, "read_metrics", {"source": one["id"]})
    [loss] = [m for m in metrics["metrics"] if m["name"].endswith("val_loss")]
    assert loss["last"] == pytest.approx(0.1 + 0.002)
    logs = await call(lab, "run_logs", {"run_id": one["id"]})
    assert "argv ['--lr', '0.01', '--seed', '2']" in logs["lines"]

    compared = await call(lab, "compare_runs", {"metric": "val_loss", "run_ids": [sweep_id]})
    groups = {g["name"]: g for g in compared["groups"]}
    assert set(groups) == {"lr=0.1", "lr=0.01", "lr=0.001"} and {g["n"] for g in groups.values()} == {3}
    assert groups["lr=0.1"]["mean"] == pytest.approx(0.01 + 0.001)
    assert compared["best_group"] == "lr=0.1" and compared["best_is_significant"]
    table = await call(lab, "results_table", {"metrics": ["val_loss"], "caption": "Learning rates",
                                              "label": "lrs", "run_ids": [sweep_id]})  # fmt: skip
    assert "lr=0.001" in table["latex"] and (workspace / "paper" / "tables" / "lrs.tex").is_file()
    unknown = error_text(await call_raw(lab, "compare_runs", {"metric": "val_loss", "run_ids": ["sweep-nope"]}))
    assert "No sweep 'sweep-nope'" in unknown


async def test_cancel_on_a_sweep_id_cancels_every_run_and_leaves_nothing_running(lab: Client) -> None:
    marker = "71.2345"
    started = await call(lab, "run_sweep", {"command": f"sleep {marker}", "workdir": "exp", "seeds": [1, 2, 3, 4, 5]})
    sweep_id = started["sweep"]["id"]
    deadline = time.monotonic() + 60
    while (counts := (await call(lab, "list_runs", {"sweep_id": sweep_id}))["sweep"]["counts"]).get("running", 0) < 2:
        assert time.monotonic() < deadline  # at most three slots (fewer on a small machine): some run, some wait
        await anyio.sleep(0.1)
    assert counts.get("queued", 0) >= 2
    cancelled = await call(lab, "cancel_run", {"run_id": sweep_id})
    assert cancelled["sweep"]["counts"] == {"cancelled": 5} and cancelled["sweep"]["cancelled_now"] == 5
    assert cancelled["run"]["state"] == "cancelled" and cancelled["run"]["sweep_id"] == sweep_id
    ps = (await anyio.run_process(["ps", "-ww", "-eo", "args"])).stdout.decode()
    assert f"sleep {marker}" not in ps
    again = await call(lab, "cancel_run", {"run_id": sweep_id})  # nothing left to cancel: said, not an error
    assert again["sweep"]["counts"] == {"cancelled": 5} and "cancelled_now" not in again["sweep"]


async def test_list_runs_pages_a_sweeps_runs_in_order_with_its_counts(lab: Client) -> None:
    started = await call(lab, "run_sweep", {"command": "exit {code}", "workdir": "exp", "grid": {"code": [0, 3]},
                                            "seeds": [0, 1], "label": "exits", "wait_s": 30})  # fmt: skip
    sweep_id = started["sweep"]["id"]
    await drained(lab, sweep_id)
    page = await call(lab, "list_runs", {"sweep_id": sweep_id, "limit": 3})
    assert page["sweep"]["counts"] == {"succeeded": 2, "failed": 2} and page["total"] == 4
    assert [(r["label"], r["seed"]) for r in page["runs"]] == [("exits/code=0", 0), ("exits/code=3", 0),
                                                                ("exits/code=0", 1)]  # fmt: skip
    rest = await call(lab, "list_runs", {"sweep_id": sweep_id, "limit": 3, "offset": page["next_offset"]})
    assert [(r["label"], r["seed"], r["exit_code"]) for r in rest["runs"]] == [("exits/code=3", 1, 3)]
    failed = await call(lab, "list_runs", {"sweep_id": sweep_id, "status": "failed"})
    assert failed["total"] == 2 and failed["sweep"]["members"] == 4
    unknown = error_text(await call_raw(lab, "list_runs", {"sweep_id": "sweep-nope"}))
    assert "No sweep 'sweep-nope'" in unknown and "run_sweep" in unknown


@pytest.mark.bwrap
async def test_a_grid_value_reaches_the_sandboxed_program_as_one_literal_argument(workspace: Path) -> None:
    hostile = 'it\'s a "test" $(touch pwned) `touch pwned2`; touch pwned3 {lr}'
    async with Client(build_server(Settings(workspace=workspace, backend="local")), raise_exceptions=True) as lab:
        started = await call(lab, "run_sweep", {
            "command": "python3 -c 'import sys; print(sys.argv[1:]); d = {}' {name}", "workdir": "exp",
            "grid": {"name": [hostile]}, "wait_s": 30})  # fmt: skip
        [run] = (await drained(lab, started["sweep"]["id"]))["runs"]
        logs = await call(lab, "run_logs", {"run_id": run["id"]})
    assert run["state"] == "succeeded" and logs["lines"] == [repr([hostile])]
    assert not list((workspace / "runs" / run["id"] / "work").glob("pwned*"))


async def test_a_sweep_past_the_size_bound_is_refused_before_anything_runs(workspace: Path) -> None:
    async with Client(build_server(Settings(workspace=workspace, backend="local")), raise_exceptions=True) as lab:
        refused = await call_raw(lab, "run_sweep", {"command": "true", "workdir": "exp",
                                                    "grid": {"a": list(range(40)), "b": list(range(30))}})  # fmt: skip
        assert "1200 runs; at most 1000" in error_text(refused)
        assert (await call(lab, "list_runs", {}))["total"] == 0
