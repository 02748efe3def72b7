"""A tiny registry token server (Docker token auth spec) for tests.

``GET /token?service=S&scope=repository:NAME:pull,push&scope=...`` with optional Basic auth
returns an RS256 JWT whose ``x5c`` header carries the issuer's self-signed certificate, which the
registry trusts through ``auth.token.rootcertbundle``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ALL_ACTIONS = ("pull", "push", "delete")


@dataclass
class User:
    """A token-server account; ``grants`` maps an fnmatch glob to the actions allowed on it.

    For ``repository`` scopes the glob is matched against the repository name, for any other
    type against ``"TYPE:NAME"`` (e.g. ``"registry:catalog"``). ``"*"`` allows every action.
    """

    password: str | None
    grants: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenRequest:
    """One request recorded by the issuer."""

    user: str | None
    service: str | None
    scopes: tuple[str, ...]
    access: tuple[dict[str, Any], ...]
    status: int


def parse_scope(scope: str) -> tuple[str, str, list[str]]:
    """Split ``type:name:actions`` (the name may itself contain ``:``, e.g. a port)."""
    typ, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return typ, name, [a for a in actions.split(",") if a]


class TokenIssuer:
    """JWT token server running in a background thread on 127.0.0.1."""

    def __init__(
        self,
        users: Mapping[str | None, User] | None = None,
        *,
        service: str = "meshlift-registry",
        issuer: str = "meshlift-test-issuer",
        lifetime: int = 300,
        exp_skew: int = 0,
        workdir: Path,
    ) -> None:
        self.users: dict[str | None, User] = dict(users or {})
        self.service = service
        self.issuer = issuer
        self.lifetime = lifetime
        # distribution 2.8 accepts tokens until 60 s after exp; exp_skew=60 cancels that, so the
        # registry rejects a token ``lifetime`` seconds after issue (clients see expires_in only).
        self.exp_skew = exp_skew
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert = _self_signed(self._key, issuer)
        self.cert_file = workdir / "token-signing.crt"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.realm = f"{self.url}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Shut the HTTP server down."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def grant(self, user: str | None, scopes: Sequence[str]) -> list[dict[str, Any]]:
        """Access entries ``user`` gets for ``scopes``: asked actions ∩ allowed actions."""
        account = self.users.get(user)
        access: list[dict[str, Any]] = []
        for scope in scopes:
            typ, name, asked = parse_scope(scope)
            subject = name if typ == "repository" else f"{typ}:{name}"
            allowed: set[str] = set()
            for pattern, actions in (account.grants if account else {}).items():
                if fnmatch.fnmatchcase(subject, pattern):
                    allowed.update(actions)
            given = [a for a in asked if "*" in allowed or a in allowed]
            if given:
                access.append({"type": typ, "name": name, "actions": given})
        return access

    def issue(self, user: str | None, scopes: Sequence[str], service: str | None = None) -> str:
        """Sign a token for ``user`` (no password check) limited to ``scopes``."""
        return self.sign(user, self.grant(user, scopes), service)

    def sign(
        self,
        user: str | None,
        access: list[dict[str, Any]],
        service: str | None = None,
        expires_in: int | None = None,
    ) -> str:
        """Sign a token carrying exactly ``access`` (lets tests forge any grant or expiry)."""
        now = int(dt.datetime.now(dt.UTC).timestamp())
        lifetime = self.lifetime if expires_in is None else expires_in
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": service or self.service,  # distribution 2.8 wants a string, not a list
            "exp": now + lifetime - self.exp_skew,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": [self._x5c]})

    def requested_scopes(self) -> list[str]:
        """Every scope asked for so far, in order."""
        return [s for r in self.requests for s in r.scopes]

    def _record(self, req: TokenRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _authenticate(self, header: str | None) -> tuple[bool, str | None]:
        """Return (ok, username) for an optional ``Authorization: Basic`` header."""
        if not header:
            return True, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            name, _, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False, None
        account = self.users.get(name)
        return account is not None and account.password == password, name


def _self_signed(key: rsa.RSAPrivateKey, cn: str) -> x509.Certificate:
    """A self-signed certificate for the token signing key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _make_handler(issuer: TokenIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self._reply(404, {"error": "not found"})
                return
            query = parse_qs(url.query)
            service = query.get("service", [None])[0]
            scopes = tuple(s for raw in query.get("scope", []) for s in raw.split(" ") if s)
            ok, user = issuer._authenticate(self.headers.get("Authorization"))
            if not ok:
                issuer._record(TokenRequest(user, service, scopes, (), 401))
                self._reply(401, {"error": "invalid credentials"})
                return
            access = issuer.grant(user, scopes)
            token = issuer.sign(user, access, service)
            issuer._record(TokenRequest(user, service, scopes, tuple(access), 200))
            issued = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            body = {
                "token": token,
                "access_token": token,
                "expires_in": issuer.lifetime,
                "issued_at": issued,
            }
            self._reply(200, body)

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
