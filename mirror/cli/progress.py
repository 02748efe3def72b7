"""What a run shows while it works: a live rich display, plain log lines, or only errors."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from mirror.cli.render import size_text
from mirror.report import ImageResult
from mirror.run import CopyJob

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

#: Columns from which the live display shows a bar and the elapsed time.
WIDE = 120
BAR_WIDTH = 24
#: The least a destination gets before the figures are cut.
NAME_WIDTH = 16


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

    def placed(self, job: CopyJob, nbytes: int, how: str) -> None:
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

    def list_failures(self, results: Sequence[ImageResult]) -> None:
        """Nothing more: each failure's line said why."""


class LiveProgress:
    """A rich live display: one row per image and a total row, each with its state, the bytes
    moved (and apart from them the bytes mounted or already present) and the speed.

    A failed row says ``failed``; why is listed below the display once it ends. Below
    WIDE columns the bar and the elapsed time are left out, and destinations are cut with an
    ellipsis, so every row keeps its figures on one line.
    """

    def __init__(self, console: Console, count: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )
        from rich.table import Column

        wide = console.width >= WIDE
        name = Column(ratio=1, no_wrap=True, overflow="ellipsis", min_width=NAME_WIDTH)
        columns: list[ProgressColumn] = [
            TextColumn("{task.description}", markup=False, table_column=name)
        ]
        if wide:
            columns.append(BarColumn(bar_width=BAR_WIDTH))
        columns += [
            DownloadColumn(binary_units=True, table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[placed]}", markup=False, table_column=Column(no_wrap=True)),
            TransferSpeedColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[state]}", markup=False, table_column=Column(no_wrap=True)),
        ]
        if wide:
            columns.append(TimeElapsedColumn(table_column=Column(no_wrap=True)))
        self._console = console
        self._progress = Progress(*columns, console=console, transient=False, expand=True)
        self._tasks: dict[CopyJob, TaskID] = {}
        self._placed: dict[TaskID, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._total = self._add(f"total ({count} images)", 0, "")
        self._progress.start()

    def _add(self, description: str, total: int | None, state: str) -> TaskID:
        task = self._progress.add_task(description, total=total, state=state, placed="")
        self._placed[task] = {}
        return task

    def started(self, job: CopyJob) -> None:
        """Add the image's row."""
        with self._lock:
            self._tasks[job] = self._add(str(job.destination), None, "checking")

    def sized(self, job: CopyJob, total: int) -> None:
        """Set the row's total and grow the overall total."""
        with self._lock:
            self._progress.update(self._tasks[job], total=total, state="copying")
            self._grow(self._total, total)

    def _grow(self, task: TaskID, nbytes: int) -> None:
        self._progress.update(task, total=(self._progress.tasks[task].total or 0) + nbytes)

    def advanced(self, job: CopyJob, nbytes: int) -> None:
        """Move the row and the total forward."""
        self._progress.advance(self._tasks[job], nbytes)
        self._progress.advance(self._total, nbytes)

    def placed(self, job: CopyJob, nbytes: int, how: str) -> None:
        """Take bytes mounted or present out of what the row and the total move; show them."""
        with self._lock:
            for task in (self._tasks[job], self._total):
                self._grow(task, -nbytes)
                placed = self._placed[task]
                placed[how] = placed.get(how, 0) + nbytes
                shown = ", ".join(f"{size_text(n)} {kind}" for kind, n in placed.items())
                self._progress.update(task, placed=f"({shown})")

    def finished(self, job: CopyJob, result: ImageResult) -> None:
        """Show the image's final state: its status word, nothing more."""
        task = self._tasks[job]
        total = self._progress.tasks[task].total or 0
        if result.status == "failed":
            self._progress.update(task, state="failed", total=total)
        else:
            self._progress.update(task, state=result.status, completed=total, total=total)

    def part(self, number: int, count: int, name: str) -> None:
        """Show on the total row the part of a split archive being read."""
        self._progress.update(self._total, state=f"part {number}/{count}")

    def close(self) -> None:
        """Stop the live display, leaving the final rows on screen."""
        self._progress.stop()

    def list_failures(self, results: Sequence[ImageResult]) -> None:
        """Below the display, why each failed image failed: one whole line each, in order."""
        for result in results:
            if result.status == "failed":
                self._console.print(
                    f"failed: {result.destination}: {result.error}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )


def choose_progress(quiet: bool, count: int) -> LineProgress | LiveProgress:
    """Live display on a terminal, plain lines otherwise, errors only with ``quiet``.

    rich is imported only for the live display: unattended runs start faster without it.
    """
    if quiet or not sys.stderr.isatty():
        return LineProgress(sys.stderr, quiet=quiet)
    from rich.console import Console

    return LiveProgress(Console(stderr=True), count)
