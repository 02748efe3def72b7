"""The options of ``mirror`` (each declared once), and the credential flags ``deploy`` shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from mirror.net.credentials import Credentials, resolve_credentials

F = TypeVar("F", bound=Callable[..., Any])


def compose_options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """One decorator applying ``decorators`` in the order written (a reusable option group)."""

    def apply(func: Any) -> Any:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


class Duration(click.ParamType[float]):
    """``90``, ``30s``, ``10m``, ``6h`` or ``1h30m``, converted to seconds.

    With ``input_error`` a bad value raises ``InputError`` (one line on stderr, exit 2) rather
    than click's usage error.
    """

    name = "duration"

    def __init__(self, input_error: bool = False) -> None:
        self.input_error = input_error

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        from mirror.errors import InputError
        from mirror.schedule import parse_duration

        try:
            return parse_duration(str(value))
        except InputError as exc:
            if self.input_error:
                raise
            self.fail(str(exc), param, ctx)


_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "M": 1000**2,
    "MB": 1000**2,
    "G": 1000**3,
    "GB": 1000**3,
    "T": 1000**4,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}


def parse_size(text: str, what: str = "size") -> int:
    """``4G``, ``4GiB``, ``700M``, ``1.5GB``, ``4096``: bytes, decimal or binary as written
    (InputError naming ``what`` on anything else, or on less than one byte)."""
    import re
    from decimal import Decimal

    from mirror.errors import InputError

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = _SIZE_UNITS.get(match.group(2).upper()) if match else None
    if match is None or unit is None:
        raise InputError(f"{what} {text!r}: give a number of bytes with a unit (700M, 4G, 4GiB)")
    size = int(Decimal(match.group(1)) * unit)
    if size < 1:
        raise InputError(f"{what} {text!r}: must be at least one byte")
    return size


class ByteSize(click.ParamType[int]):
    """A size such as ``4G``, ``4GiB`` or ``700M`` (see :func:`parse_size`); a bad value is
    InputError (one line, exit 2)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        return parse_size(str(value), param.opts[0] if param else "size")


def split_size_option(required: bool) -> Callable[[Any], Any]:
    """``--split-size SIZE``: cut the tar into parts of at most SIZE."""
    return click.option(
        "--split-size",
        type=ByteSize(),
        required=required,
        metavar="SIZE",
        help="Cut the tar into NAME.tar.001, .002 … of at most SIZE (700M, 4G, 4GiB),"
        " listed with their sha256 in NAME.tar.parts.json.",
    )


force_option = click.option(
    "--force", is_flag=True, help="Remove parts of an earlier run left beside the new ones."
)


def lock_file_option(
    help: str = "Lock file (default: ./images.lock, else the embedded NSM 2.0.0 lock).",
    default: str | None = None,
) -> Callable[[Any], Any]:
    """``--lock FILE``; ``help`` says what a command does with it."""
    return click.option(
        "--lock",
        "lock_path",
        metavar="FILE",
        default=default,
        show_default=default is not None,
        help=help,
    )


lock_option = lock_file_option()


registry_credential_options = compose_options(
    click.option("--registry-username", type=str, help="Username for --registry-server."),
    click.option(
        "--registry-password",
        type=str,
        help=(
            "Registry password (visible in shell history; prefer --registry-password-stdin"
            " or MESHLIFT_REGISTRY_PASSWORD)."
        ),
    ),
    click.option(
        "--registry-password-stdin",
        is_flag=True,
        help="Read the registry password from standard input (preferred).",
    ),
    click.option(
        "--registry-key",
        type=str,
        help="Path to a GKE JSON key file (user _json_key). Not with username/password.",
    ),
)


def credentials_from(params: dict[str, Any]) -> Credentials | None:
    """Pop the credential flags from click params and resolve them (InputError on misuse)."""
    return resolve_credentials(
        params.pop("registry_username", None),
        params.pop("registry_password", None),
        bool(params.pop("registry_password_stdin", False)),
        params.pop("registry_key", None),
    )


