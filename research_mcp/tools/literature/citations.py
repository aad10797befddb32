"""`cite` (BibTeX from API metadata, merged into the workspace's .bib) and `verify_citations` (every entry of a
.bib, or every entry a .tex cites, looked up and classified verified / mismatch / not_found)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
from pydantic import Field

from research_mcp.config import Settings
from research_mcp.errors import BadInputError, LiteratureError, PaperNotFoundError, ResearchError
from research_mcp.model import ToolModel
from research_mcp.store import Store
from research_mcp.tools.literature import library
from research_mcp.tools.literature._net import call_deadline
from research_mcp.tools.literature.bib import (
    BibEntry,
    CiteResult,
    append_to_bib,
    bibtex_entry,
    decode_latex,
    entry_ids,
    parse_bib,
    plan_citations,
    read_bib,
    write_entries,
)
from research_mcp.tools.literature.ids import parse_paper_id
from research_mcp.tools.literature.merge import normalize_title, surname
from research_mcp.tools.literature.models import Paper
from research_mcp.tools.literature.service import get_paper
from research_mcp.workspace import Workspace

__all__ = ["CheckedEntry", "VerifyCitationsResult", "cite", "verify_citations"]

MAX_CITE = 20
VERIFY_BUDGET_S = 35.0
"""verify_citations starts no new look-up after this long; the rest is left for the next call (next_offset)."""
MAX_BIB_BYTES = 5 << 20
Status = Literal["verified", "mismatch", "not_found", "unchecked"]
_CITE = re.compile(r"\\[A-Za-z]*cite[A-Za-z]*\*?\s*(?:\[[^\]]*\]\s*){0,2}\{([^}]*)\}")
_BIBLIOGRAPHY = re.compile(r"\\(?:bibliography|addbibresource|addglobalbib)\s*(?:\[[^\]]*\])?\s*\{([^}]*)\}")
_COMMENT = re.compile(r"(?<!\\)%.*")
_ARXIV_VENUE = re.compile(r"arxiv|preprint|url|http|github|corr\b", re.IGNORECASE)
_ACRONYM = re.compile(r"[A-Z][a-z]*[A-Z][A-Za-z]{0,8}")
_VENUE_STOP = frozenset("of the on in and for proceedings conference journal international annual advances".split())


# --- cite ----------------------------------------------------------------------------------------------------------


async def _papers_for(settings: Settings, store: Store, paper_ids: Sequence[str]) -> list[Paper]:
    """The metadata of each paper: from the library when it has it, else looked up (all at once, paced)."""
    found: dict[str, Paper] = {}
    failures: dict[str, str] = {}

    async def one(raw: str) -> None:
        ref = parse_paper_id(raw)
        stored = await anyio.to_thread.run_sync(library.load_paper, store, ref)
        if stored is not None:
            found[raw] = await anyio.to_thread.run_sync(lambda: library.save_paper(store, stored))
            return
        try:
            found[raw] = (await get_paper(settings, store, raw)).paper
        except ResearchError as exc:
            failures[raw] = str(exc)

    async with anyio.create_task_group() as tg:
        for raw in paper_ids:
            tg.start_soon(one, raw)
    if failures:
        listed = "; ".join(f"{raw}: {why}" for raw, why in failures.items())
        raise LiteratureError(f"Nothing was written: {len(failures)} of the papers could not be looked up ({listed}).")
    return [found[raw] for raw in paper_ids]


async def cite(
    settings: Settings, store: Store, ws: Workspace, paper_ids: Sequence[str], bib_path: str = "paper/references.bib"
) -> CiteResult:
    """Add BibTeX entries built from API metadata to the workspace's .bib; return the keys to \\cite."""
    with call_deadline():
        if not bib_path.endswith(".bib"):
            raise BadInputError(f"bib_path {bib_path!r} must end in .bib.")
        asked = list(dict.fromkeys(p.strip() for p in paper_ids if p.strip()))
        if not asked or len(asked) > MAX_CITE:
            raise BadInputError(f"Pass 1 to {MAX_CITE} paper ids (got {len(asked)}).")
        for raw in asked:
            parse_paper_id(raw)  # refuse bad ids before any network call
        target = ws.resolve(bib_path)
        present = await anyio.to_thread.run_sync(_present, target, asked)  # the .bib has these by DOI / arXiv id
        papers = await _papers_for(settings, store, [raw for raw in asked if raw not in present])

        def write() -> CiteResult:
            existing = read_bib(target, MAX_BIB_BYTES)
            found, new, reused = plan_citations(existing, papers)
            text = write_entries(new) if new else ""
            if new:
                append_to_bib(target, existing, text)
            planned = iter(found)
            keys = [present[raw] if raw in present else next(planned) for raw in asked]
            reused = list(dict.fromkeys([present[raw] for raw in asked if raw in present] + reused))
            return CiteResult(
                keys=keys, added=[e.key for e in new], already_present=reused, bib_path=ws.relative(target), bibtex=text
            )

        return await anyio.to_thread.run_sync(write)


