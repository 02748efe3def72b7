"""Pytest fixtures: a fake cluster per test, or a real one when MESHLIFT_E2E_KUBECONFIG is set.

``kube`` is parametrised over both; scenarios written against it run on the fake API server
always, and on the real cluster when asked. Tests that look inside the fake server (its
request log, readiness switch) use ``fake_kube`` directly.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakekube.server import FakeKubeServer

if TYPE_CHECKING:
    import helm_python as hp

E2E_ENV = "MESHLIFT_E2E_KUBECONFIG"
E2E_CONTEXT_ENV = "MESHLIFT_E2E_CONTEXT"
# The chart labels every object of the mesh so (nginx-meshctl remove finds its CRDs by it).
MESH_SELECTOR = "app.kubernetes.io/part-of=nginx-service-mesh"
Obj = dict[str, Any]


@dataclass
class KubeUnderTest:
    """A cluster for a test: its kubeconfig, and a plain client to look at it independently.

    ``ns(name)`` gives the namespace name to use: ``name`` on the fake cluster, made unique on a
    real one (where it is deleted at the end of the test).
    """

    kubeconfig: Path
    context: str | None
    workdir: Path
    server: FakeKubeServer | None = None
    suffix: str = ""
    created_namespaces: list[str] = field(default_factory=list)
    _client: Any = None

    @property
    def is_fake(self) -> bool:
        return self.server is not None

    def ns(self, name: str) -> str:
        full = f"{name}{self.suffix}"
        if full not in self.created_namespaces:
            self.created_namespaces.append(full)
        return full

    def cli_args(self) -> list[str]:
        """``--kubeconfig F [--context C]`` for a deploy command."""
        args = ["--kubeconfig", str(self.kubeconfig)]
        return args + (["--context", self.context] if self.context else [])

    @property
    def client(self) -> Any:
        if self._client is None:
            from kubernetes import config, dynamic

            api = config.new_client_from_config(
                str(self.kubeconfig), context=self.context, persist_config=False
            )
            cache = self.workdir / f"discovery-{uuid.uuid4().hex}.json"
            self._client = dynamic.DynamicClient(api, cache_file=str(cache))
        return self._client

    def helm_config(self, namespace: str) -> hp.Config:
        """A ``helm_python.Config`` on this cluster (kubeconfig and context), for ``namespace``.

        Close it (``with``) when done.
        """
        import helm_python

        return helm_python.Config(
            kubeconfig_path=self.kubeconfig, kube_context=self.context, namespace=namespace
        )

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.client.resources.get(api_version=api_version, kind=kind)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            found = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        return dict(found.to_dict())

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, selector: str | None = None
    ) -> list[Obj]:
        found = self._resource(api_version, kind).get(namespace=namespace, label_selector=selector)
        return [dict(item) for item in found.to_dict()["items"]]

    def create(self, obj: Obj) -> Obj:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace")
        return dict(resource.create(body=obj, namespace=namespace).to_dict())

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        """Create namespace ``ns(name)`` and return its name."""
        full = self.ns(name)
        meta: Obj = {"name": full, "labels": labels or {}}
        self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
        return full

    def cleanup(self) -> None:
        """On a real cluster: delete the test's namespaces and meshlift's cluster-wide objects."""
        if self.is_fake:
            return
        from kubernetes.dynamic.exceptions import DynamicApiError

        for name in self.created_namespaces:
            with contextlib.suppress(DynamicApiError):
                self._resource("v1", "Namespace").delete(name=name)
        for api_version, kind in (
            ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("storage.k8s.io/v1", "CSIDriver"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ):
            for obj in self.list(api_version, kind, selector=MESH_SELECTOR):
                with contextlib.suppress(DynamicApiError):
                    self._resource(api_version, kind).delete(name=obj["metadata"]["name"])


def when_watched(server: FakeKubeServer, then: Callable[[], None]) -> threading.Thread:
    """A started thread that calls ``then`` once ``server`` has seen a watch request."""

    def wait_then() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any("watch=" in r.query.lower() for r in server.requests):
                time.sleep(0.2)  # let the watch settle on the server
                then()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=wait_then)
    thread.start()
    return thread


@pytest.fixture
def fake_kube(tmp_path: Path) -> Iterator[KubeUnderTest]:
    """A fresh fake API server and a kubeconfig (context ``fake``) for it."""
    server = FakeKubeServer().start()
    try:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        yield KubeUnderTest(kubeconfig, None, tmp_path, server)
    finally:
        server.stop()


@pytest.fixture(params=["fake", pytest.param("e2e", marks=pytest.mark.e2e)])
def kube(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KubeUnderTest]:
    """The fake cluster, then (opt-in) the real cluster named by MESHLIFT_E2E_KUBECONFIG."""
    if request.param == "fake":
        yield request.getfixturevalue("fake_kube")
        return
    kubeconfig = os.environ.get(E2E_ENV)
    if not kubeconfig:
        pytest.skip(f"real-cluster run is opt-in: set {E2E_ENV} to a kubeconfig")
    under_test = KubeUnderTest(
        Path(kubeconfig),
        os.environ.get(E2E_CONTEXT_ENV),
        tmp_path,
        suffix=f"-{uuid.uuid4().hex[:6]}",
    )
    try:
        yield under_test
    finally:
        under_test.cleanup()
