from __future__ import annotations

from pathlib import Path

import pytest

from research_mcp.errors import BadInputError, FileToolError
from research_mcp.latex import gen_texmap
from research_mcp.latex.logparse import parse_blg, parse_log
from research_mcp.latex.packages import describe_missing, lookup
from research_mcp.latex.scaffold import latex_escape, new_paper

LOG = r"""This is pdfTeX, Version 3.141592653-2.6-1.40.24 (TeX Live 2022/Debian) (preloaded format=pdflatex 2023.4.9)
(./main.tex
LaTeX2e <2022-11-01> patch level 1
(/usr/share/texlive/texmf-dist/tex/latex/base/article.cls
Document Class: article 2022/07/02 v1.4n Standard LaTeX document class
(/usr/share/texlive/texmf-dist/tex/latex/base/size10.clo))
(/usr/share/texlive/texmf-dist/tex/latex/natbib/natbib.sty)
(.build/main.aux)

Package natbib Warning: Citation `ghost' on page 1 undefined on input line 4.


LaTeX Warning: Reference `sec:none' on page 1 undefined on input line 5.

(./sections/intro.tex
./sections/intro.tex:7: Undefined control sequence.
l.7 We use \badmacro
                     here.
Overfull \hbox (12.5pt too wide) in paragraph at lines 9--10
[]\OT1/cmr/m/n/10 word|

Underfull \hbox (badness 10000) in paragraph at lines 11--11

Package hyperref Warning: Token not allowed in a PDF string (Unicode):
(hyperref)                removing `math shift' on input line 12.

)
./main.tex:9: LaTeX Error: Environment foo undefined.

See the LaTeX manual or LaTeX Companion for explanation.
Type  H <return>  for immediate help.
 ...

l.9 \begin{foo}

LaTeX Warning: There were undefined references.

LaTeX Warning: Label(s) may have changed. Rerun to get cross-references right.

 )
Output written on .build/main.pdf (3 pages, 40212 bytes).
Transcript written on .build/main.log.
"""


def test_errors_carry_the_file_and_line_of_the_input_they_are_in() -> None:
    report = parse_log(LOG)
    first, second = report.errors
    assert (first.file, first.line, first.message) == ("sections/intro.tex", 7, "Undefined control sequence.")
    assert first.context == "We use \\badmacro here."
    assert (second.file, second.line, second.context) == ("main.tex", 9, "\\begin{foo}")
    assert second.message == "LaTeX Error: Environment foo undefined."


def test_warnings_undefined_keys_boxes_and_pages_are_collected() -> None:
    report = parse_log(LOG)
    assert report.undefined_citations == ["ghost"] and report.undefined_references == ["sec:none"]
    assert report.overfull_boxes == 1 and report.underfull_boxes == 1 and report.pages == 3
    assert report.rerun_needed
    hyperref = [w for w in report.warnings if "hyperref" in w.message]
    assert hyperref[0].file == "sections/intro.tex" and hyperref[0].line == 12
    assert "removing `math shift'" in hyperref[0].message
    cite = [w for w in report.warnings if "ghost" in w.message]
    assert cite[0].file == "main.tex" and cite[0].line == 4
    overfull = [w for w in report.warnings if w.message.startswith("Overfull")]
    assert overfull[0].file == "sections/intro.tex" and overfull[0].line == 9


def test_a_missing_package_is_located_by_the_emergency_stop_that_follows() -> None:
    log = (
        "(./main.tex\n! LaTeX Error: File `foo.sty' not found.\n\nType X to quit or <RETURN> to proceed,\n"
        "or enter new name. (Default extension: sty)\n\nEnter file name: \n./main.tex:3: Emergency stop.\n"
        "<read *> \n         \nl.3 ^^M\n       \n*** (cannot \\read from terminal in nonstop modes)\n"
    )
    report = parse_log(log)
    [error] = report.errors
    assert (error.file, error.line, error.context) == ("main.tex", 3, None)
    assert report.missing_files == ["foo.sty"] and report.pages is None


def test_refused_file_access_and_shell_commands_are_reported_once() -> None:
    terminal = "pdflatex: Not reading from /etc/passwd (openin_any = p).\n" * 3
    log = "runsystem(touch /tmp/x)...disabled.\npdflatex: Not writing to /tmp/o.txt (openout_any = p).\n"
    assert parse_log(log, terminal).blocked == [
        "reading /etc/passwd refused (openin_any = p)",
        "shell command refused: touch /tmp/x",
        "writing /tmp/o.txt refused (openout_any = p)",
    ]


