"""How a copy runs from the command line: signals, progress, once or on a schedule, exit code."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from mirror.cli.options import Duration, compose_options
from mirror.cli.render import publish
from mirror.errors import MirrorError

if TYPE_CHECKING:
    from mirror.net.retry import Cancellation
    from mirror.report import Report

#: A run: given the progress display and the copy options, it copies and reports.
Runner = Callable[[Any, Any], "Report"]

#: What an interrupted copy leaves as it was (its Interrupted message ends with this).
UNTAGGED = "unfinished images were not tagged"

schedule_options = compose_options(
    click.option(
        "--interval",
        type=Duration(input_error=True),
        metavar="DURATION",
        help="Run again every DURATION (6h, 10m) until SIGTERM.",
    ),
    click.option(
        "--jitter",
        type=Duration(input_error=True),
        metavar="DURATION",
        default="0",
        help="Add up to DURATION of random delay.",
    ),
    click.option(
        "--state-dir",
        metavar="DIR",
        help="Where the overlap lock lives (default: ~/.local/state/meshlift).",
    ),
    click.option("--wait-lock", is_flag=True, help="Wait for a running sync instead of exiting 0."),
    click.option(
        "--metrics-file", metavar="PATH", help="Write Prometheus text metrics here after each run."
    ),
)


@contextmanager
def signals(cancel: Cancellation, stop: threading.Event | None = None) -> Iterator[None]:
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


def finish(report: Report, output: str, report_path: str | None, quiet: bool) -> None:
    """Publish ``report``; exit 1 if anything in it failed."""
    if publish(report, output, report_path, quiet):
        sys.exit(1)


def _copy_once(
    runner: Runner, quiet: bool, output: str, count: int, cancel: Cancellation
) -> Report:
    """One run with the progress display ``--quiet``/``--output`` ask for."""
    from mirror.cli.progress import choose_progress
    from mirror.run import CopyOptions

    quiet = quiet or (output == "json" and not sys.stderr.isatty())
    progress = choose_progress(quiet, count)
    try:
        report = runner(progress, CopyOptions(cancel=cancel))
    finally:
        progress.close()
    progress.list_failures(report.results)
    return report


def run_copy(runner: Runner, quiet: bool, count: int, output: str, report_path: str | None) -> None:
    """Run ``runner`` once under signal handling, publish its report, exit 1 if it failed."""
    from mirror.net.retry import Cancellation

    cancel = Cancellation(UNTAGGED)
    with signals(cancel):
        report = _copy_once(runner, quiet, output, count, cancel)
    finish(report, output, report_path, quiet)


def run_scheduled(runner: Runner, params: dict[str, Any], count: int) -> None:
    """Run once, or every ``--interval`` until SIGTERM; one sync per destination at a time."""
    import hashlib
    from pathlib import Path

    from mirror.net.retry import Cancellation
    from mirror.schedule import default_state_dir, run_every, run_lock

    interval: float | None = params["interval"]
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
                report = _copy_once(runner, params["quiet"], params["output"], count, cancel)
            except MirrorError as exc:  # a cycle fails, the loop goes on
                if interval is None or cancel.signum is not None:
                    raise
                click.echo(f"Error: {exc}", err=True)
                failed = True
                return
        failed = publish(
            report, params["output"], params["report_path"], params["quiet"], params["metrics_file"]
        )

    with signals(cancel, stop):
        if interval is None:
            cycle()
        else:
            run_every(cycle, interval, params["jitter"], stop)
    if interval is None and failed:
        sys.exit(1)
