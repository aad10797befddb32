"""Compile a LaTeX paper safely and say clearly what went wrong.

What a compile does, in order:
1. Checks the paper before TeX sees it: a `latexmkrc` is never run (latexmk starts with `-norc`: an rc file is
   Perl code), a `% !TEX` magic comment is ignored, and a bibliography outside the paper folder or remote
   (`\\addbibresource{/etc/passwd}`, `[location=remote]`) refuses the compile, since biber does not obey TeX's
   file-access settings.
2. Builds in `<paper>/.build/` with latexmk (`-norc`, a fixed pdflatex command without shell escape,
   `-file-line-error`), or pdflatex + bibtex/biber in the right order when latexmk is absent. The environment
   sets `openin_any=p`, `openout_any=p`, `shell_escape=f`. Where bubblewrap works, everything runs inside the
   sandbox's bubblewrap command (`research_mcp.sandbox.bwrap`): no network, the paper folder read-only, only the
   build folder writable, /usr and TeX's own folders read-only, nothing else of the host; as an unprivileged
   user when the server is root. A timeout kills the whole process tree, a file-size limit stops a runaway log.
   Without bubblewrap, a biblatex paper is built with pdflatex and biber in order instead of latexmk, so that
   the data sources its .bcf names are checked before biber reads any of them.
3. Promotes the PDF to `<paper>/<name>.pdf` only when the compile is clean (no error, no undefined reference or
   citation), and keeps every distinct clean PDF as `<paper>/.versions/<name>-vNNN.pdf`; a failed compile never
   touches them, and a PDF with '??' in it stays in the build folder.
4. Reads the log and the .blg into diagnostics (see `logparse`), with install hints for missing packages.

Each program is told to the caller's progress as it starts ("latexmk: pdflatex run 2", "bibtex"): latexmk's output
is read as it is written, since only latexmk knows which program it runs next.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from research_mcp.errors import BadInputError, LatexError
from research_mcp.imaging import MAX_SIDE_PX, Picture, fit_image
from research_mcp.latex import logparse, versions
from research_mcp.latex._flatten import strip_comment
from research_mcp.latex._latexmk_progress import telling_runs
from research_mcp.latex._preflight import BUILD_DIR, bcf_refusals, preflight, source_line
from research_mcp.latex._process import run_with_deadline
from research_mcp.latex.logparse import Diagnostic
from research_mcp.latex.packages import MissingFile, describe_missing
from research_mcp.latex.versions import VERSIONS_DIR
from research_mcp.model import ToolModel
from research_mcp.progress import BlockingProgress, no_blocking_progress
from research_mcp.sandbox.bwrap import Bind, Sandbox, can_stage, sandbox_user, unreachable

__all__ = ["CompileOptions", "CompilePaperResult", "Compiled", "TexTools", "compile_paper", "install_hint"]

logger = logging.getLogger(__name__)

SANDBOX_PAPER = "/paper"
SANDBOX_FONTS = "/texmf-var"
_MAIN_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.tex")
_TEX_SYSTEM_BINDS = ("/etc/texmf", "/var/lib/texmf", "/usr/local/share/texmf", "/etc/perl", "/etc/papersize")
_TEX_ROOTS = ("/usr/local/texlive", "/opt/texlive")
_MAX_KEPT_DIAGNOSTICS = 30
_RERUN = re.compile(r"Rerun to get|Please rerun LaTeX|\(rerunfilecheck\)")


def install_hint() -> str:
    return (
        "Install TeX Live: `apt-get install -y --no-install-recommends texlive-latex-base "
        "texlive-latex-recommended texlive-fonts-recommended texlive-latex-extra texlive-science "
        "texlive-bibtex-extra latexmk biber lmodern poppler-utils` (Debian/Ubuntu), or MacTeX on macOS "
        "(`brew install --cask mactex-no-gui`); or set RESEARCH_MCP_TEX_BIN to the folder holding pdflatex."
    )


@dataclass(frozen=True, slots=True)
class TexTools:
    """Where the TeX programs are; None for one that is missing."""

    pdflatex: str | None
    latexmk: str | None = None
    bibtex: str | None = None
    biber: str | None = None
    pdftoppm: str | None = None

    @classmethod
    def find(cls, bin_dir: Path | None = None) -> TexTools:
        path = str(bin_dir) if bin_dir is not None else None
        found = {name: shutil.which(name, path=path) for name in ("pdflatex", "latexmk", "bibtex", "biber")}
        return cls(**found, pdftoppm=shutil.which("pdftoppm", path=path) or shutil.which("pdftoppm"))


@dataclass(frozen=True, slots=True)
class CompileOptions:
    timeout_s: float = 45.0
    sandbox: Literal["auto", "bwrap", "off"] = "auto"
    max_file_bytes: int = 64 << 20
    """Largest file the compile may write (a runaway log is stopped there)."""
    preview_max_px: int = MAX_SIDE_PX
    """Long side of a page preview: legible 10 pt text, no more pixels than a model's vision reads (see imaging)."""


