"""Clients nobody here wrote: the official TypeScript SDK client and the MCP Inspector CLI drive research-mcp over
stdio (tools, prompts, resources, completion, logging/setLevel); the official conformance runner checks the
protocol over streamable HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from research_mcp.store import Store
from research_mcp.tools.literature.library import save_paper
from research_mcp.tools.literature.models import Paper
from tests.conftest import REPO, TS_CLIENT_DIR
from tests.integration.test_http import start

COMMAND = str(Path(sys.executable).parent / "research-mcp")
RECIPE_SERVER = [sys.executable, "-m", "tests.integration._recipe_server"]
"""research-mcp with the test family's prompts (tests/integration/_recipe_family.py), for the clients to get one."""


def _env() -> dict[str, str]:
    """The server's environment: this checkout first on the import path (for the test family)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


def _project(workspace: Path) -> None:
    """A workspace with a file, a note and a paper in its library, for the clients to read."""
    (workspace / "hello.txt").write_text("hello from the workspace\n")
    (workspace / "notes").mkdir()
    (workspace / "notes" / "plan.txt").write_text("baseline first\n")
    paper = Paper(id="arXiv:1706.03762", title="Attention Is All You Need", arxiv_id="1706.03762", year=2017)
    store = Store(workspace / ".research" / "state.db")
    save_paper(store, paper)
    store.close()


def _ts_client(workspace: Path, server: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(TS_CLIENT_DIR / "client.mjs"), str(workspace), *server],
        capture_output=True, text=True, timeout=120, cwd=TS_CLIENT_DIR, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.node
def test_the_typescript_sdk_client_lists_tools_and_calls_lab_info_and_read_file(workspace: Path) -> None:
    _project(workspace)
    report = _ts_client(workspace, [COMMAND])
    assert report["server"]["name"] == "research-mcp"
    tools = {t["name"]: t for t in report["tools"]}
    assert {"lab_info", "read_file", "write_file", "list_files", "edit_file", "grep"} <= set(tools)
    assert all(t["hasOutputSchema"] for t in tools.values())
    assert tools["read_file"]["readOnly"] is True and tools["write_file"]["readOnly"] is False
    assert report["lab"]["workspace"] == str(workspace.resolve())
    assert report["read"]["text"] == "hello from the workspace\n"
    assert report["escape"]["isError"] and "'..' is not allowed" in report["escape"]["text"]
    assert "review" in report["prompts"] and "audit_paper" in report["prompt"]  # a recipe, rendered


@pytest.mark.node
def test_the_typescript_sdk_client_gets_a_prompt_reads_resources_and_completes_an_id(workspace: Path) -> None:
    _project(workspace)
    report = _ts_client(workspace, RECIPE_SERVER)
    assert report["capabilities"]["resources"]["subscribe"] is True and "completions" in report["capabilities"]
    assert "try_topic" in report["prompts"] and report["prompt"] == "Study dropout with 2 seeds; call run_experiment."
    assert report["resources"] == [{"uri": "draft://latest.pdf", "mimeType": "application/pdf"}]
    assert {"paper://{paper_id}", "paper://{paper_id}/text", "run://{run_id}", "note://{name}"} <= set(
        report["templates"]
    )
    assert report["note"] == "baseline first\n"
    assert report["paper"]["title"] == "Attention Is All You Need"
    assert report["completed"] == ["arXiv:1706.03762"]
    assert report["logLevel"] == {"ok": True, "value": {}}  # logging/setLevel is answered, not Method not found
    assert report["read"]["text"] == "hello from the workspace\n"


def _inspector(workspace: Path, *method: str) -> Any:
    """One call of the MCP Inspector CLI (0.15, the newest on Node 20) against the recipe server; its JSON."""
    env = [f"{key}={value}" for key, value in _env().items() if key == "PYTHONPATH" or key.startswith("RESEARCH_MCP")]
    proc = subprocess.run(
        [str(TS_CLIENT_DIR / "node_modules" / ".bin" / "mcp-inspector"), "--cli",
         *(arg for pair in env for arg in ("-e", pair)), *RECIPE_SERVER, "serve", "--workspace", str(workspace),
         *method],
        capture_output=True, text=True, timeout=120, cwd=TS_CLIENT_DIR, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, (method, proc.stdout[-2000:], proc.stderr[-2000:])
    return json.loads(proc.stdout)


@pytest.mark.node
def test_the_mcp_inspector_cli_lists_gets_a_prompt_reads_a_resource_and_calls_a_tool(workspace: Path) -> None:
    _project(workspace)
    tools = {tool["name"] for tool in _inspector(workspace, "--method", "tools/list")["tools"]}
    assert {"lab_info", "read_file", "run_experiment", "search_papers", "compile_paper"} <= tools
    prompts = {prompt["name"] for prompt in _inspector(workspace, "--method", "prompts/list")["prompts"]}
    assert "try_topic" in prompts
    got = _inspector(workspace, "--method", "prompts/get", "--prompt-name", "try_topic", "--prompt-args",
                     "topic=dropout", "seeds=2")  # fmt: skip
    assert got["messages"][0]["content"]["text"] == "Study dropout with 2 seeds; call run_experiment."
    [listed] = _inspector(workspace, "--method", "resources/list")["resources"]
    assert listed["uri"] == "draft://latest.pdf"
    templates = _inspector(workspace, "--method", "resources/templates/list")["resourceTemplates"]
    assert {"paper://{paper_id}", "run://{run_id}/log"} <= {t["uriTemplate"] for t in templates}
    [paper] = _inspector(workspace, "--method", "resources/read", "--uri", "paper://arXiv:1706.03762")["contents"]
    assert json.loads(paper["text"])["title"] == "Attention Is All You Need"
    wrote = _inspector(workspace, "--method", "tools/call", "--tool-name", "write_file", "--tool-arg",
                       "path=notes/b.txt", "--tool-arg", "content=written by the inspector")  # fmt: skip
    assert not wrote.get("isError")
    assert (workspace / "notes" / "b.txt").read_text() == "written by the inspector"


PROTOCOL_SCENARIOS = [
    "server-initialize",
    "logging-set-level",
    "ping",
    "completion-complete",
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
