"""Merging and de-duplicating records of one paper, and the library in the state store (FTS5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from research_mcp.store import Store
from research_mcp.tools.literature import library
from research_mcp.tools.literature.ids import parse_paper_id
from research_mcp.tools.literature.merge import combine, dedupe, normalize_title
from research_mcp.tools.literature.models import Paper

ARXIV_RECORD = Paper(
    id="arXiv:1706.03762", title="Attention Is All You Need", authors=["Ashish Vaswani", "Noam Shazeer"],
    year=2017, abstract="The dominant sequence transduction models...", arxiv_id="1706.03762", arxiv_version=7,
    categories=["cs.CL", "cs.LG"], published="2017-06-12", sources=["arxiv"],
)  # fmt: skip
S2_RECORD = Paper(
    id="arXiv:1706.03762", title="Attention is All you Need", authors=["Ashish Vaswani", "Noam M. Shazeer"],
    year=2017, venue="Neural Information Processing Systems", arxiv_id="1706.03762", doi=None,
    s2_id="204e3073870fae3d05bcbc2f6a8e263d9b72e776", citation_count=100000, tldr="A new simple network.",
    sources=["semantic_scholar"],
)  # fmt: skip


def paper(title: str, *, year: int, author: str, **ids: str) -> Paper:
    pid = f"arXiv:{ids['arxiv_id']}" if "arxiv_id" in ids else f"doi:{ids['doi']}" if "doi" in ids else "s2:x"
    return Paper(id=pid, title=title, authors=[author], year=year, sources=["arxiv"], **ids)  # type: ignore[arg-type]


def test_a_paper_found_by_both_sources_shows_both_ids_the_citation_count_and_the_categories() -> None:
    [merged] = dedupe([[ARXIV_RECORD], [S2_RECORD]])
    assert merged.id == "arXiv:1706.03762" and merged.s2_id == S2_RECORD.s2_id
    assert merged.citation_count == 100000 and merged.categories == ["cs.CL", "cs.LG"]
    assert merged.venue == "Neural Information Processing Systems" and merged.tldr == "A new simple network."
    assert merged.abstract == ARXIV_RECORD.abstract and merged.sources == ["arxiv", "semantic_scholar"]


def test_a_preprint_and_its_venue_version_merge_through_the_doi_despite_different_years() -> None:
    preprint = paper("Deep Residual Learning", year=2015, author="Kaiming He", arxiv_id="1512.03385", doi="10.1/r")
    published = Paper(
        id="doi:10.1/r", title="Deep Residual Learning for Image Recognition", authors=["Kaiming He"], year=2016,
        doi="10.1/r", s2_id="abc", sources=["semantic_scholar"],
    )  # fmt: skip
    [merged] = dedupe([[preprint], [published]])
    assert merged.year == 2016 and merged.arxiv_id == "1512.03385" and merged.id == "arXiv:1512.03385"


def test_records_without_shared_ids_merge_on_title_first_author_and_year() -> None:
    a = paper("Layer Normalization", year=2016, author="Jimmy Lei Ba", arxiv_id="1607.06450")
    b = Paper(
        id="s2:b", title="Layer normalization.", authors=["Ba, J."], year=2016, s2_id="b", sources=["semantic_scholar"]
    )
    assert len(dedupe([[a], [b]])) == 1


def test_different_papers_with_similar_titles_stay_apart() -> None:
    a = paper("Attention is all you need", year=2017, author="Ashish Vaswani", arxiv_id="1706.03762")
    b = paper("Attention is not all you need", year=2021, author="Yihe Dong", arxiv_id="2103.03404")
    c = paper("Attention is all you need", year=2023, author="Someone Else", doi="10.5555/other")
    assert [p.id for p in dedupe([[a, b], [c]])] == ["arXiv:1706.03762", "doi:10.5555/other", "arXiv:2103.03404"]


def test_merged_lists_interleave_by_rank() -> None:
    a = [paper(f"A{i}", year=2020, author="x", arxiv_id=f"2001.0000{i}") for i in range(3)]
    b = [paper(f"B{i}", year=2020, author="y", doi=f"10.1234/{i}") for i in range(2)]
    assert [p.title for p in dedupe([a, b])] == ["A0", "B0", "A1", "B1", "A2"]


def test_a_record_joining_two_earlier_ones_folds_them_into_one() -> None:
    by_arxiv = paper("T", year=2020, author="x", arxiv_id="2001.00001")
    by_doi = paper("Other title", year=2021, author="y", doi="10.1234/t")
    bridge = Paper(
        id="arXiv:2001.00001", title="T", authors=["x"], year=2021, arxiv_id="2001.00001", doi="10.1234/t",
        s2_id="s", sources=["semantic_scholar"],
    )  # fmt: skip
    [merged] = dedupe([[by_arxiv, by_doi], [bridge]])
    assert merged.doi == "10.1234/t" and merged.s2_id == "s"


def test_titles_normalise_accents_case_and_punctuation() -> None:
    assert normalize_title("Über  {BERT}: Pre-training!") == normalize_title("uber bert pre training")


def test_combine_keeps_semantic_scholars_bibliographic_fields() -> None:
    merged = combine(S2_RECORD, ARXIV_RECORD)
    assert merged.venue == S2_RECORD.venue and merged.categories == ARXIV_RECORD.categories


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db")


def test_the_library_merges_what_it_learns_and_finds_papers_by_every_id(store: Store) -> None:
    library.save_paper(store, ARXIV_RECORD, keep=False)
    stored = library.save_paper(store, S2_RECORD.model_copy(update={"corpus_id": 13756489}))
    assert stored.citation_count == 100000 and stored.categories == ["cs.CL", "cs.LG"]
    for raw in ("1706.03762v2", S2_RECORD.s2_id or "", "CorpusId:13756489", "attention is all you NEED"):
        found = library.load_paper(store, parse_paper_id(raw))
        assert found is not None and found.id == "arXiv:1706.03762", raw
    assert store.connection().execute("SELECT count(*) FROM papers").fetchone()[0] == 1
    assert store.connection().execute("SELECT count(*) FROM papers_fts").fetchone()[0] == 1


def test_only_papers_looked_up_cited_or_read_count_as_in_the_library(store: Store) -> None:
    seen = paper("Seen only", year=2020, author="x", arxiv_id="2001.00001")
    kept = paper("Kept", year=2020, author="x", arxiv_id="2001.00002")
    library.save_papers(store, [seen, kept])
    library.save_paper(store, kept, keep=True)
    assert library.library_ids(store, [seen, kept]) == {"arXiv:2001.00002"}


def test_library_search_ranks_title_words_over_body_words_and_filters_years(store: Store) -> None:
    library.save_papers(
        store,
        [
            paper("Diffusion models beat GANs", year=2021, author="a", arxiv_id="2105.05233"),
            paper("Image synthesis", year=2020, author="b", arxiv_id="2006.11239"),
            paper("Unrelated", year=2019, author="c", arxiv_id="1901.00001"),
        ],
    )
    library.set_body(store, "arXiv:2006.11239", "we train diffusion probabilistic models")
    assert [p.arxiv_id for p in library.search_library(store, "diffusion", 10)] == ["2105.05233", "2006.11239"]
    assert [p.arxiv_id for p in library.search_library(store, "diffusion", 10, year_to=2020)] == ["2006.11239"]
    assert library.search_library(store, 'NEAR( " OR ) *', 10) == []
    assert library.search_library(store, "", 10) == []
