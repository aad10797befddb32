"""pylatexenc glue: the macro specs the walker and the text converter share, and one walk collecting keys, floats
and numbers with their positions.

pylatexenc ships no type information, so its modules are imported through `importlib` and handled as `Any`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from research_mcp.latex.models import Float, KeyUse, NumberUse, TextLimits

__all__ = ["SECTION_LEVELS", "Collector", "arg", "converter", "is_heading", "node_types", "raw", "squash", "walker_db"]

SECTION_LEVELS = {
    "part": -1,
    "chapter": 0,
    "section": 1,
    "subsection": 2,
    "subsubsection": 3,
    "paragraph": 4,
    "subparagraph": 5,
}
_CITE_MACROS = (
    "cite citep citet citealp citealt citeauthor citeyear citeyearpar citenum nocite Cite Citep Citet "
    "parencite Parencite textcite Textcite autocite Autocite footcite smartcite supercite fullcite citetitle "
    "citeposs"
).split()
_REF_MACROS = "ref eqref autoref Autoref cref Cref pageref nameref vref Vref cpageref Cpageref subref".split()
_NO_TEXT_ARGS = frozenset(
    "label ref eqref autoref Autoref cref Cref pageref nameref vref Vref cpageref Cpageref subref includegraphics "
    "vspace hspace setlength addtolength setcounter addtocounter url bibliography bibliographystyle addbibresource "
    "input include usepackage documentclass newcommand renewcommand providecommand def graphicspath pagestyle "
    "thispagestyle cmidrule cline hypersetup color textcolor rule raisebox resizebox scalebox newenvironment "
    "fontsize linespread arraystretch numberwithin pgfplotsset tikzset definecolor"
    .split()
    + _CITE_MACROS
)  # fmt: skip
_TEXT_ARG_ONLY = {
    "multicolumn": 2,
    "multirow": 2,
    "href": 1,
    "hyperlink": 1,
    "hypertarget": 1,
    "textcolor": 1,
    "colorbox": 1,
    "resizebox": 2,
}
_FLOAT_KINDS: dict[str, Literal["figure", "table", "algorithm"]] = {
    "figure": "figure",
    "figure*": "figure",
    "wrapfigure": "figure",
    "subfigure": "figure",
    "table": "table",
    "table*": "table",
    "wraptable": "table",
    "algorithm": "algorithm",
    "algorithm*": "algorithm",
}
_MATH_ENVS = (
    "equation equation* align align* gather gather* multline multline* eqnarray eqnarray* flalign flalign* "
    "alignat alignat* displaymath math"
).split()
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-+−])?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s*(?:[eE](?P<exp>[-+]?\d+)))?(?![\w])"
)
_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_MATH_TEXT = re.compile(
    r"\$\$.*?\$\$|\$.*?\$|\\\[.*?\\\]|\\\(.*?\\\)|\\begin\{("
    + "|".join(re.escape(e) for e in _MATH_ENVS)
    + r")\}.*?\\end\{\1\}",
    re.S,
)


def walker_db() -> Any:
    macrospec: Any = importlib.import_module("pylatexenc.macrospec")
    db: Any = importlib.import_module("pylatexenc.latexwalker").get_default_latex_context_db()
    macros = [macrospec.MacroSpec(name, "*[[{") for name in _CITE_MACROS]
    macros += [macrospec.MacroSpec(name, "*{") for name in _REF_MACROS]
    macros += [macrospec.MacroSpec(name, "*[{") for name in SECTION_LEVELS]
    macros += [
        macrospec.MacroSpec("caption", "*[{"),
        macrospec.MacroSpec("captionof", "*{[{"),
        macrospec.MacroSpec("href", "{{"),
        macrospec.MacroSpec("hyperlink", "{{"),
        macrospec.MacroSpec("hypertarget", "{{"),
        macrospec.MacroSpec("hyperref", "[{"),
        macrospec.MacroSpec("thanks", "{"),
        macrospec.MacroSpec("includegraphics", "*[[{"),
        macrospec.MacroSpec("addbibresource", "[{"),
        macrospec.MacroSpec("multicolumn", "{{{"),
        macrospec.MacroSpec("multirow", "[{[{"),
        macrospec.MacroSpec("cline", "{"),
        macrospec.MacroSpec("SI", "[{[{"),
        macrospec.MacroSpec("si", "[{"),
        macrospec.MacroSpec("num", "[{"),
        macrospec.MacroSpec("textcolor", "[{{"),
        macrospec.MacroSpec("colorbox", "[{{"),
        macrospec.MacroSpec("graphicspath", "{"),
        macrospec.MacroSpec("subfile", "{"),
        macrospec.MacroSpec("abstract", "{"),
        macrospec.MacroSpec("keywords", "{"),
        macrospec.MacroSpec("resizebox", "*{{{"),
        macrospec.MacroSpec("tnote", "{"),
        macrospec.MacroSpec("texttt", "{"),
    ]
    envs = [
        macrospec.EnvironmentSpec("tabular", "{"),
        macrospec.EnvironmentSpec("tabular*", "{{"),
        macrospec.EnvironmentSpec("tabularx", "{{"),
        macrospec.EnvironmentSpec("threeparttable", ""),
        macrospec.EnvironmentSpec("wrapfigure", "[{[{"),
        macrospec.EnvironmentSpec("subfigure", "[{"),
    ]
    db.add_context_category("research-mcp", macros=macros, environments=envs, prepend=True)
    return db


def arg(node: Any, index: int) -> Any:
    argd = getattr(node, "nodeargd", None)
    args: list[Any] = list(getattr(argd, "argnlist", None) or [])
    return args[index] if -len(args) <= index < len(args) else None


def raw(node: Any) -> str:
    if node is None:
        return ""
    if node.isNodeType(node_types()["group"]):
        return "".join(child.latex_verbatim() for child in node.nodelist)
    return str(node.latex_verbatim())


_TYPES: dict[str, Any] = {}


def node_types() -> dict[str, Any]:
    if not _TYPES:
        lw: Any = importlib.import_module("pylatexenc.latexwalker")

        _TYPES.update(
            chars=lw.LatexCharsNode,
            group=lw.LatexGroupNode,
            macro=lw.LatexMacroNode,
            env=lw.LatexEnvironmentNode,
            math=lw.LatexMathNode,
            specials=lw.LatexSpecialsNode,
            comment=lw.LatexCommentNode,
        )
    return _TYPES


def _keys(node: Any) -> list[str]:
    return [key.strip() for key in raw(arg(node, -1)).split(",") if key.strip()]


@dataclass
class Collector:
    """Walks the body's nodes once, collecting keys, floats and numbers with their source locations."""

    where: Callable[[int], tuple[str, int]]
    source: str
    text_of: Callable[[Sequence[Any]], str]
    limits: TextLimits
    cites: dict[str, KeyUse] = field(default_factory=dict[str, KeyUse])
    refs: dict[str, KeyUse] = field(default_factory=dict[str, KeyUse])
    labels: dict[str, KeyUse] = field(default_factory=dict[str, KeyUse])
    floats: list[Float] = field(default_factory=list[Float])
    numbers: list[NumberUse] = field(default_factory=list[NumberUse])
    bib_files: list[str] = field(default_factory=list[str])
    _float: Float | None = None

    def key(self, table: dict[str, KeyUse], key: str, pos: int) -> None:
        if key in table:
            table[key].uses += 1
        else:
            file, line = self.where(pos)
            table[key] = KeyUse(key=key, file=file, line=line, uses=1)

    def walk(self, nodes: Sequence[Any] | None, in_math: bool = False) -> None:
        types = node_types()
        items = list(nodes or [])
        for i, node in enumerate(items):
            if node is None:
                continue
            if node.isNodeType(types["chars"]):
                following = items[i + 1] if i + 1 < len(items) else None
                self.chars(node, following, in_math)
            elif node.isNodeType(types["group"]):
                self.walk(node.nodelist, in_math)
            elif node.isNodeType(types["math"]):
                self.walk(node.nodelist, True)
            elif node.isNodeType(types["env"]):
                self.env(node, in_math)
            elif node.isNodeType(types["macro"]):
                self.macro(node, in_math)

    def env(self, node: Any, in_math: bool) -> None:
        name = str(node.environmentname)
        kind = _FLOAT_KINDS.get(name)
        if kind is None or self._float is not None:
            self.walk(node.nodelist, in_math or name in _MATH_ENVS)
            return
        file, line = self.where(node.pos)
        self._float = Float(kind=kind, file=file, line=line)
        try:
            self.walk(node.nodelist, in_math)
            self.floats.append(self._float)
        finally:
            self._float = None

    def macro(self, node: Any, in_math: bool) -> None:
        name = str(node.macroname)
        if name in _CITE_MACROS:
            for key in _keys(node):
                self.key(self.cites, key, node.pos)
        elif name in _REF_MACROS:
            for key in _keys(node):
                self.key(self.refs, key, node.pos)
        elif name == "label":
            key = raw(arg(node, 0)).strip()
            if key:
                self.key(self.labels, key, node.pos)
                if self._float is not None:
                    self._float.labels.append(key)
        elif name == "includegraphics":
            path = raw(arg(node, -1)).strip()
            if self._float is not None:
                self._float.graphics.append(path)
            else:
                file, line = self.where(node.pos)
                self.floats.append(Float(kind="graphic", file=file, line=line, graphics=[path]))
        elif name in ("bibliography", "addbibresource"):
            self.bib_files += [p.strip() for p in raw(arg(node, -1)).split(",") if p.strip()]
        elif name in ("caption", "captionof") and self._float is not None and self._float.caption is None:
            self._float.caption = squash(self.text_of([arg(node, -1)]))
        if name in _NO_TEXT_ARGS:
            return
        args: list[Any] = list(getattr(getattr(node, "nodeargd", None), "argnlist", None) or [])
        if name in _TEXT_ARG_ONLY:
            args = args[_TEXT_ARG_ONLY[name] :]
        for argument in args:
            if argument is not None:
                self.walk([argument], in_math)

    def chars(self, node: Any, following: Any, in_math: bool) -> None:
        text = str(node.chars)
        for match in _NUMBER.finditer(text):
            if len(self.numbers) >= self.limits.max_numbers:
                return
            written = match.group(0)
            percent = match.end() == len(text) and following is not None and _is_percent(following)
            try:
                value = float((match.group("sign") or "").replace("−", "-") + match.group("num").replace(",", ""))
                if match.group("exp"):
                    value *= 10.0 ** int(match.group("exp"))
            except (ValueError, OverflowError):
                continue
            file, line = self.where(node.pos + match.start())
            start = node.pos + match.start()
            context = _context(self.source, start, start + len(written))
            self.numbers.append(
                NumberUse(
                    text=written + ("%" if percent else ""),
                    value=value,
                    file=file,
                    line=line,
                    in_math=in_math,
                    context=context,
                )
            )


