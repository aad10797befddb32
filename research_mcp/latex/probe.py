"""What the doctor asks TeX: is each program a compile needs here, and which version, or the step that installs it."""

from __future__ import annotations

import sys

from research_mcp.probe import PartStatus, probe_tool, step

__all__ = ["PROGRAMS", "probe"]

PROGRAMS = {"tex": "pdflatex", "latexmk": "latexmk", "biber": "biber", "bibtex": "bibtex"}
"""Each part the doctor lists, and the program that answers for it (`<program> --version`)."""

_TEX_APT = (
    "apt-get install -y --no-install-recommends texlive-latex-base texlive-latex-recommended "
    "texlive-fonts-recommended texlive-latex-extra texlive-science texlive-bibtex-extra latexmk biber lmodern "
    "poppler-utils"
)
_TEX_MAC = "brew install --cask mactex-no-gui  (or install MacTeX from https://tug.org/mactex/)"


async def probe(name: str, system: str = sys.platform) -> PartStatus:
    """One of `PROGRAMS`: its version, or one install step that brings every TeX program at once."""
    program = PROGRAMS[name]
    return await probe_tool(name, [program, "--version"], step(system, _TEX_APT, _TEX_MAC))
