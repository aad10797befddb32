"""`python -m evals.bench.latex`: the overhead of `compile_paper` over raw latexmk on the same paper.

What is timed, interleaved (one of ours, one raw, the order swapped every round), on two copies of one paper
(natbib + bibtex, an \\input file, a booktabs table; or `--paper DIR/main.tex` for another):

- cold: an empty build folder. Ours: `compile_paper(...)` in-process (preflight, sandbox, hardened latexmk, log
  and .blg parsing, PDF promotion and versioning). Raw: `latexmk -pdf -interaction=nonstopmode -outdir=.raw main.tex`.
  Target: ours at most 1.1x raw.
- warm: the build folder of the previous compile, after one sentence of the body changed. Target: at most 1.1x.
- no-op: nothing changed since the last compile; latexmk only checks its files. Target: at most 1.5x raw's no-op.

Ours runs in the sandbox when bubblewrap works here (the line says which). Every compile is bounded by its own
timeout, so nothing is left running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals.bench.measure import summary
from research_mcp.latex.compile import CompileOptions, TexTools, compile_paper

__all__ = ["TARGETS", "measure_latex", "render_latex"]

TARGETS = {"cold": 1.1, "warm": 1.1, "noop": 1.5}
RAW_TIMEOUT_S = 60.0

MAIN = r"""\documentclass[11pt]{article}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage{amsmath,booktabs,graphicx}
\usepackage[round]{natbib}
\usepackage{hyperref}
\title{A Benchmark Paper}
\author{Anonymous}
\begin{document}
\maketitle
\begin{abstract}
We measure compile overhead. Our method improves accuracy by 3.2 points \citep{knuth}.
\end{abstract}
\section{Introduction}\label{sec:intro}
\input{sections/intro}
\section{Results}\label{sec:results}
Table~\ref{tab:main} shows the results; Section~\ref{sec:intro} gives the setting.
\begin{table}[h]
\centering
\caption{Main results.}\label{tab:main}
\begin{tabular}{lcc}
\toprule
Model & Accuracy & Loss \\
\midrule
Baseline & 0.900 & 1.21 \\
Ours & 0.932 & 1.05 \\
\bottomrule
\end{tabular}
\end{table}
\begin{equation}
  \mathcal{L} = -\sum_i y_i \log p_i
\end{equation}
\bibliographystyle{plainnat}
\bibliography{references}
\end{document}
"""
INTRO = "Research on compilers is old \\citep{lamport}. " * 40 + "\n"
BIB = """@book{knuth, author={Donald E. Knuth}, title={The {\\TeX}book}, year={1984}, publisher={Addison-Wesley}}
@book{lamport, author={Leslie Lamport}, title={{\\LaTeX}: A Document Preparation System}, year={1994},
  publisher={Addison-Wesley}}
