"""The recipes (always offered): MCP prompts, shown as slash commands, that walk the client's model through a stage
of the research loop, naming the tool to call at each step, what to do when one fails and the evidence the step must
leave; each stage ends with `research_status`, so the server says whether the evidence is there.

The texts are package data, `research_mcp/recipes/<name>.md`, with `$name` placeholders (`string.Template`: `$$` is a
dollar sign) and `$rules` for the rules every recipe shares (`_rules.md`). A tool is named in a text as a call in
backticks, `` `tool(arg=...)` ``: `calls_in` finds them. A rendered recipe starts with a note naming the tools it calls
that this server does not offer, and what turns them on. Argument completion: run labels and ids for
`label_or_run_ids`, LaTeX main files for `main`.
"""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path
from typing import Annotated

from pydantic import Field

from research_mcp.config import TOOLSETS, Settings
from research_mcp.errors import BadInputError
from research_mcp.server._adapt import AppContext, AppState, Registry, in_thread, state_of
from research_mcp.workspace import Workspace

__all__ = ["RECIPE_DIR", "TOOLSET_OF", "calls_in", "missing_note", "recipe_text", "register", "tools_named"]

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"
"""The recipe texts: package data of `research_mcp`, shipped in the wheel with it."""

TOOLSET_OF: dict[str, str] = {
    "lab_info": "lab",
    **dict.fromkeys(("list_files", "read_file", "write_file", "edit_file", "grep"), "files"),
    **dict.fromkeys(
        (
            "run_experiment",
            "run_sweep",
            "run_status",
            "run_logs",
            "cancel_run",
            "list_runs",
            "prepare_env",
            "list_envs",
            "prepare_data",
            "rerun",
        ),
        "sandbox",
    ),  # fmt: skip
    **dict.fromkeys(
        ("search_papers", "get_paper", "paper_graph", "read_paper", "cite", "verify_citations"), "literature"
    ),
    **dict.fromkeys(("find_code", "fetch_repo", "repo_summary"), "repos"),
    **dict.fromkeys(("read_metrics", "compare_runs", "plot_metrics", "results_table"), "metrics"),
    **dict.fromkeys(("new_paper", "compile_paper", "paper_text"), "latex"),
    **dict.fromkeys(("audit_paper", "review_paper", "submit_review"), "review"),
    **dict.fromkeys(("ideas", "research_status"), "pipeline"),
}
"""Every tool a recipe may name -> its toolset (the tests check it against the registered families)."""

_CALL = re.compile(r"`(\w+)\(([^`]*)\)`")
_KEYWORD = re.compile(r"(?:^|[,(]\s*)(\w+)=")
_RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
_MAX_ARG_CHARS = 300


def calls_in(text: str) -> list[tuple[str, list[str]]]:
    """Each tool call a recipe text writes (`` `tool(a=..., b=...)` ``): the tool and the argument names it passes."""
    return [(m.group(1), _KEYWORD.findall(m.group(2))) for m in _CALL.finditer(text)]


def tools_named(text: str) -> list[str]:
    """The tools a recipe text calls, in the order it first calls them."""
    return list(dict.fromkeys(tool for tool, _ in calls_in(text)))


def _source(name: str) -> str:
    return (RECIPE_DIR / f"{name}.md").read_text(encoding="utf-8")


def recipe_text(name: str, **values: str) -> str:
    """The recipe `name` with its placeholders filled (a missing value is a bug of this module: KeyError)."""
    return string.Template(_source(name)).substitute(values, rules=_source("_rules").strip()).strip() + "\n"


def missing_note(needed: list[str], offered: set[str], settings: Settings) -> str:
    """What a recipe that calls `needed` must be told where this server does not offer some of them: the toolset to
    turn on and how, or why it cannot be; empty when every tool is offered."""
    absent = [tool for tool in needed if tool not in offered]
    if not absent:
        return ""
    from research_mcp.server._manifest import FAMILIES

    by_toolset: dict[str, list[str]] = {}
    for tool in absent:
        by_toolset.setdefault(TOOLSET_OF.get(tool, "?"), []).append(tool)
    lines = ["Before you start: this server does not offer every tool this recipe calls."]
    to_enable: list[str] = []
    for toolset, tools in by_toolset.items():
        names = ", ".join(f"`{tool}`" for tool in tools)
        if toolset == "files":
            lines.append(f"- {names}: use your own file tools instead.")
        elif toolset not in FAMILIES:
            lines.append(
                f"- {names} (toolset `{toolset}`): not in this version of research-mcp; skip those steps, check what "
                "they would have checked yourself where you can, and tell the user which checks were not made."
            )
        elif toolset in settings.toolsets and settings.read_only:
            lines.append(f"- {names}: turned off by read-only mode (`--read-only`, RESEARCH_MCP_READ_ONLY).")
        else:
            to_enable.append(toolset)
            lines.append(f"- {names}: toolset `{toolset}` is off.")
    if to_enable:
        chosen = ",".join(t for t in TOOLSETS if t in settings.toolsets or t in to_enable)
        lines.append(
            f"Ask the user to enable {', '.join(f'`{t}`' for t in to_enable)}: start the server with "
            f"`--toolsets {chosen}` (or set RESEARCH_MCP_TOOLSETS={chosen}) and reconnect. Until then, skip the "
            "steps that need them and say so."
        )
    return "\n".join(lines) + "\n\n"


