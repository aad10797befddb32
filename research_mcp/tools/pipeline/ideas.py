"""Ideas as records: what the model proposes, and the evidence other tools attach to it.

An idea holds its title, hypothesis, planned experiments and the workspace files of its plan (written by the model
through `save_idea`). Everything else in its record is written by a tool, never by the model's word alone:
- the novelty searches: `search_papers` called with the idea's id records its query and the ids of the papers it
  returned (`record_search`);
- the novelty verdict: the model's verdict and reasons, accepted only once a search is recorded, and only when every
  paper id the reasons cite is one those searches returned (`save_idea`);
- the approval: the user's own answer to an elicitation, or, where the client cannot ask, the user's words as the
  model relayed them, stored marked as relayed (`record_approval`). An approval holds the hash of the plan it
  approved (`plan_hash`: hypothesis, experiments and the plan files' contents), so a changed plan needs a new one.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from typing import Any, Literal

from pydantic import Field

from research_mcp.errors import BadInputError
from research_mcp.model import ToolModel
from research_mcp.store import Store
from research_mcp.workspace import Workspace

__all__ = [
    "Approval",
    "IdeaEdit",
    "IdeaRecord",
    "NoveltySearch",
    "Verdict",
    "get_idea",
    "idea_ids",
    "latest_approval",
    "plan_hash",
    "record_approval",
    "record_search",
    "require_idea",
    "save_idea",
    "searches_of",
]

Verdict = Literal["novel", "incremental", "known"]
ApprovalSource = Literal["elicited", "relayed"]

MAX_SEARCHES_SHOWN = 10
MAX_IDS_SHOWN = 20
_PAPER_ID = re.compile(r"\b(?:arXiv:\d{4}\.\d{4,5}|arXiv:[a-z-]+(?:\.[A-Z]{2})?/\d{7}|doi:10\.\S+[\w)]|s2:[0-9a-f]+)")


class IdeaEdit(ToolModel):
    """What the model may set on an idea; a field left None keeps its value."""

    title: str | None = Field(default=None, max_length=300)
    hypothesis: str | None = Field(default=None, max_length=4000)
    experiments: list[str] | None = Field(default=None, max_length=30)
    plan_files: list[str] | None = Field(default=None, max_length=30)
    novelty: Verdict | None = None
    reasons: str | None = Field(default=None, max_length=4000)

    def empty(self) -> bool:
        return all(value is None for value in self.model_dump().values())


class NoveltySearch(ToolModel):
    tool: str
    query: str
    paper_ids: list[str] = Field(description=f"The ids it returned (the first {MAX_IDS_SHOWN}).")
    returned: int
    degraded: bool = Field(description="A source failed during the search.")
    at: float


class Approval(ToolModel):
    approved: bool
    source: ApprovalSource = Field(
        description="elicited: the user's own answer to the client's form; relayed: the model's report, unchecked."
    )
    words: str | None = Field(default=None, description="The user's words (relayed: as quoted by the model).")
    current: bool = Field(description="False when the plan changed after this answer.")
    at: float


class IdeaRecord(ToolModel):
    id: str
    title: str
    hypothesis: str
    experiments: list[str]
    plan_files: list[str]
    novelty: Verdict | None = None
    reasons: str | None = None
    searches: list[NoveltySearch] = Field(description="Searches search_papers recorded for it, newest first.")
    searches_total: int
    approval: Approval | None = Field(default=None, description="The latest answer.")
    runs: int = Field(description="Runs made with this idea_id.")
    created_at: float
    updated_at: float


def _new_id(store: Store) -> str:
    while True:
        candidate = f"idea-{secrets.token_hex(3)}"
        if store.connection().execute("SELECT 1 FROM ideas WHERE id = ?", (candidate,)).fetchone() is None:
            return candidate


def idea_ids(store: Store) -> list[tuple[str, str]]:
    """Every idea as (id, title), most recently changed first."""
    rows = store.connection().execute("SELECT id, title FROM ideas ORDER BY updated_at DESC, id").fetchall()
    return [(str(row["id"]), str(row["title"])) for row in rows]


def require_idea(store: Store, idea_id: str) -> dict[str, Any]:
    """The idea's stored data, or a `BadInputError` naming the ideas there are."""
    row = store.connection().execute("SELECT data FROM ideas WHERE id = ?", (idea_id,)).fetchone()
    if row is None:
        known = ", ".join(f"{i} ({t[:40]})" for i, t in idea_ids(store)[:5]) or "none yet"
        raise BadInputError(
            f"No idea {idea_id!r} in this workspace (ideas: {known}). Call ideas without idea_id to create one."
        )
    data: dict[str, Any] = json.loads(row["data"])
    return data


