"""Anonymise a paper's text before a reviewer reads it: what tells the camera-ready from the submission goes.

Pure code (regular expressions only), used by `review_paper` and by the review bench (`evals/review_bench`), so the
texts a reviewer sees and the texts the bench measures are cleaned by the same function.

API (stable):

    anonymise(text: str, *, minimal: bool = False) -> str
        The text without: the author block between the title and the abstract (the title is kept), any author
        blocks a PDF conversion placed after the abstract heading, the "Anonymous authors" and "Paper under
        double-blind review" lines, the "Published as / Under review as a conference paper at ..." lines (page
        headers included), the acknowledgements section up to the next heading or the references, URLs
        (github.com, 4open.science and any other link) and e-mail addresses. Unless `minimal`, also first-page
        author footnotes (equal contribution, corresponding author, work done at ...) and every sentence that
        mentions anonym*, "upon acceptance", "camera-ready", "double-blind" or "redacted".

It reads both kinds of text the package meets: the markdown-like text of a converted PDF (title as '#' lines or
plain lines, ABSTRACT and section headings as upper-case lines) and the text of `research_mcp.latex.text`
(`read_latex(...).text`: headings as '#' lines, the title held apart, links as `<url>`).
"""

from __future__ import annotations

import re

__all__ = ["anonymise"]

_FLAGS = re.IGNORECASE | re.MULTILINE

