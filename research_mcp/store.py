"""The state store: one SQLite database per workspace (`.research/state.db`) and one global API cache.

SQLite in WAL mode with a busy timeout, so two server processes on one workspace work side by side.
The schema is a numbered list of migrations; `PRAGMA user_version` records how many have run, and they
are applied inside one `BEGIN IMMEDIATE` transaction so two processes starting together never both apply
one. A later feature adds its tables by appending a migration, never by editing an old one.

Connections are per thread (the sync tools run in worker threads), in autocommit mode; `transaction()`
opens an explicit one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from research_mcp.errors import StoreError

__all__ = ["CACHE_MIGRATIONS", "WORKSPACE_MIGRATIONS", "Store"]

logger = logging.getLogger(__name__)

Migration = Sequence[str]

WORKSPACE_MIGRATIONS: tuple[Migration, ...] = (
    (
        """CREATE TABLE papers (
            id TEXT PRIMARY KEY,
            arxiv_id TEXT, doi TEXT, s2_id TEXT,
            title TEXT NOT NULL, year INTEGER,
            data TEXT NOT NULL,
            added_at REAL NOT NULL, updated_at REAL NOT NULL)""",
        "CREATE UNIQUE INDEX papers_arxiv ON papers(arxiv_id) WHERE arxiv_id IS NOT NULL",
        "CREATE UNIQUE INDEX papers_doi ON papers(doi) WHERE doi IS NOT NULL",
        "CREATE UNIQUE INDEX papers_s2 ON papers(s2_id) WHERE s2_id IS NOT NULL",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            backend TEXT NOT NULL, image TEXT, command TEXT NOT NULL, workdir TEXT NOT NULL,
            code_hash TEXT, limits TEXT NOT NULL DEFAULT '{}',
            label TEXT, config TEXT, seed INTEGER, parent TEXT REFERENCES runs(id), note TEXT,
            state TEXT NOT NULL, exit_code INTEGER, failure TEXT,
            handle TEXT, owner TEXT,
            created_at REAL NOT NULL, started_at REAL, ended_at REAL)""",
        "CREATE INDEX runs_state ON runs(state)",
        "CREATE INDEX runs_label ON runs(label)",
        "CREATE INDEX runs_parent ON runs(parent)",
        """CREATE TABLE run_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(id),
            at REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}')""",
        "CREATE INDEX run_events_run ON run_events(run_id, id)",
        """CREATE TABLE reviews (
            id TEXT PRIMARY KEY,
            paper TEXT NOT NULL, reviewer TEXT NOT NULL,
            form TEXT NOT NULL, created_at REAL NOT NULL)""",
        """CREATE TABLE api_cache (
            key TEXT PRIMARY KEY,
            source TEXT NOT NULL, status INTEGER NOT NULL, body BLOB NOT NULL,
            headers TEXT NOT NULL DEFAULT '{}',
            fetched_at REAL NOT NULL, expires_at REAL)""",
    ),
    (
        "ALTER TABLE runs ADD COLUMN detail TEXT",
        "ALTER TABLE runs ADD COLUMN peak_memory_bytes INTEGER",
    ),
    (  # the literature library's full-text index: titles, authors, abstracts and read full texts
        """CREATE VIRTUAL TABLE papers_fts USING fts5(
            paper_id UNINDEXED, title, authors, abstract, body,
            tokenize = 'porter unicode61 remove_diacritics 2')""",
        "ALTER TABLE papers ADD COLUMN saved_at REAL",  # set by get_paper, cite, read_paper; NULL: only seen
    ),
    (  # what the paper audit traces numbers to and what it found; review sets and the forms filled in them
        """CREATE TABLE comparisons (
            id TEXT PRIMARY KEY,
            metric TEXT NOT NULL, data TEXT NOT NULL, idea_id TEXT,
            created_at REAL NOT NULL)""",
        """CREATE TABLE audits (
            id TEXT PRIMARY KEY,
            main TEXT NOT NULL, paper_hash TEXT NOT NULL, data TEXT NOT NULL, idea_id TEXT,
            created_at REAL NOT NULL)""",
        "CREATE INDEX audits_main ON audits(main, created_at)",
        """CREATE TABLE review_sets (
            id TEXT PRIMARY KEY,
            paper TEXT NOT NULL, paper_hash TEXT NOT NULL, mode TEXT NOT NULL, state TEXT NOT NULL,
            data TEXT NOT NULL, idea_id TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL)""",
        "ALTER TABLE reviews ADD COLUMN review_id TEXT REFERENCES review_sets(id)",
        "CREATE INDEX reviews_set ON reviews(review_id)",
    ),
    (  # research ideas, the searches that judged their novelty, the user's approvals; the runs made for an idea
        """CREATE TABLE ideas (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL, data TEXT NOT NULL,
            created_at REAL NOT NULL, updated_at REAL NOT NULL)""",
        """CREATE TABLE novelty_searches (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            idea_id TEXT NOT NULL REFERENCES ideas(id),
            tool TEXT NOT NULL, query TEXT NOT NULL, arguments TEXT NOT NULL DEFAULT '{}',
            paper_ids TEXT NOT NULL, degraded INTEGER NOT NULL DEFAULT 0, at REAL NOT NULL)""",
        "CREATE INDEX novelty_searches_idea ON novelty_searches(idea_id, id)",
        """CREATE TABLE approvals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            idea_id TEXT NOT NULL REFERENCES ideas(id),
            approved INTEGER NOT NULL, source TEXT NOT NULL, words TEXT, plan_hash TEXT NOT NULL,
            at REAL NOT NULL)""",
        "CREATE INDEX approvals_idea ON approvals(idea_id, id)",
        "ALTER TABLE runs ADD COLUMN idea_id TEXT REFERENCES ideas(id)",
        "CREATE INDEX runs_idea ON runs(idea_id)",
    ),
    (  # what a run ran in and read (its environment, earlier runs' files, datasets), and the sweeps runs belong to;
        # kind: 'run' (the model's), 'env' (an environment build), 'data' (a dataset download or preprocessing)
        "ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'run'",
        "ALTER TABLE runs ADD COLUMN env_id TEXT",
        "ALTER TABLE runs ADD COLUMN inputs TEXT",
        "ALTER TABLE runs ADD COLUMN datasets TEXT",
        """CREATE TABLE sweeps (
            id TEXT PRIMARY KEY,
            command TEXT NOT NULL, grid TEXT NOT NULL, seeds TEXT NOT NULL, backend TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL)""",
        "ALTER TABLE runs ADD COLUMN sweep_id TEXT REFERENCES sweeps(id)",
        "CREATE INDEX runs_sweep ON runs(sweep_id)",
    ),
)

