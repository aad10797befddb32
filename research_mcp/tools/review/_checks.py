"""The audit's checks on the source: which numbers are results, structure, claims, hygiene, placeholder code."""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from research_mcp.latex.models import LatexDocument, NumberUse
from research_mcp.tools.review._models import Finding, FindingKind, Severity

__all__ = [
    "PaperSource",
    "claim_findings",
    "has_test_in_text",
    "hygiene_findings",
    "is_result",
    "placeholder_code",
    "structure_findings",
]

_COMMENT = re.compile(r"(?<!\\)%.*")
_CITE = re.compile(r"\\[A-Za-z]*cite[A-Za-z]*\*?\s*(?:\[[^\]]*\]\s*){0,2}\{[^}]*\}")
_REFERENCE_WORD = re.compile(
    r"(?<![A-Za-z])(?:Sections?|Sec\.|§|Eqs?\.|Equations?|Figures?|Figs?\.|Tables?|Tab\.|Appendix|App\.|"
    r"Algorithms?|Alg\.|Lines?|"
    r"Theorems?|Lemmas?|Corollary|Propositions?|Definitions?|Steps?|Chapters?|Pages?|pp?\.|Stage|Phase|Part|"
    r"Assumptions?|Examples?|Remarks?)\s*~?\s*\(?\s*$",
    re.IGNORECASE,
)
_LEVEL = re.compile(
    r"^\s*(?:\\?%)?\s*(?:CIs?\b|confidence|credible|prediction interval|(?:shaded\s+)?bands?\b)", re.IGNORECASE
)
_VERBAL = re.compile(r"\\(?:texttt|url|nolinkurl|path|href|detokenize)\s*\{[^{}]*\}|\\verb\*?([^\sA-Za-z*]).*?\1")
"""Identifiers and addresses set as code (a run id in \\texttt, a URL): their digits are no result."""
_LAYOUT_UNIT = re.compile(r"^(?:pt|cm|mm|in|em|ex|bp)\b|^\s*\\(?:text|line|column|paper)(?:width|height)\b")
_CLAIM = re.compile(
    r"\b(?:statistically\s+)?significant(?:ly)?\b|\boutperform(?:s|ed|ing)?\b|\bstate[- ]of[- ]the[- ]art\b|"
    r"\bSOTA\b|\bbetter\s+than\b|\b(?:with|of|reach(?:es|ed)?|achieves?)\s+statistical\s+significance\b|"
    r"\bbeat(?:s|ing)?\s+(?:the\s+|all\s+|every\s+|both\s+)?(?:baselines?|prior|previous|existing|competing)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z\\(])")
_TEST_TEXT = re.compile(
    r"t-test|\bt test|Welch|Wilcoxon|Mann[- ]Whitney|p-value|\$?\bp\s*(?:<|=|\\le|\\leq)\s*0?\.\d|confidence interval|"
    r"bootstrap|Holm|Bonferroni|permutation test|significance test|ANOVA|\bCI\b",
    re.IGNORECASE,
)
_PLACEHOLDERS = (
    (re.compile(r"\bTODO\b|\bTBD\b|\bTBA\b|\bFIXME\b|\\todo\b|\\lipsum\b"), "a to-do marker"),
    (re.compile(r"\bXX+(?:\.X+)?\b\s*(?:\\%)?"), "an XX placeholder number"),
    (re.compile(r"\?\?"), "'??' (a missing value or reference)"),
    (re.compile(r"lorem\s+ipsum", re.IGNORECASE), "lorem ipsum filler"),
    (re.compile(r"\[\s*citation\s+needed\s*\]", re.IGNORECASE), "'[citation needed]'"),
    (
        re.compile(
            r"[\[<]\s*(?:insert|to\s+be\s+(?:added|written|filled\s+in|completed|determined))\b[^\]>]{0,80}[\]>]|"
            r"[\[<]\s*(?:add|fill\s+in|put|write)\b[^\]>]{0,80}(?:\bhere\b|\.\.\.|…)[^\]>]{0,20}[\]>]",
            re.IGNORECASE,
        ),
        "an instruction left in brackets",
    ),
)
_VERBATIM = frozenset({"verbatim", "verbatim*", "Verbatim", "lstlisting", "minted", "comment", "alltt"})
_DEFINED_VERBATIM = re.compile(r"\\(?:lstnewenvironment|DefineVerbatimEnvironment)\s*\{([A-Za-z*]+)\}")
_BEGIN = re.compile(r"\\begin\s*\{([A-Za-z*]+)\}")
_CODE_TODO = re.compile(r"\b(?:TODO|FIXME|XXX|TBD)\b")
_CODE_PLACEHOLDER = re.compile(r"\b(?:TODO|FIXME|XXX|TBD)\b|(?i:\bplaceholder\b|\bhard-?coded\s+for\s+now\b)")
"""In a comment: `# placeholder loss until ...` says the code is not finished as plainly as `# TODO`."""
_HASH_COMMENT = (".py", ".sh", ".bash", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".r", ".jl", ".pl", ".rb")
_SLASH_COMMENT = (".c", ".cc", ".cpp", ".h", ".hpp", ".cu", ".js", ".ts", ".java", ".go", ".rs", ".scala", ".swift")
_CODE_SUFFIXES = (*_HASH_COMMENT, *_SLASH_COMMENT, ".txt", ".md", ".json", ".lua", ".m", ".sql")
_GRAPHIC_EXTS = ("", ".pdf", ".png", ".jpg", ".jpeg", ".eps", ".svg")
_MAX_CODE_FILES = 2000
_MAX_CODE_BYTES = 1 << 20


