"""`python -m evals.bench.literature`: the literature tools against their baselines, side by side in one run.

Three measurements, each the median of `--runs` interleaved rounds (ours and the baseline alternate):

- fan-out: a replay server on 127.0.0.1 delays arXiv answers by 300 ms and Semantic Scholar's by 200 ms.
  Ours: a `search_papers` tool call through an in-process MCP client (both sources, merged; cache off).
  Baseline: the slower source alone, one request of the real `arxiv` client to the same server.
  Target: ours at most 1.2x (the sources are asked at the same time, not one after the other).
- cache: the same `search_papers` call repeated, answered from the state store's cache. Baseline: a tool of a
  bare MCP server over the same in-process transport returning a payload of the same size (the same result).
  Target: at most 1.5x.
- library: `search_library` (the domain function of the offline fallback: FTS5 match, bm25 ranking, rows parsed
  into papers) over 10,000 stored papers, against a bare FTS5 query for the same words on the same rows.
  Target: at most 1.5x.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from research_mcp.tools.literature.models import SearchPapersResult
from tests.replay import ATOM_TYPE, ReplayServer, Response, Route

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "literature.json"
TARGETS = {"fanout": 1.2, "cache": 1.5, "library": 1.5}
ARXIV_DELAY_S = 0.3
S2_DELAY_S = 0.2
WORDS = (
    "attention transformer diffusion graph neural network language model vision contrastive reinforcement policy "
    "gradient sparse mixture experts scaling law retrieval augmented generation quantization pruning distillation "
    "benchmark robustness adversarial causal inference bayesian optimisation kernel federated privacy"
).split()


def _feed(n: int) -> bytes:
    entries = "".join(
        f"<entry><id>http://arxiv.org/abs/2401.{i:05d}v1</id><title>Paper {i} on attention</title>"
        "<updated>2024-01-02T00:00:00Z</updated><published>2024-01-02T00:00:00Z</published>"
        f"<summary>Abstract {i}.</summary><author><name>Author {i}</name></author>"
        '<category term="cs.LG"/><arxiv:primary_category term="cs.LG"/></entry>'
        for i in range(n)
    )
    return (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom">'
        f"<opensearch:totalResults>{n}</opensearch:totalResults>{entries}</feed>"
    ).encode()


def _s2(n: int) -> dict[str, Any]:
    data = [
        {"paperId": f"{i:040x}", "title": f"S2 paper {i} on attention", "year": 2023, "authors": [{"name": "X Y"}],
         "citationCount": i, "externalIds": {"ArXiv": f"2401.{i:05d}"} if i % 2 else {}}
        for i in range(n)
    ]  # fmt: skip
    return {"total": n, "offset": 0, "data": data}


async def _median_pair(
    ours: Callable[[], Awaitable[None]], base: Callable[[], Awaitable[None]], runs: int
) -> dict[str, Any]:
    mine: list[float] = []
    theirs: list[float] = []
    for round_ in range(runs + 1):  # the first round warms up both and is not counted
        order = [(ours, mine), (base, theirs)]
        for fn, into in order if round_ % 2 else order[::-1]:
            start = time.perf_counter()
            await fn()
            if round_:
                into.append(time.perf_counter() - start)
    ours_ms, base_ms = statistics.median(mine) * 1000, statistics.median(theirs) * 1000
    return {"ours_ms": round(ours_ms, 3), "baseline_ms": round(base_ms, 3), "ratio": round(ours_ms / base_ms, 3),
            "ours_samples_ms": [round(s * 1000, 3) for s in mine],
            "baseline_samples_ms": [round(s * 1000, 3) for s in theirs]}  # fmt: skip


async def measure_network(runs: int, papers: int) -> dict[str, Any]:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    from research_mcp.config import Settings
    from research_mcp.server import build_server

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-literature-") as tmp, ReplayServer() as server:
        server.add(Route("GET", "/api/query", Response(200, _feed(papers), {"Content-Type": ATOM_TYPE},
                                                       delay_s=ARXIV_DELAY_S)))  # fmt: skip
        server.add(Route("GET", "/graph/v1/paper/search", Response(200, _s2(papers), delay_s=S2_DELAY_S)))
        workspace = Path(tmp) / "ws"
        workspace.mkdir()
        common: dict[str, Any] = {
            "workspace": workspace, "arxiv_url": server.url + "/api/query", "s2_url": server.url,
            "arxiv_interval_s": 0, "s2_interval_s": 0, "data_dir": Path(tmp) / "data",
        }  # fmt: skip
        args = {"query": "attention", "limit": 10}

        async with Client(build_server(Settings(**common, search_cache_ttl_s=0))) as client:

            async def fanout() -> None:
                result = await client.call_tool("search_papers", args)
                assert not result.is_error and len((result.structured_content or {})["papers"]) == 10

            def raw_arxiv() -> None:
                arxiv: Any = importlib.import_module("arxiv")
                c = arxiv.Client(page_size=10, delay_seconds=0, num_retries=0)
                c.query_url_format = server.url + "/api/query?{}"
                assert len(list(c.results(arxiv.Search(query="attention", max_results=10)))) == 10

            async def slower_source() -> None:
                await anyio.to_thread.run_sync(raw_arxiv)

            results["fanout"] = await _median_pair(fanout, slower_source, runs)

        async with Client(build_server(Settings(**common))) as client:
            first = await client.call_tool("search_papers", args)
            payload = first.structured_content or {}
            baseline_server: MCPServer[Any] = MCPServer("baseline")

            fixed = SearchPapersResult.model_validate(payload)

            @baseline_server.tool()
            def same_payload() -> SearchPapersResult:
                """Returns a fixed payload, the cached search result itself (same size, same output schema)."""
                return fixed

            async with Client(baseline_server) as bare:

                async def cached() -> None:
                    result = await client.call_tool("search_papers", args)
                    assert not result.is_error

                async def bare_call() -> None:
                    result = await bare.call_tool("same_payload", {})
                    assert not result.is_error

                results["cache"] = await _median_pair(cached, bare_call, runs * 4)
                results["cache"]["payload_bytes"] = len(json.dumps(payload))
        results["requests_served"] = len(server.requests)
    return results


async def measure_library(runs: int, count: int) -> dict[str, Any]:
    from research_mcp.store import Store
    from research_mcp.tools.literature import library
    from research_mcp.tools.literature.models import Paper

    rng = random.Random(7)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    with tempfile.TemporaryDirectory(prefix="bench-library-") as tmp:
        store = Store(Path(tmp) / "state.db")
        papers = [
            Paper(id=f"arXiv:2401.{i:05d}", title=words(8), authors=[f"Author {i}"], year=2000 + i % 25,
                  abstract=words(120), arxiv_id=f"2401.{i:05d}", sources=["arxiv"])
            for i in range(count)
        ]  # fmt: skip
        start = time.perf_counter()
        library.save_papers(store, papers)
        stored_s = time.perf_counter() - start
        query = "sparse mixture experts"
        match = library.fts_query(query)
        conn = store.connection()

        async def ours() -> None:
            assert len(library.search_library(store, query, 10)) == 10

        async def bare() -> None:
            rows = conn.execute(
                "SELECT paper_id FROM papers_fts WHERE papers_fts MATCH ? ORDER BY rank LIMIT 10", (match,)
            ).fetchall()
            assert len(rows) == 10

        result = await _median_pair(ours, bare, runs * 4)
        result |= {"papers": count, "store_s": round(stored_s, 2), "query": query}
        store.close()
    return result


def render(report: dict[str, Any]) -> str:
    lines = ["literature benchmarks (median ms; ratio = ours / baseline)"]
    for name, target in TARGETS.items():
        row = report.get(name)
        if row is None:
            continue
        verdict = "PASS" if row["ratio"] <= target else "FAIL"
        lines.append(
            f"  {name:8s} ours {row['ours_ms']:9.3f}  baseline {row['baseline_ms']:9.3f}  "
            f"ratio {row['ratio']:.3f} (target <= {target})  {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.bench.literature", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--papers", type=int, default=10_000, help="Papers stored for the library measurement.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        report: dict[str, Any] = {"at": time.time(), "runs": args.runs, "targets": TARGETS}
        report |= await measure_network(args.runs, 10)
        report["library"] = await measure_library(args.runs, args.papers)
        return report

    report = anyio.run(run)
    report["passed"] = all(report[name]["ratio"] <= target for name, target in TARGETS.items())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(render(report))
    print(f"written to {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
