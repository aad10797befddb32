"""The run-folder constants the supervisor shares with the rest of the package, without pydantic.

The supervisor is a separate process that starts for every local run; importing `base` (pydantic) there would
cost more than the run itself. `base` re-exports them for everyone else.
"""

from __future__ import annotations

__all__ = ["LOG_CAP_MARKER", "SANDBOX_OUTPUTS", "SANDBOX_WORK", "ended_detail"]

SANDBOX_WORK = "/work"
SANDBOX_OUTPUTS = "/outputs"
LOG_CAP_MARKER = "\n[research-mcp: log capped at {cap} bytes; {dropped} bytes of output dropped here]\n"
"""Written once into log.txt where the cap was reached; the tail of the output is still kept after it."""


def ended_detail(
    failure: str | None,
    exit_code: int | None,
    took_s: float | None,
    *,
    memory_bytes: int | None = None,
    timeout_s: float | None = None,
) -> str:
    """The sentence a run's `detail` says when it ended, the same on every backend."""
    took = f" after {took_s:.1f} s" if took_s is not None else ""
    if failure == "timeout":
        limit = f" of {timeout_s:g} s" if timeout_s is not None else ""
        return f"Killed at its wall-clock limit{limit} (timeout_s), with every process."
    if failure == "cancelled":
        return f"Cancelled{took}: every process of the run was killed."
    if failure == "oom":
        detail = f"Killed by the out-of-memory killer{took} (exit {exit_code})"
        if memory_bytes:
            mib = memory_bytes / (1 << 20)
            return f"{detail} at its memory limit of {mib:.0f} MiB: use less memory or ask for more."
        return detail + "."
    if exit_code:
        return f"Exited with code {exit_code}{took}; the end of log.txt says why."
    return f"Exited with code 0{took}."
