"""The GitHub client (PyGithub) against a replay server on 127.0.0.1: real recordings and answers built here.

The helpers at the top are shared with tests/integration/test_repos_tools.py.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from research_mcp.errors import GitHubRateLimitError, RepoError
from research_mcp.tools.repos.github import GitHubClient, rate_limit_message, web_host
from tests.conftest import fixtures_dir
from tests.replay import GITHUB_API, ReplayServer, Response, Route, pygithub_routes

_DROPPED = {"content-length", "transfer-encoding", "content-encoding", "status", "connection"}


def github_fixture(relative: str) -> Path:
    return fixtures_dir("github") / relative


def recorded(name: str, index: int = -1) -> Response:
    """One recorded PyGithub exchange's answer (status, headers, JSON body), to serve on any route."""
    exchange = json.loads(github_fixture(f"pygithub-json/{name}.json").read_text())[index]
    headers = [(k, v) for k, v in exchange["response_headers"].items() if k.lower() not in _DROPPED]
    body = exchange["body"]
    raw = b"" if body is None else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return Response(int(exchange["status"]), raw, headers)


def repo_json(full_name: str, **changes: Any) -> dict[str, Any]:
    """A modern repository object: the recorded PyGithub/PyGithub one, renamed."""
    [exchange] = json.loads(github_fixture("pygithub-json/Repository.setUp.json").read_text())
    data: dict[str, Any] = copy.deepcopy(exchange["body"])
    owner, name = full_name.split("/")
    text = json.dumps(data).replace("PyGithub/PyGithub", full_name)
    data = json.loads(text)
    data.update(name=name, full_name=full_name, default_branch="main")
    data["owner"]["login"] = owner
    data.update(changes)
    return data


def commit_json(sha: str) -> dict[str, Any]:
    return {"sha": sha, "url": f"{GITHUB_API}/commits/{sha}", "commit": {"message": "x"}, "files": []}


def octokit_archive() -> tuple[str, str, bytes, str]:
    """The recorded tarball (octokit get-archive): full name, commit sha, .tar.gz bytes, codeload path."""
    exchanges = json.loads(github_fixture("octokit/get-archive.raw-fixture.json").read_text())
    download = next(e for e in exchanges if "legacy.tar.gz" in e["path"])
    full_name = "/".join(download["path"].split("/")[1:3])
    return full_name, "900f3f818d8c2ac46196b3cdaee655d1ee986381", bytes.fromhex(download["response"]), download["path"]


def archive_routes(full_name: str, sha: str, body: bytes, codeload_path: str) -> list[Route]:
    """The tarball redirect to codeload and the download, as GitHub answers them (URLs rewritten to the server)."""
    location = f"https://codeload.github.com{codeload_path}"
    return [
        Route(
            "GET",
            f"/repos/{full_name}/tarball/{sha}",
            Response(302, b"", {"Location": location, "X-RateLimit-Resource": "core"}),
            rewrite={"https://codeload.github.com": None},
        ),
        Route("GET", codeload_path, Response(200, body, {"Content-Type": "application/x-gzip"})),
    ]


def client_for(server: ReplayServer, token: str | None = None) -> GitHubClient:
    return GitHubClient(server.url, token, timeout_s=5)


# --- tests -----------------------------------------------------------------------------------------------------------


def test_web_host_maps_the_api_host_to_the_web_host() -> None:
    assert web_host("https://api.github.com") == "github.com"
    assert web_host("https://ghe.example.com/api/v3") == "ghe.example.com"
    assert web_host("http://127.0.0.1:8123") == "127.0.0.1:8123"


def test_a_recorded_repository_is_read_through_pygithub() -> None:
    with ReplayServer() as server:
        server.add(*pygithub_routes(github_fixture("pygithub-json/Repository.setUp.json")))
        with client_for(server) as github:
            facts = github.repo("PyGithub/PyGithub")
        server.assert_all_matched()
    assert facts.full_name == "PyGithub/PyGithub"
    assert facts.license_id() == "LGPL-3.0" and isinstance(facts["stargazers_count"], int)


def test_a_recorded_search_answer_is_read_without_extra_requests() -> None:
    with ReplayServer(rewrite={GITHUB_API: None}) as server:
        server.add(Route("GET", "/search/repositories", recorded("Search.testSearchRepos", 0), query={"q": "github"}))
        with client_for(server) as github:
            items, total, left = github.search("github", 5)
        assert len(server.requests) == 1
    assert total == 2723 and left == 29
    assert items[0].full_name == "kennethreitz/legit" and items[0].license_id() is None


def test_a_recorded_404_says_the_repository_is_not_there() -> None:
    with ReplayServer() as server:
        server.add(Route("GET", "/repos/jacquev6/Xxx", recorded("SpecificExceptions.testUnknownObject")))
        with client_for(server) as github, pytest.raises(RepoError, match=r"no repository 'jacquev6/Xxx' \(404\)"):
            github.repo("jacquev6/Xxx")


def test_a_recorded_401_says_to_fix_the_token() -> None:
    with ReplayServer() as server:
        server.add(Route("GET", "/repos/a/b", recorded("SpecificExceptions.testBadCredentials")))
        with client_for(server, "bad") as github, pytest.raises(RepoError, match="Fix GITHUB_TOKEN"):
            github.repo("a/b")


