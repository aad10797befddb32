"""Paper id parsing: every form a model may pass, as examples and as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from research_mcp.errors import BadInputError
from research_mcp.tools.literature.ids import (
    PaperRef,
    arxiv_base,
    folder_name,
    normalize_arxiv_id,
    parse_paper_id,
)

NEW_ID = st.from_regex(r"\d{4}\.\d{4,5}", fullmatch=True)
OLD_ID = st.from_regex(r"(hep-th|astro-ph|quant-ph|math\.CO|cs\.LG|cond-mat)/\d{7}", fullmatch=True)
VERSION = st.one_of(st.just(""), st.integers(1, 99).map(lambda v: f"v{v}"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1706.03762", PaperRef("arxiv", "1706.03762")),
        ("1706.03762v5", PaperRef("arxiv", "1706.03762", 5)),
        ("arXiv:1706.03762", PaperRef("arxiv", "1706.03762")),
        ("  arxiv: 2104.12255v1 ", PaperRef("arxiv", "2104.12255", 1)),
        ("hep-th/9901001", PaperRef("arxiv", "hep-th/9901001")),
        ("math.co/0601001v2", PaperRef("arxiv", "math.CO/0601001", 2)),
        ("https://arxiv.org/abs/1706.03762v3", PaperRef("arxiv", "1706.03762", 3)),
        ("http://arxiv.org/pdf/1706.03762.pdf", PaperRef("arxiv", "1706.03762")),
        ("https://export.arxiv.org/abs/astro-ph/0601001", PaperRef("arxiv", "astro-ph/0601001")),
        ("10.1093/mind/LIX.236.433", PaperRef("doi", "10.1093/mind/lix.236.433")),
        ("doi:10.18653/v1/N19-1423", PaperRef("doi", "10.18653/v1/n19-1423")),
        ("https://doi.org/10.1093/mind/lix.236.433", PaperRef("doi", "10.1093/mind/lix.236.433")),
        ("https://doi.org/10.48550/arXiv.1706.03762", PaperRef("arxiv", "1706.03762")),
        ("2d5673caa9e6af3a7b82a43f19ee920992db07ad", PaperRef("s2", "2d5673caa9e6af3a7b82a43f19ee920992db07ad")),
        (
            "https://www.semanticscholar.org/paper/Computing-Machinery/2D5673CAA9E6AF3A7B82A43F19EE920992DB07AD",
            PaperRef("s2", "2d5673caa9e6af3a7b82a43f19ee920992db07ad"),
        ),
        ("CorpusId:14636783", PaperRef("corpus", "14636783")),
        ("corpusid: 0014636783", PaperRef("corpus", "14636783")),
        ("Attention   is all you need", PaperRef("title", "Attention is all you need")),
    ],
)
def test_every_id_form_is_recognised(raw: str, expected: PaperRef) -> None:
    assert parse_paper_id(raw) == expected


def test_the_semantic_scholar_form_names_the_id_kind() -> None:
    assert parse_paper_id("1706.03762").s2_form == "ARXIV:1706.03762"
    assert parse_paper_id("10.1234/x").s2_form == "DOI:10.1234/x"
    assert parse_paper_id("CorpusId:5").s2_form == "CorpusId:5"


@pytest.mark.parametrize("raw", ["", "   ", "x" * 401])
def test_empty_or_huge_ids_are_refused_with_a_hint(raw: str) -> None:
    with pytest.raises(BadInputError, match="title"):
        parse_paper_id(raw)


@given(NEW_ID, VERSION)
def test_new_style_ids_parse_with_their_version(base: str, version: str) -> None:
    ref = parse_paper_id(base + version)
    assert ref == PaperRef("arxiv", base, int(version[1:]) if version else None)
    assert parse_paper_id(f"https://arxiv.org/abs/{base}{version}") == ref
    assert parse_paper_id(str(ref)) == ref


@given(OLD_ID, VERSION)
def test_old_style_ids_parse_and_keep_the_subject_class_upper_case(base: str, version: str) -> None:
    ref = parse_paper_id(base + version)
    assert ref.kind == "arxiv" and ref.value == base
    assert parse_paper_id(base.lower() + version) == ref


@given(st.one_of(NEW_ID, OLD_ID), VERSION)
def test_normalising_an_arxiv_id_is_idempotent(base: str, version: str) -> None:
    once = normalize_arxiv_id(base + version)
    assert normalize_arxiv_id(once) == once
    assert arxiv_base(once) == base


@given(st.from_regex(r"10\.\d{4,9}/[A-Za-z0-9._;()/:-]{1,40}[A-Za-z0-9]", fullmatch=True))
def test_dois_parse_case_insensitively_with_or_without_a_resolver(doi: str) -> None:
    if doi.lower().startswith("10.48550/arxiv."):
        return
    ref = parse_paper_id(doi)
    assert ref.kind == "doi" and ref.value == doi.lower()
    assert parse_paper_id(f"https://doi.org/{doi}") == ref == parse_paper_id(f"doi:{doi.upper()}")


@given(st.text(min_size=1, max_size=400))
def test_any_text_parses_or_is_refused_clearly(text: str) -> None:
    try:
        ref = parse_paper_id(text)
    except BadInputError:
        assert not text.strip()
        return
    assert ref.value


@given(st.text(min_size=1, max_size=200))
def test_folder_names_never_leave_the_papers_folder(paper_id: str) -> None:
    name = folder_name(paper_id)
    assert name and "/" not in name and name not in (".", "..") and not name.startswith(".")


def test_non_arxiv_ids_are_not_normalised_as_arxiv() -> None:
    with pytest.raises(BadInputError, match="not an arXiv id"):
        normalize_arxiv_id("10.1234/x")