async def _render(ctx: AppContext, name: str, **values: str) -> str:
    offered = {tool.name for tool in await ctx.mcp_server.list_tools()}
    note = missing_note(tools_named(_source(name)), offered, state_of(ctx).settings)
    return note + recipe_text(name, **values)


def _short(value: str, what: str) -> str:
    """An argument as one line: recipes take short arguments, a topic or an id, not a page of specification."""
    text = " ".join(value.split())
    if not text:
        raise BadInputError(f"The argument {what} is empty: give it a value.")
    if len(text) > _MAX_ARG_CHARS:
        raise BadInputError(
            f"The argument {what} has {len(text)} characters; at most {_MAX_ARG_CHARS}: give a short {what} and say "
            "the rest in the chat."
        )
    return text


def _selection(items: list[str]) -> tuple[str, str]:
    """How the runs are named (for the text) and the arguments that select them in compare_runs/results_table."""
    ids = [item for item in items if _RUN_ID.fullmatch(item)]
    labels = [item for item in items if not _RUN_ID.fullmatch(item)]
    if not labels:
        return f"{len(ids)} run id(s)", f"run_ids={json.dumps(ids)}"
    if not ids:
        return f"{len(labels)} label(s)", f"labels={json.dumps(labels)}"
    return (
        f"labels {', '.join(labels)} and {len(ids)} run id(s): pass groups, a group per label (its run ids from "
        "list_runs) and one of the run ids",
        "groups={...}",
    )


RUNS_SPLIT = re.compile(r"[\s,]+")
Topic = Annotated[str, Field(description="What to study, in a few words.")]
IdeaId = Annotated[str, Field(description="An idea id from generate_ideas.")]


