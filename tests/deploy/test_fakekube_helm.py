"""Helm's own client (client-go inside helm-python-sdk) against the fake API server.

A second, independent client: what it needs is what a real API server does (TLS and a bearer
token, watch-list bookmarks, OpenAPI v3, protobuf bodies, strict field validation).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chartrepo import official_chart
from tests.fakekube.fixtures import KubeUnderTest

RELEASE, NAMESPACE = "nginx-service-mesh", "nginx-mesh"
VALUES = {"registry": {"server": "reg.example/nsm", "disablePublicImages": True}}


@pytest.fixture
def chart() -> Path:
    return official_chart()


@pytest.fixture
def helm(fake_kube: KubeUnderTest) -> Iterator[Any]:
    with fake_kube.helm_config(NAMESPACE) as config:
        yield config


def install(helm: Any, chart: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    release: dict[str, Any] = helm.install(
        chart, RELEASE, values or VALUES, create_namespace=True, wait="watcher", timeout=60
    )
    return release


def test_helm_installs_the_official_chart(helm: Any, chart: Path) -> None:
    install(helm, chart)
    [listed] = helm.list()
    assert (listed["name"], listed["namespace"], listed["status"]) == (
        RELEASE,
        NAMESPACE,
        "deployed",
    )
    assert (listed["chart_name"], listed["chart_version"], listed["revision"]) == (
        "nginx-service-mesh",
        "2.0.0",
        1,
    )


def test_kubectl_lists_the_release_secret_helm_wrote(
    fake_kube: KubeUnderTest, helm: Any, chart: Path
) -> None:
    install(helm, chart)
    found = subprocess.run(
        ["kubectl", "--kubeconfig", str(fake_kube.kubeconfig), "get", "secrets", "-n", NAMESPACE,
         "-l", "owner=helm", "-o", "name"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert found.stdout.split() == [f"secret/sh.helm.release.v1.{RELEASE}.v1"]


def names(fake_kube: KubeUnderTest, api_version: str, kind: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in fake_kube.list(api_version, kind, NAMESPACE))


def test_helm_upgrade_rollback_and_uninstall_with_its_hooks(
    fake_kube: KubeUnderTest, helm: Any, chart: Path
) -> None:
    assert fake_kube.server is not None
    install(helm, chart)
    assert names(fake_kube, "apps/v1", "StatefulSet") == ["spire-server"]

    upgraded = helm.upgrade(
        chart,
        RELEASE,
        {**VALUES, "mtls": {"persistentStorage": "off"}},
        wait="watcher",
        timeout=60,
    )
    assert upgraded["revision"] == 2
    assert names(fake_kube, "apps/v1", "StatefulSet") == []
    assert "spire-server" in names(fake_kube, "apps/v1", "Deployment")

    helm.rollback(RELEASE, version=1)
    assert names(fake_kube, "apps/v1", "StatefulSet") == ["spire-server"]
    assert "spire-server" not in names(fake_kube, "apps/v1", "Deployment")
    history = [(h["revision"], h["status"]) for h in helm.history(RELEASE)]
    assert history == [(1, "superseded"), (2, "superseded"), (3, "deployed")]

    helm.uninstall(RELEASE, wait="watcher", timeout=60)
    jobs = [
        (event, obj["metadata"]["name"]) for event, obj in fake_kube.server.store.history("Job")
    ]
    assert jobs == [
        ("ADDED", "turn-proxies-transparent"),  # pre-delete
        ("DELETED", "turn-proxies-transparent"),
        ("ADDED", "remove-spiffeids"),  # post-delete
        ("DELETED", "remove-spiffeids"),
    ]
    assert helm.list() == []
    assert names(fake_kube, "apps/v1", "Deployment") == []
    assert fake_kube.list("v1", "Secret", NAMESPACE, "owner=helm") == []


def failed_install(
    fake_kube: KubeUnderTest, helm: Any, chart: Path, unpullable: str, timeout: int
) -> str:
    """Helm's error installing the chart while image ``unpullable`` cannot be pulled."""
    import helm_python as hp

    assert fake_kube.server is not None
    image = f"reg.example/nsm/{unpullable}:2.0.0"
    fake_kube.server.store.pull_errors[image] = f'pull access denied for "{image}"'
    with pytest.raises(hp.HelmError) as failed:
        helm.install(chart, RELEASE, VALUES, create_namespace=True, wait="watcher", timeout=timeout)
    return str(failed.value)


