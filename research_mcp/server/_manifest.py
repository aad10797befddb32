"""Tool listings kept between starts, so a start can list every tool without building its schemas.

The SDK builds each tool's argument model and two JSON schemas with pydantic when the tool is registered,
about 5 ms a tool: with thirty tools that is most of a start. The first start of an installed version builds
them and writes what `tools/list` shows to a file in the data folder. Later starts list the tools from that
file. A tool's adapter module is imported and its real `Tool` built on the tool's first call.

The file's name carries a key made of the size and mtime of every source file of this package and of the
SDK and pydantic modules that generate schemas. Any edit or upgrade therefore gives a new key, so a stale
listing is never used. A first call also compares the built tool's input schema with the listed one and
drops the file when they differ.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import PrivateAttr

from research_mcp import __version__
from research_mcp.server._adapt import ToolRegistry, ToolSpec

__all__ = ["FAMILIES", "LazyTool", "ToolCache", "collect", "source_key"]

logger = logging.getLogger(__name__)

FAMILIES: dict[str, str] = {
    "lab": "research_mcp.server.lab",
    "files": "research_mcp.server.files",
    "sandbox": "research_mcp.server.sandbox",
    "metrics": "research_mcp.server.metrics",
    "repos": "research_mcp.server.repos",
    "literature": "research_mcp.server.literature",
    "latex": "research_mcp.server.latex",
}
"""Tool family -> the adapter module whose `register(tools)` adds its tools. `lab` is always offered."""

_PACKAGE = Path(__file__).resolve().parent.parent
_SCHEMA_MAKERS = (
    "mcp.server.mcpserver.tools.base",
    "mcp.server.mcpserver.utilities.func_metadata",
    "pydantic.json_schema",
    "pydantic_core",
)


def collect(family: str) -> list[ToolSpec]:
    """The tools a family's adapter module registers, unbuilt."""
    registry = ToolRegistry()
    importlib.import_module(FAMILIES[family]).register(registry)
    return registry.specs


def source_key() -> str:
    """A short key that changes whenever the code that shapes the tool listing changes."""
    digest = hashlib.blake2b(digest_size=10)
    digest.update(f"{sys.version}|{pydantic.VERSION}|{__version__}".encode())
    for folder, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                _add_stat(digest, os.path.join(folder, name))
    for module in _SCHEMA_MAKERS:
        found = sys.modules.get(module) or importlib.import_module(module)
        if found.__file__ is not None:
            _add_stat(digest, found.__file__)
    return digest.hexdigest()


def _add_stat(digest: Any, path: str) -> None:
    st = os.stat(path)
    digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())


class _Family:
    """A family's adapters, imported on the first call of one of its listed tools."""

    def __init__(self, name: str, cache: ToolCache) -> None:
        self.name = name
        self.cache = cache
        self._specs: dict[str, ToolSpec] | None = None

    def build(self, tool: str) -> Tool:
        if self._specs is None:
            self._specs = {spec.name: spec for spec in collect(self.name)}
        spec = self._specs.get(tool)
        if spec is None:
            self.cache.discard(f"the listed tool {tool!r} no longer exists in family {self.name!r}")
            raise RuntimeError(f"tool {tool!r} was listed from a stale tool cache; restart the server")
        return spec.build()


class LazyTool(Tool):
    """A tool listed from the cache: what `tools/list` shows is stored; the real tool is built on first call."""

    _output_schema: dict[str, Any] | None = PrivateAttr(default=None)
    _family: _Family | None = PrivateAttr(default=None)
    _real: Tool | None = PrivateAttr(default=None)

    @classmethod
    def listed(cls, entry: dict[str, Any], family: _Family) -> LazyTool:
        annotations = entry.get("annotations")
        tool = cls.model_construct(
            fn=_not_loaded,
            name=entry["name"],
            title=entry.get("title"),
            description=entry["description"],
            parameters=entry["input_schema"],
            is_async=True,
            context_kwarg=None,
            annotations=None if annotations is None else ToolAnnotations.model_validate(annotations),
            icons=None,
            meta=None,
        )
        tool._output_schema = entry.get("output_schema")
        tool._family = family
        return tool

    @property
    def output_schema(self) -> dict[str, Any] | None:  # type: ignore[override]  # a cached_property upstream
        return self._output_schema

    def real(self) -> Tool:
        if self._real is None:
            assert self._family is not None
            real = self._family.build(self.name)
            if real.parameters != self.parameters or real.output_schema != self._output_schema:
                self._family.cache.discard(f"the schemas of {self.name!r} changed")
            self._real = real
        return self._real

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        return await self.real().run(arguments, context, convert_result=convert_result)


async def _not_loaded(**_: Any) -> Any:
    raise RuntimeError("a listed tool is run through LazyTool.run")


def _entry(tool: Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "annotations": None if tool.annotations is None else tool.annotations.model_dump(mode="json"),
        "input_schema": tool.parameters,
        "output_schema": tool.output_schema,
    }


class ToolCache:
    """The stored listings of the families built before, in `<data dir>/tool-listing-<key>.json`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"tool-listing-{source_key()}.json"
        self.families: dict[str, list[dict[str, Any]]] = {}
        self._dirty = False
        try:
            loaded: Any = json.loads(self.path.read_bytes())
            if isinstance(loaded, dict) and isinstance(loaded.get("families"), dict):  # pyright: ignore[reportUnknownMemberType]
                self.families = loaded["families"]
        except (OSError, ValueError):
            pass  # none yet, unreadable or half-written: built again and rewritten

    def tools(self, family: str) -> list[Tool]:
        """The family's tools: listed from the file when it has them, else built now and noted for saving."""
        entries = self.families.get(family)
        if entries is not None:
            loader = _Family(family, self)
            return [LazyTool.listed(entry, loader) for entry in entries]
        built = [spec.build() for spec in collect(family)]
        self.families[family] = [_entry(tool) for tool in built]
        self._dirty = True
        return built

    def save(self) -> None:
        """Write the listing if it grew; a data folder that cannot be written costs only speed."""
        if not self._dirty:
            return
        self._dirty = False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tool-listing-", suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                json.dump({"version": __version__, "families": self.families}, out, separators=(",", ":"))
            os.replace(tmp, self.path)
            for old in self.folder.glob("tool-listing-*.json"):
                if old != self.path:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            logger.info("tool listing not saved to %s: %s", self.folder, exc)

    def discard(self, why: str) -> None:
        logger.warning("dropping the stored tool listing %s: %s", self.path, why)
        self.path.unlink(missing_ok=True)


def tools_for(families: Sequence[str], data_dir: Path, *, read_only: bool) -> dict[str, list[Tool]]:
    """Every tool of the families by family, listed from the cache where possible; read-only ones if asked."""
    cache = ToolCache(data_dir)
    tools = {family: cache.tools(family) for family in families}
    cache.save()
    if read_only:
        return {family: [tool for tool in found if _read_only(tool)] for family, found in tools.items()}
    return tools


def _read_only(tool: Tool) -> bool:
    return tool.annotations is not None and bool(tool.annotations.read_only_hint)
