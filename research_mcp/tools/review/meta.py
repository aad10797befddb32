"""The meta-review of a set of filled forms: every score's mean and spread, where reviewers disagree, the
weaknesses more than one reviewer names, the audit's blocking findings, and an accept probability only for a
reviewer with a calibration (its Brier score stated with it).

Two weaknesses count as the same point when they share at least two content words and at least `SAME_POINT`
of the shorter one's (the overlap coefficient; scikit-learn's TF-IDF would do it too, but it is no dependency of
the server); points are grouped transitively and a group named by two or more reviewers is reported once, in its
shortest wording.
"""

from __future__ import annotations

import importlib
import logging
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import Field

from research_mcp.errors import ResearchError
from research_mcp.model import ToolModel
from research_mcp.tools.review.form import SCORES, ReviewForm

__all__ = ["SAME_POINT", "CalibrationLike", "MetaReview", "ScoreSpread", "SharedWeakness", "Submitted", "meta_review"]

logger = logging.getLogger(__name__)

SAME_POINT = 0.4
"""Least share of the shorter point's content words the other must hold for two weaknesses to be one point."""


class CalibrationLike(Protocol):
    """What `research_mcp.tools.review.calibration.calibration_for` returns for a calibrated reviewer."""

    brier: float
    n: int
    source: str

    def probability(self, overall: float) -> float: ...


@dataclass(frozen=True)
class Submitted:
    """One stored form: its reviewer slot, who filled it, where it came from."""

    slot: int
    model: str
    source: str  # "endpoint" | "sampling" | "client"
    form: ReviewForm


class ScoreSpread(ToolModel):
    mean: float
    sd: float | None = Field(description="Sample standard deviation; None with one review.")
    low: int
    high: int
    values: list[int] = Field(description="By reviewer, in slot order.")


class SharedWeakness(ToolModel):
    point: str
    reviewers: list[int]


class AcceptProbability(ToolModel):
    reviewer: int
    model: str
    probability: float = Field(description="Calibrated P(accept) from this reviewer's overall score.")
    brier: float = Field(description="Brier score of the calibration on its held-out papers (lower is better).")
    n: int
    source: str


class MetaReview(ToolModel):
    reviews: int
    decisions: dict[str, int]
    scores: dict[str, ScoreSpread]
    disagreements: list[str]
    shared_weaknesses: list[SharedWeakness]
    audit_blocking: list[str] = Field(description="Blocking findings of the paper audit, if one was run.")
    accept_probability: list[AcceptProbability] = Field(description="Only reviewers with a calibration.")
    notes: list[str]


def _calibration_for(reviewer: str) -> CalibrationLike | None:
    try:
        module = importlib.import_module("research_mcp.tools.review.calibration")
    except ImportError:  # no calibrations in this install: every reviewer goes without a probability
        return None
    try:
        found: CalibrationLike | None = module.calibration_for(reviewer)
    except ResearchError as exc:  # a user's calibration file that does not parse: said in the log, not fatal
        logger.warning("no calibration for %s: %s", reviewer, exc)
        return None
    return found


def _disagreement(name: str, values: list[tuple[int, int]]) -> str | None:
    low, high = SCORES[name]
    scores = [v for _, v in values]
    if len(scores) < 2 or max(scores) - min(scores) < (3 if high - low >= 9 else 2):
        return None
    by = ", ".join(f"{v} (reviewer {slot})" for slot, v in values)
    return f"{name}: {by}"


_STOP = frozenset(
    "a an and are as at be but by can could does for from has have how in into is it its lack lacks may more most "
    "no not of on or paper should some than that the their there these this those to too very was were what when "
    "which while with without would".split()
)


def _words(text: str) -> frozenset[str]:
    """The content words of a point, lower-cased, a plural 's' dropped."""
    words = (w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9-]+", text))
    return frozenset(w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w
                     for w in words if w not in _STOP)  # fmt: skip


def _same_point(a: frozenset[str], b: frozenset[str]) -> bool:
    shared = len(a & b)
    return shared >= 2 and shared / min(len(a), len(b)) >= SAME_POINT


def _shared_weaknesses(forms: Sequence[Submitted]) -> list[SharedWeakness]:
    items = [(sub.slot, point, _words(point)) for sub in forms for point in sub.form.weaknesses if point.strip()]
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if items[i][0] != items[j][0] and items[i][2] and items[j][2] and _same_point(items[i][2], items[j][2]):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(items)):
        groups.setdefault(find(i), []).append(i)
    shared: list[SharedWeakness] = []
    for members in groups.values():
        slots = sorted({items[i][0] for i in members})
        if len(slots) >= 2:
            point = min((items[i][1] for i in members), key=len)
            shared.append(SharedWeakness(point=point, reviewers=slots))
    shared.sort(key=lambda s: (-len(s.reviewers), s.point))
    return shared


def meta_review(
    forms: Sequence[Submitted],
    audit_blocking: Sequence[str] = (),
    *,
    audit_run: bool = True,
    calibration_for: Callable[[str], CalibrationLike | None] = _calibration_for,
) -> MetaReview:
    """The meta-review of `forms` (at least one), in slot order."""
    forms = sorted(forms, key=lambda s: s.slot)
    scores: dict[str, ScoreSpread] = {}
    disagreements: list[str] = []
    for name in SCORES:
        values = [(sub.slot, int(getattr(sub.form, name))) for sub in forms]
        plain = [v for _, v in values]
        scores[name] = ScoreSpread(
            mean=round(statistics.fmean(plain), 3),
            sd=round(statistics.stdev(plain), 3) if len(plain) > 1 else None,
            low=min(plain),
            high=max(plain),
            values=plain,
        )
        found = _disagreement(name, values)
        if found is not None:
            disagreements.append(found)
    decisions = {"Accept": 0, "Reject": 0}
    for sub in forms:
        decisions[sub.form.decision] += 1
    if decisions["Accept"] and decisions["Reject"]:
        accept = [str(s.slot) for s in forms if s.form.decision == "Accept"]
        disagreements.insert(0, f"decision: reviewer(s) {', '.join(accept)} accept, the others reject")
    probabilities: list[AcceptProbability] = []
    notes: list[str] = []
    uncalibrated: list[str] = []
    for sub in forms:
        calibration = calibration_for(sub.model)
        if calibration is None:
            uncalibrated.append(f"{sub.slot} ({sub.model})")
            continue
        probabilities.append(
            AcceptProbability(
                reviewer=sub.slot,
                model=sub.model,
                probability=round(calibration.probability(sub.form.overall), 3),
                brier=round(calibration.brier, 4),
                n=calibration.n,
                source=calibration.source,
            )  # fmt: skip
        )
    if uncalibrated:
        notes.append(
            f"No calibration for reviewer(s) {', '.join(uncalibrated)}: their scores stand without an accept "
            "probability."
        )
    own = [str(s.slot) for s in forms if s.source == "client"]
    if own:
        notes.append(
            f"Review(s) {', '.join(own)} came from the author's own conversation (the client's model filled the "
            "form): they are not independent of the work they judge."
        )
    if not audit_run:
        notes.append("No audit was run on this version of the paper: its numbers and citations are unchecked.")
    return MetaReview(
        reviews=len(forms), decisions=decisions, scores=scores, disagreements=disagreements,
        shared_weaknesses=_shared_weaknesses(forms), audit_blocking=list(audit_blocking),
        accept_probability=probabilities, notes=notes,
    )  # fmt: skip
