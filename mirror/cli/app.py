"""``mirror``: parse options, call one function, render its result, map errors to exit codes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from mirror.cli.options import (
    compose_options,
    credentials_from,
    enable_debug,
    exits_on_errors,
    lock_option,
    registry_credential_options,
)
from mirror.errors import MirrorError

# httpx imports its own command-line client (and rich's syntax highlighting with it) unless
# that import fails, which it handles; mirror never uses it, and every start-up saves ~40 ms.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

if TYPE_CHECKING:
    from mirror.image.lock import ChartEntry, LockEntry
    from mirror.image.manifest import Platform
    from mirror.net.hosts import HostOptions
    from mirror.net.retry import Cancellation
    from mirror.report import Report

_ENV_CHOICES = click.Choice(["kubernetes", "openshift", "all"])
_OUTPUT = click.option(
    "--output",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json prints the report on stdout.",
)


lock_options = compose_options(
    lock_option,
    click.option(
        "--environment",
        type=_ENV_CHOICES,
        default="all",
        show_default=True,
        help="Lock entries for this environment.",
    ),
)
platform_option = click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH",
    help="Copy only these platforms of multi-platform images (repeatable).",
)
source_options = compose_options(
    click.option(
        "--endpoint",
        "endpoints",
        multiple=True,
        metavar="HOST=URL",
        help="Fetch images of HOST from URL instead (repeatable).",
    ),
    click.option(
        "--insecure-registry",
        "insecure",
        multiple=True,
        metavar="HOST[:PORT]",
        help="Allow plain HTTP or unverified TLS for HOST (repeatable).",
    ),
    click.option(
        "--ca-file", type=click.Path(dir_okay=False), help="Extra CA certificate (PEM) to trust."
    ),
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
destination_options = compose_options(
    click.option(
        "--registry-server",
        required=True,
        metavar="HOST[:PORT][/PATH]",
        help="The private registry images go to.",
    ),
    registry_credential_options,
)


def attachment_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--no-attachments`` and ``--verify-key`` (signatures, attestations, SBOMs, referrers)."""
    fn = click.option(
        "--verify-key",
        "verify_keys",
        multiple=True,
        metavar="PEM",
        help="Tag an image only if a cosign signature of it verifies under this public key"
        " (repeatable: any of them).",
    )(fn)
    return click.option(
        "--no-attachments",
        is_flag=True,
        help="Do not copy signatures, attestations, SBOMs and referrers with the images.",
    )(fn)


def _attachment_settings(params: dict[str, Any]) -> Callable[[Any], None]:
    """Read the ``--verify-key`` files now; return what sets the run's options from them."""
    from mirror.image.signature import read_key

    keys = tuple(read_key(path) for path in params["verify_keys"])

    def apply(options: Any) -> None:
        options.attachments, options.verify_keys = not params["no_attachments"], keys

    return apply


_DOCKER_HOST = click.option(
    "--docker-host",
    metavar="URL",
    help="The Docker daemon (default: DOCKER_HOST, else the local socket).",
)
report_options = compose_options(
    _OUTPUT,
    click.option(
        "--report", "report_path", metavar="FILE.json", help="Also write the JSON report here."
    ),
    click.option("--quiet", is_flag=True, help="Print only errors."),
    click.option(
        "--jobs",
        type=click.IntRange(1, 64),
        default=4,
        show_default=True,
        help="Images copied at once.",
    ),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="meshlift")
def cli(debug: bool) -> None:
    """Mirror NGINX Service Mesh images into a private registry, or across an air gap."""
    if debug:
        enable_debug()


def _entries(
    lock_path: str | None, environment: str
) -> tuple[tuple[LockEntry, ...], tuple[ChartEntry, ...]]:
    """The lock's images and charts needed on ``environment``."""
    from mirror.image.lock import load_lock, resolve_lock_path

    lock = load_lock(resolve_lock_path(lock_path))
    return lock.select(environment), lock.select_charts(environment)


