"""Paper lookups for find_code that need no network: the workspace library, then the id itself.

`library_lookup` reads the workspace's `papers` table (what the literature tools saved). A paper not there is
still searchable: an arXiv id (or arXiv URL) is searched as such, and anything else that is not a DOI or a
Semantic Scholar id is taken as the paper's title.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread

from research_mcp.errors import BadInputError, LiteratureError, ResearchError
from research_mcp.progress import Progress, no_progress
from research_mcp.tools.repos.find import PaperFacts, PaperLookup
from research_mcp.workspace import Workspace

if TYPE_CHECKING:
    from research_mcp.config import Settings
    from research_mcp.store import Store
    from research_mcp.tools.literature.models import Paper

__all__ = ["arxiv_id_of", "facts_of", "latex_texts", "library_lookup", "lookup_paper", "query_only_lookup"]

logger = logging.getLogger(__name__)

_ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf|html)/([^\s?#]+?)(?:\.pdf)?/?$", re.IGNORECASE)
_ARXIV_ID = re.compile(r"^(?:arxiv:)?(\d{4}\.\d{4,5}(?:v\d+)?|[a-z-]+(?:\.[A-Z]{2})?/\d{7}(?:v\d+)?)$", re.IGNORECASE)
_DOI = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:)?(10\.\d{4,9}/\S+)$", re.IGNORECASE)
_S2 = re.compile(r"^[0-9a-f]{40}$")
_SOURCE_SUFFIXES = (".tex", ".bbl", ".md", ".txt")
_MAX_SOURCE_FILES = 40
_MAX_SOURCE_BYTES = 2 << 20


def arxiv_id_of(paper_id: str) -> str | None:
    """The arXiv id an id or URL names (version kept), else None."""
    text = paper_id.strip()
    url = _ARXIV_URL.search(text)
    if url:
        text = url.group(1)
    match = _ARXIV_ID.match(text)
    return match.group(1) if match else None


def query_only_lookup(paper_id: str) -> PaperFacts:
    """No metadata source: an arXiv id is searched by id, a DOI or S2 id cannot be, anything else is a title."""
    text = paper_id.strip()
    arxiv = arxiv_id_of(text)
    if arxiv is not None:
        return PaperFacts(paper_id=text, arxiv_id=arxiv)
    if _DOI.match(text) or _S2.match(text):
        raise BadInputError(
            f"{paper_id!r} is a DOI or Semantic Scholar id, and its title is not in this workspace's library. "
            "Call get_paper first, or pass its title or arXiv id as paper_id, or words as query."
        )
    return PaperFacts(paper_id=text, title=text)


def library_lookup(store: Store) -> PaperLookup:
    """Look papers up in the workspace library, falling back to `query_only_lookup`."""

    def lookup(paper_id: str) -> PaperFacts:
        text = paper_id.strip()
        arxiv = arxiv_id_of(text)
        bare = arxiv.split("v")[0] if arxiv and "/" not in arxiv else arxiv
        doi = _DOI.match(text)
        row = (
            store.connection()
            .execute(
                "SELECT arxiv_id, title, year, data FROM papers WHERE id = ? OR arxiv_id = ? OR arxiv_id = ? "
                "OR lower(doi) = lower(?) OR s2_id = ? OR lower(title) = lower(?) LIMIT 1",
                (text, arxiv or "", bare or "", doi.group(1) if doi else "", text, text),
            )
            .fetchone()
        )
        if row is None:
            return query_only_lookup(text)
        try:
            loaded: Any = json.loads(row["data"])
        except ValueError:
            loaded = {}
        data = cast(dict[str, Any], loaded) if isinstance(loaded, dict) else {}
        return PaperFacts(
            paper_id=text,
            arxiv_id=row["arxiv_id"],
            title=row["title"],
            abstract=_text(data.get("abstract")),
            comments=_text(data.get("comments") or data.get("comment")),
            year=row["year"],
        )

    return lookup


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def latex_texts(ws: Workspace, arxiv_id: str) -> tuple[str, ...]:
    """The paper's own files read_paper saved under `papers/<arxiv id>/` (its LaTeX `source/` and `text.md`),
    bounded; none when it was not read."""
    from research_mcp.tools.literature.ids import folder_name

    try:
        folder = ws.resolve(f"papers/{folder_name(arxiv_id)}")
    except ResearchError:
        return ()
    texts: list[str] = []
    budget = _MAX_SOURCE_BYTES
    for top, dirs, names in os.walk(folder):  # symlinked folders are not followed
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(top, name)
            if len(texts) >= _MAX_SOURCE_FILES or budget <= 0:
                return tuple(texts)
            if name.lower().endswith(_SOURCE_SUFFIXES) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    data = handle.read(budget)
                budget -= len(data)
                texts.append(data.decode("utf-8", "replace"))
    return tuple(texts)


def facts_of(paper_id: str, paper: Paper, texts: tuple[str, ...] = ()) -> PaperFacts:
    """find_code's view of a paper the literature tools returned."""
    return PaperFacts(
        paper_id=paper_id,
        arxiv_id=paper.arxiv_id,
        title=paper.title,
        abstract=paper.abstract,
        comments=paper.comment,
        year=paper.year,
        texts=texts,
    )


async def lookup_paper(
    settings: Settings, ws: Workspace | None, store: Store | None, paper_id: str, *, timeout_s: float,
    progress: Progress = no_progress,
) -> PaperFacts:  # fmt: skip
    """The paper's metadata from the literature tools (arXiv, Semantic Scholar, kept in the library) plus the
    LaTeX source read_paper saved; when they cannot answer within `timeout_s`, from the library alone or the id.
    Each source asked and each wait is told to `progress`."""
    if ws is None or store is None:
        return query_only_lookup(paper_id)
    from research_mcp.tools.literature.service import get_paper

    try:
        with anyio.fail_after(timeout_s):
            found = await get_paper(settings, store, paper_id, progress)
    except (LiteratureError, TimeoutError) as exc:
        logger.info("find_code: no literature answer for %r (%s); using the library or the id", paper_id, exc)
        return await anyio.to_thread.run_sync(library_lookup(store), paper_id)
    arxiv_id = found.paper.arxiv_id
    texts = await anyio.to_thread.run_sync(latex_texts, ws, arxiv_id) if arxiv_id else ()
    return facts_of(paper_id, found.paper, texts)
