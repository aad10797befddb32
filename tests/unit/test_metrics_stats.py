"""The statistics against scipy and statsmodels, and the results table's provenance round trip."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research_mcp.errors import BadInputError
from research_mcp.tools.metrics import compare_runs, parse_provenance, results_table
from research_mcp.tools.metrics._records import lib
from research_mcp.tools.metrics.stats import compare_groups, describe, hedges_g, holm
from research_mcp.tools.metrics.table import CELL_MARKER, format_mean_std
from research_mcp.workspace import Workspace
from tests.conftest import fixtures_dir


def test_group_statistics_and_welch_tests_match_scipy_on_unequal_groups() -> None:
    stats = lib("scipy.stats")
    a = [0.81, 0.79, 0.84, 0.80, 0.83, 0.82]
    b = [0.70, 0.75, 0.72]
    described, [pair] = compare_groups({"a": a, "b": b}, "max")
    expected = stats.ttest_ind(a, b, equal_var=False)
    assert pair.t == pytest.approx(expected.statistic) and pair.p == pytest.approx(expected.pvalue)
    assert pair.df == pytest.approx(expected.df)
    low, high = expected.confidence_interval(0.95)
    assert (pair.diff_ci_low, pair.diff_ci_high) == (pytest.approx(low), pytest.approx(high))
    sem = stats.sem(b)
    ci = stats.t.interval(0.95, len(b) - 1, loc=sum(b) / 3, scale=sem)
    assert (described["b"].ci_low, described["b"].ci_high) == (pytest.approx(ci[0]), pytest.approx(ci[1]))
    assert described["a"].std == pytest.approx(stats.tstd(a)) and described["a"].n == 6
    pooled = math.sqrt((5 * stats.tvar(a) + 2 * stats.tvar(b)) / 7)
    d = (sum(a) / 6 - sum(b) / 3) / pooled
    assert pair.hedges_g == pytest.approx(d * (1 - 3 / (4 * 9 - 9)))
    assert pair.p_holm == pytest.approx(pair.p) and pair.significant and pair.better == "a"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=1e-12, max_value=1.0), min_size=1, max_size=12))
def test_holm_matches_statsmodels_multipletests(pvalues: list[float]) -> None:
    _, expected, _, _ = lib("statsmodels.stats.multitest").multipletests(pvalues, method="holm")
    assert holm(pvalues) == pytest.approx(list(expected))


def test_holm_changes_the_verdict_where_an_uncorrected_test_would_claim_significance() -> None:
    groups = {
        "baseline": [0.700, 0.712, 0.695, 0.705, 0.708],
        "method_a": [0.712, 0.720, 0.706, 0.715, 0.718],
        "method_b": [0.701, 0.709, 0.699, 0.707, 0.704],
        "method_c": [0.703, 0.711, 0.696, 0.706, 0.709],
    }
    _, tests = compare_groups(groups, "max", baseline="baseline")
    a = next(t for t in tests if t.a == "method_a")
    assert a.p is not None and a.p < 0.05  # uncorrected: "significant"
    assert a.p_holm is not None and a.p_holm >= 0.05 and a.significant is False  # three tests: not any more
    assert a.p_holm == pytest.approx(min(1.0, 3 * a.p))


def test_one_value_per_group_makes_no_claim() -> None:
    described, [pair] = compare_groups({"a": [0.9], "b": [0.8]}, "max")
    assert described["a"].std is None and described["a"].ci_low is None
    assert pair.p is None and pair.significant is None and pair.better is None
    assert pair.note is not None and "no claim of significance" in pair.note
    assert hedges_g([1.0], [2.0, 3.0]) is None


def test_groups_without_spread_give_no_p_value_and_no_warning() -> None:
    described, [pair] = compare_groups({"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0]}, "max")
    assert described["a"].std == 0.0 and pair.p is None and pair.note is not None


def _ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path.resolve(), "setting")


def _runs(tmp_path: Path, values: dict[str, list[float]]) -> dict[str, list[str]]:
    """One folder per run holding a metrics.jsonl whose last val_acc is the value; group -> folders."""
    groups: dict[str, list[str]] = {}
    for group, finals in values.items():
        for seed, final in enumerate(finals):
            folder = tmp_path / "results" / f"{group}_s{seed}"
            folder.mkdir(parents=True)
            rows = [
                {"step": s, "val_acc": final if s == 3 else final * s / 3, "train_loss": 1 / (s + 1), "lr": 0.1}
                for s in range(1, 4)
            ]
            (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            groups.setdefault(group, []).append(f"results/{group}_s{seed}")
    return groups


def test_compare_runs_reads_last_values_and_says_what_can_be_claimed(tmp_path: Path) -> None:
    groups = _runs(tmp_path, {"baseline": [0.70, 0.71, 0.69], "method": [0.80, 0.82, 0.81, 0.79]})
    result = compare_runs(_ws(tmp_path), lambda: None, "val_acc", groups=groups)
    assert [g.values for g in result.groups] == [[0.70, 0.71, 0.69], [0.80, 0.82, 0.81, 0.79]]
    assert result.groups[0].sources == groups["baseline"]
    assert (result.groups[0].mean, result.groups[0].std) == (0.7, 0.01)  # not 0.6999999999999998, 0.010000000000000009
    assert result.direction == "max" and result.best_group == "method" and result.best_is_significant
    assert "significantly better" in result.verdict
    single = compare_runs(
        _ws(tmp_path), lambda: None, "val_acc", groups={"a": groups["baseline"][:1], "b": groups["method"][:1]}
    )
    assert not single.best_is_significant and "no claim of significance" in single.verdict


def test_compare_runs_refuses_unclear_requests(tmp_path: Path) -> None:
    groups = _runs(tmp_path, {"a": [0.5], "b": [0.6]})
    with pytest.raises(BadInputError, match="exactly one of"):
        compare_runs(_ws(tmp_path), lambda: None, "val_acc")
    with pytest.raises(BadInputError, match="read_metrics"):
        compare_runs(_ws(tmp_path), lambda: None, "nope", groups=groups)
    with pytest.raises(BadInputError, match="use='best' needs a direction"):
        compare_runs(_ws(tmp_path), lambda: None, "lr", groups=groups, use="best")


@pytest.mark.parametrize(
    ("mean", "std", "text"),
    [(0.81862, 0.01234, r"0.819 \pm 0.012"), (77.269, 1.62, r"77.3 \pm 1.6"), (0.5, None, "0.5000"),
     (1234.5, 0.0, "1234"), (3.2e-6, 1e-7, r"3.20 \times 10^{-6} \pm 1.00 \times 10^{-7}")],
)  # fmt: skip
def test_numbers_are_printed_to_the_precision_their_spread_allows(mean: float, std: float | None, text: str) -> None:
    assert format_mean_std(mean, std) == text


def test_results_table_round_trips_its_provenance_and_bolds_only_significant_wins(tmp_path: Path) -> None:
    groups = _runs(tmp_path, {"baseline": [0.70, 0.71, 0.69], "method": [0.80, 0.82, 0.81], "single": [0.99]})
    result = results_table(
        _ws(tmp_path), lambda: None, ["val_acc", "train_loss"], "Accuracy (\\%) over 3 seeds.", "main", groups=groups
    )
    tex = (tmp_path / "paper/tables/main.tex").read_text()
    assert result.path == "paper/tables/main.tex" and CELL_MARKER not in result.latex and CELL_MARKER in tex
    assert [line for line in tex.splitlines() if r"\caption" in line] == [
        line for line in result.latex.splitlines() if r"\caption" in line
    ]
    header, cells = parse_provenance(tex)
    assert header == {"label": "main", "metrics": ["val_acc", "train_loss"], "groups": ["baseline", "method", "single"],
                      "use": "last", "alpha": 0.05}  # fmt: skip
    told = [(n.group, n.metric, n.n, n.mean, n.std, n.bold, n.sources or result.runs[n.group]) for n in result.numbers]

    def near(x: float | None) -> object:
        return None if x is None else pytest.approx(x, rel=1e-11)

    assert told == [(c.group, c.metric, c.n, near(c.mean), near(c.std), c.bold, c.sources) for c in cells]
    baseline, method = result.numbers[0], result.numbers[2]  # 0.6999999999999998 and 0.009999999999999953 in the file
    assert len(cells) == 6 and (baseline.mean, method.std) == (0.7, 0.01) != (cells[0].mean, cells[2].std)
    assert result.runs == groups and all(n.sources is None for n in result.numbers)  # each group's runs told once
    assert all(c.printed in result.latex for c in cells)
    by_key = {(c.group, c.metric): c for c in cells}
    method = by_key[("method", "val_acc")]
    assert method.values == [0.80, 0.82, 0.81] and method.sources == groups["method"] and method.n == 3
    assert method.mean == pytest.approx(0.81) and method.stat == "mean_std"
    assert method.files == [f"{g}/metrics.jsonl" for g in groups["method"]]
    assert method.printed == r"$0.810 \pm 0.010$" and not method.bold  # 'single' has the best mean, but one run
    assert by_key[("single", "val_acc")].stat == "value" and by_key[("single", "val_acc")].printed == "$0.9900$"
    for cell in cells:  # every number printed is the one in its comment, rounded
        assert cell.mean is not None and cell.printed.strip("$").startswith(format_mean_std(cell.mean, cell.std)[:4])
    assert "\\toprule" in tex and "val\\_acc ($\\uparrow$)" in tex and "train\\_loss ($\\downarrow$)" in tex
    two = results_table(
        _ws(tmp_path), lambda: None, ["val_acc"], "c", "two", groups={k: groups[k] for k in ("baseline", "method")}
    )
    assert [n.bold for n in two.numbers] == [False, True] and "$\\mathbf{0.810" in two.latex


def test_a_number_over_other_runs_than_its_group_names_them_unless_the_answer_would_be_long(tmp_path: Path) -> None:
    groups = _runs(tmp_path, {"a": [0.5, 0.6, 0.7]})
    (tmp_path / "results" / "a_s2" / "metrics.jsonl").write_text('{"step": 1, "val_acc": 0.7}\n')  # no train_loss
    result = results_table(_ws(tmp_path), lambda: None, ["val_acc", "train_loss"], "c", "t", groups=groups)
    assert result.runs == {"a": groups["a"]}
    assert [(n.metric, n.n, n.sources) for n in result.numbers] == [
        ("val_acc", 3, None), ("train_loss", 2, groups["a"][:2])
    ]  # fmt: skip
    assert parse_provenance((tmp_path / "paper/tables/t.tex").read_text())[1][1].sources == groups["a"][:2]
    many = _runs(tmp_path, {"b": [0.5] * 30})
    (tmp_path / "results" / "b_s0" / "metrics.jsonl").write_text('{"step": 1, "val_acc": 0.5}\n')
    short = results_table(_ws(tmp_path), lambda: None, ["val_acc", "train_loss"], "c", "u", groups=many, max_chars=1600)
    assert [n.sources for n in short.numbers] == [None, None] and short.runs == many
    assert "in their comments in the file" in short.notes[1]
    assert parse_provenance((tmp_path / "paper/tables/u.tex").read_text())[1][1].sources == many["b"][1:]


def test_results_table_marks_a_group_without_the_metric_and_refuses_bad_labels(tmp_path: Path) -> None:
    groups = _runs(tmp_path, {"a": [0.5, 0.6]})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "m.csv").write_text("step,f1\n0,0.3\n")
    result = results_table(_ws(tmp_path), lambda: None, ["val_acc"], "c", "t", groups={**groups, "b": ["other"]})
    _, cells = parse_provenance((tmp_path / "paper/tables/t.tex").read_text())
    assert [c.stat for c in cells] == ["mean_std", "missing"] and cells[1].printed == "--"
    assert [(n.n, n.mean, n.sources) for n in result.numbers][1] == (0, None, None) and result.runs["b"] == []
    with pytest.raises(BadInputError, match="label"):
        results_table(_ws(tmp_path), lambda: None, ["val_acc"], "c", "../x", groups=groups)


@pytest.mark.latex
def test_results_table_compiles_with_pdflatex(tmp_path: Path) -> None:
    groups = _runs(tmp_path, {"base_line": [0.70, 0.71, 0.69], "method & co": [0.80, 0.82, 0.81]})
    results_table(_ws(tmp_path), lambda: None, ["val_acc", "train_loss"], "Results, 3 seeds.", "main", groups=groups)
    paper = tmp_path / "paper"
    (paper / "main.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{tables/main.tex}\n"
        "Table~\\ref{tab:main}.\n\\end{document}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "main.tex"],
        cwd=paper, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert (paper / "main.pdf").stat().st_size > 1000
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "main.tex"],
        cwd=paper, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "undefined" not in done.stdout.lower()


def test_describe_of_one_value_has_no_spread() -> None:
    assert describe([3.0]).std is None and describe([1.0, 3.0]).std == pytest.approx(math.sqrt(2))


def test_ai_scientist_per_seed_lists_compare_as_samples_against_scipy() -> None:
    folder = fixtures_dir("logs") / "ai-scientist" / "multi_style_adapter"
    metric = "shakespeare_char.final_info_dict.best_val_loss"
    groups = {"baseline": ["run_0/final_info.json"], "method": ["run_1/final_info.json"]}
    result = compare_runs(Workspace(folder.resolve(), "setting"), lambda: None, metric, groups=groups, use="all")
    raw = {
        g: json.loads((folder / paths[0]).read_text())["shakespeare_char"]["final_info_dict"]["best_val_loss"]
        for g, paths in groups.items()
    }
    assert [g.values for g in result.groups] == [raw["baseline"], raw["method"]]
    expected = lib("scipy.stats").ttest_ind(raw["baseline"], raw["method"], equal_var=False)
    [test] = result.tests
    assert test.p == pytest.approx(expected.pvalue) and test.t == pytest.approx(expected.statistic)
    assert result.direction == "min" and result.best_group == "baseline"
