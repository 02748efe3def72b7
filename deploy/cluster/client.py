"""A thin layer over the ``kubernetes`` client: connect, read, apply, delete, watch.

Every API or connection failure leaves here as a :class:`ClusterError` (or a
:class:`ConfigError` for kubeconfig problems), with the API's own message and no traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from deploy.errors import ClusterError, ConfigError, WaitTimeout

Obj = dict[str, Any]

FIELD_MANAGER = "meshlift"
REQUEST_TIMEOUT = 30.0
UPDATE_ATTEMPTS = 5
DISCOVERY_RETRY = 0.5  # seconds between discovery requests while a new kind is not listed
DEFAULT_KUBECONFIG = "~/.kube/config"


def _kube(module: str) -> Any:
    """A ``kubernetes`` client module, typed loosely: the package is only partly annotated."""
    return importlib.import_module(f"kubernetes.{module}")


def _api_message(exc: Any) -> tuple[str, int | None]:
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    message = ""
    if body:
        try:
            decoded = json.loads(body)
            message = _field_conflicts(decoded) or str(decoded.get("message") or "")
        except (ValueError, AttributeError):
            message = ""
    return message or str(getattr(exc, "reason", "") or exc), status


def _field_conflicts(status: Obj) -> str:
    """A server-side apply conflict on one line: each manager and the fields it owns."""
    fields: dict[str, list[str]] = {}
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "FieldManagerConflict":
            manager = str(cause.get("message", "")).partition('"')[2].partition('"')[0]
            fields.setdefault(manager, []).append(str(cause.get("field", "")))
    return "; ".join(
        f'conflict with field manager "{manager}" on {", ".join(paths)}'
        for manager, paths in fields.items()
    )


@contextlib.contextmanager
def translate(action: str, host: str = "") -> Iterator[None]:
    """Turn client and connection exceptions raised inside into ClusterError naming ``action``."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        message, status = _api_message(exc)
        if status == 401:
            message = "the cluster refused our credentials: check --kubeconfig and --context"
        raise ClusterError(f"{action}: {message} (HTTP {status})", status) from None
    except HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        where = f" at {host}" if host else ""
        raise ClusterError(f"{action}: cannot reach the Kubernetes API{where}: {reason}") from None


def kubeconfig_path(explicit: str | None) -> str | None:
    """The kubeconfig to use: ``--kubeconfig``, ``KUBECONFIG``, ``~/.kube/config``, or None."""
    if explicit:
        missing = [p for p in explicit.split(os.pathsep) if p and not Path(p).is_file()]
        if missing:
            raise ConfigError(f"--kubeconfig {explicit}: no such file {missing[0]}")
        return explicit
    from_env = os.environ.get("KUBECONFIG")
    if from_env:
        return from_env
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    return str(default) if default.is_file() else None


def load_api_client(kubeconfig: str | None, context: str | None) -> Any:
    """An ``ApiClient`` from ``--kubeconfig``, ``KUBECONFIG``, ``~/.kube/config`` or in-cluster."""
    from kubernetes.config.config_exception import ConfigException

    client, config = _kube("client"), _kube("config")

    path = kubeconfig_path(kubeconfig)
    if path is None:
        if context:
            raise ConfigError(f"--context {context} needs a kubeconfig, and none was found")
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            raise ConfigError(
                "no kubeconfig: give --kubeconfig, set KUBECONFIG or create ~/.kube/config"
            ) from None
        return client.ApiClient(configuration)
    _check_kubeconfig(path)
    try:
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=path)
            names = [c["name"] for c in contexts or []]
            if context not in names:
                raise ConfigError(
                    f"--context {context}: not in {path} (contexts: {', '.join(names) or 'none'})"
                )
        return config.new_client_from_config(
            config_file=path, context=context, persist_config=False
        )
    except (ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"kubeconfig {path}: {exc}") from None


