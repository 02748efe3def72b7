"""The registry commands: ``list``, ``sync``, ``verify`` and ``lock``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from mirror.cli.options import (
    attachment_options,
    destination_options,
    docker_host_option,
    frozen_option,
    jobs_option,
    lock_file_option,
    lock_options,
    no_attachments_option,
    output_option,
    platform_option,
    registry_server_option,
    report_option,
    report_options,
    source_options,
)
from mirror.cli.params import (
    copy_settings,
    destination_from,
    hosts_from,
    lock_entries,
    platforms_from,
)
from mirror.cli.render import (
    DAEMON_HOLDS_IMAGES,
    print_listing,
    print_verification,
    skip_charts,
)
from mirror.cli.runcontrol import finish, run_scheduled, schedule_options, signals

if TYPE_CHECKING:
    from mirror.report import Report

#: What ``verify`` says of an entry tagged ``latest`` without a digest.
MOVING = "warning: {} has no digest and `latest` moves: `mirror lock` pins it"


@click.command("list")
@lock_options
@registry_server_option(required=False, default="your-registry")
@output_option
def list_command(
    lock_path: str | None, environment: str, registry_server: str, output: str
) -> None:
    """Show each locked image's and chart's source and destination.

    The destinations are those under --registry-server.
    """
    from mirror.image.lock import plan_destinations
    from mirror.image.reference import flatten_destination, parse_registry_server

    entries, charts = lock_entries(lock_path, environment)
    server = parse_registry_server(registry_server)
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
        for e, d in plan_destinations(entries, server)
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
    print_listing(rows, output)


@click.command()
@destination_options
@lock_options
@platform_option
@source_options
@report_options
@click.option(
    "--dry-run", is_flag=True, help="Show what would be copied and how many bytes; change nothing."
)
@frozen_option
@schedule_options
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
@docker_host_option
@attachment_options
@click.option("--keep", is_flag=True, help="--engine docker: keep the pulled images in the daemon.")
def sync(**params: Any) -> None:
    """Copy every locked image into --registry-server, preserving digests.

    Every option can also be set as MESHLIFT_<OPTION> (e.g. MESHLIFT_REGISTRY_SERVER).
    """
    from mirror.run import Selection
    from mirror.schedule import parse_shard, select_shard
    from mirror.sync import sync as run_sync

    destination = destination_from(params)
    entries, charts = lock_entries(params["lock_path"], params["environment"])
    if params["shard"]:
        shard = parse_shard(params["shard"])
        entries = tuple(select_shard(entries, lambda e: str(e.source), shard))
        charts = tuple(select_shard(charts, lambda c: str(c.source), shard))
    hosts = hosts_from(params)
    platforms = platforms_from(params["platforms"])
    settings = copy_settings(params)

    if params["engine"] != "docker" and (params["keep"] or params["docker_host"]):
        raise click.UsageError("--keep and --docker-host need --engine docker")
    if params["engine"] == "docker" and params["verify_keys"]:
        raise click.UsageError("--verify-key needs --engine registry")

    def runner(progress: Any, options: Any) -> Report:
        settings(options)
        if params["engine"] == "docker":
            from mirror.daemonsync import sync_through_daemon

            skip_charts(charts, f"{DAEMON_HOLDS_IMAGES}; sync them with --engine registry")
            return sync_through_daemon(
                Selection(entries, platforms=platforms),
                destination,
                hosts,
                progress,
                options,
                docker_host=params["docker_host"],
                keep=params["keep"],
            )
        return run_sync(
            Selection(entries, charts, platforms), destination, hosts, progress, options
        )

    count = len(entries) + (len(charts) if params["engine"] == "registry" else 0)
    run_scheduled(runner, params, count)


def _options_from_environment(command: click.Command) -> None:
    """Let every option of ``command`` come from ``MESHLIFT_<OPTION>`` (shown in --help)."""
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "registry_password":
            longest = max(param.opts, key=len).lstrip("-")
            param.envvar = "MESHLIFT_" + longest.upper().replace("-", "_")
            param.show_envvar = True


_options_from_environment(sync)


@click.command()
@destination_options
@lock_options
@platform_option
@source_options
@output_option
@report_option
@jobs_option
@no_attachments_option
def verify(**params: Any) -> None:
    """Check every locked image and chart is in --registry-server with the right digest."""
    from mirror.image.lock import moving_unpinned
    from mirror.net.retry import Cancellation
    from mirror.run import CopyOptions, Selection
    from mirror.verify import verify as run_verify

    destination = destination_from(params)
    entries, charts = lock_entries(params["lock_path"], params["environment"])
    for entry in moving_unpinned(entries):
        click.echo(MOVING.format(entry.source), err=True)
    selection = Selection(entries, charts, platforms_from(params["platforms"]))
    hosts = hosts_from(params)
    options = CopyOptions(cancel=Cancellation())
    copy_settings(params)(options)
    with signals(options.cancel):
        report = run_verify(selection, destination, hosts, options)
    if params["output"] == "text":
        print_verification(report)
    finish(report, params["output"], params["report_path"], False)


@click.command("lock")
@lock_file_option("Lock file to update in place.", default="images.lock")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if any locked digest is stale.")
@source_options
def lock_command(lock_path: str, check: bool, **params: Any) -> None:
    """Resolve each source tag (and chart version) to its digest and write it into the lock."""
    from mirror.image.lock import load_lock, write_digests
    from mirror.net.retry import Cancellation
    from mirror.sync import resolve_chart_digests, resolve_digests

    lock = load_lock(lock_path)
    hosts = hosts_from(params)
    cancel = Cancellation(f"{lock_path} was not changed")
    with signals(cancel):
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
