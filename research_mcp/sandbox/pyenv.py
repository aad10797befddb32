"""Python environments a run can use: a virtualenv or conda env, bound read-only at its own path.

A researcher's packages live in an environment (`.venv` made by `python -m venv` or uv, a conda env), not in
the sandbox's system Python. A run names one: a folder of the workspace (`.venv`), or a name the user listed
in the `python_envs` setting (`torch = "/opt/envs/torch"`), which is the only way to reach an environment
outside the workspace: the model cannot point the sandbox at arbitrary host folders. The environment is
bound read-only at the same absolute path (its scripts and `pyvenv.cfg` hold absolute paths), together
with the interpreter a virtualenv was made from (`home` in `pyvenv.cfg`) when that lives outside `/usr`.
`PATH` starts with its `bin/`, and `VIRTUAL_ENV` is set, as `activate` would do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from research_mcp.errors import BadInputError, PathError
from research_mcp.model import ToolModel
from research_mcp.workspace import Workspace

__all__ = ["PythonEnv", "resolve_python_env"]

_SYSTEM_PREFIXES = ("/usr",)
"""Bound into every sandbox already (the local backend binds /usr; the image has its own)."""


class PythonEnv(ToolModel):
    """A resolved environment: what the run was asked for and the host folders it binds read-only."""

    name: str
    root: str
    ro_paths: list[str]
    base: str | None = None
    """The prefix of the interpreter a virtualenv was made from (None: conda, or not known)."""
    env_id: str | None = None
    """The prepare_env environment it is (its record under the user data folder), else None."""
    volume: str | None = None
    """The docker volume holding it, mounted read-only at `root` (a docker environment of prepare_env)."""

    def env(self, base_path: str = "/usr/local/bin:/usr/bin:/bin") -> dict[str, str]:
        return {"PATH": f"{self.root}/bin:{base_path}", "VIRTUAL_ENV": self.root}


def resolve_python_env(ws: Workspace, wanted: str, named: Mapping[str, Path]) -> PythonEnv:
    """The environment a run asked for: a name from `named`, else a folder of the workspace."""
    listed = ", ".join(sorted(named)) or "none"
    unknown = f"python_env {wanted!r} is neither a workspace folder nor a named environment (named: {listed})."
    if wanted in named:
        root = Path(os.path.realpath(named[wanted]))
        where = f"the python_envs setting's {wanted!r} ({named[wanted]})"
    else:
        try:
            root = ws.resolve(wanted)
        except PathError as exc:
            raise BadInputError(f"{unknown} {exc}") from exc
        if not root.is_dir():
            raise BadInputError(unknown)
        where = f"workspace folder {wanted!r}"
    python = root / "bin" / "python"
    if not root.is_dir() or not (python.exists() or (root / "bin" / "python3").exists()):
        raise BadInputError(
            f"{where} is not a Python environment: it has no bin/python. Make one with "
            "`python3 -m venv .venv` (or `uv venv`, or a conda env) and install the run's packages into it."
        )
    ro_paths = [str(root)]
    base = _base_prefix(root)
    if base is not None and not any(base == p or base.startswith(p + "/") for p in _SYSTEM_PREFIXES):
        ro_paths.append(base)
    return PythonEnv(name=wanted, root=str(root), ro_paths=ro_paths, base=base)


def container_problem(env: PythonEnv) -> str | None:
    """Why a Docker run could not start this environment's interpreter, or None. A container sees the image's
    `/usr` (so an interpreter under `/usr/local` or another `/usr/...` prefix of the host is not there) and the
    bound folders at their host paths, below folders the sandbox user (uid 65534) must be able to enter."""
    fix = (
        "Make the environment from the image's Python (`/usr/bin/python3 -m venv`) in a folder others can enter, "
        'or run it with backend="local".'
    )
    if env.base is not None and env.base.startswith("/usr/"):
        return (
            f"python_env {env.name!r} was made from the interpreter in {env.base}, which a Docker run cannot see "
            f"(its /usr is the image's). {fix}"
        )
    for path in env.ro_paths:
        closed = _closed_ancestor(Path(path))
        if closed is not None:
            what = "its interpreter" if path == env.base else "it"
            return (
                f"python_env {env.name!r} cannot start in a Docker run: {what} sits under {closed}, which the "
                f"sandbox user (uid 65534) cannot enter. {fix}"
            )
    return None


def _closed_ancestor(path: Path) -> str | None:
    """The first folder on the way to `path` that others may not enter (no o+x), or None."""
    for folder in [*reversed(path.parents), path]:
        try:
            if not folder.stat().st_mode & 0o001:
                return str(folder)
        except OSError:
            return str(folder)
    return None


def _base_prefix(root: Path) -> str | None:
    """The prefix of the interpreter a virtualenv was made from, from `home` in its pyvenv.cfg (None: conda)."""
    try:
        text = (root / "pyvenv.cfg").read_text(errors="replace")
    except OSError:
        return None  # a conda env or a relocated prefix carries its own interpreter
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "home":
            home = os.path.realpath(value.strip())
            return os.path.dirname(home) if os.path.basename(home) == "bin" else home
    return None