def _check_kubeconfig(path: str) -> None:
    """Refuse a kubeconfig that is not a YAML mapping with the client's usual sections."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"kubeconfig {path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"kubeconfig {path}: not valid YAML{line}") from None
    if not isinstance(doc, dict) or not any(k in doc for k in ("clusters", "contexts", "users")):
        raise ConfigError(f"kubeconfig {path}: not a kubeconfig (no clusters, contexts or users)")
    for key in ("clusters", "contexts", "users"):
        if not isinstance(doc.get(key, []), list):
            raise ConfigError(f"kubeconfig {path}: '{key}' must be a list")


class Cluster:
    """One cluster, reached with the ``DynamicClient`` (discovery cached per connection)."""

    def __init__(self, api_client: Any) -> None:
        dynamic = _kube("dynamic")
        self.api_client = api_client
        self.host = str(api_client.configuration.host)
        self._cache_dir = tempfile.mkdtemp(prefix="meshlift-discovery-")
        if os.environ.get("MESHLIFT_DEBUG") != "1":
            logging.getLogger("urllib3").setLevel(logging.ERROR)
        try:
            with translate("connecting", self.host):
                self.client = dynamic.DynamicClient(
                    api_client, cache_file=os.path.join(self._cache_dir, "discovery.json")
                )
        except BaseException:
            self.close()
            raise

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> Cluster:
        """Load the kubeconfig (see :func:`load_api_client`) and discover the API."""
        return cls(load_api_client(kubeconfig, context))

    def close(self) -> None:
        """Drop pooled connections and the discovery cache."""
        shutil.rmtree(self._cache_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            self.api_client.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- discovery ------------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Any:
        """The API resource serving ``kind`` in ``api_version``."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        with translate(f"finding {kind} ({api_version})", self.host):
            try:
                return self.client.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise ClusterError(f"the cluster does not serve {kind} ({api_version})") from None

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves ``kind`` in ``api_version``."""
        try:
            self.resource(api_version, kind)
        except ClusterError:
            return False
        return True

    def wait_served(self, api_version: str, kind: str, deadline: float) -> None:
        """Ask discovery again until it lists ``kind``; WaitTimeout at ``deadline``.

        A new CRD's kinds can reach discovery a moment after it is Established.
        """
        while not self.serves(api_version, kind):
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"timed out waiting for the cluster to serve {kind} ({api_version})"
                )
            time.sleep(DISCOVERY_RETRY)

    def namespaced_kinds(self) -> list[tuple[str, str]]:
        """Every namespaced (apiVersion, kind) the cluster can list, preferred versions only."""
        from kubernetes.dynamic.resource import Resource, ResourceList

        with translate("discovering API resources", self.host):
            found = {
                (r.group_version, r.kind)
                for r in self.client.resources.search()
                if isinstance(r, Resource)
                and not isinstance(r, ResourceList)
                and r.namespaced
                and r.preferred
                and "list" in (r.verbs or [])
            }
        return sorted(found)

    # --- reads ----------------------------------------------------------------------------------

    def kube_version(self) -> str:
        """The API server's version (``gitVersion`` of ``/version``)."""
        with translate("reading the server version", self.host):
            return str(self.client.version["kubernetes"]["gitVersion"])

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        """The object, or None when it does not exist."""
        resource = self.resource(api_version, kind)
        what = f"reading {kind} {_name(name, namespace if resource.namespaced else None)}"
        try:
            with translate(what, self.host):
                found = resource.get(
                    name=name,
                    namespace=namespace if resource.namespaced else None,
                    _request_timeout=REQUEST_TIMEOUT,
                )
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found.to_dict())

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Obj]:
        """Objects of ``kind`` (in ``namespace``, or everywhere), each with apiVersion and kind."""
        return self.list_with_version(api_version, kind, namespace, label_selector)[0]

    def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        """:meth:`list_objects` and the list's resourceVersion (to watch from)."""
        resource = self.resource(api_version, kind)
        where = f" in {namespace}" if namespace else ""
        with translate(f"listing {kind}{where}", self.host):
            found = resource.get(
                namespace=namespace if resource.namespaced else None,
                label_selector=label_selector,
                _request_timeout=REQUEST_TIMEOUT,
            ).to_dict()
        items = [{"apiVersion": api_version, "kind": kind, **i} for i in found.get("items") or []]
        return items, str((found.get("metadata") or {}).get("resourceVersion") or "")

    # --- writes ---------------------------------------------------------------------------------

    def apply(self, obj: Obj, *, force: bool) -> Obj:
        """Server-side apply ``obj`` as field manager ``meshlift``.

        With ``force``, fields other managers own are taken over; without, such a conflict is
        a ClusterError (409) naming each manager and field.
        """
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        namespace = meta.get("namespace") if resource.namespaced else None
        with translate(f"applying {obj['kind']} {_name(meta['name'], namespace)}", self.host):
            applied = resource.server_side_apply(
                body=obj,
                name=meta["name"],
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=force,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return dict(applied.to_dict())

    def create(self, obj: Obj) -> Obj:
        """Create ``obj``; a 409 ClusterError if it exists."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        namespace = meta.get("namespace") if resource.namespaced else None
        with translate(f"creating {obj['kind']} {_name(meta['name'], namespace)}", self.host):
            created = resource.create(
                body=obj,
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return dict(created.to_dict())

    def replace(self, obj: Obj) -> Obj:
        """Replace ``obj`` (its ``resourceVersion`` guards against lost updates: 409)."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        namespace = meta.get("namespace") if resource.namespaced else None
        with translate(f"updating {obj['kind']} {_name(meta['name'], namespace)}", self.host):
            replaced = resource.replace(
                body=obj,
                name=meta["name"],
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return dict(replaced.to_dict())

    def update(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        change: Callable[[Obj], bool],
    ) -> bool:
        """Read, ``change`` in place and replace the object, again when it changed meanwhile.

        False when it does not exist or ``change`` says there is nothing to change.
        """
        for _ in range(UPDATE_ATTEMPTS):
            obj = self.get(api_version, kind, name, namespace)
            if obj is None or not change(obj):
                return False
            try:
                self.replace(obj)
                return True
            except ClusterError as exc:
                if exc.status != 409:  # 409: changed since we read it; read it again
                    raise
        raise ClusterError(
            f"updating {kind} {_name(name, namespace)}: it kept changing under us; try again"
        )

    def create_or_update(self, obj: Obj, change: Callable[[Obj], bool]) -> bool:
        """Create ``obj`` where it is missing, else :meth:`update` it with ``change``.

        Also updates when another client creates it first (409). True if created or changed.
        """
        meta = obj["metadata"]
        key = (obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        if self.get(*key) is None:
            try:
                self.create(obj)
                return True
            except ClusterError as exc:
                if exc.status != 409:  # 409: made meanwhile; change that one
                    raise
        return self.update(*key, change)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete the object (dependents in the background); False if it was already gone."""
        resource = self.resource(api_version, kind)
        namespace = namespace if resource.namespaced else None
        try:
            with translate(f"deleting {kind} {_name(name, namespace)}", self.host):
                resource.delete(
                    name=name,
                    namespace=namespace,
                    propagation_policy="Background",
                    _request_timeout=REQUEST_TIMEOUT,
                )
        except ClusterError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- watch ----------------------------------------------------------------------------------

    def watch(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        name: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout: float = 60.0,
    ) -> Iterator[tuple[str, Obj]]:
        """(event type, object) pairs until ``timeout`` seconds pass on the server."""
        watch = _kube("watch")
        resource = self.resource(api_version, kind)
        seconds = max(1, int(timeout))
        watcher = watch.Watch()
        with translate(f"watching {kind}", self.host):
            stream = watcher.stream(
                resource.get,
                namespace=namespace if resource.namespaced else None,
                field_selector=f"metadata.name={name}" if name else None,
                label_selector=label_selector,
                resource_version=resource_version,
                serialize=False,
                timeout_seconds=seconds,
                _request_timeout=seconds + REQUEST_TIMEOUT,
            )
            try:
                for event in stream:
                    obj = event.get("raw_object") or event.get("object")
                    if isinstance(obj, dict):
                        yield str(event["type"]), {"apiVersion": api_version, "kind": kind, **obj}
            finally:
                watcher.stop()

    def wait_deleted(self, obj: Obj, deadline: float) -> None:
        """Watch ``obj`` until it is gone; WaitTimeout at ``deadline``."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        meta = obj["metadata"]
        namespace = meta.get("namespace")
        while (current := self.get(api_version, kind, meta["name"], namespace)) is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(
                    f"timed out waiting for {kind} {_name(meta['name'], namespace)} to go"
                )
            try:
                for event, _ in self.watch(
                    api_version,
                    kind,
                    namespace=namespace,
                    name=meta["name"],
                    resource_version=current["metadata"].get("resourceVersion"),
                    timeout=min(remaining, 60.0),
                ):
                    if event == "DELETED":
                        break
            except ClusterError as exc:
                if exc.status != 410:  # 410 Gone: read it again
                    raise

    def wait_for(
        self,
        obj: Obj,
        condition: Callable[[Obj], bool],
        deadline: float,
        on_change: Callable[[Obj], None] = lambda _: None,
        poll: float = 60.0,
    ) -> Obj:
        """Watch ``obj`` until ``condition`` holds for it; WaitTimeout at ``deadline``.

        ``condition`` is asked again at least every ``poll`` seconds, even without a change.
        """
        api_version, kind = obj["apiVersion"], obj["kind"]
        meta = obj["metadata"]
        what = f"{kind} {_name(meta['name'], meta.get('namespace'))}"
        current = self.get(api_version, kind, meta["name"], meta.get("namespace"))
        while True:
            if current is not None:
                on_change(current)
                if condition(current):
                    return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"timed out waiting for {what}")
            since = current["metadata"].get("resourceVersion") if current else None
            try:
                for event, found in self.watch(
                    api_version,
                    kind,
                    namespace=meta.get("namespace"),
                    name=meta["name"],
                    resource_version=since,
                    timeout=min(remaining, poll),
                ):
                    current = None if event == "DELETED" else found
                    if current is not None and condition(current):
                        break
                    if current is not None:
                        on_change(current)
            except ClusterError as exc:
                if exc.status != 410:  # 410 Gone: our resourceVersion expired; read it again
                    raise
                current = self.get(api_version, kind, meta["name"], meta.get("namespace"))


def _name(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name
