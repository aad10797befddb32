"""What every tool adapter shares: the workspace resolver, annotations and the one error mapping.

Adapters stay thin: they unpack flat arguments, find the workspace and call the domain function (in a worker
thread when it is sync). Every exception that leaves a tool becomes the SDK's `ToolError`, whose text the model
reads (`tool_error`): a `ResearchError` keeps its message, an `OSError` becomes one sentence with the
workspace-relative path and what to do, a pydantic `ValidationError` names the field and its limit, and anything
else is logged with its traceback and answered as an internal error naming its type. Left to the SDK, any
exception but `ToolError` reaches the model only as a bare `Error executing tool <name>`.

An answer carries its record in full as `structuredContent` and once more as text: compact JSON, one rule for
every tool (`compact_result`), or the prose of a tool that names its `text_field`.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, cast

import anyio.to_thread
import pydantic
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError, UnexpectedToolError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.resolve import ListRoots, Resolve
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolResult,
    ContentBlock,
    ListRootsResult,
    TextContent,
    ToolAnnotations,
)
from pydantic import Field

from research_mcp.errors import NotFoundError, PaperNotFoundError, ResearchError, RunNotFoundError, os_error_message
from research_mcp.server._schema import compact_tool
from research_mcp.server.state import AppState, ResolvedWorkspace
from research_mcp.workspace import Workspace

if TYPE_CHECKING:  # opened on first use: a start loads no store
    from research_mcp.store import Store

__all__ = [
    "READ_ONLY_LOCAL",
    "WRITES_LOCAL",
    "FETCHES",
    "AppContext",
    "AppState",
    "ResolvedWorkspace",
    "CompletionHook",
    "MappedTool",
    "PromptSpec",
    "Registry",
    "ResourceSpec",
    "ToolRegistry",
    "ToolSpec",
    "WorkspaceParam",
    "IdeaParam",
    "check_idea",
    "in_thread",
    "known_workspace",
    "map_resource_errors",
    "need_workspace",
    "error_text",
    "state_of",
    "store_of",
    "workspace_of",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

READ_ONLY_LOCAL = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
WRITES_LOCAL = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)
FETCHES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
"""Asks an outside service (arXiv, Semantic Scholar, GitHub) and keeps what it learns (cache, library, downloads):
not read-only, since it writes, but it never overwrites the user's work."""


AppContext = Context[AppState, Any]
"""The context every adapter takes: its lifespan state is the `AppState`."""


async def _workspace_or_roots(ctx: AppContext) -> ResolvedWorkspace | ListRoots:
    """The workspace at once, or a request for the client's roots when no workspace is set and it has roots.

    One resolver, not two chained ones: the SDK runs each resolver on every call, and this is on every call."""
    state = ctx.request_context.lifespan_context
    capabilities = ctx.client_capabilities
    if state.settings.workspace is None and capabilities is not None and capabilities.roots is not None:
        return ListRoots()
    return state.resolve_workspace(None)


WorkspaceParam = Annotated[ResolvedWorkspace | ListRootsResult, Resolve(_workspace_or_roots)]
"""An adapter parameter of this type receives the call's workspace (through `workspace_of`); it is not part
of the input schema."""


def workspace_of(ctx: AppContext, found: ResolvedWorkspace | ListRootsResult) -> ResolvedWorkspace:
    """The call's workspace, from a `WorkspaceParam` value."""
    if isinstance(found, ResolvedWorkspace):
        return found
    return state_of(ctx).resolve_workspace([str(root.uri) for root in found.roots])


def need_workspace(ctx: AppContext, found: ResolvedWorkspace | ListRootsResult) -> Workspace:
    """The call's workspace, or a `WorkspaceError` saying how to set one."""
    return workspace_of(ctx, found).require()


def known_workspace(ctx: AppContext) -> Workspace:
    """The workspace of a resource read, which carries no roots: see `AppState.known_workspace`."""
    return state_of(ctx).known_workspace().require()


