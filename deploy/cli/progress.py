"""Rollouts shown on stderr while apply waits: the only place deploy uses rich."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from deploy.rollout import RolloutState


class RolloutProgress:
    """Rollouts on stderr: a live rich display on a terminal, else a line per change."""

    def __init__(self) -> None:
        from rich.console import Console

        self._console = Console(stderr=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._shown: dict[str, str] = {}

    def __call__(self, obj: dict[str, Any], state: RolloutState) -> None:
        from deploy.manifests import describe

        key = describe(obj)
        line = f"{'rolled out' if state.done else 'rolling out'} {key}: {state.detail}"
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
        self._progress.update(self._tasks[key], description=line, completed=state.done)

    def __enter__(self) -> RolloutProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()
