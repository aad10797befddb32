"""Workspace file tools for clients that have none of their own (Claude Desktop): list, read, write, edit, grep.

Every path goes through `Workspace.resolve`, so nothing here can reach outside the workspace. Every answer is
bounded: by an entry or match count and by the character budget, with an offset to continue.
"""

from __future__ import annotations

import codecs
import fnmatch
import io
import mimetypes
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import Field

from research_mcp.errors import BadInputError, BinaryFileError, FileToolError, PathError, os_errors
from research_mcp.fileio import atomic_write
from research_mcp.imaging import Picture, fit_image
from research_mcp.model import ToolModel
from research_mcp.workspace import Workspace

__all__ = [
    "EditFileResult",
    "FileEntry",
    "GrepMatch",
    "GrepResult",
    "IMAGE_KINDS",
    "ImageInfo",
    "ListFilesResult",
    "ReadFileResult",
    "WriteFileResult",
    "edit_file",
    "grep",
    "list_files",
    "read_file",
    "read_image",
    "write_file",
]

IGNORED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".mypy_cache", ".pytest_cache",
     ".ruff_cache", ".tox", ".ipynb_checkpoints", ".research"}
)  # fmt: skip
_SNIFF_BYTES = 8192
_MAX_LINE_CHARS = 4000
_GREP_LINE_CHARS = 300
_GREP_DEADLINE_S = 20.0
_MAX_IMAGE_FILE_BYTES = 64 << 20
IMAGE_KINDS = frozenset({"PNG image", "JPEG image"})
"""Binary kinds read_file returns as a picture; every other binary is refused."""
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive (also .docx, .xlsx, .pt, .whl)"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\x7fELF", "ELF executable"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\x93NUMPY", "NumPy array"),
    (b"\x80", "Python pickle"),
)


class FileEntry(ToolModel):
    path: str = Field(description="Path relative to the workspace.")
    kind: Literal["file", "dir", "symlink"]
    size_bytes: int | None = Field(None, description="File size; None for folders and links.")


class ListFilesResult(ToolModel):
    entries: list[FileEntry]
    total: int = Field(description="Entries matching in all, before paging.")
    next_offset: int | None = Field(None, description="Pass as `offset` to get the next page.")
    note: str | None = Field(None, description="What was left out (ignored folders, depth, scan limit).")


class ImageInfo(ToolModel):
    mime_type: str = Field(description="Of the picture attached.")
    width: int
    height: int
    original_width: int = Field(description="The file's own size; larger pictures are sent downscaled.")
    original_height: int


class ReadFileResult(ToolModel):
    path: str
    text: str = Field(description="The lines read, each ending with a newline; long lines are cut with a marker.")
    start_line: int = Field(description="1-based number of the first line returned.")
    end_line: int = Field(description="Number of the last line returned (start_line - 1 when none).")
    total_lines: int | None = Field(None, description="Lines in the file, when counted.")
    size_bytes: int
    next_offset: int | None = Field(None, description="Pass as `offset` to continue reading; None at the end.")
    note: str | None = None
    image: ImageInfo | None = Field(default=None, description="A PNG or JPEG: attached as a picture, `text` empty.")


class WriteFileResult(ToolModel):
    path: str
    size_bytes: int
    created: bool = Field(description="True when the file did not exist before.")


class EditFileResult(ToolModel):
    path: str
    replacements: int
    size_bytes: int
    first_line: int = Field(description="Line where the first replacement starts.")


class GrepMatch(ToolModel):
    path: str
    line: int
    text: str = Field(description="The matching line, cut to a few hundred characters.")


class GrepResult(ToolModel):
    matches: list[GrepMatch]
    files_searched: int
    next_offset: int | None = Field(None, description="Pass as `offset` to get the next matches.")
    skipped: list[str] = Field(default_factory=list[str], description="Files not searched, with the reason.")
    note: str | None = None


def _ignored(name: str, include_ignored: bool) -> bool:
    return not include_ignored and name in IGNORED_DIRS


