from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from research_mcp.errors import NotFoundError, PathError, WorkspaceError
from research_mcp.workspace import choose_workspace, resolve_path, root_from_uri


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "ws"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "outside.txt").write_text("secret")
    return folder.resolve()


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/etc/passwd", "absolute"),
        ("\\windows\\x", "absolute"),
        ("C:\\x", "absolute"),
        ("~/x", "absolute"),
        ("../outside.txt", "'..'"),
        ("src/../../outside.txt", "'..'"),
        ("src\\..\\..\\x", "'..'"),
        ("a\x00b", "NUL"),
        ("x" * 2000, "longer than"),
        ("a/" + "b" * 300, "longer than 255"),
        ("\u202e..txt", "U+202E"),
        ("\uff0e\uff0e/outside.txt", "'..'"),
        ("a\nb", "U+000A"),
    ],
)
def test_each_rule_is_named_in_the_refusal(root: Path, path: str, rule: str) -> None:
    with pytest.raises(PathError) as info:
        resolve_path(root, path)
    assert rule in str(info.value)


def test_a_symlink_leading_outside_is_refused(root: Path) -> None:
    (root / "link").symlink_to(root.parent)
    with pytest.raises(PathError, match="symlink"):
        resolve_path(root, "link/outside.txt")


def test_a_symlink_inside_the_workspace_is_followed(root: Path) -> None:
    (root / "alias").symlink_to(root / "src")
    assert resolve_path(root, "alias/a.py") == root / "src" / "a.py"


def test_dot_and_empty_name_the_root(root: Path) -> None:
    assert resolve_path(root, ".") == root
    assert resolve_path(root, "") == root
    assert resolve_path(root, "./src//a.py") == root / "src" / "a.py"


def test_must_exist_raises_not_found_with_a_hint(root: Path) -> None:
    with pytest.raises(NotFoundError, match="list_files"):
        resolve_path(root, "nope.txt", must_exist=True)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_any_string_resolves_inside_the_workspace_or_is_refused(root: Path, path: str) -> None:
    try:
        resolved = resolve_path(root, path)
    except PathError:
        return
    assert resolved == root or resolved.is_relative_to(root)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["..", ".", "src", "a.py", "", "link", "\u2024\u2024", "%2e%2e"]), max_size=6))
def test_joined_traversal_pieces_never_escape(root: Path, parts: list[str]) -> None:
    if not (root / "link").exists():
        (root / "link").symlink_to(root.parent)
    try:
        resolved = resolve_path(root, "/".join(parts))
    except PathError:
        return
    assert resolved == root or resolved.is_relative_to(root)


def test_the_setting_wins_over_roots_and_cwd(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ws = choose_workspace(tmp_path / "a", [(tmp_path / "b").as_uri()], cwd=tmp_path)
    assert (ws.root, ws.source) == ((tmp_path / "a").resolve(), "setting")


def test_the_first_file_root_is_used_when_no_setting(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    ws = choose_workspace(None, ["https://example.org/x", (tmp_path / "b").as_uri()], cwd=tmp_path)
    assert (ws.root, ws.source) == ((tmp_path / "b").resolve(), "roots")


def test_the_cwd_is_the_fallback(tmp_path: Path) -> None:
    ws = choose_workspace(None, None, cwd=tmp_path)
    assert (ws.root, ws.source) == (tmp_path.resolve(), "cwd")


@pytest.mark.parametrize("cwd", [Path("/"), Path.home()])
def test_the_filesystem_root_and_home_are_never_a_fallback_workspace(cwd: Path) -> None:
    with pytest.raises(WorkspaceError, match="--workspace"):
        choose_workspace(None, None, cwd=cwd)


def test_a_root_at_slash_is_ignored_too(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError):
        choose_workspace(None, ["file:///"], cwd=Path("/"))


def test_a_missing_workspace_setting_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="not a folder"):
        choose_workspace(tmp_path / "nope", None)


def test_file_uris_with_escapes_decode() -> None:
    assert root_from_uri("file:///home/u/my%20project") == Path("/home/u/my project")
    assert root_from_uri("file://otherhost/x") is None
    assert os.fspath(root_from_uri("file://localhost/x") or "") == "/x"
