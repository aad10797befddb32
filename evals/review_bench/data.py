"""The bench's inputs: papers, human scores and decisions, texts (raw and anonymised), and sets of filled forms."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from research_mcp.tools.review.anonymise import anonymise

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "fixtures" / "reviews"
"""Where the ICLR 2022 data live by default (`--data` says otherwise); PROVENANCE.md there says where from."""

_RUN_NAME = re.compile(
    r"^(?P<model>.+?)_temp_(?P<temp>[\d_]+?)(?:_fewshot_(?P<fewshot>\d+))?(?:_reflect_(?P<reflect>\d+))?"
    r"(?:_ensemble_(?P<ensemble>\d+))?(?:_pages_(?P<pages>\w+))?$"
)
_REFERENCES = re.compile(r"^[\s#*_]*(?:\d+\s+)?(?:references|bibliography)[\s*_.]*$", re.IGNORECASE | re.MULTILINE)


@dataclass
class Bench:
    """The papers, aligned: index i is the same paper in every array."""

    ids: list[str]
    accept: list[bool]
    scores: list[list[float]]
    raw: list[str] = field(default_factory=list[str])
    clean: list[str] = field(default_factory=list[str])

    @property
    def mean_human(self) -> list[float]:
        return [sum(s) / len(s) for s in self.scores]

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass
class Forms:
    """One reviewer's filled forms over the bench papers (nan where a paper has no form or no value)."""

    key: str
    label: str
    model: str
    overall: list[float]
    decision: list[float]
    passes: int = 1
    fewshot: int = 0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict[str, Any])


def load_bench(folder: Path = DEFAULT_DATA, *, texts: bool = True) -> Bench:
    """The 500 papers of `ratings_subset.tsv`, their human scores and decisions, and (if `texts`) their texts."""
    with (folder / "ratings_subset.tsv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    ids = [row["paper_id"] for row in rows]
    accept = [row["decision"].startswith("Accept") for row in rows]
    scores = [[float(row[str(i)]) for i in range(7) if row.get(str(i), "").strip()] for row in rows]
    bench = Bench(ids=ids, accept=accept, scores=scores)
    if texts:
        bench.raw = [
            (folder / "iclr_parsed" / f"{pid}.txt").read_text(encoding="utf-8", errors="replace") for pid in ids
        ]
        bench.clean = [anonymise(text) for text in bench.raw]
    return bench


def words(text: str) -> int:
    """Word count: whitespace-separated tokens."""
    return len(text.split())


def main_body(text: str) -> str:
    """The text before the first References heading (all of it when there is none)."""
    found = _REFERENCES.search(text)
    return text[: found.start()] if found else text


def run_label(key: str) -> tuple[str, str, int, int]:
    """(label, model, passes, fewshot) of a run named like the published CSVs, e.g.
    `gpt-4o-2024-05-13_temp_0_1_fewshot_1_reflect_5_ensemble_5_pages_all`."""
    found = _RUN_NAME.match(key)
    if found is None:
        return key, key, 1, 0
    model = found["model"]
    reflect = int(found["reflect"] or 0)
    ensemble = int(found["ensemble"] or 1)
    fewshot = int(found["fewshot"] or 0)
    short = re.sub(r"-\d{4}-\d{2}-\d{2}$|-\d{8}$", "", model).replace("claude-3-5-", "claude-3.5-")
    parts = [short]
    if fewshot:
        parts.append(f"{fewshot}-shot")
    if reflect:
        parts.append(f"reflect {reflect}")
    if ensemble > 1:
        parts.append(f"ensemble {ensemble}")
    if not reflect and ensemble == 1:
        parts.append("single pass")
    return ", ".join(parts), model, max(1, reflect) * ensemble, fewshot


def _number(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _decision(value: str | None) -> float:
    text = (value or "").strip().lower()
    return 1.0 if text.startswith("accept") else 0.0 if text.startswith("reject") else math.nan


def load_forms(path: Path, bench: Bench, *, key: str | None = None) -> Forms:
    """The forms of a CSV (columns `paper_id`, `Overall`, optionally `Decision`) aligned to the bench papers.

    Papers the CSV does not cover get nan; several rows for one paper are averaged (Overall) and majority-voted
    (Decision, ties read as accept)."""
    key = key or path.stem
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = {name.strip().lower(): name for name in reader.fieldnames or []}
        if "paper_id" not in fields or "overall" not in fields:
            raise ValueError(f"{path} needs the columns paper_id and Overall; it has {sorted(fields.values())}.")
        overall: dict[str, list[float]] = {}
        decision: dict[str, list[float]] = {}
        for row in reader:
            pid = row[fields["paper_id"]].strip()
            score = _number(row[fields["overall"]])
            if not math.isnan(score):
                overall.setdefault(pid, []).append(score)
            if "decision" in fields:
                said = _decision(row[fields["decision"]])
                if not math.isnan(said):
                    decision.setdefault(pid, []).append(said)
    label, model, passes, fewshot = run_label(key)
    return Forms(
        key=key,
        label=label,
        model=model,
        overall=[sum(overall[p]) / len(overall[p]) if p in overall else math.nan for p in bench.ids],
        decision=[
            (1.0 if 2 * sum(decision[p]) >= len(decision[p]) else 0.0) if p in decision else math.nan for p in bench.ids
        ],
        passes=passes,
        fewshot=fewshot,
        source=str(path.name),
    )


def published_runs(folder: Path, bench: Bench) -> list[Forms]:
    """The six published LLM-reviewer runs, in file-name order."""
    return [
        load_forms(path, bench, key=path.stem.removesuffix("_pages_all"))
        for path in sorted((folder / "llm_reviews").glob("*.csv"))
    ]