def _skip_charts(charts: Sequence[ChartEntry | str], why: str) -> None:
    """Say on stderr that ``charts`` are left out, and why."""
    for chart in charts:
        name = chart if isinstance(chart, str) else str(chart.source)
        click.echo(f"note: chart {name} skipped: {why}", err=True)


def _and_charts(count: int) -> str:
    """``, 1 Helm chart`` (or ``, N Helm charts``) after a count of images; nothing for none."""
    return f", {count} Helm chart{'s' * (count != 1)}" if count else ""


#: Why --engine docker, --from-docker and --to-docker leave charts out.
DAEMON_HOLDS_IMAGES = "a Docker daemon holds images only"


def _hosts(params: dict[str, Any]) -> HostOptions:
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


def _platforms(values: Sequence[str]) -> tuple[Platform, ...]:
    from mirror.image.manifest import parse_platform

    return tuple(parse_platform(v) for v in values)


#: What an interrupted copy leaves as it was (its Interrupted message ends with this).
UNTAGGED = "unfinished images were not tagged"


@contextmanager
def _signals(cancel: Cancellation, stop: threading.Event | None = None) -> Iterator[None]:
    """SIGINT/SIGTERM ask the copies to stop; they leave no tag for unfinished images."""

    def handler(signum: int, _frame: object) -> None:
        cancel.cancel(signum)
        if stop is not None:
            stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _publish(
    report: Report,
    output: str,
    report_path: str | None,
    quiet: bool,
    metrics_file: str | None = None,
) -> bool:
    """Write the report/metrics, print it or its summary line; return whether it failed."""
    if report_path:
        report.write(report_path)
    if metrics_file:
        from mirror.metrics import last_success_from, render_metrics, write_metrics

        last = time.time() if not report.failed else last_success_from(metrics_file)
        write_metrics(metrics_file, render_metrics(report, last))
    if output == "json":
        click.echo(report.to_json())
    elif not quiet:
        s = report.summary()
        click.echo(
            f"{report.command}: {s['images']} images{_and_charts(s['charts'])}:"
            f" {s['copied']} copied, {s['present']} present,"
            f" {s['failed']} failed, {s['skipped']} skipped; {s['bytes_uploaded']} bytes uploaded,"
            f" {s['blobs_mounted']} blobs mounted in {s['duration_seconds']:.1f}s"
        )
    return report.failed


def _finish(report: Report, output: str, report_path: str | None, quiet: bool) -> None:
    if _publish(report, output, report_path, quiet):
        sys.exit(1)


@cli.command("list")
@lock_options
@click.option(
    "--registry-server",
    metavar="HOST[:PORT][/PATH]",
    default="your-registry",
    show_default=True,
    help="Show destinations under this registry.",
)
@_OUTPUT
def list_command(
    lock_path: str | None, environment: str, registry_server: str, output: str
) -> None:
    """Show each locked image's and chart's source and destination."""
    from mirror.image.lock import plan_destinations
    from mirror.image.reference import flatten_destination, parse_registry_server

    entries, charts = _entries(lock_path, environment)
    server = parse_registry_server(registry_server)
    planned = plan_destinations(entries, server)
    rows: list[dict[str, Any]] = [
        {
            "kind": "image",
            "source": str(e.source),
            "destination": str(d),
            "digest": e.digest,
            "component": e.component,
            "environment": e.environment or "all",
            "platforms": [str(p) for p in e.platforms],
        }
        for e, d in planned
    ] + [
        {
            "kind": "chart",
            "source": str(c.source),
            "destination": str(flatten_destination(c.source, server)),
            "digest": c.digest,
            "component": c.component,
            "environment": c.environment or "all",
            "platforms": [],
        }
        for c in charts
    ]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    title = f"{len(planned)} images{_and_charts(len(charts))}"
    table = Table(title=title)
    for column in ("source", "destination", "digest", "component", "environment"):
        table.add_column(column, no_wrap=column != "digest")
    for row in rows:
        digest = row["digest"][:19] + "…" if row["digest"] else "-"
        source = f"{row['source']} (chart)" if row["kind"] == "chart" else row["source"]
        table.add_row(source, row["destination"], digest, row["component"], row["environment"])
    console = Console()
    if not console.is_terminal:  # pipes and logs get the whole table, not an 80-column cut
        widest = max((len(r["source"]) + len(r["destination"]) for r in rows), default=40)
        console = Console(width=widest + 60)
    console.print(table)


