"""Seed one defect into a copy of a paper's workspace, and say where it is.

Every seed changes the paper without moving any line: a sentence is appended to the end of an existing line of
prose, or text is replaced inside a line (files of code are the exception: there a line is inserted, and the
seeded line is the inserted one). So the findings of the unseeded paper keep their lines, and what is new is
exactly what the seeding brought. Every choice comes from the `random.Random` passed in.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BUILT_KINDS",
    "CODES",
    "FIXTURE_KINDS",
    "KINDS",
    "SAME_DEFECT",
    "Context",
    "Seeded",
    "SeedError",
    "seed_defect",
]

KINDS = (
    "changed_number", "invented_citation", "cite_without_entry", "undefined_ref", "missing_figure",
    "one_seed_claim", "placeholder_text", "placeholder_code",
)  # fmt: skip
FIXTURE_KINDS = ("cite_without_entry", "undefined_ref", "missing_figure", "placeholder_text")
"""What can be seeded into the real papers: they have no runs (so no number traces and no claim rests on seeds),
and their citations are not looked up (that would need the internet)."""
BUILT_KINDS = KINDS
CODES: dict[str, frozenset[str]] = {
    "changed_number": frozenset({"untraced_number"}),
    "invented_citation": frozenset({"unverified_citation"}),
    "cite_without_entry": frozenset({"missing_entry", "undefined_cite"}),
    "undefined_ref": frozenset({"undefined_ref"}),
    "missing_figure": frozenset({"missing_figure"}),
    "one_seed_claim": frozenset({"one_seed_claim"}),
    "placeholder_text": frozenset({"placeholder_text"}),
    "placeholder_code": frozenset({"placeholder_code"}),
}
"""The finding codes that detect each kind of defect (audit_api.md's codes)."""
SAME_DEFECT: dict[str, frozenset[str]] = {"one_seed_claim": frozenset({"untested_claim"})}
"""Codes that, at the seeded place, describe the same defect in other words: a significance claim from one seed
also has no test. They are not false positives, and they do not count as detecting the seeded kind."""

_NON_PROSE = re.compile(
    r"\\begin\{(table|figure|tabular|equation|align|algorithm|algorithmic|verbatim|lstlisting|threeparttable|"
    r"filecontents|python|tabularx|longtable|eqnarray|gather|multline|minipage|thebibliography|comment)\*?\}"
)
_END_NON_PROSE = re.compile(
    r"\\end\{(table|figure|tabular|equation|align|algorithm|algorithmic|verbatim|lstlisting|threeparttable|"
    r"filecontents|python|tabularx|longtable|eqnarray|gather|multline|minipage|thebibliography|comment)\*?\}"
)
_UNESCAPED_PERCENT = re.compile(r"(?<!\\)%")
_CITE_CALL = re.compile(r"\\cite[pt]?\{([^}]*)\}")
_LABEL = re.compile(r"\\label\{([^}]*)\}")
_INCLUDE = re.compile(r"\\includegraphics\s*(?:\[[^\]]*\])?\{([^}]*)\}")
_GRAPHICSPATH = re.compile(r"\\graphicspath\{((?:\{[^}]*\})+)\}")
_NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


class SeedError(Exception):
    """This kind cannot be seeded into this paper (it has no place for it)."""


@dataclass
class Seeded:
    """One seeded defect: its kind, how it was placed, and where the audit should point."""

    kind: str
    paper: str
    how: str
    file: str
    line: int
    token: str
    """Text a finding about this defect would quote (a key, a label, a file name, the changed number)."""
    also: list[tuple[str, int]] = field(default_factory=list[tuple[str, int]])
    """Other places a finding may rightly point at (the .bib entry of an invented citation, the other copy of a
    run's code)."""

    def places(self) -> list[tuple[str, int]]:
        return [(self.file, self.line), *self.also]


@dataclass
class Context:
    """What a seeder needs to know about the paper: its workspace, main file, and, for the built paper, its runs
    and the numbers its text quotes."""

    root: Path
    paper: str
    main: str
    runs: dict[str, list[str]] = field(default_factory=dict[str, list[str]])
    quoted: dict[str, str] = field(default_factory=dict[str, str])
    bib: str | None = None


# --- lines of a .tex file -------------------------------------------------------------------------------------------


def _read(ctx: Context, rel: str) -> list[str]:
    return (ctx.root / rel).read_text(encoding="utf-8").split("\n")


def _write(ctx: Context, rel: str, lines: list[str]) -> None:
    (ctx.root / rel).write_text("\n".join(lines), encoding="utf-8")


def prose_lines(lines: list[str]) -> list[int]:
    """0-based indexes of lines of running text in the document body: outside floats, tables, equations and
    listings, with no comment, ending a sentence, long enough to be prose."""
    found: list[int] = []
    depth = 0
    body = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(r"\begin{document}"):
            body = True
            continue
        if stripped.startswith((r"\end{document}", r"\bibliography", r"\appendix", r"\begin{thebibliography}")):
            break
        opened, closed = len(_NON_PROSE.findall(line)), len(_END_NON_PROSE.findall(line))
        before = depth
        depth = max(0, depth + opened - closed)
        if not body or before or opened or closed:
            continue
        if stripped.startswith(("\\", "%", "&", "{", "}", "$")) or _UNESCAPED_PERCENT.search(line):
            continue
        if len(stripped) >= 50 and stripped.endswith(".") and not stripped.endswith(r"\\."):
            found.append(i)
    return found


def _pick_line(ctx: Context, rng: random.Random, rel: str | None = None) -> tuple[str, list[str], int]:
    rel = rel or ctx.main
    lines = _read(ctx, rel)
    candidates = prose_lines(lines)
    if not candidates:
        raise SeedError(f"{rel} has no line of prose to append to")
    return rel, lines, rng.choice(candidates)


def _append(ctx: Context, rel: str, lines: list[str], index: int, text: str) -> int:
    lines[index] = lines[index].rstrip() + " " + text
    _write(ctx, rel, lines)
    return index + 1


def _all_text(ctx: Context, suffix: str) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in (ctx.root / "paper").rglob(f"*{suffix}") if p.is_file()
    )


