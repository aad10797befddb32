"""The lab's resources and argument completion through a real MCP client: the library's papers and the texts
read_paper kept, the draft's newest PDF, run labels and review ids completed, and a client told when a run it
subscribed to ends, on both protocol revisions (2025-11-25 `resources/subscribe`, 2026-07-28 `subscriptions/listen`)."""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import (
    BlobResourceContents,
    PromptReference,
    ResourceTemplateReference,
    ResourceUpdatedNotification,
    TextResourceContents,
)

from research_mcp.config import Settings
from research_mcp.latex import versions
from research_mcp.server import _manifest as manifest
from research_mcp.server import build_server
from research_mcp.store import Store
from research_mcp.tools.literature.ids import folder_name
from research_mcp.tools.literature.library import save_papers
from research_mcp.tools.literature.models import Paper
from tests.conftest import open_for_sandbox
from tests.integration._client import call

pytestmark = pytest.mark.anyio

ATTENTION = Paper(
    id="arXiv:1706.03762", title="Attention Is All You Need", authors=["Ashish Vaswani", "Noam Shazeer"],
    year=2017, arxiv_id="1706.03762", sources=["arxiv"],
)  # fmt: skip
BERT = Paper(id="arXiv:1810.04805", title="BERT: Pre-training of Deep Bidirectional Transformers", year=2018,
             arxiv_id="1810.04805", sources=["arxiv"])  # fmt: skip
PARROTS = Paper(id="doi:10.1145/3442188.3445922", title="On the Dangers of Stochastic Parrots", year=2021,
                doi="10.1145/3442188.3445922", sources=["semantic_scholar"])  # fmt: skip


def _store(workspace: Path) -> Store:
    return Store(workspace / ".research" / "state.db")


@pytest.fixture
def library(workspace: Path) -> Store:
    store = _store(workspace)
    save_papers(store, [ATTENTION, PARROTS], keep=True)
    save_papers(store, [BERT])  # seen in a search, not kept
    return store


def _read_text(workspace: Path, paper: Paper, text: str) -> None:
    """What read_paper leaves for a paper it read."""
    assert paper.arxiv_id is not None
    folder = workspace / "papers" / folder_name(paper.arxiv_id)
    folder.mkdir(parents=True)
    (folder / "text.md").write_text(text, encoding="utf-8")


async def _text(client: Client, uri: str) -> str:
    [content] = (await client.read_resource(uri)).contents
    assert isinstance(content, TextResourceContents), content
    return content.text


async def test_a_library_paper_is_a_resource_by_any_of_its_ids(library: Store, client: Client) -> None:
    templates = {t.uri_template: t for t in (await client.list_resource_templates()).resource_templates}
    assert templates["paper://{paper_id}"].mime_type == "application/json"
    for uri in ("paper://arXiv:1706.03762", "paper://arXiv%3A1706.03762", "paper://1706.03762v5"):
        record = json.loads(await _text(client, uri))
        assert record["id"] == "arXiv:1706.03762" and record["title"] == "Attention Is All You Need", uri
        assert record["authors"] == ["Ashish Vaswani", "Noam Shazeer"]
    parrots = json.loads(await _text(client, "paper://doi%3A10.1145%2F3442188.3445922"))
    assert parrots["doi"] == "10.1145/3442188.3445922"
    with pytest.raises(MCPError, match="not in this workspace's library: call get_paper"):
        await client.read_resource("paper://arXiv:2001.00001")


async def test_a_paper_text_is_what_read_paper_kept_cut_with_a_note_saying_how_to_read_on(
    library: Store, settings: Settings, workspace: Path
) -> None:
    budget = 2_000
    body = "".join(f"Line {i} of the transformer paper.\n" for i in range(400))
    _read_text(workspace, ATTENTION, body)
    async with Client(build_server(settings.model_copy(update={"max_output_chars": budget}))) as client:
        text = await _text(client, "paper://arXiv:1706.03762/text")
        assert text.startswith(body[:budget]) and body[: budget + 1] not in text
        note = text[budget:]
        assert "read_paper" in note and f"offset={budget}" in note and "'arXiv:1706.03762'" in note
        _read_text(workspace, BERT, "A short text.\n")
        assert await _text(client, "paper://1810.04805/text") == "A short text.\n"
        with pytest.raises(MCPError, match="no arXiv version"):
            await client.read_resource("paper://doi%3A10.1145%2F3442188.3445922/text")
        save_papers(library, [ATTENTION.model_copy(update={"id": "arXiv:1301.3781", "arxiv_id": "1301.3781",
                                                           "title": "Word2vec"})])  # fmt: skip
        with pytest.raises(MCPError, match="has not been read yet: call read_paper"):
            await client.read_resource("paper://arXiv:1301.3781/text")


