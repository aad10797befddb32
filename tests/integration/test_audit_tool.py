"""audit_paper through a real MCP client session: a paper made end to end with the lab's tools audits clean; the
defects of a paper are found with file:line; the real fixture papers audit without a crash; offline citations."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest
from mcp import Client

from research_mcp.server import build_server
from research_mcp.store import Store
from tests.conftest import fixtures_dir, open_for_sandbox
from tests.integration._client import call, error_text
from tests.integration.test_literature_citations import known_papers
from tests.integration.test_literature_tools import (  # the fixtures, shared by import
    _fast_backoff,
    lit,
    lit_settings,
    server,
)
from tests.integration.test_metrics_tools import record_runs
from tests.integration.test_run_answers import answer
from tests.replay import ReplayServer

pytestmark = pytest.mark.anyio
__all__ = ["_fast_backoff", "lit", "server"]  # fixtures


def stored_findings(workspace: Path, audit_id: str) -> list[dict[str, object]]:
    store = Store(workspace / ".research" / "state.db")
    try:
        row = store.connection().execute("SELECT data FROM audits WHERE id = ?", (audit_id,)).fetchone()
    finally:
        store.close()
    findings: list[dict[str, object]] = json.loads(row["data"])["findings"]
    return findings


async def test_a_paper_made_from_real_runs_with_the_tools_has_no_untraced_number_and_no_unverified_citation(
    lit: Client, server: ReplayServer, workspace: Path
) -> None:
    known_papers(server)
    record_runs(workspace, {"baseline": [0.70, 0.72, 0.71], "method": [0.91, 0.912, 0.915]})
    labels = {"labels": ["baseline", "method"]}
    table = await call(lit, "results_table", {"metrics": ["val_acc"], "caption": "Validation accuracy.",
                                              "label": "main", **labels})  # fmt: skip
    plot = await call(lit, "plot_metrics", {"metrics": ["val_acc"], "kind": "bar", "name": "acc",
                                            "groups": {"baseline": table["runs"]["baseline"],
                                                       "method": table["runs"]["method"]}})  # fmt: skip
    compared = await call(lit, "compare_runs", {"metric": "val_acc", **labels})
    assert compared["comparison_id"].startswith("cmp-")
    cited = await call(lit, "cite", {"paper_ids": ["arXiv:1412.6980", "10.1038/nature14539"]})
    [method] = [g for g in compared["groups"] if g["name"] == "method"]
    [test] = compared["tests"]
    caption = plot["caption"].replace("%", "\\%")  # plain text: a bare % would comment out the rest of the line
    figure = Path(plot["pdf"]).relative_to("paper").with_suffix("").as_posix()
    (workspace / "paper" / "main.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n"
        "\\section{Results}\n"
        f"We train with Adam \\cite{{{cited['keys'][0]}}}, as deep networks are \\cite{{{cited['keys'][1]}}}.\n"
        f"The method reaches {method['mean']:.3f} ($\\pm$ {method['std']:.4f}) validation accuracy, "
        f"{100 * method['mean']:.1f}\\% (Table~\\ref{{tab:main}}, Figure~\\ref{{fig:acc}}).\n"
        f"It is significantly better than the baseline (Welch's t-test, $p = {test['p']:.2g}$, "
        f"Hedges' $g = {abs(test['hedges_g']):.2f}$).\n"
        "\\input{tables/main}\n"
        f"\\begin{{figure}}\\includegraphics{{{figure}}}\\caption{{{caption}}}\\label{{fig:acc}}\\end{{figure}}\n"
        "\\section{Limitations}\nOne small dataset.\n"
        "\\bibliographystyle{plain}\n\\bibliography{references}\n\\end{document}\n"
    )
    audit = await call(lit, "audit_paper", {})
    assert audit["untraced"] == 0, audit["findings"]
    assert audit["main"] == "paper/main.tex" and audit["numbers"] >= 9
    assert audit["findings"] == [], audit["findings"]
    assert audit["citations_checked"] == audit["citations_verified"] == 2
    by_how = {t["how"] for t in audit["traced_numbers"]}
    assert by_how == {"provenance", "metric", "comparison"}
    p_value = next(t for t in audit["traced_numbers"] if t["text"] == f"{test['p']:.2g}")
    assert compared["comparison_id"] in p_value["what"] and sorted(p_value["runs"]) == sorted(
        table["runs"]["baseline"] + table["runs"]["method"]
    )
    again = await call(lit, "audit_paper", {})
    assert again == audit, "the same answer every time"


async def test_each_defect_is_found_with_its_file_and_line(lit: Client, server: ReplayServer, workspace: Path) -> None:
    known_papers(server)
    ids = record_runs(workspace, {"method": [0.91]})
    (workspace / "runs" / ids["method"][0] / "code" / "train.py").write_text("def step():\n    pass\n")
    (workspace / "paper").mkdir()
    (workspace / "paper" / "references.bib").write_text(
        "@article{fake, title={A Paper Nobody Wrote}, author={Nobody, A.}, year={2021}}\n"
    )
    (workspace / "paper" / "main.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\n\\section{Results}\\label{sec:r}\n"
        "We reach 0.91, and 0.97 on the test set (Figure~\\ref{fig:none}).\n"
        "Our method is state of the art \\cite{fake, ghost}.\n"
        "\\begin{figure}\\includegraphics{figures/absent}\\caption{X}\\label{sec:r}\\end{figure}\n"
        "Gains of XX\\% remain.\n"
        "\\bibliography{references}\n\\end{document}\n"
    )
    audit = await call(lit, "audit_paper", {"runs": ids["method"]})
    found = {(f["code"], f["file"], f["line"]) for f in audit["findings"]}
    expected = {
        ("untraced_number", "paper/main.tex", 4), ("undefined_ref", "paper/main.tex", 4),
        ("one_seed_claim", "paper/main.tex", 5), ("missing_entry", "paper/main.tex", 5),
        ("unverified_citation", "paper/main.tex", 5), ("missing_figure", "paper/main.tex", 6),
        ("duplicate_label", "paper/main.tex", 6), ("unreferenced_float", "paper/main.tex", 6),
        ("placeholder_text", "paper/main.tex", 7), ("no_limitations", "paper/main.tex", 9),
        ("placeholder_code", f"runs/{ids['method'][0]}/code/train.py", 1),
    }  # fmt: skip
    assert found == expected
    assert audit["counts"] == {"numbers": 1, "citations": 2, "structure": 4, "claims": 1, "hygiene": 3}
    assert audit["traced"] == 1 and audit["traced_numbers"][0]["runs"] == ids["method"]
    assert "../x.tex" in error_text(await lit.call_tool("audit_paper", {"main": "../x.tex"}))
    assert "not a .tex" in error_text(await lit.call_tool("audit_paper", {"main": "paper/references.bib"}))


async def test_the_real_fixture_papers_audit_with_file_and_line_for_every_finding_and_offline_citations(
    lit: Client, server: ReplayServer, workspace: Path
) -> None:
    source = fixtures_dir("latex")
    shutil.copytree(source, workspace / "fixtures")
    server.stop()
    mains = {
        "ai-scientist_multi_style_adapter/latex/template.tex": 20,
        "data-to-paper_diabetes_clickable_001/paper.tex": 100,
        "data-to-paper_congress_twitter_open_goal_accum_0/paper.tex": 30,
    }
    for main, least in mains.items():
        began = time.monotonic()
        audit = await call(lit, "audit_paper", {"main": f"fixtures/{main}"}, timeout_s=50)
        assert time.monotonic() - began < 30
        assert audit["untraced"] >= least and audit["traced"] == 0, "no run in the workspace: nothing traces"
        findings = stored_findings(workspace, audit["audit_id"])
        assert len(findings) == sum(audit["counts"].values())
        assert all(f["file"] and isinstance(f["line"], int) and f["line"] >= 1 for f in findings)
        unchecked = [f for f in findings if f["code"] == "citation_not_checked"]
        assert unchecked and all("not verified: " in str(f["evidence"]) and "unreachable" in str(f["evidence"])
                                 for f in unchecked)  # fmt: skip
        assert audit["citations_verified"] == 0 and not any(f["code"] == "unverified_citation" for f in findings)
    ai = await call(lit, "audit_paper", {"main": "fixtures/" + next(iter(mains))})
    assert not any(f["code"] == "missing_figure" for f in ai["findings"]), "\\graphicspath{{../}} is followed"


async def test_an_audit_of_a_long_paper_over_four_hundred_runs_pages_within_the_budget(
    lit: Client, workspace: Path
) -> None:
    rng = random.Random(7)
    record_runs(workspace, {f"config-{i}": [rng.random() for _ in range(20)] for i in range(20)})
    lines = [f"We get {rng.random():.3f}, {rng.random():.2f} and {100 * rng.random():.1f}\\%.\n" for _ in range(100)]
    (workspace / "paper").mkdir()
    (workspace / "paper" / "main.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\n" + "".join(lines) + "\\end{document}\n"
    )
    began = time.monotonic()
    first = await answer(lit, "audit_paper", {})
    assert time.monotonic() - began < 30
    assert first["numbers"] == 300 and first["traced"] + first["untraced"] == 300
    assert first["chance_trace_rate"]["2 decimals"] > 0.5, "400 runs of random values cover most two-decimal numbers"
    assert first["weak"] > 0.9 * first["traced"]
    seen, offset = 0, first["next_offset"]
    seen += len(first["findings"]) + len(first["traced_numbers"])
    while offset is not None:
        page = await answer(lit, "audit_paper", {"offset": offset})
        seen += len(page["findings"]) + len(page["traced_numbers"])
        offset = page["next_offset"]
    assert seen == first["total"] == sum(first["counts"].values()) + first["traced"]


@pytest.mark.latex
async def test_the_page_limit_counts_the_last_compiles_pdf(tmp_path: Path, server: ReplayServer) -> None:
    root = tmp_path / "project"
    root.mkdir()
    open_for_sandbox(tmp_path, root)  # compiles enter it as an unprivileged uid when the server is root
    (root / "paper").mkdir()
    (root / "paper" / "main.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\n\\section{One}\nFirst page.\n\\newpage\n"
        "\\section{Limitations}\nSecond page.\n\\end{document}\n"
    )
    async with Client(build_server(lit_settings(root, server, page_limit=1)), raise_exceptions=True) as client:
        assert not any(f["code"] == "page_limit" for f in (await call(client, "audit_paper", {}))["findings"])
        compiled = await call(client, "compile_paper", {}, timeout_s=120)
        assert compiled["ok"] and compiled["pages"] == 2
        audit = await call(client, "audit_paper", {})
    [over] = [f for f in audit["findings"] if f["code"] == "page_limit"]
    assert (over["file"], over["line"]) == ("paper/main.tex", 1) and "2 pages; the limit is 1" in over["evidence"]
