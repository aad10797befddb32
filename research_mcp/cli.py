"""`research-mcp serve` (the MCP server) and `research-mcp doctor` (what the lab can do here).

Kept light at import: the MCP SDK and everything heavy load inside the command that needs them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

logger = logging.getLogger("research_mcp")


def _parser() -> argparse.ArgumentParser:
    from research_mcp import __version__
    from research_mcp.config import TOOLSETS

    parser = argparse.ArgumentParser(prog="research-mcp", description="An MCP server that is a research lab.")
    parser.add_argument("--version", action="version", version=f"research-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the MCP server (stdio by default)")
    serve.add_argument("--workspace", type=Path, help="project folder (default: the client's roots, else the cwd)")
    serve.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    serve.add_argument("--toolsets", help=f"comma-separated tool families to offer (default all: {','.join(TOOLSETS)})")
    serve.add_argument("--read-only", action="store_true", default=None, help="offer only read-only tools")
    serve.add_argument(
        "--file-tools",
        choices=["auto", "on", "off"],
        help="list read_file, write_file, ... to clients without file tools of their own (auto, the default), "
        "to every client (on), or to none (off)",
    )
    serve.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    sandbox = commands.add_parser("sandbox", help="manage the sandbox (the offline Docker image)")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    build = sandbox_commands.add_parser(
        "build-image",
        help="build the sandbox image (python3 + numpy): with debootstrap where it runs (Linux, root), "
        "else from the packaged Dockerfile",
    )
    build.add_argument("--tag", help="image name (default: RESEARCH_MCP_DOCKER_IMAGE or research-sandbox:base)")
    build.add_argument(
        "--method",
        choices=["auto", "debootstrap", "dockerfile"],
        default="auto",
        help="debootstrap (Debian minbase, no registry; needs root) or dockerfile (on --base); "
        "auto: debootstrap where it is installed and you are root, else dockerfile",
    )
    build.add_argument("--base", help="base image of the Dockerfile build (default python:3.12-slim)")
    build.add_argument("--mirror", help="Debian mirror URL for debootstrap (default http://deb.debian.org/debian)")
    build.add_argument(
        "--package", action="append", default=[], help="extra Debian package for debootstrap (repeatable)"
    )
    build.add_argument("--if-missing", action="store_true", help="do nothing when the image already exists")

    from research_mcp.demo import add_arguments as demo_arguments

    demo_arguments(commands.add_parser("demo", help="the research loop end to end on a small real experiment"))

    doctor = commands.add_parser("doctor", help="report what the lab can do here and how to install what is missing")
    doctor.add_argument("--workspace", type=Path)
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _settings(args: argparse.Namespace) -> Any:
    from research_mcp.config import TOOLSETS, Settings
    from research_mcp.errors import ConfigError

    overrides: dict[str, Any] = {}
    if args.workspace is not None:
        overrides["workspace"] = args.workspace
    toolsets = getattr(args, "toolsets", None)
    if toolsets is not None:
        chosen = [part.strip() for part in toolsets.split(",") if part.strip()]
        unknown = [name for name in chosen if name not in TOOLSETS]
        if unknown:
            raise ConfigError(f"Unknown toolset(s) {', '.join(unknown)}; choose from {', '.join(TOOLSETS)}.")
        overrides["toolsets"] = chosen
    if getattr(args, "read_only", None):
        overrides["read_only"] = True
    if getattr(args, "file_tools", None) is not None:
        overrides["file_tools"] = args.file_tools
    try:
        return Settings(**overrides)
    except ValueError as exc:  # pydantic's ValidationError: a bad RESEARCH_MCP_* value
        raise ConfigError(f"Bad setting: {exc}") from exc


def _serve(args: argparse.Namespace) -> int:
    import gc

    # Start-up builds many long-lived objects (the SDK's and our pydantic schemas): collecting garbage while
    # they are made only costs time (about 35 ms of a 0.7 s start), and once made they never die, so they
    # are frozen out of every later collection.
    gc.disable()
    try:
        import anyio

        from research_mcp.server.app import build_server

        settings = _settings(args)
        if settings.workspace is not None and not settings.workspace.is_dir():
            from research_mcp.errors import ConfigError

            raise ConfigError(f"--workspace {str(settings.workspace)!r} is not a folder.")
        mcp = build_server(settings)
    finally:
        gc.enable()
    gc.freeze()
    logging.getLogger().setLevel(args.log_level)
    if args.transport == "stdio":
        anyio.run(mcp.run_stdio_async)
        return 0
    from research_mcp.server.http import serve_http

    token = settings.token.get_secret_value() if settings.token is not None else None
    anyio.run(serve_http, mcp, args.host, args.port, token)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    import anyio

    from research_mcp.errors import WorkspaceError
    from research_mcp.tools.lab import format_report, probe_lab
    from research_mcp.workspace import choose_workspace

    settings = _settings(args)
    try:
        workspace, problem = choose_workspace(settings.workspace, None), None
    except WorkspaceError as exc:
        workspace, problem = None, str(exc)
    info = anyio.run(probe_lab, settings, workspace, problem)
    sys.stdout.write(info.model_dump_json(indent=2) if args.json else format_report(info))
    sys.stdout.write("\n")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from research_mcp.errors import ConfigError
    from research_mcp.sandbox.images import (
        DEFAULT_BASE,
        DEFAULT_MIRROR,
        DEFAULT_PACKAGES,
        build_image,
        build_image_from_dockerfile,
        choose_method,
        image_exists,
    )

    settings = _settings(argparse.Namespace(workspace=None))
    tag = args.tag or settings.docker_image
    method = choose_method() if args.method == "auto" else args.method
    if method == "debootstrap" and args.base:
        raise ConfigError("--base applies to the Dockerfile build: add `--method dockerfile`, or leave --base out.")
    if method == "dockerfile" and (args.mirror or args.package):
        why = "debootstrap is missing or you are not root, so " if args.method == "auto" else ""
        raise ConfigError(
            f"--mirror and --package apply to the debootstrap build; {why}this build uses the Dockerfile "
            "(research_mcp/sandbox/Dockerfile.sandbox), which installs only numpy: leave them out, or build with "
            "`--method debootstrap` as root."
        )
    if args.if_missing and image_exists(tag):
        sys.stderr.write(f"research-mcp: image {tag} already exists\n")
        return 0
    logging.getLogger("research_mcp").setLevel(logging.INFO)
    if method == "debootstrap":
        image_id = build_image(tag, mirror=args.mirror or DEFAULT_MIRROR, packages=(*DEFAULT_PACKAGES, *args.package))
    else:
        image_id = build_image_from_dockerfile(tag, base=args.base or DEFAULT_BASE, ca_bundle=settings.ca_bundle)
    sys.stdout.write(f"{tag} {image_id}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    from research_mcp.errors import ResearchError

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "sandbox":
            return _sandbox(args)
        if args.command == "demo":
            from research_mcp.demo import main as demo

            return demo(args)
    except ResearchError as exc:
        sys.stderr.write(f"research-mcp: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    _parser().print_help(sys.stderr)
    return 2