def test_bibtex_and_biber_logs_give_errors_warnings_and_missing_styles() -> None:
    bibtex = (
        "The style file: nope.bst\nI couldn't open style file nope.bst\n---line 3 of file main.aux\n"
        "I was expecting a `,' or a `}'---line 5 of file refs.bib\n :   title = {Oops\n"
        " :                       \nI'm skipping whatever remains of this entry\n"
        'Warning--I didn\'t find a database entry for "ghost"\n'
        "I found no \\citation commands---while reading file main.aux\n"
    )
    report = parse_blg(bibtex)
    assert report.missing_files == ["nope.bst"]
    assert "I couldn't open style file nope.bst" in report.errors
    assert report.warnings == ['I didn\'t find a database entry for "ghost"']
    assert not any("citation commands" in e for e in report.errors)
    biber = "[0] Config.pm:307> INFO - This is Biber 2.18\n[51] Utils.pm:410> ERROR - Cannot find '/etc/x.bib'!\n"
    assert parse_blg(biber).errors == ["Cannot find '/etc/x.bib'!"]


def test_the_package_map_is_generated_from_tex_live_lists_not_written_by_hand() -> None:
    algorithm = lookup("algorithm.sty")
    assert (algorithm.tlmgr_package, algorithm.debian_package) == ("algorithms", "texlive-science")
    acm = lookup("acmart.cls")
    assert (acm.tlmgr_package, acm.debian_package) == ("acmart", "texlive-publishers")
    assert lookup("IEEEtran.bst").debian_package == "texlive-publishers"
    assert lookup("lmodern.sty").debian_package == "lmodern"
    own = lookup("iclr2024_conference.sty")
    assert own.debian_package is None and "not part of TeX Live" in own.hint
    lines = (Path(gen_texmap.__file__).with_name("texmap.tsv")).read_text().splitlines()
    assert lines[0].startswith("# made by `python -m research_mcp.latex.gen_texmap`") and len(lines) > 3000


def test_a_missing_figure_names_the_closest_files_of_the_paper_not_a_package(tmp_path: Path) -> None:
    for name in ("figures/loss_curves.pdf", "figures/accuracy.png", "sections/intro.tex", ".build/loss_curve.pdf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    figure = describe_missing("loss_curve", tmp_path)
    assert (figure.kind, figure.did_you_mean, figure.debian_package) == ("figure", ["figures/loss_curves.pdf"], None)
    assert "Did you mean figures/loss_curves.pdf?" in figure.hint and "graphicspath" in figure.hint
    assert describe_missing("figures/acuracy.png", tmp_path).did_you_mean == ["figures/accuracy.png"]
    nothing = describe_missing("figures/ablation.pdf", tmp_path)
    assert nothing.kind == "figure" and nothing.did_you_mean == [] and "No file" in nothing.hint
    section = describe_missing("section/intro.tex", tmp_path)
    assert (section.kind, section.did_you_mean) == ("file", ["sections/intro.tex"])
    kit = describe_missing("iclr2024_conference.sty", tmp_path)
    assert kit.kind == "style" and "paper folder" in kit.hint
    package = describe_missing("algorithm.sty", tmp_path)
    assert package.kind == "package" and package.debian_package == "texlive-science"


def test_the_generator_reads_tex_lives_runfile_index(tmp_path: Path) -> None:
    lua = tmp_path / "Data.tlpdb.lua"
    lua.write_text(
        'local s_meta = {\n}\nlocal tlp_from_runfile = {\n  ["algorithm"] = {["algorithms"]=true,},\n'
        '  ["common"] = {},\n  ["x"] = {["b"]=true,["a"]=true,},\n}\nlocal tlp_doclist = {\n}\n'
    )
    assert gen_texmap.tlp_from_runfile(lua) == {"algorithm": "algorithms", "x": "a"}


@pytest.mark.parametrize(
    ("title", "escaped"),
    [("50% & $5 #1", r"50\% \& \$5 \#1"),
     ("a_b {c} ~^\\", r"a\_b \{c\} \textasciitilde{}\textasciicircum{}\textbackslash{}"),
     ("two\nlines\x00", "two lines")],
)  # fmt: skip
def test_titles_are_escaped_for_latex(title: str, escaped: str) -> None:
    assert latex_escape(title) == escaped


def test_new_paper_never_overwrites_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    made = new_paper(tmp_path / "paper", tmp_path, "A Title")
    assert made.files == ["paper/main.tex", "paper/references.bib", "paper/figures/", "paper/tables/"]
    assert "\\title{A Title}" in (tmp_path / "paper/main.tex").read_text()
    with pytest.raises(FileToolError, match="already exists"):
        new_paper(tmp_path / "paper", tmp_path, "Other")
    with pytest.raises(BadInputError, match="Unknown template"):
        new_paper(tmp_path / "p2", tmp_path, "T", "neurips")  # type: ignore[arg-type]
    (tmp_path / "empty").mkdir()
    assert new_paper(tmp_path / "empty", tmp_path, "T", "twocolumn").template == "twocolumn"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "paper"]
