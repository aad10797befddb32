"""The statistics of a comparison: per group n, mean, std and a t confidence interval; pairwise Welch t-tests with
Hedges' g; Holm's step-down correction over the family of tests.

scipy does the distributions and the tests (`scipy.stats.ttest_ind(equal_var=False)`, `scipy.stats.t`). Holm's
procedure is the few lines below rather than statsmodels' `multipletests`, because statsmodels would make pandas a
runtime dependency of the server; the test suite checks these lines against `multipletests(method="holm")`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from research_mcp.tools.metrics._records import lib
from research_mcp.tools.metrics._series import Direction

__all__ = ["Described", "Pair", "compare_groups", "describe", "hedges_g", "holm"]


@dataclass(frozen=True)
class Described:
    n: int
    mean: float
    std: float | None  # sample standard deviation (ddof=1); None for n = 1
    ci_low: float | None  # 95% t interval of the mean; None for n = 1
    ci_high: float | None


@dataclass
class Pair:
    a: str
    b: str
    diff: float  # mean(a) - mean(b)
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    t: float | None = None
    df: float | None = None
    p: float | None = None
    p_holm: float | None = None
    hedges_g: float | None = None
    significant: bool | None = None
    better: str | None = None
    note: str | None = None


def describe(values: list[float], confidence: float = 0.95) -> Described:
    stats = lib("scipy.stats")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Described(n, mean, None, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    if std == 0:
        return Described(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Described(n, mean, std, float(low), float(high))


def hedges_g(a: list[float], b: list[float]) -> float | None:
    """Standardised mean difference (a - b) / pooled SD, with Hedges' small-sample correction."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    ma, mb = math.fsum(a) / na, math.fsum(b) / nb
    ss = math.fsum((v - ma) ** 2 for v in a) + math.fsum((v - mb) ** 2 for v in b)
    pooled = math.sqrt(ss / (na + nb - 2))
    if pooled == 0:
        return None
    return (ma - mb) / pooled * (1 - 3 / (4 * (na + nb) - 9))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: sorted ascending, the i-th (0-based) times (m - i), made monotone, capped
    at 1. A test is significant at level alpha when its adjusted p-value is below alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _welch(a: list[float], b: list[float], pair: Pair) -> None:
    stats = lib("scipy.stats")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant data: scipy warns, the numbers stand
        result = stats.ttest_ind(a, b, equal_var=False)
        low, high = result.confidence_interval(0.95)
    if not math.isfinite(float(result.pvalue)):
        pair.note = "both groups have (nearly) no spread; the t-test is undefined"
        return
    pair.t = float(result.statistic)
    pair.df = float(result.df)
    pair.p = float(result.pvalue)
    pair.diff_ci_low, pair.diff_ci_high = float(low), float(high)


def compare_groups(
    groups: dict[str, list[float]], direction: Direction | None, alpha: float = 0.05, baseline: str | None = None
) -> tuple[dict[str, Described], list[Pair]]:
    """Describe every group and test every pair (or each group against `baseline`), Holm-corrected together."""
    described = {name: describe(values) for name, values in groups.items()}
    names = list(groups)
    if baseline is not None:
        pairs = [(name, baseline) for name in names if name != baseline]
    else:
        pairs = [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
    tests: list[Pair] = []
    for a, b in pairs:
        pair = Pair(a, b, described[a].mean - described[b].mean)
        small = [name for name in (a, b) if len(groups[name]) < 2]
        if small:
            pair.note = (
                f"{' and '.join(repr(s) for s in small)} {'has' if len(small) == 1 else 'have'} one value: "
                "no claim of significance can be made; run more seeds"
            )
        else:
            _welch(groups[a], groups[b], pair)
            pair.hedges_g = hedges_g(groups[a], groups[b])
        tests.append(pair)
    tested = [pair for pair in tests if pair.p is not None]
    for pair, adjusted in zip(tested, holm([pair.p for pair in tested if pair.p is not None]), strict=True):
        pair.p_holm = adjusted
        pair.significant = adjusted < alpha
        if pair.significant and direction is not None:
            a_higher = pair.diff > 0
            pair.better = pair.a if a_higher == (direction == "max") else pair.b
    return described, tests
