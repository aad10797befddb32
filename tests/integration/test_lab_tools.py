"""lab_info through a real MCP client session: only the parts the lab can use, each with the same fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from research_mcp.config import Settings
from research_mcp.probe import PartStatus
from research_mcp.sandbox.registry import REGISTRY
from research_mcp.server import build_server
from tests.integration._client import call

pytestmark = pytest.mark.anyio


async def test_lab_info_reports_only_usable_parts_each_with_every_field_and_a_sentence(tmp_path: Path) -> None:
    async with Client(build_server(Settings(workspace=tmp_path)), raise_exceptions=True) as client:
        info = await call(client, "lab_info", {})
    names = [part["name"] for part in info["components"]]
    assert ("slurm" in info["backends"]) == any(p["name"] == "slurm" and p["ok"] for p in info["components"])
    assert {entry.part for entry in REGISTRY.values()} <= set(names) and set(info["backends"]) <= set(REGISTRY)
    fields = set(PartStatus.model_fields)
    for part in info["components"]:
        assert set(part) == fields, part
        assert isinstance(part["detail"], str) and part["detail"].strip(), part
        assert part["install"] is None or (not part["ok"] and part["install"].strip()), part
