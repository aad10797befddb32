"""The anonymiser: what it drops and what it keeps, on PDF-like text, on read_latex text and on the ICLR fixtures."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from research_mcp.latex.text import read_latex
from research_mcp.tools.review.anonymise import anonymise
from tests.conftest import fixtures_dir

PDF_TEXT = """Published as a conference paper at ICLR 2022

# ROBUST LEARNING OF THINGS
## WITH MORE THINGS

**Jane Doe[∗]**
Oxford University
jane.doe@ox.ac.uk

**John Roe**
{john, jim}@google.com

ABSTRACT

**Arnu Example**
InstaDeep Ltd.
South Africa

We study things. Our code is at https://github.com/jane/things and runs fast.

1 INTRODUCTION

Things matter (Smith et al., 2021). The code will be released upon acceptance. We show three results.
See www.example.org/page for data and anonymous.4open.science/r/abc for code.

_∗Equal contribution. Work done while at Example Corp._

Published as a conference paper at ICLR 2022

5 CONCLUSION

We conclude that things are robust.

ACKNOWLEDGMENTS

We thank the Foo Foundation for grant 42 and Bob for comments.

REFERENCES

Smith, A. et al. A paper. 2021.
"""


def test_pdf_text_loses_every_marker_and_keeps_the_science() -> None:
    clean = anonymise(PDF_TEXT)
    gone_words = "Jane John Oxford google.com Arnu InstaDeep github www.example 4open Foundation ACKNOWLEDGMENTS"
    for gone in [*gone_words.split(), "Published as", "upon acceptance", "Equal contribution"]:
        assert gone not in clean, gone
    assert clean.startswith("# ROBUST LEARNING OF THINGS\n## WITH MORE THINGS\n\nABSTRACT\n\nWe study things.")
    for kept in ("1 INTRODUCTION", "Things matter (Smith et al., 2021).", "We show three results.",
                 "5 CONCLUSION", "We conclude that things are robust.", "REFERENCES", "Smith, A. et al."):  # fmt: skip
        assert kept in clean, kept


def test_minimal_keeps_sentences_and_footnotes_but_drops_the_spec_list() -> None:
    clean = anonymise(PDF_TEXT, minimal=True)
    assert "upon acceptance" in clean and "Equal contribution" in clean
    assert "github" not in clean and "Jane" not in clean and "Foo Foundation" not in clean


def test_submission_lines_and_plain_titles() -> None:
    text = (
        "Under review as a conference paper at ICLR 2022\nOn the Convergence of\nDeep Learning\n"
        "Anonymous authors\nPaper under double-blind review\nAbstract\nWe prove a bound.\n\n"
        "1 INTRODUCTION\nText. Code will be made available in the camera-ready version. More text.\n"
    )
    clean = anonymise(text)
    assert clean.startswith("On the Convergence of\nDeep Learning\n\nAbstract\nWe prove a bound.")
    assert "Anonymous" not in clean and "double-blind" not in clean and "Under review" not in clean
    assert "camera-ready" not in clean and "Text." in clean and "More text." in clean


def test_run_in_bold_acknowledgements_stop_at_the_next_heading() -> None:
    text = (
        "# T\n\nABSTRACT\n\nA.\n\n**Acknowledgement: This work was supported by the Agency.**\nMore thanks.\n\n"
        "A APPENDIX\n\nProof.\n"
    )
    clean = anonymise(text)
    assert "Agency" not in clean and "More thanks" not in clean and "A APPENDIX\n\nProof." in clean


def test_latex_text(tmp_path: Path) -> None:
    (tmp_path / "main.tex").write_text(
        r"""\documentclass{article}
\title{A Great Paper\thanks{Work done at X.}}
\author{Jane Doe \\ \texttt{jane@uni.edu}}
\begin{document}
\maketitle
\begin{abstract}
We do things. Code is at \url{https://github.com/jane/thing}.
\end{abstract}
\section{Introduction}
Hello world. Code will be released upon acceptance. Contact jane@uni.edu for data.
\section*{Acknowledgements}
We thank our funders, grant 123.
\section{Method}
More text \href{https://example.com/x}{here}.
\end{document}
"""
    )
    document = read_latex(tmp_path / "main.tex")
    clean = anonymise(document.text)
    assert clean.startswith("# Abstract\n\nWe do things. Code is at")
    for gone in ("github", "example.com", "jane@", "upon acceptance", "funders", "Acknowledgements"):
        assert gone not in clean, gone
    assert "Hello world." in clean and "# 1 Introduction" in clean and "# 2 Method\n\nMore text here" in clean


def test_no_version_marker_survives_on_the_iclr_texts() -> None:
    folder = fixtures_dir("reviews")
    with (folder / "ratings_subset.tsv").open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    markers = {
        "anonymous authors": re.compile(r"anonymous\s+authors", re.IGNORECASE),
        "Acknowledg": re.compile(r"Acknowledg"),
        "e-mail": re.compile(r"[\w.+-]+@[A-Za-z0-9-]+\.[A-Za-z]{2,}"),
        "github.com": re.compile(r"github\.com", re.IGNORECASE),
        "version line": re.compile(r"(?:Published as|Under review as) a conference paper"),
    }
    found: dict[str, list[str]] = {name: [] for name in markers}
    removed = {True: [], False: []}
    for row in rows:
        raw = (folder / "iclr_parsed" / f"{row['paper_id']}.txt").read_text(errors="replace")
        clean = anonymise(raw)
        removed[row["decision"].startswith("Accept")].append(len(raw.split()) - len(clean.split()))
        for name, pattern in markers.items():
            if pattern.search(clean):
                found[name].append(row["paper_id"])
    assert {name: ids for name, ids in found.items() if ids} == {}
    accepted, rejected = sorted(removed[True]), sorted(removed[False])
    assert len(accepted) == 184 and len(rejected) == 316
    # the cleaner takes the author block and the acknowledgements from camera-ready texts, little from submissions
    assert 50 <= accepted[len(accepted) // 2] <= 120 and rejected[len(rejected) // 2] <= 25


def test_a_late_abstract_heading_keeps_the_text_before_it() -> None:
    body = "\n".join(f"Line {i} of the introduction." for i in range(200))
    clean = anonymise(f"# TITLE\n\n**Jane Doe**\njane@x.org\n\n1 INTRODUCTION\n\n{body}\n\nABSTRACT\n\nLate.\n")
    assert "Jane" not in clean and "jane@" not in clean
    assert "Line 0 of the introduction." in clean and "Line 199 of the introduction." in clean


@pytest.mark.parametrize("text", ["", "\n\n", "Just one line with no structure."])
def test_degenerate_inputs(text: str) -> None:
    assert anonymise(text).strip() == text.strip()
