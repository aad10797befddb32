"""`python -m evals.bench.audit`: what auditing a paper costs over reading it.

The paper is the audit eval's paper built from recorded runs (evals/audit_eval/paper.py) at bench scale: 50 runs
(24 baseline, 25 method, 1 ablation), their table, figure and bibliography written by the tools' domain functions,
and text padded with discussion and an appendix quoting every run's numbers to 10 pages of 11pt article (about
3,100 words; `--pages` compiles it with pdflatex and counts). What is timed, in one process, interleaved (the order
swaps every round), the median of `--rounds`:

- ours: `audit_paper` on the paper, every finding in one answer, citation verification off (no network);
- baseline: the `paper_text` domain function, the whole text in one answer, plus `read_metrics` of each of the
  50 runs: reading what the audit reads, without checking anything.

Target: ours at most 2.0x the baseline. Before each sample the main file is touched, so that neither side reuses
`paper_text`'s cache of the parsed paper from the previous sample.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from evals.audit_eval.paper import MAIN, Scale, build_paper
from evals.audit_eval.replay import replay_settings, start_replay
from evals.audit_eval.run import FIXTURES
from evals.bench.measure import summary
from research_mcp.config import Settings
from research_mcp.latex.papertext import paper_text
from research_mcp.store import Store
from research_mcp.tools.metrics import RunBook, read_metrics
from research_mcp.workspace import Workspace

__all__ = ["BENCH_SCALE", "TARGET", "measure_audit", "render_audit"]

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "audit.json"
TARGET = 2.0
WHOLE = 1 << 30
"""A character budget no answer reaches: each side reads everything in one call. (audit_paper runs the whole audit
on every call, so a client paging through its findings at the default budget pays it once per page.)"""
BENCH_SCALE = Scale(seeds={"baseline": 24, "method": 25, "ablation": 1}, discussion=12, appendix=True)
"""50 runs; 12 discussion parts and an appendix line per run make about 10 pages of 11pt article."""


def _settings(root: Path, data: Path) -> Settings:
    dead = "http://127.0.0.1:9"  # nothing listens there: a look-up the bench did not ask for fails, never goes out
    return Settings(workspace=root, data_dir=data, arxiv_url=dead + "/api/query", s2_url=dead, arxiv_files_url=dead,
                    arxiv_interval_s=0, s2_interval_s=0, literature_timeout_s=2)  # fmt: skip


def _build(root: Path, data: Path) -> tuple[Path, list[str]]:
    """The paper and its 50 runs; its bibliography from the recorded arXiv answers, served on 127.0.0.1."""

    server = start_replay(FIXTURES)
    try:
        built = build_paper(root, replay_settings(root, data, server), BENCH_SCALE, seed=0)
    finally:
        server.stop()
    return root / MAIN, [run for ids in built.runs.values() for run in ids]


def pages_of(root: Path) -> int | None:
    """The built paper's page count from pdflatex (None when TeX is not installed)."""
    if shutil.which("pdflatex") is None or shutil.which("bibtex") is None:
        return None
    folder = root / "paper"
    for argv in (["pdflatex", "-interaction=nonstopmode", "main.tex"], ["bibtex", "main"],
                 ["pdflatex", "-interaction=nonstopmode", "main.tex"]):  # fmt: skip
        subprocess.run(argv, cwd=folder, capture_output=True, timeout=120, check=False)
    log = folder / "main.log"
    if not log.is_file():
        return None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("Output written on") and "page" in line:
            return int(line.split("(")[1].split()[0])
    return None


async def _audit(audit_paper: Any, ws: Workspace, store: Store, settings: Settings) -> Any:
    return await audit_paper(ws, store, settings, MAIN, None, verify_citations=False, max_chars=WHOLE)


