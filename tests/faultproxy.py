"""A fault-injecting HTTP reverse proxy for tests, in front of a real (plain-HTTP) registry.

Rules match requests by method and path regex and inject one fault per match for their first
``times`` matches (``None``: every match). Everything else passes through unchanged, except
that a ``Location`` naming the upstream is rewritten to the proxy (the Host header is passed
on, so a registry normally builds proxy URLs itself). :meth:`FaultProxy.randomize` faults a
seeded share of all requests with transient faults.

Fault kinds:

- ``status``: answer ``status`` (default 503) with a registry-style JSON error and ``headers``
  (e.g. ``{"Retry-After": "1"}`` with status 429), without forwarding.
- ``reset``: forward, send the headers and half the body, then reset the connection (TCP RST);
  a response without a body is reset before anything is sent.
- ``short``: forward, send the headers (full ``Content-Length``) and half the body, then close.
- ``stall``: wait ``seconds`` before answering, then close without an answer.
- ``delay``: wait ``seconds``, then forward as usual (a slow link or a busy registry).
- ``corrupt``: forward with the body's first byte flipped (same length).
- ``wrong-digest``: forward with a ``Docker-Content-Digest`` that is not the content's.
- ``redirect``: fetch the body from upstream (a HEAD with a GET) and answer 307 to
  :attr:`FaultProxy.blobs`, a second loopback origin that serves it and records the headers
  it received.
- ``replace``: answer ``status``, ``headers`` and ``body`` (bytes, or a callable returning an
  iterable of chunks, sent chunked) without forwarding.
- ``relocate``: forward with the answer's ``Location`` moved to the origin ``target`` (another
  proxy in front of the same registry, as an upload URL on object storage would be).
- ``sign``: forward with ``headers`` added, as a pre-signed URL carries its own credentials; a
  request that brings an ``Authorization`` of its own is refused with ``status``.
- ``drop-query``: forward without the query string (a registry ignoring ``?mount=``).
- ``gzip``: forward with the body gzip-compressed when the request accepts gzip.
- ``append-header``: forward with ``headers`` appended to the answer's headers of those names.

``larger_than`` limits a rule to requests with a longer body (``status`` 413 with it: a
request size limit).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

KINDS = (
    "status",
    "reset",
    "short",
    "stall",
    "delay",
    "corrupt",
    "wrong-digest",
    "redirect",
    "replace",
    "relocate",
    "sign",
    "drop-query",
    "gzip",
    "append-header",
)
TRANSIENT = ("status", "reset", "short", "stall")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
_CHUNK = 64 * 1024
WRONG_DIGEST = "sha256:" + hashlib.sha256(b"not the content").hexdigest()


@dataclass
class Rule:
    """Where and how to inject a fault, and how often it matched and fired."""

    kind: str
    method: str | None = None
    path: str = ".*"
    times: int | None = 1
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Callable[[], Iterable[bytes]] = b""
    seconds: float = 30.0
    target: str = ""
    larger_than: int | None = None
    injected: int = 0
    fired_at: list[float] = field(default_factory=list)
    bytes_sent: int = 0

    def matches(self, method: str, path: str, size: int) -> bool:
        """Whether this rule still applies to a request with a body of ``size`` bytes."""
        if self.times is not None and self.injected >= self.times:
            return False
        if self.larger_than is not None and size <= self.larger_than:
            return False
        return (self.method is None or self.method == method) and bool(re.search(self.path, path))


@dataclass(frozen=True)
class Seen:
    """One request the proxy received (path includes the query)."""

    method: str
    path: str
    headers: dict[str, str]
    fault: str | None
    at: float


class BlobServer:
    """The "object storage" a ``redirect`` fault sends clients to: another loopback origin."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _blob_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def put(self, data: bytes) -> str:
        """Store bytes under a fresh URL and return it."""
        token = uuid.uuid4().hex
        with self._lock:
            self._blobs[token] = data
        return f"{self.url}/blob/{token}"

    def take(self, token: str, headers: dict[str, str]) -> bytes | None:
        """Record a request and return the bytes stored under ``token``."""
        with self._lock:
            self.requests.append(headers)
            return self._blobs.get(token)

    def stop(self) -> None:
        """Shut the server down."""
        self._server.shutdown()
        self._server.server_close()


