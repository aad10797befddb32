"""Adapters for the metrics tools (toolset `metrics`): read, compare, plot, tabulate."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Annotated, Literal

from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import Field

from research_mcp.server._adapt import (
    READ_ONLY_LOCAL,
    WRITES_LOCAL,
    AppContext,
    AppState,
    IdeaParam,
    ToolRegistry,
    WorkspaceParam,
    check_idea,
    in_thread,
    need_workspace,
    state_of,
    store_of,
)
from research_mcp.tools import metrics as domain
from research_mcp.tools.metrics import (
    CompareRunsResult,
    Limits,
    PlotMetricsResult,
    ReadMetricsResult,
    ResultsTableResult,
    RunBook,
    stored,
)
from research_mcp.workspace import Workspace

__all__ = ["register"]

Source = Annotated[str, Field(description="A run id or workspace path.", min_length=1, max_length=4096)]
Path = Annotated[str, Field(min_length=1, max_length=4096)]
Groups = Annotated[
    dict[str, list[Path]] | None,
    Field(description="{'baseline': [run ids or paths], ...}"),
]
RunIds = Annotated[list[str] | None, Field(description="Run or sweep ids, by group_by.")]
Labels = Annotated[list[str] | None, Field(description="Runs with these labels.")]
GroupBy = Literal["label", "config"]
UseParam = Annotated[
    Literal["last", "best", "min", "max", "all"],
    Field(description="A run's value; all: every point a sample."),
]  # fmt: skip
DisplayNames = Annotated[dict[str, str] | None, Field(description="Group or metric -> shown name.")]
Alpha = Annotated[float, Field(gt=0, lt=0.5)]  # the tools' descriptions say it is Holm-corrected
Metric = Annotated[
    str,
    Field(description="read_metrics' name ('file:name' if ambiguous).", min_length=1),
]


CALL_BUDGET_S = 40.0
"""Readers stop (with a warning) after this long, so a call answers before a client's ~60 s cut."""


def _limits(state: AppState) -> Limits:
    return Limits(
        max_line_bytes=state.settings.metrics_max_line_bytes,
        max_json_bytes=state.settings.metrics_max_json_bytes,
        deadline=time.monotonic() + CALL_BUDGET_S,
    )


def _book(state: AppState, ws: Workspace) -> Callable[[], RunBook | None]:
    """The run records, opened only when a run id is asked for and the workspace has a state store."""

    def open_book() -> RunBook | None:
        if not (ws.state_dir / "state.db").is_file():
            return None
        return RunBook(state.store(ws))

    return open_book


