"""Review sets: N reviewers fill the review form for one anonymised paper, by one of three paths, and every path
ends in the same stored review (the `reviews` rows, the set's meta-review, `reviews/<review_id>/`).

A set is a row of `review_sets` whose `data` holds the anonymised text, each reviewer's brief and how far it has
got (draft written, reflection done, form stored), so a set spans calls and server restarts. The paths:

- `endpoint`: a model the user configured (`review_url`, `review_model`, `review_api_key`), run by the server as
  a job (`run_endpoint`); every reply is stored as it comes, so a restarted job resumes where it stopped.
- `sampling`: the client's model through MCP sampling, one step (draft or reflection) per reviewer per call; the
  server adapter asks, this module says what to ask (`sampling_ask`) and records the answer (`apply_reply`).
- `client`: the client's model reads the text and the briefs and submits each form (`submit_form`).

Each reviewer writes a draft, then one reflection round that rewrites it (The AI Scientist's reviewer, with one
reflection); an answer that holds no valid form is asked again, up to `MAX_TRIES` times, then the reviewer is
marked failed and its form can still be submitted through submit_review.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, Field

from research_mcp.errors import BadInputError, NotFoundError, ResearchError
from research_mcp.fileio import atomic_write
from research_mcp.model import NextStep, ToolModel
from research_mcp.tools.review import briefs
from research_mcp.tools.review.form import ReviewForm, check_form, form_from_text, form_schema
from research_mcp.tools.review.meta import MetaReview, Submitted, meta_review

if TYPE_CHECKING:
    from research_mcp.store import Store
    from research_mcp.tools.review._endpoint import Endpoint
    from research_mcp.workspace import Workspace

__all__ = [
    "MAX_REVIEWERS",
    "MAX_TRIES",
    "Mode",
    "PaperText",
    "ReviewPaperResult",
    "ReviewSet",
    "SamplingAsk",
    "Step",
    "SubmitReviewResult",
    "apply_reply",
    "cancel_set",
    "load_set",
    "read_paper",
    "run_endpoint",
    "sampling_ask",
    "save_set",
    "start_set",
    "status",
    "submit_form",
]

MAX_REVIEWERS = 5
MAX_TRIES = 3
"""Answers without a valid form a reviewer may give for one step before it is marked failed."""

Mode = Literal["endpoint", "sampling", "client"]
SetState = Literal["running", "done", "cancelled", "failed"]
Step = Literal["draft", "reflect"]


@dataclass(frozen=True)
class PaperText:
    """A paper as the reviewers see it."""

    text: str
    paper_hash: str
    main: str
    """Workspace-relative path of the file reviewed (a .tex project's main file)."""
    source: Literal["tex", "pdf", "text"]
    modified_at: float = 0.0
    """The last change of any file read (an audit made after it saw this version)."""


def _anonymise(text: str) -> str:
    from research_mcp.tools.review.anonymise import anonymise

    return anonymise(text)


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError) as exc:
        raise BadInputError(f"Cannot read the PDF {path.name}: {exc}. Give a readable PDF or the .tex source.") from exc
    text = "\n\n".join(pages).strip()
    if not text:
        raise BadInputError(f"{path.name} has no text layer (a scanned PDF?): give the .tex source instead.")
    return text