def _copy_once(
    runner: Callable[[Any, Any], Report], params: dict[str, Any], count: int, cancel: Cancellation
) -> Report:
    """One run with the progress display ``--quiet``/``--output`` ask for."""
    from mirror.cli.progress import choose_progress
    from mirror.copy import CopyOptions

    quiet = params["quiet"] or (params["output"] == "json" and not sys.stderr.isatty())
    progress = choose_progress(quiet, count)
    try:
        return runner(progress, CopyOptions(cancel=cancel))
    finally:
        progress.close()


def _run_copy(
    runner: Callable[[Any, Any], Report],
    quiet: bool,
    count: int,
    output: str,
    report_path: str | None,
) -> None:
    from mirror.net.retry import Cancellation

    cancel = Cancellation(UNTAGGED)
    params = {"quiet": quiet, "output": output}
    with _signals(cancel):
        report = _copy_once(runner, params, count, cancel)
    _finish(report, output, report_path, quiet)


@cli.command()
@destination_options
@lock_options
@platform_option
@source_options
@report_options
@click.option(
    "--dry-run", is_flag=True, help="Show what would be copied and how many bytes; change nothing."
)
@click.option(
    "--frozen",
    is_flag=True,
    help="Fail images whose source tag no longer matches the locked digest.",
)
@click.option(
    "--interval", metavar="DURATION", help="Run again every DURATION (6h, 10m) until SIGTERM."
)
@click.option(
    "--jitter", metavar="DURATION", default="0", help="Add up to DURATION of random delay."
)
@click.option(
    "--state-dir",
    metavar="DIR",
    help="Where the overlap lock lives (default: ~/.local/state/meshlift).",
)
@click.option("--wait-lock", is_flag=True, help="Wait for a running sync instead of exiting 0.")
@click.option(
    "--metrics-file", metavar="PATH", help="Write Prometheus text metrics here after each run."
)
@click.option(
    "--shard", metavar="I/N", help="Sync only shard I of N of the lock (stable by source)."
)
@click.option(
    "--engine",
    type=click.Choice(["registry", "docker"]),
    default="registry",
    show_default=True,
    help="docker: pull and push through a Docker daemon (it re-encodes manifests).",
)
@_DOCKER_HOST
@attachment_options
@click.option("--keep", is_flag=True, help="--engine docker: keep the pulled images in the daemon.")
def sync(**params: Any) -> None:
    """Copy every locked image into --registry-server, preserving digests.

    Every option can also be set as MESHLIFT_<OPTION> (e.g. MESHLIFT_REGISTRY_SERVER).
    """
    from mirror.image.reference import parse_registry_server
    from mirror.run import PrivateRegistry
    from mirror.schedule import parse_duration, parse_shard, select_shard
    from mirror.sync import sync as run_sync

    credentials = credentials_from(params)
    destination = PrivateRegistry(parse_registry_server(params["registry_server"]), credentials)
    entries, charts = _entries(params["lock_path"], params["environment"])
    if params["shard"]:
        shard = parse_shard(params["shard"])
        entries = tuple(select_shard(entries, lambda e: str(e.source), shard))
        charts = tuple(select_shard(charts, lambda c: str(c.source), shard))
    hosts = _hosts(params)
    platforms = _platforms(params["platforms"])
    interval = parse_duration(params["interval"]) if params["interval"] else None
    jitter = parse_duration(params["jitter"])
    attachments = _attachment_settings(params)

    if params["engine"] != "docker" and (params["keep"] or params["docker_host"]):
        raise click.UsageError("--keep and --docker-host need --engine docker")
    if params["engine"] == "docker" and params["verify_keys"]:
        raise click.UsageError("--verify-key needs --engine registry")

    def runner(progress: Any, options: Any) -> Report:
        options.frozen, options.dry_run = params["frozen"], params["dry_run"]
        attachments(options)
        if params["engine"] == "docker":
            from mirror.daemonsync import sync_through_daemon

            _skip_charts(charts, f"{DAEMON_HOLDS_IMAGES}; sync them with --engine registry")
            return sync_through_daemon(
                entries,
                destination,
                hosts,
                progress,
                options,
                docker_host=params["docker_host"],
                keep=params["keep"],
                platforms=platforms,
                jobs=params["jobs"],
            )
        return run_sync(
            entries,
            destination,
            hosts,
            progress,
            options,
            charts=charts,
            platforms=platforms,
            jobs=params["jobs"],
        )

    count = len(entries) + (len(charts) if params["engine"] == "registry" else 0)
    _scheduled(runner, params, count, interval, jitter)


