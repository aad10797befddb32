"""Adapters for the review tools (toolset `review`): audit_paper, review_paper, submit_review.

How a review by client sampling spans calls. MCP sampling exists only inside a tool call, and a call must end
within about 50 s, while one reviewer's answer takes a model tens of seconds. So a review is a sequence of steps
stored with it (per reviewer: a draft, then one reflection round), and each review_paper(review_id=...) call
advances it by what fits, then says what is done and how to continue.

The mechanism is the SDK's resolver form: five hidden parameters of review_paper, each `Resolve`d by a resolver
that asks (`Sample`) for the next step of the k-th reviewer still at work, or asks nothing (None). It is the one
form that works on both protocol versions: `ctx.session.create_message` in the body works only on 2025-11-25
sessions, and a background job cannot sample at all on 2026-07-28 (no back-channel outside a call). What to ask
is read from the stored review, which no round of one call changes, so a question renders the same on every
retry round, as 2026-07-28 requires.

- 2026-07-28 (`mcp.Client` in auto mode): the resolvers' questions go out together in one InputRequiredResult;
  the client answers them concurrently (`mcp.client._input_required._dispatch_all`) and retries with the
  answers, and the body records them. No request of the server waits on the model, so every reviewer's next
  step is asked in each call.
- 2025-11-25 (legacy handshake): the SDK sends each question as a `sampling/createMessage` request inside the
  call, one after another. A resolver asks only while the call's time so far plus one step (the mean step of
  this call so far, or the stored estimate of the last call if longer) stays within `SAMPLING_BUDGET_S`; the
  first is always asked.

Measured through real in-process client sessions with a scripted sampler answering after 0.2 s, 3 reviewers
(tests/integration/test_review_tools.py): 2026-07-28 finishes in 2 calls after the one that prepares the review
(all drafts, then all reflections), 0.21 and 0.22 s a call; 2025-11-25 in the same 2 calls, 0.61 and 0.62 s
each (three asks in turn). With a budget smaller than two steps, 2025-11-25 gets one step a call.

A client without sampling gets the text, the briefs and the form's schema and submits forms with submit_review;
so does a call that gives `offset` (a client that declares sampling but refuses it fails the call with its own
error, on either version, and the review stays where it was). A model the user configured (review_url,
review_model) takes precedence over both and runs as a job in the server's task group; its steps are stored as
they land, so a restarted server resumes it on the next review_paper call, and `cancel` stops it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver.resolve import Resolve, Sample
from mcp_types import CreateMessageResult, SamplingMessage, TextContent, ToolAnnotations
from mcp_types.version import is_version_at_least
from pydantic import Field

from research_mcp.errors import ResearchError
from research_mcp.server._adapt import (
    FETCHES,
    AppContext,
    AppState,
    IdeaParam,
    ToolRegistry,
    WorkspaceParam,
    check_idea,
    in_thread,
    need_workspace,
    state_of,
    store_of,
)
from research_mcp.server._progress import CallProgress, progress_of
from research_mcp.tools import known_ids
from research_mcp.tools.review import audit, reviews
from research_mcp.tools.review.audit import AuditResult
from research_mcp.tools.review.reviews import ReviewPaperResult, ReviewSet, SubmitReviewResult
from research_mcp.workspace import Workspace

__all__ = ["SAMPLING_BUDGET_S", "register"]

logger = logging.getLogger(__name__)

SAMPLING_BUDGET_S = 40.0
"""Time a 2025-11-25 call may spend on sampling before it answers (clients cut calls at about 60 s)."""

REVIEWS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
"""Writes a review set and reviews/<id>/; may ask the client's model or a configured endpoint."""
STORES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)

_jobs: dict[tuple[Path, str], anyio.CancelScope] = {}
"""Endpoint review jobs running in this process, by (workspace, review id)."""


def _modern(ctx: AppContext) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, "2026-07-28")


def _call_start() -> float:
    """When this call's resolving began (each slot resolver sees the same: resolvers run once per call)."""
    return time.monotonic()


