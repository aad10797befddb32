"""`python -m evals.walkthrough [--small] [--out FILE]`: a researcher's session over stdio, in characters per tool.

The server is `python -m research_mcp serve --workspace <tmp>` spawned through the SDK's stdio client (which
validates every structuredContent against the tool's output schema). Each step expects success or, for the
usual mistakes, an error result; a step whose outcome differs is reported as failed and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, ImageContent, TextContent

from evals.bench.sandbox import available
from evals.walkthrough.experiment import CONFIGS, TRAIN_PY

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = HERE / "results" / "latest.json"
IMAGE = "research-sandbox:base"
CALL_TIMEOUT_S = 180.0
"""Longest one tool call may take (a run waits at most 50 s a call; a compile about a minute)."""
RUN_DEADLINE_S = 300.0
"""Longest the session waits for one run to end, over several run_status calls."""


@dataclass(frozen=True)
class Scale:
    seeds: int
    steps: int


SCALES = {"full": Scale(seeds=3, steps=400), "small": Scale(seeds=2, steps=40)}


@dataclass
class Answer:
    """One tool call: what it asked, whether it failed, and its size in characters by part."""

    step: str
    tool: str
    is_error: bool
    text_chars: int
    structured_chars: int
    image_chars: int
    expected_error: bool
    first_text: str
    text_has_record: bool
    """Whether the text alone holds the whole structured record (see `text_holds`)."""

    @property
    def as_expected(self) -> bool:
        return self.is_error == self.expected_error


def measure(step: str, tool: str, result: CallToolResult, expected_error: bool) -> Answer:
    text = [block.text for block in result.content if isinstance(block, TextContent)]
    images = [block.data for block in result.content if isinstance(block, ImageContent)]
    structured = result.structured_content
    structured_chars = 0 if structured is None else len(json.dumps(structured, separators=(",", ":")))
    return Answer(
        step=step,
        tool=tool,
        is_error=bool(result.is_error),
        text_chars=sum(map(len, text)),
        structured_chars=structured_chars,
        image_chars=sum(map(len, images)),
        expected_error=expected_error,
        first_text=(text[0] if text else "")[:300],
        text_has_record=structured is None or text_holds(text, structured),
    )


def text_holds(texts: list[str], record: dict[str, Any]) -> bool:
    """Whether a client that shows only text still gets the whole record: one block is the record as JSON, or
    one block is the prose of one field (a string, or its lines joined) and the next is the rest as JSON."""
    parsed = [_json_or_none(text) for text in texts]
    if record in parsed:
        return True
    for prose, rest in zip(texts, parsed[1:], strict=False):
        missing = [key for key in record if not isinstance(rest, dict) or key not in rest]
        if len(missing) != 1 or rest != {key: value for key, value in record.items() if key != missing[0]}:
            continue
        value = record[missing[0]]
        if prose == value or (isinstance(value, list) and prose == "\n".join(map(str, value))):  # pyright: ignore[reportUnknownArgumentType]
            return True
    return False


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass
class Session:
    client: ClientSession
    answers: list[Answer] = field(default_factory=list[Answer])

    async def call(self, step: str, tool: str, arguments: dict[str, Any], *, error: bool = False) -> CallToolResult:
        with anyio.fail_after(CALL_TIMEOUT_S):
            result = await self.client.call_tool(tool, arguments)
        self.answers.append(measure(step, tool, result, error))
        return result


def _record(result: CallToolResult) -> dict[str, Any]:
    if result.structured_content is None:
        raise RuntimeError(f"no structured content: {result.content}")
    return result.structured_content


async def _run(session: Session, step: str, arguments: dict[str, Any]) -> str:
    """Start a run, wait for it to end (run_status while it is active); its id. Raises unless it succeeded."""
    started = _record(await session.call(step, "run_experiment", {**arguments, "wait_s": 50}))
    run = started["run"]
    deadline = time.monotonic() + RUN_DEADLINE_S
    while run["state"] in ("queued", "starting", "running") and time.monotonic() < deadline:
        run = _record(await session.call(f"{step}: wait", "run_status", {"run_id": run["id"], "wait_s": 50}))["run"]
    if run["state"] != "succeeded":
        raise RuntimeError(f"{step}: run {run['id']} ended {run['state']}: {run.get('detail')}")
    return run["id"]


async def walk(session: Session, scale: Scale, backends: dict[str, str | None]) -> dict[str, Any]:
    """The session itself; returns what was skipped and why."""
    skipped: dict[str, str] = {}
    await session.call("write the experiment", "write_file", {"path": "exp/train.py", "content": TRAIN_PY})
    runs: dict[str, list[str]] = {label: [] for label in CONFIGS}
    local_why = backends["local"]
    backend = "local" if local_why is None else "auto"
    if local_why is not None:
        skipped["local"] = f"{local_why}; runs used the auto backend"
    for label, lr in CONFIGS.items():
        for seed in range(scale.seeds):
            command = f"python3 train.py --lr {lr} --seed {seed} --steps {scale.steps}"
            args = {"command": command, "workdir": "exp", "backend": backend, "label": label,
                    "config": {"lr": lr}, "seed": seed}  # fmt: skip
            runs[label].append(await _run(session, f"run {label} seed {seed}", args))
    if backends["docker"] is None:
        command = f"python3 train.py --lr {CONFIGS['lr_small']} --seed 0 --steps {scale.steps}"
        args = {"command": command, "workdir": "exp", "backend": "docker", "image": IMAGE, "label": "docker_check"}
        await _run(session, "run on docker", args)
    else:
        skipped["docker"] = backends["docker"]
    first = runs["lr_small"][0]
    await session.call("read the metrics of a run", "read_metrics", {"source": first})
    labels = list(CONFIGS)
    await session.call("compare the configurations", "compare_runs", {"metric": "final_val_acc", "labels": labels})
    curves = [runs[label][0] for label in labels]
    await session.call("plot the loss curves", "plot_metrics", {"metrics": ["loss"], "sources": curves, "name": "loss"})
    await session.call(
        "plot the accuracy bars", "plot_metrics",
        {"metrics": ["final_val_acc"], "groups": runs, "kind": "bar", "name": "val_acc"},
    )  # fmt: skip
    await session.call(
        "tabulate the results", "results_table",
        {"metrics": ["final_val_acc", "final_loss"], "caption": "Validation accuracy and loss by learning rate.",
         "label": "main", "labels": labels},
    )  # fmt: skip
    await session.call("scaffold a paper", "new_paper", {"title": "Learning rates for logistic regression"})
    await session.call("compile with a preview", "compile_paper", {"main": "paper/main.tex", "preview_page": 1})
    await session.call("read the paper as text", "paper_text", {"path": "paper/main.tex"})
    await session.call("mistake: a wrong run id", "run_status", {"run_id": "run-nope"}, error=True)
    await session.call(
        "mistake: a wrong metric name", "compare_runs", {"metric": "val_accuracy", "labels": labels}, error=True
    )
    await session.call("mistake: a missing file", "read_file", {"path": "exp/results.txt"}, error=True)
    await session.call("read a run's log", "run_logs", {"run_id": first})
    return skipped


def per_tool(answers: list[Answer]) -> dict[str, dict[str, int]]:
    tools: dict[str, dict[str, int]] = {}
    for answer in answers:
        row = tools.setdefault(answer.tool, {"calls": 0, "text": 0, "structured": 0, "image": 0})
        row["calls"] += 1
        row["text"] += answer.text_chars
        row["structured"] += answer.structured_chars
        row["image"] += answer.image_chars
    return dict(sorted(tools.items()))


def totals(tools: dict[str, dict[str, int]]) -> dict[str, int]:
    keys = ("calls", "text", "structured", "image")
    return {key: sum(row[key] for row in tools.values()) for key in keys}


def render(result: dict[str, Any]) -> str:
    lines = [
        f"research-mcp walkthrough ({result['scale']}): {result['totals']['calls']} calls, "
        f"{result['duration_s']:.0f} s",
        "characters per tool: text content | structuredContent (compact JSON) | images (base64)",
        f"   {'tool':16}{'calls':>6}{'text':>10}{'structured':>12}{'image':>10}{'text/struct':>13}",
    ]
    rows = [*result["per_tool"].items(), ("TOTAL", result["totals"])]
    for name, row in rows:
        ratio = f"{row['text'] / row['structured']:.2f}" if row["structured"] else "-"
        lines.append(
            f"   {name:16}{row['calls']:6}{row['text']:10,}{row['structured']:12,}{row['image']:10,}{ratio:>13}"
        )
    baseline = result.get("baseline")
    if baseline is not None:
        lines.append(
            f"   text against the baseline ({baseline['scale']}): {result['totals']['text']:,} / "
            f"{baseline['totals']['text']:,} = {result['totals']['text'] / baseline['totals']['text']:.2f}"
        )
    for backend, why in result["skipped"].items():
        lines.append(f"skipped {backend}: {why}")
    lossy = [a["step"] for a in result["steps"] if not a["text_has_record"]]
    lines.append(f"answers whose text lacks part of the record: {len(lossy)}" + "".join(f"\n   {s}" for s in lossy))
    failed = [a for a in result["steps"] if not a["as_expected"]]
    lines.append(
        f"steps: {len(result['steps'])}, as expected: {len(result['steps']) - len(failed)}"
        + "".join(f"\n   NOT AS EXPECTED: {a['step']} ({a['tool']}): {a['first_text']}" for a in failed)
    )
    return "\n".join(lines)


async def _session(workspace: Path, data_dir: Path, scale: Scale, errlog: Any) -> tuple[list[Answer], dict[str, str]]:
    env = {**_passthrough_env(), "RESEARCH_MCP_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "research_mcp", "serve", "--workspace", str(workspace)], env=env
    )
    backends = {name: available(name, IMAGE) for name in ("local", "docker")}
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as client:
        with anyio.fail_after(60):
            await client.initialize()
            await client.list_tools()
        session = Session(client)
        try:
            skipped = await walk(session, scale, backends)
        except BaseException:
            for answer in session.answers[-3:]:
                errlog.write(f"{answer.step}: {answer.first_text}\n")
            raise
    return session.answers, skipped


def _passthrough_env() -> dict[str, str]:
    """PATH and HOME for the server and its tools (latexmk, docker, bwrap); nothing else of ours."""
    return {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.walkthrough", description=__doc__)
    parser.add_argument("--small", action="store_true", help="few seeds, short runs (for CI)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file (default %(default)s)")
    parser.add_argument("--baseline", type=Path, default=HERE / "baseline.json", help="compared against, if present")
    args = parser.parse_args(argv)
    name = "small" if args.small else "full"
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="research-mcp-walkthrough-") as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # as root, the sandbox's own uid must reach the runs under it
        workspace = root / "workspace"
        workspace.mkdir()
        log = root / "server.log"
        with log.open("w", encoding="utf-8") as errlog:
            try:
                answers, skipped = anyio.run(_session, workspace, root / "data", SCALES[name], errlog)
            except BaseException:
                errlog.flush()
                tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
                sys.stderr.write(f"The walkthrough failed; the server's stderr ends with:\n{tail}\n")
                raise
    tools = per_tool(answers)
    result: dict[str, Any] = {
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "scale": name,
        "duration_s": time.time() - started,
        "skipped": skipped,
        "per_tool": tools,
        "totals": totals(tools),
        "steps": [{**vars(a), "as_expected": a.as_expected} for a in answers],
    }
    if args.baseline.is_file():
        baselines = json.loads(args.baseline.read_text(encoding="utf-8"))
        if name in baselines:
            result["baseline"] = {"scale": name, **baselines[name]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"\nwritten to {args.out}")
    return 0 if all(a.as_expected and a.text_has_record for a in answers) else 1


if __name__ == "__main__":
    raise SystemExit(main())
