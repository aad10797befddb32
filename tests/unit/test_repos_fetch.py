"""fetch_repo's domain code: the whole GitHub flow on the recorded tarball, reuse without requests, nothing left
behind on refusal, repository specs, and shallow clones from a `git daemon` on loopback."""

from __future__ import annotations

import io
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from research_mcp.errors import BadInputError, RepoError, UnsafeArchiveError
from research_mcp.store import Store
from research_mcp.tools.repos.fetch import FetchLimits, fetch_repo, parse_repo_spec, repo_summary
from research_mcp.tools.repos.github import GitHubClient
from research_mcp.workspace import Workspace
from tests.replay import ReplayServer, Response, Route
from tests.unit.test_repos_github import archive_routes, commit_json, octokit_archive, repo_json

LIMITS = FetchLimits(
    max_download_bytes=1 << 20, max_unpacked_bytes=1 << 20, max_files=100, timeout_s=20, git_schemes=["https", "ssh"]
)
GIT_LIMITS = FetchLimits(
    max_download_bytes=1 << 20, max_unpacked_bytes=1 << 20, max_files=100, timeout_s=20, git_schemes=["git"]
)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "project"
    root.mkdir()
    return Workspace(root.resolve(), "setting")


def serve_recorded_flow(server: ReplayServer) -> tuple[str, str]:
    full_name, sha, body, codeload = octokit_archive()
    server.add(Route("GET", f"/repos/{full_name}", Response(200, repo_json(full_name, description="a test repo"))))
    server.add(Route("GET", f"/repos/{full_name}/commits/main", Response(200, commit_json(sha))))
    server.add(*archive_routes(full_name, sha, body, codeload))
    return full_name, sha


def test_the_whole_flow_then_reuse_without_a_single_request(ws: Workspace) -> None:
    store = Store(ws.state_dir / "state.db")
    with ReplayServer() as server:
        full_name, sha = serve_recorded_flow(server)
        owner, name = full_name.split("/")
        with GitHubClient(server.url, None, timeout_s=5) as github:
            first = fetch_repo(ws, parse_repo_spec(full_name, None, server.url, []), LIMITS, github=github, store=store)
            sent = len(server.requests)
            again = fetch_repo(ws, parse_repo_spec(full_name, sha, server.url, []), LIMITS, github=github, store=None)
            default_again = fetch_repo(
                ws, parse_repo_spec(full_name, None, server.url, []), LIMITS, github=github, store=store
            )
            assert len(server.requests) == sent == 4  # repository, commit, tarball redirect, download
            by_branch = fetch_repo(
                ws, parse_repo_spec(full_name, "main", server.url, []), LIMITS, github=github, store=store
            )
            assert len(server.requests) == 6  # the new ref is resolved; the commit's folder is reused
        server.assert_all_matched()
    folder = f"repos/{owner}__{name}@900f3f8"
    assert first.path == folder and first.commit == sha and not first.reused and first.requests == 3
    assert first.description == "a test repo" and first.github_license == "LGPL-3.0"
    assert (ws.root / folder / "README.md").read_text().startswith("# ")
    assert first.summary.files == 1 and first.summary.readme_path == "README.md"
    assert again.reused and again.requests == 0 and again.commit == sha and again.description == "a test repo"
    assert default_again.reused and default_again.requests == 0
    assert by_branch.reused and by_branch.requests == 2 and by_branch.commit == sha
    assert sorted(p.name for p in (ws.root / "repos").iterdir()) == [f"{owner}__{name}@900f3f8"]
    assert repo_summary(ws, folder).files == 1
    store.close()


def malicious_tarball() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, kind, link in [("top/", tarfile.DIRTYPE, ""), ("top/ok", tarfile.REGTYPE, ""),
                                 ("top/evil", tarfile.SYMTYPE, "../../../../etc/passwd")]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            tar.addfile(info, io.BytesIO(b""))
    return out.getvalue()


@pytest.mark.parametrize(
    ("body", "limits", "error", "says"),
    [
        (malicious_tarball(), LIMITS, UnsafeArchiveError, "link leading outside"),
        (b"\x00" * 5000, FetchLimits(4000, 1 << 20, 100, 20, []), RepoError, "over the 4000-byte cap"),
    ],
)
def test_a_refused_download_leaves_nothing_in_the_workspace(
    ws: Workspace, body: bytes, limits: FetchLimits, error: type[Exception], says: str
) -> None:
    sha = "1" * 40
    with ReplayServer() as server:
        server.add(Route("GET", "/repos/o/r", Response(200, repo_json("o/r"))))
        server.add(Route("GET", f"/repos/o/r/commits/{sha}", Response(200, commit_json(sha))))
        server.add(Route("GET", f"/repos/o/r/tarball/{sha}", Response(200, body)))
        with GitHubClient(server.url, None, timeout_s=5) as github, pytest.raises(error, match=says):
            fetch_repo(ws, parse_repo_spec("o/r", sha, server.url, []), limits, github=github, store=None)
    assert list((ws.root / "repos").iterdir()) == []
    assert not (ws.state_dir / "repos").exists()


