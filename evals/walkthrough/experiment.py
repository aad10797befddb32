"""The experiment the walkthrough writes into its workspace: a numpy logistic regression, by learning rate."""

TRAIN_PY = '''\
"""Logistic regression on a fixed synthetic problem, trained by gradient descent."""
import argparse
import json
import os

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--steps", type=int, default=200)
args = parser.parse_args()

data = np.random.default_rng(1234)
x = data.normal(size=(600, 8))
w_true = data.normal(size=8)
y = (x @ w_true + 0.5 * data.normal(size=600) > 0).astype(float)
x_train, y_train, x_val, y_val = x[:400], y[:400], x[400:], y[400:]

rng = np.random.default_rng(args.seed)
w = rng.normal(scale=0.1, size=8)
out = os.environ.get("RESEARCH_OUT", ".")
with open(os.path.join(out, "metrics.jsonl"), "w") as log:
    for step in range(1, args.steps + 1):
        batch = rng.integers(0, 400, size=32)
        p = 1 / (1 + np.exp(-x_train[batch] @ w))
        w -= args.lr * x_train[batch].T @ (p - y_train[batch]) / 32
        if step % 5 == 0 or step == args.steps:
            p_all = 1 / (1 + np.exp(-x_train @ w))
            loss = float(-np.mean(y_train * np.log(p_all + 1e-9) + (1 - y_train) * np.log(1 - p_all + 1e-9)))
            val_acc = float(np.mean(((x_val @ w) > 0) == y_val))
            log.write(json.dumps({"step": step, "loss": loss, "val_acc": val_acc}) + "\\n")
print(f"lr={args.lr} seed={args.seed} loss={loss:.4f} val_acc={val_acc:.3f}")
with open(os.path.join(out, "final_info.json"), "w") as f:
    json.dump({"final_loss": loss, "final_val_acc": val_acc}, f)
'''

CONFIGS = {"lr_small": 0.05, "lr_large": 0.5}
"""Label -> learning rate: the two configurations compared."""
