"""Lean tool schemas: what pydantic generates, without the parts that cost the model and the client for nothing.

Every client sends each tool's name, description and input schema to its model on every turn, and checks
structured results against the output schema. pydantic's schemas repeat themselves: a `title` that spells the
field name again, `anyOf [X, {"type": "null"}]` plus `"default": null` for every optional field,
`"additionalProperties": true` that JSON Schema assumes anyway. `compact_tool` rewrites both schemas of a
built tool, keeping what they accept:

- input: an optional field whose default is null becomes plain X, since leaving it out already says "none",
  and a length cap no real value reaches is left out: the SDK validates arguments against its own pydantic
  model, never against the listed schema;
- output: structured content is dumped with every field, nulls included, and clients validate it against
  the schema, so a nullable field stays nullable, written `"type": [T, "null"]`. Defaults and descriptions go:
  the model reads the tool's description, not its output schema, and a default says nothing of a result.

The stored listing (`_manifest.py`) keeps the schemas of built tools, so listed and built schemas stay equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

from mcp.server.mcpserver.tools import Tool

__all__ = ["compact_input", "compact_output", "compact_tool"]

_NULL: dict[str, Any] = {"type": "null"}
_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
"""Keywords whose value maps names to schemas: the names are data (a property may be called `title`)."""
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_DROPPED_IN_OUTPUT = ("default", "description", "examples")
GUARD_LENGTH = 1000
"""An input's `maxLength` from this up is a guard no real value reaches (4096 for a path): the arguments model
still enforces it, the listing leaves it out."""
OUTPUT_BUDGET = 800
"""Most characters of an output schema (compact JSON) before its largest nested objects lose their fields."""


def compact_tool(tool: Tool) -> Tool:
    """The same tool with lean input and output schemas (changed in place, returned for chaining)."""
    tool.parameters = compact_input(tool.parameters)
    metadata = tool.fn_metadata
    if metadata.output_schema is not None:
        metadata.output_schema = compact_output(metadata.output_schema)
        vars(tool).pop("output_schema", None)  # a cached_property on Tool: read it again from the metadata
    return tool


def compact_input(schema: dict[str, Any]) -> dict[str, Any]:
    """An input schema that accepts what the arguments model accepts, leaving an optional null unsaid."""
    return _compact(schema, output=False)


def compact_output(schema: dict[str, Any], budget: int = OUTPUT_BUDGET) -> dict[str, Any]:
    """An output schema that accepts what the result model dumps, without prose or defaults, within `budget`.

    Past the budget the largest nested object is typed as an object without its fields, then the next one: the
    result's own fields and its small parts stay described; a big part (a run, a paper) is checked as an object."""
    compacted = _inline_single_defs(_compact(schema, output=True))
    while _size(compacted) > budget:
        nested = [node for node in _subschemas(compacted) if "properties" in node]
        if not nested:
            break
        largest = max(nested, key=_size)
        del largest["properties"]
        largest.pop("required", None)
    return compacted


