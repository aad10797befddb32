"""The metrics tools through a real MCP client session, on runs recorded in the workspace's store and on paths."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_types import ImageContent, TextContent

from research_mcp.config import Settings
from research_mcp.sandbox.runs import RunManager, RunRequest
from research_mcp.server import build_server
from research_mcp.store import Store
from research_mcp.tools.metrics import parse_provenance
from research_mcp.tools.metrics.table import CELL_MARKER
from research_mcp.workspace import Workspace
from tests.conftest import REPO, fixtures_dir
from tests.integration._client import call, call_raw, error_text

pytestmark = pytest.mark.anyio


def metrics_and_final_info(folder: Path, final: float) -> None:
    """A metrics file in outputs/ and an AI Scientist final_info.json written into the working copy."""
    rows = "".join(
        json.dumps({"step": s * 100, "val_acc": final if s == 4 else final * s / 4}) + "\n" for s in range(5)
    )
    (folder / "outputs" / "metrics.jsonl").write_text(rows)
    (folder / "work" / "run_0").mkdir()
    (folder / "work" / "run_0" / "final_info.json").write_text(json.dumps({"ds": {"means": {"loss": 1 - final}}}))


def record_runs(
    workspace: Path, finals: dict[str, list[float]], write: Callable[[Path, float], None] = metrics_and_final_info
) -> dict[str, list[str]]:
    """Runs recorded the way run_experiment records them (queued, with label, config and seed), then finished
    with what `write` puts in each run's folder."""
    (workspace / "exp").mkdir(exist_ok=True)
    (workspace / "exp" / "train.py").write_text("print('hi')\n")
    store = Store(workspace / ".research" / "state.db")
    manager = RunManager(Workspace(workspace, "setting"), store, {}, choose=lambda: "local", max_concurrent=1)
    ids: dict[str, list[str]] = {}
    try:
        for label, values in finals.items():
            for seed, final in enumerate(values):
                request = {"command": "python train.py", "workdir": "exp", "label": label, "seed": seed}
                run = manager.prepare(RunRequest.model_validate({**request, "config": {"lr": 0.1}}))
                write(workspace / run.folder, final)
                store.connection().execute("UPDATE runs SET state = 'succeeded', exit_code = 0 WHERE id = ?", (run.id,))
                ids.setdefault(label, []).append(run.id)
    finally:
        store.close()
    return ids


async def test_read_metrics_of_a_run_finds_its_outputs_and_its_working_copy(client: Client, workspace: Path) -> None:
    ids = record_runs(workspace, {"baseline": [0.7]})
    run_id = ids["baseline"][0]
    found = await call(client, "read_metrics", {"source": run_id})
    assert found["source"] == run_id
    assert found["files"] == [
        f"runs/{run_id}/outputs/metrics.jsonl (jsonl)",
        f"runs/{run_id}/work/run_0/final_info.json (final_info)",
    ]
    metrics = {m["name"]: m for m in found["metrics"]}
    assert metrics["val_acc"]["last"] == 0.7 and metrics["val_acc"]["direction"] == "max"
    assert metrics["val_acc"]["step_max"] == 400 and metrics["val_acc"]["steps"] == [0, 100, 200, 300, 400]
    assert metrics["val_acc"]["values"] == [0, 0.175, 0.35, 0.525, 0.7]
    assert metrics["ds.means.loss"]["last"] == pytest.approx(0.3)
    only = await call(client, "read_metrics", {"source": f"runs/{run_id}", "metrics": ["val_*"], "max_points": 2})
    assert [m["name"] for m in only["metrics"]] == ["val_acc"] and only["metrics"][0]["steps"] == [0, 400]


async def test_read_metrics_pages_under_the_output_budget(client: Client, workspace: Path) -> None:
    header = ",".join(f"m{i}" for i in range(40))
    rows = "\n".join(",".join(str(i * j) for j in range(40)) for i in range(500))
    (workspace / "wide.csv").write_text(f"{header}\n{rows}\n")
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = await call(client, "read_metrics", {"source": "wide.csv", "offset": offset})
        assert len(json.dumps(page)) < 24_000 + 8_000
        seen += [m["name"] for m in page["metrics"]]
        offset = page["next_offset"]
    assert seen == [f"m{i}" for i in range(40)]


