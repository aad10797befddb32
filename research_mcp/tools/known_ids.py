"""What argument completion offers from the state store: run labels and review ids, those starting with what the
client typed, the most recent first."""

from __future__ import annotations

from research_mcp.store import Store

__all__ = ["MAX_OFFERED", "like_prefix", "review_ids", "run_labels"]

MAX_OFFERED = 1000


def like_prefix(typed: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') for values starting with `typed`, its wildcards taken literally."""
    return typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def run_labels(store: Store, typed: str, limit: int = MAX_OFFERED) -> list[str]:
    """The labels of the workspace's runs that start with `typed`, the most recently used first."""
    rows = store.connection().execute(
        "SELECT label FROM runs WHERE label LIKE ? ESCAPE '\\' GROUP BY label ORDER BY max(created_at) DESC, label "
        "LIMIT ?",
        (like_prefix(typed), limit),
    )
    return [str(row["label"]) for row in rows]


def review_ids(store: Store, typed: str, limit: int = MAX_OFFERED) -> list[str]:
    """The ids of the workspace's review sets that start with `typed`, the most recently updated first."""
    rows = store.connection().execute(
        "SELECT id FROM review_sets WHERE id LIKE ? ESCAPE '\\' ORDER BY updated_at DESC, id LIMIT ?",
        (like_prefix(typed), limit),
    )
    return [str(row["id"]) for row in rows]
