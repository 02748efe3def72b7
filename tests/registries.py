"""Real distribution 2.8 registries (``docker-registry serve``) for tests.

Kinds: ``anon`` (anonymous HTTP), ``basic`` (htpasswd), ``tls`` (anonymous HTTPS signed by a
throw-away CA) and ``token`` (JWT token auth against a :class:`TokenIssuer`). Any kind takes
``tls=True``. Each registry writes its access log (stdout, Apache combined format) to
``access.log`` and its application log (stderr, logrus text) to ``registry.log``.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from tests.imagefactory import ssl_verify
from tests.tokenissuer import TokenIssuer, User

KINDS = ("anon", "basic", "tls", "token")
SYNC_PARAM = "_harness_sync"
# 127.0.0.1 - - [27/Nov/2026:20:58:17 +0000] "HEAD /v2/foo/manifests/latest HTTP/1.1" 404 96 "" "ua"
ACCESS_RE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<uri>\S+) [^"]*" (?P<status>\d{3}) \S+'
    r' "[^"]*" "(?P<ua>[^"]*)"'
)


@dataclass(frozen=True)
class Request:
    """One access-log entry; ``path`` and ``query`` are raw (still percent-encoded)."""

    method: str
    path: str
    query: str
    status: int
    user_agent: str = ""

    @property
    def params(self) -> dict[str, str]:
        """Decoded query parameters (last value wins)."""
        return dict(parse_qsl(self.query))


@dataclass
class Registry:
    """A running registry process and what clients need to reach it."""

    kind: str
    host: str
    url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    issuer: TokenIssuer | None = None

    @property
    def access_log(self) -> Path:
        """Access log file (the registry's stdout)."""
        return self.workdir / "access.log"

    @property
    def log_file(self) -> Path:
        """Application log file (the registry's stderr)."""
        return self.workdir / "registry.log"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx ``verify=`` value for this registry."""
        return ssl_verify(self.ca_file)

    @property
    def cert_dir(self) -> Path | None:
        """Directory holding only ``ca.crt`` (for ``skopeo --cert-dir``)."""
        return self.ca_file.parent if self.ca_file else None

    def ref(self, repo: str, ref: str = "latest") -> str:
        """``HOST/REPO:TAG`` or ``HOST/REPO@DIGEST``."""
        sep = "@" if ":" in ref else ":"
        return f"{self.host}/{repo}{sep}{ref}"

    def requests(self, since: int = 0) -> list[Request]:
        """Requests logged so far (after a round trip that flushes the log), from ``since``."""
        if self.process.poll() is None:
            self._sync()
        return self._parse()[since:]

    def mark(self) -> int:
        """Position to pass as ``since`` to only see later requests."""
        return len(self.requests())

    def count(
        self, method: str | None = None, path_contains: str | None = None, since: int = 0
    ) -> int:
        """Number of logged requests matching ``method`` and ``path_contains``."""
        return sum(
            1
            for r in self.requests(since)
            if (method is None or r.method == method)
            and (path_contains is None or path_contains in r.path)
        )

    def stop(self) -> None:
        """Terminate the process (kill after 10 s) and the token issuer."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.issuer:
            self.issuer.stop()

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of both logs, for failure reports."""
        parts = []
        for path in (self.log_file, self.access_log):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def _parse(self) -> list[Request]:
        out = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            m = ACCESS_RE.match(line)
            if not m:
                continue
            path, _, query = m["uri"].partition("?")
            if query.startswith(SYNC_PARAM):
                continue
            out.append(Request(m["method"], path, query, int(m["status"]), m["ua"]))
        return out

    def _sync(self) -> None:
        """Make a marker request and wait for its log line, so earlier lines are written too."""
        token = uuid.uuid4().hex
        _probe(self, token)
        deadline = time.monotonic() + 5
        while token not in self.access_log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"access log of {self.host} did not show sync request")
            time.sleep(0.01)


def _probe(reg: Registry, token: str) -> int:
    with httpx.Client(verify=reg.verify, timeout=5) as client:
        return client.get(f"{reg.url}/v2/", params={SYNC_PARAM: token}).status_code


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_repo(prefix: str = "test", name: str = "repo") -> str:
    """A repository name no other test uses: ``PREFIX/NAME-<8 hex>`` (lower-cased, sanitised)."""
    slug = re.sub(r"[^a-z0-9]+", "-", prefix.lower()).strip("-")[:40] or "test"
    return f"{slug}/{name}-{uuid.uuid4().hex[:8]}"


def make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """Create a CA and a server cert for IP:127.0.0.1/DNS:localhost; return (ca, cert, key)."""
    (directory / "ca").mkdir(parents=True)
    ca, ca_key = directory / "ca" / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for cmd in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=meshlift test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    return ca, cert, key


def start_registry(
    kind: str,
    workdir: Path,
    *,
    tls: bool | None = None,
    username: str = "user",
    password: str = "password",
    users: Mapping[str | None, User] | None = None,
    service: str = "meshlift-registry",
    issuer_name: str = "meshlift-test-issuer",
    token_lifetime: int = 300,
    token_exp_skew: int = 0,
    timeout: float = 20,
) -> Registry:
    """Start a registry of ``kind`` storing everything under ``workdir``; wait until it serves.

    ``token``: ``users`` defaults to ``{username: User(password, {"*": ["*"]})}``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}")
    tls = kind == "tls" if tls is None else tls
    workdir.mkdir(parents=True, exist_ok=True)
    http: dict[str, object] = {"secret": secrets.token_hex(16)}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    ca_file = issuer = None
    if tls:
        ca_file, cert, key = make_ca_and_cert(workdir / "tls")
        http["tls"] = {"certificate": str(cert), "key": str(key)}
    if kind == "basic":
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", username, password], check=True, capture_output=True, text=True
        ).stdout
        (workdir / "htpasswd").write_text(htpasswd)
        config["auth"] = {"htpasswd": {"realm": "meshlift", "path": str(workdir / "htpasswd")}}
    elif kind == "token":
        users = users if users is not None else {username: User(password, {"*": ["*"]})}
        issuer = TokenIssuer(
            users,
            service=service,
            issuer=issuer_name,
            lifetime=token_lifetime,
            exp_skew=token_exp_skew,
            workdir=workdir,
        )
        config["auth"] = {
            "token": {
                "realm": issuer.realm,
                "service": service,
                "issuer": issuer_name,
                "rootcertbundle": str(issuer.cert_file),
            }
        }
    authed = kind in ("basic", "token")
    for _attempt in range(3):
        port = free_port()
        http["addr"] = f"127.0.0.1:{port}"
        (workdir / "config.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
        with open(workdir / "access.log", "ab") as out, open(workdir / "registry.log", "ab") as err:
            proc = subprocess.Popen(
                # pdeathsig: the registry dies with pytest even if pytest is killed
                ["setpriv", "--pdeathsig", "TERM", "docker-registry", "serve", "config.yml"],
                cwd=workdir, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        reg = Registry(
            kind=kind,
            host=f"127.0.0.1:{port}",
            url=f"{'https' if tls else 'http'}://127.0.0.1:{port}",
            workdir=workdir,
            process=proc,
            username=username if authed else None,
            password=password if authed else None,
            ca_file=ca_file,
            issuer=issuer,
        )
        if _wait_ready(reg, timeout):
            return reg
        reg.process.wait()
        if "address already in use" not in reg.log_file.read_text(errors="replace"):
            break
    if issuer:
        issuer.stop()
    raise RuntimeError(f"registry {kind} did not start:\n{reg.log_tail()}")


def _wait_ready(reg: Registry, timeout: float) -> bool:
    """Poll ``GET /v2/`` until it answers 200/401; False if the process died or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and reg.process.poll() is None:
        try:
            if _probe(reg, "ready") in (200, 401):
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    if reg.process.poll() is None:
        reg.process.kill()
    return False


class RegistryFactory:
    """Callable starting fresh registries under ``root``; :meth:`stop_all` stops them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[Registry] = []

    def __call__(self, kind: str, **opts: Any) -> Registry:
        """Start a registry (see :func:`start_registry` for ``opts``)."""
        reg = start_registry(kind, self.root / f"{kind}-{len(self.created)}", **opts)
        self.created.append(reg)
        return reg

    def stop_all(self) -> None:
        """Stop every registry this factory started."""
        for reg in self.created:
            reg.stop()


def registries_in(values: Iterable[object]) -> list[Registry]:
    """Registries among fixture values (directly or made by a :class:`RegistryFactory`)."""
    found: list[Registry] = []
    for value in values:
        if isinstance(value, Registry):
            found.append(value)
        elif isinstance(value, RegistryFactory):
            found.extend(value.created)
    return found
