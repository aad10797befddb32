"""What the paper's last compile left: the PDF's page count and the citations its log names as undefined."""

from __future__ import annotations

from pathlib import Path

from research_mcp.tools.review._checks import PaperSource

__all__ = ["last_pages", "undefined_in_log"]


def last_pages(main: Path, notes: list[str]) -> tuple[int | None, Path | None]:
    """The page count of the last compile's PDF (the build's, or the last clean one, whichever is newer)."""
    found = [p for p in (main.parent / ".build" / f"{main.stem}.pdf", main.with_suffix(".pdf")) if p.is_file()]
    if not found:
        return None, None
    pdf = max(found, key=lambda p: p.stat().st_mtime)
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        return len(PdfReader(pdf).pages), pdf
    except (OSError, ValueError, KeyError, PyPdfError) as exc:
        notes.append(f"{pdf.name}: its pages could not be counted ({exc})")
        return None, pdf


def undefined_in_log(main: Path, src: PaperSource) -> frozenset[str]:
    """The citations the last compile's log left undefined, when that log is newer than every source file."""
    from research_mcp.latex.logparse import parse_log

    log = main.parent / ".build" / f"{main.stem}.log"
    try:
        made = log.stat().st_mtime
        sources = [src.root / name for name in src.doc.files] + [
            src.root / (b if b.endswith(".bib") else b + ".bib") for b in src.doc.bib_files
        ]
        if any(p.is_file() and p.stat().st_mtime > made for p in sources):
            return frozenset()
        return frozenset(parse_log(log.read_text(encoding="utf-8", errors="replace")).undefined_citations)
    except OSError:
        return frozenset()
