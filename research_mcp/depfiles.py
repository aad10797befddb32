"""Dependency files read as data: requirements*.txt, pyproject.toml, setup.cfg, environment.yml, and setup.py
read with `ast` (never run). Each parser takes the file's text and returns what it declares; a file that does not
parse gives a note instead of an error, since one broken file should not hide the rest of a summary.

On the ground floor because two floors read them: a repository's summary (tools/repos) and an environment's
specification (sandbox/envs), which must find a folder's dependency files the same way."""

from __future__ import annotations

import ast
import configparser
import re
import tomllib
from typing import Any, cast

from pydantic import Field

from research_mcp.model import ToolModel

__all__ = ["DEPENDENCY_DEPTH", "DependencyFile", "dependency_paths", "is_dependency_file", "parse_dependency_file"]

_MAX_ITEMS = 200
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class DependencyFile(ToolModel):
    path: str = Field(description="Path inside the repository.")
    kind: str = Field(description="requirements, pyproject, setup.cfg, setup.py or conda.")
    requires_python: str | None = None
    dependencies: list[str] = Field(default_factory=list[str], description="Requirement strings as declared.")
    optional: dict[str, list[str]] = Field(default_factory=dict[str, list[str]], description="Extras -> requirements.")
    scripts: dict[str, str] = Field(default_factory=dict[str, str], description="Console scripts: name -> target.")
    includes: list[str] = Field(default_factory=list[str], description="Other requirement files it pulls in (-r).")
    note: str | None = Field(default=None, description="Why part of the file could not be read.")


def is_dependency_file(path: str) -> bool:
    """requirements*.txt (or any .txt/.in in a `requirements/` folder), pyproject.toml, setup.cfg, setup.py,
    environment.yml."""
    parts = path.lower().split("/")
    lower = parts[-1]
    if len(parts) >= 2 and parts[-2] == "requirements" and lower.endswith((".txt", ".in")):
        return True
    return (lower.startswith("requirements") and lower.endswith((".txt", ".in"))) or lower in (
        "pyproject.toml",
        "setup.cfg",
        "setup.py",
        "environment.yml",
        "environment.yaml",
    )


DEPENDENCY_DEPTH = 2
"""Folders below a repository's root that are searched for dependency files (`requirements/dev.txt`: 1)."""


def dependency_paths(paths: list[str], limit: int) -> list[str]:
    """The dependency files among a repository's relative file paths, shallowest first, then by name, at most
    `limit`; paths deeper than DEPENDENCY_DEPTH folders are left out."""
    found = [p for p in paths if p.count("/") <= DEPENDENCY_DEPTH and is_dependency_file(p)]
    return sorted(found, key=lambda p: (p.count("/"), p))[:limit]


def parse_dependency_file(path: str, text: str) -> DependencyFile:
    name = path.rsplit("/", 1)[-1].lower()
    try:
        if name == "pyproject.toml":
            found = _pyproject(path, text)
        elif name == "setup.cfg":
            found = _setup_cfg(path, text)
        elif name == "setup.py":
            found = _setup_py(path, text)
        elif name.startswith("environment."):
            found = _conda(path, text)
        else:
            found = _requirements(path, text)
    except (ValueError, SyntaxError, RecursionError, configparser.Error, tomllib.TOMLDecodeError) as exc:
        kind = _kind(name)
        return DependencyFile(path=path, kind=kind, note=f"could not be parsed: {exc.__class__.__name__}: {exc}"[:300])
    found.dependencies = found.dependencies[:_MAX_ITEMS]
    return found


def _kind(name: str) -> str:
    if name == "pyproject.toml":
        return "pyproject"
    if name in ("setup.cfg", "setup.py"):
        return name
    return "conda" if name.startswith("environment.") else "requirements"


def _dict(value: object) -> dict[str, Any]:
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]
    if isinstance(value, list | tuple):
        return [item.strip() for item in cast(list[Any], value) if isinstance(item, str) and item.strip()]
    return []


def _requirements(path: str, text: str) -> DependencyFile:
    found = DependencyFile(path=path, kind="requirements")
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r", "--requirement", "-c", "--constraint")):
            found.includes.append(line.split(None, 1)[-1].removeprefix("-r").strip())
        elif line.startswith("-e ") or "://" in line or line.startswith("git+"):
            found.dependencies.append(line)
        elif not line.startswith("-") and _REQ_NAME.match(line):
            found.dependencies.append(line)
    return found


