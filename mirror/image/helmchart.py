"""Helm charts as OCI artifacts: the manifest ``helm push`` makes from a chart's ``.tgz``.

Helm (``pkg/registry``) pushes a chart as an OCI image manifest: the config is the chart's
``Chart.yaml`` metadata as JSON (media type ``application/vnd.cncf.helm.config.v1+json``), the
one layer is the ``.tgz`` itself, and the manifest carries ``org.opencontainers.image.*``
annotations from the metadata. Helm dates the artifact by the archive file's modification
time; a downloaded file has none worth keeping, so the time of ``Chart.yaml`` inside the
archive stands in, which makes the manifest a function of the ``.tgz`` bytes alone.
"""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mirror.errors import ChartError
from mirror.image import mediatypes
from mirror.image.digest import sha256_digest
from mirror.image.manifest import Descriptor, Manifest, parse_manifest

MAX_CHART_BYTES = 64 * 1024 * 1024
MAX_CHARTFILE_BYTES = 1024 * 1024
_BOOLEANS = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"}
#: Reads YAML as Go's YAML-to-JSON does for string fields: scalars stay as written.
# Helm's chart.Metadata fields in their Go order, with their JSON kind (all omitempty). Helm
# sanitizes "text" (whitespace becomes a space, unprintable characters go), not "str".
_METADATA = (
    ("name", "text"),
    ("home", "text"),
    ("sources", "texts"),
    ("version", "str"),
    ("description", "text"),
    ("keywords", "texts"),
    ("maintainers", "maintainers"),
    ("icon", "text"),
    ("apiVersion", "str"),
    ("condition", "text"),
    ("tags", "text"),
    ("appVersion", "text"),
    ("deprecated", "bool"),
    ("annotations", "map"),
    ("kubeVersion", "text"),
    ("dependencies", "dependencies"),
    ("type", "str"),
)
_MAINTAINER = (("name", "text"), ("email", "text"), ("url", "text"))
# chart.Dependency: name and repository are always written ("!"), the rest omitempty.
_DEPENDENCY = (
    ("name", "text!"),
    ("version", "text"),
    ("repository", "text!"),
    ("condition", "text"),
    ("tags", "texts"),
    ("enabled", "bool"),
    ("import-values", "any"),
    ("alias", "str"),
)


@dataclass(frozen=True)
class ChartArtifact:
    """A chart archive and the OCI manifest and config blob ``helm push`` would make of it."""

    archive: bytes
    config: bytes
    manifest: Manifest
    name: str
    version: str

    @property
    def digest(self) -> str:
        """The sha256 of the ``.tgz`` (what a chart repository's index lists)."""
        return chart_layer(self.manifest).digest  # type: ignore[union-attr]

    def blob(self, digest: str) -> bytes | None:
        """The config or the archive, by digest."""
        if digest == self.manifest.config.digest:  # type: ignore[union-attr]
            return self.config
        return self.archive if digest == self.digest else None


def go_json(value: object) -> bytes:
    """Compact JSON escaped as Go's ``encoding/json`` writes it (``<``, ``>``, ``&`` too)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode()


def _sanitized(text: str) -> str:
    """Helm's sanitizeString: whitespace becomes a space, unprintable characters are dropped."""
    return "".join(
        " " if c.isspace() and not "\x1c" <= c <= "\x1f" else c
        for c in text
        if c.isprintable() or c.isspace()
    )


def _field(value: object, kind: str, where: str) -> Any:
    """A Chart.yaml value as Helm's metadata holds it, or None when Go would omit it."""
    if kind in ("str", "text", "text!"):
        if isinstance(value, list | dict):
            raise ChartError(f"{where}: must be a string")
        text = "" if value is None else str(value)
        text = text if kind == "str" else _sanitized(text)
        return text if text or kind == "text!" else None
    if kind == "bool":
        return True if isinstance(value, str) and value in _BOOLEANS else None
    if kind == "texts":
        if value is None or value == "":
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ChartError(f"{where}: must be a list of strings")
        return [_sanitized(v) for v in value] or None
    if kind == "map":
        if value is None or value == "":
            return None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ChartError(f"{where}: must be a map of strings")
        return dict(sorted(value.items())) or None
    if kind == "any":
        return value or None
    items = [] if value is None or value == "" else value
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ChartError(f"{where}: must be a list of maps")
    shape = _MAINTAINER if kind == "maintainers" else _DEPENDENCY
    return [_object(item, shape, where) for item in items] or None


