"""`research-mcp` with the test family of prompts (tests/integration/_recipe_family.py) in place of `lab`, for
clients that start a server process themselves (the TypeScript SDK client, the MCP Inspector CLI) and must get
a prompt. Arguments as research-mcp's: `python -m tests.integration._recipe_server serve --workspace DIR`."""

from __future__ import annotations

import sys

from research_mcp.cli import main
from research_mcp.server import _manifest

if __name__ == "__main__":
    _manifest.FAMILIES["lab"] = "tests.integration._recipe_family"
    sys.exit(main(sys.argv[1:]))