def is_heading(node: Any) -> bool:
    return bool(node.isNodeType(node_types()["macro"]) and node.macroname in SECTION_LEVELS)


def _si(node: Any, l2tobj: Any) -> str:
    return raw(arg(node, 1)) + " " + raw(arg(node, 3))


def _is_percent(node: Any) -> bool:
    return bool(node.isNodeType(node_types()["macro"]) and node.macroname == "%")


def _context(source: str, start: int, end: int, reach: int = 90) -> str:
    """The source around `source[start:end]`, about `reach` characters each side but never cutting a formula in
    two (formulas are found from the start of the paragraph, since `$` pairs only read from there)."""
    low, high = max(0, start - reach), min(len(source), end + reach)
    paragraph = source.rfind("\n\n", max(0, low - 2000), low)
    begin = paragraph + 1 if paragraph >= 0 else max(0, low - 2000)
    for formula in _MATH_TEXT.finditer(source, begin, min(len(source), high + 4 * reach)):
        if formula.start() < low < formula.end():
            low = max(formula.start(), start - 4 * reach)
        if formula.start() < high < formula.end():
            high = min(formula.end(), end + 4 * reach)
    return _plain(source[low:high])


def _plain(latex: str) -> str:
    """A rough plain-text form of a source snippet, for context: math kept as written (`$93.2 \\pm 0.4$`); elsewhere
    command names, braces and tildes dropped."""
    parts: list[str] = []
    last = 0
    for formula in _MATH_TEXT.finditer(latex):
        parts += [_plain_text(latex[last : formula.start()]), formula.group(0)]
        last = formula.end()
    parts.append(_plain_text(latex[last:]))
    return squash("".join(parts))


