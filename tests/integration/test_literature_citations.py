"""cite and verify_citations through a real MCP client session, against a replay server on 127.0.0.1 and the
real .bib / .tex files in ../shared/fixtures/latex."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from bibtexparser.entrypoint import parse_string
from mcp import Client

from tests.conftest import fixtures_dir
from tests.integration._client import call, error_text
from tests.integration.test_literature_tools import (  # the fixtures are shared by being imported
    QUERY,
    _fast_backoff,
    atom,
    feed,
    lit,
    s2_paper,
    server,
)  # fmt: skip
from tests.replay import ReplayServer, Response, Route

pytestmark = pytest.mark.anyio
__all__ = ["_fast_backoff", "lit", "server"]  # fixtures


USER_BIB = """% my own notes, formatted my way
@Book{knuth,  author="Donald E. Knuth", title = "The {\\TeX}book",
   year=1984, publisher = {Addison-Wesley}}

@string{nips = "NeurIPS"}
@misc{oldvaswani, title={Attention is all you need}, author={Vaswani, A.}, year=2017, eprint={1706.03762}}
"""


def known_papers(server: ReplayServer) -> None:
    """arXiv knows Adam; Semantic Scholar knows a DOI paper; nothing else exists."""
    server.add(Route("GET", QUERY, feed(atom())))
    server.add(Route("GET", re.compile(r"/graph/v1/paper/.*"), Response(404, {"error": "not found"})))
    server.add(
        Route("GET", QUERY, feed(atom({
            "id": "1412.6980", "title": "Adam: A Method for Stochastic Optimization", "year": 2014,
            "authors": ["Diederik P. Kingma", "Jimmy Ba"], "categories": ["cs.LG"],
        })), query={"id_list": "1412.6980"})
    )  # fmt: skip
    server.add(
        Route("GET", "/graph/v1/paper/DOI:10.1038/nature14539", Response(200, s2_paper(
            "d" * 40, "Deep learning", year=2015, venue="Nature", authors=[
                {"name": "Yann LeCun"}, {"name": "Yoshua Bengio"}, {"name": "Geoffrey E. Hinton"}],
            journal={"name": "Nature", "volume": "521", "pages": "436 - 444"},
            publicationTypes=["JournalArticle"], externalIds={"DOI": "10.1038/nature14539"},
        )))
    )  # fmt: skip


async def test_cite_appends_entries_from_api_metadata_and_leaves_the_users_entries_untouched(
    lit: Client, server: ReplayServer, workspace: Path
) -> None:
    known_papers(server)
    bib = workspace / "paper" / "references.bib"
    bib.parent.mkdir()
    bib.write_text(USER_BIB)
    cited = await call(lit, "cite", {"paper_ids": ["arXiv:1412.6980", "10.1038/nature14539", "1706.03762"]})
    assert cited["keys"] == ["kingma2014adam", "lecun2015deep", "oldvaswani"]
    assert cited["added"] == ["kingma2014adam", "lecun2015deep"] and cited["already_present"] == ["oldvaswani"]
    text = bib.read_text()
    assert text.startswith(USER_BIB), "the user's entries are kept byte for byte"
    library = parse_string(text)
    assert not library.failed_blocks
    entries = {e.key: {f.key: f.value for f in e.fields} for e in library.entries}
    assert entries["kingma2014adam"]["eprint"] == "1412.6980" and entries["kingma2014adam"]["year"] == "2014"
    assert entries["lecun2015deep"]["journal"] == "Nature" and entries["lecun2015deep"]["pages"] == "436--444"
    assert entries["lecun2015deep"]["author"] == "Yann LeCun and Yoshua Bengio and Geoffrey E. Hinton"
    again = await call(lit, "cite", {"paper_ids": ["10.1038/NATURE14539", "https://arxiv.org/abs/1412.6980v2"]})
    assert again["keys"] == ["lecun2015deep", "kingma2014adam"] and again["added"] == []
    assert bib.read_text() == text, "citing again adds no duplicate"
    server.stop()
    offline = await call(lit, "search_papers", {"query": "stochastic optimization", "sources": ["arxiv"]})
    assert [(p["id"], p["in_library"]) for p in offline["papers"]] == [("arXiv:1412.6980", True)], "cited: kept"


async def test_a_paper_that_cannot_be_found_writes_nothing(lit: Client, server: ReplayServer, workspace: Path) -> None:
    known_papers(server)
    text = error_text(await lit.call_tool("cite", {"paper_ids": ["1412.6980", "9999.99999"], "bib_path": "r.bib"}))
    assert "Nothing was written" in text and "9999.99999" in text
    assert not (workspace / "r.bib").exists()
    assert "must end in .bib" in error_text(await lit.call_tool("cite", {"paper_ids": ["x"], "bib_path": "r.txt"}))
    assert "refused" in error_text(await lit.call_tool("cite", {"paper_ids": ["1412.6980"], "bib_path": "../r.bib"}))


def ai_scientist_routes(server: ReplayServer) -> None:
    server.add(Route("GET", QUERY, feed(atom())))  # any other arXiv question: nothing
    server.add(Route("GET", re.compile(r"/graph/v1/paper/.*"), Response(404, {"error": "Title match not found"})))
    arxiv = {
        "1412.6980": ("Adam: A Method for Stochastic Optimization", ["Diederik P. Kingma", "Jimmy Ba"], 2014),
        "1607.06450": ("Layer Normalization", ["Jimmy Lei Ba", "Jamie Ryan Kiros", "Geoffrey E. Hinton"], 2016),
        "1711.05101": ("Decoupled Weight Decay Regularization", ["Ilya Loshchilov", "Frank Hutter"], 2017),
        "2303.08774": ("GPT-4 Technical Report", ["OpenAI"], 2023),
    }
    for arxiv_id, (title, authors, year) in arxiv.items():
        entry = {"id": arxiv_id, "title": title, "authors": authors, "year": year}
        server.add(Route("GET", QUERY, feed(atom(entry)), query={"id_list": arxiv_id}))
    vaswani = s2_paper(
        "204e3073870fae3d05bcbc2f6a8e263d9b72e776", "Attention is All you Need", year=2017,
        venue="Neural Information Processing Systems", externalIds={"ArXiv": "1706.03762"},
        authors=[{"name": n} for n in ("Ashish Vaswani", "Noam M. Shazeer", "Niki Parmar", "Jakob Uszkoreit",
                                        "Llion Jones", "Aidan N. Gomez", "Lukasz Kaiser", "Illia Polosukhin")],
    )  # fmt: skip
    server.add(
        Route("GET", "/graph/v1/paper/search/match", Response(200, {"data": [vaswani]}),
              query={"query": "Attention is all you need"})
    )  # fmt: skip
    server.add(Route("GET", "/graph/v1/paper/ARXIV:1706.03762", Response(200, vaswani)))


async def test_verify_citations_classifies_the_ai_scientist_bibliography(
    lit: Client, server: ReplayServer, workspace: Path
) -> None:
    source = fixtures_dir("latex") / "ai-scientist_multi_style_adapter" / "latex"
    shutil.copytree(source, workspace / "latex")
    ai_scientist_routes(server)
    result = await call(lit, "verify_citations", {"path": "latex/references.bib", "limit": 50})
    status = {e["key"]: e for e in result["entries"]}
    assert result["total"] == len(status) == 14 and result["next_offset"] is None
    for key in ("kingma2014adam", "ba2016layer", "loshchilov2017adamw", "vaswani2017attention"):
        assert status[key]["status"] == "verified", status[key]
    gpt4 = status["gpt4"]
    assert gpt4["status"] == "mismatch" and gpt4["differences"] == ["year: 2024 should be 2023"]
    assert gpt4["corrected"].startswith("@misc{gpt4,") and "year = {2023}" in gpt4["corrected"]
    for key in ("karpathy2023nanogpt", "radford2019language", "goodfellow2016deep"):
        assert status[key]["status"] == "not_found", status[key]
    assert any("Keskar2019CTRLAC" in p for p in result["bib_problems"]), "duplicate keys are reported"
    assert sum(result["counts"].values()) == 14


async def test_verify_citations_on_a_tex_checks_only_what_it_cites_and_lists_missing_keys(
    lit: Client, server: ReplayServer, workspace: Path
) -> None:
    folder = workspace / "paper"
    folder.mkdir()
    (folder / "refs.bib").write_text(USER_BIB)
    (folder / "main.tex").write_text(
        "\\documentclass{article}\\begin{document}\n"
        "As shown \\citep[p.~3]{oldvaswani, ghost2020} and \\citet{nobody}.\n"
        "% \\cite{commented}\n\\bibliography{refs}\n\\end{document}\n"
    )
    ai_scientist_routes(server)
    result = await call(lit, "verify_citations", {"path": "paper/main.tex"})
    assert result["missing"] == ["ghost2020", "nobody"] and result["bib_files"] == ["paper/refs.bib"]
    [entry] = result["entries"]
    assert entry["key"] == "oldvaswani" and entry["status"] == "verified"
    (folder / "bare.tex").write_text("\\cite{oldvaswani}\n")
    assert "names no bibliography" in error_text(await lit.call_tool("verify_citations", {"path": "paper/bare.tex"}))


async def test_latex_accents_braces_and_case_are_normalised_before_comparing(
    lit: Client, server: ReplayServer, workspace: Path
) -> None:
    (workspace / "r.bib").write_text(
        "@inproceedings{devlin,\n title={{BERT}: Pre-training of Deep Bidirectional Transformer{s} for Language "
        "Understanding},\n author={Devlin, Jacob and M{\\\"u}ller, Ren{\\'e}},\n year={2019},\n"
        " booktitle={Proceedings of NAACL}\n}\n"
    )
    record = s2_paper(
        "e" * 40, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding", year=2019,
        venue="North American Chapter of the Association for Computational Linguistics",
        authors=[{"name": "Jacob Devlin"}, {"name": "René Müller"}],
    )  # fmt: skip
    server.add(Route("GET", "/graph/v1/paper/search/match", Response(200, {"data": [record]})))
    server.add(Route("GET", QUERY, feed(atom())))
    result = await call(lit, "verify_citations", {"path": "r.bib"})
    [entry] = result["entries"]
    assert entry["status"] == "verified", entry


async def test_verify_citations_pages_and_refuses_other_files(
    lit: Client, server: ReplayServer, workspace: Path
) -> None:
    source = fixtures_dir("latex") / "data-to-paper_diabetes_clickable_001"
    shutil.copy(source / "citations.bib", workspace / "citations.bib")
    shutil.copy(source / "paper.tex", workspace / "paper.tex")
    server.add(Route("GET", QUERY, feed(atom())))
    server.add(Route("GET", re.compile(r"/graph/v1/paper/.*"), Response(404, {"error": "Title match not found"})))
    first = await call(lit, "verify_citations", {"path": "citations.bib", "limit": 5})
    assert len(first["entries"]) == 5 and first["next_offset"] == 5 and first["total"] == 26
    assert {e["status"] for e in first["entries"]} == {"not_found"}
    tex = await call(lit, "verify_citations", {"path": "paper.tex", "limit": 50})
    assert tex["bib_files"] == ["citations.bib"] and tex["missing"] == [] and tex["total"] > 0
    (workspace / "notes.txt").write_text("x")
    assert "neither a .bib nor a .tex" in error_text(await lit.call_tool("verify_citations", {"path": "notes.txt"}))


async def test_verify_citations_on_a_folder_says_to_give_a_file(lit: Client, workspace: Path) -> None:
    (workspace / "refs.bib").mkdir()
    (workspace / "draft.tex").mkdir()
    for folder in ("refs.bib", "draft.tex"):
        text = error_text(await lit.call_tool("verify_citations", {"path": folder}))
        assert f"'{folder}' is a folder; give a .bib file" in text
