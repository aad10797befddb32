"""A client nobody here wrote: the official TypeScript SDK client drives `research-mcp serve` over stdio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TS_CLIENT_DIR

COMMAND = str(Path(sys.executable).parent / "research-mcp")


@pytest.mark.node
def test_the_typescript_sdk_client_lists_tools_and_calls_lab_info_and_read_file(workspace: Path) -> None:
    (workspace / "hello.txt").write_text("hello from the workspace\n")
    proc = subprocess.run(
        ["node", str(TS_CLIENT_DIR / "client.mjs"), COMMAND, str(workspace)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TS_CLIENT_DIR,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["server"]["name"] == "research-mcp"
    tools = {t["name"]: t for t in report["tools"]}
    assert {"lab_info", "read_file", "write_file", "list_files", "edit_file", "grep"} <= set(tools)
    assert all(t["hasOutputSchema"] for t in tools.values())
    assert tools["read_file"]["readOnly"] is True and tools["write_file"]["readOnly"] is False
    assert report["lab"]["workspace"] == str(workspace.resolve())
    assert report["read"]["text"] == "hello from the workspace\n"
    assert report["escape"]["isError"] and "'..' is not allowed" in report["escape"]["text"]
