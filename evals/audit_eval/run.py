"""Seed defects into copies of each paper, audit every copy, and score the findings against the seeds.

A trial is one copy of one paper with one defect. Its new findings are the audit's findings on the copy less the
findings on the unseeded paper (as a multiset of code, file and line: no seed moves a line). A new finding that
names the seeded place (its line, within one, or the seeded key, label, file or number in its evidence) with a code
of the seeded kind is correct; with a code of `SAME_DEFECT` it is the same defect in other words and left out of
both counts; any other new finding is a false positive of the seeded kind. Recall is the share of seeds found;
precision the share of correct findings among correct and false ones.
"""

from __future__ import annotations

import random
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from evals.audit_eval.paper import MAIN, BuiltPaper, Scale, build_paper
from evals.audit_eval.replay import replay_settings, start_replay
from evals.audit_eval.seeds import CODES, FIXTURE_KINDS, KINDS, SAME_DEFECT, Context, Seeded, SeedError, seed_defect
from research_mcp.config import Settings
from research_mcp.store import Store
from research_mcp.workspace import Workspace

__all__ = [
    "BUILT",
    "FIXTURES",
    "ONE_SEED",
    "FIXTURE_PAPERS",
    "TARGET",
    "Options",
    "audit_findings",
    "evaluate",
    "score_trial",
]

TARGET = 0.9
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
"""The recorded traffic and real papers, in the ``shared`` folder beside the checkout (as tests/conftest.py has it)."""
BUILT = "built-from-runs"
ONE_SEED = "built-one-run-each"
ONE_SEED_SCALE = Scale(seeds={"baseline": 1, "method": 1, "ablation": 1})
"""The built paper again with one run per configuration (as AI Scientist papers are): there a significance claim
rests on one seed whatever it is about, where in the first a claim rests on one seed only if it is about the
single-run ablation."""
FIXTURE_PAPERS: dict[str, tuple[str, str]] = {
    "data-to-paper_diabetes_clickable_001": ("paper.tex", "citations.bib"),
    "data-to-paper_congress_twitter_open_goal_accum_0": ("paper.tex", "citations.bib"),
    "ai-scientist_multi_style_adapter": ("latex/template.tex", "latex/references.bib"),
}
"""The real papers of ../shared/fixtures/latex (see its PROVENANCE.md): main file and bibliography, relative to
the paper's folder, which the eval copies to `paper/` of a workspace."""
LINE_SLACK = 1
WHOLE = 1 << 30
"""A character budget no audit reaches: every finding in one answer, so the audit runs once per paper."""


@dataclass(frozen=True)
class Options:
    fixtures: Path
    seed: int = 0
    placements: int = 4
    """Trials per kind per real paper, each with its own placement."""
    built_placements: int = 12
    """Trials per kind on the built paper: it alone takes the four kinds that need runs or look-ups."""
    papers: tuple[str, ...] = tuple(FIXTURE_PAPERS)
    built: bool = True
    scale: Scale = field(default_factory=Scale)


@dataclass
class Paper:
    name: str
    template: Path
    main: str
    kinds: tuple[str, ...]
    verify: bool
    context: Context
    baseline: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])


def _key(finding: dict[str, Any]) -> tuple[str, str | None, int | None]:
    return finding["code"], finding["file"], finding["line"]


def _near(finding: dict[str, Any], seeded: Seeded) -> bool:
    for file, line in seeded.places():
        if finding["file"] == file and finding["line"] is not None and abs(finding["line"] - line) <= LINE_SLACK:
            return True
    files = {file for file, _ in seeded.places()}
    evidence = f"{finding['evidence']} {finding['fix']}".lower()
    return (finding["file"] is None or finding["file"] in files) and seeded.token.lower() in evidence


def score_trial(seeded: Seeded, baseline: list[dict[str, Any]], found: list[dict[str, Any]]) -> dict[str, Any]:
    """What the audit said about one seeded copy, against what it said about the unseeded paper."""
    left = Counter(_key(f) for f in baseline)
    new: list[dict[str, Any]] = []
    for finding in found:
        key = _key(finding)
        if left[key] > 0:
            left[key] -= 1
        else:
            new.append(finding)
    correct: list[dict[str, Any]] = []
    same: list[dict[str, Any]] = []
    false: list[dict[str, Any]] = []
    for finding in new:
        near = _near(finding, seeded)
        if near and finding["code"] in CODES[seeded.kind]:
            correct.append(finding)
        elif near and finding["code"] in SAME_DEFECT.get(seeded.kind, frozenset()):
            same.append(finding)
        else:
            false.append(finding)
    return {
        "kind": seeded.kind, "paper": seeded.paper, "how": seeded.how, "file": seeded.file, "line": seeded.line,
        "token": seeded.token, "detected": bool(correct), "correct": correct, "same_defect": same,
        "false_positives": false,
    }  # fmt: skip


