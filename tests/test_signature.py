"""Cosign signature checks with ECDSA, RSA and Ed25519 keys, signed here with cryptography."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from mirror.errors import InputError
from mirror.image.signature import SignatureError, check_signature, read_key, require_signature
from tests.signing import payload

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
Signer = Callable[[bytes], bytes]


def _ecdsa() -> tuple[object, Signer]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))


def _rsa() -> tuple[object, Signer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _ed25519() -> tuple[object, Signer]:
    key = ed25519.Ed25519PrivateKey.generate()
    return key, key.sign


def _public_pem(key: object, path: Path) -> str:
    public = key.public_key()  # type: ignore[attr-defined]
    path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


@pytest.mark.parametrize("make", [_ecdsa, _rsa, _ed25519], ids=["ecdsa", "rsa", "ed25519"])
def test_each_key_type_verifies_its_signature_and_nothing_else(
    make: Callable[[], tuple[object, Signer]], tmp_path: Path
) -> None:
    private, sign = make()
    key = read_key(_public_pem(private, tmp_path / "key.pub"))
    body = payload(DIGEST)
    good = base64.b64encode(sign(body)).decode()
    assert check_signature(body, good, DIGEST, [key]) == ""
    assert check_signature(body, good, OTHER, [key]) == f"a signature names {DIGEST}, not {OTHER}"
    tampered = body.replace(b"cosign", b"cosigm")
    assert "does not verify" in check_signature(tampered, good, DIGEST, [key])
    assert check_signature(body, "%%%", DIGEST, [key]) == "a signature is not base64"
    stranger, _ = make()
    other = read_key(_public_pem(stranger, tmp_path / "other.pub"))
    assert "does not verify" in check_signature(body, good, DIGEST, [other])
    require_signature(DIGEST, [(body, good)], [other, key])  # any of the keys will do
    with pytest.raises(SignatureError, match="no signature found"):
        require_signature(DIGEST, [], [key])


def test_files_that_are_not_usable_public_keys_are_bad_input(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    with pytest.raises(InputError, match="not a PEM public key"):
        read_key(str(garbage))
    with pytest.raises(InputError, match="only ECDSA, RSA and Ed25519"):
        read_key(_public_pem(dsa.generate_private_key(2048), tmp_path / "dsa.pub"))
    with pytest.raises(InputError, match="No such file"):
        read_key(str(tmp_path / "missing.pem"))
