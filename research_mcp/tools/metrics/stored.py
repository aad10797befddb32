"""Comparisons kept in the state store: every `compare_runs` answer with its groups, runs and statistics, so a
p-value, interval or effect size written in a paper traces back to the comparison that made it.

    store_comparison(store, result, idea_id=None) -> str      the comparison's id ("cmp-" + 12 hex digits)
    load_comparisons(store) -> list[StoredComparison]          oldest first

The id is a digest of the answer, so storing the same comparison twice keeps one row.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from research_mcp.store import Store
from research_mcp.tools.metrics.compare import CompareRunsResult

__all__ = ["StoredComparison", "load_comparisons", "store_comparison"]


@dataclass(frozen=True)
class StoredComparison:
    id: str
    result: CompareRunsResult
    idea_id: str | None
    created_at: float


def store_comparison(store: Store, result: CompareRunsResult, idea_id: str | None = None) -> str:
    """Keep one `compare_runs` answer; returns its id."""
    data = result.model_dump_json()
    comparison_id = "cmp-" + hashlib.blake2b(data.encode(), digest_size=6).hexdigest()
    store.connection().execute(
        "INSERT OR IGNORE INTO comparisons (id, metric, data, idea_id, created_at) VALUES (?, ?, ?, ?, ?)",
        (comparison_id, result.metric, data, idea_id, time.time()),
    )
    return comparison_id


def load_comparisons(store: Store, limit: int = 5000) -> list[StoredComparison]:
    """The stored comparisons, oldest first (at most `limit`, the newest of them)."""
    rows = (
        store.connection()
        .execute("SELECT id, data, idea_id, created_at FROM comparisons ORDER BY created_at DESC, id LIMIT ?", (limit,))
        .fetchall()
    )
    found = [
        StoredComparison(
            id=str(row["id"]),
            result=CompareRunsResult.model_validate(json.loads(row["data"])),
            idea_id=row["idea_id"],
            created_at=float(row["created_at"]),
        )
        for row in rows
    ]
    return found[::-1]