def _pyproject(path: str, text: str) -> DependencyFile:
    data = tomllib.loads(text)
    found = DependencyFile(path=path, kind="pyproject")
    project = _dict(data.get("project"))
    requires = project.get("requires-python")
    found.requires_python = str(requires) if requires else None
    found.dependencies = _strings(project.get("dependencies"))
    found.optional = {str(k): _strings(v) for k, v in _dict(project.get("optional-dependencies")).items()}
    found.scripts = {str(k): str(v) for k, v in _dict(project.get("scripts")).items()}
    poetry = _dict(_dict(data.get("tool")).get("poetry"))
    for key, spec in _dict(poetry.get("dependencies")).items():
        if key == "python":
            found.requires_python = found.requires_python or str(spec)
        else:
            found.dependencies.append(f"{key} {spec}" if isinstance(spec, str) else key)
    found.scripts.update({str(k): str(v) for k, v in _dict(poetry.get("scripts")).items()})
    return found


def _entry_points(value: Any) -> dict[str, str]:
    """console_scripts from a setup.cfg section text or a setup() entry_points dict."""
    lines: list[str] = []
    if mapping := _dict(value):
        lines = _strings(mapping.get("console_scripts"))
    elif isinstance(value, str):
        lines = _strings(value)
    scripts: dict[str, str] = {}
    for line in lines:
        name, sep, target = line.partition("=")
        if sep:
            scripts[name.strip()] = target.strip()
    return scripts


def _setup_cfg(path: str, text: str) -> DependencyFile:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    found = DependencyFile(path=path, kind="setup.cfg")
    if parser.has_section("options"):
        found.dependencies = _strings(parser.get("options", "install_requires", fallback=""))
        found.requires_python = parser.get("options", "python_requires", fallback=None)
    if parser.has_section("options.extras_require"):
        found.optional = {k: _strings(v) for k, v in parser.items("options.extras_require")}
    if parser.has_section("options.entry_points"):
        found.scripts = _entry_points(parser.get("options.entry_points", "console_scripts", fallback=""))
    return found


def _setup_py(path: str, text: str) -> DependencyFile:
    """The literal arguments of the `setup(...)` call; names bound to literals at module level are followed."""
    tree = ast.parse(text, filename=path)
    names: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            names[node.targets[0].id] = node.value
    found = DependencyFile(path=path, kind="setup.py")
    call = next(
        (
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and (getattr(node.func, "id", None) == "setup" or getattr(node.func, "attr", None) == "setup")
        ),
        None,
    )
    if call is None:
        found.note = "no setup(...) call found"
        return found
    unread: list[str] = []

    def literal(expr: ast.expr) -> Any:
        if isinstance(expr, ast.Name) and expr.id in names:
            expr = names[expr.id]
        return ast.literal_eval(expr)

    for keyword in call.keywords:
        if keyword.arg not in ("install_requires", "extras_require", "python_requires", "entry_points"):
            continue
        try:
            value = literal(keyword.value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            unread.append(keyword.arg)
            continue
        if keyword.arg == "install_requires":
            found.dependencies = _strings(value)
        elif keyword.arg == "python_requires" and isinstance(value, str):
            found.requires_python = value
        elif keyword.arg == "extras_require":
            found.optional = {str(k): _strings(v) for k, v in _dict(value).items()}
        elif keyword.arg == "entry_points":
            found.scripts = _entry_points(value)
    if unread:
        found.note = f"computed at run time, not read: {', '.join(unread)}"
    return found


def _conda(path: str, text: str) -> DependencyFile:
    import yaml

    data: Any = yaml.safe_load(text)
    found = DependencyFile(path=path, kind="conda")
    mapping = _dict(data)
    if not mapping:
        found.note = "not a mapping"
        return found
    items: Any = mapping.get("dependencies") or []
    for item in cast(list[Any], items) if isinstance(items, list) else []:
        if isinstance(item, str):
            if item.split("=")[0].strip() == "python":
                found.requires_python = item.partition("=")[2].lstrip("=") or None
            else:
                found.dependencies.append(item)
        elif pip := _dict(item).get("pip"):
            found.optional["pip"] = _strings(pip)
    return found
