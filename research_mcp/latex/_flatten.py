"""Flatten a LaTeX source tree: follow `\\input`-like commands inside one root folder, keep each line's origin.

Nothing outside the root is ever opened: a name is joined to its base folder, symlinks are resolved with
`os.path.realpath`, and the result must be a regular file under the root. Comments are dropped (so a
commented-out `\\input` is not followed); verbatim-like environments are kept as they are.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from research_mcp.errors import LatexError
from research_mcp.latex.models import TextLimits

__all__ = ["Flat", "find_main_file", "flatten", "contained", "strip_comment"]

logger = logging.getLogger(__name__)


@dataclass
class Flat:
    """The flattened source: its lines, each line's (file, line) origin, the files read and what was skipped."""

    root: Path
    lines: list[str] = field(default_factory=list[str])
    origin: list[tuple[str, int]] = field(default_factory=list[tuple[str, int]])
    files: list[str] = field(default_factory=list[str])
    warnings: list[str] = field(default_factory=list[str])
    total_bytes: int = 0

    def add(self, text: str, file: str, line: int) -> None:
        self.lines.append(text)
        self.origin.append((file, line))


_VERBATIM_BEGIN = re.compile(r"\\begin\s*\{(verbatim\*?|Verbatim|lstlisting|minted|comment|filecontents\*?)\}")
_INCLUDE = re.compile(
    r"\\(?P<cmd>input|include|subfile|InputIfFileExists)(?![A-Za-z@])\s*\{(?P<name>[^{}]*)\}"
    r"|\\(?P<icmd>import|subimport|inputfrom|subinputfrom|includefrom|subincludefrom)\*?\s*"
    r"\{(?P<dir>[^{}]*)\}\s*\{(?P<iname>[^{}]*)\}"
    r"|\\input(?![A-Za-z@])\s+(?P<bare>[^\s{}\\%]+)"
)
_ENDINPUT = re.compile(r"\\endinput(?![A-Za-z@])")


def strip_comment(line: str) -> str:
    """The line without its TeX comment (an unescaped `%` to the end of the line)."""
    if "%" not in line:
        return line
    backslashes = 0
    for i, char in enumerate(line):
        if char == "\\":
            backslashes += 1
            continue
        if char == "%" and backslashes % 2 == 0:
            return line[:i]
        backslashes = 0
    return line


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def contained(root: Path, path: str) -> Path | None:
    real = os.path.realpath(path)
    base = str(root)
    if real == base or not real.startswith(base.rstrip(os.sep) + os.sep):
        return None
    return Path(real)


def _resolve_input(flat: Flat, name: str, bases: Sequence[Path]) -> tuple[Path | None, str | None]:
    """The file an input names, or None and why it was refused or not found."""
    name = name.strip().strip('"')
    if not name or "\x00" in name:
        return None, "an empty or invalid name"
    if name.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", name):
        return None, "an absolute path (refused: only files inside the paper folder are read)"
    candidates = [name + ".tex", name] if not name.endswith(".tex") else [name]
    escaped = False
    for base in bases:
        for candidate in candidates:
            joined = os.path.join(base, candidate)
            if not os.path.exists(joined):
                continue
            inside = contained(flat.root, joined)
            if inside is None:
                escaped = True
                continue
            if inside.is_file():
                return inside, None
    if escaped:
        return None, "a path outside the paper folder (refused)"
    return None, "no such file in the paper folder"


def _flatten_file(flat: Flat, path: Path, main_dir: Path, stack: list[Path], limits: TextLimits) -> None:
    rel = path.relative_to(flat.root).as_posix()
    try:
        size = path.stat().st_size
    except OSError as exc:
        flat.warnings.append(f"{rel}: cannot be read ({exc.strerror}).")
        return
    if len(flat.files) >= limits.max_files or flat.total_bytes + size > limits.max_total_bytes:
        flat.warnings.append(
            f"{rel}: not read, the limit of {limits.max_files} files / {limits.max_total_bytes} bytes."
        )
        return
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        flat.warnings.append(f"{rel}: a binary file, not read as LaTeX.")
        return
    flat.total_bytes += size
    flat.files.append(rel)
    verbatim_end: str | None = None
    for number, raw in enumerate(_decode(data).splitlines(), start=1):
        if verbatim_end is not None:
            flat.add(raw, rel, number)
            if verbatim_end in raw:
                verbatim_end = None
            continue
        line = strip_comment(raw)
        if (begin := _VERBATIM_BEGIN.search(line)) is not None and f"\\end{{{begin.group(1)}}}" not in line:
            verbatim_end = f"\\end{{{begin.group(1)}}}"
        end = _ENDINPUT.search(line)
        if end is not None:
            line = line[: end.start()]
        _expand_line(flat, line, rel, number, path, main_dir, stack, limits)
        if end is not None:
            break