def test_a_recorded_primary_rate_limit_names_the_limit_and_the_token() -> None:
    with ReplayServer() as server:
        server.add(Route("GET", "/repos/a/b", recorded("SpecificExceptions.testRateLimitExceeded")))
        with client_for(server) as github, pytest.raises(GitHubRateLimitError) as caught:
            github.repo("a/b")
    message = str(caught.value)
    assert "core rate limit is used up (60 requests an hour)" in message
    assert "GITHUB_TOKEN" in message and "5000" in message and caught.value.resource == "core"


def test_a_recorded_secondary_limit_says_when_to_retry_and_never_waits() -> None:
    with ReplayServer() as server:
        route = Route("GET", "/search/repositories", recorded("SpecificExceptions.testAuthenticatedRateLimitExceeded"))
        server.add(route)
        started = time.monotonic()
        with client_for(server, "token") as github, pytest.raises(GitHubRateLimitError) as caught:
            github.search("x", 10)
        assert time.monotonic() - started < 3 and route.served == 1
    assert "retry in 60 s" in str(caught.value) and caught.value.retry_after_s == 60
    assert "already in use" in str(caught.value)


def test_a_search_limit_says_which_limit_when_it_resets_and_that_a_token_raises_it() -> None:
    reset = int(time.time()) + 42
    headers = {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset),
        "X-RateLimit-Resource": "search",
    }
    answer = Response(403, {"message": "API rate limit exceeded for 1.2.3.4."}, headers)
    with ReplayServer() as server:
        server.add(Route("GET", "/search/repositories", answer))
        with client_for(server) as github, pytest.raises(GitHubRateLimitError) as caught:
            github.search("x", 10)
    message = str(caught.value)
    assert "search rate limit is used up (10 requests a minute)" in message
    assert time.strftime("%H:%M:%S", time.gmtime(reset)) in message
    assert "from 10 to 30" in message and 40 <= (caught.value.retry_after_s or 0) <= 42


def test_a_429_without_headers_is_still_a_rate_limit() -> None:
    error = rate_limit_message({}, resource_hint="search", has_token=False, now=0)
    assert "search rate limit" in str(error) and "resets within a minute" in str(error)


def test_ref_resolves_to_a_commit_and_the_recorded_tarball_streams_through_the_redirect(tmp_path: Path) -> None:
    full_name, sha, body, codeload = octokit_archive()
    with ReplayServer() as server:
        server.add(Route("GET", f"/repos/{full_name}/commits/main", Response(200, commit_json(sha))))
        server.add(*archive_routes(full_name, sha, body, codeload))
        with client_for(server, "secret") as github:
            assert github.commit_of(full_name, "main") == sha
            written = github.download_tarball(
                full_name, sha, tmp_path / "a.tgz", max_bytes=1 << 20, deadline=time.monotonic() + 10
            )
        server.assert_all_matched()
        [download] = server.requests_to(codeload)
        assert "authorization" in download.headers  # the same host here; GitHub's codeload is another host
    assert written == len(body) == (tmp_path / "a.tgz").stat().st_size


def test_a_download_past_the_size_cap_is_stopped(tmp_path: Path) -> None:
    full_name, sha, body, codeload = octokit_archive()
    with ReplayServer() as server:
        server.add(*archive_routes(full_name, sha, body, codeload))
        with client_for(server) as github, pytest.raises(RepoError, match="over the 100-byte cap"):
            github.download_tarball(full_name, sha, tmp_path / "a.tgz", max_bytes=100, deadline=time.monotonic() + 9)


def test_a_redirect_to_a_foreign_host_is_refused(tmp_path: Path) -> None:
    with ReplayServer() as server:
        server.add(
            Route("GET", "/repos/a/b/tarball/" + "1" * 40, Response(302, b"", {"Location": "https://evil.test/x"}))
        )
        with client_for(server) as github, pytest.raises(RepoError, match="somewhere it may not go"):
            github.download_tarball("a/b", "1" * 40, tmp_path / "x", max_bytes=100, deadline=time.monotonic() + 9)


def test_an_unreachable_github_says_which_url_to_check() -> None:
    with ReplayServer() as server:
        url = server.url
    with GitHubClient(url, None, timeout_s=2) as github, pytest.raises(RepoError, match="RESEARCH_MCP_GITHUB_URL"):
        github.repo("a/b")


def test_a_recorded_redirect_to_a_host_outside_the_api_is_refused(tmp_path: Path) -> None:
    with ReplayServer() as server:  # the 2012 recording sends the download to nodeload.github.com
        server.add(Route("GET", "/repos/a/b/tarball/" + "1" * 40, recorded("Repository.testGetArchiveLink", 0)))
        with client_for(server) as github, pytest.raises(RepoError, match="nodeload.github.com"):
            github.download_tarball("a/b", "1" * 40, tmp_path / "x", max_bytes=100, deadline=time.monotonic() + 9)


def test_a_recorded_422_says_to_check_the_ref() -> None:
    exchanges = json.loads(github_fixture("octokit/errors.raw-fixture.json").read_text())
    refused = next(e for e in exchanges if e["status"] == 422)
    raw = refused["rawHeaders"]
    headers = [(k, v) for k, v in zip(raw[::2], raw[1::2], strict=True) if k.lower() not in _DROPPED]
    with ReplayServer() as server:
        server.add(
            Route("GET", "/repos/a/b/commits/nope", Response(422, json.dumps(refused["response"]).encode(), headers))
        )
        with client_for(server) as github, pytest.raises(RepoError, match="Validation Failed. Check the ref"):
            github.commit_of("a/b", "nope")