def read_paper(ws: Workspace, path: str) -> PaperText:
    """The anonymised text of a .tex project (its main file or folder), a PDF, or a .txt/.md text file."""
    from research_mcp.latex.text import find_main_file, read_latex, source_hash

    target = ws.resolve(path, must_exist=True)
    if target.is_dir():
        target = find_main_file(target)
    suffix = target.suffix.lower()
    digest = hashlib.sha256()
    files = [target]
    if suffix == ".tex":
        doc = read_latex(target, target.parent)
        raw = f"# {doc.title}\n\n{doc.text}" if doc.title else doc.text  # the text holds the abstract
        files = [target.parent / name for name in doc.files]
        paper_hash = source_hash(target.parent, doc.files)  # as the audit hashes it
        source: Literal["tex", "pdf", "text"] = "tex"
    elif suffix == ".pdf":
        raw = _pdf_text(target)
        digest.update(target.read_bytes())
        paper_hash = digest.hexdigest()[:16]
        source = "pdf"
    elif suffix in (".txt", ".md", ".markdown"):
        data = target.read_bytes()
        raw = data.decode("utf-8", errors="replace")
        digest.update(data)
        paper_hash = digest.hexdigest()[:16]
        source = "text"
    else:
        raise BadInputError(f"{path} is not a .tex project, a PDF or a .txt/.md text: give one of those.")
    text = _anonymise(raw).strip()
    if len(text) < 200:
        raise BadInputError(f"{path} holds only {len(text)} characters of text: nothing a reviewer could review.")
    modified = max(file.stat().st_mtime for file in files)
    return PaperText(text=text, paper_hash=paper_hash, main=ws.relative(target), source=source, modified_at=modified)


class Reviewer(BaseModel):
    """One reviewer of a set, as stored."""

    slot: int
    lens: str
    draft: str | None = None
    form: dict[str, Any] | None = None
    model: str | None = None
    source: Mode | None = None
    tries: int = 0
    error: str | None = None

    @property
    def step(self) -> Step | None:
        if self.form is not None or self.error is not None:
            return None
        return "draft" if self.draft is None else "reflect"


class ReviewSet(BaseModel):
    """A set's row: its columns and its `data`."""

    id: str
    paper: str
    paper_hash: str
    mode: Mode
    state: SetState
    venue: briefs.Venue
    source: str
    text: str
    audit_id: str | None
    audit_lines: list[str]
    audit_blocking: list[str]
    reviewers: list[Reviewer]
    usage: dict[str, int] = Field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0})
    step_s: float | None = None
    """Seconds one sampling step took in the last call that measured it."""
    meta: dict[str, Any] | None = None
    files: list[str] = Field(default_factory=list[str])
    problem: str | None = None

    @property
    def audit(self) -> briefs.AuditEvidence:
        return briefs.AuditEvidence(self.audit_id, self.audit_lines, self.audit_blocking)

    def pending(self) -> list[Reviewer]:
        return [r for r in self.reviewers if r.step is not None]

    def steps_done(self) -> int:
        return sum(2 if r.form is not None else (1 if r.draft is not None else 0) for r in self.reviewers)


_DATA_FIELDS = {"id", "paper", "paper_hash", "mode", "state"}


def save_set(store: Store, rs: ReviewSet, idea_id: str | None = None) -> None:
    """Insert or update the set's row; `idea_id` is written on the first insert only."""
    now = time.time()
    data = rs.model_dump_json(exclude=_DATA_FIELDS)
    store.connection().execute(
        "INSERT INTO review_sets (id, paper, paper_hash, mode, state, data, idea_id, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET mode = excluded.mode, "
        "state = excluded.state, data = excluded.data, updated_at = excluded.updated_at "
        "WHERE review_sets.state != 'cancelled'",  # cancelled is final: a job's last save cannot undo it
        (rs.id, rs.paper, rs.paper_hash, rs.mode, rs.state, data, idea_id, now, now),
    )


