"""The stored tool listing: a second start lists the same tools without building them, and they still work;
clients with file tools of their own are not listed ours; the listing stays within its targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from mcp import Client
from mcp_types import Implementation

from evals.bench.listing import FILE_TOOLS_CLIENT, TARGETS, verdicts
from evals.bench.measure import model_chars, tools_list_size
from research_mcp.config import Settings
from research_mcp.server import build_server
from research_mcp.server._manifest import LazyTool, ToolCache

pytestmark = pytest.mark.anyio


async def _listing(settings: Settings) -> list[dict[str, Any]]:
    async with Client(build_server(settings)) as client:
        return [tool.model_dump(mode="json") for tool in (await client.list_tools()).tools]


def _stored(settings: Settings) -> Path:
    (found,) = settings.user_data_dir().glob("tool-listing-*.json")
    return found


async def test_a_second_start_lists_the_same_tools_from_the_stored_listing(settings: Settings) -> None:
    built = await _listing(settings)
    assert _stored(settings).is_file()
    cached = ToolCache(settings.user_data_dir())
    assert all(isinstance(tool, LazyTool) for tool in cached.tools("files"))
    assert await _listing(settings) == built


async def test_listed_tools_run_and_map_errors_like_built_ones(settings: Settings, workspace: Path) -> None:
    await _listing(settings)
    async with Client(build_server(settings)) as client:
        wrote = await client.call_tool("write_file", {"path": "notes/a.txt", "content": "hello\n"})
        assert not wrote.is_error
        read = await client.call_tool("read_file", {"path": "notes/a.txt"})
        assert read.structured_content is not None and "hello" in json.dumps(read.structured_content)
        escape = await client.call_tool("read_file", {"path": "../outside"})
        assert escape.is_error and "workspace" in escape.content[0].text  # type: ignore[union-attr]
        bad = await client.call_tool("list_files", {"depth": 0})
        assert bad.is_error
        missing = await client.call_tool("run_status", {"run_id": "nope"})
        assert missing.is_error and "nope" in missing.content[0].text  # type: ignore[union-attr]
    assert (workspace / "notes" / "a.txt").read_text() == "hello\n"


async def test_read_only_start_from_the_listing_offers_only_read_only_tools(settings: Settings) -> None:
    await _listing(settings)
    listed = await _listing(settings.model_copy(update={"read_only": True}))
    assert listed and all(tool["annotations"]["read_only_hint"] for tool in listed)
    assert "write_file" not in {tool["name"] for tool in listed}


async def test_a_broken_listing_is_rebuilt(settings: Settings) -> None:
    built = await _listing(settings)
    _stored(settings).write_text('{"families": {"files": {"tools": [{"name"')  # cut mid-write
    assert await _listing(settings) == built
    assert json.loads(_stored(settings).read_text())["families"]["files"]


async def test_a_listing_whose_schemas_differ_is_dropped_at_first_call(settings: Settings) -> None:
    await _listing(settings)
    stored = _stored(settings)
    data = json.loads(stored.read_text())
    for entry in data["families"]["files"]["tools"]:
        if entry["name"] == "list_files":
            entry["input_schema"]["properties"]["depth"]["maximum"] = 99
    stored.write_text(json.dumps(data))
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("list_files", {"depth": 50})  # the real schema still rules
        assert result.is_error
    assert not stored.exists()


def test_a_warm_start_imports_no_adapter_module(settings: Settings, tmp_path: Path) -> None:
    code = (
        "import sys; from research_mcp.config import Settings; from research_mcp.server import build_server; "
        f"build_server(Settings(data_dir={str(tmp_path / 'data')!r})); "
        "print(sorted(m for m in sys.modules if m.startswith('research_mcp.server.') and m.split('.')[-1] in "
        "('files', 'sandbox', 'lab')))"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "research_mcp.server.files" in first
    assert second.strip() == "[]"


async def test_a_listed_tool_that_no_longer_exists_is_answered_not_crashed(settings: Settings) -> None:
    await _listing(settings)
    stored = _stored(settings)
    data = json.loads(stored.read_text())
    ghost = dict(data["families"]["files"]["tools"][0], name="ghost_tool")
    data["families"]["files"]["tools"].append(ghost)
    stored.write_text(json.dumps(data))
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("ghost_tool", {})
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and "could not load the tool" in text and "reconnect" in text
    assert "Traceback" not in text
    assert not stored.exists()


FILE_TOOLS = {"read_file", "write_file", "list_files", "edit_file", "grep"}


async def _names_and_read(settings: Settings, client_name: str, mode: str = "auto") -> tuple[set[str], bool]:
    """The tools a client of that name is listed, and whether its read_file call was answered."""
    info = Implementation(name=client_name, version="1.0")
    async with Client(build_server(settings), client_info=info, mode=mode) as client:  # type: ignore[arg-type]
        names = {tool.name for tool in (await client.list_tools()).tools}
        read = await client.call_tool("read_file", {"path": "notes.txt"})
    return names, not read.is_error


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # the 2026-07-28 envelope, and the initialize handshake
@pytest.mark.parametrize("name", ["claude-code", "cursor-vscode", "Visual Studio Code", "codex-mcp-client"])
async def test_clients_with_file_tools_of_their_own_are_not_listed_ours_but_may_call_them(
    settings: Settings, workspace: Path, name: str, mode: str
) -> None:
    (workspace / "notes.txt").write_text("hello\n")
    names, answered = await _names_and_read(settings, name, mode)
    assert not names & FILE_TOOLS and {"lab_info", "run_experiment", "search_papers"} <= names
    assert answered


@pytest.mark.parametrize("name", ["claude-ai", "a-client-nobody-knows"])
async def test_claude_desktop_and_unknown_clients_are_listed_the_file_tools(
    settings: Settings, workspace: Path, name: str
) -> None:
    (workspace / "notes.txt").write_text("hello\n")
    names, answered = await _names_and_read(settings, name)
    assert FILE_TOOLS <= names and answered


async def test_the_file_tools_setting_forces_them_on_or_off_for_every_client(
    settings: Settings, workspace: Path
) -> None:
    (workspace / "notes.txt").write_text("hello\n")
    names, _ = await _names_and_read(settings.model_copy(update={"file_tools": "on"}), "cursor-vscode")
    assert FILE_TOOLS <= names
    names, answered = await _names_and_read(settings.model_copy(update={"file_tools": "off"}), "claude-ai")
    assert not names & FILE_TOOLS and "lab_info" in names
    assert not answered  # off: not part of the server at all


def test_the_file_tools_flag_reaches_the_settings(tmp_path: Path) -> None:
    from research_mcp.cli import _parser, _settings

    args = _parser().parse_args(["serve", "--workspace", str(tmp_path), "--file-tools", "off"])
    assert _settings(args).file_tools == "off"
    assert _settings(_parser().parse_args(["serve", "--workspace", str(tmp_path)])).file_tools == "auto"


async def _size_as(settings: Settings, client_name: str) -> dict[str, Any]:
    async with Client(build_server(settings), client_info=Implementation(name=client_name, version="1.0")) as client:
        return tools_list_size(await client.list_tools())


async def test_the_listing_costs_the_model_and_the_client_no_more_than_its_targets(settings: Settings) -> None:
    everything = await _size_as(settings, "a-client-nobody-knows")
    default = await _size_as(settings, FILE_TOOLS_CLIENT)
    assert default["tools"] < everything["tools"]  # the default listing is the one without the files toolset
    found = verdicts(everything, default)
    assert set(found) == set(TARGETS)
    missed = {key: (target["value"], target["target"]) for key, target in found.items() if not target["passed"]}
    heavy = {tool["name"]: tool["model"] for tool in everything["per_tool"] if tool["model"] > 1600}
    assert not missed, f"listing targets missed (value, target): {missed}; tools over 1,600 chars: {heavy}"


def test_model_characters_are_the_name_the_description_and_the_input_schema_as_json_dumps_writes_it() -> None:
    tool = {"name": "ping", "description": "Answer pong.", "inputSchema": {"type": "object", "properties": {}}}
    assert model_chars(tool) == len("ping") + len("Answer pong.") + len('{"type": "object", "properties": {}}')
    everything = {"model_chars_per_tool": 801, "model_chars_max": 1600, "answer_chars_per_tool": 1500}
    found = verdicts(everything, {"tools": 33, "model_chars": 24_000})
    assert [key for key, target in found.items() if not target["passed"]] == ["model_chars_per_tool", "tools"]


PREFIX = "mcp__research__"
"""How Claude Code names a server's tools (`mcp__<server>__<tool>`); clients cap the whole name at 64 characters."""


