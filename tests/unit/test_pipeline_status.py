"""research_status on records put straight into the store: which rows count for an idea, and what each missing
criterion says."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from research_mcp.errors import BadInputError
from research_mcp.store import Store
from research_mcp.tools.pipeline import IdeaEdit, research_status, save_idea
from research_mcp.workspace import Workspace


def run(store: Store, run_id: str, idea_id: str | None, label: str | None, seed: int | None,
        state: str = "succeeded") -> str:  # fmt: skip
    store.connection().execute(
        "INSERT INTO runs (id, backend, command, workdir, label, seed, idea_id, state, created_at) "
        "VALUES (?, 'local', 'true', '.', ?, ?, ?, ?, ?)",
        (run_id, label, seed, idea_id, state, time.time()),
    )
    return run_id


def row(store: Store, table: str, **values: Any) -> None:
    names, marks = ", ".join(values), ", ".join("?" for _ in values)
    store.connection().execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(values.values()))


def stage(ws: Workspace, store: Store, idea_id: str, name: str) -> dict[str, Any]:
    found = research_status(ws, store, idea_id).model_dump(mode="json")
    return next(s for s in found["stages"] if s["name"] == name)


def idea(ws: Workspace, store: Store, title: str = "Tiny MLPs") -> str:
    return save_idea(ws, store, None, IdeaEdit(title=title, hypothesis="Smoothing helps.")).id


def test_no_idea_yet_says_how_to_make_one(ws: Workspace, store: Store) -> None:
    with pytest.raises(BadInputError, match="Call ideas with a title"):
        research_status(ws, store)


def test_the_latest_idea_is_the_default_and_the_others_are_named(ws: Workspace, store: Store) -> None:
    first = idea(ws, store, "First")
    time.sleep(0.01)
    second = idea(ws, store, "Second")
    found = research_status(ws, store)
    assert found.idea_id == second and found.other_ideas == [f"{first}: First"]


def test_seeds_count_distinct_succeeded_seeds_of_the_idea_per_label(ws: Workspace, store: Store) -> None:
    mine, other = idea(ws, store), idea(ws, store, "Other")
    run(store, "r1", mine, "baseline", 0)
    run(store, "r2", mine, "baseline", 0)  # the same seed again
    run(store, "r3", mine, "baseline", 1, state="failed")
    run(store, "r4", other, "baseline", 2)  # another idea's
    run(store, "r5", mine, "smooth", 0)
    run(store, "r6", mine, "smooth", 1)
    found = stage(ws, store, mine, "seeds")
    assert found["missing"] == [
        "baseline has 1 seed; claims need at least 3",
        "smooth has 2 seeds; claims need at least 3",
    ]
    assert found["next_step"]["arguments"] == {"idea_id": mine, "label": "baseline", "seed": 1}


def test_only_the_compared_labels_need_seeds_once_a_comparison_is_stored(ws: Workspace, store: Store) -> None:
    mine = idea(ws, store)
    ids = [run(store, f"b{i}", mine, "baseline", i) for i in range(3)]
    ids2 = [run(store, f"s{i}", mine, "smooth", i) for i in range(3)]
    run(store, "x0", mine, "exploratory", 0)  # one seed, never compared
    assert "exploratory has 1 seed" in stage(ws, store, mine, "seeds")["missing"][0]
    data = {"groups": [{"name": "baseline", "sources": ids}, {"name": "smooth", "sources": ids2}], "verdict": "v"}
    row(store, "comparisons", id="c1", metric="acc", data=json.dumps(data), idea_id=None, created_at=time.time())
    assert stage(ws, store, mine, "seeds")["done"] and stage(ws, store, mine, "comparison")["done"]


def test_a_comparison_counts_for_an_idea_by_its_idea_id_or_by_its_runs(ws: Workspace, store: Store) -> None:
    mine = idea(ws, store)
    run(store, "a", mine, "baseline", 0)
    run(store, "b", None, "smooth", 0)  # not a run of the idea
    data = {"groups": [{"name": "baseline", "sources": ["a"]}, {"name": "smooth", "sources": ["b"]}]}
    row(store, "comparisons", id="c1", metric="acc", data=json.dumps(data), idea_id=None, created_at=time.time())
    assert not stage(ws, store, mine, "comparison")["done"]
    row(store, "comparisons", id="c2", metric="acc", data=json.dumps(data), idea_id=mine, created_at=time.time())
    assert stage(ws, store, mine, "comparison")["done"]
    one_group = {"groups": [{"name": "baseline", "sources": ["a"]}]}
    other = idea(ws, store, "Other")
    row(store, "comparisons", id="c3", metric="acc", data=json.dumps(one_group), idea_id=other,
        created_at=time.time())  # fmt: skip
    assert not stage(ws, store, other, "comparison")["done"]


def test_another_ideas_audit_and_reviews_do_not_count(ws: Workspace, store: Store) -> None:
    mine, other = idea(ws, store), idea(ws, store, "Other")
    clean = json.dumps({"untraced": 0, "findings": []})
    row(store, "audits", id="a1", main="paper/main.tex", paper_hash="h", data=clean, idea_id=other,
        created_at=time.time())  # fmt: skip
    assert stage(ws, store, mine, "audit_clean")["missing"] == ["no audit of the paper"]
    assert stage(ws, store, other, "audit_clean")["done"]
    now = time.time()
    for set_id, paper_hash, at in (("r1", "h1", now), ("r2", "h1", now + 1)):
        row(store, "review_sets", id=set_id, paper="paper/main.tex", paper_hash=paper_hash, mode="client",
            state="done", data="{}", idea_id=mine, created_at=at, updated_at=at)  # fmt: skip
    assert stage(ws, store, mine, "review")["done"] and not stage(ws, store, other, "review")["done"]
    assert stage(ws, store, mine, "revision")["missing"] == ["no done review set of a revised paper"]
    row(store, "review_sets", id="r3", paper="paper/main.tex", paper_hash="h2", mode="client", state="done",
        data="{}", idea_id=None, created_at=now + 2, updated_at=now + 2)  # fmt: skip
    assert stage(ws, store, mine, "revision")["done"]


def test_a_plan_file_that_is_missing_is_named(ws: Workspace, store: Store) -> None:
    mine = idea(ws, store)
    assert stage(ws, store, mine, "plan")["missing"] == ["no plan file attached"]
    save_idea(ws, store, mine, IdeaEdit(plan_files=["plan.md"]))
    found = stage(ws, store, mine, "plan")
    assert found["missing"] == ["plan.md does not exist"] and found["next_step"]["tool"] == "write_file"
    (ws.root / "plan.md").write_text("# plan\n")
    assert stage(ws, store, mine, "plan")["done"]


def test_a_known_verdict_is_not_novelty(ws: Workspace, store: Store) -> None:
    from research_mcp.tools.pipeline import record_search

    mine = idea(ws, store)
    record_search(store, mine, "search_papers", "q", {}, [], False)
    assert stage(ws, store, mine, "novelty")["missing"] == ["1 search(es) returned no paper"]
    record_search(store, mine, "search_papers", "q2", {}, ["arXiv:1906.02629"], False)
    save_idea(ws, store, mine, IdeaEdit(novelty="known", reasons="arXiv:1906.02629 did exactly this."))
    assert stage(ws, store, mine, "novelty")["missing"] == ["the verdict is 'known'"]


def test_many_labels_short_of_seeds_are_named_up_to_a_bound(ws: Workspace, store: Store) -> None:
    mine = idea(ws, store)
    for i in range(40):
        run(store, f"r{i}", mine, f"arm{i:02d}", 0)
    found = stage(ws, store, mine, "seeds")
    assert len(found["missing"]) == 11 and found["missing"][-1] == "... and 30 more label(s) short of 3 seeds"
    assert len(json.dumps(research_status(ws, store, mine).model_dump(mode="json"))) < 6000
