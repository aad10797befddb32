"""The review form: the NeurIPS form as The AI Scientist uses it, validated with messages that name each field.

A form comes from a model as JSON, under snake_case names (`overall`) or The AI Scientist's (`Overall`,
`Ethical Concerns`); `check_form` reads either and lists every problem at once, each naming the field and its
range, so one corrected submission is enough. `form_from_text` finds the JSON object in a model's answer.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, cast

from pydantic import Field, ValidationError

from research_mcp.errors import BadInputError
from research_mcp.model import ToolModel

__all__ = ["CSV_COLUMNS", "SCORES", "ReviewForm", "check_form", "csv_row", "form_from_text", "form_schema"]

SCORES: dict[str, tuple[int, int]] = {
    "originality": (1, 4), "quality": (1, 4), "clarity": (1, 4), "significance": (1, 4),
    "soundness": (1, 4), "presentation": (1, 4), "contribution": (1, 4),
    "overall": (1, 10), "confidence": (1, 5),
}  # fmt: skip
"""Each numeric field and its inclusive range."""

_LISTS = ("strengths", "weaknesses", "questions", "limitations")


class ReviewForm(ToolModel):
    """One reviewer's filled form."""

    summary: str = Field(min_length=1, description="What the paper claims and does, in the reviewer's words.")
    strengths: list[str] = Field(description="One point per item.")
    weaknesses: list[str] = Field(description="One point per item; the most serious first.")
    questions: list[str] = Field(description="Questions to the authors.")
    limitations: list[str] = Field(description="Limitations and societal impact the paper misses or states.")
    ethical_concerns: bool = Field(description="Whether the paper raises ethical concerns.")
    originality: int = Field(ge=1, le=4, description="1 low .. 4 very high.")
    quality: int = Field(ge=1, le=4, description="1 low .. 4 very high.")
    clarity: int = Field(ge=1, le=4, description="1 low .. 4 very high.")
    significance: int = Field(ge=1, le=4, description="1 low .. 4 very high.")
    soundness: int = Field(ge=1, le=4, description="1 poor .. 4 excellent.")
    presentation: int = Field(ge=1, le=4, description="1 poor .. 4 excellent.")
    contribution: int = Field(ge=1, le=4, description="1 poor .. 4 excellent.")
    overall: int = Field(ge=1, le=10, description="1 very strong reject .. 6 weak accept .. 10 award quality.")
    confidence: int = Field(ge=1, le=5, description="1 educated guess .. 5 certain.")
    decision: Literal["Accept", "Reject"]


def form_schema() -> dict[str, Any]:
    """The form's JSON schema, as a model fills it."""
    return ReviewForm.model_json_schema()


def _key(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip()).lower()


def _normalised(data: dict[str, Any]) -> dict[str, Any]:
    """The form under snake_case names; a list written as one string becomes a one-item list; a decision in any
    case ('accept') is capitalised; a score written as '3' or 3.0 is an int."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        key = _key(str(name))
        if key in _LISTS and isinstance(value, str):
            value = [value] if value.strip() else []
        if key == "decision" and isinstance(value, str):
            value = value.strip().capitalize()
        if key in SCORES and isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
            value = int(value)
        if key in SCORES and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[key] = value
    return out


def _problem(field: str, err_type: str, msg: str) -> str:
    if field in SCORES:
        low, high = SCORES[field]
        return f"{field} must be a whole number from {low} to {high}"
    if field == "decision":
        return "decision must be 'Accept' or 'Reject'"
    if field == "ethical_concerns":
        return "ethical_concerns must be true or false"
    if field in _LISTS:
        return f"{field} must be a list of strings (one point per item)"
    if field == "summary":
        return "summary must be a non-empty string"
    return f"{field}: {msg}"


def check_form(data: object) -> ReviewForm:
    """The form, or a `BadInputError` listing every field that is missing, unknown or out of range."""
    if not isinstance(data, dict):
        raise BadInputError("The form must be a JSON object with the fields of form_schema (summary, ..., decision).")
    fields = _normalised(dict(data))  # pyright: ignore[reportUnknownArgumentType]
    problems: list[str] = []
    missing = [name for name in ReviewForm.model_fields if name not in fields]
    if missing:
        problems.append("missing " + ", ".join(missing))
    unknown = sorted(set(fields) - set(ReviewForm.model_fields))
    if unknown:
        problems.append("unknown field(s) " + ", ".join(unknown))
    try:
        form = ReviewForm.model_validate({k: v for k, v in fields.items() if k in ReviewForm.model_fields})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "form"
            if err["type"] == "missing":
                continue
            text = _problem(field, err["type"], err["msg"])
            if text not in problems:
                problems.append(text)
        form = None
    if problems or form is None:
        raise BadInputError(f"The form is not valid: {'; '.join(problems)}. Fix these fields and submit it again.")
    return form


_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)


def form_from_text(text: str) -> dict[str, Any]:
    """The JSON object a model wrote (in a ```json fence, else the outermost braces); `BadInputError` if none."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        candidates.append(text[start : end + 1])
    for candidate in reversed(candidates):
        try:
            found = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(found, dict):
            return found  # pyright: ignore[reportUnknownVariableType]
    raise BadInputError("The answer holds no JSON object: write the filled form as one JSON object.")


CSV_COLUMNS = (
    "paper_id", "Summary", "Questions", "Limitations", "Ethical Concerns", "Soundness", "Presentation",
    "Contribution", "Overall", "Confidence", "Strengths", "Weaknesses", "Originality", "Quality", "Clarity",
    "Significance", "Decision",
)  # fmt: skip
"""The columns of The AI Scientist's review CSVs, in their order."""


def csv_row(paper_id: str, form: ReviewForm) -> dict[str, Any]:
    """A form as one row of those CSVs: lists written as Python literals, as the originals are."""
    named = {_key(column): column for column in CSV_COLUMNS[1:]}
    row: dict[str, Any] = {"paper_id": paper_id}
    for key, column in named.items():
        value: object = getattr(form, key)
        row[column] = repr(cast(list[str], value)) if isinstance(value, list) else value
    return row