def plan_hash(ws: Workspace, data: dict[str, Any]) -> str:
    """The hash an approval is bound to: hypothesis, experiments, and each plan file's path and contents (a file
    missing counts as its absence)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([data.get("hypothesis"), data.get("experiments")], sort_keys=True).encode())
    for rel in data.get("plan_files", []):
        digest.update(f"\0{rel}\0".encode())
        path = ws.resolve(rel)
        digest.update(path.read_bytes() if path.is_file() else b"\0missing")
    return digest.hexdigest()


def _searched_ids(store: Store, idea_id: str) -> set[str]:
    rows = store.connection().execute("SELECT paper_ids FROM novelty_searches WHERE idea_id = ?", (idea_id,))
    return {paper for row in rows for paper in json.loads(row["paper_ids"])}


def _check_verdict(store: Store, idea_id: str | None, edit: IdeaEdit) -> None:
    if edit.novelty is None and edit.reasons is None:
        return
    if edit.novelty is None or not edit.reasons:
        raise BadInputError("Give novelty and reasons together: the verdict, and why, citing the closest papers' ids.")
    found = _searched_ids(store, idea_id) if idea_id is not None else set[str]()
    if not found:
        raise BadInputError(
            "No novelty search is recorded for this idea. Call search_papers with its idea_id first, then give the "
            "verdict citing the ids it returned."
        )
    cited = set(_PAPER_ID.findall(edit.reasons))
    if not cited:
        raise BadInputError(
            "The reasons cite no paper id. Name the closest papers by the ids search_papers returned (e.g. "
            f"{sorted(found)[0]})."
        )
    unknown = sorted(cited - found)
    if unknown:
        raise BadInputError(
            f"The reasons cite {', '.join(unknown[:5])}, which no recorded search for this idea returned. Search for "
            "them with search_papers and this idea_id, or cite only papers its searches returned."
        )


def _check_plan_files(ws: Workspace, files: list[str]) -> list[str]:
    return [ws.relative(ws.resolve(rel)) for rel in files]


def save_idea(
    ws: Workspace, store: Store, idea_id: str | None, edit: IdeaEdit, *, now: float | None = None
) -> IdeaRecord:
    """Create an idea (no `idea_id`: title and hypothesis needed) or change one; a verdict is checked against the
    recorded searches (`_check_verdict`)."""
    moment = time.time() if now is None else now
    if idea_id is None:
        if not edit.title or not edit.hypothesis:
            raise BadInputError("A new idea needs a title and a hypothesis (and, best, its planned experiments).")
        if edit.novelty is not None:
            raise BadInputError("Create the idea first, then search with its idea_id, then give the novelty verdict.")
        data: dict[str, Any] = {
            "title": edit.title,
            "hypothesis": edit.hypothesis,
            "experiments": [],
            "plan_files": [],
            "novelty": None,
            "reasons": None,
        }
    else:
        if edit.empty():
            raise BadInputError("Nothing to change: give a field to set, or approve=true to ask for approval.")
        data = require_idea(store, idea_id)
    _check_verdict(store, idea_id, edit)
    changes = edit.model_dump(exclude_none=True)
    if edit.plan_files is not None:
        changes["plan_files"] = _check_plan_files(ws, edit.plan_files)
    data.update(changes)
    with store.transaction() as conn:
        if idea_id is None:
            idea_id = _new_id(store)
            conn.execute(
                "INSERT INTO ideas (id, title, data, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (idea_id, data["title"], json.dumps(data), moment, moment),
            )
        else:
            conn.execute(
                "UPDATE ideas SET title = ?, data = ?, updated_at = ? WHERE id = ?",
                (data["title"], json.dumps(data), moment, idea_id),
            )
    return get_idea(ws, store, idea_id)


def record_search(
    store: Store, idea_id: str, tool: str, query: str, arguments: dict[str, Any], paper_ids: list[str], degraded: bool
) -> None:
    """Attach a search and the papers it returned to an idea (called by the tool that searched)."""
    require_idea(store, idea_id)
    store.connection().execute(
        "INSERT INTO novelty_searches (idea_id, tool, query, arguments, paper_ids, degraded, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (idea_id, tool, query, json.dumps(arguments), json.dumps(paper_ids), int(degraded), time.time()),
    )
    store.connection().execute("UPDATE ideas SET updated_at = ? WHERE id = ?", (time.time(), idea_id))


def record_approval(
    ws: Workspace, store: Store, idea_id: str, approved: bool, source: ApprovalSource, words: str | None
) -> IdeaRecord:
    """Store the user's answer, bound to the plan as it is now."""
    data = require_idea(store, idea_id)
    if source == "relayed" and not (words and words.strip()):
        raise BadInputError(
            "This client cannot ask the user for you. Ask them, then pass their answer word for word in user_words."
        )
    store.connection().execute(
        "INSERT INTO approvals (idea_id, approved, source, words, plan_hash, at) VALUES (?, ?, ?, ?, ?, ?)",
        (idea_id, int(approved), source, words, plan_hash(ws, data), time.time()),
    )
    return get_idea(ws, store, idea_id)


