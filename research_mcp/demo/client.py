"""The demo's scripted MCP client: a whole research loop against a real `research-mcp serve`, with no model.

This is the worked example for anyone writing a scripted client of their own. The shape to copy:

1. Spawn the server as any MCP client does (`StdioServerParameters`: the command, `serve --workspace DIR`, its
   environment), and open an `mcp.Client` on it. `mode="auto"` speaks the 2026-07-28 protocol and falls back to
   the initialize handshake; `mode="legacy"` forces the handshake. The server's stderr (its log) goes to a file
   of ours, never to the terminal we draw on.
2. Declare what a model's client would answer for the user: here `elicitation_callback`, which answers the
   server's approval form (`ideas(approve=true)`) as the user; a client without it would pass the user's words
   in `user_words` instead, stored marked as relayed.
3. Call tools with `client.call_tool(name, arguments)` and read `structured_content`: it is the record the tool's
   output schema describes (the SDK checks it), so a script never parses prose. A result with `is_error` carries
   a sentence saying what to do next; this script stops on one, names the tool and prints that sentence.
4. Take every decision a model would take from what the tools answered: the backend from `lab_info`, the numbers
   of the paper from `compare_runs` and `read_metrics`, what is left from `research_status`.

The stages (each timed and printed on stderr as it ends): lab (lab_info), idea (ideas, write_file of the plan),
novelty (search_papers with the idea's id, then a verdict citing what it returned, or, offline, nothing: the
status then says the novelty stage is open), approval (elicited), runs (run_sweep x 2, list_runs, run_status),
analysis (read_metrics, compare_runs, plot_metrics, results_table), paper (new_paper, cite, edit_file), compile
(compile_paper), audit (audit_paper), status (research_status).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.client.stdio import stdio_client
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult, ImageContent, TextContent

from research_mcp.demo import paper
from research_mcp.demo.experiment import CONFIGS, PLAN_MD, RUN_DATA, SEEDS, TRAIN_PY
from research_mcp.demo.report import Call, DemoReport, StageReport, say, stage_line

__all__ = ["USER_WORDS", "ToolFailed", "run_session"]

USER_WORDS = "Approved by the research-mcp demo script, answering for the user."
"""What the demo's client answers to the approval form, in the user's place (stored as the user's comment)."""
METRIC = "final_test_acc"
CALL_TIMEOUT_S = 120.0
RUN_DEADLINE_S = 300.0
NAMES = {"softmax": "softmax regression", "mlp": "the one-hidden-layer network"}
IDEA = {
    "title": "One hidden layer against softmax regression on 8x8 digits",
    "hypothesis": "A one-hidden-layer ReLU network classifies the 8x8 digits more accurately than softmax "
    "regression under the same training budget.",
    "experiments": [
        "softmax regression (label softmax), over seeds",
        "one-hidden-layer ReLU network (label mlp), over seeds",
        "compare final test accuracy with Welch's t-test",
    ],
}


class ToolFailed(Exception):
    """A tool answered with an error; the message is the tool's own sentence."""

    def __init__(self, tool: str, text: str) -> None:
        super().__init__(f"{tool}: {text}")
        self.tool = tool


def _chars(result: CallToolResult) -> int:
    """What the client received: text blocks, structuredContent as compact JSON, images (base64)."""
    total = sum(len(b.text) for b in result.content if isinstance(b, TextContent))
    total += sum(len(b.data) for b in result.content if isinstance(b, ImageContent))
    if result.structured_content is not None:
        total += len(json.dumps(result.structured_content, separators=(",", ":")))
    return total


class Session:
    """The client and the report: every call measured and filed under the stage that made it."""

    def __init__(self, client: Client, report: DemoReport) -> None:
        self.client = client
        self.report = report
        self.current = StageReport("start")

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call a tool; its structured record, or `ToolFailed` with the tool's sentence."""
        started = time.monotonic()
        with anyio.fail_after(CALL_TIMEOUT_S):
            result = await self.client.call_tool(tool, arguments)
        chars = _chars(result)
        self.report.calls.append(
            Call(self.current.name, tool, round(time.monotonic() - started, 3), chars, bool(result.is_error))
        )
        self.current.calls += 1
        self.current.chars += chars
        if result.is_error or result.structured_content is None:
            text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
            raise ToolFailed(tool, text[:2000] or "no structured answer")
        return result.structured_content

    @asynccontextmanager
    async def stage(self, name: str) -> AsyncGenerator[StageReport]:
        """Time a stage, print its line when it ends; a failure is recorded and raised on."""
        self.current = self.report.stage(name)
        started = time.monotonic()
        live = sys.stderr.isatty()
        if live:  # on a terminal, the stage under way shows until its line replaces it
            sys.stderr.write(f"  … {name}")
            sys.stderr.flush()
        try:
            yield self.current
            if self.current.ok is None and not self.current.detail.startswith("skipped"):
                self.current.ok = True
        except Exception as exc:
            self.current.ok = False
            self.current.detail = f"{self.current.detail} FAILED: {exc}".strip()
            raise
        finally:
            self.current.seconds = round(time.monotonic() - started, 2)
            say(("\r\033[K" if live else "") + stage_line(self.current))


async def answer_as_user(_: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    """The approval form: a model's client shows it to the user; the demo answers it itself."""
    return ElicitResult(action="accept", content={"approve": True, "comment": USER_WORDS})


def _first_clause(problem: str) -> str:
    """'arXiv did not answer (ConnectionError: ...). The network may be down ...' -> 'arXiv did not answer'."""
    return problem.split(" (", 1)[0].split(". ", 1)[0].strip()


def _component(lab: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in lab.get("components", []) if c.get("name") == name]
    return found[0] if found else {}


def _install(lab: dict[str, Any], part: str) -> str | None:
    """lab_info's install step for a part that is missing or incomplete (Docker without the runs' image)."""
    found = _component(lab, part)
    step = found.get("install")
    return f"{part}: {step}" if step else None


async def _lab(s: Session, backend: str | None) -> tuple[str | None, bool]:
    """The backend to run on (lab_info's first, most preferred, that can run the demo now) and whether TeX is here.
    Docker without its image is passed over: building the image is the user's choice, said in the summary."""
    async with s.stage("lab") as st:
        lab = await s.call("lab_info", {})
        listed: list[str] = lab.get("backends", [])
        usable = [name for name in listed if not (name == "docker" and _install(lab, "docker"))]
        chosen = backend if backend in usable else (usable[0] if usable else None)
        if "docker" in listed and "docker" not in usable:
            s.report.notes.append(f"Docker is here without the runs' image; runs used {chosen or 'nothing'}.")
        wanted = ["docker", "bubblewrap"] if chosen is None else ["docker"] if "docker" not in usable else []
        wanted += [part for part in ("tex", "latexmk") if not _component(lab, part).get("ok")]
        s.report.install += [step for part in wanted if (step := _install(lab, part))]
        tex = all(_component(lab, part).get("ok") for part in ("tex", "latexmk"))
        s.report.backend = chosen or ""
        st.detail = (
            f"backends here: {', '.join(usable) or 'none'}; runs on {chosen or 'nothing'}; TeX {'yes' if tex else 'no'}"
        )
    return chosen, tex


async def _idea(s: Session) -> str:
    async with s.stage("idea") as st:
        idea = await s.call("ideas", IDEA)
        await s.call("write_file", {"path": "plan.md", "content": PLAN_MD})
        await s.call("ideas", {"idea_id": idea["id"], "plan_files": ["plan.md"]})
        st.detail = f"{idea['id']}: {IDEA['title']}; plan in plan.md"
        return str(idea["id"])


async def _novelty(s: Session, idea_id: str) -> list[str]:
    """Search with the idea's id; with papers returned, a verdict citing the closest; their ids."""
    async with s.stage("novelty") as st:
        query = "softmax regression versus multilayer perceptron handwritten digits classification"
        found = await s.call("search_papers", {"query": query, "idea_id": idea_id, "limit": 5})
        papers: list[dict[str, Any]] = found.get("papers", [])
        problems = "; ".join(_first_clause(p["problem"]) for p in found.get("problems", []))
        if not papers:
            s.report.offline = problems or "no source answered"
            where = "the workspace's library (empty)" if found.get("from_library") else "the sources"
            st.detail = f"search recorded; 0 papers from {where} ({problems}): no verdict can be given"
            st.ok = True
            return []
        if found.get("from_library"):
            s.report.offline = problems
        closest = [str(p["id"]) for p in papers[:3]]
        reasons = (
            f"The closest papers the search returned ({', '.join(closest)}) cover linear and neural classifiers; "
            "comparing the two on the 8x8 digits is textbook material, so this is at most an incremental, "
            "reproducible check."
        )
        await s.call("ideas", {"idea_id": idea_id, "novelty": "incremental", "reasons": reasons})
        st.detail = f"{len(papers)} paper(s) found; verdict 'incremental', citing {', '.join(closest)}"
        return closest


async def _approval(s: Session, idea_id: str) -> None:
    async with s.stage("approval") as st:
        record = await s.call("ideas", {"idea_id": idea_id, "approve": True})
        approval: dict[str, Any] = record.get("approval") or {}
        if not approval.get("approved"):
            raise ToolFailed("ideas", f"the plan was not approved: {approval}")
        st.detail = f"{approval.get('source')} (the demo answered the client's form as the user)"


async def _runs(s: Session, idea_id: str, backend: str) -> dict[str, list[str]]:
    """Each configuration over three seeds as one sweep, both started at once (the backend queues what it cannot
    run yet); then followed through list_runs until every member has ended."""
    async with s.stage("runs") as st:
        await s.call("write_file", {"path": "experiment/train.py", "content": TRAIN_PY})
        sweeps: dict[str, str] = {}
        for label, config in CONFIGS.items():
            flags = " ".join(f"--{key} {{{key}}}" for key in config)  # each value from the grid, shell-quoted
            answer = await s.call("run_sweep", {
                "command": f"python3 experiment/train.py --data {RUN_DATA} {flags} --seed {{seed}}",
                "grid": {key: [value] for key, value in config.items()}, "seeds": list(SEEDS), "workdir": ".",
                "backend": backend, "timeout_s": 600, "label": label, "note": f"{label} over seeds",
                "idea_id": idea_id,
            })  # fmt: skip
            sweeps[label] = str(answer["sweep"]["id"])
        deadline = time.monotonic() + RUN_DEADLINE_S
        started: dict[str, list[str]] = {}
        for label, sweep_id in sweeps.items():
            while True:
                found = await s.call("list_runs", {"sweep_id": sweep_id, "limit": len(SEEDS)})
                counts: dict[str, int] = found["sweep"]["counts"]
                active = sum(counts.get(state, 0) for state in ("queued", "starting", "running"))
                if not active or time.monotonic() > deadline:
                    break
                waiting = next(r for r in found["runs"] if r["state"] in ("queued", "starting", "running"))
                await s.call("run_status", {"run_id": waiting["id"], "wait_s": 20})
            started[label] = [str(run["id"]) for run in found["runs"]]
            for run in found["runs"]:
                if run["state"] != "succeeded":
                    logs = await s.call("run_logs", {"run_id": run["id"], "tail": 20})
                    tail = "\n".join(logs.get("lines", []))[-1500:]
                    raise ToolFailed("run_sweep", f"{label} run {run['id']} ended {run['state']}: "
                                     f"{run.get('detail', '')}\n{tail}")  # fmt: skip
        n = sum(map(len, started.values()))
        st.detail = (
            f"{n} runs on {backend} as {len(sweeps)} sweeps ({len(CONFIGS)} configurations x {len(SEEDS)} seeds), "
            "all succeeded"
        )
        return started


async def _analysis(s: Session, runs: dict[str, list[str]]) -> paper.Facts:
    async with s.stage("analysis") as st:
        labels = list(CONFIGS)
        metrics = await s.call("read_metrics", {"source": runs[labels[0]][0], "metrics": ["n_*"]})
        sizes = {m["name"].rsplit(".", 1)[-1]: int(m["last"]) for m in metrics.get("metrics", [])}
        compared = await s.call("compare_runs", {"metric": METRIC, "labels": labels})
        means = {g["name"]: float(g["mean"]) for g in compared["groups"]}
        s.report.results = {
            g["name"]: f"{g['mean']:.4f} ± {g['std']:.4f}" if g.get("std") is not None else f"{g['mean']:.4f}"
            for g in compared["groups"]
        }
        s.report.verdict = str(compared.get("verdict", ""))
        tests: list[dict[str, Any]] = compared.get("tests") or [{}]
        test = tests[0]
        figure = "test_acc"
        await s.call("plot_metrics", {
            "metrics": ["test_acc"], "groups": runs, "name": figure, "xlabel": "epoch", "ylabel": "test accuracy",
            "display_names": {"softmax": "softmax regression", "mlp": "MLP"},
        })  # fmt: skip
        table = "main"
        await s.call("results_table", {
            "metrics": [METRIC, "final_train_loss"], "labels": labels, "label": table,
            "caption": "Final test accuracy and training loss, mean $\\pm$ standard deviation over seeds.",
            "display_names": {"softmax": "Softmax regression", "mlp": "One-hidden-layer MLP",
                              METRIC: "Test accuracy", "final_train_loss": "Training loss"},
        })  # fmt: skip
        best = str(compared.get("best_group") or max(means, key=lambda k: means[k]))
        st.detail = f"{METRIC}: {'; '.join(f'{k} {v}' for k, v in s.report.results.items())}; figure and table"
        return paper.Facts(
            names=NAMES, configs={k: dict(v) for k, v in CONFIGS.items()}, means=means, seeds=len(SEEDS),
            sizes=sizes, best=best, p_value=test.get("p_holm"), hedges_g=test.get("hedges_g"),
            significant=bool(test.get("significant")), figure=figure, table=table, offline=s.report.offline,
        )  # fmt: skip


async def _paper(s: Session, facts: paper.Facts, closest: list[str]) -> None:
    async with s.stage("paper") as st:
        await s.call("new_paper", {"title": "One Hidden Layer against Softmax Regression on 8x8 Digits"})
        if closest:
            try:
                facts.cite_keys = (await s.call("cite", {"paper_ids": closest}))["keys"]
            except ToolFailed as exc:  # offline after all: the related work says so
                facts.offline = facts.offline or str(exc)[:200]
                s.report.offline = s.report.offline or facts.offline
        for anchor, text in paper.edits(facts):
            await s.call("edit_file", {"path": "paper/main.tex", "old_string": anchor,
                                       "new_string": f"{anchor}\n{text}"})  # fmt: skip
        cited = f"{len(facts.cite_keys)} citation(s)" if facts.cite_keys else "no citation (literature offline)"
        st.detail = f"paper/main.tex written from the tools' answers; {cited}"


async def _compile(s: Session, tex: bool) -> None:
    async with s.stage("compile") as st:
        if not tex:
            st.detail = "skipped: TeX Live / latexmk missing (see install below)"
            return
        built = await s.call("compile_paper", {"main": "paper/main.tex"})
        if not built.get("clean") or not built.get("pdf"):
            errors = json.dumps(built, separators=(",", ":"))[:1500]
            raise ToolFailed("compile_paper", f"not clean: {errors}")
        s.report.pdf = str(Path(s.report.workspace) / built["pdf"])
        st.detail = f"{built['pdf']}, {built.get('pages', '?')} page(s)"


async def _audit(s: Session) -> None:
    async with s.stage("audit") as st:
        audit = await s.call("audit_paper", {"main": "paper/main.tex"})
        findings: list[dict[str, Any]] = audit.get("findings", [])
        blocking = [f for f in findings if f.get("severity") == "blocking"]
        s.report.audit = {"numbers": audit["numbers"], "traced": audit["traced"], "untraced": audit["untraced"],
                          "weak": audit["weak"], "blocking": len(blocking), "findings": audit["total"]}  # fmt: skip
        st.detail = (f"{audit['numbers']} numbers, {audit['traced']} traced, {audit['untraced']} untraced, "
                     f"{len(blocking)} blocking")  # fmt: skip
        if audit["untraced"] or blocking:
            shown = "; ".join(f"{f['code']} {f.get('file')}:{f.get('line')}: {f['evidence']}" for f in blocking[:5])
            raise ToolFailed("audit_paper", f"{st.detail}: {shown}")


async def _status(s: Session, idea_id: str) -> None:
    async with s.stage("status") as st:
        status = await s.call("research_status", {"idea_id": idea_id})
        s.report.status = {stage["name"]: bool(stage["done"]) for stage in status["stages"]}
        s.report.missing = {stage["name"]: stage["missing"] for stage in status["stages"] if not stage["done"]}
        st.detail = f"{status['done']}/{len(status['stages'])} stages done"
        if not s.report.green_to_review:
            excused = ("review", "revision", "novelty") if s.report.offline else ("review", "revision")
            open_ = [name for name in s.report.missing if name not in excused]
            raise ToolFailed("research_status", f"stages before the review not done: {', '.join(open_)}")
        if not s.report.status.get("novelty"):
            st.detail += "; novelty open: offline, the search returned no paper to judge against"


async def _session(s: Session, backend: str | None) -> None:
    chosen, tex = await _lab(s, backend)
    idea_id = await _idea(s)
    closest = await _novelty(s, idea_id)
    await _approval(s, idea_id)
    if chosen is None:
        async with s.stage("runs") as st:
            st.detail = "skipped: no sandbox backend here (see install below)"
        return
    runs = await _runs(s, idea_id, chosen)
    facts = await _analysis(s, runs)
    await _paper(s, facts, closest)
    for last in (lambda: _compile(s, tex), lambda: _audit(s), lambda: _status(s, idea_id)):
        try:  # the paper exists: a failed compile or audit still leaves the audit and the status worth having
            await last()
        except ToolFailed as exc:
            s.report.notes.append(f"{exc}"[:3000])


def server_params(workspace: Path) -> StdioServerParameters:
    """`research-mcp serve` as a client launches it: this interpreter's, so it is the installed package."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "research_mcp", "serve", "--workspace", str(workspace)],
        env=dict(os.environ),
    )


async def run_session(
    workspace: Path, report: DemoReport, *, backend: str | None = None, mode: Literal["auto", "legacy"] = "auto"
) -> None:
    """The whole session against a server spawned on `workspace`; fills `report`. A failed stage ends it (the
    report says which and why); the server's log is printed on stderr then."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", prefix="research-mcp-demo-server-") as log:
        transport = stdio_client(server_params(workspace), errlog=log)
        try:
            async with Client(transport, mode=mode, elicitation_callback=answer_as_user) as client:  # pyright: ignore[reportArgumentType]
                report.protocol = client.session.protocol_version or mode
                try:
                    await _session(Session(client, report), backend)
                except (ToolFailed, TimeoutError) as exc:  # said by the stage's line; the summary repeats it
                    report.notes.append(f"stopped: {exc}"[:3000])
        except Exception:  # unexpected: the server's side of the story, then the traceback
            log.seek(0)
            tail = "\n".join(log.read().splitlines()[-30:])
            say(f"The demo failed; the server's log ends with:\n{tail}")
            raise
