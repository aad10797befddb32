"""Every listed tool, called with arguments drawn from the input schema it lists, in a workspace full of traps.

Whatever the arguments, a call ends as a result or as an error that says what went wrong: never a bare
`Error executing tool X`, never an internal error, never a traceback in the text, and nothing changes in the
folder beside the workspace. The traps: regular files where folders are expected and the reverse, a symlink
out, a read-only folder, a FIFO, a `runs` file; the network tools point at a closed port on 127.0.0.1 and runs
are bounded by short timeouts. The seed is printed at the end of the run (`RESEARCH_MCP_FUZZ_SEED` replays it).
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client
from mcp_types import CallToolResult, TextContent

from research_mcp.config import Settings
from research_mcp.server import build_server
from tests.conftest import FUZZ_SEED, open_for_sandbox

EXAMPLES_PER_TOOL = int(os.environ.get("RESEARCH_MCP_FUZZ_EXAMPLES", "12"))
TRAPS = [
    ".", "..", "runs", "runs/x", "paper", "paper/refs.bib", "paper/main.tex", "notes.txt", "notes.txt/sub",
    "folder.tex", "folder.tex/main.tex", "refs.bib", "out", "out/secret.txt", "ro", "ro/new.txt", "pipe.fifo",
    "data.csv", "metrics.jsonl", "../outside/secret.txt", "/etc/passwd", "a\x00b", "~", "-rf", "*", "[",
]  # fmt: skip
"""Values each string argument may take besides the schema's own draws: the workspace's traps."""
_CAPS = {"wait_s": 0.5, "timeout_s": 3, "depth": 4, "limit": 50, "tail": 200}
"""Numbers bounded so that a call stays short: runs end within seconds, listings stay small."""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lay_traps(root: Path) -> None:
    (root / "runs").write_text("a file where the runs folder goes\n")
    (root / "paper").write_text("a file where the paper folder goes\n")
    (root / "notes.txt").write_text("notes\n")
    (root / "folder.tex").mkdir()
    (root / "refs.bib").mkdir()
    (root / "out").symlink_to(root.parent / "outside")
    (root / "ro").mkdir()
    (root / "ro" / "kept.txt").write_text("kept\n")
    (root / "ro").chmod(0o555)
    os.mkfifo(root / "pipe.fifo")
    (root / "data.csv").write_text("step,loss\n1,0.5\n2,0.25\n")
    (root / "metrics.jsonl").write_text('{"step": 1, "val_acc": 0.5}\n{"step": 2, "val_acc": 0.75}\n')


def _tree(folder: Path) -> dict[str, tuple[int, int, int]]:
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            st_ = os.lstat(os.path.join(dirpath, name))
            found[os.path.relpath(os.path.join(dirpath, name), folder)] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return found


def _with_traps(schema: dict[str, Any]) -> dict[str, Any]:
    """The listed schema, with every free string also able to be a trap and the costly numbers capped."""
    schema = copy.deepcopy(schema)
    schema.pop("title", None)

    def visit(node: Any, name: str | None = None) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():  # pyright: ignore[reportUnknownVariableType]
            if key == "properties":
                out[key] = {prop: visit(sub, prop) for prop, sub in value.items()}  # pyright: ignore[reportUnknownVariableType]
            else:
                out[key] = visit(value)
        if name in _CAPS and out.get("type") in ("integer", "number"):
            out["maximum"] = min(out.get("maximum", _CAPS[name]), _CAPS[name])
            out.pop("exclusiveMaximum", None)
        if out.get("type") == "string" and "enum" not in out and "const" not in out:
            return {"anyOf": [out, {"enum": TRAPS}]}
        return out

    return visit(schema)


_LONG = (0, 1, 64, 201, 1025, 4001, 20_001)
"""String lengths worth trying: limits the listed schema may not state but the code behind it has."""


def _text(node: dict[str, Any]) -> SearchStrategy[str]:
    low, high = node.get("minLength", 0), node.get("maxLength", 25_000)
    lengths = sorted({n for n in (low, high, *_LONG) if low <= n <= high})
    return st.one_of(
        st.text(min_size=low, max_size=max(low, min(high, 40))),
        st.sampled_from(lengths).map(lambda n: ("ab./- x" * (n // 7 + 1))[:n]),
    )


def _number(node: dict[str, Any], integer: bool) -> SearchStrategy[Any]:
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    if integer:
        low = None if low is None else int(low) + (1 if "exclusiveMinimum" in node else 0)
        high = None if high is None else int(high) - (1 if "exclusiveMaximum" in node else 0)
        return st.integers(
            min_value=low if low is not None else -(10**7), max_value=high if high is not None else 10**7
        )
    return st.floats(
        min_value=low, max_value=high, allow_nan=False, allow_infinity=False,
        exclude_min="exclusiveMinimum" in node, exclude_max="exclusiveMaximum" in node,
    )  # fmt: skip


def from_schema(node: Any, defs: dict[str, Any] | None = None) -> SearchStrategy[Any]:
    """Values valid under a JSON schema of the kinds tools list: objects, arrays, scalars, enums, anyOf, $ref."""
    if not isinstance(node, dict) or not node:
        return st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
    found: dict[str, Any] = node.get("$defs", {}) if defs is None else defs
    if "$ref" in node:
        return st.deferred(lambda: from_schema(found[node["$ref"].rsplit("/", 1)[-1]], found))
    defs = found
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "const" in node:
        return st.just(node["const"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            return st.one_of([from_schema(option, defs) for option in node[key]])
    kind = node.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**node, "type": one}, defs) for one in kind])
    if kind == "string":
        return _text(node)
    if kind in ("integer", "number"):
        return _number(node, kind == "integer")
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        high = min(node.get("maxItems", 5), 5)
        return st.lists(from_schema(node.get("items", {}), defs), min_size=node.get("minItems", 0), max_size=high)
    properties: dict[str, Any] = node.get("properties", {})
    required = set(node.get("required", []))
    fixed = {name: from_schema(sub, defs) for name, sub in properties.items() if name in required}
    optional = {name: from_schema(sub, defs) for name, sub in properties.items() if name not in required}
    extra = node.get("additionalProperties")
    if not properties and isinstance(extra, dict):
        return st.dictionaries(_text({"maxLength": 30}), from_schema(extra, defs), max_size=3)
    return st.fixed_dictionaries(fixed, optional=optional)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("fuzz")
    outside = base / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text("secret\n")
    root = base / "project"
    root.mkdir()
    _lay_traps(root)
    open_for_sandbox(base, root)
    yield root, outside
    (root / "ro").chmod(0o755)


@pytest.fixture(scope="module")
def session(
    watched: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BlockingPortal, Client, dict[str, dict[str, Any]]]]:
    root, _ = watched
    closed = f"http://127.0.0.1:{_closed_port()}"
    server_settings = Settings(
        workspace=root,
        data_dir=tmp_path_factory.mktemp("fuzz-data"),
        arxiv_url=f"{closed}/api/query",
        arxiv_files_url=closed,
        s2_url=closed,
        github_url=closed,
        literature_timeout_s=3,
        arxiv_interval_s=0,
        s2_interval_s=0,
        repo_timeout_s=3,
        latex_timeout_s=10,
        probe_timeout_s=3,
        max_concurrent_runs=2,
    )
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())
        client = stack.enter_context(portal.wrap_async_context_manager(Client(build_server(server_settings))))
        listed = {tool.name: tool.input_schema for tool in portal.call(client.list_tools).tools}
        yield portal, client, listed
        for run in _active_runs(portal, client):  # nothing is left running
            portal.call(client.call_tool, "cancel_run", {"run_id": run})


def _active_runs(portal: BlockingPortal, client: Client) -> list[str]:
    found: list[str] = []
    for status in ("queued", "starting", "running"):
        result = portal.call(client.call_tool, "list_runs", {"status": status, "limit": 200})
        structured = result.structured_content or {}
        found += [run["id"] for run in structured.get("runs", [])]
    return found


def _listed_names() -> list[str]:
    from research_mcp.server._manifest import FAMILIES, collect

    return [spec.name for family in FAMILIES for spec in collect(family)]


def _check(name: str, arguments: dict[str, Any], result: CallToolResult) -> None:
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if not result.is_error:
        return
    assert texts, f"{name}{arguments!r}: an error with no text"
    text = texts[0]
    assert text.strip() != f"Error executing tool {name}", f"{name}{arguments!r}: a bare error"
    assert "Internal error" not in text, f"{name}{arguments!r}: {text}"
    assert "Traceback (most recent call last)" not in text, f"{name}{arguments!r}: {text}"


TRAP_CALLS = [
    ("new_paper", {"title": "T", "dir": "notes.txt/sub"}, "notes.txt"),
    ("write_file", {"path": "paper/refs.bib", "content": "@misc{a}"}, "paper/refs.bib"),
    ("run_experiment", {"command": "true"}, "runs"),
    ("run_experiment", {"command": "true", "label": "x" * 201}, "label"),
    ("run_experiment", {"command": "true", "note": "x" * 4001}, "note"),
    ("run_experiment", {"command": "x" * 20_001}, "command"),
    ("read_file", {"path": "pipe.fifo"}, "pipe.fifo"),
    ("write_file", {"path": "out/secret.txt", "content": "x"}, "out/secret.txt"),
    ("list_files", {"path": "notes.txt/sub"}, "notes.txt/sub"),
    ("compile_paper", {"main": "folder.tex"}, "folder.tex"),
]
"""Calls that once ended as a bare error: each must now name what is wrong (the third item must appear).
They run before the fuzz, which may replace the traps."""


@pytest.mark.parametrize(
    ("name", "arguments", "named"), TRAP_CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(TRAP_CALLS)]
)
def test_a_trap_is_answered_with_what_is_wrong(
    name: str,
    arguments: dict[str, Any],
    named: str,
    session: tuple[BlockingPortal, Client, dict[str, dict[str, Any]]],
) -> None:
    portal, client, _ = session
    result = portal.call(client.call_tool, name, arguments)
    [block, *_] = result.content
    assert result.is_error and isinstance(block, TextContent), (name, arguments, result)
    _check(name, arguments, result)
    assert named in block.text and "validation error" not in block.text, block.text


@pytest.mark.parametrize("name", _listed_names())
def test_fuzzed_arguments_never_end_in_a_bare_or_internal_error(
    name: str,
    session: tuple[BlockingPortal, Client, dict[str, dict[str, Any]]],
    watched: tuple[Path, Path],
) -> None:
    portal, client, listed = session
    _, outside = watched
    before = _tree(outside)
    schema = _with_traps(listed[name])
    strategy = from_schema(schema, schema.get("$defs", {}))

    @seed(FUZZ_SEED)
    @settings(
        max_examples=EXAMPLES_PER_TOOL,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        arguments: dict[str, Any] = data.draw(strategy, label="arguments")
        result = portal.call(client.call_tool, name, arguments)
        _check(name, arguments, result)

    fuzz()
    assert _tree(outside) == before, f"{name} changed the folder beside the workspace"
