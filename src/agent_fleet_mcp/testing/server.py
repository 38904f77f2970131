"""The scripted Messages API server: a loopback ``ThreadingHTTPServer`` on a daemon thread.

Routes: ``POST /v1/messages`` (query string ignored; SSE when ``stream: true``, else JSON) consumes one script
step; ``POST /v1/messages/count_tokens`` answers ``{"input_tokens": N}``; anything else is a 404 JSON error.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Self

from agent_fleet_mcp.jsonish import is_object
from agent_fleet_mcp.testing import wire
from agent_fleet_mcp.testing.policy import default_policy
from agent_fleet_mcp.testing.script import (
    ApiError,
    Message,
    RecordedRequest,
    Reply,
    Step,
    When,
    describe,
    resolve,
)

log = logging.getLogger(__name__)

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


class ScriptedModelServer:
    """A fake Anthropic Messages API answering from a script, then from the default policy.

    ``script`` items are steps (see ``agent_fleet_mcp.testing.script``); each ``POST /v1/messages`` consumes
    one. ``latency_s`` delays every answer; ``event_delay_s`` spaces SSE events; ``usage`` fields (e.g.
    ``{"cache_read_input_tokens": 100}``) are merged into every response's usage, under a step's ``usage``.
    """

    def __init__(
        self,
        script: Iterable[Step | When] | None = None,
        *,
        latency_s: float = 0.0,
        default_policy: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        event_delay_s: float = 0.0,
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.event_delay_s = event_delay_s
        self.usage_defaults = dict(usage or {})
        self.use_default_policy = default_policy
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: list[Step | When] = list(script or [])
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._tag = uuid.uuid4().hex[:8]
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), _Handler, owner=self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-model",
            daemon=True,
        )
        self._thread.start()
        log.debug("scripted model server listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()  # joins the handler threads
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("ScriptedModelServer is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- script ---------------------------------------------------------------------------------------------

    def add(self, step: Step | When) -> None:
        with self._lock:
            self._queue.append(step)

    def extend(self, steps: Iterable[Step | When]) -> None:
        with self._lock:
            self._queue.extend(steps)

    @property
    def remaining(self) -> list[Step | When]:
        """Unconsumed steps (persistent ``When(times=None)`` rules included)."""
        with self._lock:
            return list(self._queue)

    def assert_complete(self) -> None:
        pending = [s for s in self.remaining if not (isinstance(s, When) and s.times is None)]
        if pending:
            listed = "; ".join(describe(s) for s in pending[:5])
            raise AssertionError(f"{len(pending)} scripted step(s) not consumed: {listed}")

    def next_step(self, body: dict[str, Any]) -> Message | ApiError:
        """Consume the step for ``body``: a matching rule, else the next ordinary step, else the policy."""
        with self._lock:
            chosen: Any = None
            for i, item in enumerate(self._queue):
                if isinstance(item, When) and item.matches(body):
                    if item.times is not None:
                        item.times -= 1
                        if item.times <= 0:
                            del self._queue[i]
                    chosen = item.step if item.step is not None else default_policy
                    break
            else:
                for i, item in enumerate(self._queue):
                    if not isinstance(item, When):
                        chosen = self._queue.pop(i)
                        break
        if chosen is None:
            if not self.use_default_policy:
                return Reply("[scripted-model] the script is exhausted: no step left for this request.")
            chosen = default_policy
        return resolve(chosen, body)

    # -- recording ------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Only the ``POST /v1/messages`` requests (the ones that consume steps)."""
        return [r for r in self.requests if r.method == "POST" and r.path.rstrip("/") == MESSAGES_PATH]

    def wait_for_requests(self, n: int, timeout: float = 10.0, *, path: str | None = None) -> bool:
        """Block until at least ``n`` requests (to ``path``, if given) were received; False on timeout."""

        def count() -> int:
            return sum(1 for r in self._requests if path is None or r.path.rstrip("/") == path.rstrip("/"))

        with self._changed:
            return self._changed.wait_for(lambda: count() >= n, timeout=timeout)

    def record_request(self, request: RecordedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    # -- helpers for the handler ----------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_01{self._tag}{next(self._ids):012d}"

    def pause(self, seconds: float) -> bool:
        """Sleep unless stopping; True if the server is stopping."""
        return self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads; stop() unblocks them first
    block_on_close = True
    # listen() backlog. socketserver's default of 5 dropped the connections of 20 workers asking at once; each
    # dropped one retried its SYN 1 s later (a real API accepts them all), which a bench then charged to us.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type[_Handler], *, owner: ScriptedModelServer) -> None:
        self.owner = owner
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closing = False
        super().__init__(address, handler)

    def track(self, conn: socket.socket) -> bool:
        with self._conn_lock:
            if self._closing:
                return False
            self._conns.add(conn)
            return True

    def untrack(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._conns.discard(conn)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._conn_lock:
            self._closing = True
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "scripted-model/1"
    server: _HTTPServer  # pyright: ignore[reportIncompatibleVariableOverride]

    def setup(self) -> None:
        super().setup()
        if not self.server.track(self.connection):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("scripted-model %s " + format, self.address_string(), *args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    # -- routes ---------------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        owner = self.server.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner.record_request(RecordedRequest("POST", path, query, headers, body))
        route = path.rstrip("/")
        if route not in (MESSAGES_PATH, COUNT_TOKENS_PATH):
            return self._send_error(404, "not_found_error", f"No route for POST {path}")
        if not is_object(body):  # a client bug, not a scripted error: say so the way the API does
            return self._send_error(400, "invalid_request_error", "request body must be a JSON object")
        if route == COUNT_TOKENS_PATH:
            return self._send_json(200, {"input_tokens": wire.input_tokens(body)})
        self._answer(body)

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        self._record_simple("GET", path)
        self._send_error(404, "not_found_error", f"No route for GET {path}")

    def do_PUT(self) -> None:
        self._read_body()
        self._record_simple("PUT", self.path.partition("?")[0])
        self._send_error(404, "not_found_error", "Not found")

    do_DELETE = do_PATCH = do_PUT

    def _record_simple(self, method: str, path: str) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.owner.record_request(RecordedRequest(method, path, self.path.partition("?")[2], headers, None))

    # -- answering ------------------------------------------------------------------------------------------

    def _answer(self, body: dict[str, Any]) -> None:
        owner = self.server.owner
        step = owner.next_step(body)
        if owner.pause(owner.latency_s + step.latency_s):
            return self._send_error(529, "overloaded_error", "scripted server is shutting down")
        stream = body.get("stream") is True
        if isinstance(step, ApiError):
            if step.mid_stream and stream:
                events = wire.mid_stream_error_events(step, body, message_id=owner.new_id("msg"))
                return self._send_stream(events)
            return self._send_error(step.status, step.error_type, step.error_message, retry_after=step.retry_after)
        message = wire.build_message(
            step,
            body,
            message_id=owner.new_id("msg"),
            new_tool_id=lambda: owner.new_id("toolu"),
            usage_defaults=owner.usage_defaults,
        )
        if stream:
            self._send_stream(wire.stream_events(message))
        else:
            self._send_json(200, message)

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _request_id(self) -> str:
        return self.server.owner.new_id("req")

    def _send_json(
        self,
        status: int,
        payload: Mapping[str, Any],
        extra: Mapping[str, str] | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", request_id or self._request_id())
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, error_type: str, message: str, *, retry_after: float | None = None) -> None:
        extra: dict[str, str] = {}
        if retry_after is not None:
            extra["retry-after"] = f"{retry_after:g}"
        if status == 404:
            extra["x-should-retry"] = "false"
        request_id = self._request_id()
        body = wire.error_body(error_type, message, request_id)
        self._send_json(status, body, extra, request_id=request_id)

    def _send_stream(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        owner = self.server.owner
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", self._request_id())
        self.end_headers()
        for i, (name, data) in enumerate(events):
            if i and owner.pause(owner.event_delay_s):
                self.close_connection = True
                return
            self._chunk(wire.sse(name, data))
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def run_standalone(host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve the default policy until Ctrl-C, logging the URL to stderr (``agent-fleet scripted-model``)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    server = ScriptedModelServer(host=host, port=port)
    with server:
        log.info(
            "scripted model server on %s\n"
            "point the fleet at it (the anthropic client needs a key: any value works, this server checks none):\n"
            "  export ANTHROPIC_BASE_URL=%s ANTHROPIC_API_KEY=dummy\n"
            "Ctrl-C stops it",
            server.base_url,
            server.base_url,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            log.info("scripted model server stopped")
