"""One metric's running summary: count, last, min, max, step range and a bounded series that keeps extremes.

Values arrive in chunks (numpy arrays), so a file of any length is summarised in bounded memory. The series is
downsampled while it streams: points are grouped into buckets of `width` consecutive points (by arrival order),
each bucket keeps its lowest and its highest point, and when there are more buckets than the budget allows,
neighbouring buckets are merged and `width` doubles. The global minimum and maximum, the first and the last point
therefore always survive. Non-finite values (NaN, Inf) are counted, never summarised as numbers.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Direction", "Series", "direction_of"]

Direction = Literal["max", "min"]

_LOWER = frozenset(
    {"loss", "losses", "error", "errors", "err", "perplexity", "ppl", "mse", "mae", "rmse", "nll", "wer", "cer",
     "fid", "kl", "divergence", "regret", "latency", "entropy", "bpc", "bpd", "time", "duration", "cost", "ece",
     "distance", "mape", "smape"}
)  # fmt: skip
_HIGHER = frozenset(
    {"acc", "accuracy", "f1", "bleu", "rouge", "rouge1", "rouge2", "rougel", "auc", "auroc", "auprc", "map",
     "precision", "recall", "reward", "rewards", "return", "returns", "score", "iou", "miou", "dice", "psnr",
     "ssim", "r2", "top1", "top5", "ndcg", "mrr", "hits", "em", "throughput", "meteor", "cider", "spearman",
     "pearson", "correlation", "success", "winrate", "mcc", "kappa"}
)  # fmt: skip
_NEUTRAL = frozenset({"std", "stderr", "sem", "var", "variance", "lr", "count"})
"""Words that undo a verdict: a spread of a metric, or a count, has no better direction."""
_COUNT_PREFIX = frozenset({"step", "steps", "epoch", "epochs", "iter", "iters", "num", "n"})


def direction_of(name: str) -> Direction | None:
    """Whether a higher or a lower value of the metric is better, from its name; None when the name does not say.

    The last word that decides wins ("top1_error" is an error); a spread ("acc_std") or a count of steps
    ("step_val_acc_99": steps until 99% accuracy) is left unknown rather than guessed."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    tokens = [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]
    if not tokens or tokens[0] in _COUNT_PREFIX and len(tokens) > 1:
        return None
    if "per" in tokens and any(t in ("second", "sec", "s") for t in tokens):
        return "max"  # a throughput: samples or tokens per second
    verdict: Direction | None = None
    for token in tokens:
        if token in _NEUTRAL:
            verdict = None
        elif token in _LOWER:
            verdict = "min"
        elif token in _HIGHER:
            verdict = "max"
    return verdict


class Series:
    """The running summary of one metric; `add` chunks of (step, value) in the order they were logged."""

    __slots__ = (
        "_buckets",
        "_cap",
        "_first",
        "_width",
        "count",
        "first_non_finite_step",
        "last",
        "last_step",
        "max",
        "max_step",
        "min",
        "min_step",
        "non_finite",
        "step_max",
        "step_min",
    )

    def __init__(self, max_points: int = 200) -> None:
        self._cap = max(1, (max_points - 2) // 2)
        self._width = 1
        self._buckets: dict[int, list[float]] = {}  # bucket -> [min ord, min step, min value, max ord, step, value]
        self._first: tuple[float, float] | None = None
        self.count = 0
        self.non_finite = 0
        self.first_non_finite_step: float | None = None
        self.last = self.min = self.max = math.nan
        self.last_step = self.min_step = self.max_step = math.nan
        self.step_min = math.inf
        self.step_max = -math.inf

    def add(self, steps: NDArray[np.float64], values: NDArray[np.float64]) -> None:
        import numpy as np

        finite = np.isfinite(values)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            if self.first_non_finite_step is None:
                self.first_non_finite_step = float(steps[bad[0]])
            self.non_finite += int(bad.size)
            steps, values = steps[finite], values[finite]
        n = int(values.size)
        if n == 0:
            return
        if self._first is None:
            self._first = (float(steps[0]), float(values[0]))
        lo, hi = int(np.argmin(values)), int(np.argmax(values))
        if not values[lo] >= self.min:  # also true while self.min is NaN
            self.min, self.min_step = float(values[lo]), float(steps[lo])
        if not values[hi] <= self.max:
            self.max, self.max_step = float(values[hi]), float(steps[hi])
        self.last, self.last_step = float(values[-1]), float(steps[-1])
        finite_steps = steps[np.isfinite(steps)]
        if finite_steps.size:
            self.step_min = min(self.step_min, float(finite_steps.min()))
            self.step_max = max(self.step_max, float(finite_steps.max()))
        start = self.count
        self.count += n
        while (self.count - 1) // self._width >= self._cap:
            self._merge()
        self._bucket(start, steps, values)

    def _bucket(self, start: int, steps: NDArray[np.float64], values: NDArray[np.float64]) -> None:
        import numpy as np

        ords = np.arange(start, start + values.size)
        ids = ords // self._width
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        lengths = np.diff(np.append(starts, values.size))
        lows = np.minimum.reduceat(values, starts)
        highs = np.maximum.reduceat(values, starts)
        at_low = np.flatnonzero(values == np.repeat(lows, lengths))
        at_high = np.flatnonzero(values == np.repeat(highs, lengths))
        low_idx = at_low[np.searchsorted(at_low, starts)]
        high_idx = at_high[np.searchsorted(at_high, starts)]
        for k in range(starts.size):
            i, j = int(low_idx[k]), int(high_idx[k])
            found = [
                float(ords[i]),
                float(steps[i]),
                float(values[i]),
                float(ords[j]),
                float(steps[j]),
                float(values[j]),
            ]
            self._put(int(ids[starts[k]]), found)

    def _put(self, bucket: int, found: list[float]) -> None:
        old = self._buckets.get(bucket)
        if old is None:
            self._buckets[bucket] = found
            return
        if found[2] < old[2]:
            old[0:3] = found[0:3]
        if found[5] > old[5]:
            old[3:6] = found[3:6]

    def _merge(self) -> None:
        self._width *= 2
        old, self._buckets = self._buckets, {}
        for bucket in sorted(old):
            self._put(bucket // 2, old[bucket])

    def points(self) -> list[tuple[float, float]]:
        """The downsampled series as (step, value), in logged order: first, each bucket's extremes, last."""
        if self._first is None:
            return []
        by_ord: dict[float, tuple[float, float]] = {-1.0: self._first}
        for b in self._buckets.values():
            by_ord[b[0]] = (b[1], b[2])
            by_ord[b[3]] = (b[4], b[5])
        by_ord[float(self.count)] = (self.last_step, self.last)
        ordered = [by_ord[k] for k in sorted(by_ord)]
        deduped = [ordered[0]]
        for point in ordered[1:]:
            if point != deduped[-1]:
                deduped.append(point)
        return deduped
