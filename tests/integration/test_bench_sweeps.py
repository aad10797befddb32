"""`python -m evals.bench --sweeps` with tiny counts: a sweep drained against raw bwrap and one run_sweep against
separate run_experiment calls, every run succeeded, positive times, and no supervisor or launcher left."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_bench import _launchers_of

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.bwrap
def test_the_sweeps_section_drains_a_sweep_against_raw_bwrap_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sweeps.json"
    argv = ["--sweeps", "--sweep-runs", "6", "--sweep-rounds", "2", "--out", str(out)]
    with subprocess.Popen(
        [sys.executable, "-m", "evals.bench", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as bench:
        stdout, stderr = bench.communicate(timeout=240)
    assert bench.returncode == 0, stderr
    assert "target <= 2.0x" in stdout and "target <= 0.5x" in stdout and "left behind: NONE" in stdout

    section = json.loads(out.read_text(encoding="utf-8"))["sweeps"]
    assert section["drain"]["counts"] == [{"succeeded": 6}, {"succeeded": 6}]  # each round's sweep, every run
    for entry in (section["drain"]["ours"], section["drain"]["raw"], *section["submit"]["domain"].values()):
        if isinstance(entry, dict):
            assert entry["n"] == 2 and 0 < entry["min_ms"] <= entry["p50_ms"]
    for key in ("run_sweep", "run_experiment_calls"):
        assert section["submit"][key]["n"] == 2 and section["submit"][key]["min_ms"] > 0
    assert section["drain"]["ratio"] > 0 and section["submit"]["ratio"] > 0 and section["supervisors_killed"] == []
    deadline = time.monotonic() + 5
    while _launchers_of(bench.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _launchers_of(bench.pid) == []
