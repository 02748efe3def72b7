"""The one exception hierarchy of ``deploy``; the CLI maps these to exit codes.

Rooted in :class:`mirror.errors.MirrorError` so the shared ``exits_on_errors`` covers both tools.
"""

from __future__ import annotations

from mirror import errors as mirror_errors


class DeployError(mirror_errors.MirrorError):
    """Base of every error ``deploy`` raises on purpose. Exit code 1 unless overridden."""


class InputError(DeployError, mirror_errors.InputError):
    """Bad usage or input (a flag, a file, a manifest): exit code 2, nothing sent."""

    exit_code = 2


class ManifestError(InputError):
    """A manifest file that does not parse, or a document that is not a Kubernetes object."""


class PublicImagesLeft(InputError):
    """``--disable-public-images`` was given but some images are not under the registry."""


class ConfigError(InputError):
    """No usable kubeconfig, or an unknown ``--context``."""


class ImagesMissing(DeployError):
    """Preflight found images that the private registry does not have."""


class ImagesUnsigned(DeployError):
    """Preflight found images in the private registry without a signature valid under the keys."""


class ClusterError(DeployError):
    """The Kubernetes API refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WaitTimeout(ClusterError):
    """A CRD or rollout was not ready within ``--timeout``."""


class RolloutFailed(ClusterError):
    """A workload will not roll out without help: an image that cannot be pulled, a deadline."""
