"""LaTeX source to plain text: `\\input` resolved safely, an outline, section text, cites, labels, floats, numbers.

Pure code (no MCP, no TeX run), used by `paper_text` for the draft and by `read_paper` for arXiv sources.

API (stable):

    find_main_file(root: Path) -> Path
        The top-level .tex file of a source folder: the one `00README.json` marks as toplevel, else a file with
        both `\\documentclass` and `\\begin{document}` (preferring main/ms/paper names, then files no other file
        includes, then the largest). Raises `LatexError` when there is none.

    read_latex(main: Path, root: Path | None = None, *, limits: TextLimits | None = None) -> LatexDocument
        Flattens `main` (every `\\input`, `\\include`, `\\subfile`, `\\import`, `\\subimport` followed, comments
        dropped) and converts the document body with pylatexenc, math kept as LaTeX. Included files are read only
        when they resolve (symlinks followed) to a regular file inside `root` (default: main's folder); an
        absolute path, a `..` escape, a cycle, a binary file or a limit reached is skipped with a warning in
        `LatexDocument.warnings`, never read. Raises `LatexError` if `main` itself cannot be read. Synchronous
        and CPU-bound (about 0.2 s for a 40 kB paper): call it from a worker thread.

    source_hash(root: Path, files: Sequence[str]) -> str
        The paper's identity as the audit, the reviews and the research status share it: a digest of the bytes of
        `files` (relative to `root`, as `LatexDocument.files` names them), comments and all, 16 hex digits.

    LatexDocument (a pydantic model; every location is a `file` relative to root plus a 1-based `line`):
        title, abstract          plain text or None
        outline: list[Section]   index, number ("3.2", "A.1" or None), title, level (LaTeX's depth: part -1,
                                 chapter 0, section 1, subsection 2, ...; the abstract and a thebibliography
                                 are level 1 entries), file, line, words and chars including subsections
        text                     the whole body as text, sections as markdown-style '#' headings
        section_text(index)      one outline entry's text with its subsections
        find_section(query)      the Section at an int index, or for a str: the printed number ("3.2"), else
                                 the title (case-insensitive: exact, prefix, substring); raises `LatexError`
                                 listing the outline
        cites, refs, labels: list[KeyUse]     key, first file/line, uses
        floats: list[Float]      kind (figure/table/algorithm/graphic), file, line, caption, labels, graphics
        numbers: list[NumberUse] text as written ("93.2%"), value, file, line, in_math, context
        files                    the files read, in order; bib_files: the \\bibliography / \\addbibresource names
        warnings                 what was skipped and why

In the text, citations read `[@key1; @key2]`, references `[ref: fig:x]`, floats `[Figure fig:x: caption]`
followed by a table's rows as `a | b | c`, footnotes `[footnote: ...]`, display math as its LaTeX.
"""

from __future__ import annotations

import bisect
import hashlib
import importlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from research_mcp.errors import LatexError
from research_mcp.latex._flatten import find_main_file, flatten
from research_mcp.latex._nodes import SECTION_LEVELS, Collector, arg, converter, is_heading, node_types, raw, squash
from research_mcp.latex._nodes import walker_db as _walker_db
from research_mcp.latex.models import Float, KeyUse, LatexDocument, NumberUse, Section, TextLimits

__all__ = [
    "Float",
    "KeyUse",
    "LatexDocument",
    "LatexError",
    "NumberUse",
    "Section",
    "TextLimits",
    "find_main_file",
    "read_latex",
    "source_hash",
]

_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_MATH_TEXT = re.compile(r"\$\$.*?\$\$|\$.*?\$|\\\[.*?\\\]|\\\(.*?\\\)|\\begin\{([a-z]+\*?)\}.*?\\end\{\1\}", re.S)


def source_hash(root: Path, files: Sequence[str]) -> str:
    """A digest of the named files' bytes (see the module docstring); a file that cannot be read counts as empty."""
    digest = hashlib.sha256()
    for name in files:
        try:
            data = (root / name).read_bytes()
        except OSError:
            data = b""
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:16]


