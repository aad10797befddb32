"""The run tools' answers through a real MCP client session, on runs recorded in the workspace's store (not run):
each answer within the output budget and paged beyond it, a wrong id or label answered with the ones there are."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import TextContent

from research_mcp.config import Settings
from research_mcp.sandbox.runs import RunManager, RunRequest
from research_mcp.server import build_server
from research_mcp.store import Store
from research_mcp.workspace import Workspace
from tests.conftest import open_for_sandbox
from tests.integration._client import call, call_raw, error_text

pytestmark = pytest.mark.anyio

BUDGET = Settings.model_fields["max_output_chars"].default


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "exp").mkdir(parents=True)
    (root / "exp" / "train.py").write_text("print('hi')\n")
    return root


@pytest.fixture
async def client(workspace: Path) -> AsyncIterator[Client]:
    async with Client(build_server(Settings(workspace=workspace)), raise_exceptions=True) as c:
        yield c


def record_runs(workspace: Path, requests: list[dict[str, object]]) -> list[str]:
    """Runs recorded the way run_experiment records them, then marked succeeded; newest last."""
    store = Store(workspace / ".research" / "state.db")
    manager = RunManager(Workspace(workspace, "setting"), store, {}, choose=lambda: "local", max_concurrent=1)
    ids: list[str] = []
    try:
        for number, request in enumerate(requests):
            run = manager.prepare(
                RunRequest.model_validate({"command": "python train.py", "workdir": "exp", **request})
            )
            store.connection().execute(
                "UPDATE runs SET state = 'succeeded', exit_code = 0, created_at = ? WHERE id = ?", (number, run.id)
            )
            ids.append(run.id)
    finally:
        store.close()
    return ids


def size(answer: dict[str, object]) -> int:
    return len(json.dumps(answer))


async def answer(client: Client, tool: str, args: dict[str, object]) -> dict[str, Any]:
    """The structured answer of a call that must succeed, checked within the budget both as compact JSON and as
    the text the model reads."""
    result = await call_raw(client, tool, args)
    assert not result.is_error and result.structured_content is not None, result.content
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    assert size(result.structured_content) <= BUDGET and sum(map(len, texts)) <= BUDGET, (tool, args)
    return result.structured_content


async def test_list_runs_of_hundreds_of_runs_stays_within_the_budget_and_pages_through_all(
    client: Client, workspace: Path
) -> None:
    ids = record_runs(
        workspace,
        [
            {"label": f"sweep-{i % 7}", "seed": i, "config": {"lr": 0.001 * i, "depth": i % 12, "name": "x" * 40},
             "note": f"try {i}: " + "a longer hypothesis " * (190 if i % 50 == 0 else 8),
             **({"command": "python train.py " + "--flag value " * 800} if i % 60 == 0 else {})}
            for i in range(400)
        ],
    )  # fmt: skip
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = await answer(client, "list_runs", {"limit": 200, "offset": offset})
        assert size(page) <= BUDGET, (offset, size(page))
        assert page["total"] == 400 and page["runs"]
        seen += [run["id"] for run in page["runs"]]
        offset, pages = page["next_offset"], pages + 1
    assert seen == ids[::-1] and pages > 2
    long = await call(client, "list_runs", {"limit": 1, "offset": 399 - 350})  # run 350's note is long
    assert "more characters]" in long["runs"][0]["note"]
    whole = await call(client, "run_status", {"run_id": long["runs"][0]["id"]})
    assert whole["run"]["note"].endswith("a longer hypothesis ")


async def test_run_logs_of_a_capped_log_says_what_it_left_out_and_pages_back(client: Client, workspace: Path) -> None:
    [run_id] = record_runs(workspace, [{}])
    lines = [f"step {i} loss {1 / (i + 1):.6f} " + "=" * 120 for i in range(250_000)]
    marker = "[research-mcp: log capped at 33554432 bytes; 1000 bytes of output dropped here]"
    text = "\n".join([*lines[:200_000], marker, *lines[200_000:]]) + "\n"
    (workspace / "runs" / run_id / "log.txt").write_text(text)
    total = 250_001
    tail = await answer(client, "run_logs", {"run_id": run_id, "tail": 5000})
    assert size(tail) <= BUDGET
    assert tail["capped"] and tail["total_lines"] == total and tail["lines_asked"] == 5000
    returned = len(tail["lines"])
    assert 0 < returned < 5000 and tail["lines_left_out"] == 5000 - returned
    assert tail["first_line"] == total - returned + 1 and tail["lines"][-1] == lines[-1]
    assert tail["next_offset"] is None
    back = await answer(client, "run_logs", {"run_id": run_id, "offset": tail["prev_offset"], "limit": 5000})
    assert size(back) <= BUDGET
    assert back["first_line"] == tail["prev_offset"] and back["lines"][-1] == lines[tail["first_line"] - 3]
    wanted = min(5000, total - back["first_line"] + 1)
    assert back["lines_left_out"] == wanted - len(back["lines"]) > 0
    assert back["next_offset"] == back["first_line"] + len(back["lines"])
    start = await call(client, "run_logs", {"run_id": run_id, "offset": 1, "limit": 3})
    assert start["lines"] == lines[:3] and start["prev_offset"] is None and start["lines_left_out"] == 0


async def test_one_line_longer_than_the_budget_is_cut_and_paging_moves_on(client: Client, workspace: Path) -> None:
    [run_id] = record_runs(workspace, [{}])
    (workspace / "runs" / run_id / "log.txt").write_text("first\n" + "\x1b" * 100_000 + "\nlast\n")
    page = await answer(client, "run_logs", {"run_id": run_id, "offset": 2, "limit": 1})
    assert size(page) <= BUDGET and page["lines"][0].endswith("[research-mcp: line cut, 100000 characters]")
    assert page["next_offset"] == 3
    tail = await answer(client, "run_logs", {"run_id": run_id, "tail": 2})
    assert size(tail) <= BUDGET and tail["lines"][-1] == "last"


async def test_a_wrong_run_id_is_answered_with_the_closest_and_the_newest_ids(client: Client, workspace: Path) -> None:
    ids = record_runs(workspace, [{} for _ in range(6)])
    typo = ids[1][:-1] + ("0" if ids[1][-1] != "0" else "1")
    message = error_text(await call_raw(client, "run_status", {"run_id": typo}))
    closest = message.split("closest ids: ")[1].split(";")[0].split(", ")
    assert closest[0] == ids[1], message
    assert f"newest: {', '.join(ids[::-1][:3])}" in message and "list_runs" in message
    parent = error_text(await call_raw(client, "list_runs", {"parent": typo}))
    assert ids[1] in parent


async def test_a_wrong_label_is_answered_with_the_labels_there_are(client: Client, workspace: Path) -> None:
    record_runs(workspace, [{"label": "lr0.05"}, {"label": "lr1.0"}, {}])
    message = error_text(await call_raw(client, "list_runs", {"label": "lr1.O"}))
    assert "No run has label 'lr1.O'; labels here: lr1.0, lr0.05." in message
    assert (await call(client, "list_runs", {"label": "lr1.0"}))["total"] == 1
    assert (await call(client, "list_runs", {"label": "lr1.0", "status": "failed"}))["total"] == 0


def fake_venv(folder: Path, home: Path) -> None:
    """A virtualenv's layout (bin/python, pyvenv.cfg) made from the interpreter in `home`."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("")
    (folder / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")


@pytest.mark.parametrize(
    ("home", "says"),
    [("/usr/local/bin", "made from the interpreter in /usr/local, which a Docker run cannot see"),
     ("closed/bin", "its interpreter sits under {closed}, which the sandbox user (uid 65534) cannot enter")],
)  # fmt: skip
async def test_a_docker_run_whose_interpreter_the_container_cannot_reach_is_refused_before_it_starts(
    workspace: Path, tmp_path: Path, home: str, says: str
) -> None:
    open_for_sandbox(tmp_path, workspace)
    closed = tmp_path / "closed"
    (closed / "bin").mkdir(parents=True)
    (closed / "bin" / "python3").write_text("")
    closed.chmod(0o700)  # as /root is
    fake_venv(workspace / ".venv", closed / "bin" if home == "closed/bin" else Path(home))
    async with Client(build_server(Settings(workspace=workspace, backend="docker")), raise_exceptions=True) as client:
        request = {"command": "python -c pass", "workdir": None, "files": {"a": ""}, "python_env": ".venv"}
        message = error_text(await call_raw(client, "run_experiment", request))
        assert says.format(closed=closed) in message and 'backend="local"' in message, message
        assert (await call(client, "list_runs", {}))["total"] == 0


async def test_run_logs_of_many_short_lines_counts_what_the_text_answer_takes(client: Client, workspace: Path) -> None:
    [run_id] = record_runs(workspace, [{}])
    (workspace / "runs" / run_id / "log.txt").write_text("".join(f"{i % 10}\n" for i in range(20_000)))
    tail = await answer(client, "run_logs", {"run_id": run_id, "tail": 5000})
    assert 1000 < len(tail["lines"]) < 5000 and tail["first_line"] == 20_000 - len(tail["lines"]) + 1


async def test_run_status_of_a_run_with_a_long_command_and_many_files_stays_within_the_budget(
    client: Client, workspace: Path
) -> None:
    command = "python train.py " + " ".join(f"--opt{i}=\u00e9\u00e9" for i in range(2000))
    [run_id] = record_runs(workspace, [{"command": command[:20_000], "note": "why " * 990}])
    outputs = workspace / "runs" / run_id / "outputs"
    for i in range(500):
        (outputs / f"checkpoint_{i:04d}_with_a_rather_long_descriptive_name.json").write_text("{}")
    (workspace / "runs" / run_id / "log.txt").write_text("".join(f"epoch {i} " + "~" * 190 + "\n" for i in range(50)))
    status = await answer(client, "run_status", {"run_id": run_id})
    assert status["outputs_not_listed"] == 500 - len(status["metric_files"]) > 0 and "outputs" not in status
    first = f"runs/{run_id}/outputs/checkpoint_0000_with_a_rather_long_descriptive_name.json"
    assert status["metric_files"][0] == first
    assert "more characters]" in status["run"]["command"] and status["log_tail"][-1].startswith("epoch 49 ")
