"""The research loop as records: ideas with the evidence tools attach to them (`ideas`), each stage's state
computed from the store (`status`), and the tree of runs under a root (`tree`). Pure domain code (no MCP)."""

from research_mcp.tools.pipeline import tree
from research_mcp.tools.pipeline.ideas import (
    Approval,
    IdeaEdit,
    IdeaRecord,
    get_idea,
    idea_ids,
    record_approval,
    record_search,
    require_idea,
    save_idea,
)
from research_mcp.tools.pipeline.status import MIN_SEEDS, STAGES, ResearchStatusResult, Stage, research_status
from research_mcp.tools.pipeline.tree import ExperimentTreeResult, TreeNode, draw_tree, experiment_tree

__all__ = [
    "MIN_SEEDS",
    "STAGES",
    "Approval",
    "ExperimentTreeResult",
    "IdeaEdit",
    "IdeaRecord",
    "ResearchStatusResult",
    "Stage",
    "TreeNode",
    "draw_tree",
    "experiment_tree",
    "get_idea",
    "idea_ids",
    "record_approval",
    "record_search",
    "require_idea",
    "research_status",
    "save_idea",
    "tree",
]
