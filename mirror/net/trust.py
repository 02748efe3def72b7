"""The CAs registry clients trust: certifi's bundle plus ``--ca-file``.

Parsing certifi's bundle takes OpenSSL ~13 ms, during which it releases the GIL; a command that
reaches registries starts it on a thread of its own (:func:`prepare`) once its options are
parsed, while it imports the HTTP stack, so the first client does not wait for it.
"""

from __future__ import annotations

import ssl
import threading

import certifi

from mirror.errors import InputError

_lock = threading.Lock()
_loading: threading.Thread | None = None
_ready: list[ssl.SSLContext] = []


def _certifi_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


def prepare() -> None:
    """Start loading one context with certifi's CAs in the background (once)."""
    global _loading
    with _lock:
        if _loading is None and not _ready:
            _loading = threading.Thread(
                target=lambda: _ready.append(_certifi_context()), name="trust", daemon=True
            )
            _loading.start()


def _take() -> ssl.SSLContext:
    """The prepared context (each is handed out once: ``--ca-file`` changes it), or a new one."""
    global _loading
    with _lock:
        loading, _loading = _loading, None
    if loading is not None:
        loading.join()
    with _lock:
        return _ready.pop() if _ready else _certifi_context()


def trusted(ca_file: str | None) -> ssl.SSLContext:
    """The usual CAs (certifi) plus ``--ca-file``, which must hold a usable certificate."""
    tls = _take()
    if ca_file:
        try:
            tls.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or "unreadable"
            raise InputError(f"--ca-file {ca_file}: no usable CA certificate ({reason})") from None
    return tls
