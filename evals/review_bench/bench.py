"""Run the bench: the leak check, then the figures of every set of forms next to the floors, and the calibrations."""

# pyright: reportMissingTypeStubs=false
from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import spearmanr
from sklearn.metrics import balanced_accuracy_score

from evals.review_bench.calibrate import calibrate_forms
from evals.review_bench.data import DEFAULT_DATA, Bench, Forms, load_bench, load_forms, published_runs, words
from evals.review_bench.leak import leak_check
from evals.review_bench.stats import (
    RESAMPLES,
    Floats,
    Scorer,
    best_threshold,
    figures,
    oof_probability,
    prepare,
    replicate,
    resamples,
    summarise,
)


class LeakError(AssertionError):
    """The identity rule still tells accepted from rejected papers after cleaning."""


def _array(values: list[float] | list[bool]) -> Floats:
    return np.asarray(values, dtype=np.float64)


def _human_rows(bench: Bench) -> tuple[Scorer, float]:
    """One human (score column 0) against the mean of the others, and the pooled leave-one-out MAE of all scores."""
    first = _array([s[0] for s in bench.scores])
    others = _array([sum(s[1:]) / len(s[1:]) for s in bench.scores])
    errors = [abs(x - (sum(s) - x) / (len(s) - 1)) for s in bench.scores for x in s]
    row = Scorer("human", "one human (score column 0) vs the mean of the others", "human", first, others)
    return row, float(np.mean(errors))


def _wordcount_row(key: str, label: str, texts: list[str], bench: Bench, y: NDArray[np.bool_]) -> Scorer:
    count = _array([words(t) for t in texts])
    decision = (oof_probability(np.log(count), y, balanced=True) >= 0.5).astype(np.float64)
    prob = oof_probability(np.log(count), y)
    return Scorer(key, label, "floor", count, _array(bench.mean_human), decision, prob, on_scale=False)


def _forms_row(forms: Forms, bench: Bench, kind: str) -> Scorer:
    decision = _array(forms.decision)
    return Scorer(
        forms.key,
        forms.label,
        kind,
        _array(forms.overall),
        _array(bench.mean_human),
        None if np.all(np.isnan(decision)) else decision,
        notes={"source": forms.source, "model": forms.model},
    )


def _subset(row: Scorer, keep: NDArray[np.bool_]) -> Scorer:
    return replace(
        row,
        score=row.score[keep],
        target=row.target[keep],
        decision=None if row.decision is None else row.decision[keep],
        prob=None if row.prob is None else row.prob[keep],
        notes=dict(row.notes),
    )


def evaluate(row: Scorer, floor: Scorer, y: NDArray[np.bool_], reps: int) -> dict[str, Any]:
    """The figures of `row` with their intervals and their paired differences from `floor` (same papers, target)."""
    keep = ~np.isnan(row.score)
    if row.decision is not None:
        keep &= ~np.isnan(row.decision)
    row, floor, yy = _subset(row, keep), _subset(floor, keep), y[keep]
    floor = replace(floor, target=row.target)
    prepare(row, yy)
    prepare(floor, yy)
    boot = resamples(len(yy), reps)
    point, floor_point = figures(row, yy), figures(floor, yy)
    summary = summarise(point, replicate(row, yy, boot), floor_point, replicate(floor, yy, boot))
    if row.key == floor.key:  # a floor against itself: no difference to state
        for entry in summary.values():
            entry.pop("vs_floor", None)
    extra: dict[str, Any] = {"n": int(keep.sum()), "floor": floor.key}
    cut, ba = best_threshold(row.score, yy)
    extra["best_threshold"] = {"cut": cut, "ba": ba}
    if row.on_scale:
        extra["ba_at_7"] = float(balanced_accuracy_score(yy, row.score >= 7))
    if row.key != floor.key:
        rho: Any = spearmanr(row.score[~yy], floor.score[~yy])
        extra["spearman_with_floor_rejected"] = float(rho.statistic)
    if row.decision is not None:
        extra["accepts_of_rejected"] = float(row.decision[~yy].mean())
    return {"key": row.key, "label": row.label, "kind": row.kind, "figures": summary, **extra, **row.notes}


def run_bench(
    data: Path = DEFAULT_DATA,
    *,
    forms: list[Path] | None = None,
    reps: int = RESAMPLES,
    user_floor: str = "cleaned",
) -> dict[str, Any]:
    """The whole bench as one JSON-ready dict (see `evals/review_bench/__init__.py`)."""
    started = time.perf_counter()
    bench = load_bench(data)
    y = np.asarray(bench.accept, dtype=bool)
    boot = resamples(bench.n, reps)
    leak = leak_check(bench.raw, bench.clean, y, boot)
    probs: dict[str, Floats] = leak.pop("_probs")
    rule = leak["cleaned"]["a"]["ba"]
    if rule != 0.5:
        raise LeakError(f"the 'anonymous authors' rule scores {rule:.3f} on cleaned text, not 0.5")
    floors = {
        "words_raw": _wordcount_row("words_raw", "word count, raw text", bench.raw, bench, y),
        "words_cleaned": _wordcount_row("words_cleaned", "word count, cleaned text", bench.clean, bench, y),
    }
    mean_human = _array(bench.mean_human)
    for key, label, name in (
        ("tfidf_cleaned", "TF-IDF probe, cleaned text", "c_cleaned"),
        ("bow_cleaned", "binary bag-of-words probe, cleaned text", "c2_cleaned"),
    ):
        prob = probs[name]
        floors[key] = Scorer(key, label, "floor", prob, mean_human, (prob >= 0.5).astype(np.float64), prob, False)
    runs = published_runs(data, bench)
    rows: list[dict[str, Any]] = []
    calibrations: list[dict[str, Any]] = []
    for run in runs:
        rows.append(evaluate(_forms_row(run, bench, "run"), floors["words_raw"], y, reps))
        calibrations.append(calibrate_forms(run, bench).model_dump(mode="json"))
    for path in forms or []:
        user = load_forms(path, bench)
        rows.append(evaluate(_forms_row(user, bench, "user"), floors[f"words_{user_floor}"], y, reps))
        try:
            calibrations.append(calibrate_forms(user, bench).model_dump(mode="json"))
        except ValueError as exc:
            rows[-1]["calibration_error"] = str(exc)
    human, pooled = _human_rows(bench)
    human.notes["mae_pooled_loo"] = pooled
    rows.append(evaluate(human, floors["words_raw"], y, reps))
    rows.extend(evaluate(floor, floors["words_raw"], y, reps) for floor in floors.values())
    return {
        "bench": "review_bench",
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": str(data),
        "n": bench.n,
        "accepted": int(y.sum()),
        "rejected": int((~y).sum()),
        "resamples": reps,
        "versions": {name: version(name) for name in ("scikit-learn", "numpy", "scipy")},
        "leak": leak,
        "rows": rows,
        "calibrations": calibrations,
        "seconds": round(time.perf_counter() - started, 1),
    }


def row_by_key(result: dict[str, Any], key: str) -> dict[str, Any]:
    """The row of `result` with this key."""
    return next(row for row in result["rows"] if row["key"] == key)


def value(row: dict[str, Any], metric: str) -> float:
    """A figure's point value (nan when undefined)."""
    found = row["figures"][metric]["value"]
    return math.nan if found is None else float(found)
