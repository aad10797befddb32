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
    ToolRegistry,
    WorkspaceParam,
    in_thread,
    need_workspace,
    state_of,
)
from research_mcp.tools import metrics as domain
from research_mcp.tools.metrics import (
    CompareRunsResult,
    Limits,
    PlotMetricsResult,
    ReadMetricsResult,
    ResultsTableResult,
    RunBook,
)
from research_mcp.workspace import Workspace

__all__ = ["register"]

Source = Annotated[str, Field(description="A run id (list_runs) or a workspace path.", min_length=1, max_length=4096)]
Groups = Annotated[
    dict[str, list[Source]] | None,
    Field(description="Group name -> run ids or workspace paths, e.g. {'baseline': [...], 'method': [...]}."),
]
RunIds = Annotated[list[str] | None, Field(description="Run ids, grouped by their label (or config: group_by).")]
Labels = Annotated[list[str] | None, Field(description="Compare every run carrying one of these labels.")]
GroupBy = Annotated[Literal["label", "config"], Field(description="How run_ids are grouped.")]
UseParam = Annotated[
    Literal["last", "best", "min", "max", "all"],
    Field(description="Which value of each run counts: the last logged (default), the best, min, max, or 'all' "
    "points as samples (an AI Scientist per-seed list)."),
]  # fmt: skip
Alpha = Annotated[float, Field(gt=0, lt=0.5, description="Significance level, after Holm's correction.")]
Metric = Annotated[
    str,
    Field(description="Metric name as read_metrics shows it; 'file:name' when several files have it.", min_length=1),
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
        metrics: Annotated[
            list[str] | None, Field(description="Metric names or globs ('val_*'); all when omitted.")
        ] = None,
        max_points: Annotated[int, Field(ge=2, le=1000, description="Points per downsampled series.")] = 200,
        higher_is_better: Annotated[
            dict[str, bool] | None, Field(description="Metric -> true if higher is better; overrides the name.")
        ] = None,
        offset: Annotated[int, Field(ge=0, description="Metrics to skip (from next_offset).")] = 0,
    ) -> ReadMetricsResult:
        """Read the metrics a run (or any workspace file or folder) logged: AI Scientist final_info.json, JSON, JSONL,
        CSV/TSV, TensorBoard event files, MLflow mlruns/ and MLPerf :::MLLOG logs. Per metric: last, best (direction
        from the name, or given), min, max, points, step range and a downsampled series that keeps extremes. Report
        numbers from here, never from memory. Bad lines are skipped and named in warnings."""
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
        higher_is_better: Annotated[
            bool | None, Field(description="Overrides the direction guessed from the name.")
        ] = None,
        baseline: Annotated[str | None, Field(description="Test each group only against this one.")] = None,
        alpha: Alpha = 0.05,
    ) -> CompareRunsResult:
        """Compare groups of runs (seeds of one configuration each) on one metric: per group n, mean, std and a 95%
        confidence interval; pairwise Welch t-tests with effect size (Hedges' g); which differences stay significant
        after Holm's correction, and a verdict. With one run per group it says no significance can be claimed."""
        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        return await in_thread(
            domain.compare_runs, workspace, _book(state, workspace), metric, groups, run_ids, labels, group_by, use,
            higher_is_better, baseline, alpha, _limits(state),
        )  # fmt: skip

    @tools.tool(WRITES_LOCAL)
    async def plot_metrics(
        ctx: AppContext,
        ws: WorkspaceParam,
        metrics: Annotated[list[Metric], Field(min_length=1, max_length=6, description="One panel per metric.")],
        sources: Annotated[list[Source] | None, Field(description="Runs or paths, one curve each (kind=line).")] = None,
        groups: Groups = None,
        kind: Annotated[
            Literal["line", "bar"], Field(description="line: curves over steps; bar: group means with 95% CIs.")
        ] = "line",
        x: Annotated[
            Literal["step", "index"], Field(description="x axis of curves: logged step or point number.")
        ] = "step",
        use: UseParam = "last",
        name: Annotated[str | None, Field(description="File name stem under paper/figures/.", max_length=80)] = None,
        title: Annotated[str | None, Field(max_length=200)] = None,
        log_y: bool = False,
    ) -> Annotated[CallToolResult, PlotMetricsResult]:
        """Plot metrics with matplotlib: curves over steps of runs or paths, or bars of group means with 95%
        confidence intervals (baseline vs method). Returns the image to look at and saves it as PDF (TrueType fonts
        embedded) and PNG under paper/figures/ for LaTeX; an existing figure of the same name is replaced."""
        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        result, png = await in_thread(
            domain.plot_metrics, workspace, _book(state, workspace), metrics, sources, groups, kind, x, use, name,
            title, log_y, _limits(state),
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
        caption: Annotated[str, Field(description="The caption, as LaTeX.", min_length=1, max_length=2000)],
        label: Annotated[str, Field(description="File name and \\label{tab:<label>}, e.g. 'main'.", max_length=80)],
        groups: Groups = None,
        run_ids: RunIds = None,
        labels: Labels = None,
        group_by: GroupBy = "label",
        use: UseParam = "last",
        higher_is_better: Annotated[
            dict[str, bool] | None, Field(description="Metric -> true if higher is better; overrides the name.")
        ] = None,
        alpha: Alpha = 0.05,
    ) -> ResultsTableResult:
        """Write a booktabs LaTeX table of mean ± std per group (rows) and metric (columns) to
        paper/tables/<label>.tex. Bold only where a group is significantly better than every other (Welch, Holm).
        Every number carries a LaTeX comment naming its runs, values and statistic, for the audit to trace."""
        state = state_of(ctx)
        workspace = need_workspace(ctx, ws)
        result = await in_thread(
            domain.results_table, workspace, _book(state, workspace), metrics, caption, label, groups, run_ids,
            labels, group_by, use, higher_is_better, alpha, _limits(state),
        )  # fmt: skip
        budget = state.settings.max_output_chars // 2
        if len(result.latex) > budget:
            cut = result.latex[:budget].rsplit("\n", 1)[0]
            result.latex = f"{cut}\n% ... cut here; the whole table is in {result.path}\n"
        return result
