"""The replay server the literature and GitHub tests share, exercised through real HTTP clients."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import anyio
import anyio.to_thread
import httpx
import pytest

from tests.replay import (
    GITHUB_API,
    ReplayServer,
    Response,
    Route,
    arxiv_route,
    cassette_routes,
    fixture_path,
    pygithub_routes,
    same_body,
)

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


@pytest.fixture
def client(server: ReplayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5, trust_env=False) as c:
        yield c


def urlopen(url: str, data: bytes | None = None) -> http.client.HTTPResponse:
    """urllib without proxies, with a bounded wait."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(url, data=data, timeout=5)


# --- routing -----------------------------------------------------------------------------------------------------


def test_a_route_matches_its_method_and_exact_path(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("GET", "/a", Response(body="a")))
    assert client.get("/a").text == "a"
    assert client.post("/a").status_code == 404
    assert client.get("/a/b").status_code == 404


def test_a_regex_route_must_match_the_whole_path(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("get", re.compile(r"/papers/\d+"), Response(body="paper")))
    assert client.get("/papers/12").text == "paper"
    assert client.get("/papers/12/citations").status_code == 404


def test_query_parameters_match_as_a_subset(server: ReplayServer) -> None:
    server.add(Route("GET", "/api/query", Response(body="feed"), query={"id_list": "1605.08386"}))
    with urlopen(f"{server.url}/api/query?search_query=&id_list=1605.08386&start=0") as answer:
        assert answer.read() == b"feed"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urlopen(f"{server.url}/api/query?id_list=2104.12255")
    assert caught.value.code == 404
    caught.value.close()


def test_an_exact_query_rejects_extra_parameters(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("GET", "/s", Response(body="page 1"), query={"q": "x"}, exact_query=True))
    assert client.get("/s", params={"q": "x"}).text == "page 1"
    assert client.get("/s", params={"q": "x", "page": "2"}).status_code == 404


def test_a_body_predicate_chooses_between_routes(server: ReplayServer, client: httpx.Client) -> None:
    server.add(
        Route("POST", "/batch", Response(body="one"), body=same_body(b'{"ids": ["1"]}')),
        Route("POST", "/batch", Response(body="two"), body=same_body(b'{"ids": ["2"]}')),
    )
    assert client.post("/batch", content=b'{"ids":["1"]}').text == "one"
    assert client.post("/batch", json={"ids": ["2"]}).text == "two"
    assert client.post("/batch", json={"ids": ["3"]}).status_code == 404


def test_the_most_recently_added_route_wins(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("GET", re.compile(r"/.*"), Response(body="fallback")))
    server.add(Route("GET", "/special", Response(body="override")))
    assert client.get("/special").text == "override"
    assert client.get("/other").text == "fallback"


def test_an_unmatched_request_gets_a_404_naming_it_and_listing_the_routes(
    server: ReplayServer, client: httpx.Client
) -> None:
    server.add(Route("GET", "/known", query={"a": "1"}))
    answer = client.post("/unknown?x=1", content=b"payload")
    assert answer.status_code == 404
    info = answer.json()
    assert (info["method"], info["path"], info["query"]) == ("POST", "/unknown", {"x": ["1"]})
    assert info["routes"] == ["GET /known query>={'a': '1'}"]
    [recorded] = server.requests
    assert not recorded.matched and recorded.body == b"payload"
    with pytest.raises(AssertionError, match=r"POST /unknown\?x=1"):
        server.assert_all_matched()


def test_assert_all_matched_passes_when_every_request_matched(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("GET", "/ok"))
    client.get("/ok")
    server.assert_all_matched()


def test_a_route_needs_at_least_one_response() -> None:
    with pytest.raises(ValueError, match="at least one Response"):
        Route("GET", "/", [])


# --- responses ---------------------------------------------------------------------------------------------------


def test_bodies_are_sent_as_json_bytes_or_text_with_matching_content_types(
    server: ReplayServer, client: httpx.Client
) -> None:
    server.add(
        Route("GET", "/json", Response(201, {"ok": True, "n": [1, 2]}, {"X-Extra": "yes"})),
        Route("GET", "/bytes", Response(body=b"\x00\xff")),
        Route("GET", "/text", Response(body="héllo")),
        Route("GET", "/xml", Response(body="<feed/>", headers={"Content-Type": "application/atom+xml"})),
    )
    answer = client.get("/json")
    assert (answer.status_code, answer.json(), answer.headers["x-extra"]) == (201, {"ok": True, "n": [1, 2]}, "yes")
    assert answer.headers["content-type"] == "application/json"
    answer = client.get("/bytes")
    assert (answer.content, answer.headers["content-type"]) == (b"\x00\xff", "application/octet-stream")
    assert client.get("/text").text == "héllo"
    assert client.get("/xml").headers["content-type"] == "application/atom+xml"