async def _ask(ctx: AppContext, ws: Any, review_id: str | None, stop: bool, started: float, k: int) -> Sample | None:
    """The k-th sampling question of this call, or None (see the module docstring); `stop`: ask nothing (a call
    that cancels, or reads the text to fill the forms itself)."""
    capabilities = ctx.client_capabilities
    if review_id is None or stop or capabilities is None or capabilities.sampling is None:
        return None
    try:
        rs = await in_thread(reviews.load_set, await store_of(ctx, ws), review_id)
    except ResearchError:  # no workspace, no such review: the body says so
        return None
    pending = rs.pending()
    if rs.mode != "sampling" or rs.state != "running" or k > len(pending):
        return None
    if k > 1 and not _modern(ctx):
        elapsed = time.monotonic() - started
        step = max(elapsed / (k - 1), rs.step_s or 0.0)
        if elapsed + step > SAMPLING_BUDGET_S:
            return None
    ask = reviews.sampling_ask(rs, pending[k - 1])
    messages = [SamplingMessage(role=role, content=TextContent(type="text", text=text)) for role, text in ask.messages]
    settings = state_of(ctx).settings
    return Sample(messages, max_tokens=settings.review_max_tokens, system_prompt=ask.system, temperature=0.75)


Started = Annotated[float, Resolve(_call_start)]


async def _ask1(
    ctx: AppContext, ws: WorkspaceParam, review_id: str | None, cancel: bool, offset: int | None, started: Started
) -> Sample | None:
    return await _ask(ctx, ws, review_id, cancel or offset is not None, started, 1)


async def _ask2(
    ctx: AppContext, ws: WorkspaceParam, review_id: str | None, cancel: bool, offset: int | None, started: Started
) -> Sample | None:
    return await _ask(ctx, ws, review_id, cancel or offset is not None, started, 2)


async def _ask3(
    ctx: AppContext, ws: WorkspaceParam, review_id: str | None, cancel: bool, offset: int | None, started: Started
) -> Sample | None:
    return await _ask(ctx, ws, review_id, cancel or offset is not None, started, 3)


async def _ask4(
    ctx: AppContext, ws: WorkspaceParam, review_id: str | None, cancel: bool, offset: int | None, started: Started
) -> Sample | None:
    return await _ask(ctx, ws, review_id, cancel or offset is not None, started, 4)


async def _ask5(
    ctx: AppContext, ws: WorkspaceParam, review_id: str | None, cancel: bool, offset: int | None, started: Started
) -> Sample | None:
    return await _ask(ctx, ws, review_id, cancel or offset is not None, started, 5)


Answer1 = Annotated[CreateMessageResult | None, Resolve(_ask1)]
Answer2 = Annotated[CreateMessageResult | None, Resolve(_ask2)]
Answer3 = Annotated[CreateMessageResult | None, Resolve(_ask3)]
Answer4 = Annotated[CreateMessageResult | None, Resolve(_ask4)]
Answer5 = Annotated[CreateMessageResult | None, Resolve(_ask5)]
assert reviews.MAX_REVIEWERS == 5, "one Answer parameter per reviewer"


def _endpoint(ctx: AppContext) -> Any:
    from research_mcp.tools.review._endpoint import Endpoint

    settings = state_of(ctx).settings
    if not settings.review_url or not settings.review_model:
        return None
    key = settings.review_api_key.get_secret_value() if settings.review_api_key is not None else None
    return Endpoint(url=settings.review_url, model=settings.review_model, api_key=key,
                    timeout_s=settings.review_timeout_s, max_tokens=settings.review_max_tokens)  # fmt: skip


def _start_job(ctx: AppContext, store: Any, ws: Any, review_id: str) -> bool:
    """Run the endpoint reviewers of a set in the server's task group; False if no endpoint or task group."""
    endpoint, group = _endpoint(ctx), state_of(ctx).task_group
    if endpoint is None or group is None:
        return False
    key = (ws.root, review_id)
    if key in _jobs:
        return True
    scope = _jobs[key] = anyio.CancelScope()

    async def job() -> None:
        try:
            with scope:
                await reviews.run_endpoint(store, ws, review_id, endpoint)
        except Exception:
            logger.exception("review job %s failed", review_id)
        finally:
            _jobs.pop(key, None)

    group.start_soon(job, name=f"review {review_id}")
    return True


def _text(answer: CreateMessageResult) -> str:
    content = answer.content
    return content.text if isinstance(content, TextContent) else ""


