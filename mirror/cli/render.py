"""What the commands print: run summaries, the lock's listing, an archive's contents."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from mirror.image import mediatypes

if TYPE_CHECKING:
    from pathlib import Path

    from mirror.airgap import ArchiveContents, ArchivedImage
    from mirror.delta import DeltaContents
    from mirror.image.lock import ChartEntry
    from mirror.report import Report
    from mirror.transports.parts import PartsList

#: Why --engine docker, --from-docker and --to-docker leave charts out.
DAEMON_HOLDS_IMAGES = "a Docker daemon holds images only"

#: What ``inspect`` calls each kind of top-level manifest.
_KINDS = {
    mediatypes.OCI_INDEX: "oci index",
    mediatypes.OCI_MANIFEST: "oci image",
    mediatypes.DOCKER_MANIFEST_LIST: "docker list",
    mediatypes.DOCKER_MANIFEST: "docker image",
}


def and_charts(count: int) -> str:
    """``, 1 Helm chart`` (or ``, N Helm charts``) after a count of images; nothing for none."""
    return f", {count} Helm chart{'s' * (count != 1)}" if count else ""


def skip_charts(charts: Sequence[ChartEntry | str], why: str) -> None:
    """Say on stderr that ``charts`` are left out, and why."""
    for chart in charts:
        name = chart if isinstance(chart, str) else str(chart.source)
        click.echo(f"note: chart {name} skipped: {why}", err=True)


def publish(
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
        there = s["blobs_present"]
        already = f", {there} blobs ({size_text(s['bytes_present'])}) already there" * (there > 0)
        click.echo(
            f"{report.command}: {s['images']} images{and_charts(s['charts'])}:"
            f" {s['copied']} copied, {s['present']} present,"
            f" {s['failed']} failed, {s['skipped']} skipped; {size_text(s['bytes_uploaded'])}"
            f" uploaded, {s['blobs_mounted']} blobs mounted{already}"
            f" in {s['duration_seconds']:.1f}s"
        )
    return report.failed


def print_verification(report: Report) -> None:
    """One ``ok``/``FAILED`` line per image checked by ``verify``."""
    for r in report.results:
        state = "ok" if r.status == "present" else "FAILED"
        click.echo(f"{state} {r.destination} {r.digest or ''} {r.error or ''}".rstrip())


def print_listing(rows: list[dict[str, Any]], output: str) -> None:
    """The rows of ``list``: JSON, or a table as wide as a pipe needs."""
    if output == "json":
        import json

        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    images = sum(row["kind"] == "image" for row in rows)
    table = Table(title=f"{images} images{and_charts(len(rows) - images)}")
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


def print_contents(contents: ArchiveContents, output: str) -> None:
    """What ``inspect`` found in an archive: JSON, or a headline and one line per image."""
    if output == "json":
        import json
        from dataclasses import asdict

        delta = contents.delta.as_json() if contents.delta else None
        document = {**asdict(contents), "delta": delta, "complete": contents.complete}
        click.echo(json.dumps(document, indent=2))
        return
    lock = (
        f"images.lock of {contents.lock_entries} entries"
        if contents.lock_entries is not None
        else "no images.lock"
    )
    charts = sum(image.kind == "chart" for image in contents.images)
    counted = f"{len(contents.images) - charts} images{and_charts(charts)}"
    click.echo(
        f"{contents.path}: OCI image layout ({contents.format}), {counted},"
        f" {size_text(contents.size)}; {lock}"
    )
    if contents.delta is not None:
        click.echo(delta_line(contents.delta))
    for image in contents.images:
        _print_image(image, size_text(image.size))
    for name in contents.not_in_archive:
        click.echo(f"not in the archive: {name}")


def _print_image(image: ArchivedImage, size: str) -> None:
    """One archived image's line, and its missing blobs or error below it."""
    kind = "helm chart" if image.kind == "chart" else _KINDS.get(image.media_type, image.media_type)
    platforms = f" [{', '.join(image.platforms)}]" if image.platforms else ""
    unlocked = " (not in images.lock)" if image.in_lock is False else ""
    in_base = f" (+{image.in_base} in the base)" if image.in_base else ""
    if image.attachment:
        unlocked = f" ({image.attachment})"
    click.echo(
        f"{image.name} {image.digest} {kind}{platforms}"
        f" {size} in {image.blobs} blobs{in_base}{unlocked}"
    )
    for digest in image.missing:
        click.echo(f"  missing: {digest}")
    if image.error:
        click.echo(f"  error: {image.error}")


def size_text(nbytes: int) -> str:
    """``nbytes`` as people read sizes (``1.2 GiB``, ``512 bytes``): the one size formatter of
    every summary line."""
    if nbytes < 1024:
        return f"{nbytes} bytes"
    value, units = nbytes / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def delta_line(delta: DeltaContents) -> str:
    """One line: a delta's base, and what it carries and relies on."""
    bases = " and ".join(map(str, delta.bases))
    return (
        f"delta on {bases}: carries {delta.carried} objects ({size_text(delta.carried_size)}),"
        f" relies on {delta.relied_on} ({size_text(delta.relied_on_size)})"
    )


def parts_line(listing: PartsList) -> str:
    """What a split wrote: the parts, their count and the whole archive's size."""
    last = listing.parts[-1].name
    return (
        f"{listing.archive}: {size_text(listing.size)} in {len(listing.parts)} parts"
        f" ({listing.parts[0].name} … {last}, at most {size_text(listing.split_size)} each),"
        f" listed in {listing.archive}.parts.json"
    )


def saved_archive_line(path: Path) -> str:
    """What ``save`` wrote: the archive's size on disk (or its parts), and for a delta what
    its base saved."""
    from mirror.delta import archive_size, read_delta
    from mirror.transports.layout import TarStorage, open_layout

    layout = open_layout(path)  # a split save's parts, if it wrote parts
    split = layout.storage.split if isinstance(layout.storage, TarStorage) else None
    line = parts_line(split.listing) if split else f"{path}: {size_text(archive_size(path))}"
    delta = read_delta(layout)
    if delta is None:
        return line
    bases = " and ".join(map(str, delta.bases))
    return (
        f"{line}, a delta carrying {delta.carried} objects; {bases} saved"
        f" {size_text(delta.relied_on_size)} ({delta.relied_on} objects it holds)"
    )
