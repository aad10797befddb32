"""The base of every model a tool returns: its JSON schema carries no generated titles.

Pydantic titles each property with its own name spelled again ("next_offset" -> "Next Offset"). In an output
schema that is noise the client parses and checks on every call and the model reads in `tools/list`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["NextStep", "ToolModel"]


def _drop_titles(schema: dict[str, Any]) -> None:
    schema.pop("title", None)
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    for prop in properties.values():
        prop.pop("title", None)


class ToolModel(BaseModel):
    model_config = ConfigDict(json_schema_extra=_drop_titles)


class NextStep(ToolModel):
    """The call that moves the work on, as the model would make it."""

    tool: str = Field(description="The tool to call.")
    arguments: dict[str, Any] = Field(description="Its arguments, ready to pass.")
    why: str = Field(description="One sentence: what the call is for.")
