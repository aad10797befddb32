"""What the doctor asks TeX: is each program a compile needs here, and which version, or the step that installs it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from research_mcp.probe import PartStatus, part, probe_tool, step

__all__ = ["PROGRAMS", "probe"]

PROGRAMS = {"tex": "pdflatex", "latexmk": "latexmk", "biber": "biber", "bibtex": "bibtex"}
"""Each part the doctor lists, and the program that answers for it (`<program> --version`)."""

_TEX_APT = (
    "apt-get install -y --no-install-recommends texlive-latex-base texlive-latex-recommended "
    "texlive-fonts-recommended texlive-latex-extra texlive-science texlive-bibtex-extra latexmk biber lmodern "
    "poppler-utils"
)
_TEX_MAC = "brew install --cask mactex-no-gui  (or install MacTeX from https://tug.org/mactex/)"


async def probe(name: str, system: str = sys.platform, bin_dir: Path | None = None) -> PartStatus:
    """One of `PROGRAMS`: its version, or one install step that brings every TeX program at once. With `bin_dir`
    (RESEARCH_MCP_TEX_BIN) the program is the one there, as compiles use it, not the one on PATH."""
    program = PROGRAMS[name]
    install = step(system, _TEX_APT, _TEX_MAC)
    if bin_dir is not None:
        found = shutil.which(program, path=str(bin_dir))
        if found is None:
            return part(
                name, "missing", f"{program} is not in RESEARCH_MCP_TEX_BIN ({bin_dir})",
                f"Point RESEARCH_MCP_TEX_BIN at the folder holding TeX's programs, or unset it to use PATH; {install}",
            )  # fmt: skip
        program = found
    return await probe_tool(name, [program, "--version"], install)