class ProxyFactory:
    """Callable starting proxies in front of registries; :meth:`stop_all` stops them."""

    def __init__(self) -> None:
        self.started: list[FaultProxy] = []

    def __call__(self, upstream: str) -> FaultProxy:
        """A new proxy in front of ``upstream`` (``http://host:port``)."""
        self.started.append(FaultProxy(upstream))
        return self.started[-1]

    def stop_all(self) -> None:
        """Stop every proxy started."""
        for proxy in self.started:
            proxy.stop()


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self.upstream_url = f"http://{parts.hostname}:{parts.port}"
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self.random_faults: dict[str, int] = {}
        self.blobs = BlobServer()
        self._rate = 0.0
        self._kinds: tuple[str, ...] = TRANSIENT
        self._stall = 1.0
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(self))
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Stop serving (stalled requests are released)."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self.blobs.stop()

    def rule(
        self,
        kind: str,
        method: str | None = None,
        path: str = ".*",
        times: int | None = 1,
        **kw: Any,
    ) -> Rule:
        """Add a rule (checked in the order added) and return it."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        rule = Rule(kind, method, path, times, **kw)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and stop random faults: a clean pass-through."""
        with self._lock:
            self.rules.clear()
            self._rate = 0.0

    def randomize(
        self, rate: float, seed: int, kinds: tuple[str, ...] = TRANSIENT, stall: float = 1.0
    ) -> None:
        """Fault ``rate`` of the requests no rule matches, with kinds drawn from ``kinds``."""
        with self._lock:
            self._rate, self._kinds, self._stall = rate, kinds, stall
            self._rng = random.Random(seed)

    @property
    def faults(self) -> int:
        """Faults injected so far, by rules and at random."""
        return sum(1 for r in self.requests if r.fault)

    def seen(self, method: str | None = None, path: str = ".*") -> list[Seen]:
        """Requests received, filtered by method and path regex."""
        with self._lock:
            requests = list(self.requests)
        return [
            r
            for r in requests
            if (method is None or r.method == method) and re.search(path, r.path)
        ]

    def _choose(self, method: str, path: str, headers: dict[str, str], size: int) -> Rule | None:
        """The fault for a request, if any; records the request."""
        with self._lock:
            chosen = next((r for r in self.rules if r.matches(method, path, size)), None)
            if chosen is None and self._rate and self._rng.random() < self._rate:
                kind = self._rng.choice(self._kinds)
                chosen = Rule(kind, seconds=self._stall, status=self._rng.choice((500, 503, 429)))
                if chosen.status == 429:
                    chosen.headers = {"Retry-After": "0"}
                self.random_faults[kind] = self.random_faults.get(kind, 0) + 1
            now = time.monotonic()
            if chosen is not None:
                chosen.injected += 1
                chosen.fired_at.append(now)
            fault = chosen.kind if chosen else None
            self.requests.append(Seen(method, path, headers, fault, now))
            return chosen


