"""The mean curve and shaded band of a group of runs (`_bands.band_of`)."""

from __future__ import annotations

import math

import pytest

from research_mcp.tools.metrics._bands import band_of


def test_runs_on_the_same_steps_give_the_mean_and_a_t_interval_per_step() -> None:
    band = band_of([([0, 1, 2], [1.0, 2.0, 3.0]), ([0, 1, 2], [3.0, 4.0, 5.0])], "ci95")
    assert band is not None and band.steps == [0, 1, 2] and band.mean == [2.0, 3.0, 4.0] and not band.interpolated
    half = 12.706204736174707 * math.sqrt(2) / math.sqrt(2)  # t(0.975, 1) * std / sqrt(n), std = sqrt(2)
    assert band.low == pytest.approx([2.0 - half, 3.0 - half, 4.0 - half])
    assert band.high == pytest.approx([2.0 + half, 3.0 + half, 4.0 + half])


def test_the_std_band_is_one_sample_standard_deviation() -> None:
    band = band_of([([0], [1.0]), ([0], [2.0]), ([0], [3.0])], "std")
    assert band is not None and band.n == 3 and band.low == [1.0] and band.high == [3.0]


def test_runs_on_other_steps_are_interpolated_inside_the_range_all_cover() -> None:
    band = band_of([([0, 10, 20], [0.0, 10.0, 20.0]), ([5, 15, 30], [0.0, 10.0, 25.0])], "std")
    assert band is not None and band.interpolated
    assert band.steps == [5, 10, 15, 20]  # never past 20, where the first run stops, nor before 5
    assert band.mean == pytest.approx([2.5, 7.5, 12.5, 17.5])


def test_one_run_has_no_band_and_disjoint_runs_no_curve() -> None:
    one = band_of([([0, 1], [1.0, 2.0])], "ci95")
    assert one is not None and one.low is None and one.n == 1
    assert band_of([([0, 1], [1.0, 2.0]), ([5, 6], [1.0, 2.0])], "ci95") is None