def _compact(node: dict[str, Any], *, output: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (output and key in _DROPPED_IN_OUTPUT):
            continue
        if key == "additionalProperties" and value is True:
            continue
        if not output and key == "maxLength" and isinstance(value, int) and value >= GUARD_LENGTH:
            continue
        if key in _MAPS and isinstance(value, dict):
            out[key] = {name: _compact_any(sub, output=output) for name, sub in cast(dict[str, Any], value).items()}
        elif key in _LISTS and isinstance(value, list):
            out[key] = [_compact_any(sub, output=output) for sub in cast(list[Any], value)]
        elif key in _ONE and isinstance(value, dict):
            out[key] = _compact(cast(dict[str, Any], value), output=output)
        elif key in _BOUNDS and isinstance(value, float) and value.is_integer():
            out[key] = int(value)
        else:
            out[key] = value
    return _fold_nullable(out, output=output)


def _compact_any(node: Any, *, output: bool) -> Any:
    return _compact(cast(dict[str, Any], node), output=output) if isinstance(node, dict) else node


def _fold_nullable(node: dict[str, Any], *, output: bool) -> dict[str, Any]:
    """`anyOf [X, null]` as X: with null dropped for an input field whose default is null, else `type: [T, null]`."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or _NULL not in options:  # pyright: ignore[reportUnknownArgumentType]
        return node
    (other,) = [option for option in cast(list[Any], options) if option != _NULL]
    if not isinstance(other, dict):
        return node
    other = cast(dict[str, Any], other)
    rest = {key: value for key, value in node.items() if key != "anyOf"}
    if set(rest) & set(other):
        return node  # a sibling keyword would be overwritten: keep the union as it is
    if not output and "default" in rest and rest["default"] is None:
        del rest["default"]
        return {**other, **rest}
    kind = other.get("type")
    if not isinstance(kind, str) or "$ref" in other or "const" in other:
        return node
    merged = {**other, **rest, "type": [kind, "null"]}
    if "enum" in merged:
        merged["enum"] = [*merged["enum"], None]
    return merged


def _size(schema: dict[str, Any]) -> int:
    return len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False))


def _subschemas(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every schema nested in `node`, at any depth, not `node` itself."""
    for key, value in node.items():
        children: list[Any] = []
        if key in _MAPS and isinstance(value, dict):
            children = list(cast(dict[str, Any], value).values())
        elif key in _LISTS and isinstance(value, list):
            children = cast(list[Any], value)
        elif key in _ONE and isinstance(value, dict):
            children = [value]
        for child in children:
            if isinstance(child, dict):
                child = cast(dict[str, Any], child)
                yield child
                yield from _subschemas(child)


def _inline_single_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Put each `$defs` entry referenced once (by a bare `$ref`, and not within a cycle) in place of that `$ref`."""
    defs = schema.get("$defs")
    if not isinstance(defs, dict) or not defs:
        return schema
    defs = cast(dict[str, dict[str, Any]], defs)
    refs: dict[str, list[dict[str, Any]]] = {name: [] for name in defs}
    _find_refs(schema, refs)
    inline = {name for name, found in refs.items() if len(found) == 1 and len(found[0]) == 1}
    inline -= {name for name in inline if _reaches(name, name, defs, set())}

    def expand(node: Any) -> Any:
        if isinstance(node, dict):
            node = cast(dict[str, Any], node)
            name = _ref_name(node.get("$ref"))
            if name in inline and len(node) == 1:
                return expand(defs[name])
            return {key: expand(value) for key, value in node.items()}
        if isinstance(node, list):
            return [expand(item) for item in cast(list[Any], node)]
        return node

    result: dict[str, Any] = {key: expand(value) for key, value in schema.items() if key != "$defs"}
    kept = {name: expand(body) for name, body in defs.items() if name not in inline}
    if kept:
        result["$defs"] = kept
    return result


def _ref_name(ref: Any) -> str | None:
    return ref.removeprefix("#/$defs/") if isinstance(ref, str) and ref.startswith("#/$defs/") else None


def _find_refs(node: Any, refs: dict[str, list[dict[str, Any]]]) -> None:
    """Every schema object holding a `$ref` into `$defs`, by the name it refers to."""
    if isinstance(node, dict):
        node = cast(dict[str, Any], node)
        name = _ref_name(node.get("$ref"))
        if name in refs:
            refs[name].append(node)
        for value in node.values():
            _find_refs(value, refs)
    elif isinstance(node, list):
        for item in cast(list[Any], node):
            _find_refs(item, refs)


def _reaches(start: str, target: str, defs: dict[str, dict[str, Any]], seen: set[str]) -> bool:
    """Whether the definition `start` refers, directly or through others, to `target`."""
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in defs}
    _find_refs(defs[start], found)
    for name, holders in found.items():
        if not holders or name in seen:
            continue
        if name == target:
            return True
        seen.add(name)
        if _reaches(name, target, defs, seen):
            return True
    return False
