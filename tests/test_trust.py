"""The CAs a registry client trusts: certifi's, prepared ahead, plus its own ``--ca-file``."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi

from mirror.net import trust
from tests.registries import make_ca_and_cert


def subjects(context: ssl.SSLContext) -> set[str]:
    """The subjects of the CA certificates a context holds."""
    return {str(cert["subject"]) for cert in context.get_ca_certs()}


def test_a_ca_file_is_trusted_by_its_own_client_only(tmp_path: Path) -> None:
    ca, _, _ = make_ca_and_cert(tmp_path)
    trust.prepare()
    mine = trust.trusted(str(ca))
    trust.prepare()
    other = trust.trusted(None)
    plain = trust.trusted(None)
    assert len(subjects(mine) - subjects(other)) == 1
    assert subjects(other) == subjects(plain)
    assert len(plain.get_ca_certs()) == certifi.contents().count("BEGIN CERTIFICATE")