class CompilePaperResult(ToolModel):
    ok: bool = Field(description="True when the PDF was built without errors.")
    clean: bool = Field(
        default=False,
        description="ok, and no undefined reference or citation: only a clean PDF is promoted to `pdf`.",
    )
    main: str = Field(description="The main .tex file compiled, relative to the workspace.")
    pdf: str | None = Field(
        default=None, description="The last clean PDF (relative to the workspace); kept when a compile is not clean."
    )
    built: str | None = Field(default=None, description="This compile's PDF when ok but not clean ('??' inside).")
    version: int | None = Field(default=None, description="Version number of that PDF in `versions_dir`.")
    versions_dir: str | None = None
    pages: int | None = None
    errors: int = Field(default=0, description="Errors in all; the first ones are in `diagnostics`.")
    warnings: int = 0
    diagnostics: list[Diagnostic] = Field(default_factory=list[Diagnostic], description="Errors first, then warnings.")
    undefined_references: list[str] = Field(default_factory=list[str])
    undefined_citations: list[str] = Field(default_factory=list[str])
    missing_files: list[MissingFile] = Field(default_factory=list[MissingFile])
    bibliography_errors: list[str] = Field(default_factory=list[str], description="From the BibTeX/biber .blg.")
    blocked: list[str] = Field(
        default_factory=list[str], description="What the hardening refused or ignored (file access, rc files, ...)."
    )
    overfull_boxes: int = 0
    underfull_boxes: int = 0
    toolchain: str = Field(description="'latexmk' or the programs run in order when latexmk is missing.")
    sandboxed: bool = Field(description="Whether the compile ran inside bubblewrap.")
    duration_s: float
    log: str | None = Field(default=None, description="The full TeX log, relative to the workspace.")
    preview: str | None = Field(default=None, description="The image of the previewed page, relative to the workspace.")
    note: str | None = Field(default=None, description="What to do next.")


@dataclass(frozen=True, slots=True)
class Compiled:
    result: CompilePaperResult
    preview: Picture | None = None
    """The previewed page, sized for a model to read."""


@dataclass(frozen=True, slots=True)
class _Layout:
    root: Path  # workspace
    paper: Path  # folder of the main file
    main: Path
    build: Path
    sandboxed: bool
    user: tuple[int, int] | None
    fonts: Path
    """Fonts METAFONT generated (TEXMFVAR), kept per workspace so only the first compile pays for them."""

    @property
    def stem(self) -> str:
        return self.main.stem

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def inner(self, path: Path) -> str:
        """How the compile sees a host path of the paper folder."""
        return SANDBOX_PAPER + "/" + path.relative_to(self.paper).as_posix() if self.sandboxed else str(path)


