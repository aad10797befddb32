"""`audit_paper`: a deterministic check of a LaTeX paper against what the lab recorded. No model is asked; the same
paper, runs and store give the same answer.

Findings, each with kind, code, severity, workspace file and line, the evidence and the fix (`_models.CODES`):

numbers     Every result number of the text and tables (`read_latex(...).numbers`) is traced, in this order: through
            the `% research-mcp-cell:` provenance comment `results_table` writes on its line (the printed mean and
            std must be the comment's), else by value against the metrics of `runs` (each metric's last, min and max;
            per run label the mean and std of the last and best values, as `compare_runs` computes them), else
            against the stored comparisons (every statistic: means, stds, intervals, differences, t, df, p-values,
            Hedges' g; a written `p < 0.01` traces to a stored p-value below it), else against the runs' configs
            (and how many runs each label has: "over 12 seeds").
            A value matches at the precision shown (0.912 matches 0.9123; 91.2\\% matches 0.912). A spread written
            after a traced value (`0.187 \\pm 0.012`) must come from the same runs as that value: the std of the
            method's loss, not any recorded number that happens to round to it. Not results:
            years, numbers after Section / Figure / Table / Eq. / Appendix ..., counts up to ten, integers inside
            formulas, lengths (0.5\\linewidth), levels (95\\% CI, a 95\\% band), parts of names (ResNet-50),
            identifiers and addresses set as code (a run id in \\texttt, \\url), numbers inside or within 30 characters
            of a citation or on a table row that cites (quoted from other work), the preamble, the bibliography and
            code listings (verbatim, lstlisting, minted and environments \\lstnewenvironment defines), whose
            floats, labels and references the structure checks skip too.
chance      A value match can succeed by chance. For each number traced by value, the audit counts exactly how
            many numbers of the same precision (decimals shown, decade, sign) would trace against the same evidence
            (see `_trace`); that fraction is its chance-trace rate. A match whose rate is above `WEAK_RATE` (5%) is
            marked weak: at that precision the evidence covers so much of the range that the match says little.
            `chance_trace_rate` reports, per precision, the worst rate among the paper's numbers.
citations   cited keys without an entry (`missing_entry`), entries arXiv / Semantic Scholar do not confirm
            (`unverified_citation`, with the corrected entry), and entries that could not be checked because the
            sources are unreachable (`citation_not_checked`: "not verified: <source> unreachable"; see `_cites`).
structure   undefined references, citations with no bibliography at all or left undefined by the last compile
            (its log, when newer than the sources: `undefined_cite`), duplicate labels,
            figures whose files are missing, figures and tables never referenced.
claims      "significant(ly)", "outperforms", "state of the art", "better than", "with statistical significance",
            "beats the baseline" when neither the text names a statistical test nor a stored comparison or a bold
            (tested) table cell is behind the paper's numbers (`untested_claim`), or when the numbers come from one
            run per configuration, or the claim's own sentence quotes a number of a configuration with one run
            (`one_seed_claim`).
hygiene     no limitations section, more pages than `page_limit` in the last compile's PDF, placeholder text
            (TODO, TBD, \\todo, XX\\%, ??, lorem ipsum, [citation needed], [Insert results here]) and placeholder
            code (pass- or ...-only bodies, an unconditional NotImplementedError, TODO / FIXME / XXX markers and
            comments calling the code a placeholder; Python read with `ast`, other languages by their comments) in
            the code snapshots of the runs the numbers trace to. Interfaces are not placeholders: abstract
            methods, Protocols, and base-class methods a subclass in the same file overrides.

The answer pages findings (blocking first), then traced numbers, through one `offset`. The whole audit, every
finding and traced number, is kept in the state store's `audits` table with the hash of the paper's files; its
id is a digest of the answer, so auditing an unchanged paper again keeps one record.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread

from research_mcp.config import Settings
from research_mcp.errors import BadInputError
from research_mcp.latex.models import NumberUse
from research_mcp.latex.text import read_latex, source_hash
from research_mcp.progress import Progress, no_progress
from research_mcp.store import Store
from research_mcp.tools.metrics._records import FileMetrics, Limits
from research_mcp.tools.metrics._sources import RunBook, Source, read_source, resolve
from research_mcp.tools.metrics.stored import load_comparisons
from research_mcp.tools.metrics.table import CELL_MARKER, CellProvenance, format_mean_std, parse_provenance
from research_mcp.tools.review import _checks
from research_mcp.tools.review._build import last_pages, undefined_in_log
from research_mcp.tools.review._checks import PaperSource, finding
from research_mcp.tools.review._cites import citation_findings
from research_mcp.tools.review._models import CODES, AuditResult, Finding, FindingKind, TracedNumber
from research_mcp.tools.review._trace import (
    Evidence,
    EvidenceIndex,
    Shown,
    comparison_evidence,
    config_evidence,
    metric_evidence,
)
from research_mcp.workspace import Workspace

__all__ = ["CODES", "WEAK_RATE", "AuditResult", "Finding", "FindingKind", "TracedNumber", "audit_paper"]

WEAK_RATE = 0.05
MAX_RUNS = 500
READ_BUDGET_S = 15.0
_SHOWN = 20
_SEVERITY = {"blocking": 0, "warning": 1, "info": 2}
_P_BOUND = re.compile(r"\bp(?:_\{?\w+\}?)?\s*(?:<|\\le|\\leq|\\lt)\s*\$?\s*$")


@dataclass
class _Local:
    """What the audit finds without the network."""

    paper_hash: str
    src: PaperSource
    findings: list[Finding] = field(default_factory=list[Finding])
    traced: list[TracedNumber] = field(default_factory=list[TracedNumber])
    numbers: int = 0
    rates: dict[str, float] = field(default_factory=dict[str, float])
    undefined_cites: frozenset[str] = frozenset()
    notes: list[str] = field(default_factory=list[str])


def _sources(ws: Workspace, store: Store, runs: list[str] | None, notes: list[str]) -> list[Source]:
    book = RunBook(store)
    if runs is None:
        rows = store.connection().execute(
            "SELECT id FROM runs WHERE state = 'succeeded' ORDER BY created_at, id LIMIT ?", (MAX_RUNS + 1,)
        )
        runs = [str(row[0]) for row in rows]
        if len(runs) > MAX_RUNS:
            notes.append(f"only the first {MAX_RUNS} finished runs were read; name the runs the paper is about")
            runs = runs[:MAX_RUNS]
    elif len(runs) > MAX_RUNS:
        raise BadInputError(f"{len(runs)} runs; give at most {MAX_RUNS}.")
    return [resolve(ws, run, lambda: book) for run in dict.fromkeys(runs)]


def _evidence(ws: Workspace, store: Store, sources: list[Source], notes: list[str]) -> list[Evidence]:
    limits = Limits(max_points=2, deadline=time.monotonic() + READ_BUDGET_S)
    read: list[tuple[str, str | None, list[FileMetrics]]] = [
        (source.name, source.run.label if source.run else None, read_source(ws, source, limits, notes))
        for source in sources
    ]
    evidence = metric_evidence(read)
    evidence += comparison_evidence((c.id, c.result) for c in load_comparisons(store))
    records = [(s.name, s.run.config, s.run.seed) for s in sources if s.run is not None]
    by_label: dict[str, list[str]] = {}
    for s in sources:
        if s.run is not None and s.run.label is not None:
            by_label.setdefault(s.run.label, []).append(s.name)
    counts = [Evidence(float(len(ids)), "config", tuple(ids), (), f"{len(ids)} runs labelled {label!r}")
              for label, ids in sorted(by_label.items())]  # fmt: skip
    return evidence + config_evidence(records) + counts


def _cells(src: PaperSource) -> dict[tuple[str, int], list[CellProvenance]]:
    cells: dict[tuple[str, int], list[CellProvenance]] = {}
    for name in src.lines:
        try:
            text = (src.root / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if CELL_MARKER in line:
                try:
                    cells.setdefault((name, number), []).extend(parse_provenance(line)[1])
                except ValueError:  # a comment edited into bad JSON: the number is judged by value
                    continue
    return cells


def _by_cell(number: NumberUse, shown: Shown, cells: list[CellProvenance]) -> CellProvenance | None:
    bare = number.text.rstrip("%")
    for cell in cells:
        if cell.mean is None:
            continue
        expected = format_mean_std(cell.mean, cell.std)
        if re.search(rf"(?<![\d.]){re.escape(bare)}(?![\d])", expected):
            return cell
        values = [v for v in (cell.mean, cell.std) if v is not None]
        if any(abs(v * scale - shown.value) <= shown.tolerance for v in values for scale in (1.0, 100.0)):
            return cell
    return None


def _traced(
    number: NumberUse, file: str, how: str, runs: list[str], files: list[str], weak: bool, what: str
) -> TracedNumber:
    return TracedNumber(
        text=number.text,
        file=file,
        line=number.line,
        how=how,  # type: ignore[arg-type]
        runs=list(dict.fromkeys(runs))[:_SHOWN],
        files=list(dict.fromkeys(files))[:_SHOWN],
        weak=weak,
        what=what,
    )


_PLUS_MINUS = r"\s*(?:\\%|%)?\s*\$?\s*(?:\\pm|±|\\mathbin\{\\pm\})\s*\{?\s*\$?\s*"


def _spread_of(
    number: NumberUse, src: PaperSource, behind: dict[tuple[str, int], list[tuple[str, set[frozenset[str]]]]]
) -> tuple[str, set[frozenset[str]]] | None:
    """For a number written after `\\pm` (`0.187 \\pm 0.012`): the number before it and the runs of each value it
    matched, when it matched any; the spread must then come from one of those same sets of runs."""
    traced = behind.get((number.file, number.line))
    if not traced:
        return None
    bare = re.escape(number.text.rstrip("%"))
    line = src.line(number.file, number.line)
    for found in re.finditer(rf"([-+]?\d[\d,]*(?:\.\d+)?){_PLUS_MINUS}{bare}(?![\d])", line):
        for text, runs in reversed(traced):
            if text == found.group(1) and runs:
                return text, runs
    return None


def _nearest(index: EvidenceIndex, value: float) -> str:
    best = min(index.items, key=lambda e: min(abs(e.value - value), abs(e.value * 100 - value)), default=None)
    return f"; the closest recorded value is {best.value:.6g} ({best.what})" if best is not None else ""


def _local(ws: Workspace, store: Store, path: Path, runs: list[str] | None, page_limit: int | None) -> _Local:
    doc = read_latex(path, path.parent)
    src = PaperSource(path.parent, doc, ws.relative)
    out = _Local(paper_hash=source_hash(path.parent, doc.files), src=src, notes=list(doc.warnings[:10]))
    sources = _sources(ws, store, runs, out.notes)
    index = EvidenceIndex(_evidence(ws, store, sources, out.notes))
    cells = _cells(src)
    labels = {s.name: s.run.label for s in sources if s.run is not None}
    runs_of_label = Counter(label for label in labels.values() if label is not None)
    traced_runs: set[str] = set()
    behind: dict[tuple[str, int], list[tuple[str, set[frozenset[str]]]]] = {}  # what each number may come from
    one_seed: dict[tuple[str, int], list[str]] = {}  # numbers from configurations of one run, per line
    seeds = 0

    def note(number: NumberUse, runs: Iterable[frozenset[str]], single: bool) -> None:
        where = (number.file, number.line)
        behind.setdefault(where, []).append((number.text.rstrip("%"), set(runs)))
        if single:
            one_seed.setdefault(where, []).append(number.text)

    def single(runs: Iterable[str]) -> bool:
        named = [labels.get(r) for r in runs]
        return bool(named) and all(n is not None and runs_of_label[n] == 1 for n in named)

    for number in doc.numbers:
        if not _checks.is_result(number, src):
            continue
        out.numbers += 1
        shown = Shown.of(number)
        rel = src.rel(number.file)
        on_line = cells.get((number.file, number.line), [])
        cell = _by_cell(number, shown, on_line)
        if cell is not None:
            note(number, [frozenset(cell.sources)], cell.n == 1 or single(cell.sources))
            out.traced.append(
                _traced(
                    number,
                    rel,
                    "provenance",
                    cell.sources,
                    cell.files,
                    False,
                    f"{cell.metric} of {cell.group} ({cell.stat}, n={cell.n}) in its comment",
                )
            )
            traced_runs.update(cell.sources)
            seeds = max(seeds, cell.n)
            continue
        before = src.line(number.file, number.line)
        spot = before.find(number.text.rstrip("%"))
        if spot >= 0 and _P_BOUND.search(before[:spot]):
            below = index.p_below(shown.value)
            if below:
                out.traced.append(
                    _traced(
                        number,
                        rel,
                        "comparison",
                        [r for e in below for r in e.runs],
                        [f for e in below for f in e.files],
                        False,
                        f"bound on {below[0].what}",
                    )
                )
                traced_runs.update(r for e in below for r in e.runs)
                continue
        mean = _spread_of(number, src, behind)
        for tier in ("metric", "comparison", "config"):
            found = index.matches(shown, tier)
            if mean is not None:  # a spread written after its mean: the mean's runs, not any runs
                found = [e for e in found if tier != "config" and frozenset(e.runs) in mean[1]]
            if not found:
                continue
            rate = index.chance_rate(shown)
            out.rates[shown.precision] = max(out.rates.get(shown.precision, 0.0), round(rate, 6))
            out.traced.append(
                _traced(
                    number,
                    rel,
                    tier,
                    [r for e in found for r in e.runs],
                    [f for e in found for f in e.files],
                    rate > WEAK_RATE,
                    found[0].what,
                )
            )
            if tier != "config":  # even a weak match says which runs a spread written after it must be of
                weak = rate > WEAK_RATE
                note(number, {frozenset(e.runs) for e in found}, not weak and all(single(e.runs) for e in found))
            if rate <= WEAK_RATE:  # a chance match says nothing of where the number came from
                traced_runs.update(r for e in found for r in e.runs)
                seeds = max(seeds, max(len(e.runs) if tier != "config" else 1 for e in found))
            break
        else:
            rate = index.chance_rate(shown)
            out.rates[shown.precision] = max(out.rates.get(shown.precision, 0.0), round(rate, 6))
            if mean is not None:
                why = (
                    f"it is written as the spread of {mean[0]}, and no std or interval of the runs {mean[0]} "
                    "traces to rounds to it"
                )
            elif on_line:
                cell = on_line[0]
                why = (
                    f"its line's provenance comment says {cell.metric} of {cell.group} is "
                    f"{format_mean_std(cell.mean, cell.std) if cell.mean is not None else 'missing'}"
                )
            else:
                why = (
                    f"it matches no provenance comment, metric of the {len(sources)} runs audited, stored "
                    f"comparison or run config at the precision shown{_nearest(index, shown.value)}"
                )
            out.findings.append(
                finding(
                    "numbers",
                    "untraced_number",
                    "blocking",
                    rel,
                    number.line,
                    f"{number.text} ('{number.context[:160]}'): {why}.",
                    "Write the number a tool reported (results_table, compare_runs, "
                    "read_metrics) for the runs it describes, or remove it.",
                )
            )
    for run in traced_runs:  # one seed: every label behind the numbers has a single run
        label = labels.get(run)
        if label is not None:
            seeds = max(seeds, sum(1 for other in labels.values() if other == label))
    comparison_runs = {r for e in index.items if e.tier == "comparison" for r in e.runs}
    tested = (
        _checks.has_test_in_text(src)
        or bool(comparison_runs & traced_runs)
        or any(c.bold for cs in cells.values() for c in cs)
    )
    out.findings += _checks.structure_findings(src)
    out.findings += _checks.claim_findings(src, tested, seeds or None, one_seed)
    pages, pdf = last_pages(path, out.notes)
    out.undefined_cites = undefined_in_log(path, src)
    out.findings += _checks.hygiene_findings(src, page_limit, pages, pdf and ws.relative(pdf))
    code = [(r, ws.root / "runs" / r / "code") for r in sorted(traced_runs) if (ws.root / "runs" / r / "code").is_dir()]
    out.findings += _checks.placeholder_code(code, ws.relative)
    return out


def _order(f: Finding) -> tuple[int, str, int, str, str]:
    return _SEVERITY[f.severity], f.file or "", f.line or 0, f.code, f.evidence


async def audit_paper(
    ws: Workspace,
    store: Store,
    settings: Settings,
    main: str = "paper/main.tex",
    runs: list[str] | None = None,
    *,
    progress: Progress | None = None,
    offset: int = 0,
    verify_citations: bool = True,
    page_limit: int | None = None,
    max_chars: int | None = None,
    idea_id: str | None = None,
) -> AuditResult:
    """Audit the paper `main` against `runs` (default: every finished run); see the module docstring."""
    progress = progress or no_progress
    path = ws.resolve(main, must_exist=True)
    if not path.is_file() or path.suffix != ".tex":
        raise BadInputError(f"{main!r} is not a .tex file; give the paper's main .tex (e.g. paper/main.tex).")
    await progress("reading the paper, the runs' metrics and the stored comparisons")
    limit = page_limit if page_limit is not None else settings.page_limit
    local = await anyio.to_thread.run_sync(_local, ws, store, path, runs, limit)
    await progress("checking the citations")
    cites = await citation_findings(
        settings, store, local.src, verify=verify_citations, progress=progress, compiled_undefined=local.undefined_cites
    )
    findings = sorted(local.findings + cites.findings, key=_order)
    counts = {kind: sum(f.kind == kind for f in findings) for kind in CODES}
    traced = sorted(local.traced, key=lambda t: (t.file, t.line, t.text))
    full = AuditResult(
        audit_id="",
        main=ws.relative(path),
        paper_hash=local.paper_hash,
        counts=counts,
        numbers=local.numbers,
        traced=len(traced),
        untraced=counts["numbers"],
        weak=sum(t.weak for t in traced),
        chance_trace_rate=dict(sorted(local.rates.items())),
        citations_checked=cites.checked,
        citations_verified=cites.verified,
        findings=findings,
        traced_numbers=traced,
        total=len(findings) + len(traced),
        notes=local.notes + cites.notes,
    )
    data = full.model_dump_json(exclude={"audit_id"})
    full.audit_id = "audit-" + hashlib.blake2b(f"{idea_id}\0{data}".encode(), digest_size=6).hexdigest()
    await anyio.to_thread.run_sync(_keep, store, full, idea_id)
    return _page(full, offset, max_chars or settings.max_output_chars)


def _keep(store: Store, result: AuditResult, idea_id: str | None) -> None:
    store.connection().execute(
        "INSERT OR REPLACE INTO audits (id, main, paper_hash, data, idea_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (result.audit_id, result.main, result.paper_hash, result.model_dump_json(), idea_id, time.time()),
    )


def _size(model: Finding | TracedNumber | AuditResult) -> int:
    """Characters of a model as the answer carries it (json.dumps' separators, as the listings are counted)."""
    return len(json.dumps(model.model_dump(mode="json")))


def _page(full: AuditResult, offset: int, max_chars: int) -> AuditResult:
    if offset > full.total:
        raise BadInputError(f"offset {offset} is past the {full.total} findings and traced numbers.")
    items: list[Finding | TracedNumber] = [*full.findings, *full.traced_numbers]
    used = _size(full.model_copy(update={"findings": [], "traced_numbers": [], "next_offset": 0})) + 16
    end = offset
    while end < len(items):
        cost = _size(items[end]) + 2
        if end > offset and used + cost > max_chars:
            break
        used += cost
        end += 1
    page = items[offset:end]
    return full.model_copy(
        update={
            "findings": [i for i in page if isinstance(i, Finding)],
            "traced_numbers": [i for i in page if isinstance(i, TracedNumber)],
            "next_offset": end if end < len(items) else None,
        }
    )
