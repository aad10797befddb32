"""How a metric name as a user types it resolves to one recorded metric of a run, or asks back."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research_mcp.errors import BadInputError
from research_mcp.tools.metrics._names import candidates, resolve_metric, spelling
from research_mcp.tools.metrics._records import FileMetrics, Limits
from research_mcp.tools.metrics._series import Series
from research_mcp.tools.metrics._sources import discover, read_file_metrics
from research_mcp.workspace import Workspace
from tests.conftest import fixtures_dir


def file_with(path: str, *names: str) -> FileMetrics:
    out = FileMetrics(path, "json")
    for value, name in enumerate(names):
        series = Series(10)
        series.add(np.zeros(1), np.full(1, float(value)))
        out.series[name] = series
    return out


def picked(files: list[FileMetrics], text: str, base: str = "") -> tuple[str, str] | None:
    match = resolve_metric(files, text, "run", base)
    return None if match is None else (match.file.path, match.name)


def asked_back(files: list[FileMetrics], text: str, base: str = "") -> str:
    with pytest.raises(BadInputError) as caught:
        resolve_metric(files, text, "run", base)
    return str(caught.value)


def test_a_short_name_resolves_to_the_nested_ai_scientist_metric() -> None:
    files = [file_with("runs/r/work/run_1/final_info.json", "spirals.means.val_acc", "spirals.means.val_loss")]
    assert picked(files, "val_acc") == ("runs/r/work/run_1/final_info.json", "spirals.means.val_acc")
    assert picked(files, "means.val_acc") == ("runs/r/work/run_1/final_info.json", "spirals.means.val_acc")


def test_a_name_matches_only_at_a_dot_boundary() -> None:
    files = [file_with("m.json", "spirals.means.val_acc", "top1acc")]
    assert picked(files, "acc") is None and picked(files, "l_acc") is None and picked(files, "1acc") is None


def test_an_exact_name_in_one_file_and_a_nested_one_in_another_ask_back_naming_both_files() -> None:
    files = [
        file_with("runs/r/outputs/metrics.jsonl", "val_acc", "step_time"),
        file_with("runs/r/work/run_1/final_info.json", "spirals.means.val_acc"),
    ]
    text = asked_back(files, "val_acc", base="runs/r")
    assert "'val_acc' matches 2 metrics in 'run'" in text
    assert "'outputs/metrics.jsonl:val_acc' (val_acc in runs/r/outputs/metrics.jsonl)" in text
    assert "'spirals.means.val_acc' (spirals.means.val_acc in runs/r/work/run_1/final_info.json)" in text
    assert "full name" in text and "'<file>:'" in text
    assert picked(files, "outputs/metrics.jsonl:val_acc") == ("runs/r/outputs/metrics.jsonl", "val_acc")
    assert picked(files, "spirals.means.val_acc") == ("runs/r/work/run_1/final_info.json", "spirals.means.val_acc")


def test_one_metric_for_several_datasets_of_one_file_asks_back_with_each_full_name() -> None:
    files = [file_with("final_info.json", "circle.means.eval_loss", "dino.means.eval_loss", "dino.means.kl")]
    text = asked_back(files, "eval_loss")
    assert "'circle.means.eval_loss' (circle.means.eval_loss in final_info.json)" in text
    assert "'dino.means.eval_loss'" in text and "kl" not in text


def test_within_one_file_the_exact_name_wins_so_every_metric_can_be_named() -> None:
    files = [file_with("a.json", "means.val_acc", "spirals.means.val_acc")]
    assert picked(files, "means.val_acc") == ("a.json", "means.val_acc")
    assert "2 metrics" in asked_back(files, "val_acc")


def test_a_file_prefix_names_files_at_a_slash_boundary_and_an_exact_path_wins() -> None:
    files = [file_with("run/final_info.json", "loss"), file_with("run/sub/final_info.json", "loss")]
    assert picked(files, "info.json:loss") is None  # 'info.json' is not a file here
    assert "2 metrics" in asked_back(files, "final_info.json:loss")
    assert picked(files, "sub/final_info.json:loss") == ("run/sub/final_info.json", "loss")
    assert picked(files, "run/final_info.json:loss") == ("run/final_info.json", "loss")


def test_a_name_holding_a_colon_is_found_when_no_file_is_named_before_it() -> None:
    files = [file_with("tb/events", "eval:acc", "x.y:z")]
    assert picked(files, "eval:acc") == ("tb/events", "eval:acc")
    assert picked(files, "y:z") == ("tb/events", "x.y:z")
    assert picked(files, "events:eval:acc") == ("tb/events", "eval:acc")


def test_asking_back_lists_a_dozen_candidates_and_counts_the_rest() -> None:
    files = [file_with(f"r/final_info_{i}.json", "loss") for i in range(15)]
    text = asked_back(files, "loss", base="r")
    assert "15 metrics" in text and "and 3 more (read_metrics lists them)" in text
    assert len(re.findall(r"\(loss in r/final_info_\d+\.json\)", text)) == 12


_SEGMENT = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
_NAME = st.lists(_SEGMENT, min_size=1, max_size=4).map(".".join)
_PATH = st.lists(st.from_regex(r"[a-z][a-z0-9_.]{0,5}", fullmatch=True), min_size=1, max_size=3).map("/".join)
_FILES = st.dictionaries(_PATH, st.lists(_NAME, min_size=1, max_size=6, unique=True), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(_FILES)
def test_every_recorded_metric_resolves_to_itself_through_the_spelling_an_ask_back_offers(
    layout: dict[str, list[str]],
) -> None:
    files = [file_with(f"ws/{path}", *names) for path, names in layout.items()]
    for fm in files:
        for name in fm.series:
            assert picked(files, f"{fm.path}:{name}") == (fm.path, name)
            [match] = [m for m in candidates(files, name) if m.file is fm and m.name == name]
            assert picked(files, spelling(files, match, base="ws")) == (fm.path, name)


@settings(max_examples=150, deadline=None)
@given(_NAME, st.lists(_SEGMENT, max_size=3).map(".".join), _PATH)
def test_a_lone_dotted_name_resolves_to_itself_and_from_every_dotted_tail(name: str, prefix: str, path: str) -> None:
    full = f"{prefix}.{name}" if prefix else name
    files = [file_with(path, full)]
    parts = full.split(".")
    for i in range(len(parts)):
        assert picked(files, ".".join(parts[i:])) == (path, full)


@settings(max_examples=100, deadline=None)
@given(_FILES, _NAME)
def test_a_name_either_resolves_to_a_candidate_asks_back_or_finds_nothing(
    layout: dict[str, list[str]], text: str
) -> None:
    files = [file_with(path, *names) for path, names in layout.items()]
    found = candidates(files, text)
    for match in found:
        assert match.name == text or match.name.endswith("." + text)
    if len(found) > 1:
        message = asked_back(files, text)
        assert all(m.file.path in message and m.name in message for m in found[:12])
    else:
        assert picked(files, text) == (None if not found else (found[0].file.path, found[0].name))


def test_real_ai_scientist_runs_ask_back_across_datasets_and_files_and_resolve_full_names() -> None:
    folder = fixtures_dir("logs") / "ai-scientist"
    ws = Workspace(folder, "setting")
    limits = Limits()

    def files_of(rel: str) -> list[FileMetrics]:
        return [read_file_metrics(ws, path, kind, limits) for path, kind in discover(folder / rel, [])]

    diffusion = files_of("adaptive_dual_scale_denoising/run_1")
    text = asked_back(diffusion, "eval_loss", base="adaptive_dual_scale_denoising/run_1")
    assert all(f"'{d}.means.eval_loss'" in text for d in ("circle", "dino", "line", "moons"))
    circle = picked(diffusion, "circle.means.eval_loss")
    assert circle == ("adaptive_dual_scale_denoising/run_1/final_info.json", "circle.means.eval_loss")

    adapter = files_of("multi_style_adapter/run_1")  # best_val_loss per seed file, and nested in final_info.json
    text = asked_back(adapter, "best_val_loss", base="multi_style_adapter/run_1")
    assert "'final_info_shakespeare_char_0.json:best_val_loss'" in text
    assert "'shakespeare_char.final_info_dict.best_val_loss'" in text
    seed = picked(adapter, "final_info_shakespeare_char_0.json:best_val_loss")
    assert seed == ("multi_style_adapter/run_1/final_info_shakespeare_char_0.json", "best_val_loss")
    nested = picked(adapter, "enwik8.means.best_val_loss_mean")
    assert nested == ("multi_style_adapter/run_1/final_info.json", "enwik8.means.best_val_loss_mean")
