"""What the demo puts in its workspace before the session: the digits data a package ships, and the text of the
training script, the plan and the two configurations the runs compare.

The data is the 8x8 handwritten digits set that scikit-learn's wheel carries (`sklearn/datasets/data/digits.csv.gz`,
1797 images of 64 grey levels 0-16, a label in the last column: the test part of the UCI optdigits set). It is
found through the package's import spec, without importing scikit-learn, and copied into `datasets/digits/`.
The script needs numpy alone, so the local sandbox (the system's python3 with numpy) and the offline Docker image
(Debian's python3-numpy) both run it without building an environment.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path

__all__ = [
    "CONFIGS",
    "DATA",
    "PLAN_MD",
    "RUN_DATA",
    "SEEDS",
    "TRAIN_PY",
    "SklearnMissing",
    "copy_digits",
    "find_digits",
]

DATA = "datasets/digits/digits.csv.gz"
"""Where the data lands in the workspace, and what the runs read (their snapshot holds the workspace)."""
RUN_DATA = "/data/digits/digits.csv.gz"
"""Where the runs read it: the workspace's datasets/ is mounted read-only at /data in every run."""
SEEDS = (0, 1, 2)
CONFIGS: dict[str, dict[str, float | int | str]] = {
    "softmax": {"model": "softmax", "lr": 0.5, "epochs": 30, "batch_size": 32},
    "mlp": {"model": "mlp", "hidden": 64, "lr": 0.1, "epochs": 30, "batch_size": 32},
}
"""Label -> the run's config; the script takes each key as a --flag."""
INSTALL = "pip install 'research-mcp[demo]'"


class SklearnMissing(Exception):
    """scikit-learn, whose wheel carries the digits, is not installed in this interpreter's environment."""


def find_digits() -> tuple[Path, str]:
    """The digits file inside the installed scikit-learn, and scikit-learn's version; no import of sklearn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise SklearnMissing(f"scikit-learn is not installed (it ships the digits data): run `{INSTALL}`.")
    for root in spec.submodule_search_locations:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path, importlib.metadata.version("scikit-learn")
    raise SklearnMissing(f"This scikit-learn has no datasets/data/digits.csv.gz; reinstall it: `{INSTALL}`.")


def copy_digits(workspace: Path) -> tuple[str, str]:
    """Copy the digits into `datasets/digits/` with a note of where they came from; the workspace path and the
    scikit-learn version."""
    source, version = find_digits()
    folder = workspace / Path(DATA).parent
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, workspace / DATA)
    (folder / "SOURCE.md").write_text(
        f"digits.csv.gz: copied from scikit-learn {version} ({source}).\n"
        "1797 images of 8x8 pixels, grey levels 0-16, the label in the last column: the test part of the UCI\n"
        "Optical Recognition of Handwritten Digits set (Alpaydin and Kaynak, 1998), as scikit-learn ships it.\n",
        encoding="utf-8",
    )
    return DATA, version


_FLAGS = "; ".join(f"{k}: " + ", ".join(f"{a}={v}" for a, v in c.items()) for k, c in CONFIGS.items())
PLAN_MD = f"""\
# Plan: softmax regression against a one-hidden-layer MLP on the 8x8 digits

- Data: `{DATA}` (scikit-learn's copy of UCI optdigits); one fixed split, 25% held out for test.
- Code: `experiment/train.py`, numpy only; logs `metrics.jsonl` per epoch and `final_info.json` to $RESEARCH_OUT.
- Configurations (label: flags): {_FLAGS}.
- Seeds: {", ".join(map(str, SEEDS))} per configuration (initialisation and batch order; the split stays fixed).
- Metrics: final_test_acc (higher is better), final_train_loss; compared with Welch's t-test over seeds.
- Compute: {len(CONFIGS) * len(SEEDS)} CPU runs of a few seconds each, no network, no GPU.
"""

TRAIN_PY = '''\
"""Classify 8x8 handwritten digits with softmax regression or a one-hidden-layer MLP, numpy only.

Writes metrics.jsonl (one line per epoch) and final_info.json into $RESEARCH_OUT (else the current folder).
"""
import argparse
import gzip
import json
import os

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--data", default="datasets/digits/digits.csv.gz")
parser.add_argument("--model", choices=["softmax", "mlp"], required=True)
parser.add_argument("--hidden", type=int, default=64)
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--batch_size", type=int, default=32)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

with gzip.open(args.data, "rt") as f:
    table = np.loadtxt(f, delimiter=",")
x, y = table[:, :-1] / 16.0, table[:, -1].astype(int)
order = np.random.default_rng(12345).permutation(len(y))  # one split for every run: seeds vary the training only
n_test = len(y) // 4
test, train = order[:n_test], order[n_test:]
classes = int(y.max()) + 1
rng = np.random.default_rng(args.seed)


def layer(n_in, n_out):
    return rng.normal(scale=np.sqrt(2.0 / n_in), size=(n_in, n_out)), np.zeros(n_out)


params = [layer(x.shape[1], args.hidden), layer(args.hidden, classes)] if args.model == "mlp" else [
    layer(x.shape[1], classes)
]


def forward(batch):
    """Logits and the hidden activations (ReLU) each layer saw."""
    inputs, h = [], batch
    for i, (w, b) in enumerate(params):
        inputs.append(h)
        h = h @ w + b
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
    return h, inputs


def softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


out = os.environ.get("RESEARCH_OUT", ".")
with open(os.path.join(out, "metrics.jsonl"), "w") as log:
    for epoch in range(1, args.epochs + 1):
        shuffled = rng.permutation(train)
        for start in range(0, len(train), args.batch_size):
            batch = shuffled[start : start + args.batch_size]
            logits, inputs = forward(x[batch])
            grad = softmax(logits)
            grad[np.arange(len(batch)), y[batch]] -= 1.0
            grad /= len(batch)
            for i in range(len(params) - 1, -1, -1):
                w, b = params[i]
                grad_in = grad @ w.T
                params[i] = (w - args.lr * inputs[i].T @ grad, b - args.lr * grad.sum(axis=0))
                grad = grad_in * (inputs[i] > 0)
        probs = softmax(forward(x[train])[0])
        train_loss = float(-np.mean(np.log(probs[np.arange(len(train)), y[train]] + 1e-12)))
        test_acc = float(np.mean(forward(x[test])[0].argmax(axis=1) == y[test]))
        log.write(json.dumps({"epoch": epoch, "train_loss": train_loss, "test_acc": test_acc}) + "\\n")
print(f"{args.model} seed={args.seed}: train_loss={train_loss:.4f} test_acc={test_acc:.4f}")
with open(os.path.join(out, "final_info.json"), "w") as f:
    json.dump({"final_test_acc": test_acc, "final_train_loss": train_loss, "n_examples": len(y),
               "n_train": len(train), "n_test": len(test), "n_features": x.shape[1]}, f)
'''
"""experiment/train.py as the demo writes it."""
