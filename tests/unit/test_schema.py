"""Lean tool schemas still accept what they accepted: checked with jsonschema against real pydantic dumps."""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from research_mcp.server._schema import compact_input, compact_output


class Author(BaseModel):
    name: str
    orcid: str | None = None


class Paper(BaseModel):
    title: str = Field(description="The paper's title: a property called title is data, not a keyword.")
    year: int | None = None
    kind: Literal["article", "preprint"] | None = None
    authors: list[Author] = Field(default_factory=list[Author])
    extra: dict[str, Any] | None = None


class Node(BaseModel):
    """Refers to itself: its definition must stay in $defs."""

    label: str
    children: list[Node] = Field(default_factory=list["Node"])


class Result(BaseModel):
    paper: Paper
    tree: Node | None = None
    next_offset: int | None = Field(None, description="Pass as offset.")


def _keywords(node: Any) -> set[str]:
    """Every keyword used in a schema, at any depth; property and definition names are not keywords."""
    if isinstance(node, list):
        return {key for value in node for key in _keywords(value)}
    if not isinstance(node, dict):
        return set()
    found = set(node)
    for key, value in node.items():
        if key in ("properties", "$defs"):
            found |= {keyword for sub in value.values() for keyword in _keywords(sub)}
        else:
            found |= _keywords(value)
    return found


def _size(schema: dict[str, Any]) -> int:
    return len(json.dumps(schema, separators=(",", ":")))


papers = st.builds(
    Paper,
    title=st.text(max_size=5),
    year=st.none() | st.integers(),
    kind=st.sampled_from([None, "article", "preprint"]),
    authors=st.lists(st.builds(Author, name=st.text(max_size=3), orcid=st.none() | st.text(max_size=3)), max_size=2),
    extra=st.none() | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
nodes = st.recursive(
    st.builds(Node, label=st.text(max_size=3), children=st.just([])),
    lambda inner: st.builds(Node, label=st.text(max_size=3), children=st.lists(inner, max_size=2)),
    max_leaves=4,
)
results = st.builds(Result, paper=papers, tree=st.none() | nodes, next_offset=st.none() | st.integers(0, 99))


@pytest.mark.parametrize("budget", [10_000, 300, 0])
@given(result=results)
def test_a_compacted_output_schema_accepts_every_dump_of_its_model(budget: int, result: Result) -> None:
    schema = compact_output(Result.model_json_schema(), budget=budget)
    jsonschema.validate(result.model_dump(mode="json"), schema)


def test_an_output_schema_keeps_types_and_nulls_and_drops_titles_defaults_and_prose() -> None:
    schema = compact_output(Result.model_json_schema())
    assert not {"title", "default", "description"} & _keywords(schema)
    paper = schema["properties"]["paper"]
    assert "title" in paper["properties"] and "title" not in paper["properties"]["title"]
    assert paper["properties"]["year"] == {"type": ["integer", "null"]}
    assert paper["properties"]["kind"] == {"enum": ["article", "preprint", None], "type": ["string", "null"]}
    assert set(schema["$defs"]) == {"Node"}  # Paper and Author were used once and put in place; Node recurses
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"paper": {"title": "x", "year": "1999"}}, schema)


def test_an_output_schema_over_its_budget_loses_the_fields_of_its_largest_parts_first() -> None:
    full = compact_output(Result.model_json_schema())
    lean = compact_output(Result.model_json_schema(), budget=_size(full) - 1)
    assert _size(lean) < _size(full)
    assert set(lean["properties"]) == {"paper", "tree", "next_offset"}
    assert "properties" not in lean["properties"]["paper"] and lean["properties"]["paper"]["type"] == "object"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"paper": [], "tree": None, "next_offset": None}, lean)


class Arguments(BaseModel):
    query: str = Field(max_length=50, description="Keywords.")
    limit: float = Field(10, ge=1.0, le=50.0)
    workdir: str | None = Field(".", description="null: inline files only.")
    image: str | None = Field(None, description="Docker image.", max_length=4096)
    env: dict[str, str] | None = None


def test_an_input_schema_says_optional_once_and_keeps_a_meaningful_null() -> None:
    schema = compact_input(Arguments.model_json_schema())
    props = schema["properties"]
    assert "title" not in _keywords(schema)
    assert props["image"] == {"type": "string", "description": "Docker image."}
    assert props["env"] == {"additionalProperties": {"type": "string"}, "type": "object"}
    assert props["workdir"]["type"] == ["string", "null"] and props["workdir"]["default"] == "."
    assert props["limit"]["maximum"] == 50 and isinstance(props["limit"]["maximum"], int)
    assert schema["required"] == ["query"] and props["query"]["maxLength"] == 50
    jsonschema.validate({"query": "x", "workdir": None, "env": {"A": "1"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"query": "x", "limit": 51}, schema)
