"""The meta-review on known forms: spread, disagreements, shared weaknesses, audit findings, calibration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from research_mcp.tools.review.form import ReviewForm
from research_mcp.tools.review.meta import CalibrationLike, Submitted, meta_review


def form(overall: int, soundness: int, decision: str, weaknesses: list[str]) -> ReviewForm:
    data: dict[str, Any] = {
        "summary": "s", "strengths": [], "weaknesses": weaknesses, "questions": [], "limitations": [],
        "ethical_concerns": False, "originality": 2, "quality": 2, "clarity": 3, "significance": 2,
        "soundness": soundness, "presentation": 3, "contribution": 2, "overall": overall, "confidence": 4,
        "decision": decision,
    }  # fmt: skip
    return ReviewForm.model_validate(data)


FORMS = [
    Submitted(1, "gpt-x", "endpoint", form(3, 1, "Reject", ["Results come from a single random seed.",
                                                          "The related work misses adapters."])),
    Submitted(2, "gpt-x", "endpoint", form(7, 3, "Accept", ["Only one seed: the results may not hold.",
                                                          "Figures are hard to read."])),
    Submitted(3, "client", "client", form(4, 2, "Reject", ["No ablation of the sparsity mask."])),
]  # fmt: skip


@dataclass
class Linear:
    brier: float = 0.21
    n: int = 500
    source: str = "iclr 2022 bench"

    def probability(self, overall: float) -> float:
        return overall / 10


def calibrations(reviewer: str) -> CalibrationLike | None:
    return Linear() if reviewer == "gpt-x" else None


def test_scores_have_their_mean_and_spread() -> None:
    meta = meta_review(FORMS, calibration_for=calibrations)
    overall = meta.scores["overall"]
    assert (overall.mean, overall.low, overall.high, overall.values) == (4.667, 3, 7, [3, 7, 4])
    assert overall.sd == pytest.approx(2.082, abs=1e-3)
    assert meta.scores["clarity"].sd == 0.0 and meta.decisions == {"Accept": 1, "Reject": 2}


def test_disagreements_are_named_with_each_reviewers_score() -> None:
    meta = meta_review(FORMS, calibration_for=calibrations)
    assert meta.disagreements == [
        "decision: reviewer(s) 2 accept, the others reject",
        "soundness: 1 (reviewer 1), 3 (reviewer 2), 2 (reviewer 3)",
        "overall: 3 (reviewer 1), 7 (reviewer 2), 4 (reviewer 3)",
    ]
    close = [Submitted(s.slot, s.model, s.source, form(5, 2, "Reject", [])) for s in FORMS]
    assert meta_review(close, calibration_for=calibrations).disagreements == []


def test_a_weakness_named_by_two_reviewers_is_reported_once() -> None:
    meta = meta_review(FORMS, calibration_for=calibrations)
    # {result, seed} shared of five content words each: the same point, in its shorter wording
    assert [(w.point, w.reviewers) for w in meta.shared_weaknesses] == [
        ("Results come from a single random seed.", [1, 2])
    ]
    one = [Submitted(1, "m", "client", form(5, 2, "Reject", ["Only one seed.", "Only one seed, again."]))]
    assert meta_review(one, calibration_for=calibrations).shared_weaknesses == []  # one reviewer is no consensus


def test_a_probability_only_for_a_calibrated_reviewer_with_its_brier_score() -> None:
    meta = meta_review(FORMS, ["[blocking] untraced_number (paper/main.tex:3): 93.2"], calibration_for=calibrations)
    assert [(p.reviewer, p.probability, p.brier, p.n) for p in meta.accept_probability] == [
        (1, 0.3, 0.21, 500), (2, 0.7, 0.21, 500)
    ]  # fmt: skip
    assert meta.audit_blocking == ["[blocking] untraced_number (paper/main.tex:3): 93.2"]
    assert any("No calibration for reviewer(s) 3 (client)" in note for note in meta.notes)
    assert any("author's own conversation" in note and "3" in note for note in meta.notes)


def test_one_review_has_no_spread_and_no_audit_is_said() -> None:
    meta = meta_review(FORMS[:1], audit_run=False, calibration_for=lambda _: None)
    assert meta.scores["overall"].sd is None and meta.shared_weaknesses == []
    assert any("No audit was run" in note for note in meta.notes)