CACHE_MIGRATIONS: tuple[Migration, ...] = (WORKSPACE_MIGRATIONS[0][-1:],)  # api_cache only


@contextmanager
def _init_lock(lock_path: Path) -> Generator[None]:
    """Serialise the first open across processes: switching a new database to WAL does not wait for a lock
    the way transactions do (busy_timeout is not honoured there), so two servers starting together could fail."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; concurrent first opens are not serialised there
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Store:
    """A SQLite database with numbered migrations, safe to share between threads and processes."""

    def __init__(self, path: Path, migrations: Sequence[Migration] = WORKSPACE_MIGRATIONS) -> None:
        self.path = path
        self._migrations = migrations
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _init_lock(path.with_name(path.name + ".lock")):
                self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(
                f"Cannot open the state database {str(path)!r}: {exc}. Check that the folder is writable."
            ) from exc

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; WAL; foreign keys on; waits up to 10 s for a lock)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")  # once, under the init lock: persistent, in the file
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def transaction(self, *, immediate: bool = True) -> Generator[sqlite3.Connection]:
        """An explicit transaction; `immediate` takes the write lock at once, so it never fails half-way."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self.connection().execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self.transaction() as conn:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current > len(self._migrations):
                raise StoreError(
                    f"{str(self.path)!r} has schema version {current}, newer than this research-mcp knows "
                    f"({len(self._migrations)}). Upgrade research-mcp."
                )
            for number in range(current, len(self._migrations)):
                for statement in self._migrations[number]:
                    conn.execute(statement)
                logger.info("state store %s: applied migration %d", self.path, number + 1)
            conn.execute(f"PRAGMA user_version = {len(self._migrations)}")

    def cache_get(self, key: str, *, now: float | None = None) -> tuple[int, bytes, dict[str, str]] | None:
        """A cached API response (status, body, headers) that has not expired, else None."""
        row = (
            self.connection()
            .execute("SELECT status, body, headers, expires_at FROM api_cache WHERE key = ?", (key,))
            .fetchone()
        )
        if row is None:
            return None
        moment = time.time() if now is None else now
        if row["expires_at"] is not None and row["expires_at"] <= moment:
            return None
        headers: dict[str, str] = json.loads(row["headers"])
        return int(row["status"]), bytes(row["body"]), headers

    def cache_put(
        self,
        key: str,
        source: str,
        status: int,
        body: bytes,
        headers: dict[str, Any] | None = None,
        *,
        ttl_s: float | None = None,
        now: float | None = None,
    ) -> None:
        moment = time.time() if now is None else now
        self.connection().execute(
            "INSERT OR REPLACE INTO api_cache (key, source, status, body, headers, fetched_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, source, status, body, json.dumps(headers or {}), moment, None if ttl_s is None else moment + ttl_s),
        )

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
