"""Every clean PDF of a paper (no error, no undefined reference or citation), kept: `<paper>/<stem>.pdf` is the
current one, `<paper>/.versions/<stem>-vNNN.pdf` all of them. Files are replaced atomically, so a reader never
sees half a PDF."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from research_mcp.errors import LatexError, NotFoundError
from research_mcp.fileio import sha256_of

__all__ = ["VERSIONS_DIR", "current", "newest_pdf", "promote", "versions"]

VERSIONS_DIR = ".versions"


def versions(paper: Path, stem: str) -> list[Path]:
    """The kept versions of `<paper>/<stem>.pdf`, oldest first."""
    folder = paper / VERSIONS_DIR
    pattern = re.compile(re.escape(stem) + r"-v(\d+)\.pdf")
    found = [(int(m.group(1)), p) for p in folder.glob("*.pdf") if (m := pattern.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def current(paper: Path, stem: str) -> tuple[Path | None, int | None]:
    """The promoted PDF, if any, and the number of its last kept version."""
    pdf = paper / f"{stem}.pdf"
    if not pdf.is_file():
        return None, None
    kept = versions(paper, stem)
    return pdf, _number(kept[-1]) if kept else None


def _number(version: Path) -> int:
    return int(version.stem.rsplit("-v", 1)[1])


def promote(paper: Path, stem: str, built: Path) -> tuple[Path, int]:
    """Keep `built` as the next version (unless identical to the last) and as `<paper>/<stem>.pdf`; return that
    path and the version number."""
    folder = paper / VERSIONS_DIR
    folder.mkdir(exist_ok=True)
    target = paper / f"{stem}.pdf"
    kept = versions(paper, stem)
    if not kept and target.is_file():  # a PDF made before this tool: keep it as version 1
        shutil.copy2(target, folder / f"{stem}-v001.pdf")
        kept = versions(paper, stem)
    digest = sha256_of(built)
    if kept and sha256_of(kept[-1]) == digest:
        number = _number(kept[-1])
    else:
        number = (_number(kept[-1]) if kept else 0) + 1
        _copy_atomic(built, folder / f"{stem}-v{number:03d}.pdf")
    if not target.is_file() or sha256_of(target) != digest:
        _copy_atomic(built, target)
    return target, number


def _copy_atomic(source: Path, target: Path) -> None:
    partial = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def newest_pdf(paper: Path, max_bytes: int) -> tuple[Path, bytes]:
    """The newest PDF compile_paper promoted in `paper` (a `<stem>.pdf` with kept versions) and its bytes; a
    `NotFoundError` when there is none, a `LatexError` when it is over `max_bytes`."""
    promoted = [pdf for pdf in paper.glob("*.pdf") if versions(paper, pdf.stem)]
    if not promoted:
        raise NotFoundError(
            f"{paper.name}/*.pdf", f"compile_paper has kept no PDF in {paper.name}/ yet: call compile_paper."
        )
    newest = max(promoted, key=lambda pdf: pdf.stat().st_mtime_ns)
    size = newest.stat().st_size
    if size > max_bytes:
        raise LatexError(
            f"{paper.name}/{newest.name} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB a resource "
            "carries: open it from the workspace, or call compile_paper with preview_page to see a page."
        )
    return newest, newest.read_bytes()
