"""deploy remove: everything meshlift made goes, nothing it did not make goes with it."""

from __future__ import annotations

from click.testing import Result

from tests.deploy.deploycli import apply_mesh, ok, run_deploy
from tests.fakekube.fixtures import KubeUnderTest

SELECTOR = "usage=nginx-mesh-registry-key"


def remove(kube: KubeUnderTest, namespace: str) -> Result:
    return ok(run_deploy("remove", "--namespace", namespace, *kube.cli_args()))


def secret(namespace: str, name: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    meta = {"name": name, "namespace": namespace, "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"k": "v"}}


def test_remove_deletes_what_apply_and_propagate_made_and_nothing_else(kube: KubeUnderTest) -> None:
    mesh = kube.ns("nginx-mesh")
    apps = kube.create_namespace("apps")
    # Secrets without the usage label, one even with the mesh Secret's name, stay.
    kube.create(secret(apps, "user-secret"))
    other = kube.create_namespace("other")
    kube.create(secret(other, "nginx-mesh-registry-key"))
    apply_mesh(kube, mesh)
    ok(run_deploy("propagate", "--mesh-namespace", mesh, "--namespace", apps, *kube.cli_args()))
    assert len(kube.list("v1", "Secret", None, SELECTOR)) == 2

    result = remove(kube, mesh)
    assert f"deleted    Secret {apps}/nginx-mesh-registry-key" in result.stdout
    assert f"uninstalled Helm release nginx-service-mesh in {mesh}" in result.stdout
    assert kube.get("apps/v1", "Deployment", "nginx-mesh-controller", mesh) is None
    assert kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", "nginx-mesh-controller") is None
    assert f"deleted    Namespace {mesh}" in result.stdout
    assert f"cleaned    ServiceAccount {apps}/default" in result.stdout

    assert kube.list("v1", "Secret", None, SELECTOR) == []  # kubectl get secrets -l ... -A
    assert kube.get("v1", "Secret", "user-secret", apps) is not None
    assert kube.get("v1", "Secret", "nginx-mesh-registry-key", other) is not None
    account = kube.get("v1", "ServiceAccount", "default", apps)
    assert account is not None
    assert not account.get("imagePullSecrets")
    assert "meshlift/added-pull-secret" not in (account["metadata"].get("labels") or {})
    if kube.is_fake:  # a real cluster takes its time to finish deleting a namespace
        assert kube.get("v1", "Namespace", mesh) is None


def test_a_namespace_apply_did_not_create_is_kept_and_its_contents_listed(
    kube: KubeUnderTest,
) -> None:
    mine = kube.create_namespace("mine", {"team": "a"})
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": mine},
        }
    )
    apply_mesh(kube, mine)
    result = remove(kube, mine)
    assert (
        f"kept       Namespace {mine}: deploy apply did not create it; 1 other object(s) remain:"
        f" ConfigMap {mine}/settings" in result.stdout
    )
    namespace = kube.get("v1", "Namespace", mine)
    assert namespace is not None
    assert namespace["metadata"]["labels"] == {"team": "a"}
    assert kube.get("v1", "ConfigMap", "settings", mine) is not None
    assert kube.get("apps/v1", "Deployment", "nginx-mesh-controller", mine) is None


def test_a_namespace_apply_created_is_kept_while_others_objects_are_in_it(
    kube: KubeUnderTest,
) -> None:
    mesh = kube.ns("nginx-mesh")
    apply_mesh(kube, mesh)
    kube.create(secret(mesh, "added-later"))
    result = remove(kube, mesh)
    assert (
        f"kept       Namespace {mesh}: deploy apply created it, but 1 other object(s) remain:"
        f" Secret {mesh}/added-later" in result.stdout
    )
    assert kube.get("v1", "Secret", "added-later", mesh) is not None
    # Once the user has cleaned up, remove finishes the job.
    kube.client.resources.get(api_version="v1", kind="Secret").delete(
        name="added-later", namespace=mesh
    )
    assert f"deleted    Namespace {mesh}" in remove(kube, mesh).stdout


def test_a_crd_with_someone_elses_custom_resources_is_kept(fake_kube: KubeUnderTest) -> None:
    apply_mesh(fake_kube, "nginx-mesh")
    apps = fake_kube.create_namespace("apps")
    fake_kube.create(
        {
            "apiVersion": "split.smi-spec.io/v1alpha3",
            "kind": "TrafficSplit",
            "metadata": {"name": "canary", "namespace": apps},
            "spec": {"service": "web"},
        }
    )
    result = remove(fake_kube, "nginx-mesh")
    assert (
        "kept       CustomResourceDefinition trafficsplits.split.smi-spec.io: 1 custom resource(s)"
        f" made by others remain, e.g. TrafficSplit {apps}/canary" in result.stdout
    )
    assert "deleted    CustomResourceDefinition httproutegroups.specs.smi-spec.io" in result.stdout
    assert fake_kube.get("split.smi-spec.io/v1alpha3", "TrafficSplit", "canary", apps) is not None


def test_remove_twice_and_remove_without_apply_are_harmless(fake_kube: KubeUnderTest) -> None:
    nothing = "no Helm release nginx-service-mesh in nginx-mesh"
    assert nothing in remove(fake_kube, "nginx-mesh").stdout
    apply_mesh(fake_kube, "nginx-mesh")
    remove(fake_kube, "nginx-mesh")
    again = remove(fake_kube, "nginx-mesh").stdout
    assert nothing in again and "0 more objects" in again