def _arrays_without_items(schema: Any, where: str = "") -> list[str]:
    """Where a JSON schema has an array with no `items` (some clients, Gemini and older OpenAI among them, refuse
    the whole tool for it)."""
    found: list[str] = []
    if isinstance(schema, dict):
        node = cast(dict[str, Any], schema)
        kind = node.get("type")
        if (kind == "array" or (isinstance(kind, list) and "array" in kind)) and "items" not in node:
            found.append(where or "/")
        for key, value in node.items():
            found += _arrays_without_items(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(cast(list[Any], schema)):
            found += _arrays_without_items(value, f"{where}/{i}")
    return found


def test_the_walk_finds_an_array_without_items_wherever_it_is() -> None:
    schema = {"properties": {"a": {"anyOf": [{"type": "array"}, {"type": "null"}]}, "b": {"type": ["array", "null"]},
                             "c": {"type": "array", "items": {"type": "string"}}}}  # fmt: skip
    assert _arrays_without_items(schema) == ["/properties/a/anyOf/0", "/properties/b"]


async def test_every_tool_of_every_family_has_a_short_name_and_arrays_with_items(settings: Settings) -> None:
    from research_mcp.server._manifest import FAMILIES

    everything = settings.model_copy(update={"toolsets": [name for name in FAMILIES if name != "lab"],
                                             "file_tools": "on"})  # fmt: skip
    async with Client(build_server(everything)) as client:
        tools = (await client.list_tools()).tools
    assert {"lab_info", "read_file", "run_experiment", "read_metrics", "fetch_repo", "cite", "compile_paper"} <= {
        tool.name for tool in tools
    }
    long = [tool.name for tool in tools if len(PREFIX + tool.name) > 64]
    assert not long, f"over 64 characters with the {PREFIX} prefix: {long}"
    missing = {
        f"{tool.name} {side}": found
        for tool in tools
        for side, schema in (("input", tool.input_schema), ("output", tool.output_schema))
        if (found := _arrays_without_items(schema))
    }
    assert not missing, f"arrays without items: {missing}"
    assert all(tool.output_schema for tool in tools)  # the output side is checked for every tool
