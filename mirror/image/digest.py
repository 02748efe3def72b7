"""Content digests: parsing, computing and verifying while streaming."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator

from mirror.errors import DigestMismatch, InputError

_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-f0-9]+)\Z")


def validate_digest(value: str) -> str:
    """Return ``value`` if it is a well-formed digest we can verify, else raise InputError."""
    match = _DIGEST_RE.match(value)
    if not match:
        raise InputError(f"invalid digest {value!r}: expected 'sha256:' and 64 hex digits")
    algorithm, hexpart = match.groups()
    length = _ALGORITHMS.get(algorithm)
    if length is None:
        raise InputError(f"invalid digest {value!r}: unsupported algorithm {algorithm!r}")
    if len(hexpart) != length:
        raise InputError(f"invalid digest {value!r}: {algorithm} needs {length} hex digits")
    return value


def sha256_digest(data: bytes) -> str:
    """The ``sha256:…`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class DigestVerifier:
    """Hashes a stream chunk by chunk and checks it against an expected digest and size."""

    def __init__(self, expected: str, size: int | None = None) -> None:
        self.expected = validate_digest(expected)
        algorithm = expected.split(":", 1)[0]
        self._hash = hashlib.new(algorithm)
        self._size = size
        self.received = 0

    def update(self, chunk: bytes) -> None:
        """Feed one chunk; fail early when more bytes arrive than the size promised."""
        self.received += len(chunk)
        if self._size is not None and self.received > self._size:
            raise DigestMismatch(
                f"{self.expected}: received more than the expected {self._size} bytes"
            )
        self._hash.update(chunk)

    def verify(self) -> None:
        """Raise DigestMismatch unless everything fed so far matches digest and size."""
        if self._size is not None and self.received != self._size:
            raise DigestMismatch(
                f"{self.expected}: size mismatch, expected {self._size} bytes,"
                f" received {self.received}"
            )
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if actual != self.expected:
            raise DigestMismatch(f"digest mismatch: expected {self.expected}, got {actual}")


def verified(chunks: Iterable[bytes], expected: str, size: int | None = None) -> Iterator[bytes]:
    """``chunks`` passed on as they come; DigestMismatch after the last if they do not check out.

    For writers that discard what they wrote when the stream fails (an atomic file).
    """
    verifier = DigestVerifier(expected, size)
    for chunk in chunks:
        verifier.update(chunk)
        yield chunk
    verifier.verify()


def verify_bytes(data: bytes, expected: str, size: int | None = None) -> None:
    """Check whole ``data`` against a digest (and size)."""
    verifier = DigestVerifier(expected, size)
    verifier.update(data)
    verifier.verify()