async def test_read_metrics_of_hundreds_of_runs_pages_every_metric_under_the_budget(
    client: Client, workspace: Path
) -> None:
    record_runs(workspace, {"baseline": [0.5] * 200, "method": [0.6] * 200})
    seen: list[tuple[str, str]] = []
    offset: int | None = 0
    pages = 0
    page: dict[str, Any] = {}
    while offset is not None:
        result = await call_raw(client, "read_metrics", {"source": "runs", "offset": offset})
        page = result.structured_content
        assert not result.is_error and page is not None, result.content
        assert len(json.dumps(page)) <= 24_000, (offset, len(json.dumps(page)))
        files = [f.rpartition(" (")[0] for f in page["files"]]
        assert files == list(dict.fromkeys(m["file"] for m in page["metrics"]))  # the files of this page only
        seen += [(m["file"], m["name"]) for m in page["metrics"]]
        offset, pages = page["next_offset"], pages + 1
    assert page["file_count"] == 500 and any("500" in w for w in page["warnings"])  # the folder search's cap
    assert len(seen) == len(set(seen)) == page["total"] == 500 and pages > 1


async def test_answers_on_three_hundred_runs_stay_under_the_budget_and_name_their_files(
    client: Client, workspace: Path
) -> None:
    finals = {"baseline": [0.5 + i / 1000 for i in range(150)], "method": [0.6 + i / 1000 for i in range(150)]}
    ids = record_runs(workspace, finals, ai_scientist_final_info)
    for run in ids["baseline"][100:]:  # 50 runs without the metrics: a warning each
        (workspace / "runs" / run / "work" / "run_1" / "final_info.json").write_text("{}")
    finals["baseline"] = finals["baseline"][:100]
    labels = ["baseline", "method"]

    def brief_of(n: int) -> list[dict[str, Any]]:
        return [{"metric": "spirals.means.val_acc", "file": "runs/{source}/work/run_1/final_info.json", "sources": n}]

    brief = brief_of(150)
    compared = await call_raw(client, "compare_runs", {"metric": "val_acc", "labels": labels})
    found = compared.structured_content
    assert found is not None and len(json.dumps(found)) <= 24_000, len(json.dumps(found))
    assert [(g.get("resolved"), g["resolved_files"]) for g in found["groups"]] == [(None, brief_of(100)), (None, brief)]
    assert found["warnings"][-1].startswith("... and ") and len(found["warnings"]) <= 41
    assert found["groups"][1]["sources"] == ids["method"] and found["groups"][1]["values"] == finals["method"]

    args = {"metrics": ["val_acc", "val_loss"], "caption": "c", "label": "big", "labels": labels}
    table = (await call_raw(client, "results_table", args)).structured_content
    assert table is not None and len(json.dumps(table)) <= 24_000, len(json.dumps(table))
    assert table["runs"] == {"baseline": ids["baseline"][:100], "method": ids["method"]}
    assert [n["n"] for n in table["numbers"]] == [100, 100, 150, 150] and "sources" not in table["numbers"][0]
    assert (
        r"\caption{c. Mean $\pm$ std over 100--150 seeds. Bold" in table["latex"] and CELL_MARKER not in table["latex"]
    )
    assert table["latex"].count(r"\pm") == 1 + 4 and r"\end{table}" in table["latex"]  # every number, not cut
    _, cells = parse_provenance((workspace / "paper" / "tables" / "big.tex").read_text())
    assert cells[0].sources == ids["baseline"][:100] and len(cells[3].files) == 150  # the file keeps every run

    bars = await call_raw(client, "plot_metrics", {"metrics": ["val_acc"], "kind": "bar", "groups": ids})
    plotted = bars.structured_content
    assert plotted is not None and len(json.dumps(plotted)) <= 24_000, len(json.dumps(plotted))
    assert plotted["resolved"] == [] and plotted["resolved_files"] == brief_of(250)


