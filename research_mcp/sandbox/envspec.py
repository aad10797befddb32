"""An environment's specification, read: its requirements, its key, and the script that builds it.

A specification is a list of requirements: given as text, read from a workspace file (requirements*.txt,
pyproject.toml's dependencies, environment.yml's `pip:` section, setup.cfg, setup.py) or from a repository
folder, whose dependency files are found as `repo_summary` finds them (`depfiles.dependency_paths`). Its id is the
sha256 of the sorted requirements, the interpreter, the backend, the platform, the installer, the torch variant
and, on docker, the image: the same inputs find the same environment, with no build and no request.

Also here: which package an installer's failure blames, and what a build takes from the host (uv, the CA bundle,
the index and proxy settings, find-links). Everything but file lookups is pure; building and keeping environments
is envs.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import sys
from pathlib import Path, PurePosixPath

from pydantic import Field

from research_mcp.depfiles import DependencyFile, dependency_paths, parse_dependency_file
from research_mcp.errors import BadInputError, PathError
from research_mcp.model import ToolModel
from research_mcp.workspace import Workspace

__all__ = [
    "HOST_CA",
    "EnvSpec",
    "build_script",
    "ca_bundle",
    "env_key",
    "failed_package",
    "find_links",
    "find_uv",
    "index_env",
    "read_spec",
    "requirement_lines",
    "torch_variant",
    "wants_torch",
]

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
_MAX_INCLUDES = 8
_TORCH = frozenset({"torch", "torchvision", "torchaudio"})
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PASSED_VARS = (
    "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
)  # fmt: skip
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


# --- the specification (pure) ---------------------------------------------------------------------------------


class EnvSpec(ToolModel):
    """What an environment is built from."""

    requirements: list[str] = Field(description="Requirement lines, sorted, without duplicates.")
    sources: list[str] = Field(description="Where they came from: workspace files, or 'text'.")
    note: str | None = None


def requirement_lines(text: str, where: str) -> list[str]:
    """The requirement lines of a requirements text: comments and blank lines dropped; options that would reach
    outside the specification (-r, -c, -e, local paths) refused, since the build sees none of the workspace."""
    found: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-") or line.startswith((".", "/", "~", "file:")):
            raise BadInputError(
                f"{where} line {number} ({line[:80]!r}) is an option or a local path, which an environment build "
                "cannot follow: give requirement lines only (name, version pins, extras, markers or https URLs)."
            )
        if not (_NAME.match(line) or line.startswith(("git+https://", "https://"))):
            raise BadInputError(f"{where} line {number} ({line[:80]!r}) is not a requirement.")
        found.append(" ".join(line.split()))
    return found


def _name(requirement: str) -> str:
    match = _NAME.match(requirement)
    return match.group(1).lower().replace("_", "-") if match else requirement


def _declared(dep: DependencyFile) -> list[str]:
    """What a parsed dependency file asks pip to install (environment.yml: its pip section only)."""
    return dep.optional.get("pip", []) if dep.kind == "conda" else dep.dependencies


_PREFERENCE = ("requirements.txt", "pyproject.toml", "setup.cfg", "setup.py", "environment.yml", "environment.yaml")


def read_spec(ws: Workspace, requirements: str | None, path: str | None) -> EnvSpec:
    """The specification from a requirements text, a workspace file, or a repository folder of the workspace."""
    if (requirements is None) == (path is None):
        raise BadInputError("Give either requirements (the text of a requirements file) or path (a workspace file or "
                            "repository folder), not both and not neither.")  # fmt: skip
    if requirements is not None:
        body, skipped, includes = _options(requirements)
        if includes:
            raise BadInputError(f"requirements text cannot include files ({includes[0]!r}): give path instead.")
        return _spec(requirement_lines(body, "requirements"), ["text"], _skipped_note(skipped))
    assert path is not None
    try:
        target = ws.resolve(path)
    except PathError as exc:
        raise BadInputError(f"path {path!r}: {exc}") from exc
    if target.is_dir():
        return _folder_spec(ws, target)
    if not target.is_file():
        raise BadInputError(f"path {path!r} is neither a file nor a folder of the workspace.")
    return _file_spec(ws, target)


def _rel(ws: Workspace, target: Path) -> str:
    return target.relative_to(ws.root).as_posix()


def _file_spec(ws: Workspace, target: Path) -> EnvSpec:
    rel = _rel(ws, target)
    name = target.name.lower()
    text = _read(target, rel)
    if name.endswith((".txt", ".in")):
        lines, sources, skipped = _requirements_file(ws, target, text, rel, depth=0)
        return _spec(lines, sources, _skipped_note(skipped))
    if name not in _PREFERENCE:
        raise BadInputError(f"{rel} is not a dependency file: give a requirements*.txt, pyproject.toml, "
                            "environment.yml, setup.cfg or setup.py, or a repository folder.")  # fmt: skip
    dep = parse_dependency_file(rel, text)
    if dep.note and not _declared(dep):
        raise BadInputError(f"{rel} {dep.note}.")
    return _spec(_declared(dep), [rel], _conda_note(dep))


def _options(text: str) -> tuple[str, list[str], list[str]]:
    """A requirements text split: its requirement lines, the option lines a build does not follow (its own index
    settings apply; -e and -c name local things), and the files it includes (-r)."""
    body: list[str] = []
    skipped: list[str] = []
    includes: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        option, _, rest = line.partition(" ")
        if option in ("-r", "--requirement") or line.startswith("--requirement="):
            includes.append(line.split("=", 1)[1] if line.startswith("--requirement=") else rest.strip())
        elif line.startswith("-"):
            skipped.append(line)
        else:
            body.append(raw)
    return "\n".join(body), skipped, includes


def _skipped_note(skipped: list[str]) -> str | None:
    if not skipped:
        return None
    shown = "; ".join(line[:80] for line in skipped[:5])
    return f"options not followed (the build uses its own index settings; -e/-c name local things): {shown}"


def _requirements_file(
    ws: Workspace, target: Path, text: str, rel: str, depth: int
) -> tuple[list[str], list[str], list[str]]:
    """A requirements file's lines with the files it includes (-r) inlined, inside the workspace only; with its
    sources and the options skipped."""
    body, skipped, includes = _options(text)
    lines: list[str] = []
    sources = [rel]
    for include in includes:
        if depth >= _MAX_INCLUDES:
            raise BadInputError(f"{rel} includes requirement files more than {_MAX_INCLUDES} deep.")
        try:
            child = ws.resolve(str(PurePosixPath(rel).parent / include))
        except PathError as exc:
            raise BadInputError(f"{rel} includes {include!r}: {exc}") from exc
        child_rel = _rel(ws, child)
        more, seen, dropped = _requirements_file(ws, child, _read(child, child_rel), child_rel, depth + 1)
        lines += more
        sources += [s for s in seen if s not in sources]
        skipped += dropped
    return [*lines, *requirement_lines(body, rel)], sources, skipped


def _folder_spec(ws: Workspace, folder: Path) -> EnvSpec:
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        rel_dir = Path(dirpath).relative_to(folder).as_posix()
        depth = 0 if rel_dir == "." else rel_dir.count("/") + 1
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("node_modules", "venv"))
        if depth >= 2:
            dirnames[:] = []
        files += [name if rel_dir == "." else f"{rel_dir}/{name}" for name in filenames]
    found = dependency_paths(files, 12)
    rel_folder = _rel(ws, folder)
    if not found:
        raise BadInputError(
            f"{rel_folder} has no dependency file (requirements*.txt, pyproject.toml, setup.cfg, setup.py, "
            "environment.yml) in its top two levels: give requirements as text instead."
        )
    top = [p for p in found if "/" not in p] or found

    def rank(rel: str) -> tuple[int, str]:
        name = rel.rsplit("/", 1)[-1].lower()
        return (_PREFERENCE.index(name) if name in _PREFERENCE else len(_PREFERENCE), rel)

    for rel in sorted(top, key=rank):
        target = folder / rel
        text = _read(target, f"{rel_folder}/{rel}")
        if rel.lower().endswith((".txt", ".in")):
            lines, sources, skipped = _requirements_file(ws, target, text, _rel(ws, target), depth=0)
            if lines:
                return _spec(lines, sources, _skipped_note(skipped))
            continue
        dep = parse_dependency_file(rel, text)
        if _declared(dep):
            return _spec(_declared(dep), [_rel(ws, target)], _conda_note(dep))
    raise BadInputError(f"The dependency files of {rel_folder} ({', '.join(top)}) declare no Python packages.")


def _conda_note(dep: DependencyFile) -> str | None:
    if dep.kind != "conda" or not dep.dependencies:
        return None
    shown = ", ".join(dep.dependencies[:6])
    return f"conda packages not installed (only the pip section is): {shown}"


def _read(target: Path, rel: str) -> str:
    try:
        return target.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadInputError(f"Cannot read {rel}: {exc.strerror}.") from exc


def _spec(lines: list[str], sources: list[str], note: str | None = None) -> EnvSpec:
    unique = sorted(dict.fromkeys(" ".join(line.split()) for line in lines))
    if not unique:
        raise BadInputError(f"{', '.join(sources)} lists no requirement: there is nothing to install.")
    return EnvSpec(requirements=unique, sources=sources, note=note)


def env_key(spec: EnvSpec, *, python: str, backend: str, image: str | None, installer: str, torch: str | None) -> str:
    """The sha256 naming an environment: the same inputs give the same key on any machine of this platform."""
    data = {
        "requirements": spec.requirements,
        "python": python,
        "backend": backend,
        "platform": f"{sys.platform}-{platform.machine()}",
        "image": image,
        "installer": installer,
        "torch": torch,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def torch_variant(wanted: bool, *, backend: str, has_gpu: bool, links: bool) -> str | None:
    """Which torch a build installs: None (not asked for); "index" (the configured find-links folder decides);
    "cpu" where the backend has no GPU; "auto" (uv matches the driver it sees) where it has; "pypi" (PyPI's own
    CUDA build) on a Slurm cluster with GPUs, whose nodes' driver is not visible where the build runs."""
    if not wanted:
        return None
    if links:
        return "index"
    if not has_gpu:
        return "cpu"
    return "pypi" if backend == "slurm" else "auto"


