"""Listings kept between starts, so a start can list every tool, prompt and resource without building them.

The SDK builds each tool's argument model and two JSON schemas with pydantic when the tool is registered,
about 5 ms a tool: with thirty tools that is most of a start. The first start of an installed version builds
them and writes what `tools/list` shows to a file in the data folder. Later starts list the tools from that
file. A tool's adapter module is imported and its real `Tool` built on the tool's first call.

The file's name carries a key made of the size and mtime of every source file of this package and of the
SDK and pydantic modules that generate schemas. Any edit or upgrade therefore gives a new key, so a stale
listing is never used. A first call also compares the built tool's input schema with the listed one and
drops the file when they differ. Prompts, resource templates and the arguments a family completes are kept
the same way: listed from the file, their family imported on first use.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pydantic
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.prompts.base import PromptArgument
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
    ToolAnnotations,
)
from pydantic import PrivateAttr

from research_mcp import __version__
from research_mcp.errors import ResearchError
from research_mcp.server._adapt import (
    CompletionHook,
    MappedTool,
    PromptSpec,
    Registry,
    ResourceSpec,
    ToolSpec,
    error_text,
    map_resource_errors,
)
from research_mcp.server.state import AppState

__all__ = [
    "FAMILIES",
    "LazyPrompt",
    "LazyTool",
    "ToolCache",
    "collect",
    "register_all",
    "registry_of",
    "source_key",
    "tools_for",
]

logger = logging.getLogger(__name__)

FAMILIES: dict[str, str] = {
    "lab": "research_mcp.server.lab",
    "files": "research_mcp.server.files",
    "sandbox": "research_mcp.server.sandbox",
    "metrics": "research_mcp.server.metrics",
    "repos": "research_mcp.server.repos",
    "literature": "research_mcp.server.literature",
    "latex": "research_mcp.server.latex",
    "review": "research_mcp.server.review",
}
"""Tool family -> the adapter module whose `register(tools)` adds its tools. `lab` is always offered."""

_PACKAGE = Path(__file__).resolve().parent.parent
_SCHEMA_MAKERS = (
    "mcp.server.mcpserver.tools.base",
    "mcp.server.mcpserver.utilities.func_metadata",
    "pydantic.json_schema",
    "pydantic_core",
)


def registry_of(family: str) -> Registry:
    """Everything a family's adapter module registers, unbuilt."""
    registry = Registry()
    importlib.import_module(FAMILIES[family]).register(registry)
    return registry


def collect(family: str) -> list[ToolSpec]:
    """The tools a family's adapter module registers, unbuilt."""
    return registry_of(family).specs


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
    """A family's adapters, imported on the first use of one of its listed tools, prompts or resources."""

    def __init__(self, name: str, cache: ToolCache) -> None:
        self.name = name
        self.cache = cache
        self._registry: Registry | None = None
        self._prompts: dict[str, Prompt] = {}

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = registry_of(self.name)
        return self._registry

    def build(self, tool: str) -> Tool:
        spec = next((spec for spec in self.registry.specs if spec.name == tool), None)
        if spec is None:
            raise LookupError(f"the listed tool {tool!r} no longer exists in family {self.name!r}")
        return spec.build()

    def prompt(self, name: str) -> Prompt:
        found = self._prompts.get(name)
        if found is None:
            spec = next((spec for spec in self.registry.prompts if spec.name == name), None)
            if spec is None:
                self.cache.discard(f"the listed prompt {name!r} no longer exists in family {self.name!r}")
                raise MCPError(INTERNAL_ERROR, f"The prompt {name!r} is gone from this server: reconnect the client.")
            found = self._prompts[name] = spec.build()
        return found

    def resource(self, uri_template: str) -> ResourceSpec:
        spec = next((spec for spec in self.registry.resources if spec.uri_template == uri_template), None)
        if spec is None:
            self.cache.discard(f"the listed resource {uri_template!r} no longer exists in family {self.name!r}")
            raise ResourceError(f"The resource {uri_template} is gone from this server: reconnect the client.")
        return spec

    def completion(self, argument: str) -> CompletionHook | None:
        return self.registry.completions.get(argument)


