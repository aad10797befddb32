"""`python -m evals.bench.metrics`: how fast read_metrics summarises big logs, against pandas and TensorBoard.

Three measurements, each the median of `--runs` interleaved rounds (the order of ours and theirs swaps every round):

- a CSV of `--rows` rows (step + 3 metrics): ours, `read_metrics` on the file (the domain function the tool calls:
  every metric's count, last, best, min, max, step range and downsampled series), against
  `pandas.read_csv(path).describe()`. Target: ours at most 1.0x.
- the same rows as JSONL: ours against `pandas.read_json(path, lines=True).describe()` (the same file read by
  pandas; target: at most 1.0x) and, for reference only, against the CSV baseline above (the JSONL file is about
  twice the CSV's size, and JSON is more work to parse than CSV whoever parses it).
- a TensorBoard event file of `--scalars` scalars (written by TensorBoard's own `EventFileWriter`): ours against
  `EventAccumulator(path, size_guidance={"scalars": 0}).Reload()` (0 keeps every scalar, as ours does), and the
  accumulator's default (a 10,000-scalar reservoir per tag). Target: ours at least as fast as both.

Every sample runs in a fresh subprocess so that its peak memory is its own (VmHWM from /proc: `ru_maxrss` would
carry the parent's high-water mark across exec); the time is measured inside, around the read alone (imports
excluded, on both sides). The RSS after imports is reported beside the peak.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_OUT = HERE / "results" / "metrics.json"
TIMEOUT_S = 600

_PRELUDE = """
import json, sys, time
from pathlib import Path
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0
"""

CASES: dict[str, tuple[str, str]] = {
    # name: (imports, the timed expression on `path`)
    "ours": (
        "from research_mcp.tools.metrics import read_metrics\nfrom research_mcp.workspace import Workspace\n"
        "import numpy, pyarrow.csv, pyarrow.json, pyarrow.compute",
        "read_metrics(Workspace(path.parent, 'setting'), path.name, lambda: None, max_chars=10**7)",
    ),
    "pandas_csv": ("import pandas", "pandas.read_csv(path).describe()"),
    "pandas_jsonl": ("import pandas", "pandas.read_json(path, lines=True).describe()"),
    "ours_tb": (
        "from research_mcp.tools.metrics._tfevents import read_tfevents\n"
        "from research_mcp.tools.metrics._records import Limits\nimport numpy\n"
        "from tensorboard.compat.proto import event_pb2\n"
        "from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c",
        "read_tfevents(path, path.name, Limits())",
    ),
    "tb_accumulator_all": (
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator",
        "EventAccumulator(str(path), size_guidance={'scalars': 0}).Reload()",
    ),
    "tb_accumulator_default": (
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator",
        "EventAccumulator(str(path)).Reload()",
    ),
}


def sample(case: str, path: Path) -> dict[str, float]:
    imports, expression = CASES[case]
    code = (
        _PRELUDE
        + imports
        + textwrap.dedent(
            f"""
        path = Path({str(path)!r})
        before = status("VmRSS")
        start = time.perf_counter()
        {expression}
        elapsed = time.perf_counter() - start
        peak = status("VmHWM")
        print(json.dumps({{"s": elapsed, "peak_bytes": peak, "rss_before_bytes": before}}))
        """
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{case} on {path.name} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_logs(folder: Path, rows: int) -> tuple[Path, Path]:
    import numpy as np

    rng = np.random.default_rng(0)
    loss = (2.0 * np.exp(-np.arange(rows) / rows * 5) + rng.random(rows) * 0.1).tolist()
    acc = rng.random(rows).tolist()
    csv, jsonl = folder / "log.csv", folder / "log.jsonl"
    with csv.open("w") as fh:
        fh.write("step,train_loss,val_acc,lr\n")
        fh.writelines(f"{i},{loss[i]!r},{acc[i]!r},0.001\n" for i in range(rows))
    with jsonl.open("w") as fh:
        fh.writelines(
            json.dumps({"step": i, "train_loss": loss[i], "val_acc": acc[i], "lr": 0.001}) + "\n" for i in range(rows)
        )
    return csv, jsonl


def write_tfevents(folder: Path, scalars: int, tags: int = 4) -> Path:
    event_pb2: Any = importlib.import_module("tensorboard.compat.proto.event_pb2")
    summary_pb2: Any = importlib.import_module("tensorboard.compat.proto.summary_pb2")
    writer = importlib.import_module("tensorboard.summary.writer.event_file_writer").EventFileWriter(
        str(folder / "tb"), max_queue_size=1000
    )
    for step in range(scalars // tags):
        values = [summary_pb2.Summary.Value(tag=f"train/m{t}", simple_value=1.0 / (step + t + 1)) for t in range(tags)]
        writer.add_event(event_pb2.Event(step=step, wall_time=float(step), summary=summary_pb2.Summary(value=values)))
    writer.close()
    [path] = list((folder / "tb").glob("*tfevents*"))
    return path


def interleaved(cases: list[str], path: Path, runs: int) -> dict[str, list[dict[str, float]]]:
    found: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
    for i in range(runs):
        order = cases if i % 2 == 0 else cases[::-1]
        for case in order:
            found[case].append(sample(case, path))
    return found


def _median(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def summarise(samples: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    return {
        case: {
            "median_s": _median(found, "s"),
            "samples_s": [round(s["s"], 4) for s in found],
            "peak_mib": round(_median(found, "peak_bytes") / 2**20, 1),
            "rss_after_imports_mib": round(_median(found, "rss_before_bytes") / 2**20, 1),
        }
        for case, found in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.bench.metrics", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--scalars", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"rows": args.rows, "scalars": args.scalars, "runs": args.runs, "at": time.time()}
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        folder = Path(tmp)
        csv, jsonl = write_logs(folder, args.rows)
        tb = write_tfevents(folder, args.scalars)
        report["files_bytes"] = {
            "csv": csv.stat().st_size,
            "jsonl": jsonl.stat().st_size,
            "tfevents": tb.stat().st_size,
        }
        report["csv"] = summarise(interleaved(["ours", "pandas_csv"], csv, args.runs))
        report["jsonl"] = summarise(interleaved(["ours", "pandas_jsonl"], jsonl, args.runs))
        report["tensorboard"] = summarise(
            interleaved(["ours_tb", "tb_accumulator_all", "tb_accumulator_default"], tb, args.runs)
        )
    ratios = {
        "csv_vs_pandas_read_csv": report["csv"]["ours"]["median_s"] / report["csv"]["pandas_csv"]["median_s"],
        "jsonl_vs_pandas_read_json": report["jsonl"]["ours"]["median_s"] / report["jsonl"]["pandas_jsonl"]["median_s"],
        "jsonl_vs_pandas_read_csv": report["jsonl"]["ours"]["median_s"] / report["csv"]["pandas_csv"]["median_s"],
        "tb_vs_accumulator_all": report["tensorboard"]["ours_tb"]["median_s"]
        / report["tensorboard"]["tb_accumulator_all"]["median_s"],
        "tb_vs_accumulator_default": report["tensorboard"]["ours_tb"]["median_s"]
        / report["tensorboard"]["tb_accumulator_default"]["median_s"],
    }
    # jsonl_vs_pandas_read_csv is for reference: JSON is more text to parse than CSV (the JSONL file here is about
    # twice the CSV's size), so the target for JSONL is pandas reading the same JSONL file
    targets = {name: 1.0 for name in ratios if name != "jsonl_vs_pandas_read_csv"}
    report["ratios"] = ratios
    report["targets"] = {"at_most": targets, "met": {name: ratios[name] <= target for name, target in targets.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"files: {report['files_bytes']}")
    for section in ("csv", "jsonl", "tensorboard"):
        for case, found in report[section].items():
            print(
                f"{section:12} {case:24} median {found['median_s'] * 1000:8.1f} ms"
                f"  peak RSS {found['peak_mib']:7.1f} MiB  (after imports {found['rss_after_imports_mib']:.1f} MiB)"
            )
    for name, ratio in ratios.items():
        target = targets.get(name)
        verdict = (
            "for reference" if target is None else f"target <= {target:.1f}x  {'met' if ratio <= target else 'MISSED'}"
        )
        print(f"{name:28} {ratio:6.3f}x  {verdict}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
