from __future__ import annotations

from pathlib import Path

import pytest

from research_mcp.config import TOOLSETS, Settings
from research_mcp.errors import ConfigError


def test_defaults_offer_every_toolset_and_no_tokens() -> None:
    settings = Settings()
    assert settings.toolsets == list(TOOLSETS)
    assert settings.github_token is None and settings.s2_api_key is None and not settings.read_only


def test_the_usual_token_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("S2_API_KEY", "s2secret")
    settings = Settings()
    assert settings.github_token is not None and settings.github_token.get_secret_value() == "ghp_secret"
    assert settings.s2_api_key is not None and settings.s2_api_key.get_secret_value() == "s2secret"
    assert "ghp_secret" not in repr(settings)


def test_endpoint_overrides_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESEARCH_MCP_ARXIV_URL", "http://127.0.0.1:9/api/query")
    monkeypatch.setenv("RESEARCH_MCP_S2_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("RESEARCH_MCP_GITHUB_URL", "http://127.0.0.1:9/gh")
    monkeypatch.setenv("RESEARCH_MCP_TOOLSETS", "files,latex")
    settings = Settings()
    assert (settings.arxiv_url, settings.s2_url, settings.github_url) == (
        "http://127.0.0.1:9/api/query",
        "http://127.0.0.1:9",
        "http://127.0.0.1:9/gh",
    )
    assert settings.toolsets == ["files", "latex"]


def test_the_workspace_config_toml_is_read_below_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".research").mkdir()
    (tmp_path / ".research" / "config.toml").write_text(
        'docker_image = "mine:latest"\nmax_output_chars = 5000\nworkspace = "/etc"\nunknown_key = 1\n'
    )
    monkeypatch.setenv("RESEARCH_MCP_MAX_OUTPUT_CHARS", "6000")
    settings = Settings(workspace=tmp_path)
    assert settings.docker_image == "mine:latest"
    assert settings.max_output_chars == 6000
    assert settings.workspace == tmp_path


def test_a_broken_config_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".research").mkdir()
    (tmp_path / ".research" / "config.toml").write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="config.toml"):
        Settings(workspace=tmp_path)


def test_an_unknown_toolset_is_rejected() -> None:
    with pytest.raises(ValueError, match="toolsets"):
        Settings(toolsets=["files", "bogus"])  # type: ignore[list-item]