def _fresh(rng: random.Random, make: Callable[[random.Random], str], taken: str) -> str:
    for _ in range(100):
        name = make(rng)
        if name not in taken:
            return name
    raise SeedError("no fresh name found")


_SURNAMES = ["okafor", "lindqvist", "moreau", "tanaka", "haddad", "kowalski", "ferreira", "brennan", "vasquez", "ito"]
_WORDS = ["sparse", "gated", "latent", "robust", "adaptive", "spectral", "implicit", "contrastive", "stable", "deep"]
_NOUNS = ["Residual Heads", "Decision Boundaries", "Spiral Manifolds", "Gradient Flows", "Output Layers",
          "Narrow Networks", "Feature Gates", "Margin Dynamics"]  # fmt: skip
_TASKS = ["Nonlinear Classification", "Small-Sample Learning", "Toy Benchmarks", "Synthetic Data",
          "Curved Decision Regions"]  # fmt: skip
_FIRST = ["Amara", "Jonas", "Mei", "Rafael", "Ingrid", "Tomasz", "Leila", "Kenji", "Sofia", "Daniel"]


def _key(rng: random.Random) -> str:
    return f"{rng.choice(_SURNAMES)}{rng.randint(2015, 2024)}{rng.choice(_WORDS)}"


def _cite_command(ctx: Context, rng: random.Random) -> str:
    tex = (ctx.root / ctx.main).read_text(encoding="utf-8", errors="replace")
    natbib = r"\citep{" in tex or "natbib" in tex
    return rng.choice([r"\citep", r"\citet", r"\cite"]) if natbib else r"\cite"


