"""The errors research-mcp raises, all subclasses of `ResearchError`.

Every message is written for the model that called the tool: it says what went wrong and what to do next.
The server adapters turn a `ResearchError` into an `isError` tool result carrying the same text.

    ResearchError
    ├── ConfigError            a setting, an optional extra or a component is missing
    ├── WorkspaceError         no usable workspace folder
    ├── PathError              a path argument broke a containment rule
    ├── FileToolError          a file operation cannot be done as asked
    │   ├── NotFoundError
    │   └── BinaryFileError
    ├── StoreError             the state database cannot be used
    ├── SandboxError           a run cannot be started, found or controlled
    │   └── RunNotFoundError
    ├── LiteratureError        arXiv / Semantic Scholar could not answer, or a paper cannot be found or read
    │   ├── RateLimitedError
    │   └── PaperNotFoundError
    ├── RepoError              a code repository cannot be found, fetched, unpacked or read
    │   ├── GitHubRateLimitError
    │   └── UnsafeArchiveError
    ├── LatexError             a LaTeX source cannot be read, compiled or previewed; TeX is missing
    └── BadInputError          an argument is well-typed but unusable (bad regex, bad glob, ...)
        └── LabelNotFoundError a run label no run has: names the closest ones there are

`os_error_message` turns an `OSError` into that kind of sentence (the path workspace-relative, the next step
named); the adapters use it for every `OSError` that reaches them, and domain code through `os_errors`.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "BadInputError",
    "BinaryFileError",
    "ConfigError",
    "FileToolError",
    "GitHubRateLimitError",
    "LabelNotFoundError",
    "LatexError",
    "LiteratureError",
    "NotFoundError",
    "PaperNotFoundError",
    "PathError",
    "RateLimitedError",
    "RepoError",
    "ResearchError",
    "RunNotFoundError",
    "SandboxError",
    "StoreError",
    "UnsafeArchiveError",
    "WorkspaceError",
    "os_error_message",
    "os_errors",
]


class ResearchError(Exception):
    """Base class: its message is shown to the model as it is, so it must say what to do next."""


class ConfigError(ResearchError):
    """A setting, an optional extra or an external component is missing or wrong."""


class WorkspaceError(ResearchError):
    """There is no workspace folder the tools may use."""


class PathError(ResearchError):
    """A path argument broke one of the workspace containment rules."""

    def __init__(self, path: str, rule: str) -> None:
        shown = path if len(path) <= 120 else path[:117] + "..."
        super().__init__(f"Path {shown!r} refused: {rule}")
        self.path = path
        self.rule = rule


class FileToolError(ResearchError):
    """A file operation cannot be done as asked."""


class NotFoundError(FileToolError):
    """A path that must exist does not."""

    def __init__(self, path: str, hint: str = "Call list_files to see what exists.") -> None:
        super().__init__(f"No such file or folder: {path!r}. {hint}")
        self.path = path


class BinaryFileError(FileToolError):
    """A text tool was asked to read a binary file."""

    def __init__(self, path: str, kind: str, size_bytes: int) -> None:
        super().__init__(
            f"{path!r} is a binary file ({kind}, {size_bytes} bytes); read_file returns text, and PNG or JPEG "
            "images as pictures. "
            "Read it inside an experiment (run_experiment) if its contents are needed."
        )
        self.path = path
        self.kind = kind
        self.size_bytes = size_bytes


class StoreError(ResearchError):
    """The state database cannot be opened or written."""


class SandboxError(ResearchError):
    """A run cannot be started, found or controlled; the message says what to install or change."""


class RunNotFoundError(SandboxError):
    def __init__(self, run_id: str, closest: Sequence[str] = (), newest: Sequence[str] = ()) -> None:
        known = [f"closest ids: {', '.join(closest)}"] if closest else []
        known += [f"newest: {', '.join(newest)}"] if newest else []
        here = f" ({'; '.join(known)})" if known else ""
        super().__init__(f"No run {run_id!r}{here}. Call list_runs to see the run ids of this workspace.")
        self.run_id = run_id


class LiteratureError(ResearchError):
    """arXiv or Semantic Scholar could not answer, or a paper cannot be found, downloaded or read."""


class RateLimitedError(LiteratureError):
    def __init__(self, source: str, retry_after_s: float) -> None:
        wait = max(1, round(retry_after_s))
        super().__init__(f"Rate limited by {source}, retry after {wait} s.")
        self.source = source
        self.retry_after_s = retry_after_s


class PaperNotFoundError(LiteratureError):
    def __init__(self, paper_id: str, hint: str = "Check the id, or call search_papers with its title.") -> None:
        super().__init__(f"No paper found for {paper_id!r}. {hint}")
        self.paper_id = paper_id


class RepoError(ResearchError):
    """A code repository cannot be found, fetched, unpacked or read."""


class GitHubRateLimitError(RepoError):
    """GitHub refused for a rate limit; the message names the limit, when it resets and how a token raises it."""

    def __init__(self, message: str, resource: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.resource = resource
        self.retry_after_s = retry_after_s


class UnsafeArchiveError(RepoError):
    """An archive broke an extraction rule (path escape, link escape, device file, size or count cap)."""


class BadInputError(ResearchError):
    """An argument passed the schema but cannot be used (a bad regex, an impossible range)."""


class LabelNotFoundError(BadInputError):
    """A run label no run of the workspace has; the message names the closest labels there are, then the rest."""

    def __init__(self, label: str, labels: list[str]) -> None:
        if not labels:
            message = f"No run has label {label!r}; no run here has a label (list_runs shows the runs)."
        else:
            closest = difflib.get_close_matches(label, labels, n=5, cutoff=0.5)
            named = [*closest, *(other for other in sorted(labels) if other not in closest)]
            more = f" and {len(named) - 20} more" if len(named) > 20 else ""
            message = f"No run has label {label!r}; labels here: {', '.join(named[:20])}{more}."
        super().__init__(message)
        self.label = label


class LatexError(ResearchError):
    """A LaTeX source cannot be read, compiled or previewed, or TeX Live is missing (the message says what to do)."""


_WHAT_TO_DO: dict[int, str] = {
    errno.ENOTDIR: "a part of that path is a file where a folder is needed: rename or remove that file, or choose "
    "another path",
    errno.EEXIST: "something already exists there (a file where a folder is needed, or the reverse): rename or "
    "remove it, or choose another path",
    errno.EISDIR: "it is a folder where a file is needed: choose a file path",
    errno.ENOENT: "it does not exist: call list_files to see what does",
    errno.EACCES: "permission denied: make it readable and writable by the server's user, or choose another path",
    errno.EPERM: "the operation is not permitted there: check its permissions, or choose another path",
    errno.EROFS: "the file system there is read-only: choose a writable folder",
    errno.ENOSPC: "the disk is full: free some space (old runs under runs/ are a candidate) and call again",
    errno.EDQUOT: "the disk quota is used up: free some space and call again",
    errno.ELOOP: "it is a symlink loop: remove the link",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter one",
    errno.ENXIO: "it is a special file (a pipe or socket with no reader): choose a regular file",
    errno.ETXTBSY: "it is busy (a program running from it): wait for that program to end",
    errno.EMFILE: "the server has too many open files: wait for running work to end and call again",
}


def _shown(path: str | bytes | int | None, root: Path | None) -> str | None:
    if path is None or isinstance(path, int):
        return None
    text = os.fsdecode(path)
    if root is not None:
        try:
            rel = Path(os.path.abspath(text)).relative_to(root)
        except ValueError:
            return text
        return rel.as_posix() or "."
    return text


def os_error_message(exc: OSError, root: Path | None = None, path: str | None = None) -> str:
    """One sentence for an `OSError`: the path (relative to `root` when inside it), what the system said, and
    what to do. `path`, when given, is the name the caller used (a workspace-relative argument) and is shown
    instead of the absolute file name the system reports."""
    shown = path or _shown(exc.filename, root)
    other = None if path else _shown(exc.filename2, root)
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" {shown!r}" if shown else ""
    if other:
        where += f" -> {other!r}"
    advice = _WHAT_TO_DO.get(exc.errno or -1, "check the path and its permissions, then call again")
    return f"Cannot use{where}: {reason}; {advice}."


@contextmanager
def os_errors(path: str, root: Path | None = None) -> Generator[None]:
    """Turn an `OSError` inside the block into a `FileToolError` (a missing file into `NotFoundError`)."""
    try:
        yield
    except FileNotFoundError as exc:
        raise NotFoundError(path) from exc
    except OSError as exc:
        raise FileToolError(os_error_message(exc, root, path)) from exc
