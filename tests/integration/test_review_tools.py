"""review_paper and submit_review through real in-process MCP client sessions: client sampling on both protocol
versions (2026-07-28 by `mcp.Client` auto mode, 2025-11-25 by legacy mode), the client's own model through
submit_review, a PDF end to end, and a configured endpoint (a real OpenAI-compatible HTTP server on 127.0.0.1)
with retries, cancel and resume after a restart."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp_types import CreateMessageRequestParams, CreateMessageResult, TextContent
from pydantic import SecretStr

from evals.review_bench.driver import Usage, run_bench
from research_mcp.config import Settings
from research_mcp.server import build_server
from research_mcp.store import Store
from research_mcp.tools.review.reviews import read_paper
from research_mcp.workspace import Workspace
from tests.conftest import fixtures_dir
from tests.integration._client import call, call_raw, error_text

pytestmark = pytest.mark.anyio

PAPER = """\\documentclass{article}
\\title{Sparse Adapters for Small Models}
\\author{Jane Doe \\\\ Example University \\\\ jane@example.org}
\\begin{document}
\\maketitle
\\begin{abstract}
We propose sparse adapters and show they match full fine-tuning at a tenth of the parameters.
\\end{abstract}
\\section{Introduction}
Fine-tuning small language models is costly. We add sparse adapters to each layer and train only them.
Code is at https://github.com/janedoe/sparse-adapters.
\\section{Method}
Each adapter is a low-rank matrix with a learned sparsity mask; we prune 90 percent of its entries.
\\section{Experiments}
On three classification tasks the adapters reach 91.2 percent accuracy against 91.5 percent for full
fine-tuning, averaged over one seed. Our method significantly outperforms LoRA.
\\section{Conclusion}
Sparse adapters are a cheap alternative to fine-tuning.
\\end{document}
"""


def form(
    overall: int = 5, *, weakness: str = "The evaluation uses a single seed only", **scores: Any
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "summary": "The paper adds sparse adapters to small language models.",
        "strengths": ["Simple method"],
        "weaknesses": [weakness, "No comparison with prefix tuning"],
        "questions": ["How is the mask learned?"],
        "limitations": ["Only classification tasks"],
        "ethical_concerns": False,
        "originality": 2, "quality": 2, "clarity": 3, "significance": 2,
        "soundness": 2, "presentation": 3, "contribution": 2,
        "overall": overall, "confidence": 4, "decision": "Accept" if overall >= 6 else "Reject",
    }  # fmt: skip
    found.update(scores)
    return found


def fenced(data: dict[str, Any]) -> str:
    return f"Here is my review.\n```json\n{json.dumps(data)}\n```"


@dataclass
class ScriptedSampler:
    """A client's sampling callback that answers with scripted forms: reviewer k's draft scores overall 3+k, its
    reflection one more; the first answer can be made invalid to check it is asked again."""

    delay_s: float = 0.0
    invalid_first: bool = False
    shift: int = 0
    usage: Usage = field(default_factory=Usage)
    requests: list[CreateMessageRequestParams] = field(default_factory=list[CreateMessageRequestParams])

    async def __call__(self, context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        self.requests.append(params)
        self.usage = Usage(self.usage.calls + 1, self.usage.prompt_tokens + 100, self.usage.completion_tokens + 20)
        await anyio.sleep(self.delay_s)
        system = params.system_prompt or ""
        slot = int(system.split("You are reviewer ")[1].split(".")[0])
        reflect = len(params.messages) > 1
        if self.invalid_first and len(self.requests) == 1:
            text = "I think the paper is fine."
        else:
            text = fenced(
                form(3 + slot + int(reflect) + self.shift, weakness=f"Only a single seed is reported (reviewer {slot})")
            )
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text=text), model="scripted-1")


def write_paper(workspace: Path) -> str:
    (workspace / "paper").mkdir()
    (workspace / "paper" / "main.tex").write_text(PAPER)
    return "paper/main.tex"


async def drive(client: Client, review_id: str, calls: int = 10) -> tuple[dict[str, Any], list[float]]:
    """Call review_paper(review_id) until the review is done: its last answer and each call's seconds."""
    took: list[float] = []
    answer: dict[str, Any] = {}
    for _ in range(calls):
        started = time.monotonic()
        answer = await call(client, "review_paper", {"review_id": review_id})
        took.append(time.monotonic() - started)
        if answer["state"] != "running":
            return answer, took
    raise AssertionError(f"not done after {calls} calls: {answer}")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sampling_steps_through_a_real_client_on_both_protocol_versions(
    settings: Settings, workspace: Path, mode: str
) -> None:
    sampler = ScriptedSampler(delay_s=0.2)
    path = write_paper(workspace)
    async with Client(build_server(settings), raise_exceptions=True, sampling_callback=sampler, mode=mode) as client:
        started = await call(client, "review_paper", {"path": path, "reviewers": 3, "venue": "workshop"})
        assert started["mode"] == "sampling" and started["steps"] == "0 of 6" and not sampler.requests
        assert started["next_step"] == {"tool": "review_paper", "arguments": {"review_id": started["review_id"]},
                                        "why": "Continue (or check on) the reviewers."}  # fmt: skip
        done, took = await drive(client, started["review_id"])
    assert done["state"] == "done" and len(took) == 2, (done, took)  # a draft for each, then a reflection each
    # each call takes about one step (0.2 s) on 2026-07-28, where the reviewers' questions are answered
    # concurrently, and about three on 2025-11-25, where they are sent one after another
    assert max(took) < (1.0 if mode == "auto" else 3.0)
    # what the reviewers saw: the anonymised text, their lens, the venue's bar, and one reflection round
    assert len(sampler.requests) == 6
    drafts = [r for r in sampler.requests if len(r.messages) == 1]
    assert len(drafts) == 3
    for request in drafts:
        text = request.messages[0].content
        assert isinstance(text, TextContent)
        assert "Sparse adapters" in text.text and "github.com/janedoe" not in text.text
        assert "workshop" in (request.system_prompt or "")
        assert "No audit was run" in (request.system_prompt or "")
    assert {("method and evidence" in (r.system_prompt or "")) for r in drafts} == {True, False}
    # the stored review: forms from the reflections (overall 3 + slot + 1), the meta-review and the files
    assert [r["status"] for r in done["reviewers"]] == ["done"] * 3
    assert done["meta"]["scores"]["overall"]["values"] == [5, 6, 7]
    assert done["meta"]["scores"]["overall"]["mean"] == 6.0
    assert done["meta"]["decisions"] == {"Accept": 2, "Reject": 1}
    assert done["meta"]["shared_weaknesses"][0]["reviewers"] == [1, 2, 3]
    assert any("No calibration" in note for note in done["meta"]["notes"])
    assert done["meta"]["accept_probability"] == []
    record = json.loads((workspace / done["files"][0]).read_text())
    assert [r["model"] for r in record["reviews"]] == ["scripted-1"] * 3
    assert "## Meta-review" in (workspace / done["files"][1]).read_text()
    store = Store(workspace / ".research" / "state.db")
    rows = store.connection().execute("SELECT reviewer, review_id FROM reviews").fetchall()
    assert [(r["reviewer"], r["review_id"]) for r in rows] == [("scripted-1", done["review_id"])] * 3
    store.close()


