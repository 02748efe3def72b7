"""The image model: descriptors, image manifests and indexes, parsed from raw bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mirror.errors import HostileContent, InputError, ManifestError
from mirror.image import mediatypes
from mirror.image.digest import validate_digest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_INDEX_ENTRIES = 1000
MAX_LAYERS = 512
MAX_INDEX_DEPTH = 4


@dataclass(frozen=True)
class Platform:
    """``os/architecture[/variant]`` of an index entry."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


def parse_platform(text: str) -> Platform:
    """Parse ``os/arch[/variant]``; anything else is an InputError."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InputError(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT]")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def platform_matches(wanted: Platform, have: Platform | None) -> bool:
    """Whether an index entry's platform satisfies a requested one (variant optional)."""
    if have is None:
        return False
    if (wanted.os, wanted.architecture) != (have.os, have.architecture):
        return False
    return wanted.variant is None or wanted.variant == have.variant


def config_platform(raw: bytes) -> Platform | None:
    """The platform an image config names (``os``, ``architecture``, ``variant``), if any."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    os_name, architecture, variant = doc.get("os"), doc.get("architecture"), doc.get("variant")
    if not isinstance(os_name, str) or not isinstance(architecture, str):
        return None
    return Platform(os_name, architecture, variant if isinstance(variant, str) else None)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest says about one blob or child manifest."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: an image (config + layers) or an index (child manifests)."""

    media_type: str
    raw: bytes
    digest: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]

    @property
    def is_index(self) -> bool:
        """Whether this is an index / manifest list."""
        return mediatypes.is_index(self.media_type)

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config and layers of an image manifest (empty for an index)."""
        return ((self.config,) if self.config else ()) + self.layers


def _descriptor(entry: Any, where: str) -> Descriptor:
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: descriptor is not an object")
    digest, size, media_type = entry.get("digest"), entry.get("size"), entry.get("mediaType")
    if not isinstance(digest, str) or type(size) is not int or size < 0:
        raise ManifestError(f"{where}: descriptor without a valid digest and size")
    try:
        validate_digest(digest)
    except InputError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    platform = None
    plat = entry.get("platform")
    if isinstance(plat, dict) and isinstance(plat.get("os"), str):
        platform = Platform(str(plat.get("os")), str(plat.get("architecture")), plat.get("variant"))
    return Descriptor(str(media_type or ""), digest, size, platform, entry)


def parse_manifest(raw: bytes, media_type: str | None, digest: str) -> Manifest:
    """Parse raw manifest bytes, enforcing limits before and after decoding."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise HostileContent(f"{digest}: manifest of {len(raw)} bytes exceeds 4 MiB")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{digest}: manifest is not valid JSON ({exc})") from None
    except RecursionError:
        raise HostileContent(f"{digest}: manifest JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{digest}: manifest is not a JSON object")
    declared = doc.get("mediaType")
    kind = declared if isinstance(declared, str) and declared else (media_type or "")
    if kind not in mediatypes.MANIFESTS:
        if "manifests" in doc:
            kind = mediatypes.OCI_INDEX
        elif "layers" in doc:
            kind = mediatypes.OCI_MANIFEST
        else:
            raise ManifestError(f"{digest}: unsupported manifest type {kind!r}")
    if mediatypes.is_index(kind):
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{digest}: index without a manifests list")
        if len(entries) > MAX_INDEX_ENTRIES:
            raise HostileContent(f"{digest}: index with {len(entries)} entries (limit 1000)")
        children = tuple(_descriptor(e, f"{digest} manifests[{i}]") for i, e in enumerate(entries))
        return Manifest(kind, raw, digest, None, (), children)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestError(f"{digest}: image manifest without a layers list")
    if len(layers) > MAX_LAYERS:
        raise HostileContent(f"{digest}: {len(layers)} layers (limit {MAX_LAYERS})")
    config = _descriptor(doc.get("config"), f"{digest} config")
    parsed = tuple(_descriptor(e, f"{digest} layers[{i}]") for i, e in enumerate(layers))
    return Manifest(kind, raw, digest, config, parsed, ())