def load_set(store: Store, review_id: str) -> ReviewSet:
    row = store.connection().execute("SELECT * FROM review_sets WHERE id = ?", (review_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"No review {review_id!r} in this workspace: start one with review_paper(path=...).")
    data: dict[str, Any] = json.loads(row["data"])
    return ReviewSet.model_validate(
        {**data, "id": row["id"], "paper": row["paper"], "paper_hash": row["paper_hash"], "mode": row["mode"],
         "state": row["state"]}
    )  # fmt: skip


def start_set(
    store: Store, paper: PaperText, mode: Mode, venue: briefs.Venue, reviewers: int, idea_id: str | None = None
) -> ReviewSet:
    """A new set for `paper`, with the audit's evidence as it stands now."""
    if not 1 <= reviewers <= MAX_REVIEWERS:
        raise BadInputError(f"reviewers must be from 1 to {MAX_REVIEWERS}.")
    audit = briefs.audit_evidence(store, paper.main, paper.paper_hash, modified_at=paper.modified_at)
    rs = ReviewSet(
        id="rv-" + secrets.token_hex(4), paper=paper.main, paper_hash=paper.paper_hash, mode=mode, state="running",
        venue=venue, source=paper.source, text=paper.text, audit_id=audit.audit_id, audit_lines=audit.lines,
        audit_blocking=audit.blocking,
        reviewers=[Reviewer(slot=i, lens=briefs.lens_of(i)[0]) for i in range(1, reviewers + 1)],
    )  # fmt: skip
    save_set(store, rs, idea_id)
    return rs


@dataclass(frozen=True)
class SamplingAsk:
    """One model call of a reviewer's step: a system prompt and the conversation so far."""

    slot: int
    step: Step
    system: str
    messages: list[tuple[Literal["user", "assistant"], str]]


def sampling_ask(rs: ReviewSet, reviewer: Reviewer) -> SamplingAsk:
    """What to ask the model for `reviewer`'s next step (the same for the same stored state)."""
    step = reviewer.step
    if step is None:
        raise ValueError(f"reviewer {reviewer.slot} has no step left")
    system = briefs.brief(reviewer.slot, rs.venue, rs.audit)
    messages: list[tuple[Literal["user", "assistant"], str]] = [("user", briefs.draft_prompt(rs.text))]
    if step == "reflect":
        assert reviewer.draft is not None
        messages.append(("assistant", reviewer.draft))
        messages.append(("user", briefs.reflect_prompt()))
    return SamplingAsk(reviewer.slot, step, system, messages)


def _form_row(rs: ReviewSet, reviewer: Reviewer) -> tuple[str, str, str, str, float, str]:
    record = {"slot": reviewer.slot, "lens": reviewer.lens, "model": reviewer.model, "source": reviewer.source,
              "form": reviewer.form}  # fmt: skip
    return (f"{rs.id}-{reviewer.slot}", rs.paper, reviewer.model or "", json.dumps(record), time.time(), rs.id)


def _store_form(store: Store, rs: ReviewSet, reviewer: Reviewer) -> None:
    store.connection().execute(
        "INSERT OR REPLACE INTO reviews (id, paper, reviewer, form, created_at, review_id) VALUES (?, ?, ?, ?, ?, ?)",
        _form_row(rs, reviewer),
    )


def apply_reply(
    store: Store, ws: Workspace, rs: ReviewSet, slot: int, step: Step, text: str, model: str,
    source: Mode, usage: tuple[int, int] = (0, 0),
) -> None:  # fmt: skip
    """Record a model's answer to `slot`'s `step`: a valid draft moves it to reflection; a valid reflection is
    its form (an invalid one keeps the draft's form); an invalid draft is asked again until `MAX_TRIES`."""
    reviewer = rs.reviewers[slot - 1]
    if reviewer.step != step:
        return  # answered twice (a retried call): the first answer stands
    rs.usage["prompt_tokens"] += usage[0]
    rs.usage["completion_tokens"] += usage[1]
    rs.usage["calls"] += 1
    reviewer.model = model or reviewer.model or source
    reviewer.source = source
    try:
        form = check_form(form_from_text(text))
    except BadInputError as exc:
        if step == "reflect":
            assert reviewer.draft is not None
            form = check_form(form_from_text(reviewer.draft))
        else:
            reviewer.tries += 1
            if reviewer.tries >= MAX_TRIES:
                reviewer.error = f"{MAX_TRIES} answers held no valid form; the last: {exc}"
            save_set(store, rs)
            return
    if step == "draft":
        reviewer.draft = text
        reviewer.tries = 0
    else:
        reviewer.form = form.model_dump(mode="json")
        _store_form(store, rs, reviewer)
    _maybe_finish(store, ws, rs)
    save_set(store, rs)


def submit_form(store: Store, ws: Workspace, review_id: str, slot: int, data: object) -> SubmitReviewResult:
    """Validate and store reviewer `slot`'s form filled by the client's own model; with all in, the meta-review."""
    rs = load_set(store, review_id)
    if not 1 <= slot <= len(rs.reviewers):
        raise BadInputError(f"reviewer must be from 1 to {len(rs.reviewers)} for review {review_id}.")
    reviewer = rs.reviewers[slot - 1]
    if reviewer.form is not None:
        raise BadInputError(
            f"Reviewer {slot} of {review_id} already has a form (from {reviewer.source}); submit the others: "
            f"{', '.join(str(r.slot) for r in rs.reviewers if r.form is None) or 'none left'}."
        )
    if rs.state == "cancelled":
        raise BadInputError(f"Review {review_id} was cancelled: start a new one with review_paper.")
    if rs.mode == "endpoint" and rs.state == "running" and reviewer.error is None:
        raise BadInputError(
            f"Reviewer {slot} of {review_id} is the configured reviewer model's, still at work: follow it with "
            "review_paper(review_id=...), or cancel it there first."
        )
    form = check_form(data)
    reviewer.form, reviewer.model, reviewer.source, reviewer.error = (
        form.model_dump(mode="json"),
        "client",
        "client",
        None,
    )
    _store_form(store, rs, reviewer)
    _maybe_finish(store, ws, rs)
    save_set(store, rs)
    remaining = [r.slot for r in rs.reviewers if r.form is None]
    next_step = None
    if remaining:
        next_step = NextStep(
            tool="submit_review", arguments={"review_id": review_id, "reviewer": remaining[0], "form": "{...}"},
            why=f"Reviewer(s) {', '.join(map(str, remaining))} still have no form.",
        )  # fmt: skip
    meta = None if rs.meta is None else MetaReview.model_validate(rs.meta)
    return SubmitReviewResult(review_id=review_id, reviewer=slot, remaining=remaining, meta=meta, files=rs.files,
                              next_step=next_step)  # fmt: skip


def _submitted(rs: ReviewSet) -> list[Submitted]:
    return [
        Submitted(slot=r.slot, model=r.model or "", source=r.source or "client", form=ReviewForm.model_validate(r.form))
        for r in rs.reviewers
        if r.form is not None
    ]


def _maybe_finish(store: Store, ws: Workspace, rs: ReviewSet) -> None:
    """With every form in: the meta-review and `reviews/<id>/review.json` and `review.md`."""
    if rs.state == "done" or any(r.form is None for r in rs.reviewers):
        return
    meta = meta_review(_submitted(rs), rs.audit_blocking, audit_run=rs.audit_id is not None)
    rs.meta = meta.model_dump(mode="json")
    rs.state = "done"
    folder = ws.resolve(f"reviews/{rs.id}")
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "review_id": rs.id, "paper": rs.paper, "paper_hash": rs.paper_hash, "venue": rs.venue, "mode": rs.mode,
        "audit_id": rs.audit_id, "usage": rs.usage, "meta": rs.meta,
        "reviews": [{"reviewer": r.slot, "lens": r.lens, "model": r.model, "source": r.source, "form": r.form}
                    for r in rs.reviewers],
    }  # fmt: skip
    atomic_write(folder / "review.json", json.dumps(record, indent=1, ensure_ascii=False).encode())
    atomic_write(folder / "review.md", _markdown(rs, meta).encode())
    rs.files = [f"reviews/{rs.id}/review.json", f"reviews/{rs.id}/review.md"]


