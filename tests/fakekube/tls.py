"""The fake API server's serving certificate: one throwaway CA per test process."""

from __future__ import annotations

import atexit
import functools
import shutil
import ssl
import tempfile
from pathlib import Path

from tests.registries import make_ca_and_cert


@functools.cache
def _files() -> tuple[Path, Path, Path]:
    directory = Path(tempfile.mkdtemp(prefix="fakekube-tls-"))
    atexit.register(shutil.rmtree, directory, True)
    return make_ca_and_cert(directory)


def ca_pem() -> bytes:
    """The CA that signed the serving certificate, for a kubeconfig."""
    return _files()[0].read_bytes()


def server_context() -> ssl.SSLContext:
    """A server-side TLS context for 127.0.0.1, HTTP/1.1 only (ALPN), as a fallback from h2."""
    _, cert, key = _files()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context
