"""Every tool that can take long tells each phase of its work as it starts, through a real MCP client session:
the test reads the progress notifications the client receives (their messages, not their timing)."""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import anyio
import anyio.to_thread
import pytest
from mcp import Client

from research_mcp.config import Settings
from research_mcp.server import build_server
from research_mcp.server._manifest import FAMILIES, collect
from research_mcp.server._progress import progress_of
from tests.conftest import open_for_sandbox
from tests.integration.test_latex_compile import BIB, doc, good_paper, write
from tests.integration.test_literature_citations import known_papers
from tests.integration.test_literature_reading import one_page_pdf, tarball
from tests.integration.test_literature_tools import (  # the fixtures are shared by being imported
    QUERY,
    S2_ID,
    S2_PATH,
    _fast_backoff,
    atom,
    feed,
    lit,
    lit_settings,
    s2_paper,
    server,
)  # fmt: skip
from tests.integration.test_repos_tools import arxiv_feed, repos_settings
from tests.replay import ReplayServer, Response, Route
from tests.unit.test_repos_fetch import git_daemon
from tests.unit.test_repos_find import item, search_answer
from tests.unit.test_repos_github import archive_routes, commit_json, repo_json

pytestmark = pytest.mark.anyio
__all__ = ["_fast_backoff", "git_daemon", "lit", "server"]  # fixtures


@dataclass
class Told:
    """What a client was told while one call ran."""

    values: list[float] = field(default_factory=list[float])
    messages: list[str] = field(default_factory=list[str])

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.values.append(progress)
        self.messages.append(message or "")

    def find(self, pattern: str) -> list[str]:
        return [m for m in self.messages if re.fullmatch(pattern, m)]


async def told_call(client: Client, tool: str, args: dict[str, Any]) -> tuple[dict[str, Any], Told]:
    """Call a tool with a progress callback; its answer and what it told, checked to rise with every notification."""
    told = Told()
    with anyio.fail_after(60):
        result = await client.call_tool(tool, args, progress_callback=told)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert told.values == sorted(set(told.values)), f"progress must increase with every notification: {told.values}"
    return result.structured_content, told


def test_every_tool_that_asks_an_outside_service_sends_progress() -> None:
    silent = [
        spec.name
        for family in FAMILIES
        for spec in collect(family)
        if spec.annotations.open_world_hint and "progress_of(ctx)" not in inspect.getsource(spec.fn)
    ]
    assert silent == [], (
        "these tools wait on the network but pass no progress_of(ctx) to their domain code, so a client sees "
        f"nothing while they wait: {silent}"
    )


class ClosedStream:
    """A context whose client has gone: every notification fails."""

    def __init__(self) -> None:
        self.tries = 0

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        self.tries += 1
        raise anyio.BrokenResourceError


async def test_a_notification_that_cannot_be_sent_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    stream = ClosedStream()
    progress = progress_of(cast(Any, stream))
    await progress("from async code")
    await anyio.to_thread.run_sync(progress.blocking, "from a worker thread")
    assert stream.tries == 2 and progress.sent == 2
    assert "progress not sent: from async code" in caplog.text and "from a worker thread" in caplog.text


# --- literature --------------------------------------------------------------------------------------------------


async def test_search_papers_tells_each_source_asked_and_the_rate_limit_wait(lit: Client, server: ReplayServer) -> None:
    server.add(Route("GET", QUERY, feed(atom({"id": "2001.00001", "title": "Graph networks"}))))
    limited = Response(429, {}, {"Retry-After": "1"})
    found = Response(200, {"data": [s2_paper("c" * 40, "Graph kernels")]})
    server.add(Route("GET", "/graph/v1/paper/search", [limited, found]))
    answer, told = await told_call(lit, "search_papers", {"query": "graph networks"})
    assert len(answer["papers"]) == 2 and not answer["degraded"]
    assert told.find("arXiv: search 'graph networks'") and told.find("Semantic Scholar: search 'graph networks'")
    assert told.find("Semantic Scholar: HTTP 429; attempt 2 of 3")
    [wait] = told.find(r"Semantic Scholar: waiting (\d\.\d) s for a request slot \(rate limit\)")
    assert 0.1 <= float(wait.split()[3]) <= 1.0, "what is left of the Retry-After (1 s)"
    cached, again = await told_call(lit, "search_papers", {"query": "graph networks"})
    assert cached == answer and again.messages == ["answered from the workspace's cache of recent searches"]


