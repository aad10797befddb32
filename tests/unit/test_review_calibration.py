"""Calibrations: the logistic curve, the matching of reviewer names, the user file before the shipped one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from research_mcp.errors import ConfigError
from research_mcp.tools.review.calibration import (
    SHIPPED_PATH,
    Calibration,
    CalibrationFile,
    calibration_for,
    load_calibrations,
    user_calibration_path,
)


def _cal(reviewer: str, model: str, *, passes: int = 1, fewshot: int = 0, brier: float = 0.2) -> Calibration:
    return Calibration(
        reviewer=reviewer, model=model, intercept=-6.0, slope=1.0, brier=brier, brier_base=0.23, n=500,
        source="test", passes=passes, fewshot=fewshot,
    )  # fmt: skip


def _write(folder: Path, calibrations: list[Calibration]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = user_calibration_path(folder)
    path.write_text(json.dumps(CalibrationFile(calibrations=calibrations).model_dump(mode="json")))
    return path


def test_probability_is_the_logistic_curve() -> None:
    c = _cal("r", "m")
    assert c.probability(6.0) == pytest.approx(0.5)
    assert c.probability(8.0) == pytest.approx(1 / (1 + math.exp(-2)))
    assert c.probability(-1e6) == 0.0 and c.probability(1e6) == 1.0  # no overflow at either end


def test_shipped_file_holds_every_published_run() -> None:
    shipped = load_calibrations(SHIPPED_PATH)
    assert len(shipped) == 6
    for c in shipped:
        assert c.n == 500 and 0 < c.brier < c.brier_base and c.slope > 0
        assert c.probability(8) > c.probability(4)


def test_model_names_match_exact_then_prefix(tmp_path: Path) -> None:
    empty = tmp_path / "none"
    single = calibration_for("gpt-4o-2024-05-13", data_dir=empty)
    assert single is not None and single.model == "gpt-4o-2024-05-13"
    assert single.passes == 1  # the run closest to one review wins among a model's runs
    alias = calibration_for("openai/GPT-4o", data_dir=empty)  # undated alias, provider prefix, any case
    assert alias is not None and alias.reviewer == single.reviewer
    mini = calibration_for("gpt-4o-mini", data_dir=empty)
    assert mini is not None and mini.model.startswith("gpt-4o-mini")
    claude = calibration_for("claude-3.5-sonnet-20240620", data_dir=empty)
    assert claude is not None and claude.model == "claude-3-5-sonnet-20240620"
    suffixed = calibration_for("gpt-4o-2024-05-13-finetuned", data_dir=empty)
    assert suffixed is not None and suffixed.model == "gpt-4o-2024-05-13"
    run = calibration_for(single.reviewer.replace("_temp_0_1", "_temp_0_1"), data_dir=empty)
    assert run == single
    assert calibration_for("llama-3-70b", data_dir=empty) is None
    assert calibration_for("gpt-4", data_dir=empty) is None  # "gpt-4o-..." is not gpt-4 plus a date


def test_user_file_wins_and_ties_break_on_passes(tmp_path: Path) -> None:
    _write(tmp_path, [_cal("mine-ens", "gpt-4o-2024-05-13", passes=25), _cal("mine", "gpt-4o-2024-05-13")])
    found = calibration_for("gpt-4o-2024-05-13", data_dir=tmp_path)
    assert found is not None and found.reviewer == "mine"
    assert calibration_for("mine-ens", data_dir=tmp_path) == _cal("mine-ens", "gpt-4o-2024-05-13", passes=25)


def test_broken_user_file_says_what_to_do(tmp_path: Path) -> None:
    user_calibration_path(tmp_path).write_text("{not json")
    with pytest.raises(ConfigError, match="not a calibration file"):
        calibration_for("anything", data_dir=tmp_path)


def test_default_user_folder_follows_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESEARCH_MCP_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert user_calibration_path() == tmp_path / "review_calibrations.json"
