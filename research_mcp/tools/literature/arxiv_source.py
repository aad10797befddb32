"""arXiv through the `arxiv` client (its requests session wrapped for time limits and header access), plus
the e-print and PDF downloads, all paced by the shared arXiv pacer."""

from __future__ import annotations

import importlib
import logging
import re
import xml.etree.ElementTree as ET
from typing import Any, Literal

import anyio.to_thread

from research_mcp.config import Settings
from research_mcp.errors import LiteratureError
from research_mcp.progress import Progress, format_bytes, no_progress
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
from research_mcp.tools.literature.ids import arxiv_base
from research_mcp.tools.literature.models import Paper

__all__ = ["ARXIV", "ArxivSource", "paper_from_arxiv"]

logger = logging.getLogger(__name__)

ARXIV = "arXiv"
MAX_PAGE = 100
_TELL_EVERY_BYTES = 4 << 20
"""A download tells its progress each time this many more bytes have come."""


def _arxiv() -> Any:
    """The `arxiv` module (imported on first use: it pulls in requests; it ships no type information)."""
    return importlib.import_module("arxiv")


def paper_from_arxiv(result: Any) -> Paper:
    short = result.get_short_id()
    version = re.search(r"v(\d+)$", short)
    base = arxiv_base(short)
    primary: str = result.primary_category
    categories: list[str] = [primary, *(c for c in result.categories if c != primary)]
    return Paper(
        id=f"arXiv:{base}",
        title=" ".join(result.title.split()),
        authors=[str(a.name) for a in result.authors],
        year=result.published.year,
        abstract=" ".join(result.summary.split()) or None,
        arxiv_id=base,
        arxiv_version=int(version.group(1)) if version else None,
        doi=result.doi.lower() if result.doi else None,
        categories=[c for c in categories if c],
        published=result.published.date().isoformat(),
        journal=result.journal_ref or None,
        comment=result.comment or None,
        url=f"https://arxiv.org/abs/{base}",
        pdf_url=result.pdf_url,
        sources=["arxiv"],
    )


def _session_class() -> type[Any]:
    import requests  # noqa: TID251  # the arxiv client's own transport

    class _Session(requests.Session):
        """The arxiv client's session with a time limit on every request and the last response kept, so a
        429's Retry-After and a 400's error entry can be read; a 200 whose XML does not parse is refused."""

        timeout_s: float = 20.0
        last: requests.Response | None = None

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            kwargs.setdefault("timeout", self.timeout_s)
            try:
                response = super().request(method, url, *args, **kwargs)
                content = response.content
            except requests.Timeout as exc:
                raise TransportFailure(f"no answer within {self.timeout_s:.0f} s") from exc
            except requests.RequestException as exc:  # refused, reset, cut short (IncompleteRead)
                raise TransportFailure(type(exc).__name__ + ": " + str(exc)[:200]) from exc
            self.last = response
            if response.status_code == 200:
                try:  # the client's parser recovers silently: a cut or broken feed would look like fewer results
                    ET.fromstring(content)
                except ET.ParseError as exc:
                    raise MalformedResponse(f"arXiv's Atom feed: {exc}") from exc
            return response

    return _Session