def _present(target: Path, asked: Sequence[str]) -> dict[str, str]:
    """The papers (by arXiv id or DOI) the .bib already has, and their keys."""
    entries, _ = parse_bib(read_bib(target, MAX_BIB_BYTES))
    known: dict[str, str] = {}
    for entry in entries:
        for kind, value in entry_ids(entry).items():
            known.setdefault(f"{kind}:{value.lower()}", entry.key)
    present: dict[str, str] = {}
    for raw in asked:
        ref = parse_paper_id(raw)
        key = known.get(f"{ref.kind}:{ref.value.lower()}") if ref.kind in ("arxiv", "doi") else None
        if key is not None:
            present[raw] = key
    return present


# --- verify_citations ----------------------------------------------------------------------------------------------


class CheckedEntry(ToolModel):
    key: str
    status: Status
    paper_id: str | None = Field(default=None, description="The paper the entry was matched to.")
    differences: list[str] = Field(default_factory=list[str], description="What differs from the real metadata.")
    corrected: str | None = Field(default=None, description="The entry rebuilt from the real metadata (same key).")
    problem: str | None = Field(default=None, description="Why it could not be checked, or what was not found.")


class VerifyCitationsResult(ToolModel):
    path: str
    bib_files: list[str]
    entries: list[CheckedEntry]
    counts: dict[str, int] = Field(description="How many entries of this page have each status.")
    missing: list[str] = Field(description="Keys cited in the .tex that no .bib entry defines.")
    bib_problems: list[str] = Field(default_factory=list[str], description="Blocks the BibTeX parser refused.")
    total: int = Field(description="Entries to check in all.")
    next_offset: int | None = Field(default=None, description="Pass as `offset` to check the next entries.")


def _cited_keys(tex: str) -> list[str]:
    text = _COMMENT.sub("", tex)
    keys: list[str] = []
    for match in _CITE.finditer(text):
        keys.extend(k.strip() for k in match.group(1).split(",") if k.strip())
    return list(dict.fromkeys(keys))


def _sources(ws: Workspace, path: str) -> tuple[Path, list[Path], list[str] | None]:
    """The file, the .bib files to read, and (for a .tex) the keys it cites."""
    target = ws.resolve(path, must_exist=True)
    if target.suffix not in (".bib", ".tex") or not target.is_file():  # a folder may be named x.tex
        raise BadInputError(f"{path!r} is neither a .bib nor a .tex file.")
    if target.suffix == ".bib":
        return target, [target], None
    tex = target.read_text(encoding="utf-8", errors="replace")
    bibs: list[Path] = []
    for match in _BIBLIOGRAPHY.finditer(_COMMENT.sub("", tex)):
        for name in match.group(1).split(","):
            name = name.strip()
            if not name:
                continue
            relative = ws.relative(target.parent) + "/" + (name if name.endswith(".bib") else name + ".bib")
            bibs.append(ws.resolve(relative.removeprefix("./"), must_exist=True))
    if not bibs:
        raise BadInputError(f"{path!r} names no bibliography (\\bibliography{{...}} or \\addbibresource{{...}}).")
    return target, bibs, _cited_keys(tex)


def _surnames(authors: str) -> list[str]:
    names = [n.strip() for n in re.split(r"\s+and\s+", decode_latex(authors)) if n.strip()]
    return [_last(n) for n in names if n.lower() not in ("others", "et al.", "et al")]


def _last(name: str) -> str:
    parts = surname(name).split()
    return parts[-1] if parts else ""


def _venue_words(text: str) -> set[str]:
    return {w for w in normalize_title(decode_latex(text)).split() if w not in _VENUE_STOP and len(w) > 2}