class LazyPrompt(Prompt):
    """A prompt listed from the stored listing; its family is imported and the real prompt built on first use."""

    _family: _Family | None = PrivateAttr(default=None)

    @classmethod
    def listed(cls, entry: dict[str, Any], family: _Family) -> LazyPrompt:
        prompt = cls.model_construct(
            name=entry["name"],
            title=entry.get("title"),
            description=entry.get("description"),
            arguments=[PromptArgument.model_validate(arg) for arg in entry.get("arguments") or ()],  # pyright: ignore[reportUnknownVariableType]
            fn=_not_loaded,
            icons=None,
            context_kwarg=None,
        )
        prompt._family = family
        return prompt

    async def render(self, arguments: dict[str, Any] | None, context: Context[Any, Any]) -> Any:
        assert self._family is not None
        missing = [arg.name for arg in self.arguments or () if arg.required and arg.name not in (arguments or {})]
        if missing:  # the SDK's own check answers with no word of which prompt or what to pass
            raise MCPError(INVALID_PARAMS, f"The prompt {self.name!r} needs the argument(s) {', '.join(missing)}.")
        return await self._family.prompt(self.name).render(arguments, context)


def resource_reader(entry: dict[str, Any], family: _Family) -> Callable[..., Awaitable[Any]]:
    """A function the SDK can register for a listed resource template: its signature names the template's
    variables (the SDK checks them against the URI); the family is imported when it is first read."""

    async def read(ctx: Context[Any, Any], **params: str) -> Any:
        spec = family.resource(entry["uri_template"])
        return await map_resource_errors(spec.name, spec.fn)(ctx=ctx, **params)

    names: list[str] = entry["params"]
    kw = inspect.Parameter.KEYWORD_ONLY
    read.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("ctx", kw, annotation=Context), *(inspect.Parameter(n, kw, annotation=str) for n in names)]
    )
    read.__annotations__ = {"ctx": Context, **dict.fromkeys(names, str), "return": Any}
    read.__name__ = entry["name"]
    return read


class LazyTool(MappedTool):
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
        try:
            real = self.real()
        except Exception as exc:  # a stale listing or a broken install: said, never a crash
            assert self._family is not None
            self._family.cache.discard(f"{self.name!r} could not be built: {exc!r}")
            raise ToolError(
                f"Error executing tool {self.name}: this server could not load the tool. "
                f"{error_text(self.name, exc)} The stored tool listing was dropped: reconnect the client (or restart "
                "the server) to list the tools again."
            ) from exc
        return await real.run(arguments, context, convert_result=convert_result)


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


def _prompt_entry(spec: PromptSpec) -> dict[str, Any]:
    prompt = spec.build()
    arguments = [arg.model_dump(mode="json", exclude_none=True) for arg in prompt.arguments or []]
    return {"name": prompt.name, "title": prompt.title, "description": prompt.description, "arguments": arguments}


def _resource_entry(spec: ResourceSpec) -> dict[str, Any]:
    return {
        "uri_template": spec.uri_template, "name": spec.name, "title": spec.title, "description": spec.description,
        "mime_type": spec.mime_type, "params": list(spec.params),
    }  # fmt: skip


