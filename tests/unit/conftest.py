"""Fixtures of the unit tests: a workspace in a temporary folder and its state store (a module may override)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from research_mcp.store import Store
from research_mcp.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path.resolve(), "setting")


@pytest.fixture
def store(ws: Workspace) -> Iterator[Store]:
    opened = Store(ws.state_dir / "state.db")
    yield opened
    opened.close()
