"""Shallow `git clone` for repositories not on the configured GitHub: https and ssh URLs only by default.

Refused before git runs: values starting with '-', `file://`, `ext::` and every other `<transport>::` form, local
paths, and schemes outside the allowed list. git itself is also told which protocols it may use
(`protocol.allow=never` plus the allowed ones), so a redirect or a submodule cannot switch to another. The clone
is watched: past the deadline or the size cap its whole process group is killed. Afterwards `.git` is dropped, and
symbolic links that lead outside the repository refuse the whole clone, as they do for a tarball.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from research_mcp.errors import BadInputError, ConfigError, RepoError, UnsafeArchiveError
from research_mcp.progress import BlockingProgress, format_bytes, no_blocking_progress

__all__ = ["GitSource", "clone", "parse_git_url", "redact"]

_SCP = re.compile(r"^(?:[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^\\]+)$")
_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
_POLL_S = 0.1
_SIZE_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class GitSource:
    url: str
    scheme: str
    host: str
    owner: str
    name: str


def redact(text: str) -> str:
    """The text with any `scheme://user:secret@` credentials removed."""
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1", text)


def parse_git_url(url: str, allowed: list[str]) -> GitSource:
    """Check a clone URL; its host and the last two path parts as owner and name."""
    text = url.strip()
    if not text or text.startswith("-"):
        raise BadInputError(f"Refused {url!r}: a repository URL may not start with '-'.")
    if "::" in text.split("/", 1)[0] or text.lower().startswith("ext::"):
        raise BadInputError(f"Refused {url!r}: git's '<transport>::' URLs (ext::, fd::) run commands.")
    if any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise BadInputError(f"Refused {url!r}: a repository URL may not contain spaces or control characters.")
    if "://" in text:
        split = urlsplit(text)
        scheme = split.scheme.lower()
        host, path = split.hostname or "", split.path
    else:
        match = _SCP.match(text)
        if match is None or text.startswith((".", "/", "~")):
            raise BadInputError(f"Refused {url!r}: give 'owner/name' for GitHub, or an https:// or ssh:// clone URL.")
        scheme, host, path = "ssh", match.group("host"), "/" + match.group("path")
    if scheme == "file":
        raise BadInputError(f"Refused {url!r}: file:// URLs are not fetched; the repository must come from a host.")
    if scheme not in allowed:
        raise BadInputError(
            f"Refused {url!r}: only {', '.join(allowed)} URLs may be cloned (RESEARCH_MCP_GIT_SCHEMES)."
        )
    parts = [p for p in path.split("/") if p]
    if not host or host.startswith("-") or len(parts) < 1 or any(p.startswith("-") or p == ".." for p in parts):
        raise BadInputError(f"Refused {url!r}: it names no repository on a host.")
    name = parts[-1].removesuffix(".git")
    owner = parts[-2] if len(parts) >= 2 else host
    return GitSource(url=text, scheme=scheme, host=host, owner=owner, name=name)


def _git_argv(allowed: list[str]) -> list[str]:
    argv = ["git", "-c", "protocol.allow=never"]
    for scheme in allowed:
        argv += ["-c", f"protocol.{scheme}.allow=always"]
    return argv + ["-c", "advice.detachedHead=false", "-c", "core.fsmonitor=false", "-c", "submodule.recurse=false"]


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _run(
    argv: list[str], cwd: Path | None, watch: Path, max_bytes: int, deadline: float,
    progress: BlockingProgress = no_blocking_progress,
) -> None:  # fmt: skip
    """Run one git command in its own process group, killed past the deadline or the size cap; the size on disk is
    told to `progress` each time it is measured and has grown."""
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=15",
        "LC_ALL": "C",
    }
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
            start_new_session=True,
        )  # fmt: skip
        why = None
        next_size = time.monotonic() + _SIZE_EVERY_S
        told = 0
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if now > deadline:
                    why = "took longer than the time limit (RESEARCH_MCP_REPO_TIMEOUT_S)"
                elif now > next_size:
                    next_size = now + _SIZE_EVERY_S
                    size = _tree_bytes(watch)
                    if size > max_bytes:
                        why = f"grew past {max_bytes} bytes (RESEARCH_MCP_MAX_REPO_UNPACKED_BYTES)"
                    elif size > told:
                        told = size
                        progress(f"git: {format_bytes(size)} on disk so far")
                if why:
                    break
                time.sleep(_POLL_S)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if why:
            raise RepoError(f"The clone {why} and was stopped; nothing was kept.")
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read()[-600:].decode("utf-8", "replace").strip()
            step = redact(" ".join(argv[-3:]))
            raise RepoError(f"git failed ({step}): {redact(tail) or 'exit ' + str(proc.returncode)}")


def clone(
    source: GitSource,
    ref: str | None,
    dest: Path,
    *,
    allowed: list[str],
    max_unpacked_bytes: int,
    max_files: int,
    deadline: float,
    progress: BlockingProgress = no_blocking_progress,
) -> str:
    """Clone `source` at `ref` (default branch when None) into the new folder `dest`, drop `.git`; the commit sha.
    The size on disk is told to `progress` about once a second while git runs."""
    if shutil.which("git") is None:
        raise ConfigError("git is not installed, so only GitHub repositories can be fetched. Install git.")
    if ref is not None and (ref.startswith("-") or not ref.strip() or any(ch.isspace() for ch in ref)):
        raise BadInputError(f"Refused ref {ref!r}: it may not be empty, start with '-' or hold spaces.")
    git = _git_argv(allowed)
    if ref is not None and _SHA.match(ref):
        dest.mkdir()
        _run([*git, "init", "--quiet", str(dest)], None, dest, max_unpacked_bytes, deadline)
        _run([*git, "-C", str(dest), "fetch", "--quiet", "--depth=1", "--", source.url, ref], None, dest,
             max_unpacked_bytes, deadline, progress)  # fmt: skip
        _run([*git, "-C", str(dest), "checkout", "--quiet", "--detach", "FETCH_HEAD"], None, dest,
             max_unpacked_bytes, deadline)  # fmt: skip
    else:
        branch = [] if ref is None else ["--branch", ref]
        argv = [*git, "clone", "--quiet", "--depth=1", "--single-branch", "--no-tags", *branch, "--", source.url]
        _run([*argv, str(dest)], None, dest.parent, max_unpacked_bytes, deadline, progress)
    head = subprocess.run(
        ["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
    )
    sha = head.stdout.strip()
    if head.returncode != 0 or not _SHA.match(sha):
        raise RepoError(f"git cloned {redact(source.url)} but no commit could be read: {head.stderr.strip()[:300]}")
    shutil.rmtree(dest / ".git")
    _check_tree(dest, max_unpacked_bytes, max_files)
    return sha.lower()


def _check_tree(root: Path, max_bytes: int, max_files: int) -> None:
    """The same rules as for a tarball: no link leading outside, within the file and byte caps."""
    files = 0
    total = 0
    base = os.path.realpath(root)
    for folder, dirs, names in os.walk(root):
        for name in [*dirs, *names]:
            full = os.path.join(folder, name)
            if os.path.islink(full):
                target = os.path.realpath(full)
                if target != base and not target.startswith(base + os.sep):
                    rel = os.path.relpath(full, root)
                    raise UnsafeArchiveError(
                        f"The clone was refused and nothing was kept: {rel!r} is a link leading outside the "
                        f"repository ({os.readlink(full)!r})."
                    )
        for name in names:
            files += 1
            total += os.lstat(os.path.join(folder, name)).st_size
        if files > max_files:
            raise UnsafeArchiveError(
                f"The clone has more than {max_files} files and was refused; nothing was kept. Raise "
                "RESEARCH_MCP_MAX_REPO_FILES if this repository is really that large."
            )
    if total > max_bytes:
        raise UnsafeArchiveError(
            f"The clone holds {total} bytes, over the {max_bytes}-byte cap, and was refused; nothing was kept."
        )
