"""Merging records of one paper from several sources, and de-duplicating result lists.

Two records are the same paper when they share an arXiv id or a DOI (Semantic Scholar's externalIds carry
both), or, lacking those, the same normalised title, first author's surname and year. Similar titles with
different words stay apart."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from research_mcp.tools.literature.models import Paper, Source

__all__ = ["combine", "dedupe", "identity_keys", "normalize_title", "surname"]

_SOURCE_ORDER: dict[Source, int] = {"arxiv": 0, "semantic_scholar": 1, "library": 2}


def normalize_title(title: str) -> str:
    """Lower case, accents and punctuation dropped, spaces collapsed: comparable across sources."""
    text = unicodedata.normalize("NFKD", title)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^\w\s]", " ", text.casefold()).replace("_", " ")
    return " ".join(text.split())


def surname(name: str) -> str:
    """The family name of 'Ashish Vaswani' or 'Vaswani, Ashish', normalised."""
    name = name.strip()
    if "," in name:
        name = name.split(",", 1)[0]
    else:
        parts = name.split()
        name = parts[-1] if parts else ""
    return normalize_title(name)


def identity_keys(paper: Paper) -> set[str]:
    keys: set[str] = set()
    if paper.arxiv_id:
        keys.add(f"arxiv:{paper.arxiv_id.lower()}")
    if paper.doi:
        keys.add(f"doi:{paper.doi.lower()}")
    if paper.s2_id:
        keys.add(f"s2:{paper.s2_id}")
    title = normalize_title(paper.title)
    if title and paper.year:
        first = surname(paper.authors[0]) if paper.authors else ""
        keys.add(f"t:{title}|{first}|{paper.year}")
    return keys


def combine(a: Paper, b: Paper) -> Paper:
    """One record from two of the same paper: arXiv's text fields (abstract, categories, dates), Semantic
    Scholar's bibliographic ones (year and venue of publication, counts, tldr); gaps filled from either."""
    arx, other = (a, b) if _SOURCE_ORDER[_first(a)] <= _SOURCE_ORDER[_first(b)] else (b, a)
    s2, rest = (other, arx) if "semantic_scholar" in other.sources else (arx, other)
    merged = rest.model_dump()
    for name, value in s2.model_dump().items():
        if name in ("year", "venue", "journal", "volume", "pages", "citation_count", "reference_count", "tldr",
                    "s2_id", "corpus_id", "publication_types") and value not in (None, [], ""):  # fmt: skip
            merged[name] = value
        elif merged.get(name) in (None, [], ""):
            merged[name] = value
    merged["sources"] = sorted(set(a.sources) | set(b.sources), key=lambda s: _SOURCE_ORDER[s])
    arxiv_id, doi = merged.get("arxiv_id"), merged.get("doi")
    merged["id"] = f"arXiv:{arxiv_id}" if arxiv_id else f"doi:{doi}" if doi else f"s2:{merged['s2_id']}"
    return Paper.model_validate(merged)


def _first(paper: Paper) -> Source:
    return paper.sources[0] if paper.sources else "library"


def dedupe(ranked: Iterable[Sequence[Paper]]) -> list[Paper]:
    """Merge several ranked lists into one: interleaved by rank, each paper once, its records combined."""
    lists = [list(found) for found in ranked]
    order: list[Paper] = []
    for rank in range(max((len(found) for found in lists), default=0)):
        order.extend(found[rank] for found in lists if rank < len(found))
    merged: list[Paper] = []
    merged_keys: list[set[str]] = []
    owner: dict[str, int] = {}
    for paper in order:
        keys = identity_keys(paper)
        hits = sorted({owner[k] for k in keys if k in owner})
        if not hits:
            index = len(merged)
            merged.append(paper)
            merged_keys.append(keys)
        else:
            index = hits[0]
            merged[index] = combine(merged[index], paper)
            for extra in hits[1:]:  # the new record joins two earlier ones: fold the later into the first
                merged[index] = combine(merged[index], merged[extra])
                for key, value in list(owner.items()):
                    if value == extra:
                        owner[key] = index
            merged_keys[index] = identity_keys(merged[index]) | merged_keys[index] | keys
        for key in merged_keys[index]:
            owner[key] = index
    folded = set(owner.values())
    return [paper for i, paper in enumerate(merged) if i in folded]
