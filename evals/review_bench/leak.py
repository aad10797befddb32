"""The leak check: do the texts alone tell accepted from rejected papers, before and after anonymising?

(a) the identity rule `'anonymous authors' not in text` => accept, which must score exactly 0.5 on cleaned text;
(b) logistic regression (LR, balanced class weights) on log word count; (b2) the same on the main body (before
References); (c) TF-IDF of 1-2-grams (sublinear tf) + LR; (c2) binary bag of 1-2-grams + LR. The text models pick C
by an inner 5-fold CV (AUROC) on each training fold. The vocabulary (1-2-grams in at least 2 papers) and the IDF
weights are computed once from all texts, without labels. The text models are fitted in the span of the training
papers (exact for an L2 penalty, and fast: a few hundred coordinates instead of 300k n-grams). BA cuts P at 0.5;
AUROC ranks P.
"""

# pyright: reportMissingTypeStubs=false
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from evals.review_bench.data import main_body, words
from evals.review_bench.stats import (
    SEED,
    Floats,
    boot_auroc,
    boot_balanced_accuracy,
    folds,
    interval,
    oof_probability,
)

PROBE: dict[str, Any] = {
    "Cs": [0.01, 0.1, 1.0, 10.0, 100.0],
    "cv": StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED),
    "scoring": "roc_auc",
    "class_weight": "balanced",
    "l1_ratios": (0.0,),  # L2
    "use_legacy_attributes": False,
    "max_iter": 10_000,
}
"""The text probes' logistic regression: C picked by an inner 5-fold CV on AUROC."""


def rule_a(texts: list[str]) -> Floats:
    """1 (accept) where the text lacks 'anonymous authors'."""
    return np.array([float("anonymous authors" not in " ".join(t.lower().split())) for t in texts])


def _span(gram: Floats, train: NDArray[np.intp], test: NDArray[np.intp]) -> tuple[Floats, Floats]:
    """The papers in coordinates of the span of the training papers, from the Gram matrix of all papers. An
    L2-penalised linear model has its weights in that span, so a logistic regression on these coordinates equals
    one on all the n-grams, and is far faster."""
    values, vectors = np.linalg.eigh(gram[np.ix_(train, train)])
    keep = values > values.max() * 1e-10
    root = np.sqrt(values[keep])
    return vectors[:, keep] * root, gram[np.ix_(test, train)] @ vectors[:, keep] / root


def text_probes(texts: list[str], y: NDArray[np.bool_]) -> dict[str, Floats]:
    """Out-of-fold P(accept) of the TF-IDF probe (c) and the binary bag-of-words probe (c2)."""
    vectorizer: Any = CountVectorizer(ngram_range=(1, 2), min_df=2, dtype=np.float64)  # pyright: ignore[reportArgumentType]
    counts: Any = vectorizer.fit_transform(texts).tocsr()
    binary = counts.copy()
    binary.data[:] = 1.0
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(counts)
    grams = {
        "tfidf": np.asarray((tfidf @ tfidf.T).todense(), dtype=np.float64),
        "binary": np.asarray((binary @ binary.T).todense(), dtype=np.float64),
    }
    out = {name: np.zeros(len(texts)) for name in grams}
    for train, test in folds().split(np.zeros(len(texts)), y):
        for name, gram in grams.items():
            train_z, test_z = _span(gram, train, test)
            model = LogisticRegressionCV(**PROBE).fit(train_z, y[train])
            out[name][test] = model.predict_proba(test_z)[:, 1]
    return out


def _figures(y: NDArray[np.bool_], pred: Floats, prob: Floats | None, boot: NDArray[np.intp]) -> dict[str, Any]:
    ba = boot_balanced_accuracy(y, pred, boot)
    out: dict[str, Any] = {"ba": float(balanced_accuracy_score(y, pred)), "ba_ci": interval(ba)}
    if prob is not None:
        auc = boot_auroc(y, prob, boot)
        out |= {"auroc": float(roc_auc_score(y, prob)), "auroc_ci": interval(auc)}
    return out


def leak_check(raw: list[str], clean: list[str], y: NDArray[np.bool_], boot: NDArray[np.intp]) -> dict[str, Any]:
    """Every baseline on raw and on cleaned texts, with the out-of-fold probabilities the table reuses."""
    result: dict[str, Any] = {}
    probs: dict[str, Floats] = {}
    for version, texts in (("raw", raw), ("cleaned", clean)):
        count = np.log(np.array([words(t) for t in texts], dtype=np.float64))
        body = np.log(np.array([max(1, words(main_body(t))) for t in texts], dtype=np.float64))
        baselines: dict[str, tuple[Floats, Floats | None]] = {"a": (rule_a(texts), None)}
        for name, feature in (("b", count), ("b2", body)):
            prob = oof_probability(feature, y, balanced=True)
            baselines[name] = ((prob >= 0.5).astype(np.float64), prob)
        for name, prob in zip(("c", "c2"), text_probes(texts, y).values(), strict=True):
            baselines[name] = ((prob >= 0.5).astype(np.float64), prob)
            probs[f"{name}_{version}"] = prob
        result[version] = {name: _figures(y, pred, prob, boot) for name, (pred, prob) in baselines.items()}
    result["_probs"] = probs
    return result
