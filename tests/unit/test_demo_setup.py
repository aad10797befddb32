"""What `research-mcp demo` refuses before it starts a server, and the paper text it writes from the tools' answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from research_mcp.demo.paper import Facts, edits

COMMAND = str(Path(sys.executable).parent / "research-mcp")


def _demo(folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, "demo", str(folder)], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_a_folder_with_files_in_it_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = _demo(tmp_path)
    assert done.returncode == 2 and "not an empty folder" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_scikit_learn_without_the_digits_names_the_install_step(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "sklearn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    done = _demo(
        tmp_path / "demo", {"PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    )
    assert done.returncode == 2 and "pip install 'research-mcp[demo]'" in done.stderr, done.stderr
    assert not (tmp_path / "demo" / "datasets" / "digits" / "digits.csv.gz").exists()


def _facts(p_value: float, significant: bool) -> Facts:
    return Facts(
        names={"softmax": "softmax regression", "mlp": "the network"},
        configs={"softmax": {"lr": 0.5, "epochs": 30, "batch_size": 32}, "mlp": {"hidden": 64, "lr": 0.1}},
        means={"softmax": 0.95771, "mlp": 0.97402}, seeds=3,
        sizes={"n_examples": 1797, "n_train": 1348, "n_test": 449, "n_features": 64},
        best="mlp", p_value=p_value, hedges_g=-1.74, significant=significant, figure="acc", table="main",
    )  # fmt: skip


def test_the_results_sentence_gives_the_tools_numbers_at_a_traceable_precision() -> None:
    text = "\n".join(body for _, body in edits(_facts(0.0823, False)))
    assert "The network reaches 97.4\\% mean test accuracy over 3 seeds, against 95.8\\%" in text
    assert "not significant (Welch's t-test, Holm-adjusted $p = 0.082$, Hedges' $g = 1.7$)" in text
    assert "1797 images" in text and "1348" in text and "449 images" in text
    significant = "\n".join(body for _, body in edits(_facts(0.0004, True)))
    assert "the difference is significant (Welch's t-test, Holm-adjusted $p < 0.001$" in significant


def test_offline_the_related_work_says_why_it_cites_nothing_and_online_it_cites_the_search() -> None:
    offline = dict(edits(_facts(0.08, False)))["\\section{Related Work}\\label{sec:related}"]
    assert "could not reach arXiv or Semantic Scholar" in offline and "\\cite" not in offline
    facts = _facts(0.08, False)
    facts.cite_keys = ["kingma2014adam"]
    assert "\\citet{kingma2014adam}" in dict(edits(facts))["\\section{Related Work}\\label{sec:related}"]
