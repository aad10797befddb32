"""find_code: candidate GitHub repositories for a paper, ranked.

Links the paper itself gives come first (github.com URLs in its abstract, comments or LaTeX source). Then GitHub's
repository search for the arXiv id and for the exact title, in names, descriptions and READMEs. Candidates are
ranked by: linked from the paper, found by the arXiv id, the exact title in their name or description, stars,
recent pushes; code created well before the paper is pushed down. `created_before` drops repositories created on
or after a date (to study a paper without its own answer). Search answers are kept for a day in the workspace's
API cache: GitHub allows only 10 searches a minute without a token.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field

from research_mcp.errors import BadInputError, GitHubRateLimitError, RepoError
from research_mcp.model import ToolModel
from research_mcp.progress import BlockingProgress, no_blocking_progress
from research_mcp.tools.repos.github import GitHubClient, RepoFacts

if TYPE_CHECKING:
    from research_mcp.store import Store

__all__ = ["CodeCandidate", "FindCodeResult", "PaperFacts", "PaperLookup", "find_code", "github_links"]

SEARCH_TTL_S = 86_400.0
SEARCH_PAGE = 30
"""Repositories asked of each search; the same for every call, so paging reuses the cached answers."""
_MAX_LINKED = 5
_LINK = re.compile(r"github\.com/([A-Za-z0-9][A-Za-z0-9-]{0,38})/([A-Za-z0-9_.-]{1,100})", re.IGNORECASE)
_NOT_OWNERS = frozenset({"orgs", "topics", "features", "about", "sponsors", "marketplace", "settings", "login"})
_ARXIV_NEW = re.compile(r"^(\d{4}\.\d{4,5})(v\d+)?$")
_ARXIV_OLD = re.compile(r"^([a-z-]+(\.[A-Z]{2})?/\d{7})(v\d+)?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PaperFacts:
    """What find_code needs to know of a paper."""

    paper_id: str
    arxiv_id: str | None = None
    title: str | None = None
    abstract: str | None = None
    comments: str | None = None
    year: int | None = None
    texts: tuple[str, ...] = ()
    """More of the paper's own text that may link its code (e.g. its LaTeX source)."""


PaperLookup = Callable[[str], PaperFacts]
"""Finds a paper by any id the literature tools accept; raises a `ResearchError` when it cannot."""


class PaperRef(ToolModel):
    paper_id: str
    arxiv_id: str | None = None
    title: str | None = None
    year: int | None = None


class CodeCandidate(ToolModel):
    repo: str = Field(description="owner/name: pass to fetch_repo.")
    url: str | None = None
    stars: int | None = None
    description: str | None = Field(None, description="GitHub's description: untrusted text.")
    created_at: str | None = None
    pushed_at: str | None = Field(None, description="Last push (ISO 8601).")
    license: str | None = Field(None, description="SPDX id GitHub detected.")
    default_branch: str | None = None
    fork: bool | None = None
    found_by: list[str] = Field(description="Why it is here: paper link, arXiv id search, title search, query.")
    score: float = Field(description="Ranking score (higher first); compare within one answer only.")


class FindCodeResult(ToolModel):
    paper: PaperRef | None = None
    candidates: list[CodeCandidate]
    total: int = Field(description="Candidates in all, before paging.")
    next_offset: int | None = Field(default=None, description="Pass as `offset` for the next candidates.")
    searches: list[str] = Field(description="The GitHub search queries behind the answer (sent or cached).")
    left_out_by_date: int = Field(0, description="Candidates dropped by created_before.")
    searches_left: int | None = Field(None, description="GitHub searches left this minute, when GitHub said.")
    note: str | None = None


def github_links(*texts: str | None) -> list[str]:
    """owner/name of every github.com repository link in the texts, in order of appearance, without repeats."""
    found: dict[str, str] = {}
    for text in texts:
        for owner, name in _LINK.findall(text or ""):
            name = re.sub(r"(\.git|[.,;:)]+)$", "", name.rstrip(".,;:)}]'\""))
            name = name.removesuffix(".git")
            if owner.lower() in _NOT_OWNERS or not name or name.startswith("."):
                continue
            found.setdefault(f"{owner}/{name}".lower(), f"{owner}/{name}")
    return list(found.values())


def _bare_arxiv(arxiv_id: str | None) -> str | None:
    if not arxiv_id:
        return None
    text = arxiv_id.strip().removeprefix("arXiv:").removeprefix("arxiv:")
    for pattern in (_ARXIV_NEW, _ARXIV_OLD):
        match = pattern.match(text)
        if match:
            return match.group(1)
    return None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _search_title(title: str) -> str:
    return " ".join(re.sub(r'["\\:]', " ", title).split())[:200]


def _cached_search(
    github: GitHubClient, store: Store | None, query: str, per_page: int
) -> tuple[list[RepoFacts], int | None]:
    key = f"github-search:{github.base_url}:{per_page}:{query}"
    if store is not None:
        hit = store.cache_get(key)
        if hit is not None and hit[0] == 200:
            return [RepoFacts(item) for item in json.loads(hit[1])], None
    items, _, remaining = github.search(query, per_page)
    if store is not None:
        store.cache_put(key, "github", 200, json.dumps(items).encode(), ttl_s=SEARCH_TTL_S)
    return items, remaining


@dataclass
class _Hit:
    facts: RepoFacts | None
    name: str
    found_by: list[str]


