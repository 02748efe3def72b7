"""deploy as a Helm release: what Helm itself sees, ownership, hooks, upgrades, rollbacks, remove.

Each scenario runs on the fake API server through both the ``kubernetes`` client (deploy's
cluster layer) and Helm's client-go (helm-python), and on a real cluster when one is given.
Helm's own view of the release is read with helm-python, as ``helm list``/``history`` would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.deploycli import MINI_MESH, R, apply_mesh, ok, one_line_error, run_deploy
from tests.fakekube.fixtures import KubeUnderTest

RELEASE = "nginx-service-mesh"
Obj = dict[str, Any]


@pytest.fixture
def fake(fake_kube: KubeUnderTest) -> Iterator[KubeUnderTest]:
    """The fake cluster, with its store at hand."""
    assert fake_kube.server is not None
    yield fake_kube


def helm_list(kube: KubeUnderTest, namespace: str) -> list[dict[str, Any]]:
    with kube.helm_config(namespace) as helm:
        return list(helm.list(all_states=True))


def helm_history(kube: KubeUnderTest, namespace: str) -> list[tuple[int, str]]:
    with kube.helm_config(namespace) as helm:
        return [(r["revision"], r["status"]) for r in helm.history(RELEASE)]


def release_secrets(kube: KubeUnderTest, namespace: str) -> list[str]:
    found = kube.list("v1", "Secret", namespace, "owner=helm")
    return sorted(s["metadata"]["name"] for s in found)


def remove(kube: KubeUnderTest, namespace: str, *extra: str) -> Any:
    return ok(run_deploy("remove", "--namespace", namespace, *kube.cli_args(), *extra))


def test_apply_makes_a_release_helm_lists_with_the_labelled_secret_in_it(
    kube: KubeUnderTest,
) -> None:
    ns = kube.ns("mesh")
    result = apply_mesh(kube, ns)
    assert f"installed: Helm release {RELEASE} revision 1 in {ns}" in result.stdout
    [listed] = helm_list(kube, ns)
    assert (listed["name"], listed["status"], listed["revision"]) == (RELEASE, "deployed", 1)
    assert (listed["chart_name"], listed["chart_version"]) == ("mini-mesh", "2.0.0")
    with kube.helm_config(ns) as helm:
        manifest = helm.status(RELEASE)["manifest"]
        values = helm.get_values(RELEASE)
    stored = [d for d in yaml.safe_load_all(manifest) if d]
    [secret] = [d for d in stored if d["kind"] == "Secret"]
    assert secret["metadata"]["labels"]["usage"] == "nginx-mesh-registry-key"
    assert values["registry"]["server"] == R and values["registry"]["username"] == "u"
    live = kube.get("v1", "Secret", "nginx-mesh-registry-key", ns)
    assert live is not None and live["type"] == "kubernetes.io/dockerconfigjson"
    assert "pw" not in result.output


def test_an_object_another_tool_made_is_refused_before_anything_changes(
    fake: KubeUnderTest,
) -> None:
    fake.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "nginx-mesh-controller"},
            "rules": [],
        }
    )
    assert fake.server is not None
    writes = len(fake.server.mutations())
    result = run_deploy(
        "apply", "--registry-server", R, "--chart", MINI_MESH, "--skip-preflight",
        *fake.cli_args(),
    )  # fmt: skip
    error = one_line_error(result, 1)
    assert "ClusterRole nginx-mesh-controller" in error and "--take-ownership" in error
    assert fake.server.mutations()[writes:] == []
    assert fake.get("v1", "Namespace", "nginx-mesh") is None

    ok(
        run_deploy(
            "apply", "--registry-server", R, "--chart", MINI_MESH, "--skip-preflight",
            "--take-ownership", *fake.cli_args(),
        )
    )  # fmt: skip
    role = fake.get("rbac.authorization.k8s.io/v1", "ClusterRole", "nginx-mesh-controller")
    assert role is not None
    assert role["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE


def test_remove_never_deletes_an_object_the_release_does_not_own(kube: KubeUnderTest) -> None:
    ns = kube.ns("mesh")
    apply_mesh(kube, ns)
    look_alike = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": f"nginx-mesh-look-alike{kube.suffix}",
            "labels": {
                "app.kubernetes.io/part-of": "nginx-service-mesh",
                "app.kubernetes.io/managed-by": "meshlift",
            },
        },
        "rules": [],
    }
    kube.create(look_alike)
    remove(kube, ns)
    name = look_alike["metadata"]["name"]
    assert kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", name) is not None
    assert kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", "nginx-mesh-controller") is None
    assert release_secrets(kube, ns) == []


def test_a_completed_hook_job_of_an_earlier_run_is_not_this_runs_success(
    fake: KubeUnderTest,
) -> None:
    assert fake.server is not None
    ns = fake.create_namespace("nginx-mesh")
    fake.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "check-cluster", "namespace": ns},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": f"{R}/kubectl"}],
                    }
                }
            },
        }
    )
    fake.server.store.set_job_outcome("check-cluster", "Failed")
    result = run_deploy(
        "apply", "--registry-server", R, "--chart", MINI_MESH, "--skip-preflight",
        "--timeout", "30s", *fake.cli_args(),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "check-cluster" in result.stderr
    assert helm_list(fake, ns) == []  # the failed install was uninstalled


def test_resource_policy_keep_is_honoured_by_remove(fake: KubeUnderTest, tmp_path: Any) -> None:
    manifests = tmp_path / "mesh.yaml"
    manifests.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": "kept",
                        "annotations": {"helm.sh/resource-policy": "keep"},
                    },
                    "data": {"a": "b"},
                },
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "dropped"},
                    "data": {"a": "b"},
                },
            ]
        )
    )
    ok(
        run_deploy(
            "apply", "--registry-server", R, "--manifests", str(manifests), "--skip-preflight",
            *fake.cli_args(),
        )
    )  # fmt: skip
    removed = remove(fake, "nginx-mesh")
    assert fake.get("v1", "ConfigMap", "kept", "nginx-mesh") is not None
    assert fake.get("v1", "ConfigMap", "dropped", "nginx-mesh") is None
    assert (
        "kept       Namespace nginx-mesh: deploy apply created it, but 1 other object(s) remain:"
        in removed.stdout
    )


def test_a_failed_upgrade_is_rolled_back_naming_the_workload(fake: KubeUnderTest) -> None:
    assert fake.server is not None
    apply_mesh(fake, "nginx-mesh")
    fake.server.store.pull_errors[f"{R}/nginx-mesh-controller:2.0.1"] = "manifest unknown"
    started = time.monotonic()
    result = run_deploy(
        "apply", "--registry-server", R, "--chart", MINI_MESH, "--skip-preflight",
        "--image-tag", "2.0.1", "--timeout", "5m", *fake.cli_args(),
    )  # fmt: skip
    took = time.monotonic() - started
    error = one_line_error(result, 1, only=False)
    assert "Deployment nginx-mesh/nginx-mesh-controller did not roll out" in error
    assert "ImagePullBackOff" in error
    assert took < 60, f"{took:.1f} s"
    assert helm_history(fake, "nginx-mesh") == [(1, "superseded"), (2, "failed"), (3, "deployed")]
    deployment = fake.get("apps/v1", "Deployment", "nginx-mesh-controller", "nginx-mesh")
    assert deployment is not None
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{R}/nginx-mesh-controller:2.0.0"


def test_history_and_rollback_to_a_revision(kube: KubeUnderTest) -> None:
    ns = kube.ns("mesh")
    apply_mesh(kube, ns)
    apply_mesh(kube, ns, "--set", "accessControlMode=deny")
    at = ["--namespace", ns, *kube.cli_args()]
    rolled = ok(run_deploy("rollback", "1", *at))
    assert "now revision 3" in rolled.stdout
    shown = ok(run_deploy("history", "--output", "json", *at))
    rows = yaml.safe_load(shown.stdout)
    assert [(r["revision"], r["status"]) for r in rows] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]
    assert rows[2]["description"] == "Rollback to 1" and rows[0]["chart"] == "mini-mesh-2.0.0"
    with kube.helm_config(ns) as helm:
        assert "accessControlMode" not in helm.get_values(RELEASE)  # revision 1's values
    remove(kube, ns)


def test_an_upgrade_keeps_the_release_values_unless_reset(kube: KubeUnderTest) -> None:
    ns = kube.ns("mesh")
    apply_mesh(kube, ns, "--set", "accessControlMode=deny")
    again = ["apply", "--registry-server", R, "--chart", MINI_MESH, "--skip-preflight",
             "--namespace", ns, *kube.cli_args()]  # fmt: skip
    ok(run_deploy(*again))
    with kube.helm_config(ns) as helm:
        kept = helm.get_values(RELEASE)
    assert kept["accessControlMode"] == "deny"
    assert kept["registry"]["username"] == "u"  # credentials kept, as nginx-meshctl upgrade
    ok(run_deploy(*again, "--reset-values"))
    with kube.helm_config(ns) as helm:
        reset = helm.get_values(RELEASE)
    assert "accessControlMode" not in reset
    remove(kube, ns)


def test_apply_right_after_remove_installs_anew(fake: KubeUnderTest) -> None:
    assert fake.server is not None
    fake.server.store.namespace_delay = 1.5
    apply_mesh(fake, "nginx-mesh")
    remove(fake, "nginx-mesh")
    again = apply_mesh(fake, "nginx-mesh")
    assert "waiting for Namespace nginx-mesh to finish terminating" in again.stderr
    assert f"installed: Helm release {RELEASE} revision 1" in again.stdout
    assert helm_history(fake, "nginx-mesh") == [(1, "deployed")]


def test_a_mesh_applied_before_releases_is_refused_with_the_command_to_adopt_it(
    fake: KubeUnderTest,
) -> None:
    ns = fake.create_namespace("nginx-mesh")
    fake.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "meshlift-deploy", "namespace": ns},
            "data": {},
        }
    )
    result = run_deploy(
        "apply", "--registry-server", R, "--chart", MINI_MESH, "--skip-preflight",
        *fake.cli_args(),
    )  # fmt: skip
    assert "deploy apply --take-ownership" in one_line_error(result, 1)
    adopted = apply_mesh(fake, ns, "--take-ownership")
    assert "installed" in adopted.stdout
    assert fake.get("v1", "ConfigMap", "meshlift-deploy", ns) is None


POLICY_API = "admissionregistration.k8s.io/v1"


def test_enforce_registry_puts_the_admission_policy_in_the_release(fake: KubeUnderTest) -> None:
    apply_mesh(fake, "nginx-mesh", "--enforce-registry", "deny")
    policy = fake.get(POLICY_API, "ValidatingAdmissionPolicy", "nginx-mesh-registry-only")
    binding = fake.get(POLICY_API, "ValidatingAdmissionPolicyBinding", "nginx-mesh-registry-only")
    assert policy is not None and binding is not None
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    apply_mesh(fake, "nginx-mesh")  # revision 2: no policy asked for, so it goes
    assert fake.get(POLICY_API, "ValidatingAdmissionPolicy", "nginx-mesh-registry-only") is None
    ok(run_deploy("rollback", "1", *fake.cli_args()))  # and a rollback restores it
    assert fake.get(POLICY_API, "ValidatingAdmissionPolicy", "nginx-mesh-registry-only")
    remove(fake, "nginx-mesh")
    assert fake.get(POLICY_API, "ValidatingAdmissionPolicy", "nginx-mesh-registry-only") is None
    assert (
        fake.get(POLICY_API, "ValidatingAdmissionPolicyBinding", "nginx-mesh-registry-only") is None
    )


def test_a_cluster_without_the_policy_api_warns_and_goes_on_or_refuses_deny(
    fake: KubeUnderTest,
) -> None:
    assert fake.server is not None
    store = fake.server.store
    for plural in ("validatingadmissionpolicies", "validatingadmissionpolicybindings"):
        del store.types[("admissionregistration.k8s.io", "v1", plural)]
    refused = run_deploy(
        "apply", "--registry-server", R, "--chart", MINI_MESH, "--skip-preflight",
        "--enforce-registry", "deny", *fake.cli_args(),
    )  # fmt: skip
    assert "does not serve ValidatingAdmissionPolicy" in one_line_error(refused, 1)
    assert fake.server.mutations() == []
    warned = apply_mesh(fake, "nginx-mesh", "--enforce-registry", "warn")
    assert "going on without the policy" in warned.stderr
    assert helm_history(fake, "nginx-mesh") == [(1, "deployed")]


def test_a_kind_remove_may_not_list_keeps_the_namespace(fake: KubeUnderTest) -> None:
    assert fake.server is not None
    apply_mesh(fake, "nginx-mesh")
    fake.server.store.unlistable.add("poddisruptionbudgets")
    removed = remove(fake, "nginx-mesh")
    assert "may not list PodDisruptionBudget (policy/v1), so more may remain" in removed.stdout
    assert fake.get("v1", "Namespace", "nginx-mesh") is not None


def test_without_helms_library_every_release_command_refuses_in_one_line(
    fake: KubeUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deploy.release.helm

    monkeypatch.setattr(deploy.release.helm, "helm_library", lambda: None)
    for command in (["apply", "--registry-server", R, "--chart", MINI_MESH], ["remove"],
                    ["history"], ["rollback"], ["status"]):  # fmt: skip
        result = run_deploy(*command, *fake.cli_args())
        error = one_line_error(result, 2)
        assert "helm-python-sdk" in error and "helm binary" in error, error
    assert fake.server is not None and fake.server.mutations() == []


def test_remove_names_the_workloads_still_running_the_sidecar(fake: KubeUnderTest) -> None:
    apply_mesh(fake, "nginx-mesh")
    apps = fake.create_namespace("apps")
    spec = {
        "replicas": 0,  # the test makes the Pod itself
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
        },
    }
    deployment = fake.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": apps},
            "spec": spec,
        }
    )
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    fake.create(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "web-5d9",
                "namespace": apps,
                "ownerReferences": [{**owner, "uid": deployment["metadata"]["uid"]}],
            },
            "spec": spec,
        }
    )
    fake.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-5d9-abcde",
                "namespace": apps,
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9", "uid": "u1"}
                ],
            },
            "spec": {
                "containers": [
                    {"name": "web", "image": "web:1"},
                    {"name": "nginx-mesh-sidecar", "image": f"{R}/nginx-mesh-sidecar:2.0.0"},
                ]
            },
        }
    )
    removed = remove(fake, "nginx-mesh")
    assert f"re-roll    Deployment {apps}/web: it still runs the mesh's sidecar" in removed.stdout


def test_a_stale_progress_deadline_is_not_this_rollouts_failure(fake: KubeUnderTest) -> None:
    assert fake.server is not None
    store = fake.server.store
    store.stalled.add("nginx-mesh-controller")
    apply_mesh(fake, "nginx-mesh", "--no-wait")  # revision 1 stalled past its deadline
    store.stalled.clear()
    store.rollout_delay = 1.5  # the controller sees the new spec a moment after it is written
    upgraded = apply_mesh(fake, "nginx-mesh", "--image-tag", "2.0.1")
    assert "upgraded: Helm release nginx-service-mesh revision 2" in upgraded.stdout


def test_a_failing_pod_of_the_previous_replicaset_is_not_this_rollouts_failure(
    fake: KubeUnderTest,
) -> None:
    assert fake.server is not None
    store = fake.server.store
    store.pull_errors[f"{R}/nginx-mesh-controller:2.0.0"] = "manifest unknown"
    apply_mesh(fake, "nginx-mesh", "--no-wait")
    store.rollout_delay = 1.0  # the old ReplicaSet's failing pod outlives the new rollout a while
    upgraded = apply_mesh(fake, "nginx-mesh", "--image-tag", "2.0.1")
    assert "upgraded: Helm release nginx-service-mesh revision 2" in upgraded.stdout


def test_a_failed_pre_delete_hook_is_not_hidden_by_an_earlier_runs_job(fake: KubeUnderTest) -> None:
    assert fake.server is not None
    apply_mesh(fake, "nginx-mesh")
    fake.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "turn-proxies-transparent", "namespace": "nginx-mesh"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": f"{R}/kubectl"}],
                    }
                }
            },
        }
    )  # completed, left by an earlier run
    fake.server.store.set_job_outcome("turn-proxies-transparent", "Failed")
    result = run_deploy("remove", "--timeout", "30s", *fake.cli_args())
    assert "turn-proxies-transparent" in one_line_error(result, 1)
    assert helm_list(fake, "nginx-mesh") != []  # the release is still there to remove again
