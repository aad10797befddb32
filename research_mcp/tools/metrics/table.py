r"""`results_table`: a booktabs LaTeX table of mean ± std per group and metric, every number with its provenance.

Provenance format (read back by `parse_provenance`, and by the paper audit):

Every number of the table sits on its own line, ending in a LaTeX comment that starts with the marker
`% research-mcp-cell: ` followed by one JSON object on the same line:

    & $\mathbf{0.912 \pm 0.004}$ % research-mcp-cell: {"v": 1, "group": "method", "metric": "val_acc", ...}

Its keys: `v` (format version, 1), `group`, `metric` (as asked, possibly `file:name` or a short name), `use` (which
value of each run: last, best, min, max, or all for per-seed lists), `stat` (`mean_std`: mean ± sample std, `value`:
a single value, `missing`: no run had the metric), `n`, `mean`, `std` (null for n = 1), `sources` (the run ids or
workspace paths, one per value, in order), `values` (the values themselves, full precision), `files` (the metric
files read), `names` (the full name of the metric read in each of those files, e.g. `spirals.means.val_acc` for
`val_acc`; absent from tables written before it) and `bold` (whether the number is set in bold: only where its group
is significantly better than every other group on that metric, by Welch t-tests with Holm's correction). The table
itself opens with one comment line `% research-mcp-table: {json}` holding `label`, `metrics`, `groups`, `use` and
`alpha`. The LaTeX before the comment (the printed cell, e.g. `$0.912 \pm 0.004$`) is returned by the parser as
`printed`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from research_mcp.errors import BadInputError, FileToolError
from research_mcp.fileio import atomic_write
from research_mcp.model import ToolModel
from research_mcp.tools.metrics._names import plain_name
from research_mcp.tools.metrics._records import Limits, bounded_warnings
from research_mcp.tools.metrics._series import Direction, direction_of
from research_mcp.tools.metrics._sources import RunBook
from research_mcp.tools.metrics.compare import PairResult, Use, digits, gather, group_results, plan_groups, verdict_of
from research_mcp.tools.metrics.stats import compare_groups
from research_mcp.workspace import Workspace

__all__ = [
    "CELL_MARKER",
    "TABLE_MARKER",
    "CellProvenance",
    "ResultsTableResult",
    "TableNumber",
    "format_mean_std",
    "parse_provenance",
    "results_table",
]

CELL_MARKER = "% research-mcp-cell: "
TABLE_MARKER = "% research-mcp-table: "
_CELL = re.compile(r"^(?P<printed>.*?)(?<!\\)" + re.escape(CELL_MARKER) + r"(?P<data>\{.*\})\s*$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,80}$")
_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}  # fmt: skip


class CellProvenance(ToolModel):
    group: str
    metric: str
    use: str
    stat: Literal["mean_std", "value", "missing"]
    n: int
    mean: float | None
    std: float | None
    sources: list[str]
    values: list[float]
    files: list[str]
    names: list[str] = Field(
        default_factory=list[str], description="The full name of the metric read from each of `files`, in order."
    )
    bold: bool
    printed: str = Field(description="The LaTeX printed for this cell.")


class TableNumber(ToolModel):
    """One number of the table as the answer tells it; its values, files and metric names are in its comment in
    the file."""

    group: str
    metric: str
    n: int = Field(description="How many values it is over (0: no run had the metric, printed --).")
    mean: float | None = Field(
        None, exclude_if=lambda v: v is None, description="To 12 significant digits (whole in the file); absent at n 0."
    )
    std: float | None = Field(None, exclude_if=lambda v: v is None, description="Sample std, so; absent for n < 2.")
    bold: bool
    sources: list[str] | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="The runs or paths it was read from, one per value, where not its group's `runs`.",
    )


class ResultsTableResult(ToolModel):
    path: str = Field(description="Workspace path of the .tex file written.")
    latex: str = Field(
        description="The table's LaTeX as it prints (needs \\usepackage{booktabs}): \\input the file or paste "
        "this. The file also holds each number's provenance comment (runs, values, files, metric names)."
    )
    runs: dict[str, list[str]] = Field(
        description="Each group's runs or paths, one per value, in order: what its numbers were read from."
    )
    numbers: list[TableNumber] = Field(description="Row by row, as in the table.")
    notes: list[str] = Field(default_factory=list[str], description="What the bold means, single runs, warnings.")


def escape(text: str) -> str:
    """Plain text for LaTeX: the ten special characters escaped."""
    return "".join(_SPECIAL.get(ch, ch) for ch in text)


def _fixed(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _sci(value: float) -> str:
    mantissa, exponent = f"{value:.2e}".split("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}"


def format_mean_std(mean: float, std: float | None) -> str:
    """Math-mode text: std to two significant digits and the mean to the same decimal place; a lone value to
    four significant digits; very large or small magnitudes in scientific notation."""
    magnitude = abs(mean)
    if magnitude and (magnitude < 1e-4 or magnitude >= 1e6):
        return _sci(mean) if not std else rf"{_sci(mean)} \pm {_sci(std)}"
    if std:
        exponent = int(f"{std:.1e}".split("e")[1])  # of std rounded to 2 digits: 0.00999.. counts as 0.010
        decimals = max(0, min(8, 1 - exponent))
        return rf"{_fixed(mean, decimals)} \pm {_fixed(std, decimals)}"
    decimals = 4 if magnitude == 0 else max(0, min(8, 3 - math.floor(math.log10(magnitude))))
    return _fixed(mean, decimals)


def parse_provenance(tex: str) -> tuple[dict[str, Any] | None, list[CellProvenance]]:
    """The table header's data and every cell's provenance, from a table `results_table` wrote."""
    header: dict[str, Any] | None = None
    cells: list[CellProvenance] = []
    for line in tex.splitlines():
        stripped = line.strip()
        if stripped.startswith(TABLE_MARKER):
            header = json.loads(stripped[len(TABLE_MARKER) :])
            continue
        match = _CELL.match(line)
        if match is None:
            continue
        data = json.loads(match.group("data"))
        data.pop("v", None)
        printed = match.group("printed").strip().removeprefix("&").strip()
        cells.append(CellProvenance(printed=printed, **data))
    return header, cells


def _atomic_write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, text.encode("utf-8"))


def results_table(
    ws: Workspace,
    book: Callable[[], RunBook | None],
    metrics: list[str],
    caption: str,
    label: str,
    groups: dict[str, list[str]] | None = None,
    run_ids: list[str] | None = None,
    labels: list[str] | None = None,
    group_by: Literal["label", "config"] = "label",
    use: Use = "last",
    higher_is_better: dict[str, bool] | None = None,
    alpha: float = 0.05,
    limits: Limits | None = None,
    display_names: dict[str, str] | None = None,
    max_chars: int = 24_000,
) -> ResultsTableResult:
    if not _LABEL.match(label):
        raise BadInputError(f"label {label!r} must be letters, digits, '-' or '_' (it names the file and tab:<label>).")
    if not metrics:
        raise BadInputError("Give at least one metric (a column of the table).")
    plan, notes = plan_groups(ws, book, groups, run_ids, labels, group_by)
    names = list(plan)
    columns: list[tuple[str, Direction | None, list[CellProvenance]]] = []
    for metric in metrics:
        override = (higher_is_better or {}).get(metric)
        plain = plain_name(metric)
        direction = direction_of(plain) if override is None else ("max" if override else "min")
        found = gather(ws, plan, metric, use, direction, limits or Limits(), strict=False)
        notes += found.warnings
        present = {g: v for g, v in found.values.items() if v}
        described, pairs = compare_groups(present, direction, alpha)
        described_groups = group_results(described, present, found.sources)
        tests = [
            PairResult(a=p.a, b=p.b, diff=p.diff, p=p.p, significant=p.significant, better=p.better) for p in pairs
        ]
        best, best_sig, verdict = verdict_of(metric, direction, described_groups, tests, alpha)
        notes.append(f"{metric}: {verdict}")
        cells: list[CellProvenance] = []
        for g in names:
            values = found.values[g]
            d = described.get(g)
            bold = best_sig and best == g
            if d is None:
                printed = "--"
                stat: Literal["mean_std", "value", "missing"] = "missing"
            else:
                stat = "mean_std" if d.n >= 2 else "value"
                body = format_mean_std(d.mean, d.std)
                printed = f"$\\mathbf{{{body}}}$" if bold else f"${body}$"
            cells.append(
                CellProvenance(
                    group=g,
                    metric=metric,
                    use=use,
                    stat=stat,
                    n=len(values),
                    mean=None if d is None else d.mean,
                    std=None if d is None else d.std,
                    sources=found.sources[g],
                    values=values,
                    files=[taken.file for taken in found.resolved[g]],
                    names=[taken.metric for taken in found.resolved[g]],
                    bold=bold,
                    printed=printed,
                )  # fmt: skip
            )
        columns.append((metric, direction, cells))
    shown = display_names or {}
    latex = _render(label, _caption(caption, columns), names, columns, use, alpha, shown)
    target = ws.resolve(f"paper/tables/{label}.tex")
    try:
        _atomic_write(target, latex)
    except OSError as exc:
        raise FileToolError(f"Cannot write {ws.relative(target)!r}: {exc.strerror or exc}.") from exc
    notes.insert(0, r"Needs \usepackage{booktabs}. Bold: significantly better than every other group (Welch, Holm).")
    ordered = [cells[row] for row in range(len(names)) for _, _, cells in columns]  # the file's order
    runs = {g: _usual([c.sources for c in ordered if c.group == g and c.sources]) for g in names}
    numbers = [_number(c, runs[c.group]) for c in ordered]
    if len(json.dumps([runs, [n.model_dump(mode="json") for n in numbers]])) > max_chars // 2:
        numbers = [n.model_copy(update={"sources": None}) for n in numbers]
        notes.insert(1, "Numbers over other runs than their group's: their runs are in their comments in the file.")
    return ResultsTableResult(
        path=ws.relative(target),
        latex=_without_provenance(latex, ws.relative(target)),
        runs=runs,
        numbers=numbers,
        notes=bounded_warnings(notes, max_chars // 8),
    )


def _usual(lists: list[list[str]]) -> list[str]:
    """The list of sources most of a group's numbers were read from (the first such, on a tie)."""
    return max(lists, key=lists.count) if lists else []


