"""Read a pdfTeX log (written with -file-line-error and max_print_line raised, so lines are not wrapped), the
compiler's terminal output and a BibTeX/biber .blg into structured diagnostics.

No maintained Python library parses TeX logs with file tracking (texoutparse, 2019, keeps no file stack), so this
is a small parser of its own: errors come with the file and line TeX printed (`./sections/a.tex:12: ...`);
warnings that name only an input line take the file from the `(file ... )` nesting TeX writes as it reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from research_mcp.model import ToolModel

__all__ = ["BlgReport", "Diagnostic", "LogReport", "parse_blg", "parse_log"]


class Diagnostic(ToolModel):
    severity: Literal["error", "warning"]
    file: str | None = Field(default=None, description="Source file as TeX names it, relative to the paper folder.")
    line: int | None = None
    message: str
    context: str | None = Field(default=None, description="TeX's excerpt of the line where it stopped.")
    source: str | None = Field(default=None, description="That line of the source file.")


@dataclass
class LogReport:
    errors: list[Diagnostic] = field(default_factory=list[Diagnostic])
    warnings: list[Diagnostic] = field(default_factory=list[Diagnostic])
    undefined_references: list[str] = field(default_factory=list[str])
    undefined_citations: list[str] = field(default_factory=list[str])
    missing_files: list[str] = field(default_factory=list[str])
    blocked: list[str] = field(default_factory=list[str])
    overfull_boxes: int = 0
    underfull_boxes: int = 0
    pages: int | None = None
    rerun_needed: bool = False


@dataclass
class BlgReport:
    errors: list[str] = field(default_factory=list[str])
    warnings: list[str] = field(default_factory=list[str])
    missing_files: list[str] = field(default_factory=list[str])


_FILE_LINE = re.compile(r"^(?P<file>(?:\.{0,2}/|[A-Za-z]:)?[^:\n]*?\.[A-Za-z0-9]+):(?P<line>\d+): (?P<msg>.*)$")
_BANG = re.compile(r"^! (?P<msg>.*)$")
_CONTEXT = re.compile(r"^l\.(?P<line>\d+) ?(?P<text>.*)$")
_WARNING = re.compile(r"^(?P<who>LaTeX|LaTeX Font|Package [\w.-]+|Class [\w.-]+|pdfTeX) Warning: (?P<msg>.*)$")
_INPUT_LINE = re.compile(r"on input line (\d+)")
_UNDEF_REF = re.compile(r"Reference [`'](?P<key>.+?)' on page \S+ undefined")
_UNDEF_CITE = re.compile(r"Citation [`'](?P<key>.+?)' on page \S+ undefined")
_BOX = re.compile(r"^(?P<kind>Overfull|Underfull) \\[hv]box \((?P<what>[^)]*)\)(?:.*?lines? (?P<line>\d+))?")
_MISSING = re.compile(r"File [`'](?P<name>[^']+)' not found|I can't find file [`'](?P<bare>[^']+)'")
_BLOCKED = re.compile(
    r"Not (?P<verb>reading from|writing to) (?P<path>.+?) \((?P<var>open(?:in|out)_any) = p\)"
    r"|runsystem\((?P<cmd>.*?)\)\.\.\.disabled"
)
_OUTPUT = re.compile(r"^Output written on .+? \((?P<pages>\d+) pages?, \d+ bytes\)\.", re.M)
_FILE_OPEN = re.compile(
    r"\((?P<path>(?:\./|/|\.\./)[^\s()]*|[\w./-]+\.(?:tex|sty|cls|bbl|aux|clo|cfg|def|fd|toc|lof|lot|out|ltx|bib))"
)
_NOISE = (
    "Emergency stop.",
    "==> Fatal error occurred, no output PDF file produced!",
    "Job aborted, no legal \\end found",
)
_SUMMARIES = (
    "There were undefined references.",
    "There were undefined citations.",
    "There were multiply-defined labels.",
    "Label(s) may have changed. Rerun to get cross-references right.",
)
MAX_KEPT = 200


def _clean(path: str) -> str:
    return path[2:] if path.startswith("./") else path


class _Files:
    """The stack of files TeX has open, from the parentheses in the log."""

    def __init__(self) -> None:
        self.stack: list[str | None] = []

    def feed(self, line: str) -> None:
        i = 0
        while i < len(line):
            char = line[i]
            if char == "(":
                match = _FILE_OPEN.match(line, i)
                self.stack.append(_clean(match.group("path")) if match else None)
                i = match.end() if match else i + 1
            elif char == ")":
                if self.stack:
                    self.stack.pop()
                i += 1
            else:
                i += 1

    @property
    def current(self) -> str | None:
        return next((name for name in reversed(self.stack) if name is not None), None)


def _add_unique(items: list[str], value: str) -> None:
    if value not in items:
        items.append(value)


def parse_log(log: str, terminal: str = "") -> LogReport:
    """Diagnostics from the .log of the last pdfTeX run and the terminal output of the whole compile."""
    report = LogReport()
    files = _Files()
    lines = log.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        error = _FILE_LINE.match(line) or _BANG.match(line)
        if error is not None:
            i = _read_error(report, lines, i, error, files.current)
            continue
        warning = _WARNING.match(line)
        if warning is not None:
            i = _read_warning(report, lines, i, warning, files.current)
            continue
        box = _BOX.match(line)
        if box is not None:
            if box.group("kind") == "Overfull":
                report.overfull_boxes += 1
                if report.overfull_boxes <= 5:
                    at = int(box.group("line")) if box.group("line") else None
                    report.warnings.append(
                        Diagnostic(severity="warning", file=files.current, line=at, message=line.strip())
                    )
            else:
                report.underfull_boxes += 1
            i += 1
            continue
        files.feed(line)
        i += 1
    for found in _BLOCKED.finditer(terminal + "\n" + log):
        if found.group("cmd") is not None:
            what = f"shell command refused: {found.group('cmd')}"
        else:
            what = f"{found.group('verb').split()[0]} {found.group('path')} refused ({found.group('var')} = p)"
        _add_unique(report.blocked, what)
    pages = _OUTPUT.findall(log)
    report.pages = int(pages[-1]) if pages else (0 if "No pages of output." in log else None)
    if len(report.errors) > 1:
        report.errors = [e for e in report.errors if e.message not in _NOISE] or report.errors[:1]
    return report


def _read_error(report: LogReport, lines: list[str], i: int, found: re.Match[str], current: str | None) -> int:
    groups = found.groupdict()
    message = groups["msg"].strip()
    file = _clean(groups["file"]) if groups.get("file") else current
    line_no = int(groups["line"]) if groups.get("line") else None
    context: str | None = None
    j = i + 1
    while j < len(lines) and j < i + 30:
        text = lines[j]
        at = _CONTEXT.match(text)
        if at is not None:
            line_no = line_no or int(at.group("line"))
            after = lines[j + 1].strip() if j + 1 < len(lines) else ""
            context = (at.group("text") + (" " + after if after else "")).strip() or None
            context = None if context == "^^M" else context
            j += 2
            break
        stop = _FILE_LINE.match(text)
        if stop is not None and stop.group("msg").strip() in _NOISE and groups.get("line") is None:
            # "! LaTeX Error: File `x.sty' not found." is located by the emergency stop that follows it
            file, line_no = _clean(stop.group("file")), int(stop.group("line"))
            j += 1
            continue
        if stop or _BANG.match(text) or _WARNING.match(text):
            break
        j += 1
    missing = _MISSING.search(message)
    if missing is not None:
        name = missing.group("name") or missing.group("bare") + ".tex"
        _add_unique(report.missing_files, name)
    if len(report.errors) < MAX_KEPT:
        report.errors.append(Diagnostic(severity="error", file=file, line=line_no, message=message, context=context))
    return j


def _read_warning(report: LogReport, lines: list[str], i: int, found: re.Match[str], current: str | None) -> int:
    who = found.group("who")
    message = found.group("msg").strip()
    j = i + 1
    # a package warning continues on lines starting with "(name)" and spaces
    tag = "(" + who.split()[-1] + ")" if who.startswith(("Package", "Class")) else None
    while j < len(lines) and (
        (tag is not None and lines[j].startswith(tag)) or (who == "LaTeX" and lines[j].startswith("  ") and message)
    ):
        message += " " + lines[j].removeprefix(tag or "").strip()
        j += 1
    if message in _SUMMARIES:
        report.rerun_needed = report.rerun_needed or message.startswith("Label(s)")
        return j
    ref = _UNDEF_REF.search(message)
    cite = _UNDEF_CITE.search(message)
    if ref is not None:
        _add_unique(report.undefined_references, ref.group("key"))
    if cite is not None:
        _add_unique(report.undefined_citations, cite.group("key"))
    if who == "LaTeX Font":
        return j
    at = _INPUT_LINE.search(message)
    if len(report.warnings) < MAX_KEPT:
        report.warnings.append(
            Diagnostic(
                severity="warning",
                file=current,
                line=int(at.group(1)) if at else None,
                message=f"{who} Warning: {message}",
            )
        )
    return j


_BLG_LOCATION = re.compile(r"^-+(?:line (?P<line>\d+) of file (?P<file>.+)|while reading file (?P<rfile>.+))$")
_BIBER = re.compile(r"^\[\d+\] .*?> (?P<level>ERROR|WARN) - (?P<msg>.*)$")
_BST_MISSING = re.compile(r"I couldn't open (?:style|database) file (?P<name>\S+)")


def parse_blg(text: str) -> BlgReport:
    """Errors and warnings of a BibTeX or biber .blg."""
    report = BlgReport()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        biber = _BIBER.match(line)
        if biber is not None:
            target = report.errors if biber.group("level") == "ERROR" else report.warnings
            _add_unique(target, biber.group("msg").strip())
            continue
        if line.startswith("Warning--"):
            _add_unique(report.warnings, line.removeprefix("Warning--").strip())
            continue
        where = _BLG_LOCATION.match(line)
        if where is not None and i > 0:
            place = f"{where.group('file') or where.group('rfile')}" + (
                f":{where.group('line')}" if where.group("line") else ""
            )
            previous = lines[i - 1].strip()
            if previous.startswith(":"):  # the offending text, one line up from the message
                previous = (lines[i - 2].strip() + " " + previous) if i > 1 else previous
            _add_unique(report.errors, f"{place}: {previous}")
            continue
        missing = _BST_MISSING.search(line)
        if missing is not None:
            _add_unique(report.errors, line.strip())
            name = missing.group("name")
            if name.endswith(".bst"):
                _add_unique(report.missing_files, name)
        elif line.startswith("I found no \\citation commands"):
            continue  # a paper that cites nothing yet
        elif line.startswith(("I found no ", "Illegal, ", "Sorry---you've exceeded")):
            _add_unique(report.errors, line.strip())
    return report
