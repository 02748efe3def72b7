"""The fake API server, through the real kubernetes client: what the deploy tests rely on."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
)

from tests.deploy.deploycli import MINI_MESH, R
from tests.fakekube.fixtures import KubeUnderTest, when_watched
from tests.fakekube.selectors import SelectorError, label_selector


def config_map(name: str, namespace: str = "default", **labels: str) -> dict[str, object]:
    meta = {"name": name, "namespace": namespace, "labels": labels}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def test_discovery_serves_every_kind_the_mesh_uses(fake_kube: KubeUnderTest) -> None:
    from deploy.chart.settings import Settings
    from deploy.postrender.plan import build_plan, load_rendered
    from mirror.image.lock import load_lock

    settings, lock = Settings.parse(R, environment="openshift"), load_lock(None)
    plan = build_plan(load_rendered(settings, lock, chart=MINI_MESH), lock.entries, settings)
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CSIDriver",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
    }
    for obj in [*plan.crds, *plan.objects]:
        resource = fake_kube.client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        assert resource.namespaced == (obj["kind"] not in cluster_scoped)


def test_jobs_complete_unless_told_to_fail_or_keep_running(fake_kube: KubeUnderTest) -> None:
    assert fake_kube.server is not None
    store = fake_kube.server.store

    def job(name: str) -> dict[str, object]:
        meta = {"name": name, "namespace": "default"}
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {}}

    assert fake_kube.create(job("a"))["status"]["conditions"][0]["type"] == "Complete"
    store.set_job_outcome("b", "Failed")
    store.set_job_outcome("c", "Running")
    failed = fake_kube.create(job("b"))["status"]
    assert failed["failed"] == 1 and failed["conditions"][0]["type"] == "Failed"
    assert fake_kube.create(job("c"))["status"] == {"active": 1}
    fake_kube.client.resources.get(api_version="batch/v1", kind="Job").delete(
        name="a", namespace="default"
    )
    assert [(e, o["metadata"]["name"]) for e, o in store.history("Job")] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("DELETED", "a"),
    ]


def test_crud_with_status_objects_on_errors(fake_kube: KubeUnderTest) -> None:
    created = fake_kube.create(config_map("a"))
    assert created["metadata"]["resourceVersion"] and created["metadata"]["uid"]
    with pytest.raises(ConflictError) as conflict:
        fake_kube.create(config_map("a"))
    assert conflict.value.summary() == 'configmaps "a" already exists'
    with pytest.raises(NotFoundError) as missing:
        fake_kube.create(config_map("b", namespace="nowhere"))
    assert missing.value.summary() == 'namespaces "nowhere" not found'
    resource = fake_kube.client.resources.get(api_version="v1", kind="ConfigMap")
    stale = {**created, "data": {"k": "w"}}
    resource.replace(body={**created, "data": {"k": "v2"}})
    with pytest.raises(ConflictError):
        resource.replace(body=stale)
    resource.delete(name="a", namespace="default")
    assert fake_kube.get("v1", "ConfigMap", "a", "default") is None


def test_label_selectors_within_and_across_namespaces(fake_kube: KubeUnderTest) -> None:
    fake_kube.create_namespace("apps")
    fake_kube.create(config_map("one", "default", usage="x", tier="a"))
    fake_kube.create(config_map("two", "apps", usage="x", tier="b"))
    fake_kube.create(config_map("three", "apps", usage="y"))

    def names(selector: str, namespace: str | None = None) -> set[str]:
        return {
            o["metadata"]["name"] for o in fake_kube.list("v1", "ConfigMap", namespace, selector)
        }

    assert names("usage=x") == {"one", "two"}
    assert names("usage=x", "apps") == {"two"}
    assert names("usage!=x") >= {"three", "kube-root-ca.crt"}
    assert names("tier in (a, b),usage==x") == {"one", "two"}
    assert names("tier notin (a),usage") == {"two", "three"}
    assert names("!tier,usage") == {"three"}
    with pytest.raises(SelectorError):
        label_selector("a in b")


def test_server_side_apply_creates_merges_and_leaves_a_no_op_alone(
    fake_kube: KubeUnderTest,
) -> None:
    resource = fake_kube.client.resources.get(api_version="v1", kind="ConfigMap")
    body = config_map("applied", tier="a")
    first = resource.server_side_apply(body=body, field_manager="meshlift").to_dict()
    again = resource.server_side_apply(body=body, field_manager="meshlift").to_dict()
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    more = {**body, "data": {"extra": "1"}}
    merged = resource.server_side_apply(body=more, field_manager="meshlift").to_dict()
    # "k" was applied by this manager before and is not sent now: a real server removes it.
    assert merged["data"] == {"extra": "1"}
    assert int(merged["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    patches = (
        [r for r in fake_kube.server.mutations() if r.method == "PATCH"] if fake_kube.server else []
    )
    assert patches[0].content_type == "application/apply-patch+yaml"
    assert "fieldManager=meshlift" in patches[0].query


def deployment(env: list[dict[str, str]], pull: list[str]) -> dict[str, object]:
    container = {"name": "app", "image": "app:1", "env": env}
    spec = {"containers": [container], "imagePullSecrets": [{"name": n} for n in pull]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "template": {"spec": spec}},
    }


def test_server_side_apply_owns_fields_per_manager_and_list_items_by_key(
    kube: KubeUnderTest,
) -> None:
    resource = kube.client.resources.get(api_version="apps/v1", kind="Deployment")
    mine = deployment([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], ["mine"])
    resource.server_side_apply(body=mine, field_manager="first")
    theirs = deployment([{"name": "C", "value": "3"}], ["theirs"])
    resource.server_side_apply(body=theirs, field_manager="second")
    # "first" drops env B: it goes; C and the pull secret "theirs" belong to "second" and stay.
    again = deployment([{"name": "A", "value": "1"}], ["mine"])
    found = resource.server_side_apply(body=again, field_manager="first").to_dict()
    spec = found["spec"]["template"]["spec"]
    assert [e["name"] for e in spec["containers"][0]["env"]] == ["A", "C"]
    assert spec["imagePullSecrets"] == [{"name": "mine"}, {"name": "theirs"}]
    managers = {(m["manager"], m["operation"]) for m in found["metadata"]["managedFields"]}
    assert managers == {("first", "Apply"), ("second", "Apply")}

    clash = deployment([{"name": "C", "value": "changed"}], [])
    with pytest.raises(ConflictError) as conflict:
        resource.server_side_apply(body=clash, field_manager="first")
    assert conflict.value.summary() == (
        'Apply failed with 1 conflict: conflict with "second" using apps/v1:'
        ' .spec.template.spec.containers[name="app"].env[name="C"].value'
    )
    taken = resource.server_side_apply(body=clash, field_manager="first", force_conflicts=True)
    (container,) = taken.to_dict()["spec"]["template"]["spec"]["containers"]
    assert {"name": "C", "value": "changed"} in container["env"]


def test_an_update_takes_the_fields_it_changes(fake_kube: KubeUnderTest) -> None:
    resource = fake_kube.client.resources.get(api_version="v1", kind="ConfigMap")
    resource.server_side_apply(body=config_map("cm"), field_manager="meshlift")
    current = resource.get(name="cm", namespace="default").to_dict()
    current["data"]["k"] = "edited"
    resource.replace(body=current, field_manager="kubectl-edit")
    with pytest.raises(ConflictError) as conflict:
        resource.server_side_apply(body=config_map("cm"), field_manager="meshlift")
    assert '"kubectl-edit" using v1: .data.k' in conflict.value.summary()


def test_namespace_lifecycle_and_crds(fake_kube: KubeUnderTest) -> None:
    apps = fake_kube.create_namespace("apps")
    assert fake_kube.get("v1", "ServiceAccount", "default", apps) is not None
    fake_kube.create(config_map("mine", apps))
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    created = fake_kube.create(crd)
    assert {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"} in created[
        "status"
    ]["conditions"]
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": apps},
    }
    fake_kube.create(widget)
    assert [w["metadata"]["name"] for w in fake_kube.list("example.com/v1", "Widget")] == ["w"]
    fake_kube.client.resources.get(api_version="v1", kind="Namespace").delete(name=apps)
    assert fake_kube.get("v1", "Namespace", apps) is None
    assert fake_kube.list("v1", "ConfigMap", apps) == []
    assert fake_kube.list("example.com/v1", "Widget") == []


def test_watch_streams_added_modified_deleted(fake_kube: KubeUnderTest) -> None:
    resource = fake_kube.client.resources.get(api_version="v1", kind="ConfigMap")
    start = fake_kube.client.resources.get(api_version="v1", kind="ConfigMap").get(
        namespace="default"
    )["metadata"]["resourceVersion"]

    def changes() -> None:
        time.sleep(0.2)
        fake_kube.create(config_map("w", usage="x"))
        resource.patch(
            body={"metadata": {"labels": {"usage": "x", "more": "1"}}},
            name="w",
            namespace="default",
            content_type="application/merge-patch+json",
        )
        resource.delete(name="w", namespace="default")

    threading.Thread(target=changes).start()
    seen = []
    for event in fake_kube.client.watch(
        resource, namespace="default", label_selector="usage=x", resource_version=start, timeout=3
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            break
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_workloads_report_ready_unless_told_otherwise(fake_kube: KubeUnderTest) -> None:
    assert fake_kube.server is not None
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {"replicas": 2},
    }
    assert fake_kube.create(deployment)["status"]["availableReplicas"] == 2
    fake_kube.server.store.set_workloads_ready(False)
    found = fake_kube.get("apps/v1", "Deployment", "d", "default")
    assert found is not None and found["status"]["availableReplicas"] == 0


def test_wrong_token_is_401(fake_kube: KubeUnderTest) -> None:
    assert fake_kube.server is not None
    fake_kube.server.token = "another"
    with pytest.raises(UnauthorizedError):
        fake_kube.list("v1", "Namespace")


def test_a_deleted_namespace_terminates_before_it_goes(fake_kube: KubeUnderTest) -> None:
    assert fake_kube.server is not None
    fake_kube.server.store.namespace_delay = 0.3
    apps = fake_kube.create_namespace("apps")
    fake_kube.create(config_map("mine", apps))
    namespaces = fake_kube.client.resources.get(api_version="v1", kind="Namespace")
    namespaces.delete(name=apps)
    found = fake_kube.get("v1", "Namespace", apps)
    assert found is not None and found["status"]["phase"] == "Terminating"
    assert found["metadata"]["deletionTimestamp"]
    assert fake_kube.get("v1", "ConfigMap", "mine", apps) is not None
    with pytest.raises(ForbiddenError) as refused:
        fake_kube.create(config_map("late", apps))
    assert refused.value.summary() == (
        'configmaps "late" is forbidden: unable to create new content in namespace apps'
        " because it is being terminated"
    )
    with pytest.raises(ConflictError):
        namespaces.delete(name=apps)
    deadline = time.monotonic() + 10
    while fake_kube.get("v1", "Namespace", apps) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_kube.get("v1", "Namespace", apps) is None
    assert fake_kube.list("v1", "ConfigMap", apps) == []


def test_watches_end_with_410_gone_after_a_compaction(fake_kube: KubeUnderTest) -> None:
    assert fake_kube.server is not None
    store = fake_kube.server.store
    resource = fake_kube.client.resources.get(api_version="v1", kind="ConfigMap")
    start = resource.get(namespace="default")["metadata"]["resourceVersion"]
    compactor = when_watched(fake_kube.server, store.compact)
    with pytest.raises(ApiException) as gone:
        for _ in fake_kube.client.watch(resource, namespace="default", timeout=10):
            pass
    compactor.join()
    assert gone.value.status == 410
    fake_kube.create(config_map("newer"))
    store.compact()
    with pytest.raises(ApiException) as too_old:
        for _ in fake_kube.client.watch(
            resource, namespace="default", resource_version=start, timeout=10
        ):
            pass
    assert too_old.value.status == 410
    assert "too old resource version" in str(too_old.value.reason)


def test_strict_field_validation_refuses_unknown_fields(fake_kube: KubeUnderTest) -> None:
    container = {"name": "web", "image": "nginx", "imagePullPolicyy": "Always"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replica": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [container]},
            },
        },
    }

    def kubectl_create(validate: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(fake_kube.kubeconfig), "create", "-f", "-",
             f"--validate={validate}"],
            input=json.dumps(deployment), capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    refused = kubectl_create("strict")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1"'
        " cannot be handled as a Deployment: strict decoding error: "
        'unknown field "spec.replica", '
        'unknown field "spec.template.spec.containers[0].imagePullPolicyy"'
    )
    assert fake_kube.get("apps/v1", "Deployment", "web", "default") is None
    assert kubectl_create("ignore").returncode == 0
    assert fake_kube.get("apps/v1", "Deployment", "web", "default") is not None


def web_deployment(name: str, image: str, namespace: str = "default") -> dict[str, object]:
    labels = {"app": name}
    pod = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": image}]}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": pod},
    }


def set_image(fake_kube: KubeUnderTest, name: str, image: str) -> None:
    resource = fake_kube.client.resources.get(api_version="apps/v1", kind="Deployment")
    containers = [{"name": name, "image": image}]
    patch = {"spec": {"template": {"spec": {"containers": containers}}}}
    resource.patch(
        name=name, namespace="default", body=patch, content_type="application/merge-patch+json"
    )


def eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def test_observed_generation_lags_a_spec_change_by_the_rollout_delay(
    fake_kube: KubeUnderTest,
) -> None:
    assert fake_kube.server is not None
    fake_kube.server.store.rollout_delay = 1.0

    def status() -> dict[str, object]:
        found = fake_kube.get("apps/v1", "Deployment", "web", "default")
        assert found is not None
        return dict(found.get("status") or {})

    created = fake_kube.create(web_deployment("web", "nginx:1"))
    assert created["metadata"]["generation"] == 1 and created.get("status") in (None, {})
    eventually(lambda: status().get("observedGeneration") == 1)
    assert status()["readyReplicas"] == 1
    set_image(fake_kube, "web", "nginx:2")
    assert status()["observedGeneration"] == 1  # the controller has not seen generation 2 yet
    eventually(lambda: status().get("observedGeneration") == 2)


def test_replica_sets_own_the_pods_and_an_old_failing_pod_outlives_a_new_rollout(
    fake_kube: KubeUnderTest,
) -> None:
    assert fake_kube.server is not None
    store = fake_kube.server.store
    store.rollout_delay = 0.5
    store.pull_errors["nginx:bad"] = 'Back-off pulling image "nginx:bad"'

    def pods() -> dict[str, tuple[str, bool, bool]]:
        """Pod template hash -> (owner, ready, terminating)."""
        found = {}
        for pod in fake_kube.list("v1", "Pod", "default", "app=web"):
            meta, status = pod["metadata"], pod["status"]
            ready = all(c["ready"] for c in status["containerStatuses"])
            owner = meta["ownerReferences"][0]
            found[meta["labels"]["pod-template-hash"]] = (
                f"{owner['kind']}/{owner['name']}",
                ready,
                bool(meta.get("deletionTimestamp")),
            )
        return found

    def replica_sets() -> dict[str, int]:
        return {
            rs["metadata"]["name"]: rs["spec"]["replicas"]
            for rs in fake_kube.list("apps/v1", "ReplicaSet", "default")
        }

    fake_kube.create(web_deployment("web", "nginx:bad"))
    eventually(lambda: len(pods()) == 1)
    [(bad_hash, bad)] = pods().items()
    assert bad == (f"ReplicaSet/web-{bad_hash}", False, False)
    set_image(fake_kube, "web", "nginx:good")
    eventually(lambda: len(replica_sets()) == 2)
    good_hash = next(h for h in (n.removeprefix("web-") for n in replica_sets()) if h != bad_hash)
    assert replica_sets() == {f"web-{bad_hash}": 0, f"web-{good_hash}": 1}
    # The new rollout is available, and the old ReplicaSet's failing pod is still terminating.
    assert pods() == {
        bad_hash: (f"ReplicaSet/web-{bad_hash}", False, True),
        good_hash: (f"ReplicaSet/web-{good_hash}", True, False),
    }
    eventually(lambda: bad_hash not in pods())

    fake_kube.client.resources.get(api_version="apps/v1", kind="Deployment").delete(
        name="web", namespace="default"
    )
    assert replica_sets() == {} and pods() == {}  # garbage collected


def test_a_validating_webhook_without_a_ready_endpoint_fails_the_writes_it_matches(
    fake_kube: KubeUnderTest,
) -> None:
    assert fake_kube.server is not None
    rule = {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["configmaps"],
    }
    service = {"name": "checker", "namespace": "default", "path": "/validate"}
    webhook = {
        "name": "cm.checker.example",
        "clientConfig": {"service": service},
        "rules": [rule],
        "objectSelector": {"matchLabels": {"checked": "yes"}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    fake_kube.create(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "checker"},
            "webhooks": [webhook],
        }
    )
    url = "https://checker.default.svc:443/validate?timeout=10s"

    def refusal(name: str) -> str | None:
        try:
            fake_kube.create(config_map(name, checked="yes"))
        except ApiException as exc:
            assert exc.status == 500
            return str(json.loads(exc.body)["message"])
        return None

    failed = 'Internal error occurred: failed calling webhook "cm.checker.example": failed to call'
    assert refusal("a") == f'{failed} webhook: Post "{url}": service "checker" not found'
    fake_kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "checker", "namespace": "default"},
            "spec": {"selector": {"app": "checker"}, "ports": [{"port": 443}]},
        }
    )
    no_endpoints = f'{failed} webhook: Post "{url}": no endpoints available for service "checker"'
    assert refusal("b") == no_endpoints
    fake_kube.create(config_map("unchecked"))  # the object selector leaves it out
    fake_kube.create(web_deployment("checker", "checker:1"))  # its pod is the endpoint
    assert refusal("c") is None
    fake_kube.server.store.set_workloads_ready(False)
    assert refusal("d") == no_endpoints


def test_watch_list_ends_its_initial_events_with_a_bookmark_then_bookmarks_when_quiet(
    fake_kube: KubeUnderTest,
) -> None:
    import httpx

    from tests.fakekube.tls import ca_pem

    server = fake_kube.server
    assert server is not None
    server.store.bookmark_interval = 0.3
    fake_kube.create(config_map("a"))
    context = ssl.create_default_context(cadata=ca_pem().decode())
    headers = {"Authorization": f"Bearer {server.token}"}
    path = "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1"
    watch_list = "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
    with httpx.Client(base_url=server.url, verify=context, headers=headers) as http:
        refused = http.get(path + watch_list)
        assert refused.status_code == 422
        assert refused.json()["message"] == (
            "sendInitialEvents is forbidden for watch unless both allowWatchBookmarks and"
            " resourceVersionMatch=NotOlderThan are set"
        )
        listed_rv = http.get("/api/v1/namespaces/default/configmaps").json()["metadata"]
        lines = http.get(path + watch_list + "&allowWatchBookmarks=true").text.splitlines()
    events = [json.loads(line) for line in lines]
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events[:3]] == [
        ("ADDED", "a"),
        ("ADDED", "kube-root-ca.crt"),
        ("BOOKMARK", None),
    ]
    assert events[2]["object"] == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "resourceVersion": listed_rv["resourceVersion"],
            "annotations": {"k8s.io/initial-events-end": "true"},
        },
    }
    later = events[3:]
    assert later and all(e["type"] == "BOOKMARK" for e in later)  # a quiet watch's bookmarks
    assert all("annotations" not in e["object"]["metadata"] for e in later)


def test_strict_validation_of_a_custom_kind_follows_its_crd_schema(
    fake_kube: KubeUnderTest,
) -> None:
    spec_schema = {
        "type": "object",
        "properties": {
            "mtls": {"type": "object", "properties": {"mode": {"type": "string"}}},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}},
        },
    }
    fake_kube.create(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "meshes.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "meshes", "singular": "mesh", "kind": "Mesh"},
                "versions": [version],
            },
        }
    )

    def kubectl_create(spec: dict[str, object]) -> subprocess.CompletedProcess[str]:
        mesh = {
            "apiVersion": "example.com/v1",
            "kind": "Mesh",
            "metadata": {"name": "m", "namespace": "default", "labels": {"a": "b"}},
            "spec": spec,
        }
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(fake_kube.kubeconfig), "create", "-f", "-",
             "--validate=strict"],
            input=json.dumps(mesh), capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    refused = kubectl_create({"mtls": {"mode": "strict", "moed": "x"}, "extra": {"any": 1}})
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Mesh in version "v1"'
        ' cannot be handled as a Mesh: strict decoding error: unknown field "spec.mtls.moed"'
    )
    created = kubectl_create({"mtls": {"mode": "strict"}, "extra": {"any": {"thing": 1}}})
    assert created.returncode == 0, created.stderr


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes | str | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def test_protobuf_bodies_of_typed_clients_are_decoded_and_answered_in_json(
    fake_kube: KubeUnderTest,
) -> None:
    import httpx

    from tests.fakekube.tls import ca_pem

    server = fake_kube.server
    assert server is not None
    labels = _field(11, _field(1, "owner") + _field(2, "helm"))
    meta = _field(1, "sh.helm.release.v1.r.v1") + labels
    data = _field(2, _field(1, "release") + _field(2, b"\x00\xffgz"))
    secret = _field(1, meta) + data + _field(3, "helm.sh/release.v1") + _field(5, 1)
    type_meta = _field(1, "v1") + _field(2, "Secret")
    body = b"k8s\x00" + _field(1, type_meta) + _field(2, secret)
    context = ssl.create_default_context(cadata=ca_pem().decode())
    headers = {"Authorization": f"Bearer {server.token}"}
    path = "/api/v1/namespaces/default/secrets"
    with httpx.Client(base_url=server.url, verify=context, headers=headers) as http:
        created = http.post(
            path,
            content=body,
            headers={
                "Content-Type": "application/vnd.kubernetes.protobuf",
                "Accept": "application/vnd.kubernetes.protobuf,application/json",
            },
        )
        assert created.status_code == 201
        assert created.headers["Content-Type"] == "application/json"
        only_protobuf = http.get(path, headers={"Accept": "application/vnd.kubernetes.protobuf"})
    shown = created.json()
    assert shown["metadata"]["labels"] == {"owner": "helm"}
    assert (shown["type"], shown["data"], shown["immutable"]) == (
        "helm.sh/release.v1",
        {"release": "AP9neg=="},
        True,
    )
    assert only_protobuf.status_code == 406
