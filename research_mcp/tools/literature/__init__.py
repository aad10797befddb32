"""Literature: search, look up, read, cite and verify papers from arXiv and Semantic Scholar, with an offline
library in the workspace's state store. Domain code only (no MCP); `research_mcp.server.literature` adapts it."""

from research_mcp.tools.literature.ids import PaperRef, parse_paper_id
from research_mcp.tools.literature.models import Paper, PaperHit
from research_mcp.tools.literature.service import GetPaperResult, get_paper, get_paper_sync, paper_graph, search_papers

__all__ = [
    "GetPaperResult",
    "Paper",
    "PaperHit",
    "PaperRef",
    "get_paper",
    "get_paper_sync",
    "paper_graph",
    "parse_paper_id",
    "search_papers",
]