async def _continue_sampling(progress: CallProgress, store: Any, ws: Any, rs: ReviewSet, answers: list[Any]) -> str:
    """Record this call's sampled answers (the k-th answers the k-th pending reviewer); what was done."""
    pending = rs.pending()
    got = [(pending[k], a) for k, a in enumerate(answers) if a is not None and k < len(pending)]
    if not got:
        return ""
    steps: list[tuple[int, reviews.Step | None]] = [(r.slot, r.step) for r, _ in got]
    for (slot, step), (_, answer) in zip(steps, got, strict=True):
        if step is None:
            continue
        await in_thread(reviews.apply_reply, store, ws, rs, slot, step, _text(answer), answer.model or "", "sampling")
        await progress(f"recorded reviewer {slot}'s {step}")
    done = ", ".join(f"reviewer {slot} {step}" for slot, step in steps)
    return f"This call ran: {done}. "


def _message(rs: ReviewSet, did: str, sampling: bool, job: str = "", reading: bool = False) -> str:
    if rs.state == "done":
        return f"{did}All {len(rs.reviewers)} reviews are in; the meta-review is in meta and {rs.files[-1]}."
    if rs.state == "cancelled":
        return "This review was cancelled; its finished forms stay stored."
    failed = [r.slot for r in rs.reviewers if r.error]
    left = len(rs.pending())
    tail = ""
    if failed:
        tail = (f" Reviewer(s) {', '.join(map(str, failed))} failed ({rs.reviewers[failed[0] - 1].error}); fill "
                "their forms with submit_review, or start a new review.")  # fmt: skip
    if rs.mode == "endpoint" and left:
        return f"{job}The configured reviewer model is working: {left} reviewer(s) to go.{tail}"
    if rs.mode == "endpoint":
        return f"The configured reviewer model has stopped.{tail}"
    if rs.mode == "sampling" and sampling and left and not reading:
        return (
            f"{did}{left} reviewer(s) still at work: call review_paper(review_id={rs.id!r}) again; each call runs "
            "the next step of each (a draft, then one reflection). If your client refuses sampling, call it with "
            f"offset=0 to read the paper and fill the forms yourself with submit_review.{tail}"
        )
    return (f"{did}Fill the form for each reviewer listed in briefs (read the whole text, paged by offset) and "
            f"submit each with submit_review.{tail}")  # fmt: skip


def register(tools: ToolRegistry) -> None:
    _register_audit(tools)
    _register_review(tools)

    @tools.completion("review_id")
    async def review_ids(state: AppState, ws: Workspace, typed: str) -> list[str]:
        store = await in_thread(state.store, ws)
        return await in_thread(known_ids.review_ids, store, typed)


