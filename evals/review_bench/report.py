"""The bench's report: one Markdown file and one PNG table from the JSON result."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from evals.review_bench.stats import METRICS

SHORT = {
    "ba_decision": "BA decision",
    "ba_threshold_cv": "BA CV threshold",
    "auroc": "AUROC",
    "spearman": "Spearman",
    "mae": "MAE",
    "spearman_rejected": "Spearman (rejected)",
    "pairwise": "pairwise acc.",
    "brier": "Brier",
}


def _num(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _cell(entry: dict[str, Any], *, diff: bool = False) -> str:
    if diff:
        if "vs_floor" not in entry:
            return "—"
        entry = entry["vs_floor"]
        value, ci = entry["diff"], entry["ci"]
        text = _num(value, sign=True)
    else:
        value, ci = entry["value"], entry["ci"]
        text = _num(value)
    if value is None or ci is None:
        return text
    return f"{text} [{_num(ci[0], sign=diff)}, {_num(ci[1], sign=diff)}]"


def table_rows(result: dict[str, Any], *, diff: bool = False) -> list[list[str]]:
    """One list of cells per row: label, n, then each figure (or its difference from the floor)."""
    out: list[list[str]] = []
    for row in result["rows"]:
        label = row["label"] + (" (reference)" if row["kind"] in ("floor", "human") else "")
        cells = [_cell(row["figures"][m], diff=diff) for m in METRICS]
        if row["kind"] == "human" and not diff:
            cells[list(METRICS).index("mae")] += f" (pooled LOO {row['mae_pooled_loo']:.3f})"
        out.append([label, str(row["n"]), *cells])
    return out


def markdown(result: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    lines = [
        "# Review bench (ICLR 2022)",
        "",
        f"{result['n']} papers ({result['accepted']} accepted, {result['rejected']} rejected); generated "
        f"{result['generated']} in {result['seconds']} s; scikit-learn {result['versions']['scikit-learn']}, numpy "
        f"{result['versions']['numpy']}, scipy {result['versions']['scipy']}. 95% intervals: percentile bootstrap "
        f"over papers ({result['resamples']} resamples, seed 0). CV: 5-fold stratified, seed 0.",
        "",
        "## Leak check: raw vs cleaned text",
        "",
        "| baseline | raw BA | raw AUROC | cleaned BA | cleaned AUROC |",
        "|---|---|---|---|---|",
    ]
    names = {
        "a": "(a) 'anonymous authors' not in text ⇒ accept",
        "b": "(b) LR on log word count",
        "b2": "(b2) LR on log word count of the main body",
        "c": "(c) TF-IDF (1–2-grams, sublinear) + LR",
        "c2": "(c2) binary bag of 1–2-grams + LR",
    }
    leak = result["leak"]
    for key, name in names.items():
        cells = []
        for version in ("raw", "cleaned"):
            figures = leak[version][key]
            cells.append(_cell({"value": figures["ba"], "ci": figures["ba_ci"]}))
            auroc = figures.get("auroc")
            cells.append(_cell({"value": auroc, "ci": figures.get("auroc_ci")}) if auroc is not None else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Rule (a) on cleaned text: {leak['cleaned']['a']['ba']:.3f} (must be 0.500: passed). The cleaned-text word "
        "count and probes below are the floors a reviewer must beat.",
        "",
        "## Reviewers and floors",
        "",
        "Decision metrics use the human decision ('Accept*' = accept); Spearman, MAE and pairwise accuracy use the "
        "mean human score (for the human row: the mean of the other reviewers). The Brier score is that of the "
        "cross-validated logistic calibration P(accept | score). Floor rows score with the word count, or with the "
        "out-of-fold probability of a text probe.",
        "",
        "| reviewer | n | " + " | ".join(SHORT[m] for m in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(result)]
    lines += [
        "",
        "## Difference from word count (paired bootstrap)",
        "",
        "Each figure minus the same figure of the word count (raw text for the published runs and the human, the "
        "floor the row names otherwise), on the same resamples. A reviewer beats the floor where the interval "
        "lies above 0 (below 0 for MAE and Brier). MAE has no word-count counterpart.",
        "",
        "| reviewer | floor | " + " | ".join(SHORT[m] for m in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for row, cells in zip(result["rows"], table_rows(result, diff=True), strict=True):
        lines.append(f"| {cells[0]} | {row['floor']} | " + " | ".join(cells[2:]) + " |")
    lines += ["", "## Published runs: the figures PROVENANCE.md quotes", ""]
    lines += [
        "Rejected papers only for the last two columns: ρ(Overall, word count) and ρ(Overall, mean human) − "
        "ρ(word count, mean human), paired bootstrap.",
        "",
        "| run | best threshold (in-sample BA) | BA at ≥7 | accepts of rejected | ρ(Overall, word count) | "
        "ρ − ρ(word count) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if row["kind"] not in ("run", "user"):
            continue
        best = row["best_threshold"]
        accepts = row.get("accepts_of_rejected")
        lines.append(
            f"| {row['label']} | ≥{best['cut']:g}: {best['ba']:.3f} | {_num(row.get('ba_at_7'))} | "
            f"{'—' if accepts is None else f'{accepts:.0%}'} | {_num(row.get('spearman_with_floor_rejected'))} | "
            f"{_cell(row['figures']['spearman_rejected'], diff=True)} |"
        )
    lines += [
        "",
        "## Calibrations P(accept | Overall)",
        "",
        "Logistic fits of the human decision on Overall; Brier scores cross-validated (5-fold, seed 0). The published "
        "runs' parameters ship with the package (research_mcp/tools/review/calibrations.json).",
        "",
    ]
    lines += ["| reviewer | intercept | slope | Brier (CV) | Brier of the base rate | n |", "|---|---|---|---|---|---|"]
    for c in result["calibrations"]:
        lines.append(
            f"| {c['reviewer']} | {c['intercept']:.3f} | {c['slope']:.3f} | {c['brier']:.4f} | "
            f"{c['brier_base']:.4f} | {c['n']} |"
        )
    lines += [
        "",
        "The papers are from 2022 and may be in a language model's training data; the published runs were made on "
        "the raw (leaky) texts. Treat their figures as optimistic.",
        "",
    ]
    return "\n".join(lines)


def png(result: dict[str, Any], path: Path) -> None:
    """The reviewers-and-floors table as a PNG (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table_rows(result)
    cells = [
        [
            row[0].replace(" (reference)", "").replace("(score column 0) vs the mean of the others", "vs the others"),
            row[1],
            *(c.replace(" [", "\n[").replace(" (pooled", "\n(pooled") for c in row[2:]),
        ]
        for row in rows
    ]
    header = ["reviewer", "n", *(SHORT[m] for m in METRICS)]
    fig, ax = plt.subplots(figsize=(22, 0.75 * (len(cells) + 1) + 0.8))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    widths = [0.22, 0.03] + [0.094] * len(METRICS)
    for (r, c), cell in table.get_celld().items():
        cell.set_width(widths[c])
        cell.set_height(1.0 / (len(cells) + 2))
        if r == 0:
            cell.set_text_props(weight="bold")
        if c == 0:
            cell.set_text_props(ha="left")
        kind = result["rows"][r - 1]["kind"] if r else ""
        if kind in ("floor", "human"):
            cell.set_facecolor("#eeeeee")
    ax.set_title(
        f"Review bench, ICLR 2022 (n = {result['n']}): figures [95% bootstrap interval]; grey rows are references",
        fontsize=10,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