def _plain_text(latex: str) -> str:
    text = re.sub(r"\\(?:label|ref|eqref|cite[a-z]*|hypertarget|hyperlink|cref|Cref)\*?\{[^{}]*\}", " ", latex)
    text = re.sub(r"\\[A-Za-z@]+\*?", " ", text).replace("\\%", "%")
    return re.sub(r"[{}~]", " ", text).replace("\\", " ")


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def converter() -> Any:
    """A pylatexenc `LatexNodes2Text` with math kept verbatim and this project's renderings."""
    l2t: Any = importlib.import_module("pylatexenc.latex2text")

    def cite(node: Any, l2tobj: Any) -> str:
        return "[" + "; ".join("@" + key for key in _keys(node)) + "]"

    def ref(node: Any, l2tobj: Any) -> str:
        return "[ref: " + ", ".join(_keys(node)) + "]"

    def footnote(node: Any, l2tobj: Any) -> str:
        return " [footnote: " + squash(l2tobj.nodelist_to_text([arg(node, -1)])) + "]"

    def href(node: Any, l2tobj: Any) -> str:
        return f"{l2tobj.nodelist_to_text([arg(node, 1)])} <{raw(arg(node, 0))}>"

    def text_arg(index: int) -> Callable[[Any, Any], str]:
        return lambda node, l2tobj: str(l2tobj.nodelist_to_text([arg(node, index)]))

    def float_env(node: Any, l2tobj: Any) -> str:
        kind = str(node.environmentname).rstrip("*").replace("wrap", "").replace("sub", "").capitalize()
        caption, labels, rest = None, list[str](), list[Any]()
        for child in _descend(node.nodelist):
            if child.isNodeType(node_types()["macro"]) and child.macroname in ("caption", "captionof"):
                caption = caption or squash(l2tobj.nodelist_to_text([arg(child, -1)]))
            elif child.isNodeType(node_types()["macro"]) and child.macroname == "label":
                labels.append(raw(arg(child, 0)).strip())
        for child in node.nodelist:
            if child.isNodeType(node_types()["env"]) or child.isNodeType(node_types()["group"]):
                rest.append(child)
        body = l2tobj.nodelist_to_text(rest).strip() if rest else ""
        head = f"[{kind}{' ' + ', '.join(labels) if labels else ''}: {caption or '(no caption)'}]"
        return "\n\n" + head + ("\n" + body if body else "") + "\n\n"

    def tabular(node: Any, l2tobj: Any) -> str:
        rows: list[list[str]] = [[]]
        cell: list[Any] = []
        types = node_types()
        for child in node.nodelist:
            if child.isNodeType(types["specials"]) and child.specials_chars == "&":
                rows[-1].append(squash(l2tobj.nodelist_to_text(cell)))
                cell = []
            elif child.isNodeType(types["macro"]) and child.macroname in ("\\", "tabularnewline"):
                rows[-1].append(squash(l2tobj.nodelist_to_text(cell)))
                rows.append([])
                cell = []
            elif child.isNodeType(types["macro"]) and child.macroname in ("toprule", "midrule", "bottomrule", "hline"):
                continue
            else:
                cell.append(child)
        if cell:
            rows[-1].append(squash(l2tobj.nodelist_to_text(cell)))
        lines = [" | ".join(row) for row in rows if any(row)]
        return "\n" + "\n".join(re.sub(r"^\(\w+\)\S*\s*", "", line) for line in lines) + "\n"

    def verbatim(node: Any, l2tobj: Any) -> str:
        text = getattr(getattr(node, "nodeargd", None), "verbatim_text", None)
        return "\n" + str(text if text is not None else raw(node)).strip("\n") + "\n"

    def display_math(node: Any, l2tobj: Any) -> str:
        return "\n" + str(node.latex_verbatim()) + "\n"

    db: Any = l2t.get_default_latex_context_db()
    macros = [l2t.MacroTextSpec(name, simplify_repl=cite) for name in _CITE_MACROS]
    macros += [l2t.MacroTextSpec(name, simplify_repl=ref) for name in _REF_MACROS]
    macros += [l2t.MacroTextSpec(name, discard=True) for name in SECTION_LEVELS]
    macros += [
        l2t.MacroTextSpec("footnote", simplify_repl=footnote),
        l2t.MacroTextSpec("href", simplify_repl=href),
        l2t.MacroTextSpec("thanks", discard=True),
        l2t.MacroTextSpec("label", discard=True),
        l2t.MacroTextSpec("caption", simplify_repl=text_arg(-1)),
        l2t.MacroTextSpec("includegraphics", discard=True),
        l2t.MacroTextSpec("multicolumn", simplify_repl=text_arg(2)),
        l2t.MacroTextSpec("hyperlink", simplify_repl=text_arg(1)),
        l2t.MacroTextSpec("hypertarget", simplify_repl=text_arg(1)),
        l2t.MacroTextSpec("hyperref", simplify_repl=text_arg(-1)),
        l2t.MacroTextSpec("multirow", simplify_repl=text_arg(-1)),
        l2t.MacroTextSpec("SI", simplify_repl=_si),
        l2t.MacroTextSpec("num", simplify_repl=text_arg(-1)),
        l2t.MacroTextSpec("textcolor", simplify_repl=text_arg(-1)),
        l2t.MacroTextSpec("colorbox", simplify_repl=text_arg(-1)),
        l2t.MacroTextSpec("resizebox", simplify_repl=text_arg(-1)),
        l2t.MacroTextSpec("texttt", simplify_repl=text_arg(-1)),
        l2t.MacroTextSpec("maketitle", discard=True),
        l2t.MacroTextSpec("cline", discard=True),
        l2t.MacroTextSpec("tnote", discard=True),
        l2t.MacroTextSpec("graphicspath", discard=True),
        l2t.MacroTextSpec("bibliography", discard=True),
        l2t.MacroTextSpec("bibliographystyle", discard=True),
        l2t.MacroTextSpec("addbibresource", discard=True),
    ]
    envs = [l2t.EnvironmentTextSpec(name, simplify_repl=float_env) for name in _FLOAT_KINDS]
    envs += [l2t.EnvironmentTextSpec(name, simplify_repl=tabular) for name in ("tabular", "tabular*", "tabularx")]
    envs += [l2t.EnvironmentTextSpec(name, simplify_repl=display_math) for name in _MATH_ENVS]
    envs += [l2t.EnvironmentTextSpec(name, simplify_repl=verbatim) for name in ("verbatim", "verbatim*", "lstlisting")]
    db.add_context_category("research-mcp", macros=macros, environments=envs, prepend=True)
    return l2t.LatexNodes2Text(latex_context=db, math_mode="verbatim", strict_latex_spaces=False)


def _descend(nodes: Sequence[Any] | None) -> Iterator[Any]:
    types = node_types()
    for node in nodes or []:
        if node is None:
            continue
        yield node
        if node.isNodeType(types["group"]) or node.isNodeType(types["env"]):
            yield from _descend(node.nodelist)
