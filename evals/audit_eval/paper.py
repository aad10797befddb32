"""The paper the eval builds from recorded runs: runs recorded as `run_experiment` records them, their metric files,
then `compare_runs`, `results_table`, `plot_metrics` and `cite` (the domain functions the tools call) write the
comparison, the table, the figure and the bibliography, and the text quotes the numbers they printed.

Every value comes from a seeded generator, so the same seed builds the same paper byte for byte (run ids aside,
which are random; the text quotes them only through the table's provenance comments and the appendix).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from research_mcp.config import Settings
from research_mcp.sandbox.models import RunRequest
from research_mcp.sandbox.runs import RunManager
from research_mcp.store import Store
from research_mcp.tools.literature.citations import cite
from research_mcp.tools.metrics import RunBook, compare_runs, plot_metrics, results_table
from research_mcp.tools.metrics.stored import store_comparison
from research_mcp.tools.metrics.table import format_mean_std
from research_mcp.workspace import Workspace

__all__ = ["MAIN", "TRAIN_PY", "BuiltPaper", "Scale", "build_paper", "run_code_files"]

MAIN = "paper/main.tex"
REAL_PAPERS = ("1605.08386", "astro-ph/0601001", "quant-ph/0201082v1")
"""arXiv ids the bibliography cites: the ones whose real answers are recorded in ../shared/fixtures/arxiv."""
STEPS = 400
LOG_EVERY = 50
CONFIG = {"lr": 0.1, "width": 64, "steps": STEPS, "batch_size": 128}
FINAL_ACC = {"baseline": 0.874, "method": 0.912, "ablation": 0.889}
"""The accuracy each configuration converges to, before seed noise."""

TRAIN_PY = '''"""Train a two-layer MLP on two interleaved spirals; log metrics to outputs/metrics.jsonl."""

import argparse
import json
import os

import numpy as np


def spirals(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    theta = np.sqrt(rng.random(n)) * 3 * np.pi
    arm = rng.integers(0, 2, n)
    radius = 2 * theta + np.pi
    x = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1) * np.where(arm, 1, -1)[:, None]
    return x / 10 + rng.normal(0, noise, (n, 2)), arm


def forward(params: dict[str, np.ndarray], x: np.ndarray, residual: bool) -> tuple[np.ndarray, np.ndarray]:
    hidden = np.tanh(x @ params["w1"] + params["b1"])
    if residual:
        hidden = hidden + np.tanh(hidden @ params["wr"])
    logits = hidden @ params["w2"] + params["b2"]
    return hidden, 1 / (1 + np.exp(-logits[:, 0]))


def loss_of(prob: np.ndarray, y: np.ndarray) -> float:
    eps = 1e-7
    return float(-np.mean(y * np.log(prob + eps) + (1 - y) * np.log(1 - prob + eps)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--residual", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    x_train, y_train = spirals(4000, 0.05, rng)
    x_val, y_val = spirals(1000, 0.05, rng)
    params = {
        "w1": rng.normal(0, 1, (2, args.width)), "b1": np.zeros(args.width),
        "wr": rng.normal(0, 0.1, (args.width, args.width)),
        "w2": rng.normal(0, 0.1, (args.width, 1)), "b2": np.zeros(1),
    }
    os.makedirs("outputs", exist_ok=True)
    with open("outputs/metrics.jsonl", "w") as log:
        for step in range(args.steps + 1):
            batch = rng.integers(0, len(x_train), args.batch_size)
            hidden, prob = forward(params, x_train[batch], args.residual)
            grad = (prob - y_train[batch])[:, None] / args.batch_size
            params["w2"] -= args.lr * hidden.T @ grad
            params["b2"] -= args.lr * grad.sum(0)
            back = grad @ params["w2"].T * (1 - hidden**2)
            params["w1"] -= args.lr * x_train[batch].T @ back
            params["b1"] -= args.lr * back.sum(0)
            if step % 50 == 0:
                _, val_prob = forward(params, x_val, args.residual)
                record = {
                    "step": step,
                    "train_loss": loss_of(prob, y_train[batch]),
                    "val_loss": loss_of(val_prob, y_val),
                    "val_acc": float(np.mean((val_prob > 0.5) == y_val)),
                }
                log.write(json.dumps(record) + "\\n")


if __name__ == "__main__":
    main()
'''


@dataclass(frozen=True)
class Scale:
    """How big a paper to build: seeds per configuration and how many discussion paragraphs pad the text."""

    seeds: dict[str, int] = field(default_factory=lambda: {"baseline": 3, "method": 3, "ablation": 1})
    discussion: int = 2
    appendix: bool = True
    """An appendix line per run quoting its id and its own final numbers."""


@dataclass
class BuiltPaper:
    root: Path
    main: str
    runs: dict[str, list[str]]
    quoted: dict[str, str] = field(default_factory=dict[str, str])
    """Name -> the text of a number as the paper prints it (the changed-number seeds pick from these)."""
    words: int = 0


def _curve(final: float, rng: random.Random) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    for step in range(0, STEPS + 1, LOG_EVERY):
        progress = 1 - math.exp(-step / 90) if step < STEPS else 1.0
        acc = 0.5 + (final - 0.5) * progress + (rng.gauss(0, 0.004) if step < STEPS else 0.0)
        val_loss = 0.69 * (1 - progress) + (1 - final) * 2.1 * progress + rng.gauss(0, 0.003)
        rows.append({
            "step": step, "train_loss": round(val_loss * 0.93 + rng.gauss(0, 0.01), 6),
            "val_loss": round(val_loss, 6), "val_acc": round(acc, 6),
        })  # fmt: skip
    return rows


def record_runs(root: Path, scale: Scale, rng: random.Random) -> dict[str, list[str]]:
    """Runs recorded the way run_experiment records them (a snapshot of exp/, label, config, seed), finished with
    their metrics.jsonl in outputs/, as the tests' `record_runs` does."""
    (root / "exp").mkdir(parents=True, exist_ok=True)
    (root / "exp" / "train.py").write_text(TRAIN_PY, encoding="utf-8")
    store = Store(root / ".research" / "state.db")
    manager = RunManager(Workspace(root, "setting"), store, {}, choose=lambda: "local", max_concurrent=1)
    ids: dict[str, list[str]] = {}
    try:
        for label, seeds in scale.seeds.items():
            for seed in range(seeds):
                config = {**CONFIG, "residual": label != "baseline", "gate": label == "method"}
                command = f"python train.py --seed {seed}" + (" --residual" if config["residual"] else "")
                request = {"command": command, "workdir": "exp", "label": label, "seed": seed, "config": config}
                run = manager.prepare(RunRequest.model_validate(request))
                final = FINAL_ACC[label] + rng.gauss(0, 0.005)
                rows = _curve(final, rng)
                (root / run.folder / "outputs" / "metrics.jsonl").write_text(
                    "".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8"
                )
                store.connection().execute("UPDATE runs SET state = 'succeeded', exit_code = 0 WHERE id = ?", (run.id,))
                ids.setdefault(label, []).append(run.id)
    finally:
        store.close()
    return ids