@functools.cache
def bwrap_usable(bwrap: str = "bwrap") -> bool:
    """Whether bubblewrap can start a sandbox here (checked once per process)."""
    if shutil.which(bwrap) is None:
        return False
    probe = Sandbox(["/usr/bin/true"], user=sandbox_user(), bwrap=bwrap)
    try:
        return subprocess.run(probe.argv(), capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def compile_paper(
    root: Path,
    main: Path,
    *,
    tools: TexTools,
    options: CompileOptions | None = None,
    preview_page: int | None = None,
    progress: BlockingProgress = no_blocking_progress,
) -> Compiled:
    """Compile `main` (an absolute path already resolved inside the workspace `root`); each program run (every
    latexmk pass, the bibliography, the preview) is told to `progress` as it starts."""
    options = options or CompileOptions()
    if main.suffix != ".tex" or not main.is_file():
        raise BadInputError(f"{main.name!r} is not a .tex file. Give the paper's main file, e.g. 'paper/main.tex'.")
    if not _MAIN_NAME.fullmatch(main.name):
        raise BadInputError(
            f"The main file name {main.name!r} may only use letters, digits and . _ + - (TeX and latexmk "
            "mishandle spaces and shell characters); rename it."
        )
    if tools.pdflatex is None:  # after the input checks: a wrong path is the caller's to fix on any machine
        raise LatexError(f"pdflatex was not found, so nothing can be compiled. {install_hint()}")
    layout = _layout(root, main, options, tools)
    started = time.monotonic()
    result = CompilePaperResult(
        ok=False,
        main=layout.rel(main),
        toolchain="latexmk" if tools.latexmk else "pdflatex",
        sandboxed=layout.sandboxed,
        duration_s=0.0,
        versions_dir=layout.rel(layout.paper / VERSIONS_DIR),
    )
    pdf, result.version = versions.current(layout.paper, layout.stem)
    result.pdf = layout.rel(pdf) if pdf is not None else None
    checked = preflight(root, main, layout.sandboxed)
    result.blocked += checked.notes
    refused, uses_biblatex = checked.refused, checked.uses_biblatex
    if refused:
        result.errors = len(refused)
        result.diagnostics = refused
        result.note = "Nothing was compiled. Fix the lines named in `diagnostics`, then compile again."
        result.duration_s = round(time.monotonic() - started, 3)
        return Compiled(result)
    with _locked(layout):
        _prepare_build(layout)
        deadline = started + options.timeout_s
        outcome = _run_toolchain(layout, tools, options, deadline, uses_biblatex, progress)
        result.toolchain = outcome.toolchain
        _read_outputs(layout, result, outcome.terminal)
        timed_out = outcome.code is None
        if outcome.refused:
            result.errors += len(outcome.refused)
            result.diagnostics[:0] = [Diagnostic(severity="error", message=m) for m in outcome.refused]
        elif outcome.code and result.errors == 0:
            failures = _latexmk_failures(outcome.terminal) or [
                f"{outcome.toolchain} exited with status {outcome.code}."
            ]
            result.errors += len(failures)
            result.diagnostics[:0] = [Diagnostic(severity="error", message=m) for m in failures]
        if timed_out:
            result.errors += 1
            result.diagnostics.insert(
                0,
                Diagnostic(
                    severity="error",
                    message=f"The compile was stopped after {options.timeout_s:g} s and every process it started "
                    "was killed: an endless loop (\\loop, a recursive macro) or a very long document.",
                ),
            )
        built = layout.build / f"{layout.stem}.pdf"
        if outcome.code == 0 and result.errors == 0 and built.is_file() and result.pages:
            result.ok = True
            result.clean = not (result.undefined_references or result.undefined_citations)
            if result.clean:
                pdf, result.version = versions.promote(layout.paper, layout.stem, built)
                result.pdf = layout.rel(pdf)
            else:  # kept in the build folder: a PDF full of '??' must not replace the last clean one
                result.built = layout.rel(built)
    picture = None
    if preview_page is not None:
        picture = _preview(layout, tools, options, result, preview_page, started + options.timeout_s + 5, progress)
    result.note = _note(result)
    result.duration_s = round(time.monotonic() - started, 3)
    return Compiled(result, picture)


def _layout(root: Path, main: Path, options: CompileOptions, tools: TexTools) -> _Layout:
    sandboxed = options.sandbox != "off" and bwrap_usable()
    if options.sandbox == "bwrap" and not sandboxed:
        raise LatexError(
            "RESEARCH_MCP_LATEX_SANDBOX=bwrap, but bubblewrap cannot start a sandbox here: `apt-get install -y "
            "bubblewrap` and allow unprivileged user namespaces, or set RESEARCH_MCP_LATEX_SANDBOX=auto."
        )
    user = sandbox_user() if sandboxed else None
    paper = main.parent
    if user is not None:
        blocked = unreachable(paper, *user)
        if blocked is not None and not can_stage():  # else the sandbox stages the folders its user cannot reach
            raise LatexError(
                f"The compile sandbox runs as an unprivileged user (uid {user[0]}), which cannot enter {blocked}. "
                f"Run `chmod o+x {blocked}` (and make the paper's files readable: `chmod -R o+rX {paper}`)."
            )
    fonts = root / ".research" / "latex" / "texmf-var"
    if user is not None:
        fonts.mkdir(parents=True, exist_ok=True)
        if unreachable(fonts, *user) is not None:
            fonts = paper / BUILD_DIR / ".texmf-var"  # the state folder is closed to the sandbox user
    return _Layout(root, paper, main, paper / BUILD_DIR, sandboxed, user, fonts)


@contextlib.contextmanager
def _locked(layout: _Layout) -> Generator[None]:
    layout.build.mkdir(exist_ok=True)
    with open(layout.build / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare_build(layout: _Layout) -> None:
    """Create the build folder, mirror the paper's subfolders (\\include writes .aux files there), hand it over."""
    folders = [layout.build]
    for folder, dirs, _ in os.walk(layout.paper):
        dirs[:] = [d for d in dirs if d not in (BUILD_DIR, VERSIONS_DIR) and not d.startswith(".")]
        rel = Path(folder).relative_to(layout.paper)
        if rel != Path("."):
            folders.append(layout.build / rel)
        if len(folders) > 500:
            break
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    layout.fonts.mkdir(parents=True, exist_ok=True)
    if layout.user is not None:
        uid, gid = layout.user
        if layout.fonts.stat().st_uid != uid:
            os.chown(layout.fonts, uid, gid)
        for folder, dirs, files in os.walk(layout.build):
            os.chown(folder, uid, gid)
            for name in dirs + files:
                os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _env(layout: _Layout, tools: TexTools) -> dict[str, str]:
    bin_dir = os.path.dirname(tools.pdflatex or "/usr/bin/pdflatex")
    home = "/tmp" if layout.sandboxed else str(layout.build / ".home")
    return {
        "PATH": "/usr/bin:/bin" if bin_dir in ("/usr/bin", "/bin") else f"{bin_dir}:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "TEXMFVAR": SANDBOX_FONTS if layout.sandboxed else str(layout.fonts),
        "openin_any": "p",
        "openout_any": "p",
        "shell_escape": "f",
        "shell_escape_commands": "",
        "max_print_line": "10000",
        "error_line": "254",
        "half_error_line": "238",
    }


def _binds(layout: _Layout, tools: TexTools) -> list[Bind]:
    binds = [
        Bind(str(layout.paper), SANDBOX_PAPER),
        Bind(str(layout.build), f"{SANDBOX_PAPER}/{BUILD_DIR}", writable=True),
        Bind(str(layout.fonts), SANDBOX_FONTS, writable=True),
        *(Bind(path, path, optional=True) for path in (*_TEX_SYSTEM_BINDS, *_TEX_ROOTS)),
    ]
    for tool in (tools.pdflatex, tools.latexmk, tools.bibtex, tools.biber, tools.pdftoppm):
        folder = os.path.dirname(tool) if tool else None
        if folder and not folder.startswith("/usr/") and all(b.source != folder for b in binds):
            binds.append(Bind(folder, folder))
    return binds


def _run(
    layout: _Layout, tools: TexTools, options: CompileOptions, argv: Sequence[str], cwd: Path, deadline: float, out: int
) -> int | None:
    """Run one program (sandboxed when possible); its exit code, or None when the deadline killed it."""
    limited = list(argv)
    prlimit = shutil.which("prlimit")
    if prlimit is not None:
        limited = [prlimit, f"--fsize={options.max_file_bytes}", "--", *argv]
    env = _env(layout, tools)
    if not layout.sandboxed:
        Path(env["HOME"]).mkdir(exist_ok=True)
        return run_with_deadline(lambda _: limited, cwd=str(cwd), env=env, out=out, deadline=deadline, sandboxed=False)

    def sandboxed(status_fd: int | None) -> list[str]:
        binds = _binds(layout, tools)
        return Sandbox(limited, binds, env, layout.inner(cwd), user=layout.user, status_fd=status_fd).argv()

    return run_with_deadline(sandboxed, cwd=None, env=None, out=out, deadline=deadline, sandboxed=True)


def _run_toolchain(
    layout: _Layout, tools: TexTools, options: CompileOptions, deadline: float, uses_biblatex: bool,
    progress: BlockingProgress,
) -> _Outcome:  # fmt: skip
    """Run latexmk, or pdflatex and the bibliography program in order; each program is told as it starts."""
    paper_in = layout.inner(layout.paper)
    out_path = layout.build / ".terminal.txt"
    pdflatex = [tools.pdflatex or "pdflatex", "-no-shell-escape", "-file-line-error", "-interaction=nonstopmode"]
    with open(out_path, "wb") as out:
        fd = out.fileno()
        # without a sandbox biber must not run before its data sources are checked, which latexmk cannot do
        if tools.latexmk is not None and (layout.sandboxed or not uses_biblatex):
            command = " ".join([*pdflatex, "%O", "%S"])
            argv = [tools.latexmk, "-norc", "-pdf", f"-pdflatex={command}", f"-outdir={BUILD_DIR}", layout.main.name]
            progress(f"latexmk: compiling {layout.main.name}" + (" in the sandbox" if layout.sandboxed else ""))
            with telling_runs(out_path, progress):
                code = _run(layout, tools, options, argv, layout.paper, deadline, fd)
            return _Outcome(code, _read_capped(out_path), "latexmk")
        steps = ["pdflatex"]
        latex = [*pdflatex, "-recorder", f"-output-directory={BUILD_DIR}", layout.main.name]
        progress("pdflatex run 1")
        code = _run(layout, tools, options, latex, layout.paper, deadline, fd)
        aux = layout.build / f"{layout.stem}.aux"
        bcf = layout.build / f"{layout.stem}.bcf"
        if code == 0 and bcf.is_file() and tools.biber:
            refused = bcf_refusals(bcf)
            if refused:
                return _Outcome(1, _read_capped(out_path), "+".join(steps), refused)
            steps.append("biber")
            progress("biber")
            biber = [tools.biber, f"--input-directory={BUILD_DIR}", f"--output-directory={BUILD_DIR}", layout.stem]
            code = _run(layout, tools, options, biber, layout.paper, deadline, fd)
        elif code == 0 and aux.is_file() and "\\bibdata" in aux.read_text(errors="replace") and tools.bibtex:
            steps.append("bibtex")
            progress("bibtex")
            env = ["/usr/bin/env", f"BIBINPUTS={paper_in}:", f"BSTINPUTS={paper_in}:"]
            code = _run(layout, tools, options, [*env, tools.bibtex, layout.stem], layout.build, deadline, fd)
        code = None if code is None else 0  # bibliography errors are read from the .blg
        for _ in range(3):
            if code != 0:
                break
            steps.append("pdflatex")
            progress(f"pdflatex run {steps.count('pdflatex')}")
            code = _run(layout, tools, options, latex, layout.paper, deadline, fd)
            if not _RERUN.search(_read_capped(layout.build / f"{layout.stem}.log")):
                break
        return _Outcome(code, _read_capped(out_path), "+".join(steps))


@dataclass(frozen=True, slots=True)
class _Outcome:
    code: int | None
    """Exit code of the last program run; None when the deadline killed it."""
    terminal: str
    toolchain: str
    refused: list[str] = field(default_factory=list[str])


_LATEXMK_FAILURE = re.compile(
    r"^Latexmk: (?:Failure in processing file .*\n\s+(?P<why>.+)|(?P<wont>I WON'T RUN .+)\n\s+(?P<what>.+))$", re.M
)


def _latexmk_failures(terminal: str) -> list[str]:
    found: list[str] = []
    for match in _LATEXMK_FAILURE.finditer(terminal):
        text = match.group("why") or f"{match.group('wont')} {match.group('what')}"
        if text.strip() not in found:
            found.append(text.strip())
    return found


def _read_capped(path: Path, limit: int = 4 << 20) -> str:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                handle.seek(size - limit)
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _read_outputs(layout: _Layout, result: CompilePaperResult, terminal: str) -> None:
    log_path = layout.build / f"{layout.stem}.log"
    report = logparse.parse_log(_read_capped(log_path), terminal)
    blg_path = layout.build / f"{layout.stem}.blg"
    blg = logparse.parse_blg(_read_capped(blg_path)) if blg_path.is_file() else logparse.BlgReport()
    if log_path.is_file():
        result.log = layout.rel(log_path)
    for diagnostic in [*report.errors, *report.warnings]:
        diagnostic.file = _paper_file(layout, diagnostic.file)
        if diagnostic.file is not None and not diagnostic.file.startswith("/"):
            _locate_missing(layout.root / diagnostic.file, diagnostic)
            diagnostic.source = source_line(layout.root / diagnostic.file, diagnostic.line)
    result.errors = len(report.errors)
    result.warnings = len(report.warnings)
    result.diagnostics = [*report.errors, *report.warnings][:_MAX_KEPT_DIAGNOSTICS]
    result.undefined_references = report.undefined_references
    result.undefined_citations = report.undefined_citations
    missing = dict.fromkeys([*report.missing_files, *blg.missing_files])
    result.missing_files = [describe_missing(name, layout.paper) for name in missing]
    result.bibliography_errors = blg.errors[:_MAX_KEPT_DIAGNOSTICS]
    result.blocked += report.blocked
    result.overfull_boxes = report.overfull_boxes
    result.underfull_boxes = report.underfull_boxes
    result.pages = report.pages
    if not log_path.is_file() and terminal.strip():
        result.errors += 1
        result.diagnostics.insert(
            0, Diagnostic(severity="error", message="TeX wrote no log. Its output ends: " + terminal.strip()[-800:])
        )


def _locate_missing(path: Path, diagnostic: Diagnostic) -> None:
    """TeX reports a missing package at the line after \\usepackage (it looks ahead for options): move back to it."""
    found = re.search(r"File [`'](?P<name>[^']+?)(?:\.\w+)?' not found", diagnostic.message)
    if found is None or diagnostic.line is None:
        return
    stem = found.group("name").rsplit("/", 1)[-1]
    for line in range(diagnostic.line, max(0, diagnostic.line - 6), -1):
        if stem in strip_comment(source_line(path, line) or ""):
            diagnostic.line = line
            return


def _paper_file(layout: _Layout, name: str | None) -> str | None:
    """A file name from the log, made relative to the workspace when it is in the paper folder."""
    if name is None:
        return None
    if layout.sandboxed and name.startswith(SANDBOX_PAPER + "/"):
        name = name[len(SANDBOX_PAPER) + 1 :]
    path = Path(name) if name.startswith("/") else layout.paper / name
    try:
        return layout.rel(path.resolve()) if path.resolve().is_relative_to(layout.root) else name
    except OSError:
        return name


def _preview(
    layout: _Layout, tools: TexTools, options: CompileOptions, result: CompilePaperResult, page: int, deadline: float,
    progress: BlockingProgress,
) -> Picture | None:  # fmt: skip
    if not result.ok:
        result.blocked.append("No preview: the compile failed, and a preview of an older PDF would mislead.")
        return None
    if tools.pdftoppm is None:
        raise LatexError("pdftoppm is missing, so no page can be previewed: `apt-get install -y poppler-utils`.")
    if not 1 <= page <= (result.pages or 1):
        raise BadInputError(f"preview_page {page} is out of range: the PDF has {result.pages} pages.")
    progress(f"pdftoppm: page {page} as an image")
    staged = layout.build / f"{layout.stem}.pdf"
    pdf = layout.root / (result.built or result.pdf or layout.rel(staged))
    prefix = layout.build / f"{layout.stem}-page{page}"
    argv = [
        tools.pdftoppm,
        "-f",
        str(page),
        "-l",
        str(page),
        "-png",
        "-scale-to",
        str(options.preview_max_px),
        "-singlefile",
        layout.inner(staged if staged.is_file() else pdf),
        layout.inner(prefix),
    ]
    with open(layout.build / ".preview.txt", "wb") as out:
        code = _run(layout, tools, options, argv, layout.build, deadline, out.fileno())
    png = prefix.with_suffix(".png")
    if code != 0 or not png.is_file():
        raise LatexError(f"pdftoppm could not render page {page}: {_read_capped(layout.build / '.preview.txt')[-400:]}")
    picture = fit_image(png.read_bytes(), max_side_px=options.preview_max_px, palette=True)
    if picture.mime_type == "image/jpeg":
        png = png.with_suffix(".jpg")
    png.write_bytes(picture.data)  # the file the answer names holds what the model saw
    result.preview = layout.rel(png)
    return picture


def _listed(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _note(result: CompilePaperResult) -> str | None:
    last = f"{result.pdf} is still version {result.version}, the last clean one" if result.pdf else "no clean PDF yet"
    if result.ok and not result.clean:
        todo: list[str] = []
        if result.undefined_citations:
            keys = _listed(result.undefined_citations)
            todo.append(f"citations {keys} have no .bib entry (add them with cite, or fix the keys)")
        if result.undefined_references:
            todo.append(f"references {_listed(result.undefined_references)} have no \\label")
        return f"Compiled, but not clean: {'; '.join(todo)}. This PDF shows '??' and was not promoted: {last}."
    if result.ok:
        return None
    if result.missing_files:
        return (
            "Missing files stop the compile: see `missing_files` (for a package, what to install; for a figure or "
            "file of the paper, the closest names in its folder)."
        )
    kept = f" The last good PDF is still {result.pdf} (version {result.version})." if result.pdf else ""
    return "Fix the first error in `diagnostics` (file and line given), then compile again." + kept
