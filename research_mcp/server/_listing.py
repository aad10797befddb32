"""Which tools a session lists: the `files` tools only to clients without file tools of their own.

A client pastes every listed tool into its model's context on every turn, and Cursor passes at most 40 tools
over all of a user's servers. Claude Code, Cursor, VS Code and Codex read, write and search files themselves,
so the lab's `read_file` / `write_file` / `list_files` / `edit_file` / `grep` only cost them context there.
Claude Desktop (which names itself `claude-ai`, as claude.ai does) has no file tools, and a client we do not
know keeps them.

The client names itself in `initialize` (`clientInfo.name`); a middleware drops the file tools from that
session's `tools/list` answer. A hidden tool stays callable: hiding saves context, it is no permission
(`--toolsets` and `--read-only` are, and they leave a tool out of the server), and a prompt or another tool's
`next_step` may still name it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

__all__ = ["CLIENTS_WITH_FILE_TOOLS", "HideFileTools", "has_file_tools"]

CLIENTS_WITH_FILE_TOOLS = frozenset(
    {
        "claude-code",  # Claude Code
        "cursor-vscode",  # Cursor
        "visual studio code",  # VS Code (GitHub Copilot agent mode)
        "visual studio code - insiders",
        "codex-mcp-client",  # OpenAI Codex CLI
    }
)
"""`clientInfo.name` of clients with file tools of their own, lower-cased."""


def has_file_tools(client_name: str | None) -> bool:
    """Whether the client that named itself so reads and writes files with tools of its own."""
    return client_name is not None and client_name.strip().lower() in CLIENTS_WITH_FILE_TOOLS


class HideFileTools:
    """Middleware: leaves `names` out of `tools/list` for a session whose client has file tools of its own."""

    def __init__(self, names: Collection[str]) -> None:
        self.names = frozenset(names)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/list" or not isinstance(result, dict):
            return result
        params = ctx.session.client_params
        if params is None or not has_file_tools(params.client_info.name):
            return result
        tools = cast(list[dict[str, Any]], result.get("tools", []))
        return {**result, "tools": [tool for tool in tools if tool.get("name") not in self.names]}
