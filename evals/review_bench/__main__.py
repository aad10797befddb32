"""`python -m evals.review_bench`: run the bench, write results/review_bench.{json,md,png}.

    python -m evals.review_bench [--data DIR] [--forms FORMS.csv ...] [--resamples N] [--ship-calibrations]
    python -m evals.review_bench calibrate FORMS.csv --reviewer NAME [--model MODEL] [--data DIR] [--data-dir DIR]

`--forms` adds a user's forms (a CSV like llm_reviews/*.csv: paper_id, Overall, Decision) as rows compared with the
cleaned-text word count. `--ship-calibrations` rewrites the package's calibrations.json from the published runs.
`calibrate` fits one calibration for a forms CSV and adds it to the user's calibration file, which
`research_mcp.tools.review.calibration.calibration_for` reads before the shipped one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evals.review_bench.bench import run_bench
from evals.review_bench.calibrate import fit_user_calibration, write_calibrations
from evals.review_bench.data import DEFAULT_DATA, HERE
from evals.review_bench.report import markdown, png
from evals.review_bench.stats import RESAMPLES
from research_mcp.tools.review.calibration import SHIPPED_PATH, Calibration

RESULTS = HERE / "results"


def _calibrate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.review_bench calibrate", description=__doc__)
    parser.add_argument("forms", type=Path, help="CSV of filled forms: paper_id, Overall")
    parser.add_argument("--reviewer", required=True, help="the key review_paper knows the reviewer by")
    parser.add_argument("--model", help="the model name to match (default: the reviewer key)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the bench data folder")
    parser.add_argument("--data-dir", type=Path, help="the user data folder (default: research-mcp's)")
    args = parser.parse_args(argv)
    calibration, path = fit_user_calibration(
        args.forms, args.reviewer, model=args.model, data=args.data, data_dir=args.data_dir
    )
    print(f"{path}: {calibration.reviewer} n={calibration.n} Brier (CV) {calibration.brier:.4f} "
          f"(base rate {calibration.brier_base:.4f}); P(accept | 6) = {calibration.probability(6):.2f}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["calibrate"]:
        return _calibrate(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m evals.review_bench", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the bench data folder")
    parser.add_argument("--forms", type=Path, nargs="*", default=[], help="CSVs of a user's filled forms")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the result files")
    parser.add_argument("--ship-calibrations", action="store_true", help=f"rewrite {SHIPPED_PATH.name}")
    args = parser.parse_args(argv)
    result = run_bench(args.data, forms=args.forms, reps=args.resamples)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "review_bench.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "review_bench.md").write_text(markdown(result), encoding="utf-8")
    png(result, args.out / "review_bench.png")
    if args.ship_calibrations:
        shipped = [Calibration.model_validate(c) for c in result["calibrations"] if c["reviewer"] in _run_keys(result)]
        write_calibrations(SHIPPED_PATH, shipped)
    print(markdown(result))
    print(f"wrote {args.out}/review_bench.{{json,md,png}} in {result['seconds']} s")
    return 0


def _run_keys(result: dict[str, object]) -> set[str]:
    rows = result["rows"]
    assert isinstance(rows, list)
    return {str(row["key"]) for row in rows if isinstance(row, dict) and row.get("kind") == "run"}  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType, reportUnknownVariableType]


if __name__ == "__main__":
    sys.exit(main())
