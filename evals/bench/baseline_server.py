"""The baseline: the SDK's smallest useful server, one `ping` tool, over stdio. Started as a script by the bench."""

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("baseline")


@mcp.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"


if __name__ == "__main__":
    mcp.run()