def _proxy_handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._handle()

        do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            body = self._read_body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            rule = proxy._choose(self.command, self.path, headers, len(body or b""))
            try:
                if rule is None:
                    self._forward(body)
                elif rule.kind == "status" or (rule.kind == "sign" and "authorization" in headers):
                    self._error(rule)
                elif rule.kind == "stall":
                    proxy._stopping.wait(rule.seconds)
                    self.close_connection = True
                elif rule.kind == "delay":
                    proxy._stopping.wait(rule.seconds)
                    self._forward(body)
                elif rule.kind == "replace":
                    self._replace(rule)
                elif rule.kind == "redirect":
                    self._redirect(body)
                elif rule.kind == "gzip":
                    self._compress(body)
                else:
                    self._forward(body, rule)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _read_body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = bytearray()
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(data)
            length = self.headers.get("Content-Length")
            return self.rfile.read(int(length)) if length is not None else None

        def _upstream(
            self,
            body: bytes | None,
            method: str | None = None,
            path: str | None = None,
            extra: dict[str, str] | None = None,
        ) -> tuple[http.client.HTTPConnection, Any]:
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            conn.putrequest(
                method or self.command, path or self.path, skip_host=True, skip_accept_encoding=True
            )
            extra = extra or {}
            replaced = {k.lower() for k in extra}
            kept = [(k, v) for k, v in self.headers.items() if k.lower() not in replaced]
            for key, value in [*kept, *extra.items()]:
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            return conn, conn.getresponse()

        def _forward(self, body: bytes | None, rule: Rule | None = None) -> None:
            kind = rule.kind if rule else None
            path = self.path.split("?")[0] if kind == "drop-query" else None
            extra = rule.headers if rule and kind == "sign" else None
            conn, response = self._upstream(body, path=path, extra=extra)
            try:
                target = rule.target if rule and kind == "relocate" else None
                headers = [
                    (k, self._location(v, target) if k.lower() == "location" else v)
                    for k, v in response.getheaders()
                    if k.lower() not in _HOP_BY_HOP
                ]
                if kind == "wrong-digest":
                    headers = [(k, v) for k, v in headers if k.lower() != "docker-content-digest"]
                    headers.append(("Docker-Content-Digest", WRONG_DIGEST))
                if rule and kind == "append-header":
                    headers = _appended(headers, rule.headers)
                bodyless = self.command == "HEAD" or response.status in (204, 304)
                length = response.getheader("Content-Length")
                if kind in ("reset", "short") and (bodyless or length in (None, "0")):
                    self._reset()
                    return
                chunked = not bodyless and length is None
                self.send_response_only(response.status, response.reason)
                for key, value in headers:
                    self.send_header(key, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if bodyless:
                    return
                self._relay(response, chunked, kind, int(length or 0))
            finally:
                conn.close()

        def _relay(self, response: Any, chunked: bool, kind: str | None, length: int) -> None:
            sent, first = 0, True
            while chunk := response.read(_CHUNK):
                if kind == "corrupt" and first:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                first = False
                if kind in ("reset", "short") and sent + len(chunk) >= length // 2:
                    self.wfile.write(chunk[: length // 2 - sent])
                    self.wfile.flush()
                    if kind == "reset":
                        time.sleep(0.05)  # let the partial body reach the client first
                        self._reset()
                    else:
                        self.close_connection = True
                    return
                self._write(chunk, chunked)
                sent += len(chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")

        def _write(self, chunk: bytes, chunked: bool) -> None:
            if chunked:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            else:
                self.wfile.write(chunk)

        def _reset(self) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def _location(self, value: str, target: str | None) -> str:
            if target is not None:
                parts = urlsplit(value)
                return target + value[len(f"{parts.scheme}://{parts.netloc}") :]
            return (
                proxy.url + value[len(proxy.upstream_url) :]
                if value.startswith(proxy.upstream_url)
                else value
            )

        def _error(self, rule: Rule) -> None:
            body = json.dumps(
                {"errors": [{"code": "UNAVAILABLE", "message": f"injected {rule.status}"}]}
            ).encode()
            self.send_response_only(rule.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in rule.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _replace(self, rule: Rule) -> None:
            self.send_response_only(rule.status)
            for key, value in rule.headers.items():
                self.send_header(key, value)
            if callable(rule.body):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in rule.body():
                    self._write(chunk, True)
                    rule.bytes_sent += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(rule.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(rule.body)
                rule.bytes_sent += len(rule.body)

        def _whole(self, body: bytes | None, method: str | None = None) -> tuple[Any, bytes]:
            """The upstream answer and its whole body."""
            conn, response = self._upstream(body, method)
            try:
                return response, response.read()
            finally:
                conn.close()

        def _answer(
            self, response: Any, data: bytes, extra: Iterable[tuple[str, str]] = ()
        ) -> None:
            """Send an upstream answer with ``data`` as its body and ``extra`` headers."""
            self.send_response_only(response.status, response.reason)
            for key, value in [*response.getheaders(), *extra]:
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _redirect(self, body: bytes | None) -> None:
            response, data = self._whole(body, "GET" if self.command == "HEAD" else None)
            if response.status != 200:
                self._answer(response, data)
                return
            self.send_response_only(307)
            self.send_header("Location", proxy.blobs.put(data))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _compress(self, body: bytes | None) -> None:
            response, data = self._whole(body)
            if response.status != 200 or "gzip" not in self.headers.get("Accept-Encoding", ""):
                self._answer(response, data)
                return
            self._answer(response, gzip.compress(data), [("Content-Encoding", "gzip")])

    return Handler


def _blob_handler(server: BlobServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            token = self.path.rsplit("/", 1)[-1]
            data = server.take(token, {k.lower(): v for k, v in self.headers.items()})
            self.send_response_only(200 if data is not None else 404)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data or b"")

        do_HEAD = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _appended(headers: list[tuple[str, str]], extra: dict[str, str]) -> list[tuple[str, str]]:
    """``headers`` with each of ``extra`` appended to the header of its name (or added)."""
    more = {k.lower(): v for k, v in extra.items()}
    out = [(k, f"{v}, {more.pop(k.lower())}" if k.lower() in more else v) for k, v in headers]
    return out + list(more.items())
