"""BibTeX from API metadata only: stable readable keys (`vaswani2017attention`), entries written and parsed with
bibtexparser, LaTeX encoded and decoded with pylatexenc, and merged into the workspace's .bib by appending, so
the user's own entries stay byte for byte as they were."""

from __future__ import annotations

import functools
import importlib
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field

from research_mcp.errors import BadInputError, FileToolError
from research_mcp.fileio import atomic_write
from research_mcp.model import ToolModel
from research_mcp.tools.literature.ids import normalize_doi
from research_mcp.tools.literature.merge import normalize_title, surname
from research_mcp.tools.literature.models import Paper

__all__ = [
    "BibEntry",
    "CiteResult",
    "bibtex_entry",
    "citation_key",
    "decode_latex",
    "entry_fields",
    "parse_bib",
    "plan_citations",
    "write_entries",
]

_STOP = frozenset(
    "a an the on of for in to and with by from at as is are via towards toward into using its what how why".split()
)


class CiteResult(ToolModel):
    keys: list[str] = Field(description="The key of each paper, in the order asked: use them in \\cite{...}.")
    added: list[str] = Field(description="Keys of the entries appended to the .bib.")
    already_present: list[str] = Field(description="Keys of papers the .bib already had (reused as they are).")
    bib_path: str
    bibtex: str = Field(description="The entries appended, as written.")


class BibEntry(ToolModel):
    key: str
    entry_type: str
    fields: dict[str, str]


@functools.cache
def _latex_to_text() -> Any:
    return importlib.import_module("pylatexenc.latex2text").LatexNodes2Text(math_mode="verbatim")


@functools.cache
def _encoder() -> Any:
    module: Any = importlib.import_module("pylatexenc.latexencode")
    return module.UnicodeToLatexEncoder(unknown_char_policy="keep", replacement_latex_protection="braces-all")


def decode_latex(text: str) -> str:
    """Plain Unicode text from a BibTeX value: `{\\"u}` -> ü, `{BERT}` -> BERT, `Transformer{s}` -> Transformers."""
    try:
        return str(_latex_to_text().latex_to_text(text))
    except Exception:  # noqa: BLE001  # pylatexenc gives up on some broken input: compare the raw text instead
        return text.replace("{", "").replace("}", "")


@functools.cache
def _encode_char(char: str) -> str:
    encoded = str(_encoder().unicode_to_latex(char))
    return encoded if decode_latex(encoded) == char else char  # a lossy macro (ħ -> \hbar): keep the character


def _encode(text: str) -> str:
    """LaTeX for a BibTeX value: specials escaped, accents as macros where that reads back the same."""
    return "".join(c if c.isascii() and c.isalnum() or c == " " else _encode_char(c) for c in text)


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", decode_latex(text))
    return re.sub(r"[^a-z0-9]", "", "".join(c for c in text if not unicodedata.combining(c)).lower())


def citation_key(paper: Paper) -> str:
    """`<first author's surname><year><first significant title word>`, lower-case ASCII: vaswani2017attention."""
    name = _ascii(surname(paper.authors[0])) if paper.authors else ""
    words = [w for w in (_ascii(w) for w in decode_latex(paper.title).split()) if w and w not in _STOP]
    word = words[0] if words else ""
    return f"{name or 'anon'}{paper.year or ''}{word}" or "paper"


def _protect(title: str) -> str:
    """Encode a title for BibTeX and brace words whose capitals must survive a bibliography style (BERT, GANs)."""
    encoded = _encode(title)
    return re.sub(r"(?<![\\{\w])([A-Za-z]*[A-Z][A-Za-z]*[A-Z0-9][A-Za-z0-9]*)", r"{\1}", encoded)


def entry_fields(paper: Paper) -> tuple[str, dict[str, str]]:
    """The entry type and fields for a paper, from its metadata only."""
    fields: dict[str, str] = {
        "title": _protect(paper.title),
        "author": " and ".join(_encode(a) for a in paper.authors) or "Anonymous",
    }
    if paper.year:
        fields["year"] = str(paper.year)
    types = set(paper.publication_types)
    venue = paper.journal or paper.venue
    arxiv_venue = venue is not None and venue.strip().lower() in ("arxiv", "arxiv.org")
    if venue and not arxiv_venue and ("Conference" in types or (paper.venue and not paper.journal)):
        kind = "inproceedings"
        fields["booktitle"] = _encode(paper.venue or venue)
    elif venue and not arxiv_venue:
        kind = "article"
        fields["journal"] = _encode(venue)
        if paper.volume:
            fields["volume"] = _encode(paper.volume)
    else:
        kind = "misc"
    if paper.pages and kind != "misc":
        fields["pages"] = _encode(paper.pages.replace(" ", "").replace("-", "--"))
    if paper.doi and not paper.doi.startswith("10.48550/"):
        fields["doi"] = paper.doi
    if paper.arxiv_id:
        fields["eprint"] = paper.arxiv_id
        fields["archiveprefix"] = "arXiv"
        if paper.categories:
            fields["primaryclass"] = paper.categories[0]
        fields["url"] = f"https://arxiv.org/abs/{paper.arxiv_id}"
    elif paper.url:
        fields["url"] = paper.url
    return kind, fields


def bibtex_entry(paper: Paper, key: str) -> BibEntry:
    kind, fields = entry_fields(paper)
    return BibEntry(key=key, entry_type=kind, fields=fields)


