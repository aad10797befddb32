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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from research_mcp.errors import BadInputError, FileToolError
from research_mcp.fileio import replacing
from research_mcp.model import ToolModel
from research_mcp.tools.metrics._bands import BandKind, band_of
from research_mcp.tools.metrics._names import ResolvedFiles, ResolvedMetric, by_file, plain_name, resolve_metric
from research_mcp.tools.metrics._records import Limits, bounded_warnings, lib
from research_mcp.tools.metrics._series import direction_of
from research_mcp.tools.metrics._sources import RunBook, Source, read_source, resolve
from research_mcp.tools.metrics.compare import RESOLVED_SHOWN, Use, gather, plan_groups
from research_mcp.tools.metrics.stats import describe
from research_mcp.workspace import Workspace

__all__ = ["PlotMetricsResult", "PlotStyle", "plot_metrics"]

_DRAWING = threading.Lock()
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,80}$")
_LINE_POINTS = 2000
_PREVIEW_DPI = 90
_PAPER_DPI = 200
WIDTH_IN = {"column": 3.25, "page": 6.75}
"""A one-column and a two-column (full page) figure of a two-column paper, in inches."""


@dataclass(frozen=True)
class PlotStyle:
    """How a figure looks: its band, its width, its labels and the names shown for groups and metrics."""

    band: BandKind = "ci95"
    width: Literal["column", "page"] = "column"
    xlabel: str | None = None
    ylabel: str | None = None
    display_names: dict[str, str] = field(default_factory=dict[str, str])

    def shown(self, metric: str) -> str:
        return self.display_names.get(metric, self.display_names.get(plain_name(metric), plain_name(metric)))

    def shown_group(self, group: str) -> str:
        return self.display_names.get(group, group)


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
    caption: str = Field(description="What is drawn, as LaTeX for the figure's caption.")
    warnings: list[str] = Field(default_factory=list[str])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:60] or "figure"


def _save(fig: Any, target: Path, fmt: str, metadata: dict[str, str]) -> None:
    with replacing(target) as tmp:
        fig.savefig(tmp, format=fmt, dpi=_PAPER_DPI, metadata=metadata)  # not "tight": the width is the paper's


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
    style: PlotStyle | None = None,
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
    style = style or PlotStyle()
    captions: list[str] = []
    warnings: list[str] = []
    drawn: list[str] = []
    resolved: list[ResolvedMetric] = []
    rc = {"pdf.fonttype": 42, "ps.fonttype": 42, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3}
    # rcParams are global: one figure at a time, or a figure saved while another call's context is undone could
    # lose its TrueType fonts
    with _DRAWING, rc_context({**rc, "text.parse_math": False, "text.usetex": False}):  # names are text, not TeX
        width = WIDTH_IN[style.width]
        fig = figure_class(figsize=(width, min(2.6, max(1.9, 0.75 * width / len(metrics)))), layout="constrained")
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        if kind == "line" and groups:
            if sources:
                raise BadInputError("Give sources (a curve each) or groups (a mean curve each), not both.")
            plan, notes = plan_groups(ws, book, groups, None, None, "label")
            warnings += notes
            _group_lines(ws, plan, metrics, x, axes, base, style, drawn, resolved, warnings)
            what = r"the 95\% confidence interval of the mean (t)" if style.band == "ci95" else "one standard deviation"
            runs = sorted({len(members) for members in plan.values()})
            counts = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
            captions.append(f"Mean over {counts} runs per group; the shaded band is {what}.")
        elif kind == "line":
            if not sources:
                raise BadInputError("Give sources (run ids or workspace paths, a curve each) or groups (a mean each).")
            _lines(
                ws, [resolve(ws, s, book) for s in sources], metrics, x, axes, base, style, drawn, resolved, warnings
            )
            captions.append("One curve per run or file, as logged.")
        else:
            if not groups and not sources:
                raise BadInputError("kind='bar' needs groups (name -> run ids or paths) or sources (a bar each).")
            plan, notes = plan_groups(ws, book, groups or {s: [s] for s in sources or []}, None, None, "label")
            warnings += notes
            _bars(ws, plan, metrics, use, axes, base, style, drawn, resolved, warnings)
            captions.append(f"Bars: mean of each run's {use} value per group; error bars: 95\\% confidence interval.")
        for ax, metric in zip(axes, metrics, strict=True):
            ax.set_ylabel(style.ylabel or style.shown(metric))
            if kind == "line":
                ax.set_xlabel(style.xlabel or ("step" if x == "step" else "point"))
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
        resolved_files=brief, caption=" ".join(captions), warnings=bounded_warnings(warnings, 6000),
    )  # fmt: skip
    return result, preview.getvalue()