def _object(doc: dict[str, Any], shape: tuple[tuple[str, str], ...], where: str) -> dict[str, Any]:
    out = {}
    for key, kind in shape:
        value = _field(doc.get(key), kind, f"{where}: {key!r}")
        if value is not None:
            out[key] = value
    return out


def _chartfile(archive: bytes, where: str) -> tuple[dict[str, Any], int]:
    """The top-level ``Chart.yaml`` of a chart archive, parsed, and its modification time."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                parts = member.name.strip("/").split("/")
                if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile():
                    if member.size > MAX_CHARTFILE_BYTES:
                        raise ChartError(f"{where}: Chart.yaml larger than 1 MiB")
                    handle = tar.extractfile(member)
                    text = handle.read() if handle else b""
                    mtime = int(member.mtime)
                    break
            else:
                raise ChartError(f"{where}: not a Helm chart (no Chart.yaml at its top)")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ChartError(f"{where}: not a chart archive (.tgz): {exc}") from None
    doc = load_yaml(text, f"{where}: Chart.yaml is not valid YAML")
    if not isinstance(doc, dict):
        raise ChartError(f"{where}: Chart.yaml is not a map")
    return doc, mtime


def chart_artifact(archive: bytes, where: str) -> ChartArtifact:
    """The OCI artifact ``helm push`` makes of ``archive`` (ChartError if it is no chart)."""
    doc, mtime = _chartfile(archive, where)
    meta = _object(doc, _METADATA, f"{where}: Chart.yaml")
    name, version = meta.get("name"), meta.get("version")
    if not name or not version:
        raise ChartError(f"{where}: Chart.yaml has no name or no version")
    config = go_json(meta)
    created = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations = {
        "org.opencontainers.image.description": meta.get("description", ""),
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.url": meta.get("home", ""),
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.source": (meta.get("sources") or [""])[0],
        "org.opencontainers.image.authors": ", ".join(
            m.get("name", "") + (f" ({m['email']})" if m.get("email") else "")
            for m in meta.get("maintainers", [])
        ),
    }
    annotations = {k: v for k, v in annotations.items() if v.strip()}
    fixed = ("org.opencontainers.image.title", "org.opencontainers.image.version")
    annotations |= {k: v for k, v in meta.get("annotations", {}).items() if k not in fixed}
    layer = {
        "mediaType": mediatypes.HELM_CHART_LAYER,
        "digest": sha256_digest(archive),
        "size": len(archive),
    }
    raw = go_json(
        {
            "schemaVersion": 2,
            "config": {
                "mediaType": mediatypes.HELM_CONFIG,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [layer],
            "annotations": dict(sorted(annotations.items())),
        }
    )
    manifest = parse_manifest(raw, mediatypes.OCI_MANIFEST, sha256_digest(raw))
    return ChartArtifact(archive, config, manifest, name, version)


def chart_layer(manifest: Manifest) -> Descriptor | None:
    """The ``.tgz`` layer of a Helm chart manifest, or None if ``manifest`` is not a chart."""
    if manifest.config is None or manifest.config.media_type != mediatypes.HELM_CONFIG:
        return None
    return next((d for d in manifest.layers if d.media_type == mediatypes.HELM_CHART_LAYER), None)


def load_yaml(text: str | bytes, problem: str) -> Any:
    """YAML parsed into strings, lists and maps only (libyaml where it is built); a ChartError
    starting with ``problem`` if it is not YAML. yaml is imported here, when a chart is read."""
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
    except yaml.YAMLError as exc:
        raise ChartError(f"{problem}: {exc}") from None
