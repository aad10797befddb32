"""Adapters for the pipeline tools (toolset `pipeline`): ideas and research_status (with the experiment tree);
the resource `idea://{idea_id}` and idea id completion.

The user's approval is asked by MCP elicitation where the client offers it, through the SDK's resolver form
(`Resolve` returning `Elicit`), which works on both protocol versions: a standalone `elicitation/create` request
before 2026-07-28, an `InputRequiredResult` round trip from then on (`ctx.elicit` alone fails there, as sampling
does). Where the client cannot ask, the model relays the user's words, stored marked as relayed.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Annotated

from mcp.server.elicitation import AcceptedElicitation, DeclinedElicitation, ElicitationResult
from mcp.server.mcpserver import Elicit, Resolve
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from research_mcp.errors import BadInputError, ResearchError
from research_mcp.imaging import fit_image
from research_mcp.server._adapt import (
    READ_ONLY_LOCAL,
    AppContext,
    AppState,
    ToolRegistry,
    WorkspaceParam,
    in_thread,
    known_workspace,
    need_workspace,
    state_of,
    store_of,
)
from research_mcp.tools import pipeline as domain
from research_mcp.tools.pipeline import IdeaEdit, IdeaRecord, ResearchStatusResult
from research_mcp.tools.pipeline.ideas import Verdict
from research_mcp.workspace import Workspace

if TYPE_CHECKING:
    pass

__all__ = ["ApprovalForm", "register"]

RECORDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
IdeaId = Annotated[str, Field(min_length=1, max_length=64)]
Texts = Annotated[list[Annotated[str, Field(max_length=2000)]] | None, Field(max_length=30)]


class ApprovalForm(BaseModel):
    """The form the user answers (elicitation schemas take flat primitive fields only)."""

    approve: bool = Field(description="Spend compute on this plan.")
    comment: str = Field(default="", description="Anything to change first.", max_length=2000)


class UserAnswer(BaseModel):
    action: str
    approve: bool = False
    comment: str = ""


def _can_elicit(ctx: AppContext) -> bool:
    """Whether the client declared form elicitation (a bare `elicitation: {}` counts, as the SDK counts it)."""
    caps = ctx.client_capabilities
    found = None if caps is None else caps.elicitation
    return found is not None and (found.form is not None or found.url is None)


def _message(record: IdeaRecord) -> str:
    lines = [f"Approve compute for the idea {record.id}: {record.title}?", f"Hypothesis: {record.hypothesis}"]
    lines += [f"- {experiment}" for experiment in record.experiments[:10]]
    if record.plan_files:
        lines.append(f"Plan: {', '.join(record.plan_files)}")
    if record.novelty is not None:
        lines.append(f"Novelty: {record.novelty}")
    return "\n".join(lines)[:3000]


async def _ask_user(
    ctx: AppContext,
    ws: WorkspaceParam,
    idea_id: str | None,
    approve: bool,
    title: str | None,
    hypothesis: str | None,
    experiments: list[str] | None,
    plan_files: list[str] | None,
    novelty: str | None,
    reasons: str | None,
) -> Elicit[ApprovalForm] | None:
    """The question to put to the user, when the call asks for approval (and nothing else) and the client can ask;
    else None. A call the tool will refuse asks nobody."""
    edits = (title, hypothesis, experiments, plan_files, novelty, reasons)
    if not approve or idea_id is None or any(edit is not None for edit in edits) or not _can_elicit(ctx):
        return None
    workspace, store = need_workspace(ctx, ws), await store_of(ctx, ws)
    try:
        record = await in_thread(domain.get_idea, workspace, store, idea_id)
    except ResearchError:  # the tool's body says what is wrong with the call
        return None
    return Elicit(_message(record), ApprovalForm)


async def _answer(asked: Annotated[ElicitationResult[ApprovalForm], Resolve(_ask_user)]) -> UserAnswer | None:
    """The user's answer (None: nobody was asked)."""
    if isinstance(asked, AcceptedElicitation):
        data = getattr(asked, "data", None)  # None where nobody was asked (the resolver's plain answer)
        if isinstance(data, ApprovalForm):
            return UserAnswer(action="accept", approve=data.approve, comment=data.comment)
        return None
    return UserAnswer(action="decline" if isinstance(asked, DeclinedElicitation) else "cancel")