_VERSION_LINE = re.compile(
    r"(?:Published as|Under review as)\s+a\s+(?:conference|workshop)\s+paper\s+at\s+[A-Z]+\s*(?:\d{4})?[ \t]*", _FLAGS
)
_ANONYMOUS_LINE = re.compile(
    r"^[\s*_#]*(?:Anonymous\s+authors?|Paper\s+under\s+double[- ]blind\s+review)[\s*_.]*$\n?", _FLAGS
)
_FRONT_LINES = 150
"""How far down an abstract heading may sit: farther, it is not the front page's (an appendix, say)."""
_BOLD_LINE = re.compile(r"^\s*\*\*[^*\n]{1,200}\*\*\s*$")
_FENCE = re.compile(r"^\s*```")
_EMAIL = re.compile(r"(?:\{[^{}\n]{0,300}\}|(?<![\w.+\-])[\w.+\-]+)[ \t]?@[ \t]?[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_URL = re.compile(
    r"<?(?:https?://|ftp://|www\.)[^\s<>]+>?"  # any link, with the angle brackets read_latex writes
    r"|(?<!\S)\S*?(?:github\.(?:com|io)|4open\.science|gitlab\.com|bitbucket\.org)\S*",
    re.IGNORECASE,
)
_FOOTNOTE = re.compile(
    r"equal\s+contributions?|contributed\s+equally|corresponding\s+authors?|correspondence\s+to"
    r"|work\s+(?:was\s+)?(?:done|performed)\s+(?:at|while|during)",
    re.IGNORECASE,
)
_SENSITIVE = re.compile(r"anonym\w*|upon\s+acceptance|camera[- \t]*ready|double[- \t]*blind|redacted", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n[ \t]*\n")
_ACK = re.compile(r"acknowledge?ments?|acknowledgments?", re.IGNORECASE)
_REFERENCES = re.compile(
    r"^[\s#*_]*(?:(?:[A-Z]|\d+)(?:\.\d+)*\.?\s+)?(?:references|bibliography)[\s*_.]*$", re.IGNORECASE
)


def anonymise(text: str, *, minimal: bool = False) -> str:
    """The text with its version markers removed (see the module docstring)."""
    text = text.replace("\x00", "").replace("\r\n", "\n")
    text = _VERSION_LINE.sub("", text)
    lines = _drop_front_matter(text.split("\n"))
    lines = _drop_acknowledgements(lines)
    text = "\n".join(lines)
    text = _ANONYMOUS_LINE.sub("", text)
    text = _EMAIL.sub("", text)
    text = _URL.sub("", text)
    if not minimal:
        text = _drop_footnotes(text)
        text = _drop_sentences(text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _letters(line: str) -> str:
    return re.sub(r"[^a-z]", "", line.lower())


def _is_abstract_heading(line: str) -> bool:
    return _letters(line) == "abstract" and len(line.strip()) < 40


def _is_upper(line: str) -> bool:
    letters = re.sub(r"[^A-Za-z]", "", line)
    return len(letters) >= 3 and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


def _is_heading(line: str) -> bool:
    """A section heading: a '#' line, a short upper-case line, a whole-line bold phrase, or References."""
    stripped = line.strip()
    if not stripped or len(stripped) > 120:
        return False
    if stripped.startswith("#") or _REFERENCES.match(stripped) or _BOLD_LINE.match(stripped):
        return True
    return _is_upper(stripped) and not stripped.endswith((".", ","))


def _title_end(lines: list[str], abstract: int) -> int:
    """Index just past the title: leading '#' lines, else leading upper-case lines, else up to two plain lines."""
    i = 0
    while i < abstract and not lines[i].strip():
        i += 1
    if i < abstract and lines[i].lstrip().startswith("#"):
        end = i
        while i < abstract and (lines[i].lstrip().startswith("#") or not lines[i].strip()):
            if lines[i].strip():
                end = i + 1
            i += 1
        return end
    if i < abstract and _is_upper(lines[i]) and "@" not in lines[i]:
        while i < abstract and _is_upper(lines[i]) and "@" not in lines[i]:
            i += 1
        return i
    end = i
    while end < min(abstract, i + 2):
        line = lines[end]
        if not line.strip() or _BOLD_LINE.match(line) or "@" in line or _ANONYMOUS_LINE.match(line + "\n"):
            break
        end += 1
    return end


def _drop_front_matter(lines: list[str]) -> list[str]:
    """Keep the title, drop what lies between it and the abstract heading, and author blocks just after it."""
    abstract = next((i for i, line in enumerate(lines[:_FRONT_LINES]) if _is_abstract_heading(line)), None)
    if abstract is None:  # no abstract heading near the top: drop only author-like lines there
        head = [line for line in lines[:60] if not (_BOLD_LINE.match(line) and len(line) < 100) and "@" not in line]
        return head + lines[60:]
    title_end = _title_end(lines, abstract)
    kept = lines[:title_end] + [""] + lines[abstract : abstract + 1]
    i = abstract + 1
    # author blocks after the heading: paragraphs led by a short bold line (a name) or a fenced e-mail, up to the
    # first paragraph that is not one (the abstract itself)
    while i < len(lines):
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        k = j
        in_fence = False
        while k < len(lines) and (lines[k].strip() or in_fence):
            if _FENCE.match(lines[k]):
                in_fence = not in_fence
            k += 1
        paragraph = lines[j:k]
        led_by_name = bool(paragraph) and (
            (_BOLD_LINE.match(paragraph[0]) is not None and len(paragraph[0].strip()) < 60)
            or _FENCE.match(paragraph[0]) is not None
        )
        if not (led_by_name and len(paragraph) <= 12 and all(len(line) < 100 for line in paragraph)):
            break
        i = k
    return kept + lines[i:]


def _ack_start(line: str) -> bool:
    stripped = line.strip()
    head = re.sub(r"^[#\s*_]*(?:(?:[A-Z]|\d+)(?:\.\d+)*\.?\s+)?[*_]*", "", stripped)
    if not _ACK.match(head):
        return False
    return len(stripped) < 100 or stripped.startswith(("**", "_")) or stripped.startswith("#")


def _drop_acknowledgements(lines: list[str]) -> list[str]:
    """Drop each acknowledgements section: from its heading to the next heading or the references."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if "cknowledg" not in lines[i].lower() or not _ack_start(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not (_is_heading(lines[j]) and not _ack_start(lines[j])):
            j += 1
        if j - i > 80:  # no heading close by: the section is the paragraph
            j = i + 1
            while j < len(lines) and lines[j].strip():
                j += 1
        i = j
    return out


def _drop_sentences(text: str) -> str:
    """Drop every sentence that mentions anonymity, acceptance or the camera-ready version."""
    spans: list[tuple[int, int]] = []
    for found in _SENSITIVE.finditer(text):
        start = found.start()
        window = text[max(0, start - 600) : start]
        ends = list(_SENTENCE_END.finditer(window))
        left = max(0, start - 600) + ends[-1].end() if ends else max(0, start - 600)
        after = _SENTENCE_END.search(text, found.end(), min(len(text), found.end() + 600))
        right = after.end() if after else min(len(text), found.end() + 600)
        spans.append((left, right))
    if not spans:
        return text
    parts: list[str] = []
    last = 0
    for left, right in sorted(spans):
        if left > last:
            parts.append(text[last:left])
        last = max(last, right)
    parts.append(text[last:])
    return " ".join(part.rstrip(" \t") for part in parts) if len(parts) > 1 else parts[0]


def _drop_footnotes(text: str) -> str:
    """Drop the short lines (author footnotes) saying who contributed equally, corresponds, or where work was done."""
    drop: list[tuple[int, int]] = []
    for found in _FOOTNOTE.finditer(text):
        left = text.rfind("\n", 0, found.start()) + 1
        right = text.find("\n", found.end())
        right = len(text) if right < 0 else right + 1
        if right - left < 320 and (not drop or left >= drop[-1][1]):
            drop.append((left, right))
    if not drop:
        return text
    parts: list[str] = []
    last = 0
    for left, right in drop:
        parts.append(text[last:left])
        last = right
    parts.append(text[last:])
    return "".join(parts)
