"""HTTP to registry hosts: connection pools, endpoints and TLS, auth challenges and tokens,
retries, size-limited reads and redirects, with credentials sent only to the host that asked.

The distribution API (``transports.registry``) and the chart repository reader
(``transports.chart``) both talk through :class:`RegistryClient`.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from mirror.errors import HostileContent, NotFound, RegistryError, Unauthorized
from mirror.image.reference import Reference
from mirror.net.auth import (
    Challenge,
    CredentialStore,
    TokenCache,
    basic_header,
    fetch_token,
    parse_challenge,
    realm_allowed,
)
from mirror.net.credentials import Credentials
from mirror.net.hosts import Endpoint, HostOptions, is_insecure, resolve_endpoint
from mirror.net.ratelimit import RateLimiter
from mirror.net.retry import Cancellation, RetryPolicy, is_retryable, retrying
from mirror.net.trust import trusted

_ERROR_BODY_LIMIT = 64 * 1024
_TOKEN_LIMIT = 1024 * 1024  # a token answer is a few KiB of JSON
#: Blob transfers at once by default: sync's 4 images of 4 blobs each.
DEFAULT_TRANSFERS = 16
#: The statuses of a redirect.
REDIRECTS = (301, 302, 303, 307, 308)


class RetryableStatus(RegistryError):
    """A 5xx or 429 answer, possibly with a Retry-After delay."""

    def __init__(self, message: str, status: int, retry_after: float | None) -> None:
        super().__init__(message, status, retryable=True)
        self.retry_after = retry_after


def _body_within(response: httpx.Response, limit: int, host: str, request: str) -> bytes | None:
    """The body, read under ``limit`` bytes (None past it) and the response closed; transport
    errors named as :meth:`RegistryClient.request` names them."""
    try:
        with _naming(host, request):
            return _read_limited(response, limit)
    finally:
        response.close()


def _read_limited(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None as soon as it proves longer than ``limit`` (never held whole)."""
    if int(response.headers.get("content-length") or 0) > limit:
        return None
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _registry_message(response: httpx.Response) -> str:
    """The registry's own error text from an error body (read up to 64 KiB), if it sent one."""
    try:
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= _ERROR_BODY_LIMIT:
                return ""
        errors = json.loads(body).get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors]
        return "; ".join(p for p in parts if p)
    except (ValueError, AttributeError, TypeError, RecursionError):
        return ""
    finally:
        response.close()


_DRAIN_LIMIT = 64 * 1024


def release(response: httpx.Response) -> None:
    """Read what is left of a small answer, then close it, so its connection is reused.

    Closing an unread answer (even an empty one) makes httpcore drop the connection; a body
    longer than 64 KiB is not worth reading and the connection is dropped instead.
    """
    drained = 0
    try:
        for chunk in response.iter_raw():
            drained += len(chunk)
            if drained > _DRAIN_LIMIT:
                break
    except (httpx.HTTPError, httpx.StreamError):
        pass
    finally:
        response.close()


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@contextlib.contextmanager
def _naming(host: str, request: str) -> Iterator[None]:
    """Turn transport errors into RegistryErrors that name the registry and the request."""
    try:
        yield
    except httpx.TransportError as exc:
        text = f"{host}: {request}: {type(exc).__name__}: {exc}".rstrip(": ")
        raise RegistryError(text, retryable=is_retryable(exc)) from exc


