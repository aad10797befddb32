"""The shared pacing and retry policy of the literature tools, with a fake clock where time matters."""

from __future__ import annotations

import re
import time

import anyio
import pytest

from research_mcp.errors import LiteratureError, RateLimitedError
from research_mcp.tools.literature import _net
from research_mcp.tools.literature._net import (
    HttpFailure,
    MalformedResponse,
    Pacer,
    call_deadline,
    parse_retry_after,
    with_policy,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pacer_hands_out_slots_an_interval_apart_and_honours_retry_after() -> None:
    clock = Clock()
    pacer = Pacer(3.0, clock)
    assert pacer.reserve(60) == 0.0
    assert pacer.reserve(60) == pytest.approx(3.05)
    assert pacer.reserve(60) == pytest.approx(6.1)
    assert pacer.reserve(5) is None, "a slot beyond the caller's wait is not taken"
    clock.now += 20
    pacer.block_for(30)
    assert pacer.reserve(60) == pytest.approx(30)


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == pytest.approx(10)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.anyio
async def test_transient_failures_are_retried_at_most_three_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_net, "BACKOFF_S", 0.01)
    calls: list[float] = []

    async def failing(timeout_s: float) -> None:
        calls.append(timeout_s)
        raise HttpFailure(503)

    with pytest.raises(LiteratureError, match=r"Demo failed \(HTTP 503\)"):
        await with_policy("Demo", Pacer(0), failing, budget_s=10, what="fail")
    assert len(calls) == 3

    async def broken(timeout_s: float) -> None:
        calls.append(timeout_s)
        raise MalformedResponse("cut")

    with pytest.raises(LiteratureError, match="does not parse"):
        await with_policy("Demo", Pacer(0), broken, budget_s=10, what="break")
    assert len(calls) == 4, "a malformed answer is not retried"


@pytest.mark.anyio
async def test_a_call_deadline_bounds_every_request_inside_it() -> None:
    pacer = Pacer(30.0)
    pacer.block_for(20)

    async def never(timeout_s: float) -> None:
        raise AssertionError("no slot should be given")

    start = time.monotonic()
    with call_deadline(1.0), pytest.raises(RateLimitedError, match="retry after 20 s"):
        await with_policy("Demo", pacer, never, budget_s=40, what="wait")
    assert time.monotonic() - start < 0.5

    async def slow(timeout_s: float) -> None:
        assert timeout_s <= 1.0
        await anyio.sleep(5)

    with call_deadline(0.6), pytest.raises(LiteratureError, match="did not answer"):
        await with_policy("Demo", Pacer(0), slow, budget_s=40, what="dawdle")


@pytest.mark.anyio
async def test_every_request_retry_and_wait_is_told_to_the_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_net, "BACKOFF_S", 0.2)
    told: list[str] = []

    async def progress(message: str) -> None:
        told.append(message)

    answers = iter([HttpFailure(503, "busy"), HttpFailure(429, retry_after_s=0.3), None])

    async def flaky(timeout_s: float) -> str:
        failure = next(answers)
        if failure is not None:
            raise failure
        return "ok"

    pacer = Pacer(0.0)
    assert await with_policy("Demo", pacer, flaky, budget_s=10, what="look up x", progress=progress) == "ok"
    assert told[:2] == ["Demo: look up x", "Demo: HTTP 503: busy; attempt 2 of 3 in 0.2 s"]
    assert told[2] == "Demo: HTTP 429; attempt 3 of 3", "a Retry-After is waited out in the pacer, told next"
    assert told[3].startswith("Demo: waiting 0.") and told[3].endswith(" s for a request slot (rate limit)")
    assert len(told) == 4

    told.clear()
    paced = Pacer(0.5)
    paced.reserve(1)  # another call took the slot just now

    async def answer(timeout_s: float) -> str:
        return "ok"

    await with_policy("Demo", paced, answer, budget_s=10, what="search 'y'", progress=progress)
    assert (
        told[0] == "Demo: search 'y'"
        and re.fullmatch(r"Demo: waiting 0\.\d s for a request slot \(rate limit\)", told[1])
        and len(told) == 2
    )
