"""Safe unpacking of a repository tarball: every member is checked before anything is written.

The archive is read twice. The first pass looks at every header and refuses the whole archive on the first
member that breaks a rule (absolute path, `..`, a name outside the archive's single top folder, a link leading
outside, a hard link to something not already in the archive, a device or FIFO, a duplicate name, too many
members, too many bytes in all: sizes are the headers' logical sizes, so a sparse member counts whole). The second
pass extracts with Python's own `data` extraction filter as a second guard, stripping the top folder, into a
folder the caller renames into place only when everything is there.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from research_mcp.errors import RepoError, UnsafeArchiveError

__all__ = ["ArchiveLimits", "UnpackedArchive", "unpack_tarball"]


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_unpacked_bytes: int
    max_files: int
    deadline: float | None = None
    """`time.monotonic()` value after which unpacking stops with an error."""


@dataclass(frozen=True, slots=True)
class UnpackedArchive:
    files: int
    unpacked_bytes: int
    commit: str | None
    """The commit id GitHub writes into the archive's global header (`comment`), when present."""


def _refuse(name: str, why: str) -> UnsafeArchiveError:
    shown = name if len(name) <= 120 else name[:117] + "..."
    return UnsafeArchiveError(f"The archive was refused and nothing was kept: member {shown!r} {why}.")


def _clean(name: str) -> str:
    """The member name, checked: relative, no `..`, no NUL or backslash tricks; '' for the top folder itself."""
    if "\x00" in name:
        raise _refuse(name, "has a NUL byte in its name")
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        raise _refuse(name, "has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise _refuse(name, "has '..' in its path")
    return "/".join(parts)


def _inside(target: str) -> bool:
    """Whether a normalised relative path stays inside the root."""
    return target != ".." and not target.startswith("../") and not target.startswith("/")


@dataclass
class _Plan:
    top: str
    files: int
    unpacked_bytes: int
    commit: str | None


def _plan(tar: tarfile.TarFile, limits: ArchiveLimits) -> _Plan:
    """Check every header; the archive's single top folder and its totals."""
    top: str | None = None
    seen: dict[str, str] = {}  # stripped name -> kind ("file", "dir", "link")
    files = 0
    total = 0
    count = 0
    for member in tar:
        count += 1
        if count > limits.max_files:
            raise UnsafeArchiveError(
                f"The archive has more than {limits.max_files} members and was refused; nothing was kept. "
                "Raise RESEARCH_MCP_MAX_REPO_FILES if this repository is really that large."
            )
        if limits.deadline is not None and count % 1024 == 0 and time.monotonic() > limits.deadline:
            raise RepoError("Unpacking took too long and was stopped; nothing was kept. Try again.")
        name = _clean(member.name)
        head, _, rest = name.partition("/")
        if top is None:
            top = head
        if not head or head != top:
            raise _refuse(member.name, "is not inside the archive's single top folder")
        if not rest:
            if not member.isdir():
                raise _refuse(member.name, "is the top folder but not a folder")
            continue
        if rest in seen:
            raise _refuse(member.name, "appears twice")
        parent = posixpath.dirname(rest)
        while parent:
            if seen.get(parent) == "link":
                raise _refuse(member.name, "lies under a symbolic link")
            parent = posixpath.dirname(parent)
        if member.issym():
            target = member.linkname
            if not target or target.startswith("/") or "\x00" in target:
                raise _refuse(member.name, f"is a link to the absolute path {target!r}")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rest), target))
            if not _inside(resolved):
                raise _refuse(member.name, f"is a link leading outside the repository ({target!r})")
            seen[rest] = "link"
        elif member.islnk():
            target = _clean(member.linkname)
            t_head, _, t_rest = target.partition("/")
            if t_head != top or seen.get(t_rest) != "file":
                raise _refuse(member.name, f"is a hard link to {member.linkname!r}, not to a file before it")
            seen[rest] = "file"
            files += 1
        elif member.isdir():
            seen[rest] = "dir"
        elif member.isreg():
            if member.size < 0:
                raise _refuse(member.name, "has a negative size")
            total += member.size
            if total > limits.max_unpacked_bytes:
                raise UnsafeArchiveError(
                    f"The archive unpacks to more than {limits.max_unpacked_bytes} bytes (member {member.name!r} "
                    f"alone is {member.size}) and was refused; nothing was kept. Raise "
                    "RESEARCH_MCP_MAX_REPO_UNPACKED_BYTES if the repository is really that large."
                )
            seen[rest] = "file"
            files += 1
        else:
            raise _refuse(member.name, "is a device, FIFO or other special file")
    if top is None:
        raise UnsafeArchiveError("The archive is empty; nothing was kept.")
    comment = tar.pax_headers.get("comment")
    commit = comment.strip() if comment and len(comment.strip()) == 40 else None
    return _Plan(top, files, total, commit)


def unpack_tarball(archive: Path, dest: Path, limits: ArchiveLimits) -> UnpackedArchive:
    """Unpack a .tar.gz (or plain .tar) into the new folder `dest`, without its single top folder.

    Raises `UnsafeArchiveError` (nothing written into `dest` beyond what the caller removes) when a rule is broken.
    """
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            plan = _plan(tar, limits)  # reads every header once; extraction below reuses them
            prefix = plan.top + "/"

            def strip(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
                name = _clean(member.name)
                if name == plan.top:
                    return None
                linkname = _clean(member.linkname)[len(prefix) :] if member.islnk() else member.linkname
                renamed = member.replace(name=name[len(prefix) :], linkname=linkname, deep=False)
                if limits.deadline is not None and time.monotonic() > limits.deadline:
                    raise RepoError("Unpacking took too long and was stopped; nothing was kept. Try again.")
                return tarfile.data_filter(renamed, path)

            dest.mkdir(parents=False, exist_ok=False)
            try:
                tar.extractall(dest, filter=strip)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"The archive was refused and nothing was kept: {exc}.") from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None and exc.errno in (28, 122):  # ENOSPC, EDQUOT
            raise RepoError(f"The disk is full while unpacking ({exc}); nothing was kept. Free some space.") from exc
        raise UnsafeArchiveError(f"The archive is damaged or not a tarball ({exc}); nothing was kept.") from exc
    return UnpackedArchive(files=plan.files, unpacked_bytes=plan.unpacked_bytes, commit=plan.commit)