def wants_torch(spec: EnvSpec) -> bool:
    return any(_name(line) in _TORCH for line in spec.requirements)


# --- the installer's failure (pure) ----------------------------------------------------------------------------

_FAILED = (
    re.compile(r"Because ([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])? was not found in the package registry"),
    re.compile(r"Because there (?:is|are) no (?:version|versions) of ([A-Za-z0-9][A-Za-z0-9._-]*)"),
    re.compile(r"Failed to (?:build|download|download and build|fetch|resolve) `([^`=<>~! ]+)"),
    re.compile(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)"),
    re.compile(r"satisfies the requirement ([A-Za-z0-9][A-Za-z0-9._-]*)"),
    re.compile(r"Failed building wheel for ([A-Za-z0-9][A-Za-z0-9._-]*)"),
)


def failed_package(log_tail: str, requirements: list[str]) -> str | None:
    """The package the installer's last lines blame, else the first requirement they name, else None."""
    for pattern in _FAILED:
        found = pattern.findall(log_tail)
        if found:
            return str(found[-1])
    lower = log_tail.lower()
    return next((_name(r) for r in requirements if re.search(rf"\b{re.escape(_name(r))}\b", lower)), None)


# --- what a build needs from the host (pure but for file lookups) -----------------------------------------------


def find_uv() -> str | None:
    """The uv binary: beside this interpreter (the `uv` dependency puts it in the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def ca_bundle(setting: Path | None) -> Path | None:
    """The CA bundle builds trust: the setting (RESEARCH_MCP_CA_BUNDLE), else the host's system bundle."""
    if setting is not None:
        if not setting.is_file():
            raise BadInputError(f"RESEARCH_MCP_CA_BUNDLE names {setting}, which is not a file.")
        return setting
    return HOST_CA if HOST_CA.is_file() else None


