"""`research_status`: each stage of the research loop, done or not, computed from the state store and the
workspace's files, never from the model's word.

The stages of one idea, and when each is done (rows of `comparisons`, `audits` and `review_sets` count for the idea
when their `idea_id` is the idea's, or when it is empty: the tool was called without one):

1. idea: the idea has a title, a hypothesis and at least one planned experiment.
2. novelty: a `search_papers` call with the idea's id is recorded and returned at least one paper; a verdict with
   reasons is recorded (which `ideas` accepts only when every paper id the reasons cite is one a recorded search
   returned), and the verdict is not `known`.
3. approval: the latest approval of the idea approves it and was given for the plan as it is now (`plan_hash`:
   hypothesis, experiments, plan files' contents). A relayed approval counts, and is said to be relayed.
4. plan: the idea lists at least one plan file, and each exists in the workspace.
5. baseline: a run made with the idea's id succeeded and has a label.
6. seeds: every label compared has at least `MIN_SEEDS` succeeded runs of the idea with distinct seeds. The labels
   compared are those of the runs of the idea's stored comparisons, or, before any comparison, those of its
   succeeded labelled runs.
7. comparison: a stored comparison (`compare_runs`) of at least two groups, whose row names the idea or whose
   runs are all runs of the idea.
8. figures and tables: a file in `paper/figures/`, and a `paper/tables/*.tex` with research-mcp provenance
   comments (written by `results_table`).
9. paper compiled: `paper/main.pdf` exists and is newer than every `.tex` under `paper/` (hidden folders aside).
10. audit clean: the latest audit is of the paper as it is now (made after the last change of any `.tex` or `.bib`
    under `paper/`), and it found 0 untraced numbers and no blocking finding.
11. review: a review set is done (every form in).
12. revision: a review set is done on a paper hash other than that of the first done review set, and later.

Each stage that is not done names what is missing and the call to make next (`NextStep`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field

from research_mcp.errors import BadInputError
from research_mcp.model import NextStep, ToolModel
from research_mcp.store import Store
from research_mcp.tools.pipeline.ideas import idea_ids, latest_approval, require_idea, searches_of
from research_mcp.tools.pipeline.tree import ExperimentTreeResult, experiment_tree
from research_mcp.workspace import Workspace

__all__ = ["MIN_SEEDS", "STAGES", "ResearchStatusResult", "Stage", "research_status"]

MIN_SEEDS = 3
MAX_SHOWN = 10
"""Most labels, files or ids one stage names: the answer stays short whatever the workspace holds."""
PAPER = "paper"
MAIN = "paper/main.tex"
StageName = Literal[
    "idea",
    "novelty",
    "approval",
    "plan",
    "baseline",
    "seeds",
    "comparison",
    "figures_and_tables",
    "paper_compiled",
    "audit_clean",
    "review",
    "revision",
]
STAGES: tuple[StageName, ...] = get_args(StageName)


class Stage(ToolModel):
    name: StageName
    done: bool
    evidence: str | None = Field(default=None, description="What shows it done.")
    missing: list[str] = Field(default_factory=list[str], description="Each criterion not met.")
    next_step: NextStep | None = None


def _unset(value: object) -> bool:
    return value is None


class ResearchStatusResult(ToolModel):
    idea_id: str | None = Field(description="None: no idea is recorded yet (the tree alone).")
    title: str | None
    done: int = Field(description="Stages done, of 12.")
    stages: list[Stage]
    next_step: NextStep | None = Field(description="The first missing stage's call.")
    other_ideas: list[str] = Field(default_factory=list[str], description="'id: title' of the workspace's others.")
    tree: ExperimentTreeResult | None = Field(
        default=None, description="The runs under the asked run, when asked.", exclude_if=_unset
    )


def _stage(name: StageName, missing: list[str], step: NextStep | None, evidence: str | None = None) -> Stage:
    if not missing:
        return Stage(name=name, done=True, evidence=evidence)
    return Stage(name=name, done=False, missing=missing, next_step=step)


def _rows_for(conn: sqlite3.Connection, table: str, idea_id: str, where: str = "") -> list[sqlite3.Row]:
    """Rows of a table written by other tools that count for the idea: its own, or those naming no idea."""
    sql = f"SELECT * FROM {table} WHERE (idea_id = ? OR idea_id IS NULL) {where} ORDER BY created_at, id"
    return conn.execute(sql, (idea_id,)).fetchall()


def _idea_stage(idea_id: str, data: dict[str, Any]) -> Stage:
    missing = [] if data.get("experiments") else ["no planned experiment"]
    step = NextStep(
        tool="ideas",
        arguments={"idea_id": idea_id, "experiments": ["..."]},
        why="List the experiments that would test the hypothesis.",
    )
    return _stage("idea", missing, step, f"{data['title']!r}")


def _novelty_stage(store: Store, idea_id: str, data: dict[str, Any]) -> Stage:
    searches, total = searches_of(store, idea_id, limit=1000)
    returned = sum(search.returned for search in searches)
    if not total or not returned:
        why = "Search for the closest prior work; the search and its papers are recorded for the idea."
        what = "no search_papers call with this idea_id" if not total else f"{total} search(es) returned no paper"
        return _stage(
            "novelty",
            [what],
            NextStep(tool="search_papers", arguments={"query": data["title"], "idea_id": idea_id}, why=why),
        )
    verdict = data.get("novelty")
    if verdict is None:
        step = NextStep(
            tool="ideas",
            arguments={"idea_id": idea_id, "novelty": "novel", "reasons": "..."},
            why="Give the verdict and why, citing the ids of the closest papers the searches returned.",
        )
        return _stage("novelty", [f"{total} search(es) recorded, but no verdict"], step)
    if verdict == "known":
        step = NextStep(
            tool="ideas",
            arguments={"idea_id": idea_id, "hypothesis": "..."},
            why="The idea is already known: change the hypothesis, then search again.",
        )
        return _stage("novelty", ["the verdict is 'known'"], step)
    return _stage("novelty", [], None, f"{verdict}, after {total} search(es) returning {returned} papers")


def _approval_stage(ws: Workspace, store: Store, idea_id: str, data: dict[str, Any]) -> Stage:
    found = latest_approval(ws, store, idea_id, data)
    step = NextStep(
        tool="ideas",
        arguments={"idea_id": idea_id, "approve": True},
        why="Ask the user to approve the plan before compute is spent.",
    )
    if found is None:
        return _stage("approval", ["the user has not approved the plan"], step)
    if not found.approved:
        return _stage("approval", [f"the user declined ({found.source}): change the plan and ask again"], step)
    if not found.current:
        return _stage("approval", ["the plan changed after the user approved it"], step)
    how = "the user's answer to the client's form" if found.source == "elicited" else "relayed by the model"
    return _stage("approval", [], None, f"approved: {how}")


def _plan_stage(ws: Workspace, idea_id: str, data: dict[str, Any]) -> Stage:
    files: list[str] = data.get("plan_files", [])
    if not files:
        step = NextStep(
            tool="ideas",
            arguments={"idea_id": idea_id, "plan_files": ["plan.md"]},
            why="Write the plan (what to run, configs, metrics) to a file and attach it.",
        )
        return _stage("plan", ["no plan file attached"], step)
    absent = [rel for rel in files if not ws.resolve(rel).is_file()]
    step = NextStep(tool="write_file", arguments={"path": absent[0]} if absent else {}, why="Write the plan file.")
    return _stage("plan", [f"{rel} does not exist" for rel in absent[:MAX_SHOWN]], step, ", ".join(files[:MAX_SHOWN]))


def _runs(conn: sqlite3.Connection, idea_id: str) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT id, label, seed, state FROM runs WHERE idea_id = ? ORDER BY created_at, id", (idea_id,)
    ).fetchall()


def _baseline_stage(runs: list[sqlite3.Row], idea_id: str) -> Stage:
    done = [run for run in runs if run["state"] == "succeeded" and run["label"]]
    step = NextStep(
        tool="run_experiment",
        arguments={"idea_id": idea_id, "label": "baseline", "seed": 0},
        why="Run the baseline (with your command and workdir) under the idea.",
    )
    if done:
        return _stage("baseline", [], None, f"{done[0]['id']} ({done[0]['label']})")
    if not runs:
        return _stage("baseline", ["no run made with this idea_id"], step)
    states = ", ".join(sorted({str(run["state"]) for run in runs}))
    return _stage("baseline", [f"{len(runs)} run(s) of the idea, none succeeded with a label ({states})"], step)


def _comparison_sources(row: sqlite3.Row) -> list[list[str]]:
    data: dict[str, Any] = json.loads(row["data"])
    return [list(group.get("sources", [])) for group in data.get("groups", [])]


def _comparisons(conn: sqlite3.Connection, idea_id: str, run_ids: set[str]) -> list[sqlite3.Row]:
    """The stored comparisons of the idea: its own, or unassigned ones whose runs are all the idea's."""
    found: list[sqlite3.Row] = []
    for row in _rows_for(conn, "comparisons", idea_id):
        groups = _comparison_sources(row)
        if row["idea_id"] == idea_id or (groups and all(set(g) <= run_ids for g in groups)):
            found.append(row)
    return found