def _register_review(tools: ToolRegistry) -> None:
    @tools.tool(REVIEWS, text_field="text")
    async def review_paper(
        ctx: AppContext,
        ws: WorkspaceParam,
        started: Started,
        a1: Answer1,
        a2: Answer2,
        a3: Answer3,
        a4: Answer4,
        a5: Answer5,
        path: Annotated[str, Field(description=".tex (or its folder), .pdf, .txt or .md.", max_length=1024)] = (
            "paper/main.tex"
        ),
        reviewers: Annotated[int, Field(ge=1, le=reviews.MAX_REVIEWERS)] = 3,
        venue: Annotated[Literal["neurips", "iclr", "icml", "workshop"], Field(description="Sets the bar.")] = (
            "neurips"
        ),
        review_id: Annotated[str | None, Field(description="Continue this review.", max_length=64)] = None,
        offset: Annotated[int | None, Field(ge=0, description="Read the text from here (next_offset).")] = None,
        cancel: Annotated[bool, Field(description="Stop review_id.")] = False,
        idea_id: IdeaParam = None,
    ) -> ReviewPaperResult:
        """Peer-review a paper with N reviewers (NeurIPS form, anonymised text, audit findings as evidence), then a
        meta-review. Call again with review_id to continue: it answers what is done and what to do next."""
        workspace = need_workspace(ctx, ws)
        store = await store_of(ctx, ws)
        progress = progress_of(ctx)
        budget = state_of(ctx).settings.max_output_chars
        capabilities = ctx.client_capabilities
        sampling = capabilities is not None and capabilities.sampling is not None
        if review_id is None:
            await progress(f"reading and anonymising {path}")
            paper = await in_thread(reviews.read_paper, workspace, path)
            mode: reviews.Mode = "endpoint" if _endpoint(ctx) is not None else ("sampling" if sampling else "client")
            await check_idea(store, idea_id)
            rs = await in_thread(reviews.start_set, store, paper, mode, venue, reviewers, idea_id)
            if mode == "endpoint":
                _start_job(ctx, store, workspace, rs.id)
                message = "Started: the configured reviewer model reviews in the background; check with review_id."
            elif mode == "sampling":
                message = (f"Prepared {reviewers} reviewer(s). Call review_paper(review_id={rs.id!r}) to run them "
                           "through your client's model, a step per reviewer per call (if your client refuses "
                           "sampling, add offset=0 to read the paper and fill the forms yourself).")  # fmt: skip
            else:
                message = _message(rs, "", sampling)
            return reviews.status(rs, message=message, max_chars=budget, client_material=mode == "client")
        if cancel:
            scope = _jobs.pop((workspace.root, review_id), None)
            if scope is not None:
                scope.cancel()
            rs = await in_thread(reviews.cancel_set, store, review_id)
            return reviews.status(rs, message=_message(rs, "", sampling), max_chars=budget)
        rs = await in_thread(reviews.load_set, store, review_id)
        did, job = "", ""
        if rs.mode == "sampling" and rs.state == "running":
            answers = [a1, a2, a3, a4, a5]
            asked = sum(a is not None for a in answers)
            did = await _continue_sampling(progress, store, workspace, rs, answers)
            if asked and not _modern(ctx):
                rs.step_s = (time.monotonic() - started) / asked
                await in_thread(reviews.save_set, store, rs)
        if rs.mode == "endpoint" and rs.state == "running" and rs.pending() and (workspace.root, rs.id) not in _jobs:
            job = "Resumed after a server restart. " if _start_job(ctx, store, workspace, rs.id) else ""
            if not job:
                rs.problem = "no review endpoint is configured now (review_url, review_model)"
        client_material = rs.state == "running" and (
            offset is not None
            or rs.mode == "client"
            or (rs.mode == "sampling" and not sampling)
            or (not rs.pending() and any(r.error for r in rs.reviewers))
        )
        message = _message(rs, did, sampling, job, reading=offset is not None)
        if rs.problem and rs.mode == "endpoint":
            message += f" Problem: {rs.problem}."
        return reviews.status(
            rs, message=message, max_chars=budget, client_material=client_material, offset=offset or 0
        )

    @tools.tool(STORES)
    async def submit_review(
        ctx: AppContext,
        ws: WorkspaceParam,
        review_id: Annotated[str, Field(min_length=1, max_length=64)],
        reviewer: Annotated[int, Field(ge=1, le=reviews.MAX_REVIEWERS, description="Its number in briefs.")],
        form: Annotated[dict[str, Any], Field(description="The filled form (review_paper's form_schema).")],
    ) -> SubmitReviewResult:
        """Submit one reviewer's filled form for a review_paper review; checked and stored; with every form in, the
        meta-review (means, spread, disagreements, shared weaknesses)."""
        workspace = need_workspace(ctx, ws)
        store = await store_of(ctx, ws)
        return await in_thread(reviews.submit_form, store, workspace, review_id, reviewer, form)


def _register_audit(tools: ToolRegistry) -> None:
    @tools.tool(FETCHES)
    async def audit_paper(
        ctx: AppContext,
        ws: WorkspaceParam,
        main: Annotated[str, Field(description="The paper's main .tex file.", min_length=1, max_length=1024)] = (
            "paper/main.tex"
        ),
        runs: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=4096)]] | None,
            Field(description="Run ids or paths; default every finished run.", max_length=500),
        ] = None,
        offset: Annotated[int, Field(ge=0, description="From next_offset.")] = 0,
        idea_id: IdeaParam = None,
    ) -> AuditResult:
        """Audit a paper, deterministically: numbers traced to runs, tables or comparisons, citations verified, refs,
        figures, untested claims, limitations, page limit, placeholders; findings with file:line and fix."""
        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        store = await store_of(ctx, ws)
        await check_idea(store, idea_id)
        return await audit.audit_paper(
            workspace, store, state.settings, main, runs, progress=progress_of(ctx), offset=offset, idea_id=idea_id
        )
