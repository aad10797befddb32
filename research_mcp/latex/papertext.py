"""`paper_text`: a workspace paper as text, an outline, or one of its lists, paged to a character budget."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from research_mcp.errors import BadInputError
from research_mcp.latex.models import Float, KeyUse, LatexDocument, NumberUse, Section
from research_mcp.latex.text import find_main_file, read_latex
from research_mcp.model import ToolModel

__all__ = ["PaperTextResult", "Show", "paper_text"]

Show = Literal["text", "cites", "refs", "labels", "floats", "numbers"]
_CACHE_SIZE = 8
_cache: OrderedDict[tuple[str, str], tuple[tuple[tuple[str, int, int], ...], LatexDocument]] = OrderedDict()
_cache_lock = threading.Lock()


class PaperTextResult(ToolModel):
    main: str = Field(description="The main .tex file read, relative to the workspace.")
    title: str | None = None
    outline: list[Section] = Field(description="Every heading with file, line and word count.")
    section: Section | None = Field(default=None, description="The section asked for, when one was.")
    show: Show
    text: str | None = Field(default=None, description="Paper text (untrusted data), when show='text'.")
    cites: list[KeyUse] | None = None
    refs: list[KeyUse] | None = None
    labels: list[KeyUse] | None = None
    floats: list[Float] | None = None
    numbers: list[NumberUse] | None = None
    total: int = Field(description="Characters of text, or items of the list shown, in all.")
    next_offset: int | None = Field(default=None, description="Pass as `offset` to get the next page.")
    counts: dict[str, int] = Field(description="Items of each list: cites, refs, labels, floats, numbers.")
    files: list[str] = Field(description="The source files read, relative to the workspace.")
    warnings: list[str] = Field(description="Inputs not followed (outside the paper folder, missing, ...).")


def _stamp(root: Path, files: list[str]) -> tuple[tuple[str, int, int], ...]:
    stamps: list[tuple[str, int, int]] = []
    for name in files:
        try:
            st = os.stat(root / name)
            stamps.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append((name, -1, -1))
    return tuple(stamps)


def _document(main: Path, paper: Path) -> LatexDocument:
    """read_latex, reused while none of the files it read has changed."""
    key = (str(main), str(paper))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and _stamp(paper, [stamp[0] for stamp in cached[0]]) == cached[0]:
        return cached[1]
    doc = read_latex(main, paper)
    with _cache_lock:
        _cache[key] = (_stamp(paper, doc.files), doc)
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return doc


def paper_text(
    workspace_root: Path,
    target: Path,
    *,
    section: int | str | None = None,
    show: Show = "text",
    offset: int = 0,
    max_chars: int = 24_000,
) -> PaperTextResult:
    """Read the paper at `target` (its main .tex file, or a folder holding one) inside `workspace_root`."""
    if target.is_dir():
        main = find_main_file(target)
        paper = target.resolve()
    elif target.suffix == ".tex":
        main, paper = target, target.parent
    else:
        raise BadInputError(f"{target.name!r} is not a .tex file or a folder. Give e.g. 'paper/main.tex' or 'paper'.")
    doc = _document(main, paper)
    prefix = paper.relative_to(workspace_root).as_posix()

    def rel(name: str) -> str:
        return name if prefix == "." else f"{prefix}/{name}"

    located = doc.model_copy(deep=True)
    for item in [*located.outline, *located.cites, *located.refs, *located.labels, *located.floats, *located.numbers]:
        item.file = rel(item.file)
    chosen = located.find_section(section) if section is not None else None
    counts = {name: len(getattr(located, name)) for name in ("cites", "refs", "labels", "floats", "numbers")}
    result = PaperTextResult(
        main=rel(main.relative_to(paper).as_posix()),
        title=doc.title,
        outline=located.outline,
        section=chosen,
        show=show,
        total=0,
        counts=counts,
        files=[rel(name) for name in doc.files],
        warnings=doc.warnings,
    )
    budget = max(1_000, max_chars - len(result.model_dump_json()))
    if show == "text":
        text = doc.section_text(chosen.index) if chosen is not None else doc.text
        result.total = len(text)
        if offset > len(text):
            raise BadInputError(f"offset {offset} is past the end of the text ({len(text)} characters).")
        page = text[offset : offset + budget]
        if offset + budget < len(text):
            cut = page.rfind("\n\n", budget // 2)
            page = page[:cut] if cut > 0 else page
        result.text = page
        end = offset + len(page)
        result.next_offset = end if end < len(text) else None
        return result
    items: list[BaseModel] = list(getattr(located, show))
    result.total = len(items)
    if offset > len(items):
        raise BadInputError(f"offset {offset} is past the end of the list ({len(items)} items).")
    used, end = 0, offset
    while end < len(items) and (used < budget or end == offset):
        used += len(items[end].model_dump_json()) + 1
        end += 1
    setattr(result, show, items[offset:end])
    result.next_offset = end if end < len(items) else None
    return result