def test_a_head_request_gets_headers_without_a_body(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("HEAD", "/file", Response(body=b"12345")))
    answer = client.head("/file")
    assert (answer.status_code, answer.headers["content-length"], answer.content) == (200, "5", b"")


def test_a_sequence_answers_429_then_200(server: ReplayServer, client: httpx.Client) -> None:
    route = Route("GET", "/search", [Response(429, {"error": "slow down"}, {"Retry-After": "1"}), Response(200, "ok")])
    server.add(route)
    first = client.get("/search")
    assert (first.status_code, first.headers["retry-after"]) == (429, "1")
    assert client.get("/search").text == "ok"
    assert client.get("/search").text == "ok"  # the last answer repeats
    assert route.served == 3


def test_an_exhausted_sequence_that_does_not_repeat_falls_through(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("GET", "/x", Response(body="older")))
    server.add(Route("GET", "/x", [Response(body="once")], repeat_last=False))
    server.add(Route("GET", "/y", [Response(body="once")], repeat_last=False))
    assert [client.get("/x").text for _ in range(2)] == ["once", "older"]
    assert [client.get("/y").status_code for _ in range(2)] == [200, 404]


def test_a_delay_holds_the_answer_for_at_least_that_long(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("GET", "/slow", Response(body="late", delay_s=0.3)))
    started = time.monotonic()
    assert client.get("/slow").text == "late"
    assert 0.3 <= time.monotonic() - started < 3


@pytest.mark.anyio
async def test_a_delayed_answer_does_not_hold_up_other_requests(server: ReplayServer) -> None:
    server.add(Route("GET", "/slow", Response(body="slow", delay_s=1.0)), Route("GET", "/fast", Response(body="fast")))
    finished: list[str] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=5, trust_env=False) as client:

        async def fetch(path: str) -> None:
            finished.append((await client.get(path)).text)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(fetch, "/slow")
                tasks.start_soon(fetch, "/fast")
    assert finished == ["fast", "slow"]


@pytest.mark.anyio
async def test_ten_delayed_requests_are_answered_concurrently(server: ReplayServer) -> None:
    server.add(Route("GET", re.compile(r"/item/\d+"), Response(body="done", delay_s=0.3)))
    answers: list[int] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=5, trust_env=False) as client:

        async def fetch(i: int) -> None:
            answers.append((await client.get(f"/item/{i}")).status_code)

        started = time.monotonic()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                for i in range(10):
                    tasks.start_soon(fetch, i)
        elapsed = time.monotonic() - started
    assert answers == [200] * 10
    assert 0.3 <= elapsed < 1.5


def test_a_truncated_body_raises_in_httpx(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("GET", "/cut", Response(body={"papers": ["a", "b", "c"]}, truncate_at=10)))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/cut")


def test_a_truncated_body_raises_in_urllib(server: ReplayServer) -> None:
    server.add(Route("GET", "/cut", Response(body="<feed><entry/></feed>", truncate_at=8)))
    with urlopen(f"{server.url}/cut") as answer, pytest.raises(http.client.IncompleteRead) as caught:
        answer.read()
    assert caught.value.partial == b"<feed><e"


def test_a_dropped_connection_raises_in_the_client(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("GET", "/drop", Response(drop=True)))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/drop")
    assert len(server.requests_to("/drop")) == 1


# --- URL rewriting -----------------------------------------------------------------------------------------------


def test_urls_are_rewritten_in_the_body_and_location_and_link_headers() -> None:
    body = {"url": f"{GITHUB_API}/repos/o/r", "html_url": "https://github.com/o/r"}
    link = f'<{GITHUB_API}/search?page=2>; rel="next"'
    headers = {"Location": f"{GITHUB_API}/repos/o/r", "Link": link, "X-Other": GITHUB_API}
    with ReplayServer([Route("GET", "/r", Response(301, body, headers))], rewrite={GITHUB_API: None}) as server:
        with httpx.Client(base_url=server.url, timeout=5, trust_env=False) as client:
            answer = client.get("/r")
        own = server.url
    assert answer.json() == {"url": f"{own}/repos/o/r", "html_url": "https://github.com/o/r"}
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert answer.headers["location"] == f"{own}/repos/o/r"
    assert answer.headers["link"] == f'<{own}/search?page=2>; rel="next"'
    assert answer.headers["x-other"] == GITHUB_API


