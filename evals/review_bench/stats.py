"""The statistics of the bench: figures of one scorer, cross-validated thresholds and probabilities, bootstrap.

Every split is a 5-fold stratified split shuffled with seed 0; every interval is a percentile bootstrap over papers
(1000 resamples, seed 0) of figures computed once, out of fold where a model is fitted, so a resample never
refits. Differences against a floor use the same resamples for both (paired). Point figures come from scikit-learn
and scipy; the resamples use the same formulas vectorised over all resamples at once (a test checks that the two
agree on the full sample).
"""

# pyright: reportMissingTypeStubs=false
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata, spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

SEED = 0
FOLDS = 5
RESAMPLES = 1000

Floats = NDArray[np.float64]

METRICS: dict[str, str] = {
    "ba_decision": "BA of the decision",
    "ba_threshold_cv": "BA of a CV threshold on the score",
    "auroc": "AUROC of the score",
    "spearman": "Spearman vs mean human",
    "mae": "MAE vs mean human",
    "spearman_rejected": "Spearman, rejected only",
    "pairwise": "pairwise ranking accuracy",
    "brier": "Brier of P(accept)",
}
"""The figures of every row, in table order."""


def folds() -> StratifiedKFold:
    return StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)


def best_threshold(score: Floats, y: NDArray[np.bool_]) -> tuple[float, float]:
    """The cut t of `score >= t` with the highest balanced accuracy (lowest t on ties), and that accuracy."""
    cuts = np.unique(score)
    tpr = (score[y][:, None] >= cuts[None, :]).mean(axis=0)
    tnr = (score[~y][:, None] < cuts[None, :]).mean(axis=0)
    ba = (tpr + tnr) / 2
    best = int(np.argmax(ba))
    return float(cuts[best]), float(ba[best])


def cv_threshold_predictions(score: Floats, y: NDArray[np.bool_]) -> Floats:
    """Out-of-fold accept predictions of a threshold picked on the other folds."""
    pred = np.zeros(len(score))
    for train, test in folds().split(score.reshape(-1, 1), y):
        cut, _ = best_threshold(score[train], y[train])
        pred[test] = score[test] >= cut
    return pred


def oof_probability(x: Floats, y: NDArray[np.bool_], *, balanced: bool = False) -> Floats:
    """Out-of-fold P(accept) of a logistic regression on one feature (balanced class weights if asked)."""
    model = LogisticRegression(class_weight="balanced" if balanced else None)
    proba = np.asarray(cross_val_predict(model, x.reshape(-1, 1), y, cv=folds(), method="predict_proba"))
    return np.asarray(proba[:, 1], dtype=np.float64)


def fit_logistic(x: Floats, y: NDArray[np.bool_]) -> tuple[float, float]:
    """(intercept, slope) of a logistic regression of y on x, fitted on all the data (sklearn's default L2, C=1)."""
    model = LogisticRegression().fit(x.reshape(-1, 1), y)
    return float(model.intercept_[0]), float(model.coef_[0, 0])


def _spearman(a: Floats, b: Floats) -> float:
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    found: Any = spearmanr(a, b)
    return float(found.statistic)


def pairwise_accuracy(score: Floats, target: Floats) -> float:
    """Share of paper pairs with different target that the score orders the same way (a tie in score counts 1/2)."""
    dt = np.sign(target[:, None] - target[None, :])
    ds = np.sign(score[:, None] - score[None, :])
    pairs = dt > 0
    total = int(pairs.sum())
    if total == 0:
        return math.nan
    agree = (ds[pairs] > 0).sum() + 0.5 * (ds[pairs] == 0).sum()
    return float(agree / total)


@dataclass
class Scorer:
    """One row of the table: a score per paper and what goes with it."""

    key: str
    label: str
    kind: str  # "run", "human", "floor", "user"
    score: Floats
    target: Floats  # the mean human score this row is compared with
    decision: Floats | None = None  # 0/1 accept decisions, where the scorer gives them
    prob: Floats | None = None  # out-of-fold P(accept)
    on_scale: bool = True  # the score is on the 1-10 review scale (MAE means something)
    notes: dict[str, Any] = field(default_factory=dict[str, Any])
    thr_pred: Floats | None = None


def prepare(row: Scorer, y: NDArray[np.bool_]) -> Scorer:
    """Fill in the out-of-fold threshold predictions and, unless given, the calibrated P(accept)."""
    row.thr_pred = cv_threshold_predictions(row.score, y)
    if row.prob is None:
        row.prob = oof_probability(row.score, y)
    return row


def figures(row: Scorer, y: NDArray[np.bool_], idx: NDArray[np.intp] | None = None) -> dict[str, float]:
    """Every figure of `row` on the papers `idx` (all when None)."""
    assert row.thr_pred is not None and row.prob is not None
    take: Any = slice(None) if idx is None else idx
    yy, score, target = y[take], row.score[take], row.target[take]
    rejected = ~yy
    out = {
        "ba_decision": (
            float(balanced_accuracy_score(yy, row.decision[take])) if row.decision is not None else math.nan
        ),
        "ba_threshold_cv": float(balanced_accuracy_score(yy, row.thr_pred[take])),
        "auroc": float(roc_auc_score(yy, score)),
        "spearman": _spearman(score, target),
        "mae": float(np.mean(np.abs(score - target))) if row.on_scale else math.nan,
        "spearman_rejected": _spearman(score[rejected], target[rejected]),
        "pairwise": pairwise_accuracy(score, target),
        "brier": float(brier_score_loss(yy, row.prob[take])),
    }
    return out