def _lines(
    ws: Workspace,
    sources: list[Source],
    metrics: list[str],
    x: str,
    axes: Any,
    base: Limits,
    style: PlotStyle,
    drawn: list[str],
    resolved: list[ResolvedMetric],
    warnings: list[str],
) -> None:
    limits = dataclasses.replace(base, max_points=_LINE_POINTS)
    for source, label in zip(sources, _legend_names(sources, style), strict=True):
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
            ax.plot(xs, [p[1] for p in points], label=label, linewidth=1.2, marker=marker, markersize=3)
            drawn.append(f"{source.name}: {match.name} ({series.count} points from {fm.path})")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)


def _legend_names(sources: list[Source], style: PlotStyle) -> list[str]:
    """A legend entry per source: its display name, else a run's label (with its seed where the label repeats),
    else the run id or path."""
    labels = [source.run.label if source.run is not None else None for source in sources]
    names: list[str] = []
    for source, label in zip(sources, labels, strict=True):
        if source.name in style.display_names:
            names.append(style.display_names[source.name])
        elif label is None or source.run is None:
            names.append(source.name)
        elif labels.count(label) == 1:
            names.append(style.display_names.get(label, label))
        else:
            nth = labels[: len(names) + 1].count(label)
            which = f"seed {source.run.seed}" if source.run.seed is not None else f"#{nth}"
            names.append(f"{style.display_names.get(label, label)} ({which})")
    return names


def _bars(
    ws: Workspace,
    plan: dict[str, list[Source]],
    metrics: list[str],
    use: Use,
    axes: Any,
    base: Limits,
    style: PlotStyle,
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
            names.append(style.shown_group(group))
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
        ax.grid(False, axis="x")  # a grid line through each bar says nothing


def _group_lines(
    ws: Workspace,
    plan: dict[str, list[Source]],
    metrics: list[str],
    x: str,
    axes: Any,
    base: Limits,
    style: PlotStyle,
    drawn: list[str],
    resolved: list[ResolvedMetric],
    warnings: list[str],
) -> None:
    """One colour per group: the mean of its runs over steps, with the band `style.band` shaded around it."""
    limits = dataclasses.replace(base, max_points=_LINE_POINTS)
    for ax, metric in zip(axes, metrics, strict=True):
        found = gather(ws, plan, metric, "last", None, limits, strict=False, curves=True)
        warnings += found.warnings
        resolved += [taken for group in found.resolved.values() for taken in group]
        for i, (group, curves) in enumerate(found.curves.items()):
            band = band_of(curves, style.band)
            if band is None:
                if curves:
                    warnings.append(f"{group}: the runs' steps of {metric!r} do not overlap; no mean drawn")
                continue
            xs = band.steps if x == "step" else list(range(len(band.steps)))
            colour = f"C{i}"
            marker = "o" if len(xs) <= 30 else None
            label = style.shown_group(group)
            ax.plot(xs, band.mean, color=colour, label=label, linewidth=1.2, marker=marker, markersize=3)
            if band.low is not None and band.high is not None:
                ax.fill_between(xs, band.low, band.high, color=colour, alpha=0.2, linewidth=0)
            else:
                warnings.append(f"{group}: one run of {metric!r}, drawn without a band")
            how = ", interpolated onto common steps" if band.interpolated else ""
            drawn.append(f"{group}: {metric} mean of {band.n} runs at {len(xs)} steps{how}")
    if axes[0].lines:
        axes[0].legend(fontsize=7)