async def audit_findings(root: Path, main: str, settings: Settings, verify: bool) -> tuple[list[dict[str, Any]], float]:
    """Every finding of one audit, then every traced number (code "(traced)"), and how long the audit took."""
    from research_mcp.tools.review.audit import audit_paper

    ws = Workspace(root, "setting")
    store = Store(root / ".research" / "state.db")
    findings: list[dict[str, Any]] = []
    traced: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        offset: int | None = 0
        while offset is not None:
            result = await audit_paper(
                ws, store, settings, main, None, offset=offset, verify_citations=verify, max_chars=WHOLE
            )
            findings += [f.model_dump(mode="json") for f in result.findings]
            traced += [n.model_dump(mode="json") for n in result.traced_numbers]
            offset = result.next_offset
    finally:
        store.close()
    took = time.perf_counter() - started
    return findings + [{"code": "(traced)", **n} for n in traced], took


def _fixture_paper(name: str, options: Options, templates: Path) -> Paper:
    main_rel, bib_rel = FIXTURE_PAPERS[name]
    root = templates / name
    shutil.copytree(options.fixtures / "latex" / name, root / "paper")
    main = f"paper/{main_rel}"
    return Paper(name, root, main, FIXTURE_KINDS, False, Context(root, name, main, bib=f"paper/{bib_rel}"))


def _built_paper(options: Options, templates: Path, settings: Settings, name: str = BUILT) -> Paper:
    root = templates / name
    scale, kinds = (options.scale, KINDS) if name == BUILT else (ONE_SEED_SCALE, ("one_seed_claim",))
    built: BuiltPaper = build_paper(root, settings.model_copy(update={"workspace": root}), scale, options.seed)
    ctx = Context(root, name, MAIN, runs=built.runs, quoted=built.quoted, bib="paper/references.bib")
    return Paper(name, root, MAIN, kinds, True, ctx)


@contextmanager
def _scratch() -> Generator[Path]:
    with tempfile.TemporaryDirectory(prefix="audit-eval-") as tmp:
        yield Path(tmp)


def evaluate(options: Options) -> dict[str, Any]:
    """Build the papers, audit each unseeded and every seeded copy, and return the scored trials and the table."""
    started = time.time()
    with _scratch() as tmp:
        server = start_replay(options.fixtures)
        try:
            settings = replay_settings(tmp, tmp / "data", server)
            offline = replay_settings(tmp, tmp / "data", None)
            templates = tmp / "templates"
            papers = [_fixture_paper(name, options, templates) for name in options.papers]
            if options.built:
                papers.append(_built_paper(options, templates, settings))
                papers.append(_built_paper(options, templates, settings, ONE_SEED))
            trials: list[dict[str, Any]] = []
            skipped: list[dict[str, str]] = []
            seconds: list[float] = []
            for paper in papers:
                chosen = settings if paper.verify else offline
                base = tmp / "trials" / f"{paper.name}-unseeded"
                shutil.copytree(paper.template, base)
                answer, took = anyio.run(audit_findings, base, paper.main, _for(chosen, base), paper.verify)
                paper.baseline = [f for f in answer if f["code"] != "(traced)"]
                seconds.append(took)
                shutil.rmtree(base)
                for kind in paper.kinds:
                    built = paper.name in (BUILT, ONE_SEED)
                    for i in range(options.built_placements if built else options.placements):
                        copy = tmp / "trials" / f"{paper.name}-{kind}-{i}"
                        shutil.copytree(paper.template, copy)
                        ctx = Context(copy, paper.name, paper.main, paper.context.runs, paper.context.quoted,
                                      paper.context.bib)  # fmt: skip
                        try:
                            seeded = seed_defect(kind, ctx, random.Random(f"{options.seed}:{paper.name}:{kind}:{i}"))
                        except SeedError as exc:
                            skipped.append({"paper": paper.name, "kind": kind, "why": str(exc)})
                            shutil.rmtree(copy)
                            continue
                        answer, took = anyio.run(audit_findings, copy, paper.main, _for(chosen, copy), paper.verify)
                        seconds.append(took)
                        found = [f for f in answer if f["code"] != "(traced)"]
                        traced = [
                            {k: n[k] for k in ("text", "how", "weak", "what")}
                            for n in answer
                            if n["code"] == "(traced)" and seeded.kind == "changed_number"
                            and (n["file"], n["line"]) in seeded.places()
                            and n["text"].startswith(seeded.token)
                        ]  # fmt: skip
                        trials.append({
                            **score_trial(seeded, paper.baseline, found), "audit_s": round(took, 3), "traced_as": traced
                        })  # fmt: skip
                        shutil.rmtree(copy)
            in_verbatim = verbatim_findings(papers)  # while the templates are still there
        finally:
            asked = server.requests
            server.stop()
    return {
        "options": {
            "seed": options.seed,
            "placements": options.placements,
            "built_placements": options.built_placements,
            "papers": [p.name for p in papers],
            "fixtures": str(options.fixtures),
            "target": TARGET,
            "citations": "fixture papers: verification off (no network); the built paper: verified against a "
            "replay server on 127.0.0.1 answering from recorded arXiv and Semantic Scholar traffic",
        },  # fmt: skip
        "baseline": {p.name: dict(Counter(f["code"] for f in p.baseline)) for p in papers},
        "clean": clean_paper({p.name: p.baseline for p in papers if p.name in (BUILT, ONE_SEED)}),
        "in_verbatim": in_verbatim,
        "baseline_findings": {p.name: p.baseline for p in papers},
        "kinds": summarise(trials),
        "by_paper": {p.name: summarise([t for t in trials if t["paper"] == p.name]) for p in papers},
        "trials": trials,
        "skipped": skipped,
        "replay": {
            "requests": len(asked),
            "arxiv": sum(r.path.endswith("/api/query") for r in asked),
            "semantic_scholar": sum(r.path.startswith("/graph/") for r in asked),
            "unmatched": [f"{r.method} {r.target}" for r in asked if not r.matched],
        },
        "audits": len(seconds),
        "audit_median_s": statistics.median(seconds) if seconds else None,
        "duration_s": time.time() - started,
    }


