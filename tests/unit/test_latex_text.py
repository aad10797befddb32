from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from research_mcp.errors import LatexError
from research_mcp.latex._flatten import strip_comment
from research_mcp.latex.text import TextLimits, find_main_file, read_latex
from tests.conftest import fixtures_dir

MAIN = r"""\documentclass{article}
\usepackage{natbib}
\title{A Study of Things\thanks{Funded by nobody.}}
\bibliography{refs}
\begin{document}
\maketitle
\begin{abstract}
We show that things work 93.2\% of the time.
\end{abstract}
\section{Introduction}\label{sec:intro}
Prior work \citep{smith2020,doe2021} and \citet{smith2020}. % \input{commented}
\input{sections/method}
\include{results}
\section*{Acknowledgements}
Thanks.
\appendix
\section{Proofs}
\subsection{Lemma}
Proof of $x = 3$.
\end{document}
"""

METHOD = r"""\section{Method}\label{sec:method}
We train for 100 epochs with a learning rate of 3e-4.
\subsection{Model}
\begin{equation}
  y = W x + b
\end{equation}
"""

RESULTS = r"""\section{Results}
Table~\ref{tab:main} and Figure~\ref{fig:curve}.
\begin{table}[t]
\caption{Main results.}\label{tab:main}
\begin{tabular}{lc}
\toprule
Model & Acc \\
\midrule
Ours & 0.912 \\
\bottomrule
\end{tabular}
\end{table}
\begin{figure}
\includegraphics[width=\linewidth]{figures/curve.pdf}
\caption{Loss curve.}\label{fig:curve}
\end{figure}
"""


@pytest.fixture
def paper(tmp_path: Path) -> Path:
    root = tmp_path / "paper"
    (root / "sections").mkdir(parents=True)
    (root / "main.tex").write_text(MAIN)
    (root / "sections" / "method.tex").write_text(METHOD)
    (root / "results.tex").write_text(RESULTS)
    (root / "commented.tex").write_text("\\section{Never}\n")
    return root


def test_inputs_are_followed_and_each_heading_points_at_its_own_file_and_line(paper: Path) -> None:
    doc = read_latex(paper / "main.tex")
    assert doc.files == ["main.tex", "sections/method.tex", "results.tex"]
    where = {s.title: (s.number, s.level, s.file, s.line) for s in doc.outline}
    assert where["Introduction"] == ("1", 1, "main.tex", 10)
    assert where["Method"] == ("2", 1, "sections/method.tex", 1)
    assert where["Model"] == ("2.1", 2, "sections/method.tex", 3)
    assert where["Results"] == ("3", 1, "results.tex", 1)
    assert where["Acknowledgements"][0] is None
    assert where["Proofs"][0] == "A" and where["Lemma"][0] == "A.1"
    assert "Never" not in doc.text and doc.warnings == []


def test_title_abstract_keys_floats_and_numbers_are_collected(paper: Path) -> None:
    doc = read_latex(paper / "main.tex")
    assert doc.title == "A Study of Things"
    assert doc.abstract == "We show that things work 93.2% of the time."
    assert [(c.key, c.uses, c.line) for c in doc.cites] == [("smith2020", 2, 11), ("doe2021", 1, 11)]
    assert {r.key for r in doc.refs} == {"tab:main", "fig:curve"}
    assert {lab.key: lab.file for lab in doc.labels}["tab:main"] == "results.tex"
    table, figure = doc.floats
    assert (table.kind, table.caption, table.labels, table.line) == ("table", "Main results.", ["tab:main"], 3)
    assert (figure.kind, figure.graphics, figure.file) == ("figure", ["figures/curve.pdf"], "results.tex")
    numbers = {n.text: n for n in doc.numbers}
    assert numbers["93.2%"].value == pytest.approx(93.2) and numbers["93.2%"].line == 8
    assert numbers["3e-4"].value == pytest.approx(3e-4) and numbers["3e-4"].file == "sections/method.tex"
    assert numbers["0.912"].file == "results.tex" and numbers["0.912"].line == 9
    assert numbers["3"].in_math and not numbers["100"].in_math
    assert doc.bib_files == ["refs"]


