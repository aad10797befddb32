"""Run review_paper over the ICLR review bench through a real MCP client session whose sampling goes to a model.

Each bench paper (`iclr_parsed/<paper_id>.txt`) is copied into a workspace under the output folder and reviewed
by the research-mcp server through `mcp.Client` (in process, protocol 2026-07-28), whose sampling callback sends
every request to an OpenAI-compatible chat-completions endpoint. The filled forms land in CSVs with the columns
of The AI Scientist's `llm_reviews/*.csv` (paper_id, Summary, ..., Overall, ..., Decision), which the bench's
metrics read:

- `reviews_r<k>.csv`: one row per paper for repeat k, the ensemble: each score the rounded mean over the
  reviewers, Decision the majority (a tie rejects), the texts of reviewer 1;
- `reviews_r<k>_by_reviewer.csv`: every reviewer's form, with a `reviewer` column after paper_id;
- `progress.json`: each paper and repeat with its review id and whether it is done; a second run skips what is
  done and continues a review left half-way (its steps are stored in the workspace's state database);
- `summary.json`: papers done, calls, tokens, cost (from the prices given), seconds, and with two repeats the
  spread of the same paper's scores (mean |Overall_1 - Overall_2|, decisions that flipped).

Run it for real (the key is read from the environment, never from the command line):

    export REVIEW_BENCH_URL=https://api.openai.com/v1 REVIEW_BENCH_MODEL=gpt-4o-2024-05-13
    export REVIEW_BENCH_API_KEY=sk-...            # optional for a local server
    export REVIEW_BENCH_PRICE_IN=2.5 REVIEW_BENCH_PRICE_OUT=10   # dollars per million tokens, optional
    python -m evals.review_bench.driver --papers ../shared/fixtures/reviews/iclr_parsed --limit 50 \\
        --out results/review_bench --reviewers 3 --venue iclr --repeat 2

Interrupt it at any time and run the same command again to resume. Its test (tests/integration/
test_review_tools.py) drives it with a scripted sampler in the same kind of session, since no model is
reachable there.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp_types import CreateMessageRequestParams, CreateMessageResult, ErrorData, TextContent

from research_mcp.config import Settings
from research_mcp.server import build_server
from research_mcp.tools.review._endpoint import Endpoint, chat
from research_mcp.tools.review.form import CSV_COLUMNS, SCORES, check_form, csv_row

__all__ = ["BenchResult", "EndpointSampler", "Sampler", "Usage", "main", "run_bench"]


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Sampler(Protocol):
    """A client's sampling callback that counts what it spends."""

    usage: Usage

    async def __call__(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData: ...


@dataclass
class EndpointSampler:
    """Answers sampling requests with an OpenAI-compatible endpoint."""

    endpoint: Endpoint
    usage: Usage = field(default_factory=Usage)

    async def __call__(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData:
        messages: list[dict[str, str]] = []
        if params.system_prompt:
            messages.append({"role": "system", "content": params.system_prompt})
        for message in params.messages:
            content = message.content
            text = content.text if isinstance(content, TextContent) else ""
            messages.append({"role": message.role, "content": text})
        reply = await chat(self.endpoint, messages)
        self.usage.calls += 1
        self.usage.prompt_tokens += reply.prompt_tokens
        self.usage.completion_tokens += reply.completion_tokens
        content = TextContent(type="text", text=reply.text)
        return CreateMessageResult(role="assistant", content=content, model=reply.model or self.endpoint.model)


@dataclass
class BenchResult:
    done: int
    failed: list[str]
    summary: dict[str, Any]


def _ensemble(paper_id: str, forms: list[dict[str, Any]]) -> dict[str, Any]:
    checked = [check_form(f) for f in forms]
    row = csv_row(paper_id, checked[0])
    for name in SCORES:
        mean = statistics.fmean(getattr(f, name) for f in checked)
        row[name.capitalize()] = int(mean + 0.5)
    accepts = sum(f.decision == "Accept" for f in checked)
    row["Decision"] = "Accept" if accepts * 2 > len(checked) else "Reject"
    return row


def _append(path: Path, columns: Sequence[str], row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        found: dict[str, Any] = json.loads(path.read_text())
        return found
    except (OSError, ValueError):
        return {}


async def _review(client: Client, paper: str, entry: dict[str, Any], reviewers: int, venue: str) -> dict[str, Any]:
    """Start (or continue) one review and call until it is done; its last answer."""
    if entry.get("review_id") is None:
        started = await client.call_tool("review_paper", {"path": paper, "reviewers": reviewers, "venue": venue})
        if started.is_error or started.structured_content is None:
            raise RuntimeError(str(started.content))
        entry["review_id"] = started.structured_content["review_id"]
    answer: dict[str, Any] = {}
    for _ in range(4 * reviewers + 4):  # a draft and a reflection each, with room for answers asked again
        result = await client.call_tool("review_paper", {"review_id": entry["review_id"]})
        if result.is_error or result.structured_content is None:
            raise RuntimeError(str(result.content))
        answer = result.structured_content
        if answer["state"] != "running" or all(r["status"] in ("done", "failed") for r in answer["reviewers"]):
            break
    return answer


async def run_bench(
    papers: Sequence[Path], out: Path, sampler: Sampler, *, reviewers: int = 3, venue: str = "iclr",
    repeats: int = 1, price_in: float = 0.0, price_out: float = 0.0, log: Callable[[str], None] = print,
) -> BenchResult:  # fmt: skip
    """Review each paper `repeats` times (see the module docstring); resumable from `out`."""
    workspace = out / "workspace"
    (workspace / "papers").mkdir(parents=True, exist_ok=True)
    progress_path = out / "progress.json"
    progress = _load_json(progress_path)
    started_at, failed, done = time.monotonic(), list[str](), 0
    jobs = [(repeat, paper) for repeat in range(1, repeats + 1) for paper in papers]
    async with Client(build_server(Settings(workspace=workspace)), sampling_callback=sampler) as client:
        for number, (repeat, paper) in enumerate(jobs, 1):
            paper_id = paper.stem
            key = f"{paper_id}#{repeat}"
            entry: dict[str, Any] = progress.setdefault(key, {"review_id": None, "done": False})
            if entry["done"]:
                done += 1
                continue
            target = workspace / "papers" / paper.name
            if not target.exists():
                shutil.copyfile(paper, target)
            try:
                answer = await _review(client, f"papers/{paper.name}", entry, reviewers, venue)
            except (RuntimeError, OSError) as exc:
                failed.append(key)
                log(f"[{number}/{len(jobs)}] {key}: failed: {exc}")
                continue
            finally:
                progress_path.write_text(json.dumps(progress, indent=1))
            if answer.get("state") != "done":
                failed.append(key)
                log(f"[{number}/{len(jobs)}] {key}: not done ({answer.get('message')})")
                continue
            record = _load_json(workspace / "reviews" / entry["review_id"] / "review.json")
            forms = [r["form"] for r in record["reviews"]]
            _append(out / f"reviews_r{repeat}.csv", CSV_COLUMNS, _ensemble(paper_id, forms))
            for r in record["reviews"]:
                row = {"reviewer": r["reviewer"], **csv_row(paper_id, check_form(r["form"]))}
                _append(out / f"reviews_r{repeat}_by_reviewer.csv", ["reviewer", *CSV_COLUMNS], row)
            entry["done"] = True
            progress_path.write_text(json.dumps(progress, indent=1))
            done += 1
            usage = sampler.usage
            log(f"[{number}/{len(jobs)}] {key}: overall {answer['meta']['scores']['overall']['values']}; "
                f"so far {usage.calls} calls, {usage.prompt_tokens}+{usage.completion_tokens} tokens")  # fmt: skip
    usage = sampler.usage
    summary: dict[str, Any] = {
        "papers": len(papers), "repeats": repeats, "reviewers": reviewers, "venue": venue, "done": done,
        "failed": failed, "calls": usage.calls, "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost": round((usage.prompt_tokens * price_in + usage.completion_tokens * price_out) / 1e6, 4),
        "seconds": round(time.monotonic() - started_at, 1),
    }  # fmt: skip
    if repeats >= 2:
        summary["spread"] = _spread(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return BenchResult(done=done, failed=failed, summary=summary)


def _spread(out: Path) -> dict[str, Any]:
    """How far the first two repeats of the same papers differ."""
    rows: list[dict[str, dict[str, str]]] = []
    for repeat in (1, 2):
        path = out / f"reviews_r{repeat}.csv"
        with path.open(newline="") as handle:
            rows.append({row["paper_id"]: row for row in csv.DictReader(handle)})
    both = sorted(set(rows[0]) & set(rows[1]))
    if not both:
        return {"papers": 0}
    gaps = [abs(int(rows[0][p]["Overall"]) - int(rows[1][p]["Overall"])) for p in both]
    flips = sum(rows[0][p]["Decision"] != rows[1][p]["Decision"] for p in both)
    return {"papers": len(both), "mean_abs_overall_diff": round(statistics.fmean(gaps), 3), "max_overall_diff":
            max(gaps), "decision_flips": flips}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--papers", type=Path, required=True, help="Folder of <paper_id>.txt bench papers.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="The first N papers (sorted by id).")
    parser.add_argument("--reviewers", type=int, default=3)
    parser.add_argument("--venue", default="iclr", choices=["neurips", "iclr", "icml", "workshop"])
    parser.add_argument("--repeat", type=int, default=1, help="Review each paper this many times (2: spread).")
    args = parser.parse_args(argv)
    url, model = os.environ.get("REVIEW_BENCH_URL"), os.environ.get("REVIEW_BENCH_MODEL")
    if not url or not model:
        print(
            "Set REVIEW_BENCH_URL and REVIEW_BENCH_MODEL (and REVIEW_BENCH_API_KEY if it needs one).", file=sys.stderr
        )
        return 2
    endpoint = Endpoint(url=url, model=model, api_key=os.environ.get("REVIEW_BENCH_API_KEY"))
    papers = sorted(args.papers.glob("*.txt"))[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    result = anyio.run(
        lambda: run_bench(
            papers,
            args.out,
            EndpointSampler(endpoint),
            reviewers=args.reviewers,
            venue=args.venue,
            repeats=args.repeat,
            price_in=float(os.environ.get("REVIEW_BENCH_PRICE_IN", "0")),
            price_out=float(os.environ.get("REVIEW_BENCH_PRICE_OUT", "0")),
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )  # fmt: skip
    )
    print(json.dumps(result.summary, indent=1))
    return 0 if not result.failed else 1


if __name__ == "__main__":
    sys.exit(main())
