"""Image references: parse and normalise like Docker, and the destination rule of the seed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirror.errors import InputError, InvalidReference
from mirror.image.digest import validate_digest

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRIES = {"index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
HOST_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?$"
)
TAG_PATTERN = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_MAX_NAME = 255


@dataclass(frozen=True, order=True)
class Reference:
    """A fully qualified image reference: registry host, repository path, tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def last_component(self) -> str:
        """The last path component of the repository (``spire-agent``)."""
        return self.repository.rsplit("/", 1)[-1]

    def with_digest(self, digest: str | None) -> Reference:
        """The same reference pinned to ``digest``."""
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _looks_like_domain(first: str) -> bool:
    return any(c in first for c in ".:") or first == "localhost"


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    is_domain = sep and (_looks_like_domain(first) or first.lower() != first)
    if not is_domain:
        return DEFAULT_REGISTRY, name
    return first, rest


def parse_reference(text: str) -> Reference:
    """Parse ``text`` into a normalised Reference, raising InvalidReference with the reason."""
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference(f"invalid reference {text!r}: empty or contains whitespace")
    remainder, digest = text, None
    if "@" in text:
        remainder, _, digest = text.partition("@")
        try:
            validate_digest(digest)
        except InputError as exc:
            raise InvalidReference(f"invalid reference {text!r}: {exc}") from None
    tag = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not TAG_PATTERN.fullmatch(tag):
            raise InvalidReference(f"invalid reference {text!r}: bad tag {tag!r}")
    if not remainder:
        raise InvalidReference(f"invalid reference {text!r}: empty name")
    registry, path = _split_domain(remainder)
    if not HOST_RE.match(registry):
        raise InvalidReference(f"invalid reference {text!r}: bad registry host {registry!r}")
    if _looks_like_domain(registry.lower()):
        # Lower-case only hosts that stay domains: "Foo/bar" must not become docker.io/foo/bar.
        registry = registry.lower()
    if registry in _LEGACY_REGISTRIES:
        registry = DEFAULT_REGISTRY
    if not path or not PATH_RE.match(path):
        reason = "upper case in repository" if path.lower() != path else "bad repository path"
        raise InvalidReference(f"invalid reference {text!r}: {reason} {path!r}")
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(registry) + 1 + len(path) > _MAX_NAME:
        raise InvalidReference(f"invalid reference {text!r}: name longer than {_MAX_NAME}")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)


@dataclass(frozen=True)
class RegistryServer:
    """A ``--registry-server`` value: host[:port] and an optional repository path prefix."""

    host: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{self.host}/{self.prefix}" if self.prefix else self.host


def parse_registry_server(text: str) -> RegistryServer:
    """Parse a ``--registry-server`` value; scheme, spaces or upper case are InvalidReference."""
    if "://" in text:
        raise InvalidReference(
            f"invalid registry server {text!r}: give host[:port][/path] without a scheme"
        )
    if not text or any(c.isspace() for c in text):
        raise InvalidReference(f"invalid registry server {text!r}: empty or contains whitespace")
    if text.lower() != text:
        raise InvalidReference(f"invalid registry server {text!r}: must be lower case")
    host, _, prefix = text.rstrip("/").partition("/")
    if not HOST_RE.match(host):
        raise InvalidReference(f"invalid registry server {text!r}: bad host {host!r}")
    if prefix and not PATH_RE.match(prefix):
        raise InvalidReference(f"invalid registry server {text!r}: bad path {prefix!r}")
    return RegistryServer(host, prefix)


def flatten_destination(source: Reference, server: RegistryServer) -> Reference:
    """The seed's rule: ``SERVER/<last path component>:<tag>`` (digest kept if no tag)."""
    repository = (
        f"{server.prefix}/{source.last_component}" if server.prefix else (source.last_component)
    )
    digest = None if source.tag else source.digest
    return Reference(server.host, repository, source.tag, digest)