def _http(value: str) -> bool:
    return all(part.startswith(("http://", "https://")) for part in value.split())


def index_env(host: dict[str, str], installer: str) -> dict[str, str]:
    """The user's package index and proxy settings a build passes on (index URLs only when http(s)); pip's index
    settings are given to uv too when uv has none of its own."""
    env = {name: host[name] for name in _PASSED_VARS if host.get(name) and _http(host[name])}
    env |= {name: host[name] for name in _PROXY_VARS if host.get(name)}
    if installer == "uv":
        if "PIP_INDEX_URL" in env and not {"UV_INDEX_URL", "UV_DEFAULT_INDEX"} & env.keys():
            env["UV_DEFAULT_INDEX"] = env["PIP_INDEX_URL"]
        if "PIP_EXTRA_INDEX_URL" in env and not {"UV_EXTRA_INDEX_URL", "UV_INDEX"} & env.keys():
            env["UV_EXTRA_INDEX_URL"] = env["PIP_EXTRA_INDEX_URL"]
    return env


def find_links(host: dict[str, str]) -> list[str]:
    """Wheel folders and pages the user points installers at (UV_FIND_LINKS, PIP_FIND_LINKS): existing local
    folders (bound read-only into the build at the same path) and http(s) URLs."""
    found: list[str] = []
    for name in ("UV_FIND_LINKS", "PIP_FIND_LINKS"):
        for item in host.get(name, "").replace(",", " ").split():
            if (item.startswith(("http://", "https://")) or (item.startswith("/") and Path(item).is_dir())) and (
                item not in found
            ):
                found.append(item)
    return found


def build_script(*, installer: str, python: str, root: str, torch: str | None, links: list[str]) -> str:
    """The build's shell script: make the environment at `root`, install requirements.in, then write the lock,
    the size and, last, the ready marker into $RESEARCH_OUT. Of the `torch_variant`s, uv is told "cpu" and "auto";
    "index" and "pypi" leave torch to the indexes."""
    q = shlex.quote
    extra = " ".join(f"--find-links {q(link)}" for link in links)
    if installer == "uv":
        torch_flag = f" --torch-backend {torch}" if torch in ("cpu", "auto") else ""
        steps = [
            f'"$UV" venv --no-progress -q -p {q(python)} {q(root)}',
            f'"$UV" pip install --no-progress -p {q(root)}/bin/python -r requirements.in {extra}{torch_flag}'.rstrip(),
            f'"$UV" pip freeze -q -p {q(root)}/bin/python > "$RESEARCH_OUT/lock.txt"',
        ]
    else:
        steps = [
            f"{q(python)} -m venv {q(root)}",
            f"{q(root)}/bin/pip install --disable-pip-version-check --no-input -r requirements.in {extra}".rstrip(),
            f'{q(root)}/bin/pip freeze --disable-pip-version-check > "$RESEARCH_OUT/lock.txt"',
        ]
    return "\n".join(
        ["set -e", *steps, f'du -sk {q(root)} | cut -f1 > "$RESEARCH_OUT/size_kb"', ': > "$RESEARCH_OUT/ready"', ""]
    )