def register(tools: ToolRegistry) -> None:
    @tools.tool(READ_ONLY_LOCAL)
    async def read_metrics(
        ctx: AppContext,
        ws: WorkspaceParam,
        source: Source,
        metrics: Annotated[list[str] | None, Field(description="Names or globs ('val_*'); default all.")] = None,
        max_points: Annotated[int, Field(ge=2, le=1000, description="Per series.")] = 200,
        higher_is_better: Annotated[
            dict[str, bool] | None, Field(description="metric -> bool (else by its name).")
        ] = None,
        offset: Annotated[int, Field(ge=0, description="From next_offset.")] = 0,
    ) -> ReadMetricsResult:
        """Read the metrics a run or workspace file/folder logged (final_info.json, JSON(L), CSV/TSV, TensorBoard,
        MLflow, MLPerf): per metric last, best, min, max, steps and a series. Report numbers from here, never from
        memory."""
        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        return await in_thread(
            domain.read_metrics, workspace, source, _book(state, workspace), metrics, higher_is_better,
            max_points, offset, _limits(state), state.settings.max_output_chars,
        )  # fmt: skip

    @tools.tool(READ_ONLY_LOCAL)
    async def compare_runs(
        ctx: AppContext,
        ws: WorkspaceParam,
        metric: Metric,
        groups: Groups = None,
        run_ids: RunIds = None,
        labels: Labels = None,
        group_by: GroupBy = "label",
        use: UseParam = "last",
        higher_is_better: Annotated[bool | None, Field(description="Else guessed from the name.")] = None,
        baseline: Annotated[str | None, Field(description="Test groups only against this one.")] = None,
        alpha: Alpha = 0.05,
        idea_id: IdeaParam = None,
    ) -> CompareRunsResult:
        """Compare groups of runs (seeds of one configuration each) on one metric: n, mean, std and 95% CI per group;
        Welch t-tests, Hedges' g and Holm-corrected significance between groups; a verdict."""
        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        store = await store_of(ctx, ws)
        await check_idea(store, idea_id)
        result = await in_thread(
            domain.compare_runs, workspace, _book(state, workspace), metric, groups, run_ids, labels, group_by, use,
            higher_is_better, baseline, alpha, _limits(state),
        )  # fmt: skip
        result.comparison_id = await in_thread(stored.store_comparison, store, result, idea_id)
        return result

    @tools.tool(WRITES_LOCAL)
    async def plot_metrics(
        ctx: AppContext,
        ws: WorkspaceParam,
        metrics: Annotated[list[Metric], Field(min_length=1, max_length=6, description="One panel each.")],
        sources: Annotated[list[Path] | None, Field(description="Run ids or paths.")] = None,
        groups: Groups = None,
        kind: Literal["line", "bar"] = "line",
        band: Literal["ci95", "std"] = "ci95",
        width: Annotated[Literal["column", "page"], Field(description="3.25 or 6.75 in.")] = "column",
        x: Literal["step", "index"] = "step",
        use: UseParam = "last",
        name: Annotated[str | None, Field(description="File stem.", max_length=80)] = None,
        title: Annotated[str | None, Field(max_length=200)] = None,
        log_y: bool = False,
        xlabel: Annotated[str | None, Field(max_length=100)] = None,
        ylabel: Annotated[str | None, Field(max_length=100)] = None,
        display_names: DisplayNames = None,
    ) -> Annotated[CallToolResult, PlotMetricsResult]:
        """Plot metrics: a curve per run, a mean curve per group (shaded band), or bars of group means (95% CI).
        Returns the image; saves PDF and PNG under paper/figures/."""
        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        style = domain.PlotStyle(band, width, xlabel or None, ylabel or None, display_names or {})
        result, png = await in_thread(
            domain.plot_metrics, workspace, _book(state, workspace), metrics, sources, groups, kind, x, use, name,
            title, log_y, _limits(state), style,
        )  # fmt: skip
        data = result.model_dump(mode="json")
        return CallToolResult(
            content=[
                ImageContent(type="image", data=base64.b64encode(png).decode(), mime_type="image/png"),
                TextContent(type="text", text=result.model_dump_json()),
            ],
            structured_content=data,
        )

    @tools.tool(WRITES_LOCAL)
    async def results_table(
        ctx: AppContext,
        ws: WorkspaceParam,
        metrics: Annotated[list[Metric], Field(min_length=1, max_length=12, description="The columns.")],
        caption: Annotated[str, Field(description="LaTeX.", min_length=1, max_length=2000)],
        label: Annotated[str, Field(description="File stem; \\label{tab:<label>}.", max_length=80)],
        groups: Groups = None,
        run_ids: RunIds = None,
        labels: Labels = None,
        group_by: GroupBy = "label",
        use: UseParam = "last",
        higher_is_better: Annotated[
            dict[str, bool] | None, Field(description="metric -> bool (else by its name).")
        ] = None,
        alpha: Alpha = 0.05,
        display_names: DisplayNames = None,
    ) -> ResultsTableResult:
        """Write paper/tables/<label>.tex: mean ± std per group and metric (↑/↓), bold only where significantly best
        (Welch + Holm); each number's runs in a comment."""
        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        result = await in_thread(
            domain.results_table, workspace, _book(state, workspace), metrics, caption, label, groups, run_ids,
            labels, group_by, use, higher_is_better, alpha, _limits(state), display_names=display_names,
            max_chars=state.settings.max_output_chars,
        )  # fmt: skip
        budget = state.settings.max_output_chars // 2
        if len(result.latex) > budget:
            cut = result.latex[:budget].rsplit("\n", 1)[0]
            result.latex = f"{cut}\n% ... cut here; the whole table is in {result.path}\n"
        return result
