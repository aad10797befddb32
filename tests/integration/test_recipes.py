"""The recipes through a real in-process MCP client: listed with described arguments, each rendered within its size,
every tool they name registered (with the arguments they pass) or landing, a missing toolset said at the top,
bad arguments answered with a sentence, run labels and main files completed."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, TextContent

from research_mcp.config import Settings
from research_mcp.server import build_server
from research_mcp.server._manifest import FAMILIES, registry_of
from research_mcp.server.recipes import RECIPE_DIR, TOOLSET_OF, calls_in, missing_note, tools_named
from research_mcp.store import Store
from tests.conftest import REPO

pytestmark = pytest.mark.anyio

RECIPES = {
    "research_pipeline": {"topic": "label smoothing for small CNNs"},
    "generate_ideas": {"topic": "label smoothing for small CNNs", "n": "5"},
    "check_novelty": {"idea_id": "idea-1"},
    "plan_experiments": {"idea_id": "idea-1"},
    "reproduce_paper": {"paper_id": "1706.03762"},
    "implement_and_run": {"idea_id": "idea-1"},
    "experiment_tree_search": {"idea_id": "idea-1"},
    "analyze_results": {"label_or_run_ids": "baseline, smoothing"},
    "write_paper": {"idea_id": "idea-1"},
    "review": {"main": "paper/main.tex"},
    "revise_paper": {"review_id": "rev-1"},
}
"""Each recipe and placeholder arguments for it."""

LANDING: dict[str, set[str]] = {}
"""Tools the recipes call that other branches are adding (with their parameters), and the arguments the recipes
pass to the tools that are adding `idea_id`. `test_every_tool_a_recipe_names_is_registered_or_landing` fails once
one of them is registered: then take it out of here (and out of `ADDING`)."""

ADDING: dict[str, set[str]] = {}
"""Parameters the recipes pass that are being added to registered tools; the test fails once they are there."""

SIZE_LIMIT, PIPELINE_LIMIT = 4_000, 6_000


def _text(result: Any) -> str:
    [message] = result.messages
    assert message.role == "user" and isinstance(message.content, TextContent)
    return message.content.text


def _registered() -> dict[str, set[str]]:
    """Every tool of every family, with the parameters of its input schema."""
    found: dict[str, set[str]] = {}
    for family in FAMILIES:
        for spec in registry_of(family).specs:
            found[spec.name] = set(spec.build().parameters.get("properties", {}))
    return found


async def test_every_recipe_is_listed_with_described_short_arguments(settings: Settings) -> None:
    for start in ("built", "listed"):  # the second start lists them from the stored listing
        async with Client(build_server(settings)) as client:
            prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
        assert set(RECIPES) <= set(prompts), start
        for name, arguments in RECIPES.items():
            prompt = prompts[name]
            assert prompt.title and prompt.description and len(prompt.description) < 250, name
            listed = {arg.name: arg for arg in prompt.arguments or []}
            assert set(listed) == set(arguments), name
            for arg in listed.values():
                assert arg.description and len(arg.description) < 60, (name, arg.name)
    assert {"topic"} == {a.name for a in prompts["generate_ideas"].arguments or [] if a.required}


async def test_each_recipe_renders_within_its_size_and_ends_stages_with_research_status(settings: Settings) -> None:
    rendered: list[dict[str, str]] = []
    for _ in ("built", "listed"):  # the second start renders through the stored listing's lazy prompts
        async with Client(build_server(settings)) as client:
            rendered.append({name: _text(await client.get_prompt(name, args)) for name, args in RECIPES.items()})
    assert rendered[0] == rendered[1]
    for name, arguments in RECIPES.items():
        text = rendered[0][name]
        assert len(text) <= (PIPELINE_LIMIT if name == "research_pipeline" else SIZE_LIMIT), (name, len(text))
        assert "`research_status(" in text, name
        assert "untrusted data" in text and "When a tool fails" in text, name
        assert "$" not in text.replace("$RESEARCH_OUT", ""), name  # every placeholder filled
        for value in arguments.values():
            assert value in text, (name, value)


async def test_every_tool_a_recipe_names_is_registered_or_landing() -> None:
    registered = _registered()
    named = {tool for path in RECIPE_DIR.glob("*.md") for tool in tools_named(path.read_text())}
    assert set(LANDING) == named - set(registered), (
        "LANDING must list exactly the tools the recipes call that no family registers: a tool that landed is "
        "taken out of it, and a recipe may name no tool that is neither registered nor landing"
    )
    assert named <= set(TOOLSET_OF)
    for family in FAMILIES:
        for spec in registry_of(family).specs:
            assert TOOLSET_OF.get(spec.name, family) == family, spec.name
    wrong: list[str] = []
    for path in sorted(RECIPE_DIR.glob("*.md")):
        for tool, keywords in calls_in(path.read_text()):
            known = registered.get(tool, set()) | LANDING.get(tool, set()) | ADDING.get(tool, set())
            wrong += [f"{path.name}: {tool}({keyword}=)" for keyword in keywords if keyword not in known]
    assert wrong == []
    for tool, params in ADDING.items():
        assert not params & registered[tool], f"{tool} has {params & registered[tool]} now: take it out of ADDING"


def test_every_recipe_has_its_text_and_every_recipe_a_text_sends_to_exists() -> None:
    texts = {path.stem: path.read_text() for path in RECIPE_DIR.glob("*.md") if not path.stem.startswith("_")}
    assert set(texts) == set(RECIPES)
    registered = _registered()
    answers = {"next_step", "form_schema"}  # fields of research_status's and review_paper's answers
    known = set(RECIPES) | set(registered) | set(LANDING) | answers
    known |= {param for params in [*registered.values(), *LANDING.values()] for param in params}
    for name, text in texts.items():  # `check_novelty`, `user_words`: a recipe, a tool or a parameter
        unknown = set(re.findall(r"`([a-z]+_[a-z_]+)`", text)) - known
        assert unknown == set(), (name, unknown)


async def test_a_recipe_needing_a_toolset_that_is_off_says_which_to_enable_and_how(
    settings: Settings,
) -> None:
    narrow = settings.model_copy(update={"toolsets": ["sandbox", "metrics"]})
    async with Client(build_server(narrow)) as client:
        text = _text(await client.get_prompt("reproduce_paper", RECIPES["reproduce_paper"]))
        analyze = _text(await client.get_prompt("analyze_results", RECIPES["analyze_results"]))
    head = text.split("# Reproduce paper")[0]
    assert head.startswith("Before you start")
    assert "`get_paper`, `read_paper`: toolset `literature` is off" in head
    assert "`find_code`, `fetch_repo`, `repo_summary`: toolset `repos` is off" in head
    assert "--toolsets literature,repos,sandbox,metrics" in head
    assert "RESEARCH_MCP_TOOLSETS=literature,repos,sandbox,metrics" in head
    assert "toolset `metrics` is off" not in head and "toolset `sandbox` is off" not in head
    assert "toolset `literature` is off" not in analyze  # it calls none of them

    async with Client(build_server(settings.model_copy(update={"read_only": True}))) as client:
        text = _text(await client.get_prompt("implement_and_run", RECIPES["implement_and_run"]))
    head = text.split("# Implement")[0]
    assert "`prepare_data`, `prepare_env`, `run_experiment`, `run_sweep`: turned off by read-only mode" in head
    assert "`run_status`" not in head  # read-only, so still offered

    async with Client(build_server(settings.model_copy(update={"file_tools": "off"}))) as client:
        text = _text(await client.get_prompt("plan_experiments", RECIPES["plan_experiments"]))
    assert "`write_file`, `list_files`: use your own file tools instead." in text.split("# Plan")[0]


def test_a_recipe_whose_tools_are_all_offered_has_no_note(settings: Settings) -> None:
    needed = tools_named((RECIPE_DIR / "research_pipeline.md").read_text())
    assert missing_note(needed, set(needed), settings) == ""
    note = missing_note(needed, set(needed) - {"audit_paper"}, settings.model_copy(update={"toolsets": ["latex"]}))
    if "review" in FAMILIES:
        assert "`audit_paper`: toolset `review` is off." in note and "--toolsets latex,review" in note
    else:
        assert "`audit_paper` (toolset `review`): not in this version of research-mcp" in note
        assert "--toolsets" not in note


async def test_bad_arguments_are_answered_with_a_sentence(settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        with pytest.raises(MCPError, match="whole number of ideas from 1 to 10"):
            await client.get_prompt("generate_ideas", {"topic": "dropout", "n": "many"})
        with pytest.raises(MCPError, match="whole number of ideas from 1 to 10"):
            await client.get_prompt("generate_ideas", {"topic": "dropout", "n": "0"})
        with pytest.raises(MCPError, match="at most 300: give a short topic"):
            await client.get_prompt("research_pipeline", {"topic": "word " * 100})
        with pytest.raises(MCPError, match="idea_id is empty"):
            await client.get_prompt("check_novelty", {"idea_id": "  "})
        with pytest.raises(MCPError, match="needs the argument\\(s\\) review_id"):
            await client.get_prompt("revise_paper", {})
        text = _text(await client.get_prompt("generate_ideas", {"topic": "dropout", "n": " 3 "}))
    assert "# Generate 3 research ideas: dropout\n" in text


async def test_analyze_results_passes_labels_run_ids_or_groups_as_compare_runs_takes_them(settings: Settings) -> None:
    ids = ["20261207-101500-a1b2c3", "20261207-101501-d4e5f6"]
    async with Client(build_server(settings)) as client:
        labels = _text(await client.get_prompt("analyze_results", {"label_or_run_ids": "baseline,smoothing"}))
        runs = _text(await client.get_prompt("analyze_results", {"label_or_run_ids": " ".join(ids)}))
        both = _text(await client.get_prompt("analyze_results", {"label_or_run_ids": f"baseline, {ids[0]}"}))
    assert '`compare_runs(metric=..., labels=["baseline", "smoothing"])`' in labels
    assert f'`compare_runs(metric=..., run_ids=["{ids[0]}", "{ids[1]}"])`' in runs
    assert "`compare_runs(metric=..., groups={...})`" in both and "a group per label" in both


def _add_runs(workspace: Path, runs: list[tuple[str, str | None]]) -> None:
    """Rows of the runs table, oldest first, as run_experiment records them."""
    store = Store(workspace / ".research" / "state.db")
    try:
        with store.transaction() as conn:
            for i, (run_id, label) in enumerate(runs):
                conn.execute(
                    "INSERT INTO runs (id, backend, command, workdir, label, state, created_at) "
                    "VALUES (?, 'local', 'true', '.', ?, 'succeeded', ?)",
                    (run_id, label, time.time() + i),
                )
    finally:
        store.close()


async def test_run_labels_and_ids_and_main_files_are_completed(settings: Settings, workspace: Path) -> None:
    ref = PromptReference(type="ref/prompt", name="analyze_results")
    async with Client(build_server(settings)) as client:
        empty = await client.complete(ref, {"name": "label_or_run_ids", "value": ""})
    assert empty.completion.values == []

    a, b, c = "20261207-101500-a1b2c3", "20261207-101501-d4e5f6", "20261207-101502-0789ab"
    _add_runs(workspace, [(a, "baseline"), (b, "smoothing"), (c, "baseline")])
    (workspace / "paper").mkdir()
    (workspace / "paper" / "main.tex").write_text("\\documentclass{article}\n\\begin{document}x\\end{document}\n")
    (workspace / "paper" / "intro.tex").write_text("\\section{Intro}\n")
    (workspace / "runs" / c).mkdir(parents=True)
    (workspace / "runs" / c / "main.tex").write_text("\\documentclass{article}\n")
    async with Client(build_server(settings)) as client:
        every = await client.complete(ref, {"name": "label_or_run_ids", "value": ""})
        base = await client.complete(ref, {"name": "label_or_run_ids", "value": "b"})
        second = await client.complete(ref, {"name": "label_or_run_ids", "value": "baseline, "})
        ids = await client.complete(ref, {"name": "label_or_run_ids", "value": "smoothing,2026"})
        main = await client.complete(PromptReference(type="ref/prompt", name="review"), {"name": "main", "value": ""})
    assert every.completion.values == ["baseline", "smoothing", c, b, a]  # labels, then ids, newest first
    assert base.completion.values == ["baseline"]
    assert second.completion.values == ["baseline,smoothing", f"baseline,{c}", f"baseline,{b}", f"baseline,{a}"]
    assert ids.completion.values == [f"smoothing,{c}", f"smoothing,{b}", f"smoothing,{a}"]
    assert main.completion.values == ["paper/main.tex"]


def test_every_recipe_is_in_the_readme_with_its_arguments() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Recipes (prompts)") : readme.index("## Settings")]
    for name, arguments in RECIPES.items():
        row = re.search(rf"^\| `{name}` \| (.*?) \|", section, re.MULTILINE)
        assert row is not None, f"{name} is missing from the README's recipe table"
        assert re.findall(r"`(\w+)`", row.group(1)) == list(arguments), name
