"""find_code, fetch_repo and repo_summary through a real MCP client session, with PyGithub (and the literature
tools' arXiv client) talking to a replay server on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from research_mcp.config import Settings
from research_mcp.server import build_server
from tests.integration._client import call, error_text
from tests.replay import ATOM_TYPE, ReplayServer, Response, Route
from tests.unit.test_repos_fetch import git_daemon, serve_recorded_flow
from tests.unit.test_repos_find import item, search_answer
from tests.unit.test_repos_summary import make_repo

pytestmark = pytest.mark.anyio
__all__ = ["git_daemon"]  # a fixture, shared with the unit tests


def repos_settings(workspace: Path, server: ReplayServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workspace": workspace, "toolsets": ["repos"], "github_url": server.url,
        "arxiv_url": server.url + "/api/query", "s2_url": server.url, "arxiv_interval_s": 0, "s2_interval_s": 0,
        "literature_timeout_s": 1, "git_schemes": ["git"],  # the loopback daemon; random input never tries ssh
    }  # fmt: skip
    return Settings(**(values | overrides))


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as s:
        yield s


@pytest.fixture
async def repos(workspace: Path, server: ReplayServer) -> AsyncIterator[Client]:
    async with Client(build_server(repos_settings(workspace, server)), raise_exceptions=True) as c:
        yield c


def arxiv_feed(arxiv_id: str, title: str, summary: str, comment: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom">'
        "<opensearch:totalResults>1</opensearch:totalResults><opensearch:startIndex>0</opensearch:startIndex>"
        f"<opensearch:itemsPerPage>1</opensearch:itemsPerPage><entry><id>http://arxiv.org/abs/{arxiv_id}v1</id>"
        "<updated>2021-06-17T00:00:00Z</updated><published>2021-06-17T00:00:00Z</published>"
        f"<title>{title}</title><summary>{summary}</summary><author><name>E. Hu</name></author>"
        f"<arxiv:comment>{comment}</arxiv:comment>"
        '<category term="cs.CL"/><arxiv:primary_category term="cs.CL"/></entry></feed>'
    )
    return Response(200, body, {"Content-Type": ATOM_TYPE})


async def test_find_code_for_a_paper_uses_its_metadata_and_links(
    repos: Client, server: ReplayServer, workspace: Path
) -> None:
    source = workspace / "papers" / "2106.09685" / "source"  # where read_paper keeps the LaTeX source
    source.mkdir(parents=True)
    (source / "main.tex").write_text("Code: \\url{https://github.com/tex/linked}.\n")
    server.add(Route("GET", "/repos/tex/linked", Response(200, item("tex/linked", 1, "2021-06-01"))))
    server.add(Route("GET", re.compile(r"/graph/v1/paper/.*"), Response(404, {"error": "Paper not found"})))
    server.add(Route("GET", "/api/query", arxiv_feed("2106.09685", "LoRA", "An abstract.", "Code: github.com/ms/LoRA")))
    server.add(Route("GET", "/repos/ms/LoRA", Response(200, item("ms/LoRA", 9000, "2021-06-18"))))
    by_id = search_answer(item("x/lora-copy", 3, "2022-01-01", "2106.09685 again"))
    server.add(Route("GET", "/search/repositories", by_id, query={"q": '"2106.09685" in:name,description,readme'}))
    server.add(Route("GET", "/search/repositories", search_answer(), query={"q": '"LoRA" in:name,description,readme'}))
    found = await call(repos, "find_code", {"paper_id": "arXiv:2106.09685", "limit": 5})
    assert [c["repo"] for c in found["candidates"]] == ["ms/LoRA", "tex/linked", "x/lora-copy"]
    assert found["candidates"][0]["found_by"] == ["paper link"] and found["paper"]["title"] == "LoRA"
    assert found["candidates"][1]["found_by"] == ["paper link"]
    assert found["paper"]["year"] == 2021
    server.assert_all_matched()


async def test_find_code_by_query_then_fetch_then_summary(repos: Client, server: ReplayServer, workspace: Path) -> None:
    full_name, sha = serve_recorded_flow(server)
    server.add(Route("GET", "/search/repositories", search_answer(item(full_name, 1, "2024-01-24"))))
    found = await call(repos, "find_code", {"query": "archive fixture", "created_before": "2025-01-01"})
    [candidate] = found["candidates"]
    assert candidate["repo"] == full_name and found["searches"] == ["archive fixture created:<2025-01-01"]
    fetched = await call(repos, "fetch_repo", {"repo": f"https://github.com/{full_name}"})
    assert fetched["commit"] == sha and fetched["reused"] is False and fetched["requests"] == 3
    assert fetched["summary"]["files"] == 1 and fetched["summary"]["readme_excerpt"]
    before = len(server.requests)
    again = await call(repos, "fetch_repo", {"repo": full_name, "ref": sha})
    assert again["reused"] is True and again["path"] == fetched["path"] and len(server.requests) == before
    summary = await call(repos, "repo_summary", {"path": fetched["path"], "tree_depth": 3})
    assert summary["files"] == 1 and summary["tree"] == [{"path": "README.md", "kind": "file", "size_bytes": 13}]
    server.assert_all_matched()


async def test_fetch_repo_clones_other_hosts_shallowly(repos: Client, git_daemon: tuple[str, str, str]) -> None:
    url, tip, _ = git_daemon
    fetched = await call(repos, "fetch_repo", {"repo": url})
    assert fetched["source"] == "git" and fetched["commit"] == tip and fetched["path"].startswith("repos/127.0.0.1__me")
    refused = await repos.call_tool("fetch_repo", {"repo": url.replace("git://", "http://")})
    assert "only git URLs may be cloned" in error_text(refused)


async def test_repo_summary_of_a_realistic_repository_in_the_workspace(repos: Client, workspace: Path) -> None:
    make_repo(workspace / "code" / "diffunet")
    summary = await call(repos, "repo_summary", {"path": "code/diffunet"})
    assert summary["license"] == "MIT" and summary["path"] == "code/diffunet"
    commands = [e["value"] for e in summary["entry_points"] if e["kind"] == "readme_command"]
    assert "python train.py --config configs/base.yaml --epochs 10" in commands


async def test_errors_are_tool_results_that_say_what_to_do(repos: Client, server: ReplayServer) -> None:
    limited = Response(403, {"message": "API rate limit exceeded"}, {"X-RateLimit-Remaining": "0",
                       "X-RateLimit-Resource": "core", "X-RateLimit-Reset": "4102444800"})  # fmt: skip
    server.add(Route("GET", "/repos/busy/repo", limited))
    server.add(Route("GET", "/repos/no/such", Response(404, {"message": "Not Found"})))
    cases = {
        ("fetch_repo", "limit"): ({"repo": "busy/repo"}, "GITHUB_TOKEN"),
        ("fetch_repo", "404"): ({"repo": "no/such"}, "Check the owner/name"),
        ("fetch_repo", "file"): ({"repo": "file:///etc/passwd"}, "file://"),
        ("fetch_repo", "ext"): ({"repo": "ext::sh -c id"}, "transport"),
        ("fetch_repo", "flag"): ({"repo": "--upload-pack=x"}, "may not start with '-'"),
        ("fetch_repo", "ref"): ({"repo": "a/b", "ref": "-x"}, "Refused ref"),
        ("find_code", "nothing"): ({}, "paper_id"),
        ("repo_summary", "missing"): ({"path": "repos/none"}, "list_files"),
        ("repo_summary", "escape"): ({"path": "../x"}, "'..'"),
    }
    for (tool, case), (args, says) in cases.items():
        with anyio.fail_after(20):
            result = await repos.call_tool(tool, args)
        assert says in error_text(result), (tool, case)
    assert "resets at 00:00:00 UTC" in error_text(await repos.call_tool("fetch_repo", {"repo": "busy/repo"}))


async def test_annotations_say_which_tools_fetch_and_which_only_read(repos: Client) -> None:
    tools = {t.name: t for t in (await repos.list_tools()).tools}
    assert {"find_code", "fetch_repo", "repo_summary"} <= set(tools)
    for name in ("find_code", "fetch_repo"):
        annotations = tools[name].annotations
        assert annotations is not None and annotations.open_world_hint and not annotations.read_only_hint
    summary = tools["repo_summary"].annotations
    assert summary is not None and summary.read_only_hint and not summary.open_world_hint


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(repo=st.text(min_size=3, max_size=60), ref=st.one_of(st.none(), st.text(max_size=20)))
async def test_any_repo_argument_gives_a_result_or_a_clear_error(
    repos: Client, server: ReplayServer, repo: str, ref: str | None
) -> None:
    server.add(Route("GET", re.compile(r"/repos/.*"), Response(404, {"message": "Not Found"})))
    args: dict[str, Any] = {"repo": repo} | ({"ref": ref} if ref is not None else {})
    with anyio.fail_after(20):
        result = await repos.call_tool("fetch_repo", args)
    assert result.is_error
    text = error_text(result)
    assert "Refused" in text or "GitHub" in text or "git" in text or "validation" in text.lower(), text
