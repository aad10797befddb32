"""The package's floors: imports only run down, errors -> ground -> sandbox -> latex -> tools -> server -> cli
(and demo, beside cli, which starts it).

Every import counts, those inside functions (loaded on first use) and under TYPE_CHECKING too: an arrow up is
a cycle waiting for the first caller that takes both paths.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "research_mcp"
FLOORS = {
    "errors": 0,
    "model": 1, "fileio": 1, "workspace": 1, "config": 1, "store": 1, "progress": 1, "probe": 1,
    "imaging": 1, "depfiles": 1,
    "sandbox": 2,
    "latex": 3,
    "tools": 4,
    "server": 5,
    "cli": 6, "__main__": 6,
    "demo": 6,  # a scripted MCP client: it spawns the server and speaks to it, never imports it
    "__init__": 0,  # the version, nothing else
}  # fmt: skip
"""The floor of each top-level module or package of research_mcp; a module may import its own floor or lower."""


def _floor(module: str) -> int:
    top = module.split(".")[1] if module.startswith("research_mcp.") else module
    assert top in FLOORS, f"research_mcp.{top} has no floor: add it to FLOORS"
    return FLOORS[top]


def _submodule(name: str) -> str:
    """`from research_mcp import X`: the submodule X, or the package itself for a name it defines."""
    return f"research_mcp.{name}" if name in FLOORS else "research_mcp.__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "research_mcp" else [_submodule(a.name) for a in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("research_mcp.")]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_every_import_runs_down_the_floors(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    own = _floor(f"research_mcp.{rel.parts[0].removesuffix('.py')}")
    up = [f"line {line}: {name}" for line, name in _imports(path) if _floor(name) > own]
    assert not up, f"research_mcp/{rel} imports from a higher floor: {up}"


def test_the_ground_floor_imports_nothing_of_the_floors_above_it() -> None:
    assert all(_floor(name) <= 1 for path in PACKAGE.glob("*.py") if FLOORS[path.stem] <= 1
               for _, name in _imports(path))  # fmt: skip