def compare(entry: BibEntry, paper: Paper) -> list[str]:
    """The differences between an entry and the paper's real metadata (empty: it verifies)."""
    differences: list[str] = []
    title = entry.fields.get("title", "")
    if normalize_title(decode_latex(title)) != normalize_title(paper.title):
        differences.append(f"title: {decode_latex(title)!r} should be {paper.title!r}")
    year = entry.fields.get("year", "").strip()
    years = {str(paper.year), (paper.published or "")[:4]}
    if year and paper.year and year not in years:
        differences.append(f"year: {year} should be {paper.year}")
    written = _surnames(entry.fields.get("author", ""))
    real = [_last(a) for a in paper.authors]
    if written and real:
        if written[0] != real[0]:
            differences.append(f"first author: {written[0]!r} should be {real[0]!r}")
        unknown = sorted({w for w in written if w not in real})
        if unknown:
            differences.append(f"authors not on the paper: {', '.join(unknown)}")
    venue = entry.fields.get("journal") or entry.fields.get("booktitle") or ""
    real_venue = " ".join(v for v in (paper.venue, paper.journal) if v)
    acronym = any(_ACRONYM.fullmatch(w) for w in re.findall(r"[A-Za-z]+", decode_latex(venue)))
    if venue and real_venue and not _ARXIV_VENUE.search(venue) and not acronym:  # NAACL, NeurIPS: cannot compare
        mine, theirs = _venue_words(venue), _venue_words(real_venue)
        if mine and theirs and not mine & theirs:
            differences.append(f"venue: {decode_latex(venue)!r} should be {real_venue!r}")
    return differences


async def _check(settings: Settings, store: Store, entry: BibEntry) -> CheckedEntry:
    ids = entry_ids(entry)
    tries = [ids[k] for k in ("doi", "arxiv") if k in ids]
    title = " ".join(decode_latex(entry.fields.get("title", "")).split())
    if title:
        tries.append(title)
    if not tries:
        return CheckedEntry(key=entry.key, status="not_found", problem="the entry has no DOI, arXiv id or title")
    last_problem = "no source knows it"
    for raw in tries:
        try:
            paper = (await get_paper(settings, store, raw)).paper
        except PaperNotFoundError as exc:
            last_problem = str(exc)
            continue
        except ResearchError as exc:
            return CheckedEntry(key=entry.key, status="unchecked", problem=str(exc))
        differences = compare(entry, paper)
        if not differences:
            return CheckedEntry(key=entry.key, status="verified", paper_id=paper.id)
        corrected = write_entries([bibtex_entry(paper, entry.key)]).strip()
        return CheckedEntry(
            key=entry.key, status="mismatch", paper_id=paper.id, differences=differences, corrected=corrected
        )
    return CheckedEntry(key=entry.key, status="not_found", problem=last_problem)


async def verify_citations(
    settings: Settings, store: Store, ws: Workspace, path: str, *, offset: int = 0, limit: int = 20
) -> VerifyCitationsResult:
    """Look up every entry (DOI, then arXiv id, then exact title) and classify it; a page of entries per call."""
    with call_deadline():
        target, bibs, cited = await anyio.to_thread.run_sync(_sources, ws, path)
        entries: list[BibEntry] = []
        problems: list[str] = []
        for bib in bibs:
            found, failed = parse_bib(await anyio.to_thread.run_sync(read_bib, bib, MAX_BIB_BYTES))
            entries.extend(found)
            problems.extend(f"{ws.relative(bib)}: {p}" for p in failed)
        by_key = {e.key: e for e in entries}
        missing: list[str] = []
        if cited is not None and "*" not in cited:
            missing = [k for k in cited if k not in by_key]
            entries = [by_key[k] for k in cited if k in by_key]
        page = entries[offset : offset + limit]
        checked: list[CheckedEntry | None] = [None] * len(page)
        deadline = time.monotonic() + VERIFY_BUDGET_S
        limiter = anyio.CapacityLimiter(4)

        async def one(index: int, entry: BibEntry) -> None:
            async with limiter:
                if time.monotonic() > deadline:
                    return
                checked[index] = await _check(settings, store, entry)

        async with anyio.create_task_group() as tg:
            for index, entry in enumerate(page):
                tg.start_soon(one, index, entry)
        done = 0
        while done < len(page) and checked[done] is not None:
            done += 1
        results = [c for c in checked[:done] if c is not None]
        end = offset + done
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return VerifyCitationsResult(
            path=ws.relative(target),
            bib_files=[ws.relative(b) for b in bibs],
            entries=results,
            counts=counts,
            missing=missing,
            bib_problems=problems,
            total=len(entries),
            next_offset=end if end < len(entries) else None,
        )
