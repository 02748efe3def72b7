"""Where a registry host is reached: ``--endpoint`` rewrites, TLS and plain-HTTP rules."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx

from mirror.errors import InputError
from mirror.image.reference import DEFAULT_REGISTRY, HOST_RE, PATH_RE

DOCKER_HUB_API = "https://registry-1.docker.io"


@dataclass(frozen=True)
class Endpoint:
    """Base URLs to try (in order), the repository path prefix and whether TLS is verified."""

    urls: tuple[str, ...]
    prefix: str = ""
    verify: bool = True

    def repository(self, repository: str) -> str:
        """The repository path under this endpoint."""
        return f"{self.prefix}/{repository}" if self.prefix else repository


@dataclass(frozen=True)
class HostOptions:
    """Per-run options for reaching registries: endpoints, insecure hosts, CA, auth file, pace."""

    endpoints: Mapping[str, str] = field(default_factory=dict)
    insecure: frozenset[str] = frozenset()
    ca_file: str | None = None
    auth_file: str | None = None
    max_requests_per_second: float | None = None


def parse_endpoints(values: Iterable[str]) -> dict[str, str]:
    """Parse ``--endpoint HOST=URL`` values; bad ones are an InputError."""
    endpoints: dict[str, str] = {}
    for value in values:
        host, sep, url = value.partition("=")
        host = host.strip().lower()
        if not sep or not HOST_RE.match(host):
            raise InputError(f"invalid --endpoint {value!r}: expected HOST=URL")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise InputError(f"invalid --endpoint {value!r}: bad URL") from None
        path = parsed.path.strip("/")
        port_ok = parsed.port is None or 0 < parsed.port < 65536
        if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or not port_ok:
            raise InputError(
                f"invalid --endpoint {value!r}: URL must be http(s)://HOST[:PORT][/PATH]"
            )
        if path and not PATH_RE.match(path):
            raise InputError(f"invalid --endpoint {value!r}: bad repository path {path!r}")
        endpoints["docker.io" if host == "index.docker.io" else host] = url.rstrip("/")
    return endpoints


def parse_insecure(values: Iterable[str]) -> frozenset[str]:
    """Parse ``--insecure-registry HOST[:PORT]`` values."""
    hosts = set()
    for value in values:
        host = value.strip().lower()
        if "://" in host or not HOST_RE.match(host):
            raise InputError(f"invalid --insecure-registry {value!r}: expected HOST[:PORT]")
        hosts.add(host)
    return frozenset(hosts)


def is_loopback(host: str) -> bool:
    """Whether ``host[:port]`` names this machine (127.0.0.0/8, localhost, ::1)."""
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_insecure(host: str, insecure: frozenset[str]) -> bool:
    """Whether ``host[:port]`` (or its host part) is listed with ``--insecure-registry``."""
    return host in insecure or host.rsplit(":", 1)[0] in insecure


def resolve_endpoint(host: str, options: HostOptions) -> Endpoint:
    """How to reach ``host``: its ``--endpoint`` if any, else HTTPS (plus HTTP where allowed)."""
    mapped = options.endpoints.get(host)
    if mapped is not None:
        url = httpx.URL(mapped)
        base = f"{url.scheme}://{url.netloc.decode()}"
        target = url.netloc.decode()
        verify = not is_insecure(target, options.insecure) and not is_insecure(
            host, options.insecure
        )
        return Endpoint((base,), url.path.strip("/"), verify)
    if host == DEFAULT_REGISTRY:
        return Endpoint((DOCKER_HUB_API,), "", not is_insecure(host, options.insecure))
    insecure = is_insecure(host, options.insecure)
    urls: tuple[str, ...] = (f"https://{host}",)
    if insecure or is_loopback(host):
        urls += (f"http://{host}",)
    return Endpoint(urls, "", not insecure)
