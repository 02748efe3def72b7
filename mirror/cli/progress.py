"""What a run shows while it works: a live rich display, plain log lines, or only errors."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from mirror.report import ImageResult
from mirror.run import CopyJob

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


def _outcome(result: ImageResult) -> str:
    if result.status == "failed":
        return f"failed: {result.error}"
    parts: list[str] = [result.status]
    if result.status == "copied":
        parts.append(
            f"{result.bytes_uploaded} bytes uploaded, {result.blobs_uploaded} blobs uploaded,"
            f" {result.blobs_mounted} mounted, {result.blobs_present} present"
        )
    parts.extend(result.notes)
    return "; ".join(parts)


class LineProgress:
    """One plain line per image event, for logs and pipes; ``quiet`` keeps only failures."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._lock = threading.Lock()
        self._parts: set[int] = set()

    def _line(self, text: str) -> None:
        with self._lock:
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}", file=self.stream, flush=True)

    def started(self, job: CopyJob) -> None:
        """Log the start unless quiet."""
        if not self.quiet:
            self._line(f"{job.source} -> {job.destination}: started")

    def sized(self, job: CopyJob, total: int) -> None:
        """Sizes are not logged line by line."""

    def advanced(self, job: CopyJob, nbytes: int) -> None:
        """Bytes are not logged line by line."""

    def finished(self, job: CopyJob, result: ImageResult) -> None:
        """Log the outcome (always, when it failed)."""
        if not self.quiet or result.status == "failed":
            self._line(f"{job.source} -> {job.destination}: {_outcome(result)}")

    def part(self, number: int, count: int, name: str) -> None:
        """Log the first read of each part of a split archive, unless quiet."""
        if not self.quiet and number not in self._parts:
            self._parts.add(number)
            self._line(f"reading {name} (part {number}/{count})")

    def close(self) -> None:
        """Nothing to tear down."""


class LiveProgress:
    """A rich live display: one row per image (state, bytes, speed) and a total row."""

    def __init__(self, console: Console, count: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[state]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[CopyJob, TaskID] = {}
        self._lock = threading.Lock()
        self._total = self._progress.add_task(f"total ({count} images)", total=0, state="")
        self._progress.start()

    def started(self, job: CopyJob) -> None:
        """Add the image's row."""
        with self._lock:
            self._tasks[job] = self._progress.add_task(
                str(job.destination), total=None, state="checking"
            )

    def sized(self, job: CopyJob, total: int) -> None:
        """Set the row's total and grow the overall total."""
        task = self._tasks[job]
        self._progress.update(task, total=total, state="copying")
        with self._lock:
            grand = self._progress.tasks[self._total].total or 0
            self._progress.update(self._total, total=grand + total)

    def advanced(self, job: CopyJob, nbytes: int) -> None:
        """Move the row and the total forward."""
        self._progress.advance(self._tasks[job], nbytes)
        self._progress.advance(self._total, nbytes)

    def finished(self, job: CopyJob, result: ImageResult) -> None:
        """Show the image's final state."""
        task = self._tasks[job]
        state = "failed: " + (result.error or "") if result.status == "failed" else result.status
        total = self._progress.tasks[task].total
        self._progress.update(task, state=state, completed=total if total else 0, total=total or 1)

    def part(self, number: int, count: int, name: str) -> None:
        """Show on the total row the part of a split archive being read."""
        self._progress.update(self._total, state=f"part {number}/{count}")

    def close(self) -> None:
        """Stop the live display, leaving the final rows on screen."""
        self._progress.stop()


def choose_progress(quiet: bool, count: int) -> LineProgress | LiveProgress:
    """Live display on a terminal, plain lines otherwise, errors only with ``quiet``.

    rich is imported only for the live display: unattended runs start faster without it.
    """
    if quiet or not sys.stderr.isatty():
        return LineProgress(sys.stderr, quiet=quiet)
    from rich.console import Console

    return LiveProgress(Console(stderr=True), count)