def register(tools: Registry) -> None:
    @tools.prompt(title="Research pipeline")
    async def research_pipeline(ctx: AppContext, topic: Topic) -> str:
        """The whole loop on a topic: ideas, novelty, plan and approval, experiments over seeds, analysis, paper,
        audit and review, each stage checked by research_status."""
        return await _render(ctx, "research_pipeline", topic=_short(topic, "topic"))

    @tools.prompt(title="Generate ideas")
    async def generate_ideas(
        ctx: AppContext,
        topic: Topic,
        n: Annotated[str, Field(description="How many ideas, 1 to 10.")] = "5",
    ) -> str:
        """Read the field and record testable research ideas on a topic, each with a hypothesis and experiments."""
        count = n.strip()  # a prompt's arguments are strings: parsed here, so a bad one is answered with a sentence
        if not count.isdigit() or not 1 <= int(count) <= 10:
            raise BadInputError(f"n={n!r}: ask for a whole number of ideas from 1 to 10.")
        return await _render(ctx, "generate_ideas", topic=_short(topic, "topic"), n=str(int(count)))

    @tools.prompt(title="Check novelty")
    async def check_novelty(ctx: AppContext, idea_id: IdeaId) -> str:
        """Searches recorded against an idea, the closest papers read, and a novelty verdict with reasons."""
        return await _render(ctx, "check_novelty", idea_id=_short(idea_id, "idea_id"))

    @tools.prompt(title="Plan experiments")
    async def plan_experiments(ctx: AppContext, idea_id: IdeaId) -> str:
        """Paper2Code's planning stages for an idea: overall plan, architecture, logic per file, config.yaml; then
        the user's approval."""
        return await _render(ctx, "plan_experiments", idea_id=_short(idea_id, "idea_id"))

    @tools.prompt(title="Reproduce a paper")
    async def reproduce_paper(
        ctx: AppContext,
        paper_id: Annotated[str, Field(description="arXiv id, DOI or title.")],
    ) -> str:
        """Reproduce a paper's main table: with its code (find, fetch, run) or without (plan, architecture, logic,
        code file by file), the reproduced numbers beside the paper's."""
        return await _render(ctx, "reproduce_paper", paper_id=_short(paper_id, "paper_id"))

    @tools.prompt(title="Implement and run")
    async def implement_and_run(ctx: AppContext, idea_id: IdeaId) -> str:
        """Write an idea's code from its plan, debug it, run baseline and variants over seeds, and compare them."""
        return await _render(ctx, "implement_and_run", idea_id=_short(idea_id, "idea_id"))

    @tools.prompt(title="Experiment tree search")
    async def experiment_tree_search(ctx: AppContext, idea_id: IdeaId) -> str:
        """AI Scientist v2's tree search as child runs: 3 drafts, up to 3 debug attempts, then tuning, research and
        ablation stages, the best node chosen by compare_runs over seeds."""
        return await _render(ctx, "experiment_tree_search", idea_id=_short(idea_id, "idea_id"))

    @tools.prompt(title="Analyze results")
    async def analyze_results(
        ctx: AppContext,
        label_or_run_ids: Annotated[str, Field(description="Run labels or run ids, comma-separated.")],
    ) -> str:
        """Compare runs over seeds (mean, CI, Welch tests), plot them and write the table, claiming only what the
        statistics allow."""
        items = [item for item in RUNS_SPLIT.split(_short(label_or_run_ids, "label_or_run_ids")) if item]
        selection, compare = _selection(list(dict.fromkeys(items)))
        return await _render(ctx, "analyze_results", runs=", ".join(items), selection=selection, compare=compare)

    @tools.prompt(title="Write the paper")
    async def write_paper(ctx: AppContext, idea_id: IdeaId) -> str:
        """Write, cite, compile and audit an idea's paper from the recorded runs, comparisons, figures and tables."""
        return await _render(ctx, "write_paper", idea_id=_short(idea_id, "idea_id"))

    @tools.prompt(title="Review a paper")
    async def review(
        ctx: AppContext,
        main: Annotated[str, Field(description="The paper's main .tex, e.g. paper/main.tex.")] = "paper/main.tex",
    ) -> str:
        """Audit a paper (numbers, citations, claims) and have reviewers fill the NeurIPS form, with a meta-review."""
        return await _render(ctx, "review", main=_short(main, "main"))

    @tools.prompt(title="Revise the paper")
    async def revise_paper(
        ctx: AppContext,
        review_id: Annotated[str, Field(description="The review id review_paper returned.")],
    ) -> str:
        """Answer a review: fix, add evidence or argue each point, recompile and re-audit, and write a response
        letter saying what changed and where."""
        return await _render(ctx, "revise_paper", review_id=_short(review_id, "review_id"))

    @tools.completion("label_or_run_ids")
    async def label_or_run_id_values(state: AppState, ws: Workspace, typed: str) -> list[str]:
        head, _, tail = typed.rpartition(",")
        head = f"{head}," if head else ""
        chosen = {item.strip() for item in head.split(",")}
        found = await in_thread(_labels_and_ids, state, ws)
        return [head + value for value in found if value.startswith(tail.strip()) and value not in chosen]

    @tools.completion("main")
    async def main_values(state: AppState, ws: Workspace, typed: str) -> list[str]:
        return [path for path in await in_thread(_main_files, ws.root) if path.startswith(typed)]


def _labels_and_ids(state: AppState, ws: Workspace) -> list[str]:
    """The workspace's run labels, then its run ids, newest first."""
    if not (ws.state_dir / "state.db").is_file():
        return []  # no run yet: completing creates no state
    conn = state.store(ws).connection()
    labels = conn.execute(
        "SELECT label FROM runs WHERE label IS NOT NULL GROUP BY label ORDER BY MAX(created_at) DESC LIMIT 500"
    )
    ids = conn.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 500")
    return [str(row[0]) for row in labels] + [str(row[0]) for row in ids]


_SKIP_DIRS = {"runs", "repos", "papers", "node_modules", "__pycache__"}
_MAX_TEX_FILES = 200


def _main_files(root: Path) -> list[str]:
    """LaTeX files of the workspace that start a document (`\\documentclass`), at most three folders deep."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if depth < 3 and not d.startswith(".") and d not in _SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith(".tex"):
                continue
            path = Path(folder, name)
            try:
                with path.open("rb") as handle:
                    starts = b"\\documentclass" in handle.read(8192)
            except OSError:
                continue
            if starts:
                found.append(path.relative_to(root).as_posix())
            if len(found) >= _MAX_TEX_FILES:
                return found
    return found
