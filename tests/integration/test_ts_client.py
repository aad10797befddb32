"""A client nobody here wrote: the official TypeScript SDK client drives `research-mcp serve` over stdio."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TS_CLIENT_DIR
from tests.integration.test_http import start

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


PROTOCOL_SCENARIOS = [
    "server-initialize",
    "ping",
    "tools-list",
    "server-sse-multiple-streams",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
]


@pytest.mark.node
def test_the_official_conformance_runner_passes_the_protocol_scenarios(workspace: Path) -> None:
    proc, url = start(workspace, token=None)
    try:
        for scenario in PROTOCOL_SCENARIOS:
            run = subprocess.run(
                [str(TS_CLIENT_DIR / "node_modules" / ".bin" / "conformance"), "server", "--url", url,
                 "--scenario", scenario],
                capture_output=True, text=True, timeout=120, cwd=TS_CLIENT_DIR,
            )  # fmt: skip
            summary = re.search(r"Passed: (\d+)/(\d+), (\d+) failed", run.stdout)
            assert summary is not None, (scenario, run.stdout[-2000:], run.stderr[-2000:])
            passed, total, failed = map(int, summary.groups())
            assert passed == total and failed == 0 and total > 0, (scenario, run.stdout[-3000:])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()