def test_a_tarball_of_another_commit_is_refused(ws: Workspace) -> None:
    full_name, _, body, codeload = octokit_archive()
    other = "2" * 40
    with ReplayServer() as server:
        server.add(Route("GET", f"/repos/{full_name}", Response(200, repo_json(full_name))))
        server.add(Route("GET", f"/repos/{full_name}/commits/{other}", Response(200, commit_json(other))))
        server.add(*archive_routes(full_name, other, body, codeload))
        with GitHubClient(server.url, None, timeout_s=5) as github, pytest.raises(RepoError, match="900f3f818d8c"):
            fetch_repo(ws, parse_repo_spec(full_name, other, server.url, []), LIMITS, github=github, store=None)
    assert list((ws.root / "repos").iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "ref", "expected"),
    [
        ("owner/name", None, ("owner", "name", None, None)),
        ("https://github.com/owner/name.git", None, ("owner", "name", None, None)),
        ("github.com/owner/name", None, ("owner", "name", None, None)),
        ("https://github.com/owner/name/tree/v1.2", None, ("owner", "name", "v1.2", None)),
        ("https://github.com/owner/name/tree/v1.2", "main", ("owner", "name", "main", None)),
        ("git@github.com:owner/name.git", None, ("owner", "name", None, None)),
        ("https://gitlab.com/group/sub/proj.git", "dev", ("sub", "proj", "dev", "gitlab.com")),
        ("ssh://git@codeberg.org/me/tool", None, ("me", "tool", None, "codeberg.org")),
        ("git@codeberg.org:me/tool.git", None, ("me", "tool", None, "codeberg.org")),
    ],
)
def test_repository_specs(spec: str, ref: str | None, expected: tuple[str, str, str | None, str | None]) -> None:
    found = parse_repo_spec(spec, ref, "https://api.github.com", ["https", "ssh"])
    assert (found.owner, found.name, found.ref, found.git.host if found.git else None) == expected


