from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from research_mcp.errors import StoreError
from research_mcp.store import CACHE_MIGRATIONS, WORKSPACE_MIGRATIONS, Store


def test_a_new_store_has_every_table_and_the_latest_schema(tmp_path: Path) -> None:
    store = Store(tmp_path / ".research" / "state.db")
    names = {r[0] for r in store.connection().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"papers", "runs", "run_events", "reviews", "api_cache"} <= names
    assert store.schema_version == len(WORKSPACE_MIGRATIONS)
    assert store.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_a_later_migration_is_applied_once_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    extended = (*WORKSPACE_MIGRATIONS, ("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)",))
    store = Store(path, extended)
    assert store.schema_version == len(extended)
    store.close()
    Store(path, extended).close()  # a second open applies nothing and does not fail


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="Upgrade research-mcp"):
        Store(path)


def test_an_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises((StoreError, OSError)):
        Store(tmp_path / "file" / "state.db")


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute(
            "INSERT INTO runs (id, backend, command, workdir, state, created_at) "
            "VALUES ('r1', 'local', 'x', '.', 'queued', 0)"
        )
        raise RuntimeError("boom")
    assert store.connection().execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_the_api_cache_honours_expiry(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache.db", CACHE_MIGRATIONS)
    store.cache_put("k", "arxiv", 200, b"<feed/>", {"content-type": "application/atom+xml"}, ttl_s=10, now=100)
    assert store.cache_get("k", now=105) == (200, b"<feed/>", {"content-type": "application/atom+xml"})
    assert store.cache_get("k", now=111) is None
    assert store.cache_get("missing") is None


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from research_mcp.store import Store
    store = Store(Path(sys.argv[1]))
    name = sys.argv[2]
    for i in range(200):
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO runs (id, backend, command, workdir, state, created_at) "
                "VALUES (?, 'local', 'x', '.', 'done', ?)",
                (f"{name}-{i}", time.time()),
            )
            now = time.time()
            conn.execute("INSERT INTO run_events (run_id, at, kind) VALUES (?, ?, 'done')", (f"{name}-{i}", now))
        store.cache_put(f"{name}-{i}", "test", 200, b"x")
    print("ok")
    """
)


def test_four_processes_open_and_write_one_workspace_side_by_side(tmp_path: Path) -> None:
    db = tmp_path / "ws" / ".research" / "state.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), name], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name in ("a", "b", "c", "d")
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err.decode()[-2000:] for _, err in outputs]
    store = Store(db)
    conn = store.connection()
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 800
    assert conn.execute("SELECT count(*) FROM run_events").fetchone()[0] == 800
    assert conn.execute("SELECT count(*) FROM api_cache").fetchone()[0] == 800
    assert store.schema_version == len(WORKSPACE_MIGRATIONS)