def test_an_image_that_cannot_be_pulled_fails_helms_wait(
    fake_kube: KubeUnderTest, helm: Any, chart: Path
) -> None:
    error = failed_install(fake_kube, helm, chart, "nginx-mesh-metrics", timeout=3)
    assert "Deployment/nginx-mesh/nginx-mesh-metrics not ready" in error
    assert "nginx-mesh-controller" not in error


def test_the_mesh_webhook_refuses_the_meshconfig_while_its_controller_has_no_ready_pod(
    fake_kube: KubeUnderTest, helm: Any, chart: Path
) -> None:
    error = failed_install(fake_kube, helm, chart, "nginx-mesh-controller", timeout=10)
    assert error == (
        "server-side apply failed for object nginx-mesh/nginx-mesh-config nsm.nginx.com/v1alpha2,"
        " Kind=MeshConfig: Internal error occurred: failed calling webhook"
        ' "nginx-mesh-controller.policy.validator": failed to call webhook: Post'
        ' "https://nginx-mesh-webhook.nginx-mesh.svc:443/validate?timeout=10s": no endpoints'
        ' available for service "nginx-mesh-webhook"'
    )


def test_an_unknown_field_in_a_template_is_refused_through_helm(
    fake_kube: KubeUnderTest, helm: Any, tmp_path: Path
) -> None:
    import helm_python as hp

    chart = tmp_path / "typo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: typo\nversion: 0.1.0\n")
    (chart / "templates" / "web.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "spec:\n  replica: 2\n  selector: {matchLabels: {app: web}}\n"
        "  template:\n    metadata: {labels: {app: web}}\n"
        "    spec: {containers: [{name: web, image: nginx, imagePullPolicyy: Always}]}\n"
    )
    with pytest.raises(hp.HelmError) as refused:
        helm.install(chart, "typo", create_namespace=True, wait="watcher", timeout=10)
    assert (
        "failed to create typed patch object (nginx-mesh/web; apps/v1, Kind=Deployment): errors:\n"
        "  .spec.replica: field not declared in schema\n"
        '  .spec.template.spec.containers[name="web"].imagePullPolicyy: field not declared in'
        " schema"
    ) in str(refused.value)
    assert fake_kube.list("apps/v1", "Deployment", NAMESPACE) == []


def test_helms_wait_outlasts_a_lagging_observed_generation(
    fake_kube: KubeUnderTest, helm: Any, chart: Path
) -> None:
    assert fake_kube.server is not None
    store = fake_kube.server.store

    def lagging() -> list[str]:
        """Workloads whose controller has not yet observed their spec, at this instant."""
        with store.changed:
            return [
                f"{obj['kind']}/{obj['metadata']['name']}"
                for plural in ("deployments", "statefulsets", "daemonsets")
                for obj in store.objects.get(("apps", plural), {}).values()
                if (obj.get("status") or {}).get("observedGeneration")
                != obj["metadata"]["generation"]
            ]

    install(helm, chart)  # at once: the MeshConfig needs the controller's pod ready
    store.rollout_delay = 1.0
    helm.upgrade(
        chart, RELEASE, {**VALUES, "mtls": {"persistentStorage": "off"}}, wait="watcher", timeout=60
    )
    assert lagging() == []
    helm.upgrade(chart, RELEASE, VALUES, timeout=60)  # no wait: Helm returns mid-rollout
    assert lagging() == ["StatefulSet/spire-server"]
