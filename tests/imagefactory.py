"""Deterministic test images built in pure Python (the oracle; independent of meshlift's code).

Everything is derived from a seed: the same seed gives the same bytes and digests. Manifests are
pretty-printed JSON, so a tool that re-serialises them changes the digest and gets caught.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import re
import ssl
import tarfile
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

Fmt = Literal["oci", "docker"]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPES: dict[str, dict[str, str]] = {
    "oci": {"manifest": OCI_MANIFEST, "index": OCI_INDEX, "config": OCI_CONFIG, "layer": OCI_LAYER},
    "docker": {
        "manifest": DOCKER_MANIFEST,
        "index": DOCKER_LIST,
        "config": DOCKER_CONFIG,
        "layer": DOCKER_LAYER,
    },
}
REF_NAME = "org.opencontainers.image.ref.name"
CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_PIECE = 1 << 20


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """Content-addressed bytes; ``diff_id`` is the uncompressed digest for layers."""

    data: bytes
    digest: str
    media_type: str
    diff_id: str | None = None

    @property
    def size(self) -> int:
        """Length in bytes."""
        return len(self.data)

    def descriptor(self) -> dict[str, Any]:
        """OCI/Docker descriptor of this blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    """A single-platform image: config, layers and the manifest bytes."""

    config: Blob
    layers: tuple[Blob, ...]
    manifest: bytes
    digest: str
    media_type: str
    platform: tuple[str, ...]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config and layers."""
        return (self.config, *self.layers)

    def descriptor(self) -> dict[str, Any]:
        """Descriptor for an index, with the platform set."""
        platform = {"architecture": self.platform[1], "os": self.platform[0]}
        if len(self.platform) > 2:
            platform["variant"] = self.platform[2]
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.manifest),
            "platform": platform,
        }


@dataclass(frozen=True)
class Index:
    """An OCI image index or Docker manifest list."""

    manifest: bytes
    digest: str
    media_type: str
    images: tuple[Image, ...]

    def descriptor(self) -> dict[str, Any]:
        """Descriptor of the index itself."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest)}


Artifact = Image | Index


def _encode(obj: object) -> bytes:
    return json.dumps(obj, indent=2).encode()


@functools.lru_cache(maxsize=32)
def make_layer(seed: int | str, size: int = 1024) -> Blob:
    """A gzip'd tar holding one file of ``size`` incompressible bytes derived from ``seed``."""
    payload = hashlib.shake_256(f"meshlift-layer:{seed}".encode()).digest(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(f"layer-{hashlib.sha256(str(seed).encode()).hexdigest()[:12]}.bin")
        info.size, info.mtime, info.mode = size, 0, 0o644
        tar.addfile(info, io.BytesIO(payload))
    raw = buf.getvalue()
    data = gzip.compress(raw, compresslevel=1, mtime=0)
    return Blob(data, sha256(data), OCI_LAYER, sha256(raw))


def make_image(
    seed: int | str,
    layers: Sequence[int | Blob] = (1024,),
    base: Sequence[Blob] | None = None,
    platform: tuple[str, ...] = ("linux", "amd64"),
    fmt: Fmt = "oci",
) -> Image:
    """An image whose layers are ``base`` followed by ``layers`` (sizes or ready blobs)."""
    types = MEDIA_TYPES[fmt]
    own = [b if isinstance(b, Blob) else make_layer(f"{seed}:{i}", b) for i, b in enumerate(layers)]
    blobs = [replace(b, media_type=types["layer"]) for b in (*(base or ()), *own)]
    config: dict[str, Any] = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": platform[1],
        "os": platform[0],
        "config": {"Labels": {"org.meshlift.test.seed": str(seed)}},
        "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in blobs]},
    }
    if len(platform) > 2:
        config["variant"] = platform[2]
    config_data = _encode(config)
    config_blob = Blob(config_data, sha256(config_data), types["config"])
    manifest = _encode(
        {
            "schemaVersion": 2,
            "mediaType": types["manifest"],
            "config": config_blob.descriptor(),
            "layers": [b.descriptor() for b in blobs],
        }
    )
    return Image(config_blob, tuple(blobs), manifest, sha256(manifest), types["manifest"], platform)


HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def make_chart(tgz: bytes, name: str, version: str) -> Image:
    """A Helm chart as ``helm push`` stores it: Chart.yaml fields as config, the .tgz as layer."""
    config_data = _encode({"apiVersion": "v2", "name": name, "version": version})
    config_blob = Blob(config_data, sha256(config_data), HELM_CONFIG)
    layer = Blob(tgz, sha256(tgz), HELM_CHART_LAYER)
    media_type = MEDIA_TYPES["oci"]["manifest"]
    manifest = _encode(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config_blob.descriptor(),
            "layers": [layer.descriptor()],
        }
    )
    return Image(config_blob, (layer,), manifest, sha256(manifest), media_type, ("", ""))


def push_chart(registry: RegistryLike, tgz: bytes, repo: str, version: str) -> str:
    """Push chart ``tgz`` to ``repo:version`` as an OCI Helm chart; returns the layer digest."""
    name = repo.rsplit("/", 1)[-1]
    chart = make_chart(tgz, name, version)
    push(registry, repo, version, chart)
    return chart.layers[0].digest


