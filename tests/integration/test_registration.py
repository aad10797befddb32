"""Prompts and resources are registered as tools are: one registry per family, the same toolset filtering, the
stored listing, errors mapped to sentences, argument completion."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, ResourceTemplateReference, TextResourceContents

from research_mcp.config import Settings
from research_mcp.server import _manifest as manifest
from research_mcp.server import build_server
from tests.conftest import open_for_sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def recipes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(manifest.FAMILIES, "lab", "tests.integration._recipe_family")


async def test_a_registered_prompt_is_listed_rendered_and_completed(recipes: None, settings: Settings) -> None:
    for start in ("built", "listed"):  # the second start lists it from the stored listing
        async with Client(build_server(settings)) as client:
            prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
            assert {"try_topic", "compare_groups", "answer_review"} <= set(prompts), start  # and the recipes
            prompt = prompts["try_topic"]
            assert prompt.description, start
            assert [(a.name, a.required) for a in prompt.arguments or []] == [("topic", True), ("seeds", False)]
            assert prompt.arguments and prompt.arguments[0].description == "What to study, in a few words."
            got = await client.get_prompt("try_topic", {"topic": "dropout", "seeds": "5"})
            assert "Study dropout with 5 seeds" in got.messages[0].content.text  # type: ignore[union-attr]
            ref = PromptReference(type="ref/prompt", name="try_topic")
            done = await client.complete(ref, {"name": "topic", "value": "d"})
            assert done.completion.values == ["diffusion", "dropout"]
    assert any(settings.user_data_dir().glob("tool-listing-*.json"))


async def test_a_prompt_that_fails_says_why(recipes: None, settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        with pytest.raises(MCPError, match="cannot be studied: name what to study"):
            await client.get_prompt("try_topic", {"topic": "nothing"})
        with pytest.raises(MCPError, match="needs the argument\\(s\\) topic"):
            await client.get_prompt("try_topic", {})


async def test_a_resource_template_reads_and_a_missing_one_says_what_is_wrong(
    recipes: None, settings: Settings, workspace: Path
) -> None:
    (workspace / "notes").mkdir()
    (workspace / "notes" / "plan.txt").write_text("baseline first\n")
    async with Client(build_server(settings)) as client:
        templates = (await client.list_resource_templates()).resource_templates
        assert "note://{name}" in {t.uri_template for t in templates}
        [content] = (await client.read_resource("note://plan")).contents
        assert isinstance(content, TextResourceContents) and content.text == "baseline first\n"
        with pytest.raises(MCPError, match="No such file or folder: 'notes/gone.txt'"):
            await client.read_resource("note://gone")


async def test_prompts_and_resources_follow_the_toolsets(settings: Settings) -> None:
    async with Client(build_server(settings.model_copy(update={"toolsets": ["files"]}))) as client:
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert "run://{run_id}" not in templates
    async with Client(build_server(settings.model_copy(update={"read_only": True}))) as client:
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert {"run://{run_id}", "run://{run_id}/log"} <= templates  # reading is read-only


@pytest.mark.bwrap
async def test_a_run_is_a_resource_with_its_id_completed(tmp_path: Path, workspace: Path) -> None:
    open_for_sandbox(tmp_path, workspace)
    settings = Settings(workspace=workspace, backend="local")
    async with Client(build_server(settings)) as client:
        started = await client.call_tool("run_experiment", {"command": "echo resource-line", "workdir": None,
                                                            "files": {"a": ""}, "wait_s": 30})  # fmt: skip
        assert started.structured_content is not None
        run_id = started.structured_content["run"]["id"]
        [record] = (await client.read_resource(f"run://{run_id}")).contents
        assert isinstance(record, TextResourceContents) and f'"id":"{run_id}"' in record.text
        [log] = (await client.read_resource(f"run://{run_id}/log")).contents
        assert isinstance(log, TextResourceContents) and "resource-line" in log.text
        ref = ResourceTemplateReference(type="ref/resource", uri="run://{run_id}")
        done = await client.complete(ref, {"name": "run_id", "value": run_id[:8]})
        assert run_id in done.completion.values
        with pytest.raises(MCPError, match="list_runs"):
            await client.read_resource("run://nope")
