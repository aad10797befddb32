"""`python -m evals.pipeline [--report FILE] [--out FILE]`: the demo as a measured run, as a table and JSON.

Without `--report` it runs `research-mcp demo` (this interpreter's `-m research_mcp demo`, the CLI entry point) in
a temporary folder with `--report`, and measures that; with `--report` it reads a report an earlier demo run
wrote (the integration test shares one run so). The exit status is 0 when the demo's run was ok.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "latest.json"
DEMO_TIMEOUT_S = 600


def run_demo(workspace: Path, report: Path, extra: list[str]) -> tuple[int, float, str]:
    """The demo as a user runs it; its exit status, wall time and stdout (the summary)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "research_mcp", "demo", str(workspace), "--report", str(report), *extra],
        capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False,
    )  # fmt: skip
    sys.stderr.write(done.stderr)
    return done.returncode, time.monotonic() - started, done.stdout


def measure(report: dict[str, Any]) -> dict[str, Any]:
    """The eval's record of one demo run: per stage and per tool, with totals."""
    per_tool: dict[str, dict[str, float]] = {}
    for call in report["calls"]:
        row = per_tool.setdefault(call["tool"], {"calls": 0, "chars": 0, "seconds": 0.0})
        row["calls"] += 1
        row["chars"] += call["chars"]
        row["seconds"] = round(row["seconds"] + call["seconds"], 3)
    stages = [{k: s[k] for k in ("name", "ok", "seconds", "calls", "chars", "detail")} for s in report["stages"]]
    return {
        "started_at": datetime.fromtimestamp(report["started_at"], UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "protocol": report["protocol"],
        "backend": report["backend"],
        "seconds": report["seconds"],
        "ok": report["ok"],
        "green_to_review": report["green_to_review"],
        "stages_passed": sum(1 for s in stages if s["ok"]),
        "stages": stages,
        "tool_calls": len(report["calls"]),
        "chars": sum(c["chars"] for c in report["calls"]),
        "per_tool": dict(sorted(per_tool.items())),
        "audit": report["audit"],
        "status": report["status"],
        "offline": report["offline"],
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"research-mcp demo, measured: {'ok' if result['ok'] else 'NOT OK'} in {result['seconds']:.1f} s on "
        f"{result['cpus']} cpus; {result['stages_passed']}/{len(result['stages'])} stages passed; "
        f"{result['tool_calls']} tool calls; {result['chars']:,} characters to the client "
        f"({result['protocol']}, runs on {result['backend'] or 'nothing'})",
        f"   {'stage':12}{'ok':>4}{'seconds':>9}{'calls':>7}{'chars':>10}",
    ]
    for s in result["stages"]:
        mark = {True: "yes", False: "NO", None: "-"}[s["ok"]]
        lines.append(f"   {s['name']:12}{mark:>4}{s['seconds']:9.2f}{s['calls']:7}{s['chars']:10,}")
    lines.append(f"   {'tool':16}{'calls':>6}{'chars':>10}{'seconds':>9}")
    for tool, row in result["per_tool"].items():
        lines.append(f"   {tool:16}{row['calls']:6}{row['chars']:10,}{row['seconds']:9.2f}")
    audit = result["audit"]
    if audit:
        lines.append(f"audit: {audit['numbers']} numbers, {audit['untraced']} untraced, {audit['blocking']} blocking")
    done = [name for name, ok in result["status"].items() if ok]
    lines.append(f"research_status: {len(done)}/{len(result['status'])} done; green up to the review: "
                 f"{result['green_to_review']}" + (f" (novelty open: offline: {result['offline']})"
                                                   if result["offline"] else ""))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.pipeline", description=__doc__)
    parser.add_argument("--report", type=Path, help="a report `research-mcp demo --report` wrote (else run the demo)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file (default %(default)s)")
    parser.add_argument("--backend", choices=["docker", "local"])
    parser.add_argument("--protocol", choices=["auto", "legacy"])
    args = parser.parse_args(argv)
    if args.report is not None:
        report = json.loads(args.report.read_text(encoding="utf-8"))
        wall = None
    else:
        extra = [*(["--backend", args.backend] if args.backend else []),
                 *(["--protocol", args.protocol] if args.protocol else [])]  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="research-mcp-pipeline-") as tmp:
            root = Path(tmp)
            root.chmod(0o711)  # as root, the sandbox's own uid must reach the runs under it
            status, wall, _ = run_demo(root / "workspace", root / "report.json", extra)
            if not (root / "report.json").is_file():
                print(f"the demo wrote no report (exit status {status})")
                return 1
            report = json.loads((root / "report.json").read_text(encoding="utf-8"))
    result = measure(report)
    if wall is not None:
        result["wall_seconds"] = round(wall, 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    if wall is not None:
        print(f"wall time of `research-mcp demo` (start-up and imports included): {wall:.1f} s")
    print(f"\nwritten to {args.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