def make_index(images: Sequence[Image], fmt: Fmt = "oci") -> Index:
    """An OCI index (``oci``) or Docker manifest list (``docker``) over ``images``."""
    media_type = MEDIA_TYPES[fmt]["index"]
    data = _encode(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [img.descriptor() for img in images],
        }
    )
    return Index(data, sha256(data), media_type, tuple(images))


class RegistryLike(Protocol):
    """What push needs to know about a registry (tests.registries.Registry fits)."""

    @property
    def url(self) -> str: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def ca_file(self) -> Path | None: ...


class RegistryAuth(httpx.Auth):
    """Answers a 401 challenge: Basic with the credentials, or Bearer via the token realm."""

    def __init__(self, username: str | None, password: str | None) -> None:
        self.username, self.password = username, password
        self.header: str | None = None
        self.token_requests = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send with the current header; on 401 obtain a new one from the challenge, retry once."""
        if self.header:
            request.headers["Authorization"] = self.header
        response = yield request
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        if response.status_code != 401 or scheme.lower() not in ("basic", "bearer"):
            return
        if scheme.lower() == "basic":
            if self.username is None:
                return
            self.header = basic_header(self.username, self.password or "")
        else:
            self.header = "Bearer " + self._token(dict(CHALLENGE_PARAM.findall(rest)))
        request.headers["Authorization"] = self.header
        yield request

    def _token(self, params: dict[str, str]) -> str:
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        auth = httpx.BasicAuth(self.username, self.password or "") if self.username else None
        self.token_requests += 1
        response = httpx.get(params["realm"], params=query, auth=auth, timeout=30)
        response.raise_for_status()
        body = response.json()
        return str(body.get("token") or body["access_token"])


def ssl_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """httpx ``verify=`` value trusting only ``ca_file`` (system CAs when None)."""
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else True


def registry_client(registry: RegistryLike, *, auth: bool = True) -> httpx.Client:
    """httpx client with ``base_url`` set, trusting ``ca_file`` and (optionally) authenticating."""
    return httpx.Client(
        base_url=registry.url,
        verify=ssl_verify(registry.ca_file),
        auth=RegistryAuth(registry.username, registry.password) if auth else None,
        timeout=60,
    )


def basic_header(username: str, password: str) -> str:
    """``Basic base64(user:password)``."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def push(
    registry: RegistryLike,
    repo: str,
    tag: str | None,
    artifact: Artifact,
    client: httpx.Client | None = None,
) -> str:
    """Upload blobs, child manifests by digest, then the top manifest (under ``tag`` if given).

    Returns the top manifest's digest.
    """
    own = client is None
    client = client or registry_client(registry)
    try:
        images = artifact.images if isinstance(artifact, Index) else (artifact,)
        seen: set[str] = set()
        for img in images:
            for blob in img.blobs:
                if blob.digest not in seen:
                    seen.add(blob.digest)
                    _upload_blob(client, repo, blob)
            if isinstance(artifact, Index):
                _put_manifest(client, repo, img.digest, img.manifest, img.media_type, img.digest)
        ref = tag or artifact.digest
        _put_manifest(client, repo, ref, artifact.manifest, artifact.media_type, artifact.digest)
        return artifact.digest
    finally:
        if own:
            client.close()


class _Pieces:
    """Bytes in 1 MiB pieces, as often as httpx asks (httpcore copies the unsent rest of what it
    is given after every send, which made one 1 GiB piece take minutes)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        view = memoryview(self.data)
        for n in range(0, len(view), _PIECE):
            yield bytes(view[n : n + _PIECE])


def _upload_blob(client: httpx.Client, repo: str, blob: Blob) -> None:
    if client.head(f"/v2/{repo}/blobs/{blob.digest}").status_code == 200:
        return
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    started.raise_for_status()
    location = httpx.URL(started.headers["Location"])  # keeps its _state query
    done = client.put(
        location.copy_merge_params({"digest": blob.digest}),
        content=_Pieces(blob.data),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
    )
    done.raise_for_status()


def _put_manifest(
    client: httpx.Client, repo: str, ref: str, data: bytes, media_type: str, digest: str
) -> None:
    response = client.put(
        f"/v2/{repo}/manifests/{ref}", content=data, headers={"Content-Type": media_type}
    )
    response.raise_for_status()
    got = response.headers.get("Docker-Content-Digest")
    if got != digest:
        raise AssertionError(f"registry computed {got} for manifest {digest}")


def write_oci_layout(path: Path, refs: Mapping[str, Artifact]) -> Path:
    """Write an OCI image layout with one ``index.json`` entry per ``ref.name``.

    skopeo 1.9's ``oci:`` transport only resolves names of OCI-typed entries, so use
    ``fmt="oci"`` artifacts for layouts you want skopeo to read.
    """
    blob_dir = path / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)

    def put(digest: str, data: bytes) -> None:
        (blob_dir / digest.removeprefix("sha256:")).write_bytes(data)

    entries = []
    for name, artifact in refs.items():
        images = artifact.images if isinstance(artifact, Index) else (artifact,)
        for img in images:
            put(img.digest, img.manifest)
            for blob in img.blobs:
                put(blob.digest, blob.data)
        put(artifact.digest, artifact.manifest)
        entries.append({**artifact.descriptor(), "annotations": {REF_NAME: name}})
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    (path / "index.json").write_bytes(_encode(index))
    return path