def read_latex(main: Path, root: Path | None = None, *, limits: TextLimits | None = None) -> LatexDocument:
    """The document `main` as text, outline and lists (see the module docstring)."""
    limits = limits or TextLimits()
    root = (root or main.parent).resolve()
    flat = flatten(main, root, limits)
    source = "\n".join(flat.lines)
    starts = [0]
    for line in flat.lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    begin = re.search(r"\\begin\s*\{document\}", source)
    end = re.search(r"\\end\s*\{document\}", source)
    body_start = begin.end() if begin else 0
    body_end = end.start() if end and end.start() > body_start else len(source)
    preamble = source[:body_start]
    body = source[body_start:body_end]

    def where(pos: int) -> tuple[str, int]:
        return flat.origin[max(0, bisect.bisect_right(starts, body_start + pos) - 1)]

    nodes = _parse(body)
    to_text = converter()

    def text_of(items: Sequence[Any]) -> str:
        return str(to_text.nodelist_to_text([n for n in items if n is not None]))

    collector = Collector(where=where, source=body, text_of=text_of, limits=limits)
    collector.walk(nodes)
    doc = LatexDocument(files=flat.files, warnings=flat.warnings, bib_files=collector.bib_files)
    title = re.search(r"\\title(?![A-Za-z@])", preamble) or re.search(r"\\title(?![A-Za-z@])", body)
    title_src = _balanced(title.string, title.end()) if title else None
    if title_src is not None:
        title_src = re.sub(r"\\thanks\s*\{[^{}]*\}", "", title_src)
        doc.title = squash(text_of(_parse(title_src)).replace("\\\\", " ")) or None
    _split_sections(doc, nodes, where, text_of)
    for found in re.finditer(r"\\(?:bibliography|addbibresource)(?![A-Za-z@])", preamble):
        names = (_balanced(preamble, found.end()) or "").split(",")
        doc.bib_files += [n.strip() for n in names if n.strip() and n.strip() not in doc.bib_files]
    doc.cites = list(collector.cites.values())
    doc.refs = list(collector.refs.values())
    doc.labels = list(collector.labels.values())
    doc.floats = collector.floats
    doc.numbers = collector.numbers
    return doc


def _parse(latex: str) -> list[Any]:
    walker: Any = importlib.import_module("pylatexenc.latexwalker").LatexWalker(
        latex, latex_context=_walker_db(), tolerant_parsing=True
    )
    nodes: list[Any] = walker.get_latex_nodes()[0]
    return nodes


def _balanced(text: str, start: int) -> str | None:
    """The content of the brace group opening at `start` (after spaces, a star and one optional [...])."""
    i = start
    while i < len(text) and text[i] in " \t\n*":
        i += 1
    if i < len(text) and text[i] == "[":
        close = text.find("]", i)
        i = close + 1 if close >= 0 else i
        while i < len(text) and text[i] in " \t\n":
            i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] in "{}" and text[j - 1] == "\\":
            continue
        depth += 1 if text[j] == "{" else -1 if text[j] == "}" else 0
        if depth == 0:
            return text[i + 1 : j]
    return None


def _split_sections(
    doc: LatexDocument,
    nodes: list[Any],
    where: Callable[[int], tuple[str, int]],
    text_of: Callable[[Sequence[Any]], str],
) -> None:
    types = node_types()
    front: list[Any] = []
    chunks: list[tuple[Section, list[Any]]] = []
    current = front
    counters: dict[int, int] = {}
    top = max(0, min((SECTION_LEVELS[n.macroname] for n in nodes if is_heading(n)), default=1))
    appendix = False
    for node in nodes:
        if node.isNodeType(types["macro"]) and node.macroname == "appendix":
            appendix = True
            counters[top] = 0
            continue
        if node.isNodeType(types["env"]) and node.environmentname in ("abstract", "thebibliography"):
            file, line = where(node.pos)
            is_abstract = node.environmentname == "abstract"
            if is_abstract:
                doc.abstract = squash(text_of(node.nodelist)) or None
            title = "Abstract" if is_abstract else "References"
            chunks.append((Section(index=len(chunks), title=title, level=1, file=file, line=line), [node]))
            current = front if is_abstract and len(chunks) == 1 else chunks[-1][1]
            continue
        if node.isNodeType(types["macro"]) and node.macroname == "abstract" and arg(node, 0) is not None:
            doc.abstract = squash(text_of([arg(node, 0)])) or None
        if not is_heading(node):
            current.append(node)
            continue
        level = SECTION_LEVELS[node.macroname]
        number: str | None = None
        if raw(arg(node, 0)) != "*" and 0 <= level - top <= 2:
            counters[level] = counters.get(level, 0) + 1
            for deeper in [k for k in counters if k > level]:
                counters[deeper] = 0
            parts = [counters.get(k, 0) for k in range(top, level + 1)]
            first = chr(ord("A") + parts[0] - 1) if appendix and 1 <= parts[0] <= 26 else str(parts[0])
            number = ".".join([first, *(str(p) for p in parts[1:])])
        file, line = where(node.pos)
        title = squash(text_of([arg(node, -1)]))
        chunks.append((Section(index=len(chunks), number=number, title=title, level=level, file=file, line=line), []))
        current = chunks[-1][1]
    doc.front = re.sub(r"\n{3,}", "\n\n", text_of(front)).strip()
    doc.outline = [section for section, _ in chunks]
    doc.section_texts = [re.sub(r"\n{3,}", "\n\n", text_of(items)).strip() for _, items in chunks]
    if chunks and chunks[0][0].title == "Abstract":
        doc.section_texts[0] = doc.abstract or ""
    own_words = [len(_WORD.findall(_MATH_TEXT.sub(" ", text))) for text in doc.section_texts]
    for i, section in enumerate(doc.outline):
        words, chars = own_words[i], len(doc.section_texts[i])
        for later in doc.outline[i + 1 :]:
            if later.level <= section.level:
                break
            words += own_words[later.index]
            chars += len(doc.section_texts[later.index])
        section.words, section.chars = words, chars
