"""find_code's ranking, date filter, cache and paper lookups, with PyGithub against a replay server."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from research_mcp.errors import BadInputError, GitHubRateLimitError
from research_mcp.store import Store
from research_mcp.tools.repos.find import PaperFacts, find_code, github_links
from research_mcp.tools.repos.github import GitHubClient
from research_mcp.tools.repos.papers import arxiv_id_of, library_lookup, query_only_lookup
from tests.replay import ReplayServer, Response, Route

TODAY = date(2026, 11, 24)
PAPER = PaperFacts(
    paper_id="2106.09685",
    arxiv_id="2106.09685v2",
    title="LoRA: Low-Rank Adaptation of Large Language Models",
    abstract="We propose LoRA ... Code at https://github.com/microsoft/LoRA.",
    comments="Code: github.com/microsoft/LoRA, 26 pages",
    year=2021,
)


def item(full_name: str, stars: int, created: str, description: str = "", **more: Any) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "full_name": full_name,
        "name": name,
        "owner": {"login": owner},
        "html_url": f"https://github.com/{full_name}",
        "description": description,
        "stargazers_count": stars,
        "created_at": f"{created}T00:00:00Z",
        "pushed_at": "2026-06-01T00:00:00Z",
        "default_branch": "main",
        "license": {"key": "mit", "spdx_id": "MIT", "name": "MIT License"},
        "fork": False,
        **more,
    }


def search_answer(*items: dict[str, Any]) -> Response:
    return Response(200, {"total_count": len(items), "incomplete_results": False, "items": list(items)},
                    {"X-RateLimit-Remaining": "7", "X-RateLimit-Resource": "search"})  # fmt: skip


def serve_searches(server: ReplayServer, qualifier: str = "") -> None:
    lora = item("microsoft/LoRA", 10_000, "2021-06-18", "Code for loralib, arXiv 2106.09685")
    server.add(Route("GET", "/repos/microsoft/LoRA", Response(200, lora)))
    by_id = [item("someone/lora-reimpl", 50, "2021-08-01", "Reimplementation of 2106.09685"), lora]
    server.add(
        Route(
            "GET",
            "/search/repositories",
            search_answer(*by_id),
            query={"q": '"2106.09685" in:name,description,readme' + qualifier},
        )
    )
    by_title = [
        item("fan/awesome-lora", 3000, "2023-01-01", "LoRA: Low-Rank Adaptation of Large Language Models, a list"),
        item("old/unrelated", 90_000, "2015-01-01", "Low rank things"),
    ]
    title_q = '"LoRA Low-Rank Adaptation of Large Language Models" in:name,description,readme'
    server.add(Route("GET", "/search/repositories", search_answer(*by_title), query={"q": title_q + qualifier}))


def test_links_from_the_paper_come_first_then_id_then_title_matches(tmp_path: Path) -> None:
    with ReplayServer() as server:
        serve_searches(server)
        with GitHubClient(server.url, None, timeout_s=5) as github:
            found = find_code(github, paper=PAPER, query=None, created_before=None, limit=10, store=None, today=TODAY)
        server.assert_all_matched()
    names = [c.repo for c in found.candidates]
    assert names == ["microsoft/LoRA", "someone/lora-reimpl", "fan/awesome-lora", "old/unrelated"]
    top = found.candidates[0]
    assert top.found_by == ["paper link", "arXiv id search"] and top.stars == 10_000 and top.license == "MIT"
    assert found.searches == [
        '"2106.09685" in:name,description,readme',
        '"LoRA Low-Rank Adaptation of Large Language Models" in:name,description,readme',
    ]
    assert found.searches_left == 7 and found.paper is not None and found.paper.year == 2021


def test_created_before_leaves_out_later_code_and_asks_github_for_it_too() -> None:
    with ReplayServer() as server:
        serve_searches(server, " created:<2021-07-01")  # the date qualifier is part of each query
        with GitHubClient(server.url, None, timeout_s=5) as github:
            found = find_code(
                github, paper=PAPER, query=None, created_before=date(2021, 7, 1), limit=10, store=None, today=TODAY
            )
        server.assert_all_matched()
    assert [c.repo for c in found.candidates] == ["microsoft/LoRA", "old/unrelated"]
    assert found.left_out_by_date == 2


def test_candidates_are_paged_from_the_cached_searches(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    many = [item(f"o/r{n:02d}", 100 - n, "2020-01-01") for n in range(12)]
    with ReplayServer() as server:
        server.add(Route("GET", "/search/repositories", search_answer(*many), query={"per_page": "30"}))
        with GitHubClient(server.url, None, timeout_s=5) as github:
            first = find_code(github, paper=None, query="q", created_before=None, limit=5, store=store)
            assert first.next_offset == 5
            rest = find_code(github, paper=None, query="q", created_before=None, limit=10, store=store, offset=5)
        assert len(server.requests) == 1
    assert [c.repo for c in first.candidates + rest.candidates] == [f"o/r{n:02d}" for n in range(12)]
    assert rest.next_offset is None and rest.total == 12
    store.close()


def test_searches_are_cached_so_a_second_call_sends_no_search(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    with ReplayServer() as server:
        server.add(Route("GET", "/search/repositories", search_answer(item("a/b", 5, "2020-01-01"))))
        with GitHubClient(server.url, None, timeout_s=5) as github:
            first = find_code(github, paper=None, query="graph nets", created_before=None, limit=5, store=store)
            second = find_code(github, paper=None, query="graph nets", created_before=None, limit=5, store=store)
        assert len(server.requests) == 1
    assert first.candidates == second.candidates and [c.repo for c in first.candidates] == ["a/b"]
    store.close()


def test_a_search_rate_limit_after_paper_links_keeps_the_links_and_says_why() -> None:
    limited = Response(403, {"message": "API rate limit exceeded"}, {"X-RateLimit-Remaining": "0",
                       "X-RateLimit-Resource": "search", "X-RateLimit-Reset": str(int(time.time()) + 30)})  # fmt: skip
    with ReplayServer() as server:
        serve_searches(server)
        server.add(Route("GET", "/search/repositories", limited))
        with GitHubClient(server.url, None, timeout_s=5) as github:
            found = find_code(github, paper=PAPER, query=None, created_before=None, limit=10, store=None)
            assert [c.repo for c in found.candidates] == ["microsoft/LoRA"]
            assert "search rate limit" in (found.note or "") and "GITHUB_TOKEN" in (found.note or "")
            with pytest.raises(GitHubRateLimitError, match="search rate limit"):
                find_code(github, paper=None, query="x", created_before=None, limit=10, store=None)


def test_a_linked_repository_that_is_gone_is_kept_and_flagged() -> None:
    paper = PaperFacts(paper_id="x", abstract="see https://github.com/gone/away.")
    with ReplayServer() as server:
        server.add(Route("GET", "/repos/gone/away", Response(404, {"message": "Not Found"})))
        with GitHubClient(server.url, None, timeout_s=5) as github:
            found = find_code(github, paper=paper, query=None, created_before=None, limit=5, store=None)
    [only] = found.candidates
    assert only.repo == "gone/away" and "not found on GitHub" in only.found_by[0]


def test_neither_paper_nor_query_says_what_to_give() -> None:
    with pytest.raises(BadInputError, match="paper_id"):
        find_code(GitHubClient("http://127.0.0.1:9", None, timeout_s=1), paper=None, query=" ", created_before=None,
                  limit=5, store=None)  # fmt: skip


def test_github_links_are_found_once_in_order_without_trailing_punctuation() -> None:
    text = "Code: https://github.com/a/b. Also (github.com/c/d.git) and https://github.com/A/B/tree/main, "
    text += "github.com/orgs/x"
    assert github_links(text, "http://github.com/e/f)") == ["a/b", "c/d", "e/f"]


def test_the_query_only_lookup_searches_by_arxiv_id_or_title() -> None:
    assert query_only_lookup("https://arxiv.org/abs/2106.09685v2").arxiv_id == "2106.09685v2"
    assert query_only_lookup("Attention Is All You Need").title == "Attention Is All You Need"
    with pytest.raises(BadInputError, match="get_paper"):
        query_only_lookup("10.1145/3292500.3330701")
    assert arxiv_id_of("arXiv:hep-th/9901001v2") == "hep-th/9901001v2"


def test_the_library_lookup_reads_the_workspace_papers_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    data = {"abstract": "Code: github.com/x/y", "comment": "ICLR"}
    store.connection().execute(
        "INSERT INTO papers (id, arxiv_id, doi, s2_id, title, year, data, added_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)",
        ("arXiv:2106.09685", "2106.09685", "10.48550/arxiv.2106.09685", None, "LoRA", 2021, json.dumps(data)),
    )
    lookup = library_lookup(store)
    for paper_id in ("2106.09685v2", "arXiv:2106.09685", "10.48550/ARXIV.2106.09685", "lora"):
        found = lookup(paper_id)
        assert (found.title, found.year, found.abstract, found.comments) == ("LoRA", 2021, data["abstract"], "ICLR")
    assert lookup("1706.03762").arxiv_id == "1706.03762" and lookup("1706.03762").title is None
    store.close()


def test_past_the_deadline_no_request_is_sent_and_the_answer_says_so() -> None:
    with ReplayServer() as server:
        with GitHubClient(server.url, None, timeout_s=5) as github:
            found = find_code(
                github, paper=PAPER, query=None, created_before=None, limit=5, store=None, deadline=time.monotonic() - 1
            )
        assert server.requests == []
    assert [(c.repo, c.found_by) for c in found.candidates] == [
        ("microsoft/LoRA", ["paper link (not looked up: rate limit or time limit)"])
    ]
    assert "time limit reached" in (found.note or "") and found.searches == []


def test_a_core_rate_limit_on_the_papers_links_still_lets_the_searches_run() -> None:
    limited = Response(403, {"message": "API rate limit exceeded"}, {"X-RateLimit-Remaining": "0",
                       "X-RateLimit-Resource": "core", "X-RateLimit-Reset": str(int(time.time()) + 600)})  # fmt: skip
    with ReplayServer() as server:
        serve_searches(server)
        server.add(Route("GET", "/repos/microsoft/LoRA", limited))
        with GitHubClient(server.url, None, timeout_s=5) as github:
            found = find_code(github, paper=PAPER, query=None, created_before=None, limit=10, store=None, today=TODAY)
    assert "core rate limit" in (found.note or "") and len(found.searches) == 2
    top = found.candidates[0]
    assert top.repo == "microsoft/LoRA" and top.stars == 10_000  # filled in by the arXiv id search
