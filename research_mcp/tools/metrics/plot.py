"""`plot_metrics`: curves over steps, or bars of group means with 95% confidence intervals, drawn with matplotlib.

Figures are drawn on a bare `matplotlib.figure.Figure` (the Agg canvas; pyplot and its global figure registry are
never touched; a lock keeps calls from sharing the global rcParams) and saved as PDF with TrueType (type 42) fonts
embedded, as conferences ask, and as PNG, under `paper/figures/`. Each file's metadata names what was drawn.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from research_mcp.errors import BadInputError, FileToolError
from research_mcp.fileio import replacing
from research_mcp.model import ToolModel
from research_mcp.tools.metrics._names import ResolvedFiles, ResolvedMetric, by_file, plain_name, resolve_metric
from research_mcp.tools.metrics._records import Limits, bounded_warnings, lib
from research_mcp.tools.metrics._series import direction_of
from research_mcp.tools.metrics._sources import RunBook, Source, read_source, resolve
from research_mcp.tools.metrics.compare import RESOLVED_SHOWN, Use, gather, plan_groups
from research_mcp.tools.metrics.stats import describe
from research_mcp.workspace import Workspace

__all__ = ["PlotMetricsResult", "plot_metrics"]

_DRAWING = threading.Lock()
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,80}$")
_LINE_POINTS = 2000
_PREVIEW_DPI = 90
_PAPER_DPI = 200


class PlotMetricsResult(ToolModel):
    pdf: str = Field(description="Workspace path of the PDF (for \\includegraphics).")
    png: str = Field(description="Workspace path of the PNG.")
    kind: Literal["line", "bar"]
    drawn: list[str] = Field(description="What was drawn: 'source: metric (n points)' or 'group: metric mean ± CI'.")
    resolved: list[ResolvedMetric] = Field(
        default_factory=list[ResolvedMetric], description="Which metric of which file was drawn for each source."
    )
    resolved_files: list[ResolvedFiles] | None = Field(
        default=None, description="Instead of resolved where it would be long: per metric and file pattern."
    )
    warnings: list[str] = Field(default_factory=list[str])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:60] or "figure"


def _save(fig: Any, target: Path, fmt: str, metadata: dict[str, str]) -> None:
    with replacing(target) as tmp:
        fig.savefig(tmp, format=fmt, dpi=_PAPER_DPI, metadata=metadata, bbox_inches="tight")


def plot_metrics(
    ws: Workspace,
    book: Callable[[], RunBook | None],
    metrics: list[str],
    sources: list[str] | None = None,
    groups: dict[str, list[str]] | None = None,
    kind: Literal["line", "bar"] = "line",
    x: Literal["step", "index"] = "step",
    use: Use = "last",
    name: str | None = None,
    title: str | None = None,
    log_y: bool = False,
    limits: Limits | None = None,
) -> tuple[PlotMetricsResult, bytes]:
    """Draw, save PDF + PNG, and return the result with a small PNG preview."""
    rc_context: Any = lib("matplotlib").rc_context
    figure_class: Any = lib("matplotlib.figure").Figure
    if not metrics:
        raise BadInputError("Give at least one metric to plot.")
    if len(metrics) > 6:
        raise BadInputError("At most 6 metrics in one figure (one panel each); make several figures.")
    if name is not None and not _NAME.match(name):
        raise BadInputError(f"name {name!r} must be letters, digits, '-' or '_' (it names the files).")
    stem = name or _slug("_".join(plain_name(m) for m in metrics) + f"_{kind}")
    base = limits or Limits()
    warnings: list[str] = []
    drawn: list[str] = []
    resolved: list[ResolvedMetric] = []
    rc = {"pdf.fonttype": 42, "ps.fonttype": 42, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3}
    # rcParams are global: one figure at a time, or a figure saved while another call's context is undone could
    # lose its TrueType fonts
    with _DRAWING, rc_context({**rc, "text.parse_math": False, "text.usetex": False}):  # names are text, not TeX
        fig = figure_class(figsize=(3.4 * len(metrics), 2.8), layout="constrained")
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        if kind == "line":
            if groups:
                raise BadInputError("kind='line' draws sources; give sources (run ids or paths), not groups.")
            if not sources:
                raise BadInputError("Give sources: run ids or workspace paths to draw curves of.")
            _lines(ws, [resolve(ws, s, book) for s in sources], metrics, x, axes, base, drawn, resolved, warnings)
        else:
            if not groups and not sources:
                raise BadInputError("kind='bar' needs groups (name -> run ids or paths) or sources (a bar each).")
            plan, notes = plan_groups(ws, book, groups or {s: [s] for s in sources or []}, None, None, "label")
            warnings += notes
            _bars(ws, plan, metrics, use, axes, base, drawn, resolved, warnings)
        for ax, metric in zip(axes, metrics, strict=True):
            ax.set_title(plain_name(metric), fontsize=9)
            if log_y:
                ax.set_yscale("log")
        if title:
            fig.suptitle(title, fontsize=10)
        if not drawn:
            raise BadInputError("Nothing to draw: " + "; ".join(warnings[:5]))
        folder = ws.resolve("paper/figures")
        pdf, png = folder / f"{stem}.pdf", folder / f"{stem}.png"
        provenance = json.dumps({"tool": "plot_metrics", "kind": kind, "metrics": metrics, "drawn": drawn})
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _save(fig, pdf, "pdf", {"Creator": "research-mcp", "Subject": provenance[:4000]})
            _save(fig, png, "png", {"Software": "research-mcp", "Description": provenance[:4000]})
        except OSError as exc:
            raise FileToolError(f"Cannot write the figure under paper/figures: {exc.strerror or exc}.") from exc
        preview = io.BytesIO()
        fig.savefig(preview, format="png", dpi=_PREVIEW_DPI, bbox_inches="tight")
    brief = by_file(resolved) if len(resolved) > RESOLVED_SHOWN else None
    result = PlotMetricsResult(
        pdf=ws.relative(pdf), png=ws.relative(png), kind=kind, drawn=drawn, resolved=[] if brief else resolved,
        resolved_files=brief, warnings=bounded_warnings(warnings, 6000),
    )  # fmt: skip
    return result, preview.getvalue()


def _lines(
    ws: Workspace,
    sources: list[Source],
    metrics: list[str],
    x: str,
    axes: Any,
    base: Limits,
    drawn: list[str],
    resolved: list[ResolvedMetric],
    warnings: list[str],
) -> None:
    limits = dataclasses.replace(base, max_points=_LINE_POINTS)
    for source in sources:
        notes: list[str] = []
        files = read_source(ws, source, limits, notes)
        warnings += notes
        for ax, metric in zip(axes, metrics, strict=True):
            match = resolve_metric(files, metric, source.name, ws.relative(source.path))
            if match is None:
                warnings.append(f"{source.name}: no metric {metric!r}")
                continue
            fm, series = match.file, match.series
            resolved.append(match.resolved(source.name))
            points = series.points()
            xs = [p[0] for p in points] if x == "step" else list(range(len(points)))
            marker = "o" if len(points) <= 30 else None  # a short series (one eval per epoch) stays visible
            ax.plot(xs, [p[1] for p in points], label=source.name, linewidth=1.2, marker=marker, markersize=3)
            ax.set_xlabel("step" if x == "step" else "point")
            drawn.append(f"{source.name}: {match.name} ({series.count} points from {fm.path})")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)


def _bars(
    ws: Workspace,
    plan: dict[str, list[Source]],
    metrics: list[str],
    use: Use,
    axes: Any,
    base: Limits,
    drawn: list[str],
    resolved: list[ResolvedMetric],
    warnings: list[str],
) -> None:
    for ax, metric in zip(axes, metrics, strict=True):
        found = gather(ws, plan, metric, use, direction_of(plain_name(metric)), base, strict=False)
        warnings += found.warnings
        resolved += [taken for group in found.resolved.values() for taken in group]
        names: list[str] = []
        means: list[float] = []
        low_err: list[float] = []
        high_err: list[float] = []
        for group, values in found.values.items():
            if not values:
                continue
            d = describe(values)
            names.append(group)
            means.append(d.mean)
            low_err.append(0.0 if d.ci_low is None else d.mean - d.ci_low)
            high_err.append(0.0 if d.ci_high is None else d.ci_high - d.mean)
            ci = "" if d.ci_low is None else f" (95% CI {d.ci_low:.4g}..{d.ci_high:.4g})"
            drawn.append(f"{group}: {metric} mean {d.mean:.4g} over n={d.n}{ci}")
            if d.n < 2:
                warnings.append(f"{group}: one value of {metric!r}, drawn without an error bar")
        positions = list(range(len(names)))
        ax.bar(positions, means, yerr=[low_err, high_err], capsize=3, color=[f"C{i}" for i in positions])
        ax.set_xticks(positions, names, rotation=20, ha="right")
        ax.set_ylabel(f"mean of {use} value, 95% CI", fontsize=8)
