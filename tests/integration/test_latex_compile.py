"""Compiles with the real TeX Live: hostile papers, the latexmk-less fallback, diagnostics, PDF versions, and
the real papers of ../shared/fixtures/latex.

Sandboxed compiles need bubblewrap (marker `bwrap`); the same TeX hardening is also checked with the sandbox
off, since it must hold on its own where bubblewrap cannot run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from pathlib import Path

import pytest

from research_mcp.errors import BadInputError, LatexError
from research_mcp.latex.compile import Compiled, CompileOptions, TexTools, compile_paper
from research_mcp.latex.scaffold import new_paper
from tests.conftest import fixtures_dir, open_for_sandbox

pytestmark = pytest.mark.latex

MODES = [pytest.param("bwrap", marks=pytest.mark.bwrap), "off"]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "paper").mkdir(parents=True)
    open_for_sandbox(tmp_path, root / "paper")
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def build(
    ws: Path,
    main: str = "paper/main.tex",
    mode: str = "bwrap",
    *,
    timeout_s: float = 40,
    tools: TexTools | None = None,
    preview_page: int | None = None,
) -> Compiled:
    options = CompileOptions(sandbox="bwrap" if mode == "bwrap" else "off", timeout_s=timeout_s)
    return compile_paper(ws, ws / main, tools=tools or TexTools.find(), options=options, preview_page=preview_page)


GOOD = r"""\documentclass{article}
\usepackage{natbib}
\begin{document}
See \citet{knuth} and Section~\ref{sec:x}.
\section{X}\label{sec:x}
\input{sections/body}
\bibliographystyle{plainnat}
\bibliography{refs}
\end{document}
"""
BIB = "@book{knuth, author={Donald Knuth}, title={The TeXbook}, year={1984}, publisher={Addison-Wesley}}\n"


def good_paper(ws: Path) -> None:
    write(ws / "paper/main.tex", GOOD)
    write(ws / "paper/refs.bib", BIB)
    write(ws / "paper/sections/body.tex", "Body text.\n\nMore text.\n")


@pytest.mark.parametrize("mode", MODES)
def test_a_good_paper_compiles_and_its_pdf_is_promoted_as_version_one(ws: Path, mode: str) -> None:
    good_paper(ws)
    result = build(ws, mode=mode).result
    assert result.ok and result.clean and result.errors == 0 and result.pages == 1
    assert result.pdf == "paper/main.pdf" and result.version == 1 and result.built is None
    assert (ws / "paper/.versions/main-v001.pdf").read_bytes() == (ws / "paper/main.pdf").read_bytes()
    assert result.undefined_citations == [] and result.undefined_references == []
    assert result.sandboxed is (mode == "bwrap") and result.toolchain == "latexmk"


@pytest.mark.bwrap
@pytest.mark.bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server drops to a uid that closed folders keep out")
def test_a_paper_in_a_folder_closed_to_others_compiles_in_the_sandbox(tmp_path: Path) -> None:
    home = tmp_path / "home"  # 0700 like /root, and not opened for the sandbox uid as the `ws` fixture's is
    root = home / "ws"
    good_paper(root)
    home.chmod(0o700)
    result = build(root).result
    assert result.ok and result.pages == 1, result


def test_generated_fonts_are_cached_where_the_sandbox_user_may_write(ws: Path) -> None:
    good_paper(ws)
    (ws / ".research").mkdir(mode=0o700)
    assert build(ws).result.ok
    cache = ws / "paper/.build/.texmf-var" if os.geteuid() == 0 else ws / ".research/latex/texmf-var"
    assert cache.is_dir()


@pytest.mark.bwrap
def test_a_broken_edit_points_at_the_line_and_keeps_the_last_good_pdf(ws: Path) -> None:
    good_paper(ws)
    first = build(ws).result
    good_pdf = (ws / "paper/main.pdf").read_bytes()
    write(ws / "paper/sections/body.tex", "Body text.\n\nBroken \\notamacro{} here.\n")
    broken = build(ws).result
    assert not broken.ok and broken.errors >= 1
    error = broken.diagnostics[0]
    assert (error.severity, error.file, error.line) == ("error", "paper/sections/body.tex", 3)
    assert "Undefined control sequence" in error.message and error.source == "Broken \\notamacro{} here."
    assert (ws / "paper/main.pdf").read_bytes() == good_pdf
    assert broken.pdf == "paper/main.pdf" and broken.version == first.version == 1
    assert "last good PDF" in (broken.note or "")
    write(ws / "paper/sections/body.tex", "Body text, fixed.\n")
    fixed = build(ws).result
    assert fixed.ok and fixed.version == 2
    assert sorted(p.name for p in (ws / "paper/.versions").iterdir()) == ["main-v001.pdf", "main-v002.pdf"]


@pytest.mark.bwrap
def test_undefined_references_citations_and_overfull_boxes_are_listed(ws: Path) -> None:
    write(
        ws / "paper/main.tex",
        "\\documentclass{article}\n\\begin{document}\nSee \\ref{nowhere} and \\cite{ghost}.\n\n"
        "\\hbox to 1in{\\vrule width 3in}\n\\end{document}\n",
    )
    result = build(ws).result
    assert result.ok and not result.clean
    assert result.undefined_references == ["nowhere"] and result.undefined_citations == ["ghost"]
    assert result.overfull_boxes == 1
    assert "ghost" in (result.note or "") and "nowhere" in (result.note or "")


@pytest.mark.bwrap
def test_a_missing_package_names_the_tex_live_and_debian_packages_to_install(ws: Path) -> None:
    # libertine.sty is in texlive-fonts-extra, which CI does not install (500 MB)
    write(
        ws / "paper/main.tex", "\\documentclass{article}\n\\usepackage{libertine}\n\\begin{document}x\\end{document}\n"
    )
    result = build(ws).result
    assert not result.ok
    [missing] = result.missing_files
    assert (missing.file, missing.tlmgr_package, missing.debian_package) == (
        "libertine.sty",
        "libertine",
        "texlive-fonts-extra",
    )
    assert "apt-get install texlive-fonts-extra" in missing.hint and "tlmgr install libertine" in missing.hint
    assert (result.diagnostics[0].file, result.diagnostics[0].line) == ("paper/main.tex", 2)


@pytest.mark.bwrap
def test_latexmk_absent_runs_pdflatex_and_bibtex_in_order(ws: Path) -> None:
    good_paper(ws)
    tools = dataclasses.replace(TexTools.find(), latexmk=None)
    result = build(ws, tools=tools).result
    assert result.ok and result.toolchain == "pdflatex+bibtex+pdflatex+pdflatex"
    assert result.undefined_citations == [] and result.undefined_references == []


@pytest.mark.parametrize("latexmk", [True, False])
def test_the_template_compiles_without_a_warning_then_lists_the_first_citation(ws: Path, latexmk: bool) -> None:
    new_paper(ws / "paper", ws, "Warm", "article")
    tools = TexTools.find() if latexmk else dataclasses.replace(TexTools.find(), latexmk=None)
    empty = build(ws, mode="off", tools=tools).result
    assert empty.clean and empty.warnings == 0 and empty.diagnostics == [], empty.diagnostics
    main = ws / "paper/main.tex"
    main.write_text(main.read_text().replace("\\section{Method}", "As in \\citet{knuth}.\n\\section{Method}"))
    write(ws / "paper/references.bib", BIB)
    cited = build(ws, mode="off", tools=tools).result
    assert cited.clean and cited.undefined_citations == [] and cited.warnings == 0, cited.diagnostics
    assert "\\bibitem" in (ws / "paper/.build/main.bbl").read_text() and cited.version == 2


@pytest.mark.bwrap
def test_latexmk_absent_runs_biber_for_biblatex(ws: Path) -> None:
    preamble = "\\usepackage[backend=biber]{biblatex}\n\\addbibresource{refs.bib}\n"
    write(ws / "paper/main.tex", doc("See \\cite{knuth}.\n\\printbibliography", preamble))
    write(ws / "paper/refs.bib", BIB)
    tools = dataclasses.replace(TexTools.find(), latexmk=None)
    result = build(ws, tools=tools).result
    assert result.ok and result.toolchain.startswith("pdflatex+biber+pdflatex")
    assert result.undefined_citations == [] and result.warnings == 0


def test_tex_absent_is_a_clear_error_with_the_install_step(ws: Path) -> None:
    good_paper(ws)
    with pytest.raises(LatexError, match=r"pdflatex was not found.*apt-get install"):
        build(ws, tools=TexTools(pdflatex=None))


def test_a_main_file_name_with_shell_characters_is_refused(ws: Path) -> None:
    write(ws / "paper/$(touch x).tex", GOOD)
    with pytest.raises(BadInputError, match="may only use letters"):
        build(ws, "paper/$(touch x).tex")


# ---------------------------------------------------------------- hostile papers


def doc(body: str, preamble: str = "") -> str:
    return f"\\documentclass{{article}}\n{preamble}\\begin{{document}}\n{body}\nHello.\n\\end{{document}}\n"


@pytest.mark.parametrize("mode", MODES)
def test_input_of_etc_passwd_is_refused(ws: Path, mode: str) -> None:
    write(ws / "paper/main.tex", doc("\\input{/etc/passwd}"))
    result = build(ws, mode=mode).result
    assert not result.ok and "reading /etc/passwd refused (openin_any = p)" in result.blocked
    assert "root:" not in (ws / "paper/.build/main.log").read_text()


@pytest.mark.parametrize("mode", MODES)
def test_openin_of_absolute_and_parent_paths_reads_nothing(ws: Path, mode: str) -> None:
    write(ws / "secret.txt", "TOPSECRET\n")
    body = (
        "\\newread\\r\n\\openin\\r=/etc/hostname\n"
        "\\ifeof\\r\\typeout{ABS-BLOCKED}\\else\\read\\r to\\x\\typeout{LEAK:\\x}\\fi\n"
        "\\openin\\r=../secret.txt\n\\ifeof\\r\\typeout{UP-BLOCKED}\\else\\read\\r to\\x\\typeout{LEAK:\\x}\\fi"
    )
    write(ws / "paper/main.tex", doc(body))
    result = build(ws, mode=mode).result
    log = (ws / "paper/.build/main.log").read_text()
    assert "ABS-BLOCKED" in log and "UP-BLOCKED" in log and "LEAK" not in log and "TOPSECRET" not in log
    assert result.ok and "reading ../secret.txt refused (openin_any = p)" in result.blocked


@pytest.mark.parametrize("mode", MODES)
def test_pdffiledump_of_a_file_outside_is_empty(ws: Path, mode: str) -> None:
    write(ws / "paper/main.tex", doc("\\typeout{DUMP[\\pdffiledump length 8 {/etc/hostname}]}"))
    result = build(ws, mode=mode).result
    assert result.ok and "DUMP[]" in (ws / "paper/.build/main.log").read_text()


@pytest.mark.parametrize("mode", MODES)
def test_write18_runs_nothing(ws: Path, mode: str) -> None:
    marker = ws / "pwned"
    write(ws / "paper/main.tex", doc(f"\\immediate\\write18{{touch {marker}}}"))
    result = build(ws, mode=mode).result
    assert result.ok and not marker.exists()
    assert f"shell command refused: touch {marker}" in result.blocked


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["../outside.txt", "/tmp/research-mcp-outside.txt"])
def test_openout_outside_the_paper_writes_nothing(ws: Path, mode: str, target: str) -> None:
    body = f"\\newwrite\\w\n\\immediate\\openout\\w={target}\n\\immediate\\write\\w{{x}}\n\\immediate\\closeout\\w"
    write(ws / "paper/main.tex", doc(body))
    result = build(ws, mode=mode).result
    assert not (ws / "outside.txt").exists() and not Path("/tmp/research-mcp-outside.txt").exists()
    assert not result.ok and any(target in b and "openout_any" in b for b in result.blocked)


@pytest.mark.bwrap
def test_a_latexmkrc_in_the_folder_is_not_run(ws: Path) -> None:
    marker = ws / "rc-ran"
    write(ws / "paper/latexmkrc", f"system('touch {marker}');\n$pdflatex = 'pdflatex -shell-escape %O %S';\n")
    write(ws / "paper/.latexmkrc", f"system('touch {marker}');\n")
    write(ws / "paper/main.tex", doc(f"\\immediate\\write18{{touch {marker}}}"))
    result = build(ws).result
    assert result.ok and not marker.exists()
    assert any(b.startswith("latexmkrc was not run") for b in result.blocked)
    assert any(b.startswith(".latexmkrc was not run") for b in result.blocked)


@pytest.mark.bwrap
def test_a_magic_comment_asking_for_shell_escape_is_ignored(ws: Path) -> None:
    marker = ws / "magic-ran"
    text = "% !TEX TS-program = pdflatex --shell-escape\n% !TEX options = --shell-escape\n"
    write(ws / "paper/main.tex", text + doc(f"\\immediate\\write18{{touch {marker}}}"))
    result = build(ws).result
    assert result.ok and not marker.exists()
    assert sum("ignored" in b for b in result.blocked) == 2


@pytest.mark.parametrize(
    "resource",
    ["\\addbibresource{/etc/passwd}", "\\addbibresource[location=remote]{https://example.org/x.bib}",
     "\\addbibresource{../refs.bib}", "\\bibliography{/etc/passwd}", "\\addbibresource{.research/state.db}"],
)  # fmt: skip
def test_a_bibliography_outside_or_remote_is_refused_before_biber_runs(ws: Path, resource: str) -> None:
    write(ws / "paper/main.tex", doc("\\cite{x}\n\\printbibliography", f"\\usepackage{{biblatex}}\n{resource}\n"))
    result = build(ws, mode="off").result
    assert not result.ok and result.errors == 1
    [error] = result.diagnostics
    assert error.file == "paper/main.tex" and error.line == 3 and "refused" in error.message
    assert not (ws / "paper/.build/main.bcf").exists()  # TeX never ran


@pytest.mark.bwrap
def test_biber_in_the_sandbox_sees_no_host_file_named_through_a_macro(ws: Path) -> None:
    # the name is hidden from the pre-check behind a macro; the sandbox holds no /etc/shadow to give biber
    preamble = "\\usepackage[backend=biber]{biblatex}\n\\def\\where{/etc/shadow}\n\\addbibresource{\\where}\n"
    write(ws / "paper/main.tex", doc("\\nocite{*}\\printbibliography", preamble))
    result = build(ws).result
    assert not result.ok and result.pdf is None
    assert any("/etc/shadow" in d.message for d in result.diagnostics)
    outputs = "".join(p.read_text(errors="replace") for p in (ws / "paper/.build").iterdir() if p.is_file())
    assert "root:" not in outputs


def test_without_a_sandbox_biber_is_not_run_on_a_bib_named_through_a_macro(ws: Path) -> None:
    preamble = "\\usepackage[backend=biber]{biblatex}\n\\def\\where{/etc/hostname}\n\\addbibresource{\\where}\n"
    write(ws / "paper/main.tex", doc("\\nocite{*}\\printbibliography", preamble))
    result = build(ws, mode="off").result
    assert not result.ok and result.toolchain == "pdflatex"
    assert result.diagnostics[0].message.startswith("biber was not run: its data source '/etc/hostname'")
    assert not (ws / "paper/.build/main.blg").exists()


@pytest.mark.parametrize("mode", MODES)
def test_a_biblatex_paper_with_its_bib_inside_compiles(ws: Path, mode: str) -> None:
    preamble = "\\usepackage[backend=biber]{biblatex}\n\\addbibresource{refs.bib}\n"
    write(ws / "paper/main.tex", doc("See \\cite{knuth}.\n\\printbibliography", preamble))
    write(ws / "paper/refs.bib", BIB)
    result = build(ws, mode=mode).result
    assert result.ok and result.undefined_citations == []
    # without a sandbox, biber runs only after its data sources are checked, so latexmk is not used
    assert result.toolchain.startswith("latexmk" if mode == "bwrap" else "pdflatex+biber+pdflatex")


@pytest.mark.bwrap
def test_a_symlink_to_a_file_outside_is_not_followed(ws: Path) -> None:
    write(ws / "secret.tex", "TOPSECRET\n")
    (ws / "paper/leak.tex").symlink_to(ws / "secret.tex")
    write(ws / "paper/main.tex", doc("\\input{leak}"))
    sandboxed = build(ws).result
    assert not sandboxed.ok and "TOPSECRET" not in (ws / "paper/.build/main.log").read_text()
    unsandboxed = build(ws, mode="off").result
    assert not unsandboxed.ok and "symbolic link" in unsandboxed.diagnostics[0].message


@pytest.mark.parametrize("mode", MODES)
def test_an_endless_loop_is_killed_at_the_timeout_with_every_process(ws: Path, mode: str) -> None:
    name = f"loop{uuid.uuid4().hex[:8]}"
    write(ws / f"paper/{name}.tex", doc("\\def\\x{\\x}\\x"))
    result = build(ws, f"paper/{name}.tex", mode=mode, timeout_s=2).result
    assert not result.ok and "stopped after 2 s" in result.diagnostics[0].message
    assert 2 <= result.duration_s < 7
    left = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if name.encode() in (proc / "cmdline").read_bytes():
                    left.append(proc.name)
            except OSError:
                continue
    assert left == []


# ---------------------------------------------------------------- real papers


@pytest.fixture(scope="module")
def real_papers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Compiled]:
    source = fixtures_dir("latex")
    tmp = tmp_path_factory.mktemp("real")
    root = tmp / "ws"
    shutil.copytree(source, root)
    open_for_sandbox(tmp, root)
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    mode = "auto"
    options = CompileOptions(sandbox=mode, timeout_s=45)
    mains = {
        "diabetes": "data-to-paper_diabetes_clickable_001/paper.tex",
        "congress": "data-to-paper_congress_twitter_open_goal_accum_0/paper.tex",
        "ai-scientist": "ai-scientist_multi_style_adapter/latex/template.tex",
    }
    return {k: compile_paper(root, root / m, tools=TexTools.find(), options=options) for k, m in mains.items()}


@pytest.mark.parametrize(("paper", "pages"), [("diabetes", 29), ("congress", 21)])
def test_real_papers_compile_to_their_page_counts(real_papers: dict[str, Compiled], paper: str, pages: int) -> None:
    result = real_papers[paper].result
    assert result.ok and result.pages == pages
    assert result.undefined_citations == [] and result.undefined_references == []
    assert result.errors == 0 and result.pdf is not None and result.version == 1


def test_the_ai_scientist_paper_names_its_missing_style_file(real_papers: dict[str, Compiled]) -> None:
    result = real_papers["ai-scientist"].result
    assert not result.ok and result.pdf is None
    [missing] = result.missing_files
    assert missing.file == "iclr2024_conference.sty" and missing.debian_package is None
    assert "paper folder" in missing.hint
    error = result.diagnostics[0]
    assert error.file == "ai-scientist_multi_style_adapter/latex/template.tex" and error.line == 2
    assert error.source == "\\usepackage{iclr2024_conference,times}"