@pytest.mark.parametrize(
    ("spec", "ref", "says"),
    [
        ("-oProxyCommand=x", None, "may not start with '-'"),
        ("file:///etc", None, "file://"),
        ("ext::sh -c touch% /tmp/pwned", None, "transport"),
        ("fd::17", None, "transport"),
        ("http://example.com/a/b", None, "only https, ssh"),
        ("git://example.com/a/b", None, "only https, ssh"),
        ("/abs/path", None, "owner/name"),
        ("../x", None, "owner/name"),
        ("owner/name", "--upload-pack=evil", "Refused ref"),
        ("owner/..", None, "not a GitHub owner/name"),
    ],
)
def test_dangerous_specs_are_refused_before_anything_runs(spec: str, ref: str | None, says: str) -> None:
    with pytest.raises(BadInputError, match=says):
        parse_repo_spec(spec, ref, "https://api.github.com", ["https", "ssh"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _git(*argv: str, cwd: Path | None = None) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(cwd or "/tmp"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run(["git", *argv], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def git_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A bare repository served by `git daemon` on 127.0.0.1: its git:// URL, the tip and the first commit."""
    base = tmp_path_factory.mktemp("gitd")
    work = base / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("# tool\n\n```bash\npython main.py --demo\n```\n")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "one", cwd=work)
    first = _git("rev-parse", "HEAD", cwd=work)
    (work / "main.py").write_text("if __name__ == '__main__':\n    print('hi')\n")
    (work / "escape").symlink_to("/etc/hostname")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "two", cwd=work)
    _git("tag", "with-escape", cwd=work)
    _git("rm", "-q", "escape", cwd=work)
    _git("commit", "-q", "-m", "three", cwd=work)
    tip = _git("rev-parse", "HEAD", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(base / "srv" / "me" / "tool.git"))
    _git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=base / "srv" / "me" / "tool.git")
    port = _free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", f"--port={port}",
         f"--base-path={base / 'srv'}", str(base / "srv")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield f"git://127.0.0.1:{port}/me/tool.git", tip, first
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def test_a_shallow_clone_from_another_host_is_pinned_and_summarised(
    ws: Workspace, git_daemon: tuple[str, str, str]
) -> None:
    url, tip, first = git_daemon
    spec = parse_repo_spec(url, None, "https://api.github.com", ["git"])
    found = fetch_repo(ws, spec, GIT_LIMITS, github=None, store=None)
    assert found.source == "git" and found.commit == tip and not found.reused
    assert found.path == f"repos/127.0.0.1__me__tool@{tip[:7]}" and found.repo == "127.0.0.1/me/tool"
    assert not (ws.root / found.path / ".git").exists()
    assert ("readme_command", "python main.py --demo") in {(e.kind, e.value) for e in found.summary.entry_points}
    again = fetch_repo(ws, parse_repo_spec(url, tip, "https://api.github.com", ["git"]), GIT_LIMITS, github=None,
                       store=None)  # fmt: skip
    assert again.reused and again.requests == 0
    old = fetch_repo(ws, parse_repo_spec(url, first, "https://api.github.com", ["git"]), GIT_LIMITS, github=None,
                     store=None)  # fmt: skip
    assert old.commit == first and not (ws.root / old.path / "main.py").exists()


def test_a_clone_with_a_link_leading_outside_is_refused_and_leaves_nothing(
    ws: Workspace, git_daemon: tuple[str, str, str]
) -> None:
    url, _, _ = git_daemon
    spec = parse_repo_spec(url, "with-escape", "https://api.github.com", ["git"])
    with pytest.raises(UnsafeArchiveError, match="link leading outside"):
        fetch_repo(ws, spec, GIT_LIMITS, github=None, store=None)
    assert list((ws.root / "repos").iterdir()) == []


def test_a_clone_past_the_file_cap_or_an_unknown_ref_fails_cleanly(
    ws: Workspace, git_daemon: tuple[str, str, str]
) -> None:
    url, _, _ = git_daemon
    tiny = FetchLimits(1 << 20, 1 << 20, 1, 20, ["git"])
    with pytest.raises(UnsafeArchiveError, match="more than 1 files"):
        fetch_repo(ws, parse_repo_spec(url, None, "https://api.github.com", ["git"]), tiny, github=None, store=None)
    with pytest.raises(RepoError, match="git failed"):
        fetch_repo(ws, parse_repo_spec(url, "no-such-branch", "x", ["git"]), GIT_LIMITS, github=None, store=None)
    assert list((ws.root / "repos").iterdir()) == []


def test_without_git_other_hosts_say_what_to_install(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from research_mcp.errors import ConfigError
    from research_mcp.tools.repos import gitclone

    def no_program(name: str) -> None:
        return None

    monkeypatch.setattr(gitclone.shutil, "which", no_program)
    spec = parse_repo_spec("https://gitlab.com/a/b", None, "https://api.github.com", ["https"])
    with pytest.raises(ConfigError, match="Install git"):
        fetch_repo(ws, spec, LIMITS, github=None, store=None)
    assert list((ws.root / "repos").iterdir()) == []


def test_a_file_named_repos_is_a_clear_error(ws: Workspace) -> None:
    (ws.root / "repos").write_text("not a folder")
    with pytest.raises(RepoError, match="is a file"):
        fetch_repo(ws, parse_repo_spec("a/b", "1" * 40, "https://api.github.com", []), LIMITS, github=None, store=None)


def test_credentials_in_a_clone_url_never_reach_an_answer(ws: Workspace) -> None:
    from research_mcp.tools.repos.gitclone import redact

    assert redact("git failed (https://me:s3cret@host/a/b.git): fatal") == "git failed (https://host/a/b.git): fatal"
    spec = parse_repo_spec("https://me:s3cret@127.0.0.1:9/a/b.git", None, "https://api.github.com", ["https"])
    with pytest.raises(RepoError) as caught:
        fetch_repo(ws, spec, LIMITS, github=None, store=None)
    assert "s3cret" not in str(caught.value)


def test_the_clone_schemes_setting_takes_a_list_and_never_file_or_ext(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from research_mcp.config import Settings

    monkeypatch.setenv("RESEARCH_MCP_GIT_SCHEMES", "https, git")
    assert Settings().git_schemes == ["https", "git"]
    for bad in ("https,file", "ext"):
        monkeypatch.setenv("RESEARCH_MCP_GIT_SCHEMES", bad)
        with pytest.raises(ValidationError):
            Settings()
