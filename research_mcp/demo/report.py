"""What a demo run measured and found: per stage its time, tool calls and characters the client received; the
one-screen summary printed at the end; the JSON kept by `--report` (and read by `python -m evals.pipeline`)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Call", "DemoReport", "StageReport", "render_summary"]


@dataclass
class Call:
    """One tool call as the client saw it."""

    stage: str
    tool: str
    seconds: float
    chars: int
    """Characters the client received: text blocks, structuredContent as compact JSON, images as base64."""
    is_error: bool


@dataclass
class StageReport:
    name: str
    ok: bool | None = None
    """True: done; False: failed; None: skipped (what was missing is in `detail`)."""
    seconds: float = 0.0
    calls: int = 0
    chars: int = 0
    detail: str = ""


@dataclass
class DemoReport:
    workspace: str
    protocol: str = ""
    backend: str = ""
    started_at: float = field(default_factory=time.time)
    seconds: float = 0.0
    stages: list[StageReport] = field(default_factory=list[StageReport])
    calls: list[Call] = field(default_factory=list[Call])
    pdf: str | None = None
    results: dict[str, str] = field(default_factory=dict[str, str])
    """Label -> 'mean ± std' of the headline metric, as compare_runs gave it."""
    verdict: str = ""
    audit: dict[str, int] = field(default_factory=dict[str, int])
    status: dict[str, bool] = field(default_factory=dict[str, bool])
    """research_status: stage -> done."""
    missing: dict[str, list[str]] = field(default_factory=dict[str, list[str]])
    """research_status: stage -> what it lacks (stages not done)."""
    offline: str | None = None
    """Why the literature could not be reached, when it could not."""
    install: list[str] = field(default_factory=list[str])
    """What to install for the stages that were skipped."""
    notes: list[str] = field(default_factory=list[str])

    def stage(self, name: str) -> StageReport:
        found = StageReport(name)
        self.stages.append(found)
        return found

    @property
    def green_to_review(self) -> bool:
        """Every research_status stage before the review done; novelty may lack only because search was offline."""
        before = [name for name in self.status if name not in ("review", "revision")]
        pending = [name for name in before if not self.status[name]]
        return bool(before) and all(name == "novelty" and self.offline for name in pending)

    @property
    def ok(self) -> bool:
        return all(stage.ok for stage in self.stages) and self.green_to_review and self.audit.get("untraced") == 0

    def write(self, path: Path) -> None:
        data: dict[str, Any] = asdict(self)
        data["green_to_review"], data["ok"] = self.green_to_review, self.ok
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _mark(ok: bool | None) -> str:
    return {True: "✓", False: "✗", None: "-"}[ok]


def stage_line(stage: StageReport) -> str:
    """The progress line of one finished stage."""
    return f"  {_mark(stage.ok)} {stage.name:<12} {stage.seconds:6.1f} s  {stage.detail}"


def render_summary(report: DemoReport) -> str:
    """The one screen printed at the end."""
    outcome = "done" if report.ok else "incomplete"
    lines = [f"research-mcp demo: {outcome} in {report.seconds:.0f} s, {len(report.calls)} tool calls over MCP "
             f"({report.protocol}), runs on {report.backend or 'no backend'}"]  # fmt: skip
    lines.append(f"workspace: {report.workspace}")
    lines.append(f"paper:     {report.pdf or 'not compiled'}")
    if report.results:
        shown = "; ".join(f"{label} {value}" for label, value in report.results.items())
        lines.append(f"results:   final_test_acc over 3 seeds: {shown}")
    if report.verdict:
        lines.append(f"           {report.verdict}")
    if report.audit:
        a = report.audit
        lines.append(f"audit:     {a.get('numbers', 0)} result numbers, {a.get('traced', 0)} traced "
                     f"({a.get('weak', 0)} only weakly: by a value chance could match), {a.get('untraced', 0)} "
                     f"untraced, {a.get('blocking', 0)} blocking finding(s)")  # fmt: skip
    if report.status:
        marks = "  ".join(f"{_mark(done)} {name}" for name, done in report.status.items())
        lines.append(f"research_status ({sum(report.status.values())}/{len(report.status)}): {marks}")
        for name, what in report.missing.items():
            if name not in ("review", "revision"):
                lines.append(f"           {name}: {'; '.join(what)}")
    if report.offline:
        lines.append(f"literature: offline ({report.offline}); the paper cites no prior work and says so.")
    lines += [f"note:      {note}" for note in report.notes]
    lines += [f"install:   {step}" for step in report.install]
    lines.append("next:      review_paper (a model reviews: your client's, or RESEARCH_MCP_REVIEW_URL), then revise.")
    return "\n".join(lines)


def say(line: str, stream: TextIO | None = None) -> None:
    """A progress line on stderr (stdout carries the summary)."""
    out = stream or sys.stderr
    out.write(line + "\n")
    out.flush()
