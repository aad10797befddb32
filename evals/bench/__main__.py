"""`python -m evals.bench`: run the measurements, print a table, write the JSON result file.

Section 3 lists the tools twice: as any client gets them, and as the default listing of a client with file tools
of its own (`listing.FILE_TOOLS_CLIENT`); its targets are in `listing.py`. Section 5 renders every recipe
(`prompts/get`) and measures its size; its targets are in `prompts.py`.

`python -m evals.bench --sandbox` runs section 4 instead (`sandbox.py`): the overhead of a sandboxed run of
`python3 -c pass` per backend, against the raw `docker run` and `bwrap`; its result goes to `results/sandbox.json`.
`python -m evals.bench --envs` runs section 6 instead (`envs.py`): a cached prepare_env against a trivial call, and
a fresh environment build against raw `uv pip install` (and pip) per backend; its result goes to `results/envs.json`.
`python -m evals.bench --sweeps` runs section 7 instead (`sweeps.py`): a sweep of short runs drained on the local
backend against the same commands under raw bwrap, and one run_sweep against separate run_experiment calls; its
result goes to `results/sweeps.json`.
Exits 0 whatever the verdicts, unless `--strict` is given; then a missed target exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

import anyio

from evals.bench.listing import FILE_TOOLS_CLIENT, verdicts
from evals.bench.measure import (
    Call,
    Launch,
    Spawned,
    cold_start,
    list_tools_as,
    still_running,
    summary,
    tool_calls,
    tools_list_size,
)
from evals.bench.prompts import prompt_sizes, render_prompts

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BASELINE_SCRIPT = HERE / "baseline_server.py"
DEFAULT_OUT = HERE / "results" / "latest.json"
SANDBOX_OUT = HERE / "results" / "sandbox.json"
ENVS_OUT = HERE / "results" / "envs.json"
SWEEPS_OUT = HERE / "results" / "sweeps.json"
SANDBOX_BACKENDS = ("local", "docker")

COLD_START_TARGET = 1.10
"""research-mcp's median spawn-to-`tools/list` time may be at most this multiple of the baseline's."""
TOOL_CALL_TARGET = 1.20
"""research-mcp's p50 `list_files` round trip may be at most this multiple of the baseline's `ping`."""

RESEARCH, CONSOLE, BASELINE = "research", "research_console_script", "baseline"
FIRST = "research_first_start"
LABELS = {
    BASELINE: "baseline (SDK MCPServer, 1 tool)",
    RESEARCH: "research-mcp (python -m)",
    CONSOLE: "research-mcp (console script)",
    FIRST: "research-mcp, no stored tool listing",
    "ping": "baseline ping",
    "list_files": "research list_files (empty dir)",
    "read_file": "research read_file (1 line)",
}
CALLS = [
    Call("list_files", 0, "list_files", {"path": "empty"}),
    Call("read_file", 0, "read_file", {"path": "one_line.txt"}),
    Call("ping", 1, "ping", {}),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evals.bench", description="research-mcp against the SDK's one-tool server."
    )
    parser.add_argument("--runs", type=int, default=20, help="timed cold starts of each server (default 20)")
    parser.add_argument("--calls", type=int, default=200, help="timed tool calls of each kind (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed tool calls of each kind first (default 20)")
    parser.add_argument(
        "--out", type=Path, help=f"JSON result file (default {DEFAULT_OUT}, with --sandbox {SANDBOX_OUT})"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    sandbox = parser.add_argument_group("section 4: sandbox overhead (instead of sections 1-3)")
    sandbox.add_argument(
        "--sandbox", action="store_true", help="time sandboxed runs of `python3 -c pass` against raw docker and bwrap"
    )
    sandbox.add_argument("--sandbox-runs", type=int, default=20, help="timed runs of each kind (default 20)")
    sandbox.add_argument("--sandbox-warmup", type=int, default=3, help="untimed runs of each kind first (default 3)")
    sandbox.add_argument(
        "--backends",
        default=",".join(SANDBOX_BACKENDS),
        help=f"comma-separated, of {', '.join(SANDBOX_BACKENDS)} (default all; one that cannot run is skipped)",
    )
    sandbox.add_argument("--image", default="research-sandbox:base", help="image for docker (default %(default)s)")
    envs = parser.add_argument_group("section 6: environments (instead of sections 1-3; --backends, --image apply)")
    envs.add_argument("--envs", action="store_true", help="time prepare_env, cached and fresh, against raw installs")
    envs.add_argument("--env-runs", type=int, default=5, help="timed fresh builds of each kind (default 5)")
    envs.add_argument("--env-warmup", type=int, default=1, help="untimed rounds first (default 1)")
    envs.add_argument("--env-calls", type=int, default=50, help="timed cached calls of each kind (default 50)")
    sweeps = parser.add_argument_group("section 7: sweeps on the local backend (instead of sections 1-3)")
    sweeps.add_argument("--sweeps", action="store_true", help="drain and submit a sweep against raw bwrap and calls")
    sweeps.add_argument("--sweep-runs", type=int, default=100, help="runs in the sweep (default 100)")
    sweeps.add_argument("--sweep-rounds", type=int, default=3, help="rounds of each measurement (default 3)")
    sweeps.add_argument("--sweep-concurrency", type=int, default=2, help="runs at once (default 2)")
    return parser


def _launches(python: str, workspace: Path, data_dir: Path) -> dict[str, Launch]:
    """Both servers start with the venv's python by absolute path, from the same folder, with the same env."""
    # keep the user's own data folder out of it; import research_mcp from this checkout, whichever one the venv's
    # editable install points at
    env = {"RESEARCH_MCP_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    serve = ["serve", "--workspace", str(workspace)]
    launches = {
        BASELINE: Launch(LABELS[BASELINE], [python, str(BASELINE_SCRIPT)], workspace, env),
        RESEARCH: Launch(LABELS[RESEARCH], [python, "-m", "research_mcp", *serve], workspace, env),
    }
    console = Path(python).parent / "research-mcp"
    if console.is_file():
        launches[CONSOLE] = Launch(LABELS[CONSOLE], [str(console), *serve], workspace, env)
    # a data folder that is a file: the tool listing can be neither read nor stored, so every start builds every
    # tool's schemas, as the first start after an install or upgrade does
    data_dir.mkdir(parents=True, exist_ok=True)
    blocked = data_dir / "listing-blocked"
    blocked.touch()
    first = {**env, "RESEARCH_MCP_DATA_DIR": str(blocked)}
    launches[FIRST] = Launch(LABELS[FIRST], [python, "-m", "research_mcp", *serve], workspace, first)
    return launches


async def _measure(args: argparse.Namespace, launches: dict[str, Launch], errlog: TextIO) -> dict[str, Any]:
    spawned = Spawned()
    try:
        times, answers = await cold_start(list(launches.values()), args.runs, errlog, spawned)
        per_call = await tool_calls(
            launches[RESEARCH], launches[BASELINE], CALLS, args.calls, args.warmup, errlog, spawned
        )
        default_listing = await list_tools_as(launches[RESEARCH], FILE_TOOLS_CLIENT, errlog, spawned)
    finally:
        left = still_running(spawned.processes)
        for pid in left:  # the SDK's shutdown should have ended them all; this is only a safety net
            os.kill(pid, signal.SIGKILL)

    cold: dict[str, Any] = {"runs": args.runs, "launchers": {key: launch.argv for key, launch in launches.items()}}
    for key, launch in launches.items():
        cold[key] = summary(times[launch.label])
    cold["ratio"] = cold[RESEARCH]["p50_ms"] / cold[BASELINE]["p50_ms"]
    cold["min_ratio"] = cold[RESEARCH]["min_ms"] / cold[BASELINE]["min_ms"]  # less sensitive to a noisy neighbour
    if CONSOLE in launches:
        cold["console_script_ratio"] = cold[CONSOLE]["p50_ms"] / cold[BASELINE]["p50_ms"]
    cold["first_start_ratio"] = cold[FIRST]["p50_ms"] / cold[BASELINE]["p50_ms"]
    cold["target_ratio"] = COLD_START_TARGET
    cold["passed"] = cold["ratio"] <= COLD_START_TARGET

    calls: dict[str, Any] = {"calls": args.calls, "warmup": args.warmup}
    calls.update({call.label: summary(per_call[call.label]) for call in CALLS})
    calls["ratio"] = calls["list_files"]["p50_ms"] / calls["ping"]["p50_ms"]
    calls["read_file_ratio"] = calls["read_file"]["p50_ms"] / calls["ping"]["p50_ms"]
    calls["target_ratio"] = TOOL_CALL_TARGET
    calls["passed"] = calls["ratio"] <= TOOL_CALL_TARGET

    toolsets = _toolsets()
    sizes = tools_list_size(answers[launches[RESEARCH].label], toolsets)
    sizes["baseline"] = tools_list_size(answers[launches[BASELINE].label])
    default = tools_list_size(default_listing, toolsets)
    sizes["default"] = {key: value for key, value in default.items() if key != "per_tool"}
    sizes["default"]["client"] = FILE_TOOLS_CLIENT
    sizes["targets"] = verdicts(sizes, default)
    sizes["passed"] = all(target["passed"] for target in sizes["targets"].values())
    return {
        "cold_start": cold,
        "tool_call": calls,
        "tools_list": sizes,
        "processes": {
            "spawned": [{"pid": pid, "cmdline": cmdline} for pid, cmdline in spawned.processes],
            "left_running": left,
        },
    }


def _toolsets() -> dict[str, str]:
    """Tool name -> the toolset (family) that registers it."""
    from research_mcp.server._manifest import FAMILIES, collect

    return {spec.name: family for family in FAMILIES for spec in collect(family)}


def _meta(started: float) -> dict[str, Any]:
    return {
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "executable": sys.executable,
        "mcp": version("mcp"),
        "research_mcp": version("research-mcp"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
    }


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def render(result: dict[str, Any]) -> str:
    """The human table: one block per measurement, each ending in its target and verdict."""
    meta, cold, calls, sizes = result["meta"], result["cold_start"], result["tool_call"], result["tools_list"]
    load = "/".join(f"{x:.2f}" for x in meta["loadavg_start"])
    lines = [
        f"research-mcp bench: python {meta['python']}, mcp {meta['mcp']}, {meta['cpus']} cpus, "
        f"load {load} at start, {meta['duration_s']:.0f} s",
        f"research-mcp is launched as `{' '.join(cold['launchers'][RESEARCH][:4])} ...` (the same interpreter start "
        "as the baseline script); the console script is timed alongside for information",
        "",
        f"1. cold start, spawn -> tools/list answered ({cold['runs']} runs each, interleaved)",
        f"   {'':36}{'median':>9}{'p90':>9}{'min':>9}",
    ]
    for key in (BASELINE, RESEARCH, CONSOLE, FIRST):
        if key in cold:
            s = cold[key]
            lines.append(f"   {LABELS[key]:36}{s['p50_ms']:9.1f}{s['p90_ms']:9.1f}{s['min_ms']:9.1f} ms")
    lines.append(
        f"   {'ratio research/baseline (median)':36}{cold['ratio']:8.3f}x   "
        f"target <= {cold['target_ratio']:.2f}x   {_verdict(cold['passed'])}"
    )
    lines.append(f"   {'ratio research/baseline (min)':36}{cold['min_ratio']:8.3f}x   (information)")
    if "console_script_ratio" in cold:
        lines.append(f"   {'ratio console script/baseline':36}{cold['console_script_ratio']:8.3f}x   (information)")
    if "first_start_ratio" in cold:
        lines.append(f"   {'ratio no stored listing/baseline':36}{cold['first_start_ratio']:8.3f}x   (information)")
    lines += [
        "",
        f"2. tool call over stdio ({calls['calls']} calls each after {calls['warmup']} warm-up, both sessions open, "
        "interleaved)",
        f"   {'':36}{'p50':>9}{'p90':>9}{'p99':>9}",
    ]
    for key in ("ping", "list_files", "read_file"):
        s = calls[key]
        lines.append(f"   {LABELS[key]:36}{s['p50_ms']:9.3f}{s['p90_ms']:9.3f}{s['p99_ms']:9.3f} ms")
    lines += [
        f"   {'ratio list_files/ping (p50)':36}{calls['ratio']:8.3f}x   "
        f"target <= {calls['target_ratio']:.2f}x   {_verdict(calls['passed'])}",
        f"   {'ratio read_file/ping (p50)':36}{calls['read_file_ratio']:8.3f}x   (information)",
        "",
        f"3. tools/list answer: {sizes['tools']} tools, {sizes['answer_chars']:,} chars "
        f"(tools array {sizes['tools_chars']:,}; baseline: {sizes['baseline']['tools']} tool, "
        f"{sizes['baseline']['answer_chars']:,} chars)",
        "   model = what a client puts in its model's context: name + description + json.dumps(inputSchema)",
        f"   {'tool':18}{'toolset':>11}{'model':>8}{'total':>8}{'description':>13}{'inputSchema':>13}"
        f"{'outputSchema':>14}",
    ]
    for tool in sizes["per_tool"]:
        lines.append(
            f"   {tool['name']:18}{tool['toolset']:>11}{tool['model']:8,}{tool['total']:8,}{tool['description']:13,}"
            f"{tool['inputSchema']:13,}{tool['outputSchema']:14,}"
        )
    lines.append(f"   {'toolset':18}{'tools':>11}{'model':>8}{'total':>8}")
    for name, toolset in sizes["per_toolset"].items():
        lines.append(f"   {name:18}{toolset['tools']:11}{toolset['model']:8,}{toolset['total']:8,}")
    default = sizes["default"]
    lines += [
        f"   {'every tool (any other client)':32}{sizes['tools']:5} tools{sizes['model_chars']:9,} model chars "
        f"({sizes['model_chars_per_tool']:,.0f} a tool){sizes['answer_chars']:9,} answer chars "
        f"({sizes['answer_chars_per_tool']:,.0f} a tool)",
        f"   {'default listing (' + default['client'] + ')':32}{default['tools']:5} tools{default['model_chars']:9,} "
        f"model chars ({default['model_chars_per_tool']:,.0f} a tool){default['answer_chars']:9,} answer chars "
        f"({default['answer_chars_per_tool']:,.0f} a tool)",
    ]
    for target in sizes["targets"].values():
        lines.append(
            f"   {target['what']:46}{target['value']:10,.0f}   target <= {target['target']:,}   "
            f"{_verdict(target['passed'])}"
        )
    lines += ["", *render_prompts(result["prompts"])]
    left = result["processes"]["left_running"]
    lines += [
        "",
        f"{len(result['processes']['spawned'])} servers spawned, "
        + (f"{len(left)} LEFT RUNNING (killed): {left}" if left else "none left running"),
    ]
    return "\n".join(lines)


def _prepare_workspace(workspace: Path) -> None:
    (workspace / "empty").mkdir(parents=True)
    (workspace / "one_line.txt").write_text("lr warmup helps\n", encoding="utf-8")


def _log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _run_section(
    args: argparse.Namespace, name: str, default_out: Path, measure: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
) -> int:  # fmt: skip
    """Measure one section alone, write its JSON (with the machine's facts) and print its table."""
    started = time.time()
    meta = _meta(started)
    section = measure()
    meta["loadavg_end"] = list(os.getloadavg())
    meta["duration_s"] = time.time() - started
    result = {"meta": meta, name: section, "passed": section["passed"]}
    out: Path = args.out or default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    load = "/".join(f"{x:.2f}" for x in meta["loadavg_start"])
    print(
        f"research-mcp bench: python {meta['python']}, {meta['cpus']} cpus, load {load} at start, "
        f"{meta['duration_s']:.0f} s, uid {os.geteuid()}\n"
    )
    print(render(section))
    print(f"\nwritten to {out}")
    return 1 if args.strict and not result["passed"] else 0


def _backends(args: argparse.Namespace) -> list[str]:
    return [b.strip() for b in args.backends.split(",") if b.strip()]


def _main_sandbox(args: argparse.Namespace) -> int:
    from evals.bench.sandbox import measure_sandbox, render_sandbox

    backends = _backends(args)
    if args.sandbox_runs < 1 or args.sandbox_warmup < 0 or not set(backends) <= set(SANDBOX_BACKENDS) or not backends:
        _parser().error(
            f"--sandbox-runs must be at least 1, --sandbox-warmup at least 0, --backends of {SANDBOX_BACKENDS}"
        )
    return _run_section(
        args, "sandbox", SANDBOX_OUT,
        lambda: anyio.run(measure_sandbox, backends, args.sandbox_runs, args.sandbox_warmup, args.image),
        lambda section: render_sandbox(section, backends),
    )  # fmt: skip


def _main_envs(args: argparse.Namespace) -> int:
    from evals.bench.envs import measure_envs, render_envs

    backends = _backends(args)
    if args.env_runs < 1 or args.env_warmup < 0 or args.env_calls < 1 or not set(backends) <= set(SANDBOX_BACKENDS):
        _parser().error(f"--env-runs and --env-calls must be at least 1, --env-warmup at least 0, --backends of "
                        f"{SANDBOX_BACKENDS}")  # fmt: skip
    return _run_section(
        args, "envs", ENVS_OUT,
        lambda: anyio.run(measure_envs, backends, args.env_runs, args.env_warmup, args.env_calls, args.image),
        lambda section: render_envs(section, backends),
    )  # fmt: skip


def _main_sweeps(args: argparse.Namespace) -> int:
    from evals.bench.sweeps import measure_sweeps, render_sweeps

    if args.sweep_runs < 1 or args.sweep_rounds < 1 or args.sweep_concurrency < 1:
        _parser().error("--sweep-runs, --sweep-rounds and --sweep-concurrency must be at least 1")
    return _run_section(
        args, "sweeps", SWEEPS_OUT,
        lambda: anyio.run(measure_sweeps, args.sweep_runs, args.sweep_rounds, args.sweep_concurrency),
        render_sweeps,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.sandbox:
        return _main_sandbox(args)
    if args.envs:
        return _main_envs(args)
    if args.sweeps:
        return _main_sweeps(args)
    args.out = args.out or DEFAULT_OUT
    if args.runs < 1 or args.calls < 1 or args.warmup < 0:
        _parser().error("--runs and --calls must be at least 1, --warmup at least 0")
    started = time.time()
    meta = _meta(started)
    with tempfile.TemporaryDirectory(prefix="research-mcp-bench-") as tmp:
        root = Path(tmp)
        _prepare_workspace(root / "workspace")
        launches = _launches(sys.executable, root / "workspace", root / "data")
        log = root / "servers.log"
        with log.open("w", encoding="utf-8") as errlog:
            try:
                result = anyio.run(_measure, args, launches, errlog)
                result["prompts"] = anyio.run(prompt_sizes, root / "data-prompts")
            except BaseException:
                errlog.flush()
                sys.stderr.write(f"The bench failed; the servers' stderr ends with:\n{_log_tail(log)}\n")
                raise
    meta["loadavg_end"] = list(os.getloadavg())
    meta["duration_s"] = time.time() - started
    result = {"meta": meta, **result}
    result["passed"] = (
        result["cold_start"]["passed"]
        and result["tool_call"]["passed"]
        and result["tools_list"]["passed"]
        and result["prompts"]["passed"]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"\nwritten to {args.out}")
    return 1 if args.strict and not result["passed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