def _for(settings: Settings, root: Path) -> Settings:
    return settings.model_copy(update={"workspace": root})


_VERBATIM_DEF = re.compile(r"\\(?:lstnewenvironment|DefineVerbatimEnvironment)\s*\{(\w+)\}")
_STRUCTURE = frozenset({"undefined_ref", "undefined_cite", "duplicate_label", "missing_figure", "unreferenced_float"})


def verbatim_lines(tex: str) -> set[int]:
    """1-based lines inside environments LaTeX prints verbatim (verbatim, lstlisting, Verbatim, and those the
    preamble declares with \\lstnewenvironment or \\DefineVerbatimEnvironment): a \\label or \\ref there is text."""
    names = {"verbatim", "lstlisting", "Verbatim", "minted", *_VERBATIM_DEF.findall(tex)}
    inside: set[int] = set()
    open_name: str | None = None
    for number, line in enumerate(tex.split("\n"), start=1):
        if open_name is None:
            found = re.search(r"\\begin\{(\w+\*?)\}", line)
            if found and found[1] in names and not line.lstrip().startswith(("%", "\\lstnewenvironment")):
                open_name = found[1]
            continue
        if f"\\end{{{open_name}}}" in line:
            open_name = None
            continue
        inside.add(number)
    return inside


def verbatim_findings(papers: list[Paper]) -> dict[str, list[dict[str, Any]]]:
    """Structure findings on the unseeded real papers that point inside a verbatim environment: false positives,
    since nothing there is a label, reference or float."""
    found: dict[str, list[dict[str, Any]]] = {}
    for paper in papers:
        if paper.name in (BUILT, ONE_SEED):
            continue
        inside = verbatim_lines((paper.template / paper.main).read_text(encoding="utf-8", errors="replace"))
        found[paper.name] = [
            f for f in paper.baseline if f["code"] in _STRUCTURE and f["file"] == paper.main and f["line"] in inside
        ]
    return found


def clean_paper(baselines: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The unseeded built papers are clean by construction (every number written from a tool's answer, every
    citation from the recorded metadata, every figure and reference present, no claim): each warning or blocking
    finding on them is a false positive."""
    if not baselines:
        return None
    false = [{**f, "paper": name} for name, found in baselines.items() for f in found if f["severity"] != "info"]
    return {"false_positives": len(false), "codes": dict(Counter(f["code"] for f in false)), "findings": false,
            "passed": not false}  # fmt: skip


def summarise(trials: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = [t for t in trials if t["kind"] == kind]
        if not mine:
            continue
        detected = sum(t["detected"] for t in mine)
        correct = sum(len(t["correct"]) for t in mine)
        false = sum(len(t["false_positives"]) for t in mine)
        recall = detected / len(mine)
        precision = correct / (correct + false) if correct + false else None
        table[kind] = {
            "seeded": len(mine), "detected": detected, "recall": recall, "findings": correct + false,
            "correct": correct, "duplicates": correct - detected,
            "same_defect": sum(len(t["same_defect"]) for t in mine), "false_positives": false,
            "precision": precision, "false_codes": dict(Counter(f["code"] for t in mine for f in t["false_positives"])),
            "passed": recall >= TARGET and precision is not None and precision >= TARGET,
        }  # fmt: skip
    return table