def _seeds_stage(runs: list[sqlite3.Row], comparisons: list[sqlite3.Row], idea_id: str) -> Stage:
    by_id = {str(run["id"]): run for run in runs}
    compared = {
        str(by_id[source]["label"])
        for row in comparisons
        for group in _comparison_sources(row)
        for source in group
        if source in by_id and by_id[source]["label"]
    }
    labels = compared or {str(run["label"]) for run in runs if run["state"] == "succeeded" and run["label"]}
    if not labels:
        step = NextStep(
            tool="run_experiment",
            arguments={"idea_id": idea_id, "label": "baseline", "seed": 0},
            why="Run labelled seeds under the idea.",
        )
        return _stage("seeds", ["no succeeded labelled run of the idea"], step)
    missing: list[str] = []
    step: NextStep | None = None
    for label in sorted(labels):
        seeds = sorted(
            {
                run["seed"]
                for run in runs
                if run["label"] == label and run["state"] == "succeeded" and run["seed"] is not None
            }
        )
        if len(seeds) < MIN_SEEDS:
            word = "seed" if len(seeds) == 1 else "seeds"
            missing.append(f"{label} has {len(seeds)} {word}; claims need at least {MIN_SEEDS}")
            if step is None:
                free = next(seed for seed in range(len(seeds) + MIN_SEEDS + 1) if seed not in seeds)
                step = NextStep(
                    tool="run_experiment",
                    arguments={"idea_id": idea_id, "label": label, "seed": free},
                    why=f"Another seed of {label}, with the same command and config.",
                )
    if len(missing) > MAX_SHOWN:
        missing[MAX_SHOWN:] = [f"... and {len(missing) - MAX_SHOWN} more label(s) short of {MIN_SEEDS} seeds"]
    shown = ", ".join(sorted(labels)[:MAX_SHOWN]) + (", ..." if len(labels) > MAX_SHOWN else "")
    return _stage("seeds", missing, step, f"{shown}: at least {MIN_SEEDS} seeds each")


