"""The pyarrow fast path of the metrics readers: what it hands to pyarrow is released on the calling thread."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

from research_mcp.tools.metrics._arrow import fast_csv
from research_mcp.tools.metrics._records import Limits


def test_a_csv_is_parsed_on_the_calling_thread_so_no_pool_thread_holds_python_objects(tmp_path: Path) -> None:
    """The bad-row callback is Python code that pyarrow calls; a profile function set with sys.setprofile sees only
    this thread, so it sees the callback only when the parse runs here. A pool thread that had parsed the block
    would also be the one to let go of the block's bytes and the callback, after `read_csv` returned: at
    interpreter exit that aborted the process ("terminate called without an active exception")."""
    path = tmp_path / "log.csv"
    rows = "".join(f"{i},{1 / (i + 1)!r}\n" for i in range(60_000))  # past the 1 MiB sample that sets the columns
    path.write_text("step,loss\n" + rows + "7,0.5,extra\n" + rows)
    seen: list[str] = []

    def profile(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name == "on_bad_row":
            seen.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        found = fast_csv(path, "log.csv", Limits(), ",")
    finally:
        sys.setprofile(None)
    assert found is not None and any("1 rows with the wrong number of fields skipped" in w for w in found.warnings)
    assert seen == ["on_bad_row"]
