"""The audit's citation check: every cited key has an entry, and every entry is confirmed by arXiv / Semantic Scholar.

An entry is looked up by DOI, then arXiv id, then exact title, as `verify_citations` does, and compared with the real
metadata. When the sources cannot be reached (an error other than "not found", or an answer only from the offline
library) the entry is "not verified: <source> unreachable", never verified, and no further entry is tried: the
first entry is checked alone, the rest four at a time, and the first unreachable answer stops every new look-up.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import anyio

from research_mcp.config import Settings
from research_mcp.errors import BadInputError, PaperNotFoundError, ResearchError
from research_mcp.progress import Progress
from research_mcp.store import Store
from research_mcp.tools.literature._net import call_deadline
from research_mcp.tools.literature.bib import BibEntry, bibtex_entry, entry_ids, parse_bib, read_bib, write_entries
from research_mcp.tools.literature.citations import MAX_BIB_BYTES, compare
from research_mcp.tools.literature.service import get_paper
from research_mcp.tools.review._checks import PaperSource, finding
from research_mcp.tools.review._models import Finding

__all__ = ["CitationCheck", "citation_findings"]

BUDGET_S = 25.0
"""Citation look-ups start no later than this; with the metrics read (READ_BUDGET_S) a call stays under ~45 s."""
_BIBITEM = re.compile(r"\\bibitem\s*(?:\[[^\]]*\])?\s*\{([^}]*)\}")


@dataclass
class CitationCheck:
    findings: list[Finding] = field(default_factory=list[Finding])
    checked: int = 0
    verified: int = 0
    notes: list[str] = field(default_factory=list[str])


@dataclass
class _Outcome:
    status: str  # verified, mismatch, not_found, unreachable
    detail: str = ""
    corrected: str | None = None


def _unreachable(message: str) -> _Outcome:
    names = [n for n in ("arXiv", "Semantic Scholar") if n in message] or ["arXiv and Semantic Scholar"]
    return _Outcome("unreachable", f"{' and '.join(names)} unreachable ({' '.join(message.split())[:200]})")


async def _check(settings: Settings, store: Store, entry: BibEntry, progress: Progress) -> _Outcome:
    ids = entry_ids(entry)
    tries = [ids[k] for k in ("doi", "arxiv") if k in ids]
    title = " ".join(entry.fields.get("title", "").replace("{", "").replace("}", "").split())
    if title:
        tries.append(title)
    if not tries:
        return _Outcome("not_found", "the entry has no DOI, arXiv id or title")
    problem = "no source knows it"
    for raw in tries:
        try:
            got = await get_paper(settings, store, raw, progress)
        except (PaperNotFoundError, BadInputError) as exc:
            problem = str(exc)
            continue
        except ResearchError as exc:
            return _unreachable(str(exc))
        if got.from_library:
            return _unreachable("; ".join(p.problem for p in got.problems) or "offline")
        differences = compare(entry, got.paper)
        if not differences:
            return _Outcome("verified", got.paper.id)
        corrected = write_entries([bibtex_entry(got.paper, entry.key)]).strip()
        return _Outcome("mismatch", "; ".join(differences), corrected)
    return _Outcome("not_found", problem)


def _entries(src: PaperSource) -> tuple[dict[str, BibEntry], set[str], list[str]]:
    """The .bib entries by key, the \\bibitem keys, and the named .bib files that do not exist."""
    entries: dict[str, BibEntry] = {}
    absent: list[str] = []
    for name in src.doc.bib_files:
        path = src.root / (name if name.endswith(".bib") else name + ".bib")
        if not path.is_file():
            absent.append(src.rel(path))
            continue
        try:
            found, _ = parse_bib(read_bib(path, MAX_BIB_BYTES))
        except (BadInputError, OSError):
            absent.append(src.rel(path))
            continue
        for entry in found:
            entries.setdefault(entry.key, entry)
    items = {m.group(1).strip() for lines in src.lines.values() for line in lines for m in _BIBITEM.finditer(line)}
    return entries, items, absent


async def citation_findings(
    settings: Settings, store: Store, src: PaperSource, *, verify: bool, progress: Progress,
    compiled_undefined: frozenset[str] = frozenset(),
) -> CitationCheck:  # fmt: skip
    """`compiled_undefined`: the keys the last compile's log (newer than every source file) left undefined."""
    out = CitationCheck()
    entries, items, absent = _entries(src)
    cites = [c for c in src.doc.cites if c.key != "*"]
    if not entries and not items:
        why = f"{', '.join(absent)} does not exist" if absent else "the paper has no bibliography"
        for c in cites:
            out.findings.append(
                finding(
                    "structure",
                    "undefined_cite",
                    "blocking",
                    src.rel(c.file),
                    c.line,
                    f"\\cite{{{c.key}}} is undefined: {why}.",
                    "Add the .bib with cite (it writes paper/references.bib) and \\bibliography{references}.",
                )
            )
        return out
    for c in cites:
        if c.key not in entries and c.key not in items:
            out.findings.append(
                finding(
                    "citations",
                    "missing_entry",
                    "blocking",
                    src.rel(c.file),
                    c.line,
                    f"\\cite{{{c.key}}} has no entry in {', '.join(src.doc.bib_files) or 'the bibliography'}.",
                    "Add the entry with cite (from the paper's arXiv id or DOI), or fix the key.",
                )
            )
    for c in cites:
        if c.key in compiled_undefined and (c.key in entries or c.key in items):
            out.findings.append(
                finding(
                    "structure",
                    "undefined_cite",
                    "blocking",
                    src.rel(c.file),
                    c.line,
                    f"\\cite{{{c.key}}} has an entry, but the last compile left it undefined (BibTeX did not run, "
                    "or the entry has an error).",
                    "Compile again with compile_paper and read its .blg diagnostics.",
                )
            )
    todo = [c for c in cites if c.key in entries]
    if not verify or not todo:
        return out
    outcomes: list[_Outcome | None] = [None] * len(todo)
    stop: list[_Outcome] = []
    deadline = time.monotonic() + BUDGET_S
    limiter = anyio.CapacityLimiter(4)

    async def one(index: int) -> None:
        async with limiter:
            if stop or time.monotonic() > deadline:
                return
            await progress(f"citation {index + 1}/{len(todo)}: {todo[index].key}")
            outcome = await _check(settings, store, entries[todo[index].key], progress)
            outcomes[index] = outcome
            if outcome.status == "unreachable":
                stop.append(outcome)

    with call_deadline(BUDGET_S + 5):
        await one(0)
        async with anyio.create_task_group() as tg:
            for index in range(1, len(todo)):
                tg.start_soon(one, index)
    for use, outcome in zip(todo, outcomes, strict=True):
        where = (src.rel(use.file), use.line)
        if outcome is None or outcome.status == "unreachable":
            why = (outcome or (stop[0] if stop else _Outcome("", "the time budget of one call ran out"))).detail
            out.findings.append(
                finding(
                    "citations",
                    "citation_not_checked",
                    "info",
                    *where,
                    f"\\cite{{{use.key}}}: not verified: {why}.",
                    "Run audit_paper again when arXiv / Semantic Scholar can be reached.",
                )
            )
            continue
        out.checked += 1
        if outcome.status == "verified":
            out.verified += 1
        elif outcome.status == "mismatch":
            out.findings.append(
                finding(
                    "citations",
                    "unverified_citation",
                    "warning",
                    *where,
                    f"\\cite{{{use.key}}}: the entry does not match the paper ({outcome.detail}).",
                    f"Replace the entry with:\n{outcome.corrected}",
                )
            )
        else:
            out.findings.append(
                finding(
                    "citations",
                    "unverified_citation",
                    "blocking",
                    *where,
                    f"\\cite{{{use.key}}}: no source knows this paper ({outcome.detail}).",
                    "Check the title, DOI or arXiv id; if the paper does not exist, remove the "
                    "citation; else re-add it with cite.",
                )
            )
    return out
