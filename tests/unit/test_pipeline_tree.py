"""experiment_tree on run records put straight into the store: parent cycles, the node cap, the best run, the
picture."""

from __future__ import annotations

import json
import time

import pytest

from research_mcp.errors import RunNotFoundError
from research_mcp.store import Store
from research_mcp.tools.pipeline import draw_tree, experiment_tree, tree
from research_mcp.workspace import Workspace


def run(ws: Workspace, store: Store, run_id: str, parent: str | None, metrics: dict[str, float] | None = None,
        state: str = "succeeded") -> None:  # fmt: skip
    store.connection().execute(
        "INSERT INTO runs (id, backend, command, workdir, parent, state, created_at) "
        "VALUES (?, 'local', 'true', '.', ?, ?, ?)",
        (run_id, parent, state, time.time()),
    )
    outputs = ws.root / "runs" / run_id / "outputs"
    outputs.mkdir(parents=True)
    if metrics is not None:
        (outputs / "final_info.json").write_text(json.dumps({"spirals": {"means": metrics}}))


def test_a_cycle_of_parents_lists_each_run_once(ws: Workspace, store: Store) -> None:
    run(ws, store, "a", None)
    run(ws, store, "b", "a")
    store.connection().execute("PRAGMA foreign_keys = OFF")
    store.connection().execute("UPDATE runs SET parent = 'b' WHERE id = 'a'")
    found = experiment_tree(ws, store, "a")
    assert [node.id for node in found.nodes] == ["a", "b"] and found.total == 2


def test_past_the_cap_the_tree_says_how_many_runs_it_left_out(
    ws: Workspace, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree, "MAX_NODES", 3)
    run(ws, store, "root", None)
    for i in range(4):
        run(ws, store, f"c{i}", "root")
    found = experiment_tree(ws, store, "root")
    assert found.truncated and found.total == 5 and len(found.nodes) == 3
    assert found.lines[-1] == "... 2 more run(s) under root not shown"


def test_the_best_run_needs_one_metric_with_a_known_direction(ws: Workspace, store: Store) -> None:
    root, better, broken, other = (f"20260101-000000-00000{i}" for i in range(4))  # ids as run_experiment makes
    run(ws, store, root, None, {"val_loss": 0.5})
    run(ws, store, better, root, {"val_loss": 0.3})
    run(ws, store, broken, root, {"val_loss": 0.1}, state="failed")
    found = experiment_tree(ws, store, root)
    assert found.best == better and [n.value for n in found.nodes] == [0.5, 0.3, 0.1]
    assert found.nodes[1].metric == f"spirals.means.val_loss (runs/{better}/outputs/final_info.json)"
    run(ws, store, other, root, {"accuracy": 0.9})
    assert experiment_tree(ws, store, root).best is None  # two metrics: nothing to rank by
    assert experiment_tree(ws, store, root, metric="val_loss").best == better


def test_an_unknown_root_names_the_newest_runs(ws: Workspace, store: Store) -> None:
    run(ws, store, "only", None)
    with pytest.raises(RunNotFoundError, match="only"):
        experiment_tree(ws, store, "nope")


def test_a_large_tree_is_drawn_as_dots_and_a_small_one_with_labels(ws: Workspace, store: Store) -> None:
    run(ws, store, "root", None, {"acc": 0.5})
    for i in range(50):
        run(ws, store, f"c{i:02d}", "root" if i < 10 else f"c{i % 10:02d}", {"acc": i / 100})
    big = draw_tree(experiment_tree(ws, store, "root"))
    small = draw_tree(experiment_tree(ws, store, "c01"))
    assert big.startswith(b"\x89PNG") and small.startswith(b"\x89PNG") and big != small


def test_the_answer_keeps_the_runs_that_fit_its_budget_in_tree_order(ws: Workspace, store: Store) -> None:
    run(ws, store, "root", None)
    for i in range(30):
        run(ws, store, f"c{i:02d}", "root" if i < 5 else f"c{i % 5:02d}")
    whole = experiment_tree(ws, store, "root")
    assert not whole.truncated and len(whole.nodes) == 31
    cut = experiment_tree(ws, store, "root", max_chars=3000)
    assert cut.truncated and cut.total == 31 and 1 < len(cut.nodes) < 31
    assert [node.id for node in cut.nodes] == [node.id for node in whole.nodes][: len(cut.nodes)]
    assert cut.lines[-1] == f"... {31 - len(cut.nodes)} more run(s) under root not shown"
    assert len(cut.model_dump_json()) + len("\n".join(cut.lines)) <= 3000
