"""Code behind papers: find candidate repositories, fetch one pinned to a commit, summarise it safely.

Repository text (READMEs, descriptions, file contents) is untrusted data: it is returned as data, never run.
"""

from research_mcp.tools.repos.fetch import (
    FetchLimits,
    FetchRepoResult,
    RepoSpec,
    fetch_repo,
    parse_repo_spec,
    repo_summary,
)
from research_mcp.tools.repos.find import CodeCandidate, FindCodeResult, PaperFacts, PaperLookup, find_code
from research_mcp.tools.repos.github import GitHubClient
from research_mcp.tools.repos.summary import RepoSummary

__all__ = [
    "CodeCandidate",
    "FetchLimits",
    "FetchRepoResult",
    "FindCodeResult",
    "GitHubClient",
    "PaperFacts",
    "PaperLookup",
    "RepoSpec",
    "RepoSummary",
    "fetch_repo",
    "find_code",
    "parse_repo_spec",
    "repo_summary",
]
