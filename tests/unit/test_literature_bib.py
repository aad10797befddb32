"""BibTeX: stable keys, entries that round-trip through bibtexparser, merging into an existing .bib, and the
comparison verify_citations makes; plus safe e-print extraction."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research_mcp.errors import LiteratureError
from research_mcp.tools.literature.bib import (
    bibtex_entry,
    citation_key,
    decode_latex,
    entry_ids,
    parse_bib,
    plan_citations,
    write_entries,
)
from research_mcp.tools.literature.citations import compare
from research_mcp.tools.literature.merge import normalize_title
from research_mcp.tools.literature.models import Paper
from research_mcp.tools.literature.reading import extract_eprint

VASWANI = Paper(
    id="arXiv:1706.03762", title="Attention Is All You Need", authors=["Ashish Vaswani", "Noam Shazeer"], year=2017,
    venue="Neural Information Processing Systems", arxiv_id="1706.03762", categories=["cs.CL"],
    publication_types=["Conference"], sources=["arxiv", "semantic_scholar"],
)  # fmt: skip


def test_keys_are_stable_and_readable() -> None:
    assert citation_key(VASWANI) == "vaswani2017attention"
    odd = Paper(id="s2:x", title="The Über-Net: on {BERT}", authors=["Jörg Müller-Lüdenscheidt"], year=2020, sources=[])
    assert citation_key(odd) == "mullerludenscheidt2020ubernet"
    assert citation_key(Paper(id="s2:y", title="A", authors=[], sources=[])) == "anon"


TEXT = st.text(st.characters(codec="utf-8", categories=["L", "N", "Zs", "P", "S"]), min_size=1, max_size=60).filter(
    lambda t: normalize_title(t) != ""
)


@settings(max_examples=60, deadline=None)
@given(title=TEXT, authors=st.lists(TEXT, min_size=1, max_size=4), year=st.integers(1900, 2100))
def test_entries_round_trip_through_the_bibtex_parser(title: str, authors: list[str], year: int) -> None:
    paper = Paper(id="s2:z", title=title, authors=authors, year=year, venue="Some Journal", sources=[])
    key = citation_key(paper)
    assert key.isascii() and key.isalnum() and key == citation_key(paper)
    text = write_entries([bibtex_entry(paper, key)])
    [entry], problems = parse_bib(text)
    assert problems == [] and entry.key == key and entry.fields["year"] == str(year)
    assert normalize_title(decode_latex(entry.fields["title"])) == normalize_title(title)
    assert compare(entry, paper) == []


def test_an_arxiv_paper_is_a_misc_entry_with_its_eprint() -> None:
    paper = VASWANI.model_copy(update={"venue": None, "publication_types": []})
    [entry], _ = parse_bib(write_entries([bibtex_entry(paper, "k")]))
    assert entry.entry_type == "misc" and entry.fields["eprint"] == "1706.03762"
    assert entry.fields["archiveprefix"] == "arXiv" and entry.fields["primaryclass"] == "cs.CL"
    assert entry_ids(entry)["arxiv"] == "1706.03762"


def test_planning_reuses_entries_by_doi_arxiv_id_or_title_and_never_clashes_keys() -> None:
    existing = (
        "@article{vaswani2017attention, title={Something else}, author={X, Y}, year=2017}\n"
        "@misc{mine, title={Layer normalization}, author={Ba, Jimmy}, journal={arXiv preprint arXiv:1607.06450}}\n"
    )
    layer = Paper(id="arXiv:1607.06450", title="Layer Normalization", authors=["J. Ba"], year=2016,
                  arxiv_id="1607.06450", sources=[])  # fmt: skip
    keys, new, reused = plan_citations(existing, [VASWANI, layer, VASWANI])
    assert keys == ["vaswani2017attentionb", "mine", "vaswani2017attentionb"]
    assert [e.key for e in new] == ["vaswani2017attentionb"] and reused == ["mine"]


def test_comparison_reports_what_differs() -> None:
    [entry], _ = parse_bib(
        "@inproceedings{v, title={Attention is all you need!}, author={Vaswani, Ashish and Smith, John},"
        " year={2016}, booktitle={International Conference on Machine Learning}}"
    )
    assert compare(entry, VASWANI) == [
        "year: 2016 should be 2017",
        "authors not on the paper: smith",
        "venue: 'International Conference on Machine Learning' should be 'Neural Information Processing Systems'",
    ]


def _tar(*members: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "bad",
    [
        _member("../x.tex"),
        _member("/abs/x.tex"),
        _member("a/../../x.tex"),
        _member("link", tarfile.SYMTYPE, "/etc/passwd"),
        _member("hard", tarfile.LNKTYPE, "../../x"),
    ],
)
def test_unsafe_e_prints_are_refused_whole(tmp_path: Path, bad: tarfile.TarInfo) -> None:
    with pytest.raises(LiteratureError, match="Refused the e-print"):
        extract_eprint(_tar(_member("main.tex"), bad), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_inner_links_and_devices_are_left_out(tmp_path: Path) -> None:
    kind = extract_eprint(_tar(_member("main.tex"), _member("l", tarfile.SYMTYPE, "main.tex")), tmp_path / "o")
    assert kind == "tar" and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["main.tex"]


def test_non_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LiteratureError, match="neither a tarball"):
        extract_eprint(b"just some bytes", tmp_path / "o")
    with pytest.raises(LiteratureError, match="broken gzip"):
        extract_eprint(b"\x1f\x8bnot really", tmp_path / "p")
