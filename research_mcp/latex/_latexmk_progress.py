"""Which program latexmk is running, read from its output as it is written, told to a progress callback.

latexmk decides by itself how many passes to make and when to run bibtex or biber; it announces each run on a line
of its own ("Run number 2 of rule 'pdflatex'", "Run number 1 of rule 'bibtex .build/main'"). A thread reads the
output file the compile writes to, a few times a second, and tells each such line as "latexmk: pdflatex run 2".
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Generator
from pathlib import Path

from research_mcp.progress import BlockingProgress

__all__ = ["telling_runs"]

logger = logging.getLogger(__name__)

_RUN = re.compile(rb"^Run number (\d+) of rule '([\w-]+)")
_WATCH_S = 0.1
_MAX_LINE_BYTES = 1 << 16
"""A longer line is cut to its end: no announcement is that long, and runaway output must not fill memory."""


def announced(line: bytes) -> str | None:
    """What a line of latexmk's output says it starts ("latexmk: bibtex run 1"), or None."""
    found = _RUN.match(line)
    if found is None:
        return None
    return f"latexmk: {found.group(2).decode('ascii', 'replace')} run {found.group(1).decode()}"


@contextlib.contextmanager
def telling_runs(terminal: Path, progress: BlockingProgress) -> Generator[None]:
    """While the block runs latexmk with its output going to `terminal`, tell each program it starts; the whole
    output is read once more when the block ends, so the last announcements are not lost."""
    stop = threading.Event()

    def watch() -> None:
        offset, pending = 0, b""
        while True:
            stopped = stop.wait(_WATCH_S)
            try:
                with open(terminal, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except OSError:
                data = b""
            offset += len(data)
            *lines, pending = (pending + data).split(b"\n")
            pending = pending[-_MAX_LINE_BYTES:]
            for line in lines:
                message = announced(line)
                if message is not None:
                    progress(message)
            if stopped:
                return

    def guarded() -> None:
        try:
            watch()
        except Exception:  # this thread's boundary: telling must never break a compile
            logger.exception("telling latexmk's progress failed; the compile goes on without it")

    thread = threading.Thread(target=guarded, name="latexmk-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
