"""Streamable HTTP for remote clients and other agents: loopback by default, a bearer token anywhere else."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import Any

from mcp.server.mcpserver import MCPServer

from research_mcp.errors import ConfigError

__all__ = ["BearerAuth", "is_loopback", "serve_http"]

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Any
Send = Any


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`, else 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        body = b'{"error": "unauthorized", "message": "Send Authorization: Bearer <RESEARCH_MCP_TOKEN>."}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="research-mcp"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def build_http_app(mcp: MCPServer[Any], host: str, token: str | None) -> Any:
    """The Starlette app, wrapped in `BearerAuth` when a token is set; refuses a public bind without one."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"Refusing to listen on {host!r} without a token: anyone who can reach it could run code here. "
            "Set RESEARCH_MCP_TOKEN to a long random string, or bind 127.0.0.1."
        )
    if token is not None and len(token) < 16:
        raise ConfigError("RESEARCH_MCP_TOKEN is shorter than 16 characters; use a long random string.")
    app = mcp.streamable_http_app(host=host)
    return BearerAuth(app, token) if token is not None else app


async def serve_http(mcp: MCPServer[Any], host: str, port: int, token: str | None) -> None:
    import uvicorn

    app = build_http_app(mcp, host, token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    logger.warning("research-mcp listening on http://%s:%d/mcp (token %s)", host, port, "set" if token else "not set")
    await uvicorn.Server(config).serve()
