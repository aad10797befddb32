"""fetch_repo and repo_summary: a repository pinned to a commit, unpacked into `repos/<owner>__<name>@<sha7>/`.

GitHub repositories come as the commit's tarball (streamed within a byte cap, checked member by member, unpacked
into a staging folder that is renamed into place only when complete); other hosts through a shallow `git clone`.
A fetch of a commit already in the workspace reuses its folder: with a full sha it sends no request at all, and a
branch or tag resolved in the last ten minutes is not asked again either. What each fetch learned is kept beside
the state database, in `.research/repos/<folder>.json`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field

from research_mcp.errors import BadInputError, NotFoundError, RepoError
from research_mcp.model import ToolModel
from research_mcp.progress import BlockingProgress, format_bytes, no_blocking_progress
from research_mcp.tools.repos.archive import ArchiveLimits, unpack_tarball
from research_mcp.tools.repos.gitclone import GitSource, clone, parse_git_url, redact
from research_mcp.tools.repos.github import GitHubClient, web_host
from research_mcp.tools.repos.summary import RepoSummary, summarize
from research_mcp.workspace import Workspace

if TYPE_CHECKING:
    from research_mcp.store import Store

__all__ = ["FetchLimits", "FetchRepoResult", "RepoSpec", "fetch_repo", "parse_repo_spec", "repo_summary"]

logger = logging.getLogger(__name__)

REPOS_DIR = "repos"
REF_TTL_S = 600.0
_STALE_STAGING_S = 3600.0
_NAME = r"[A-Za-z0-9_.-]+"
_SHORT = re.compile(rf"^(?:https?://)?(?:www\.)?github\.com/({_NAME})/({_NAME})/?$", re.IGNORECASE)
_OWNER_NAME = re.compile(rf"^({_NAME})/({_NAME})$")
_SHA = re.compile(r"^[0-9a-fA-F]{40}$")


@dataclass(frozen=True, slots=True)
class FetchLimits:
    max_download_bytes: int
    max_unpacked_bytes: int
    max_files: int
    timeout_s: float
    git_schemes: list[str]


@dataclass(frozen=True, slots=True)
class RepoSpec:
    """Where a repository comes from: GitHub (`owner`/`name`) or a git host (`git`)."""

    owner: str
    name: str
    ref: str | None
    git: GitSource | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class FetchRepoResult(ToolModel):
    repo: str = Field(description="owner/name on GitHub, or host/owner/name for other hosts.")
    source: Literal["github", "git"]
    commit: str = Field(description="The full commit sha the files are from.")
    path: str = Field(
        description="Workspace folder of the files: repos/<owner>__<name>@<sha7> (<host>__ first for other hosts)."
    )
    reused: bool = Field(description="True when the folder was already there; nothing was downloaded.")
    requests: int = Field(description="Requests sent to GitHub or the git host by this call.")
    download_bytes: int | None = None
    description: str | None = Field(None, description="GitHub's description (untrusted text).")
    stars: int | None = None
    github_license: str | None = Field(None, description="The licence GitHub detected (SPDX id).")
    summary: RepoSummary


def _bad_name(part: str) -> bool:
    return part in (".", "..") or part.startswith(("-", "."))


def parse_repo_spec(spec: str, ref: str | None, github_api_url: str, git_schemes: list[str]) -> RepoSpec:
    """`owner/name`, a GitHub URL (…/tree/<ref> sets the ref when none is given), or a clone URL for git."""
    text = spec.strip()
    if not text or text.startswith("-"):
        raise BadInputError(f"Refused repo {spec!r}: give 'owner/name' or a URL; it may not start with '-'.")
    if ref is not None and (not ref.strip() or ref.startswith("-") or any(c.isspace() or ord(c) < 32 for c in ref)):
        raise BadInputError(f"Refused ref {ref!r}: a branch, tag or commit sha, not starting with '-'.")
    match = _OWNER_NAME.match(text) or _SHORT.match(text)
    host = web_host(github_api_url)
    if match is None and "://" in text:
        split = urlsplit(text)
        netloc = (split.hostname or "").lower() + (f":{split.port}" if split.port else "")
        if split.scheme in ("http", "https") and netloc in (host, f"www.{host}"):
            parts = [unquote(p) for p in split.path.split("/") if p]
            if len(parts) >= 2:
                if ref is None and len(parts) >= 4 and parts[2] in ("tree", "commit"):
                    ref = "/".join(parts[3:])
                match = re.match(rf"^({_NAME})/({_NAME})$", f"{parts[0]}/{parts[1]}")
    if match is None and text.lower().startswith(f"git@{host}:"):
        match = _OWNER_NAME.match(text.split(":", 1)[1])
    if match is not None:
        owner, name = match.group(1), match.group(2).removesuffix(".git")
        if _bad_name(owner) or _bad_name(name) or not name:
            raise BadInputError(f"Refused repo {spec!r}: {owner!r}/{name!r} is not a GitHub owner/name.")
        return RepoSpec(owner, name, ref)
    source = parse_git_url(text, git_schemes)
    return RepoSpec(source.owner, source.name, ref, source)


def _folder_name(spec: RepoSpec, sha: str) -> str:
    prefix = f"{spec.git.host}__" if spec.git is not None else ""
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", f"{prefix}{spec.owner}__{spec.name}@{sha[:7]}")


def _manifest_path(ws: Workspace, folder: str) -> Path:
    return ws.state_dir / "repos" / f"{folder}.json"


def _find_existing(repos: Path, ws: Workspace, spec: RepoSpec, sha: str) -> Path | None:
    """The folder already holding this commit (GitHub names compare case-insensitively)."""
    wanted = _folder_name(spec, sha).lower()
    try:
        names = os.listdir(repos)
    except OSError:
        return None
    for name in names:
        if name.lower() == wanted and (repos / name).is_dir():
            manifest = _read_manifest(ws, name)
            if manifest.get("commit", sha) == sha:
                return repos / name
    return None


def _read_manifest(ws: Workspace, folder: str) -> dict[str, Any]:
    try:
        data: Any = json.loads(_manifest_path(ws, folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}  # pyright: ignore[reportUnknownVariableType]


def _write_manifest(ws: Workspace, folder: str, data: dict[str, Any]) -> None:
    path = _manifest_path(ws, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _clean_stale_staging(repos: Path) -> None:
    now = time.time()
    for entry in repos.glob(".fetch-*"):
        try:
            if now - entry.stat().st_mtime > _STALE_STAGING_S:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _result(
    ws: Workspace, folder: Path, manifest: dict[str, Any], *, reused: bool, requests: int, commit: str
) -> FetchRepoResult:
    rel = ws.relative(folder)
    description = manifest.get("description")
    return FetchRepoResult(
        repo=str(manifest.get("repo") or folder.name.split("@", 1)[0].replace("__", "/")),
        source="git" if manifest.get("source") == "git" else "github",
        commit=str(manifest.get("commit") or commit),
        path=rel,
        reused=reused,
        requests=requests,
        download_bytes=None if reused else manifest.get("download_bytes"),
        description=str(description)[:500] if description else None,
        stars=manifest.get("stars"),
        github_license=manifest.get("github_license"),
        summary=summarize(folder, rel),
    )


def fetch_repo(
    ws: Workspace,
    spec: RepoSpec,
    limits: FetchLimits,
    *,
    github: GitHubClient | None,
    store: Store | None,
    progress: BlockingProgress = no_blocking_progress,
) -> FetchRepoResult:
    """Fetch `spec` into the workspace (or reuse the folder that holds its commit) and summarise it; each request,
    the bytes received, the unpacking and the summary are told to `progress` as they start."""
    repos = ws.resolve(REPOS_DIR)
    if os.path.lexists(repos) and not repos.is_dir():
        raise RepoError(f"'{REPOS_DIR}' in the workspace is a file; move it away so repositories can go there.")
    try:
        repos.mkdir(exist_ok=True)
        return _fetch(ws, repos, spec, limits, github, store, progress)
    except OSError as exc:
        raise RepoError(f"Cannot write under '{REPOS_DIR}/' ({exc}). Free some space or check permissions.") from exc


def _fetch(
    ws: Workspace, repos: Path, spec: RepoSpec, limits: FetchLimits, github: GitHubClient | None, store: Store | None,
    progress: BlockingProgress,
) -> FetchRepoResult:  # fmt: skip
    if spec.ref is not None and _SHA.match(spec.ref):
        sha = spec.ref.lower()
        found = _find_existing(repos, ws, spec, sha)
        if found is not None:
            progress(f"reusing {ws.relative(found)}: commit {sha[:7]} was fetched before")
            return _result(ws, found, _read_manifest(ws, found.name), reused=True, requests=0, commit=sha)
    if spec.git is not None:
        return _fetch_git(ws, repos, spec, limits, progress)
    if github is None:
        raise RepoError("No GitHub client is configured; set RESEARCH_MCP_GITHUB_URL.")
    return _fetch_github(ws, repos, spec, limits, github, store, progress)


def _fetch_github(
    ws: Workspace, repos: Path, spec: RepoSpec, limits: FetchLimits, github: GitHubClient, store: Store | None,
    progress: BlockingProgress,
) -> FetchRepoResult:  # fmt: skip
    deadline = time.monotonic() + limits.timeout_s
    key = f"github-ref:{github.base_url}:{spec.full_name.lower()}@{spec.ref or ''}"
    cached = store.cache_get(key) if store is not None else None
    if cached is not None and cached[0] == 200:
        sha = cached[1].decode()
        found = _find_existing(repos, ws, spec, sha)
        if found is not None:
            progress(f"reusing {ws.relative(found)}: {spec.ref or 'the default branch'} was resolved to it just now")
            return _result(ws, found, _read_manifest(ws, found.name), reused=True, requests=0, commit=sha)
    progress(f"GitHub: look up {spec.full_name}")
    facts = github.repo(spec.full_name)
    canonical = RepoSpec(*facts.full_name.split("/", 1), ref=spec.ref)
    _check_deadline(deadline, spec)
    ref = spec.ref or str(facts.get("default_branch") or "HEAD")
    progress(f"GitHub: resolve {ref!r} of {facts.full_name} to a commit")
    sha = github.commit_of(facts.full_name, ref)
    requests = 2
    if store is not None:
        store.cache_put(key, "github", 200, sha.encode(), ttl_s=REF_TTL_S)
    manifest: dict[str, Any] = {
        "repo": facts.full_name,
        "source": "github",
        "commit": sha,
        "ref": spec.ref,
        "default_branch": facts.get("default_branch"),
        "description": facts.get("description"),
        "stars": facts.get("stargazers_count"),
        "github_license": facts.license_id(),
        "html_url": facts.get("html_url"),
    }
    found = _find_existing(repos, ws, canonical, sha)
    if found is not None:
        progress(f"reusing {ws.relative(found)}: commit {sha[:7]} was fetched before")
        return _result(
            ws, found, _read_manifest(ws, found.name) or manifest, reused=True, requests=requests, commit=sha
        )
    folder = _folder_name(canonical, sha)
    _check_deadline(deadline, spec)
    _clean_stale_staging(repos)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=repos))
    try:
        archive = staging / "archive.tar.gz"
        progress(f"GitHub: download the tarball of {facts.full_name}@{sha[:7]}")
        size = github.download_tarball(
            facts.full_name, sha, archive, max_bytes=limits.max_download_bytes, deadline=deadline, progress=progress
        )
        requests += 1
        progress(f"unpacking {format_bytes(size)}, every member checked first")
        unpacked = unpack_tarball(
            archive, staging / "tree", ArchiveLimits(limits.max_unpacked_bytes, limits.max_files, deadline)
        )
        if unpacked.commit is not None and unpacked.commit != sha:
            raise RepoError(
                f"GitHub sent the tarball of commit {unpacked.commit[:12]} for {sha[:12]}; nothing was kept. Try again."
            )
        manifest |= {"download_bytes": size, "fetched_at": time.time(), "files": unpacked.files}
        progress(f"summarising {unpacked.files} files")
        return _place(ws, repos, staging, folder, manifest, requests)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_deadline(deadline: float, spec: RepoSpec) -> None:
    if time.monotonic() > deadline:
        raise RepoError(f"GitHub answered too slowly for {spec.full_name}; nothing was downloaded. Try again.")


def _fetch_git(
    ws: Workspace, repos: Path, spec: RepoSpec, limits: FetchLimits, progress: BlockingProgress
) -> FetchRepoResult:
    assert spec.git is not None
    deadline = time.monotonic() + limits.timeout_s
    _clean_stale_staging(repos)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=repos))
    try:
        progress(f"git: shallow clone of {redact(spec.git.url)}")
        sha = clone(
            spec.git,
            spec.ref,
            staging / "tree",
            allowed=limits.git_schemes,
            max_unpacked_bytes=limits.max_unpacked_bytes,
            max_files=limits.max_files,
            deadline=deadline,
            progress=progress,
        )
        found = _find_existing(repos, ws, spec, sha)
        if found is not None:
            progress(f"reusing {ws.relative(found)}: commit {sha[:7]} was fetched before")
            return _result(ws, found, _read_manifest(ws, found.name), reused=True, requests=1, commit=sha)
        manifest: dict[str, Any] = {
            "repo": f"{spec.git.host}/{spec.owner}/{spec.name}",
            "source": "git",
            "url": redact(spec.git.url),
            "commit": sha,
            "ref": spec.ref,
            "fetched_at": time.time(),
        }
        progress("summarising the clone")
        return _place(ws, repos, staging, _folder_name(spec, sha), manifest, 1)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _place(
    ws: Workspace, repos: Path, staging: Path, folder: str, manifest: dict[str, Any], requests: int
) -> FetchRepoResult:
    """Rename the complete tree into place (another fetch may have placed the same commit first)."""
    final = repos / folder
    _write_manifest(ws, folder, manifest)
    try:
        os.rename(staging / "tree", final)
    except OSError:
        if not final.is_dir():
            raise
        return _result(ws, final, _read_manifest(ws, folder), reused=True, requests=requests, commit=manifest["commit"])
    return _result(ws, final, manifest, reused=False, requests=requests, commit=manifest["commit"])


def repo_summary(ws: Workspace, path: str, tree_depth: int = 2) -> RepoSummary:
    """The summary of a repository folder already in the workspace."""
    folder = ws.resolve(path, must_exist=True)
    if not folder.is_dir():
        raise NotFoundError(path, "repo_summary needs a folder, e.g. 'repos/owner__name@abc1234'.")
    return summarize(folder, ws.relative(folder), tree_depth=tree_depth)