def _options_from_environment(command: click.Command) -> None:
    """Let every option of ``command`` come from ``MESHLIFT_<OPTION>`` (shown in --help)."""
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "registry_password":
            longest = max(param.opts, key=len).lstrip("-")
            param.envvar = "MESHLIFT_" + longest.upper().replace("-", "_")
            param.show_envvar = True


_options_from_environment(sync)


def _scheduled(
    runner: Callable[[Any, Any], Report],
    params: dict[str, Any],
    count: int,
    interval: float | None,
    jitter: float,
) -> None:
    """Run once, or every ``interval`` until SIGTERM; one sync per destination at a time."""
    import hashlib
    from pathlib import Path

    from mirror.net.retry import Cancellation
    from mirror.schedule import default_state_dir, run_every, run_lock

    state = Path(params["state_dir"]) if params["state_dir"] else default_state_dir()
    key = hashlib.sha256(params["registry_server"].encode()).hexdigest()[:16]
    stop = threading.Event()
    cancel = Cancellation(UNTAGGED)
    failed = False

    def cycle() -> None:
        nonlocal failed
        with run_lock(state / f"sync-{key}", params["wait_lock"]) as held:
            if not held:
                click.echo(
                    f"another mirror sync to {params['registry_server']} is running; skipped"
                )
                return
            try:
                report = _copy_once(runner, params, count, cancel)
            except MirrorError as exc:  # a cycle fails, the loop goes on
                if interval is None or cancel.signum is not None:
                    raise
                click.echo(f"Error: {exc}", err=True)
                failed = True
                return
        failed = _publish(
            report, params["output"], params["report_path"], params["quiet"], params["metrics_file"]
        )

    with _signals(cancel, stop):
        if interval is None:
            cycle()
        else:
            run_every(cycle, interval, jitter, stop)
    if interval is None and failed:
        sys.exit(1)


@cli.command()
@destination_options
@lock_options
@platform_option
@source_options
@_OUTPUT
@click.option(
    "--report", "report_path", metavar="FILE.json", help="Also write the JSON report here."
)
@click.option("--jobs", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--no-attachments",
    is_flag=True,
    help="Do not check signatures, attestations, SBOMs and referrers.",
)
def verify(**params: Any) -> None:
    """Check every locked image and chart is in --registry-server with the right digest."""
    from mirror.image.reference import parse_registry_server
    from mirror.net.retry import Cancellation
    from mirror.run import PrivateRegistry
    from mirror.verify import verify as run_verify

    credentials = credentials_from(params)
    destination = PrivateRegistry(parse_registry_server(params["registry_server"]), credentials)
    entries, charts = _entries(params["lock_path"], params["environment"])
    hosts = _hosts(params)
    cancel = Cancellation()
    with _signals(cancel):
        report = run_verify(
            entries,
            destination,
            hosts,
            charts=charts,
            platforms=_platforms(params["platforms"]),
            jobs=params["jobs"],
            cancel=cancel,
            attachments=not params["no_attachments"],
        )
    if params["output"] == "text":
        for r in report.results:
            state = "ok" if r.status == "present" else "FAILED"
            click.echo(f"{state} {r.destination} {r.digest or ''} {r.error or ''}".rstrip())
    _finish(report, params["output"], params["report_path"], False)


