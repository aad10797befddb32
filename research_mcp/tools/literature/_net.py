"""How the literature tools ask the outside world: one pacer per service shared by every concurrent call, one
retry policy (tenacity), and the translation of every failure into a message the model can act on.

    arXiv            one request per `arxiv_interval_s` (3 s, arXiv's terms of use)
    Semantic Scholar one request per `s2_interval_s` (1 s with an API key, else 3 s: 100 requests / 5 min)

A 429's `Retry-After` blocks the pacer for everyone. Transient failures (429, 5xx, timeouts, dropped connections)
are retried at most `MAX_ATTEMPTS` times and only while the call's deadline allows; then the call fails with
"rate limited by <source>, retry after N s" or says what went wrong, instead of hanging.

Every request, retry and wait is told to the call's `Progress` as it starts ("arXiv: search 'x'", "arXiv: waiting
2.9 s for a request slot (rate limit)", "Semantic Scholar: HTTP 503; attempt 2 of 3 in 1.0 s"), so a client sees
why a call takes long and can keep its request timeout alive.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

import anyio

from research_mcp.errors import LiteratureError, RateLimitedError
from research_mcp.progress import Progress, no_progress

__all__ = [
    "CALL_BUDGET_S",
    "TOOL_BUDGET_S",
    "call_deadline",
    "tls_context",
    "MAX_ATTEMPTS",
    "HttpFailure",
    "MalformedResponse",
    "Pacer",
    "TransportFailure",
    "pacer_for",
    "parse_retry_after",
    "with_policy",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ATTEMPTS = 3
CALL_BUDGET_S = 40.0
"""Longest one tool call spends asking one source, waits included (clients cut calls at about 60 s)."""
TOOL_BUDGET_S = 45.0
"""Longest one tool call spends on the network in all, over every source and step (see `call_deadline`)."""
MAX_RETRY_AFTER_WAIT_S = 10.0
"""A Retry-After longer than this is reported to the model at once rather than waited out."""
DEFAULT_RETRY_AFTER_S = 30.0
"""What to tell the model when a 429 names no Retry-After."""
BACKOFF_S = 1.0
"""First wait before retrying a failure that named no Retry-After; doubled each time, at most 4x."""
_SLACK_S = 0.05
"""Added to each paced interval, so requests arrive at least the interval apart despite network jitter."""
_TOLD_WAIT_S = 0.1
"""Waits at least this long are told to the call's progress; shorter ones are jitter no one would notice."""