def test_section_text_keeps_math_as_latex_and_renders_citations_tables_and_floats(paper: Path) -> None:
    doc = read_latex(paper / "main.tex")
    method = doc.section_text(doc.find_section("Method").index)
    assert "y = W x + b" in method and "\\begin{equation}" in method and "## 2.1 Model" in method
    assert "Results" not in method
    intro = doc.section_text(doc.find_section("1").index)
    assert "[@smith2020; @doe2021]" in intro
    results = doc.section_text(doc.find_section("results").index)
    assert "[Table tab:main: Main results.]" in results and "Ours | 0.912" in results
    assert "[Figure fig:curve: Loss curve.]" in results
    whole = doc.text
    assert whole.index("# 1 Introduction") < whole.index("# 2 Method") < whole.index("# A Proofs")


def test_word_counts_include_subsections_and_leave_math_out(paper: Path) -> None:
    doc = read_latex(paper / "main.tex")
    proofs, lemma = doc.find_section("Proofs"), doc.find_section("Lemma")
    assert lemma.words == 2  # "Proof of", the equation is not counted
    assert proofs.words == lemma.words and proofs.chars == lemma.chars  # Proofs has no text of its own


def test_an_unknown_section_lists_the_outline(paper: Path) -> None:
    doc = read_latex(paper / "main.tex")
    with pytest.raises(LatexError, match=r"Introduction.*Method"):
        doc.find_section("nonexistent")
    with pytest.raises(LatexError, match="outline has"):
        doc.find_section(99)


def test_inputs_outside_the_root_are_never_read(tmp_path: Path) -> None:
    root = tmp_path / "paper"
    root.mkdir()
    (tmp_path / "secret.tex").write_text("TOPSECRET\n")
    (root / "link.tex").symlink_to(tmp_path / "secret.tex")
    (root / "main.tex").write_text(
        "\\documentclass{article}\\begin{document}\n"
        "\\input{/etc/passwd}\n\\input{../secret}\n\\input{link}\n\\input ../secret.tex\n"
        "\\subimport{../}{secret}\n\\import{/tmp/}{secret}\nEnd.\n\\end{document}\n"
    )
    doc = read_latex(root / "main.tex")
    assert "TOPSECRET" not in doc.text and "root:" not in doc.text
    assert doc.files == ["main.tex"]
    assert len(doc.warnings) == 6
    assert "absolute path" in doc.warnings[0] and "outside the paper folder" in doc.warnings[1]


def test_a_file_that_includes_itself_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "main.tex").write_text("\\begin{document}\n\\input{a}\n\\end{document}\n")
    (tmp_path / "a.tex").write_text("A text.\n\\input{b}\n")
    (tmp_path / "b.tex").write_text("B text.\n\\input{a}\n")
    doc = read_latex(tmp_path / "main.tex")
    assert doc.files == ["main.tex", "a.tex", "b.tex"]
    assert "include itself" in doc.warnings[0]


def test_limits_stop_reading_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "main.tex").write_text("".join(f"\\input{{p{i}}}\n" for i in range(5)))
    for i in range(5):
        (tmp_path / f"p{i}.tex").write_text(f"Part {i}.\n")
    doc = read_latex(tmp_path / "main.tex", limits=TextLimits(max_files=3))
    assert len(doc.files) == 3 and "limit" in doc.warnings[0]


def test_endinput_and_verbatim_are_respected(tmp_path: Path) -> None:
    (tmp_path / "main.tex").write_text(
        "\\begin{document}\n\\begin{verbatim}\n100% \\input{x}\n\\end{verbatim}\nShown.\\endinput Hidden.\nGone.\n"
    )
    doc = read_latex(tmp_path / "main.tex")
    assert "100% \\input{x}" in doc.text and "Shown." in doc.text
    assert "Hidden" not in doc.text and "Gone" not in doc.text and doc.warnings == []


