"""What is checked in a paper's sources before TeX runs: rc files and magic comments (ignored, and said so),
bibliographies outside the paper folder or remote (refused: biber does not obey TeX's file-access settings),
symbolic links leading out of the folder when there is no sandbox; and a biblatex .bcf before biber reads it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from research_mcp.errors import LatexError
from research_mcp.latex._flatten import flatten
from research_mcp.latex.logparse import Diagnostic
from research_mcp.latex.models import TextLimits
from research_mcp.latex.versions import VERSIONS_DIR

__all__ = ["BUILD_DIR", "Preflight", "bcf_refusals", "preflight", "source_line"]

BUILD_DIR = ".build"
_RC_FILES = ("latexmkrc", ".latexmkrc", "_latexmkrc", "latexmkrc.pl")
_MAGIC = re.compile(r"^%\s*!\s*TEX\s+(?P<key>[\w-]+)\s*=\s*(?P<value>.*)$", re.I)
_BIBRES = re.compile(
    r"\\(?P<cmd>addbibresource|addglobalbib|addsectionbib|bibliography)\s*(?:\[(?P<opts>[^\]]*)\])?\s*\{(?P<names>[^}]*)\}"
)
_BIBLATEX = re.compile(r"\\usepackage\s*(?:\[[^\]]*\])?\s*\{[^}]*\bbiblatex\b|\\addbibresource")


@dataclass
class Preflight:
    refused: list[Diagnostic] = field(default_factory=list[Diagnostic])
    """Reasons not to compile at all."""
    notes: list[str] = field(default_factory=list[str])
    """What was ignored (rc files, magic comments)."""
    uses_biblatex: bool = False


def preflight(root: Path, main: Path, sandboxed: bool) -> Preflight:
    """Read the sources (`main` inside the workspace `root`) before TeX does."""
    paper = main.parent
    checked = Preflight()
    refused = checked.refused

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    for name in _RC_FILES:
        if (paper / name).exists():
            checked.notes.append(f"{name} was not run: latexmk starts with -norc (an rc file is Perl code).")
    try:
        flat = flatten(main, paper, TextLimits(max_numbers=0))
    except LatexError as exc:
        raise LatexError(f"{rel(main)} cannot be read: {exc}") from exc
    with open(main, encoding="utf-8", errors="replace") as handle:
        head = [handle.readline() for _ in range(40)]
    for line, text in enumerate(head, start=1):
        magic = _MAGIC.match(text.strip())
        if magic is not None:
            checked.notes.append(
                f"{main.name}:{line}: '% !TEX {magic.group('key')} = {magic.group('value').strip()}' ignored: "
                "the compile always runs pdflatex without shell escape."
            )
    for text, (file, line) in zip(flat.lines, flat.origin, strict=True):
        for found in _BIBRES.finditer(text):
            why = _bib_refusal(found)
            if why is not None:
                source = source_line(paper / file, line)
                where = rel(paper / file)
                refused.append(Diagnostic(severity="error", file=where, line=line, message=why, source=source))
    if not sandboxed:
        escape = _escaping_link(paper)
        if escape is not None:
            refused.append(
                Diagnostic(
                    severity="error",
                    file=rel(paper / escape),
                    message=f"{escape} is a symbolic link leading outside the paper folder; without bubblewrap TeX "
                    "would follow it. Replace it with a copy of the file, or install bubblewrap.",
                )
            )
    checked.uses_biblatex = any(_BIBLATEX.search(line) for line in flat.lines)
    return checked


def _bib_refusal(found: re.Match[str]) -> str | None:
    options = (found.group("opts") or "").replace(" ", "").lower()
    cmd = found.group("cmd")
    if "location=remote" in options:
        return (
            f"\\{cmd}[{found.group('opts')}]{{{found.group('names')}}} refused: a remote bibliography would be "
            "downloaded by biber. Save the .bib file in the paper folder and name it instead."
        )
    for name in (n.strip() for n in found.group("names").split(",")):
        parts = name.replace("\\", "/").split("/")
        hidden = any(part.startswith(".") and part not in (".", "..") for part in parts)
        if name.startswith(("/", "~")) or ".." in parts or hidden or "://" in name or re.match(r"^[A-Za-z]:", name):
            return (
                f"\\{cmd}{{{name}}} refused: bibliography files must be inside the paper folder, named by a relative "
                "path without hidden folders (biber does not obey TeX's file-access settings). Copy the .bib file "
                "into the paper folder."
            )
    return None


def _escaping_link(paper: Path) -> str | None:
    base = str(paper.resolve())
    count = 0
    for folder, dirs, files in os.walk(paper):
        dirs[:] = [d for d in dirs if d not in (BUILD_DIR, VERSIONS_DIR)]
        for name in dirs + files:
            count += 1
            path = os.path.join(folder, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if real != base and not real.startswith(base + os.sep):
                    return os.path.relpath(path, paper)
        if count > 20_000:
            break
    return None


_DATASOURCE = re.compile(r"<bcf:datasource(?P<attrs>[^>]*)>(?P<name>[^<]*)</bcf:datasource>")


def bcf_refusals(bcf: Path) -> list[str]:
    """Data sources biber would read that are not files inside the paper folder (the .bcf names them all)."""
    refused: list[str] = []
    for found in _DATASOURCE.finditer(bcf.read_text(encoding="utf-8", errors="replace")):
        name, attrs = found.group("name").strip(), found.group("attrs")
        parts = name.replace("\\", "/").split("/")
        remote = 'type="file"' not in attrs
        if remote or name.startswith(("/", "~")) or any(p.startswith(".") and p != "." for p in parts):
            refused.append(
                f"biber was not run: its data source {name!r} is "
                + ("remote" if remote else "outside the paper folder")
                + " (biber does not obey TeX's file-access settings). Name a .bib file inside the paper folder."
            )
    return refused


def source_line(path: Path, line: int | None) -> str | None:
    if line is None or line < 1:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if number == line:
                    return text.rstrip("\n")[:300]
    except OSError:
        return None
    return None