@cli.command("lock")
@click.option(
    "--lock",
    "lock_path",
    metavar="FILE",
    default="images.lock",
    show_default=True,
    help="Lock file to update in place.",
)
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if any locked digest is stale.")
@source_options
def lock_command(lock_path: str, check: bool, **params: Any) -> None:
    """Resolve each source tag (and chart version) to its digest and write it into the lock."""
    from mirror.image.lock import load_lock, write_digests
    from mirror.net.retry import Cancellation
    from mirror.sync import resolve_chart_digests, resolve_digests

    lock = load_lock(lock_path)
    hosts = _hosts(params)
    cancel = Cancellation(f"{lock_path} was not changed")
    with _signals(cancel):
        digests = resolve_digests(lock.entries, hosts, cancel=cancel)
        digests |= resolve_chart_digests(lock.charts, hosts, cancel=cancel)
    pinned = [(e.source, e.digest) for e in lock.entries]
    pinned += [(c.source, c.digest) for c in lock.charts]
    stale = [(source, digest) for source, digest in pinned if digest != digests.get(str(source))]
    for source, digest in stale:
        click.echo(f"{source}: {digest or 'unpinned'} -> {digests[str(source)]}")
    if check:
        if stale:
            sys.exit(1)
        click.echo(f"{lock_path}: {len(pinned)} digests current")
        return
    changed = write_digests(lock_path, digests)
    click.echo(f"{lock_path}: {changed} digests updated")


@cli.command()
@click.option(
    "--output",
    "output_path",
    required=True,
    metavar="FILE.tar|DIR/",
    help="A tar archive to write, or an OCI layout directory (ending in / or existing).",
)
@lock_options
@platform_option
@source_options
@click.option(
    "--report", "report_path", metavar="FILE.json", help="Also write the JSON report here."
)
@click.option("--quiet", is_flag=True, help="Print only errors.")
@click.option(
    "--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help="Images at once."
)
@click.option(
    "--frozen",
    is_flag=True,
    help="Fail images whose source tag no longer matches the locked digest.",
)
@click.option(
    "--from-docker",
    is_flag=True,
    help="Take the images from a Docker daemon (e.g. locally built ones) instead.",
)
@click.option(
    "--since",
    metavar="BASE",
    help="Write a delta: only what the earlier archive BASE (tar or directory) lacks.",
)
@click.option(
    "--have",
    metavar="HAVE.json",
    help="Write a delta: only what the inventory HAVE.json (mirror inventory) lacks.",
)
@_DOCKER_HOST
@attachment_options
def save(**params: Any) -> None:
    """Save every locked image and chart into an OCI image layout archive, preserving digests."""
    from mirror.airgap import save as run_save
    from mirror.airgap import save_target
    from mirror.delta import holdings_of

    target = save_target(params["output_path"])
    target = replace(target, holdings=holdings_of(params["since"], params["have"], target.path))
    entries, charts = _entries(params["lock_path"], params["environment"])
    hosts = _hosts(params)
    platforms = _platforms(params["platforms"])

    if params["from_docker"] and platforms:
        raise click.UsageError("--from-docker saves the one platform the daemon holds")
    if params["from_docker"] and params["verify_keys"]:
        raise click.UsageError("--verify-key checks images from a registry, not --from-docker")

    attachments = _attachment_settings(params)

    def runner(progress: Any, options: Any) -> Report:
        options.frozen = params["frozen"]
        attachments(options)
        if params["from_docker"]:
            options.attachments = False  # a daemon holds no signatures
            from mirror.daemonsync import save_from_daemon

            _skip_charts(charts, f"{DAEMON_HOLDS_IMAGES}; save them without --from-docker")
            report = save_from_daemon(
                entries,
                target,
                progress,
                options,
                docker_host=params["docker_host"],
                jobs=params["jobs"],
            )
        else:
            report = run_save(
                entries,
                target,
                hosts,
                progress,
                options,
                charts=charts,
                platforms=platforms,
                jobs=params["jobs"],
            )
        if report.failed and target.is_tar:
            click.echo(
                f"{target.path}: not written as images failed; what was fetched stays in"
                f" {target.layout_dir} for the next run",
                err=True,
            )
        return report

    count = len(entries) + (0 if params["from_docker"] else len(charts))
    _run_copy(runner, params["quiet"], count, "text", params["report_path"])
    if not params["quiet"]:
        from mirror.delta import describe_archive

        click.echo(describe_archive(target.path))


