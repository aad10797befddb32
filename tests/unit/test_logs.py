"""Reading log.txt in pieces: line numbers that agree between the tail, the pages and the count, on any text."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from research_mcp.sandbox.logs import count_lines, line_cost, read_range, read_tail

LINES = st.lists(st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=60),
                 max_size=40)  # fmt: skip


def write(lines: list[str], final_newline: bool) -> tuple[Path, list[str]]:
    """The log file, and the lines a reader should see in it: split at newlines only, a carriage return before one
    dropped, no line after a final newline."""
    path = Path(tempfile.mkdtemp()) / "log.txt"
    text = "\n".join(lines) + ("\n" if final_newline else "")
    path.write_bytes(text.encode())
    expected = text.split("\n")
    if expected[-1] == "":
        expected.pop()
    return path, [line.removesuffix("\r") for line in expected]


@settings(max_examples=150, deadline=None)
@given(LINES, st.booleans(), st.integers(min_value=1, max_value=7), st.integers(min_value=120, max_value=2000))
def test_paging_from_the_first_line_reads_every_line_once_within_the_budget(
    lines: list[str], final_newline: bool, limit: int, max_chars: int
) -> None:
    path, expected = write(lines, final_newline)
    assert count_lines(path) == len(expected)
    seen: list[str] = []
    offset: int | None = 1
    while offset is not None:
        page, following = read_range(path, offset, limit, max_chars)
        assert len(page) <= limit and sum(map(line_cost, page)) <= max_chars
        assert following is None or (page and following == offset + len(page))
        seen += page
        offset = following
    assert len(seen) == len(expected)
    for got, line in zip(seen, expected, strict=True):
        if line_cost(line) <= max_chars:
            assert got == line
        else:  # one line longer than the whole budget: cut, marked, and within it
            kept, _, mark = got.rpartition(" [research-mcp: line cut, ")
            assert line.startswith(kept) and mark == f"{len(line)} characters]" and line_cost(got) <= max_chars


@settings(max_examples=150, deadline=None)
@given(LINES, st.integers(min_value=1, max_value=50))
def test_the_tail_is_the_last_lines_and_its_first_line_number_follows_from_the_count(
    lines: list[str], tail: int
) -> None:
    path, expected = write(lines, True)
    got = read_tail(path, tail, 24_000)
    assert got == expected[len(expected) - len(got) :] and len(got) == min(tail, len(expected))
    assert count_lines(path) == len(expected)
