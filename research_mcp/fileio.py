"""Writing workspace files whole: a temporary file beside the target, then one rename.

Every tool that writes a file the user keeps (write_file, cite's .bib, figures, tables, a paper's main.tex)
goes through here, so each gets the same two properties: a reader never sees half a file, and the file gets the
mode an editor would give it. `tempfile.mkstemp` makes 0600 files: renamed into place as they are, a .bib or a
figure would be unreadable to the unprivileged user the LaTeX sandbox runs as. A file that existed keeps its mode.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Generator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

__all__ = ["atomic_write", "new_file_mode", "replacing", "sha256_of"]


@cache
def _umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread, for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def new_file_mode() -> int:
    """The mode `open()` would give a new file here (0644 under the usual umask)."""
    return 0o666 & ~_umask()


@contextmanager
def replacing(target: Path) -> Generator[Path]:
    """A temporary path beside `target` to write in full; on a clean exit it replaces `target` in one rename.

    The file keeps `target`'s mode when it existed, else gets `new_file_mode()`; on an error it is removed and
    `target` is untouched."""
    mode = target.stat().st_mode & 0o7777 if target.exists() else new_file_mode()
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:60]}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(target: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace `target` with `data` whole; `durable` also syncs it to disk before the rename."""
    with replacing(target) as tmp, tmp.open("wb") as out:
        out.write(data)
        if durable:
            out.flush()
            os.fsync(out.fileno())


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's contents, read in chunks (hashlib's own loop)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