# --- the seeders ------------------------------------------------------------------------------------------------------


def cite_without_entry(ctx: Context, rng: random.Random) -> Seeded:
    taken = _all_text(ctx, ".bib") + _all_text(ctx, ".tex")
    key = _fresh(rng, _key, taken)
    rel, lines, index = _pick_line(ctx, rng)
    existing = [i for i in prose_lines(lines) if _CITE_CALL.search(lines[i])]
    if existing and rng.random() < 0.4:
        index = rng.choice(existing)
        found = _CITE_CALL.search(lines[index])
        assert found is not None
        lines[index] = lines[index][: found.end(1)] + f",{key}" + lines[index][found.end(1) :]
        _write(ctx, rel, lines)
        return Seeded("cite_without_entry", ctx.paper, "key added to an existing \\cite", rel, index + 1, key)
    command = _cite_command(ctx, rng)
    sentence = rng.choice([
        f"Similar observations were reported before~{command}{{{key}}}.",
        f"This agrees with earlier work~{command}{{{key}}}.",
        f"See~{command}{{{key}}} for a related analysis.",
    ])  # fmt: skip
    line = _append(ctx, rel, lines, index, sentence)
    return Seeded("cite_without_entry", ctx.paper, f"new sentence with {command}", rel, line, key)


def undefined_ref(ctx: Context, rng: random.Random) -> Seeded:
    taken = _all_text(ctx, ".tex")
    labels = set(_LABEL.findall(taken))
    prefix = rng.choice(["sec", "tab", "fig", "eq", "app"])
    label = _fresh(rng, lambda r: f"{prefix}:{r.choice(_WORDS)}-{r.choice(['results', 'setup', 'proof', 'extra'])}",
                   "\n".join(labels))  # fmt: skip
    hyperref = "hyperref" in taken or "cleveref" in taken
    amsmath = "amsmath" in taken
    forms = {
        "sec": [f"Details are in Section~\\ref{{{label}}}."],
        "app": [f"The full derivation is in Appendix~\\ref{{{label}}}."],
        "tab": [f"Table~\\ref{{{label}}} lists the remaining numbers."],
        "fig": [f"Figure~\\ref{{{label}}} shows the same trend."],
        "eq": [f"This follows from Equation~\\ref{{{label}}}."],
    }[prefix]
    if amsmath and prefix == "eq":
        forms.append(f"This follows from~\\eqref{{{label}}}.")
    if hyperref:
        forms.append(f"The same holds in \\autoref{{{label}}}.")
    rel, lines, index = _pick_line(ctx, rng)
    sentence = rng.choice(forms)
    line = _append(ctx, rel, lines, index, sentence)
    command = re.search(r"\\(ref|eqref|autoref)\{", sentence)
    how = f"new sentence with \\{command[1] if command else 'ref'} to a {prefix}: label that does not exist"
    return Seeded("undefined_ref", ctx.paper, how, rel, line, label)


def _graphics_dirs(ctx: Context, tex: str) -> list[Path]:
    base = (ctx.root / ctx.main).parent
    dirs = [base]
    for group in _GRAPHICSPATH.findall(tex):
        dirs += [(base / d).resolve() for d in re.findall(r"\{([^}]*)\}", group)]
    return dirs


def _image_of(ctx: Context, tex: str, name: str) -> Path | None:
    for folder in _graphics_dirs(ctx, tex):
        for ext in ("", ".pdf", ".png", ".jpg", ".jpeg", ".eps"):
            candidate = folder / (name + ext)
            if candidate.is_file():
                return candidate
    return None


