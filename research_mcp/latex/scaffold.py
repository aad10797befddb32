"""A new paper folder from a template written by this project: main.tex, references.bib, figures/, tables/.

The templates ship no conference style files (their licences do not allow it); a venue's .sty/.cls dropped
into the folder is used by the next compile.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field

from research_mcp.errors import BadInputError, FileToolError
from research_mcp.fileio import new_file_mode
from research_mcp.model import ToolModel

__all__ = ["TEMPLATES", "NewPaperResult", "Template", "latex_escape", "new_paper"]

Template = Literal["article", "twocolumn"]
TEMPLATES: dict[str, str] = {
    "article": "one column, 11pt, 1in margins",
    "twocolumn": "two columns, 10pt, conference-like layout without any venue's style file",
}
_TEMPLATE_DIR = Path(__file__).with_name("templates")
_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


class NewPaperResult(ToolModel):
    dir: str = Field(description="The paper folder, relative to the workspace.")
    main: str = Field(description="The main .tex file; pass it to compile_paper.")
    files: list[str] = Field(description="Everything created, relative to the workspace.")
    kept: list[str] = Field(
        default_factory=list[str], description="What was there already and is left as it was (figures, a .bib)."
    )
    template: str


def latex_escape(text: str) -> str:
    """Plain text made safe as LaTeX (special characters escaped, line breaks and controls removed)."""
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return "".join(_SPECIALS.get(ch, ch) for ch in cleaned)


def new_paper(folder: Path, workspace_root: Path, title: str, template: Template = "article") -> NewPaperResult:
    """Write the template's main.tex into `folder`, with references.bib, figures/ and tables/ where absent.

    The folder may exist: the metrics tools write figures/ and tables/ and `cite` writes references.bib before a
    paper is started, and all of that is kept. Only an existing main.tex refuses. Each file appears whole or not
    at all (written aside, then linked into place, which fails rather than overwrite)."""
    if template not in TEMPLATES:
        raise BadInputError(f"Unknown template {template!r}; choose one of: {', '.join(TEMPLATES)}.")
    if not title.strip():
        raise BadInputError("The title is empty; give the paper's working title.")
    rel = folder.relative_to(workspace_root).as_posix()
    if folder.exists() and not folder.is_dir():
        raise FileToolError(f"{rel!r} is a file, not a folder: pick another dir for the paper.")
    if (folder / "main.tex").exists() or (folder / "main.tex").is_symlink():
        raise FileToolError(
            f"{rel}/main.tex already exists: new_paper never overwrites. Pick another dir, or compile the paper "
            "that is there."
        )
    source = _TEMPLATE_DIR / template
    main = (source / "main.tex").read_text(encoding="utf-8").replace("@TITLE@", latex_escape(title))
    if not folder.exists():
        folder.mkdir(parents=True)
        os.chmod(folder, 0o755)
    files: list[str] = []
    kept: list[str] = []
    if _create(folder / "main.tex", main.encode()):
        files.append(f"{rel}/main.tex")
    else:  # made by someone else meanwhile
        raise FileToolError(f"{rel}/main.tex appeared while the paper was being made; nothing was overwritten.")
    bib = (source / "references.bib").read_bytes()
    (files if _create(folder / "references.bib", bib) else kept).append(f"{rel}/references.bib")
    for sub in ("figures", "tables"):
        (kept if (folder / sub).is_dir() else files).append(f"{rel}/{sub}/")
        (folder / sub).mkdir(exist_ok=True)
    return NewPaperResult(dir=rel, main=f"{rel}/main.tex", files=files, kept=kept, template=template)


def _create(path: Path, content: bytes) -> bool:
    """Write `path` whole unless it exists (False then); never a half-written or overwritten file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.chmod(tmp, new_file_mode())
        os.link(tmp, path)  # fails if the name exists: never replaces a file
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