async def test_paper_ids_complete_from_the_library_kept_papers_first(library: Store, client: Client) -> None:
    ref = ResourceTemplateReference(type="ref/resource", uri="paper://{paper_id}")

    async def values(typed: str) -> list[str]:
        return (await client.complete(ref, {"name": "paper_id", "value": typed})).completion.values

    assert await values("arXiv:17") == ["arXiv:1706.03762"]
    assert await values("arxiv:18") == ["arXiv:1810.04805"]  # ids are matched without regard to case
    assert await values("1810") == ["arXiv:1810.04805"]  # by the bare arXiv id too
    assert await values("10.1145/") == ["doi:10.1145/3442188.3445922"]  # and by DOI
    everything = await values("")
    assert sorted(everything) == sorted([ATTENTION.id, BERT.id, PARROTS.id]) and everything[-1] == BERT.id
    assert await values("%") == [] and await values("_") == []  # LIKE wildcards are taken as typed


def _pdf(pages: int) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=72, height=72)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _compiled(workspace: Path, stem: str, data: bytes, mtime: float) -> None:
    """A PDF as compile_paper keeps it: promoted to paper/<stem>.pdf, with its version kept."""
    paper = workspace / "paper"
    build = paper / ".build"
    build.mkdir(parents=True, exist_ok=True)
    (build / f"{stem}.pdf").write_bytes(data)
    target, _ = versions.promote(paper, stem, build / f"{stem}.pdf")
    os.utime(target, (mtime, mtime))


async def _blob(client: Client, uri: str) -> BlobResourceContents:
    [content] = (await client.read_resource(uri)).contents
    assert isinstance(content, BlobResourceContents), content
    return content


async def test_the_draft_pdf_is_the_newest_one_compile_paper_kept(client: Client, workspace: Path) -> None:
    [listed] = (await client.list_resources()).resources
    assert str(listed.uri) == "draft://latest.pdf" and listed.mime_type == "application/pdf"
    with pytest.raises(MCPError, match="call compile_paper"):
        await client.read_resource("draft://latest.pdf")
    one, two = _pdf(1), _pdf(2)
    _compiled(workspace, "main", one, time.time() - 60)
    (workspace / "paper" / "figure.pdf").write_bytes(_pdf(3))  # a PDF no compile made is not the draft
    blob = await _blob(client, "draft://latest.pdf")
    assert blob.mime_type == "application/pdf" and base64.b64decode(blob.blob) == one
    _compiled(workspace, "appendix", two, time.time())
    assert base64.b64decode((await _blob(client, "draft://latest.pdf")).blob) == two


async def test_a_draft_pdf_too_large_for_a_resource_says_where_it_is(client: Client, workspace: Path) -> None:
    from research_mcp.server.latex import MAX_PDF_BYTES

    _compiled(workspace, "main", _pdf(1) + b"\0" * MAX_PDF_BYTES, time.time())
    with pytest.raises(MCPError, match=r"paper/main.pdf is 16.0 MiB, over the 16 MiB .* open it from the workspace"):
        await client.read_resource("draft://latest.pdf")


@pytest.mark.latex
async def test_the_draft_pdf_after_a_real_compile_is_the_promoted_pdf(
    tmp_path: Path, client: Client, workspace: Path
) -> None:
    open_for_sandbox(tmp_path, workspace)
    await call(client, "new_paper", {"title": "A Resource Test"})
    compiled = await call(client, "compile_paper", {}, timeout_s=120)
    assert compiled["pdf"] == "paper/main.pdf", compiled
    blob = await _blob(client, "draft://latest.pdf")
    assert base64.b64decode(blob.blob) == (workspace / "paper" / "main.pdf").read_bytes()


@pytest.fixture
def recipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prompts that take `labels` and `review_id` (tests/integration/_recipe_family.py)."""
    monkeypatch.setitem(manifest.FAMILIES, "lab", "tests.integration._recipe_family")


def _run(store: Store, run_id: str, label: str | None, at: float, state: str = "succeeded") -> None:
    """A run as another server on the workspace records it."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO runs (id, backend, command, workdir, label, state, created_at, ended_at) "
            "VALUES (?, 'local', 'true', '.', ?, ?, ?, ?)",
            (run_id, label, state, at, at if state != "running" else None),
        )


async def test_run_labels_and_review_ids_complete_in_the_prompts_that_take_them(
    recipes: None, settings: Settings, workspace: Path
) -> None:
    store = _store(workspace)
    now = time.time()
    for run_id, label, at in [("r1", "baseline", now - 30), ("r2", "baseline_lr", now - 20), ("r3", "big", now - 10),
                              ("r4", "baseline", now), ("r5", None, now)]:  # fmt: skip
        _run(store, run_id, label, at)
    with store.transaction() as conn:
        for review_id, at in [("rev-2a", now - 5), ("rev-1b", now), ("other", now)]:
            conn.execute(
                "INSERT INTO review_sets (id, paper, paper_hash, mode, state, data, created_at, updated_at) "
                "VALUES (?, 'paper/main.tex', 'h', 'client', 'open', '{}', ?, ?)",
                (review_id, at, at),
            )
    async with Client(build_server(settings)) as client:
        labels = PromptReference(type="ref/prompt", name="compare_groups")
        found = await client.complete(labels, {"name": "labels", "value": "base"})
        assert found.completion.values == ["baseline", "baseline_lr"]  # the latest used first, each once
        found = await client.complete(labels, {"name": "label", "value": ""})
        assert found.completion.values == ["baseline", "big", "baseline_lr"]
        review = PromptReference(type="ref/prompt", name="answer_review")
        found = await client.complete(review, {"name": "review_id", "value": "rev-"})
        assert found.completion.values == ["rev-1b", "rev-2a"]