def test_a_route_can_rewrite_to_an_explicit_replacement_and_leaves_binary_bodies_alone(
    server: ReplayServer, client: httpx.Client
) -> None:
    rewrite = {"https://upstream.example": "http://elsewhere.test"}
    server.add(
        Route("GET", "/text", Response(body="see https://upstream.example/x"), rewrite=rewrite),
        Route("GET", "/blob", Response(body=b"https://upstream.example/x"), rewrite=rewrite),
    )
    answer = client.get("/text")
    assert answer.text == "see http://elsewhere.test/x"
    assert answer.headers["content-length"] == str(len(answer.content))
    assert client.get("/blob").content == b"https://upstream.example/x"


# --- recording ---------------------------------------------------------------------------------------------------


def test_every_request_is_recorded_in_order_with_increasing_arrival_times(
    server: ReplayServer, client: httpx.Client
) -> None:
    server.add(Route("GET", "/api/query"), Route("POST", "/batch"))
    before = time.monotonic()
    client.get("/api/query", params=[("id_list", "1"), ("id_list", "2"), ("start", "")], headers={"X-Key": "k"})
    client.post("/batch", json={"ids": [1]})
    client.get("/api/query")
    after = time.monotonic()
    first, second, third = server.requests
    assert (first.method, first.path, first.query) == ("GET", "/api/query", {"id_list": ["1", "2"], "start": [""]})
    assert first.headers["x-key"] == "k"
    assert (second.method, json.loads(second.body)) == ("POST", {"ids": [1]})
    assert before <= first.arrived_at < second.arrived_at < third.arrived_at <= after
    assert [r.path for r in server.requests_to("/api/query", method="get")] == ["/api/query", "/api/query"]
    assert server.requests_to(re.compile(r"/b.*"), method="POST") == [second]


def test_a_chunked_request_body_is_recorded_whole(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("POST", "/upload"))
    client.post("/upload", content=iter([b"part one, ", b"part two"]))
    [recorded] = server.requests
    assert (recorded.headers["transfer-encoding"], recorded.body) == ("chunked", b"part one, part two")


def test_the_arrival_time_is_taken_before_the_delay(server: ReplayServer, client: httpx.Client) -> None:
    server.add(Route("GET", "/slow", Response(delay_s=0.4)))
    client.get("/slow")
    answered = time.monotonic()
    [recorded] = server.requests
    assert answered - recorded.arrived_at >= 0.4


# --- lifecycle ---------------------------------------------------------------------------------------------------


def test_after_exit_the_port_refuses_connections_and_no_thread_is_left() -> None:
    with ReplayServer([Route("GET", "/")]) as server:
        port = server.port
        with httpx.Client(base_url=server.url, timeout=5, trust_env=False) as client:
            client.get("/")  # leaves a kept-alive connection open while the server stops
            server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert [t.name for t in threading.enumerate() if t.name.startswith("replay-")] == []
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


@pytest.mark.anyio
async def test_stopping_cuts_a_long_delay_short(server: ReplayServer) -> None:
    arrived = threading.Event()

    def note_arrival(body: bytes) -> bool:
        arrived.set()
        return True

    server.add(Route("GET", "/forever", Response(delay_s=60), body=note_arrival))
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:

        async def fetch() -> None:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"{server.url}/forever")

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(fetch)
                assert await anyio.to_thread.run_sync(arrived.wait, 5)
                started = time.monotonic()
                server.stop()
                assert time.monotonic() - started < 2


# --- loaders for the shared fixtures -----------------------------------------------------------------------------


def test_a_classic_vcrpy_cassette_replays_its_recorded_answer(server: ReplayServer, client: httpx.Client) -> None:
    server.add(*cassette_routes(fixture_path("semanticscholar/cassettes/test_get_paper.yaml")))
    answer = client.get("/graph/v1/paper/10.1093/mind/lix.236.433", params={"fields": "title"})
    assert answer.json()["title"] == "Computing Machinery and Intelligence"
    assert answer.headers["content-type"] == "application/json"
    assert client.get("/graph/v1/paper/10.1093/mind/lix.236.433", params={"fields": "year"}).status_code == 404


def test_an_httpx_flavoured_cassette_replays_every_page(server: ReplayServer, client: httpx.Client) -> None:
    routes = cassette_routes(fixture_path("semanticscholar/cassettes/test_get_author_papers.yaml"))
    server.add(*routes)
    answer = client.get("/graph/v1/author/1723755/papers", params={"fields": "title", "offset": 100, "limit": 100})
    assert (answer.status_code, answer.json()["offset"], answer.json()["next"]) == (200, 100, 200)
    assert len(routes) == 9


