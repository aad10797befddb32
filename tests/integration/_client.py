"""Calling a tool through an in-process MCP client session, as every integration test does: each call bounded by
`anyio.fail_after`, a result checked to be what it claims (structured content, or an error message)."""

from __future__ import annotations

import re
from typing import Any

import anyio
from mcp import Client
from mcp_types import CallToolResult, TextContent

__all__ = ["call", "call_raw", "error_text"]


async def call_raw(client: Client, tool: str, args: dict[str, Any], timeout_s: float = 60) -> CallToolResult:
    """The tool's result as it comes, error or not."""
    with anyio.fail_after(timeout_s):
        return await client.call_tool(tool, args)


async def call(client: Client, tool: str, args: dict[str, Any], timeout_s: float = 60) -> dict[str, Any]:
    """The structured content of a call that must succeed."""
    result = await call_raw(client, tool, args, timeout_s)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    """The message of a result that must be an error: a sentence for the model, not a bare crash."""
    assert result.is_error, result
    [block] = result.content
    assert isinstance(block, TextContent)
    assert re.match(r"Error executing tool \w+: .", block.text), block.text
    return block.text