"""


def _write_paper(folder: Path, source: Path | None) -> Path:
    if source is not None:
        shutil.copytree(source.parent, folder)
        return folder / source.name
    (folder / "sections").mkdir(parents=True)
    (folder / "main.tex").write_text(MAIN)
    (folder / "sections/intro.tex").write_text(INTRO)
    (folder / "references.bib").write_text(BIB)
    return folder / "main.tex"


def _open_for_sandbox(root: Path) -> None:
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    for parent in root.parents:
        if str(parent).startswith(tempfile.gettempdir() + "/"):
            parent.chmod(parent.stat().st_mode | 0o011)


def _edit(main: Path, round_no: int) -> None:
    """Change one sentence of the body, as a writing session does between compiles."""
    intro = main.parent / "sections/intro.tex"
    target = intro if intro.is_file() else main
    text = target.read_text()
    edit = f"Edit number {round_no} of the text. % bench-edit\n"
    lines = [line for line in text.splitlines(keepends=True) if not line.endswith("% bench-edit\n")]
    if target == intro:
        lines.append(edit)
    else:
        end = max(i for i, line in enumerate(lines) if "\\end{document}" in line)
        lines.insert(end, edit)
    target.write_text("".join(lines))


def measure_latex(rounds: int = 5, paper: Path | None = None) -> dict[str, Any]:
    tools = TexTools.find()
    if tools.pdflatex is None or tools.latexmk is None:
        return {"skipped": "pdflatex or latexmk is not installed"}
    options = CompileOptions(timeout_s=45)
    with tempfile.TemporaryDirectory(prefix="bench-latex-") as tmp:
        root = Path(tmp)
        ours_main = _write_paper(root / "ours", paper)
        raw_main = _write_paper(root / "raw", paper)
        _open_for_sandbox(root)
        sandboxed = {"value": False}

        def ours() -> float:
            started = time.perf_counter()
            compiled = compile_paper(root, ours_main, tools=tools, options=options)
            elapsed = time.perf_counter() - started
            if not compiled.result.ok:
                raise RuntimeError(f"our compile failed: {compiled.result.diagnostics[:2]}")
            sandboxed["value"] = compiled.result.sandboxed
            return elapsed

        def raw() -> float:
            argv = [tools.latexmk or "latexmk", "-pdf", "-interaction=nonstopmode", "-outdir=.raw", raw_main.name]
            started = time.perf_counter()
            done = subprocess.run(argv, cwd=raw_main.parent, capture_output=True, timeout=RAW_TIMEOUT_S, check=False)
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"raw latexmk failed: {done.stdout[-400:]!r}")
            return elapsed

        def clean() -> None:
            shutil.rmtree(ours_main.parent / ".build", ignore_errors=True)
            shutil.rmtree(raw_main.parent / ".raw", ignore_errors=True)

        samples: dict[str, dict[str, list[float]]] = {k: {"ours": [], "raw": []} for k in TARGETS}
        pair: list[tuple[str, Callable[[], float]]] = [("ours", ours), ("raw", raw)]
        ours()  # warm-up: file caches, the bwrap probe
        raw()
        for round_no in range(rounds):
            order = pair if round_no % 2 == 0 else pair[::-1]
            clean()
            for name, fn in order:
                samples["cold"][name].append(fn())
            _edit(ours_main, round_no)
            _edit(raw_main, round_no)
            for name, fn in order:
                samples["warm"][name].append(fn())
            for name, fn in order:
                samples["noop"][name].append(fn())
    result: dict[str, Any] = {"rounds": rounds, "sandboxed": sandboxed["value"], "paper": str(paper or "generated")}
    for kind, target in TARGETS.items():
        ours_s, raw_s = summary(samples[kind]["ours"]), summary(samples[kind]["raw"])
        ratio = ours_s["p50_ms"] / raw_s["p50_ms"]
        result[kind] = {
            "ours": ours_s,
            "raw": raw_s,
            "ratio": ratio,
            "overhead_ms": ours_s["p50_ms"] - raw_s["p50_ms"],
            "target_ratio": target,
            "passed": ratio <= target,
        }
    return result


def render_latex(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"latex: skipped ({result['skipped']})"
    where = "in bubblewrap" if result["sandboxed"] else "without sandbox (bubblewrap unusable here)"
    lines = [
        f"latex: compile_paper ({where}) vs raw `latexmk -pdf`, paper: {result['paper']}, "
        f"{result['rounds']} rounds interleaved",
        f"   {'':34}{'median':>9}{'p90':>9}{'min':>9}",
    ]
    for kind in TARGETS:
        entry = result[kind]
        for key in ("raw", "ours"):
            s = entry[key]
            label = f"{kind} {'raw latexmk' if key == 'raw' else 'compile_paper'}"
            lines.append(f"   {label:34}{s['p50_ms']:9.1f}{s['p90_ms']:9.1f}{s['min_ms']:9.1f} ms")
        lines.append(
            f"   {kind + ' ratio (median), overhead':34}{entry['ratio']:8.2f}x {entry['overhead_ms']:+8.1f} ms   "
            f"target <= {entry['target_ratio']:.1f}x   {'PASS' if entry['passed'] else 'FAIL'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="compile_paper overhead vs raw latexmk")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--paper", type=Path, default=None, help="a main .tex file to copy (its folder) and compile")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure_latex(args.rounds, args.paper.resolve() if args.paper else None)
    print(render_latex(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