class ToolCache:
    """The stored listings of the families built before, in `<data dir>/tool-listing-<key>.json`: per family its
    tools, prompts, resource templates and completed arguments."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"tool-listing-{source_key()}.json"
        self.families: dict[str, dict[str, Any]] = {}
        self._loaders: dict[str, _Family] = {}
        self._dirty = False
        try:
            loaded: Any = json.loads(self.path.read_bytes())
            stored = cast(dict[str, Any], loaded["families"])
            for name, entry in stored.items():
                if isinstance(entry, dict) and {"tools", "prompts", "resources", "completes"} <= entry.keys():
                    self.families[name] = cast(dict[str, Any], entry)
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            pass  # none yet, unreadable or half-written: built again and rewritten

    def _loader(self, family: str) -> _Family:
        found = self._loaders.get(family)
        if found is None:
            found = self._loaders[family] = _Family(family, self)
        return found

    def _listed(self, family: str) -> tuple[dict[str, Any], list[Tool] | None]:
        """The family's stored entry, building (and noting for saving) what is not stored yet; with the built
        tools when it had to build them, so they are not built twice."""
        entry = self.families.get(family)
        if entry is not None:
            return entry, None
        registry = self._loader(family).registry
        built = [spec.build() for spec in registry.specs]
        entry = self.families[family] = {
            "tools": [_entry(tool) for tool in built],
            "prompts": [_prompt_entry(spec) for spec in registry.prompts],
            "resources": [_resource_entry(spec) for spec in registry.resources],
            "completes": sorted(registry.completions),
        }
        self._dirty = True
        return entry, built

    def tools(self, family: str) -> list[Tool]:
        """The family's tools: listed from the file when it has them, else built now and noted for saving."""
        entry, built = self._listed(family)
        if built is not None:
            return built
        return [LazyTool.listed(tool, self._loader(family)) for tool in entry["tools"]]

    def prompts(self, family: str) -> list[Prompt]:
        entry, _ = self._listed(family)
        return [LazyPrompt.listed(prompt, self._loader(family)) for prompt in entry["prompts"]]

    def resources(self, family: str) -> list[tuple[dict[str, Any], Callable[..., Awaitable[Any]]]]:
        """The family's resource templates: each stored entry and the function to register for it."""
        entry, _ = self._listed(family)
        return [(resource, resource_reader(resource, self._loader(family))) for resource in entry["resources"]]

    def completion(self, family: str, argument: str) -> CompletionHook | None:
        entry, _ = self._listed(family)
        return self._loader(family).completion(argument) if argument in entry["completes"] else None

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


def tools_for(cache: ToolCache, families: Sequence[str], *, read_only: bool) -> dict[str, list[Tool]]:
    """Every tool of the families by family, listed from the cache where possible; read-only ones if asked."""
    tools = {family: cache.tools(family) for family in families}
    cache.save()
    if read_only:
        return {family: [tool for tool in found if _read_only(tool)] for family, found in tools.items()}
    return tools


def _read_only(tool: Tool) -> bool:
    return tool.annotations is not None and bool(tool.annotations.read_only_hint)


def register_all(
    server: MCPServer[Any], cache: ToolCache, families: Sequence[str], state: Callable[[], AppState | None]
) -> None:
    """Add the families' prompts, resource templates and argument completion to `server` (its tools are given
    at construction: `tools_for`). Prompts and resources only read, so `--read-only` keeps them all.
    `state` gives the running server's state, where completion looks (its requests carry no tool context)."""
    for family in families:
        for prompt in cache.prompts(family):
            server.add_prompt(prompt)
        for entry, reader in cache.resources(family):
            server.resource(
                entry["uri_template"], name=entry["name"], title=entry["title"], description=entry["description"],
                mime_type=entry["mime_type"],
            )(reader)  # fmt: skip
    cache.save()
    arguments = {arg: family for family in families for arg in cache.families[family]["completes"]}
    if not arguments:
        return

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument, _: CompletionContext | None
    ) -> Completion | None:
        family, running = arguments.get(argument.name), state()
        ws = None if running is None else running.known_workspace().workspace
        hook = None if family is None else cache.completion(family, argument.name)
        if hook is None or running is None or ws is None:
            return None
        try:
            found = await hook(running, ws, argument.value)
        except ResearchError as exc:  # no store yet, a workspace being moved: nothing to offer, said in the log
            logger.info("no completion for %s: %s", argument.name, exc)
            return None
        return Completion(values=found[:100], total=len(found), has_more=len(found) > 100)
