"""The review form: every bad field named with its range, The AI Scientist's spelling read, JSON found in prose."""

from __future__ import annotations

import csv
from typing import Any

import pytest

from research_mcp.errors import BadInputError
from research_mcp.tools.review.form import CSV_COLUMNS, SCORES, check_form, csv_row, form_from_text, form_schema
from tests.conftest import fixtures_dir

GOOD: dict[str, Any] = {
    "summary": "A method.", "strengths": ["clear"], "weaknesses": ["one seed"], "questions": ["why?"],
    "limitations": ["small data"], "ethical_concerns": False, "originality": 3, "quality": 2, "clarity": 4,
    "significance": 1, "soundness": 2, "presentation": 3, "contribution": 2, "overall": 4, "confidence": 3,
    "decision": "Reject",
}  # fmt: skip


def problems(data: object) -> str:
    with pytest.raises(BadInputError) as caught:
        check_form(data)
    return str(caught.value)


def test_a_good_form_passes_unchanged() -> None:
    assert check_form(GOOD).model_dump() == GOOD


@pytest.mark.parametrize(("field", "value"), [(f, bad) for f in SCORES for bad in (0, SCORES[f][1] + 1, 2.5, "x")])
def test_every_score_out_of_range_is_named_with_its_range(field: str, value: object) -> None:
    low, high = SCORES[field]
    assert f"{field} must be a whole number from {low} to {high}" in problems({**GOOD, field: value})


def test_all_problems_at_once() -> None:
    data = {k: v for k, v in GOOD.items() if k not in ("summary", "confidence")}
    message = problems({**data, "overall": 11, "decision": "Maybe", "ethical_concerns": "perhaps", "mood": "ok"})
    assert "missing summary, confidence" in message
    assert "unknown field(s) mood" in message
    assert "overall must be a whole number from 1 to 10" in message
    assert "decision must be 'Accept' or 'Reject'" in message
    assert "ethical_concerns must be true or false" in message
    assert problems([1, 2]).startswith("The form must be a JSON object")
    assert "weaknesses must be a list of strings" in problems({**GOOD, "weaknesses": [{"a": 1}]})


def test_the_ai_scientist_spelling_and_loose_values_are_read() -> None:
    data = {("Ethical Concerns" if k == "ethical_concerns" else k.capitalize()): v for k, v in GOOD.items()}
    data.update({"Overall": "4", "Soundness": 2.0, "Decision": "reject", "Questions": "Why one seed?"})
    found = check_form(data)
    assert (found.overall, found.soundness, found.decision, found.questions) == (4, 2, "Reject", ["Why one seed?"])


def test_the_json_is_found_in_a_models_answer() -> None:
    assert form_from_text('Thoughts first.\n```json\n{"a": 1}\n```\nDone.') == {"a": 1}
    assert form_from_text('REVIEW JSON: {"a": {"b": 2}} end') == {"a": {"b": 2}}
    with pytest.raises(BadInputError, match="no JSON object"):
        form_from_text("I liked it.")


def test_the_schema_names_every_field_with_its_bounds() -> None:
    schema = form_schema()
    assert set(schema["required"]) == set(GOOD)
    assert schema["properties"]["overall"]["maximum"] == 10 and schema["properties"]["confidence"]["minimum"] == 1


def test_a_csv_row_has_the_columns_of_the_bench_reviews() -> None:
    folder = fixtures_dir("reviews") / "llm_reviews"
    path = next(iter(sorted(folder.glob("*.csv"))))
    with path.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == CSV_COLUMNS
    row = csv_row("abc", check_form(GOOD))
    assert tuple(row) == CSV_COLUMNS
    assert row["Weaknesses"] == "['one seed']" and row["Overall"] == 4 and row["Ethical Concerns"] is False