def missing_figure(ctx: Context, rng: random.Random) -> Seeded:
    rel = ctx.main
    lines = _read(ctx, rel)
    tex = "\n".join(lines)
    includes = [(i, m) for i, line in enumerate(lines) for m in _INCLUDE.finditer(line) if "%" not in line[: m.start()]]
    way = rng.choice(["delete", "rename", "insert"]) if includes else "insert"
    if way in ("delete", "rename"):
        index, found = rng.choice(includes)
        name = found.group(1)
        image = _image_of(ctx, tex, name)
        if way == "delete" and image is not None:
            image.unlink()
            return Seeded("missing_figure", ctx.paper, "image file deleted", rel, index + 1, Path(name).name)
        stem, dot, ext = name.rpartition(".")
        renamed = f"{stem}_final.{ext}" if dot else f"{name}_final"
        lines[index] = lines[index][: found.start(1)] + renamed + lines[index][found.end(1) :]
        _write(ctx, rel, lines)
        return Seeded("missing_figure", ctx.paper, "\\includegraphics names a file that is not there", rel, index + 1,
                      Path(renamed).name)  # fmt: skip
    if "graphicx" not in tex:  # load it on an existing preamble line, so no line moves
        preamble = next(i for i, line in enumerate(lines) if line.strip().startswith(r"\usepackage"))
        lines[preamble] = lines[preamble].rstrip() + r" \usepackage{graphicx}"
    taken = "\n".join(_LABEL.findall(tex))
    word = _fresh(rng, lambda r: f"{r.choice(_WORDS)}_{r.choice(['curves', 'scores', 'ablation', 'overview'])}", taken)
    candidates = prose_lines(lines)
    if not candidates:
        raise SeedError(f"{rel} has no line of prose to append to")
    index = rng.choice(candidates)
    figure = (
        f"Figure~\\ref{{fig:{word}}} shows it. \\begin{{figure}}[t]\\centering"
        f"\\includegraphics[width=0.8\\linewidth]{{figures/{word}.pdf}}"
        f"\\caption{{The {word.replace('_', ' ')}.}}\\label{{fig:{word}}}\\end{{figure}}"
    )
    line = _append(ctx, rel, lines, index, figure)
    return Seeded("missing_figure", ctx.paper, "new figure whose file does not exist", rel, line, f"{word}.pdf")


