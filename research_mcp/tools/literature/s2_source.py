"""Semantic Scholar through the `semanticscholar` client, with its requester replaced: the library retries a 429
for minutes and drops Retry-After, and maps 502/503 to an empty answer. Ours makes one request with a time
limit and raises what happened; the shared policy in `_net` paces and retries."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast

import anyio.to_thread

from research_mcp.config import Settings
from research_mcp.progress import Progress, no_progress
from research_mcp.tools.literature._net import (
    CALL_BUDGET_S,
    HttpFailure,
    MalformedResponse,
    Pacer,
    TransportFailure,
    pacer_for,
    parse_retry_after,
    tls_context,
    with_policy,
)
from research_mcp.tools.literature.ids import arxiv_base, normalize_doi
from research_mcp.tools.literature.models import Paper

__all__ = ["PAPER_FIELDS", "S2", "SEARCH_FIELDS", "S2Source", "paper_from_s2"]

logger = logging.getLogger(__name__)

S2 = "Semantic Scholar"
SEARCH_FIELDS = [
    "paperId", "externalIds", "corpusId", "url", "title", "abstract", "venue", "year", "referenceCount",
    "citationCount", "publicationTypes", "publicationDate", "journal", "authors",
]  # fmt: skip
PAPER_FIELDS = [*SEARCH_FIELDS, "tldr"]
T = TypeVar("T")


def paper_from_s2(data: dict[str, Any]) -> Paper | None:
    """Our `Paper` from a Semantic Scholar paper object, or None when it has no id or title."""
    s2_id = data.get("paperId")
    title = data.get("title")
    if not s2_id or not title:
        return None
    external: dict[str, Any] = data.get("externalIds") or {}
    arxiv_id = external.get("ArXiv")
    doi = external.get("DOI")
    journal: dict[str, Any] = data.get("journal") or {}
    tldr: dict[str, Any] = data.get("tldr") or {}
    corpus = data.get("corpusId") or external.get("CorpusId")
    arxiv_id = arxiv_base(str(arxiv_id)) if arxiv_id else None
    doi = normalize_doi(str(doi)) if doi else None
    pid = f"arXiv:{arxiv_id}" if arxiv_id else f"doi:{doi}" if doi else f"s2:{s2_id}"
    authors: list[dict[str, Any]] = data.get("authors") or []
    return Paper(
        id=pid,
        title=" ".join(str(title).split()),
        authors=[str(a["name"]) for a in authors if a.get("name")],
        year=data.get("year"),
        venue=(data.get("venue") or None),
        abstract=(" ".join(str(data["abstract"]).split()) if data.get("abstract") else None),
        tldr=(str(tldr["text"]) if tldr.get("text") else None),
        arxiv_id=arxiv_id,
        doi=doi,
        s2_id=str(s2_id),
        corpus_id=int(corpus) if corpus else None,
        published=data.get("publicationDate"),
        citation_count=data.get("citationCount"),
        reference_count=data.get("referenceCount"),
        journal=(str(journal["name"]).strip() or None) if journal.get("name") else None,
        volume=(str(journal["volume"]).strip() or None) if journal.get("volume") else None,
        pages=(str(journal["pages"]).strip() or None) if journal.get("pages") else None,
        publication_types=list(data.get("publicationTypes") or []),
        url=data.get("url"),
        sources=["semantic_scholar"],
    )


def _s2(module: str) -> Any:
    """A module of the `semanticscholar` package (imported on first use; it ships no type information)."""
    return importlib.import_module(f"semanticscholar.{module}")


def _not_found() -> type[Exception]:
    return _s2("SemanticScholarException").ObjectNotFoundException


def _requester_class() -> type[Any]:
    import httpx

    base: type[Any] = _s2("ApiRequester").ApiRequester
    not_found = _not_found()

    class _Requester(base):
        """One request, a time limit, every status surfaced (with Retry-After), JSON checked."""

        async def get_data_async(
            self, url: str, parameters: str, headers: dict[str, str], payload: dict[str, Any] | None = None
        ) -> Any:
            method = "POST" if payload else "GET"
            try:
                async with httpx.AsyncClient(timeout=self.timeout, verify=tls_context()) as client:
                    response = await client.request(
                        method, url, params=parameters.lstrip("&"), headers=headers, json=payload
                    )
                    body = await response.aread()
            except httpx.TimeoutException as exc:
                raise TransportFailure(f"no answer within {self.timeout:.0f} s") from exc
            except httpx.TransportError as exc:  # refused, reset, body cut short
                raise TransportFailure(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
            data: Any
            try:
                data = json.loads(body) if body.strip() else None
            except ValueError as exc:
                if response.status_code == 200:
                    raise MalformedResponse(f"Semantic Scholar's JSON: {exc}") from exc
                data = None
            fields = cast(dict[str, Any], data) if isinstance(data, dict) else {}
            if response.status_code == 404:
                raise not_found(str(fields.get("error") or "not found"))
            if response.status_code != 200:
                detail = str(fields.get("error") or fields.get("message") or "")[:300]
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise HttpFailure(response.status_code, detail, retry_after)
            if not isinstance(data, dict | list):
                raise MalformedResponse("Semantic Scholar's answer is not a JSON object")
            return cast(Any, data)

    return _Requester


class S2Source:
    """Searches, look-ups and the citation graph on Semantic Scholar, paced and retried by `_net`, each request told
    to `progress`."""

    def __init__(self, settings: Settings, progress: Progress = no_progress) -> None:
        self.progress = progress
        self.url = settings.s2_url.rstrip("/")
        key = settings.s2_api_key.get_secret_value() if settings.s2_api_key else None
        self.key = key or None
        interval = settings.s2_interval_s
        if interval is None:
            interval = 1.0 if self.key else 3.0
        self.timeout_s = settings.literature_timeout_s
        self.pacer: Pacer = pacer_for(S2, self.url, interval)

    def client(self, timeout_s: float) -> Any:
        client = _s2("AsyncSemanticScholar").AsyncSemanticScholar(
            timeout=min(self.timeout_s, timeout_s), api_key=self.key, api_url=self.url,
            retry=False,
        )  # fmt: skip
        client._requester = _requester_class()(min(self.timeout_s, timeout_s), retry=False)
        return client

    async def _ask(self, call: Callable[[Any], Awaitable[T]], budget_s: float, what: str) -> T:
        await anyio.to_thread.run_sync(tls_context)  # loaded once, off the event loop

        async def request(timeout_s: float) -> T:
            return await call(self.client(timeout_s))

        return await with_policy(S2, self.pacer, request, budget_s=budget_s, what=what, progress=self.progress)

    async def search(
        self, query: str, limit: int, *, year_from: int | None = None, year_to: int | None = None,
        budget_s: float = CALL_BUDGET_S,
    ) -> list[Paper]:  # fmt: skip
        text = " ".join(query.replace("&", " ").replace("#", " ").split())
        year = None
        if year_from is not None or year_to is not None:
            year = f"{year_from or ''}-{year_to or ''}" if year_from != year_to else str(year_from)

        async def call(client: Any) -> list[dict[str, Any]]:
            found = await client.search_paper(text, year=year, fields=SEARCH_FIELDS, limit=min(limit, 100))
            return cast(list[dict[str, Any]], found.raw_data)

        raw = await self._ask(call, budget_s, f"search {text[:100]!r}")
        return [p for p in map(paper_from_s2, raw) if p is not None]

    async def paper(self, s2_form: str, *, budget_s: float = CALL_BUDGET_S) -> Paper | None:
        """One paper by any id Semantic Scholar knows (`ARXIV:`, `DOI:`, `CorpusId:`, its own id); None if unknown."""
        not_found = _not_found()

        async def call(client: Any) -> dict[str, Any] | None:
            try:
                found = await client.get_paper(s2_form, fields=PAPER_FIELDS)
            except not_found:
                return None
            return cast(dict[str, Any], found.raw_data)

        raw = await self._ask(call, budget_s, f"look up {s2_form}")
        return None if raw is None else paper_from_s2(raw)

    async def match_title(self, title: str, *, budget_s: float = CALL_BUDGET_S) -> Paper | None:
        """The paper whose title best matches (Semantic Scholar's title match), or None."""
        not_found = _not_found()

        text = " ".join(title.replace("&", " ").replace("#", " ").split())

        async def call(client: Any) -> dict[str, Any] | None:
            try:
                found = await client.search_paper(text, fields=PAPER_FIELDS, match_title=True)
            except not_found:
                return None
            except IndexError:  # the library indexes an empty match list
                return None
            return cast(dict[str, Any], found.raw_data)

        raw = await self._ask(call, budget_s, f"match the title {text[:100]!r}")
        return None if raw is None else paper_from_s2(raw)

    async def graph(
        self, s2_form: str, direction: Literal["citations", "references", "recommended"], limit: int,
        *, budget_s: float = CALL_BUDGET_S,
    ) -> list[Paper]:  # fmt: skip
        """The first `limit` papers citing, cited by or recommended for a paper (one request)."""
        not_found = _not_found()

        async def call(client: Any) -> list[dict[str, Any]] | None:
            try:
                if direction == "recommended":
                    found = await client.get_recommended_papers(s2_form, fields=SEARCH_FIELDS, limit=min(limit, 500))
                    return [cast(dict[str, Any], p.raw_data) for p in found]
                if direction == "citations":
                    page = await client.get_paper_citations(s2_form, fields=SEARCH_FIELDS, limit=limit)
                    key = "citingPaper"
                else:
                    page = await client.get_paper_references(s2_form, fields=SEARCH_FIELDS, limit=limit)
                    key = "citedPaper"
            except not_found:
                return None
            rows = cast(list[dict[str, Any]], page.raw_data)
            return [cast(dict[str, Any], row.get(key) or {}) for row in rows]

        raw = await self._ask(call, budget_s, f"{direction} of {s2_form} (first {limit})")
        if raw is None:
            return []
        return [p for p in map(paper_from_s2, raw) if p is not None]