def register(tools: ToolRegistry) -> None:
    @tools.tool(RECORDS)
    async def ideas(
        ctx: AppContext,
        ws: WorkspaceParam,
        answer: Annotated[UserAnswer | None, Resolve(_answer)],
        idea_id: Annotated[str | None, Field(description="Omit to create.", max_length=64)] = None,
        title: Annotated[str | None, Field(max_length=300)] = None,
        hypothesis: Annotated[str | None, Field(max_length=4000)] = None,
        experiments: Texts = None,
        plan_files: Texts = None,
        novelty: Verdict | None = None,
        reasons: Annotated[
            str | None, Field(description="Cite paper ids its searches returned.", max_length=4000)
        ] = None,
        approve: Annotated[bool, Field(description="Ask the user to approve the plan.")] = False,
        user_words: Annotated[
            str | None, Field(description="If not asked: the user's answer, verbatim.", max_length=2000)
        ] = None,
    ) -> IdeaRecord:
        """Create or update a research idea (title, hypothesis, experiments, plan files, novelty verdict), or ask the
        user's approval before spending compute. Returns the record."""
        workspace, store = need_workspace(ctx, ws), await store_of(ctx, ws)
        edit = IdeaEdit(title=title, hypothesis=hypothesis, experiments=experiments, plan_files=plan_files,
                        novelty=novelty, reasons=reasons)  # fmt: skip
        if not approve:
            return await in_thread(domain.save_idea, workspace, store, idea_id, edit)
        if idea_id is None or not edit.empty():
            raise BadInputError("Ask for approval in a call of its own, with the idea_id and nothing to change.")
        if answer is None:  # the client cannot ask: the model relays the user's approval in their words
            return await in_thread(domain.record_approval, workspace, store, idea_id, True, "relayed", user_words)
        if answer.action == "cancel":
            raise BadInputError("The user dismissed the question without answering. Ask again when they are ready.")
        approved = answer.action == "accept" and answer.approve
        words = answer.comment or ("declined" if answer.action == "decline" else None)
        return await in_thread(domain.record_approval, workspace, store, idea_id, approved, "elicited", words)

    @tools.tool(READ_ONLY_LOCAL)
    async def research_status(
        ctx: AppContext,
        ws: WorkspaceParam,
        idea_id: Annotated[str | None, Field(description="Default: the latest idea.", max_length=64)] = None,
        tree: Annotated[str | None, Field(description="A run id: its descendants too.", max_length=64)] = None,
        metric: Annotated[str | None, Field(description="The tree's headline metric.", max_length=200)] = None,
    ) -> Annotated[CallToolResult, ResearchStatusResult]:
        """Each stage of the research loop for an idea (novelty, approval, runs, seeds, comparison, paper, audit,
        review), done or not, and the call to make next. tree: the runs under a run, with metric, and a picture."""
        workspace, store = need_workspace(ctx, ws), await store_of(ctx, ws)
        result = await in_thread(domain.research_status, workspace, store, idea_id, tree, metric)
        content: list[ContentBlock] = [TextContent(type="text", text=result.model_dump_json(exclude_none=True))]
        if (found := result.tree) is not None:
            png = await in_thread(lambda: fit_image(domain.draw_tree(found), palette=True))
            content.append(
                ImageContent(type="image", data=base64.b64encode(png.data).decode(), mime_type=png.mime_type)
            )
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))

    @tools.resource("idea://{idea_id}", mime_type="application/json")
    async def idea_record(ctx: AppContext, idea_id: str) -> str:
        """An idea's record: hypothesis, experiments, plan files, novelty searches and verdict, approval."""
        workspace = known_workspace(ctx)
        store = await in_thread(state_of(ctx).store, workspace)
        return (await in_thread(domain.get_idea, workspace, store, idea_id)).model_dump_json()

    @tools.completion("idea_id")
    async def idea_id_values(state: AppState, ws: Workspace, typed: str) -> list[str]:
        found = await in_thread(domain.idea_ids, await in_thread(state.store, ws))
        return [found_id for found_id, _ in found if found_id.startswith(typed)]
