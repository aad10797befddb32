"""The paper's text, written by the demo from what the tools answered, never from numbers of its own.

Every number the text shows comes from a tool's answer (read_metrics, compare_runs) or from the runs' configs, and
is written at a precision the audit can trace: a mean accuracy as a percentage with one decimal (96.2\\% traces to
the label's mean 0.9621 over its seeds), a p-value to two significant digits or as a bound, sizes as the runs
logged them. Each piece goes in after a line of the template (`edit_file` on the section's heading).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Facts", "edits"]


@dataclass
class Facts:
    """What the paper may say, as the tools answered it."""

    names: dict[str, str]
    """Label -> how the text names the configuration."""
    configs: dict[str, dict[str, Any]]
    means: dict[str, float]
    """Label -> mean final_test_acc over its seeds (compare_runs)."""
    seeds: int
    sizes: dict[str, int]
    """n_examples, n_train, n_test, n_features as a run logged them (read_metrics)."""
    best: str
    """The label with the higher mean."""
    p_value: float | None
    """Holm-adjusted p of Welch's t-test between the two labels (compare_runs)."""
    hedges_g: float | None
    significant: bool
    figure: str
    """The figure's file stem (plot_metrics)."""
    table: str
    """The table's label (results_table)."""
    cite_keys: list[str] = field(default_factory=list[str])
    """BibTeX keys `cite` returned for the closest papers of the novelty search; empty when offline."""
    offline: str | None = None


def _pct(value: float) -> str:
    return f"{100 * value:.1f}\\%"


def _p(value: float) -> str:
    return "$p < 0.001$" if value < 0.001 else f"$p = {value:.2g}$"


def _comparison(f: Facts) -> str:
    other = next(label for label in f.names if label != f.best)
    best = f.names[f.best][:1].upper() + f.names[f.best][1:]
    said = (
        f"{best} reaches {_pct(f.means[f.best])} mean test accuracy over {f.seeds} seeds, against "
        f"{_pct(f.means[other])} for {f.names[other]}"
    )
    if f.p_value is None:
        return said + "."
    test = f"Welch's t-test, Holm-adjusted {_p(f.p_value)}"
    if f.hedges_g is not None:
        test += f", Hedges' $g = {abs(f.hedges_g):.2g}$"
    if f.significant:
        return f"{said}; the difference is significant ({test})."
    return f"{said}; with {f.seeds} seeds the difference is not significant ({test}), so we claim none."


def edits(f: Facts) -> list[tuple[str, str]]:
    """(a line of the template, the text to put after it), in the order of the paper."""
    softmax, mlp = f.configs["softmax"], f.configs["mlp"]
    n = f.sizes
    if f.cite_keys:
        related = (
            "The novelty search for this idea returned, among others, "
            + ", ".join(f"\\citet{{{key}}}" for key in f.cite_keys)
            + ". Linear and shallow neural classifiers on small digit images are textbook material; this study "
            "adds nothing to them but a reproducible, audited comparison."
        )
    else:
        related = (
            "No prior work is cited: when this paper was written, the literature search could not reach arXiv or "
            "Semantic Scholar and the workspace's library held no paper. Linear and "
            "shallow neural classifiers on small digit images are textbook material; this study adds nothing to "
            "them but a reproducible, audited comparison."
        )
    return [
        (
            "\\begin{abstract}",
            "We compare softmax regression with a one-hidden-layer ReLU network on the 8$\\times$8 handwritten "
            f"digits that scikit-learn ships, trained with numpy alone. {_comparison(f)} Every number in this paper "
            "is traced by research-mcp's audit to the runs that produced it.",
        ),
        (
            "\\section{Introduction}\\label{sec:intro}",
            "How much does one hidden layer buy on a small, clean image classification task? We answer for the "
            "digits data with two configurations run over several seeds in a sandbox, and report means, spreads "
            "and a significance test (Section~\\ref{sec:results}).",
        ),
        ("\\section{Related Work}\\label{sec:related}", related),
        (
            "\\section{Method}\\label{sec:method}",
            f"Softmax regression maps the {n['n_features']} pixel intensities, scaled to $[0, 1]$, to the class "
            f"scores with one linear layer. The network adds a hidden layer of {mlp['hidden']} ReLU units with He "
            "initialisation. Both minimise the cross-entropy by mini-batch gradient descent with batches of "
            f"{softmax['batch_size']} for {softmax['epochs']} epochs, at learning rate {softmax['lr']} for softmax "
            f"regression and {mlp['lr']} for the network.",
        ),
        (
            "\\section{Experimental Setup}\\label{sec:setup}",
            f"The data are the {n['n_examples']} images of the UCI optical recognition of handwritten digits test "
            f"set as scikit-learn ships them. One fixed split holds out a quarter, {n['n_test']} images, for test and "
            f"trains on {n['n_train']}; the seeds change only the initialisation and the order of the batches. "
            f"Each configuration ran with {f.seeds} seeds in research-mcp's sandbox, without network; the run of "
            "each number is named in the provenance comments of Table~\\ref{tab:" + f.table + "}.",
        ),
        (
            "\\section{Results}\\label{sec:results}",
            f"Table~\\ref{{tab:{f.table}}} gives the final test accuracy and training loss of each configuration and "
            f"Figure~\\ref{{fig:{f.figure}}} the test accuracy per epoch. {_comparison(f)}\n"
            f"\\input{{tables/{f.table}}}\n"
            "\\begin{figure}[t]\\centering\n"
            f"\\includegraphics[width=0.7\\linewidth]{{{f.figure}}}\n"
            "\\caption{Test accuracy per epoch: the mean over seeds of each configuration, shaded by the confidence "
            f"interval of the mean.}}\\label{{fig:{f.figure}}}\n"
            "\\end{figure}",
        ),
        (
            "\\section{Limitations}\\label{sec:limitations}",
            "One small data set, one split, few seeds, and learning rates chosen once rather than tuned: the "
            "comparison says how these two configurations behave here, not which model is better in general.",
        ),
        (
            "\\section{Conclusion}\\label{sec:conclusion}",
            f"{_comparison(f)} The whole study, from data to audited paper, ran as a scripted MCP session.",
        ),
    ]
