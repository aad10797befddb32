"""`python -m evals.audit_eval [--small] [--placements N] [--seed S] [--out FILE] [--strict]`: how well the paper
audit finds defects seeded into real papers and into a paper built from recorded runs.

Kinds seeded: a changed number, an invented citation, a cite without entry, an undefined reference, a missing
figure, a significance claim from one seed, a placeholder in the text, placeholder code in a run. The real papers
(../shared/fixtures/latex) take the kinds that need no runs and no look-up; the built paper takes all eight, its
citations checked against a replay server on 127.0.0.1 that answers from recorded arXiv and Semantic Scholar
traffic. Prints recall and precision per kind as a Markdown table and writes the JSON (every trial, every false
positive) to `results/latest.json`. Exits 0 whatever the verdicts, unless `--strict` is given: then a kind under
the target exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evals.audit_eval.run import BUILT, FIXTURE_PAPERS, FIXTURES, TARGET, Options, evaluate
from evals.audit_eval.seeds import KINDS

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "latest.json"
SMALL_PAPERS = ("ai-scientist_multi_style_adapter", "data-to-paper_congress_twitter_open_goal_accum_0")
"""`--small`: a paper with figures and natbib, and one with code listings."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evals.audit_eval", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--placements", type=int, default=4, help="trials per kind per real paper (default 4)")
    parser.add_argument("--built-placements", type=int, default=12, help="trials per kind, built paper (default 12)")
    parser.add_argument("--small", action="store_true", help="two real papers, 2 placements each; the built papers, 3")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help=f"the shared fixtures (default {FIXTURES})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON result file (default {DEFAULT_OUT})")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a kind misses the target")
    return parser


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render(result: dict[str, Any]) -> str:
    """Markdown: the table per kind, the table per paper, then each miss and each false positive."""
    options, kinds = result["options"], result["kinds"]
    lines = [
        f"## Paper audit: recall and precision per seeded defect (target {options['target']:.1f} each)",
        "",
        f"Seed {options['seed']}, {options['placements']} placements per kind on each real paper and "
        f"{options['built_placements']} on each built one; papers: "
        f"{', '.join(options['papers'])}; {result['audits']} audits, median {result['audit_median_s']:.2f} s each. "
        f"Citations: {options['citations']} ({result['replay']['arxiv']} arXiv and "
        f"{result['replay']['semantic_scholar']} Semantic Scholar requests answered there).",
        "",
        "| defect | seeded | found | recall | findings | correct | false pos. | precision | same defect | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind in KINDS:
        if kind not in kinds:
            continue
        k = kinds[kind]
        lines.append(
            f"| {kind} | {k['seeded']} | {k['detected']} | {_ratio(k['recall'])} | {k['findings']} | {k['correct']} | "
            f"{k['false_positives']} | {_ratio(k['precision'])} | {k['same_defect']} | "
            f"{'PASS' if k['passed'] else 'FAIL'} |"
        )
    lines += [
        "",
        "| paper | defect | seeded | found | recall | false pos. | precision |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for paper, table in result["by_paper"].items():
        for kind, k in table.items():
            lines.append(
                f"| {paper} | {kind} | {k['seeded']} | {k['detected']} | {_ratio(k['recall'])} | "
                f"{k['false_positives']} | {_ratio(k['precision'])} |"
            )
    lines += ["", "Findings on the unseeded papers (not scored; the baseline every trial is compared with):", ""]
    for paper, counts in result["baseline"].items():
        shown = ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "none"
        lines.append(f"- {paper}: {shown}")
    clean = result["clean"]
    if clean is not None:
        count, codes = clean["false_positives"], clean["codes"] or "none"
        lines += ["", f"Unseeded built paper, clean by construction: {count} warning or blocking findings (each a "
                  f"false positive; target 0): {codes}", ""]  # fmt: skip
        lines += [
            f"- {f['paper']}: {f['code']} at {f['file']}:{f['line']}: {f['evidence'][:160]}"
            for f in clean["findings"][:8]
        ]
    verbatim = {paper: found for paper, found in result["in_verbatim"].items() if found}
    lines += ["", "Structure findings on the real papers inside verbatim environments (code listings; each a false "
              f"positive; target 0): {sum(map(len, verbatim.values()))}"]  # fmt: skip
    lines += [f"- {paper}: {f['code']} at {f['file']}:{f['line']}" for paper, fs in verbatim.items() for f in fs[:6]]
    misses = [t for t in result["trials"] if not t["detected"]]
    noisy = [t for t in result["trials"] if t["false_positives"]]
    if misses:
        lines += ["", f"Missed ({len(misses)}):", ""]
        for t in misses:
            traced = "".join(
                f"; traced{' weakly' if n['weak'] else ''} as {n['what']}" for n in t.get("traced_as", [])[:1]
            )
            lines.append(f"- {t['kind']} in {t['paper']} ({t['how']}) at {t['file']}:{t['line']}{traced}")
    if noisy:
        lines += ["", f"Trials with false positives ({len(noisy)}):", ""]
        for t in noisy:
            codes = ", ".join(f"{f['code']} at {f['file']}:{f['line']}" for f in t["false_positives"][:4])
            lines.append(f"- {t['kind']} in {t['paper']} ({t['how']}): {codes}")
    if result["skipped"]:
        lines += ["", "Not seeded:", ""]
        lines += [f"- {s['kind']} in {s['paper']}: {s['why']}" for s in result["skipped"]]
    passed = all(k["passed"] for k in kinds.values()) and (clean is None or clean["passed"])
    lines += [
        "",
        f"**{'PASS' if passed else 'FAIL'}**: every kind at recall and precision >= {TARGET}"
        + ", and no finding on the clean paper"
        + ("" if passed else ": not met"),
    ]
    # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.placements < 1 or args.built_placements < 1:
        _parser().error("--placements and --built-placements must be at least 1")
    papers = SMALL_PAPERS if args.small else tuple(FIXTURE_PAPERS)
    placements = 2 if args.small else args.placements
    built_placements = 3 if args.small else args.built_placements
    for name in ("latex", "arxiv", "semanticscholar"):
        if not (args.fixtures / name).is_dir():
            _parser().error(f"{args.fixtures / name} is absent: the eval reads the real papers and recordings there")
    options = Options(
        fixtures=args.fixtures.resolve(),
        seed=args.seed,
        placements=placements,
        built_placements=built_placements,
        papers=papers,
    )
    result = evaluate(options)
    clean_passed = (result["clean"] is None or result["clean"]["passed"]) and not any(result["in_verbatim"].values())
    result["passed"] = (
        all(k["passed"] for k in result["kinds"].values()) and set(result["kinds"]) == set(KINDS) and clean_passed
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(render(result))
    print(f"\nwritten to {args.out} ({BUILT}: the paper built from recorded runs)")
    return 1 if args.strict and not result["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
