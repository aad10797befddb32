from __future__ import annotations

import os
from pathlib import Path

import pytest

from research_mcp.errors import BadInputError, BinaryFileError, FileToolError, NotFoundError, PathError
from research_mcp.tools import files
from research_mcp.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: main\n")
    (root / "src" / "train.py").write_text("import torch\nlr = 0.1\nprint(lr)\n")
    (root / "src" / "pkg" / "util.py").write_text("def f():\n    return 1\n")
    (root / "README.md").write_text("# demo\nRun `python src/train.py`.\n")
    return Workspace(root.resolve(), "setting")


def test_list_files_is_sorted_and_hides_vcs_folders(ws: Workspace) -> None:
    result = files.list_files(ws)
    assert [e.path for e in result.entries] == ["README.md", "src", "src/pkg", "src/pkg/util.py", "src/train.py"]
    assert result.next_offset is None and result.total == 5


def test_list_files_pages_with_next_offset(ws: Workspace) -> None:
    first = files.list_files(ws, limit=2)
    assert first.next_offset == 2
    second = files.list_files(ws, offset=first.next_offset or 0, limit=10)
    assert [e.path for e in first.entries + second.entries] == [e.path for e in files.list_files(ws).entries]


def test_list_files_filters_by_glob_and_depth(ws: Workspace) -> None:
    assert [e.path for e in files.list_files(ws, pattern="*.py").entries] == ["src/pkg/util.py", "src/train.py"]
    assert [e.path for e in files.list_files(ws, depth=1).entries] == ["README.md", "src"]
    assert [e.path for e in files.list_files(ws, pattern="src/*.py").entries] == ["src/pkg/util.py", "src/train.py"]


def test_list_files_shows_symlinks_without_following_them(ws: Workspace) -> None:
    (ws.root / "up").symlink_to(ws.root.parent)
    entries = {e.path: e.kind for e in files.list_files(ws).entries}
    assert entries["up"] == "symlink"
    assert not any(p.startswith("up/") for p in entries)


def test_read_file_returns_a_line_range_with_numbers(ws: Workspace) -> None:
    result = files.read_file(ws, "src/train.py", offset=2, limit=1)
    assert (result.text, result.start_line, result.end_line, result.next_offset) == ("lr = 0.1\n", 2, 2, 3)


def test_read_file_cuts_at_the_budget_and_says_where_to_go_on(ws: Workspace) -> None:
    (ws.root / "big.txt").write_text("".join(f"line {i} " + "x" * 90 + "\n" for i in range(1, 1001)))
    result = files.read_file(ws, "big.txt", max_chars=5_000, count_lines_up_to=1 << 20)
    assert len(result.text) <= 5_000 and result.next_offset is not None
    assert result.total_lines == 1000
    assert f"offset={result.next_offset}" in (result.note or "")
    rest = files.read_file(ws, "big.txt", offset=result.next_offset, limit=5000, max_chars=400_000)
    assert rest.text.startswith(f"line {result.next_offset} ") and rest.next_offset is None and rest.end_line == 1000


def test_a_huge_single_line_is_cut_with_a_marker(ws: Workspace) -> None:
    (ws.root / "one.json").write_text("[" + "1," * 500_000 + "1]")
    result = files.read_file(ws, "one.json")
    assert "line cut" in result.text and len(result.text) < 5_000


def test_reading_past_the_end_is_a_clear_error(ws: Workspace) -> None:
    with pytest.raises(BadInputError, match="3 lines"):
        files.read_file(ws, "src/train.py", offset=10)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "PNG"),
        (b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 4, "PDF"),
        (b"\x00\x01\x02garbage" * 10, "binary"),
    ],
)
def test_binary_files_are_refused_with_type_and_size(ws: Workspace, content: bytes, kind: str) -> None:
    (ws.root / "blob").write_bytes(content)
    with pytest.raises(BinaryFileError) as info:
        files.read_file(ws, "blob")
    assert kind in str(info.value) and str(len(content)) in str(info.value)


def test_latin1_text_is_read_with_replacement_characters(ws: Workspace) -> None:
    (ws.root / "old.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    assert files.read_file(ws, "old.txt").text == "caf\ufffd au lait\n"


def test_reading_a_folder_or_a_missing_file_says_what_to_call(ws: Workspace) -> None:
    with pytest.raises(FileToolError, match="list_files"):
        files.read_file(ws, "src")
    with pytest.raises(NotFoundError, match="list_files"):
        files.read_file(ws, "missing.py")


def test_write_file_creates_folders_and_reports_creation(ws: Workspace) -> None:
    result = files.write_file(ws, "exp/run1/config.json", '{"lr": 0.1}', max_bytes=1 << 20)
    assert result.created and (ws.root / "exp/run1/config.json").read_text() == '{"lr": 0.1}'
    again = files.write_file(ws, "exp/run1/config.json", "{}", max_bytes=1 << 20)
    assert not again.created and again.size_bytes == 2


def test_write_file_keeps_the_mode_and_leaves_no_temp_files(ws: Workspace) -> None:
    script = ws.root / "run.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    files.write_file(ws, "run.sh", "echo bye\n", max_bytes=1 << 20)
    assert script.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in ws.root.iterdir()) == [".git", "README.md", "run.sh", "src"]


def test_write_file_refuses_the_state_folder_and_oversize_content(ws: Workspace) -> None:
    with pytest.raises(PathError, match=r"\.research"):
        files.write_file(ws, ".research/state.db", "x", max_bytes=1 << 20)
    with pytest.raises(FileToolError, match="limit"):
        files.write_file(ws, "big.txt", "x" * 2000, max_bytes=1000)
    assert not (ws.root / "big.txt").exists()