def _walk(
    ws: Workspace, top: Path, max_depth: int, include_ignored: bool, limit: int
) -> tuple[list[FileEntry], bool, list[str]]:
    """Entries under `top` in sorted depth-first order, not following symlinks; whether `limit` stopped it; the
    ignored folders left out."""
    out: list[FileEntry] = []
    hidden: list[str] = []

    def visit(folder: Path, depth: int) -> bool:
        try:
            with os.scandir(folder) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError:
            return False
        for item in items:
            if len(out) >= limit:
                return True
            path = Path(item.path)
            if item.is_symlink():
                out.append(FileEntry(path=ws.relative(path), kind="symlink", size_bytes=None))
            elif item.is_dir(follow_symlinks=False):
                if _ignored(item.name, include_ignored):
                    hidden.append(item.name)
                    continue
                out.append(FileEntry(path=ws.relative(path), kind="dir", size_bytes=None))
                if depth < max_depth and visit(path, depth + 1):
                    return True
            elif item.is_file(follow_symlinks=False):
                out.append(FileEntry(path=ws.relative(path), kind="file", size_bytes=item.stat().st_size))
        return False

    stopped = visit(top, 1)
    return out, stopped, hidden


def _glob_match(pattern: str, entry_path: str) -> bool:
    if "/" in pattern:
        return fnmatch.fnmatchcase(entry_path, pattern)
    return fnmatch.fnmatchcase(entry_path.rsplit("/", 1)[-1], pattern)


def list_files(
    ws: Workspace,
    path: str = ".",
    pattern: str | None = None,
    depth: int = 3,
    offset: int = 0,
    limit: int = 200,
    include_ignored: bool = False,
    scan_limit: int = 50_000,
    max_chars: int = 24_000,
) -> ListFilesResult:
    top = ws.resolve(path, must_exist=True)
    if not top.is_dir():
        raise FileToolError(f"{path!r} is a file, not a folder. Call read_file to read it.")
    entries, stopped, hidden = _walk(ws, top, depth, include_ignored, scan_limit)
    if pattern:
        entries = [e for e in entries if _glob_match(pattern, e.path)]
    page: list[FileEntry] = []
    used = 0
    for entry in entries[offset : offset + limit]:
        used += len(entry.path) + 60  # about what one entry costs in the JSON answer
        if page and used > max_chars:
            break
        page.append(entry)
    end = offset + len(page)
    notes: list[str] = []
    if stopped:
        notes.append(f"stopped after scanning {scan_limit} entries; list a subfolder to see more")
    if hidden:
        names = ", ".join(sorted(set(hidden))[:5])
        notes.append(
            f"{len(hidden)} VCS, cache or virtualenv folders hidden ({names}); include_ignored=true shows them"
        )
    return ListFilesResult(
        entries=page,
        total=len(entries),
        next_offset=end if end < len(entries) else None,
        note="; ".join(notes) or None,
    )


def _binary_kind(head: bytes, path: Path) -> str | None:
    """A description of a binary file from its first bytes, or None when it looks like text."""
    for magic, kind in _MAGIC:
        if head.startswith(magic) and (kind != "Python pickle" or b"\x00" in head):
            return kind
    if b"\x00" in head:
        guessed, _ = mimetypes.guess_type(path.name)
        return guessed or "binary data"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        control = sum(1 for b in head if b < 9 or 13 < b < 32)
        if control > len(head) // 20:
            return mimetypes.guess_type(path.name)[0] or "binary data"
    return None


def _open_text_file(ws: Workspace, path: str, max_bytes: int | None) -> tuple[Path, int, BinaryIO]:
    """The resolved path, its size and an open binary handle at offset 0; refuses folders, devices, binaries."""
    target = ws.resolve(path, must_exist=True)
    with os_errors(path):
        info = target.stat()
        if stat.S_ISDIR(info.st_mode):
            raise FileToolError(f"{path!r} is a folder. Call list_files to see what it holds.")
        if not stat.S_ISREG(info.st_mode):  # checked before open: opening a FIFO would block
            raise FileToolError(f"{path!r} is not a regular file (a device, pipe or socket); it cannot be read.")
        if max_bytes is not None and info.st_size > max_bytes:
            raise FileToolError(
                f"{path!r} is {info.st_size} bytes, over the {max_bytes}-byte limit. "
                "Use grep to find the lines you need."
            )
        fh = target.open("rb")
    try:
        with os_errors(path):
            head = fh.read(_SNIFF_BYTES)
            fh.seek(0)
        kind = _binary_kind(head, target)
        if kind is not None:
            raise BinaryFileError(path, kind, info.st_size)
    except BaseException:
        fh.close()
        raise
    return target, info.st_size, fh


