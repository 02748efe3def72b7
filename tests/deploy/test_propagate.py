"""deploy propagate: the Secret where injected workloads need it, and in their pull secrets."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import Result

from deploy.cluster.client import Cluster
from deploy.cluster.propagate import Propagated, watch_and_propagate
from tests.deploy.deploycli import R, apply_mesh, ok, one_line_error, run_deploy
from tests.fakekube.fixtures import KubeUnderTest

INJECT = {"injector.nsm.nginx.com/auto-inject": "enabled"}


def deploy_mesh(kube: KubeUnderTest) -> str:
    namespace = kube.ns("nginx-mesh")
    apply_mesh(kube, namespace)
    return namespace


def propagate(kube: KubeUnderTest, mesh: str, *args: str) -> Result:
    return run_deploy("propagate", "--mesh-namespace", mesh, *args, *kube.cli_args())


def test_propagate_copies_the_secret_and_uses_it_idempotently(kube: KubeUnderTest) -> None:
    mesh = deploy_mesh(kube)
    apps = kube.create_namespace("apps")
    first = ok(propagate(kube, mesh, "--namespace", apps))
    assert f"created    Secret {apps}/nginx-mesh-registry-key; default service account:" in (
        first.stdout
    )
    assert "pull secret added" in first.stdout
    original = kube.get("v1", "Secret", "nginx-mesh-registry-key", mesh)
    copy = kube.get("v1", "Secret", "nginx-mesh-registry-key", apps)
    assert original and copy
    assert copy["data"] == original["data"]
    assert copy["type"] == "kubernetes.io/dockerconfigjson"
    assert copy["metadata"]["labels"] == {
        "usage": "nginx-mesh-registry-key",
        "app.kubernetes.io/part-of": "nginx-service-mesh",
    }  # the labels remove finds it by, not Helm's: the copy is not the release's
    assert original["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    account = kube.get("v1", "ServiceAccount", "default", apps)
    assert account is not None
    assert account["imagePullSecrets"] == [{"name": "nginx-mesh-registry-key"}]

    again = ok(propagate(kube, mesh, "--namespace", apps))
    assert "unchanged  Secret" in again.stdout and "pull secret present" in again.stdout
    account = kube.get("v1", "ServiceAccount", "default", apps)
    assert account is not None and len(account["imagePullSecrets"]) == 1


def test_all_injected_finds_labelled_namespaces_and_sidecar_pods(kube: KubeUnderTest) -> None:
    mesh = deploy_mesh(kube)
    labelled = kube.create_namespace("labelled", INJECT)
    with_sidecar = kube.create_namespace("sidecar")
    other = kube.create_namespace("other")
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app", "namespace": with_sidecar},
            "spec": {
                "containers": [
                    {"name": "app", "image": "app:1"},
                    {"name": "nginx-mesh-sidecar", "image": f"{R}/nginx-mesh-sidecar:2.0.0"},
                ]
            },
        }
    )
    ok(propagate(kube, mesh, "--all-injected"))
    holders = {
        s["metadata"]["namespace"]
        for s in kube.list("v1", "Secret", None, "usage=nginx-mesh-registry-key")
    }
    assert {labelled, with_sidecar, mesh} <= holders
    assert other not in holders


def test_missing_namespace_fails_but_the_others_get_it(fake_kube: KubeUnderTest) -> None:
    mesh = deploy_mesh(fake_kube)
    apps = fake_kube.create_namespace("apps")
    result = propagate(fake_kube, mesh, "--namespace", "ghost", "--namespace", apps)
    assert result.exit_code == 1
    assert "failed     ghost: no such namespace" in result.stderr
    assert fake_kube.get("v1", "Secret", "nginx-mesh-registry-key", apps) is not None


def test_without_the_mesh_secret_propagate_says_what_to_do(fake_kube: KubeUnderTest) -> None:
    fake_kube.create_namespace("apps")
    result = propagate(fake_kube, "nginx-mesh", "--namespace", "apps")
    line = one_line_error(result, 1)
    assert (
        "no Secret nginx-mesh-registry-key in nginx-mesh: run `deploy apply` with registry" in line
    )


def test_propagate_needs_a_target(fake_kube: KubeUnderTest) -> None:
    result = propagate(fake_kube, "nginx-mesh")
    assert "give --namespace NS (repeatable) or --all-injected" in one_line_error(result, 2)
    assert fake_kube.server is not None and fake_kube.server.requests == []


def test_watch_propagates_into_namespaces_as_they_appear(kube: KubeUnderTest) -> None:
    mesh = deploy_mesh(kube)
    later = kube.ns("later")
    stop = threading.Event()
    results: list[Propagated] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with Cluster.connect(str(kube.kubeconfig), kube.context) as cluster:
                watch_and_propagate(cluster, mesh, [later], True, results.append, stop, resync=1)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    watcher = threading.Thread(target=run)
    watcher.start()
    try:
        time.sleep(0.3)
        kube.create_namespace("later")
        labelled = kube.create_namespace("labelled-later", INJECT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            kube.get("v1", "Secret", "nginx-mesh-registry-key", later)
            and kube.get("v1", "Secret", "nginx-mesh-registry-key", labelled)
        ):
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert not errors
    assert not watcher.is_alive()
    done = {r.namespace for r in results if not r.error}
    assert {later, labelled} <= done


@pytest.mark.parametrize("flag", ["--namespace", "--mesh-namespace"])
def test_bad_namespace_names_are_exit_2(fake_kube: KubeUnderTest, flag: str) -> None:
    result = run_deploy("propagate", flag, "Bad", "--all-injected", *fake_kube.cli_args())
    assert "must be a DNS label" in one_line_error(result, 2)
