"""The LaTeX tools through a real MCP client session (in-process): new_paper, compile_paper, paper_text."""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path
from typing import Any

import PIL.Image
import pytest
from mcp import Client
from mcp_types import ImageContent, TextContent

from research_mcp.config import Settings
from research_mcp.server import build_server
from tests.conftest import open_for_sandbox
from tests.integration._client import call, call_raw, error_text

pytestmark = pytest.mark.anyio

RESULTS = r"""\section{Results}\label{sec:results}
Our method reaches 93.2\% accuracy \citep{knuth}, see Table~\ref{tab:main}.
\begin{table}[h]
\centering
\caption{Main results.}\label{tab:main}
\begin{tabular}{lc}
\toprule
Model & Accuracy \\
\midrule
Ours & 0.932 \\
\bottomrule
\end{tabular}
\end{table}
"""
BIB = "@book{knuth, author={Donald Knuth}, title={The TeXbook}, year={1984}, publisher={Addison-Wesley}}\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    open_for_sandbox(tmp_path, root)
    return root


@pytest.fixture
def settings(workspace: Path) -> Settings:
    return Settings(workspace=workspace, toolsets=["latex"], max_output_chars=4_000)


@pytest.fixture
async def client(settings: Settings) -> Any:
    async with Client(build_server(settings), raise_exceptions=True) as c:
        yield c


def fill_paper(workspace: Path) -> None:
    main = workspace / "paper/main.tex"
    text = main.read_text().replace("\\section{Results}\\label{sec:results}\n", RESULTS)
    main.write_text(text.replace("% The problem and why it matters;", "We study things.\n%"))
    (workspace / "paper/references.bib").write_text(BIB)


@pytest.mark.latex
async def test_new_paper_then_compile_with_a_preview_then_read_it_back(client: Client, workspace: Path) -> None:
    created = await call(client, "new_paper", {"title": "Fast & Small: 50% Fewer Steps"})
    assert created["main"] == "paper/main.tex" and (workspace / "paper/figures").is_dir()
    assert "Fast \\& Small: 50\\% Fewer Steps" in (workspace / "paper/main.tex").read_text()
    fill_paper(workspace)
    os.chmod(workspace / "paper", 0o755)

    result = await call_raw(client, "compile_paper", {"preview_page": 1})
    assert not result.is_error, result.content
    compiled = result.structured_content
    assert compiled is not None and compiled["ok"] and compiled["pages"] == 1 and compiled["version"] == 1
    assert compiled["undefined_citations"] == [] and compiled["preview"] == "paper/.build/main-page1.png"
    text, image = result.content
    assert isinstance(text, TextContent) and '"ok":true' in text.text
    assert isinstance(image, ImageContent) and image.mime_type == "image/png"
    png = base64.b64decode(image.data)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (workspace / compiled["preview"]).read_bytes() == png
    with PIL.Image.open(io.BytesIO(png)) as page:  # a letter page, 1200 px high: legible, and no more
        assert page.size == (928, 1200) and page.mode == "P" and len(png) < 150_000

    read = await call(client, "paper_text", {"path": "paper"})
    assert read["title"] == "Fast & Small: 50% Fewer Steps"
    titles = [s["title"] for s in read["outline"]]
    assert titles[:3] == ["Abstract", "Introduction", "Related Work"] and "Results" in titles
    results = await call(client, "paper_text", {"section": "Results"})
    assert results["section"]["number"] == "5" and results["section"]["file"] == "paper/main.tex"
    assert "[@knuth]" in results["text"] and "Ours | 0.932" in results["text"]
    numbers = await call(client, "paper_text", {"show": "numbers"})
    found = {n["text"]: n for n in numbers["numbers"]}
    assert found["93.2%"]["file"] == "paper/main.tex" and found["0.932"]["line"] > found["93.2%"]["line"]
    floats = await call(client, "paper_text", {"show": "floats"})
    assert floats["floats"][0]["labels"] == ["tab:main"] and floats["counts"]["cites"] == 1


@pytest.mark.latex
async def test_a_failed_compile_is_a_result_with_diagnostics_not_a_tool_error(client: Client, workspace: Path) -> None:
    (workspace / "paper").mkdir()
    (workspace / "paper/main.tex").write_text("\\documentclass{article}\n\\begin{document}\n\\oops\n\\end{document}\n")
    os.chmod(workspace / "paper", 0o755)
    compiled = await call(client, "compile_paper", {"preview_page": 1})
    assert not compiled["ok"] and compiled["pdf"] is None
    [error] = [d for d in compiled["diagnostics"] if d["severity"] == "error"]
    assert (error["file"], error["line"], error["source"]) == ("paper/main.tex", 3, "\\oops")
    assert "No preview" in " ".join(compiled["blocked"])


