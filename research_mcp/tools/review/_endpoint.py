"""A reviewer behind an OpenAI-compatible chat-completions endpoint (`POST {url}/chat/completions`).

httpx sends the request; tenacity retries a connection failure, a timeout, 429 and 5xx (honouring a
`Retry-After` of up to a minute), up to `attempts` tries; a 4xx other than 429 fails at once, its body quoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from research_mcp.errors import ResearchError

__all__ = ["Endpoint", "EndpointError", "Reply", "chat"]


class EndpointError(ResearchError):
    """The review endpoint failed for good."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    model: str
    api_key: str | None
    timeout_s: float = 120.0
    max_tokens: int = 4000
    temperature: float = 0.75
    attempts: int = 4


@dataclass(frozen=True)
class Reply:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int


class _Retryable(Exception):
    def __init__(self, message: str, wait_s: float | None = None) -> None:
        super().__init__(message)
        self.wait_s = wait_s


def _retry_after(response: httpx.Response) -> float | None:
    from research_mcp.tools.literature._net import parse_retry_after

    found = parse_retry_after(response.headers.get("retry-after"))
    return None if found is None else min(found, 60.0)


async def chat(endpoint: Endpoint, messages: list[dict[str, str]], *, client: httpx.AsyncClient | None = None) -> Reply:
    """One completion of `messages` (role/content dicts)."""
    from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retryable) and exc.wait_s is not None:
            return exc.wait_s
        return min(2.0 * 2 ** (state.attempt_number - 1), 30.0)

    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    body: dict[str, Any] = {
        "model": endpoint.model,
        "messages": messages,
        "max_tokens": endpoint.max_tokens,
        "temperature": endpoint.temperature,
    }
    url = endpoint.url.rstrip("/") + "/chat/completions"
    own = client is None
    http = client if client is not None else httpx.AsyncClient(timeout=endpoint.timeout_s)
    try:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(endpoint.attempts), wait=wait, retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )  # fmt: skip
        async for attempt in retrying:
            with attempt:
                try:
                    response = await http.post(url, json=body, headers=headers)
                except httpx.TransportError as exc:
                    raise _Retryable(f"cannot reach {url}: {exc!r}") from exc
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Retryable(f"{url} answered {response.status_code}", _retry_after(response))
                if response.status_code >= 400:
                    raise EndpointError(
                        f"The review endpoint {url} refused the request ({response.status_code}: "
                        f"{response.text[:300]}). Check review_url, review_model and review_api_key."
                    )
                return _reply(response, url)
    except _Retryable as exc:
        raise EndpointError(f"The review endpoint failed after {endpoint.attempts} tries: {exc}.") from exc
    finally:
        if own:
            await http.aclose()
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


def _reply(response: httpx.Response, url: str) -> Reply:
    try:
        data: dict[str, Any] = response.json()
        text = data["choices"][0]["message"]["content"]
        usage: dict[str, Any] = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise EndpointError(f"The review endpoint {url} answered in an unknown format: {response.text[:200]}") from exc
    if not isinstance(text, str):
        raise EndpointError(f"The review endpoint {url} answered with no text.")
    return Reply(
        text=text, model=str(data.get("model") or ""), prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )  # fmt: skip