@cli.command()
@click.option(
    "--input",
    "input_path",
    required=True,
    metavar="FILE.tar|DIR",
    help="The archive or OCI layout directory to load (mirror save's, or skopeo's oci:).",
)
@click.option(
    "--registry-server",
    metavar="HOST[:PORT][/PATH]",
    help="The private registry images go to (with --to-docker: a second name for each).",
)
@registry_credential_options
@platform_option
@source_options
@report_options
@click.option(
    "--to-docker",
    is_flag=True,
    help="Load the images into a Docker daemon under their source names instead.",
)
@click.option(
    "--lock",
    "lock_path",
    metavar="FILE",
    help="A lock you trust: load only images it pins to the digest the archive holds.",
)
@_DOCKER_HOST
@attachment_options
def load(**params: Any) -> None:
    """Push every image of an archive into --registry-server, preserving digests.

    With --to-docker, load them into a Docker daemon instead.
    """
    from mirror.airgap import load as run_load
    from mirror.airgap import plan_load
    from mirror.errors import InputError
    from mirror.image.lock import load_lock
    from mirror.image.reference import parse_registry_server
    from mirror.run import PrivateRegistry

    credentials = credentials_from(params)
    platforms = _platforms(params["platforms"])
    trusted = load_lock(params["lock_path"]) if params["lock_path"] else None
    if params["to_docker"]:
        from mirror.daemonsync import load_into_daemon
        from mirror.delta import refuse_delta

        if len(platforms) > 1:
            raise InputError("--to-docker loads one platform per image: give one --platform")
        if params["verify_keys"]:
            raise InputError("--verify-key checks images loaded into a registry, not --to-docker")
        server = params["registry_server"]
        daemon_plan = plan_load(
            params["input_path"],
            parse_registry_server(server) if server else None,
            platforms,
            trusted,
        )
        refuse_delta(daemon_plan.layout, "--to-docker")
        _skip_charts(
            [str(job.source) for job in daemon_plan.charts],
            f"{DAEMON_HOLDS_IMAGES}; load it with --registry-server",
        )
        daemon_plan = daemon_plan.without_charts()

        def to_docker(progress: Any, options: Any) -> Report:
            return load_into_daemon(
                daemon_plan,
                progress,
                options,
                docker_host=params["docker_host"],
                jobs=params["jobs"],
            )

        count = len(daemon_plan.jobs)
        _run_copy(to_docker, params["quiet"], count, params["output"], params["report_path"])
        return
    if not params["registry_server"]:
        raise click.UsageError("Missing option '--registry-server' (or give --to-docker).")
    destination = PrivateRegistry(parse_registry_server(params["registry_server"]), credentials)
    hosts = _hosts(params)
    plan = plan_load(params["input_path"], destination.server, platforms, trusted)
    attachments = _attachment_settings(params)

    def runner(progress: Any, options: Any) -> Report:
        attachments(options)
        return run_load(plan, destination, hosts, progress, options, jobs=params["jobs"])

    _run_copy(runner, params["quiet"], len(plan.jobs), params["output"], params["report_path"])