def _running(store: Store, run_id: str) -> None:
    """A run that another server on the workspace runs, on a backend this one does not have."""
    _run(store, run_id, None, time.time(), state="running")
    with store.transaction() as conn:
        conn.execute("UPDATE runs SET handle = ? WHERE id = ?", ('{"backend": "elsewhere", "ref": "1"}', run_id))


def _ended(store: Store, run_id: str, *, event: bool = True) -> None:
    """A run's end as the server that ran it records it: the row, then the event."""
    now = time.time()
    with store.transaction() as conn:
        conn.execute("UPDATE runs SET state = 'succeeded', exit_code = 0, ended_at = ? WHERE id = ?", (now, run_id))
    if event:
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO run_events (run_id, at, kind, data) VALUES (?, ?, 'succeeded', '{}')", (run_id, now)
            )


class Heard:
    """The `notifications/resources/updated` a client receives, in order."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[str](100)

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            await self.send.send(str(message.params.uri))

    async def next(self) -> str:
        with anyio.fail_after(15):
            return await self.receive.receive()

    def close(self) -> None:
        self.send.close()
        self.receive.close()


@pytest.fixture
async def legacy(settings: Settings) -> AsyncIterator[tuple[Client, Heard]]:
    """A client of the 2025-11-25 revision (the initialize handshake), with what it hears."""
    heard = Heard()
    try:
        async with Client(build_server(settings), mode="legacy", message_handler=heard) as client:
            yield client, heard
    finally:
        heard.close()


async def test_a_subscribed_client_of_the_handshake_revision_is_told_when_the_run_ends(
    legacy: tuple[Client, Heard], workspace: Path
) -> None:
    client, heard = legacy
    capabilities = client.server_capabilities
    assert capabilities.resources is not None and capabilities.resources.subscribe is True
    await call(client, "list_runs", {})  # the workspace's runs are watched from here on
    store = _store(workspace)
    for run_id in ("kept", "dropped", "unwatched", "late"):
        _running(store, run_id)
    _ended(store, "late", event=False)  # ended just before the subscription: its event is no news to it
    with pytest.warns(MCPDeprecationWarning):
        await client.subscribe_resource("run://kept")  # pyright: ignore[reportDeprecated]
        await client.subscribe_resource("run://kept/log")  # pyright: ignore[reportDeprecated]
        await client.subscribe_resource("run://dropped")  # pyright: ignore[reportDeprecated]
        await client.unsubscribe_resource("run://dropped")  # pyright: ignore[reportDeprecated]
        await client.subscribe_resource("run://late")  # pyright: ignore[reportDeprecated]
        await client.subscribe_resource("run://no-such-run")  # pyright: ignore[reportDeprecated]
    with store.transaction() as conn:
        conn.execute("INSERT INTO run_events (run_id, at, kind, data) VALUES ('late', ?, 'succeeded', '{}')",
                     (time.time(),))  # fmt: skip
    _ended(store, "dropped")
    _ended(store, "unwatched")
    _ended(store, "kept")
    assert [await heard.next(), await heard.next()] == ["run://kept", "run://kept/log"]  # and nothing of the others


async def test_a_client_of_the_2026_revision_hears_of_the_end_on_its_listen_stream(
    client: Client, workspace: Path
) -> None:
    assert client.protocol_version == "2026-07-28"
    await call(client, "list_runs", {})
    store = _store(workspace)
    _running(store, "ended")
    with anyio.fail_after(15):
        async with client.listen(resource_subscriptions=["run://ended"]) as subscription:
            _ended(store, "ended")
            async for event in subscription:
                assert event == ResourceUpdated(uri="run://ended")
                break


@pytest.mark.bwrap
async def test_a_real_run_that_ends_is_told_to_its_subscriber(tmp_path: Path, workspace: Path) -> None:
    open_for_sandbox(tmp_path, workspace)
    heard = Heard()
    settings = Settings(workspace=workspace, backend="local")
    async with Client(build_server(settings), mode="legacy", message_handler=heard) as client:
        started = await call(client, "run_experiment", {"command": "sleep 1", "workdir": None, "files": {"a": ""}})
        run_id = started["run"]["id"]
        with pytest.warns(MCPDeprecationWarning):
            await client.subscribe_resource(f"run://{run_id}")  # pyright: ignore[reportDeprecated]
        assert await heard.next() == f"run://{run_id}"
        status = await call(client, "run_status", {"run_id": run_id})
        assert status["run"]["state"] == "succeeded"
    heard.close()


async def test_clients_that_still_set_a_log_level_get_an_answer(legacy: tuple[Client, Heard]) -> None:
    client, _ = legacy
    assert client.server_capabilities.logging is not None
    with pytest.warns(MCPDeprecationWarning):
        await client.set_logging_level("debug")  # pyright: ignore[reportDeprecated]
