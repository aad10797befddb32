"""The run-folder constants the supervisor shares with the rest of the package, without pydantic.

The supervisor is a separate process that starts for every local run; importing `base` (pydantic) there would
cost more than the run itself. `base` re-exports them for everyone else.
"""

from __future__ import annotations

__all__ = ["LOG_CAP_MARKER", "SANDBOX_OUTPUTS", "SANDBOX_WORK"]

SANDBOX_WORK = "/work"
SANDBOX_OUTPUTS = "/outputs"
LOG_CAP_MARKER = "\n[research-mcp: log capped at {cap} bytes; {dropped} bytes of output dropped here]\n"
"""Written once into log.txt where the cap was reached; the tail of the output is still kept after it."""
