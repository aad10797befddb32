"""The README tells the truth: every tool and every setting is documented; start-up stays light."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from mcp import Client

from research_mcp.config import Settings
from research_mcp.server import build_server
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


@pytest.mark.anyio
async def test_every_tool_is_in_the_readme_table_with_its_read_only_flag() -> None:
    async with Client(build_server(Settings())) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        row = re.search(rf"^\| `{tool.name}` \|.*\| (yes|no) \|$", README, re.MULTILINE)
        assert row is not None, f"{tool.name} is missing from the README's tool table"
        read_only = bool(tool.annotations and tool.annotations.read_only_hint)
        assert row.group(1) == ("yes" if read_only else "no"), tool.name


def test_the_tool_counts_the_readme_gives_a_tool_capped_client_are_the_registry_s() -> None:
    from research_mcp.config import TOOLSETS
    from research_mcp.server._manifest import registry_of

    counts = {name: len(registry_of(name).specs) for name in TOOLSETS}
    said = dict(re.findall(r"`(\w+)` (\d+)", README[README.index("each toolset's tools are") :][:400]))
    assert {name: int(n) for name, n in said.items()} == {k: v for k, v in counts.items() if k != "files"}
    total = 1 + sum(counts.values())
    assert f"lists {total - counts['files']} to Cursor\n({total} in all, less the {counts['files']} `files`" in README


def test_every_setting_is_in_the_readme() -> None:
    for name in Settings.model_fields:
        assert f"RESEARCH_MCP_{name.upper()}" in README, name


def test_importing_the_server_pulls_in_no_heavy_library() -> None:
    code = (
        "import sys, research_mcp.cli, research_mcp.server; "
        "print([m for m in ('docker','pandas','matplotlib','torch','httpx','regex','numpy') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