def run_code_files(root: Path, run_id: str) -> list[Path]:
    """The copies of a run's code the audit may read: its snapshot (code/) and its working copy (work/)."""
    return [root / "runs" / run_id / part / "train.py" for part in ("code", "work")]


DISCUSSION = [
    "The residual head changes how quickly the hidden features separate the two arms. "
    "Early in training both configurations follow the same curve, and the gap opens only once the first layer "
    "has aligned with the spiral's angle.",
    "We read this as evidence that the gain comes from the head's extra capacity near the decision boundary, "
    "not from a better optimiser state: the training loss of both configurations falls at the same rate.",
    "A wider first layer would be the obvious alternative. We did not run it here, and we make no claim about it; "
    "the comparison in this paper is between the two heads at one width.",
    "The spirals are a synthetic task. They are small enough to run every configuration with several seeds, "
    "which is what lets the comparison carry an uncertainty at all.",
    "Gating the residual branch keeps the head close to the identity at initialisation. "
    "Without the gate, the first hundred steps are noisier, which the shaded bands of the figure show.",
]


def _decimal(value: float) -> str:
    """Two significant digits written out in decimals, as a paper prints a p-value (0.00031, not 3.1e-04)."""
    if value <= 0:
        return "0"
    decimals = max(0, 1 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def _fmt(mean: float, std: float | None) -> str:
    return format_mean_std(mean, std)


def _text(built: BuiltPaper, compared: dict[str, dict[str, tuple[float, float | None]]], p: float | None, scale: Scale,
          keys: list[str], ablation: float) -> str:  # fmt: skip
    acc, loss = compared["val_acc"], compared["val_loss"]
    q = built.quoted
    q["abstract_method_acc"] = _fmt(*acc["method"])
    q["abstract_baseline_acc"] = _fmt(*acc["baseline"])
    q["results_method_loss"] = _fmt(*loss["method"])
    q["results_baseline_loss"] = _fmt(*loss["baseline"])
    if p is not None:
        q["p_value"] = _decimal(p)
        tested = f"The difference is significant (Welch's $t$-test, Holm-corrected $p = {q['p_value']}$)."
    else:
        tested = "With one run per configuration there is no spread to test the difference against."
    q["ablation_acc"] = f"{ablation:.4f}"
    seeds = scale.seeds["method"]
    q["seeds"] = str(seeds)
    over = f"over {seeds} seeds" if seeds > 1 else "in one run"
    times = f"with {seeds} seeds" if seeds > 1 else "once"
    q["steps"] = str(STEPS)
    q["lr"] = str(CONFIG["lr"])
    q["batch_size"] = str(CONFIG["batch_size"])
    q["width"] = str(CONFIG["width"])
    cite_a, cite_b, cite_c = keys
    lines = [
        r"\documentclass[11pt]{article}",
        r"\usepackage{amsmath,booktabs,graphicx}",
        r"\usepackage[hidelinks]{hyperref}",
        r"\title{A Gated Residual Head for Spiral Classification}",
        r"\author{Anonymous}",
        r"\begin{document}",
        r"\maketitle",
        r"\begin{abstract}",
        "We add a gated residual branch to the output head of a two-layer perceptron.",
        f"On two interleaved spirals it reaches a validation accuracy of ${q['abstract_method_acc']}$ "
        f"{over}, against ${q['abstract_baseline_acc']}$ for the plain head.",
        r"\end{abstract}",
        r"\section{Introduction}\label{sec:intro}",
        "Two interleaved spirals are a classic test of whether a small network can bend its decision boundary.",
        f"Sampling-based views of such boundaries go back to random walks on lattice fibres~\\cite{{{cite_a}}}.",
        "We ask whether a residual branch in the output head helps a narrow network draw that boundary.",
        r"Section~\ref{sec:method} describes the head, Section~\ref{sec:setup} the runs, and "
        r"Section~\ref{sec:results} what they show.",
        r"\section{Method}\label{sec:method}",
        "The network maps a point in the plane to a hidden layer with a tanh activation.",
        "The residual head adds a second tanh layer whose output is summed with the hidden features before the "
        "logistic output.",
        "The gate multiplies the residual branch by a learned scalar that starts at zero.",
        r"\begin{equation}\label{eq:head}",
        r"  h' = h + g \tanh(W_r h), \qquad p = \sigma(w^\top h' + b)",
        r"\end{equation}",
        r"Equation~\eqref{eq:head} reduces to the plain head when $g = 0$.",
        r"\section{Experimental setup}\label{sec:setup}",
        f"Every run trains for {q['steps']} steps with plain gradient descent at learning rate {q['lr']} "
        f"and batch size {q['batch_size']}.",
        f"The hidden layer has width {q['width']}, and each configuration is run {times}.",
        f"The survey of detection rates in transit surveys~\\cite{{{cite_b}}} motivates reporting a spread over "
        "seeds rather than one number.",
        f"The code follows the structure of early quantum programming language work~\\cite{{{cite_c}}} only in "
        "keeping the model and its training loop apart.",
        r"\section{Results}\label{sec:results}",
        r"Table~\ref{tab:main} gives the final numbers and Figure~\ref{fig:curves} the validation accuracy over "
        r"training.",
        r"\begin{figure}[t]",
        r"  \centering",
        r"  \includegraphics[width=\linewidth]{figures/val_acc_curves.pdf}",
        r"  \caption{Validation accuracy over training, mean over seeds with a 95\% band.}\label{fig:curves}",
        r"\end{figure}",
        r"\input{tables/main}",
        f"The gated head raises validation accuracy from ${q['abstract_baseline_acc']}$ to "
        f"${q['abstract_method_acc']}$.",
        tested,
        f"Validation loss falls from ${q['results_baseline_loss']}$ to ${q['results_method_loss']}$.",
        f"A single run without the gate reaches an accuracy of {q['ablation_acc']}; with one seed we draw no "
        "conclusion from it.",
    ]
    for i in range(scale.discussion):
        lines.append(rf"\subsection{{Discussion, part {i + 1}}}")
        lines.extend(DISCUSSION[(i + k) % len(DISCUSSION)] for k in range(len(DISCUSSION)))
    lines += [
        r"\section{Limitations}\label{sec:limitations}",
        "The spirals are one small synthetic task, and the networks are narrow; the gain may not carry over to "
        "larger models or real data.",
        "We tuned neither the learning rate nor the width for the residual head.",
    ]
    if scale.appendix:
        lines += [r"\appendix", r"\section{Every run}\label{sec:runs}"]
        for label in ("baseline", "method", "ablation"):
            for seed, run_id in enumerate(built.runs.get(label, [])):
                final_acc, final_loss = ablation_values(built.root, run_id)
                lines.append(
                    f"Run \\texttt{{{run_id}}} ({label}, seed {seed}) ends at validation accuracy "
                    f"{final_acc:.4f} and validation loss {final_loss:.4f}."
                )
    lines += [r"\bibliographystyle{plain}", r"\bibliography{references}", r"\end{document}", ""]
    return "\n".join(lines)


def ablation_values(root: Path, run_id: str) -> tuple[float, float]:
    """A run's last val_acc and val_loss, read from its metrics file."""
    rows = (root / "runs" / run_id / "outputs" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    last = json.loads(rows[-1])
    return float(last["val_acc"]), float(last["val_loss"])


def build_paper(root: Path, settings: Settings, scale: Scale, seed: int) -> BuiltPaper:
    """Record the runs, write the table, figure and bibliography with the domain functions, then the text."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    runs = record_runs(root, scale, rng)
    ws = Workspace(root, "setting")
    store = Store(root / ".research" / "state.db")
    try:
        book: Callable[[], RunBook | None] = lambda: RunBook(store)  # noqa: E731
        labels = ["baseline", "method"]
        compared: dict[str, dict[str, tuple[float, float | None]]] = {}
        p_value: float | None = None
        for metric in ("val_acc", "val_loss"):
            found = compare_runs(ws, book, metric, labels=labels)
            compared[metric] = {g.name: (g.mean, g.std) for g in found.groups}
            with store.transaction():  # kept as the compare_runs tool keeps it, so the p-value traces
                store_comparison(store, found)
            if metric == "val_acc":
                p_value = found.tests[0].p_holm if found.tests else None
        results_table(
            ws, book, ["val_acc", "val_loss"], "Final validation accuracy and loss", "main",
            labels=["baseline", "method", "ablation"],
        )  # fmt: skip
        plot_metrics(ws, book, ["val_acc"], groups={label: runs[label] for label in labels}, name="val_acc_curves")
    finally:
        store.close()
    cite_store = Store(root.parent / f"{root.name}-cite.db")  # the look-ups' cache stays out of the paper's store
    try:
        cited = anyio.run(lambda: cite(settings, cite_store, ws, list(REAL_PAPERS)))
    finally:
        cite_store.close()
    built = BuiltPaper(root=root, main=MAIN, runs=runs)
    ablation, _ = ablation_values(root, runs["ablation"][0])
    text = _text(built, compared, p_value, scale, cited.keys, ablation)
    (root / MAIN).write_text(text, encoding="utf-8")
    built.words = len(text.split())
    return built