async def test_compare_runs_by_label_and_the_table_and_plot_of_the_same_runs(client: Client, workspace: Path) -> None:
    ids = record_runs(workspace, {"baseline": [0.70, 0.71, 0.69], "method": [0.80, 0.82, 0.81]})
    compared = await call(client, "compare_runs", {"metric": "val_acc", "labels": ["baseline", "method"]})
    assert [g["name"] for g in compared["groups"]] == ["baseline", "method"]
    assert compared["groups"][1]["sources"] == ids["method"] and compared["best_group"] == "method"
    assert compared["best_is_significant"] and compared["tests"][0]["p_holm"] < 0.05
    assert compared["tests"][0]["better"] == "method" and "note" not in compared["tests"][0]  # no null fields
    assert "resolved" not in compared["groups"][0] and len(compared["groups"][0]["resolved_files"]) == 1
    by_id = await call(client, "compare_runs", {"metric": "val_acc", "run_ids": [*ids["baseline"], *ids["method"]]})
    assert [g["values"] for g in by_id["groups"]] == [g["values"] for g in compared["groups"]]
    by_config = await call(
        client, "compare_runs", {"metric": "val_acc", "run_ids": ids["method"], "group_by": "config"}
    )
    assert len(by_config["groups"]) == 1 and "nothing to compare" in by_config["verdict"]

    table = await call(
        client, "results_table",
        {"metrics": ["val_acc"], "caption": "Validation accuracy.", "label": "main", "labels": ["baseline", "method"]},
    )  # fmt: skip
    _, cells = parse_provenance((workspace / "paper" / "tables" / "main.tex").read_text())
    assert [c.sources for c in cells] == [ids["baseline"], ids["method"]] and [c.bold for c in cells] == [False, True]

    with anyio.fail_after(60):
        plotted = await client.call_tool(
            "plot_metrics", {"metrics": ["val_acc"], "kind": "bar", "groups": ids, "name": "acc_bar"}
        )
    assert not plotted.is_error, plotted.content
    image = next(block for block in plotted.content if isinstance(block, ImageContent))
    assert image.mime_type == "image/png" and base64.b64decode(image.data).startswith(b"\x89PNG")
    assert plotted.structured_content is not None and plotted.structured_content["pdf"] == "paper/figures/acc_bar.pdf"
    pdf = (workspace / "paper" / "figures" / "acc_bar.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf  # TrueType fonts embedded (pdf.fonttype 42)
    assert b"/Subtype /Type3" not in pdf and (workspace / "paper" / "figures" / "acc_bar.png").is_file()
    assert table["path"] == "paper/tables/main.tex"


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "".join(page.extract_text() for page in PdfReader(path).pages)


async def test_line_plot_of_groups_draws_a_mean_and_band_per_group_named_for_the_paper(
    client: Client, workspace: Path
) -> None:
    ids = record_runs(workspace, {"baseline": [0.70, 0.71, 0.69], "method": [0.80, 0.82, 0.81, 0.79]})
    args = {
        "metrics": ["val_acc"], "groups": ids, "name": "curves", "band": "std", "width": "page",
        "display_names": {"method": "Ours", "val_acc": "Validation accuracy"}, "xlabel": "Training step",
    }  # fmt: skip
    plotted = await call(client, "plot_metrics", args)
    assert plotted["drawn"] == [
        "baseline: val_acc mean of 3 runs at 5 steps",
        "method: val_acc mean of 4 runs at 5 steps",
    ]
    assert "Mean over 3-4 runs per group; the shaded band is one standard deviation." in plotted["caption"]
    assert [(r["source"], r["file"]) for r in plotted["resolved"]] == [
        (run, f"runs/{run}/outputs/metrics.jsonl") for run in [*ids["baseline"], *ids["method"]]
    ]
    pdf = workspace / "paper" / "figures" / "curves.pdf"
    text = pdf_text(pdf)
    assert "Ours" in text and "baseline" in text and "Validation accuracy" in text and "Training step" in text
    assert not any(run in text for run in [*ids["baseline"], *ids["method"]])  # no run id in the legend
    assert b"/FontFile2" in pdf.read_bytes() and b"/Subtype /Type3" not in pdf.read_bytes()
    from PIL import Image

    with Image.open(workspace / "paper" / "figures" / "curves.png") as page:
        assert page.width == 6.75 * 200  # the figure is as wide as the page's text, at 200 dpi
    curves = [ids["baseline"][0], *ids["method"][:2]]
    each = await call(client, "plot_metrics", {"metrics": ["val_acc"], "sources": curves, "name": "runs"})
    assert each["caption"] == "One curve per run or file, as logged."
    text = pdf_text(workspace / "paper" / "figures" / "runs.pdf")
    assert "baseline" in text and "method (seed 0)" in text and "method (seed 1)" in text
    assert not any(run in text for run in curves)  # a run is named by its label and seed
    bars = await call(client, "plot_metrics", {**args, "kind": "bar", "name": "bars"})
    assert bars["caption"].startswith(r"Bars: mean of each run's last value per group; error bars: 95\% confidence")
    text = pdf_text(workspace / "paper" / "figures" / "bars.pdf")
    assert "Ours" in text and "Validation accuracy" in text and not any(run in text for run in ids["method"])
    column = await call(client, "plot_metrics", {**args, "width": "column", "band": "ci95", "name": "narrow"})
    assert r"95\% confidence interval of the mean" in column["caption"]
    with Image.open(workspace / "paper" / "figures" / "narrow.png") as narrow:
        assert narrow.width == 3.25 * 200


@pytest.mark.latex
async def test_a_table_shows_display_names_directions_seeds_and_compiles(client: Client, workspace: Path) -> None:
    ids = record_runs(workspace, {"baseline": [0.70, 0.71, 0.69], "method": [0.80, 0.82, 0.81], "noisy": [0.6, 0.9]})
    names = {"method": "Ours ($k=3$)", "val_acc": "Accuracy", "loss": "Loss"}
    args = {"metrics": ["val_acc", "loss"], "caption": "Spirals.", "label": "named", "display_names": names}
    table = await call(client, "results_table", {**args, "labels": ["baseline", "method", "noisy"]})
    lines = table["latex"].splitlines()
    assert r"    Method & Accuracy ($\uparrow$) & Loss ($\downarrow$) \\" in lines
    assert lines.index("    baseline") < lines.index("    Ours ($k=3$)") < lines.index("    noisy")
    assert r"  \caption{Spirals. Mean $\pm$ std over 2--3 seeds.}" in lines  # noisy's two seeds: no bold
    assert not any(c["bold"] for c in table["numbers"]) and "Ours" not in json.dumps(table["numbers"])
    two = await call(client, "results_table", {**args, "labels": ["baseline", "method"], "label": "two"})
    assert r"\caption{Spirals. Mean $\pm$ std over 3 seeds. Bold: significantly best" in two["latex"]
    bold = {(c["group"], c["metric"]): c["bold"] for c in two["numbers"]}
    assert bold == {(g, m): g == "method" for g in ("baseline", "method") for m in ("val_acc", "loss")}
    assert r"$\mathbf{0.810 \pm 0.010}$" in two["latex"]
    singles = {"a": ids["baseline"][:1], "b": ids["method"][:1]}
    one = await call(client, "results_table", {**args, "groups": singles, "label": "one"})
    assert r"\caption{Spirals. One run each: no spread, no significance.}" in one["latex"]

    (workspace / "paper" / "main.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\\input{tables/named}\\end{document}\n"
    )
    with anyio.fail_after(120):
        done = await anyio.run_process(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"], cwd=workspace / "paper", check=False
        )
    assert done.returncode == 0, done.stdout.decode(errors="replace")[-2000:]


def ai_scientist_final_info(folder: Path, final: float) -> None:
    """An AI Scientist run: only a final_info.json, its metrics nested as <dataset>.means.<metric>."""
    (folder / "work" / "run_1").mkdir()
    means = {"val_acc": final, "val_loss": 1 - final}
    (folder / "work" / "run_1" / "final_info.json").write_text(json.dumps({"spirals": {"means": means}}))


def final_info_and_a_step_log(folder: Path, final: float) -> None:
    """`val_acc` twice: logged per step in outputs/metrics.jsonl, and as spirals.means.val_acc in final_info.json."""
    ai_scientist_final_info(folder, final)
    (folder / "outputs" / "metrics.jsonl").write_text(json.dumps({"step": 1, "val_acc": final}) + "\n")


async def test_a_short_name_resolves_to_the_ai_scientist_metric_and_each_answer_names_it(
    client: Client, workspace: Path
) -> None:
    ids = record_runs(
        workspace, {"baseline": [0.70, 0.71, 0.69], "method": [0.80, 0.82, 0.81]}, ai_scientist_final_info
    )
    labels = ["baseline", "method"]
    compared = await call(client, "compare_runs", {"metric": "val_acc", "labels": labels})
    assert compared["groups"][1]["values"] == [0.80, 0.82, 0.81] and compared["best_group"] == "method"
    assert compared["groups"][1]["sources"] == ids["method"] and "resolved" not in compared["groups"][1]
    assert compared["groups"][1]["resolved_files"] == [
        {"metric": "spirals.means.val_acc", "file": "runs/{source}/work/run_1/final_info.json", "sources": 3}
    ]

    await call(
        client, "results_table",
        {"metrics": ["val_acc", "val_loss"], "caption": "Spirals.", "label": "short", "labels": labels},
    )  # fmt: skip
    _, cells = parse_provenance((workspace / "paper" / "tables" / "short.tex").read_text())
    acc, loss = ["spirals.means.val_acc"] * 3, ["spirals.means.val_loss"] * 3
    assert [c.names for c in cells] == [acc, loss, acc, loss] and cells[0].values == [0.70, 0.71, 0.69]
    assert cells[2].files == [f"runs/{run}/work/run_1/final_info.json" for run in ids["method"]]

    bars = await call(client, "plot_metrics", {"metrics": ["val_acc"], "kind": "bar", "groups": ids, "name": "bars"})
    assert [(r["source"], r["metric"]) for r in bars["resolved"]] == [
        (run, "spirals.means.val_acc") for run in [*ids["baseline"], *ids["method"]]
    ]
    run = ids["method"][0]
    curve = await call(client, "plot_metrics", {"metrics": ["val_loss"], "sources": [run], "name": "curve"})
    assert curve["drawn"] == [f"{run}: spirals.means.val_loss (1 points from runs/{run}/work/run_1/final_info.json)"]
    assert curve["resolved"] == [
        {"source": run, "metric": "spirals.means.val_loss", "file": f"runs/{run}/work/run_1/final_info.json"}
    ]


async def test_a_short_name_two_files_of_a_run_record_asks_back_naming_both(client: Client, workspace: Path) -> None:
    ids = record_runs(workspace, {"baseline": [0.70, 0.71], "method": [0.80, 0.82]}, final_info_and_a_step_log)
    labels = ["baseline", "method"]
    first = ids["baseline"][0]
    asks = [
        ("compare_runs", {"metric": "val_acc", "labels": labels}),
        ("results_table", {"metrics": ["val_acc"], "caption": "c", "label": "twice", "labels": labels}),
        ("plot_metrics", {"metrics": ["val_acc"], "sources": [first]}),
        ("plot_metrics", {"metrics": ["val_acc"], "kind": "bar", "groups": ids}),
    ]
    for tool, args in asks:
        with anyio.fail_after(60):
            text = error_text(await client.call_tool(tool, args))
        assert f"'val_acc' matches 2 metrics in '{first}'" in text, tool
        assert f"'outputs/metrics.jsonl:val_acc' (val_acc in runs/{first}/outputs/metrics.jsonl)" in text, tool
        assert f"'spirals.means.val_acc' (spirals.means.val_acc in runs/{first}/work/run_1/final_info.json)" in text
    everyone = [*ids["baseline"], *ids["method"]]
    by_file = await call(client, "compare_runs", {"metric": "outputs/metrics.jsonl:val_acc", "labels": labels})
    assert [g["resolved_files"] for g in by_file["groups"]] == [
        [{"metric": "val_acc", "file": "runs/{source}/outputs/metrics.jsonl", "sources": 2}]
    ] * 2
    assert [s for g in by_file["groups"] for s in g["sources"]] == everyone
    by_name = await call(client, "compare_runs", {"metric": "spirals.means.val_acc", "labels": labels})
    assert {f["file"] for g in by_name["groups"] for f in g["resolved_files"]} == {
        "runs/{source}/work/run_1/final_info.json"
    }
    assert [g["values"] for g in by_name["groups"]] == [g["values"] for g in by_file["groups"]]


async def test_one_metric_of_several_datasets_in_real_ai_scientist_runs_asks_back(
    client: Client, workspace: Path
) -> None:
    shutil.copytree(fixtures_dir("logs") / "ai-scientist" / "adaptive_dual_scale_denoising", workspace / "ai")
    groups = {"baseline": ["ai/run_0"], "dual_scale": ["ai/run_1", "ai/run_2"]}
    with anyio.fail_after(60):
        text = error_text(await client.call_tool("compare_runs", {"metric": "eval_loss", "groups": groups}))
    assert "'eval_loss' matches 4 metrics in 'ai/run_0'" in text
    for dataset in ("circle", "dino", "line", "moons"):
        assert f"'{dataset}.means.eval_loss' ({dataset}.means.eval_loss in ai/run_0/final_info.json)" in text
    compared = await call(client, "compare_runs", {"metric": "dino.means.eval_loss", "groups": groups})
    dual = compared["groups"][1]
    expected = [
        json.loads((workspace / p / "final_info.json").read_text())["dino"]["means"]["eval_loss"]
        for p in groups["dual_scale"]
    ]
    assert dual["values"] == expected and dual["sources"] == groups["dual_scale"]
    assert dual["resolved_files"] == [
        {"metric": "dino.means.eval_loss", "file": "{source}/final_info.json", "sources": 2}
    ]


async def test_read_metrics_filters_by_short_names_and_shows_each_match_with_its_file(
    client: Client, workspace: Path
) -> None:
    run = record_runs(workspace, {"baseline": [0.7]}, final_info_and_a_step_log)["baseline"][0]
    jsonl, final_info = f"runs/{run}/outputs/metrics.jsonl", f"runs/{run}/work/run_1/final_info.json"
    both = await call(client, "read_metrics", {"source": run, "metrics": ["val_acc"]})
    assert [(m["name"], m["file"]) for m in both["metrics"]] == [
        ("val_acc", jsonl),
        ("spirals.means.val_acc", final_info),
    ]
    assert both["warnings"][0] == (
        "'val_acc' matches 2 metrics; compare_runs, plot_metrics and results_table need one of them: "
        "'outputs/metrics.jsonl:val_acc', 'spirals.means.val_acc'"
    )
    nested = await call(client, "read_metrics", {"source": run, "metrics": ["val_loss", "means.val_acc"]})
    assert [m["name"] for m in nested["metrics"]] == ["spirals.means.val_acc", "spirals.means.val_loss"]
    assert nested["metrics"][1]["last"] == pytest.approx(0.3) and nested["warnings"] == []
    one_file = await call(client, "read_metrics", {"source": run, "metrics": ["run_1/final_info.json:val_acc"]})
    assert [(m["name"], m["file"]) for m in one_file["metrics"]] == [("spirals.means.val_acc", final_info)]
    globbed = await call(client, "read_metrics", {"source": run, "metrics": ["val_*"]})
    assert {m["name"] for m in globbed["metrics"]} == {"val_acc", "spirals.means.val_acc", "spirals.means.val_loss"}
    with anyio.fail_after(30):
        missing = await client.call_tool("read_metrics", {"source": run, "metrics": ["acc"]})
    assert "ending in '.<name>'" in error_text(missing)  # 'acc' is no dot-separated tail of 'val_acc'

    shutil.copytree(fixtures_dir("logs") / "ai-scientist" / "data_augmentation_grokking" / "run_1", workspace / "grok")
    real = await call(client, "read_metrics", {"source": "grok/final_info.json", "metrics": ["final_val_acc_mean"]})
    tasks = ["x_div_y", "x_minus_y", "x_plus_y", "permutation"]
    assert sorted(m["name"] for m in real["metrics"]) == sorted(f"{t}.means.final_val_acc_mean" for t in tasks)


async def test_plot_curves_of_real_tensorboard_and_mlflow_logs(client: Client, workspace: Path) -> None:
    shutil.copytree(fixtures_dir("tensorboard") / "tensorboard-reducer" / "strict", workspace / "tb")
    shutil.copytree(fixtures_dir("mlflow") / "packt" / "chapter08", workspace / "mlflow")
    with anyio.fail_after(60):
        plotted = await client.call_tool(
            "plot_metrics", {"metrics": ["strict/foo"], "sources": ["tb/run_1", "tb/run_2", "tb/run_3"], "name": "foo"}
        )
    assert not plotted.is_error, plotted.content
    assert plotted.structured_content is not None and len(plotted.structured_content["drawn"]) == 3
    read = await call(client, "read_metrics", {"source": "mlflow", "metrics": ["val_f1"]})
    assert read["metrics"][0]["run"] == "d01fc81e11e842f5b9556ae04136c0d3" and read["metrics"][0]["count"] == 3


async def test_bad_input_is_a_clear_error(client: Client, workspace: Path) -> None:
    (workspace / "a.csv").write_text("step,loss\n0,1\n")
    (workspace / "notes.md").write_text("# hi\n")
    cases = [
        ("read_metrics", {"source": "nope/"}, "run id"),
        ("read_metrics", {"source": "20260101-000000-abcdef"}, "list_runs"),
        ("read_metrics", {"source": "notes.md"}, "not a metric file"),
        ("read_metrics", {"source": "a.csv", "metrics": ["acc"]}, "Metrics there: loss"),
        ("read_metrics", {"source": "../etc"}, "refused"),
        ("compare_runs", {"metric": "loss"}, "exactly one of"),
        ("compare_runs", {"metric": "loss", "groups": {"a": ["a.csv"]}, "baseline": "b"}, "not one of the groups"),
        ("results_table", {"metrics": ["loss"], "caption": "c", "label": "a b", "groups": {"a": ["a.csv"]}}, "label"),
        ("plot_metrics", {"metrics": ["loss"]}, "Give sources"),
    ]
    for tool, args, expected in cases:
        with anyio.fail_after(30):
            result = await client.call_tool(tool, args)
        assert expected in error_text(result), (tool, args)


async def test_names_with_tex_characters_are_drawn_as_text(client: Client, workspace: Path) -> None:
    (workspace / "odd").mkdir()
    (workspace / "odd" / "m.csv").write_text("step,$loss_{x}^2\n0,1\n1,0.5\n")
    plotted = await call(
        client, "plot_metrics", {"metrics": ["$loss_{x}^2"], "sources": ["odd"], "title": "$\\frac{a", "name": "odd"}
    )
    assert plotted["drawn"] == ["odd: $loss_{x}^2 (2 points from odd/m.csv)"]


ATTACKS = ["../outside", "/etc/passwd", "link/a.csv", "link", "a\x00b", "~/x", "..\\x", "x/" * 600, "\u202e", "."]


def _escape_room(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    if not root.exists():
        (tmp_path / "outside").mkdir()
        (tmp_path / "outside" / "a.csv").write_text("step,secret\n0,42\n")
        root.mkdir()
        (root / "link").symlink_to(tmp_path / "outside")
        (root / "m.csv").write_text("step,loss\n0,1\n")
    return root


async def _check_source(client: Client, source: str) -> None:
    with anyio.fail_after(20):
        result = await client.call_tool("read_metrics", {"source": source})
    if result.is_error:
        assert error_text(result).strip() != "Error executing tool read_metrics", source  # a crash shows only this
    else:
        assert result.structured_content is not None
        assert all(m["name"] != "secret" for m in result.structured_content["metrics"]), source


async def test_path_attacks_give_a_clear_error_and_nothing_outside_is_read(tmp_path: Path) -> None:
    root = _escape_room(tmp_path)
    async with Client(build_server(Settings(workspace=root, toolsets=["metrics"]))) as client:
        for source in ATTACKS:
            await _check_source(client, source)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.text(min_size=1, max_size=40))
async def test_any_source_text_gives_an_answer_or_a_clear_error(tmp_path: Path, source: str) -> None:
    root = _escape_room(tmp_path)
    async with Client(build_server(Settings(workspace=root, toolsets=["metrics"]))) as client:
        await _check_source(client, source)


def test_the_metrics_bench_runs_end_to_end_with_tiny_counts(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    argv = ["--rows", "3000", "--scalars", "400", "--runs", "1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "evals.bench.metrics", *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["ratios"]) == {
        "csv_vs_pandas_read_csv", "jsonl_vs_pandas_read_json", "jsonl_vs_pandas_read_csv",
        "tb_vs_accumulator_all", "tb_vs_accumulator_default",
    }  # fmt: skip
    assert all(ratio > 0 for ratio in report["ratios"].values()) and "target <= 1.0x" in done.stdout


async def test_a_mistyped_label_is_answered_with_the_closest_labels(client: Client, workspace: Path) -> None:
    record_runs(workspace, {"lr1.0": [0.7, 0.71], "lr0.05": [0.6, 0.61], "baseline": [0.5, 0.52]})
    for tool, args in (
        ("compare_runs", {"metric": "val_acc", "labels": ["lr1.O", "baseline"]}),
        ("results_table", {"metrics": ["val_acc"], "labels": ["lr1.O", "baseline"], "caption": "c", "label": "t"}),
    ):
        text = error_text(await client.call_tool(tool, args))
        assert "No run has label 'lr1.O'; labels here: lr1.0, lr0.05, baseline." in text, (tool, text)


async def test_every_listing_tool_stays_within_the_budget_on_four_hundred_runs(client: Client, workspace: Path) -> None:
    """What the model reads (the text blocks) and the record, for each tool that lists runs, files or numbers."""
    finals = {"baseline": [0.5 + i / 1000 for i in range(150)], "method": [0.6] * 150, "extra": [0.4] * 100}
    ids = record_runs(workspace, finals)
    labels = ["baseline", "method"]  # 300: the most one comparison takes
    calls = [
        ("list_runs", {"limit": 200}),
        ("read_metrics", {"source": "runs"}),
        ("compare_runs", {"metric": "val_acc", "labels": labels}),
        ("results_table", {"metrics": ["val_acc"], "labels": labels, "caption": "c", "label": "all"}),
        ("plot_metrics", {"metrics": ["val_acc"], "groups": {k: ids[k] for k in labels}, "kind": "bar"}),
        ("list_files", {"path": "runs", "depth": 4, "limit": 1000}),
        ("grep", {"pattern": "val_acc", "path": "runs"}),
    ]
    for tool, args in calls:
        result = await client.call_tool(tool, args)
        assert not result.is_error, (tool, result.content)
        text = sum(len(block.text) for block in result.content if isinstance(block, TextContent))
        record = len(json.dumps(result.structured_content, separators=(",", ":")))
        assert text <= 24_000 and record <= 24_000, (tool, text, record)