def _cut(line: str, limit: int) -> str:
    if len(line) <= limit:
        return line
    return f"{line[:limit]} … [line cut: {len(line) - limit} more characters]"


def read_file(
    ws: Workspace, path: str, offset: int = 1, limit: int = 2000, max_chars: int = 24_000, count_lines_up_to: int = 0
) -> ReadFileResult:
    """Lines `offset`.. of a text file, at most `limit` lines and about `max_chars` characters."""
    target, size, raw = _open_text_file(ws, path, None)
    parts: list[str] = []
    used = 0
    last = offset - 1
    total: int | None = None
    more = False
    with os_errors(path), io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as fh:
        number = 0
        for number, raw in enumerate(fh, start=1):  # noqa: B007 - the count is read after the loop
            if number < offset:
                continue
            if number >= offset + limit:
                more = True
                break
            line = _cut(raw.rstrip("\r\n"), _MAX_LINE_CHARS) + "\n"
            if parts and used + len(line) > max_chars:
                more = True
                break
            parts.append(line)
            used += len(line)
            last = number
        else:
            total = number
        if more and size <= count_lines_up_to:
            total = number + sum(1 for _ in fh)
    if offset > 1 and not parts and total is not None and offset > total:
        raise BadInputError(f"offset {offset} is past the end of {path!r}, which has {total} lines.")
    note = None if not more else f"Output was cut at line {last}. Call read_file with offset={last + 1} for more."
    return ReadFileResult(
        path=ws.relative(target),
        text="".join(parts),
        start_line=offset,
        end_line=last,
        total_lines=total,
        size_bytes=size,
        next_offset=last + 1 if more else None,
        note=note,
    )


def read_image(ws: Workspace, path: str) -> tuple[ReadFileResult, Picture]:
    """A PNG or JPEG of the workspace as a picture a model can look at (see `research_mcp.imaging` for the size
    caps), with its record."""
    target = ws.resolve(path, must_exist=True)
    with os_errors(path):
        size = target.stat().st_size
        if size > _MAX_IMAGE_FILE_BYTES:
            raise FileToolError(f"{path!r} is {size} bytes, over the {_MAX_IMAGE_FILE_BYTES}-byte limit for images.")
        data = target.read_bytes()
    try:
        picture = fit_image(data)
    except BadInputError as exc:
        raise FileToolError(f"{path!r}: {exc}") from exc
    shrunk = f", downscaled from {picture.original_width} x {picture.original_height}" if picture.resized else ""
    info = ImageInfo(
        mime_type=picture.mime_type,
        width=picture.width,
        height=picture.height,
        original_width=picture.original_width,
        original_height=picture.original_height,
    )
    return ReadFileResult(
        path=ws.relative(target),
        text="",
        start_line=1,
        end_line=0,
        total_lines=None,
        size_bytes=size,
        next_offset=None,
        note=f"The picture is attached ({picture.width} x {picture.height} px{shrunk}).",
        image=info,
    ), picture


def _refuse_state_dir(ws: Workspace, target: Path, path: str) -> None:
    if target == ws.state_dir or target.is_relative_to(ws.state_dir):
        raise PathError(path, "the .research folder holds the server's own state and cannot be written by tools.")


def write_file(ws: Workspace, path: str, content: str, max_bytes: int) -> WriteFileResult:
    target = ws.resolve(path)
    if target == ws.root:
        raise PathError(path, "it names the workspace folder itself; give a file name.")
    _refuse_state_dir(ws, target, path)
    data = content.encode("utf-8")
    if len(data) > max_bytes:
        raise FileToolError(f"The content is {len(data)} bytes, over the {max_bytes}-byte limit for one write.")
    if target.is_dir():
        raise FileToolError(f"{path!r} is a folder; give a file path inside it.")
    created = not target.exists()
    with os_errors(path):
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data, durable=True)
    return WriteFileResult(path=ws.relative(target), size_bytes=len(data), created=created)


