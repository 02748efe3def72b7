"""What apply shows while Helm works: the phase, each workload's rollout, hooks and notes.

A live rich display on a terminal; plain lines, one per change, elsewhere (logs, CI).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from deploy.cluster.rollout import RolloutState


class ReleaseProgress:
    """Apply's progress on stderr; safe to call from the watching thread."""

    def __init__(self) -> None:
        from rich.console import Console

        self._console = Console(stderr=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._shown: dict[str, str] = {}
        self._lock = threading.Lock()

    def _line(self, key: str, line: str, done: bool = False) -> None:
        with self._lock:
            if not self._console.is_terminal:
                if self._shown.get(key) != line:
                    self._shown[key] = line
                    click.echo(line, err=True)
                return
            if self._progress is None:
                from rich.progress import Progress, SpinnerColumn, TextColumn

                self._progress = Progress(
                    SpinnerColumn(), TextColumn("{task.description}"), console=self._console
                )
                self._progress.start()
            if key not in self._tasks:
                self._tasks[key] = self._progress.add_task(line, total=1)
            self._progress.update(self._tasks[key], description=line, completed=done)

    def phase(self, text: str) -> None:
        """The step apply is at (CRDs, install or upgrade, rollback)."""
        self._line("phase", text)

    def rollout(self, obj: dict[str, Any], state: RolloutState) -> None:
        """One workload's rollout: ready of desired."""
        from deploy.chart.manifests import describe

        key = describe(obj)
        verb = "rolled out" if state.done else "rolling out"
        self._line(key, f"{verb} {key}: {state.detail}", state.done)

    def note(self, text: str) -> None:
        """A line worth keeping (a hook's state, ownership taken): printed above the display."""
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(text, highlight=False, markup=False)
            else:
                click.echo(text, err=True)

    def __enter__(self) -> ReleaseProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()
