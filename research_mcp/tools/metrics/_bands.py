"""The mean curve of a group of runs with a shaded band: the runs aligned by step, then per step the mean and
either the 95% t confidence interval of the mean or ± one sample standard deviation.

Runs that logged the same steps are taken as they are. Runs that did not (another eval interval, a series cut
short, downsampled extremes of long logs) are interpolated linearly onto the steps any of them logged inside the
range all of them cover, at most `MAX_GRID` steps; the answer says so. A step is never extrapolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from research_mcp.tools.metrics._records import lib

__all__ = ["MAX_GRID", "Band", "BandKind", "band_of"]

BandKind = Literal["ci95", "std"]
MAX_GRID = 1000


@dataclass(frozen=True)
class Band:
    steps: list[float]
    mean: list[float]
    low: list[float] | None
    """None for a single run: no spread to shade."""
    high: list[float] | None
    n: int
    interpolated: bool


def band_of(runs: list[tuple[list[float], list[float]]], kind: BandKind) -> Band | None:
    """Mean and band of runs given as (steps, values), each sorted by step; None when their steps do not overlap."""
    np: Any = lib("numpy")
    series = [(np.asarray(s, dtype=float), np.asarray(v, dtype=float)) for s, v in runs if len(s)]
    if not series:
        return None
    first = series[0][0]
    same = all(len(s) == len(first) and bool(np.array_equal(s, first)) for s, _ in series)
    if same:
        grid = first
        table = np.vstack([v for _, v in series])
    else:
        start, end = max(float(s[0]) for s, _ in series), min(float(s[-1]) for s, _ in series)
        if start > end:
            return None
        grid = np.unique(np.concatenate([s[(s >= start) & (s <= end)] for s, _ in series]))
        if grid.size > MAX_GRID:
            grid = grid[np.linspace(0, grid.size - 1, MAX_GRID).round().astype(int)]
        table = np.vstack([np.interp(grid, s, v) for s, v in series])
    n = table.shape[0]
    mean = table.mean(axis=0)
    if n < 2:
        return Band(grid.tolist(), mean.tolist(), None, None, n, not same)
    spread = table.std(axis=0, ddof=1)
    if kind == "ci95":
        spread = spread * float(lib("scipy.stats").t.ppf(0.975, n - 1)) / math.sqrt(n)
    return Band(grid.tolist(), mean.tolist(), (mean - spread).tolist(), (mean + spread).tolist(), n, not same)
