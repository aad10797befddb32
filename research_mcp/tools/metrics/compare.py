"""`compare_runs`: groups of runs, one number per run (or per seed), and an honest verdict."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from research_mcp.errors import BadInputError, LabelNotFoundError
from research_mcp.model import ToolModel
from research_mcp.tools.metrics._names import ResolvedFiles, ResolvedMetric, by_file, plain_name, resolve_metric
from research_mcp.tools.metrics._records import Limits, bounded_warnings
from research_mcp.tools.metrics._series import Direction, Series, direction_of
from research_mcp.tools.metrics._sources import RunBook, RunRecord, Source, read_source, resolve
from research_mcp.tools.metrics.stats import Described, compare_groups
from research_mcp.workspace import Workspace

__all__ = [
    "CompareRunsResult",
    "GroupResult",
    "Grouped",
    "PairResult",
    "Use",
    "compare_runs",
    "digits",
    "gather",
    "plan_groups",
]

Use = Literal["last", "best", "min", "max", "all"]
_ALL_POINTS = 10_000
_MAX_GROUPS = 30
_MAX_SOURCES = 300
RESOLVED_SHOWN = 60
_WARNING_BUDGET = 6000
"""Past this many runs in one answer, which metric of which file each was read from is told per file pattern."""
_SEED_KEYS = frozenset({"seed", "random_seed", "rng_seed", "run_seed"})


def _sig(value: float) -> float:
    """A statistic as answers give it, without float noise: 0.9250000000000002 is 0.925 (12 significant digits)."""
    return float(f"{value:.12g}")


def digits(value: float | None) -> float | None:
    """`_sig` of a statistic that may be missing."""
    return None if value is None else _sig(value)


def _empty(value: object) -> bool:
    """A field left out of the answer: absent reads as null, or as an empty list."""
    return value is None or value == []


class GroupResult(ToolModel):
    name: str
    n: int
    mean: float
    std: float | None = Field(description="Sample standard deviation (n - 1); None for n = 1.")
    ci95_low: float | None = Field(description="95% t confidence interval of the mean; None for n = 1.")
    ci95_high: float | None
    values: list[float]
    sources: list[str] = Field(description="The run id or path each value came from, in order.")
    resolved: list[ResolvedMetric] = Field(
        default_factory=list[ResolvedMetric],
        exclude_if=_empty,
        description="Which metric of which file each run's value was read from; absent where resolved_files says.",
    )
    resolved_files: list[ResolvedFiles] | None = Field(
        default=None,
        exclude_if=_empty,
        description="Instead of resolved where every run was read alike, or where it would be long: per metric and "
        "file pattern.",
    )


def group_results(
    described: Mapping[str, Described],
    values: Mapping[str, list[float]],
    sources: Mapping[str, list[str]],
    resolved: Mapping[str, list[ResolvedMetric]] | None = None,
) -> list[GroupResult]:
    """One `GroupResult` per described group (n, mean, std, 95% interval from `stats.describe`)."""
    return [
        GroupResult(
            name=g,
            n=d.n,
            mean=d.mean,
            std=d.std,
            ci95_low=d.ci_low,
            ci95_high=d.ci_high,
            values=values[g],
            sources=sources[g],
            resolved=(resolved or {}).get(g, []),
        )  # fmt: skip
        for g, d in described.items()
    ]


class PairResult(ToolModel):
    a: str
    b: str
    diff: float = Field(description="mean(a) - mean(b).")
    diff_ci95: tuple[float, float] | None = Field(
        default=None, description="Welch 95% confidence interval of the diff."
    )
    t: float | None = None
    df: float | None = Field(default=None, description="Welch-Satterthwaite degrees of freedom.")
    p: float | None = Field(default=None, description="Two-sided Welch t-test p-value, uncorrected.")
    p_holm: float | None = Field(default=None, description="Holm-adjusted p-value over all tests of this call.")
    hedges_g: float | None = Field(
        default=None, description="Effect size: (a - b) / pooled SD, small-sample corrected."
    )
    significant: bool | None = Field(default=None, description="p_holm < alpha; None when no test could be made.")
    better: str | None = Field(
        default=None, exclude_if=_empty, description="The better group when significant and the direction is known."
    )
    note: str | None = Field(default=None, exclude_if=_empty)


class CompareRunsResult(ToolModel):
    metric: str
    use: Use
    direction: Direction | None = Field(description="max: higher is better; min: lower; None: unknown.")
    alpha: float
    groups: list[GroupResult]
    tests: list[PairResult]
    best_group: str | None = Field(description="The group with the best mean (None when the direction is unknown).")
    best_is_significant: bool = Field(description="True when best_group beats every other group after Holm.")
    verdict: str = Field(description="What may be claimed, in one or two sentences.")
    warnings: list[str] = Field(default_factory=list[str])
    comparison_id: str | None = Field(default=None, exclude_if=_empty, description="Kept under this id.")


@dataclass
class Grouped:
    """Values per group with where each came from: the source of each value, the metric and file of each source."""

    values: dict[str, list[float]] = field(default_factory=dict[str, list[float]])
    sources: dict[str, list[str]] = field(default_factory=dict[str, list[str]])
    resolved: dict[str, list[ResolvedMetric]] = field(default_factory=dict[str, list[ResolvedMetric]])
    warnings: list[str] = field(default_factory=list[str])
    curves: dict[str, list[tuple[list[float], list[float]]]] = field(
        default_factory=dict[str, list[tuple[list[float], list[float]]]]
    )
    """With `curves=True`: each source's (downsampled) series as steps and values, sorted by step."""


