"""The paper audit on small papers written here and runs recorded in a real store: numbers, claims, hygiene."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from research_mcp.config import Settings
from research_mcp.store import Store
from research_mcp.tools.metrics import RunBook, compare_runs, results_table
from research_mcp.tools.metrics.stored import load_comparisons, store_comparison
from research_mcp.tools.review._trace import Evidence, EvidenceIndex, Shown
from research_mcp.tools.review.audit import AuditResult, Finding, audit_paper
from research_mcp.workspace import Workspace
from tests.integration.test_metrics_tools import record_runs

DOC = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
END = "\\section{Limitations}\nOne dataset only.\n\\end{document}\n"


@pytest.fixture
def store(workspace: Path) -> Iterator[Store]:
    found = Store(workspace / ".research" / "state.db")
    yield found
    found.close()


def write_paper(workspace: Path, body: str, *, name: str = "main.tex", bib: str | None = None) -> str:
    (workspace / "paper").mkdir(exist_ok=True)
    (workspace / "paper" / name).write_text(DOC + body + END)
    if bib is not None:
        (workspace / "paper" / "references.bib").write_text(bib)
    return f"paper/{name}"


def audit(workspace: Path, store: Store, main: str = "paper/main.tex", **kwargs: Any) -> AuditResult:
    settings = kwargs.pop("settings", None) or Settings(workspace=workspace)
    ws = Workspace(workspace.resolve(), "setting")
    kwargs.setdefault("verify_citations", False)
    kwargs.setdefault("max_chars", 10**7)
    return anyio.run(lambda: audit_paper(ws, store, settings, main, **kwargs))


def codes(result: AuditResult) -> list[str]:
    return [f.code for f in result.findings]


def only(result: AuditResult, code: str) -> list[Finding]:
    return [f for f in result.findings if f.code == code]


def test_numbers_trace_by_value_at_the_precision_shown_and_a_made_up_one_is_named_with_its_line(
    workspace: Path, store: Store
) -> None:
    ids = record_runs(workspace, {"baseline": [0.7, 0.72, 0.71], "method": [0.91, 0.912, 0.915]})
    main = write_paper(
        workspace,
        "\\section{Results}\nOur method reaches 0.912 accuracy, that is 91.2\\%.\n"
        "On the hard split it reaches 0.873.\n"
        "Over three seeds the method scores $0.9123 \\pm 0.0025$.\n",
    )
    result = audit(workspace, store, main)
    [made_up] = only(result, "untraced_number")
    assert (made_up.file, made_up.line, made_up.severity) == ("paper/main.tex", 6, "blocking")
    assert "0.873" in made_up.evidence and "closest recorded value" in made_up.evidence
    traced = {t.text: t for t in result.traced_numbers}
    assert set(traced) == {"0.912", "91.2%", "0.9123", "0.0025"}
    assert traced["0.912"].how == "metric" and traced["0.912"].runs and set(traced["0.912"].runs) <= set(ids["method"])
    assert traced["0.912"].files[0].startswith("runs/") and traced["0.912"].line == 5
    assert set(traced["0.9123"].runs) == set(ids["method"]), "the mean over the label's runs"
    assert "mean of val_acc" in traced["0.9123"].what and "std of" in traced["0.0025"].what
    assert (result.numbers, result.traced, result.untraced) == (5, 4, 1)
    assert result.counts["numbers"] == 1


def test_years_section_numbers_citations_names_and_the_preamble_are_not_results(workspace: Path, store: Store) -> None:
    (workspace / "paper").mkdir()
    (workspace / "paper" / "main.tex").write_text(
        "\\documentclass{article}\n\\setlength{\\parskip}{0.37em}\n\\newcommand{\\x}{0.4242}\n"
        "\\lstnewenvironment{output}[1][]{}{}\n\\begin{document}\n"
        "\\begin{output}\nloss 0.5555\n\\begin{table}\\label{t:out}\\end{table} TODO\n\\end{output}\n"
        "\\begin{verbatim}\nacc 0.6666 \\ref{nowhere}\n\\end{verbatim}\n"
        "\\section{Intro}\nIn 2016, ResNet-50 reached 76.15\\% top-1 \\citep{he2016}.\n"
        "As Section~3 and Eq.~(12) show, Table 14 holds 3 runs.\n"
        "\\includegraphics[width=0.45\\linewidth]{x}\n"
        "Earlier work \\cite{a} gives 0.8123 here.\n" + END
    )
    result = audit(workspace, store)
    assert result.numbers == 0, [f.evidence for f in only(result, "untraced_number")]
    assert {f.code for f in result.findings} == {"undefined_cite", "missing_figure"}, (
        "a listing's table, ref and to-do are code"
    )
    results = write_paper(
        workspace,
        "The baseline 0.7121 and our setup. 0.8123 are results, and so is 0.9123 in accuracy.\n"
        "The column is 3.5in wide; 2.5 em dashes.\n",
        name="results.tex",
    )
    untraced = [f.evidence.split(" ")[0] for f in only(audit(workspace, store, results), "untraced_number")]
    assert untraced == ["0.7121", "0.8123", "0.9123", "2.5"]


def test_a_results_table_traces_through_its_provenance_and_an_edited_cell_does_not(
    workspace: Path, store: Store
) -> None:
    ids = record_runs(workspace, {"baseline": [0.7, 0.72, 0.71], "method": [0.91, 0.912, 0.915]})
    ws = Workspace(workspace.resolve(), "setting")
    results_table(ws, lambda: RunBook(store), ["val_acc"], "Accuracy.", "main", labels=["baseline", "method"])
    main = write_paper(workspace, "Table~\\ref{tab:main} has the results.\n\\input{tables/main}\n")
    result = audit(workspace, store, main, runs=[])  # no run to match by value: only the comments can trace
    assert result.untraced == 0 and result.traced == 4
    assert {t.how for t in result.traced_numbers} == {"provenance"}
    method = [t for t in result.traced_numbers if t.text == "0.9123"]
    assert method and set(method[0].runs) == set(ids["method"]) and method[0].file == "paper/tables/main.tex"
    table = workspace / "paper" / "tables" / "main.tex"
    table.write_text(table.read_text().replace("0.9123 \\pm", "0.9523 \\pm"))
    edited = audit(workspace, store, main, runs=[])
    [finding] = only(edited, "untraced_number")
    assert finding.file == "paper/tables/main.tex" and "provenance comment says" in finding.evidence
    assert "0.9123" in finding.evidence


def test_a_p_value_and_an_effect_size_trace_to_a_stored_comparison(workspace: Path, store: Store) -> None:
    record_runs(workspace, {"baseline": [0.7, 0.72, 0.71], "method": [0.91, 0.912, 0.915]})
    ws = Workspace(workspace.resolve(), "setting")
    compared = compare_runs(ws, lambda: RunBook(store), "val_acc", labels=["baseline", "method"])
    cid = store_comparison(store, compared)
    assert store_comparison(store, compared) == cid and [c.id for c in load_comparisons(store)] == [cid]
    [test] = compared.tests
    assert test.p is not None and test.hedges_g is not None
    p, g = f"{test.p:.2g}", f"{abs(test.hedges_g):.2f}"
    main = write_paper(
        workspace,
        f"The method is significantly better (Welch's t-test, $p = {p}$, $p < 0.01$, Hedges' $g = {g}$).\n"
        "The method is better, $p < 0.00000001$.\n",
    )
    result = audit(workspace, store, main)
    traced = {t.text: t for t in result.traced_numbers}
    assert traced[p].how == "comparison" and f"comparison {cid}" in traced[p].what
    assert traced["0.01"].how == "comparison" and traced[g].how == "comparison"
    assert [f.evidence.split(" ")[0] for f in only(result, "untraced_number")] == ["0.00000001"]
    assert not only(result, "untested_claim") and not only(result, "one_seed_claim")


def test_a_hyperparameter_traces_to_the_run_configs(workspace: Path, store: Store) -> None:
    ids = record_runs(workspace, {"method": [0.91, 0.912]})
    main = write_paper(workspace, "We train with a learning rate of 0.10 and 4096 hidden units.\n")
    result = audit(workspace, store, main)
    [lr] = [t for t in result.traced_numbers if t.text == "0.10"]
    assert lr.how == "config" and set(lr.runs) == set(ids["method"]) and "config lr" in lr.what
    assert [f.evidence.split(" ")[0] for f in only(result, "untraced_number")] == ["4096"]
    record_runs(workspace, {"sweep": [0.5 + i / 100 for i in range(12)]})
    counted = audit(workspace, store, write_paper(workspace, "Over 12 seeds.\n", name="n.tex"))
    assert [(t.text, t.how, t.what) for t in counted.traced_numbers] == [("12", "config", "12 runs labelled 'sweep'")]


def test_the_chance_trace_rate_is_counted_and_coarse_matches_are_weak(workspace: Path, store: Store) -> None:
    record_runs(workspace, {"method": [0.91, 0.912, 0.915]})
    main = write_paper(workspace, "We reach 0.9 and, more precisely, 0.912.\n")
    result = audit(workspace, store, main)
    weak = {t.text: t.weak for t in result.traced_numbers}
    assert weak == {"0.9": True, "0.912": False}
    # val_acc: last, max; min 0; the series' points 0.25x .. 0.75x; loss 1 - x; means and stds; lr 0.1; seeds
    assert result.chance_trace_rate["3 decimals"] < 0.05 < result.chance_trace_rate["1 decimal"]
    assert result.weak == 1
    assert audit(workspace, store, main).chance_trace_rate == result.chance_trace_rate


def test_claims_without_a_test_and_claims_from_one_seed(workspace: Path, store: Store) -> None:
    record_runs(workspace, {"baseline": [0.7], "method": [0.91]})
    main = write_paper(workspace, "Our method reaches 0.91 and significantly outperforms the baseline.\n")
    [claim] = only(audit(workspace, store, main), "one_seed_claim")
    assert (claim.file, claim.line) == ("paper/main.tex", 4) and "one run" in claim.evidence
    record_runs(workspace, {"baseline": [0.7, 0.72], "method": [0.91, 0.912]})
    again = audit(workspace, store, main, runs=None)
    untested = only(again, "untested_claim")
    assert [(f.line, f.evidence.split(" with")[0]) for f in untested] == [(4, "'significantly', 'outperforms'")]
    tested = write_paper(workspace, "It reaches 0.91, significantly better (Welch t-test).\n", name="t.tex")
    assert not {"untested_claim", "one_seed_claim"} & set(codes(audit(workspace, store, tested)))


def test_structure_defects_name_their_file_and_line(workspace: Path, store: Store) -> None:
    (workspace / "paper" / "figures").mkdir(parents=True)
    (workspace / "paper" / "figures" / "ok.pdf").write_bytes(b"%PDF-1.4\n")
    (workspace / "paper" / "sec.tex").write_text(
        "\\section{Method}\\label{sec:m}\nSee Figure~\\ref{fig:ok} and \\ref{fig:gone}.\n"
        "\\begin{figure}\\includegraphics{figures/ok}\\caption{A}\\label{fig:ok}\\end{figure}\n"
        "\\begin{figure}\n\\includegraphics{figures/missing}\\caption{B}\\label{fig:b}\\end{figure}\n"
        "\\begin{table}\\caption{C}\\label{sec:m}\\end{table}\n"
    )
    main = write_paper(workspace, "\\input{sec}\n")
    result = audit(workspace, store, main)
    found = {(f.code, f.file, f.line) for f in result.findings if f.kind == "structure"}
    assert found == {
        ("undefined_ref", "paper/sec.tex", 2),
        ("missing_figure", "paper/sec.tex", 4),
        ("unreferenced_float", "paper/sec.tex", 4),
        ("unreferenced_float", "paper/sec.tex", 6),
        ("duplicate_label", "paper/sec.tex", 6),
    }
    assert "paper/sec.tex:1, paper/sec.tex:6" in only(result, "duplicate_label")[0].evidence


def test_hygiene_limitations_placeholders_and_the_page_limit(workspace: Path, store: Store) -> None:
    from pypdf import PdfWriter

    (workspace / "paper").mkdir()
    (workspace / "paper" / "main.tex").write_text(
        DOC + "\\section{Results}\nWe gain XX\\% over it. TODO: rerun.\nSee ?? and lorem ipsum [citation needed].\n"
        "% TODO in a comment is not printed\n\\end{document}\n"
    )
    writer = PdfWriter()
    for _ in range(3):
        writer.add_blank_page(612, 792)
    with open(workspace / "paper" / "main.pdf", "wb") as handle:
        writer.write(handle)
    result = audit(workspace, store, page_limit=2)
    assert [(f.code, f.line) for f in result.findings if f.kind == "hygiene"] == [
        ("page_limit", 1), ("placeholder_text", 5), ("placeholder_text", 6), ("no_limitations", 8),
    ]  # fmt: skip
    assert "3 pages; the limit is 2" in only(result, "page_limit")[0].evidence
    assert not only(audit(workspace, store, page_limit=3), "page_limit")
    assert not only(audit(workspace, store, settings=Settings(workspace=workspace, page_limit=3)), "page_limit")
    assert only(audit(workspace, store, settings=Settings(workspace=workspace, page_limit=1)), "page_limit")


def test_placeholder_code_in_the_runs_behind_the_numbers_is_found_once(workspace: Path, store: Store) -> None:
    ids = record_runs(workspace, {"method": [0.91, 0.912, 0.915]})
    for run_id in ids["method"]:
        (workspace / "runs" / run_id / "code" / "model.py").write_text(
            '"""Model."""\n\n\ndef forward(x):\n    """Doc."""\n    pass\n\n\ndef loss(x):\n'
            "    raise NotImplementedError\n\n\ndef fine(x):\n    return x  # TODO: tune\n"
        )
    main = write_paper(workspace, "We reach 0.912.\n")
    found = only(audit(workspace, store, main), "placeholder_code")
    assert [(str(f.file).split("/")[-1], f.line) for f in found] == [
        ("model.py", 4),
        ("model.py", 10),
        ("model.py", 14),
    ]
    assert all(str(f.file).startswith("runs/") and "(the same file in 3 runs)" in f.evidence for f in found)
    unrelated = write_paper(workspace, "Nothing measured here.\n", name="other.tex")
    assert not only(audit(workspace, store, unrelated), "placeholder_code")


def test_missing_entries_and_a_paper_with_no_bibliography(workspace: Path, store: Store) -> None:
    bib = "@article{known, title={A Known Paper}, author={Doe, J.}, year={2020}}\n"
    main = write_paper(workspace, "As shown \\cite{known,unknown}.\n\\bibliography{references}\n", bib=bib)
    [missing] = only(audit(workspace, store, main), "missing_entry")
    assert (missing.file, missing.line, missing.kind) == (
        "paper/main.tex",
        4,
        "citations",
    ) and "unknown" in missing.evidence
    log = workspace / "paper" / ".build" / "main.log"
    log.parent.mkdir()
    log.write_text("LaTeX Warning: Citation `known' on page 1 undefined on input line 4.\n")
    [left] = only(audit(workspace, store, main), "undefined_cite")
    assert (left.file, left.line) == ("paper/main.tex", 4) and "last compile" in left.evidence
    os.utime(log, (1, 1))  # the paper changed since that compile: its log says nothing of it now
    assert not only(audit(workspace, store, main), "undefined_cite")
    bare = write_paper(workspace, "As shown \\cite{known}.\n", name="bare.tex")
    [undefined] = only(audit(workspace, store, bare), "undefined_cite")
    assert undefined.kind == "structure" and "no bibliography" in undefined.evidence


def test_offline_citations_are_not_verified_and_only_the_first_is_waited_for(workspace: Path, store: Store) -> None:
    bib = "".join(
        f"@article{{k{i}, title={{Paper number {i}}}, author={{Doe, J.}}, year={{2020}}}}\n" for i in range(6)
    )
    main = write_paper(workspace, "Cited \\cite{k0,k1,k2,k3,k4,k5}.\n\\bibliography{references}\n", bib=bib)
    closed = "http://127.0.0.1:9"
    settings = Settings(workspace=workspace, arxiv_url=closed + "/api/query", s2_url=closed, literature_timeout_s=1,
                        arxiv_interval_s=0, s2_interval_s=0)  # fmt: skip
    began = time.monotonic()
    result = audit(workspace, store, main, settings=settings, verify_citations=True)
    elapsed = time.monotonic() - began
    found = only(result, "citation_not_checked")
    assert len(found) == 6 and all(f.severity == "info" and f.line == 4 for f in found)
    assert all("not verified: " in f.evidence and "unreachable" in f.evidence for f in found)
    assert result.citations_checked == 0 and result.citations_verified == 0
    assert elapsed < 20, f"six entries offline took {elapsed:.1f} s: one wait, not six"


def test_the_audit_is_the_same_twice_is_stored_and_pages_through_every_item(workspace: Path, store: Store) -> None:
    record_runs(workspace, {"baseline": [0.7, 0.72, 0.71], "method": [0.91, 0.912, 0.915]})
    body = "".join(f"Run {i} gives 0.{910 + i} and 0.{500 + i}1.\n" for i in range(40))
    main = write_paper(workspace, "\\section{Results}\n" + body)
    first, second = audit(workspace, store, main), audit(workspace, store, main)
    assert first.model_dump() == second.model_dump()
    rows = store.connection().execute("SELECT id, main, paper_hash, data FROM audits").fetchall()
    assert [(r["id"], r["main"], r["paper_hash"]) for r in rows] == [(first.audit_id, main, first.paper_hash)]
    assert json.loads(rows[0]["data"])["findings"] == [f.model_dump(mode="json") for f in first.findings]
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = audit(workspace, store, main, offset=offset, max_chars=3000)
        assert len(page.model_dump_json()) < 3000 + 1500
        seen += [f"{f.file}:{f.line}:{f.code}" for f in page.findings]
        seen += [f"{t.file}:{t.line}:{t.text}" for t in page.traced_numbers]
        offset = page.next_offset
    assert seen == [f"{f.file}:{f.line}:{f.code}" for f in first.findings] + [
        f"{t.file}:{t.line}:{t.text}" for t in first.traced_numbers
    ]
    write_paper(workspace, "\\section{Results}\n" + body + "One more: 0.1234.\n")
    assert audit(workspace, store, main).paper_hash != first.paper_hash


def test_the_exact_chance_rate_is_what_seeded_random_numbers_of_that_precision_measure() -> None:
    rng = random.Random(20261207)
    values = [rng.uniform(0, 1) for _ in range(300)] + [rng.uniform(0, 100) for _ in range(50)]
    index = EvidenceIndex([Evidence(v, "metric", ("r",), ("f",), "x") for v in values])
    for text, decimals in (("0.123", 3), ("0.12", 2), ("12.3", 1), ("45.6%", 1), ("-0.5", 1)):
        shown = Shown(float(text.rstrip("%")), decimals, text.endswith("%"))
        exact = index.chance_rate(shown)
        low = 10.0**shown.decade
        draws = [math.copysign(round(rng.uniform(low, 10 * low), decimals), shown.value) for _ in range(2000)]
        hits = sum(bool(index.matches(Shown(d, decimals, shown.percent), "metric")) for d in draws)
        assert abs(hits / 2000 - exact) < 0.03, (text, exact, hits / 2000)
    one = EvidenceIndex([Evidence(0.5, "metric", ("r",), ("f",), "x")])
    assert one.chance_rate(Shown(0.123, 3, False)) == pytest.approx(1 / 900)  # 0.500 of 0.100 .. 0.999
    assert one.chance_rate(Shown(12.3, 1, True)) == pytest.approx(1 / 900)  # 0.5 x 100 = 50.0 of 10.0 .. 99.9
    assert one.chance_rate(Shown(1.23, 2, False)) == 0  # neither 0.50 nor 50.00 is in 1.00 .. 9.99
    assert one.chance_rate(Shown(51.0, 0, True)) == pytest.approx(1 / 90)  # 0.5 x 100 = 50 of 10 .. 99


def test_a_claim_quoting_a_number_of_a_one_run_configuration_is_a_one_seed_claim(workspace: Path, store: Store) -> None:
    record_runs(workspace, {"baseline": [0.7, 0.72, 0.71], "method": [0.91, 0.912, 0.915], "ablation": [0.8836]})
    main = write_paper(
        workspace,
        "The method reaches 0.912, significantly better than the baseline (Welch t-test).\n"
        "A single run without the gate reaches 0.8836. The ablation significantly outperforms the baseline.\n"
        "The ablation, at 0.8836, is significantly better than the baseline.\n"
        "The ablation beats the baseline with statistical significance, reaching $0.8836$.\n",
    )
    found = only(audit(workspace, store, main), "one_seed_claim")
    assert [f.line for f in found] == [6, 7], "the claim's own sentence quotes the one-run number"
    assert all("0.8836 comes from a configuration with one run" in f.evidence for f in found)


def test_a_spread_after_plus_minus_must_come_from_the_runs_of_its_mean(workspace: Path, store: Store) -> None:
    record_runs(workspace, {"baseline": [0.7, 0.72, 0.71], "method": [0.91, 0.912, 0.915]})
    # the baseline's std over its three runs is 0.0100, the method's 0.0025
    main = write_paper(
        workspace,
        "The method scores $0.9123 \\pm 0.0025$ and the baseline $0.7100 \\pm 0.0100$.\n"
        "Edited, the method's spread reads $0.9123 \\pm 0.0100$.\n",
    )
    result = audit(workspace, store, main)
    [edited] = only(result, "untraced_number")
    assert (edited.line, edited.evidence.split(" ")[0]) == (5, "0.0100")
    assert "spread of 0.9123" in edited.evidence
    assert result.traced == 5


def test_run_ids_set_as_code_and_the_level_of_a_band_are_not_results(workspace: Path, store: Store) -> None:
    record_runs(workspace, {"method": [0.91, 0.912, 0.915]})
    main = write_paper(
        workspace,
        "Run \\texttt{20261207-181237-688aaf} ends at 0.912; see \\url{https://example.org/424242}.\n"
        "The mean over seeds with a 95\\% band, and 0.4711 is not recorded.\n",
    )
    result = audit(workspace, store, main)
    assert [f.evidence.split(" ")[0] for f in only(result, "untraced_number")] == ["0.4711"]
    assert result.numbers == 2


def test_placeholder_text_in_other_forms(workspace: Path, store: Store) -> None:
    main = write_paper(
        workspace,
        "\\section{Results}\nThe gain is [Insert results here.] as shown.\nSee [ citation  needed ] for it.\n"
        "Done by TBA. \\lipsum[1]\nLOREM IPSUM dolor sit amet.\n"
        "We add a bracket [see above] and insertion sort, and nothing is missing here.\n",
    )
    found = only(audit(workspace, store, main), "placeholder_text")
    assert [f.line for f in found] == [5, 6, 7, 8]
    assert "instruction left in brackets" in found[0].evidence


def test_placeholder_comments_and_markers_in_other_languages_of_the_runs_code(workspace: Path, store: Store) -> None:
    ids = record_runs(workspace, {"method": [0.91, 0.912, 0.915]})
    for run_id in ids["method"]:
        code = workspace / "runs" / run_id / "code"
        (code / "loss.py").write_text(
            "def loss_of(x):\n    return 0.0  # placeholder loss until the real one works\n\n\n"
            "def safe(x):\n    try:\n        return 1 / x\n    except ZeroDivisionError:\n        pass\n"
            "    placeholder = x  # the input\n    return placeholder\n"
        )
        (code / "kernel.cu").write_text("__global__ void k() {\n  // XXX: wrong stride\n  int placeholder = 0;\n}\n")
    main = write_paper(workspace, "We reach 0.912.\n")
    found = only(audit(workspace, store, main), "placeholder_code")
    assert [(str(f.file).split("/")[-1], f.line) for f in found] == [("kernel.cu", 2), ("loss.py", 2)]


def test_interfaces_and_unsupported_options_in_the_runs_code_are_not_placeholders(
    workspace: Path, store: Store
) -> None:
    ids = record_runs(workspace, {"method": [0.91, 0.912, 0.915]})
    for run_id in ids["method"]:
        (workspace / "runs" / run_id / "code" / "heads.py").write_text(
            "from typing import Protocol\n\n\nclass Head:\n    def forward(self, x):\n"
            "        raise NotImplementedError\n\n    def on_step(self):\n        pass\n\n\n"
            "class Gated(Head):\n    def forward(self, x):\n        return x\n\n    def on_step(self):\n"
            "        return None\n\n    def backward(self, x):\n        raise NotImplementedError('later')\n\n\n"
            "class Sized(Protocol):\n    def size(self) -> int: ...\n\n\n"
            "def optimiser(name):\n    if name == 'sgd':\n        return 1\n"
            "    raise_it = name\n    if raise_it:\n        raise NotImplementedError(name)\n\n\n"
            "def todo(x):\n    ...\n"
        )
    main = write_paper(workspace, "We reach 0.912.\n")
    found = only(audit(workspace, store, main), "placeholder_code")
    assert [(f.line, f.evidence.split("code ")[1].split(" (")[0]) for f in found] == [
        (20, "backward() raises NotImplementedError"),
        (35, "function todo() has only a placeholder body"),
    ]