async def test_paper_text_pages_long_text_with_next_offset(client: Client, workspace: Path) -> None:
    body = "".join(f"\\section{{Part {i}}}\n" + "Words and more words. " * 60 + "\n\n" for i in range(12))
    (workspace / "long").mkdir()
    (workspace / "long/main.tex").write_text(
        f"\\documentclass{{article}}\n\\begin{{document}}\n{body}\\end{{document}}\n"
    )
    pages: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = await call(client, "paper_text", {"path": "long/main.tex", "offset": offset})
        pages.append(page["text"])
        offset = page["next_offset"]
    assert len(pages) > 2
    whole = await call(client, "paper_text", {"path": "long/main.tex", "section": 11})
    assert whole["section"]["title"] == "Part 11" and whole["text"].startswith("# 12 Part 11")
    assert "".join(pages).count("# ") == 12


async def test_bad_input_gives_errors_that_say_what_to_do(client: Client, workspace: Path) -> None:
    (workspace / "paper").mkdir()
    (workspace / "paper/main.tex").write_text("\\documentclass{article}\\begin{document}\\section{A}x\\end{document}")
    (workspace / "notes.txt").write_text("x")
    cases = [
        ("new_paper", {"title": "T", "dir": "paper"}, "already exists"),
        ("new_paper", {"title": "T", "dir": "../out"}, "'..' is not allowed"),
        ("compile_paper", {"main": "nope/main.tex"}, "No such file"),
        ("compile_paper", {"main": "notes.txt"}, "not a .tex file"),
        ("compile_paper", {"main": "/etc/passwd"}, "absolute paths are not allowed"),
        ("paper_text", {"section": "Nonexistent"}, "The outline"),
        ("paper_text", {"section": 7}, "the outline has 1 entries"),
        ("paper_text", {"path": "notes.txt"}, "not a .tex file or a folder"),
        ("paper_text", {"offset": 10_000_000}, "past the end"),
    ]
    for tool, args, hint in cases:
        result = await call_raw(client, tool, args)
        assert hint in error_text(result), (tool, args)
    assert not (workspace.parent / "out").exists()


