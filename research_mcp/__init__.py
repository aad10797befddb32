"""research-mcp: an MCP server that turns any MCP client into a research lab."""

__version__ = "0.1.0"
