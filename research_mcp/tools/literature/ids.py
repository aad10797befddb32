"""Paper identifiers: every form a model may pass (arXiv ids old and new, arXiv URLs, DOIs and doi.org URLs,
Semantic Scholar ids, `CorpusId:N`, an exact title), parsed into one `PaperRef`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from research_mcp.errors import BadInputError

__all__ = [
    "PaperRef",
    "RefKind",
    "arxiv_base",
    "folder_name",
    "normalize_arxiv_id",
    "normalize_doi",
    "parse_paper_id",
]

RefKind = Literal["arxiv", "doi", "s2", "corpus", "title"]

_NEW_ARXIV = r"\d{4}\.\d{4,5}"
_OLD_ARXIV = r"[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7}"
_ARXIV = re.compile(rf"(?:arxiv:\s*)?({_NEW_ARXIV}|{_OLD_ARXIV})(v\d+)?", re.IGNORECASE)
_ARXIV_URL = re.compile(
    rf"https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|e-print|src)/({_NEW_ARXIV}|{_OLD_ARXIV})(v\d+)?(?:\.pdf)?/?",
    re.IGNORECASE,
)
_ARXIV_DOI = re.compile(r"10\.48550/arxiv\.(.+)", re.IGNORECASE)
_DOI = re.compile(r"(?:doi:\s*|https?://(?:dx\.)?doi\.org/)?(10\.\d{4,9}/\S+)", re.IGNORECASE)
_S2 = re.compile(r"(?:https?://(?:www\.)?semanticscholar\.org/paper/(?:[^/]+/)?)?([0-9a-f]{40})/?", re.IGNORECASE)
_CORPUS = re.compile(r"corpus[\s_-]*id\s*:\s*(\d{1,12})", re.IGNORECASE)
_MAX_TITLE = 400


@dataclass(frozen=True, slots=True)
class PaperRef:
    """A parsed paper id: its kind, the normalised value and, for arXiv, the version asked for (or None)."""

    kind: RefKind
    value: str
    version: int | None = None

    @property
    def s2_form(self) -> str:
        """How Semantic Scholar's paper endpoint names this paper."""
        return {
            "arxiv": f"ARXIV:{self.value}",
            "doi": f"DOI:{self.value}",
            "s2": self.value,
            "corpus": f"CorpusId:{self.value}",
            "title": self.value,
        }[self.kind]

    def __str__(self) -> str:
        if self.kind == "arxiv":
            return f"arXiv:{self.value}" + (f"v{self.version}" if self.version else "")
        return {"doi": "doi:", "s2": "s2:", "corpus": "CorpusId:", "title": ""}[self.kind] + self.value


def _arxiv_match(match: re.Match[str]) -> PaperRef:
    base = match.group(1)
    if "/" in base:  # old style: archive lower case, subject class upper case (math.CO/0601001)
        archive, number = base.split("/")
        name, _, subject = archive.partition(".")
        base = f"{name.lower()}{'.' + subject.upper() if subject else ''}/{number}"
    version = match.group(2)
    return PaperRef("arxiv", base, int(version[1:]) if version else None)


def parse_paper_id(raw: str) -> PaperRef:
    """Parse any supported paper id form; anything else of sensible length is taken as an exact title."""
    text = raw.strip()
    if not text:
        raise BadInputError("The paper id is empty. Pass an arXiv id, a DOI, a Semantic Scholar id or a title.")
    if match := _ARXIV_URL.fullmatch(text):
        return _arxiv_match(match)
    if match := _ARXIV.fullmatch(text):
        return _arxiv_match(match)
    if match := _DOI.fullmatch(text):
        doi = normalize_doi(match.group(1))
        if arxiv := _ARXIV_DOI.fullmatch(doi):
            inner = _ARXIV.fullmatch(arxiv.group(1))
            if inner:
                return _arxiv_match(inner)
        return PaperRef("doi", doi)
    if match := _CORPUS.fullmatch(text):
        return PaperRef("corpus", str(int(match.group(1))))
    if match := _S2.fullmatch(text):
        return PaperRef("s2", match.group(1).lower())
    if len(text) > _MAX_TITLE:
        raise BadInputError(f"The paper id is {len(text)} characters long; a title is at most {_MAX_TITLE}.")
    return PaperRef("title", " ".join(text.split()))


def normalize_doi(doi: str) -> str:
    """A DOI in the form used as a key: URL-decoded, lower case (DOIs are case-insensitive), no trailing dot."""
    return unquote(doi).strip().rstrip(".").lower()


def normalize_arxiv_id(raw: str) -> str:
    """The canonical form of an arXiv id (with its version when it has one); raises for anything else."""
    ref = parse_paper_id(raw)
    if ref.kind != "arxiv":
        raise BadInputError(f"{raw!r} is not an arXiv id (like 1706.03762, 1706.03762v5 or hep-th/9901001).")
    return ref.value + (f"v{ref.version}" if ref.version else "")


def arxiv_base(raw: str) -> str:
    """The arXiv id without its version: '1706.03762v5' -> '1706.03762'."""
    return re.sub(r"v\d+$", "", raw)


def folder_name(paper_id: str) -> str:
    """A file-system-safe folder name for `papers/<name>/`: 'arXiv:hep-th/9901001' -> 'arXiv_hep-th_9901001'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", paper_id).strip("._")[:120] or "paper"