def registry_server_option(
    required: bool = True, default: str | None = None
) -> Callable[[Any], Any]:
    """``--registry-server``: required unless a command has a default or another way."""
    return click.option(
        "--registry-server",
        required=required,
        default=default,
        show_default=default is not None,
        metavar="HOST[:PORT][/PATH]",
        help="The private registry images go to.",
    )


destination_options = compose_options(registry_server_option(), registry_credential_options)
lock_options = compose_options(
    lock_option,
    click.option(
        "--environment",
        type=click.Choice(["kubernetes", "openshift", "all"]),
        default="all",
        show_default=True,
        help="Lock entries for this environment.",
    ),
)
insecure_registry_option = click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Allow plain HTTP or unverified TLS for HOST (repeatable).",
)


def _loading_trust(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A command that reaches registries starts loading certifi's CAs as soon as its options
    are parsed, while it imports the HTTP stack (see ``mirror.net.trust``)."""
    from mirror.net import trust

    trust.prepare()
    return value


ca_file_option = click.option(
    "--ca-file",
    type=click.Path(dir_okay=False),
    callback=_loading_trust,
    help="Extra CA certificate (PEM) to trust.",
)
source_options = compose_options(
    click.option(
        "--endpoint",
        "endpoints",
        multiple=True,
        metavar="HOST=URL",
        help="Fetch images of HOST from URL instead (repeatable).",
    ),
    insecure_registry_option,
    ca_file_option,
    click.option(
        "--auth-file",
        type=click.Path(dir_okay=False),
        help="Docker config with registry credentials (default: the user's).",
    ),
    click.option(
        "--max-requests-per-second",
        type=click.FloatRange(min=0, min_open=True),
        metavar="N",
        help="At most N requests per second to each registry (default: no limit).",
    ),
)
platform_option = click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH",
    help="Copy only these platforms of multi-platform images (repeatable).",
)
output_option = click.option(
    "--output",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json prints the report on stdout.",
)


def output_path_option(metavar: str, help: str, required: bool = True) -> Callable[[Any], Any]:
    """``--output PATH``: the file (or directory) a command writes, ``help`` says what."""
    return click.option("--output", "output_path", required=required, metavar=metavar, help=help)


input_option = click.option(
    "--input",
    "input_path",
    required=True,
    metavar="FILE.tar|DIR",
    help="The archive or OCI layout directory (mirror save's, or skopeo's oci:); a split"
    " archive as NAME.tar.001, NAME.tar.parts.json or their directory.",
)
report_option = click.option(
    "--report", "report_path", metavar="FILE.json", help="Also write the JSON report here."
)
quiet_option = click.option("--quiet", is_flag=True, help="Print only errors.")


class _JobsOption(click.Option):
    """``--jobs``, defaulting to the operations' ``DEFAULT_JOBS`` (imported only when asked)."""

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        from mirror.run import DEFAULT_JOBS

        return DEFAULT_JOBS


jobs_option = click.option(
    "--jobs", cls=_JobsOption, type=click.IntRange(1, 64), show_default=True, help="Images at once."
)
frozen_option = click.option(
    "--frozen",
    is_flag=True,
    help="Fail images whose source tag no longer matches the locked digest.",
)
docker_host_option = click.option(
    "--docker-host",
    metavar="URL",
    help="The Docker daemon (default: DOCKER_HOST, else the local socket).",
)
no_attachments_option = click.option(
    "--no-attachments",
    is_flag=True,
    help="Do not copy or check signatures, attestations, SBOMs and referrers.",
)
attachment_options = compose_options(
    no_attachments_option,
    click.option(
        "--verify-key",
        "verify_keys",
        multiple=True,
        metavar="PEM",
        help="Tag an image only if a cosign signature of it verifies under this public key"
        " (repeatable: any of them).",
    ),
)
report_options = compose_options(output_option, report_option, quiet_option, jobs_option)
