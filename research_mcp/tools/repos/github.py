"""The GitHub REST API through PyGithub: repository facts, ref -> commit, repository search, tarball download.

One `GitHubClient` per tool call. PyGithub's own retries are off (its default sleeps until a rate limit resets,
which would hang a tool call for up to an hour): a refusal becomes a `GitHubRateLimitError` that names the limit,
when it resets and what a token changes. Search answers are read from the JSON as GitHub sent it, so reading a
field never makes PyGithub fetch the whole repository behind the model's back.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import time
from collections.abc import Generator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

from research_mcp.errors import GitHubRateLimitError, RepoError
from research_mcp.progress import BlockingProgress, format_bytes, no_blocking_progress

if TYPE_CHECKING:
    from github import Github

__all__ = ["GitHubClient", "RepoFacts", "rate_limit_message", "web_host"]

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 16
_TELL_EVERY_BYTES = 4 << 20
_TELL_EVERY_S = 1.0
"""A download tells how much has come each time this many more bytes came, or this long passed."""
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})
_LIMITS = {  # resource -> (without a token, with a token, period)
    "core": (60, 5000, "hour"),
    "search": (10, 30, "minute"),
    "code_search": (10, 10, "minute"),
}


def web_host(api_url: str) -> str:
    """The host (with its port) whose web URLs name repositories of this API: api.github.com -> github.com."""
    split = urlsplit(api_url)
    host = (split.hostname or "").lower()
    host = "github.com" if host == "api.github.com" else host.removeprefix("api.")
    return f"{host}:{split.port}" if split.port else host


class RepoFacts(dict[str, Any]):
    """A repository as GitHub describes it (the raw JSON object, with a few typed readers)."""

    @property
    def full_name(self) -> str:
        return str(self["full_name"])

    def license_id(self) -> str | None:
        found = _dict(self.get("license"))
        spdx = found.get("spdx_id") or found.get("key")
        if spdx and spdx != "NOASSERTION":
            return str(spdx)
        return str(found.get("name") or "") or None


def _dict(value: object) -> dict[str, Any]:
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _lower(headers: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def rate_limit_message(
    headers: Mapping[str, Any], *, resource_hint: str, has_token: bool, now: float | None = None
) -> GitHubRateLimitError:
    """The error for a rate-limited answer: which limit, when it resets, and that a token raises it."""
    h = _lower(headers)
    moment = time.time() if now is None else now
    resource = h.get("x-ratelimit-resource") or resource_hint
    anonymous, authenticated, period = _LIMITS.get(resource, _LIMITS["core"])
    limit = h.get("x-ratelimit-limit") or str(authenticated if has_token else anonymous)
    token_note = (
        "A token is already in use, so only waiting helps."
        if has_token
        else f"Set GITHUB_TOKEN (a personal access token; no scopes needed for public repositories) to raise it "
        f"from {anonymous} to {authenticated} requests a{'n' if period == 'hour' else ''} {period}."
    )
    retry_after = h.get("retry-after", "").strip()
    if retry_after.isdigit() or resource_hint == "secondary":
        wait = int(retry_after) if retry_after.isdigit() else 60
        message = (
            f"GitHub's secondary rate limit (too many requests in a short time) refused the request; retry in "
            f"{wait} s and send fewer requests at once. {token_note}"
        )
        return GitHubRateLimitError(message, "secondary", float(wait))
    reset_raw = h.get("x-ratelimit-reset", "")
    if reset_raw.isdigit():
        reset = int(reset_raw)
        wait = max(0, reset - int(moment))
        at = datetime.fromtimestamp(reset, UTC).strftime("%H:%M:%S UTC")
        when = f"it resets at {at}, in {wait} s"
    else:
        wait, when = 60 if period == "minute" else 3600, f"it resets within a{'n' if period == 'hour' else ''} {period}"
    message = (
        f"GitHub's {resource} rate limit is used up ({limit} requests a{'n' if period == 'hour' else ''} {period}); "
        f"{when}. {token_note}"
    )
    return GitHubRateLimitError(message, resource, float(wait))


class GitHubClient:
    """PyGithub against `base_url` (api.github.com, a GitHub Enterprise `/api/v3`, or a test server)."""

    def __init__(self, base_url: str, token: str | None, *, timeout_s: float) -> None:
        from github import Auth, Github

        self.base_url = base_url.rstrip("/")
        self.has_token = bool(token)
        self._gh: Github = Github(
            base_url=self.base_url,
            auth=Auth.Token(token) if token else None,
            timeout=max(1, int(timeout_s)),
            user_agent="research-mcp",
            retry=None,  # never sleep until a reset inside a tool call
            seconds_between_requests=None,
            seconds_between_writes=None,
            per_page=30,
            lazy=False,
        )

    def close(self) -> None:
        self._gh.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self, what: str, resource: str = "core") -> Generator[None]:
        """Turn PyGithub's and the transport's errors into `RepoError`s that say what to do."""
        from github import GithubException

        try:
            yield
        except GithubException as exc:
            raise self._mapped(exc, what, resource) from exc
        except AssertionError as exc:  # PyGithub asserts that the URLs it follows stay on GitHub's hosts
            raise RepoError(f"GitHub sent {what} somewhere it may not go ({exc}); nothing was fetched.") from exc
        except OSError as exc:  # requests' errors are OSErrors too
            if not type(exc).__module__.startswith(("requests", "urllib3")) and exc.errno in _DISK_ERRNOS:
                raise RepoError(f"Cannot write {what} to disk ({exc}). Free some space or check permissions.") from exc
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            if response is not None and isinstance(status, int):
                raise self._mapped(self._exception_of(response), what, resource) from exc
            raise RepoError(
                f"Cannot reach GitHub at {self.base_url} for {what} ({exc.__class__.__name__}: {exc}). Check the "
                "network, or RESEARCH_MCP_GITHUB_URL for GitHub Enterprise."
            ) from exc

    def _exception_of(self, response: Any) -> Exception:
        from github.Requester import Requester

        try:
            data = _dict(json.loads(response.text)) if response.text else {}
        except ValueError:
            data = {"message": response.text[:200]}
        return Requester.createException(int(response.status_code), dict(response.headers), data)

    def _mapped(self, exc: Exception, what: str, resource: str) -> RepoError:
        from github import BadCredentialsException, GithubException, RateLimitExceededException, UnknownObjectException
        from github.Requester import Requester

        if not isinstance(exc, GithubException):
            return RepoError(f"GitHub failed on {what}: {exc}")
        headers = exc.headers or {}
        remaining = _lower(headers).get("x-ratelimit-remaining")
        if isinstance(exc, RateLimitExceededException) or (exc.status in (403, 429) and remaining == "0"):
            secondary = remaining != "0" and Requester.isSecondaryRateLimitError(str(_dict(exc.data).get("message")))
            hint = "secondary" if secondary else resource
            return rate_limit_message(headers, resource_hint=hint, has_token=self.has_token)
        if exc.status == 429:
            return rate_limit_message(headers, resource_hint="secondary", has_token=self.has_token)
        if isinstance(exc, BadCredentialsException) or exc.status == 401:
            return RepoError("GitHub rejected the token (401 Bad credentials). Fix GITHUB_TOKEN, or unset it.")
        if isinstance(exc, UnknownObjectException) or exc.status == 404:
            hint = "" if self.has_token else " Private repositories need a GITHUB_TOKEN that can read them."
            return RepoError(f"GitHub has no {what} (404). Check the owner/name and the ref.{hint}")
        message = str(exc.message or _dict(exc.data).get("message") or "")
        if exc.status == 422:
            return RepoError(f"GitHub refused {what} as invalid (422): {message[:300]}. Check the ref or the query.")
        return RepoError(f"GitHub answered {exc.status} for {what}: {message[:300] or 'no message'}. Try again.")

    def repo(self, full_name: str) -> RepoFacts:
        """GET /repos/{owner}/{name}."""
        with self._errors(f"repository {full_name!r}"):
            found = self._gh.get_repo(full_name)
            return RepoFacts(found.raw_data)

    def commit_of(self, full_name: str, ref: str) -> str:
        """The commit sha a branch, tag or sha names (GET /repos/{owner}/{name}/commits/{ref})."""
        with self._errors(f"ref {ref!r} in {full_name!r}"):
            url = f"/repos/{full_name}/commits/{quote(ref, safe='')}"
            _, data = self._gh.requester.requestJsonAndCheck("GET", url)
        sha = _dict(data).get("sha")
        if not isinstance(sha, str) or len(sha) != 40:
            raise RepoError(f"GitHub's answer for ref {ref!r} of {full_name!r} carries no commit id. Try again.")
        return sha

    def search(self, query: str, limit: int) -> tuple[list[RepoFacts], int, int | None]:
        """One page of /search/repositories: the items, the total count, the searches left this minute."""
        params = {"q": query, "per_page": max(1, min(limit, 100))}
        with self._errors(f"a repository search for {query!r}", resource="search"):
            headers, data = self._gh.requester.requestJsonAndCheck("GET", "/search/repositories", params)
        found = _dict(data)
        if not found:
            raise RepoError("GitHub's search answer was not a JSON object. Try again.")
        raw_items: Any = found.get("items") or []
        items = [RepoFacts(_dict(item)) for item in cast(list[Any], raw_items) if "full_name" in _dict(item)]
        remaining = _lower(headers).get("x-ratelimit-remaining", "")
        total = found.get("total_count")
        return items, total if isinstance(total, int) else len(items), int(remaining) if remaining.isdigit() else None

    def download_tarball(
        self, full_name: str, sha: str, dest: Path, *, max_bytes: int, deadline: float,
        progress: BlockingProgress = no_blocking_progress,
    ) -> int:  # fmt: skip
        """Stream the tarball of a commit into `dest` (following GitHub's redirect), within a size cap and a
        deadline; the bytes written, told to `progress` as they come. `dest` is left for the caller to remove on
        failure."""
        url = f"/repos/{full_name}/tarball/{sha}"
        what = f"the tarball of {full_name}@{sha[:7]}"
        written = told = 0
        told_at = time.monotonic()
        with self._errors(what), open(dest, "wb") as out:
            stream: Any = self._gh.requester.getStream  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]
            _, headers, chunks = cast(tuple[int, dict[str, Any], Iterator[bytes]], stream(url, chunk_size=_CHUNK_BYTES))
            declared = _lower(headers).get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise RepoError(
                    f"{full_name}@{sha[:7]} is a {int(declared)}-byte download, over the {max_bytes}-byte cap; "
                    "nothing was kept. Raise RESEARCH_MCP_MAX_REPO_BYTES to fetch it."
                )
            of = f" of {format_bytes(int(declared))}" if declared.isdigit() else ""
            for chunk in chunks:
                written += len(chunk)
                if written > max_bytes:
                    raise RepoError(
                        f"The download of {full_name}@{sha[:7]} passed the {max_bytes}-byte cap and was stopped; "
                        "nothing was kept. Raise RESEARCH_MCP_MAX_REPO_BYTES to fetch it."
                    )
                if time.monotonic() > deadline:
                    raise RepoError(
                        f"The download of {full_name}@{sha[:7]} was too slow and was stopped after {written} bytes; "
                        "nothing was kept. Try again, or raise RESEARCH_MCP_REPO_TIMEOUT_S (at most 45 s)."
                    )
                out.write(chunk)
                if written - told >= _TELL_EVERY_BYTES or time.monotonic() - told_at >= _TELL_EVERY_S:
                    told, told_at = written, time.monotonic()
                    progress(f"GitHub: received {format_bytes(written)}{of}")
        progress(f"GitHub: received {format_bytes(written)}, the whole tarball")
        return written