def _markdown(rs: ReviewSet, meta: MetaReview) -> str:
    lines = [
        f"# Review {rs.id} of {rs.paper}",
        "",
        f"Venue: {rs.venue}. Reviewers: {len(rs.reviewers)} ({rs.mode}).",
        "",
    ]
    lines += ["## Meta-review", "", "| score | mean | sd | range |", "|---|---|---|---|"]
    for name, spread in meta.scores.items():
        sd = "-" if spread.sd is None else f"{spread.sd:.2f}"
        lines.append(f"| {name} | {spread.mean:.2f} | {sd} | {spread.low}-{spread.high} |")
    lines += ["", f"Decisions: {meta.decisions['Accept']} accept, {meta.decisions['Reject']} reject.", ""]
    for title, items in (
        ("Disagreements", meta.disagreements),
        ("Weaknesses named by more than one reviewer",
         [f"{w.point} (reviewers {', '.join(map(str, w.reviewers))})" for w in meta.shared_weaknesses]),
        ("Blocking audit findings", meta.audit_blocking),
        ("Accept probability (calibrated reviewers only)",
         [f"reviewer {p.reviewer} ({p.model}): {p.probability:.2f} (Brier {p.brier:.3f}, n={p.n}, {p.source})"
          for p in meta.accept_probability]),
        ("Notes", meta.notes),
    ):  # fmt: skip
        if items:
            lines += [f"### {title}", "", *(f"- {item}" for item in items), ""]
    for r in rs.reviewers:
        assert r.form is not None
        form = ReviewForm.model_validate(r.form)
        lines += [f"## Reviewer {r.slot} ({r.lens}; {r.model}, {r.source})", "", form.summary, ""]
        for name in ("strengths", "weaknesses", "questions", "limitations"):
            lines += [f"**{name.capitalize()}**", "", *(f"- {item}" for item in getattr(form, name)), ""]
        scores = ", ".join(f"{k} {getattr(form, k)}" for k in meta.scores)
        lines += [f"Scores: {scores}. Ethical concerns: {form.ethical_concerns}. Decision: {form.decision}.", ""]
    return "\n".join(lines)