def write_entries(entries: Iterable[BibEntry]) -> str:
    """BibTeX text for these entries, written by bibtexparser."""
    from bibtexparser.entrypoint import write_string  # pyright: ignore[reportUnknownVariableType]
    from bibtexparser.library import Library
    from bibtexparser.model import Entry
    from bibtexparser.model import Field as BibField

    library = Library()
    for entry in entries:
        fields = [BibField(name, value) for name, value in entry.fields.items()]
        library.add(Entry(entry.entry_type, entry.key, fields))
    return write_string(library)


def parse_bib(text: str) -> tuple[list[BibEntry], list[str]]:
    """The entries of a .bib (values as written, braces kept) and the problems of the blocks that failed."""
    from bibtexparser.entrypoint import parse_string

    library = parse_string(text)
    entries = [
        BibEntry(
            key=entry.key,
            entry_type=entry.entry_type.lower(),
            fields={f.key.lower(): _strip_enclosing(str(f.value)) for f in entry.fields},
        )
        for entry in library.entries
    ]
    problems = [str(getattr(block, "error", "")) or type(block).__name__ for block in library.failed_blocks]
    return entries, problems


def _strip_enclosing(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and ((value[0] == "{" and value[-1] == "}") or (value[0] == '"' and value[-1] == '"')):
        inner = value[1:-1]
        depth = 0
        for char in inner:  # only strip when the outer pair really encloses the whole value
            depth += {"{": 1, "}": -1}.get(char, 0)
            if depth < 0:
                return value
        return inner
    return value


_ARXIV_IN_TEXT = re.compile(
    r"(?:arxiv[:\s/]*|arxiv\.org/(?:abs|pdf)/)(\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})", re.I
)


def entry_ids(entry: BibEntry) -> dict[str, str]:
    """What identifies an entry: its DOI, its arXiv id (eprint, journal 'arXiv preprint arXiv:...', URL), its title."""
    ids: dict[str, str] = {}
    doi = entry.fields.get("doi")
    if doi:
        found = re.search(r"10\.\d{4,9}/\S+", doi)
        if found:
            ids["doi"] = normalize_doi(found.group(0))
    eprint = entry.fields.get("eprint", "")
    prefix = entry.fields.get("archiveprefix", entry.fields.get("eprinttype", "arxiv")).lower()
    if eprint and prefix == "arxiv":
        ids["arxiv"] = re.sub(r"^arxiv:", "", eprint.strip(), flags=re.I)
    else:
        for name in ("journal", "url", "note", "howpublished", "booktitle"):
            found = _ARXIV_IN_TEXT.search(entry.fields.get(name, ""))
            if found:
                ids["arxiv"] = found.group(1)
                break
    if ids.get("doi", "").startswith("10.48550/arxiv."):
        ids["arxiv"] = ids.pop("doi").split("arxiv.", 1)[1]
    title = entry.fields.get("title")
    if title:
        ids["title"] = normalize_title(decode_latex(title))
    return ids


def plan_citations(existing_text: str, papers: list[Paper]) -> tuple[list[str], list[BibEntry], list[str]]:
    """For each paper: the key to cite, reusing an existing entry with the same DOI, arXiv id or title, else a
    new stable key (suffixed b, c ... on a clash). Returns the keys, the new entries and the reused keys."""
    entries, _ = parse_bib(existing_text) if existing_text.strip() else ([], [])
    taken = {e.key for e in entries}
    known: dict[str, str] = {}
    for entry in entries:
        for kind, value in entry_ids(entry).items():
            known.setdefault(f"{kind}:{value.lower()}", entry.key)
    keys: list[str] = []
    new: list[BibEntry] = []
    reused: list[str] = []
    for paper in papers:
        probes = [f"title:{normalize_title(paper.title)}"]
        if paper.doi:
            probes.insert(0, f"doi:{paper.doi.lower()}")
        if paper.arxiv_id:
            probes.insert(0, f"arxiv:{paper.arxiv_id.lower()}")
        hit = next((known[p] for p in probes if p in known), None)
        if hit is not None:
            keys.append(hit)
            if hit not in reused and hit not in [e.key for e in new]:
                reused.append(hit)
            continue
        base = citation_key(paper)
        key, suffix = base, ord("b")
        while key in taken:
            key, suffix = f"{base}{chr(suffix)}", suffix + 1
        taken.add(key)
        entry = bibtex_entry(paper, key)
        new.append(entry)
        keys.append(key)
        for probe in probes:
            known.setdefault(probe, key)
    return keys, new, reused


def append_to_bib(path: Path, existing_text: str, addition: str) -> None:
    """Write the .bib atomically: the user's text unchanged, then the new entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    joined = existing_text
    if joined and not joined.endswith("\n"):
        joined += "\n"
    if joined:
        joined += "\n"
    try:
        atomic_write(path, (joined + addition).encode("utf-8"))
    except OSError as exc:
        raise FileToolError(f"Cannot write {path.name}: {exc}") from exc


def read_bib(path: Path, max_bytes: int) -> str:
    if not path.exists():
        return ""
    if path.is_dir():
        raise BadInputError(f"{path.name!r} is a folder; bib_path must name a .bib file.")
    if path.stat().st_size > max_bytes:
        raise BadInputError(f"{path.name!r} is larger than {max_bytes} bytes; not read.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path.name!r} is not UTF-8 text ({exc}); convert it to UTF-8 first.") from exc
