"""The library as resources read it: a stored paper's record, the text read_paper kept for it, and the ids a
client can complete. Nothing here asks arXiv or Semantic Scholar: a paper is on the shelf or it is not."""

from __future__ import annotations

from research_mcp.errors import PaperNotFoundError
from research_mcp.store import Store
from research_mcp.tools.known_ids import like_prefix
from research_mcp.tools.literature.ids import folder_name, parse_paper_id
from research_mcp.tools.literature.library import load_paper
from research_mcp.tools.literature.models import Paper
from research_mcp.workspace import Workspace

__all__ = ["paper_ids", "shelved_paper", "shelved_text"]

MAX_COMPLETIONS = 1000


def shelved_paper(store: Store, paper_id: str) -> Paper:
    """The stored record of a paper, by any id form; `PaperNotFoundError` saying how to fetch one not stored."""
    found = load_paper(store, parse_paper_id(paper_id))
    if found is None:
        raise PaperNotFoundError(
            paper_id, "It is not in this workspace's library: call get_paper (or search_papers) to add it."
        )
    return found


def shelved_text(store: Store, ws: Workspace, paper_id: str, max_chars: int) -> str:
    """The text read_paper kept for a stored paper, its first `max_chars` characters; a longer text ends with a
    line saying how much is left and the read_paper call that reads on."""
    paper = shelved_paper(store, paper_id)
    how = f"call read_paper with paper_id={paper.id!r}"
    if paper.arxiv_id is None:
        raise PaperNotFoundError(paper_id, f"{paper.id} has no arXiv version, so no full text is kept; get_paper "
                                           "has its abstract.")  # fmt: skip
    path = ws.resolve(f"papers/{folder_name(paper.arxiv_id)}/text.md")
    if not path.is_file():
        raise PaperNotFoundError(paper_id, f"Its full text has not been read yet: {how} first.")
    with open(path, encoding="utf-8") as handle:
        text = handle.read(max_chars + 1)
    if len(text) <= max_chars:
        return text
    total = path.stat().st_size  # bytes: an upper bound on the characters, and no second read of a long text
    cut = text[:max_chars]
    return (
        f"{cut}\n\n[Cut at {max_chars} characters of about {total}: {how} and offset={max_chars} to read on, or "
        "without an offset for its outline.]\n"
    )


def paper_ids(store: Store, typed: str, limit: int = MAX_COMPLETIONS) -> list[str]:
    """Library ids that start with `typed` (or whose arXiv id or DOI does): kept papers first, newest first."""
    rows = store.connection().execute(
        "SELECT id FROM papers WHERE id LIKE ?1 ESCAPE '\\' OR arxiv_id LIKE ?1 ESCAPE '\\' "
        "OR doi LIKE ?1 ESCAPE '\\' ORDER BY saved_at IS NULL, updated_at DESC, id LIMIT ?2",
        (like_prefix(typed), limit),
    )
    return [str(row["id"]) for row in rows]
