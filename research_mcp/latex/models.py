"""The models of the LaTeX package: a paper read as text (`LatexDocument` and its parts) and its limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from research_mcp.errors import LatexError
from research_mcp.model import ToolModel

__all__ = ["Float", "KeyUse", "LatexDocument", "NumberUse", "Section", "TextLimits"]


@dataclass(frozen=True, slots=True)
class TextLimits:
    """Caps on what reading one paper may cost."""

    max_files: int = 400
    max_total_bytes: int = 20_000_000
    max_depth: int = 24
    max_numbers: int = 5000


class Section(ToolModel):
    index: int = Field(description="Position in the outline, 0-based; pass it as `section` to read this section.")
    number: str | None = Field(default=None, description="The number LaTeX prints ('3.2', 'A.1'); None if unnumbered.")
    title: str
    level: int = Field(description="LaTeX depth: part -1, chapter 0, section 1, subsection 2, subsubsection 3, ...")
    file: str = Field(description="Source file, relative to the paper folder.")
    line: int = Field(description="1-based line of the heading in that file.")
    words: int = Field(default=0, description="Words of prose (math left out), subsections included.")
    chars: int = Field(default=0, description="Characters of the section's text, subsections included.")


class KeyUse(ToolModel):
    key: str
    file: str
    line: int = Field(description="First use.")
    uses: int


class Float(ToolModel):
    kind: Literal["figure", "table", "algorithm", "graphic"] = Field(
        description="'graphic' is an \\includegraphics outside any figure environment."
    )
    file: str
    line: int
    caption: str | None = None
    labels: list[str] = Field(default_factory=list[str])
    graphics: list[str] = Field(default_factory=list[str], description="\\includegraphics paths as written.")


class NumberUse(ToolModel):
    text: str = Field(description="As written, e.g. '93.2%', '1,024', '3e-4'.")
    value: float
    file: str
    line: int
    in_math: bool
    context: str = Field(description="The source around it, commands and braces dropped.")


class LatexDocument(ToolModel):
    """A paper read as text; see `research_mcp.latex.text` for what each field holds."""

    title: str | None = None
    abstract: str | None = None
    outline: list[Section] = Field(default_factory=list[Section])
    cites: list[KeyUse] = Field(default_factory=list[KeyUse])
    refs: list[KeyUse] = Field(default_factory=list[KeyUse])
    labels: list[KeyUse] = Field(default_factory=list[KeyUse])
    floats: list[Float] = Field(default_factory=list[Float])
    numbers: list[NumberUse] = Field(default_factory=list[NumberUse])
    files: list[str] = Field(default_factory=list[str])
    bib_files: list[str] = Field(default_factory=list[str])
    warnings: list[str] = Field(default_factory=list[str])
    front: str = Field(default="", description="Text before the first section (title block, front matter).")
    section_texts: list[str] = Field(
        default_factory=list[str], exclude=True, description="Each outline entry's own text, subsections left out."
    )

    @property
    def text(self) -> str:
        """The whole body as text, sections as markdown-style headings."""
        parts = [self.front.strip()] if self.front.strip() else []
        parts += [_heading(s) + "\n\n" + body.strip() for s, body in zip(self.outline, self.section_texts, strict=True)]
        return "\n\n".join(parts) + "\n"

    def section_text(self, index: int) -> str:
        """The text of outline entry `index` with its subsections, headings included."""
        if not 0 <= index < len(self.outline):
            raise LatexError(
                f"No section {index}: the outline has {len(self.outline)} entries (0 to {len(self.outline) - 1})."
            )
        head = self.outline[index]
        parts = [_heading(head) + "\n\n" + self.section_texts[index].strip()]
        for section in self.outline[index + 1 :]:
            if section.level <= head.level:
                break
            parts.append(_heading(section) + "\n\n" + self.section_texts[section.index].strip())
        return "\n\n".join(parts) + "\n"

    def find_section(self, query: int | str) -> Section:
        """The outline entry at an index (int), or named by its printed number or its title (str).

        A title matches case-insensitively: exactly, else as a prefix, else as a substring.
        """
        if isinstance(query, int):
            self.section_text(query)  # raises for a bad index
            return self.outline[query]
        wanted = query.strip()
        for section in self.outline:
            if section.number is not None and section.number == wanted.rstrip("."):
                return section
        folded = wanted.casefold()
        if folded:
            for matches in (str.__eq__, str.startswith, str.__contains__):
                for section in self.outline:
                    if matches(section.title.casefold(), folded):
                        return section
        listing = "; ".join(f"{s.index}: {s.number + ' ' if s.number else ''}{s.title}" for s in self.outline[:60])
        raise LatexError(f"No section matches {query!r}. The outline (index: title): {listing or '(no sections)'}.")


def _heading(section: Section) -> str:
    marks = "#" * max(1, min(6, section.level))
    return f"{marks} {section.number + ' ' if section.number else ''}{section.title}"