async def test_paper_graph_tells_the_lookup_the_graph_request_and_the_pacing(
    workspace: Path, server: ReplayServer
) -> None:
    server.add(Route("GET", S2_PATH, Response(200, s2_paper(S2_ID, "Famous", citationCount=3))))
    citing = [{"citingPaper": s2_paper(f"{i:040x}", f"Citer {i}")} for i in range(3)]
    server.add(Route("GET", f"{S2_PATH}/citations", Response(200, {"offset": 0, "data": citing})))
    async with Client(build_server(lit_settings(workspace, server, s2_interval_s=1.5))) as client:
        answer, told = await told_call(client, "paper_graph", {"paper_id": S2_ID, "limit": 5})
    assert [p["title"] for p in answer["papers"]] == ["Citer 0", "Citer 1", "Citer 2"]
    lookup, graph, wait = told.messages
    assert (
        lookup == f"Semantic Scholar: look up {S2_ID}" and graph == f"Semantic Scholar: citations of {S2_ID} (first 5)"
    )
    assert re.fullmatch(r"Semantic Scholar: waiting [01]\.\d s for a request slot \(rate limit\)", wait), "1.5 s apart"


async def test_verify_citations_tells_each_entry_and_each_lookup(
    lit: Client, server: ReplayServer, workspace: Path
) -> None:
    known_papers(server)
    bib = workspace / "refs.bib"
    bib.write_text(
        "@article{kingma, title={Adam: A Method for Stochastic Optimization}, author={Kingma, Diederik P. and Ba, "
        "Jimmy}, year={2014}, eprint={1412.6980}}\n"
        "@article{lecun, title={Deep learning}, author={LeCun, Yann}, year={2015}, doi={10.1038/nature14539}}\n"
        "@misc{ghost, title={A Paper Nobody Wrote}}\n"
    )
    answer, told = await told_call(lit, "verify_citations", {"path": "refs.bib"})
    assert {e["key"]: e["status"] for e in answer["entries"]} == {
        "kingma": "verified", "lecun": "verified", "ghost": "not_found"
    }  # fmt: skip
    assert sorted(told.find(r"entry \d/3: \w+")) == ["entry 1/3: kingma", "entry 2/3: lecun", "entry 3/3: ghost"]
    assert told.find("arXiv: look up 1412.6980") and told.find("Semantic Scholar: look up DOI:10.1038/nature14539")
    assert told.find("Semantic Scholar: match the title 'A Paper Nobody Wrote'")


async def test_cite_tells_each_paper_looked_up(lit: Client, server: ReplayServer, workspace: Path) -> None:
    known_papers(server)
    answer, told = await told_call(lit, "cite", {"paper_ids": ["arXiv:1412.6980", "10.1038/nature14539"]})
    assert answer["keys"] == ["kingma2014adam", "lecun2015deep"]
    assert sorted(told.messages) == [
        "Semantic Scholar: look up ARXIV:1412.6980",
        "Semantic Scholar: look up DOI:10.1038/nature14539",
        "arXiv: look up 1412.6980",
    ]


