"""The one exception hierarchy of ``mirror``; the CLI maps these to exit codes."""

from __future__ import annotations

import signal


class MirrorError(Exception):
    """Base of every error ``mirror`` raises on purpose. Exit code 1 unless overridden."""

    exit_code = 1


class InputError(MirrorError):
    """Bad usage or input (a flag, a file, a reference): exit code 2."""

    exit_code = 2


class InvalidReference(InputError):
    """An image reference or registry server that does not parse."""


class NotARegistry(InputError):
    """A registry server or endpoint that answers like a web server, not a registry."""


class LockError(InputError):
    """A malformed ``images.lock``."""


class ArchiveError(InputError):
    """An archive or layout that is not a usable OCI image layout."""


class DaemonUnavailable(MirrorError):
    """The Docker daemon is not running, not reachable, or refused the connection: exit 2."""

    exit_code = 2


class RegistryError(MirrorError):
    """A registry answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class Unauthorized(RegistryError):
    """The registry refused our credentials (or lack of them)."""


class NotFound(RegistryError):
    """The registry does not have the manifest or blob asked for."""


class RepositoryMissing(RegistryError):
    """A push to a repository the registry does not create on push (it must exist first)."""


class DigestMismatch(MirrorError):
    """Content did not hash to the digest (or size) it was fetched by."""


class ManifestError(MirrorError):
    """A manifest that is not valid JSON of a type we know."""


class ChartError(MirrorError):
    """A Helm chart archive or chart repository index that cannot be used."""


class HostileContent(MirrorError):
    """A manifest or index beyond sane limits, refused before it is loaded."""


class DamagedParts(MirrorError):
    """Parts of a split archive missing, short or altered: named before anything is read."""


class Interrupted(MirrorError):
    """The run was stopped by a signal; ``aftermath`` says what that left as it was."""

    def __init__(self, signum: int, aftermath: str = "") -> None:
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name}; {aftermath}" if aftermath else f"interrupted by {name}"
        )
        self.exit_code = 128 + signum
