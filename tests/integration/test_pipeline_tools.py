"""The pipeline tools through a real MCP client session: ideas and their approval (by the client's elicitation, and
relayed where the client cannot ask), novelty searches recorded by search_papers, research_status computed from the
records as they appear, and the tree of runs."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    ElicitRequestParams,
    ElicitResult,
    ImageContent,
    ResourceTemplateReference,
    TextContent,
    TextResourceContents,
)

from research_mcp.config import Settings
from research_mcp.sandbox.runs import RunManager, RunRequest
from research_mcp.server import build_server
from research_mcp.store import Store
from research_mcp.workspace import Workspace
from tests.integration._client import call, call_raw, error_text
from tests.integration.test_literature_tools import QUERY, atom, feed, lit_settings, s2_paper
from tests.integration.test_metrics_tools import metrics_and_final_info
from tests.replay import ReplayServer, Response, Route

pytestmark = pytest.mark.anyio

IDEA: dict[str, Any] = {
    "title": "Label smoothing for tiny MLPs",
    "hypothesis": "Label smoothing 0.1 raises validation accuracy of a 2-layer MLP on spirals.",
    "experiments": ["baseline MLP, 3 seeds", "MLP with label smoothing 0.1, 3 seeds"],
}


def record_idea_runs(
    workspace: Path,
    idea_id: str | None,
    finals: dict[str, list[float]],
    *,
    parent: str | None = None,
    state: str = "succeeded",
) -> dict[str, list[str]]:
    """Runs recorded as run_experiment records them (label, seed, idea, parent), then finished with metrics."""
    (workspace / "exp").mkdir(exist_ok=True)
    (workspace / "exp" / "train.py").write_text("print('hi')\n")
    store = Store(workspace / ".research" / "state.db")
    manager = RunManager(Workspace(workspace, "setting"), store, {}, choose=lambda: "local", max_concurrent=1)
    ids: dict[str, list[str]] = {}
    try:
        for label, values in finals.items():
            for seed, final in enumerate(values):
                request = RunRequest(command="python train.py", workdir="exp", label=label, seed=seed,
                                     idea_id=idea_id, parent=parent, note=f"{label} seed {seed}")  # fmt: skip
                run = manager.prepare(request)
                metrics_and_final_info(workspace / run.folder, final)
                store.connection().execute("UPDATE runs SET state = ?, exit_code = 0 WHERE id = ?", (state, run.id))
                ids.setdefault(label, []).append(run.id)
    finally:
        store.close()
    return ids


def insert(workspace: Path, table: str, **row: Any) -> None:
    """A row another tool family writes (comparisons, audits, review_sets), put in as that tool would."""
    store = Store(workspace / ".research" / "state.db")
    try:
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        store.connection().execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row.values()))
    finally:
        store.close()


def stages(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {stage["name"]: stage for stage in status["stages"]}


async def test_an_idea_is_created_changed_read_as_a_resource_and_its_id_completed(
    client: Client, workspace: Path
) -> None:
    created = await call(client, "ideas", {"title": IDEA["title"], "hypothesis": IDEA["hypothesis"]})
    idea_id = created["id"]
    assert re.fullmatch(r"idea-[0-9a-f]{6}", idea_id) and created["experiments"] == [] and created["runs"] == 0
    (workspace / "plan.md").write_text("# plan\n")
    changed = await call(client, "ideas", {"idea_id": idea_id, "experiments": IDEA["experiments"],
                                           "plan_files": ["./plan.md"]})  # fmt: skip
    assert changed["experiments"] == IDEA["experiments"] and changed["plan_files"] == ["plan.md"]
    assert changed["title"] == IDEA["title"] and changed["updated_at"] >= created["updated_at"]
    [content] = (await client.read_resource(f"idea://{idea_id}")).contents
    assert isinstance(content, TextResourceContents) and json.loads(content.text)["plan_files"] == ["plan.md"]
    ref = ResourceTemplateReference(type="ref/resource", uri="idea://{idea_id}")
    done = await client.complete(ref, {"name": "idea_id", "value": "idea-"})
    assert done.completion.values == [idea_id]
    with pytest.raises(MCPError, match="No idea 'idea-000000'"):
        await client.read_resource("idea://idea-000000")
    assert "title and a hypothesis" in error_text(await call_raw(client, "ideas", {"title": "only a title"}))
    assert "No idea 'nope'" in error_text(await call_raw(client, "ideas", {"idea_id": "nope", "title": "x"}))
    escape = error_text(await call_raw(client, "ideas", {"idea_id": idea_id, "plan_files": ["../outside.md"]}))
    assert "workspace" in escape
    early = error_text(await call_raw(client, "ideas", {"idea_id": idea_id, "novelty": "novel", "reasons": "x"}))
    assert "search_papers" in early


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # the 2026-07-28 round trip, and the initialize handshake
async def test_approval_is_asked_of_the_user_by_elicitation_and_their_answer_stored(
    settings: Settings, mode: str
) -> None:
    asked: list[str] = []
    answers = [
        ElicitResult(action="accept", content={"approve": True, "comment": "go, but cap it at 1 GPU"}),
        ElicitResult(action="decline"),
        ElicitResult(action="cancel"),
    ]

    async def on_elicit(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return answers[len(asked) - 1]

    async with Client(build_server(settings), elicitation_callback=on_elicit, mode=mode) as client:  # type: ignore[arg-type]
        idea = await call(client, "ideas", {**IDEA})
        approved = await call(client, "ideas", {"idea_id": idea["id"], "approve": True})
        assert approved["approval"] == {"approved": True, "source": "elicited", "words": "go, but cap it at 1 GPU",
                                        "current": True, "at": approved["approval"]["at"]}  # fmt: skip
        assert str(IDEA["title"]) in asked[0] and str(IDEA["experiments"][1]) in asked[0]
        declined = await call(client, "ideas", {"idea_id": idea["id"], "approve": True, "user_words": "yes"})
        assert declined["approval"]["approved"] is False and declined["approval"]["source"] == "elicited"
        dismissed = error_text(await call_raw(client, "ideas", {"idea_id": idea["id"], "approve": True}))
        assert "dismissed" in dismissed and len(asked) == 3
        mixed = error_text(await call_raw(client, "ideas", {"idea_id": idea["id"], "approve": True, "title": "t"}))
        assert "call of its own" in mixed and len(asked) == 3  # a call the tool refuses asks nobody
        status = await call(client, "research_status", {"idea_id": idea["id"]})
        assert "declined" in stages(status)["approval"]["missing"][0]


async def test_without_elicitation_the_approval_is_the_users_words_relayed_and_marked(
    client: Client, workspace: Path
) -> None:
    idea = await call(client, "ideas", {**IDEA, "plan_files": []})
    (workspace / "plan.md").write_text("# plan v1\n")
    await call(client, "ideas", {"idea_id": idea["id"], "plan_files": ["plan.md"]})
    missing = error_text(await call_raw(client, "ideas", {"idea_id": idea["id"], "approve": True}))
    assert "user_words" in missing
    mixed = error_text(await call_raw(client, "ideas", {"idea_id": idea["id"], "approve": True, "title": "t"}))
    assert "call of its own" in mixed
    words = '"Yes, run both arms."'
    relayed = await call(client, "ideas", {"idea_id": idea["id"], "approve": True, "user_words": words})
    assert relayed["approval"]["source"] == "relayed" and relayed["approval"]["words"] == words
    status = stages(await call(client, "research_status", {}))
    assert status["approval"]["done"] and "relayed by the model" in status["approval"]["evidence"]
    (workspace / "plan.md").write_text("# plan v2: a third arm\n")  # the plan changed after the approval
    status = stages(await call(client, "research_status", {}))
    assert not status["approval"]["done"] and "changed after" in status["approval"]["missing"][0]
    assert status["approval"]["next_step"]["arguments"] == {"idea_id": idea["id"], "approve": True}


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as s:
        yield s


def two_papers(server: ReplayServer) -> None:
    server.add(Route("GET", QUERY, feed(atom(
        {"id": "1512.00567", "title": "Rethinking the Inception Architecture", "year": 2015},
        {"id": "1906.02629", "title": "When Does Label Smoothing Help?", "year": 2019},
    ))))  # fmt: skip
    s2 = [s2_paper("abc123", "Label smoothing and calibration", citationCount=5)]
    server.add(Route("GET", "/graph/v1/paper/search", Response(200, {"total": 1, "offset": 0, "data": s2})))


async def test_search_papers_with_an_idea_id_records_the_search_and_what_it_returned(
    workspace: Path, server: ReplayServer
) -> None:
    two_papers(server)
    async with Client(build_server(lit_settings(workspace, server))) as client:
        idea = await call(client, "ideas", {**IDEA})
        unknown = error_text(await call_raw(client, "search_papers", {"query": "x", "idea_id": "idea-ffffff"}))
        assert "No idea 'idea-ffffff'" in unknown and not server.requests
        status = stages(await call(client, "research_status", {"idea_id": idea["id"]}))
        assert status["novelty"]["next_step"]["tool"] == "search_papers"
        found = await call(client, "search_papers", {"query": "label smoothing", "idea_id": idea["id"]})
        ids = [paper["id"] for paper in found["papers"]]
        assert sorted(ids) == ["arXiv:1512.00567", "arXiv:1906.02629", "s2:abc123"]
        record = await call(client, "ideas", {"idea_id": idea["id"], "title": IDEA["title"]})
        [search] = record["searches"]
        assert search["query"] == "label smoothing" and search["paper_ids"] == ids and search["returned"] == 3
        assert not search["degraded"] and search["tool"] == "search_papers"
        status = stages(await call(client, "research_status", {"idea_id": idea["id"]}))
        assert not status["novelty"]["done"] and "no verdict" in status["novelty"]["missing"][0]
        made_up = "Closest is arXiv:2001.00001, which smooths labels for CNNs only."
        text = error_text(await call_raw(client, "ideas", {"idea_id": idea["id"], "novelty": "incremental",
                                                            "reasons": made_up}))  # fmt: skip
        assert "arXiv:2001.00001" in text and "no recorded search" in text
        reasons = "arXiv:1906.02629 studies label smoothing on large nets; none on tiny MLPs."
        judged = await call(client, "ideas", {"idea_id": idea["id"], "novelty": "incremental", "reasons": reasons})
        assert judged["novelty"] == "incremental" and judged["reasons"] == reasons
        status = stages(await call(client, "research_status", {"idea_id": idea["id"]}))
        assert status["novelty"]["done"] and "1 search(es) returning 3 papers" in status["novelty"]["evidence"]
        plain = await call(client, "search_papers", {"query": "label smoothing"})  # no idea: nothing recorded
        assert plain["papers"]
        again = await call(client, "ideas", {"idea_id": idea["id"], "title": IDEA["title"]})
        assert again["searches_total"] == 1


async def test_research_status_flips_each_stage_as_its_records_appear(client: Client, workspace: Path) -> None:
    idea = await call(client, "ideas", {"title": IDEA["title"], "hypothesis": IDEA["hypothesis"]})
    idea_id = idea["id"]
    first = await call(client, "research_status", {})
    assert first["idea_id"] == idea_id and first["done"] == 0 and len(first["stages"]) == 12
    assert first["next_step"]["tool"] == "ideas" and "no planned experiment" in stages(first)["idea"]["missing"]
    assert all(not stage["done"] and stage["next_step"] for stage in first["stages"])

    (workspace / "plan.md").write_text("# plan\n")
    await call(client, "ideas", {"idea_id": idea_id, "experiments": IDEA["experiments"], "plan_files": ["plan.md"]})
    store = Store(workspace / ".research" / "state.db")
    try:
        from research_mcp.tools.pipeline import record_search

        record_search(store, idea_id, "search_papers", "label smoothing", {}, ["arXiv:1906.02629"], False)
    finally:
        store.close()
    await call(client, "ideas", {"idea_id": idea_id, "novelty": "novel", "reasons": "arXiv:1906.02629: big nets."})
    await call(client, "ideas", {"idea_id": idea_id, "approve": True, "user_words": "yes, go"})
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert [name for name, stage in now.items() if stage["done"]] == ["idea", "novelty", "approval", "plan"]
    assert now["baseline"]["missing"] == ["no run made with this idea_id"]
    assert now["baseline"]["next_step"]["arguments"] == {"idea_id": idea_id, "label": "baseline", "seed": 0}

    ids = record_idea_runs(workspace, idea_id, {"baseline": [0.70]})
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["baseline"]["done"] and not now["seeds"]["done"]
    assert now["seeds"]["missing"] == ["baseline has 1 seed; claims need at least 3"]
    assert now["seeds"]["next_step"]["arguments"] == {"idea_id": idea_id, "label": "baseline", "seed": 1}
    more = record_idea_runs(workspace, idea_id, {"baseline": [0.71, 0.69, 0.70], "smooth": [0.80, 0.82, 0.81]})
    record_idea_runs(workspace, None, {"other": [0.5]})  # a run of no idea changes nothing
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["seeds"]["done"] and not now["comparison"]["done"]
    assert now["comparison"]["next_step"]["arguments"]["labels"] == ["baseline", "smooth"]

    groups = [{"name": "baseline", "sources": ids["baseline"] + more["baseline"][1:]},
              {"name": "smooth", "sources": more["smooth"]}]  # fmt: skip
    data = {"groups": groups, "tests": [], "best_is_significant": True, "verdict": "smooth beats baseline."}
    insert(workspace, "comparisons", id="cmp-1", metric="val_acc", data=json.dumps(data), idea_id=None,
           created_at=time.time())  # fmt: skip
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["comparison"]["done"] and "smooth beats baseline" in now["comparison"]["evidence"]

    assert now["figures_and_tables"]["missing"] == [
        "no paper/tables/*.tex with research-mcp provenance", "no figure in paper/figures/",
    ]  # fmt: skip
    (workspace / "paper" / "tables").mkdir(parents=True)
    (workspace / "paper" / "tables" / "hand.tex").write_text("\\begin{tabular}{l}0.81\\end{tabular}\n")
    await call(client, "plot_metrics", {"metrics": ["val_acc"], "kind": "bar", "groups": {
        "baseline": groups[0]["sources"], "smooth": groups[1]["sources"]}})  # fmt: skip
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["figures_and_tables"]["missing"] == ["no paper/tables/*.tex with research-mcp provenance"]
    await call(client, "results_table", {"metrics": ["val_acc"], "caption": "Accuracy", "label": "acc",
                                         "labels": ["baseline", "smooth"]})  # fmt: skip
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["figures_and_tables"]["done"]

    assert now["paper_compiled"]["missing"] == ["no paper/main.tex"]
    main, pdf = workspace / "paper" / "main.tex", workspace / "paper" / "main.pdf"
    main.write_text("\\documentclass{article}\\begin{document}\\input{tables/acc}\\end{document}\n")
    pdf.write_bytes(b"%PDF-1.5\n")
    os.utime(main, (time.time() - 100, time.time() - 100))
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["paper_compiled"]["done"]
    os.utime(main, (time.time() + 5, time.time() + 5))
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["paper_compiled"]["missing"] == ["paper/main.tex changed after paper/main.pdf"]
    os.utime(pdf, (time.time() + 10, time.time() + 10))

    assert now["audit_clean"]["missing"] == ["no audit of the paper"]
    finding = {"kind": "numbers", "code": "untraced_number", "severity": "blocking", "file": "paper/main.tex",
               "line": 1, "evidence": "0.81", "fix": "cite a run"}  # fmt: skip
    dirty = {"counts": {"numbers": 1}, "untraced": 1, "findings": [finding]}
    later = time.time() + 20
    insert(workspace, "audits", id="aud-1", main="paper/main.tex", paper_hash="h1", data=json.dumps(dirty),
           idea_id=idea_id, created_at=later)  # fmt: skip
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["audit_clean"]["missing"] == [
        "1 untraced number(s) in the latest audit", "1 blocking finding(s) (untraced_number)",
    ]  # fmt: skip
    clean = {"counts": {}, "untraced": 0, "findings": [dict(finding, severity="info", code="citation_not_checked")]}
    insert(workspace, "audits", id="aud-2", main="paper/main.tex", paper_hash="h1", data=json.dumps(clean),
           idea_id=idea_id, created_at=later + 1)  # fmt: skip
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["audit_clean"]["done"] and now["audit_clean"]["evidence"].startswith("aud-2")

    assert now["review"]["missing"] == ["no review set done"]
    insert(workspace, "review_sets", id="rev-1", paper="paper/main.tex", paper_hash="h1", mode="client",
           state="collecting", data="{}", idea_id=idea_id, created_at=later + 2, updated_at=later + 2)  # fmt: skip
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["review"]["missing"] == ["review set rev-1 is collecting"]
    store = Store(workspace / ".research" / "state.db")
    try:
        store.connection().execute("UPDATE review_sets SET state = 'done' WHERE id = 'rev-1'")
    finally:
        store.close()
    now = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert now["review"]["done"] and not now["revision"]["done"]
    insert(workspace, "review_sets", id="rev-2", paper="paper/main.tex", paper_hash="h2", mode="client",
           state="done", data="{}", idea_id=idea_id, created_at=later + 3, updated_at=later + 3)  # fmt: skip
    final = await call(client, "research_status", {"idea_id": idea_id})
    assert (
        final["done"] == 12 and final["next_step"] is None and stages(final)["revision"]["evidence"].startswith("rev-2")
    )

    os.utime(main, (later + 30, later + 30))  # the paper changed after the audit and the PDF
    stale = stages(await call(client, "research_status", {"idea_id": idea_id}))
    assert stale["audit_clean"]["missing"] == ["the paper changed after the latest audit"]
    assert not stale["paper_compiled"]["done"]


async def test_run_experiment_refuses_an_idea_it_does_not_know(client: Client) -> None:
    text = error_text(await call_raw(client, "run_experiment", {"command": "true", "idea_id": "idea-abcdef"}))
    assert "No idea 'idea-abcdef'" in text and "ideas" in text


async def test_comparisons_audits_and_reviews_carry_the_idea_they_are_for(client: Client, workspace: Path) -> None:
    mine = await call(client, "ideas", {**IDEA, "title": "Mine"})
    other = await call(client, "ideas", {**IDEA, "title": "Other"})
    ids = record_idea_runs(workspace, mine["id"], {"baseline": [0.7, 0.71, 0.72], "ls": [0.8, 0.81, 0.8]})
    compared = await call(client, "compare_runs", {"metric": "val_acc", "labels": list(ids), "idea_id": mine["id"]})
    paper = workspace / "paper"
    paper.mkdir()
    (paper / "main.tex").write_text(
        "\\documentclass{article}\\begin{document}\\section{Results}Accuracy rose from 0.71 to 0.80 over three "
        "seeds each, and we compare two label smoothing settings on the spirals task in detail here, so that a "
        "reviewer has enough text to judge the method and its evidence.\\section{Limitations}One task.\\end{document}\n"
    )
    audited = await call(client, "audit_paper", {"idea_id": mine["id"]}, timeout_s=120)
    reviewed = await call(client, "review_paper", {"reviewers": 1, "idea_id": mine["id"]})
    store = Store(workspace / ".research" / "state.db")
    try:
        conn = store.connection()
        for table, key in (("comparisons", compared["comparison_id"]), ("audits", audited["audit_id"]),
                           ("review_sets", reviewed["review_id"])):  # fmt: skip
            [row] = conn.execute(f"SELECT idea_id FROM {table} WHERE id = ?", (key,)).fetchall()
            assert row["idea_id"] == mine["id"], table
    finally:
        store.close()
    status = await call(client, "research_status", {"idea_id": other["id"]})
    assert not stages(status)["comparison"]["done"]  # the other idea's comparison is not this one's
    for tool, args in (("compare_runs", {"metric": "val_acc", "labels": list(ids)}), ("audit_paper", {}),
                       ("review_paper", {})):  # fmt: skip
        text = error_text(await call_raw(client, tool, {**args, "idea_id": "idea-abcdef"}))
        assert "No idea 'idea-abcdef'" in text, tool


async def test_research_status_shows_the_runs_under_a_root_as_text_and_a_picture(
    client: Client, workspace: Path
) -> None:
    [root] = record_idea_runs(workspace, None, {"baseline": [0.70]})["baseline"]
    children = record_idea_runs(workspace, None, {"wider": [0.75], "deeper": [0.72]}, parent=root)
    [grandchild] = record_idea_runs(workspace, None, {"wider+dropout": [0.78]}, parent=children["wider"][0])[
        "wider+dropout"
    ]
    [broken] = record_idea_runs(workspace, None, {"deeper+lr": [0.0]}, parent=children["deeper"][0], state="failed")[
        "deeper+lr"
    ]
    record_idea_runs(workspace, None, {"unrelated": [0.99]})
    result = await call_raw(client, "research_status", {"tree": root, "metric": "val_acc"})
    assert not result.is_error
    text, image = result.content
    assert isinstance(text, TextContent) and isinstance(image, ImageContent) and image.mime_type == "image/png"
    found = result.structured_content
    assert found is not None and found["idea_id"] is None  # no idea recorded: the tree alone
    found = found["tree"]
    assert json.loads(text.text)["tree"]["lines"] == found["lines"]
    lines = found["lines"]
    assert lines[0].startswith(f"{root} [succeeded] baseline val_acc=0.7")
    assert lines[1].startswith(f"  - {children['wider'][0]} [succeeded] wider val_acc=0.75")
    assert lines[2].startswith(f"    - {grandchild} [succeeded] wider+dropout val_acc=0.78") and "<- best" in lines[2]
    assert lines[4].startswith(f"    - {broken} [failed] deeper+lr")
    assert found["total"] == 5 and not found["truncated"] and found["best"] == grandchild
    assert [node["depth"] for node in found["nodes"]] == [0, 1, 2, 1, 2]
    assert found["nodes"][0]["note"] == "baseline seed 0"
    assert found["nodes"][0]["metric"].startswith("val_acc (runs/")
    assert "unrelated" not in text.text
    missing = error_text(await call_raw(client, "research_status", {"tree": "nope"}))
    assert "list_runs" in missing
