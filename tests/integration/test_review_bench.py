"""The review bench on the ICLR 2022 fixtures: its figures for the published runs match PROVENANCE.md, the leak
check passes, the shipped calibrations are the bench's, and a user's forms can be scored and calibrated."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evals.review_bench.bench import _forms_row, _wordcount_row, evaluate, row_by_key, run_bench, value
from evals.review_bench.calibrate import calibrate_forms, fit_user_calibration
from evals.review_bench.data import load_bench, published_runs
from evals.review_bench.report import markdown, png
from evals.review_bench.stats import figures, prepare, replicate
from research_mcp.tools.review.calibration import SHIPPED_PATH, calibration_for, load_calibrations
from tests.conftest import fixtures_dir

CLAUDE = "claude-3-5-sonnet-20240620_temp_0_1_reflect_5_ensemble_5"
FEWSHOT = "gpt-4o-2024-05-13_temp_0_1_fewshot_1_reflect_5_ensemble_5"
SINGLE = "gpt-4o-2024-05-13_temp_0_1"
ENSEMBLE = "gpt-4o-2024-05-13_temp_0_1_reflect_5_ensemble_5"
REFLECT = "gpt-4o-2024-05-13_temp_0_1_reflect_5"
MINI = "gpt-4o-mini-2024-07-18_temp_0_1_fewshot_1_reflect_5_ensemble_5"

# PROVENANCE.md, "LLM runs recomputed": BA of Decision, AUROC of Overall, best threshold (cut, BA), MAE vs mean
# human, AUROC minus AUROC(raw word count); "Rejected papers only": rho vs mean human, rho minus rho(word count)
FIELDS = ("ba", "auroc", "best", "mae", "d_auroc", "rho", "d_rho")
PROVENANCE: dict[str, dict[str, Any]] = {
    FEWSHOT: dict(zip(FIELDS, (0.602, 0.691, (6, 0.651), 0.996, 0.002, 0.273, -0.046), strict=True)),
    ENSEMBLE: dict(zip(FIELDS, (0.606, 0.665, (6, 0.629), 1.072, -0.025, 0.197, -0.122), strict=True)),
    SINGLE: dict(zip(FIELDS, (0.585, 0.601, (6, 0.578), 1.427, -0.089, 0.199, -0.120), strict=True)),
    CLAUDE: dict(zip(FIELDS, (0.524, 0.621, (8, 0.594), 1.774, -0.069, 0.276, -0.043), strict=True)),
    REFLECT: dict(zip(FIELDS, (0.600, 0.658, (4, 0.612), 1.344, -0.031, 0.204, -0.115), strict=True)),
    MINI: dict(zip(FIELDS, (0.525, 0.624, (6, 0.590), 1.091, -0.066, 0.281, -0.038), strict=True)),
}


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return run_bench(fixtures_dir("reviews"), reps=200)


@pytest.mark.parametrize("key", list(PROVENANCE))
def test_published_runs_match_provenance(result: dict[str, Any], key: str) -> None:
    want, row = PROVENANCE[key], row_by_key(result, key)
    assert row["n"] == 500
    assert round(value(row, "ba_decision"), 3) == want["ba"]
    assert round(value(row, "auroc"), 3) == want["auroc"]
    assert (row["best_threshold"]["cut"], round(row["best_threshold"]["ba"], 3)) == want["best"]
    assert round(value(row, "mae"), 3) == want["mae"]
    assert round(row["figures"]["auroc"]["vs_floor"]["diff"], 3) == want["d_auroc"]
    assert round(value(row, "spearman_rejected"), 3) == want["rho"]
    assert round(row["figures"]["spearman_rejected"]["vs_floor"]["diff"], 3) == want["d_rho"]
    lo, hi = row["figures"]["auroc"]["ci"]
    assert lo < value(row, "auroc") < hi


def test_provenance_table_rounding_and_claude_details(result: dict[str, Any]) -> None:
    # the first table of PROVENANCE.md gives two digits for the threshold and MAE
    assert [round(value(row_by_key(result, k), "mae"), 2) for k in (FEWSHOT, ENSEMBLE, SINGLE, CLAUDE)] == [
        1.00, 1.07, 1.43, 1.77,
    ]  # fmt: skip
    claude = row_by_key(result, CLAUDE)
    assert round(claude["ba_at_7"], 3) == 0.549 and round(claude["accepts_of_rejected"], 2) == 0.95


def test_human_and_word_count_references(result: dict[str, Any]) -> None:
    human = row_by_key(result, "human")
    assert round(value(human, "auroc"), 3) == 0.813
    assert round(human["mae_pooled_loo"], 3) == 1.218 and round(value(human, "mae"), 3) == 1.203
    assert round(value(human, "spearman_rejected"), 3) == 0.236
    raw = row_by_key(result, "words_raw")
    assert round(value(raw, "auroc"), 3) == 0.689 and round(value(raw, "spearman_rejected"), 3) == 0.319
    assert round(value(raw, "ba_decision"), 3) == 0.651
    cleaned = row_by_key(result, "words_cleaned")
    assert abs(value(cleaned, "auroc") - 0.685) < 0.005 and abs(value(cleaned, "spearman_rejected") - 0.321) < 0.005


def test_leak_check(result: dict[str, Any]) -> None:
    leak = result["leak"]
    assert round(leak["raw"]["a"]["ba"], 3) == 0.997 and leak["cleaned"]["a"]["ba"] == 0.5
    assert (round(leak["raw"]["b"]["ba"], 3), round(leak["raw"]["b"]["auroc"], 3)) == (0.651, 0.683)
    # the binary probe finds the raw leak; on cleaned text every probe falls to the floors PROVENANCE measured
    assert leak["raw"]["c2"]["auroc"] > 0.95
    for probe in ("b", "c", "c2"):
        assert 0.55 < leak["cleaned"][probe]["auroc"] < 0.75, probe
        assert leak["cleaned"][probe]["auroc"] < leak["raw"][probe]["auroc"] + 0.01, probe


def test_shipped_calibrations_are_the_benchs(result: dict[str, Any]) -> None:
    shipped = {c.reviewer: c for c in load_calibrations(SHIPPED_PATH)}
    assert set(shipped) == set(PROVENANCE)
    for fitted in result["calibrations"]:
        mine = shipped[fitted["reviewer"]]
        for name in ("intercept", "slope", "brier", "brier_base"):
            assert math.isclose(getattr(mine, name), fitted[name], rel_tol=1e-6), (fitted["reviewer"], name)
        row = row_by_key(result, fitted["reviewer"])
        assert math.isclose(value(row, "brier"), fitted["brier"], rel_tol=1e-9)  # the table's Brier is the CV one


def test_report_files(result: dict[str, Any], tmp_path: Path) -> None:
    text = markdown(result)
    assert "| one human (score column 0) vs the mean of the others (reference) | 500 |" in text
    assert text.count("(reference)") >= 5 and "must be 0.500: passed" in text
    png(result, tmp_path / "table.png")
    assert (tmp_path / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vectorised_resamples_equal_sklearn_and_scipy() -> None:
    folder = fixtures_dir("reviews")
    bench = load_bench(folder, texts=False)
    y = np.asarray(bench.accept, dtype=bool)
    row = prepare(_forms_row(published_runs(folder, bench)[2], bench, "run"), y)
    boot = np.random.default_rng(1).integers(0, bench.n, size=(5, bench.n))
    fast = replicate(row, y, np.vstack([np.arange(bench.n), boot]))
    for i, idx in enumerate([None, *boot]):
        for name, slow in figures(row, y, idx).items():
            assert math.isclose(fast[name][i], slow, rel_tol=1e-9, abs_tol=1e-12), (name, i)


def test_user_forms_on_part_of_the_bench(tmp_path: Path) -> None:
    folder = fixtures_dir("reviews")
    source = folder / "llm_reviews" / f"{SINGLE}_pages_all.csv"
    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    forms_csv = tmp_path / "my_forms.csv"
    with forms_csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["paper_id", "Overall", "Decision"])
        writer.writeheader()
        for row in rows[:200]:
            writer.writerow({"paper_id": row["paper_id"], "Overall": row["Overall"], "Decision": row["Decision"]})
        writer.writerow({"paper_id": "not-a-bench-paper", "Overall": "9", "Decision": "Accept"})
    calibration, path = fit_user_calibration(forms_csv, "my-reviewer", model="my-model-2025-01-01", data=folder,
                                             data_dir=tmp_path / "user")  # fmt: skip
    assert path == tmp_path / "user" / "review_calibrations.json" and calibration.n == 200
    found = calibration_for("my-model", data_dir=tmp_path / "user")
    assert found is not None and found == calibration and 0 < found.brier < found.brier_base + 0.01
    assert found.probability(8) > found.probability(3)

    bench = load_bench(folder, texts=False)
    bench.raw = [" ".join(["w"] * (1000 + i)) for i in range(bench.n)]  # a stand-in length: only the floor uses it
    y = np.asarray(bench.accept, dtype=bool)
    from evals.review_bench.data import load_forms

    user = load_forms(forms_csv, bench)
    floor = _wordcount_row("words", "words", bench.raw, bench, y)
    scored = evaluate(_forms_row(user, bench, "user"), floor, y, reps=100)
    assert scored["n"] == 200 and scored["figures"]["auroc"]["vs_floor"]["ci"] is not None
    same = calibrate_forms(user, bench)
    assert math.isclose(same.brier, calibration.brier)


def test_forms_without_overall_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("paper_id,Score\nx,5\n")
    from evals.review_bench.data import load_forms

    with pytest.raises(ValueError, match="paper_id and Overall"):
        load_forms(bad, load_bench(fixtures_dir("reviews"), texts=False))


def test_length_confound_among_rejected(result: dict[str, Any]) -> None:
    # PROVENANCE.md: rho(Overall, word count) among rejected papers. Three of its six values sit one unit off in the
    # third digit (0.2575 -> 0.257, 0.1155 -> 0.115, 0.0955 -> 0.096): PROVENANCE's word count for this column must
    # differ slightly from whitespace tokens, which reproduce every other word-count figure; hence 0.001 here.
    want = {CLAUDE: 0.257, FEWSHOT: 0.322, SINGLE: 0.115, ENSEMBLE: 0.234, REFLECT: 0.096, MINI: 0.207}
    for key, rho in want.items():
        assert abs(row_by_key(result, key)["spearman_with_floor_rejected"] - rho) <= 0.001, key
