"""The audit's answer: findings (kind, code, severity, file:line, evidence, fix), traced numbers, counts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from research_mcp.model import ToolModel

__all__ = ["CODES", "AuditResult", "Finding", "FindingKind", "Severity", "TracedNumber"]

FindingKind = Literal["numbers", "citations", "structure", "claims", "hygiene"]
Severity = Literal["blocking", "warning", "info"]
CODES: dict[FindingKind, tuple[str, ...]] = {
    "numbers": ("untraced_number",),
    "citations": ("missing_entry", "unverified_citation", "citation_not_checked"),
    "structure": ("undefined_ref", "undefined_cite", "duplicate_label", "missing_figure", "unreferenced_float"),
    "claims": ("untested_claim", "one_seed_claim"),
    "hygiene": ("no_limitations", "page_limit", "placeholder_text", "placeholder_code"),
}
"""Every finding code, by kind (stable: evaluations count recall and precision per code)."""


class Finding(ToolModel):
    kind: FindingKind
    code: str
    severity: Severity
    file: str | None = Field(description="Workspace-relative file.")
    line: int | None = Field(description="1-based line.")
    evidence: str
    fix: str


class TracedNumber(ToolModel):
    text: str = Field(description="As written.")
    file: str
    line: int
    how: Literal["provenance", "metric", "comparison", "config"]
    runs: list[str] = Field(description="The runs (or paths) it traces to; at most 20.")
    files: list[str] = Field(description="The files it was read from; at most 20.")
    weak: bool = Field(description="Matched by value at a precision where chance matches are common.")
    what: str = Field(description="The recorded value it matches.")


class AuditResult(ToolModel):
    audit_id: str = Field(description="Kept in the state store under this id.")
    main: str
    paper_hash: str
    counts: dict[str, int] = Field(description="Findings per kind.")
    numbers: int = Field(description="Result numbers in the text and tables.")
    traced: int
    untraced: int
    weak: int = Field(description="Traced only by a value match likely by chance.")
    chance_trace_rate: dict[str, float] = Field(
        description="Per precision shown: how often a random number of it would trace by value (the worst decade)."
    )
    citations_checked: int
    citations_verified: int
    findings: list[Finding] = Field(description="This page's findings, blocking first.")
    traced_numbers: list[TracedNumber] = Field(description="This page's traced numbers, after every finding.")
    total: int = Field(description="Findings plus traced numbers in all; offset counts through both.")
    next_offset: int | None = Field(default=None, description="Pass as `offset` for the next page.")
    notes: list[str] = Field(default_factory=list[str])
