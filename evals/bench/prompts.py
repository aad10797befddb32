"""Section 5: the size of each recipe as a client gets it from `prompts/get`, rendered with placeholder arguments by a
server with every toolset on; the targets are below.

A client puts the whole rendered recipe into its model's context when the user picks the slash command, so a recipe
is held to a few thousand characters: enough to name each step's tool, its failure handling and its evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_types import TextContent

__all__ = ["PIPELINE_TARGET", "PLACEHOLDERS", "PROMPT_TARGET", "prompt_sizes", "render_prompts"]

PROMPT_TARGET = 4_000
"""The most characters one rendered recipe may have."""
PIPELINE_TARGET = 6_000
"""The most characters the whole loop (`research_pipeline`) may have."""
PLACEHOLDERS: dict[str, str] = {
    "topic": "label smoothing for small convolutional networks",
    "n": "5",
    "idea_id": "idea-20261207-0001",
    "paper_id": "1706.03762",
    "label_or_run_ids": "baseline, smoothing-0.1",
    "main": "paper/main.tex",
    "review_id": "review-20261207-0001",
}
"""A placeholder for each recipe argument, of the length a user would type."""


def _target(name: str) -> int:
    return PIPELINE_TARGET if name == "research_pipeline" else PROMPT_TARGET


async def prompt_sizes(data_dir: Path) -> dict[str, Any]:
    """Each recipe's rendered characters (its messages' text), with its target and verdict. The server has no
    workspace, so it opens no state store and starts no run manager: rendering needs neither."""
    from research_mcp.config import TOOLSETS, Settings
    from research_mcp.server import build_server

    settings = Settings(workspace=None, data_dir=data_dir, toolsets=list(TOOLSETS), read_only=False)
    found: list[dict[str, Any]] = []
    with anyio.fail_after(60):
        async with Client(build_server(settings)) as client:
            for prompt in (await client.list_prompts()).prompts:
                arguments = {arg.name: PLACEHOLDERS.get(arg.name, "x") for arg in prompt.arguments or []}
                result = await client.get_prompt(prompt.name, arguments)
                chars = sum(len(m.content.text) for m in result.messages if isinstance(m.content, TextContent))
                target = _target(prompt.name)
                found.append({"name": prompt.name, "chars": chars, "target": target, "passed": chars <= target})
    return {
        "prompts": found,
        "max_chars": max((p["chars"] for p in found), default=0),
        "passed": all(p["passed"] for p in found),
    }


def render_prompts(section: dict[str, Any]) -> list[str]:
    """Section 5's lines of the human table."""
    lines = [f"5. recipes, prompts/get rendered with placeholder arguments ({len(section['prompts'])} prompts)"]
    for prompt in section["prompts"]:
        verdict = "PASS" if prompt["passed"] else "FAIL"
        lines.append(f"   {prompt['name']:28}{prompt['chars']:8,} chars   target <= {prompt['target']:,}   {verdict}")
    return lines