def _config_key(record: RunRecord) -> str | None:
    if not record.config:
        return None
    kept = {k: v for k, v in record.config.items() if k.lower() not in _SEED_KEYS}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"))


def plan_groups(
    ws: Workspace,
    book: Callable[[], RunBook | None],
    groups: dict[str, list[str]] | None,
    run_ids: list[str] | None,
    labels: list[str] | None,
    group_by: Literal["label", "config"],
) -> tuple[dict[str, list[Source]], list[str]]:
    """Group name -> sources, from explicit groups, from run ids (by label or config; a sweep id stands for its runs,
    whose labels name their configuration: `lr=0.1,wd=0`), or from labels."""
    given = sum(x is not None and len(x) > 0 for x in (groups, run_ids, labels))
    if given != 1:
        raise BadInputError(
            "Give exactly one of: groups (name -> run ids or paths), run_ids (run or sweep ids, grouped by their "
            "label or config), or labels (every run with those labels)."
        )
    notes: list[str] = []
    plan: dict[str, list[Source]] = {}
    if groups:
        for name, members in groups.items():
            if not members:
                raise BadInputError(f"Group {name!r} is empty; give it run ids or paths.")
            plan[name] = [resolve(ws, member, book) for member in members]
        _check_size(plan)
        return plan, notes
    records: list[tuple[Source, RunRecord]] = []
    if labels:
        found = book()
        rows = found.with_labels(labels) if found is not None else []
        for label in labels:
            if not any(r.label == label for r in rows):
                raise LabelNotFoundError(label, found.labels() if found is not None else [])
        records = [(resolve(ws, r.id, book), r) for r in rows]
        group_by = "label"
    else:
        for run_id in run_ids or []:
            swept = _sweep_runs(book, run_id)
            if swept is not None:
                records += [(resolve(ws, record.id, book), record) for record in swept]
                continue
            source = resolve(ws, run_id, book)
            if source.run is None:
                raise BadInputError(f"{run_id!r} is not a recorded run; use groups to compare paths.")
            records.append((source, source.run))
    for source, record in records:
        key = record.label if group_by == "label" else _config_key(record)
        if key is None:
            key = record.id
            notes.append(f"run {record.id} has no {group_by}; it forms its own group")
        if record.state != "succeeded":
            notes.append(f"run {record.id} is {record.state}, not succeeded: its numbers may be partial")
        plan.setdefault(key, []).append(source)
    _check_size(plan)
    return plan, notes


