"""`experiment_tree`: the runs under a root run (each run's `parent`), with each one's state, note and headline
metric, as indented text and as a picture (AI Scientist v2's tree search, read back from the run records).

The headline metric of a run is read from its files with `read_metrics` (final_info.json, JSONL, CSV, ...): the
metric asked for, else the first one whose direction is known (else the first one), its best value where the
direction is known, else its last. At most `MAX_NODES` runs are read, breadth first, and the answer keeps the
runs (in tree order) that fit its character budget; the rest are counted, not shown.
"""

from __future__ import annotations

import importlib
import io
import math
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field

from research_mcp.errors import ResearchError, RunNotFoundError
from research_mcp.model import ToolModel
from research_mcp.store import Store
from research_mcp.tools.metrics import Limits, RunBook, read_metrics
from research_mcp.workspace import Workspace

__all__ = ["MAX_NODES", "ExperimentTreeResult", "TreeNode", "experiment_tree", "draw_tree"]

MAX_NODES = 200
ANSWER_CHARS = 24_000
NOTE_CHARS = 120
READ_BUDGET_S = 30.0
_COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "running": "#1565c0",
    "queued": "#757575",
    "starting": "#757575",
    "cancelled": "#9e9e9e",
    "lost": "#6a1b9a",
}


class TreeNode(ToolModel):
    id: str
    parent: str | None = None
    depth: int
    state: str
    label: str | None = None
    note: str | None = Field(default=None, description=f"The first {NOTE_CHARS} characters.")
    metric: str | None = Field(default=None, description="The headline metric's name and the file it came from.")
    value: float | None = None


class ExperimentTreeResult(ToolModel):
    root: str
    lines: list[str] = Field(description="The tree, one run a line, children indented under their parent.")
    nodes: list[TreeNode]
    total: int = Field(description="Runs under the root, the root included.")
    truncated: bool = Field(description="Runs were left out (too many to show): start from a deeper root.")
    best: str | None = Field(default=None, description="The run with the best headline value, when comparable.")


def _as_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {key: row[key] for key in row.keys()}  # noqa: SIM118  # a Row iterates over its values


def _rows(store: Store, root: str) -> tuple[list[dict[str, Any]], int]:
    """The runs under `root`, breadth first, at most MAX_NODES, and how many there are in all."""
    conn = store.connection()
    row = conn.execute("SELECT id, parent, state, label, note FROM runs WHERE id = ?", (root,)).fetchone()
    if row is None:
        ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY created_at DESC, id DESC LIMIT 3")]
        raise RunNotFoundError(root, [], ids)
    found: list[dict[str, Any]] = [{**_as_dict(row), "depth": 0}]
    depth: dict[str, int] = {root: 0}
    frontier: list[str] = [root]
    while frontier:
        marks = ", ".join("?" for _ in frontier)
        children = conn.execute(
            f"SELECT id, parent, state, label, note FROM runs WHERE parent IN ({marks}) ORDER BY created_at, id",
            frontier,
        ).fetchall()
        frontier = []
        for child in children:
            child_id: str = child["id"]
            if child_id in depth:  # a cycle of parents (not made by run_experiment): each run once
                continue
            depth[child_id] = depth[child["parent"]] + 1
            frontier.append(child_id)
            if len(found) < MAX_NODES:
                found.append({**_as_dict(child), "depth": depth[child_id]})
    total = len(depth)
    return found, total


def _headline(
    ws: Workspace, book: Callable[[], RunBook | None], run_id: str, metric: str | None, limits: Limits
) -> tuple[str | None, float | None, str | None]:
    """(metric and file, value, direction) of a run, or Nones when it has no metrics (or not the one asked)."""
    try:
        found = read_metrics(ws, run_id, book, [metric] if metric else None, max_points=2, limits=limits)
    except ResearchError:
        return None, None, None
    if not found.metrics:
        return None, None, None
    chosen = next((m for m in found.metrics if m.direction is not None), found.metrics[0])
    value = chosen.best if chosen.best is not None else chosen.last
    return f"{chosen.name} ({chosen.file})", value, chosen.direction


def _short_note(note: str | None) -> str | None:
    if not note:
        return None
    flat = " ".join(note.split())
    return flat if len(flat) <= NOTE_CHARS else flat[: NOTE_CHARS - 3] + "..."


def _line(node: TreeNode) -> str:
    parts = [f"{'  ' * node.depth}{'- ' if node.depth else ''}{node.id} [{node.state}]"]
    if node.label:
        parts.append(node.label)
    if node.metric is not None and node.value is not None:
        parts.append(f"{node.metric.split(' (')[0]}={node.value:.4g}")
    if node.note:
        parts.append(f'"{node.note}"')
    return " ".join(parts)