def edit_file(
    ws: Workspace, path: str, old_string: str, new_string: str, replace_all: bool, max_bytes: int
) -> EditFileResult:
    """Replace an exact string; refuse when it is absent, or present more than once without `replace_all`."""
    if not old_string:
        raise BadInputError("old_string is empty. Give the exact text to replace; use write_file to create a file.")
    if old_string == new_string:
        raise BadInputError("old_string and new_string are the same; nothing would change.")
    target, _, fh = _open_text_file(ws, path, max_bytes)
    with os_errors(path), fh:
        raw = fh.read()
    _refuse_state_dir(ws, target, path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileToolError(f"{path!r} is not valid UTF-8 (byte {exc.start}); edit_file would corrupt it.") from exc
    old, new = old_string, new_string
    count = text.count(old)
    if count == 0 and "\r\n" in text and "\n" in old:
        old, new = old.replace("\r\n", "\n").replace("\n", "\r\n"), new.replace("\r\n", "\n").replace("\n", "\r\n")
        count = text.count(old)
    if count == 0:
        raise FileToolError(
            f"old_string was not found in {path!r}. Call read_file and copy the exact text, indentation included."
        )
    if count > 1 and not replace_all:
        lines: list[str] = []
        start = 0
        for _ in range(min(count, 5)):
            start = text.index(old, start)
            lines.append(str(text.count("\n", 0, start) + 1))
            start += len(old)
        raise FileToolError(
            f"old_string occurs {count} times in {path!r} (lines {', '.join(lines)}{'…' if count > 5 else ''}). "
            "Add surrounding lines to make it unique, or pass replace_all=true."
        )
    first_line = text.count("\n", 0, text.index(old)) + 1
    updated = text.replace(old, new) if replace_all else text.replace(old, new, 1)
    data = updated.encode("utf-8")
    atomic_write(target, data, durable=True)
    return EditFileResult(
        path=ws.relative(target), replacements=count if replace_all else 1, size_bytes=len(data), first_line=first_line
    )


def _grep_files(ws: Workspace, top: Path, glob: str | None, include_ignored: bool) -> Iterator[Path]:
    if top.is_file():
        yield top
        return
    entries, _, _ = _walk(ws, top, 64, include_ignored, 200_000)
    for entry in entries:
        if entry.kind == "file" and (glob is None or _glob_match(glob, entry.path)):
            yield ws.root / entry.path


def grep(
    ws: Workspace,
    pattern: str,
    path: str = ".",
    glob: str | None = None,
    ignore_case: bool = False,
    offset: int = 0,
    max_matches: int = 50,
    max_file_bytes: int = 20 << 20,
    max_chars: int = 24_000,
    include_ignored: bool = False,
) -> GrepResult:
    """Lines matching a regular expression, in sorted file order, with 1-based line numbers."""
    import regex

    try:
        compiled = regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
    except regex.error as exc:
        raise BadInputError(f"pattern is not a valid regular expression: {exc}. Escape special characters.") from exc
    top = ws.resolve(path, must_exist=True)
    deadline = time.monotonic() + _GREP_DEADLINE_S
    matches: list[GrepMatch] = []
    skipped: list[str] = []
    seen = searched = used = 0
    more = timed_out = False
    for file in _grep_files(ws, top, glob, include_ignored):
        rel = ws.relative(file)
        try:
            _, _, raw = _open_text_file(ws, rel, max_file_bytes)
        except (FileToolError, PathError) as exc:
            if len(skipped) < 20:
                skipped.append(f"{rel}: {str(exc).split(';')[0].split('.')[0]}")
            continue
        searched += 1
        with os_errors(rel), io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as fh:
            for number, line in enumerate(fh, start=1):
                remaining = deadline - time.monotonic()
                try:
                    found = remaining > 0 and compiled.search(line, timeout=remaining) is not None
                except TimeoutError:
                    found, remaining = False, 0.0
                if remaining <= 0:
                    timed_out = True
                    break
                if not found:
                    continue
                seen += 1
                if seen <= offset:
                    continue
                text = _cut(line.rstrip("\r\n"), _GREP_LINE_CHARS)
                if len(matches) >= max_matches or used + len(text) + len(rel) + 16 > max_chars:
                    more = True
                    break
                matches.append(GrepMatch(path=rel, line=number, text=text))
                used += len(text) + len(rel) + 16
        if more or timed_out:
            break
    note = None
    if timed_out:
        note = f"Stopped after {_GREP_DEADLINE_S:.0f} s; narrow the path or glob, or simplify the pattern."
    return GrepResult(
        matches=matches,
        files_searched=searched,
        next_offset=offset + len(matches) if more else None,
        skipped=skipped,
        note=note,
    )