async def test_legacy_sampling_stops_asking_when_the_next_step_would_not_fit(
    settings: Settings, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from research_mcp.server import review

    monkeypatch.setattr(review, "SAMPLING_BUDGET_S", 0.5)
    sampler = ScriptedSampler(delay_s=0.3)
    path = write_paper(workspace)
    async with Client(build_server(settings), raise_exceptions=True, sampling_callback=sampler, mode="legacy") as c:
        started = await call(c, "review_paper", {"path": path, "reviewers": 2})
        first = await call(c, "review_paper", {"review_id": started["review_id"]})
        assert first["steps"] == "1 of 4", first  # 0.3 s done + 0.3 s more > 0.5 s: one step this call
        assert "reviewer 1 draft" in first["message"]
        done, took = await drive(c, started["review_id"])
    assert done["state"] == "done" and len(took) == 3


async def test_an_answer_without_a_form_is_asked_again(settings: Settings, workspace: Path) -> None:
    sampler = ScriptedSampler(invalid_first=True)
    path = write_paper(workspace)
    async with Client(build_server(settings), raise_exceptions=True, sampling_callback=sampler) as client:
        started = await call(client, "review_paper", {"path": path, "reviewers": 1})
        first = await call(client, "review_paper", {"review_id": started["review_id"]})
        assert first["steps"] == "0 of 2" and first["reviewers"][0]["status"] == "to draft"
        done, _ = await drive(client, started["review_id"])
    assert done["state"] == "done" and len(sampler.requests) == 3


async def test_a_client_that_can_sample_may_still_fill_the_forms_itself(settings: Settings, workspace: Path) -> None:
    sampler = ScriptedSampler()
    path = write_paper(workspace)
    async with Client(build_server(settings), raise_exceptions=True, sampling_callback=sampler) as client:
        started = await call(client, "review_paper", {"path": path, "reviewers": 2})
        assert "offset=0" in started["message"] and started["text"] is None
        first = await call(client, "review_paper", {"review_id": started["review_id"]})  # reviewer 1 and 2 draft
        reading = await call(client, "review_paper", {"review_id": started["review_id"], "offset": 0})
        assert len(sampler.requests) == 2 and "Sparse adapters" in reading["text"]
        assert first["steps"] == reading["steps"] == "2 of 4" and len(reading["briefs"]) == 2
        await call(client, "submit_review", {"review_id": started["review_id"], "reviewer": 1, "form": form(4)})
        status = await call(client, "review_paper", {"review_id": started["review_id"]})  # reviewer 2 reflects
        assert status["state"] == "done" and len(sampler.requests) == 3
    assert [r["model"] for r in status["reviewers"]] == ["client", "scripted-1"]
    assert any("author's own conversation" in note and "1" in note for note in status["meta"]["notes"])


async def test_without_sampling_the_client_fills_the_forms_through_submit_review(
    client: Client, workspace: Path
) -> None:
    path = write_paper(workspace)
    started = await call(client, "review_paper", {"path": path, "reviewers": 2, "venue": "iclr"})
    review_id = started["review_id"]
    assert started["mode"] == "client" and started["next_offset"] is None
    assert "jane@example.org" not in started["text"] and "Sparse adapters" in started["text"]
    assert len(started["briefs"]) == 2 and "ICLR" in started["instructions"]
    assert "overall" in started["form_schema"]["properties"]
    assert started["next_step"]["tool"] == "submit_review"

    bad = await call_raw(client, "submit_review", {"review_id": review_id, "reviewer": 1,
                                                   "form": {**form(11), "soundness": 0, "summary": None}})  # fmt: skip
    message = error_text(bad)
    assert "overall must be a whole number from 1 to 10" in message
    assert "soundness must be a whole number from 1 to 4" in message and "summary" in message
    missing = {k: v for k, v in form(5).items() if k not in ("decision", "confidence")}
    assert "missing confidence, decision" in error_text(
        await call_raw(client, "submit_review", {"review_id": review_id, "reviewer": 1, "form": missing})
    )
    assert "reviewer must be from 1 to 2" in error_text(
        await call_raw(client, "submit_review", {"review_id": review_id, "reviewer": 3, "form": form()})
    )

    first = await call(client, "submit_review", {"review_id": review_id, "reviewer": 2, "form": form(4)})
    assert first["remaining"] == [1] and first["meta"] is None
    assert "already has a form" in error_text(
        await call_raw(client, "submit_review", {"review_id": review_id, "reviewer": 2, "form": form()})
    )
    second = await call(client, "submit_review", {"review_id": review_id, "reviewer": 1, "form": form(8)})
    meta = second["meta"]
    assert second["remaining"] == [] and meta["scores"]["overall"]["values"] == [8, 4]
    assert meta["scores"]["overall"]["sd"] == pytest.approx(2.828, abs=1e-3)
    assert meta["disagreements"][:2] == [
        "decision: reviewer(s) 1 accept, the others reject",
        "overall: 8 (reviewer 1), 4 (reviewer 2)",
    ]
    assert any("author's own conversation" in note for note in meta["notes"])
    status = await call(client, "review_paper", {"review_id": review_id})
    assert status["state"] == "done" and status["text"] is None and status["meta"] == meta


async def test_the_latest_audit_of_the_same_version_is_the_evidence(client: Client, workspace: Path) -> None:
    path = write_paper(workspace)
    paper = read_paper(Workspace(workspace.resolve(), "setting"), path)
    store = Store(workspace / ".research" / "state.db")
    finding = {"kind": "claims", "code": "one_seed_claim", "severity": "blocking", "file": path, "line": 17,
               "evidence": "significantly outperforms LoRA, from one seed", "fix": "run more seeds"}  # fmt: skip
    for audit_id, paper_hash, findings in (("au-old", "0" * 16, []), ("au-new", paper.paper_hash, [finding])):
        data = {"audit_id": audit_id, "counts": {"claims": len(findings)}, "numbers": 4, "traced": 2,
                "findings": findings}  # fmt: skip
        store.connection().execute(
            "INSERT INTO audits (id, main, paper_hash, data, created_at) VALUES (?, ?, ?, ?, ?)",
            (audit_id, path, paper_hash, json.dumps(data), time.time()),
        )
    store.close()
    started = await call(client, "review_paper", {"path": path, "reviewers": 1})
    assert "Audit au-new: 2 of 4 numbers traced" in started["instructions"]
    assert "one_seed_claim" in started["instructions"]
    done = await call(client, "submit_review", {"review_id": started["review_id"], "reviewer": 1, "form": form()})
    assert done["meta"]["audit_blocking"] == [
        f"[blocking] one_seed_claim ({path}:17): significantly outperforms LoRA, from one seed"
    ]
    # the paper changes: no audit is of this version, whatever its hash
    tex = workspace / path
    tex.write_text(PAPER.replace("three classification tasks", "four classification tasks"))
    os.utime(tex, (time.time() + 5, time.time() + 5))
    changed = await call(client, "review_paper", {"path": path, "reviewers": 1})
    assert "No audit was run" in changed["instructions"] and "au-new" not in changed["instructions"]
    # an audit made after the change counts even if it hashed the paper its own way
    store = Store(workspace / ".research" / "state.db")
    data = {"counts": {}, "numbers": 5, "traced": 5, "findings": []}
    store.connection().execute(
        "INSERT INTO audits (id, main, paper_hash, data, created_at) VALUES (?, ?, ?, ?, ?)",
        ("au-later", path, "another-hash", json.dumps(data), time.time() + 10),
    )
    store.close()
    later = await call(client, "review_paper", {"path": path, "reviewers": 1})
    assert "Audit au-later: 5 of 5 numbers traced" in later["instructions"]


def make_pdf(target: Path) -> None:
    """A two-page PDF with a real text layer (matplotlib's PDF backend, TrueType fonts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    body = [line for line in PAPER.splitlines() if line and not line.startswith("\\")]
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(target) as pdf:
        for page in (["Sparse Adapters for Small Models", "Jane Doe, jane@example.org", *body[:3]], body[3:]):
            fig = plt.figure(figsize=(8.5, 11))
            for i, line in enumerate(page):
                fig.text(0.05, 0.95 - 0.04 * i, line, fontsize=9)
            pdf.savefig(fig)
            plt.close(fig)


async def test_a_pdf_is_reviewed_end_to_end(settings: Settings, workspace: Path) -> None:
    make_pdf(workspace / "paper.pdf")
    sampler = ScriptedSampler()
    async with Client(build_server(settings), raise_exceptions=True, sampling_callback=sampler) as client:
        started = await call(client, "review_paper", {"path": "paper.pdf", "reviewers": 2})
        done, _ = await drive(client, started["review_id"])
    assert done["state"] == "done" and done["paper"] == "paper.pdf"
    seen = sampler.requests[0].messages[0].content
    assert isinstance(seen, TextContent)
    assert "Sparse Adapters for Small Models" in seen.text and "jane@example.org" not in seen.text
    assert (workspace / "reviews" / done["review_id"] / "review.md").is_file()


async def test_a_workspace_text_file_and_bad_inputs(client: Client, workspace: Path) -> None:
    bench = fixtures_dir("reviews") / "iclr_parsed"
    paper = next(iter(sorted(bench.glob("*.txt"))))
    (workspace / "bench.txt").write_text(paper.read_text())
    started = await call(client, "review_paper", {"path": "bench.txt", "reviewers": 1})
    assert started["total_chars"] > len(started["text"]) and started["next_offset"] == len(started["text"])
    page = await call(client, "review_paper", {"review_id": started["review_id"], "offset": started["next_offset"]})
    assert page["briefs"] is None and page["text"] and page["text"] != started["text"]
    (workspace / "notes.docx").write_bytes(b"PK\x03\x04")
    assert "not a .tex project, a PDF or a .txt/.md" in error_text(
        await call_raw(client, "review_paper", {"path": "notes.docx"})
    )
    assert "No review 'rv-none'" in error_text(await call_raw(client, "review_paper", {"review_id": "rv-none"}))


@dataclass
class ChatServer:
    """A small OpenAI-compatible chat-completions server on 127.0.0.1 answering with scripted forms."""

    delay_s: float = 0.0
    fail_first: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    headers: list[dict[str, str]] = field(default_factory=list[dict[str, str]])
    url: str = ""

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        system = body["messages"][0]["content"]
        slot = int(system.split("You are reviewer ")[1].split(".")[0])
        reflect = len(body["messages"]) > 2
        text = fenced(form(4 + slot + int(reflect)))
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200},
        }  # fmt: skip


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    state = ChatServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            state.headers.append(dict(self.headers))
            if self.path != "/v1/chat/completions":
                self.send_response(404)
                self.end_headers()
                return
            if len(state.requests) <= state.fail_first:
                self.send_response(429)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            time.sleep(state.delay_s)
            data = json.dumps(state.answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def endpoint_settings(settings: Settings, server: ChatServer) -> Settings:
    return settings.model_copy(
        update={"review_url": server.url, "review_model": "judge-7b", "review_api_key": SecretStr("sk-test")}
    )


async def wait_done(client: Client, review_id: str, timeout_s: float = 30) -> dict[str, Any]:
    with anyio.fail_after(timeout_s):
        while True:
            answer = await call(client, "review_paper", {"review_id": review_id})
            if answer["state"] != "running":
                return answer
            await anyio.sleep(0.05)


async def test_a_configured_endpoint_reviews_as_a_job(
    settings: Settings, workspace: Path, chat_server: ChatServer
) -> None:
    chat_server.fail_first = 1  # a 429 with Retry-After: 0, retried
    path = write_paper(workspace)
    sampler = ScriptedSampler()  # the endpoint comes first even for a client that can sample
    async with Client(build_server(endpoint_settings(settings, chat_server)), sampling_callback=sampler) as client:
        started = await call(client, "review_paper", {"path": path, "reviewers": 3})
        assert started["mode"] == "endpoint" and started["state"] == "running"
        done = await wait_done(client, started["review_id"])
    assert done["state"] == "done" and not sampler.requests
    assert len(chat_server.requests) == 7  # the refused one, then a draft and a reflection for each reviewer
    assert {h["Authorization"] for h in chat_server.headers} == {"Bearer sk-test"}
    assert {r["model"] for r in chat_server.requests} == {"judge-7b"}
    assert done["meta"]["scores"]["overall"]["values"] == [6, 7, 8]
    assert done["usage"] == {"prompt_tokens": 6000, "completion_tokens": 1200, "calls": 6}
    assert [r["model"] for r in done["reviewers"]] == ["judge-7b"] * 3


async def test_an_endpoint_review_is_cancelled(settings: Settings, workspace: Path, chat_server: ChatServer) -> None:
    chat_server.delay_s = 1.0
    path = write_paper(workspace)
    async with Client(build_server(endpoint_settings(settings, chat_server))) as client:
        started = await call(client, "review_paper", {"path": path, "reviewers": 2})
        await anyio.sleep(0.3)
        busy = {"review_id": started["review_id"], "reviewer": 1, "form": form()}
        assert "still at work" in error_text(await call_raw(client, "submit_review", busy))
        cancelled = await call(client, "review_paper", {"review_id": started["review_id"], "cancel": True})
        assert cancelled["state"] == "cancelled" and cancelled["next_step"] is None
        await anyio.sleep(1.5)  # the requests under way would have been answered by now
        later = await call(client, "review_paper", {"review_id": started["review_id"]})
    assert later["state"] == "cancelled" and later["steps"] == "0 of 4"
    assert len(chat_server.requests) == 2
    assert "submit" not in later["message"]


async def test_an_endpoint_review_resumes_after_a_restart(
    settings: Settings, workspace: Path, chat_server: ChatServer
) -> None:
    chat_server.delay_s = 0.4
    path = write_paper(workspace)
    configured = endpoint_settings(settings, chat_server)
    async with Client(build_server(configured)) as client:
        started = await call(client, "review_paper", {"path": path, "reviewers": 1})
        with anyio.fail_after(10):
            for _ in range(1000):
                answer = await call(client, "review_paper", {"review_id": started["review_id"]})
                if answer["steps"] != "0 of 2":
                    break
                await anyio.sleep(0.05)
    # the server stopped with the reflection under way; a new one takes the review from its stored step
    async with Client(build_server(configured)) as client:
        resumed = await call(client, "review_paper", {"review_id": started["review_id"]})
        assert resumed["message"].startswith("Resumed after a server restart"), resumed
        done = await wait_done(client, started["review_id"])
    assert done["state"] == "done"
    drafts = [r for r in chat_server.requests if len(r["messages"]) == 2]
    assert len(drafts) == 1  # the draft was not asked again


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


async def test_the_bench_driver_writes_csvs_resumes_and_reports_the_spread(tmp_path: Path) -> None:
    bench = fixtures_dir("reviews")
    papers = sorted((bench / "iclr_parsed").glob("*.txt"))[:2]
    out, lines = tmp_path / "out", list[str]()
    sampler = ScriptedSampler()
    first = await run_bench(papers, out, sampler, reviewers=2, repeats=1, price_in=2.5, price_out=10.0,
                            log=lines.append)  # fmt: skip
    assert first.done == 2 and not first.failed and sampler.usage.calls == 8 and len(lines) == 2
    assert first.summary["cost"] == pytest.approx((800 * 2.5 + 160 * 10.0) / 1e6)
    # a second run with two repeats skips the first (done) and reviews each paper once more
    sampler.shift = 1
    second = await run_bench(papers, out, sampler, reviewers=2, repeats=2, log=lines.append)
    assert second.done == 4 and sampler.usage.calls == 16
    assert second.summary["spread"] == {"papers": 2, "mean_abs_overall_diff": 1.0, "max_overall_diff": 1,
                                        "decision_flips": 2}  # fmt: skip
    reference = read_csv(next(iter(sorted((bench / "llm_reviews").glob("*.csv")))))
    ours = read_csv(out / "reviews_r1.csv")
    assert list(ours[0]) == list(reference[0])  # the columns, in their order
    assert [row["paper_id"] for row in ours] == [p.stem for p in papers]
    assert [(row["Overall"], row["Decision"]) for row in ours] == [("6", "Reject")] * 2  # written as the originals
    assert all(row["Overall"].isdigit() for row in reference)
    assert [row["Overall"] for row in read_csv(out / "reviews_r2.csv")] == ["7", "7"]
    assert len(read_csv(out / "reviews_r2_by_reviewer.csv")) == 4


async def test_a_calibrated_reviewer_gets_an_accept_probability_with_its_brier_score(
    settings: Settings, workspace: Path
) -> None:
    calibration = pytest.importorskip("research_mcp.tools.review.calibration")
    curve = {"reviewer": "scripted-run", "model": "scripted-1", "intercept": -6.0, "slope": 1.0, "brier": 0.2,
             "brier_base": 0.23, "n": 500, "source": "test curve"}  # fmt: skip
    target: Path = calibration.user_calibration_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"version": 1, "calibrations": [curve]}))
    path = write_paper(workspace)
    async with Client(build_server(settings), sampling_callback=ScriptedSampler()) as client:
        started = await call(client, "review_paper", {"path": path, "reviewers": 2})
        done, _ = await drive(client, started["review_id"])
        review_id = started["review_id"]
    # reviewers 1 and 2 end at overall 5 and 6: P = 1 / (1 + exp(6 - overall))
    assert [(p["reviewer"], p["probability"], p["brier"], p["n"]) for p in done["meta"]["accept_probability"]] == [
        (1, 0.269, 0.2, 500), (2, 0.5, 0.2, 500)
    ]  # fmt: skip
    assert not any("No calibration" in note for note in done["meta"]["notes"])
    assert "Brier 0.200" in (workspace / "reviews" / review_id / "review.md").read_text()


async def test_an_endpoint_that_refuses_leaves_the_forms_to_the_client(
    settings: Settings, workspace: Path, chat_server: ChatServer
) -> None:
    path = write_paper(workspace)
    wrong = endpoint_settings(settings, chat_server).model_copy(update={"review_url": chat_server.url[:-3]})
    async with Client(build_server(wrong)) as client:
        started = await call(client, "review_paper", {"path": path, "reviewers": 2})
        status: dict[str, Any] = {}
        with anyio.fail_after(10):
            for _ in range(1000):
                status = await call(client, "review_paper", {"review_id": started["review_id"]})
                if all(r["status"] == "failed" for r in status["reviewers"]):
                    break
                await anyio.sleep(0.05)
        assert len(chat_server.requests) == 2  # a 404 is not retried
        assert "refused the request (404" in status["message"] and "submit_review" in status["message"]
        assert status["state"] == "running" and "Sparse adapters" in status["text"]
        for slot in (1, 2):
            answer = await call(client, "submit_review", {"review_id": started["review_id"], "reviewer": slot,
                                                          "form": form(5)})  # fmt: skip
    assert answer["meta"]["reviews"] == 2


async def test_a_real_audit_of_the_paper_is_found_by_its_hash(client: Client, workspace: Path) -> None:
    path = write_paper(workspace)
    audit = await call(client, "audit_paper", {"main": path}, timeout_s=120)
    assert audit["paper_hash"] == read_paper(Workspace(workspace.resolve(), "setting"), path).paper_hash
    started = await call(client, "review_paper", {"path": path, "reviewers": 1})
    assert f"Audit {audit['audit_id']}:" in started["instructions"]