def _sweep_runs(book: Callable[[], RunBook | None], some_id: str) -> list[RunRecord] | None:
    """The runs of the sweep `some_id` names, in order; None when it is no sweep id (then it is a run id)."""
    if not some_id.startswith("sweep-"):
        return None
    found = book()
    runs = None if found is None else found.in_sweep(some_id)
    if runs is None:
        raise BadInputError(f"No sweep {some_id!r} in this workspace; run_sweep gives its id, list_runs each run's.")
    return runs


def _check_size(plan: dict[str, list[Source]]) -> None:
    if len(plan) > _MAX_GROUPS:
        raise BadInputError(f"{len(plan)} groups; compare at most {_MAX_GROUPS} at once (tests grow as pairs).")
    total = sum(len(sources) for sources in plan.values())
    if total > _MAX_SOURCES:
        raise BadInputError(f"{total} runs or paths; at most {_MAX_SOURCES} in one call.")


def _value(series: Series, use: Use, direction: Direction | None) -> list[float]:
    if use == "all":
        return [value for _, value in series.points()]
    if use == "best":
        if direction is None:
            raise BadInputError("use='best' needs a direction: set higher_is_better, or use last, min or max.")
        use = "max" if direction == "max" else "min"
    return [{"last": series.last, "min": series.min, "max": series.max}[use]]


def gather(
    ws: Workspace,
    plan: dict[str, list[Source]],
    metric: str,
    use: Use,
    direction: Direction | None,
    limits: Limits,
    *,
    strict: bool = True,
    curves: bool = False,
) -> Grouped:
    """Each source's value(s) of the metric; a source without it is left out with a warning (never a zero).
    `strict`: a group where no source has the metric is an error (else it stays empty). `curves`: also keep each
    source's series, downsampled to `limits.max_points`."""
    out = Grouped()
    points = 2 * _ALL_POINTS + 2 if use == "all" else 2  # all: one bucket per point, so every value is kept
    points = limits.max_points if curves else points
    for name, sources in plan.items():
        out.values[name], out.sources[name], out.resolved[name], out.curves[name] = [], [], [], []
        for source in sources:
            notes: list[str] = []
            files = read_source(ws, source, dataclasses.replace(limits, max_points=points), notes)
            match = resolve_metric(files, metric, source.name, ws.relative(source.path))
            if match is None:
                out.warnings.append(f"{source.name}: no metric {metric!r}; left out of group {name!r}")
                continue
            fm, series = match.file, match.series
            if series.count == 0:
                out.warnings.append(f"{source.name}: {metric!r} has no finite value; left out of group {name!r}")
                continue
            if use == "all" and series.count > _ALL_POINTS:
                raise BadInputError(
                    f"use='all' takes every value as a sample (per-seed lists); {metric!r} in {fm.path} has "
                    f"{series.count} points. Use last, best, min or max."
                )
            if series.non_finite:
                out.warnings.append(f"{fm.path}: {metric!r} has {series.non_finite} NaN/Inf values, left out")
            for value in _value(series, use, direction):
                out.values[name].append(value)
                out.sources[name].append(source.name)
            out.resolved[name].append(match.resolved(source.name))
            if curves:
                ordered = sorted(series.points())
                out.curves[name].append(([p[0] for p in ordered], [p[1] for p in ordered]))
        if strict and not out.values[name]:
            raise BadInputError(
                f"No run of group {name!r} has the metric {metric!r} (or a metric ending in '.{plain_name(metric)}'). "
                "Call read_metrics on one of them to see its metric names."
            )
    return out


