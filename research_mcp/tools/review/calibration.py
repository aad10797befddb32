"""Calibrations of a reviewer's Overall score to a probability of acceptance: P(accept | overall).

A calibration is a logistic curve, P = 1 / (1 + exp(-(intercept + slope * overall))), fitted on one reviewer's
filled forms against the human decisions of the review bench (`python -m evals.review_bench`, ICLR 2022, 500
papers), with a cross-validated Brier score. The package ships the parameters only (`calibrations.json` next to
this module); users add their own with `python -m evals.review_bench calibrate FORMS.csv --reviewer NAME`, which
writes `review_calibrations.json` in the user data folder (`Settings.user_data_dir()`). Plain math: no numpy, no
scikit-learn.

API (stable):

    calibration_for(reviewer: str, *, data_dir: Path | None = None) -> Calibration | None
        The calibration for a reviewer, a model name such as "gpt-4o-2024-05-13" or the key of a run. Names are
        compared case-folded, with any provider prefix ("openai/") dropped and '.' read as '-'. The user's file
        (`<data_dir>/review_calibrations.json`; default data_dir: `Settings().user_data_dir()`) is searched
        before the shipped file, each in four steps, the first that matches wins:
          1. a calibration whose `reviewer` key equals the name;
          2. calibrations whose `model` equals the name;
          3. calibrations whose `model` the name starts with (a suffixed variant: "gpt-4o-2024-05-13-ft");
          4. calibrations whose `model` is the name plus a date ("gpt-4o" -> "gpt-4o-2024-05-13", never
             "gpt-4o-mini-2024-07-18").
        Where one step finds several runs of a model, the one closest to a single review wins: fewest reflections
        times ensemble size, then fewest few-shot examples, then the lowest Brier score. None when nothing matches.

    load_calibrations(path: Path) -> list[Calibration]
        The calibrations of one file; raises `ConfigError` when the file is not a calibration file.

    user_calibration_path(data_dir: Path | None = None) -> Path
        Where the user's calibrations live.

    Calibration (pydantic): reviewer, model, intercept, slope, brier (cross-validated), brier_base (the Brier
        score of always answering the base rate, for contrast), n (forms fitted), source (where it was fitted),
        passes, fewshot; probability(overall) -> float.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, ValidationError

from research_mcp.errors import ConfigError
from research_mcp.model import ToolModel

__all__ = [
    "SHIPPED_PATH",
    "USER_FILE",
    "Calibration",
    "CalibrationFile",
    "calibration_for",
    "load_calibrations",
    "user_calibration_path",
]

SHIPPED_PATH = Path(__file__).with_name("calibrations.json")
USER_FILE = "review_calibrations.json"


class Calibration(ToolModel):
    """A logistic map from a reviewer's Overall score to the probability that the paper is accepted."""

    reviewer: str = Field(description="The key of the reviewer or run the curve was fitted on.")
    model: str = Field(description="The model name the reviewer ran.")
    intercept: float
    slope: float = Field(description="Change of the log-odds of acceptance per point of Overall.")
    brier: float = Field(description="Cross-validated Brier score of the probabilities on the fitted forms.")
    brier_base: float = Field(description="Brier score of always answering the base rate of acceptance.")
    n: int = Field(description="Number of forms fitted.")
    source: str = Field(description="Where and how the curve was fitted.")
    passes: int = Field(default=1, description="Reflections times ensemble size of the run (1: a single review).")
    fewshot: int = Field(default=0, description="Few-shot examples the reviewer was shown.")

    def probability(self, overall: float) -> float:
        """P(accept | overall) on this reviewer's curve."""
        z = self.intercept + self.slope * overall
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)


class CalibrationFile(ToolModel):
    """The shape of a calibration file."""

    version: int = 1
    calibrations: list[Calibration] = Field(default_factory=list[Calibration])


def user_calibration_path(data_dir: Path | None = None) -> Path:
    """The user's calibration file: `review_calibrations.json` in the user data folder."""
    if data_dir is None:
        from research_mcp.config import Settings

        data_dir = Settings().user_data_dir()
    return data_dir / USER_FILE


def load_calibrations(path: Path) -> list[Calibration]:
    """The calibrations in `path` (empty when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        return CalibrationFile.model_validate(json.loads(text)).calibrations
    except (ValueError, ValidationError) as exc:
        raise ConfigError(
            f"{path} is not a calibration file ({str(exc).splitlines()[0]}). Refit it with "
            "`python -m evals.review_bench calibrate` or remove it."
        ) from exc


def _norm(name: str) -> str:
    return name.strip().casefold().rsplit("/", 1)[-1].replace(".", "-").replace("_", "-")


_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


def _match(reviewer: str, calibrations: list[Calibration]) -> Calibration | None:
    name = _norm(reviewer)
    steps: list[Callable[[Calibration], bool]] = [
        lambda c: _norm(c.reviewer) == name,
        lambda c: _norm(c.model) == name,
        lambda c: name.startswith(_norm(c.model) + "-"),
        lambda c: _norm(c.model).startswith(name + "-") and _DATED.fullmatch(_norm(c.model)[len(name) :]) is not None,
    ]
    for step in steps:
        found = [c for c in calibrations if step(c)]
        if found:
            return min(found, key=lambda c: (c.passes, c.fewshot, c.brier))
    return None


def calibration_for(reviewer: str, *, data_dir: Path | None = None) -> Calibration | None:
    """The calibration of `reviewer`: the user's first, then the shipped ones (see the module docstring)."""
    for path in (user_calibration_path(data_dir), SHIPPED_PATH):
        found = _match(reviewer, load_calibrations(path))
        if found is not None:
            return found
    return None