class RegistryClient:
    """HTTP to registries and hosts reached like them: endpoints, TLS, auth, retries, redirects."""

    def __init__(
        self,
        options: HostOptions,
        credentials: CredentialStore,
        policy: RetryPolicy | None = None,
        cancel: Cancellation | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        transfers: int = DEFAULT_TRANSFERS,
    ) -> None:
        self.options = options
        self.credentials = credentials
        self.policy = policy or RetryPolicy.from_env()
        self.cancel = cancel or Cancellation()
        self._tls = trusted(options.ca_file)
        self._transport = transport
        self._tokens = TokenCache()
        self._challenges: dict[str, Challenge] = {}
        self._bases: dict[str, str] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._clients: dict[tuple[str, bool], httpx.Client] = {}
        # A blob's source GET stays open while its upload needs a connection: two per transfer.
        connections = 2 * max(1, transfers)
        self._limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections
        )
        self._lock = threading.Lock()
        self._first_contacts: dict[str, threading.Lock] = {}
        self._learned: set[str] = set()
        self._pace = RateLimiter(options.max_requests_per_second)

    def close(self) -> None:
        """Close every pooled connection."""
        for client in self._clients.values():
            client.close()

    def endpoint(self, host: str) -> Endpoint:
        """The endpoint for a registry host (cached)."""
        with self._lock:
            if host not in self._endpoints:
                self._endpoints[host] = resolve_endpoint(host, self.options)
            return self._endpoints[host]

    def _client(self, host: str, verify: bool) -> httpx.Client:
        """The pooled client for ``host`` with verified or unverified TLS.

        Each registry has its own pool, big enough for every transfer of the run (a shared
        one ran dry when source GETs held the connections their uploads needed); waiting for
        a connection is still bounded by the stall timeout.

        HTTP/1.1 only: over TLS, httpx's HTTP/2 (the pure-Python h2) spent 2.5 times the CPU
        of HTTP/1.1 on a 100 MiB blob and downloaded it 2.5 times slower; a pool of
        connections serves concurrent transfers better than one multiplexed connection.
        """
        with self._lock:
            if (host, verify) not in self._clients:
                stall = self.policy.timeout
                timeout = httpx.Timeout(
                    connect=min(15.0, stall), read=stall, write=stall, pool=stall
                )
                self._clients[host, verify] = httpx.Client(
                    verify=self._tls if verify else False,
                    timeout=timeout,
                    limits=self._limits,
                    transport=self._transport,
                )
            return self._clients[host, verify]

    def _credentials(self, host: str) -> Credentials | None:
        """Credentials for ``host`` as reached: the Docker config's are looked up under the
        ``--endpoint`` actually contacted, so a mirror never receives the upstream's."""
        mapped = self.options.endpoints.get(host)
        server = httpx.URL(mapped).netloc.decode() if mapped else None
        return self.credentials.lookup(host, server)

    def _auth_header(self, host: str, scopes: tuple[str, ...]) -> dict[str, str]:
        challenge = self._challenges.get(host)
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            creds = self._credentials(host)
            return {"Authorization": basic_header(creds)} if creds else {}
        token = self._tokens.obtain(
            host, scopes, lambda: self._fetch_token(host, challenge, scopes)
        )
        return {"Authorization": f"Bearer {token}"}

    def _fetch_token(
        self, host: str, challenge: Challenge, scopes: tuple[str, ...]
    ) -> tuple[str, float]:
        realm = httpx.URL(challenge.params.get("realm", ""))
        base = httpx.URL(self._bases.get(host) or self.endpoint(host).urls[0])
        realm_host = realm.netloc.decode()
        insecure = is_insecure(realm_host, self.options.insecure)
        creds = self._credentials(host)
        if creds is not None and not realm_allowed(base, realm, insecure):
            raise Unauthorized(
                f"{host}: refusing to send credentials to token realm {realm.scheme}://{realm_host}"
                " over plain HTTP on another host (list it with --insecure-registry to allow)"
            )
        client = self._client(host, self.endpoint(host).verify)

        def send(request: httpx.Request) -> httpx.Response:
            """The token answer, refused unread past _TOKEN_LIMIT."""
            response = client.send(request, stream=True)
            body = _body_within(response, _TOKEN_LIMIT, host, f"GET {realm.copy_with(query=None)}")
            if body is None:
                raise HostileContent(
                    f"{host}: token server {realm_host} answered with more than"
                    f" {_TOKEN_LIMIT // 1024} KiB; refused"
                )
            return httpx.Response(response.status_code, content=body, request=request)

        return fetch_token(send, challenge, scopes, creds)

    def _send_any(
        self, host: str, method: str, path: str, headers: dict[str, str], **kw: Any
    ) -> httpx.Response:
        """Send to the host's first working base URL (HTTPS, then HTTP where allowed)."""
        endpoint = self.endpoint(host)
        client = self._client(host, endpoint.verify)
        known = self._bases.get(host)
        for base in (known,) if known else endpoint.urls:
            url = path if path.startswith(("http://", "https://")) else base + path
            request = client.build_request(method, url, headers=headers, **kw)
            self._pace.acquire(host)
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise RegistryError(
                        f"{host}: TLS certificate is not trusted ({exc});"
                        " pass --ca-file or list the host with --insecure-registry"
                    ) from None
                if known or base == endpoint.urls[-1]:
                    raise
                continue
            except (httpx.RemoteProtocolError, httpx.ReadError):
                if known or base == endpoint.urls[-1] or not base.startswith("https:"):
                    raise
                continue
            self._bases[host] = base
            self._pace.observe(host, response.headers)
            return response
        raise RegistryError(f"{host}: no endpoint answered")  # pragma: no cover - loop returns

    def _off_origin(self, host: str, path: str) -> bool:
        """Whether ``path`` is an absolute URL on another origin than the registry's."""
        if not path.startswith(("http://", "https://")):
            return False
        url, base = httpx.URL(path), httpx.URL(self._bases.get(host) or self.endpoint(host).urls[0])
        return (url.scheme, url.netloc) != (base.scheme, base.netloc)

    def _send_off_origin(
        self, method: str, url: httpx.URL, headers: dict[str, str], **kw: Any
    ) -> httpx.Response:
        """Send to another origin (object storage, a pre-signed URL) without the registry's
        credentials, verifying its TLS unless that host is listed as insecure."""
        origin = url.netloc.decode()
        client = self._client(origin, not is_insecure(origin, self.options.insecure))
        return client.send(client.build_request(method, url, headers=headers, **kw), stream=True)

    def request(
        self,
        method: str,
        ref: Reference,
        path: str,
        scopes: Iterable[str],
        *,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        **kw: Any,
    ) -> httpx.Response:
        """One registry request with auth, status checks and (if replayable) retries.

        The response is streamed: callers read or close it. ``path`` may be absolute (a
        Location header) or relative to the endpoint; credentials go only to the registry's
        own origin.
        """
        call = (method, ref, path, tuple(scopes), dict(headers or {}), ok)
        if callable(getattr(kw.get("content"), "__next__", None)):
            return self._request_once(*call, False, kw)  # a stream is retried by the caller
        for attempt in retrying(self.policy, f"{method} {path}", self.cancel):
            with attempt:
                return self._request_once(*call, True, kw)
        raise AssertionError("unreachable")  # pragma: no cover - retrying re-raises

    def fetch(
        self,
        ref: Reference,
        path: str,
        scopes: Iterable[str],
        *,
        headers: dict[str, str],
        limit: int,
        what: str,
    ) -> tuple[httpx.Response, bytes]:
        """GET a body of at most ``limit`` bytes; faults while reading it are retried too.

        A longer body is refused as HostileContent without being read whole.
        """
        wanted = tuple(scopes)

        def send() -> httpx.Response:
            return self._request_once("GET", ref, path, wanted, headers, (200,), True, {})

        refused = f"{ref}: {what} larger than {limit / 2**20:g} MiB refused"
        return self._read_retried(send, ref.registry, path, limit, refused)

    def fetch_followed(self, ref: Reference, path: str, *, limit: int, refused: str) -> bytes:
        """``fetch`` from a plain web server (a chart repository): no scopes, redirects
        followed as ``open`` follows them; a longer body is HostileContent(``refused``)."""

        def send() -> httpx.Response:
            try:
                return self.open(ref, path, ())
            except RegistryError as exc:
                exc.retryable = False  # open retried the request itself already
                raise

        return self._read_retried(send, ref.registry, path, limit, refused)[1]

    def _read_retried(
        self, send: Callable[[], httpx.Response], host: str, path: str, limit: int, refused: str
    ) -> tuple[httpx.Response, bytes]:
        """Send, then read at most ``limit`` bytes; faults while reading are retried too."""
        for attempt in retrying(self.policy, f"GET {path}", self.cancel):
            with attempt:
                response = send()
                body = _body_within(response, limit, host, f"GET {path}")
                if body is None:
                    raise HostileContent(refused)
                return response, body
        raise AssertionError("unreachable")  # pragma: no cover - retrying re-raises

    def open(self, ref: Reference, path: str, scopes: Iterable[str]) -> httpx.Response:
        """A streamed GET of the bytes as stored (``Accept-Encoding: identity``) that follows
        redirects (as registries do to object storage).

        ``Authorization`` and the other request headers go only to the registry's own origin;
        another origin's TLS is verified unless that host is listed as insecure.
        """
        identity = {"Accept-Encoding": "identity"}
        response = self.request("GET", ref, path, scopes, headers=identity, ok=(200, *REDIRECTS))
        hops = 0
        while response.is_redirect:
            location = response.headers.get("location", "")
            response.close()
            hops += 1
            if hops > 5 or not location:
                raise RegistryError(f"{ref}: too many redirects for {path}")
            target = response.url.join(location)
            same = (target.scheme, target.netloc) == (response.url.scheme, response.url.netloc)
            headers = dict(response.request.headers if same else identity)
            headers.pop("host", None)
            verify = (
                self.endpoint(ref.registry).verify
                if same
                else not is_insecure(target.netloc.decode(), self.options.insecure)
            )
            self.cancel.check()
            client = self._client(ref.registry, verify)
            with _naming(ref.registry, f"GET {target.copy_with(query=None)} (redirected)"):
                request = client.build_request("GET", target, headers=headers)
                response = client.send(request, stream=True)
            if response.status_code >= 400:
                _registry_message(response)
                status = response.status_code
                raise RegistryError(
                    f"{ref}: redirect target {target.host} answered HTTP {status}",
                    status,
                    retryable=status >= 500 or status == 429,
                )
        return response

    def probe(self, host: str, path: str) -> httpx.Response | None:
        """An unauthenticated ``HEAD`` of ``path`` (released), or None if ``host`` did not answer.

        An authentication challenge in the answer is kept, so the first real request already
        carries credentials.
        """
        try:
            response = self._send_any(host, "HEAD", path, {})
        except (httpx.HTTPError, RegistryError):
            return None
        release(response)
        header = response.headers.get("www-authenticate", "")
        challenge = parse_challenge(header) if response.status_code == 401 and header else None
        if challenge is not None and challenge.scheme in ("basic", "bearer"):
            self._challenges.setdefault(host, challenge)
        if response.status_code == 200 or host in self._challenges:
            self._learned.add(host)  # anonymous, or its challenge known
        return response

    @contextlib.contextmanager
    def _first_contact(self, host: str) -> Iterator[None]:
        """Until ``host``'s auth challenge is learned, its requests go one at a time; those
        that waited for the first then go out together."""
        if host in self._learned:
            yield
            return
        with self._lock:
            first = self._first_contacts.setdefault(host, threading.Lock())
        first.acquire()
        if host in self._learned:
            first.release()
            yield
            return
        try:
            yield
        finally:
            self._learned.add(host)
            first.release()

    def _request_once(
        self,
        method: str,
        ref: Reference,
        path: str,
        scopes: tuple[str, ...],
        headers: dict[str, str],
        ok: tuple[int, ...],
        replayable: bool,
        kw: dict[str, Any],
    ) -> httpx.Response:
        self.cancel.check()
        host = ref.registry
        off_origin = self._off_origin(host, path)
        with self._first_contact(host), _naming(host, f"{method} {httpx.URL(path).path}"):
            if off_origin:
                response = self._send_off_origin(method, httpx.URL(path), headers, **kw)
            else:
                response = self._send_authorized(
                    host, method, path, scopes, headers, replayable, kw
                )
            return self._answer(response, method, ref, path, ok, off_origin)

    def _send_authorized(
        self,
        host: str,
        method: str,
        path: str,
        scopes: tuple[str, ...],
        headers: dict[str, str],
        replayable: bool,
        kw: dict[str, Any],
    ) -> httpx.Response:
        """Send with the host's credentials; on a 401, learn the challenge and send once more."""
        auth = self._auth_header(host, scopes)
        response = self._send_any(host, method, path, headers | auth, **kw)
        if response.status_code != 401:
            return response
        release(response)
        header = response.headers.get("www-authenticate", "")
        challenge = parse_challenge(header) if header else None
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise Unauthorized(f"{host}: unauthorized (no usable authentication challenge)", 401)
        had = self._challenges.get(host)
        self._challenges[host] = challenge
        sent = auth.get("Authorization", "")
        if sent.startswith("Bearer "):
            self._tokens.drop(host, scopes, sent.removeprefix("Bearer "))
        if challenge.scheme == "basic" and self._credentials(host) is None:
            raise Unauthorized(f"{host}: authentication required and no credentials given", 401)
        if not replayable:
            raise RegistryError(f"{host}: authentication renewed", 401, retryable=True)
        retry_headers = headers | self._auth_header(host, scopes)
        response = self._send_any(host, method, path, retry_headers, **kw)
        if response.status_code == 401:
            message = _registry_message(response) or "authentication failed"
            hint = " (check the credentials)" if had or challenge else ""
            raise Unauthorized(f"{host}: unauthorized: {message}{hint}", 401)
        return response

    def _answer(
        self,
        response: httpx.Response,
        method: str,
        ref: Reference,
        path: str,
        ok: tuple[int, ...],
        off_origin: bool,
    ) -> httpx.Response:
        """``response`` if its status is one of ``ok``, else the error it stands for."""
        host = ref.registry
        if response.status_code in ok:
            return response
        message = _registry_message(response) or response.reason_phrase
        status = response.status_code
        text = f"{host}: {method} {ref.repository}: HTTP {status}: {message}"
        if status == 429 or status >= 500:
            raise RetryableStatus(text, status, _retry_after(response))
        if status == 404:
            raise NotFound(text, status)
        if status in (401, 403):
            elsewhere = httpx.URL(path).netloc.decode() if off_origin else ""
            hint = (
                f" ({elsewhere} is not the registry: it gets no credentials)" if elsewhere else ""
            )
            raise Unauthorized(text + hint, status)
        raise RegistryError(text, status)


def raw_chunks(response: httpx.Response, host: str, request: str) -> Iterator[bytes]:
    """A streamed body as received, its transport errors named as :meth:`RegistryClient.request`
    names them."""
    with _naming(host, request):
        yield from response.iter_raw()  # as received (64 KiB reads): no re-chunking copies
