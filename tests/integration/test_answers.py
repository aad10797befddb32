"""Every answer carries its record twice: in full as structuredContent, and as compact JSON text (or, for a tool
whose answer is prose, as that prose followed by the rest of the record); errors stay sentences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client
from mcp_types import CallToolResult, ImageContent, TextContent

from research_mcp.config import Settings
from research_mcp.server import _manifest as manifest
from research_mcp.server import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(manifest.FAMILIES, "lab", "tests.integration._answers_family")


def _texts(result: CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, TextContent)]


async def test_a_record_is_compact_json_text_beside_the_same_structured_content(
    answers: None, settings: Settings
) -> None:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("series", {"n": 3})
    [text] = _texts(result)
    assert json.loads(text) == result.structured_content
    assert text == json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":"))
    assert "\n" not in text and ": " not in text and "loss ü" in text
    assert result.structured_content is not None and len(result.structured_content["points"]) == 3


async def test_a_prose_answer_is_its_text_then_the_rest_of_the_record(answers: None, settings: Settings) -> None:
    for _ in ("built", "listed"):  # the second start builds the tool from the stored listing on its first call
        async with Client(build_server(settings)) as client:
            lines = await client.call_tool("log_lines", {"n": 2})
            prose = await client.call_tool("prose", {})
        assert _texts(lines)[0] == 'line 0 {"json": 1}\nline 1 {"json": 1}'
    assert any(settings.user_data_dir().glob("tool-listing-*.json"))
    assert _texts(lines) == ['line 0 {"json": 1}\nline 1 {"json": 1}', '{"run_id":"r1","next_offset":3}']
    assert lines.structured_content == {"run_id": "r1", "lines": ['line 0 {"json": 1}', 'line 1 {"json": 1}'],
                                        "next_offset": 3}  # fmt: skip
    assert _texts(prose) == ["# Intro\n\nWe study \\emph{warmup}.", '{"total":1}']


async def test_a_text_field_the_record_lacks_leaves_the_record_as_the_text(answers: None, settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("misnamed", {})
    assert _texts(result) == ['{"name":"x","points":[],"note":null}']


async def test_an_image_and_a_sentence_beside_a_record_keep_their_places(answers: None, settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("picture", {})
    image, record, sentence = result.content
    assert isinstance(image, ImageContent) and image.data == "iVBORw0KGgo="
    assert isinstance(record, TextContent) and json.loads(record.text) == result.structured_content
    assert isinstance(sentence, TextContent) and sentence.text == "Saved as figures/fig.pdf."


async def test_errors_stay_sentences(answers: None, settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        failed = await client.call_tool("series", {"n": -1})
        invalid = await client.call_tool("series", {"n": "many"})
    assert failed.is_error and _texts(failed) == ["Error executing tool series: n must be at least 0: pass a count."]
    assert invalid.is_error and _texts(invalid)[0].startswith("Error executing tool series: Invalid argument: n")


async def test_a_real_tool_answers_in_compact_json(settings: Settings, workspace: Path) -> None:
    (workspace / "notes").mkdir()
    (workspace / "notes" / "a.txt").write_text("x\n")
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("list_files", {"path": "."})
    [text] = _texts(result)
    assert not result.is_error and json.loads(text) == result.structured_content and "\n" not in text
