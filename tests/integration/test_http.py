"""Streamable HTTP: loopback by default, a bearer token enforced when set, no public bind without one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

COMMAND = str(Path(sys.executable).parent / "research-mcp")
TOKEN = "s3cret-token-for-tests-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(workspace: Path, token: str | None, host: str = "127.0.0.1") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_MCP_")}
    if token is not None:
        env["RESEARCH_MCP_TOKEN"] = token
    proc = subprocess.Popen(
        [COMMAND, "serve", "--workspace", str(workspace), "--transport", "streamable-http", "--host", host,
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/mcp"
    with anyio.from_thread.start_blocking_portal() as portal:
        portal.call(_wait_listening, port)
    return proc, url


async def _wait_listening(port: int) -> None:
    with anyio.fail_after(30):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            await stream.aclose()
            return


@pytest.fixture
def guarded(workspace: Path) -> Iterator[str]:
    proc, url = start(workspace, TOKEN)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    assert proc.stderr is not None
    proc.stderr.close()


def test_a_request_without_the_token_gets_401(guarded: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = httpx.post(guarded, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
        assert response.status_code == 401 and "RESEARCH_MCP_TOKEN" in response.text


@pytest.mark.anyio
async def test_a_client_with_the_token_lists_and_calls_tools(guarded: str) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        with anyio.fail_after(30):
            async with Client(streamable_http_client(guarded, http_client=http), mode="legacy") as client:
                assert "read_file" in {t.name for t in (await client.list_tools()).tools}
                assert not (await client.call_tool("lab_info", {})).is_error


def test_binding_beyond_loopback_without_a_token_is_refused(workspace: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_MCP_")}
    proc = subprocess.run(
        [COMMAND, "serve", "--workspace", str(workspace), "--transport", "streamable-http", "--host", "0.0.0.0",
         "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "RESEARCH_MCP_TOKEN" in proc.stderr and "127.0.0.1" in proc.stderr
