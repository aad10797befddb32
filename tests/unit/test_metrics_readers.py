"""The metric readers: real fixture files, generated bad files, streaming summaries and bounded memory."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research_mcp.tools.metrics import read_metrics
from research_mcp.tools.metrics._records import Limits, lib
from research_mcp.tools.metrics._series import Series, direction_of
from research_mcp.tools.metrics._sources import read_file_metrics
from research_mcp.workspace import Workspace
from tests.conftest import fixtures_dir


def ws_at(root: Path) -> Workspace:
    return Workspace(root.resolve(), "setting")


def read(root: Path, source: str, metrics: list[str] | None = None) -> dict[str, Any]:
    return read_metrics(ws_at(root), source, lambda: None, metrics, max_chars=10**7).model_dump()


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in result["metrics"]}


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("val_loss", "min"), ("train_accuracy_step", "max"), ("val_cross_entropy", "min"), ("eval_accuracy", "max"),
        ("valPerplexity", "min"), ("top1_error", "min"), ("avg_inference_tokens_per_second_mean", "max"),
        ("bleu", "max"), ("episode_reward", "max"), ("hp_metric", None), ("lr", None), ("acc_std", None),
        ("step_val_acc_99", None), ("foo", None),
    ],
)  # fmt: skip
def test_direction_comes_from_the_name_and_an_unknown_name_stays_unknown(name: str, direction: str | None) -> None:
    assert direction_of(name) == direction


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=3000),
    st.integers(4, 60),
    st.integers(1, 700),
)
def test_streaming_series_keeps_first_last_and_extremes_within_its_budget(
    values: list[float], max_points: int, chunk: int
) -> None:
    series = Series(max_points)
    data = np.asarray(values, dtype=np.float64)
    for start in range(0, len(values), chunk):
        part = data[start : start + chunk]
        series.add(np.arange(start, start + part.size, dtype=np.float64), part)
    points = series.points()
    assert len(points) <= max_points
    assert series.count == len(values) and series.last == values[-1]
    assert series.min == min(values) and series.max == max(values)
    assert points[0] == (0.0, values[0]) and points[-1] == (len(values) - 1.0, values[-1])
    kept = [v for _, v in points]
    assert min(values) in kept and max(values) in kept
    assert [s for s, _ in points] == sorted(s for s, _ in points)


def test_tensorboard_fixtures_give_every_scalar_the_event_accumulator_gives() -> None:
    accumulator = lib("tensorboard.backend.event_processing.event_accumulator").EventAccumulator

    folder = fixtures_dir("tensorboard")
    files = sorted(folder.rglob("*tfevents*"))
    assert files
    for file in files:
        acc = accumulator(str(file), size_guidance={"scalars": 0})
        acc.Reload()
        fm = read_file_metrics(ws_at(folder), file, "tensorboard", Limits(max_points=10_000))
        assert fm.warnings == []
        assert sorted(fm.series) == sorted(acc.Tags()["scalars"])
        for tag in acc.Tags()["scalars"]:
            expected = acc.Scalars(tag)
            got = fm.series[tag]
            assert got.count == len(expected)
            assert got.last == expected[-1].value and got.last_step == expected[-1].step
            assert got.min == min(e.value for e in expected) and got.max == max(e.value for e in expected)


def test_mlflow_fixture_metrics_match_the_metric_files() -> None:
    folder = fixtures_dir("mlflow")
    result = read(folder, "packt/chapter08/mlruns")
    run = "d01fc81e11e842f5b9556ae04136c0d3"
    metrics = {m["name"]: m for m in result["metrics"] if m["run"] == run}
    lines = (folder / f"packt/chapter08/mlruns/1/{run}/metrics/val_f1").read_text().split("\n")
    rows = [line.split() for line in lines if line]
    val_f1 = metrics["val_f1"]
    assert val_f1["count"] == len(rows) == 3
    assert val_f1["last"] == float(rows[-1][1]) and val_f1["best"] == max(float(r[1]) for r in rows)
    assert val_f1["direction"] == "max" and metrics["val_cross_entropy"]["direction"] == "min"
    assert val_f1["steps"] == [float(r[2]) for r in rows]
    assert val_f1["values"] == [pytest.approx(float(r[1]), rel=1e-6) for r in rows]


def test_ai_scientist_final_info_is_flattened_with_per_seed_lists_as_series() -> None:
    folder = fixtures_dir("logs")
    source = "ai-scientist/multi_style_adapter/run_0/final_info.json"
    raw = json.loads((folder / source).read_text())["shakespeare_char"]
    metrics = by_name(read(folder, source))
    mean = metrics["shakespeare_char.means.best_val_loss_mean"]
    assert mean["last"] == raw["means"]["best_val_loss_mean"] and mean["direction"] == "min"
    seeds = metrics["shakespeare_char.final_info_dict.best_val_loss"]
    assert seeds["count"] == 5 and seeds["min"] == min(raw["final_info_dict"]["best_val_loss"])


def test_mlperf_logs_read_eval_accuracy_by_epoch_from_the_raw_log_and_its_jsonl() -> None:
    folder = fixtures_dir("logs")
    raw = by_name(read(folder, "mlperf/Google__tpu-v4-128-TF__resnet__result_0.txt"))
    derived = by_name(read(folder, "mlperf/Google__tpu-v4-128-TF__resnet__result_0.mllog.jsonl"))
    acc = raw["eval_accuracy"]
    assert acc["direction"] == "max" and acc["count"] >= 5
    assert (acc["steps"][0], acc["values"][0]) == (3.0, 0.25054)
    assert {k: derived["eval_accuracy"][k] for k in ("count", "last", "max")} == {
        k: acc[k] for k in ("count", "last", "max")
    }
    dell = by_name(read(folder, "mlperf/Dell__XE8545x4A100-SXM-80GB__bert__result_0.txt"))
    assert dell["eval_accuracy"]["count"] >= 1  # rank 0's lines among shell trace and other ranks


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_bad_jsonl_is_read_as_far_as_it_goes_with_warnings_naming_the_file(tmp_path: Path) -> None:
    lines = [json.dumps({"step": i, "loss": 1.0 / (i + 1), "phase": "train"}) for i in range(10)]
    lines[3] = json.dumps({"step": 3, "loss": "oops", "phase": "train"})  # mixed types
    lines[5] = '{"step": 5, "loss": NaN}'
    lines[6] = '{"step": 6, "loss": Infinity}'
    body = "\n".join(lines) + '\n{"step": 10, "loss": 0.0' + "x" * 20  # a truncated last line
    _write(tmp_path / "m.jsonl", body.encode())
    result = read(tmp_path, "m.jsonl")
    loss = by_name(result)["loss"]
    assert loss["count"] == 7 and loss["non_finite"] == 2 and loss["last"] == pytest.approx(0.1)
    text = "\n".join(result["warnings"])
    assert "m.jsonl: truncated last line at line 11" in text
    assert "m.jsonl: 1 values of 'loss' are not numbers at line 4" in text
    assert "m.jsonl: 'loss' has 2 NaN/Inf values" in text
    assert "phase" not in by_name(result)  # a text column is a label, not a metric


def test_a_10_mb_line_and_binary_garbage_are_skipped_and_named(tmp_path: Path) -> None:
    good = [json.dumps({"step": i, "acc": i / 10}).encode() for i in range(5)]
    huge = b'{"step": 99, "blob": "' + b"a" * (10 << 20) + b'"}'
    garbage = bytes(range(256)) * 40
    _write(tmp_path / "big.jsonl", b"\n".join([*good[:2], huge, garbage, *good[2:]]) + b"\n")
    result = read(tmp_path, "big.jsonl")
    assert by_name(result)["acc"]["count"] == 5
    text = "\n".join(result["warnings"])
    assert "big.jsonl: line over the 1048576-byte limit" in text and "at line 3" in text
    assert "big.jsonl: line that is not valid JSON" in text
    _write(tmp_path / "noise.csv", garbage * 10)
    noise = read(tmp_path, "noise.csv")
    assert noise["metrics"] == [] and any("noise.csv" in w for w in noise["warnings"])


def test_empty_files_say_so_instead_of_giving_zeros(tmp_path: Path) -> None:
    for name in ("e.jsonl", "e.csv", "e.json", "events.out.tfevents.1.host"):
        _write(tmp_path / "empty" / name, b"")
    result = read(tmp_path, "empty")
    assert result["metrics"] == []
    assert sorted(result["warnings"]) == sorted(f"empty/{n}: empty file" for n in ("e.csv", "e.json", "e.jsonl")) + [
        "empty/events.out.tfevents.1.host: empty event file"
    ]


def test_csv_with_gaps_text_nan_and_a_truncated_row(tmp_path: Path) -> None:
    rows = ["epoch,step,train_loss,val_acc", "0,0,2.0,", "0,10,1.5,", "0,10,,0.5", "1,20,nan,", "1,30,1.0,0.7"]
    rows += ["1,40,bad,0.8", "1,50"]
    _write(tmp_path / "lightning" / "metrics.csv", ("\n".join(rows)).encode())
    result = read(tmp_path, "lightning")
    metrics = by_name(result)
    assert metrics["train_loss"]["count"] == 3 and metrics["train_loss"]["non_finite"] == 1
    assert metrics["val_acc"]["steps"] == [10.0, 30.0, 40.0] and metrics["val_acc"]["values"] == [0.5, 0.7, 0.8]
    assert metrics["val_acc"]["best"] == 0.8 and metrics["val_acc"]["best_step"] == 40.0
    text = "\n".join(result["warnings"])
    assert "lightning/metrics.csv: truncated last line at line 8" in text
    assert "1 values of 'train_loss' are not numbers at line 7" in text


def test_clean_csv_and_tsv_take_the_fast_path_with_the_same_answer_as_the_line_reader(tmp_path: Path) -> None:
    from research_mcp.tools.metrics import _arrow, _text

    rng = np.random.default_rng(1)
    loss = rng.random(5000)
    body = "step\tloss\n" + "".join(f"{i * 2}\t{v!r}\n" for i, v in enumerate(loss.tolist()))
    path = _write(tmp_path / "log.tsv", body.encode())
    fast = _arrow.fast_csv(path, "log.tsv", Limits(), "\t")
    slow = _text.read_csv(path, "log.tsv", Limits(), "\t")
    assert fast is not None
    a, b = fast.series["loss"], slow.series["loss"]
    assert (a.count, a.last, a.min, a.max, a.min_step) == (b.count, b.last, b.min, b.max, b.min_step)
    assert a.points() == b.points()


def test_a_half_written_tensorboard_file_keeps_what_was_complete(tmp_path: Path) -> None:
    event_pb2, summary_pb2 = lib("tensorboard.compat.proto.event_pb2"), lib("tensorboard.compat.proto.summary_pb2")
    writer = lib("tensorboard.summary.writer.event_file_writer").EventFileWriter(str(tmp_path / "tb"))
    for step in range(100):
        value = summary_pb2.Summary.Value(tag="train/loss", simple_value=1.0 / (step + 1))
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0, summary=summary_pb2.Summary(value=[value])))
    writer.close()
    [file] = list((tmp_path / "tb").glob("*tfevents*"))
    data = file.read_bytes()
    file.write_bytes(data[:-7])  # the writer was cut mid-record
    result = read(tmp_path, "tb")
    loss = by_name(result)["train/loss"]
    assert loss["count"] == 99 and loss["last_step"] == 98.0 and loss["direction"] == "min"
    assert any("cut short" in w and file.name in w for w in result["warnings"])
    file.write_bytes(data[:40] + b"\xff" * 16 + data[56:])  # a corrupt header: stop there, say so
    broken = read(tmp_path, "tb")
    assert any("corrupt" in w for w in broken["warnings"])


def test_a_200_mb_jsonl_is_summarised_in_bounded_memory(tmp_path: Path) -> None:
    """Peak RSS (VmHWM) of a fresh process summarising the file stays under 250 MiB: about 150 MiB measured, of
    which about 80 MiB is the interpreter with numpy and pyarrow loaded. The file is parsed a block of 4 MiB at
    a time; measured: 121 MiB for 50 MB, 150 MiB for 200 MB, 156 MiB for 400 MB of JSONL."""
    path = tmp_path / "huge.jsonl"
    row = '{"step": %d, "train/loss": %.6f, "val": {"acc": %.6f}, "lr": 0.001, "note": "padding-padding-padding"}\n'
    with path.open("w") as fh:
        step = 0
        while fh.tell() < 200 << 20:
            fh.write("".join(row % (step + i, 1.0 / (step + i + 1), i / 1000) for i in range(1000)))
            step += 1000
    code = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from research_mcp.tools.metrics import read_metrics
        from research_mcp.workspace import Workspace
        r = read_metrics(Workspace(Path({str(tmp_path)!r}), "setting"), "huge.jsonl", lambda: None)
        peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        pandas = "pandas" in sys.modules
        print(json.dumps({{"peak": peak, "pandas": pandas, "metrics": {{m.name: m.count for m in r.metrics}}}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=240)
    found = json.loads(out.stdout)
    assert found["metrics"]["train/loss"] == step and found["metrics"]["val.acc"] == step
    assert not found["pandas"], "pandas is no runtime dependency (pyarrow's to_numpy would import it)"
    assert found["peak"] < 250 << 20, f"peak RSS {found['peak'] / 2**20:.0f} MiB"


def test_non_finite_steps_and_values_never_become_numbers(tmp_path: Path) -> None:
    _write(tmp_path / "only_nan.csv", b"step,loss\n0,nan\n1,inf\n")
    metrics = by_name(read(tmp_path, "only_nan.csv"))
    loss = metrics["loss"]
    assert loss["count"] == 0 and loss["non_finite"] == 2
    assert loss["last"] is None and loss["min"] is None and loss["steps"] == loss["values"] == []
    assert not any(isinstance(v, float) and math.isnan(v) for v in loss.values())


def test_readers_stop_at_the_time_budget_of_a_call_and_say_so(tmp_path: Path) -> None:
    rows = "".join(json.dumps({"step": i, "loss": 1 / (i + 1)}) + "\n" for i in range(20_000))
    path = _write(tmp_path / "long.jsonl", rows.encode())
    _write(tmp_path / "b.csv", b"step,acc\n0,1\n")
    late = Limits(deadline=time.monotonic() - 1)
    fm = read_file_metrics(ws_at(tmp_path), path, "jsonl", late)
    assert fm.series == {} and any("time budget" in w and "long.jsonl" in w for w in fm.warnings)
    result = read_metrics(ws_at(tmp_path), ".", lambda: None, limits=late)
    assert result.metrics == [] and any("2 metric files not read" in w for w in result.warnings)


@pytest.mark.parametrize("name", ["tensorboard", "mlflow", "logs"])
def test_every_real_fixture_file_reads_without_a_warning(name: str) -> None:
    folder = fixtures_dir(name)
    result = read_metrics(ws_at(folder.parent), name, lambda: None, max_chars=10**8)
    assert result.warnings == []
    assert result.total == len(result.metrics) > 0
    kinds = {f.rsplit("(", 1)[1].rstrip(")") for f in result.files}
    expected = {"tensorboard": {"tensorboard"}, "mlflow": {"mlflow"}, "logs": {"final_info", "mllog"}}[name]
    assert kinds == expected
    assert all(m.count > 0 and m.last is not None for m in result.metrics)
