"""Helm's action layer, in-process: every release action of ``helm_python`` is called here.

The release is ``nginx-service-mesh`` in the mesh's namespace, stored as Helm stores it (its
Secrets, ``sh.helm.release.v1.*``), so ``helm list``, ``helm history``, ``helm rollback`` and
``nginx-meshctl upgrade``/``remove`` see the same release.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from deploy.chart.render import helm_library
from deploy.chart.settings import RELEASE
from deploy.chart.values import one_line
from deploy.errors import ClusterError, InputError

Release = dict[str, Any]

log = logging.getLogger(__name__)

NO_LIBRARY = (
    "deploy needs Helm's action layer: helm-python-sdk (wheels for Linux x86_64 and macOS arm64)"
    " does not load here; install it on one of those, or render with `deploy render` and install"
    " the output with a helm binary"
)


def library() -> ModuleType:
    """``helm_python``, or an InputError naming both ways to get a working Helm."""
    helm = helm_library()
    if helm is None:
        raise InputError(NO_LIBRARY)
    return helm


def _options(timeout: float, wait: bool, adopt: bool, description: str) -> dict[str, Any]:
    """The options of an install or upgrade, named as Helm's native call names them."""
    options: dict[str, Any] = {
        "timeout_seconds": max(1, int(timeout)),
        "wait": "watcher" if wait else "hookOnly",  # every resource, or hooks only
        "description": description,
    }
    if adopt:
        options.update(take_ownership=True, force_conflicts=True)
    return options


class Releases:
    """The mesh's Helm release in one namespace, through one Helm configuration."""

    def __init__(
        self,
        kubeconfig: str | None,
        context: str | None,
        namespace: str,
        name: str = RELEASE,
    ) -> None:
        self.helm = library()
        self.name = name
        self.namespace = namespace
        self._config = self.helm.Config(
            kubeconfig_path=kubeconfig, kube_context=context, namespace=namespace
        )
        self._context: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> Releases:
        return self

    def __exit__(self, *exc: object) -> None:
        self._config.close()

    @property
    def config(self) -> Any:
        """The ``helm_python.Config`` (for cluster-aware rendering)."""
        return self._config

    def _call(self, action: str, run: Callable[[], Any]) -> Any:
        helm = self.helm
        try:
            return run()
        except helm.HelmError as exc:  # a cancelled action too: its message says why
            raise ClusterError(f"helm {action} {self.name}: {one_line(str(exc))}") from None

    def history(self) -> list[Release]:
        """Every stored revision, oldest first (empty when there is no release)."""
        try:
            found: list[Release] = self._call("history", lambda: self._config.history(self.name))
        except ClusterError:
            if self._exists():
                raise
            return []
        return found

    def _exists(self) -> bool:
        names = self._call("list", lambda: self._config.list(all_states=True))
        return any(r.get("name") == self.name for r in names)

    def revision(self, revision: int) -> Release:
        """One revision's summary with its description and the chart's appVersion."""
        stored = self._call("get", lambda: self._config.get_all(self.name, revision=revision))
        meta = self._call(
            "get metadata", lambda: self._config.get_metadata(self.name, revision=revision)
        )
        info = stored.get("info") or {}
        return {**stored.get("summary", {}), **info, "app_version": meta.get("appVersion", "")}

    def status(self) -> Release:
        """The latest revision, with its manifest."""
        found: Release = self._call("status", lambda: self._config.status(self.name))
        return found

    def user_values(self) -> dict[str, Any]:
        """The values the deployed revision was given (``helm get values``)."""
        found = self._call("get values", lambda: self._config.get_values(self.name))
        return dict(found or {})

    def _run(self, action: str, start: Callable[[Any], Release]) -> Release:
        with self._lock:
            self._context = self.helm.HelmContext()
        try:
            return self._call(action, lambda: start(self._context))  # type: ignore[no-any-return]
        finally:
            with self._lock:
                self._context.close()
                self._context = None

    def cancel(self) -> None:
        """Stop the install or upgrade under way (from any thread)."""
        with self._lock:
            if self._context is not None:
                self._context.cancel()

    def _release_action(
        self, native: str, chart: Path, values: dict[str, Any], options: dict[str, Any]
    ) -> Release:
        """Helm's install or upgrade action with ``options``, under a cancellable context.

        helm-python 0.2.2's ``Config.install``/``upgrade`` do not pass Helm's
        ``take_ownership`` and ``force_conflicts``, which its native call takes: this is that
        call, with them (the version is pinned in pyproject.toml).
        """
        from helm_python import _native

        def start(context: Any) -> Release:
            payload = _native.call_string(
                native,
                self._config._raw(),
                context._raw(),
                _native.HANDLE(0),
                str(chart),
                self.name,
                json.dumps(values),
                json.dumps({"namespace": self.namespace, **options}),
            )
            found: Release = json.loads(payload)
            return found

        return self._run(native.removeprefix("helm_"), start)

    def install(
        self, chart: Path, values: dict[str, Any], timeout: float, *, wait: bool, adopt: bool
    ) -> Release:
        """``helm install``: hooks run; with ``wait``, every resource waited for (watcher).

        ``adopt``: Helm's ``--take-ownership`` (and its server-side apply takes the fields).
        """
        options = _options(timeout, wait, adopt, "Install complete (meshlift)")
        return self._release_action("helm_install", chart, values, options)

    def upgrade(
        self, chart: Path, values: dict[str, Any], timeout: float, *, wait: bool, adopt: bool
    ) -> Release:
        """``helm upgrade`` with exactly ``values``: what the chart no longer renders is deleted."""
        options = _options(timeout, wait, adopt, "Upgrade complete (meshlift)")
        return self._release_action(
            "helm_upgrade", chart, values, {**options, "reset_values": True}
        )

    def rollback(self, revision: int | None, timeout: float) -> None:
        """``helm rollback`` to ``revision`` (None: the previous one), waiting for it."""
        self._call(
            "rollback",
            lambda: self._config.rollback(
                self.name, version=revision, timeout=max(1, int(timeout)), wait="watcher"
            ),
        )

    def uninstall(self, timeout: float) -> Release:
        """``helm uninstall --wait``: pre-delete hooks, the release's resources, post-delete."""
        found: Release = self._call(
            "uninstall",
            lambda: self._config.uninstall(self.name, timeout=max(1, int(timeout)), wait="watcher"),
        )
        return found
