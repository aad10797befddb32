"""The server's shape: tools/list, annotations, toolsets, read-only mode, and bad input of every kind."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_types import TextContent

from research_mcp.config import Settings
from research_mcp.server import build_server

pytestmark = pytest.mark.anyio

FILE_TOOLS = {"list_files", "read_file", "write_file", "edit_file", "grep"}
PLANNED_TOOLS = {  # DESIGN.md's tools: a description may name one only once it exists
    "search_papers", "get_paper", "paper_graph", "read_paper", "cite", "verify_citations", "find_code", "fetch_repo",
    "repo_summary", "read_metrics", "compare_runs", "plot_metrics", "results_table", "new_paper", "compile_paper",
    "paper_text", "audit_paper", "review_paper", "submit_review", "lab_info", "list_files", "read_file", "write_file",
    "edit_file", "grep", "run_experiment", "run_status", "run_logs", "cancel_run", "list_runs", "ideas",
    "research_status",
}  # fmt: skip
RUN_TOOLS = {
    "run_experiment", "run_sweep", "run_status", "run_logs", "cancel_run", "list_runs", "prepare_env", "list_envs"
}  # fmt: skip
DATA_TOOLS = {"prepare_data", "rerun"}
FAMILY_TOOLS = {
    "files": FILE_TOOLS,
    "sandbox": RUN_TOOLS | DATA_TOOLS,
    "literature": {"search_papers", "get_paper", "paper_graph", "read_paper", "cite", "verify_citations"},
    "repos": {"find_code", "fetch_repo", "repo_summary"},
    "metrics": {"read_metrics", "compare_runs", "plot_metrics", "results_table"},
    "latex": {"new_paper", "compile_paper", "paper_text"},
    "review": {"audit_paper", "review_paper", "submit_review"},
    "pipeline": {"ideas", "research_status"},
}
ALL_TOOLS = {"lab_info"}.union(*FAMILY_TOOLS.values())
READ_ONLY_TOOLS = {  # the literature tools cache what they fetch, so none of them is read-only
    "lab_info", "list_files", "read_file", "grep", "run_status", "run_logs", "list_runs", "repo_summary",
    "read_metrics", "compare_runs", "paper_text", "research_status",
}  # fmt: skip
PATH_ARGS: dict[str, tuple[str, dict[str, Any]]] = {
    "list_files": ("path", {}),
    "read_file": ("path", {}),
    "write_file": ("path", {"content": "pwned"}),
    "edit_file": ("path", {"old_string": "root", "new_string": "pwned"}),
    "grep": ("path", {"pattern": "root"}),
    "repo_summary": ("path", {}),
    "read_metrics": ("source", {}),
    "verify_citations": ("path", {}),
    "new_paper": ("dir", {"title": "Pwned"}),
    "compile_paper": ("main", {}),
    "paper_text": ("path", {}),
    "review_paper": ("path", {}),
}


async def test_every_tool_has_a_description_annotations_and_an_output_schema(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == ALL_TOOLS
    offered = {t.name for t in tools}
    for tool in tools:
        assert tool.description and len(tool.description) > 40, tool.name
        assert "\n " not in tool.description, f"{tool.name}: docstring indentation sent to the model"
        named = set(re.findall(r"\b([a-z]+_[a-z_]+)\b", tool.description)) & PLANNED_TOOLS
        assert named <= offered, f"{tool.name} points the model at tools it does not have: {named - offered}"
        assert tool.annotations is not None and tool.annotations.read_only_hint is not None, tool.name
        assert tool.annotations.open_world_hint is not None, tool.name
        assert tool.output_schema is not None and tool.output_schema.get("type") == "object", tool.name
        assert "ctx" not in tool.input_schema.get("properties", {}) and "ws" not in tool.input_schema.get(
            "properties", {}
        )


async def test_read_only_mode_lists_exactly_the_read_only_tools(workspace: Path) -> None:
    async with Client(build_server(Settings(workspace=workspace))) as client:
        everything = (await client.list_tools()).tools
    async with Client(build_server(Settings(workspace=workspace, read_only=True))) as client:
        offered = (await client.list_tools()).tools
        result = await client.call_tool("write_file", {"path": "x", "content": "y"})
        assert result.is_error
    expected = {t.name for t in everything if t.annotations and t.annotations.read_only_hint}
    assert {t.name for t in offered} == expected
    assert expected == READ_ONLY_TOOLS
    assert not (workspace / "x").exists()


@pytest.mark.parametrize("toolsets", [["review"], ["latex"], ["files", "metrics"], ["literature", "repos", "sandbox"]])
async def test_toolsets_choose_the_families_and_lab_info_is_always_there(workspace: Path, toolsets: list[Any]) -> None:
    expected = {"lab_info"}.union(*(FAMILY_TOOLS.get(name, set()) for name in toolsets))
    async with Client(build_server(Settings(workspace=workspace, toolsets=toolsets))) as client:
        assert {t.name for t in (await client.list_tools()).tools} == expected


def _text(result: Any) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, TextContent))


BAD_ARGUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("read_file", {}, "path"),
    ("read_file", {"path": 42}, "path"),
    ("read_file", {"path": "a", "offset": 0}, "offset"),
    ("read_file", {"path": "a", "limit": "many"}, "limit"),
    ("list_files", {"depth": 10_000}, "depth"),
    ("grep", {"pattern": ""}, "pattern"),
    ("grep", {"pattern": "x", "max_matches": -1}, "max_matches"),
    ("write_file", {"path": "a"}, "content"),
    ("write_file", {"path": "x" * 10_000, "content": ""}, "path"),
    ("edit_file", {"path": "a", "old_string": "", "new_string": "b"}, "old_string"),
    ("no_such_tool", {}, "no_such_tool"),
    ("write_file", {"path": "big.txt", "content": "x" * (21 << 20)}, "byte limit"),
    ("read_file", {"path": "a", "offset": 10**40}, "'a'"),
    ("list_files", {"pattern": ["*.py"]}, "pattern"),
    ("grep", {"pattern": "x", "path": None}, "path"),
    ("run_status", {}, "run_id"),
    ("run_status", {"run_id": "20260101-000000-abcdef"}, "list_runs"),
    ("run_logs", {"run_id": "../../etc/passwd"}, "list_runs"),
    ("cancel_run", {"run_id": "nope"}, "list_runs"),
    ("run_status", {"run_id": "x", "wait_s": 600}, "wait_s"),
    ("run_experiment", {"command": ""}, "command"),
    ("run_experiment", {"command": "true", "gpus": -1}, "gpus"),
    ("run_experiment", {"command": "true", "workdir": None}, "no code"),
    ("run_experiment", {"command": "true", "env": {"A=B": "1"}}, "Environment variable"),
    ("run_experiment", {"command": "true", "files": {"../x.py": ""}}, "'..'"),
    ("run_experiment", {"command": "true", "workdir": "../"}, "'..'"),
    ("run_experiment", {"command": "true", "parent": "nope"}, "list_runs"),
    ("list_runs", {"status": "exploded"}, "status"),
]


@pytest.mark.parametrize(("tool", "args", "named"), BAD_ARGUMENTS)
async def test_bad_arguments_give_a_clear_error_and_the_server_keeps_serving(
    client: Client, tool: str, args: dict[str, Any], named: str
) -> None:
    with anyio.fail_after(10):
        result = await client.call_tool(tool, args)
    assert result.is_error and named in _text(result)
    assert not (await client.call_tool("list_files", {})).is_error


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under `folder` with its size and mtime, symlinks not followed."""
    out: dict[str, tuple[int, int]] = {}
    for base, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(base, name)
            info = path.lstat()
            out[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return out


ATTACKS = st.one_of(
    st.sampled_from(
        [
            "../outside.txt",
            "../outside.tex",
            "link/outside.tex",
            "../../etc/passwd",
            "/etc/passwd",
            "link/outside.txt",
            "link",
            "sub/../../outside.txt",
            "a\x00b",
            "\u202e/txt.exe",
            "\uff0e\uff0e/outside.txt",
            "..\\outside.txt",
            "~/.ssh/id_rsa",
            "x/" * 600,
            "%2e%2e/outside.txt",
            "\u2025/outside.txt",
        ]
    ),
    st.lists(
        st.sampled_from(["..", "link", ".", "sub", "\u2024\u2024", "outside.txt", "outside.tex"]),
        min_size=1,
        max_size=5,
    ).map("/".join),
    st.text(min_size=1, max_size=40),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tool=st.sampled_from(sorted(PATH_ARGS)), path=ATTACKS)
async def test_path_attacks_never_touch_anything_outside_the_workspace(tmp_path: Path, tool: str, path: str) -> None:
    parent = tmp_path / "attack"
    workspace = parent / "ws"
    if not workspace.exists():
        (workspace / "sub").mkdir(parents=True)
        (parent / "outside.txt").write_text("root secret\n")  # what the LaTeX tools would read or compile:
        (parent / "outside.tex").write_text("\\documentclass{article}\\begin{document}root secret\\end{document}\n")
        (workspace / "link").symlink_to(parent)
    outside_before = {k: v for k, v in snapshot(parent).items() if not k.startswith("ws")}
    key, extra = PATH_ARGS[tool]
    async with Client(build_server(Settings(workspace=workspace)), raise_exceptions=True) as client:
        with anyio.fail_after(10):
            result = await client.call_tool(tool, {key: path, **extra})
        text = _text(result)
        assert "root secret" not in text and "root:x:0:0" not in text
        if result.is_error:
            assert "Traceback" not in text and text.strip() != f"Error executing tool {tool}"
    outside_after = {k: v for k, v in snapshot(parent).items() if not k.startswith("ws")}
    assert outside_after == outside_before
