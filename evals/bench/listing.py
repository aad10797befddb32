"""Section 3's targets: what the tool listing may cost the model and the client.

Every client pastes each listed tool's name, description and input schema into its model's context on every turn
(`measure.model_chars` counts them), and Cursor passes at most 40 tools over all of a user's servers, dropping
the rest without a word. Two listings are measured: the one every client gets unless it has file tools of its own
(all tools), and the default listing of a client that has them (Claude Code, Cursor, VS Code: no `files` tools).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FILE_TOOLS_CLIENT", "TARGETS", "verdicts"]

FILE_TOOLS_CLIENT = "cursor-vscode"
"""The `clientInfo.name` the default listing is measured as: Cursor's, a client with file tools of its own."""

TARGETS: dict[str, tuple[str, str, float]] = {
    "model_chars_per_tool": ("all", "model characters a tool, mean", 800),
    "model_chars_max": ("all", "model characters of the largest tool", 1600),
    "answer_chars_per_tool": ("all", "tools/list answer characters a tool", 1500),
    "tools": ("default", "tools in the default listing", 32),
    "model_chars": ("default", "model characters of the default listing", 24_000),
}
"""Key of a `tools_list_size` result -> (which listing, what it is, the most it may be)."""


def verdicts(everything: dict[str, Any], default: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with the measured value and whether it holds; `everything` and `default` from `tools_list_size`."""
    listings = {"all": everything, "default": default}
    found: dict[str, dict[str, Any]] = {}
    for key, (listing, what, most) in TARGETS.items():
        value = listings[listing][key]
        found[key] = {"listing": listing, "what": what, "value": value, "target": most, "passed": value <= most}
    return found
