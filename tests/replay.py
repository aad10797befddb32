"""A replay HTTP server on 127.0.0.1 that real clients (arxiv, semanticscholar, PyGithub, httpx) can talk to.

Usage::

    with ReplayServer() as server:  # or ReplayServer(rewrite={"https://upstream": None}): rewrite URLs to server.url
        server.add(Route("GET", "/api/query", [Response(429, headers={"Retry-After": "1"}), Response(200, "<feed/>")],
                         query={"id_list": "1605.08386"}))
        server.add(*pygithub_routes(fixture_path("github/pygithub-json/Repository.setUp.json")))  # api.github.com->url
        client = arxiv.Client(page_size=100, delay_seconds=0, num_retries=0)
        client.query_url_format = f"{server.url}/api/query?{{}}"
        ...
        assert len(server.requests_to("/api/query")) == 2
        server.assert_all_matched()

Matching: the most recently added route that matches answers, so a test can override a loaded recording. A route's
responses are served in order and the last one repeats; with ``repeat_last=False`` an exhausted route stops matching
and the request falls through to older routes or to the 404. An unmatched request gets a 404 whose JSON body names it
and lists the known routes; it is recorded, and ``assert_all_matched()`` fails on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, cast
from urllib.parse import parse_qs, urlsplit

from tests.conftest import FIXTURES, skip_or_fail

logger = logging.getLogger(__name__)

GITHUB_API = "https://api.github.com"
ARXIV_QUERY_PATH = "/api/query"
ATOM_TYPE = "application/atom+xml; charset=UTF-8"

Headers = Mapping[str, str] | Sequence[tuple[str, str]]
Query = dict[str, list[str]]

_JOIN_TIMEOUT_S = 5.0
_REWRITTEN_HEADERS = frozenset({"location", "link", "content-location"})
_OUR_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_STALE_RECORDED_HEADERS = _OUR_HEADERS | {"status", "content-encoding"}  # recorded bodies are stored decoded
_TEXT_TYPE = re.compile(r"text/|[/+](json|xml|javascript)\b|x-www-form-urlencoded", re.IGNORECASE)


@dataclass(frozen=True)
class Response:
    """One canned answer.

    ``body`` is bytes (application/octet-stream), str (utf-8 text/plain) or any other JSON-serialisable object
    (application/json); a Content-Type in ``headers`` wins over these defaults. Content-Length is always computed.
    """

    status: int = 200
    body: object = b""
    headers: Headers = ()
    delay_s: float = 0.0
    """Wait this long in the server thread before answering (cut short when the server stops)."""
    truncate_at: int | None = None
    """Announce the full Content-Length but send only this many body bytes, then close the connection."""
    drop: bool = False
    """Close the connection without answering at all."""

    def encoded(self) -> tuple[bytes, list[tuple[str, str]]]:
        """The body bytes and the header list, with a default Content-Type added."""
        headers = list(self.headers.items()) if isinstance(self.headers, Mapping) else list(self.headers)
        if isinstance(self.body, bytes):
            body, content_type = self.body, "application/octet-stream"
        elif isinstance(self.body, str):
            body, content_type = self.body.encode(), "text/plain; charset=utf-8"
        else:
            body, content_type = json.dumps(self.body).encode(), "application/json"
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", content_type))
        return body, headers


@dataclass(eq=False)
class Route:
    """Answers requests with this method and path (exact string, or a regex that must match the whole path).

    ``query`` matches a subset of the query parameters (all of them with ``exact_query=True``; a str value means a
    single value). ``body`` is a predicate on the request body bytes. ``rewrite`` adds to the server's rewrites.
    """

    method: str
    path: str | re.Pattern[str]
    responses: Response | Sequence[Response] = field(default_factory=Response)
    query: Mapping[str, str | Sequence[str]] | None = None
    exact_query: bool = False
    body: Callable[[bytes], bool] | None = None
    repeat_last: bool = True
    rewrite: Mapping[str, str | None] = field(default_factory=dict[str, str | None])
    served: int = field(default=0, init=False)
    """How many requests this route has answered."""
    answers: tuple[Response, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self.answers = (self.responses,) if isinstance(self.responses, Response) else tuple(self.responses)
        if not self.answers:
            raise ValueError(f"Route {self.describe()} needs at least one Response.")

    def describe(self) -> str:
        path = self.path if isinstance(self.path, str) else f"re:{self.path.pattern}"
        query = f" query{'==' if self.exact_query else '>='}{dict(self.query or {})}" if self.query else ""
        return f"{self.method} {path}{query}"

    def matches(self, method: str, path: str, query: Query, body: bytes) -> bool:
        exhausted = self.served >= len(self.answers) and not self.repeat_last
        if exhausted or method != self.method or not _path_matches(self.path, path):
            return False
        if self.query is not None or self.exact_query:
            wanted = {k: [v] if isinstance(v, str) else list(v) for k, v in (self.query or {}).items()}
            if query != wanted if self.exact_query else any(query.get(k) != v for k, v in wanted.items()):
                return False
        return self.body is None or self.body(body)

    def take(self) -> Response:
        """The next answer in the sequence (the server calls this under its lock, right after ``matches``)."""
        self.served += 1
        return self.answers[min(self.served, len(self.answers)) - 1]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    target: str
    """The raw request target, path plus query string."""
    path: str
    query: Query
    headers: dict[str, str]
    """Lower-case names; repeated headers joined with ", "."""
    body: bytes
    arrived_at: float
    """``time.monotonic()`` when the request line was read."""
    matched: bool


class ReplayServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 (ephemeral port) answering from routes; a context manager."""

    def __init__(self, routes: Iterable[Route] = (), *, rewrite: Mapping[str, str | None] | None = None) -> None:
        """``rewrite`` maps upstream base URLs to replacements (None: this server's URL) in text bodies and in the
        Location/Link headers, e.g. ``{GITHUB_API: None}``."""
        self._routes = list(routes)
        self._rewrite = dict(rewrite or {})
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("The replay server is not running: use `with ReplayServer() as server:`.")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *routes: Route) -> None:
        """Add routes; they take precedence over every route added before them."""
        with self._lock:
            self._routes.extend(routes)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str | re.Pattern[str], method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests to this exact path (or whole-path regex), optionally with this method."""
        wanted = method and method.upper()
        return [r for r in self.requests if _path_matches(path, r.path) and wanted in (None, r.method)]

    def assert_all_matched(self) -> None:
        unmatched = [f"{r.method} {r.target}" for r in self.requests if not r.matched]
        if unmatched:
            routes = [r.describe() for r in self._routes]
            raise AssertionError(f"No route matched {unmatched}. Known routes, newest last: {routes}")

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("The replay server is already running.")
        self._stopping.clear()
        self._httpd = _HTTPServer(self._serve)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"replay-server:{self._port}"
        )
        self._thread.start()
        logger.debug("replay server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection, and join all threads (bounded)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()  # wakes delayed answers, which then drop their connection
        httpd.shutdown()  # returns once serve_forever has seen the request (it polls every 0.05 s)
        httpd.server_close()
        with httpd.workers_lock:
            workers = dict(httpd.workers)
        for conn in workers.values():  # idle keep-alive connections would otherwise wait for the client
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for t in (threads := [thread, *workers]):
            t.join(max(0.0, deadline - time.monotonic()))
        if alive := [t.name for t in threads if t.is_alive()]:
            logger.warning("replay server threads still running after %.0f s: %s", _JOIN_TIMEOUT_S, alive)
        self._httpd = self._thread = None
        self._port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        query = parse_qs(split.query, keep_blank_values=True)
        body = _read_body(handler)
        headers: dict[str, str] = {}
        for name, value in handler.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        method, target = handler.command, handler.path
        with self._lock:
            route = next((r for r in reversed(self._routes) if r.matches(method, split.path, query, body)), None)
            chosen = (route, route.take()) if route else None
            self._requests.append(
                RecordedRequest(method, target, split.path, query, headers, body, handler.arrived_at, bool(chosen))
            )
            known = [r.describe() for r in self._routes] if chosen is None else []
        if chosen is None:
            logger.warning("replay server: no route for %s %s", method, target)
            info = {"error": f"The replay server has no route for {method} {target}.", "method": method}
            self._send(handler, Response(404, info | {"path": split.path, "query": query, "routes": known}), {})
        else:
            self._send(handler, chosen[1], chosen[0].rewrite)

    def _send(self, handler: _Handler, answer: Response, route_rewrite: Mapping[str, str | None]) -> None:
        if answer.delay_s > 0:
            self._stopping.wait(answer.delay_s)
        if answer.drop or self._stopping.is_set():
            handler.close_connection = True
            return
        body, headers = answer.encoded()
        pairs = [(old, self.url if new is None else new) for old, new in {**self._rewrite, **route_rewrite}.items()]
        if pairs:
            headers = [(k, _replace(v, pairs) if k.lower() in _REWRITTEN_HEADERS else v) for k, v in headers]
            if any(k.lower() == "content-type" and _TEXT_TYPE.search(v) for k, v in headers):
                body = _replace(body.decode("latin-1"), pairs).encode("latin-1")  # byte-exact for any ASCII URL
        handler.send_response(answer.status)
        for name, value in headers:
            if name.lower() not in _OUR_HEADERS:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body if answer.truncate_at is None else body[: answer.truncate_at])
        if answer.truncate_at is not None:
            handler.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes connections and joins the workers itself, with a bound
    request_queue_size = 64

    def __init__(self, serve: Callable[[_Handler], None]) -> None:
        self.serve = serve
        self.workers: dict[threading.Thread, socket.socket] = {}
        self.workers_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        worker = threading.Thread(
            target=self._work, args=(request, client_address), name=f"replay-conn:{self.server_address[1]}", daemon=True
        )
        with self.workers_lock:
            self.workers[worker] = cast(socket.socket, request)
        worker.start()

    def _work(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.workers_lock:
                self.workers.pop(threading.current_thread(), None)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        logger.debug("replay connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is closed after this
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    arrived_at = 0.0

    def parse_request(self) -> bool:  # called right after the request line is read
        self.arrived_at = time.monotonic()
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)

    def _answer(self) -> None:
        cast(_HTTPServer, self.server).serve(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    chunks: list[bytes] = []
    while size := int(handler.rfile.readline().split(b";")[0], 16):
        chunks.append(handler.rfile.read(size))
        handler.rfile.readline()
    while handler.rfile.readline().strip():  # trailers
        pass
    return b"".join(chunks)


def _replace(text: str, pairs: Sequence[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


# --- loaders for ../shared/fixtures ------------------------------------------------------------------------------


def fixture_path(relative: str) -> Path:
    """``../shared/fixtures/<relative>``; skips the calling test when the shared fixtures are not there (fails it
    under CI=true, where they always are)."""
    path = FIXTURES / relative
    if not path.exists():
        skip_or_fail(f"shared fixture {relative!r} not found under {FIXTURES}")
    return path


def same_body(expected: bytes) -> Callable[[bytes], bool]:
    """A body predicate: equal as JSON when both sides parse as JSON, else byte-equal."""

    def check(actual: bytes) -> bool:
        try:
            return json.loads(actual) == json.loads(expected)
        except ValueError:
            return actual == expected

    return check


def cassette_routes(cassette: Path, *, match_body: bool = True) -> list[Route]:
    """Routes for a vcrpy cassette (``semanticscholar/cassettes/*.yaml``), classic or httpx flavour.

    Each route matches the recorded method, path and exact query (and request body, if any, with ``match_body``);
    interactions repeating one request become one route answering them in order. Needs PyYAML.
    """
    import yaml

    exchanges: list[tuple[str, str, bytes, Response]] = []
    for interaction in yaml.safe_load(cassette.read_text(encoding="utf-8"))["interactions"]:
        request, response = interaction["request"], interaction["response"]
        if "status" in response:  # classic vcrpy
            status, content = response["status"]["code"], response["body"]["string"]
        else:  # vcrpy's httpx flavour
            status, content = response["status_code"], response["content"]
        headers = [(name, value) for name, values in response["headers"].items() for value in values]
        answer = Response(int(status), _as_bytes(content), _recorded_headers(headers))
        exchanges.append((request["method"], request["uri"], _as_bytes(request["body"]) if match_body else b"", answer))
    return _grouped(exchanges, {})


def pygithub_routes(recording: Path) -> list[Route]:
    """Routes for a PyGithub replay file converted to JSON (``github/pygithub-json/*.json``).

    Bodies are the recorded JSON (or text), and ``https://api.github.com`` in bodies and Location/Link headers is
    rewritten to the replay server, as PyGithub only follows URLs on its base host.
    """
    exchanges: list[tuple[str, str, bytes, Response]] = []
    for exchange in json.loads(recording.read_text(encoding="utf-8")):
        raw = exchange["body"]
        body = b"" if raw is None else raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
        answer = Response(int(exchange["status"]), body, _recorded_headers(exchange["response_headers"].items()))
        exchanges.append((exchange["method"], exchange["url"], (exchange["request_body"] or "").encode(), answer))
    return _grouped(exchanges, {GITHUB_API: None})


def arxiv_route(recording: Path, query: Mapping[str, str] | None = None, *, status: int = 200) -> Route:
    """Serve one recorded arXiv Atom feed at ``/api/query``.

    ``recording`` is an ``arxiv/recorded/*.json`` file (status and body from the recording; matched on its exact
    recorded query unless ``query`` is given for a subset match) or an ``arxiv/xml/*.xml`` body (served with
    ``status``, matched on ``query``, or on any query when that is None).
    """
    if recording.suffix == ".json":
        data = json.loads(recording.read_text(encoding="utf-8"))
        answer = Response(int(data["status_code"]), data["body"].encode("latin-1"), {"Content-Type": ATOM_TYPE})
        if query is None:
            _, recorded_query = _split(data["url"])
            return Route("GET", ARXIV_QUERY_PATH, answer, query=recorded_query, exact_query=True)
    else:
        answer = Response(status, recording.read_bytes(), {"Content-Type": ATOM_TYPE})
    return Route("GET", ARXIV_QUERY_PATH, answer, query=query)


def _grouped(exchanges: Sequence[tuple[str, str, bytes, Response]], rewrite: Mapping[str, str | None]) -> list[Route]:
    grouped: dict[tuple[str, str, bytes], list[Response]] = {}
    for method, url, body, answer in exchanges:
        grouped.setdefault((method.upper(), url, body), []).append(answer)
    routes: list[Route] = []
    for (method, url, body), answers in grouped.items():
        path, query = _split(url)
        check = same_body(body) if body else None
        routes.append(Route(method, path, answers, query=query, exact_query=True, body=check, rewrite=rewrite))
    return routes


def _split(url: str) -> tuple[str, Query]:
    split = urlsplit(url)
    return split.path, parse_qs(split.query, keep_blank_values=True)


def _as_bytes(content: str | bytes | None) -> bytes:
    return content.encode() if isinstance(content, str) else content or b""


def _recorded_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name.lower() not in _STALE_RECORDED_HEADERS]


def _path_matches(pattern: str | re.Pattern[str], path: str) -> bool:
    return path == pattern if isinstance(pattern, str) else pattern.fullmatch(path) is not None