def verdict_of(
    metric: str,
    direction: Direction | None,
    groups: list[GroupResult],
    tests: list[PairResult],
    alpha: float,
) -> tuple[str | None, bool, str]:
    """The best group, whether it is significantly better than all others, and what may be claimed."""
    if all(g.n < 2 for g in groups):
        return (
            _best(groups, direction),
            False,
            "Each group has a single value: no claim of significance can be made. Run 3-5 seeds per configuration.",
        )
    best = _best(groups, direction)
    if best is None:
        sig = [t for t in tests if t.significant]
        text = f"{len(sig)} of {len(tests)} differences are significant (Holm, alpha={alpha}); the direction of "
        return None, False, text + f"{metric!r} is unknown, so no group is called better (set higher_is_better)."
    against = [t for t in tests if best in (t.a, t.b)]
    wins = [t for t in against if t.better == best]
    significant = bool(against) and len(wins) == len(against)
    if significant:
        return best, True, f"{best!r} is significantly better than every other group on {metric!r} (Welch, Holm)."
    untested = [t for t in against if t.p is None]
    extra = " Some comparisons could not be tested (one value or no spread)." if untested else ""
    return (
        best,
        False,
        f"{best!r} has the best mean on {metric!r}, but it is not significantly better than every other group "
        f"after Holm's correction at alpha={alpha}.{extra}",
    )


def _best(groups: list[GroupResult], direction: Direction | None) -> str | None:
    if direction is None or not groups:
        return None
    pick = max if direction == "max" else min
    return pick(groups, key=lambda g: g.mean).name


def compare_runs(
    ws: Workspace,
    book: Callable[[], RunBook | None],
    metric: str,
    groups: dict[str, list[str]] | None = None,
    run_ids: list[str] | None = None,
    labels: list[str] | None = None,
    group_by: Literal["label", "config"] = "label",
    use: Use = "last",
    higher_is_better: bool | None = None,
    baseline: str | None = None,
    alpha: float = 0.05,
    limits: Limits | None = None,
) -> CompareRunsResult:
    name = plain_name(metric)
    direction: Direction | None = (
        direction_of(name) if higher_is_better is None else ("max" if higher_is_better else "min")
    )
    plan, notes = plan_groups(ws, book, groups, run_ids, labels, group_by)
    if baseline is not None and baseline not in plan:
        raise BadInputError(f"baseline {baseline!r} is not one of the groups: {', '.join(plan)}.")
    found = gather(ws, plan, metric, use, direction, limits or Limits())
    described, pairs = compare_groups(found.values, direction, alpha, baseline)
    results = group_results(described, found.values, found.sources, found.resolved)
    tests = [
        PairResult(
            a=p.a,
            b=p.b,
            diff=_sig(p.diff),
            t=digits(p.t),
            df=digits(p.df),
            p=digits(p.p),
            p_holm=digits(p.p_holm),
            hedges_g=digits(p.hedges_g),
            significant=p.significant,
            better=p.better,
            note=p.note,
            diff_ci95=None
            if p.diff_ci_low is None or p.diff_ci_high is None
            else (_sig(p.diff_ci_low), _sig(p.diff_ci_high)),
        )  # fmt: skip
        for p in pairs
    ]
    total = sum(len(g.resolved) for g in results)
    for g in results:
        brief = by_file(g.resolved)
        if total > RESOLVED_SHOWN or len(brief) == 1:  # one pattern: each source's file is the pattern, filled in
            g.resolved_files, g.resolved = brief, []
    best, best_sig, verdict = verdict_of(metric, direction, results, tests, alpha)
    if len(results) < 2:
        verdict = "Only one group: nothing to compare. " + verdict
    for g in results:  # as answered, once the verdict is made on the whole means
        g.mean, g.std, g.ci95_low, g.ci95_high = _sig(g.mean), *map(digits, (g.std, g.ci95_low, g.ci95_high))
    return CompareRunsResult(
        metric=metric, use=use, direction=direction, alpha=alpha, groups=results, tests=tests,
        best_group=best, best_is_significant=best_sig, verdict=verdict,
        warnings=bounded_warnings(notes + found.warnings, _WARNING_BUDGET),
    )  # fmt: skip
