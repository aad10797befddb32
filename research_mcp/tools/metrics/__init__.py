"""The metrics tools: read any run's results, compare groups of runs honestly, plot and tabulate with provenance.

Pure domain code (no MCP): `read_metrics`, `compare_runs`, `plot_metrics` and `results_table` take a `Workspace`
and plain arguments and return pydantic models; `parse_provenance` reads back the comments of a results table.
A metric name resolves the same way in all four (`_names`): `val_acc` stands for `spirals.means.val_acc`.
Heavy libraries (numpy, scipy, matplotlib, pyarrow, tensorboard's protobufs) are imported inside the functions.
"""

from research_mcp.tools.metrics._names import ResolvedMetric
from research_mcp.tools.metrics._records import Limits
from research_mcp.tools.metrics._sources import RunBook
from research_mcp.tools.metrics.compare import CompareRunsResult, compare_runs
from research_mcp.tools.metrics.plot import PlotMetricsResult, PlotStyle, plot_metrics
from research_mcp.tools.metrics.read import MetricSummary, ReadMetricsResult, read_metrics
from research_mcp.tools.metrics.table import CellProvenance, ResultsTableResult, parse_provenance, results_table

__all__ = [
    "CellProvenance",
    "CompareRunsResult",
    "Limits",
    "MetricSummary",
    "PlotMetricsResult",
    "PlotStyle",
    "ReadMetricsResult",
    "ResolvedMetric",
    "ResultsTableResult",
    "RunBook",
    "compare_runs",
    "parse_provenance",
    "plot_metrics",
    "read_metrics",
    "results_table",
]