def cancel_set(store: Store, review_id: str) -> ReviewSet:
    rs = load_set(store, review_id)
    if rs.state == "running":
        rs.state = "cancelled"
        save_set(store, rs)
    return rs


class ReviewerStatus(ToolModel):
    reviewer: int
    lens: str
    status: Literal["to draft", "to reflect", "done", "failed"]
    model: str | None


class ReviewPaperResult(ToolModel):
    review_id: str
    state: SetState
    mode: Mode = Field(description="endpoint: configured model; sampling: your client's; client: you fill forms.")
    paper: str
    venue: str
    steps: str = Field(description="Steps done of all (draft + reflection per reviewer).")
    reviewers: list[ReviewerStatus]
    message: str = Field(description="What is done and what to do next.")
    next_step: NextStep | None
    usage: dict[str, int] | None = None
    meta: MetaReview | None = None
    files: list[str] = Field(default_factory=list[str])
    instructions: str | None = Field(None, description="mode client: what every reviewer is told.")
    briefs: list[str] | None = Field(None, description="mode client: each reviewer's lens.")
    form_schema: dict[str, Any] | None = None
    text: str | None = Field(None, description="mode client: the anonymised paper, paged.")
    next_offset: int | None = None
    total_chars: int | None = None


class SubmitReviewResult(ToolModel):
    review_id: str
    reviewer: int
    remaining: list[int] = Field(description="Reviewers still without a form.")
    meta: MetaReview | None = Field(description="With every form in.")
    files: list[str]
    next_step: NextStep | None


def _reviewer_status(r: Reviewer) -> ReviewerStatus:
    if r.form is not None:
        status: Literal["to draft", "to reflect", "done", "failed"] = "done"
    elif r.error is not None:
        status = "failed"
    else:
        status = "to draft" if r.draft is None else "to reflect"
    return ReviewerStatus(reviewer=r.slot, lens=r.lens, status=status, model=r.model)


