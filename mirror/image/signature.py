"""Cosign signatures: a simple-signing payload naming an image digest, checked under public keys.

Cosign stores each signature as a layer of an OCI manifest: the layer is the payload
(``{"critical": {"image": {"docker-manifest-digest": …}, …}, …}``) and its annotation
``dev.cosignproject.cosign/signature`` holds the base64 signature over the payload's bytes
(ECDSA or RSA PKCS#1 v1.5 over SHA-256, or Ed25519).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.errors import InputError, MirrorError
from mirror.image.lock import LockEntry

if TYPE_CHECKING:  # cryptography is imported when a key is read, not by every run (48 ms)
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
#: The artifact type cosign gives a signature stored as an OCI 1.1 referrer.
SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
MAX_KEY_BYTES = 64 * 1024


class SignatureError(MirrorError):
    """An image without a signature that verifies under the keys given."""


@dataclass(frozen=True)
class VerifyKey:
    """A public key given with ``--verify-key`` or ``verify-key``, named by its file."""

    path: str
    key: PublicKey = field(compare=False)  # keys do not hash; the file names the key in a run

    def verifies(self, payload: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's over ``payload``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
            else:
                self.key.verify(signature, payload)
        except (InvalidSignature, ValueError):
            return False
        return True


def read_key(path: str) -> VerifyKey:
    """Load a PEM public key (ECDSA, RSA or Ed25519); anything else is an InputError."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        with open(path, "rb") as handle:
            pem = handle.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise InputError(f"--verify-key {path}: {exc.strerror or exc}") from None
    try:
        key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"--verify-key {path}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise InputError(f"--verify-key {path}: only ECDSA, RSA and Ed25519 keys are supported")
    return VerifyKey(str(Path(path)), key)


@functools.cache
def _cached_key(path: str) -> VerifyKey:
    return read_key(path)


def entry_keys(entry: LockEntry) -> tuple[VerifyKey, ...]:
    """The key a lock entry's ``verify-key`` names (read once per path), if any."""
    return (_cached_key(entry.verify_key),) if entry.verify_key else ()


def signed_digest(payload: bytes) -> str | None:
    """The ``critical.image.docker-manifest-digest`` a simple-signing payload names, if any."""
    try:
        doc = json.loads(payload)
        digest = doc["critical"]["image"]["docker-manifest-digest"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) else None


def check_signature(payload: bytes, signature: str, digest: str, keys: Iterable[VerifyKey]) -> str:
    """Why this signature does not vouch for ``digest`` under ``keys``; "" when it does."""
    named = signed_digest(payload)
    if named is None:
        return "a signature payload is not a simple-signing payload"
    if named != digest:
        return f"a signature names {named}, not {digest}"
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return "a signature is not base64"
    if not any(key.verifies(payload, raw) for key in keys):
        return "a signature does not verify under any --verify-key"
    return ""


def require_signature(
    digest: str, signatures: Iterable[tuple[bytes, str]], keys: Iterable[VerifyKey]
) -> None:
    """Raise SignatureError unless one (payload, base64 signature) vouches for ``digest``."""
    keys = tuple(keys)
    reasons = [check_signature(payload, sig, digest, keys) for payload, sig in signatures]
    if "" in reasons:
        return
    why = "; ".join(dict.fromkeys(reasons)) if reasons else "no signature found"
    raise SignatureError(f"not verified: {why}")
