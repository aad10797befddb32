"""The workspace's paper library: every paper seen is kept in the state store (`papers`), with an FTS5 index
over titles, authors, abstracts and read full texts (`papers_fts`), so search works offline."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable
from typing import Protocol

from research_mcp.store import Store
from research_mcp.tools.literature.ids import PaperRef
from research_mcp.tools.literature.merge import combine, normalize_title
from research_mcp.tools.literature.models import Paper

__all__ = ["fts_query", "library_ids", "load_paper", "save_paper", "save_papers", "search_library", "set_body"]

_MAX_TERMS = 32


def _row_paper(row: sqlite3.Row) -> Paper:
    return Paper.model_validate_json(row["data"])


def _matching_rows(conn: sqlite3.Connection, paper: Paper) -> list[sqlite3.Row]:
    clauses: list[str] = []
    args: list[str] = []
    for column, value in (("arxiv_id", paper.arxiv_id), ("doi", paper.doi), ("s2_id", paper.s2_id)):
        if value:
            clauses.append(f"{column} = ?")
            args.append(value)
    clauses.append("id = ?")
    args.append(paper.id)
    return conn.execute(f"SELECT * FROM papers WHERE {' OR '.join(clauses)}", args).fetchall()


def _write(conn: sqlite3.Connection, paper: Paper, keep: bool) -> Paper:
    rows = _matching_rows(conn, paper)
    merged = paper
    body: str | None = None
    now = time.time()
    added_at = now
    saved_at: float | None = now if keep else None
    for row in rows:
        merged = combine(_row_paper(row), merged)
        added_at = min(added_at, float(row["added_at"]))
        if row["saved_at"] is not None:
            saved_at = min(saved_at or now, float(row["saved_at"]))
        found = conn.execute("SELECT body FROM papers_fts WHERE paper_id = ?", (row["id"],)).fetchone()
        if found is not None and found["body"]:
            body = found["body"]
        conn.execute("DELETE FROM papers WHERE id = ?", (row["id"],))
        conn.execute("DELETE FROM papers_fts WHERE paper_id = ?", (row["id"],))
    conn.execute(
        "INSERT INTO papers (id, arxiv_id, doi, s2_id, title, year, data, added_at, updated_at, saved_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (merged.id, merged.arxiv_id, merged.doi, merged.s2_id, merged.title, merged.year,
         merged.model_dump_json(exclude_defaults=True), added_at, now, saved_at),
    )  # fmt: skip
    conn.execute(
        "INSERT INTO papers_fts (paper_id, title, authors, abstract, body) VALUES (?, ?, ?, ?, ?)",
        (merged.id, merged.title, " ".join(merged.authors), merged.abstract or "", body or ""),
    )
    return merged


def save_papers(store: Store, papers: Iterable[Paper], *, keep: bool = False) -> list[Paper]:
    """Store (or merge into the stored records) these papers in one transaction; the stored forms, in order.

    Every paper seen is stored, so offline search finds it; `keep` marks it as in the library proper (a paper
    looked up, cited or read), which search results report as `in_library`."""
    with store.transaction() as conn:
        return [_write(conn, paper, keep) for paper in papers]


def save_paper(store: Store, paper: Paper, *, keep: bool = True) -> Paper:
    return save_papers(store, [paper], keep=keep)[0]


def load_paper(store: Store, ref: PaperRef) -> Paper | None:
    """The stored paper this id names, or None."""
    conn = store.connection()
    if ref.kind == "arxiv":
        row = conn.execute("SELECT data FROM papers WHERE arxiv_id = ?", (ref.value,)).fetchone()
    elif ref.kind == "doi":
        row = conn.execute("SELECT data FROM papers WHERE doi = ?", (ref.value,)).fetchone()
    elif ref.kind == "s2":
        row = conn.execute("SELECT data FROM papers WHERE s2_id = ?", (ref.value,)).fetchone()
    elif ref.kind == "corpus":
        row = conn.execute(
            "SELECT data FROM papers WHERE json_extract(data, '$.corpus_id') = ?", (int(ref.value),)
        ).fetchone()
    else:
        wanted = normalize_title(ref.value)
        row = None
        query = fts_query(ref.value)
        if query:
            for found in conn.execute(
                "SELECT p.data FROM papers_fts f JOIN papers p ON p.id = f.paper_id "
                "WHERE papers_fts MATCH ? ORDER BY bm25(papers_fts) LIMIT 20",
                (f"title : ({query})",),
            ):
                if normalize_title(Paper.model_validate_json(found["data"]).title) == wanted:
                    row = found
                    break
    return None if row is None else Paper.model_validate_json(row["data"])


class Identified(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def arxiv_id(self) -> str | None: ...
    @property
    def doi(self) -> str | None: ...
    @property
    def s2_id(self) -> str | None: ...


def library_ids(store: Store, papers: Iterable[Identified]) -> set[str]:
    """Which of these papers are kept in the library (matched by arXiv id, DOI or S2 id), in one query."""
    wanted = list(papers)
    by_column: dict[str, dict[str, str]] = {"arxiv_id": {}, "doi": {}, "s2_id": {}}
    for paper in wanted:
        for column, value in (("arxiv_id", paper.arxiv_id), ("doi", paper.doi), ("s2_id", paper.s2_id)):
            if value:
                by_column[column][value] = paper.id
    clauses: list[str] = []
    args: list[str] = []
    for column, values in by_column.items():
        if values:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)
    if not clauses:
        return set()
    rows = store.connection().execute(
        f"SELECT arxiv_id, doi, s2_id FROM papers WHERE saved_at IS NOT NULL AND ({' OR '.join(clauses)})", args
    )
    found: set[str] = set()
    for row in rows:
        for column in by_column:
            if row[column] is not None and row[column] in by_column[column]:
                found.add(by_column[column][row[column]])
    return found


def fts_query(text: str) -> str:
    """An FTS5 query matching any of the words (ranked by bm25), with every word quoted: no syntax errors."""
    words = re.findall(r"\w+", text)[:_MAX_TERMS]
    return " OR ".join(f'"{w}"' for w in words)


def search_library(
    store: Store, query: str, limit: int, offset: int = 0, *, year_from: int | None = None, year_to: int | None = None
) -> list[Paper]:
    """Stored papers matching the words of `query`, best first (bm25 over title, authors, abstract, full text)."""
    match = fts_query(query)
    if not match:
        return []
    weights = "bm25(papers_fts, 0, 10.0, 3.0, 2.0, 1.0)"  # title over authors over abstract over full text
    conn = store.connection()
    if year_from is None and year_to is None:  # rank in the index alone, then read only the rows shown
        ranked = conn.execute(
            f"SELECT paper_id FROM papers_fts WHERE papers_fts MATCH ? ORDER BY {weights} LIMIT ? OFFSET ?",
            (match, limit, offset),
        ).fetchall()
        ids = [row["paper_id"] for row in ranked]
        found = conn.execute(f"SELECT id, data FROM papers WHERE id IN ({','.join('?' * len(ids))})", ids)
        data = {row["id"]: row["data"] for row in found}
        return [Paper.model_validate_json(data[i]) for i in ids if i in data]
    sql = (
        f"SELECT p.data FROM papers_fts f JOIN papers p ON p.id = f.paper_id WHERE papers_fts MATCH ?"
        " AND (? IS NULL OR p.year >= ?) AND (? IS NULL OR p.year <= ?)"
        f" ORDER BY {weights} LIMIT ? OFFSET ?"
    )
    args = (match, year_from, year_from, year_to, year_to, limit, offset)
    return [Paper.model_validate_json(row["data"]) for row in conn.execute(sql, args)]


def set_body(store: Store, paper_id: str, text: str) -> None:
    """Index a paper's full text (after read_paper), so offline search finds words from its body."""
    with store.transaction() as conn:
        conn.execute("UPDATE papers_fts SET body = ? WHERE paper_id = ?", (text, paper_id))