class HttpFailure(Exception):
    """A source answered with an HTTP status other than 200."""

    def __init__(self, status: int, detail: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(f"HTTP {status}" + (f": {detail}" if detail else ""))
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s


class TransportFailure(Exception):
    """No complete answer: a timeout, a refused or dropped connection, a body cut short."""


class MalformedResponse(Exception):
    """An answer that does not parse (truncated or malformed XML/JSON)."""


_deadline: ContextVar[float | None] = ContextVar("literature_deadline", default=None)


@contextmanager
def call_deadline(seconds: float = TOOL_BUDGET_S) -> Generator[None]:
    """Bound every request made inside (tasks started inside too) by one deadline, `seconds` from now."""
    current = _deadline.get()
    until = time.monotonic() + seconds
    token = _deadline.set(until if current is None else min(current, until))
    try:
        yield
    finally:
        _deadline.reset(token)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every HTTP client: loading the CA bundle costs about 60 ms, so it is done once."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class Pacer:
    """At most one request per `interval_s`, shared by every thread and event loop of the process.

    Each caller reserves the next free slot under a thread lock and sleeps until it; a 429's Retry-After pushes
    the next free slot back for everyone."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0

    def reserve(self, max_wait_s: float) -> float | None:
        """Take the next slot and return how long to wait for it, or None (nothing taken) if that is too long."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            if start - now > max_wait_s:
                return None
            self._next = start + self.interval_s + (_SLACK_S if self.interval_s > 0 else 0.0)
            return start - now

    def wait_needed(self) -> float:
        with self._lock:
            return max(0.0, self._next - self._clock())

    def block_for(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)

    async def acquire(self, source: str, max_wait_s: float, progress: Progress = no_progress) -> None:
        delay = self.reserve(max_wait_s)
        if delay is None:
            raise RateLimitedError(source, self.wait_needed())
        if delay > 0:
            logger.debug("%s: waiting %.2f s for a request slot", source, delay)
            if delay >= _TOLD_WAIT_S:
                await progress(f"{source}: waiting {delay:.1f} s for a request slot (rate limit)")
            await anyio.sleep(delay)


_pacers: dict[tuple[str, str], Pacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(source: str, base_url: str, interval_s: float) -> Pacer:
    """The process-wide pacer of one service at one address (tests on different ports do not share one)."""
    with _pacers_lock:
        found = _pacers.get((source, base_url))
        if found is None:
            found = _pacers[(source, base_url)] = Pacer(interval_s)
        found.interval_s = interval_s
        return found


@dataclass(frozen=True)
class _Transient:
    retry_after_s: float | None


def _transient(exc: BaseException) -> _Transient | None:
    if isinstance(exc, HttpFailure) and (exc.status == 429 or exc.status >= 500):
        return _Transient(exc.retry_after_s)
    if isinstance(exc, TransportFailure):
        return _Transient(None)
    return None


async def with_policy(
    source: str,
    pacer: Pacer,
    request: Callable[[float], Awaitable[T]],
    *,
    budget_s: float,
    what: str,
    progress: Progress = no_progress,
) -> T:
    """Run `request(timeout_s)` under the pacer, retrying transient failures within `budget_s`; every failure
    leaves as a `LiteratureError` (a `RateLimitedError` for rate limits) that says what to do. `what` names the
    request for `progress`, which is told as it is sent and before every wait."""
    from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

    deadline = time.monotonic() + budget_s
    outer = _deadline.get()
    if outer is not None:
        deadline = min(deadline, outer)
        budget_s = max(0.0, deadline - time.monotonic())

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        found = _transient(exc) if exc is not None else None
        if found is not None and found.retry_after_s is not None:
            return 0.0  # the pacer is blocked for the Retry-After; waiting here too would double it
        return BACKOFF_S * min(2.0 ** (state.attempt_number - 1), 4.0)

    def too_late(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        found = _transient(exc) if exc is not None else None
        after = found.retry_after_s if found is not None else None
        if after is not None and after > min(MAX_RETRY_AFTER_WAIT_S, deadline - time.monotonic()):
            return True
        return time.monotonic() + (state.upcoming_sleep or 0.0) + pacer.wait_needed() >= deadline - 1.0

    async def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        pause = state.upcoming_sleep or 0.0
        after = f" in {pause:.1f} s" if pause >= _TOLD_WAIT_S else ""
        await progress(f"{source}: {exc}; attempt {state.attempt_number + 1} of {MAX_ATTEMPTS}{after}")

    retrying = AsyncRetrying(
        stop=lambda state: state.attempt_number >= MAX_ATTEMPTS or too_late(state),
        wait=wait,
        retry=retry_if_exception(lambda exc: _transient(exc) is not None),
        before_sleep=before_sleep,
        reraise=True,
    )
    await progress(f"{source}: {what}")
    try:
        async for attempt in retrying:
            with attempt:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransportFailure(f"no answer within {budget_s:.0f} s")
                await pacer.acquire(source, remaining - 0.5, progress)
                remaining = deadline - time.monotonic()
                try:
                    with anyio.fail_after(max(0.5, remaining)):
                        return await request(max(0.5, remaining))
                except TimeoutError as exc:
                    raise TransportFailure(f"no answer within {max(0.5, remaining):.0f} s") from exc
                except HttpFailure as exc:
                    if exc.status == 429:
                        pacer.block_for(exc.retry_after_s if exc.retry_after_s is not None else pacer.interval_s * 2)
                    raise
    except HttpFailure as exc:
        raise explain(source, exc) from exc
    except TransportFailure as exc:
        raise LiteratureError(
            f"{source} did not answer ({exc}). The network may be down or the service slow: try again later; "
            "search_papers answers from the local library meanwhile."
        ) from exc
    except MalformedResponse as exc:
        raise LiteratureError(f"{source} sent an answer that does not parse ({exc}); nothing was kept. "
                              "Try again later.") from exc  # fmt: skip
    except LiteratureError:
        raise
    except Exception as exc:  # the boundary: a client library tripping over an answer it did not expect
        logger.exception("%s: unexpected failure", source)
        raise LiteratureError(
            f"{source} sent an answer its client could not use ({type(exc).__name__}: {str(exc)[:200]}). "
            "Try again later."
        ) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


def explain(source: str, exc: HttpFailure) -> LiteratureError:
    """The model-facing error for an HTTP failure that retries did not cure."""
    detail = f" ({exc.detail})" if exc.detail else ""
    if exc.status == 429:
        return RateLimitedError(source, exc.retry_after_s if exc.retry_after_s is not None else DEFAULT_RETRY_AFTER_S)
    if exc.status == 400:
        return LiteratureError(f"{source} rejected the request as malformed (HTTP 400{detail}). Fix the query or id.")
    if exc.status in (401, 403):
        key = " Check S2_API_KEY (or unset it)." if source == "Semantic Scholar" else ""
        return LiteratureError(f"{source} refused access (HTTP {exc.status}{detail}).{key}")
    if exc.status == 404:
        return LiteratureError(f"{source} has no such resource (HTTP 404{detail}). Check the id.")
    return LiteratureError(f"{source} failed (HTTP {exc.status}{detail}). It is probably down: try again later.")