async def store_of(ctx: AppContext, found: ResolvedWorkspace | ListRootsResult) -> Store:
    """The workspace's state store, opened in a worker thread the first time (opening waits on the disk)."""
    state, workspace = state_of(ctx), need_workspace(ctx, found)
    store = state.stores.get(workspace.root)
    return store if store is not None else await in_thread(state.store, workspace)


def state_of(ctx: AppContext) -> AppState:
    return ctx.request_context.lifespan_context


async def in_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run sync domain code in a worker thread, so the event loop keeps serving."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


IdeaParam = Annotated[str | None, Field(description="The idea it serves (from ideas).", max_length=64)]
"""The optional `idea_id` of the tools whose records count for an idea in research_status."""


async def check_idea(store: Store, idea_id: str | None) -> None:
    """Refuse an idea id the workspace does not have, before any work (naming the ideas there are)."""
    if idea_id is not None:
        from research_mcp.tools.pipeline.ideas import require_idea

        await in_thread(require_idea, store, idea_id)


_MAX_MESSAGE_CHARS = 600


def _one_line(text: str, limit: int = _MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _validation_text(exc: pydantic.ValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors(include_url=False)[:3]:
        field = ".".join(str(part) for part in err["loc"]) or "value"
        parts.append(f"{field}: {err['msg']}")
    more = len(exc.errors()) - len(parts)
    extra = f" (and {more} more)" if more > 0 else ""
    return f"Invalid argument: {'; '.join(parts)}{extra}. Fix it and call again."


def error_text(name: str, exc: BaseException, root: Path | None = None) -> str:
    """What the model reads for an exception that left tool `name`: what went wrong and what to do next.

    An exception the project does not expect is logged here with its traceback; its text names its type."""
    if isinstance(exc, ResearchError | ToolError | ResourceError):
        return str(exc)
    if isinstance(exc, OSError):
        return os_error_message(exc, root)
    if isinstance(exc, pydantic.ValidationError):
        return _validation_text(exc)
    logger.error("internal error in %s", name, exc_info=exc)
    message = _one_line(str(exc)) or "no message"
    return f"Internal error in {name} ({type(exc).__name__}): {message}. The server log has the traceback."


def _root_of(values: tuple[Any, ...]) -> Path | None:
    """The workspace root of a call, found among its arguments (to show paths relative to it)."""
    ctx: AppContext | None = None
    for value in values:
        if isinstance(value, Context):
            ctx = value  # pyright: ignore[reportUnknownVariableType]
    for value in values:
        if isinstance(value, ResolvedWorkspace) and value.workspace is not None:
            return value.workspace.root
        if isinstance(value, ListRootsResult) and ctx is not None:
            found = state_of(ctx).resolve_workspace([str(root.uri) for root in value.roots]).workspace  # pyright: ignore[reportUnknownArgumentType]
            return None if found is None else found.root
    return None


def _map_errors(name: str, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(error_text(name, exc, _root_of((*args, *kwargs.values())))) from exc

    return wrapper


def record_json(record: Any) -> str:
    """A record as the text beside `structuredContent`: compact JSON (the spec asks for the serialised JSON; the
    SDK indents it, which doubles the characters of a list of small objects)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def record_text(record: dict[str, Any], text_field: str | None) -> list[ContentBlock]:
    """The text content of a structured result: the record as compact JSON or, for a tool whose answer is prose,
    the prose as plain text (`text_field`: a string, or a list of lines joined by newlines) followed by the rest
    of the record as compact JSON, so a client that shows only text loses nothing."""
    prose = _prose(record.get(text_field)) if text_field is not None else None
    if prose is None:
        return [TextContent(type="text", text=record_json(record))]
    rest = {key: value for key, value in record.items() if key != text_field}
    return [TextContent(type="text", text=prose), TextContent(type="text", text=record_json(rest))]


def _prose(value: object) -> str | None:
    """A field's value as plain text: a string, or a list of lines; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        lines = cast(list[object], value)
        if all(isinstance(line, str) for line in lines):
            return "\n".join(cast(list[str], lines))
    return None


def _restates(text: str, record: dict[str, Any]) -> bool:
    """Whether a text block is the structured record serialised (by the SDK, indented, or by the adapter)."""
    if not text.startswith("{"):
        return False
    try:
        return json.loads(text) == record
    except ValueError:
        return False


def compact_result(result: CallToolResult, text_field: str | None) -> CallToolResult:
    """The same answer with every text block that restates its structured record replaced by `record_text`;
    other blocks (an image, a sentence) stay as they are, in their place."""
    record = result.structured_content
    if record is None or result.is_error:
        return result
    content: list[ContentBlock] = []
    for block in result.content:
        if isinstance(block, TextContent) and _restates(block.text, record):
            content.extend(record_text(record, text_field))
        else:
            content.append(block)
    return result.model_copy(update={"content": content})


class MappedTool(Tool):
    """A tool whose every failure reaches the model as a sentence, including those outside its function: a
    resolver that fails, a result that does not convert to the output schema, and arguments that fail the input
    schema (the SDK sends pydantic's whole report, input values and documentation links included).

    Its answers carry the structured record once in full (`structuredContent`) and once as compact text
    (`compact_result`); `text_field` names the field whose prose is the text instead."""

    text_field: str | None = pydantic.Field(None, exclude=True)

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        try:
            result = await super().run(arguments, context, convert_result=False)
            if not convert_result:
                return result
            return self._answer(result)
        except UnexpectedToolError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise ToolError(f"Error executing tool {self.name}: {error_text(self.name, cause)}") from cause
        except ToolError as exc:
            if isinstance(exc.__cause__, pydantic.ValidationError):  # arguments that fail the input schema
                raise ToolError(
                    f"Error executing tool {self.name}: {_validation_text(exc.__cause__)}"
                ) from exc.__cause__
            raise

    def _answer(self, result: Any) -> Any:
        """The answer to send. A result of the declared output model becomes `structuredContent` plus its compact
        text at once (the SDK would dump it indented first, to be parsed back here); anything else goes through
        the SDK's conversion, then `compact_result`. A conversion that fails is a crash, answered as one."""
        model = self.fn_metadata.output_model
        try:
            if isinstance(model, type) and isinstance(result, model) and not self.fn_metadata.wrap_output:
                record = result.model_dump(mode="json", by_alias=True)  # pyright: ignore[reportUnknownMemberType]
                return CallToolResult(content=record_text(record, self.text_field), structured_content=record)
            converted = self.fn_metadata.convert_result(result)
        except Exception as exc:
            raise ToolError(f"Error executing tool {self.name}: {error_text(self.name, exc)}") from exc
        return compact_result(converted, self.text_field) if isinstance(converted, CallToolResult) else converted


@dataclass(frozen=True)
class ToolSpec:
    """One adapter as registered: enough to build the SDK's `Tool`, which costs its schemas."""

    fn: Callable[..., Awaitable[Any]]
    name: str
    title: str | None
    description: str
    annotations: ToolAnnotations
    text_field: str | None = None
    """The result field whose prose is the answer's text (see `record_text`); None: the record as compact JSON."""

    def build(self) -> Tool:
        tool = MappedTool.from_function(
            _map_errors(self.name, self.fn),
            name=self.name,
            title=self.title,
            description=self.description,
            annotations=self.annotations,
        )
        assert isinstance(tool, MappedTool)  # from_function builds `cls`
        tool.text_field = self.text_field
        return compact_tool(tool)


@dataclass(frozen=True)
class PromptSpec:
    """A recipe as registered: the SDK's `Prompt` is built from it on first use."""

    fn: Callable[..., Awaitable[Any]]
    name: str
    title: str | None
    description: str

    def build(self) -> Prompt:
        return Prompt.from_function(_map_prompt_errors(self.name, self.fn), name=self.name, title=self.title,
                                    description=self.description)  # fmt: skip


@dataclass(frozen=True)
class ResourceSpec:
    """A resource as registered: `fn` takes `ctx` and the template's variables by name, or, for a fixed URI
    (`params` empty), the server's `AppState` alone."""

    fn: Callable[..., Awaitable[Any]]
    uri_template: str
    name: str
    title: str | None
    description: str
    mime_type: str
    params: tuple[str, ...]


CompletionHook = Callable[[AppState, Workspace, str], Awaitable[list[str]]]
"""Completes one argument (a run id, a paper id) from its typed prefix, in the workspace: the candidates."""


class Registry:
    """Collects a family's tools, prompts, resource templates and argument completions; the server builds them
    (or lists them from the stored listing) for the families its toolsets turn on."""

    def __init__(self) -> None:
        self.specs: list[ToolSpec] = []
        self.prompts: list[PromptSpec] = []
        self.resources: list[ResourceSpec] = []
        self.completions: dict[str, CompletionHook] = {}

    def tool(
        self, annotations: ToolAnnotations, *, title: str | None = None, text_field: str | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """A tool; `text_field` names the result field (a string, or a list of lines) that is its answer's text,
        for a tool whose answer is prose (a log, a paper's text, a file): see `record_text`."""

        def decorator(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            # cleandoc: the SDK sends the docstring as it is, indentation included, on every tools/list
            description = inspect.cleandoc(fn.__doc__ or "")
            self.specs.append(ToolSpec(fn, fn.__name__, title, description, annotations, text_field))
            return fn

        return decorator

    def prompt(self, *, title: str | None = None) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """A recipe: its arguments are the function's (short, each with a `Field(description=...)`), its text the
        function's result; a `ResearchError` it raises reaches the client as its message."""

        def decorator(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            self.prompts.append(PromptSpec(fn, fn.__name__, title, inspect.cleandoc(fn.__doc__ or "")))
            return fn

        return decorator

    def resource(
        self, uri_template: str, *, mime_type: str = "text/plain", title: str | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """A resource template (`run://{run_id}`): the function takes `ctx` and each variable as a `str`, and
        returns text or bytes; resources are read-only, so `--read-only` keeps them. A URI without variables is
        one fixed resource (listed in `resources/list`): the SDK gives it no request context, so its function
        takes the server's `state` alone."""

        def decorator(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            names = tuple(inspect.signature(fn).parameters)
            variables = set(re.findall(r"{(\w+)}", uri_template))
            params = tuple(name for name in names if name != "ctx") if variables else ()
            if (set(params) != variables) if variables else (names != ("state",)):
                raise TypeError(f"{fn.__name__}: parameters {names} do not match the variables of {uri_template}")
            description = inspect.cleandoc(fn.__doc__ or "")
            self.resources.append(ResourceSpec(fn, uri_template, fn.__name__, title, description, mime_type, params))
            return fn

        return decorator

    def completion(self, argument: str) -> Callable[[CompletionHook], CompletionHook]:
        """Complete the prompt and resource arguments named `argument` (in any family) with this hook."""

        def decorator(fn: CompletionHook) -> CompletionHook:
            self.completions[argument] = fn
            return fn

        return decorator


ToolRegistry = Registry


def _map_prompt_errors(name: str, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A prompt's failure as a protocol error carrying the sentence (the SDK would say only 'Error rendering')."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except MCPError:
            raise
        except Exception as exc:
            code = INVALID_PARAMS if isinstance(exc, ResearchError | pydantic.ValidationError) else INTERNAL_ERROR
            raise MCPError(code=code, message=error_text(name, exc)) from exc

    return wrapper


def map_resource_errors(name: str, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A resource's failure as the SDK's `ResourceError` carrying the sentence; a missing run or paper as
    `ResourceNotFoundError`."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ResourceError:
            raise
        except (RunNotFoundError, PaperNotFoundError, NotFoundError) as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except Exception as exc:
            raise ResourceError(error_text(name, exc)) from exc

    return wrapper
