"""The metrics tools through a real MCP client session, on runs recorded in the workspace's store and on paths."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_types import ImageContent

from research_mcp.config import Settings
from research_mcp.sandbox.runs import RunManager, RunRequest
from research_mcp.server import build_server
from research_mcp.store import Store
from research_mcp.tools.metrics import parse_provenance
from research_mcp.workspace import Workspace
from tests.conftest import REPO, fixtures_dir
from tests.integration._client import call, error_text

pytestmark = pytest.mark.anyio


def record_runs(workspace: Path, finals: dict[str, list[float]]) -> dict[str, list[str]]:
    """Runs recorded the way run_experiment records them (queued, with label, config and seed), then finished
    with a metrics file in outputs/ and an AI Scientist final_info.json written into the working copy."""
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
                folder = workspace / run.folder
                rows = "".join(
                    json.dumps({"step": s * 100, "val_acc": final if s == 4 else final * s / 4}) + "\n"
                    for s in range(5)
                )
                (folder / "outputs" / "metrics.jsonl").write_text(rows)
                (folder / "work" / "run_0").mkdir()
                (folder / "work" / "run_0" / "final_info.json").write_text(
                    json.dumps({"ds": {"means": {"loss": 1 - final}}})
                )
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
    assert metrics["val_acc"]["step_max"] == 400 and len(metrics["val_acc"]["series"]) == 5
    assert metrics["ds.means.loss"]["last"] == pytest.approx(0.3)
    only = await call(client, "read_metrics", {"source": f"runs/{run_id}", "metrics": ["val_*"], "max_points": 2})
    assert [m["name"] for m in only["metrics"]] == ["val_acc"] and len(only["metrics"][0]["series"]) == 2


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


async def test_compare_runs_by_label_and_the_table_and_plot_of_the_same_runs(client: Client, workspace: Path) -> None:
    ids = record_runs(workspace, {"baseline": [0.70, 0.71, 0.69], "method": [0.80, 0.82, 0.81]})
    compared = await call(client, "compare_runs", {"metric": "val_acc", "labels": ["baseline", "method"]})
    assert [g["name"] for g in compared["groups"]] == ["baseline", "method"]
    assert compared["groups"][1]["sources"] == ids["method"] and compared["best_group"] == "method"
    assert compared["best_is_significant"] and compared["tests"][0]["p_holm"] < 0.05
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
