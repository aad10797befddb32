"""The literature family's models: a paper's metadata as stored in the library, and the tools' results."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from research_mcp.model import ToolModel

__all__ = [
    "AUTHORS_SHOWN",
    "Paper",
    "PaperGraphResult",
    "PaperHit",
    "SearchPapersResult",
    "SourceProblem",
]

AUTHORS_SHOWN = 5
ABSTRACT_SHOWN = 400
Source = Literal["arxiv", "semantic_scholar", "library"]


class Paper(ToolModel):
    """A paper's metadata, built only from what arXiv and Semantic Scholar said (never from the model)."""

    id: str = Field(description="Library id: 'arXiv:<id>' when it has one, else 'doi:<doi>' or 's2:<id>'.")
    title: str
    authors: list[str] = Field(default_factory=list[str])
    year: int | None = None
    venue: str | None = Field(default=None, description="Journal or conference, when the paper appeared in one.")
    abstract: str | None = None
    tldr: str | None = Field(default=None, description="Semantic Scholar's one-sentence summary.")
    arxiv_id: str | None = Field(default=None, description="Without version, e.g. '1706.03762'.")
    arxiv_version: int | None = None
    doi: str | None = None
    s2_id: str | None = None
    corpus_id: int | None = None
    categories: list[str] = Field(default_factory=list[str], description="arXiv categories, primary first.")
    published: str | None = Field(default=None, description="Date of first publication (ISO), when known.")
    citation_count: int | None = None
    reference_count: int | None = None
    journal: str | None = None
    volume: str | None = None
    pages: str | None = None
    publication_types: list[str] = Field(default_factory=list[str])
    comment: str | None = Field(default=None, description="The authors' arXiv comment (pages, venue, code link).")
    url: str | None = None
    pdf_url: str | None = None
    sources: list[Source] = Field(default_factory=list[Source], description="Where this metadata came from.")


class PaperHit(ToolModel):
    """One search result, short: the ids to pass to get_paper, read_paper or cite."""

    id: str
    title: str
    authors: list[str] = Field(description=f"The first {AUTHORS_SHOWN} authors.")
    author_count: int
    year: int | None = None
    venue: str | None = None
    citation_count: int | None = None
    arxiv_id: str | None = None
    doi: str | None = None
    s2_id: str | None = None
    categories: list[str] = Field(default_factory=list[str])
    abstract: str | None = Field(default=None, description=f"The first {ABSTRACT_SHOWN} characters.")
    tldr: str | None = None
    sources: list[Source]
    in_library: bool = Field(description="Already stored in this workspace's library (readable offline).")

    @classmethod
    def of(cls, paper: Paper, in_library: bool) -> PaperHit:
        abstract = paper.abstract
        if abstract is not None and len(abstract) > ABSTRACT_SHOWN:
            abstract = abstract[: ABSTRACT_SHOWN - 3].rstrip() + "..."
        return cls(
            id=paper.id, title=paper.title, authors=paper.authors[:AUTHORS_SHOWN], author_count=len(paper.authors),
            year=paper.year, venue=paper.venue, citation_count=paper.citation_count, arxiv_id=paper.arxiv_id,
            doi=paper.doi, s2_id=paper.s2_id, categories=paper.categories, abstract=abstract, tldr=paper.tldr,
            sources=paper.sources, in_library=in_library,
        )  # fmt: skip


class SourceProblem(ToolModel):
    source: Source
    problem: str = Field(description="Why this source gave no answer (rate limit, timeout, HTTP status, ...).")


class SearchPapersResult(ToolModel):
    papers: list[PaperHit]
    degraded: bool = Field(description="True when a source failed; then `problems` says which and why.")
    problems: list[SourceProblem] = Field(default_factory=list[SourceProblem])
    from_library: bool = Field(default=False, description="Answered from the local library (offline fallback).")
    next_offset: int | None = Field(default=None, description="Pass as `offset` to get the next page.")


class PaperGraphResult(ToolModel):
    paper: PaperHit
    direction: Literal["citations", "references", "recommended"]
    papers: list[PaperHit]
    total: int | None = Field(default=None, description="How many the paper has in this direction, when known.")
    next_offset: int | None = Field(default=None, description="Pass as `offset` to get the next page.")