def test_a_cassette_post_matches_its_recorded_json_body(server: ReplayServer, client: httpx.Client) -> None:
    server.add(*cassette_routes(fixture_path("semanticscholar/cassettes/test_get_papers.yaml")))
    ids = ["CorpusId:470667", "10.2139/ssrn.2250500", "0f40b1f08821e22e859c6050916cec3667778613"]
    answer = client.post("/graph/v1/paper/batch", params={"fields": "authors"}, json={"ids": ids})
    assert [paper["authors"][0]["name"] for paper in answer.json()][:2] == ["Marianne Bertrand", "E. Duflo"]
    other = client.post("/graph/v1/paper/batch", params={"fields": "authors"}, json={"ids": ids[:1]})
    assert other.status_code == 404


def test_a_pygithub_recording_follows_its_rewritten_link_header(server: ReplayServer, client: httpx.Client) -> None:
    server.add(*pygithub_routes(fixture_path("github/pygithub-json/Search.testSearchRepos.json")))
    first = client.get("/search/repositories", params={"q": "github language:Python", "sort": "stars", "order": "desc"})
    assert first.json()["total_count"] == 2723
    assert GITHUB_API not in first.text and f"{server.url}/users/kennethreitz" in first.text
    second = client.get(first.links["next"]["url"])
    assert second.status_code == 200 and second.json()["items"]
    assert int(second.headers["content-length"]) == len(second.content)
    server.assert_all_matched()


def test_a_pygithub_redirect_is_rewritten_onto_the_replay_server(server: ReplayServer, client: httpx.Client) -> None:
    server.add(*pygithub_routes(fixture_path("github/pygithub-json/Issue174.testGetDirContentsWithHttpRedirect.json")))
    answer = client.get("/repos/twbs/bootstrap/contents/js/", follow_redirects=True)
    assert [r.status_code for r in answer.history] == [302]
    assert answer.url == f"{server.url}/repositories/2126244/contents/js"
    assert any(entry["path"] == "js/dist" for entry in answer.json())


def test_a_pygithub_request_recorded_twice_answers_in_recorded_order(
    server: ReplayServer, client: httpx.Client
) -> None:
    server.add(*pygithub_routes(fixture_path("github/pygithub-json/SpecificExceptions.testRateLimitExceeded.json")))
    assert [client.get("/users/jacquev6").status_code for _ in range(2)] == [200, 403]


def test_an_arxiv_recording_is_served_for_its_exact_recorded_query(server: ReplayServer) -> None:
    server.add(arxiv_route(fixture_path("arxiv/recorded/id_1605.08386_s0_m100_199195aa31ad.json")))
    query = "search_query=&id_list=1605.08386&sortBy=relevance&sortOrder=descending&start=0&max_results=100"
    with urlopen(f"{server.url}/api/query?{query}") as answer:
        assert answer.headers["Content-Type"].startswith("application/atom+xml")
        feed = ET.fromstring(answer.read())
    [entry] = feed.findall(f"{ATOM}entry")
    assert "1605.08386" in (entry.findtext(f"{ATOM}id") or "")
    with pytest.raises(urllib.error.HTTPError) as caught:  # another page size is another recording
        urlopen(f"{server.url}/api/query?{query.replace('max_results=100', 'max_results=10')}")
    assert caught.value.code == 404
    caught.value.close()


def test_an_arxiv_xml_file_is_served_for_a_query_subset(server: ReplayServer, client: httpx.Client) -> None:
    xml_file = fixture_path("arxiv/xml/q_testing_s10_m10_34e56e15aaac.xml")
    server.add(arxiv_route(xml_file, {"search_query": "testing", "start": "10"}))
    answer = client.get("/api/query", params={"search_query": "testing", "start": 10, "max_results": 10})
    assert answer.content == xml_file.read_bytes()
    assert ET.fromstring(answer.content).findtext(f"{OPENSEARCH}totalResults") == "214881"


def test_the_arxiv_error_recording_keeps_its_400(server: ReplayServer, client: httpx.Client) -> None:
    server.add(arxiv_route(fixture_path("arxiv/recorded/id_abc_s0_m100_b79c8dcf6bc3.json"), {"id_list": "abc"}))
    answer = client.get("/api/query", params={"id_list": "abc", "start": 0})
    assert answer.status_code == 400 and b"<feed" in answer.content