def finding(
    kind: FindingKind, code: str, severity: Severity, file: str | None, line: int | None, evidence: str, fix: str
) -> Finding:
    return Finding(kind=kind, code=code, severity=severity, file=file, line=line, evidence=evidence, fix=fix)


class PaperSource:
    """The paper's source files line by line (comments dropped), which lines are body, and workspace paths."""

    def __init__(self, root: Path, doc: LatexDocument, rel: Callable[[Path], str]) -> None:
        self.root = root
        self.doc = doc
        self._rel = rel
        self.lines: dict[str, list[str]] = {}
        self.skipped: dict[str, set[int]] = {}
        for name in doc.files:
            try:
                text = (root / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self.lines[name] = [_COMMENT.sub("", line) for line in text.splitlines()]
        main = self.lines.get(self.main, [])
        begin = next((i for i, line in enumerate(main) if re.search(r"\\begin\s*\{document\}", line)), -1)
        head = "\n".join(main[: begin + 1])
        unread = {"thebibliography", *_VERBATIM, *_DEFINED_VERBATIM.findall(head)}
        for name, lines in self.lines.items():
            skip: set[int] = set(range(1, begin + 2)) if name == self.main else set()  # preamble, \begin{document}
            inside: str | None = None
            for number, line in enumerate(lines, 1):
                opened = _BEGIN.search(line) if inside is None else None
                if opened is not None and opened.group(1) in unread:
                    inside = opened.group(1)
                if inside is not None:
                    skip.add(number)
                    if f"\\end{{{inside}}}" in line[opened.end() if opened else 0 :]:
                        inside = None
            self.skipped[name] = skip
        preamble = "\n".join(self.lines.get(self.main, [])[: max(self.skipped.get(self.main, {1}))])
        found = re.search(r"\\graphicspath\s*\{((?:\s*\{[^{}]*\})*)\s*\}", preamble)
        self.graphics_dirs = [""] + (re.findall(r"\{([^{}]*)\}", found.group(1)) if found else [])

    def rel(self, file: str | Path) -> str:
        return self._rel(self.root / file)

    def read(self, file: str, line: int) -> bool:
        """Whether LaTeX reads that line as the paper's body (not the preamble, a listing or the bibliography)."""
        return line not in self.skipped.get(file, set())

    def line(self, file: str, line: int) -> str:
        lines = self.lines.get(file, [])
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def body(self) -> Iterator[tuple[str, int, str]]:
        for name, lines in self.lines.items():
            for number, text in enumerate(lines, 1):
                if number not in self.skipped[name] and text.strip():
                    yield name, number, text

    @property
    def main(self) -> str:
        return self.doc.files[0] if self.doc.files else ""


def is_result(number: NumberUse, src: PaperSource) -> bool:
    """Whether a number could be a result: not a year, a section / figure / equation number, a count up to ten, a
    constant of a formula, a confidence level (95% CI), a length, part of a name (ResNet-50), quoted beside a
    citation, or in the preamble or the bibliography."""
    text = number.text.rstrip("%")
    percent = number.text.endswith("%")
    integer = "." not in text and "e" not in text.lower()
    if number.line in src.skipped.get(number.file, set()):
        return False
    if integer and not percent:
        if 1900 <= number.value <= 2100 or abs(number.value) <= 10 or number.in_math:
            return False
    raw = src.line(number.file, number.line)
    spots = [m.start() for m in re.finditer(re.escape(text), raw)] or [-1]
    cites = [(m.start(), m.end()) for m in _CITE.finditer(raw)]
    verbal = [(m.start(), m.end()) for m in _VERBAL.finditer(raw)]
    outside = False
    for spot in spots:
        if spot < 0:
            return True  # written across lines or by a macro: judged a result
        if any(start < spot < end for start, end in verbal):
            continue
        outside = True
        before, after = raw[:spot], raw[spot + len(text) :]
        if (
            _REFERENCE_WORD.search(before)
            or _LAYOUT_UNIT.match(after)
            or _LEVEL.match(after)
            or re.search(r"[A-Za-z]-$", before)
        ):
            return False
        if "&" in raw and cites:
            return False  # a table row quoting another work
        if any(start - 30 <= spot + len(text) and spot <= end + 30 for start, end in cites):
            return False
    return outside  # not when every place it is written is inside code (\texttt, \url)


def structure_findings(src: PaperSource) -> list[Finding]:
    doc = src.doc
    found: list[Finding] = []
    labels = {k.key for k in doc.labels if src.read(k.file, k.line)}
    for ref in [r for r in doc.refs if r.key not in labels and src.read(r.file, r.line)]:
        found.append(  # noqa: PERF401
            finding(
                "structure",
                "undefined_ref",
                "blocking",
                src.rel(ref.file),
                ref.line,
                f"\\ref{{{ref.key}}} names no \\label (prints '??').",
                f"Add \\label{{{ref.key}}} to what it refers to, or fix the key.",
            )
        )
    places: dict[str, list[tuple[str, int]]] = {}
    for file, line, text in src.body():
        for match in re.finditer(r"\\label\s*\{([^}]*)\}", text):
            places.setdefault(match.group(1).strip(), []).append((file, line))
    for label in doc.labels:
        where = places.get(label.key, [])
        count = len(where) if where else label.uses if src.read(label.file, label.line) else 0
        if count > 1:
            file, line = where[1] if len(where) > 1 else (label.file, label.line)
            shown = ", ".join(f"{src.rel(f)}:{n}" for f, n in where) or "once more by a macro"
            found.append(
                finding(
                    "structure",
                    "duplicate_label",
                    "warning",
                    src.rel(file),
                    line,
                    f"\\label{{{label.key}}} is defined {count} times ({shown}).",
                    "Give each label a unique key; references go to the last one.",
                )
            )
    refs = {r.key for r in doc.refs if src.read(r.file, r.line)}
    for flt in [f for f in doc.floats if src.read(f.file, f.line)]:
        for graphic in [g for g in flt.graphics if not _graphic_exists(src, g)]:
            found.append(  # noqa: PERF401
                finding(
                    "structure",
                    "missing_figure",
                    "blocking",
                    src.rel(flt.file),
                    flt.line,
                    f"\\includegraphics{{{graphic}}}: no such file under {src.rel(src.root) or '.'}.",
                    "Make the figure (plot_metrics writes paper/figures/) or fix the path.",
                )
            )
        if flt.kind in ("figure", "table") and not refs & set(flt.labels):
            what = f"labelled {', '.join(flt.labels)}" if flt.labels else "with no \\label"
            found.append(
                finding(
                    "structure",
                    "unreferenced_float",
                    "warning",
                    src.rel(flt.file),
                    flt.line,
                    f"The {flt.kind} {what} is never referenced in the text.",
                    f"Refer to it (\\ref{{{flt.labels[0] if flt.labels else '...'}}}) where the text "
                    "discusses it, or remove it.",
                )
            )
    return found


def _graphic_exists(src: PaperSource, graphic: str) -> bool:
    for folder in src.graphics_dirs:
        base = (src.root / folder).resolve()
        if any((base / (graphic + ext)).is_file() for ext in _GRAPHIC_EXTS):
            return True
    return False


def has_test_in_text(src: PaperSource) -> bool:
    return any(_TEST_TEXT.search(text) for _, _, text in src.body())


def _one_seed_in_claim(text: str, spans: list[tuple[int, int]], numbers: list[str]) -> list[str]:
    """The numbers from one-run configurations written in the same sentence as a claim."""
    found: list[str] = []
    start = 0
    for end in [m.start() for m in _SENTENCE_END.finditer(text)] + [len(text)]:
        if any(start <= a < end for a, _ in spans):
            sentence = text[start:end]
            found += [n for n in numbers if re.search(rf"(?<![\d.]){re.escape(n.rstrip('%'))}(?!\d)", sentence)]
        start = end
    return list(dict.fromkeys(found))


def claim_findings(
    src: PaperSource, tested: bool, seeds: int | None, one_seed: dict[tuple[str, int], list[str]] | None = None
) -> list[Finding]:
    """Claims of superiority or significance: one seed behind the numbers (all of them, or the numbers the claim's
    sentence quotes: `one_seed`, per file and line), or no statistical test anywhere."""
    one_seed = one_seed or {}
    if tested and (seeds is None or seeds > 1) and not one_seed:
        return []
    found: list[Finding] = []
    for file, line, text in src.body():
        cites = [(m.start(), m.end()) for m in _CITE.finditer(text)]
        matches = [m for m in _CLAIM.finditer(text) if not any(a <= m.start() <= b for a, b in cites)]
        if not matches:
            continue
        claims = [m.group(0) for m in matches]
        said = ", ".join(f"'{c}'" for c in dict.fromkeys(claims))
        quoted = _one_seed_in_claim(text, [m.span() for m in matches], one_seed.get((file, line), []))
        if seeds == 1 or quoted:
            why = (
                "the numbers behind the paper come from one run per configuration"
                if seeds == 1
                else f"{', '.join(quoted)} come{'s' if len(quoted) == 1 else ''} from a configuration with one run"
            )
            found.append(
                finding(
                    "claims",
                    "one_seed_claim",
                    "blocking",
                    src.rel(file),
                    line,
                    f"{said}, but {why}.",
                    "Run 3-5 seeds per configuration and compare them with compare_runs, or drop the claim.",
                )
            )
        elif tested and (seeds is None or seeds > 1):
            continue
        else:
            found.append(
                finding(
                    "claims",
                    "untested_claim",
                    "warning",
                    src.rel(file),
                    line,
                    f"{said} with no statistical test in the paper or behind its numbers.",
                    "Compare the runs with compare_runs (Welch t-test, Holm) and report its p-value and interval, "
                    "or soften the claim.",
                )
            )
    return found


def hygiene_findings(src: PaperSource, page_limit: int | None, pages: int | None, pdf: str | None) -> list[Finding]:
    found: list[Finding] = []
    main = src.rel(src.main)
    titled = any("limitation" in s.title.lower() for s in src.doc.outline)
    if not titled and not any(
        re.search(r"\\(?:paragraph|textbf|emph|textit)\*?\{\s*Limitations?", t) for _, _, t in src.body()
    ):
        end = next((n for n, t in enumerate(src.lines.get(src.main, []), 1) if "\\end{document}" in t), None)
        last = src.doc.outline[-1] if src.doc.outline else None
        found.append(
            finding(
                "hygiene",
                "no_limitations",
                "warning",
                main if end or not last else src.rel(last.file),
                end or (last.line if last else 1),
                "The paper has no limitations section.",
                "Add a Limitations section: what the results do not show, where the method fails, what was not tried.",
            )
        )
    if page_limit is not None and pages is not None and pages > page_limit:
        found.append(
            finding(
                "hygiene",
                "page_limit",
                "blocking",
                main,
                1,
                f"{pdf} has {pages} pages; the limit is {page_limit}.",
                "Cut text or move material to an appendix, then compile again.",
            )
        )
    for file, line, text in src.body():
        for pattern, what in _PLACEHOLDERS:
            match = pattern.search(text)
            if match:
                found.append(
                    finding(
                        "hygiene",
                        "placeholder_text",
                        "blocking",
                        src.rel(file),
                        line,
                        f"Placeholder text: {what} ('{match.group(0).strip()}').",
                        "Replace it with the real text, number or reference.",
                    )
                )
                break
    return found


def _is_stub(body: list[ast.stmt]) -> bool:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:] if isinstance(body[0].value.value, str) else body
    return len(body) == 1 and (
        isinstance(body[0], ast.Pass)
        or isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and body[0].value.value is ...
    )


