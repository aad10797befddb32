"""The one error plane: every exception that leaves a tool reads as a sentence that says what to do."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pydantic
import pytest

from research_mcp.errors import FileToolError, NotFoundError, PathError, os_error_message, os_errors
from research_mcp.server._adapt import error_text


def test_an_os_error_names_the_workspace_relative_path_and_what_to_do(tmp_path: Path) -> None:
    exc = NotADirectoryError(errno.ENOTDIR, "Not a directory", str(tmp_path / "notes.txt" / "sub"))
    text = os_error_message(exc, tmp_path)
    assert "'notes.txt/sub'" in text and str(tmp_path) not in text
    assert "a file where a folder is needed" in text


def test_an_os_error_outside_the_workspace_keeps_its_absolute_path(tmp_path: Path) -> None:
    exc = PermissionError(errno.EACCES, "Permission denied", "/etc/shadow")
    assert "'/etc/shadow'" in os_error_message(exc, tmp_path / "ws")


def test_the_caller_s_name_for_a_path_wins_over_the_system_s(tmp_path: Path) -> None:
    exc = FileExistsError(errno.EEXIST, "File exists", str(tmp_path / "paper"))
    text = os_error_message(exc, None, "paper/refs.bib")
    assert "'paper/refs.bib'" in text and "already exists" in text


def test_os_errors_turns_a_missing_file_into_not_found_and_the_rest_into_file_errors() -> None:
    with pytest.raises(NotFoundError), os_errors("a.txt"):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/a.txt")
    with pytest.raises(FileToolError, match="permission denied"), os_errors("a.txt"):
        raise PermissionError(errno.EACCES, "Permission denied", "/x/a.txt")


class _Limited(pydantic.BaseModel):
    label: str = pydantic.Field(max_length=3)


def test_a_validation_error_names_the_field_and_its_limit() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        _Limited(label="abcdef")
    text = error_text("run_experiment", caught.value)
    assert text.startswith("Invalid argument: label:") and "at most 3 characters" in text
    assert "call again" in text


def test_a_research_error_keeps_its_message() -> None:
    assert error_text("read_file", PathError("../x", "outside the workspace")) == str(
        PathError("../x", "outside the workspace")
    )


def test_an_unexpected_error_names_its_type_and_the_log_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        text = error_text("compare_runs", KeyError("missing"))
    assert text == "Internal error in compare_runs (KeyError): 'missing'. The server log has the traceback."
    assert caplog.records and caplog.records[0].exc_info is not None


def test_a_multi_line_message_is_one_line_and_bounded() -> None:
    text = error_text("x", RuntimeError("first\nsecond\n" + "y" * 5000))
    assert "\n" not in text and len(text) < 800
