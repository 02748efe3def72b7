"""Helm hooks: never applied as objects; run at their phase by weight, deleted per policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.errors import ManifestError
from deploy.hooks import for_phase, parse_hook, split_hooks
from deploy.rewrite import image_uses, pod_specs
from tests.deploy.deploycli import MINI_MESH, R, apply_mesh, ok, one_line_error, run_deploy
from tests.fakekube.fixtures import KubeUnderTest

Obj = dict[str, Any]


def hook(name: str, phases: str, weight: str | None = None, kind: str = "Job") -> Obj:
    annotations = {"helm.sh/hook": phases}
    if weight is not None:
        annotations["helm.sh/hook-weight"] = weight
    meta = {"name": name, "annotations": annotations}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def test_hooks_split_from_objects_and_ordered_by_weight_then_kind_then_name() -> None:
    plain = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    objects = [
        hook("late", "pre-delete", "5"),
        plain,
        hook("b", "pre-delete,post-delete"),
        hook("a", "pre-delete"),
        hook("account", "pre-delete", "0", "ServiceAccount"),
        hook("early", "pre-delete", "-5"),
        hook("other", "post-install"),
    ]
    ordinary, hooks = split_hooks(objects)
    assert ordinary == [plain]
    ordered = [h.obj["metadata"]["name"] for h in for_phase(hooks, "pre-delete")]
    assert ordered == ["early", "account", "a", "b", "late"]
    assert [h.obj["metadata"]["name"] for h in for_phase(hooks, "post-delete")] == ["b"]
    assert parse_hook(hook("x", "pre-install")).policies == ("before-hook-creation",)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (hook("x", "pre-install", "heavy"), "Job x: helm.sh/hook-weight 'heavy' is not an integer"),
        (hook("x", "pre-instal"), "Job x: unknown helm.sh/hook phase 'pre-instal'"),
    ],
)
def test_bad_hook_annotations_are_manifest_errors(obj: Obj, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_hook(obj)


def added(kube: KubeUnderTest, kind: str) -> list[str]:
    assert kube.server is not None
    return [o["metadata"]["name"] for e, o in kube.server.store.history(kind) if e == "ADDED"]


def events(kube: KubeUnderTest) -> list[tuple[str, str, str]]:
    """(ADDED|DELETED, kind, name) of every object, in the order the fake cluster saw them."""
    assert kube.server is not None
    found: list[tuple[str, str, str]] = []
    for event in kube.server.store.events:
        if event.old is None or event.new is None:
            obj = event.new or event.old
            assert obj is not None
            kind = "ADDED" if event.old is None else "DELETED"
            found.append((kind, obj["kind"], obj["metadata"]["name"]))
    return found


def test_apply_runs_the_pre_install_hook_after_crds_namespace_and_secret(
    fake_kube: KubeUnderTest,
) -> None:
    result = apply_mesh(fake_kube, "nginx-mesh", "--disable-public-images")
    assert "pre-install hook: created Job nginx-mesh/check-cluster" in result.stdout
    assert "pre-install hook: Job nginx-mesh/check-cluster succeeded" in result.stdout
    assert (
        "pre-install hook: deleted Job nginx-mesh/check-cluster (hook-succeeded)" in result.stdout
    )
    seen = events(fake_kube)
    job = seen.index(("ADDED", "Job", "check-cluster"))
    assert (
        seen.index(("ADDED", "CustomResourceDefinition", "trafficsplits.split.smi-spec.io")) < job
    )
    assert seen.index(("ADDED", "Secret", "nginx-mesh-registry-key")) < job
    assert job < seen.index(("ADDED", "Deployment", "nginx-mesh-controller"))
    assert ("DELETED", "Job", "check-cluster") in seen
    assert fake_kube.server is not None
    (created,) = [o for e, o in fake_kube.server.store.history("Job") if e == "ADDED"]
    (spec,) = pod_specs(created)
    assert [u.image for u in image_uses(created)] == [f"{R}/kubectl"]
    assert spec["imagePullSecrets"] == [{"name": "nginx-mesh-registry-key"}]
    # Delete hooks are not run at apply, and no hook is left as an object.
    assert added(fake_kube, "Job") == ["check-cluster"]
    assert fake_kube.get("v1", "ServiceAccount", "post-delete", "nginx-mesh") is None

    again = apply_mesh(fake_kube, "nginx-mesh", "--disable-public-images")
    assert " hook: " not in again.stdout  # a re-apply is an upgrade: the chart has no upgrade hooks
    assert added(fake_kube, "Job") == ["check-cluster"]


def test_remove_runs_pre_delete_hooks_before_and_post_delete_hooks_after_deleting(
    fake_kube: KubeUnderTest,
) -> None:
    apply_mesh(fake_kube, "nginx-mesh", "--disable-public-images")
    before = len(events(fake_kube))
    result = ok(run_deploy("remove", *fake_kube.cli_args()))
    seen = events(fake_kube)[before:]
    pre = seen.index(("ADDED", "Job", "turn-proxies-transparent"))
    post = seen.index(("ADDED", "Job", "remove-spiffeids"))
    deployment = seen.index(("DELETED", "Deployment", "nginx-mesh-controller"))
    secret = seen.index(("DELETED", "Secret", "nginx-mesh-registry-key"))
    assert pre < seen.index(("DELETED", "Job", "turn-proxies-transparent")) < deployment
    assert deployment < secret < seen.index(("ADDED", "Secret", "nginx-mesh-registry-key")) < post
    assert post < seen.index(("DELETED", "Job", "remove-spiffeids"))
    assert seen[-1] == ("DELETED", "Namespace", "nginx-mesh")
    assert "pre-delete hook: Job nginx-mesh/turn-proxies-transparent succeeded" in result.stdout
    assert "post-delete hook: deleted Secret nginx-mesh/nginx-mesh-registry-key" in result.stdout
    assert fake_kube.server is not None
    secrets = [o for e, o in fake_kube.server.store.history("Secret") if e == "ADDED"]
    assert secrets[0]["data"] == secrets[1]["data"]  # the hook's Secret is ours, data included
    for _, job in fake_kube.server.store.history("Job"):
        assert all(u.image.startswith(f"{R}/") for u in image_uses(job))
    assert fake_kube.list("v1", "Secret", None, "usage=nginx-mesh-registry-key") == []


def test_a_failed_pre_delete_hook_stops_remove_and_names_the_job(fake_kube: KubeUnderTest) -> None:
    apply_mesh(fake_kube, "nginx-mesh")
    assert fake_kube.server is not None
    fake_kube.server.store.set_job_outcome("turn-proxies-transparent", "Failed")
    result = run_deploy("remove", *fake_kube.cli_args())
    assert one_line_error(result, 1, only=False) == (
        "Error: pre-delete hook Job nginx-mesh/turn-proxies-transparent failed:"
        " Job has reached the specified backoff limit"
    )
    assert "deleted Job nginx-mesh/turn-proxies-transparent (hook-failed)" in result.stdout
    assert fake_kube.get("apps/v1", "Deployment", "nginx-mesh-controller", "nginx-mesh")
    fake_kube.server.store.set_job_outcome("turn-proxies-transparent", "Complete")
    ok(run_deploy("remove", *fake_kube.cli_args()))
    assert fake_kube.get("apps/v1", "Deployment", "nginx-mesh-controller", "nginx-mesh") is None


def test_a_hook_job_that_never_ends_times_out_by_name(fake_kube: KubeUnderTest) -> None:
    apply_mesh(fake_kube, "nginx-mesh")
    assert fake_kube.server is not None
    fake_kube.server.store.set_job_outcome("remove-spiffeids", "Running")
    result = run_deploy("remove", "--timeout", "1s", *fake_kube.cli_args())
    line = one_line_error(result, 1, only=False)
    assert line == "Error: timed out waiting for Job nginx-mesh/remove-spiffeids"


def test_a_failed_pre_install_hook_stops_apply_before_the_workloads(
    fake_kube: KubeUnderTest,
) -> None:
    assert fake_kube.server is not None
    fake_kube.server.store.set_job_outcome("check-cluster", "Failed")
    result = run_deploy(
        "apply",
        "--registry-server",
        R,
        "--chart",
        MINI_MESH,
        "--skip-preflight",
        *fake_kube.cli_args(),
    )
    assert "pre-install hook Job nginx-mesh/check-cluster failed" in one_line_error(
        result, 1, False
    )
    assert fake_kube.get("apps/v1", "Deployment", "nginx-mesh-controller", "nginx-mesh") is None
    assert fake_kube.get("batch/v1", "Job", "check-cluster", "nginx-mesh") is not None  # no policy


RENDERED_WITH_HOOK = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations: {"helm.sh/hook": "pre-install,pre-upgrade"}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: "bitnami/kubectl:latest"}]
"""


def test_hooks_in_rendered_manifests_run_and_are_recreated_before_creation(
    fake_kube: KubeUnderTest, tmp_path: Path
) -> None:
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(RENDERED_WITH_HOOK)
    args = ["apply", "--registry-server", R, "--manifests", str(manifest), "--skip-preflight"]
    first = ok(run_deploy(*args, *fake_kube.cli_args()))
    assert "pre-install hook: created Job nginx-mesh/migrate" in first.stdout
    assert "created    Job" not in first.stdout
    second = ok(run_deploy(*args, *fake_kube.cli_args()))
    assert "pre-upgrade hook: deleted the previous Job nginx-mesh/migrate" in second.stdout
    assert "pre-upgrade hook: created Job nginx-mesh/migrate" in second.stdout
    assert added(fake_kube, "Job") == ["migrate", "migrate"]
    assert fake_kube.get("batch/v1", "Job", "migrate", "nginx-mesh") is not None