def _excused(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    names = {
        d.id if isinstance(d, ast.Name) else d.attr if isinstance(d, ast.Attribute) else "" for d in node.decorator_list
    }
    return bool(names & {"abstractmethod", "overload", "abstractproperty"})


def _name_of(node: ast.expr) -> str:
    if isinstance(node, ast.Subscript):  # Protocol[T], Generic[T]
        node = node.value
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _interfaces(tree: ast.Module) -> set[int]:
    """The functions that declare an interface rather than leave work undone: abstract methods and overloads,
    methods of a Protocol, and methods of a class that a subclass in the same file overrides (a default hook)."""
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    overridden: set[tuple[str, str]] = set()
    for cls in classes:
        methods = [f.name for f in cls.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
        overridden |= {(_name_of(base), name) for base in cls.bases for name in methods}
    found = {id(n) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and _excused(n)}
    for cls in classes:
        protocol = any(_name_of(base) == "Protocol" for base in cls.bases)
        found |= {
            id(f)
            for f in cls.body
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and (protocol or (cls.name, f.name) in overridden)
        }
    return found


def _python_problems(text: str) -> list[tuple[int, str]]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    interfaces = _interfaces(tree)
    problems: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or id(node) in interfaces:
            continue
        if _is_stub(node.body):
            problems.append((node.lineno, f"function {node.name}() has only a placeholder body (pass / ...)"))
            continue
        for statement in node.body:  # unconditional: a raise under if/else turns away input it does not support
            exc = statement.exc if isinstance(statement, ast.Raise) else None
            target = exc.func if isinstance(exc, ast.Call) else exc
            if target is not None and _name_of(target) == "NotImplementedError":
                problems.append((statement.lineno, f"{node.name}() raises NotImplementedError"))
    import io
    import tokenize

    try:
        problems += [
            (token.start[0], f"to-do comment: {token.string.strip()[:80]}")
            for token in tokenize.generate_tokens(io.StringIO(text).readline)
            if token.type == tokenize.COMMENT and _CODE_PLACEHOLDER.search(token.string)
        ]
    except (tokenize.TokenError, SyntaxError):
        pass  # a file ast could parse but tokenize not: its comments are left unread
    return sorted(problems)


def _comment_of(line: str, suffix: str) -> str:
    """The comment a line of code ends with (after `#` or `//`, by the file's kind), else ''."""
    marker = "#" if suffix in _HASH_COMMENT else "//" if suffix in _SLASH_COMMENT else None
    if marker is None or marker not in line:
        return ""
    return line[line.index(marker) + len(marker) :]


def placeholder_code(code_dirs: list[tuple[str, Path]], rel: Callable[[Path], str]) -> list[Finding]:
    """Placeholders in the code snapshots of the runs behind the paper's numbers; a file shared by several runs is
    reported once, naming how many runs have it."""
    seen: dict[tuple[str, str], list[str]] = {}
    first: dict[tuple[str, str], Path] = {}
    files = 0
    for run_id, folder in code_dirs:
        for path in sorted(folder.rglob("*")):
            if files >= _MAX_CODE_FILES or not path.is_file() or path.is_symlink():
                continue
            if path.suffix.lower() not in _CODE_SUFFIXES:
                continue
            try:
                data = path.read_bytes()[:_MAX_CODE_BYTES]
            except OSError:
                continue
            files += 1
            key = (path.relative_to(folder).as_posix(), hashlib.blake2b(data, digest_size=8).hexdigest())
            seen.setdefault(key, []).append(run_id)
            first.setdefault(key, path)
    found: list[Finding] = []
    for key, runs in seen.items():
        path = first[key]
        text = path.read_bytes()[:_MAX_CODE_BYTES].decode("utf-8", errors="replace")
        if path.suffix == ".py":
            problems = _python_problems(text)
        else:
            problems = [
                (n, f"to-do marker: {t.strip()[:80]}")
                for n, t in enumerate(text.splitlines(), 1)
                if _CODE_TODO.search(t) or _CODE_PLACEHOLDER.search(_comment_of(t, path.suffix.lower()))
            ]
        shared = f" (the same file in {len(runs)} runs)" if len(runs) > 1 else ""
        found += [
            finding(
                "hygiene",
                "placeholder_code",
                "warning",
                rel(path),
                line,
                f"Run {runs[0]}'s code {what}{shared}; the paper's numbers come from it.",
                "Finish the code, run it again, and regenerate the numbers from the new runs.",
            )
            for line, what in problems
        ]
    return found