def experiment_tree(
    ws: Workspace,
    store: Store,
    root_run_id: str,
    metric: str | None = None,
    limits: Limits | None = None,
    max_chars: int = ANSWER_CHARS,
) -> ExperimentTreeResult:
    rows, total = _rows(store, root_run_id)
    book = RunBook(store)
    bounded = limits or Limits(deadline=time.monotonic() + READ_BUDGET_S)
    nodes: list[TreeNode] = []
    directions: set[str | None] = set()
    for row in rows:
        name, value, direction = _headline(ws, lambda: book, row["id"], metric, bounded)
        directions.add(direction if name is not None else None)
        nodes.append(
            TreeNode(
                id=row["id"],
                parent=row["parent"] if row["depth"] else None,
                depth=row["depth"],
                state=row["state"],
                label=row["label"],
                note=_short_note(row["note"]),
                metric=name,
                value=value if value is None or math.isfinite(value) else None,
            )
        )
    best = _best(nodes, directions)
    shown: list[TreeNode] = []
    lines: list[str] = []
    used = 500  # the frame: root, total, best, the closing line
    for node in _preorder(nodes):  # a parent comes before its children: a cut keeps the tree connected
        line = _line(node) + ("  <- best" if node.id == best else "")
        used += 2 * len(line) + len(node.model_dump_json())  # the line, in the text and in the record
        if used > max_chars:
            break
        shown.append(node)
        lines.append(line)
    if total > len(shown):
        lines.append(f"... {total - len(shown)} more run(s) under {root_run_id} not shown")
    return ExperimentTreeResult(
        root=root_run_id, lines=lines, nodes=shown, total=total, truncated=total > len(shown), best=best
    )


def _preorder(nodes: list[TreeNode]) -> list[TreeNode]:
    children: dict[str | None, list[TreeNode]] = {}
    for node in nodes:
        children.setdefault(node.parent, []).append(node)
    out: list[TreeNode] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(children.get(node.id, [])))
    return out


def _best(nodes: list[TreeNode], directions: set[str | None]) -> str | None:
    """The best succeeded run by headline value, when every run with a value reads the same metric in one known
    direction."""
    scored = [
        node for node in nodes if node.value is not None and node.metric is not None and node.state == "succeeded"
    ]
    names = {node.metric.split(" (")[0] for node in scored if node.metric is not None}
    known = directions - {None}
    if not scored or len(names) != 1 or len(known) != 1:
        return None
    pick = max if known == {"max"} else min
    return pick(scored, key=lambda node: node.value if node.value is not None else math.nan).id


def draw_tree(result: ExperimentTreeResult) -> bytes:
    """The tree as a PNG: a box per run (coloured by state) with its label and headline value, edges to children."""
    figure_class: Any = importlib.import_module("matplotlib.figure").Figure

    nodes = result.nodes
    leaves: dict[str, float] = {}
    children: dict[str | None, list[TreeNode]] = {}
    for node in nodes:
        children.setdefault(node.parent, []).append(node)
    counter = [0.0]

    def place(node: TreeNode) -> float:
        kids = children.get(node.id, [])
        if not kids:
            leaves[node.id] = counter[0]
            counter[0] += 1
            return leaves[node.id]
        xs = [place(kid) for kid in kids]
        leaves[node.id] = sum(xs) / len(xs)
        return leaves[node.id]

    for top in children.get(None, []):
        place(top)
    width = max(1.0, counter[0])
    depth = max((node.depth for node in nodes), default=0) + 1
    fig: Any = figure_class(figsize=(min(16.0, 1.6 + 1.5 * width), min(12.0, 1.0 + 1.1 * depth)), dpi=100)
    ax: Any = fig.add_axes((0.02, 0.02, 0.96, 0.96))
    ax.set_axis_off()
    by_id = {node.id: node for node in nodes}
    for node in nodes:
        if node.parent in by_id:
            ax.plot(
                [leaves[node.parent], leaves[node.id]],
                [-by_id[node.parent].depth, -node.depth],
                color="#9e9e9e",
                linewidth=1,
                zorder=1,
            )
    if len(nodes) > 40:  # too many to label: a dot per run
        ax.scatter(
            [leaves[n.id] for n in nodes],
            [-n.depth for n in nodes],
            s=30,
            zorder=2,
            c=[_COLOURS.get(n.state, "#757575") for n in nodes],
        )
    for node in nodes if len(nodes) <= 40 else []:
        text = node.label or node.id[-6:]
        if node.value is not None:
            text += f"\n{node.value:.4g}"
        edge = "#ff8f00" if node.id == result.best else "white"
        ax.text(
            leaves[node.id],
            -node.depth,
            text,
            ha="center",
            va="center",
            fontsize=7,
            color="white",
            zorder=2,
            bbox={
                "boxstyle": "round,pad=0.3",
                "facecolor": _COLOURS.get(node.state, "#757575"),
                "edgecolor": edge,
                "linewidth": 2,
            },
        )
    ax.set_xlim(-0.7, width - 0.3)
    ax.set_ylim(-depth + 0.4, 0.6)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