def test_edit_file_replaces_exactly_one_occurrence(ws: Workspace) -> None:
    result = files.edit_file(ws, "src/train.py", "lr = 0.1", "lr = 0.01", False, 1 << 20)
    assert result.first_line == 2 and result.replacements == 1
    assert (ws.root / "src/train.py").read_text() == "import torch\nlr = 0.01\nprint(lr)\n"


def test_edit_file_refuses_an_absent_string_and_changes_nothing(ws: Workspace) -> None:
    before = (ws.root / "src/train.py").read_bytes()
    with pytest.raises(FileToolError, match="read_file"):
        files.edit_file(ws, "src/train.py", "lr = 0.5", "lr = 1", False, 1 << 20)
    assert (ws.root / "src/train.py").read_bytes() == before


def test_edit_file_refuses_an_ambiguous_string_naming_the_lines(ws: Workspace) -> None:
    (ws.root / "dup.py").write_text("x = 1\ny = 2\nx = 1\n")
    with pytest.raises(FileToolError, match=r"2 times.*lines 1, 3.*replace_all"):
        files.edit_file(ws, "dup.py", "x = 1", "x = 3", False, 1 << 20)
    result = files.edit_file(ws, "dup.py", "x = 1", "x = 3", True, 1 << 20)
    assert result.replacements == 2 and (ws.root / "dup.py").read_text() == "x = 3\ny = 2\nx = 3\n"


def test_edit_file_matches_across_windows_line_endings(ws: Workspace) -> None:
    (ws.root / "win.txt").write_bytes(b"a\r\nb\r\nc\r\n")
    files.edit_file(ws, "win.txt", "a\nb", "A\nB", False, 1 << 20)
    assert (ws.root / "win.txt").read_bytes() == b"A\r\nB\r\nc\r\n"


def test_grep_finds_lines_with_numbers_in_sorted_order(ws: Workspace) -> None:
    result = files.grep(ws, r"lr|return")
    assert [(m.path, m.line) for m in result.matches] == [
        ("src/pkg/util.py", 2),
        ("src/train.py", 2),
        ("src/train.py", 3),
    ]
    assert result.files_searched == 3


def test_grep_pages_and_filters(ws: Workspace) -> None:
    first = files.grep(ws, "lr", max_matches=1)
    assert first.next_offset == 1
    second = files.grep(ws, "lr", offset=1, max_matches=1)
    assert [m.line for m in first.matches + second.matches] == [2, 3] and second.next_offset is None
    assert files.grep(ws, "LR", glob="*.md", ignore_case=True).matches == []
    assert len(files.grep(ws, "RUN", glob="*.md", ignore_case=True).matches) == 1


def test_grep_skips_binaries_and_rejects_bad_patterns(ws: Workspace) -> None:
    (ws.root / "w.bin").write_bytes(b"\x00lr\x00" * 100)
    result = files.grep(ws, "lr")
    assert any(s.startswith("w.bin") for s in result.skipped)
    with pytest.raises(BadInputError, match="regular expression"):
        files.grep(ws, "(unclosed")


def test_list_files_stops_a_page_at_the_character_budget(ws: Workspace) -> None:
    for i in range(300):
        (ws.root / f"{'long_name_' * 8}{i:03}.txt").write_text("")
    page = files.list_files(ws, limit=1000, max_chars=5_000)
    assert 0 < len(page.entries) < 300 and page.next_offset == len(page.entries)
    assert sum(len(e.model_dump_json()) for e in page.entries) < 5_000


def test_a_fifo_is_refused_without_blocking(ws: Workspace) -> None:
    os.mkfifo(ws.root / "pipe")
    with pytest.raises(FileToolError, match="not a regular file"):
        files.read_file(ws, "pipe")
    assert all(not s.startswith("pipe") or "regular" in s for s in files.grep(ws, "x").skipped)


def test_a_symlink_loop_is_an_error_not_a_crash(ws: Workspace) -> None:
    (ws.root / "loop_a").symlink_to(ws.root / "loop_b")
    (ws.root / "loop_b").symlink_to(ws.root / "loop_a")
    with pytest.raises((FileToolError, PathError)):
        files.read_file(ws, "loop_a")
    files.write_file(ws, "loop_a", "x", max_bytes=100)  # the looping link is replaced, inside the workspace
    assert sorted(p.name for p in ws.root.iterdir() if p.name.startswith("loop")) == ["loop_a", "loop_b"]


def test_list_files_says_which_folders_it_hid(ws: Workspace) -> None:
    assert ".git" in (files.list_files(ws).note or "")
    shown = files.list_files(ws, include_ignored=True)
    assert ".git/HEAD" in [e.path for e in shown.entries] and shown.note is None


def test_written_files_get_the_mode_an_editor_would_give_them_and_keep_their_own(ws: Workspace) -> None:
    """A new file is not left 0600 as mkstemp makes it: sandboxes running as another user read it."""
    files.write_file(ws, "new.txt", "x", 100)
    assert (ws.root / "new.txt").stat().st_mode & 0o777 == 0o666 & ~_current_umask()
    (ws.root / "new.txt").chmod(0o640)
    files.write_file(ws, "new.txt", "y", 100)
    assert (ws.root / "new.txt").stat().st_mode & 0o777 == 0o640


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