def _number(cell: CellProvenance, runs: list[str]) -> TableNumber:
    return TableNumber(
        group=cell.group, metric=cell.metric, n=cell.n, mean=digits(cell.mean), std=digits(cell.std), bold=cell.bold,
        sources=None if cell.sources == runs or not cell.sources else cell.sources,
    )  # fmt: skip


def _without_provenance(latex: str, path: str) -> str:
    """The table as it prints: its header and cells' provenance comments left to the file."""
    lines = [line.split(" " + CELL_MARKER, 1)[0] for line in latex.splitlines() if not line.startswith(TABLE_MARKER)]
    return "\n".join([f"% provenance comments in {path}", *lines, ""])


def _caption(caption: str, columns: list[tuple[str, Direction | None, list[CellProvenance]]]) -> str:
    """The caption, then how many seeds each number is over and what the bold means."""
    counts = sorted({c.n for _, _, cells in columns for c in cells if c.stat != "missing"})
    if not counts:
        return caption
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}--{counts[-1]}"
    given = caption.rstrip()
    given += "" if given.endswith((".", "!", "?")) else "."
    text = f"{given} Mean $\\pm$ std over {seeds} seeds."
    if counts == [1]:
        text = f"{given} One run each: no spread, no significance."
    if any(c.bold for _, _, cells in columns for c in cells):
        text += " Bold: significantly best (Welch's $t$-test, Holm)."
    return text


