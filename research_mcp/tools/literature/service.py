"""The literature tools' domain functions: `get_paper`, `search_papers`, `paper_graph`.

They take `Settings` and the workspace's `Store` and know nothing of MCP, so other code calls them too:

    result = await get_paper(settings, store, "1706.03762")      # or get_paper_sync(...) from a worker thread
    result.paper.title, result.paper.abstract, result.paper.comment, result.paper.year
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from pydantic import Field, TypeAdapter

from research_mcp.config import Settings
from research_mcp.errors import BadInputError, LiteratureError, PaperNotFoundError, ResearchError
from research_mcp.model import ToolModel
from research_mcp.progress import Progress, no_progress
from research_mcp.store import Store
from research_mcp.tools.literature import library
from research_mcp.tools.literature._net import call_deadline
from research_mcp.tools.literature.arxiv_source import ArxivSource
from research_mcp.tools.literature.ids import PaperRef, parse_paper_id
from research_mcp.tools.literature.merge import dedupe, normalize_title
from research_mcp.tools.literature.models import (
    Paper,
    PaperGraphResult,
    PaperHit,
    SearchPapersResult,
    Source,
    SourceProblem,
)
from research_mcp.tools.literature.s2_source import S2Source

__all__ = ["GetPaperResult", "get_paper", "get_paper_sync", "paper_graph", "search_papers"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
SearchSource = Literal["arxiv", "semantic_scholar"]
Direction = Literal["citations", "references", "recommended"]
MAX_SOURCE_RESULTS = 100
MAX_GRAPH = {"citations": 1000, "references": 1000, "recommended": 500}
_PAPERS = TypeAdapter(list[Paper])


class GetPaperResult(ToolModel):
    paper: Paper
    degraded: bool = Field(default=False, description="True when a source failed; `problems` says which and why.")
    problems: list[SourceProblem] = Field(default_factory=list[SourceProblem])
    from_library: bool = Field(default=False, description="Answered from the local library (offline fallback).")


# --- cache ---------------------------------------------------------------------------------------------------------


def _key(*parts: object) -> str:
    return "literature:" + hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=16).hexdigest()


async def _cached(store: Store, key: str) -> list[Paper] | None:
    hit = await anyio.to_thread.run_sync(store.cache_get, key)
    if hit is None:
        return None
    try:
        return _PAPERS.validate_json(hit[1])
    except ValueError:  # written by another version: ask again
        return None


async def _remember(store: Store, key: str, source: str, papers: Sequence[Paper], ttl_s: float) -> None:
    if ttl_s <= 0:
        return
    body = _PAPERS.dump_json(list(papers), exclude_defaults=True)
    await anyio.to_thread.run_sync(lambda: store.cache_put(key, source, 200, body, ttl_s=ttl_s))


async def _through_cache(
    store: Store, key: str, source: str, ttl_s: float, fetch: Callable[[], Awaitable[list[Paper]]]
) -> tuple[list[Paper], bool]:
    """The cached answer, else a fresh one (cached only when it succeeded); and whether it came from the cache."""
    found = await _cached(store, key)
    if found is not None:
        return found, True
    papers = await fetch()
    await _remember(store, key, source, papers, ttl_s)
    return papers, False


async def _both(
    first: Callable[[], Awaitable[T]] | None, second: Callable[[], Awaitable[T]] | None
) -> tuple[T | ResearchError | None, T | ResearchError | None]:
    """Run two calls concurrently; each outcome is its result, its `ResearchError`, or None when not asked."""
    out: list[T | ResearchError | None] = [None, None]

    async def run(index: int, call: Callable[[], Awaitable[T]]) -> None:
        try:
            out[index] = await call()
        except ResearchError as exc:
            out[index] = exc

    async with anyio.create_task_group() as tg:
        for index, call in enumerate((first, second)):
            if call is not None:
                tg.start_soon(run, index, call)
    return out[0], out[1]


# --- get_paper -------------------------------------------------------------------------------------------------------


async def get_paper(
    settings: Settings, store: Store, paper_id: str, progress: Progress = no_progress
) -> GetPaperResult:
    """Full metadata of one paper named by any id form, from arXiv and Semantic Scholar, kept in the library;
    each source asked and each wait is told to `progress`.

    Raises `PaperNotFoundError` when no source knows it, and a `LiteratureError` when the sources failed and the
    library has no copy."""
    with call_deadline():
        ref = parse_paper_id(paper_id)
        key = _key("paper", str(ref))
        cached = await _cached(store, key)
        if cached:
            stored = await anyio.to_thread.run_sync(lambda: library.save_paper(store, cached[0]))
            return GetPaperResult(paper=stored)
        problems: list[SourceProblem] = []
        try:
            found = await _resolve(settings, ref, problems, progress)
        except LiteratureError as exc:
            if isinstance(exc, PaperNotFoundError):
                raise
            kept = await anyio.to_thread.run_sync(library.load_paper, store, ref)
            if kept is None:
                raise
            return GetPaperResult(paper=kept, degraded=True, problems=problems, from_library=True)
        if not problems:
            await _remember(store, key, "literature", [found], settings.paper_cache_ttl_s)
        stored = await anyio.to_thread.run_sync(lambda: library.save_paper(store, found))
        return GetPaperResult(paper=stored, degraded=bool(problems), problems=problems)


def get_paper_sync(settings: Settings, store: Store, paper_id: str) -> GetPaperResult:
    """`get_paper` for synchronous code: from an anyio worker thread it runs on the caller's event loop,
    elsewhere in a new one."""
    try:
        return anyio.from_thread.run(get_paper, settings, store, paper_id)
    except RuntimeError as exc:
        if "event loop" not in str(exc) and "worker thread" not in str(exc):
            raise
        return anyio.run(get_paper, settings, store, paper_id)


def _problem(source: Source, exc: ResearchError) -> SourceProblem:
    return SourceProblem(source=source, problem=str(exc))


async def _resolve(settings: Settings, ref: PaperRef, problems: list[SourceProblem], progress: Progress) -> Paper:
    arxiv, s2 = ArxivSource(settings, progress), S2Source(settings, progress)
    if ref.kind == "title":
        return await _resolve_title(arxiv, s2, ref, problems)
    asked = ref.value + (f"v{ref.version}" if ref.version else "")

    async def by_arxiv_id() -> list[Paper]:
        return await arxiv.by_ids([asked])

    arxiv_call = by_arxiv_id if ref.kind == "arxiv" else None

    async def s2_call() -> list[Paper]:
        found = await s2.paper(ref.s2_form)
        return [] if found is None else [found]

    from_arxiv, from_s2 = await _both(arxiv_call, s2_call)
    records: list[list[Paper]] = []
    errors: list[ResearchError] = []
    for source, outcome in (("arxiv", from_arxiv), ("semantic_scholar", from_s2)):
        if isinstance(outcome, ResearchError):
            errors.append(outcome)
            problems.append(_problem(source, outcome))  # type: ignore[arg-type]
        elif outcome:
            records.append(outcome[:1])
    if not records:
        if errors:
            raise LiteratureError("; ".join(str(e) for e in errors))
        raise PaperNotFoundError(str(ref))
    return dedupe(records)[0]


async def _resolve_title(arxiv: ArxivSource, s2: S2Source, ref: PaperRef, problems: list[SourceProblem]) -> Paper:
    wanted = normalize_title(ref.value)

    async def s2_call() -> list[Paper]:
        found = await s2.match_title(ref.value)
        return [] if found is None else [found]

    async def arxiv_call() -> list[Paper]:
        return await arxiv.by_title(ref.value)

    from_arxiv, from_s2 = await _both(arxiv_call, s2_call)
    exact: list[list[Paper]] = []
    near: list[Paper] = []
    errors: list[ResearchError] = []
    for source, outcome in (("arxiv", from_arxiv), ("semantic_scholar", from_s2)):
        if isinstance(outcome, ResearchError):
            errors.append(outcome)
            problems.append(_problem(source, outcome))  # type: ignore[arg-type]
        elif outcome:
            hits = [p for p in outcome if normalize_title(p.title) == wanted]
            if hits:
                exact.append(hits[:1])
            near.extend(outcome[:3])
    if exact:
        return dedupe(exact)[0]
    if errors and not near:
        raise LiteratureError("; ".join(str(e) for e in errors))
    closest = "; ".join(f"{p.title!r} ({p.id})" for p in near[:3])
    raise PaperNotFoundError(
        ref.value,
        f"No paper has exactly this title. Closest: {closest}." if closest else "Call search_papers with its words.",
    )


# --- search_papers ---------------------------------------------------------------------------------------------------


async def search_papers(
    settings: Settings,
    store: Store,
    query: str,
    *,
    sources: Sequence[SearchSource] = ("arxiv", "semantic_scholar"),
    year_from: int | None = None,
    year_to: int | None = None,
    sort: Literal["relevance", "date"] = "relevance",
    limit: int = 10,
    offset: int = 0,
    progress: Progress = no_progress,
) -> SearchPapersResult:
    """Both sources at once, merged and de-duplicated, paged; from the library when every source failed. Each source
    asked and each wait is told to `progress`."""
    with call_deadline():
        text = " ".join(query.split())
        if not text:
            raise BadInputError(
                "The query is empty. Pass keywords, or arXiv syntax such as 'ti:diffusion AND cat:cs.LG'."
            )
        if year_from is not None and year_to is not None and year_from > year_to:
            raise BadInputError(f"year_from ({year_from}) is after year_to ({year_to}).")
        if not sources:
            raise BadInputError("Name at least one source: arxiv, semantic_scholar.")
        if offset >= MAX_SOURCE_RESULTS:
            raise BadInputError(
                f"offset goes up to {MAX_SOURCE_RESULTS - 1}; narrow the query instead of paging further."
            )
        want = min(offset + limit, MAX_SOURCE_RESULTS)
        key = _key("search", sorted(sources), text, offset, limit, year_from, year_to, sort)
        ttl = settings.search_cache_ttl_s

        def cached() -> SearchPapersResult | None:
            hit = store.cache_get(key) if ttl > 0 else None
            if hit is None:
                return None
            try:
                found = SearchPapersResult.model_validate_json(hit[1])
            except ValueError:  # written by another version: ask again
                return None
            kept = library.library_ids(store, found.papers)
            return found.model_copy(
                update={"papers": [p.model_copy(update={"in_library": p.id in kept}) for p in found.papers]}
            )

        hit = await anyio.to_thread.run_sync(cached)
        if hit is not None:
            await progress("answered from the workspace's cache of recent searches")
            return hit
        arxiv, s2 = ArxivSource(settings, progress), S2Source(settings, progress)

        async def from_arxiv() -> list[Paper]:
            return await arxiv.search(text, want, year_from=year_from, year_to=year_to, sort=sort)

        async def from_s2() -> list[Paper]:
            return await s2.search(text, want, year_from=year_from, year_to=year_to)

        outcomes = await _both(
            from_arxiv if "arxiv" in sources else None, from_s2 if "semantic_scholar" in sources else None
        )
        problems: list[SourceProblem] = []
        lists: list[list[Paper]] = []
        full = False
        for source, outcome in zip(("arxiv", "semantic_scholar"), outcomes, strict=True):
            if isinstance(outcome, ResearchError):
                problems.append(_problem(source, outcome))  # type: ignore[arg-type]
            elif outcome is not None:
                lists.append(outcome)
                full = full or len(outcome) >= want
        if not lists:
            await progress("every source failed: searching the workspace's library")
            return await _from_library(store, text, problems, limit, offset, year_from, year_to)
        merged = [p for p in dedupe(lists) if _in_years(p, year_from, year_to)]
        if sort == "date":
            merged.sort(key=lambda p: p.published or str(p.year or ""), reverse=True)
        page = merged[offset : offset + limit]
        more = len(merged) > offset + limit or (full and want < MAX_SOURCE_RESULTS)
        result = SearchPapersResult(
            papers=[PaperHit.of(p, False) for p in page],
            degraded=bool(problems),
            problems=problems,
            next_offset=offset + limit if more and page else None,
        )

        def keep() -> SearchPapersResult:
            library.save_papers(store, [p for found in lists for p in found])
            if not problems and ttl > 0:  # a degraded answer is not kept: the next call asks the failed source again
                store.cache_put(key, "literature", 200, result.model_dump_json().encode(), ttl_s=ttl)
            kept = library.library_ids(store, page)
            return result.model_copy(update={"papers": [PaperHit.of(p, p.id in kept) for p in page]})

        return await anyio.to_thread.run_sync(keep)


def _in_years(paper: Paper, year_from: int | None, year_to: int | None) -> bool:
    if paper.year is None:
        return year_from is None and year_to is None
    return (year_from is None or paper.year >= year_from) and (year_to is None or paper.year <= year_to)


async def _from_library(
    store: Store, text: str, problems: list[SourceProblem], limit: int, offset: int,
    year_from: int | None, year_to: int | None,
) -> SearchPapersResult:  # fmt: skip
    def look() -> tuple[list[Paper], set[str]]:
        found = library.search_library(store, text, limit + 1, offset, year_from=year_from, year_to=year_to)
        return found, library.library_ids(store, found[:limit])

    found, kept = await anyio.to_thread.run_sync(look)
    return SearchPapersResult(
        papers=[PaperHit.of(p, p.id in kept) for p in found[:limit]],
        degraded=True,
        problems=problems,
        from_library=True,
        next_offset=offset + limit if len(found) > limit else None,
    )


# --- paper_graph -----------------------------------------------------------------------------------------------------


async def paper_graph(
    settings: Settings, store: Store, paper_id: str, direction: Direction, *, limit: int = 20, offset: int = 0,
    progress: Progress = no_progress,
) -> PaperGraphResult:  # fmt: skip
    """Papers citing, cited by or recommended for a paper, from Semantic Scholar; bounded and paged. Each source
    asked and each wait is told to `progress`."""
    with call_deadline():
        cap = MAX_GRAPH[direction]
        if offset >= cap:
            raise BadInputError(f"offset goes up to {cap - 1} for {direction}; the graph is not paged further.")
        found = await get_paper(settings, store, paper_id, progress)
        paper = found.paper
        if paper.s2_id:
            s2_form = paper.s2_id
        elif paper.arxiv_id:
            s2_form = f"ARXIV:{paper.arxiv_id}"
        elif paper.doi:
            s2_form = f"DOI:{paper.doi}"
        else:  # pragma: no cover - every stored paper has one of the three
            raise PaperNotFoundError(paper_id)
        want = min(offset + limit, cap)
        s2 = S2Source(settings, progress)
        key = _key("graph", s2_form, direction, want)
        papers, was_cached = await _through_cache(
            store, key, "semantic_scholar", settings.search_cache_ttl_s, lambda: s2.graph(s2_form, direction, want)
        )
        page = papers[offset : offset + limit]

        def keep() -> set[str]:
            if not was_cached:
                library.save_papers(store, papers)
            return library.library_ids(store, [paper, *page])

        kept = await anyio.to_thread.run_sync(keep)
        total = {"citations": paper.citation_count, "references": paper.reference_count}.get(direction)
        more = len(papers) > offset + limit or (len(papers) >= want and want < cap and (total is None or want < total))
        return PaperGraphResult(
            paper=PaperHit.of(paper, paper.id in kept),
            direction=direction,
            papers=[PaperHit.of(p, p.id in kept) for p in page],
            total=total,
            next_offset=offset + limit if more and page else None,
        )
