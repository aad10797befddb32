"""End to end: `research-mcp serve` spawned as a client would spawn it, spoken to over stdio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio

COMMAND = str(Path(sys.executable).parent / "research-mcp")
CALLS: dict[str, dict[str, Any]] = {
    "lab_info": {},
    "write_file": {"path": "notes/idea.md", "content": "# Idea\nlr warmup helps\n"},
    "read_file": {"path": "notes/idea.md"},
    "edit_file": {"path": "notes/idea.md", "old_string": "helps", "new_string": "helps a lot"},
    "grep": {"pattern": "warmup"},
    "list_files": {},
    "run_experiment": {"command": "cat idea.md", "workdir": "notes", "wait_s": 20, "timeout_s": 60},
    "run_status": {"run_id": "{run}"},
    "run_logs": {"run_id": "{run}"},
    "list_runs": {},
    "cancel_run": {"run_id": "{run}"},
}


def params(args: list[str], cwd: str) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_MCP_")}
    return StdioServerParameters(command=COMMAND, args=args, cwd=cwd, env=env)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_every_tool_answers_over_stdio_on_both_protocol_generations(workspace: Path, mode: str) -> None:
    with anyio.fail_after(60):
        async with Client(params(["serve", "--workspace", str(workspace)], "/"), mode=mode) as client:  # type: ignore[arg-type]
            expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
            assert client.session.protocol_version == expected
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == set(CALLS)
            run_id = ""
            for tool, args in CALLS.items():
                args = {k: run_id if v == "{run}" else v for k, v in args.items()}
                result = await client.call_tool(tool, args)  # the client checks structuredContent against outputSchema
                assert not result.is_error, (tool, result.content)
                assert result.structured_content is not None
                run_id = run_id or result.structured_content.get("run", {}).get("id", "")
    assert (workspace / "notes" / "idea.md").read_text() == "# Idea\nlr warmup helps a lot\n"


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