def _render(
    label: str,
    caption: str,
    names: list[str],
    columns: list[tuple[str, Direction | None, list[CellProvenance]]],
    use: str,
    alpha: float,
    shown: dict[str, str],
) -> str:
    metrics = [m for m, _, _ in columns]
    header: dict[str, Any] = {"label": label, "metrics": metrics, "groups": names, "use": use, "alpha": alpha}
    if shown:
        header["display_names"] = shown
    arrows = {"max": r" ($\uparrow$)", "min": r" ($\downarrow$)", None: ""}
    lines = [
        TABLE_MARKER + json.dumps(header),
        r"\begin{table}[t]",
        r"  \centering",
        f"  \\caption{{{caption}}}",
        f"  \\label{{tab:{label}}}",
        f"  \\begin{{tabular}}{{l{'c' * len(columns)}}}",
        r"    \toprule",
        "    Method & " + " & ".join(_shown(m, shown, metric=True) + arrows[d] for m, d, _ in columns) + r" \\",
        r"    \midrule",
    ]
    for row, group in enumerate(names):
        lines.append(f"    {_shown(group, shown)}")
        for _, _, cells in columns:
            cell = cells[row]
            data = cell.model_dump(mode="json", exclude={"printed"})
            lines.append(f"      & {cell.printed} {CELL_MARKER}{json.dumps({'v': 1, **data})}")
        lines.append(r"      \\")
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _shown(name: str, shown: dict[str, str], *, metric: bool = False) -> str:
    """A group's or metric's display name (LaTeX, as given), else the name escaped (a metric's without its file)."""
    plain = plain_name(name) if metric else name
    found = shown.get(name, shown.get(plain))
    return found if found is not None else escape(plain)
