"""Registry authentication: where credentials come from, and the Basic/Bearer challenge dance."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from mirror.errors import InputError, RegistryError, Unauthorized
from mirror.net.credentials import Credentials

# One item of a WWW-Authenticate header: a comma, a parameter (quoted or not) or a bare token
# (a scheme, or a token68 right after one).
_ITEM_RE = re.compile(r'(,)|(\w[\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))|([^\s,]+)')
_PREFERRED = {"bearer": 0, "basic": 1}
_TOKEN_MARGIN = 10.0
_DEFAULT_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: its scheme and parameters."""

    scheme: str
    params: Mapping[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge of a ``WWW-Authenticate`` header, each with its own parameters.

    ``Bearer realm="…",service="…", Basic realm="…"`` is two challenges: a bare token after a
    comma (or first) starts a new one.
    """
    found: list[tuple[str, dict[str, str]]] = []
    after_comma = True
    for m in _ITEM_RE.finditer(header):
        comma, name, quoted, plain, bare = m.groups()
        if bare is not None and (after_comma or not found):
            found.append((bare.lower(), {}))
        elif name is not None and found:
            found[-1][1][name.lower()] = quoted if quoted is not None else plain
        after_comma = comma is not None
    return [Challenge(scheme, params) for scheme, params in found]


def parse_challenge(header: str) -> Challenge:
    """The challenge to answer in a ``WWW-Authenticate`` header: Bearer, else Basic, else the
    first (an empty scheme if there is none)."""
    challenges = parse_challenges(header) or [Challenge("", {})]
    return min(challenges, key=lambda c: _PREFERRED.get(c.scheme, len(_PREFERRED)))


def basic_header(credentials: Credentials) -> str:
    """The ``Authorization`` value for HTTP Basic."""
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class CredentialStore:
    """Credentials per registry host: explicit ones first, then the Docker config and helpers."""

    def __init__(
        self, explicit: Mapping[str, Credentials] | None = None, auth_file: str | None = None
    ) -> None:
        self._explicit = dict(explicit or {})
        self._auth_file = auth_file
        self._config: dict[str, object] | None = None
        self._cache: dict[str, Credentials | None] = {}
        self._lock = threading.Lock()

    def lookup(self, host: str, server: str | None = None) -> Credentials | None:
        """Credentials for ``host``, or None for anonymous access.

        Explicit ones are for ``host`` wherever it is reached; the Docker config's are looked
        up for ``server``, the host actually contacted (an ``--endpoint``), if given.
        """
        if host in self._explicit:
            return self._explicit[host]
        server = server or host
        with self._lock:
            if server not in self._cache:
                self._cache[server] = self._from_docker_config(server)
            return self._cache[server]

    def _from_docker_config(self, host: str) -> Credentials | None:
        import docker.auth
        import docker.errors

        try:
            if self._config is None:
                self._config = docker.auth.load_config(config_path=self._auth_file)
            entry = docker.auth.resolve_authconfig(self._config, registry=host)
        except docker.errors.DockerException as exc:
            raise InputError(f"cannot read registry credentials for {host}: {exc}") from None
        if not entry:
            return None
        username = entry.get("username") or entry.get("Username")
        password = entry.get("password") or entry.get("Password")
        if username and password:
            return Credentials(str(username), str(password))
        return None


class TokenCache:
    """Bearer tokens per (host, scopes), refreshed on expiry or after a 401."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}
        self._fetching: dict[tuple[str, tuple[str, ...]], threading.Lock] = {}
        self._lock = threading.Lock()

    def _valid(self, host: str, scopes: tuple[str, ...]) -> str | None:
        """A token still valid for this host and scope set, if cached."""
        with self._lock:
            item = self._tokens.get((host, scopes))
        if item and item[1] > time.monotonic():
            return item[0]
        return None

    def obtain(
        self, host: str, scopes: tuple[str, ...], fetch: Callable[[], tuple[str, float]]
    ) -> str:
        """The cached token, else the one ``fetch`` returns (token, lifetime): threads that
        need the same token at once wait for one fetch instead of each asking the server."""
        token = self._valid(host, scopes)
        if token is not None:
            return token
        with self._lock:
            fetching = self._fetching.setdefault((host, scopes), threading.Lock())
        with fetching:
            token = self._valid(host, scopes)
            if token is None:
                token, lifetime = fetch()
                expiry = time.monotonic() + max(lifetime - _TOKEN_MARGIN, lifetime / 2)
                with self._lock:
                    self._tokens[(host, scopes)] = (token, expiry)
            return token

    def drop(self, host: str, scopes: tuple[str, ...], refused: str) -> None:
        """Forget a token the registry refused (not one fetched since in its place)."""
        with self._lock:
            item = self._tokens.get((host, scopes))
            if item and item[0] == refused:
                del self._tokens[(host, scopes)]


def realm_allowed(registry_url: httpx.URL, realm: httpx.URL, insecure: bool) -> bool:
    """Send credentials to a token realm only on the registry's host, over HTTPS, or if allowed."""
    return realm.host == registry_url.host or realm.scheme == "https" or insecure


def fetch_token(
    send: Callable[[httpx.Request], httpx.Response],
    challenge: Challenge,
    scopes: tuple[str, ...],
    credentials: Credentials | None,
) -> tuple[str, float]:
    """Ask the challenge's realm for a token covering ``scopes``; return it and its lifetime."""
    realm = challenge.params.get("realm")
    if not realm:
        raise RegistryError("registry sent a Bearer challenge without a realm")
    params: list[tuple[str, str | int | float | bool | None]] = []
    if challenge.params.get("service"):
        params.append(("service", challenge.params["service"]))
    params.extend(("scope", scope) for scope in scopes)
    headers = {"Authorization": basic_header(credentials)} if credentials else {}
    request = httpx.Request("GET", realm, params=params, headers=headers)
    response = send(request)
    if response.status_code in (401, 403):
        raise Unauthorized(
            f"unauthorized: token server {httpx.URL(realm).host} refused the credentials"
            f" (HTTP {response.status_code})",
            response.status_code,
        )
    if response.status_code != 200:
        raise RegistryError(
            f"token server {httpx.URL(realm).host} answered HTTP {response.status_code}",
            response.status_code,
            retryable=response.status_code >= 500 or response.status_code == 429,
        )
    try:
        body = response.json()
    except (ValueError, RecursionError):
        raise RegistryError("token server answered with something that is not JSON") from None
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryError("token server answered without a token")
    try:
        lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
    except (TypeError, ValueError):  # a bad lifetime is the spec's default, not a failure
        lifetime = _DEFAULT_TOKEN_LIFETIME
    return token, lifetime