def _paged(audit_paper: Any, ws: Workspace, store: Store, settings: Settings, main: Path) -> dict[str, Any]:
    """For information: every finding read the way a client reads them, a page at the default budget per call."""
    os.utime(main)
    started = time.perf_counter()
    calls, offset = 0, 0

    async def page() -> Any:
        return await audit_paper(ws, store, settings, MAIN, None, offset=offset, verify_citations=False)

    while True:
        result = anyio.run(page)
        calls += 1
        if result.next_offset is None:
            break
        offset = result.next_offset
    return {"calls": calls, "total_ms": (time.perf_counter() - started) * 1000}


def measure_audit(rounds: int = 5, count_pages: bool = False) -> dict[str, Any]:
    from research_mcp.tools.review.audit import audit_paper

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        root, data = Path(tmp) / "ws", Path(tmp) / "data"
        main, runs = _build(root, data)
        words = len(main.read_text(encoding="utf-8").split())
        settings = _settings(root, data)
        ws = Workspace(root, "setting")
        store = Store(root / ".research" / "state.db")
        found: dict[str, int] = {}
        try:

            def book() -> RunBook | None:
                return RunBook(store)

            def ours() -> float:
                os.utime(main)
                started = time.perf_counter()
                result = anyio.run(_audit, audit_paper, ws, store, settings)
                elapsed = time.perf_counter() - started
                assert result.next_offset is None, "the whole audit fits one answer"
                found.update(numbers=result.numbers, traced=result.traced, findings=len(result.findings))
                return elapsed

            def baseline() -> float:
                os.utime(main)
                started = time.perf_counter()
                text = paper_text(root, main, max_chars=WHOLE)
                assert text.next_offset is None, "the whole text fits one answer"
                for run in runs:
                    read_metrics(ws, run, book)
                return time.perf_counter() - started

            samples: dict[str, list[float]] = {"ours": [], "baseline": []}
            pair: list[tuple[str, Callable[[], float]]] = [("ours", ours), ("baseline", baseline)]
            ours()  # warm-up: imports, file caches
            baseline()
            for round_no in range(rounds):
                for name, fn in pair if round_no % 2 == 0 else pair[::-1]:
                    samples[name].append(fn())
            paged = _paged(audit_paper, ws, store, settings, main)
        finally:
            store.close()
        pages = pages_of(root) if count_pages else None
    ours_s, base_s = summary(samples["ours"]), summary(samples["baseline"])
    ratio = ours_s["p50_ms"] / base_s["p50_ms"]
    return {
        "rounds": rounds, "runs": len(runs), "words": words, "pages": pages, "audit": found, "paged": paged,
        "ours": ours_s, "baseline": base_s, "ratio": ratio, "target_ratio": TARGET, "passed": ratio <= TARGET,
    }  # fmt: skip


def render_audit(result: dict[str, Any]) -> str:
    pages = f"{result['pages']} pages" if result["pages"] is not None else "pages not counted"
    lines = [
        f"audit: audit_paper vs paper_text + read_metrics of every run; {result['runs']} runs, {result['words']:,} "
        f"words ({pages}), {result['rounds']} rounds interleaved, citation verification off",
        f"   the audit: {result['audit'].get('numbers')} numbers, {result['audit'].get('traced')} traced, "
        f"{result['audit'].get('findings')} findings",
        f"   {'':40}{'median':>9}{'p90':>9}{'min':>9}",
    ]
    for key, label in (("baseline", "paper_text + read_metrics x runs"), ("ours", "audit_paper")):
        s = result[key]
        lines.append(f"   {label:40}{s['p50_ms']:9.1f}{s['p90_ms']:9.1f}{s['min_ms']:9.1f} ms")
    paged = result["paged"]
    lines.append(
        f"   {'audit_paper paged, default budget':40}{paged['total_ms']:9.1f} ms over {paged['calls']} calls "
        "(information)"
    )
    lines.append(
        f"   {'ratio audit/baseline (median)':40}{result['ratio']:8.2f}x   target <= {result['target_ratio']:.1f}x   "
        f"{'PASS' if result['passed'] else 'FAIL'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.bench.audit", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", action="store_true", help="compile the paper once with pdflatex to count pages")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    result = measure_audit(args.rounds, args.pages)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render_audit(result))
    print(f"written to {args.out}")
    return 1 if args.strict and not result["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
