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
"""

from __future__ import annotations

__all__ = [
    "BadInputError",
    "BinaryFileError",
    "ConfigError",
    "FileToolError",
    "GitHubRateLimitError",
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
            f"{path!r} is a binary file ({kind}, {size_bytes} bytes); read_file only returns text. "
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
    def __init__(self, run_id: str) -> None:
        super().__init__(f"No run {run_id!r}. Call list_runs to see the run ids of this workspace.")
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


class LatexError(ResearchError):
    """A LaTeX source cannot be read, compiled or previewed, or TeX Live is missing (the message says what to do)."""