_PLACEHOLDERS = [
    ("TODO: add the missing baseline numbers.", "TODO"),
    ("[citation needed]", "citation needed"),
    ("XXX check this claim.", "XXX"),
    ("Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "Lorem ipsum"),
    (r"\textbf{[TBD]}", "TBD"),
    ("FIXME: rewrite this paragraph.", "FIXME"),
    ("[Insert results here.]", "Insert results here"),
]


def placeholder_text(ctx: Context, rng: random.Random) -> Seeded:
    rel, lines, index = _pick_line(ctx, rng)
    numbered = [i for i in prose_lines(lines) if _NUMBER.search(lines[i])]
    if numbered and rng.random() < 0.25:
        index = rng.choice(numbered)
        found = _NUMBER.search(lines[index])
        assert found is not None
        lines[index] = lines[index][: found.start()] + "XX" + lines[index][found.end() :]
        _write(ctx, rel, lines)
        return Seeded("placeholder_text", ctx.paper, "a number replaced by XX", rel, index + 1, "XX")
    text, token = rng.choice(_PLACEHOLDERS)
    line = _append(ctx, rel, lines, index, text)
    return Seeded("placeholder_text", ctx.paper, f"'{token}' appended", rel, line, token)


# --- seeders that need the built paper's runs ------------------------------------------------------------------------


def _changed(text: str, rng: random.Random) -> str:
    """The number written in `text`, changed in its last shown digit (decimals) or by a few percent (integers)."""
    if "." in text:
        decimals = len(text.split(".")[1])
        value = float(text)
        unit = 10.0**-decimals
        for _ in range(20):
            new = value + rng.choice([-7, -5, -3, -2, 2, 3, 5, 7]) * unit
            shown = f"{new:.{decimals}f}"
            if new > 0 and shown != text:
                return shown
        raise SeedError(f"cannot change {text}")
    value = int(text)
    return str(value + rng.choice([1, 2, 3]) * max(1, value // 8))


def changed_number(ctx: Context, rng: random.Random) -> Seeded:
    places: list[tuple[str, int, str, str]] = []  # file, 0-based line, the number's text, what it is
    main = _read(ctx, ctx.main)
    for name, shown in ctx.quoted.items():
        if name == "seeds":
            continue
        for number in re.findall(r"\d+(?:\.\d+)?", shown):
            pattern = re.compile(rf"(?<![\d.]){re.escape(number)}(?![\d])")
            first = next((i for i, line in enumerate(main) if not line.lstrip().startswith("%") and
                          pattern.search(line)), None)  # fmt: skip
            if first is not None:
                places.append((ctx.main, first, number, f"{name} in the text"))
    for i, line in enumerate(main):  # the appendix's per-run numbers, when the paper has one
        if line.startswith("Run \\texttt{"):
            places.extend((ctx.main, i, number, "a run's number in the appendix") for number in _NUMBER.findall(line))
    table = "paper/tables/main.tex"
    for i, line in enumerate(_read(ctx, table)):
        found = re.match(r"\s*& \$(?:\\mathbf\{)?([^$]*?)\}?\$ %", line)
        if found:
            places.extend((table, i, number, "a results_table cell") for number in re.findall(r"\d+\.\d+", found[1]))
    if not places:
        raise SeedError("no quoted number")
    rel, index, number, what = rng.choice(places)
    lines = _read(ctx, rel)
    new = _changed(number, rng)
    at = re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", lines[index])
    if at is None:
        raise SeedError(f"{number} not found on line {index + 1} of {rel}")
    lines[index] = lines[index][: at.start()] + new + lines[index][at.end() :]
    _write(ctx, rel, lines)
    return Seeded("changed_number", ctx.paper, f"{what}: {number} -> {new}", rel, index + 1, new)


def invented_citation(ctx: Context, rng: random.Random) -> Seeded:
    if ctx.bib is None:
        raise SeedError("no bibliography to add to")
    taken = _all_text(ctx, ".bib") + _all_text(ctx, ".tex")
    key = _fresh(rng, _key, taken)
    title = f"{rng.choice(_WORDS).title()} {rng.choice(_NOUNS)} for {rng.choice(_TASKS)}"
    authors = " and ".join(f"{rng.choice(_FIRST)} {rng.choice(_SURNAMES).title()}" for _ in range(rng.randint(1, 3)))
    year = rng.randint(2016, 2024)
    way = rng.choice(["arxiv id", "title only", "real id, invented metadata", "doi"])
    fields = [f"  title = {{{title}}}", f"  author = {{{authors}}}", f"  year = {{{year}}}"]
    kind = "article"
    if way == "arxiv id":
        fields.append(f"  eprint = {{{year % 100:02d}{rng.randint(1, 12):02d}.{rng.randint(10000, 99999)}}}")
        fields.append("  archiveprefix = {arXiv}")
        kind = "misc"
    elif way == "real id, invented metadata":
        fields.append("  eprint = {1605.08386}")
        fields.append("  archiveprefix = {arXiv}")
        kind = "misc"
    elif way == "doi":
        fields.append(f"  doi = {{10.{rng.randint(1000, 9999)}/{rng.choice(_WORDS)}.{rng.randint(100, 999)}}}")
        fields.append(f"  journal = {{Journal of {rng.choice(_TASKS)}}}")
    else:
        fields.append(f"  booktitle = {{Proceedings of the Workshop on {rng.choice(_TASKS)}}}")
        kind = "inproceedings"
    bib = (ctx.root / ctx.bib).read_text(encoding="utf-8")
    entry_line = bib.count("\n") + (1 if bib.endswith("\n") else 2) + 1
    separator = "" if bib.endswith("\n") else "\n"
    (ctx.root / ctx.bib).write_text(
        bib + separator + "\n" + f"@{kind}{{{key},\n" + ",\n".join(fields) + "\n}\n", encoding="utf-8"
    )
    rel, lines, index = _pick_line(ctx, rng)
    command = _cite_command(ctx, rng)
    sentence = rng.choice([
        f"A gated head of this kind was proposed before~{command}{{{key}}}.",
        f"Related results on curved boundaries appear in~{command}{{{key}}}.",
    ])  # fmt: skip
    line = _append(ctx, rel, lines, index, sentence)
    return Seeded("invented_citation", ctx.paper, f"invented entry ({way})", rel, line, key, [(ctx.bib, entry_line)])


def one_seed_claim(ctx: Context, rng: random.Random) -> Seeded:
    single = [label for label, ids in ctx.runs.items() if len(ids) == 1]
    if not single or "ablation_acc" not in ctx.quoted:
        raise SeedError("no configuration with a single run")
    base = ctx.quoted["abstract_baseline_acc"]
    if len(single) == len(ctx.runs):  # one run each: a claim about the method itself rests on one seed
        value, what = ctx.quoted["abstract_method_acc"], "gated head"
    else:  # several seeds each, but one run of the ablation: a claim about the ablation rests on one seed
        value, what = ctx.quoted["ablation_acc"], "ungated head"
    sentence = rng.choice([
        f"The {what} significantly outperforms the baseline (${value}$ against ${base}$).",
        f"The {what} gives a statistically significant improvement over the plain head (${value}$).",
        f"The {what}, at ${value}$, is significantly better than the baseline.",
        f"The {what} beats the baseline with statistical significance, reaching ${value}$.",
    ])  # fmt: skip
    rel, lines, index = _pick_line(ctx, rng)
    line = _append(ctx, rel, lines, index, sentence)
    return Seeded("one_seed_claim", ctx.paper, f"significance claimed for the {what}, one run", rel, line, value)


_CODE_PLACEHOLDERS = [
    ("def forward(", "    raise NotImplementedError  # TODO: the residual branch", "NotImplementedError"),
    ("def loss_of(", "    return 0.0  # placeholder loss until the real one works", "placeholder"),
    ('                    "val_acc":', '                    "val_acc": 0.91,  # TODO: hard-coded for now', "TODO"),
    ("            if step % 50 == 0:", "                pass  # TODO: gradient clipping", "TODO"),
    ("def spirals(", "    # FIXME: dummy data, replace with the real spirals", "FIXME"),
]


def placeholder_code(ctx: Context, rng: random.Random) -> Seeded:
    from evals.audit_eval.paper import run_code_files

    cited = [run for ids in ctx.runs.values() for run in ids]
    if not cited:
        raise SeedError("no run")
    run = rng.choice(cited)
    anchor, inserted, token = rng.choice(_CODE_PLACEHOLDERS)
    places: list[tuple[str, int]] = []
    for path in run_code_files(ctx.root, run):
        lines = path.read_text(encoding="utf-8").split("\n")
        at = next(i for i, line in enumerate(lines) if line.startswith(anchor))
        lines.insert(at + 1, inserted)
        path.write_text("\n".join(lines), encoding="utf-8")
        places.append((path.relative_to(ctx.root).as_posix(), at + 2))
    (file, line), *others = places
    return Seeded("placeholder_code", ctx.paper, f"'{token}' in a run's train.py", file, line, token, others)


SEEDERS: dict[str, Callable[[Context, random.Random], Seeded]] = {
    "changed_number": changed_number,
    "invented_citation": invented_citation,
    "cite_without_entry": cite_without_entry,
    "undefined_ref": undefined_ref,
    "missing_figure": missing_figure,
    "one_seed_claim": one_seed_claim,
    "placeholder_text": placeholder_text,
    "placeholder_code": placeholder_code,
}


def seed_defect(kind: str, ctx: Context, rng: random.Random) -> Seeded:
    return SEEDERS[kind](ctx, rng)
