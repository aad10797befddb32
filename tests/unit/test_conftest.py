"""The test suite's own rule: what a test needs and cannot find is a skip on a laptop and a failure under CI=true."""

from __future__ import annotations

import pytest

from tests import conftest, replay


@pytest.mark.parametrize("in_ci", [False, True])
def test_a_missing_part_skips_on_a_laptop_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch, in_ci: bool) -> None:
    monkeypatch.setattr(conftest, "IN_CI", in_ci)
    expected = pytest.fail.Exception if in_ci else pytest.skip.Exception
    for missing in (
        lambda: conftest.skip_or_fail("no cgroup"),
        lambda: conftest.fixtures_dir("no-such-folder"),
        lambda: replay.fixture_path("no-such-folder/x.json"),
    ):
        with pytest.raises(expected) as raised:
            missing()
        assert ("required under CI=true" in str(raised.value)) == in_ci