async def test_read_paper_tells_the_lookup_the_downloads_and_the_conversions(lit: Client, server: ReplayServer) -> None:
    paper = "2408.06292"
    server.add(Route("GET", re.compile(r"/graph/v1/paper/.*"), Response(404, {"error": "not found"})))
    server.add(Route("GET", QUERY, feed(atom({"id": paper, "title": "StyleFusion", "year": 2024}))))
    server.add(Route("GET", f"/e-print/{paper}v1", Response(200, tarball({"fig.txt": b"no tex here"}))))
    pdf = one_page_pdf("Fallback text")
    server.add(Route("GET", f"/pdf/{paper}v1", Response(200, pdf)))
    answer, told = await told_call(lit, "read_paper", {"paper_id": paper})
    assert answer["kind"] == "pdf"
    assert told.find(f"arXiv: look up {paper}") and told.find(f"Semantic Scholar: look up ARXIV:{paper}")
    steps = [
        f"arXiv: download the e-print of {paper}v1",
        rf"arXiv: received the e-print of {paper}v1 \(\d+ B\)",
        f"unpacking the e-print of {paper}v1",
        "converting the LaTeX source to text",
        f"arXiv: download the pdf of {paper}v1",
        rf"arXiv: received the pdf of {paper}v1 \({len(pdf)} B\)",
        "extracting the text of the PDF",
    ]
    at = [next(i for i, m in enumerate(told.messages) if re.fullmatch(step, m)) for step in steps]
    assert at == sorted(at), "told in the order the steps run"
    _, later = await told_call(lit, "read_paper", {"paper_id": paper, "offset": 0})
    assert later.messages == [], "a paper read before is neither looked up nor fetched again"


# --- repos -------------------------------------------------------------------------------------------------------


async def test_find_code_tells_the_paper_lookup_each_linked_repository_and_each_search(
    workspace: Path, server: ReplayServer
) -> None:
    server.add(Route("GET", re.compile(r"/graph/v1/paper/.*"), Response(404, {"error": "Paper not found"})))
    server.add(Route("GET", "/api/query", arxiv_feed("2106.09685", "LoRA", "An abstract.", "Code: github.com/ms/LoRA")))
    server.add(Route("GET", "/repos/ms/LoRA", Response(200, item("ms/LoRA", 9000, "2021-06-18"))))
    server.add(Route("GET", "/search/repositories", search_answer(item("x/lora-copy", 3, "2022-01-01"))))
    async with Client(build_server(repos_settings(workspace, server))) as client:
        answer, told = await told_call(client, "find_code", {"paper_id": "arXiv:2106.09685"})
    assert [c["repo"] for c in answer["candidates"]] == ["ms/LoRA", "x/lora-copy"]
    both_sources = sorted(told.messages[:2])  # asked at once
    assert both_sources == ["Semantic Scholar: look up ARXIV:2106.09685", "arXiv: look up 2106.09685"]
    assert told.messages[2:] == [
        "GitHub: look up ms/LoRA, linked from the paper",
        'GitHub: arXiv id search: "2106.09685" in:name,description,readme',
        'GitHub: title search: "LoRA" in:name,description,readme',
    ]


async def test_fetch_repo_tells_the_bytes_received_as_the_download_goes(workspace: Path, server: ReplayServer) -> None:
    full_name, sha = "me/big", "abcdef0" + "1" * 33
    body = tarball({f"me-big-{sha[:7]}/README.md": b"# big\n", f"me-big-{sha[:7]}/weights.bin": os.urandom(9 << 20)})
    server.add(Route("GET", f"/repos/{full_name}", Response(200, repo_json(full_name))))
    server.add(Route("GET", f"/repos/{full_name}/commits/main", Response(200, commit_json(sha))))
    server.add(*archive_routes(full_name, sha, body, f"/{full_name}/legacy.tar.gz/{sha}"))
    async with Client(build_server(repos_settings(workspace, server))) as client:
        answer, told = await told_call(client, "fetch_repo", {"repo": full_name})
        again, reused = await told_call(client, "fetch_repo", {"repo": full_name, "ref": sha})
    assert answer["download_bytes"] == len(body) and answer["summary"]["files"] == 2
    whole = f"{len(body) / (1 << 20):.1f} MiB"
    assert told.messages[:3] == [
        "GitHub: look up me/big",
        "GitHub: resolve 'main' of me/big to a commit",
        "GitHub: download the tarball of me/big@abcdef0",
    ]
    received = told.find(r"GitHub: received ([\d.]+) MiB of " + re.escape(whole))
    assert len(received) >= 2, f"the bytes as they come, not only at the end: {told.messages}"
    assert told.messages[3 + len(received) :] == [
        f"GitHub: received {whole}, the whole tarball",
        f"unpacking {whole}, every member checked first",
        "summarising 2 files",
        "repos/me__big@abcdef0: 2 files",
    ]
    assert again["reused"] and reused.messages == [
        "reusing repos/me__big@abcdef0: commit abcdef0 was fetched before",
        "repos/me__big@abcdef0: 2 files",
    ]


