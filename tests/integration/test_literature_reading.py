"""read_paper through a real MCP client session: e-prints built in the test from the real LaTeX sources in
../shared/fixtures/latex (a tarball and a single gzipped .tex), a PDF-only paper, and unsafe tarballs."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from tests.conftest import fixtures_dir
from tests.integration._client import call, error_text
from tests.integration.test_literature_tools import QUERY, _fast_backoff, atom, feed, lit
from tests.replay import ReplayServer, Response, Route

pytestmark = pytest.mark.anyio
__all__ = ["_fast_backoff", "lit"]  # fixtures shared by being imported; `server` is this module's own

ARXIV_ID = "2408.06292"


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as s:
        s.add(Route("GET", re.compile(r"/graph/v1/paper/.*"), Response(404, {"error": "not found"})))
        s.add(Route("GET", QUERY, feed(atom({"id": ARXIV_ID, "title": "StyleFusion", "year": 2024}))))
        yield s


def tarball(files: dict[str, bytes], *, gzipped: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzipped else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ai_scientist_eprint() -> bytes:
    folder = fixtures_dir("latex") / "ai-scientist_multi_style_adapter"
    files = {p.name: p.read_bytes() for p in (folder / "latex").iterdir()}
    files |= {p.name: p.read_bytes() for p in folder.glob("*.png")}
    return tarball(files)


def one_page_pdf(text: str) -> bytes:
    """A minimal valid PDF with one page of text (Helvetica), offsets computed."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


async def test_read_paper_gives_the_outline_then_sections_and_ranges_paged(
    lit: Client, server: ReplayServer, workspace: Path
) -> None:
    server.add(Route("GET", f"/e-print/{ARXIV_ID}v1", Response(200, ai_scientist_eprint())))
    first = await call(lit, "read_paper", {"paper_id": ARXIV_ID})
    assert first["kind"] == "latex" and first["text"] is None and first["folder"] == f"papers/{ARXIV_ID}"
    titles = [s["title"] for s in first["outline"]]
    assert titles[:3] == ["Abstract", "Introduction", "Related Work"] and "Method" in titles
    assert all(s["chars"] > 0 for s in first["outline"]) and "main file: template.tex" in first["warnings"]
    method = await call(lit, "read_paper", {"paper_id": ARXIV_ID, "section": "Method", "max_chars": 1000})
    assert method["section"]["title"] == "Method" and re.match(r"#+ 4 Method\n", method["text"])
    assert len(method["text"]) == 1000 and method["next_offset"] == 1000
    rest = await call(lit, "read_paper", {"paper_id": ARXIV_ID, "section": "4", "offset": 1000, "max_chars": 400_000})
    assert rest["next_offset"] is None and re.search(
        r"#+ 4\.1 Learnable Style Embeddings", method["text"] + rest["text"]
    )
    assert len(method["text"]) + len(rest["text"]) == method["section"]["chars"]
    pages: list[str] = []
    total = 0
    offset: int | None = 0
    while offset is not None:
        page = await call(lit, "read_paper", {"paper_id": ARXIV_ID, "offset": offset, "max_chars": 400_000})
        assert len(page["text"]) <= 24_000, "never more than the output budget"
        pages.append(page["text"])
        offset, total = page["next_offset"], page["total_chars"]
    whole = "".join(pages)
    assert len(pages) == 2 and len(whole) == total
    assert "\\mathbb{R}^{K \\times D}" in whole, "math kept as LaTeX"
    stored = workspace / "papers" / ARXIV_ID
    assert (stored / "source" / "template.tex").is_file() and (stored / "text.md").is_file()
    assert len(server.requests_to(f"/e-print/{ARXIV_ID}v1")) == 1, "later calls read from disk"
    offline = await call(lit, "search_papers", {"query": "StyleAdapter consistency", "sources": ["arxiv"]})
    assert [p["id"] for p in offline["papers"]][:1] == [f"arXiv:{ARXIV_ID}"], "the full text is indexed"
    assert "No section matches" in error_text(
        await lit.call_tool("read_paper", {"paper_id": ARXIV_ID, "section": "Nonexistent"})
    )


async def test_a_single_gzipped_tex_is_read_too(lit: Client, server: ReplayServer) -> None:
    tex = (fixtures_dir("latex") / "data-to-paper_diabetes_clickable_001" / "paper.tex").read_bytes()
    server.add(Route("GET", f"/e-print/{ARXIV_ID}v1", Response(200, gzip.compress(tex))))
    got = await call(lit, "read_paper", {"paper_id": ARXIV_ID})
    assert got["kind"] == "latex" and len(got["outline"]) > 3
    intro = await call(lit, "read_paper", {"paper_id": ARXIV_ID, "section": "Introduction"})
    assert "diabetes" in intro["text"].lower()


async def test_a_paper_without_source_is_read_from_its_pdf(lit: Client, server: ReplayServer) -> None:
    server.add(Route("GET", f"/e-print/{ARXIV_ID}v1", Response(200, one_page_pdf("Hello from a PDF only paper"))))
    got = await call(lit, "read_paper", {"paper_id": ARXIV_ID, "offset": 0})
    assert got["kind"] == "pdf" and "Hello from a PDF only paper" in got["text"]
    assert any("PDF" in w for w in got["warnings"])


async def test_a_source_without_a_main_file_falls_back_to_the_pdf(lit: Client, server: ReplayServer) -> None:
    server.add(Route("GET", f"/e-print/{ARXIV_ID}v1", Response(200, tarball({"fig.txt": b"no tex here"}))))
    server.add(Route("GET", f"/pdf/{ARXIV_ID}v1", Response(200, one_page_pdf("Fallback text"))))
    got = await call(lit, "read_paper", {"paper_id": ARXIV_ID, "section": 0})
    assert got["kind"] == "pdf" and "Fallback text" in got["text"]


@pytest.mark.parametrize("member", ["../escape.tex", "/etc/evil.tex", "sub/../../escape.tex"])
async def test_a_tarball_with_escaping_members_is_refused_and_nothing_is_kept(
    lit: Client, server: ReplayServer, workspace: Path, member: str
) -> None:
    evil = tarball({"main.tex": b"\\documentclass{article}\\begin{document}x\\end{document}", member: b"x"})
    server.add(Route("GET", f"/e-print/{ARXIV_ID}v1", Response(200, evil)))
    text = error_text(await lit.call_tool("read_paper", {"paper_id": ARXIV_ID}))
    assert "Refused the e-print" in text and member in text
    assert list((workspace / "papers").iterdir()) == []
    assert not (workspace / "escape.tex").exists() and not (workspace.parent / "escape.tex").exists()


async def test_download_failures_are_clear(lit: Client, server: ReplayServer) -> None:
    server.add(Route("GET", f"/e-print/{ARXIV_ID}v1", Response(404, b"not here")))
    assert "HTTP 404" in error_text(await lit.call_tool("read_paper", {"paper_id": ARXIV_ID}))
    server.add(Route("GET", re.compile(r"/graph/v1/paper/.*"), Response(200, {"paperId": "f" * 40, "title": "X"})))
    no_arxiv = error_text(await lit.call_tool("read_paper", {"paper_id": "f" * 40}))
    assert "has no arXiv version" in no_arxiv
