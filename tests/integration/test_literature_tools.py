"""search_papers, get_paper and paper_graph through a real MCP client session, with the real `arxiv` and
`semanticscholar` clients talking to a replay server on 127.0.0.1 (built responses and the real recordings)."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import anyio
import anyio.to_thread
import pytest
from mcp import Client

from research_mcp.config import Settings
from research_mcp.errors import LiteratureError
from research_mcp.server import build_server
from research_mcp.store import Store
from research_mcp.tools.literature import _net
from research_mcp.tools.literature.arxiv_source import ArxivSource
from research_mcp.tools.literature.s2_source import S2Source
from research_mcp.tools.literature.service import get_paper_sync
from tests.conftest import fixtures_dir
from tests.integration._client import call, error_text
from tests.replay import ATOM_TYPE, ReplayServer, Response, Route, arxiv_route

pytestmark = pytest.mark.anyio

QUERY = "/api/query"


# --- helpers shared by the literature test modules -----------------------------------------------------------------


def atom(*entries: dict[str, Any]) -> bytes:
    """An arXiv API Atom feed with these entries (id, title, authors, summary, year, categories, doi)."""
    parts = []
    for e in entries:
        authors = "".join(f"<author><name>{escape(a)}</name></author>" for a in e.get("authors", ["A. Author"]))
        cats = "".join(f'<category term="{c}"/>' for c in e.get("categories", ["cs.LG"]))
        doi = f"<arxiv:doi>{e['doi']}</arxiv:doi>" if e.get("doi") else ""
        year = e.get("year", 2020)
        parts.append(
            f"<entry><id>http://arxiv.org/abs/{e['id']}v1</id><title>{escape(e['title'])}</title>"
            f"<updated>{year}-01-02T00:00:00Z</updated><published>{year}-01-02T00:00:00Z</published>"
            f"<summary>{escape(e.get('summary', 'An abstract.'))}</summary>{authors}{cats}{doi}"
            f'<arxiv:primary_category term="{e.get("categories", ["cs.LG"])[0]}"/>'
            f'<link href="https://arxiv.org/pdf/{e["id"]}v1" rel="related" type="application/pdf" title="pdf"/>'
            "</entry>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom">'
        f"<opensearch:totalResults>{len(entries)}</opensearch:totalResults>"
        "<opensearch:startIndex>0</opensearch:startIndex>"
        f"<opensearch:itemsPerPage>{len(entries)}</opensearch:itemsPerPage>{''.join(parts)}</feed>"
    ).encode()


def s2_paper(paper_id: str, title: str, **extra: Any) -> dict[str, Any]:
    return {"paperId": paper_id, "title": title, "year": 2020, "authors": [{"name": "A. Author"}], **extra}


def feed(body: bytes, status: int = 200, **kw: Any) -> Response:
    return Response(status, body, {"Content-Type": ATOM_TYPE}, **kw)


def lit_settings(workspace: Path, server: ReplayServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workspace": workspace, "arxiv_url": server.url + QUERY, "s2_url": server.url,
        "arxiv_files_url": server.url, "arxiv_interval_s": 0, "s2_interval_s": 0, "literature_timeout_s": 1,
    }  # fmt: skip
    return Settings(**(values | overrides))


def cached_rows(workspace: Path) -> int:
    store = Store(workspace / ".research" / "state.db")
    try:
        return int(store.connection().execute("SELECT count(*) FROM api_cache").fetchone()[0])
    finally:
        store.close()


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_net, "BACKOFF_S", 0.05)


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as s:
        yield s


@pytest.fixture
async def lit(workspace: Path, server: ReplayServer) -> AsyncIterator[Client]:
    async with Client(build_server(lit_settings(workspace, server)), raise_exceptions=True) as c:
        yield c


def not_in_s2(server: ReplayServer) -> None:
    server.add(Route("GET", re.compile(r"/graph/v1/paper/.*"), Response(404, {"error": "not found"})))


# --- get_paper -------------------------------------------------------------------------------------------------------


async def test_get_paper_reads_the_recorded_arxiv_entries_in_every_id_form(lit: Client, server: ReplayServer) -> None:
    recorded = fixtures_dir("arxiv") / "recorded"
    not_in_s2(server)
    for name in ("id_2104.12255v1", "id_astro-ph_0601001", "id_1605.08386"):
        [path] = recorded.glob(f"{name}_s0_m100_*.json")
        server.add(arxiv_route(path))
    got = await call(lit, "get_paper", {"paper_id": "https://arxiv.org/abs/2104.12255v1"})
    assert got["paper"]["id"] == "arXiv:2104.12255" and got["paper"]["arxiv_version"] == 1
    assert got["paper"]["authors"] == ["Quan Thoi Minh Nguyen"] and got["paper"]["year"] == 2021
    old = await call(lit, "get_paper", {"paper_id": "astro-ph/0601001"})
    assert old["paper"]["arxiv_id"] == "astro-ph/0601001" and old["paper"]["categories"][0] == "astro-ph"
    heat = await call(lit, "get_paper", {"paper_id": "arXiv:1605.08386"})
    assert heat["paper"]["title"] == "Heat-bath random walks with Markov bases"
    assert heat["paper"]["comment"] == "20 pages, 3 figures" and heat["degraded"] is False
    server.assert_all_matched()


async def test_get_paper_by_doi_takes_semantic_scholars_full_record(lit: Client, server: ReplayServer) -> None:
    data = json.loads(gzip.decompress((fixtures_dir("semanticscholar") / "objects" / "Paper.json.gz").read_bytes()))
    server.add(Route("GET", "/graph/v1/paper/DOI:10.1093/mind/lix.236.433", Response(200, data)))
    got = (await call(lit, "get_paper", {"paper_id": "https://doi.org/10.1093/MIND/LIX.236.433"}))["paper"]
    assert got["id"] == "doi:10.1093/mind/lix.236.433" and got["title"] == "Computing Machinery and Intelligence"
    assert got["authors"] == ["A. Turing"] and got["year"] == 1950 and got["journal"] == "Mind"
    assert got["tldr"].startswith("If the meaning") and got["corpus_id"] == 14636783
    assert [r.query.get("fields") for r in server.requests][0] is not None


async def test_an_unknown_paper_is_a_clear_not_found(lit: Client, server: ReplayServer) -> None:
    [empty] = (fixtures_dir("arxiv") / "recorded").glob("id_0000.0000_*.json")
    server.add(arxiv_route(empty))
    not_in_s2(server)
    text = error_text(await lit.call_tool("get_paper", {"paper_id": "0000.0000"}))
    assert "No paper found for 'arXiv:0000.0000'" in text and "search_papers" in text


async def test_a_title_resolves_only_to_an_exact_match(lit: Client, server: ReplayServer) -> None:
    server.add(Route("GET", QUERY, feed(atom({"id": "1706.03762", "title": "Attention Is All You Need"}))))
    server.add(
        Route(
            "GET", "/graph/v1/paper/search/match", Response(200, {"data": [s2_paper("abc", "Attention is not enough")]})
        )
    )
    got = await call(lit, "get_paper", {"paper_id": "attention is all you need"})
    assert got["paper"]["id"] == "arXiv:1706.03762"
    text = error_text(await lit.call_tool("get_paper", {"paper_id": "Attention is all you want"}))
    assert "No paper has exactly this title" in text and "arXiv:1706.03762" in text


# --- search_papers ---------------------------------------------------------------------------------------------------


async def test_search_merges_both_sources_through_s2_external_ids(lit: Client, server: ReplayServer) -> None:
    server.add(
        Route("GET", QUERY, feed(atom(
            {"id": "1706.03762", "title": "Attention Is All You Need", "authors": ["Ashish Vaswani"], "year": 2017,
             "categories": ["cs.CL", "cs.LG"]},
            {"id": "2103.03404", "title": "Attention is Not All You Need", "year": 2021},
        )))
    )  # fmt: skip
    s2 = [
        s2_paper("204e30", "Attention is All you Need", year=2017, venue="NeurIPS", citationCount=150000,
                 externalIds={"ArXiv": "1706.03762", "DOI": "10.5555/3295222"}),
        s2_paper("ffff00", "Transformers in vision", year=2022, citationCount=10),
    ]  # fmt: skip
    server.add(Route("GET", "/graph/v1/paper/search", Response(200, {"total": 2, "offset": 0, "data": s2})))
    found = await call(lit, "search_papers", {"query": "attention transformers", "limit": 10})
    ids = [p["id"] for p in found["papers"]]
    assert ids == ["arXiv:1706.03762", "arXiv:2103.03404", "s2:ffff00"]
    vaswani = found["papers"][0]
    assert vaswani["s2_id"] == "204e30" and vaswani["citation_count"] == 150000 and vaswani["doi"] == "10.5555/3295222"
    assert vaswani["categories"] == ["cs.CL", "cs.LG"] and vaswani["sources"] == ["arxiv", "semantic_scholar"]
    assert vaswani["venue"] == "NeurIPS" and not vaswani["in_library"] and found["degraded"] is False
    [arxiv_request] = server.requests_to(QUERY)
    assert arxiv_request.query["search_query"] == ["attention transformers"]
    await call(lit, "get_paper", {"paper_id": "1706.03762"})
    again = await call(lit, "search_papers", {"query": "attention transformers", "limit": 10})
    assert [p["in_library"] for p in again["papers"]] == [True, False, False]
    searches = [r for r in server.requests_to(QUERY) if r.query["search_query"] != [""]]
    assert len(searches) == 1, "the repeated search is answered from the cache"


async def test_search_replays_the_recorded_arxiv_and_s2_answers(workspace: Path, server: ReplayServer) -> None:
    for name in ("q_testing_s0_m10_*.json", "q_testing_s0_m15_*.json"):
        [page] = (fixtures_dir("arxiv") / "recorded").glob(name)
        server.add(arxiv_route(page))
    body = json.loads((fixtures_dir("semanticscholar") / "responses" / "test_search_paper__00.json").read_text())
    server.add(Route("GET", "/graph/v1/paper/search", Response(200, body), query={"query": "testing"}))
    async with Client(build_server(lit_settings(workspace, server))) as client:
        found = await call(client, "search_papers", {"query": "testing", "limit": 10})
        second = await call(client, "search_papers", {"query": "testing", "limit": 5, "offset": 10})
    assert len(found["papers"]) == 10 and found["next_offset"] == 10 and len(second["papers"]) == 5
    assert {p["sources"][0] for p in found["papers"]} == {"arxiv", "semantic_scholar"}
    assert not {p["id"] for p in found["papers"]} & {p["id"] for p in second["papers"]}
    server.assert_all_matched()


async def test_bad_search_arguments_are_refused_with_what_to_do(lit: Client) -> None:
    cases = [
        ({"query": "   "}, "query is empty"),
        ({"query": "x", "year_from": 2020, "year_to": 2019}, "after year_to"),
        ({"query": "x", "sources": []}, "at least one source"),
        ({"query": "x", "offset": 100}, "offset goes up to 99"),
    ]
    for args, hint in cases:
        assert hint in error_text(await lit.call_tool("search_papers", args)), args


async def test_when_one_source_fails_the_answer_says_which_and_why(lit: Client, server: ReplayServer) -> None:
    server.add(Route("GET", QUERY, feed(atom({"id": "2001.00001", "title": "Only on arXiv"}))))
    server.add(Route("GET", "/graph/v1/paper/search", Response(403, {"message": "Forbidden"})))
    found = await call(lit, "search_papers", {"query": "only"})
    assert [p["id"] for p in found["papers"]] == ["arXiv:2001.00001"] and found["degraded"]
    [problem] = found["problems"]
    assert (
        problem["source"] == "semantic_scholar"
        and "HTTP 403" in problem["problem"]
        and "S2_API_KEY" in problem["problem"]
    )


async def test_offline_the_same_query_returns_the_same_papers_from_the_library(
    workspace: Path, server: ReplayServer
) -> None:
    entries = [{"id": f"2001.0000{i}", "title": f"Graph networks part {i}"} for i in range(3)]
    server.add(Route("GET", QUERY, feed(atom(*entries))))
    server.add(Route("GET", "/graph/v1/paper/search", Response(200, {"data": [s2_paper("c" * 40, "Graph kernels")]})))
    settings = lit_settings(workspace, server, search_cache_ttl_s=0)
    async with Client(build_server(settings)) as client:
        online = await call(client, "search_papers", {"query": "graph networks"})
        server.stop()  # its port now refuses connections
        offline = await call(client, "search_papers", {"query": "graph networks"})
    assert not online["from_library"] and len(online["papers"]) == 4
    assert offline["from_library"] and offline["degraded"]
    assert {p["id"] for p in offline["papers"]} == {p["id"] for p in online["papers"]}
    assert {p["source"] for p in offline["problems"]} == {"arxiv", "semantic_scholar"}
    assert all("did not answer" in p["problem"] for p in offline["problems"])
    async with Client(build_server(settings)) as client:
        kept = await call(client, "get_paper", {"paper_id": "arXiv:2001.00001"})
    assert kept["from_library"] and kept["paper"]["title"] == "Graph networks part 1"
    assert {p["source"] for p in kept["problems"]} == {"arxiv", "semantic_scholar"} and kept["degraded"]


def test_get_paper_sync_works_from_plain_and_worker_threads(workspace: Path, server: ReplayServer) -> None:
    server.add(Route("GET", S2_PATH, OK))
    settings = lit_settings(workspace, server)
    store = Store(workspace / ".research" / "state.db")
    try:
        assert get_paper_sync(settings, store, S2_ID).paper.title == "Recovered"

        async def from_worker() -> str:
            return await anyio.to_thread.run_sync(lambda: get_paper_sync(settings, store, S2_ID).paper.title)

        assert anyio.run(from_worker) == "Recovered"
    finally:
        store.close()


# --- errors ----------------------------------------------------------------------------------------------------------


S2_ID = "a" * 40
S2_PATH = f"/graph/v1/paper/{S2_ID}"
OK = Response(200, s2_paper(S2_ID, "Recovered"))


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([Response(400, {"error": "Unrecognized or unsupported fields"})], "HTTP 400 (Unrecognized"),
        ([Response(403, {"message": "Forbidden"})], "refused access (HTTP 403"),
        ([Response(404, {"error": "Paper not found"})], f"No paper found for 's2:{S2_ID}'"),
        ([Response(429, {"message": "Too Many Requests"}, {"Retry-After": "120"})], "retry after 120 s"),
        ([Response(429, {"message": "Too Many Requests"})], "Rate limited by Semantic Scholar, retry after 30 s"),
        ([Response(500, {"message": "Internal error"})], "failed (HTTP 500 (Internal error)"),
        ([Response(503, "<html>unavailable</html>")], "failed (HTTP 503)"),
        ([Response(200, {"paperId": S2_ID}, delay_s=1.5)], "did not answer (no answer within"),
        ([Response(200, b'{"paperId": "' + S2_ID.encode() + b'", "title": "cut', truncate_at=20)], "did not answer"),
        ([Response(200, b"{not json", {"Content-Type": "application/json"})], "does not parse"),
        ([Response(200, "[1, 2")], "does not parse"),
    ],
    ids=["400", "403", "404", "429-retry-after", "429-bare", "500", "503", "timeout", "truncated", "malformed", "cut"],
)
async def test_every_s2_failure_is_a_clear_result_and_nothing_is_cached(
    lit: Client, server: ReplayServer, workspace: Path, answers: list[Response], expected: str
) -> None:
    server.add(Route("GET", S2_PATH, answers))
    with anyio.fail_after(20):
        text = error_text(await lit.call_tool("get_paper", {"paper_id": S2_ID}))
    assert expected in text
    assert cached_rows(workspace) == 0
    transient = answers[0].status in (429, 500, 503) or answers[0].delay_s or answers[0].truncate_at
    expected_tries = 1 if "retry after 120" in text else 3 if transient else 1
    assert len(server.requests_to(S2_PATH)) == expected_tries


async def test_a_transient_failure_is_retried_and_then_answered(lit: Client, server: ReplayServer) -> None:
    server.add(Route("GET", S2_PATH, [Response(503, "busy"), Response(429, {}, {"Retry-After": "1"}), OK]))
    with anyio.fail_after(20):
        got = await call(lit, "get_paper", {"paper_id": S2_ID})
    assert got["paper"]["title"] == "Recovered" and len(server.requests_to(S2_PATH)) == 3
    retried = server.requests_to(S2_PATH)
    assert retried[2].arrived_at - retried[1].arrived_at >= 1.0, "Retry-After honoured"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (feed(b"", 400), "HTTP 400"),
        (feed(b"<feed><entry><title>cut", 200), "does not parse"),
        (feed(atom({"id": "2001.00001", "title": "T"}), truncate_at=200), "did not answer"),
        (feed(b"", 503), "failed (HTTP 503)"),
        (Response(429, b"", {"Retry-After": "60"}), "retry after 60 s"),
        (Response(429, b""), "Rate limited by arXiv, retry after 30 s"),
        (feed(b"", 403), "refused access (HTTP 403)"),
        (feed(b"", 404), "HTTP 404"),
        (feed(b"", 500), "failed (HTTP 500)"),
        (feed(atom({"id": "2001.00001", "title": "T"}), delay_s=1.5), "did not answer (no answer within"),
        (feed(b"<html>not a feed</html"), "does not parse"),
    ],
    ids=["400", "malformed", "truncated", "503", "429", "429-bare", "403", "404", "500", "timeout", "html"],
)
async def test_every_arxiv_failure_is_a_clear_result_and_nothing_is_cached(
    lit: Client, server: ReplayServer, workspace: Path, answer: Response, expected: str
) -> None:
    server.add(Route("GET", QUERY, answer))
    with anyio.fail_after(20):
        found = await call(lit, "search_papers", {"query": "anything", "sources": ["arxiv"]})
    assert found["from_library"] and found["papers"] == []
    [problem] = found["problems"]
    assert problem["source"] == "arxiv" and expected in problem["problem"], problem
    assert cached_rows(workspace) == 0


async def test_the_recorded_arxiv_400_names_the_bad_id(lit: Client, server: ReplayServer) -> None:
    [bad] = (fixtures_dir("arxiv") / "recorded").glob("id_abc_*.json")
    server.add(arxiv_route(bad, {"id_list": "abc"}))
    source = ArxivSource(lit_settings(Path("."), server))
    with pytest.raises(LiteratureError, match="incorrect id format for abc"):
        await source.by_ids(["abc"])


# --- rate limits -----------------------------------------------------------------------------------------------------


async def test_five_concurrent_searches_reach_arxiv_at_least_three_seconds_apart(
    workspace: Path, server: ReplayServer
) -> None:
    server.add(Route("GET", QUERY, feed(atom({"id": "2001.00001", "title": "Paced"}))))
    settings = lit_settings(workspace, server, arxiv_interval_s=3.0)
    async with Client(build_server(settings)) as client:
        results: list[dict[str, Any]] = []

        async def one(i: int) -> None:
            results.append(await call(client, "search_papers", {"query": f"paced {i}", "sources": ["arxiv"]}))

        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(one, i)
    arrivals = sorted(r.arrived_at for r in server.requests_to(QUERY))
    assert len(arrivals) == 5 and all(len(r["papers"]) == 1 for r in results)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 3.0, gaps


async def test_a_long_retry_after_is_shared_by_concurrent_calls_and_answered_at_once(
    lit: Client, server: ReplayServer
) -> None:
    server.add(Route("GET", S2_PATH, Response(429, {}, {"Retry-After": "90"})))
    with anyio.fail_after(10):
        first = error_text(await lit.call_tool("get_paper", {"paper_id": S2_ID}))
        second = error_text(await lit.call_tool("get_paper", {"paper_id": "b" * 40}))
    assert "retry after 90 s" in first
    assert "Rate limited by Semantic Scholar, retry after 9" in second  # the pacer waits for the first's Retry-After
    assert len(server.requests_to(re.compile(r"/graph/v1/paper/.*"))) == 1


# --- paper_graph -----------------------------------------------------------------------------------------------------


async def test_paper_graph_is_bounded_and_paged(lit: Client, server: ReplayServer) -> None:
    server.add(Route("GET", S2_PATH, Response(200, s2_paper(S2_ID, "Famous", citationCount=100000))))
    citing = [{"citingPaper": s2_paper(f"{i:040x}", f"Citer {i}")} for i in range(30)]
    server.add(Route("GET", f"{S2_PATH}/citations", Response(200, {"offset": 0, "next": 30, "data": citing})))
    first = await call(lit, "paper_graph", {"paper_id": S2_ID, "limit": 10, "offset": 20})
    assert [p["title"] for p in first["papers"]] == [f"Citer {i}" for i in range(20, 30)]
    assert first["total"] == 100000 and first["next_offset"] == 30 and first["paper"]["in_library"]
    [request] = server.requests_to(f"{S2_PATH}/citations")
    assert request.query["limit"] == ["30"] and request.query["offset"] == ["0"]
    recorded = json.loads(
        (fixtures_dir("semanticscholar") / "responses" / "test_get_recommended_papers__00.json").read_text()
    )
    server.add(Route("GET", f"/recommendations/v1/papers/forpaper/{S2_ID}", Response(200, recorded)))
    recommended = await call(lit, "paper_graph", {"paper_id": S2_ID, "direction": "recommended", "limit": 5})
    assert len(recommended["papers"]) == 5 and recommended["next_offset"] == 5
    text = error_text(
        await lit.call_tool("paper_graph", {"paper_id": S2_ID, "direction": "recommended", "offset": 600})
    )
    assert "offset goes up to 499" in text


# --- bad input -------------------------------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\x00",
    "../../etc/passwd",
    "a" * 600,
    "ti:(",
    '"',
    "%&#?",
    "10.1234/" + "x" * 300,
    "日本語 🙂",
    "\\input{x}",
]


async def test_bad_input_to_every_tool_is_a_clear_error_never_a_crash(lit: Client, server: ReplayServer) -> None:
    server.add(Route("GET", re.compile(r".*"), Response(404, {"error": "not found"})))
    calls: list[tuple[str, dict[str, Any]]] = []
    for text in NASTY:
        calls += [
            ("search_papers", {"query": text}),
            ("get_paper", {"paper_id": text}),
            ("paper_graph", {"paper_id": text, "direction": "references"}),
            ("read_paper", {"paper_id": text, "section": text}),
            ("cite", {"paper_ids": [text], "bib_path": text}),
            ("verify_citations", {"path": text}),
        ]
    calls += [("search_papers", {"query": "x", "limit": 0}), ("paper_graph", {"paper_id": "1706.03762", "limit": -1})]
    for tool, args in calls:
        with anyio.fail_after(20):
            result = await lit.call_tool(tool, args)
        if result.is_error:
            text = error_text(result)
            assert text.startswith(f"Error executing tool {tool}: ") or "validation error" in text, (tool, args, text)
            assert len(text) > len(f"Error executing tool {tool}: ") + 10, (tool, args, text)


async def test_year_filters_and_date_sort_reach_both_sources_and_order_the_results(
    lit: Client, server: ReplayServer
) -> None:
    server.add(
        Route("GET", QUERY, feed(atom(
            {"id": "1901.00001", "title": "Old", "year": 2019}, {"id": "2101.00001", "title": "New", "year": 2021},
        )))
    )  # fmt: skip
    s2 = [s2_paper("9" * 40, "Middle", year=2020), s2_paper("8" * 40, "Too old", year=2015)]
    server.add(Route("GET", "/graph/v1/paper/search", Response(200, {"data": s2})))
    found = await call(lit, "search_papers", {"query": "x", "year_from": 2019, "year_to": 2021, "sort": "date"})
    assert [p["title"] for p in found["papers"]] == ["New", "Middle", "Old"], "newest first, out-of-range dropped"
    [arxiv_request] = server.requests_to(QUERY)
    assert arxiv_request.query["sortBy"] == ["submittedDate"]
    assert arxiv_request.query["search_query"] == ["(x) AND submittedDate:[201901010000 TO 202112312359]"]
    [s2_request] = server.requests_to("/graph/v1/paper/search")
    assert s2_request.query["year"] == ["2019-2021"]


async def test_the_s2_api_key_is_sent_and_speeds_up_the_pacing(workspace: Path, server: ReplayServer) -> None:
    server.add(Route("GET", S2_PATH, OK))
    settings = lit_settings(workspace, server, s2_api_key="k3y", s2_interval_s=None)
    async with Client(build_server(settings)) as client:
        await call(client, "get_paper", {"paper_id": S2_ID})
    [request] = server.requests_to(S2_PATH)
    assert request.headers["x-api-key"] == "k3y"
    assert S2Source(settings).pacer.interval_s == 1.0
    assert S2Source(lit_settings(workspace, server, s2_interval_s=None)).pacer.interval_s == 3.0
