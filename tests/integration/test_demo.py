"""`research-mcp demo DIR`, the real CLI entry point as a subprocess, end to end in a temporary folder.

One offline run is shared by the module (about 15 s here on 2 cores, TeX and Docker present): the PDF is there, the
audit traced every number, research_status is green up to the review with the novelty stage open and said to be
open because the literature was offline, the progress and the summary are printed; `python -m evals.pipeline` reads
its report into the table. A second run, with arXiv and Semantic Scholar played by a replay server, closes the
novelty stage with a verdict and cites the paper the search returned (about 10 s). The module takes about 30 s on
2 cores.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evals.pipeline.__main__ import main as pipeline_main
from research_mcp.tools.pipeline.status import STAGES
from tests.conftest import component_missing, open_for_sandbox, skip_or_fail
from tests.integration.test_stdio import api_env, apis
from tests.replay import ReplayServer

COMMAND = str(Path(sys.executable).parent / "research-mcp")
CLOSED = "http://127.0.0.1:9"
"""A port nothing listens on: the literature sources fail at once, as with no network."""
DEMO_TIMEOUT_S = 240
STAGES_BEFORE_REVIEW = STAGES[: STAGES.index("review")]


@dataclass
class DemoRun:
    workspace: Path
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]


def _needs() -> None:
    if component_missing("latex") is not None:
        skip_or_fail(f"latex: {component_missing('latex')}")
    if component_missing("docker") is not None and component_missing("bwrap") is not None:
        skip_or_fail("no sandbox backend: neither a Docker engine nor bubblewrap")


def run_demo(root: Path, extra_env: dict[str, str], args: tuple[str, ...] = ()) -> DemoRun:
    root.mkdir(parents=True, exist_ok=True)
    workspace, report = root / "demo", root / "report.json"
    open_for_sandbox(root.parent, root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_MCP_")}
    env |= {"RESEARCH_MCP_DATA_DIR": str(root / "data"), **extra_env}
    done = subprocess.run(
        [COMMAND, "demo", str(workspace), "--report", str(report), *args],
        capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False, env=env, cwd=root,
    )  # fmt: skip
    assert report.is_file(), done.stdout + done.stderr
    return DemoRun(workspace, done.returncode, done.stdout, done.stderr, json.loads(report.read_text()))


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    _needs()
    urls = {"RESEARCH_MCP_ARXIV_URL": f"{CLOSED}/api/query", "RESEARCH_MCP_S2_URL": CLOSED}
    return run_demo(tmp_path_factory.mktemp("offline"), urls)


def test_the_demo_compiles_its_paper_and_the_audit_traces_every_number(offline: DemoRun) -> None:
    assert offline.returncode == 0, offline.stdout + offline.stderr
    pdf = offline.workspace / "paper" / "main.pdf"
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")
    assert offline.report["pdf"] == str(pdf)
    audit = offline.report["audit"]
    assert audit["untraced"] == 0 and audit["blocking"] == 0 and audit["numbers"] == audit["traced"] > 10
    assert (offline.workspace / "datasets" / "digits" / "digits.csv.gz").is_file()
    sweeps = [c for c in offline.report["calls"] if c["tool"] == "run_sweep"]  # a sweep per configuration
    assert len(sweeps) == 2 and not any(c["is_error"] for c in offline.report["calls"])
    with closing(sqlite3.connect(offline.workspace / ".research" / "state.db")) as db:
        rows = db.execute("SELECT command, sweep_id, label FROM runs").fetchall()
    assert len(rows) == 6 and len({sweep for _, sweep, _ in rows}) == 2 and {label for *_, label in rows} == {
        "softmax", "mlp"
    }  # fmt: skip
    # the runs read the dataset where every run finds it, not from their snapshot
    assert {command.split("--data ")[1].split()[0] for command, *_ in rows} == {"/data/digits/digits.csv.gz"}


def test_research_status_is_green_up_to_the_review_but_novelty_offline(offline: DemoRun) -> None:
    status = offline.report["status"]
    assert list(status)[: len(STAGES_BEFORE_REVIEW)] == list(STAGES_BEFORE_REVIEW)
    assert {name for name in STAGES_BEFORE_REVIEW if not status[name]} == {"novelty"}
    assert offline.report["missing"]["novelty"] == ["1 search(es) returned no paper"]
    assert offline.report["offline"] and offline.report["green_to_review"] and offline.report["ok"]
    tex = (offline.workspace / "paper" / "main.tex").read_text()
    assert "could not reach arXiv or Semantic Scholar" in tex and "\\citet{" not in tex


def test_the_progress_has_a_line_per_stage_and_the_summary_is_printed(offline: DemoRun) -> None:
    lines = offline.stderr.splitlines()
    for stage in offline.report["stages"]:
        line = next(line for line in lines if line.strip().startswith(f"✓ {stage['name']} "))
        assert f"{stage['seconds']:.1f} s" in line
    assert offline.stdout.startswith("research-mcp demo: done in ")
    assert f"paper:     {offline.workspace / 'paper' / 'main.pdf'}" in offline.stdout
    assert "0 untraced" in offline.stdout and "literature: offline" in offline.stdout
    assert len(offline.stdout.splitlines()) <= 24  # one screen


def test_the_pipeline_eval_tabulates_the_demo_run(offline: DemoRun, tmp_path: Path, capsys: Any) -> None:
    report = offline.workspace.parent / "report.json"
    assert pipeline_main(["--report", str(report), "--out", str(tmp_path / "pipeline.json")]) == 0
    result = json.loads((tmp_path / "pipeline.json").read_text())
    assert result["stages_passed"] == len(result["stages"]) == len(offline.report["stages"])
    assert result["tool_calls"] == len(offline.report["calls"]) == sum(s["calls"] for s in result["stages"])
    assert result["chars"] == sum(row["chars"] for row in result["per_tool"].values()) > 0
    assert result["per_tool"]["run_sweep"]["calls"] == 2
    printed = capsys.readouterr().out
    assert f"{result['tool_calls']} tool calls" in printed and "audit_paper" in printed


def test_with_the_literature_answering_the_novelty_stage_closes_and_the_paper_cites(tmp_path: Path) -> None:
    """On the initialize handshake (the shared run speaks 2026-07-28), and on bubblewrap where it works (the shared
    run takes lab_info's first backend, Docker where its engine answers)."""
    _needs()
    local = ("--backend", "local") if component_missing("bwrap") is None else ()
    with ReplayServer() as server:
        apis(server)
        online = run_demo(tmp_path, api_env(server), ("--protocol", "legacy", *local))
    assert online.returncode == 0, online.stdout + online.stderr
    assert online.report["protocol"] == "2025-11-25" and (not local or online.report["backend"] == "local")
    status = online.report["status"]
    assert all(status[name] for name in STAGES_BEFORE_REVIEW) and online.report["offline"] is None
    assert "\\citet{" in (online.workspace / "paper" / "main.tex").read_text()
    assert "@" in (online.workspace / "paper" / "references.bib").read_text()
    assert online.report["audit"]["untraced"] == 0