def resamples(n: int, reps: int = RESAMPLES) -> NDArray[np.intp]:
    """Bootstrap resamples of paper indices, seeded: one row of n indices per resample."""
    return np.random.default_rng(SEED).integers(0, n, size=(reps, n))


def boot_balanced_accuracy(y: NDArray[np.bool_], pred: Floats, boot: NDArray[np.intp]) -> Floats:
    """Balanced accuracy of 0/1 predictions on each resample (the formula of sklearn's balanced_accuracy_score)."""
    yy, pp = y[boot], pred[boot] >= 0.5
    tpr = (yy & pp).sum(axis=1) / yy.sum(axis=1)
    tnr = (~yy & ~pp).sum(axis=1) / (~yy).sum(axis=1)
    return (tpr + tnr) / 2


def boot_auroc(y: NDArray[np.bool_], score: Floats, boot: NDArray[np.intp]) -> Floats:
    """AUROC on each resample, as the Mann-Whitney statistic of mid-ranks (equal to sklearn's roc_auc_score)."""
    yy = y[boot]
    ranks = rankdata(score[boot], axis=1)
    pos = yy.sum(axis=1)
    neg = yy.shape[1] - pos
    return ((ranks * yy).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)


def _boot_spearman(a: Floats, b: Floats, keep: NDArray[np.bool_] | None = None) -> Floats:
    """Spearman's rho of each row pair (Pearson's r of mid-ranks, as scipy's spearmanr), over `keep` only."""
    if keep is not None:
        a, b = np.where(keep, a, np.nan), np.where(keep, b, np.nan)
    ra = rankdata(a, axis=1, nan_policy="omit")
    rb = rankdata(b, axis=1, nan_policy="omit")
    ra -= np.nanmean(ra, axis=1, keepdims=True)
    rb -= np.nanmean(rb, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(ra * rb, axis=1) / np.sqrt(np.nansum(ra**2, axis=1) * np.nansum(rb**2, axis=1))


def _boot_pairwise(score: Floats, target: Floats, boot: NDArray[np.intp]) -> Floats:
    """Pairwise ranking accuracy on each resample: a resample is a weighting of papers by how often it draws them."""
    order = (target[:, None] > target[None, :]).astype(np.float64)
    diff = np.sign(score[:, None] - score[None, :])
    agree = order * ((diff > 0) + 0.5 * (diff == 0))
    weights = np.zeros((len(boot), len(score)))
    rows = np.repeat(np.arange(len(boot)), boot.shape[1])
    np.add.at(weights, (rows, boot.ravel()), 1.0)
    # pairs of distinct draws: a paper drawn twice is not paired with itself (its own pair has equal targets anyway)
    num = ((weights @ agree) * weights).sum(axis=1)
    den = ((weights @ order) * weights).sum(axis=1)
    return num / den


def replicate(row: Scorer, y: NDArray[np.bool_], boot: NDArray[np.intp]) -> dict[str, Floats]:
    """Each figure on each resample (vectorised over resamples; the point figures use sklearn and scipy)."""
    assert row.thr_pred is not None and row.prob is not None
    nan = np.full(len(boot), np.nan)
    score, target, yy = row.score[boot], row.target[boot], y[boot]
    return {
        "ba_decision": nan if row.decision is None else boot_balanced_accuracy(y, row.decision, boot),
        "ba_threshold_cv": boot_balanced_accuracy(y, row.thr_pred, boot),
        "auroc": boot_auroc(y, row.score, boot),
        "spearman": _boot_spearman(score, target),
        "mae": np.abs(score - target).mean(axis=1) if row.on_scale else nan,
        "spearman_rejected": _boot_spearman(score, target, ~yy),
        "pairwise": _boot_pairwise(row.score, row.target, boot),
        "brier": ((row.prob[boot] - yy) ** 2).mean(axis=1),
    }


def interval(values: Floats) -> list[float] | None:
    """The 95% percentile interval, None when the figure is undefined."""
    finite = values[np.isfinite(values)]
    if len(finite) < len(values) * 0.9:
        return None
    return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]


def summarise(
    point: dict[str, float], reps: dict[str, Floats], floor_point: dict[str, float], floor_reps: dict[str, Floats]
) -> dict[str, Any]:
    """Each figure with its interval and its paired difference from the floor."""
    out: dict[str, Any] = {}
    for name in METRICS:
        value = point[name]
        entry: dict[str, Any] = {"value": None if math.isnan(value) else value, "ci": interval(reps[name])}
        if not math.isnan(value) and not math.isnan(floor_point[name]):
            diff = reps[name] - floor_reps[name]
            entry["vs_floor"] = {"diff": value - floor_point[name], "ci": interval(diff)}
        out[name] = entry
    return out
