"""A family for the answer-shape tests: the real lab family plus tools whose results have each shape."""

from __future__ import annotations

from typing import Annotated

from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel

from research_mcp.errors import BadInputError
from research_mcp.server import lab
from research_mcp.server._adapt import READ_ONLY_LOCAL, Registry


class Point(BaseModel):
    step: int
    value: float


class SeriesResult(BaseModel):
    name: str
    points: list[Point]
    note: str | None = None


class LinesResult(BaseModel):
    run_id: str
    lines: list[str]
    next_offset: int | None = None


class TextResult(BaseModel):
    text: str
    total: int


def register(registry: Registry) -> None:
    lab.register(registry)

    @registry.tool(READ_ONLY_LOCAL)
    async def series(n: int = 3) -> SeriesResult:
        """A record with a list of small objects."""
        if n < 0:
            raise BadInputError("n must be at least 0: pass a count.")
        return SeriesResult(name="loss ü", points=[Point(step=i, value=1 / (i + 1)) for i in range(n)])

    @registry.tool(READ_ONLY_LOCAL, text_field="lines")
    async def log_lines(n: int = 2) -> LinesResult:
        """A record whose answer is lines of a log."""
        return LinesResult(run_id="r1", lines=[f'line {i} {{"json": 1}}' for i in range(n)], next_offset=n + 1)

    @registry.tool(READ_ONLY_LOCAL, text_field="text")
    async def prose() -> TextResult:
        """A record whose answer is a text."""
        return TextResult(text="# Intro\n\nWe study \\emph{warmup}.", total=1)

    @registry.tool(READ_ONLY_LOCAL, text_field="missing")
    async def misnamed() -> SeriesResult:
        """A record whose text field is not one of its fields: the record is the text."""
        return SeriesResult(name="x", points=[])

    @registry.tool(READ_ONLY_LOCAL)
    async def picture() -> Annotated[CallToolResult, SeriesResult]:
        """An image beside the record, as the plotting tools answer."""
        record = SeriesResult(name="fig", points=[Point(step=1, value=0.5)])
        return CallToolResult(
            content=[
                ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"),
                TextContent(type="text", text=record.model_dump_json()),
                TextContent(type="text", text="Saved as figures/fig.pdf."),
            ],
            structured_content=record.model_dump(mode="json"),
        )
