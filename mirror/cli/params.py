"""What the parsed options stand for: the lock's entries, hosts, platforms, the destination."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mirror.cli.options import credentials_from

if TYPE_CHECKING:
    from mirror.image.lock import ChartEntry, LockEntry
    from mirror.image.manifest import Platform
    from mirror.net.hosts import HostOptions
    from mirror.run import PrivateRegistry


def lock_entries(
    lock_path: str | None, environment: str
) -> tuple[tuple[LockEntry, ...], tuple[ChartEntry, ...]]:
    """The lock's images and charts needed on ``environment``."""
    from mirror.image.lock import load_lock, resolve_lock_path

    lock = load_lock(resolve_lock_path(lock_path))
    return lock.select(environment), lock.select_charts(environment)


def hosts_from(params: dict[str, Any]) -> HostOptions:
    """The registry-reaching options (source options) of a command."""
    from mirror.errors import InputError
    from mirror.net.hosts import HostOptions, parse_endpoints, parse_insecure

    ca_file, auth_file = params["ca_file"], params["auth_file"]
    for path, flag in ((ca_file, "--ca-file"), (auth_file, "--auth-file")):
        if path is not None and not os.access(path, os.R_OK):
            raise InputError(f"{flag} {path}: file not found or not readable")
    return HostOptions(
        parse_endpoints(params["endpoints"]),
        parse_insecure(params["insecure"]),
        ca_file,
        auth_file,
        params.get("max_requests_per_second"),
    )


def platforms_from(values: Sequence[str]) -> tuple[Platform, ...]:
    """The ``--platform`` values, parsed."""
    from mirror.image.manifest import parse_platform

    return tuple(parse_platform(v) for v in values)


def destination_from(params: dict[str, Any]) -> PrivateRegistry:
    """``--registry-server`` and its credentials (popped from ``params``)."""
    from mirror.image.reference import parse_registry_server
    from mirror.run import PrivateRegistry

    credentials = credentials_from(params)
    return PrivateRegistry(parse_registry_server(params["registry_server"]), credentials)


def copy_settings(params: dict[str, Any]) -> Callable[[Any], None]:
    """Read the ``--verify-key`` files now; return what sets the run's options from the
    command's flags (``--jobs``, ``--frozen``, ``--dry-run``, attachments and keys)."""
    from mirror.image.signature import read_key

    keys = tuple(read_key(path) for path in params.get("verify_keys", ()))

    def apply(options: Any) -> None:
        options.jobs = params["jobs"]
        options.frozen = params.get("frozen", False)
        options.dry_run = params.get("dry_run", False)
        options.attachments = not params.get("no_attachments", False)
        options.verify_keys = keys

    return apply
