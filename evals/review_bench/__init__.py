"""The review bench: how well a reviewer's filled forms track human reviews of 500 ICLR 2022 papers.

`python -m evals.review_bench` (see `__main__.py`) reads /work/shared/fixtures/reviews (or `--data`): the papers'
texts, their human scores and decisions, and six published LLM-reviewer runs. It

1. cleans every text with the package's anonymiser (`research_mcp.tools.review.anonymise`) and runs the leak check
   (`leak.py`): the identity rule must score exactly 0.5 on cleaned text, and the word count and two
   cross-validated text probes (TF-IDF and binary bag of words) say what the text alone still reaches: the floors;
2. computes, for each set of forms (the published runs, a user's `--forms`), one human against the others, and the
   floors: balanced accuracy of the decision and of a cross-validated threshold on Overall, AUROC of Overall,
   Spearman and MAE against the mean human score, Spearman among rejected papers only, pairwise ranking accuracy,
   and the Brier score of the calibrated P(accept), each with a bootstrap interval and a paired interval of its
   difference from the word count (`stats.py`, `bench.py`);
3. fits a logistic calibration of P(accept | Overall) per run (`calibrate.py`); `--ship-calibrations` writes them
   to the package, and `python -m evals.review_bench calibrate FORMS.csv --reviewer NAME` fits a user's own.

Results: `results/review_bench.json`, `.md` and `.png` (`report.py`). `driver.py` produces a forms CSV from a
reviewer the user runs.
"""