def test_main_file_is_found_by_readme_or_by_preamble(tmp_path: Path) -> None:
    (tmp_path / "intro.tex").write_text("\\section{Intro}\n")
    (tmp_path / "draft.tex").write_text("\\documentclass{article}\\begin{document}\\input{intro}\\end{document}\n")
    (tmp_path / "old.tex").write_text("% \\documentclass{article}\\begin{document}\n")
    assert find_main_file(tmp_path) == (tmp_path / "draft.tex").resolve()
    (tmp_path / "ms.tex").write_text("\\documentclass{article}\n\\begin{document}\nx\n\\end{document}\n")
    assert find_main_file(tmp_path).name == "ms.tex"
    (tmp_path / "00README.json").write_text(json.dumps({"sources": [{"filename": "draft.tex", "usage": "toplevel"}]}))
    assert find_main_file(tmp_path).name == "draft.tex"


def test_no_main_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.tex").write_text("\\section{x}\n")
    with pytest.raises(LatexError, match="No main .tex file"):
        find_main_file(tmp_path)


def test_a_main_file_outside_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "main.tex").write_text("x")
    with pytest.raises(LatexError, match="not a file inside"):
        read_latex(tmp_path / "main.tex", tmp_path / "root")


@pytest.mark.parametrize(
    ("line", "kept"),
    [("a % b", "a "), ("50\\% done", "50\\% done"), ("x \\\\% c", "x \\\\"), ("\\\\\\%", "\\\\\\%"), ("%", "")],
)
def test_strip_comment_keeps_escaped_percent_signs(line: str, kept: str) -> None:
    assert strip_comment(line) == kept


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.sampled_from(
            [
                "\\section{",
                "}",
                "{",
                "$",
                "\\begin{figure}",
                "\\end{table}",
                "\\cite{a,",
                "\\input{x}",
                "\\\\",
                "&",
                "12.5",
                "%",
                "\\label{",
                "\\caption{",
                "word ",
                "\n",
                "\\begin{tabular}{c}",
                "\\end{document}",
            ]
        ),  # fmt: skip
        max_size=40,
    )
)
def test_any_token_soup_reads_without_crashing(tmp_path: Path, tokens: list[str]) -> None:
    (tmp_path / "main.tex").write_text("".join(tokens))
    doc = read_latex(tmp_path / "main.tex")
    assert isinstance(doc.text, str)
    for section in doc.outline:
        doc.section_text(section.index)


def test_real_paper_outline_and_numbers_match_its_source() -> None:
    root = fixtures_dir("latex") / "ai-scientist_multi_style_adapter" / "latex"
    main = find_main_file(root)
    doc = read_latex(main)
    assert main.name == "template.tex"
    assert doc.title == "StyleFusion: Adaptive Multi-Style Generation in Character-Level Language Models"
    assert [s.title for s in doc.outline if s.level == 1] == [
        "Abstract", "Introduction", "Related Work", "Background", "Method", "Experimental Setup", "Results",
        "Conclusion",
    ]  # fmt: skip
    source = main.read_text().splitlines()
    for section in doc.outline[1:]:
        assert section.title.split()[0] in source[section.line - 1]
    for number in doc.numbers:
        assert number.text.rstrip("%") in source[number.line - 1]
    assert {f.graphics[0] for f in doc.floats if f.kind == "figure"} >= {"val_loss_enwik8.png"}
    assert len(doc.cites) >= 8 and "0.9488" in [n.text for n in doc.numbers]


def test_symlinked_root_folder_still_reads(tmp_path: Path, paper: Path) -> None:
    link = tmp_path / "link"
    os.symlink(paper, link)
    assert read_latex(link / "main.tex").files[1] == "sections/method.tex"


def test_a_numbers_context_keeps_the_formula_around_it(tmp_path: Path) -> None:
    prose = "Some words. " * 20
    (tmp_path / "main.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\n"
        f"{prose}Ours reaches $93.2 \\pm 0.4$\\% accuracy (\\textbf{{best}}), "
        f"against ${'x + ' * 40}y = 71.5$ for the baseline. {prose}\n\\end{{document}}\n"
    )
    numbers = {n.text: n for n in read_latex(tmp_path / "main.tex").numbers}
    assert "$93.2 \\pm 0.4$% accuracy ( best )" in numbers["93.2"].context and numbers["0.4"].in_math
    baseline = numbers["71.5"].context
    assert baseline.count("$") == 2 and baseline.startswith("Some words") is False and "$x + x" in baseline
