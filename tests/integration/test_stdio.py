"""End to end: `research-mcp serve` spawned as a client would spawn it, spoken to over stdio."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import open_for_sandbox
from tests.integration.test_literature_tools import atom, feed, s2_paper
from tests.replay import ReplayServer, Response, Route
from tests.unit.test_repos_fetch import serve_recorded_flow
from tests.unit.test_repos_find import item, search_answer

pytestmark = pytest.mark.anyio

COMMAND = str(Path(sys.executable).parent / "research-mcp")
ADAM = "1412.6980"
ADAM_TEX = rb"""\documentclass{article}\title{Adam}\begin{document}\maketitle
\section{Introduction}We propose Adam, $m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t$.
\section{Experiments}It converges.\end{document}
"""
CALLS: list[tuple[str, dict[str, Any]]] = [  # in order; "{run}", "{repo}", ... are filled in from earlier answers
    ("lab_info", {}),
    ("write_file", {"path": "notes/idea.md", "content": "# Idea\nlr warmup helps\n"}),
    ("read_file", {"path": "notes/idea.md"}),
    ("edit_file", {"path": "notes/idea.md", "old_string": "helps", "new_string": "helps a lot"}),
    ("grep", {"pattern": "warmup"}),
    ("list_files", {}),
    ("ideas", {"title": "Warmup helps", "hypothesis": "lr warmup lowers the loss.", "experiments": ["baseline"]}),
    ("ideas", {"idea_id": "{idea}", "approve": True, "user_words": "Yes, go ahead."}),
    ("run_experiment", {"command": "cat idea.md; printf 'step,loss\\n0,2.0\\n1,1.5\\n' > $RESEARCH_OUT/curve.csv",
                        "workdir": "notes", "wait_s": 20, "timeout_s": 60, "label": "baseline", "idea_id": "{idea}"}),
    ("run_status", {"run_id": "{run}", "wait_s": 20}),
    ("run_logs", {"run_id": "{run}"}),
    ("list_runs", {}),
    ("rerun", {"run_id": "{run}", "wait_s": 20}),
    ("prepare_data", {"name": "notes", "command": "cp notes/idea.md $RESEARCH_DATA/", "network": False, "wait_s": 20}),
    ("run_sweep", {"command": "echo x {x} seed {seed}", "workdir": "notes", "grid": {"x": [1, 2]}, "seeds": [0],
                   "wait_s": 20, "timeout_s": 60}),
    ("list_runs", {"sweep_id": "{sweep}"}),
    ("read_metrics", {"source": "{run}"}),
    ("compare_runs", {"metric": "loss", "groups": {"a": ["{run}"], "b": ["{run}"]}}),
    ("plot_metrics", {"metrics": ["loss"], "sources": ["{run}"], "name": "loss"}),
    ("results_table", {"metrics": ["loss"], "caption": "Loss", "label": "loss", "run_ids": ["{run}"]}),
    ("search_papers", {"query": "adam optimizer", "idea_id": "{idea}"}),
    ("research_status", {"idea_id": "{idea}"}),
    ("research_status", {"tree": "{run}"}),
    ("get_paper", {"paper_id": ADAM}),
    ("paper_graph", {"paper_id": ADAM, "direction": "references"}),
    ("read_paper", {"paper_id": ADAM}),
    ("new_paper", {"title": "Warmup helps"}),
    ("cite", {"paper_ids": [ADAM]}),
    ("verify_citations", {"path": "paper/references.bib"}),
    ("paper_text", {"path": "paper/main.tex"}),
    ("edit_file", {"path": "paper/main.tex", "old_string": "\\section{Method}\\label{sec:method}",
                   "new_string": "\\section{Method}\\label{sec:method}\nWe warm the learning rate up linearly over "
                   "the first thousand steps, then decay it with a cosine schedule; warmup lowers the loss of every "
                   "run we made, and the gain holds over three seeds and two model sizes."}),
    ("compile_paper", {}),
    ("audit_paper", {}),
    ("review_paper", {"path": "paper/main.pdf", "reviewers": 1}),  # no sampling here: the client fills the form
    ("submit_review", {"review_id": "{review}", "reviewer": 1, "form": {
        "summary": "Warmup.", "strengths": ["simple"], "weaknesses": ["small"], "questions": [], "limitations": [],
        "ethical_concerns": False, "originality": 2, "quality": 2, "clarity": 3, "significance": 2, "soundness": 2,
        "presentation": 3, "contribution": 2, "overall": 4, "confidence": 3, "decision": "Reject"}}),
    ("find_code", {"query": "adam optimizer"}),
    ("fetch_repo", {"repo": "{full_name}"}),
    ("repo_summary", {"path": "{repo}"}),
    ("cancel_run", {"run_id": "{run}"}),
    ("prepare_env", {"requirements": "six==1.16.0", "backend": "local"}),  # queues its build; answers at once
    ("list_envs", {}),
]  # fmt: skip


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    open_for_sandbox(tmp_path, root)  # runs and compiles enter it as an unprivileged uid when the server is root
    return root


def apis(server: ReplayServer) -> str:
    """arXiv, Semantic Scholar and GitHub as the replay server plays them; returns the repository it serves."""
    title = "Adam: A Method for Stochastic Optimization"
    entry = {"id": ADAM, "title": title, "year": 2014, "authors": ["Diederik P. Kingma", "Jimmy Ba"]}
    server.add(Route("GET", "/api/query", feed(atom(entry))))
    s2_adam = s2_paper("a" * 40, title, year=2014, externalIds={"ArXiv": ADAM}, citationCount=9)
    server.add(Route("GET", re.compile(r"/graph/v1/paper/[^/]+"), Response(200, s2_adam)))
    server.add(Route("GET", "/graph/v1/paper/search", Response(200, {"total": 1, "offset": 0, "data": [s2_adam]})))
    cited = {"offset": 0, "data": [{"citedPaper": s2_paper("b" * 40, "On the momentum term")}]}
    server.add(Route("GET", re.compile(r"/graph/v1/paper/[^/]+/references"), Response(200, cited)))
    server.add(Route("GET", f"/e-print/{ADAM}v1", Response(200, gzip.compress(ADAM_TEX))))
    full_name, _ = serve_recorded_flow(server)
    server.add(Route("GET", "/search/repositories", search_answer(item(full_name, 3, "2024-01-24"))))
    return full_name


def api_env(server: ReplayServer) -> dict[str, str]:
    return {
        "RESEARCH_MCP_ARXIV_URL": server.url + "/api/query", "RESEARCH_MCP_S2_URL": server.url,
        "RESEARCH_MCP_ARXIV_FILES_URL": server.url, "RESEARCH_MCP_GITHUB_URL": server.url,
        "RESEARCH_MCP_ARXIV_INTERVAL_S": "0", "RESEARCH_MCP_S2_INTERVAL_S": "0",
    }  # fmt: skip


def params(args: list[str], cwd: str, extra_env: dict[str, str] | None = None) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_MCP_")}
    return StdioServerParameters(command=COMMAND, args=args, cwd=cwd, env=env | (extra_env or {}))


def _filled(args: dict[str, Any], known: dict[str, str]) -> dict[str, Any]:
    text = json.dumps(args)
    for name, value in known.items():
        text = text.replace("{" + name + "}", value)
    return json.loads(text)


@pytest.mark.latex  # compile_paper runs TeX
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_every_tool_answers_over_stdio_on_both_protocol_generations(workspace: Path, mode: str) -> None:
    with ReplayServer() as server, anyio.fail_after(120):
        known = {"full_name": apis(server)}
        status: dict[str, Any] = {}
        argv = ["serve", "--workspace", str(workspace)]
        data = {"RESEARCH_MCP_DATA_DIR": str(workspace.parent / "data")}  # environments stay out of the user's
        async with Client(params(argv, "/", api_env(server) | data), mode=mode) as client:  # type: ignore[arg-type]
            expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
            assert client.session.protocol_version == expected
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {tool for tool, _ in CALLS}
            for tool, args in CALLS:
                result = await client.call_tool(tool, _filled(args, known))  # checked against its outputSchema
                assert not result.is_error, (tool, result.content)
                found = result.structured_content
                assert found is not None
                if tool == "ideas":
                    known["idea"] = found["id"]
                if tool == "run_experiment":
                    known["run"] = found["run"]["id"]
                if tool == "run_sweep":
                    known["sweep"] = found["sweep"]["id"]
                if tool == "fetch_repo":
                    known["repo"] = found["path"]
                if tool == "review_paper":
                    assert found["mode"] == "client" and "warm the learning rate" in found["text"], found
                    known["review"] = found["review_id"]
                if tool == "submit_review":
                    assert found["meta"]["scores"]["overall"]["values"] == [4]
                if tool == "research_status":
                    status = found
                if tool == "compile_paper":
                    assert found["ok"], json.dumps(found)[:3000]
    assert (workspace / "notes" / "idea.md").read_text() == "# Idea\nlr warmup helps a lot\n"
    assert "@" in (workspace / "paper" / "references.bib").read_text()
    done = {stage["name"]: stage["done"] for stage in status["stages"]}
    assert done["idea"] and done["approval"] and done["baseline"] and not done["plan"]  # no plan file attached
    assert "1 search(es) recorded, but no verdict" in status["stages"][1]["missing"]
    assert (workspace / "paper" / "figures" / "loss.pdf").is_file() and (workspace / "paper" / "main.pdf").is_file()


async def test_started_in_slash_without_a_workspace_it_serves_and_refuses_writes(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with Client(params(["serve"], "/")) as client:
            info = (await client.call_tool("lab_info", {})).structured_content
            assert info is not None and info["workspace"] is None
            result = await client.call_tool("write_file", {"path": "pwned.txt", "content": "x"})
            assert result.is_error
    assert not Path("/pwned.txt").exists()


def test_stdout_carries_only_json_rpc(workspace: Path) -> None:
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "lab_info", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "read_file", "arguments": {"path": "/etc/passwd"}}},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": 5}}},
        {"jsonrpc": "2.0", "id": 6, "method": "no/such/method"},
        "this is not json",
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "list_files", "arguments": {}}},
    ]  # fmt: skip
    stdin = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in requests)
    proc = subprocess.Popen(
        [COMMAND, "serve", "--workspace", str(workspace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    proc.stdin.write(stdin)
    proc.stdin.flush()
    output: list[str] = []
    answered: set[int] = set()
    while answered < {1, 2, 3, 4, 5, 6, 7}:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        answered |= {json.loads(line).get("id", 0)}
    proc.stdin.close()
    proc.wait()
    watchdog.cancel()
    stdout = "".join(output) + proc.stdout.read()
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()
    lines = [line for line in stdout.splitlines() if line.strip()]
    messages = [json.loads(line) for line in lines]  # every line is JSON
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert {1, 2, 3, 4, 5, 6, 7} <= set(by_id)
    assert by_id[4]["result"]["isError"] and "absolute" in by_id[4]["result"]["content"][0]["text"]
    assert by_id[5]["result"]["isError"]
    assert "error" in by_id[6]
    assert not by_id[7]["result"].get("isError")
    assert "Traceback" not in stdout
