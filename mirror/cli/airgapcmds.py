"""The air-gap commands: ``save``, ``split``, ``load``, ``inspect`` and ``inventory``."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from mirror.cli.options import (
    attachment_options,
    credentials_from,
    destination_options,
    docker_host_option,
    force_option,
    frozen_option,
    input_option,
    jobs_option,
    lock_file_option,
    lock_options,
    output_option,
    output_path_option,
    platform_option,
    quiet_option,
    registry_credential_options,
    registry_server_option,
    report_option,
    report_options,
    source_options,
    split_size_option,
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
    parts_line,
    print_contents,
    saved_archive_line,
    skip_charts,
)
from mirror.cli.runcontrol import run_copy, signals

if TYPE_CHECKING:
    from mirror.report import Report
    from mirror.transports.layout import LayoutReader


@click.command()
@output_path_option(
    "FILE.tar|DIR/", "A tar archive to write, or an OCI layout directory (ending in / or existing)."
)
@lock_options
@platform_option
@source_options
@report_option
@quiet_option
@jobs_option
@frozen_option
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
@split_size_option(required=False)
@force_option
@docker_host_option
@attachment_options
def save(**params: Any) -> None:
    """Save every locked image and chart into an OCI image layout archive, preserving digests."""
    from mirror.airgap import save as run_save
    from mirror.airgap import save_target
    from mirror.delta import holdings_of
    from mirror.run import Selection

    target = save_target(params["output_path"], params["split_size"], params["force"])
    target = replace(target, holdings=holdings_of(params["since"], params["have"], target.path))
    entries, charts = lock_entries(params["lock_path"], params["environment"])
    hosts = hosts_from(params)
    platforms = platforms_from(params["platforms"])

    if params["from_docker"] and platforms:
        raise click.UsageError("--from-docker saves the one platform the daemon holds")
    if params["from_docker"] and params["verify_keys"]:
        raise click.UsageError("--verify-key checks images from a registry, not --from-docker")

    settings = copy_settings(params)

    def runner(progress: Any, options: Any) -> Report:
        settings(options)
        if params["from_docker"]:
            options.attachments = False  # a daemon holds no signatures
            from mirror.daemonsync import save_from_daemon

            skip_charts(charts, f"{DAEMON_HOLDS_IMAGES}; save them without --from-docker")
            report = save_from_daemon(
                entries, target, progress, options, docker_host=params["docker_host"]
            )
        else:
            selection = Selection(entries, charts, platforms)
            report = run_save(selection, target, hosts, progress, options)
        if report.failed and target.is_tar:
            click.echo(
                f"{target.path}: not written as images failed; what was fetched stays in"
                f" {target.layout_dir} for the next run",
                err=True,
            )
        return report

    count = len(entries) + (0 if params["from_docker"] else len(charts))
    run_copy(runner, params["quiet"], count, "text", params["report_path"])
    if not params["quiet"]:
        click.echo(saved_archive_line(target.path))


def show_parts(layout: LayoutReader, progress: Any) -> None:
    """Have ``progress`` show the part being read when ``layout`` is a split archive."""
    from mirror.transports.layout import TarStorage

    if isinstance(layout.storage, TarStorage) and layout.storage.split is not None:
        layout.storage.split.listener = progress.part


@click.command("split")
@input_option
@split_size_option(required=True)
@force_option
def split_command(input_path: str, split_size: int, force: bool) -> None:
    """Cut an existing tar archive into parts beside it, as save --split-size writes them."""
    from mirror.airgap import split_archive

    listing = split_archive(input_path, split_size, force)
    click.echo(parts_line(listing))


@click.command()
@input_option
@registry_server_option(required=False)
@registry_credential_options
@platform_option
@source_options
@report_options
@click.option(
    "--to-docker",
    is_flag=True,
    help="Load the images into a Docker daemon under their source names instead"
    " (and under --registry-server's names, if given).",
)
@lock_file_option("A lock you trust: load only images it pins to the digest the archive holds.")
@docker_host_option
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
    platforms = platforms_from(params["platforms"])
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
        skip_charts(
            [str(job.source) for job in daemon_plan.charts],
            f"{DAEMON_HOLDS_IMAGES}; load it with --registry-server",
        )
        daemon_plan = daemon_plan.without_charts()

        def to_docker(progress: Any, options: Any) -> Report:
            options.jobs = params["jobs"]
            show_parts(daemon_plan.layout, progress)
            return load_into_daemon(
                daemon_plan, progress, options, docker_host=params["docker_host"]
            )

        count = len(daemon_plan.jobs)
        run_copy(to_docker, params["quiet"], count, params["output"], params["report_path"])
        return
    if not params["registry_server"]:
        raise click.UsageError("Missing option '--registry-server' (or give --to-docker).")
    destination = PrivateRegistry(parse_registry_server(params["registry_server"]), credentials)
    hosts = hosts_from(params)
    plan = plan_load(params["input_path"], destination.server, platforms, trusted)
    settings = copy_settings(params)

    def runner(progress: Any, options: Any) -> Report:
        settings(options)
        show_parts(plan.layout, progress)
        return run_load(plan, destination, hosts, progress, options)

    run_copy(runner, params["quiet"], len(plan.jobs), params["output"], params["report_path"])


@click.command("inspect")
@input_option
@output_option
def inspect_command(input_path: str, output: str) -> None:
    """List an archive's images with digests, sizes and platforms, reading no layer."""
    from mirror.airgap import inspect

    contents = inspect(input_path)
    print_contents(contents, output)
    if not contents.complete:
        sys.exit(1)


@click.command()
@destination_options
@lock_options
@source_options
@output_path_option(
    "HAVE.json", "Where to write the inventory (for save --have on the connected side)."
)
@jobs_option
@click.option(
    "--input",
    "input_path",
    metavar="FILE.tar|DIR",
    help="Take the images from this archive's images.lock instead of --lock (a split archive"
    " as NAME.tar.001, its parts.json or their directory).",
)
def inventory(**params: Any) -> None:
    """List what --registry-server holds of the locked images (manifests, and blobs by HEAD)."""
    from mirror.delta import take_inventory, write_inventory
    from mirror.image.lock import LockEntry
    from mirror.net.retry import Cancellation

    destination = destination_from(params)
    if params["input_path"]:
        from mirror.airgap import archived_lock

        if params["lock_path"]:
            raise click.UsageError("give --lock or --input, not both")
        lock = archived_lock(params["input_path"])
        images, charts = (
            lock.select(params["environment"]),
            lock.select_charts(params["environment"]),
        )
    else:
        images, charts = lock_entries(params["lock_path"], params["environment"])
    # A chart is at its destination as an OCI artifact: listed by its tag like an image.
    entries = (*images, *(LockEntry(chart.source) for chart in charts))
    cancel = Cancellation(f"{params['output_path']} was not written")
    with signals(cancel):
        found = take_inventory(
            entries, destination, hosts_from(params), jobs=params["jobs"], cancel=cancel
        )
    click.echo(write_inventory(params["output_path"], found))
