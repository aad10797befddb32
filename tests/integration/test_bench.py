"""`python -m evals.bench` runs end to end with tiny counts: three sections of positive numbers, the listing
within its targets, no server left;
`--sandbox` times runs on both backends against raw docker and bwrap and leaves no run, supervisor or launcher;
`evals.bench.audit` times the audit of a 10-page paper of 50 runs against reading the paper and the runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import fixtures_dir

REPO = Path(__file__).resolve().parents[2]


def _running(pid: int, cmdline: str) -> bool:
    """Whether the process is alive and still the one the bench started (a reused PID runs something else)."""
    proc = Path("/proc", str(pid))
    try:
        stat = (proc / "stat").read_text()
        now = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z" and now == cmdline


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the bench finds its servers' PIDs in /proc")
def test_the_bench_measures_all_three_sections_quickly_and_leaves_no_server_running(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    argv = ["--runs", "2", "--calls", "10", "--warmup", "2", "--out", str(out)]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "evals.bench", *argv], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert elapsed < 45, f"the tiny bench took {elapsed:.1f} s"
    assert "target <= 1.10x" in done.stdout and "target <= 1.20x" in done.stdout

    result = json.loads(out.read_text(encoding="utf-8"))
    cold, calls, sizes = result["cold_start"], result["tool_call"], result["tools_list"]
    for key in ("research", "baseline"):
        assert cold[key]["n"] == 2 and 0 < cold[key]["min_ms"] <= cold[key]["p50_ms"] <= cold[key]["p90_ms"]
    assert cold["ratio"] > 0 and isinstance(cold["passed"], bool)
    for key in ("list_files", "read_file", "ping"):
        assert calls[key]["n"] == 10 and 0 < calls[key]["p50_ms"] <= calls[key]["p90_ms"] <= calls[key]["p99_ms"]
    assert calls["ratio"] > 0 and calls["read_file_ratio"] > 0 and isinstance(calls["passed"], bool)
    assert sizes["tools"] == len(sizes["per_tool"]) > 1
    assert sizes["answer_chars"] > sizes["tools_chars"] > 0
    for tool in sizes["per_tool"]:
        assert tool["total"] > tool["description"] + tool["inputSchema"] + tool["outputSchema"] > 0, tool
        assert tool["description"] + tool["inputSchema"] < tool["model"] < tool["total"] and tool["toolset"] != "?"
    assert sum(toolset["tools"] for toolset in sizes["per_toolset"].values()) == sizes["tools"]
    assert sizes["default"]["tools"] == sizes["tools"] - sizes["per_toolset"]["files"]["tools"]
    assert {key: target["passed"] for key, target in sizes["targets"].items()} == dict.fromkeys(
        ("model_chars_per_tool", "model_chars_max", "answer_chars_per_tool", "tools", "model_chars"), True
    )
    prompts = result["prompts"]
    assert {p["name"] for p in prompts["prompts"]} >= {"research_pipeline", "review", "revise_paper"}
    for prompt in prompts["prompts"]:  # each recipe within its size: 6,000 for the whole loop, 4,000 for the others
        assert 500 < prompt["chars"] <= prompt["target"] and prompt["passed"], prompt
        assert prompt["target"] == (6_000 if prompt["name"] == "research_pipeline" else 4_000)
        assert (
            f"   {prompt['name']:28}{prompt['chars']:8,} chars   target <= {prompt['target']:,}   PASS" in done.stdout
        )
    assert "target <= 24,000" in done.stdout and result["passed"] == (
        cold["passed"] and calls["passed"] and sizes["passed"] and prompts["passed"]
    )

    spawned = result["processes"]["spawned"]
    assert len(spawned) >= 2 * 3 + 2  # a warm-up and 2 timed starts of each server, plus the two call sessions
    assert result["processes"]["left_running"] == []
    assert [p["pid"] for p in spawned if _running(p["pid"], p["cmdline"])] == []


def _launchers_of(pid: int) -> list[str]:
    """Supervisor launchers (`launcher --parent <pid>`) that process `pid` started, still running."""
    out = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True, check=True).stdout
    return [
        line
        for line in out.splitlines()
        if not line.startswith("Z") and "research_mcp.sandbox.launcher --parent" in line and f"--parent {pid}" in line
    ]


@pytest.mark.docker
@pytest.mark.bwrap
def test_the_sandbox_section_times_both_backends_against_raw_runs_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sandbox.json"
    argv = ["--sandbox", "--sandbox-runs", "2", "--sandbox-warmup", "1", "--out", str(out)]
    with subprocess.Popen(
        [sys.executable, "-m", "evals.bench", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as bench:
        stdout, stderr = bench.communicate(timeout=120)
    assert bench.returncode == 0, stderr
    assert "target <= 1.3x" in stdout and "target <= 2.0x" in stdout and "left behind: NONE" in stdout

    section = json.loads(out.read_text(encoding="utf-8"))["sandbox"]
    for backend in ("docker", "local"):
        entry = section[backend]
        for key in ("ours", "raw"):
            assert entry[key]["n"] == 2 and 0 < entry[key]["min_ms"] <= entry[key]["p50_ms"] <= entry[key]["p90_ms"]
        assert entry["ratio"] > 0 and isinstance(entry["passed"], bool)
        assert entry["overhead_ms"] == pytest.approx(entry["ours"]["p50_ms"] - entry["raw"]["p50_ms"])
    assert section["left"] == {"cancelled": [], "supervisors_killed": [], "containers_removed": []}
    deadline = time.monotonic() + 5
    while _launchers_of(bench.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _launchers_of(bench.pid) == []


def test_the_audit_section_times_an_audit_of_a_ten_page_paper_against_reading_it(tmp_path: Path) -> None:
    for name in ("latex", "arxiv"):
        fixtures_dir(name)  # the paper's bibliography comes from the recorded arXiv answers
    out = tmp_path / "audit.json"
    done = subprocess.run(
        [sys.executable, "-m", "evals.bench.audit", "--rounds", "1", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "target <= 2.0x" in done.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["runs"] == 50 and result["words"] > 2500 and result["audit"]["numbers"] > 100
    for key in ("ours", "baseline"):
        assert result[key]["n"] == 1 and 0 < result[key]["min_ms"] <= result[key]["p50_ms"]
    assert result["ratio"] == pytest.approx(result["ours"]["p50_ms"] / result["baseline"]["p50_ms"])
    assert result["passed"] == (result["ratio"] <= 2.0)
    assert result["paged"]["calls"] >= 1 and result["paged"]["total_ms"] > 0