@cli.command("inspect")
@click.option(
    "--input", "input_path", required=True, metavar="FILE.tar|DIR", help="The archive to list."
)
@_OUTPUT
def inspect_command(input_path: str, output: str) -> None:
    """List an archive's images with digests, sizes and platforms, reading no layer."""
    from dataclasses import asdict

    from rich.filesize import decimal

    from mirror.airgap import inspect
    from mirror.image import mediatypes

    contents = inspect(input_path)
    if output == "json":
        delta = contents.delta.as_json() if contents.delta else None
        document = {**asdict(contents), "delta": delta, "complete": contents.complete}
        click.echo(json.dumps(document, indent=2))
    else:
        kinds = {
            mediatypes.OCI_INDEX: "oci index",
            mediatypes.OCI_MANIFEST: "oci image",
            mediatypes.DOCKER_MANIFEST_LIST: "docker list",
            mediatypes.DOCKER_MANIFEST: "docker image",
        }
        lock = (
            f"images.lock of {contents.lock_entries} entries"
            if contents.lock_entries is not None
            else "no images.lock"
        )
        charts = sum(image.kind == "chart" for image in contents.images)
        counted = f"{len(contents.images) - charts} images{_and_charts(charts)}"
        click.echo(
            f"{input_path}: OCI image layout ({contents.format}), {counted},"
            f" {decimal(contents.size)}; {lock}"
        )
        if contents.delta is not None:
            click.echo(contents.delta.describe())
        for image in contents.images:
            kind = (
                "helm chart"
                if image.kind == "chart"
                else kinds.get(image.media_type, image.media_type)
            )
            platforms = f" [{', '.join(image.platforms)}]" if image.platforms else ""
            unlocked = " (not in images.lock)" if image.in_lock is False else ""
            in_base = f" (+{image.in_base} in the base)" if image.in_base else ""
            if image.attachment:
                unlocked = f" ({image.attachment})"
            click.echo(
                f"{image.name} {image.digest} {kind}{platforms}"
                f" {decimal(image.size)} in {image.blobs} blobs{in_base}{unlocked}"
            )
            for digest in image.missing:
                click.echo(f"  missing: {digest}")
            if image.error:
                click.echo(f"  error: {image.error}")
        for name in contents.not_in_archive:
            click.echo(f"not in the archive: {name}")
    if not contents.complete:
        sys.exit(1)


@cli.command()
@destination_options
@lock_options
@source_options
@click.option(
    "--output",
    "output_path",
    required=True,
    metavar="HAVE.json",
    help="Where to write the inventory (for save --have on the connected side).",
)
@click.option(
    "--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help="Images at once."
)
def inventory(**params: Any) -> None:
    """List what --registry-server holds of the locked images (manifests, and blobs by HEAD)."""
    from mirror.delta import take_inventory, write_inventory
    from mirror.image.lock import LockEntry
    from mirror.image.reference import parse_registry_server
    from mirror.net.retry import Cancellation
    from mirror.run import PrivateRegistry

    credentials = credentials_from(params)
    destination = PrivateRegistry(parse_registry_server(params["registry_server"]), credentials)
    images, charts = _entries(params["lock_path"], params["environment"])
    # A chart is at its destination as an OCI artifact: listed by its tag like an image.
    entries = (*images, *(LockEntry(chart.source) for chart in charts))
    cancel = Cancellation(f"{params['output_path']} was not written")
    with _signals(cancel):
        found = take_inventory(
            entries, destination, _hosts(params), jobs=params["jobs"], cancel=cancel
        )
    click.echo(write_inventory(params["output_path"], found))


@exits_on_errors(MirrorError)
def _main() -> None:
    cli.main(standalone_mode=False)


def main() -> None:
    """Console entry point."""
    try:
        _main()
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
