"""The code a run ran: a snapshot of the workspace (or a folder of it) plus inline files, hashed before it starts.

The snapshot leaves out the server's own state (`.research/`), earlier runs (`runs/`), version control and
caches, and refuses past a size cap naming the biggest files, so the model can trim or move data out of the way.
The hash is over every file's relative path and content, so two runs of the same code share it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from research_mcp.errors import BadInputError, SandboxError
from research_mcp.fileio import sha256_of
from research_mcp.workspace import Workspace, resolve_path

__all__ = ["EXCLUDED", "Snapshot", "copy_snapshot", "manifest", "take_snapshot"]

EXCLUDED = frozenset(
    {".research", "runs", ".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", ".mypy_cache",
     ".pytest_cache", ".ruff_cache", ".tox", ".venv", "venv", "node_modules", "wandb"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Snapshot:
    code_hash: str
    files: int
    size_bytes: int


def manifest(root: Path) -> dict[str, str]:
    """Every regular file under `root` (relative posix path) with its sha256; symlinks are recorded by target."""
    out: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "symlink:" + os.readlink(path)
            elif path.is_file():
                out[rel] = sha256_of(path)
    return out


def _collect(source: Path, max_bytes: int, max_files: int, skip: Path | None = None) -> list[tuple[Path, str, int]]:
    """(absolute path, relative path, size) of every file to copy, in sorted order; refuses past the caps. `skip`
    is a folder left out wherever it sits (the workspace's datasets/: runs read it at /data)."""
    found: list[tuple[Path, str, int]] = []
    total = 0
    for folder, dirs, names in os.walk(source):
        dirs[:] = sorted(
            d for d in dirs if d not in EXCLUDED and not Path(folder, d).is_symlink() and Path(folder, d) != skip
        )
        for name in sorted(names):
            path = Path(folder, name)
            info = path.lstat()
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
                continue  # sockets, FIFOs, devices are never code
            found.append((path, path.relative_to(source).as_posix(), info.st_size))
            total += info.st_size
            if len(found) > max_files:
                raise SandboxError(
                    f"The code folder has more than {max_files} files; point workdir at the project's code, "
                    "or move data sets out of it (runs read data through their own paths)."
                )
    if total > max_bytes:
        biggest = sorted(found, key=lambda item: -item[2])[:5]
        named = ", ".join(f"{rel} ({size / 2**20:.1f} MiB)" for _, rel, size in biggest)
        raise SandboxError(
            f"The code to snapshot is {total / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB cap. "
            f"Biggest files: {named}. Move data and checkpoints out of the code folder or pass a smaller workdir."
        )
    return found


def _inline_path(name: str) -> str:
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ".." in parts or "\x00" in name:
        raise BadInputError(f"Inline file name {name!r} must be a relative path without '..'.")
    return "/".join(parts)


def take_snapshot(
    ws: Workspace,
    source: str | None,
    files: dict[str, str] | None,
    code_dir: Path,
    *,
    max_bytes: int,
    max_files: int = 20_000,
) -> Snapshot:
    """Copy `source` (a workspace folder, or nothing) and `files` (relative name -> text) into `code_dir`.

    Symlinks inside the copied tree are kept only when they point inside it; others are refused.
    """
    code_dir.mkdir(parents=True)
    if source is not None:
        top = resolve_path(ws.root, source, must_exist=True)
        if not top.is_dir():
            raise BadInputError(f"workdir {source!r} is a file; give the folder that holds the code.")
        for path, rel, _ in _collect(top, max_bytes, max_files, ws.root / "datasets"):
            target = code_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                link = os.readlink(path)
                landing = (path.parent / link).resolve()
                if not landing.is_relative_to(top.resolve()):
                    raise SandboxError(f"{rel} is a symlink to {link!r}, outside the code folder; copy the file in.")
                target.symlink_to(link)
            else:
                shutil.copy2(path, target, follow_symlinks=False)
    for name, text in (files or {}).items():
        target = code_dir / _inline_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    size = sum(p.stat().st_size for p in code_dir.rglob("*") if p.is_file() and not p.is_symlink())
    if size > max_bytes:
        raise SandboxError(f"The code with its inline files is over the {max_bytes / 2**20:.0f} MiB cap.")
    return _hashed(code_dir, size)


def _hashed(code_dir: Path, size: int) -> Snapshot:
    listing = manifest(code_dir)
    digest = hashlib.sha256()
    for rel, file_hash in sorted(listing.items()):
        digest.update(f"{rel}\x00{file_hash}\n".encode())
    return Snapshot(code_hash=digest.hexdigest(), files=len(listing), size_bytes=size)


def copy_snapshot(source: Path, code_dir: Path) -> Snapshot:
    """An earlier run's snapshot (its code/ folder) copied as it is, hashed as `take_snapshot` hashes."""
    if not source.is_dir():
        raise SandboxError(f"The earlier run's code folder {source} is gone; its code cannot be run again.")
    shutil.copytree(source, code_dir, symlinks=True)
    size = sum(p.stat().st_size for p in code_dir.rglob("*") if p.is_file() and not p.is_symlink())
    return _hashed(code_dir, size)
