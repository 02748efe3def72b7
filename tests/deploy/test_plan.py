"""The plan: labels, order, the Secret and the record; all of it valid Kubernetes."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from deploy.errors import InputError
from deploy.manifests import parse_documents
from deploy.order import rank
from deploy.plan import Settings, build_plan, plan_deploy
from deploy.record import Record
from mirror.image.lock import load_lock
from mirror.net.credentials import Credentials
from tests.deploy.deploycli import MINI_MESH

R = "reg.example:5000"


def plan_objects(**settings: Any) -> list[dict[str, Any]]:
    return list(plan_deploy(Settings.parse(R, **settings), chart=MINI_MESH).objects)


@pytest.mark.parametrize("environment", ["kubernetes", "openshift"])
def test_whole_plan_validates(environment: str) -> None:
    objects = plan_objects(
        credentials=Credentials("u", "p"), disable_public_images=True, environment=environment
    )
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_plan_is_in_dependency_order() -> None:
    kinds = [o["kind"] for o in plan_objects(credentials=Credentials("u", "p"))]
    ranks = [rank({"kind": k}) for k in kinds]
    assert ranks == sorted(ranks)
    first = {k: kinds.index(k) for k in reversed(kinds)}
    assert (
        first["CustomResourceDefinition"]
        < first["Namespace"]
        < first["ServiceAccount"]
        < first["ClusterRoleBinding"]
        < first["Secret"]
        < first["Service"]
        < first["Deployment"]
        < first["MutatingWebhookConfiguration"]
    )


def test_every_object_carries_our_labels() -> None:
    for obj in plan_objects():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "meshlift"
        assert labels["app.kubernetes.io/part-of"] == "nginx-service-mesh"


def test_record_lists_settings_and_kinds() -> None:
    settings = Settings.parse(R, disable_public_images=True, image_tag="2.0.1", namespace="mesh")
    plan = plan_deploy(settings, chart=MINI_MESH)
    objects = [*plan.objects, *(h.obj for h in plan.hooks)]
    (record_map,) = [o for o in objects if o["metadata"]["name"] == "meshlift-deploy"]
    record = Record.from_configmap(record_map)
    assert record.namespace == "mesh"
    assert record.registry_server == R
    assert record.image_tag == "2.0.1"
    assert record.disable_public_images
    assert ("apps/v1", "Deployment") in record.kinds
    assert ("v1", "Secret") not in record.kinds  # no credentials, no Secret
    assert {(o["apiVersion"], o["kind"]) for o in objects} == set(record.kinds)


def test_manifests_without_namespace_get_the_mesh_namespace_and_a_namespace_object() -> None:
    docs = parse_documents(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: b}\n",
        "test",
    )
    plan = build_plan(docs, load_lock(None).entries, Settings.parse(R, namespace="mesh"))
    found = {o["kind"]: o["metadata"] for o in plan.objects}
    assert found["ConfigMap"]["namespace"] == "mesh"
    assert "namespace" not in found["ClusterRole"]
    assert found["Namespace"]["name"] == "mesh"


def test_redacted_plan_has_no_secret_data() -> None:
    plan = plan_deploy(Settings.parse(R, Credentials("u", "s3cr3t-pw")), chart=MINI_MESH)
    shown = str(plan.redacted())
    (secret,) = [o for o in plan.redacted() if o["kind"] == "Secret"]
    assert secret["data"] == {".dockerconfigjson": "<redacted>"}
    assert "s3cr3t" not in shown


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"namespace": "Bad_NS"}, "invalid --namespace 'Bad_NS'"),
        ({"image_tag": "no spaces"}, "invalid --image-tag 'no spaces'"),
        ({"environment": "mars"}, "invalid --environment 'mars'"),
    ],
)
def test_bad_settings_are_input_errors(settings: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        Settings.parse(R, **settings)  # type: ignore[arg-type]


def test_chart_images_are_every_image_the_plan_pulls() -> None:
    plan = plan_deploy(Settings.parse(R, disable_public_images=True), chart=MINI_MESH)
    assert [str(ref) for ref in plan.pull_images()] == [
        f"{R}/curl:latest",
        f"{R}/kubectl:latest",
        f"{R}/nats:2.9-alpine",
        f"{R}/nginx-mesh-controller:2.0.0",
        f"{R}/nginx-mesh-init:2.0.0",
        f"{R}/nginx-mesh-metrics:2.0.0",
        f"{R}/nginx-mesh-sidecar:2.0.0",
        f"{R}/spire-agent:1.5.6",
    ]


def test_hooks_are_planned_apart_and_recorded_for_remove() -> None:
    plan = plan_deploy(Settings.parse(R, Credentials("u", "s3cr3t-pw")), chart=MINI_MESH)
    assert not any("helm.sh/hook" in (o["metadata"].get("annotations") or {}) for o in plan.objects)
    assert sorted(h.obj["metadata"]["name"] for h in plan.hooks) == [
        "check-cluster",
        "nginx-mesh-registry-key",
        "post-delete",
        "remove-spiffeids",
        "turn-proxies-transparent",
    ]
    (record_map,) = [o for o in plan.objects if o["metadata"]["name"] == "meshlift-deploy"]
    recorded = parse_documents(Record.from_configmap(record_map).hooks, "record")
    assert [o["metadata"]["name"] for o in recorded] == [
        "turn-proxies-transparent",
        "post-delete",
        "nginx-mesh-registry-key",
        "remove-spiffeids",
    ]
    assert recorded[2]["data"] == {".dockerconfigjson": "<redacted>"}
    assert "s3cr3t" not in str(recorded)
