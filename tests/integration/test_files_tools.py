"""The file tools through a real MCP client session (in-process), as a model would call them."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import PIL.Image
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp_types import ImageContent, ListRootsResult, Root, TextContent

from research_mcp.config import Settings
from research_mcp.server import build_server
from tests.integration._client import call, call_raw, error_text

pytestmark = pytest.mark.anyio


async def test_write_then_read_then_edit_then_grep_round_trip(client: Client, workspace: Path) -> None:
    written = await call(client, "write_file", {"path": "exp/train.py", "content": "lr = 0.1\nepochs = 3\n"})
    assert written == {"path": "exp/train.py", "size_bytes": 20, "created": True}
    read = await call(client, "read_file", {"path": "exp/train.py"})
    assert read["text"] == "lr = 0.1\nepochs = 3\n" and read["next_offset"] is None
    edited = await call(
        client, "edit_file", {"path": "exp/train.py", "old_string": "lr = 0.1", "new_string": "lr = 0.2"}
    )
    assert edited["replacements"] == 1
    found = await call(client, "grep", {"pattern": r"lr = 0\.\d"})
    assert found["matches"] == [{"path": "exp/train.py", "line": 1, "text": "lr = 0.2"}]
    listed = await call(client, "list_files", {})
    assert [e["path"] for e in listed["entries"]] == ["exp", "exp/train.py"]
    assert (workspace / "exp" / "train.py").read_text() == "lr = 0.2\nepochs = 3\n"


async def test_errors_are_tool_results_that_say_what_to_do(client: Client, workspace: Path) -> None:
    (workspace / "a.txt").write_text("same\nsame\n")
    cases = {
        ("read_file", "path"): ({"path": "nope.txt"}, "list_files"),
        ("read_file", "dir"): ({"path": "."}, "list_files"),
        ("edit_file", "ambiguous"): ({"path": "a.txt", "old_string": "same", "new_string": "x"}, "replace_all"),
        ("edit_file", "absent"): ({"path": "a.txt", "old_string": "zzz", "new_string": "x"}, "read_file"),
        ("grep", "regex"): ({"pattern": "("}, "regular expression"),
        ("write_file", "state"): ({"path": ".research/x", "content": ""}, ".research"),
    }
    for (tool, _), (args, hint) in cases.items():
        result = await client.call_tool(tool, args)
        assert hint in error_text(result), (tool, args)


async def test_a_png_comes_back_as_a_picture_at_most_1200_px_and_a_gif_is_still_refused(
    client: Client, workspace: Path
) -> None:
    plot = PIL.Image.new("RGB", (3000, 2000), "white")
    plot.paste((214, 39, 40), (200, 900, 2800, 1000))
    plot.save(workspace / "loss.png")
    result = await call_raw(client, "read_file", {"path": "loss.png"})
    assert not result.is_error and result.structured_content is not None
    picture, record = result.content
    assert isinstance(picture, ImageContent) and picture.mime_type == "image/png" and isinstance(record, TextContent)
    with PIL.Image.open(io.BytesIO(base64.b64decode(picture.data))) as seen:
        assert seen.size == (1200, 800) and seen.getpixel((600, 380)) == (214, 39, 40)
    read = result.structured_content
    assert read["image"] == {
        "mime_type": "image/png", "width": 1200, "height": 800, "original_width": 3000, "original_height": 2000
    }  # fmt: skip
    assert read["path"] == "loss.png" and read["size_bytes"] == (workspace / "loss.png").stat().st_size
    assert "downscaled from 3000 x 2000" in read["note"] and read["text"] == ""

    small = io.BytesIO()
    PIL.Image.new("RGB", (320, 240), "navy").save(small, format="JPEG")
    (workspace / "photo.jpg").write_bytes(small.getvalue())
    photo = await call_raw(client, "read_file", {"path": "photo.jpg"})
    assert isinstance(photo.content[0], ImageContent) and photo.content[0].mime_type == "image/jpeg"
    assert base64.b64decode(photo.content[0].data) == small.getvalue()

    PIL.Image.new("RGB", (8, 8)).save(workspace / "anim.gif")
    refused = error_text(await call_raw(client, "read_file", {"path": "anim.gif"}))
    assert "GIF image" in refused and "bytes" in refused


async def test_lab_info_reports_the_workspace_and_components(client: Client, workspace: Path) -> None:
    info = await call(client, "lab_info", {})
    assert info["workspace"] == str(workspace.resolve())
    assert info["workspace_source"] == "setting"
    assert info["state_db"].endswith(".research/state.db")
    names = {c["name"] for c in info["components"]}
    assert {"docker", "bubblewrap", "tex"} <= names
    for component in info["components"]:
        assert component["ok"] or component["install"], component


async def test_the_first_client_root_is_the_workspace_and_changes_are_followed(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (first / "which.txt").write_text("one\n")
    (second / "which.txt").write_text("two\n")
    current = [first]

    async def roots(context: ClientRequestContext) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=current[0].as_uri(), name="project")])  # type: ignore[arg-type]

    for mode in ("legacy", "auto"):
        current[0] = first
        async with Client(build_server(Settings()), list_roots_callback=roots, mode=mode) as client:
            assert (await call(client, "read_file", {"path": "which.txt"}))["text"] == "one\n"
            current[0] = second
            assert (await call(client, "read_file", {"path": "which.txt"}))["text"] == "two\n"
            info = await call(client, "lab_info", {})
            assert info["workspace_source"] == "roots"


@pytest.fixture
async def rootless_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    monkeypatch.chdir("/")
    async with Client(build_server(Settings())) as client:
        yield client


async def test_started_in_slash_with_no_roots_tools_refuse_and_say_how_to_set_the_workspace(
    rootless_client: Client,
) -> None:
    for tool, args in [
        ("write_file", {"path": "x.txt", "content": "x"}),
        ("read_file", {"path": "etc/passwd"}),
        ("list_files", {}),
        ("grep", {"pattern": "root"}),
        ("edit_file", {"path": "etc/hosts", "old_string": "a", "new_string": "b"}),
    ]:
        text = error_text(await rootless_client.call_tool(tool, args))
        assert "--workspace" in text and "RESEARCH_MCP_WORKSPACE" in text
    assert not Path("/x.txt").exists()
    info = await call(rootless_client, "lab_info", {})
    assert info["workspace"] is None and "filesystem root" in info["workspace_problem"]


async def test_lab_info_reports_progress_as_each_probe_finishes(client: Client) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    with anyio.fail_after(20):
        result = await client.call_tool("lab_info", {}, progress_callback=on_progress)
    assert result.structured_content is not None
    components = result.structured_content["components"]
    assert [p for p, _, _ in seen] == list(range(1, len(components) + 1))
    assert {total for _, total, _ in seen} == {len(components)}
    assert {m.split(":")[0] for _, _, m in seen if m} == {c["name"] for c in components}
