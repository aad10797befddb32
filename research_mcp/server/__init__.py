"""The MCP face of research-mcp: `build_server` and one adapter module per tool family."""

from research_mcp.server.app import build_server

__all__ = ["build_server"]