async def test_tex_absent_tells_how_to_install_it_after_checking_the_input(workspace: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-tex"
    empty.mkdir()
    (workspace / "paper").mkdir()
    (workspace / "paper/main.tex").write_text("\\documentclass{article}\\begin{document}x\\end{document}")
    (workspace / "notes.txt").write_text("x")
    settings = Settings(workspace=workspace, toolsets=["latex"], tex_bin=empty)
    async with Client(build_server(settings), raise_exceptions=True) as client:
        result = await call_raw(client, "compile_paper", {})
        wrong_file = await call_raw(client, "compile_paper", {"main": "notes.txt"})
    assert "apt-get install" in error_text(result) and "RESEARCH_MCP_TEX_BIN" in error_text(result)
    assert "not a .tex file" in error_text(wrong_file)


async def test_new_paper_keeps_the_figures_tables_and_bib_other_tools_wrote_first(
    client: Client, workspace: Path
) -> None:
    (workspace / "paper" / "figures").mkdir(parents=True)
    (workspace / "paper" / "figures" / "loss.pdf").write_bytes(b"%PDF-1.4 plot")
    (workspace / "paper" / "references.bib").write_text("@misc{kingma2014adam, title={Adam}}\n")
    created = await call(client, "new_paper", {"title": "Warmup"})
    assert created["files"] == ["paper/main.tex", "paper/tables/"]
    assert created["kept"] == ["paper/references.bib", "paper/figures/"]
    assert (workspace / "paper" / "figures" / "loss.pdf").read_bytes() == b"%PDF-1.4 plot"
    assert (workspace / "paper" / "references.bib").read_text() == "@misc{kingma2014adam, title={Adam}}\n"
    assert "Warmup" in (workspace / "paper" / "main.tex").read_text()
    assert sorted(p.name for p in (workspace / "paper").iterdir()) == [
        "figures",
        "main.tex",
        "references.bib",
        "tables",
    ]


@pytest.mark.latex
async def test_a_compile_with_an_undefined_citation_is_ok_but_not_clean_and_not_promoted(
    client: Client, workspace: Path
) -> None:
    await call(client, "new_paper", {"title": "Clean"})
    fill_paper(workspace)
    first = await call(client, "compile_paper", {})
    assert first["ok"] and first["clean"] and first["version"] == 1 and first["built"] is None
    clean_pdf = (workspace / "paper/main.pdf").read_bytes()
    main = workspace / "paper/main.tex"
    main.write_text(main.read_text().replace("\\citep{knuth}", "\\citep{ghost2024} in Section~\\ref{sec:nowhere}"))

    result = await call_raw(client, "compile_paper", {"preview_page": 1})
    compiled = result.structured_content
    assert compiled is not None and compiled["ok"] and not compiled["clean"]
    assert compiled["undefined_citations"] == ["ghost2024"] and compiled["undefined_references"] == ["sec:nowhere"]
    assert compiled["pdf"] == "paper/main.pdf" and compiled["version"] == 1
    assert compiled["built"] == "paper/.build/main.pdf" and (workspace / compiled["built"]).is_file()
    assert (workspace / "paper/main.pdf").read_bytes() == clean_pdf
    assert [p.name for p in (workspace / "paper/.versions").iterdir()] == ["main-v001.pdf"]
    note = compiled["note"]
    assert "not clean" in note and "ghost2024" in note and "sec:nowhere" in note and "version 1" in note
    assert isinstance(result.content[-1], ImageContent)  # the preview shows this build, '??' and all


@pytest.mark.latex
async def test_a_missing_figure_suggests_the_closest_figure_and_a_missing_style_says_where_to_put_it(
    client: Client, workspace: Path
) -> None:
    await call(client, "new_paper", {"title": "Figures"})
    (workspace / "paper/figures/loss_curves.pdf").write_bytes(b"%PDF-1.4 plot")
    main = workspace / "paper/main.tex"
    text = main.read_text()
    main.write_text(text.replace("\\begin{document}", "\\begin{document}\n\\includegraphics{loss_curve}"))
    compiled = await call(client, "compile_paper", {})
    assert not compiled["ok"]
    [figure] = compiled["missing_files"]
    assert (figure["file"], figure["kind"]) == ("loss_curve", "figure")
    assert figure["did_you_mean"] == ["figures/loss_curves.pdf"] and figure["debian_package"] is None
    assert "Did you mean figures/loss_curves.pdf?" in figure["hint"]

    main.write_text(
        text.replace("\\documentclass[11pt]{article}", "\\documentclass{article}\n\\usepackage{neurips_2025}")
    )
    compiled = await call(client, "compile_paper", {})
    [style] = compiled["missing_files"]
    assert (style["file"], style["kind"], style["did_you_mean"]) == ("neurips_2025.sty", "style", [])
    assert "Put it in the paper folder" in style["hint"]


@pytest.mark.latex
async def test_a_first_figure_edit_is_unambiguous_and_the_fresh_paper_compiles_without_a_warning(
    workspace: Path,
) -> None:
    settings = Settings(workspace=workspace, toolsets=["latex", "files"], file_tools="on")
    async with Client(build_server(settings), raise_exceptions=True) as client:
        await call(client, "new_paper", {"title": "Plots", "template": "twocolumn"})
        fresh = await call(client, "compile_paper", {})
        assert fresh["clean"] and fresh["warnings"] == 0 and fresh["diagnostics"] == []
        shutil.copy(workspace / "paper/main.pdf", workspace / "paper/figures/loss_curve.pdf")
        figure = "\\includegraphics[width=\\linewidth]{loss_curve}"
        heading = "\\section{Results}\\label{sec:results}\n"
        await call(
            client, "edit_file", {"path": "paper/main.tex", "old_string": heading, "new_string": heading + figure}
        )
        edited = await call(
            client, "edit_file", {"path": "paper/main.tex", "old_string": figure, "new_string": figure + "\n"}
        )
        assert edited["replacements"] == 1
        compiled = await call(client, "compile_paper", {})
        assert compiled["clean"] and compiled["missing_files"] == [] and compiled["version"] == 2


async def test_paper_text_numbers_keep_the_plus_minus_and_the_formula_around_them(
    client: Client, workspace: Path
) -> None:
    (workspace / "p").mkdir()
    (workspace / "p/main.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\n\\section{Results}\n"
        "Ours reaches $93.2 \\pm 0.4$\\% accuracy over 5 seeds, $p < 0.01$ (Welch).\n\\end{document}\n"
    )
    numbers = await call(client, "paper_text", {"path": "p", "show": "numbers"})
    found = {n["text"]: n for n in numbers["numbers"]}
    assert "$93.2 \\pm 0.4$% accuracy over 5 seeds, $p < 0.01$" in found["0.4"]["context"]
    assert found["0.01"]["in_math"] and "$p < 0.01$" in found["0.01"]["context"]
