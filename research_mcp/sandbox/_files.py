"""What a run's folder holds: the files it changed, and the disk it uses (read on every run_status and by the
disk watchdog, so neither hashes nor follows symlinks)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_DIRS", "changed_files", "folder_bytes", "output_files"]

CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".mypy_cache", ".ruff_cache"})
"""Folders of caches a run leaves behind, never among its listed outputs."""


def output_files(outputs: Path) -> list[str]:
    """Regular files under outputs/ (symlinks not followed, caches left out), relative to it."""
    found: list[str] = []
    for folder, dirs, names in os.walk(outputs):
        dirs[:] = sorted(d for d in dirs if d not in CACHE_DIRS)
        for name in sorted(names):
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                found.append(path.relative_to(outputs).as_posix())
    return found


def changed_files(code: Path, work: Path) -> list[str]:
    """Files in work/ that are new, or differ from code/ in size or mtime (work/ was copied with its mtimes),
    as `work/<rel>`. No hashing: it runs on every run_status, and a snapshot may hold hundreds of MiB."""
    found: list[str] = []
    for folder, dirs, names in os.walk(work):
        dirs[:] = sorted(d for d in dirs if d not in CACHE_DIRS)
        for name in sorted(names):
            path = Path(folder, name)
            rel = path.relative_to(work).as_posix()
            try:
                now = path.lstat()
                before = (code / rel).lstat()
            except FileNotFoundError:
                if path.exists() or path.is_symlink():
                    found.append(f"work/{rel}")
                continue
            if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                found.append(f"work/{rel}")
    return sorted(found)


def folder_bytes(paths: list[Path]) -> int:
    """Bytes used by files under these paths (a file or a folder each), symlinks not followed."""
    total = 0
    for top in paths:
        if top.is_file():
            total += top.stat().st_blocks * 512
            continue
        for folder, _, names in os.walk(top):
            for name in names:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_blocks * 512
                except OSError:
                    continue  # the run deleted it meanwhile
    return total