async def test_fetch_repo_tells_a_clone_from_another_host(
    workspace: Path, server: ReplayServer, git_daemon: tuple[str, str, str]
) -> None:
    url, tip, _ = git_daemon
    async with Client(build_server(repos_settings(workspace, server))) as client:
        answer, told = await told_call(client, "fetch_repo", {"repo": url})
    assert answer["commit"] == tip
    assert told.messages[0] == f"git: shallow clone of {url}"
    assert told.messages[-2:] == ["summarising the clone", f"{answer['path']}: {answer['summary']['files']} files"]
    assert all(re.fullmatch(r"git: [\d.]+ (B|KiB|MiB) on disk so far", m) for m in told.messages[1:-2])


# --- latex -------------------------------------------------------------------------------------------------------


@pytest.mark.latex
@pytest.mark.parametrize("sandbox", [pytest.param("bwrap", marks=pytest.mark.bwrap), "off"])
async def test_compile_paper_tells_each_latexmk_pass_the_bibliography_and_the_preview(
    workspace: Path, tmp_path: Path, sandbox: Literal["bwrap", "off"]
) -> None:
    good_paper(workspace)
    open_for_sandbox(tmp_path, workspace / "paper")
    settings = Settings(workspace=workspace, toolsets=["latex"], latex_sandbox=sandbox)
    async with Client(build_server(settings)) as client:
        answer, told = await told_call(client, "compile_paper", {"preview_page": 1})
    assert answer["ok"] and answer["toolchain"] == "latexmk" and answer["sandboxed"] is (sandbox == "bwrap")
    assert told.messages[:4] == [
        "latexmk: compiling main.tex" + (" in the sandbox" if sandbox == "bwrap" else ""),
        "latexmk: pdflatex run 1",
        "latexmk: bibtex run 1",
        "latexmk: pdflatex run 2",
    ]
    assert all(re.fullmatch(r"latexmk: (pdflatex|bibtex) run \d", m) for m in told.messages[4:-1]), told.messages
    assert told.messages[-1] == "pdftoppm: page 1 as an image"


@pytest.mark.latex
async def test_compile_paper_without_latexmk_tells_each_program_it_runs(workspace: Path) -> None:
    preamble = "\\usepackage[backend=biber]{biblatex}\n\\addbibresource{refs.bib}\n"
    write(workspace / "paper/main.tex", doc("See \\cite{knuth}.\n\\printbibliography", preamble))
    write(workspace / "paper/refs.bib", BIB)
    settings = Settings(
        workspace=workspace, toolsets=["latex"], latex_sandbox="off"
    )  # unsandboxed biblatex: no latexmk
    async with Client(build_server(settings)) as client:
        answer, told = await told_call(client, "compile_paper", {})
    assert answer["ok"] and answer["toolchain"].startswith("pdflatex+biber+pdflatex")
    runs = answer["toolchain"].count("pdflatex")
    assert told.messages == ["pdflatex run 1", "biber", *(f"pdflatex run {n}" for n in range(2, runs + 1))]
