"""`python -m evals.audit_eval --small`: the audit finds every kind of seeded defect with recall and precision of at
least 0.9, on a real paper of ../shared/fixtures/latex and on a paper built from recorded runs, and says nothing
against the built paper before any defect is seeded; the scoring itself counts misses and false positives."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest

from evals.audit_eval.__main__ import SMALL_PAPERS, main
from evals.audit_eval.run import BUILT, ONE_SEED, TARGET, score_trial, verbatim_lines
from evals.audit_eval.seeds import FIXTURE_KINDS, KINDS, Seeded
from tests.conftest import fixtures_dir


@pytest.fixture(scope="module")
def small_eval(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    for name in ("arxiv", "semanticscholar"):
        fixtures_dir(name)
    fixtures = fixtures_dir("latex").parent
    out = tmp_path_factory.mktemp("audit-eval") / "result.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(["--small", "--fixtures", str(fixtures), "--out", str(out)])
    return json.loads(out.read_text(encoding="utf-8")), printed.getvalue()


def test_every_kind_is_seeded_on_every_paper_it_fits(small_eval: tuple[dict[str, Any], str]) -> None:
    result, printed = small_eval
    assert result["skipped"] == []
    assert set(result["kinds"]) == set(KINDS)
    real = [paper for paper in result["by_paper"] if paper not in (BUILT, ONE_SEED)]
    assert real == list(SMALL_PAPERS) and all(set(result["by_paper"][paper]) == set(FIXTURE_KINDS) for paper in real)
    assert set(result["by_paper"][BUILT]) == set(KINDS) and set(result["by_paper"][ONE_SEED]) == {"one_seed_claim"}
    assert all(k["seeded"] >= 2 for k in result["kinds"].values())
    replay = result["replay"]  # the invented citations were looked up, on 127.0.0.1 only, and every look-up answered
    assert replay["arxiv"] > 0 and replay["semantic_scholar"] > 0 and replay["unmatched"] == []
    assert "| defect | seeded | found | recall |" in printed and "written to" in printed


@pytest.mark.parametrize("kind", KINDS)
def test_the_audit_finds_each_seeded_kind_with_recall_and_precision_of_at_least_0_9(
    small_eval: tuple[dict[str, Any], str], kind: str
) -> None:
    result, _ = small_eval
    entry = result["kinds"][kind]
    misses = [(t["how"], t["file"], t["line"]) for t in result["trials"] if t["kind"] == kind and not t["detected"]]
    false = [(f["code"], f["file"], f["line"], f["evidence"][:120]) for t in result["trials"] if t["kind"] == kind
             for f in t["false_positives"]]  # fmt: skip
    assert entry["recall"] >= TARGET, misses
    assert entry["precision"] is not None and entry["precision"] >= TARGET, false


def test_the_paper_built_from_runs_has_no_finding_before_seeding(small_eval: tuple[dict[str, Any], str]) -> None:
    result, _ = small_eval
    clean = result["clean"]
    assert clean["false_positives"] == 0, [(f["code"], f["line"], f["evidence"][:160]) for f in clean["findings"]]


def test_no_structure_finding_on_the_real_paper_points_into_a_code_listing(
    small_eval: tuple[dict[str, Any], str],
) -> None:
    result, _ = small_eval
    assert result["in_verbatim"] and all(found == [] for found in result["in_verbatim"].values()), result["in_verbatim"]


def test_verbatim_lines_are_those_of_declared_listing_environments() -> None:
    tex = (
        "\\lstnewenvironment{codeoutput}[1][]\n{}\n\\begin{document}\n\\begin{codeoutput}\n\\label{t:x}\n"
        "\\end{codeoutput}\n"
    )
    assert verbatim_lines(tex) == {5}
    assert verbatim_lines(tex.replace("codeoutput}[1]", "other}[1]")) == set()


def _finding(code: str, file: str, line: int | None, evidence: str = "") -> dict[str, Any]:
    return {"code": code, "file": file, "line": line, "evidence": evidence, "fix": "", "severity": "warning"}


def test_the_scoring_counts_a_miss_and_a_false_positive() -> None:
    seeded = Seeded("undefined_ref", "p", "Table ref", "paper/main.tex", 40, "tab:sparse-results")
    baseline = [_finding("untraced_number", "paper/main.tex", 12), _finding("undefined_ref", "paper/main.tex", 40)]
    unchanged = score_trial(seeded, baseline, list(baseline))
    assert not unchanged["detected"] and unchanged["false_positives"] == []  # already there before: not new
    elsewhere = score_trial(seeded, baseline, [*baseline, _finding("undefined_ref", "paper/main.tex", 60)])
    assert not elsewhere["detected"] and len(elsewhere["false_positives"]) == 1
    found = score_trial(seeded, baseline, [*baseline, _finding("undefined_ref", "paper/main.tex", 40),
                                           _finding("placeholder_text", "paper/main.tex", 40)])  # fmt: skip
    assert found["detected"] and len(found["correct"]) == 1 and len(found["false_positives"]) == 1
    by_key = score_trial(seeded, [], [_finding("undefined_ref", "paper/main.tex", None, "tab:sparse-results")])
    assert by_key["detected"]