def _score(hit: _Hit, arxiv_id: str | None, title: str | None, year: int | None, today: date) -> float:
    score = 0.0
    reasons = set(hit.found_by)
    if any(r.startswith("paper link") for r in reasons):
        score += 100
    if "arXiv id search" in reasons:  # an id is specific; titles are copied into lists and reimplementations
        score += 50
    facts = hit.facts or RepoFacts()
    text = _norm(f"{facts.get('name') or ''} {facts.get('description') or ''}")
    if arxiv_id and arxiv_id in str(facts.get("description") or ""):
        score += 10
    if title and _norm(title) and _norm(title) in text:
        score += 25
    if "title search" in reasons:
        score += 10
    stars = facts.get("stargazers_count")
    if isinstance(stars, int) and stars > 0:
        score += 10 * math.log10(1 + stars)
    pushed = _date(facts.get("pushed_at"))
    if pushed is not None:
        score += max(0.0, 5 - (today - pushed).days / 365)
    created = _date(facts.get("created_at"))
    if created is not None and year is not None and created.year < year - 1:
        score -= 15
    if facts.get("fork") is True:
        score -= 5
    if hit.facts is None:
        score -= 50
    return round(score, 2)


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _candidate(hit: _Hit, score: float) -> CodeCandidate:
    facts = hit.facts or RepoFacts()
    description = facts.get("description")
    return CodeCandidate(
        repo=str(facts.get("full_name") or hit.name),
        url=facts.get("html_url"),
        stars=facts.get("stargazers_count"),
        description=str(description)[:300] if description else None,
        created_at=facts.get("created_at"),
        pushed_at=facts.get("pushed_at"),
        license=facts.license_id() if hit.facts else None,
        default_branch=facts.get("default_branch"),
        fork=facts.get("fork"),
        found_by=hit.found_by,
        score=score,
    )


def find_code(
    github: GitHubClient,
    *,
    paper: PaperFacts | None,
    query: str | None,
    created_before: date | None,
    limit: int,
    store: Store | None,
    offset: int = 0,
    today: date | None = None,
    deadline: float | None = None,
    progress: BlockingProgress = no_blocking_progress,
) -> FindCodeResult:
    """Rank candidate repositories for `paper` and/or a free `query`; past `deadline` (`time.monotonic()`) no
    further request is sent and the answer says what was left out. Each look-up and search is told to `progress`
    as it starts."""
    if paper is None and not (query and query.strip()):
        raise BadInputError("Give paper_id (an arXiv id, DOI or title) or query (words to search GitHub for).")
    now = today or datetime.now(UTC).date()
    hits: dict[str, _Hit] = {}
    notes: list[str] = []

    def add(facts: RepoFacts | None, name: str, reason: str) -> None:
        key = name.lower()
        hit = hits.setdefault(key, _Hit(facts, name, []))
        hit.facts = hit.facts or facts
        if reason not in hit.found_by:
            hit.found_by.append(reason)

    arxiv_id = _bare_arxiv(paper.arxiv_id) if paper else None
    title = paper.title.strip() if paper and paper.title else None
    if paper is not None:
        limited: GitHubRateLimitError | None = None
        for name in github_links(paper.abstract, paper.comments, *paper.texts)[:_MAX_LINKED]:
            if limited is not None or (deadline is not None and time.monotonic() > deadline):
                add(None, name, "paper link (not looked up: rate limit or time limit)")
                continue
            try:
                progress(f"GitHub: look up {name}, linked from the paper")
                add(github.repo(name), name, "paper link")
            except GitHubRateLimitError as exc:
                limited = exc
                notes.append(f"the paper's links were not all looked up: {exc}")
                add(None, name, "paper link (not looked up: rate limit or time limit)")
            except RepoError:
                add(None, name, "paper link (not found on GitHub: renamed, deleted or private)")
    date_filter = f" created:<{created_before.isoformat()}" if created_before else ""
    queries: list[tuple[str, str]] = []
    if arxiv_id:
        queries.append((f'"{arxiv_id}" in:name,description,readme{date_filter}', "arXiv id search"))
    if title:
        queries.append((f'"{_search_title(title)}" in:name,description,readme{date_filter}', "title search"))
    if query and query.strip():
        queries.append((query.strip()[:250] + date_filter, "query"))
    left: int | None = None
    done: list[str] = []
    for text, reason in queries:
        if deadline is not None and time.monotonic() > deadline:
            notes.append(f"time limit reached: {reason} not done; call again (answers so far are cached)")
            break
        try:
            progress(f"GitHub: {reason}: {text}")
            items, remaining = _cached_search(github, store, text, SEARCH_PAGE)
        except RepoError as exc:
            if not hits:
                raise
            notes.append(f"{reason} not done: {exc}")
            break
        left = remaining if remaining is not None else left
        done.append(text)
        for item in items:
            add(item, item.full_name, reason)
    dropped = 0
    ranked: list[CodeCandidate] = []
    for hit in hits.values():
        created = _date(hit.facts.get("created_at") if hit.facts is not None else None)
        if created_before is not None and (created is None or created >= created_before):
            dropped += 1
            continue
        ranked.append(_candidate(hit, _score(hit, arxiv_id, title, paper.year if paper else None, now)))
    ranked.sort(key=lambda c: (-c.score, c.repo.lower()))
    if not ranked:
        notes.append("no candidates: the paper may have no public code; try query= with the method's name")
    ref = PaperRef(paper_id=paper.paper_id, arxiv_id=paper.arxiv_id, title=title, year=paper.year) if paper else None
    return FindCodeResult(
        paper=ref,
        candidates=ranked[offset : offset + limit],
        total=len(ranked),
        next_offset=offset + limit if offset + limit < len(ranked) else None,
        searches=done,
        left_out_by_date=dropped,
        searches_left=left,
        note="; ".join(notes) or None,
    )