def _expand_line(
    flat: Flat, line: str, rel: str, number: int, path: Path, main_dir: Path, stack: list[Path], limits: TextLimits
) -> None:
    pos = 0
    for match in _INCLUDE.finditer(line):
        flat.add(line[pos : match.start()], rel, number)
        pos = match.end()
        if match.group("icmd"):
            cmd, folder, name = match.group("icmd"), match.group("dir"), match.group("iname")
            if folder.strip().startswith(("/", "~")):
                flat.warnings.append(f"{rel}:{number}: \\{cmd}{{{folder}}} is an absolute path (refused).")
                continue
            start = path.parent if cmd.startswith("sub") else main_dir
            bases = [start / folder.strip()]
        else:
            cmd, name = match.group("cmd") or "input", match.group("name") or match.group("bare") or ""
            bases = [main_dir, path.parent] if path.parent != main_dir else [main_dir]
        target, why = _resolve_input(flat, name, bases)
        if target is None:
            flat.warnings.append(f"{rel}:{number}: \\{cmd}{{{name}}} not followed: {why}.")
            continue
        if target in stack:
            flat.warnings.append(f"{rel}:{number}: \\{cmd}{{{name}}} not followed: it would include itself.")
            continue
        if len(stack) >= limits.max_depth:
            flat.warnings.append(f"{rel}:{number}: \\{cmd}{{{name}}} not followed: inputs nested too deep.")
            continue
        stack.append(target)
        _flatten_file(flat, target, main_dir, stack, limits)
        stack.pop()
    flat.add(line[pos:], rel, number)


def find_main_file(root: Path) -> Path:
    """The top-level .tex file of a source folder (see the module docstring)."""
    root = root.resolve()
    readme = root / "00README.json"
    if readme.is_file():
        try:
            sources: list[dict[str, Any]] = json.loads(readme.read_text(encoding="utf-8")).get("sources", [])
            for source in sources:
                if source.get("usage") == "toplevel":
                    found = contained(root, str(root / str(source.get("filename", ""))))
                    if found is not None and found.is_file():
                        return found
        except (ValueError, AttributeError, OSError) as exc:
            logger.info("00README.json unreadable: %s", exc)
    candidates: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = [] if depth >= 3 else sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if not filename.endswith(".tex"):
                continue
            path = Path(dirpath) / filename
            if contained(root, str(path)) is None or path.stat().st_size > 5_000_000:
                continue
            text = "\n".join(strip_comment(line) for line in _decode(path.read_bytes()).splitlines())
            candidates.append((path, text))
    mains = [(p, t) for p, t in candidates if "\\documentclass" in t and "\\begin{document}" in t]
    if not mains:
        raise LatexError(
            f"No main .tex file (one with \\documentclass and \\begin{{document}}) in {root.name!r}; "
            f"{len(candidates)} .tex files were looked at."
        )
    included = {
        m.group("name") or m.group("iname") or m.group("bare") for _, t in candidates for m in _INCLUDE.finditer(t)
    }
    included_stems = {Path(name.strip()).stem for name in included if name}

    def rank(item: tuple[Path, str]) -> tuple[int, int, int]:
        path, text = item
        named = path.stem.lower() in ("main", "ms", "paper", "manuscript", "article", "root")
        return (int(not named), int(path.stem in included_stems), -len(text))

    return min(mains, key=rank)[0]


def flatten(main: Path, root: Path, limits: TextLimits) -> Flat:
    """Flatten `main` (already inside the resolved `root`); raise `LatexError` if main itself cannot be read."""
    found = contained(root, str(main))
    if found is None or not found.is_file():
        raise LatexError(f"{main.name!r} is not a file inside the paper folder {root.name!r}.")
    flat = Flat(root=root)
    _flatten_file(flat, found, found.parent, [found], limits)
    if not flat.files:
        raise LatexError(f"{main.name!r} cannot be read: {'; '.join(flat.warnings)}")
    return flat
