"""Fit a reviewer's calibration, P(accept | Overall), on the bench, and write it where the package loads it.

The fit is a logistic regression of the human decision on the reviewer's Overall score (scikit-learn's default L2,
C = 1), over the bench papers that reviewer filled a form for; its Brier score is cross-validated (5-fold stratified,
seed 0, out-of-fold probabilities) and the parameters shipped are those of the fit on all the forms. The package
reads only the two numbers (`research_mcp.tools.review.calibration`, plain math).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from evals.review_bench.data import DEFAULT_DATA, Bench, Forms, load_bench, load_forms
from evals.review_bench.stats import fit_logistic, oof_probability
from research_mcp.tools.review.calibration import (
    Calibration,
    CalibrationFile,
    load_calibrations,
    user_calibration_path,
)

MIN_FORMS = 30
"""Fewest forms a calibration is fitted on."""
MIN_PER_CLASS = 10
"""Fewest accepted and fewest rejected papers among them."""


def calibrate_forms(
    forms: Forms, bench: Bench, *, reviewer: str | None = None, source: str | None = None
) -> Calibration:
    """The calibration of one set of forms against the bench's human decisions."""
    keep = [i for i, score in enumerate(forms.overall) if not math.isnan(score)]
    x = np.array([forms.overall[i] for i in keep], dtype=np.float64)
    y = np.array([bench.accept[i] for i in keep], dtype=bool)
    accepted = int(y.sum())
    if len(keep) < MIN_FORMS or min(accepted, len(keep) - accepted) < MIN_PER_CLASS:
        raise ValueError(
            f"{forms.source or forms.key} has Overall scores for {len(keep)} bench papers ({accepted} accepted); "
            f"a calibration needs at least {MIN_FORMS}, with {MIN_PER_CLASS} accepted and {MIN_PER_CLASS} rejected. "
            "Review more of the bench papers (their ids are in ratings_subset.tsv)."
        )
    if np.all(x == x[0]):
        raise ValueError(f"{forms.source or forms.key} gives every paper the same Overall score: nothing to fit.")
    intercept, slope = fit_logistic(x, y)
    prob = oof_probability(x, y)
    base = float(y.mean())
    return Calibration(
        reviewer=reviewer or forms.key,
        model=forms.model,
        intercept=intercept,
        slope=slope,
        brier=float(np.mean((prob - y) ** 2)),
        brier_base=base * (1 - base),
        n=len(keep),
        source=source or f"review bench (ICLR 2022, {len(keep)} papers): {forms.source or forms.key}",
        passes=forms.passes,
        fewshot=forms.fewshot,
    )


def write_calibrations(path: Path, calibrations: list[Calibration]) -> None:
    """Write `calibrations` to `path`, keeping the entries already there under other reviewer keys."""
    keys = {c.reviewer for c in calibrations}
    kept = [c for c in load_calibrations(path) if c.reviewer not in keys]
    merged = sorted([*kept, *calibrations], key=lambda c: c.reviewer)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(CalibrationFile(calibrations=merged).model_dump(mode="json"), indent=2) + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def fit_user_calibration(
    forms_csv: Path,
    reviewer: str,
    *,
    model: str | None = None,
    data: Path = DEFAULT_DATA,
    data_dir: Path | None = None,
) -> tuple[Calibration, Path]:
    """Fit the calibration of a user's forms CSV (columns paper_id, Overall) and add it to the user's calibration
    file (`review_calibrations.json` in the user data folder, or in `data_dir`), under the key `reviewer`.

    Returns the calibration and the file written. `model` (default: `reviewer`) is the model name the package
    matches a reviewer against."""
    bench = load_bench(data, texts=False)
    forms = load_forms(forms_csv, bench, key=reviewer)
    forms.model = model or reviewer
    calibration = calibrate_forms(
        forms, bench, reviewer=reviewer, source=f"user forms {forms_csv.name} on the review bench (ICLR 2022)"
    )
    path = user_calibration_path(data_dir)
    write_calibrations(path, [calibration])
    return calibration, path
