"""Cosign-format signatures, attestations, SBOMs and OCI 1.1 referrers, built for tests.

Independent of meshlift's code: the formats are cosign's (a simple-signing payload as the layer,
the base64 DER ECDSA-P256/SHA-256 signature in ``dev.cosignproject.cosign/signature``) and the
OCI image spec's (a manifest with ``subject`` and ``artifactType``, and the referrers tag
schema's index tagged ``sha256-<hex>``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.imagefactory import OCI_INDEX, OCI_MANIFEST, Artifact, Blob, Image, Index, sha256

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
EMPTY = "application/vnd.oci.empty.v1+json"
SBOM_TYPE = "application/spdx+json"
SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"


@dataclass(frozen=True)
class KeyPair:
    """An ECDSA P-256 key and the path of its public half in PEM (as cosign.pub)."""

    private: ec.EllipticCurvePrivateKey
    public_pem: Path


def make_keypair(directory: Path, name: str = "cosign") -> KeyPair:
    """A fresh key pair; the public key is written to ``directory/name.pub``."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = directory / f"{name}.pub"
    path.write_bytes(pem)
    return KeyPair(key, path)


def _blob(data: bytes, media_type: str) -> Blob:
    return Blob(data, sha256(data), media_type)


def _manifest(
    layers: list[tuple[Blob, dict[str, str]]],
    artifact_type: str | None = None,
    subject: Artifact | None = None,
) -> Image:
    """An OCI manifest over ``layers`` (blob, annotations), optionally an artifact with subject."""
    config = (
        _blob(b"{}", EMPTY)
        if artifact_type
        else _blob(b'{"rootfs":{}}', "application/vnd.oci.image.config.v1+json")
    )
    doc: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config.descriptor()
    doc["layers"] = [
        {**blob.descriptor(), **({"annotations": notes} if notes else {})} for blob, notes in layers
    ]
    if subject is not None:
        doc["subject"] = (
            subject.descriptor()
            if isinstance(subject, Index)
            else {
                "mediaType": subject.media_type,
                "digest": subject.digest,
                "size": len(subject.manifest),
            }
        )
    raw = json.dumps(doc, indent=2).encode()
    blobs = tuple(blob for blob, _ in layers)
    return Image(config, blobs, raw, sha256(raw), OCI_MANIFEST, ("", ""))


def payload(digest: str, reference: str = "example.com/image") -> bytes:
    """Cosign's simple-signing payload for ``digest``."""
    doc = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(doc).encode()


def _signed_layer(
    key: KeyPair, digest: str, names: str | None, flip: bool
) -> tuple[Blob, dict[str, str]]:
    body = payload(names or digest)
    der = bytearray(key.private.sign(body, ec.ECDSA(hashes.SHA256())))
    if flip:
        der[len(der) // 2] ^= 0x01
    return _blob(body, SIMPLE_SIGNING), {
        SIGNATURE_ANNOTATION: base64.b64encode(bytes(der)).decode()
    }


def signature_manifest(
    key: KeyPair, digest: str, *, names: str | None = None, flip: bool = False
) -> Image:
    """The ``.sig`` manifest cosign pushes for ``digest`` (payload naming ``names`` if given;
    ``flip`` corrupts one byte of the signature)."""
    return _manifest([_signed_layer(key, digest, names, flip)])


def attestation_manifest(digest: str) -> Image:
    """An ``.att`` manifest: one DSSE envelope layer."""
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"digest": {"sha256": digest[7:]}}],
    }
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
        "signatures": [],
    }
    return _manifest(
        [(_blob(json.dumps(envelope).encode(), "application/vnd.dsse.envelope.v1+json"), {})]
    )


def sbom_manifest(name: str) -> Image:
    """An ``.sbom`` manifest: one SPDX document layer."""
    doc = {"spdxVersion": "SPDX-2.3", "name": name, "packages": []}
    return _manifest([(_blob(json.dumps(doc).encode(), SBOM_TYPE), {})])


def referrer(subject: Artifact, name: str, key: KeyPair | None = None) -> tuple[Image, Index]:
    """An OCI 1.1 referrer of ``subject`` (an SBOM artifact, or with ``key`` a cosign signature
    of it) and the referrers tag schema index listing it (to push as ``sha256-<hex>``)."""
    if key is None:
        doc = {"spdxVersion": "SPDX-2.3", "name": f"referrer {name}", "packages": []}
        kind, layer = SBOM_TYPE, (_blob(json.dumps(doc).encode(), SBOM_TYPE), {})
    else:
        kind, layer = SIGNATURE_ARTIFACT, _signed_layer(key, subject.digest, None, False)
    artifact = _manifest([layer], kind, subject)
    entry = {"mediaType": OCI_MANIFEST, "digest": artifact.digest, "size": len(artifact.manifest),
             "artifactType": kind}  # fmt: skip
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}, indent=2
    ).encode()
    return artifact, Index(raw, sha256(raw), OCI_INDEX, (artifact,))


def tag_of(digest: str, suffix: str = "") -> str:
    """``sha256-<hex>`` plus ``.sig``/``.att``/``.sbom``."""
    return digest.replace(":", "-") + (f".{suffix}" if suffix else "")
