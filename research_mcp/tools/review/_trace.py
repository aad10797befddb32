"""Tracing a paper's numbers: what each value could have come from, and how a written number matches one.

A written number matches a recorded value at the precision it shows: `0.912` matches 0.9123 (it rounds to it),
`91.2\\%` matches 0.912 (a value times 100), `3e-4` matches 0.0003. `Evidence` is every recorded value with where it
came from: each metric's last, min and max in each run's metric files; per run label, the mean and sample std of
each metric's last and best value over the label's runs (as `compare_runs` computes them); every statistic of the
stored comparisons; every number of the runs' configs.

The chance-trace rate of a precision: the fraction of all numbers of that precision (same count of decimals, same
decade, same sign) that would trace by value against the same evidence. It is counted exactly rather than sampled:
the numbers of a precision in a decade form a finite grid, and a grid point traces when some value (or value times
100) rounds to it, so the rate is the count of distinct grid points the values round to over the grid's size. The
count is deterministic, and equals the limit of drawing random numbers of that precision with any seed.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, cast

from research_mcp.latex.models import NumberUse
from research_mcp.tools.metrics._records import FileMetrics
from research_mcp.tools.metrics._series import direction_of
from research_mcp.tools.metrics.compare import CompareRunsResult

__all__ = ["Evidence", "EvidenceIndex", "Shown", "Tier", "config_evidence", "comparison_evidence", "metric_evidence"]

Tier = Literal["metric", "comparison", "config"]
_SCALES = (1.0, 100.0)
_NUM = re.compile(r"^[-+−]?(?P<int>[\d,]*)(?:\.(?P<dec>\d+))?(?:\s*[eE](?P<exp>[-+]?\d+))?%?$")


@dataclass(frozen=True)
class Evidence:
    value: float
    tier: Tier
    runs: tuple[str, ...]
    files: tuple[str, ...]
    what: str
    is_p: bool = False


@dataclass(frozen=True)
class Shown:
    """A number as written: its value (before any %), decimals shown (an exponent counted in), a % after it."""

    value: float
    decimals: int
    percent: bool

    @classmethod
    def of(cls, number: NumberUse) -> Shown:
        text = number.text.replace(" ", "")
        match = _NUM.match(text)
        decimals = 0
        if match is not None:
            decimals = len(match.group("dec") or "") - int(match.group("exp") or 0)
        return cls(number.value, decimals, text.endswith("%"))

    @property
    def tolerance(self) -> float:
        return 0.5 * 10.0 ** (-self.decimals) * (1 + 1e-9) + 1e-15

    @property
    def precision(self) -> str:
        d = self.decimals
        return f"{d} decimal{'' if d == 1 else 's'}" if d >= 0 else f"1e{-d} steps"

    @property
    def decade(self) -> int:
        magnitude = abs(self.value)
        return math.floor(math.log10(magnitude)) if magnitude > 0 else -max(self.decimals, 0) - 1


@dataclass
class EvidenceIndex:
    """Evidence sorted by value per tier and scale, for range queries."""

    items: list[Evidence]
    _keys: dict[tuple[Tier, float], list[float]] = field(default_factory=dict[tuple[Tier, float], list[float]])
    _order: dict[tuple[Tier, float], list[int]] = field(default_factory=dict[tuple[Tier, float], list[int]])
    _rates: dict[tuple[int, int, bool], float] = field(default_factory=dict[tuple[int, int, bool], float])

    def __post_init__(self) -> None:
        for tier in ("metric", "comparison", "config"):
            for scale in _SCALES:
                pairs = sorted((e.value * scale, i) for i, e in enumerate(self.items) if e.tier == tier)
                self._keys[(tier, scale)] = [v for v, _ in pairs]
                self._order[(tier, scale)] = [i for _, i in pairs]

    def matches(self, shown: Shown, tier: Tier) -> list[Evidence]:
        """The evidence of a tier that rounds to the number as shown (itself, or times 100)."""
        found: dict[int, None] = {}
        for scale in _SCALES:
            keys, order = self._keys[(tier, scale)], self._order[(tier, scale)]
            low = bisect.bisect_left(keys, shown.value - shown.tolerance)
            high = bisect.bisect_right(keys, shown.value + shown.tolerance)
            found.update((order[i], None) for i in range(low, high))
        return [self.items[i] for i in sorted(found)]

    def p_below(self, bound: float) -> list[Evidence]:
        """Stored p-values at or below `bound` (for a written `p < 0.01`)."""
        return [e for e in self.items if e.is_p and e.value <= bound]

    def chance_rate(self, shown: Shown) -> float:
        """The fraction of numbers of the same precision, decade and sign that trace by value (see the module doc)."""
        sign = shown.value < 0
        key = (shown.decimals, shown.decade, sign)
        if key not in self._rates:
            self._rates[key] = self._count(*key)
        return self._rates[key]

    def _count(self, decimals: int, decade: int, negative: bool) -> float:
        unit = 10.0 ** (-decimals)
        low = round(10.0**decade / unit) if decade >= -decimals else 0
        high = round(10.0 ** (decade + 1) / unit)
        hit: set[int] = set()
        for tier in ("metric", "comparison", "config"):
            for scale in _SCALES:
                keys = self._keys[(tier, scale)]
                a, b = (-high * unit, -low * unit) if negative else (low * unit, high * unit)
                for value in keys[bisect.bisect_left(keys, a - unit) : bisect.bisect_right(keys, b + unit)]:
                    point = round(abs(value) / unit)
                    if low <= point < high and (value < 0) == negative:
                        hit.add(point)
        return len(hit) / max(1, high - low)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@dataclass
class _Group:
    runs: list[str] = field(default_factory=list[str])
    files: list[str] = field(default_factory=list[str])
    last: list[float] = field(default_factory=list[float])
    best: list[float] = field(default_factory=list[float])


def metric_evidence(per_source: Iterable[tuple[str, str | None, list[FileMetrics]]]) -> list[Evidence]:
    """Each metric's last, min and max per file; per label, mean and std of the last and best values over its runs.

    `per_source`: (run id or path, the run's label or None, the files read)."""
    found: list[Evidence] = []
    groups: dict[tuple[str, str, str], _Group] = {}
    for source, label, files in per_source:
        for fm in files:
            pattern = fm.path.replace(source, "{run}") if source else fm.path
            for name, series in fm.series.items():
                for use, value in (("last", series.last), ("min", series.min), ("max", series.max)):
                    if _finite(value) and (use == "last" or value != series.last):
                        found.append(Evidence(value, "metric", (source,), (fm.path,), f"{name} ({use}) in {fm.path}"))
                if label is None or not _finite(series.last):
                    continue
                group = groups.setdefault((label, pattern, name), _Group())
                direction = direction_of(name)
                best = series.max if direction == "max" else series.min if direction == "min" else math.nan
                group.runs.append(source)
                group.files.append(fm.path)
                group.last.append(series.last)
                group.best.append(best)
    for (label, _, name), group in sorted(groups.items()):
        if len(group.runs) < 2:
            continue
        for use, values in (("last", group.last), ("best", group.best)):
            if not all(math.isfinite(v) for v in values):
                continue
            n = len(values)
            mean = math.fsum(values) / n
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
            what = f"{name} ({use}) over the {n} runs labelled {label!r}"
            runs, files = tuple(group.runs), tuple(group.files)
            found.append(Evidence(mean, "metric", runs, files, f"mean of {what}"))
            found.append(Evidence(std, "metric", runs, files, f"std of {what}"))
    return found


def comparison_evidence(comparisons: Iterable[tuple[str, CompareRunsResult]]) -> list[Evidence]:
    """Every statistic of each stored comparison, with the runs of the groups it is about."""
    found: list[Evidence] = []
    for cid, result in comparisons:
        members = {g.name: tuple(g.sources) for g in result.groups}
        files = {
            g.name: tuple(dict.fromkeys([r.file for r in g.resolved] + [r.file for r in g.resolved_files or []]))
            for g in result.groups
        }
        for g in result.groups:
            for stat, value in (("mean", g.mean), ("std", g.std), ("ci95 low", g.ci95_low), ("ci95 high", g.ci95_high)):
                if _finite(value):
                    assert value is not None
                    what = f"{stat} of {g.name!r} on {result.metric} (comparison {cid})"
                    found.append(Evidence(value, "comparison", members[g.name], files[g.name], what))
        for t in result.tests:
            runs = members.get(t.a, ()) + members.get(t.b, ())
            both = files.get(t.a, ()) + files.get(t.b, ())
            ci = t.diff_ci95 or (None, None)
            stats = (
                ("diff", t.diff),
                ("diff ci95 low", ci[0]),
                ("diff ci95 high", ci[1]),
                ("t", t.t),
                ("df", t.df),
                ("p", t.p),
                ("Holm p", t.p_holm),
                ("Hedges' g", t.hedges_g),
            )
            for stat, value in stats:
                if not _finite(value):
                    continue
                assert value is not None
                what = f"{stat} of {t.a!r} vs {t.b!r} on {result.metric} (comparison {cid})"
                signs = {value, -value} if stat in ("diff", "t", "Hedges' g") else {value}
                found += [Evidence(v, "comparison", runs, both, what, is_p=stat in ("p", "Holm p")) for v in signs]
    return found


def _numbers(prefix: str, value: object) -> Iterable[tuple[str, float]]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield prefix, float(value)
    elif isinstance(value, dict):
        items: dict[object, object] = value  # pyright: ignore[reportUnknownVariableType]
        for key, item in items.items():
            yield from _numbers(f"{prefix}.{key}" if prefix else str(key), item)
    elif isinstance(value, list | tuple):
        listed = cast("list[object]", list(value))[:100]  # pyright: ignore[reportUnknownArgumentType]
        for i, item in enumerate(listed):
            yield from _numbers(f"{prefix}[{i}]", item)


def config_evidence(records: Iterable[tuple[str, dict[str, object] | None, int | None]]) -> list[Evidence]:
    """Every number of each run's config (and its seed); runs sharing a key and value are one piece of evidence."""
    shared: dict[tuple[str, float], list[str]] = {}
    for run_id, config, seed in records:
        for key, value in _numbers("", config or {}):
            shared.setdefault((key, value), []).append(run_id)
        if seed is not None:
            shared.setdefault(("seed", float(seed)), []).append(run_id)
    return [
        Evidence(value, "config", tuple(runs), (), f"config {key} = {value:g}")
        for (key, value), runs in sorted(shared.items())
        if math.isfinite(value)
    ]
