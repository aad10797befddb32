"""Which recorded metric a name, as a user types it, stands for; one rule for every metrics tool.

An AI Scientist `final_info.json` nests its metrics (`spirals.means.val_acc`), while a user asks for `val_acc`.
The rule, in each file of a run (or path): the metric whose name equals the asked name if the file has one, else
every metric whose name ends with it at a dot boundary (`.val_acc`). A `<file>:` prefix keeps the search to the
files whose workspace path equals it or ends with it at a slash boundary (`outputs/metrics.jsonl:val_acc`), the
same way round. A name then stands for a run's metric only when exactly one file-and-metric pair of the run
matches; with more, the tool asks back, listing each candidate spelled so that it resolves to itself.

Within a file the exact name wins so that every recorded metric can be named (`means.val_acc` beside
`spirals.means.val_acc`); across files it does not, so `val_acc` in `metrics.jsonl` and `spirals.means.val_acc` in
`final_info.json` ask back rather than one silently hiding the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from research_mcp.errors import BadInputError
from research_mcp.model import ToolModel
from research_mcp.tools.metrics._records import FileMetrics
from research_mcp.tools.metrics._series import Series

__all__ = ["Match", "ResolvedFiles", "ResolvedMetric", "by_file", "candidates", "plain_name", "resolve_metric"]

_SHOWN = 12


class ResolvedMetric(ToolModel):
    source: str = Field(description="The run id or workspace path the value came from.")
    metric: str = Field(description="The full name of the recorded metric the asked name stood for.")
    file: str = Field(description="Workspace path of the file (or MLflow run folder) it was read from.")


class ResolvedFiles(ToolModel):
    metric: str = Field(description="The full name of the recorded metric read.")
    file: str = Field(description="The file read, '{source}' standing for each run id or path.")
    sources: int = Field(description="How many runs or paths were read so.")


def by_file(resolved: list[ResolvedMetric]) -> list[ResolvedFiles]:
    """`resolved` told briefly, for hundreds of runs: one entry per metric name and file path pattern."""
    counts: dict[tuple[str, str], int] = {}
    for taken in resolved:
        pattern = taken.file.replace(taken.source, "{source}", 1) if taken.source else taken.file
        counts[taken.metric, pattern] = counts.get((taken.metric, pattern), 0) + 1
    return [ResolvedFiles(metric=metric, file=file, sources=n) for (metric, file), n in counts.items()]


@dataclass(frozen=True, eq=False)
class Match:
    """One recorded metric of one file that a name matched."""

    file: FileMetrics
    name: str

    @property
    def series(self) -> Series:
        return self.file.series[self.name]

    def resolved(self, source: str) -> ResolvedMetric:
        return ResolvedMetric(source=source, metric=self.name, file=self.file.path)


def _files_named(files: list[FileMetrics], qualifier: str) -> list[FileMetrics]:
    exact = [fm for fm in files if fm.path == qualifier]
    return exact or [fm for fm in files if fm.path.endswith("/" + qualifier)]


def _split(files: list[FileMetrics], text: str) -> tuple[list[FileMetrics], str]:
    """The files a `<file>:` prefix names and the name after it; with no such prefix, every file and the text
    (a metric name may itself hold a colon: a prefix counts only when it names a file)."""
    for i, char in enumerate(text):
        if char == ":" and 0 < i < len(text) - 1:
            named = _files_named(files, text[:i])
            if named:
                return named, text[i + 1 :]
    return files, text


def plain_name(text: str) -> str:
    """The metric name of a possibly file-qualified text, for titles, directions and file names."""
    return text.rpartition(":")[2] or text


def _names_in(fm: FileMetrics, name: str) -> list[str]:
    if name in fm.series:
        return [name]
    tail = "." + name
    return [full for full in fm.series if full.endswith(tail)]


def candidates(files: list[FileMetrics], text: str) -> list[Match]:
    """Every file-and-metric pair the text may stand for, in file order (the rule in the module docstring)."""
    named, name = _split(files, text)
    return [Match(fm, full) for fm in named for full in _names_in(fm, name)]


def _same(found: list[Match], match: Match) -> bool:
    return len(found) == 1 and found[0].file is match.file and found[0].name == match.name


def spelling(files: list[FileMetrics], match: Match, base: str = "") -> str:
    """The shortest text that resolves to this match: its full name, else `<file>:<full name>` with the file
    relative to `base` (the source's folder, so the same text fits every run of a comparison), else in full."""
    path = match.file.path
    options = [match.name]
    if base not in ("", ".") and path.startswith(base + "/"):
        options.append(f"{path[len(base) + 1 :]}:{match.name}")
    options.append(f"{path}:{match.name}")
    return next((text for text in options if _same(candidates(files, text), match)), options[-1])


def resolve_metric(files: list[FileMetrics], text: str, where: str, base: str = "") -> Match | None:
    """The one metric of these files (one run or path, named `where`) the text stands for; None when no metric
    matches. Several matches are a `BadInputError` listing them, each as the text that names it alone."""
    found = candidates(files, text)
    if len(found) <= 1:
        return found[0] if found else None
    shown = [f"{spelling(files, m, base)!r} ({m.name} in {m.file.path})" for m in found[:_SHOWN]]
    more = f"; and {len(found) - _SHOWN} more (read_metrics lists them)" if len(found) > _SHOWN else ""
    raise BadInputError(
        f"{text!r} matches {len(found)} metrics in {where!r}: {'; '.join(shown)}{more}. Pass the one you mean as "
        "written before its parentheses: its full name, with '<file>:' before it where that name is in several files."
    )
