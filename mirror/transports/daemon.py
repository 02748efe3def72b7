"""The Docker daemon transport, through the Docker SDK (imported only when a daemon is used):
the client, the daemon's images as an image source (``docker save`` output read through the
docker-archive format), and what the daemon needs to pull and push for us (auth, names, errors).

The copies that make the daemon move the bytes itself (``sync --engine docker``, ``load
--to-docker``) are operations, in :mod:`mirror.daemonsync`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mirror.errors import (
    DaemonUnavailable,
    MirrorError,
    NotFound,
    RegistryError,
    Unauthorized,
)
from mirror.image.manifest import Descriptor, Manifest, Platform
from mirror.image.reference import Reference
from mirror.net.auth import CredentialStore
from mirror.net.hosts import HostOptions, resolve_endpoint
from mirror.transports.dockerarchive import SavedImage

TIMEOUT = 300
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_TRANSIENT = re.compile(
    r"\b(429|5\d\d)\b|toomanyrequests|too many requests|connection (refused|reset)|timeout"
    r"|timed out|\bEOF\b|temporar|unavailable|bad gateway",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"manifest unknown|not found", re.IGNORECASE)
_DENIED = re.compile(r"unauthorized|authentication required|denied|forbidden", re.IGNORECASE)


def daemon_error(subject: str, message: str) -> MirrorError:
    """Our error for a failure the daemon reported; transient ones are retryable."""
    text = f"{subject}: {message.strip()}"
    if _DENIED.search(message):
        return Unauthorized(text)
    if _NOT_FOUND.search(message):
        return NotFound(text)
    return RegistryError(text, retryable=bool(_TRANSIENT.search(message)))


@contextlib.contextmanager
def reported(subject: str) -> Iterator[None]:
    """Turn the SDK's API errors into ours (with the daemon's own message)."""
    import docker.errors

    try:
        yield
    except docker.errors.APIError as exc:
        raise daemon_error(subject, str(exc.explanation or exc)) from None


def _root_cause(exc: BaseException) -> str:
    """The innermost OS error of a connection failure (``Connection refused``), else the text."""
    pending: list[object] = [exc]
    while pending:
        item = pending.pop(0)
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
        if isinstance(item, BaseException):
            pending += [*item.args, item.__cause__, item.__context__]
    return str(exc)


class Daemon:
    """A connection to a Docker daemon (the SDK's low-level client) and its platform."""

    def __init__(self, api: Any, address: str, platform: Platform) -> None:
        self.api = api
        self.address = address
        self.platform = platform

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.close()

    def image_id(self, name: str) -> str | None:
        """The ID of the local image ``name`` (tag, digest reference or ID), or None."""
        import docker.errors

        try:
            return str(self.api.inspect_image(name)["Id"])
        except docker.errors.ImageNotFound:
            return None

    def remove(self, name: str) -> str | None:
        """Remove the local name (the image too, once nothing names it); a problem, or None."""
        import docker.errors

        try:
            self.api.remove_image(name)
        except docker.errors.APIError as exc:
            return f"could not remove {name}: {exc.explanation or exc}"
        return None


def connect(docker_host: str | None, workers: int) -> Daemon:
    """Connect to ``docker_host`` (default ``DOCKER_HOST``, else the local socket).

    A daemon that is not running, not reachable or refusing is :class:`DaemonUnavailable`.
    """
    import docker
    import docker.errors
    import requests

    environment = dict(os.environ)
    if docker_host:
        environment["DOCKER_HOST"] = docker_host
    address = environment.get("DOCKER_HOST") or DEFAULT_SOCKET
    try:
        client = docker.from_env(
            environment=environment, version="auto", timeout=TIMEOUT, max_pool_size=workers + 4
        )
        version = client.api.version()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise DaemonUnavailable(
            f"cannot use the Docker daemon at {address}: {_root_cause(exc)}"
            " (is it running? set --docker-host or DOCKER_HOST)"
        ) from None
    platform = Platform(str(version.get("Os", "linux")), str(version.get("Arch", "amd64")))
    return Daemon(client.api, address, platform)


def pull_server(source: Reference, hosts: HostOptions) -> str:
    """The host the daemon contacts to pull ``source``: its ``--endpoint``'s, else its own."""
    if source.registry not in hosts.endpoints:
        return source.registry
    return resolve_endpoint(source.registry, hosts).urls[0].split("://", 1)[1]


def pull_repository(source: Reference, hosts: HostOptions) -> str:
    """Where the daemon pulls ``source`` from: its ``--endpoint`` mapping applied."""
    if source.registry not in hosts.endpoints:
        return source.name
    endpoint = resolve_endpoint(source.registry, hosts)
    return f"{pull_server(source, hosts)}/{endpoint.repository(source.repository)}"


def auth_config(store: CredentialStore, host: str, server: str | None = None) -> dict[str, str]:
    """The ``X-Registry-Auth`` body for ``host`` reached at ``server`` (an ``--endpoint``): the
    Docker config's entry for the server actually contacted, so a mirror never receives the
    upstream's password. Empty means anonymous (never the SDK's own config lookup). The daemon
    uses it for this request only and writes it nowhere."""
    credentials = store.lookup(host, server)
    if credentials is None:
        return {}
    return {
        "username": credentials.username,
        "password": credentials.password,
        "serveraddress": server or host,
    }


def check_message(message: dict[str, Any], subject: str) -> None:
    """Raise the error a progress stream reported, if this message is one."""
    if "error" in message or "errorDetail" in message:
        detail = message.get("errorDetail") or {}
        raise daemon_error(subject, str(detail.get("message") or message.get("error")))


class DaemonSource:
    """Images of the local daemon as an image source for the one copy algorithm.

    Each image is ``docker save``d once into a temporary file (in ``TMPDIR``, removed on
    close) and read from there as a :class:`~mirror.transports.dockerarchive.SavedImage`.
    """

    name = "docker"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._dir = Path(tempfile.mkdtemp(prefix="meshlift-docker-save-"))
        self._saved: dict[Reference, SavedImage | None] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> DaemonSource:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def _image(self, ref: Reference) -> SavedImage | None:
        with self._lock:
            if ref in self._saved:
                return self._saved[ref]
        import docker.errors

        handle, name = tempfile.mkstemp(suffix=".tar", dir=self._dir)  # one file per save
        os.close(handle)
        path = Path(name)

        saved: SavedImage | None = None
        try:
            with reported(f"{ref}: docker save"), path.open("wb") as out:
                for chunk in self.daemon.api.get_image(str(ref), chunk_size=1024 * 1024):
                    out.write(chunk)
            saved = SavedImage(path)
        except docker.errors.ImageNotFound:
            pass
        with self._lock:
            self._saved[ref] = saved
        return saved

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The manifest built for the daemon's image ``ref``, or None if the daemon has none."""
        saved = self._image(ref)
        return saved.head_manifest(ref) if saved else None

    def get_manifest(self, ref: Reference, digest: str | None) -> Manifest:
        """The manifest built for the daemon's image ``ref``."""
        saved = self._image(ref)
        if saved is None:
            raise NotFound(f"{ref}: not in the Docker daemon at {self.daemon.address}")
        return saved.get_manifest(ref, digest)

    def open_blob(
        self, ref: Reference, desc: Descriptor
    ) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        """Stream the config or a layer of the saved image."""
        saved = self._image(ref)
        if saved is None:
            raise NotFound(f"{ref}: not in the Docker daemon at {self.daemon.address}")
        return saved.open_blob(ref, desc)