def latest_approval(ws: Workspace, store: Store, idea_id: str, data: dict[str, Any]) -> Approval | None:
    row = (
        store.connection()
        .execute("SELECT * FROM approvals WHERE idea_id = ? ORDER BY id DESC LIMIT 1", (idea_id,))
        .fetchone()
    )
    if row is None:
        return None
    return Approval(
        approved=bool(row["approved"]),
        source=row["source"],
        words=row["words"],
        current=row["plan_hash"] == plan_hash(ws, data),
        at=round(row["at"], 3),
    )


def searches_of(store: Store, idea_id: str, limit: int = MAX_SEARCHES_SHOWN) -> tuple[list[NoveltySearch], int]:
    conn = store.connection()
    total = int(conn.execute("SELECT count(*) FROM novelty_searches WHERE idea_id = ?", (idea_id,)).fetchone()[0])
    rows = conn.execute(
        "SELECT * FROM novelty_searches WHERE idea_id = ? ORDER BY id DESC LIMIT ?", (idea_id, limit)
    ).fetchall()
    found: list[NoveltySearch] = []
    for row in rows:
        ids: list[str] = json.loads(row["paper_ids"])
        found.append(
            NoveltySearch(
                tool=row["tool"],
                query=row["query"],
                paper_ids=ids[:MAX_IDS_SHOWN],
                returned=len(ids),
                degraded=bool(row["degraded"]),
                at=round(row["at"], 3),
            )
        )
    return found, total


def get_idea(ws: Workspace, store: Store, idea_id: str) -> IdeaRecord:
    data = require_idea(store, idea_id)
    row = store.connection().execute("SELECT created_at, updated_at FROM ideas WHERE id = ?", (idea_id,)).fetchone()
    searches, total = searches_of(store, idea_id)
    runs = int(store.connection().execute("SELECT count(*) FROM runs WHERE idea_id = ?", (idea_id,)).fetchone()[0])
    return IdeaRecord(
        id=idea_id,
        title=data["title"],
        hypothesis=data["hypothesis"],
        experiments=data.get("experiments", []),
        plan_files=data.get("plan_files", []),
        novelty=data.get("novelty"),
        reasons=data.get("reasons"),
        searches=searches,
        searches_total=total,
        approval=latest_approval(ws, store, idea_id, data),
        runs=runs,
        created_at=round(row["created_at"], 3),
        updated_at=round(row["updated_at"], 3),
    )
