"""`research-mcp demo [DIR]`: the research loop end to end, from an empty folder, with no model and no API key.

A scripted MCP client (`research_mcp.demo.client`, the worked example of a scripted client) spawns a real
`research-mcp serve` on DIR and takes the scientist's decisions itself: it records an idea and its plan, searches
for prior work under the idea, answers the approval form as the user, runs a small real experiment (the digits
scikit-learn ships, numpy only, two configurations x three seeds) in the best sandbox here, reads, compares,
plots and tabulates the results, writes and compiles the paper, audits it, and asks `research_status` what is
done. Progress goes to stderr, a line per stage with its time; the summary to stdout.

Kept light at import: the client, the SDK and the experiment load when the command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", nargs="?", type=Path, default=Path("research-mcp-demo"),
        help="an empty or new folder for the demo's workspace (default ./research-mcp-demo)",
    )  # fmt: skip
    parser.add_argument("--backend", choices=["docker", "local"], help="sandbox backend (default: lab_info's first)")
    parser.add_argument(
        "--protocol", choices=["auto", "legacy"], default="auto",
        help="auto: 2026-07-28 where the server speaks it; legacy: the initialize handshake",
    )  # fmt: skip
    parser.add_argument("--report", type=Path, help="also write the measured run as JSON to this file")


def _prepare(workspace: Path) -> str | None:
    """The folder made (or found empty) and the data copied; else why not, with what to do."""
    from research_mcp.demo.experiment import SklearnMissing, copy_digits

    if workspace.exists() and (not workspace.is_dir() or any(workspace.iterdir())):
        return f"{workspace} is not an empty folder; name a new or empty one (research-mcp demo DIR)."
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        copy_digits(workspace)
    except SklearnMissing as exc:
        return str(exc)
    return None


def main(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every stage up to the review is done, 1 when one failed, 2 when it could not start."""
    import anyio

    from research_mcp.demo.report import DemoReport, render_summary, say

    workspace = Path(args.dir).expanduser().resolve()
    started = time.monotonic()
    say(f"research-mcp demo in {workspace}")
    problem = _prepare(workspace)
    if problem is not None:
        say(f"research-mcp demo: {problem}")
        return 2
    say(f"  ✓ data         {time.monotonic() - started:6.1f} s  datasets/digits/ copied from scikit-learn's wheel")
    from research_mcp.demo.client import run_session

    report = DemoReport(workspace=str(workspace))
    anyio.run(lambda: run_session(workspace, report, backend=args.backend, mode=args.protocol))
    report.seconds = round(time.monotonic() - started, 2)
    if args.report is not None:
        report.write(args.report)
    sys.stdout.write(render_summary(report) + "\n")
    sys.stdout.flush()
    return 0 if report.ok else 1