def _comparison_stage(runs: list[sqlite3.Row], comparisons: list[sqlite3.Row], idea_id: str) -> Stage:
    wide = [row for row in comparisons if len(_comparison_sources(row)) >= 2]
    if wide:
        data: dict[str, Any] = json.loads(wide[-1]["data"])
        verdict = str(data.get("verdict", ""))[:200]
        return _stage("comparison", [], None, f"{wide[-1]['id']} on {wide[-1]['metric']}: {verdict}")
    labels = sorted({str(run["label"]) for run in runs if run["state"] == "succeeded" and run["label"]})
    step = NextStep(
        tool="compare_runs",
        arguments={"labels": labels[:MAX_SHOWN], "metric": "..."},
        why="Compare the idea's groups of runs over seeds (name the metric); the comparison is stored.",
    )
    what = "no stored comparison of at least two groups of the idea's runs"
    return _stage("comparison", [what] + ([] if len(labels) >= 2 else ["fewer than two labels to compare"]), step)


def _has_provenance(path: Path) -> bool:
    from research_mcp.tools.metrics import parse_provenance

    try:
        header, cells = parse_provenance(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return False
    return header is not None or bool(cells)


def _figures_stage(ws: Workspace) -> Stage:
    paper = ws.root / PAPER
    figures = [p for p in (paper / "figures").glob("*") if p.is_file()] if (paper / "figures").is_dir() else []
    tables = [p for p in sorted((paper / "tables").glob("*.tex")) if _has_provenance(p)]
    missing: list[str] = []
    step: NextStep | None = None
    if not tables:
        missing.append("no paper/tables/*.tex with research-mcp provenance")
        step = NextStep(
            tool="results_table",
            arguments={"labels": ["..."], "metrics": ["..."]},
            why="Tabulate the compared runs with a provenance comment per number.",
        )
    if not figures:
        missing.append("no figure in paper/figures/")
        step = NextStep(tool="plot_metrics", arguments={"metrics": ["..."]}, why="Plot the runs for the paper.")
    evidence = f"{len(figures)} figure(s), {len(tables)} table(s)"
    return _stage("figures_and_tables", missing, step, evidence)


def _sources(ws: Workspace, suffixes: Iterable[str]) -> list[Path]:
    paper = ws.root / PAPER
    if not paper.is_dir():
        return []
    wanted = tuple(suffixes)
    return [
        p
        for p in paper.rglob("*")
        if p.suffix in wanted and p.is_file() and not any(part.startswith(".") for part in p.relative_to(paper).parts)
    ]


def _newest(paths: list[Path]) -> float:
    return max((p.stat().st_mtime for p in paths), default=0.0)


def _compiled_stage(ws: Workspace) -> Stage:
    main, pdf = ws.root / MAIN, ws.root / PAPER / "main.pdf"
    if not main.is_file():
        step = NextStep(tool="new_paper", arguments={"title": "..."}, why="Start the paper.")
        return _stage("paper_compiled", [f"no {MAIN}"], step)
    step = NextStep(tool="compile_paper", arguments={"main": MAIN}, why="Compile the paper as it is now.")
    if not pdf.is_file():
        return _stage("paper_compiled", ["no paper/main.pdf"], step)
    newer = [ws.relative(p) for p in _sources(ws, [".tex"]) if p.stat().st_mtime > pdf.stat().st_mtime]
    if newer:
        return _stage("paper_compiled", [f"{', '.join(sorted(newer)[:5])} changed after paper/main.pdf"], step)
    return _stage("paper_compiled", [], None, "paper/main.pdf")


def _audit_stage(ws: Workspace, conn: sqlite3.Connection, idea_id: str) -> Stage:
    step = NextStep(tool="audit_paper", arguments={"main": MAIN}, why="Trace every number of the paper as it is now.")
    rows = _rows_for(conn, "audits", idea_id)
    if not rows:
        return _stage("audit_clean", ["no audit of the paper"], step)
    latest = rows[-1]
    if latest["created_at"] < _newest(_sources(ws, [".tex", ".bib"])):
        return _stage("audit_clean", ["the paper changed after the latest audit"], step)
    data: dict[str, Any] = json.loads(latest["data"])
    missing: list[str] = []
    untraced = int(data.get("untraced", 0) or 0)
    if untraced:
        missing.append(f"{untraced} untraced number(s) in the latest audit")
    blocking = [f for f in data.get("findings", []) if f.get("severity") == "blocking"]
    if blocking:
        codes = ", ".join(sorted({str(f.get("code")) for f in blocking}))
        missing.append(f"{len(blocking)} blocking finding(s) ({codes})")
    if missing:
        step = NextStep(
            tool="audit_paper",
            arguments={"main": MAIN},
            why="Fix what the audit found (see its findings), then audit again.",
        )
    return _stage("audit_clean", missing, step, f"{latest['id']}: 0 untraced, no blocking finding")


def _review_stages(conn: sqlite3.Connection, idea_id: str) -> tuple[Stage, Stage]:
    done = _rows_for(conn, "review_sets", idea_id, "AND state = 'done'")
    step = NextStep(tool="review_paper", arguments={"paper": MAIN}, why="Review the paper (NeurIPS form).")
    if not done:
        pending = _rows_for(conn, "review_sets", idea_id)
        what = f"review set {pending[-1]['id']} is {pending[-1]['state']}" if pending else "no review set done"
        review = _stage("review", [what], step)
    else:
        review = _stage("review", [], None, f"{done[0]['id']} on paper hash {str(done[0]['paper_hash'])[:12]}")
    first = done[0] if done else None
    later = [
        row
        for row in done[1:]
        if first is not None and row["paper_hash"] != first["paper_hash"] and row["created_at"] >= first["created_at"]
    ]
    if later:
        revision = _stage("revision", [], None, f"{later[-1]['id']} on paper hash {str(later[-1]['paper_hash'])[:12]}")
    else:
        why = "Revise the paper after the reviews, compile and audit it, then review it again."
        revision = _stage(
            "revision",
            ["no done review set of a revised paper"],
            NextStep(tool="review_paper", arguments={"paper": MAIN}, why=why),
        )
    return review, revision


def research_status(
    ws: Workspace, store: Store, idea_id: str | None = None, tree: str | None = None, metric: str | None = None
) -> ResearchStatusResult:
    """Every stage of the idea (the most recently changed one when None), done or not, with what is missing; with
    `tree`, the runs descending from that run too (`experiment_tree`), also where no idea is recorded."""
    found = None if tree is None else experiment_tree(ws, store, tree, metric)
    ideas = idea_ids(store)
    if idea_id is None:
        if not ideas and found is not None:
            return ResearchStatusResult(idea_id=None, title=None, done=0, stages=[], next_step=None, tree=found)
        if not ideas:
            raise BadInputError("No idea is recorded in this workspace yet. Call ideas with a title and a hypothesis.")
        idea_id = ideas[0][0]
    data = require_idea(store, idea_id)
    conn = store.connection()
    runs = _runs(conn, idea_id)
    comparisons = _comparisons(conn, idea_id, {str(run["id"]) for run in runs})
    stages = [
        _idea_stage(idea_id, data),
        _novelty_stage(store, idea_id, data),
        _approval_stage(ws, store, idea_id, data),
        _plan_stage(ws, idea_id, data),
        _baseline_stage(runs, idea_id),
        _seeds_stage(runs, comparisons, idea_id),
        _comparison_stage(runs, comparisons, idea_id),
        _figures_stage(ws),
        _compiled_stage(ws),
        _audit_stage(ws, conn, idea_id),
        *_review_stages(conn, idea_id),
    ]
    first = next((stage for stage in stages if not stage.done), None)
    return ResearchStatusResult(
        idea_id=idea_id,
        title=data["title"],
        done=sum(stage.done for stage in stages),
        stages=stages,
        next_step=None if first is None else first.next_step,
        other_ideas=[f"{i}: {t[:80]}" for i, t in ideas if i != idea_id][:10],
        tree=found,
    )