def status(
    rs: ReviewSet, *, message: str, max_chars: int, client_material: bool = False, offset: int = 0,
) -> ReviewPaperResult:  # fmt: skip
    """The answer of review_paper for `rs`: status, what to do next, and with `client_material` the text page,
    the briefs and the form's schema for the reviewers still without a form."""
    total = 2 * len(rs.reviewers)
    result = ReviewPaperResult(
        review_id=rs.id, state=rs.state, mode=rs.mode, paper=rs.paper, venue=rs.venue,
        steps=f"{rs.steps_done()} of {total}", reviewers=[_reviewer_status(r) for r in rs.reviewers],
        message=message, next_step=None, usage=rs.usage if rs.usage.get("calls") else None,
        meta=None if rs.meta is None else MetaReview.model_validate(rs.meta), files=rs.files, instructions=None,
        briefs=None, text=None,
    )  # fmt: skip
    missing = [r.slot for r in rs.reviewers if r.form is None]
    if rs.state in ("done", "cancelled"):
        return result
    if client_material and missing:
        if offset == 0:
            result.instructions = (
                f"{briefs.common_brief(rs.venue, rs.audit)}\nFor each reviewer: write the review under its lens, then "
                "re-read it once against the paper and correct it (one reflection round), then submit it."
            )
            result.briefs = [briefs.lens_line(slot) for slot in missing]
            result.form_schema = form_schema()
        room = max(2_000, max_chars - len(result.model_dump_json(exclude_none=True)) - 600)
        if offset > len(rs.text):
            raise BadInputError(f"offset {offset} is past the end of the text ({len(rs.text)} characters).")
        result.text = rs.text[offset : offset + room]
        end = offset + len(result.text)
        result.next_offset = end if end < len(rs.text) else None
        result.total_chars = len(rs.text)
        if result.next_offset is not None:
            result.next_step = NextStep(
                tool="review_paper", arguments={"review_id": rs.id, "offset": result.next_offset},
                why="Read the rest of the paper before filling the forms.",
            )  # fmt: skip
        else:
            result.next_step = NextStep(
                tool="submit_review", arguments={"review_id": rs.id, "reviewer": missing[0], "form": "{...}"},
                why=f"Fill the form as reviewer {missing[0]} (its lens, the instructions) and submit it.",
            )  # fmt: skip
    elif rs.mode != "client":
        result.next_step = NextStep(
            tool="review_paper", arguments={"review_id": rs.id}, why="Continue (or check on) the reviewers."
        )
    return result


async def run_endpoint(
    store: Store, ws: Workspace, review_id: str, endpoint: Endpoint, *, concurrency: int = 3,
    on_step: Callable[[ReviewSet], Awaitable[None]] | None = None,
) -> ReviewSet:  # fmt: skip
    """Run the endpoint reviewers of a set to the end, each step stored as it lands (so a restart resumes).
    A reviewer whose endpoint fails for good is marked failed; cancelling leaves the set as stored."""
    import httpx

    from research_mcp.tools.review._endpoint import chat

    lock = anyio.Lock()
    rs = await anyio.to_thread.run_sync(load_set, store, review_id)
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(slot: int) -> None:
        async with limiter:
            while rs.state == "running":
                reviewer = rs.reviewers[slot - 1]
                if reviewer.step is None:
                    return
                ask = sampling_ask(rs, reviewer)
                messages = [{"role": "system", "content": ask.system}]
                messages += [{"role": role, "content": text} for role, text in ask.messages]
                try:
                    reply = await chat(endpoint, messages, client=http)
                except ResearchError as exc:
                    async with lock:
                        reviewer.error = str(exc)
                        await anyio.to_thread.run_sync(save_set, store, rs)
                    return
                usage = (reply.prompt_tokens, reply.completion_tokens)
                job = functools.partial(
                    apply_reply, store, ws, rs, slot, ask.step, reply.text, endpoint.model, "endpoint", usage
                )
                async with lock:
                    await anyio.to_thread.run_sync(job)
                    if on_step is not None:
                        await on_step(rs)

    async with httpx.AsyncClient(timeout=endpoint.timeout_s) as http, anyio.create_task_group() as tg:
        for reviewer in rs.pending():
            tg.start_soon(one, reviewer.slot)
    if rs.state == "running" and not rs.pending() and any(r.error for r in rs.reviewers):
        failed = [r for r in rs.reviewers if r.error]
        rs.problem = f"reviewer(s) {', '.join(str(r.slot) for r in failed)} failed: {failed[0].error}"
        await anyio.to_thread.run_sync(save_set, store, rs)
    return rs