def _error_entry(body: bytes) -> str:
    """The message of an arXiv API error entry (`<id>.../api/errors#...`), or ''."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return ""
    ns = {"a": "http://www.w3.org/2005/Atom"}
    for entry in root.iterfind("a:entry", ns):
        entry_id = entry.findtext("a:id", "", ns)
        if "/api/errors" in entry_id:
            return (entry.findtext("a:summary", "", ns) or "").strip()
    return ""


class ArxivSource:
    """Searches and id look-ups on arXiv's API; one HTTP request per call, paced and retried by `_net`, each told
    to `progress`."""

    def __init__(self, settings: Settings, progress: Progress = no_progress) -> None:
        self.url = settings.arxiv_url
        self.files_url = settings.arxiv_files_url.rstrip("/")
        self.timeout_s = settings.literature_timeout_s
        self.pacer: Pacer = pacer_for(ARXIV, self.url, settings.arxiv_interval_s)
        self.progress = progress

    def _run(self, search: Any, timeout_s: float) -> list[Paper]:
        arxiv = _arxiv()
        page = MAX_PAGE if search.id_list else max(1, search.max_results or MAX_PAGE)  # one request either way
        client = arxiv.Client(page_size=page, delay_seconds=0, num_retries=0)
        client.query_url_format = self.url + "?{}"
        session = _session_class()()
        session.timeout_s = min(self.timeout_s, timeout_s)
        client._session = session  # pyright: ignore[reportPrivateUsage]  # the client has no transport argument
        try:
            try:
                results: list[Any] = list(client.results(search))
            except arxiv.HTTPError as exc:
                last = session.last
                retry_after = parse_retry_after(last.headers.get("Retry-After")) if last is not None else None
                detail = _error_entry(last.content) if last is not None else ""
                raise HttpFailure(exc.status, detail, retry_after) from exc
            last = session.last
            if not results and last is not None and (detail := _error_entry(last.content)):
                raise HttpFailure(400, detail)
            return [paper_from_arxiv(r) for r in results]
        finally:
            session.close()

    async def _ask(self, search: Any, budget_s: float, what: str) -> list[Paper]:
        async def request(timeout_s: float) -> list[Paper]:
            return await anyio.to_thread.run_sync(self._run, search, timeout_s, abandon_on_cancel=True)

        return await with_policy(ARXIV, self.pacer, request, budget_s=budget_s, what=what, progress=self.progress)

    async def search(
        self,
        query: str,
        limit: int,
        *,
        year_from: int | None = None,
        year_to: int | None = None,
        sort: Literal["relevance", "date"] = "relevance",
        budget_s: float = CALL_BUDGET_S,
    ) -> list[Paper]:
        arxiv = _arxiv()
        text = query.strip()
        if year_from is not None or year_to is not None:
            start = f"{year_from or 1991}01010000"
            end = f"{year_to or 2999}12312359"
            text = f"({text}) AND submittedDate:[{start} TO {end}]"
        criterion = arxiv.SortCriterion.SubmittedDate if sort == "date" else arxiv.SortCriterion.Relevance
        search = arxiv.Search(query=text, max_results=min(limit, MAX_PAGE), sort_by=criterion)
        return await self._ask(search, budget_s, f"search {query.strip()[:100]!r}")

    async def by_ids(self, ids: list[str], *, budget_s: float = CALL_BUDGET_S) -> list[Paper]:
        if not ids:
            return []
        what = "look up " + ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        return await self._ask(_arxiv().Search(id_list=ids, max_results=len(ids)), budget_s, what)

    async def by_title(self, title: str, limit: int = 5, *, budget_s: float = CALL_BUDGET_S) -> list[Paper]:
        words = re.sub(r"[^\w\s-]", " ", title).split()
        if not words:
            return []
        return await self.search(" AND ".join(f"ti:{w}" for w in words[:12]), limit, budget_s=budget_s)

    async def download(self, kind: Literal["e-print", "pdf"], arxiv_id: str, max_bytes: int) -> tuple[bytes, str]:
        """The e-print (source tarball or gzipped .tex) or the PDF of a paper: bytes and content type."""
        import httpx

        url = f"{self.files_url}/{kind}/{arxiv_id}"
        await anyio.to_thread.run_sync(tls_context)  # loaded once, off the event loop

        async def request(timeout_s: float) -> tuple[bytes, str]:
            try:
                async with (
                    httpx.AsyncClient(timeout=timeout_s, follow_redirects=True, verify=tls_context()) as client,
                    client.stream("GET", url, headers={"User-Agent": "research-mcp"}) as response,
                ):
                    if response.status_code != 200:
                        retry_after = parse_retry_after(response.headers.get("Retry-After"))
                        raise HttpFailure(response.status_code, f"GET {kind}/{arxiv_id}", retry_after)
                    chunks: list[bytes] = []
                    size = told = 0
                    declared = response.headers.get("Content-Length", "")
                    of = f" of {format_bytes(int(declared))}" if declared.isdigit() else ""
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise LiteratureError(
                                f"The {kind} of {arxiv_id} is larger than {max_bytes >> 20} MiB; not downloaded."
                            )
                        chunks.append(chunk)
                        if size - told >= _TELL_EVERY_BYTES:
                            told = size
                            await self.progress(f"{ARXIV}: received {format_bytes(size)}{of} of the {kind}")
                    await self.progress(f"{ARXIV}: received the {kind} of {arxiv_id} ({format_bytes(size)})")
                    return b"".join(chunks), response.headers.get("Content-Type", "")
            except httpx.TimeoutException as exc:
                raise TransportFailure(f"no answer within {timeout_s:.0f} s") from exc
            except httpx.TransportError as exc:  # refused, reset, body cut short
                raise TransportFailure(f"{type(exc).__name__}: {exc}") from exc

        return await with_policy(
            ARXIV, self.pacer, request, budget_s=CALL_BUDGET_S, what=f"download the {kind} of {arxiv_id}",
            progress=self.progress,
        )  # fmt: skip
