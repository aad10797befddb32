"""`python -m evals.walkthrough --small` runs a researcher's whole session against a spawned server: every step
answers as expected (the mistakes as errors), every answer's text holds its whole record, docker is not skipped,
and the table ends in its totals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = {
    "write_file", "run_experiment", "read_metrics", "compare_runs", "plot_metrics", "results_table", "new_paper",
    "compile_paper", "paper_text", "run_status", "read_file", "run_logs",
}  # fmt: skip


@pytest.mark.bwrap
@pytest.mark.docker
@pytest.mark.latex
def test_the_small_walkthrough_completes_every_step_and_prints_its_totals(tmp_path: Path) -> None:
    out = tmp_path / "walkthrough.json"
    done = subprocess.run(
        [sys.executable, "-m", "evals.walkthrough", "--small", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    steps = result["steps"]
    assert result["skipped"] == {} and "skipped" not in done.stdout
    assert (
        all(step["as_expected"] for step in steps) and f"steps: {len(steps)}, as expected: {len(steps)}" in done.stdout
    )
    assert all(step["text_has_record"] for step in steps)
    assert "answers whose text lacks part of the record: 0" in done.stdout
    assert [step["step"] for step in steps if step["is_error"]] == [
        "mistake: a wrong run id", "mistake: a wrong metric name", "mistake: a missing file"
    ]  # fmt: skip
    assert {step["tool"] for step in steps} == TOOLS
    assert sum(step["tool"] == "run_experiment" for step in steps) == 2 * 2 + 1  # 2 configs x 2 seeds, 1 on docker
    assert sum(step["tool"] == "plot_metrics" and step["image_chars"] > 0 for step in steps) == 2
    assert next(step for step in steps if step["tool"] == "compile_paper")["image_chars"] > 0

    totals = result["totals"]
    assert totals == {key: sum(row[key] for row in result["per_tool"].values()) for key in totals}
    assert totals["calls"] == len(steps) and totals["text"] > 0 and totals["structured"] > 0
    total_line = next(line for line in done.stdout.splitlines() if line.strip().startswith("TOTAL"))
    assert total_line.split()[1:5] == [str(totals["calls"]), f"{totals['text']:,}", f"{totals['structured']:,}",
                                       f"{totals['image']:,}"]  # fmt: skip
