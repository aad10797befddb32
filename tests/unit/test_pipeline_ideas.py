"""Ideas as records: what the model may set, the novelty verdict checked against the recorded searches, and an
approval bound to the plan it approved."""

from __future__ import annotations

import pytest

from research_mcp.errors import BadInputError, PathError
from research_mcp.store import Store
from research_mcp.tools.pipeline import IdeaEdit, get_idea, record_approval, record_search, save_idea
from research_mcp.workspace import Workspace


def new(ws: Workspace, store: Store) -> str:
    return save_idea(ws, store, None, IdeaEdit(title="Tiny MLPs", hypothesis="Smoothing helps.")).id


def test_a_new_idea_needs_a_title_and_a_hypothesis(ws: Workspace, store: Store) -> None:
    with pytest.raises(BadInputError, match="title and a hypothesis"):
        save_idea(ws, store, None, IdeaEdit(title="Only a title"))
    with pytest.raises(BadInputError, match="Create the idea first"):
        save_idea(ws, store, None, IdeaEdit(title="t", hypothesis="h", novelty="novel", reasons="x"))
    idea_id = new(ws, store)
    with pytest.raises(BadInputError, match="Nothing to change"):
        save_idea(ws, store, idea_id, IdeaEdit())


def test_an_update_keeps_what_it_does_not_name(ws: Workspace, store: Store) -> None:
    idea_id = new(ws, store)
    save_idea(ws, store, idea_id, IdeaEdit(experiments=["baseline", "smoothing"]))
    record = save_idea(ws, store, idea_id, IdeaEdit(title="Tiny MLPs, smoothed"))
    assert record.title == "Tiny MLPs, smoothed" and record.hypothesis == "Smoothing helps."
    assert record.experiments == ["baseline", "smoothing"]


def test_the_verdict_needs_a_search_and_cites_only_papers_it_returned(ws: Workspace, store: Store) -> None:
    idea_id = new(ws, store)
    verdict = IdeaEdit(novelty="novel", reasons="Closest: arXiv:1906.02629 (large nets only).")
    with pytest.raises(BadInputError, match="No novelty search is recorded"):
        save_idea(ws, store, idea_id, verdict)
    record_search(store, idea_id, "search_papers", "label smoothing", {}, ["arXiv:1906.02629", "s2:abc123"], False)
    with pytest.raises(BadInputError, match="cite no paper id"):
        save_idea(ws, store, idea_id, IdeaEdit(novelty="novel", reasons="Nobody did this."))
    with pytest.raises(BadInputError, match="arXiv:2101.00001"):
        save_idea(ws, store, idea_id, IdeaEdit(novelty="novel", reasons="arXiv:2101.00001 and s2:abc123 differ."))
    with pytest.raises(BadInputError, match="together"):
        save_idea(ws, store, idea_id, IdeaEdit(novelty="novel"))
    record = save_idea(ws, store, idea_id, verdict)
    assert record.novelty == "novel" and record.searches[0].paper_ids == ["arXiv:1906.02629", "s2:abc123"]
    with pytest.raises(BadInputError, match="No idea 'idea-000000'"):
        record_search(store, "idea-000000", "search_papers", "q", {}, [], False)


def test_plan_files_stay_inside_the_workspace(ws: Workspace, store: Store) -> None:
    idea_id = new(ws, store)
    with pytest.raises(PathError):
        save_idea(ws, store, idea_id, IdeaEdit(plan_files=["../elsewhere.md"]))
    assert save_idea(ws, store, idea_id, IdeaEdit(plan_files=["docs//plan.md"])).plan_files == ["docs/plan.md"]


def test_an_approval_is_bound_to_the_plan_it_approved(ws: Workspace, store: Store) -> None:
    idea_id = new(ws, store)
    (ws.root / "plan.md").write_text("v1\n")
    save_idea(ws, store, idea_id, IdeaEdit(plan_files=["plan.md"]))
    with pytest.raises(BadInputError, match="user_words"):
        record_approval(ws, store, idea_id, True, "relayed", "   ")
    approved = record_approval(ws, store, idea_id, True, "relayed", '"yes"').approval
    assert approved is not None and approved.current and approved.source == "relayed" and approved.words == '"yes"'
    (ws.root / "plan.md").write_text("v2\n")
    stale = get_idea(ws, store, idea_id).approval
    assert stale is not None and not stale.current
    (ws.root / "plan.md").write_text("v1\n")
    again = get_idea(ws, store, idea_id).approval
    assert again is not None and again.current
    save_idea(ws, store, idea_id, IdeaEdit(experiments=["a third arm"]))
    changed = get_idea(ws, store, idea_id).approval
    assert changed is not None and not changed.current


def test_a_run_records_the_idea_it_was_made_for_and_refuses_an_unknown_one(ws: Workspace, store: Store) -> None:
    from research_mcp.sandbox.runs import RunManager, RunRequest

    idea_id = new(ws, store)
    (ws.root / "train.py").write_text("print(1)\n")
    manager = RunManager(ws, store, {}, choose=lambda: "local", max_concurrent=1)
    run = manager.prepare(RunRequest(command="python train.py", idea_id=idea_id))
    assert run.idea_id == idea_id and get_idea(ws, store, idea_id).runs == 1
    with pytest.raises(BadInputError, match="No idea 'idea-ffffff'"):
        manager.prepare(RunRequest(command="python train.py", idea_id="idea-ffffff"))
