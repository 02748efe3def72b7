"""``deploy audit``: Pods whose statuses carry imageIDs, checked against a real registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.cluster.audit import Expectations, RunningContainer, check_container
from mirror.image.reference import parse_reference, parse_registry_server
from tests.deploy.deploycli import MINI_MESH, ok, one_line_error, run_deploy
from tests.fakekube.fixtures import KubeUnderTest
from tests.imagefactory import make_image, push
from tests.registries import Registry

Obj = dict[str, Any]
INJECT = {"injector.nsm.nginx.com/auto-inject": "enabled"}
OTHER_DIGEST = "sha256:" + "e" * 64


def owner(kind: str, name: str) -> list[Obj]:
    api = {"ReplicaSet": "apps/v1", "Job": "batch/v1"}.get(kind, "apps/v1")
    return [
        {"apiVersion": api, "kind": kind, "name": name, "uid": f"uid-{name}", "controller": True}
    ]


def replicaset(namespace: str, deployment: str, image: str) -> Obj:
    """The ReplicaSet ``<deployment>-5d9`` a Deployment made."""
    labels = {"app": deployment}
    meta = {
        "name": f"{deployment}-5d9",
        "namespace": namespace,
        "ownerReferences": owner("Deployment", deployment),
    }
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }
    # replicas 0: the test makes the Pods itself, with the statuses a kubelet would report
    spec = {"replicas": 0, "selector": {"matchLabels": labels}, "template": template}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta, "spec": spec}


def pod(
    namespace: str,
    name: str,
    containers: dict[str, tuple[str, str]],
    owned_by: list[Obj] | None = None,
    init: dict[str, tuple[str, str]] | None = None,
) -> Obj:
    """A Pod whose containers are ``name: (image, imageID)``; an empty imageID: not pulled."""

    def specs(group: dict[str, tuple[str, str]]) -> list[Obj]:
        return [{"name": n, "image": image} for n, (image, _) in group.items()]

    def statuses(group: dict[str, tuple[str, str]]) -> list[Obj]:
        return [{"name": n, "image": image, "imageID": i} for n, (image, i) in group.items()]

    meta: Obj = {"name": name, "namespace": namespace, "ownerReferences": owned_by or []}
    spec: Obj = {"containers": specs(containers)}
    status: Obj = {"containerStatuses": statuses(containers)}
    if init:
        spec["initContainers"] = specs(init)
        status["initContainerStatuses"] = statuses(init)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


@dataclass
class Cluster:
    """The scenario: R with its images, and the fake cluster's Pods."""

    server: str
    digests: dict[str, str]
    registry: Registry

    def ran(self, image: str) -> str:
        """The imageID a kubelet reports for ``image`` pulled from R."""
        name = image.rsplit(":", 1)[0]
        return f"{name}@{self.digests[image]}"


def scenario(registry: Registry, unique_repo: Callable[[str], str], kube: KubeUnderTest) -> Cluster:
    """R holding web, api and both sidecar releases; one Pod of each kind of finding, one clean.

    Owners: the clean and the stale Pods through ReplicaSets to Deployments; the drifted Pod's
    ReplicaSet is not in the cluster (it stays the owner named).
    """
    prefix = unique_repo("mesh")
    server = f"{registry.host}/{prefix}"
    digests = {
        f"{server}/{name}:{tag}": push(
            registry, f"{prefix}/{name}", tag, make_image(f"{name}{tag}")
        )
        for name, tag in (
            ("web", "1"),
            ("api", "1"),
            ("nginx-mesh-sidecar", "2.0.0"),
            ("nginx-mesh-sidecar", "2.1.0"),
            ("nginx-mesh-init", "2.1.0"),
        )
    }
    at = Cluster(server, digests, registry)
    mesh = kube.create_namespace("nginx-mesh")
    shop = kube.create_namespace("shop", INJECT)
    other = kube.create_namespace("other")
    web, sidecar = f"{server}/web:1", f"{server}/nginx-mesh-sidecar:2.1.0"
    init = f"{server}/nginx-mesh-init:2.1.0"
    for deployment in ("web", "cart"):
        kube.create(replicaset(shop, deployment, web))
    pods = [
        pod(
            shop,
            "web-5d9-clean",
            {"web": (web, at.ran(web)), "nginx-mesh-sidecar": (sidecar, at.ran(sidecar))},
            owner("ReplicaSet", "web-5d9"),
            init={"nginx-mesh-init": (init, at.ran(init))},
        ),
        pod(
            mesh,
            "nats-0",
            {"nats": ("nats:2.9-alpine", "docker.io/library/nats@" + OTHER_DIGEST)},
            owner("StatefulSet", "nats"),
        ),
        pod(
            shop,
            "api-7c4-drift",
            {"api": (f"{server}/api:1", f"docker-pullable://{server}/api@{OTHER_DIGEST}")},
            owner("ReplicaSet", "api-7c4"),
        ),
        pod(
            shop,
            "cart-5d9-stale",
            {
                "cart": (web, at.ran(web)),
                "nginx-mesh-sidecar": (
                    f"{server}/nginx-mesh-sidecar:2.0.0",
                    at.ran(f"{server}/nginx-mesh-sidecar:2.0.0"),
                ),
            },
            owner("ReplicaSet", "cart-5d9"),
        ),
        pod(shop, "report-new", {"report": (web, "")}, owner("Job", "report")),
        pod(other, "public-elsewhere", {"curl": ("curlimages/curl:latest", "")}),
    ]
    for obj in pods:
        kube.create(obj)
    return at


def audit(at: Cluster, kube: KubeUnderTest, *args: str) -> Any:
    return run_deploy(
        "audit",
        "--registry-server",
        at.server,
        "--insecure-registry",
        at.registry.host,
        "--image-tag",
        "2.1.0",
        *args,
        *kube.cli_args(),
    )


def test_audit_names_each_finding_with_its_pod_and_workload(
    anon_registry: Registry, unique_repo: Any, fake_kube: KubeUnderTest
) -> None:
    at = scenario(anon_registry, unique_repo, fake_kube)
    mark = anon_registry.mark()
    result = audit(at, fake_kube, "--output", "json")
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["namespaces"] == ["nginx-mesh", "shop"]
    assert report["containers"] == 8
    found = {(f["pod"], f["workload"], f["container"], f["problem"]): f for f in report["findings"]}
    assert sorted(found) == [
        ("api-7c4-drift", "ReplicaSet/api-7c4", "container api", "other digest"),
        ("cart-5d9-stale", "Deployment/cart", "container nginx-mesh-sidecar", "stale injection"),
        ("nats-0", "StatefulSet/nats", "container nats", "not from the registry"),
        ("report-new", "Job/report", "container report", "not pulled"),
    ]
    drift = found[("api-7c4-drift", "ReplicaSet/api-7c4", "container api", "other digest")]
    held = at.digests[f"{at.server}/api:1"]
    assert drift["detail"] == f"ran {OTHER_DIGEST}, {at.server} holds {held}"
    stale = found[
        ("cart-5d9-stale", "Deployment/cart", "container nginx-mesh-sidecar", "stale injection")
    ]
    assert stale["detail"] == (
        "nginx-mesh-sidecar:2.0.0 is older than the release's 2.1.0: re-roll Deployment/cart"
    )
    assert (
        found[("nats-0", "StatefulSet/nats", "container nats", "not from the registry")]["detail"]
        == f"nats:2.9-alpine is not under {at.server}/"
    )
    # The registry was asked with HEAD only, once per image.
    asked = anon_registry.requests(mark)
    assert {r.method for r in asked} == {"HEAD"}
    assert sum("/manifests/" in r.path for r in asked) == 5


def test_the_clean_pod_has_no_finding_and_the_table_counts_them(
    anon_registry: Registry, unique_repo: Any, fake_kube: KubeUnderTest
) -> None:
    at = scenario(anon_registry, unique_repo, fake_kube)
    report = json.loads(audit(at, fake_kube, "--namespace", "shop", "--output", "json").stdout)
    assert not [f for f in report["findings"] if f["pod"] == "web-5d9-clean"]
    table = audit(at, fake_kube)
    assert "8 containers in 5 pods (nginx-mesh, shop) from" in table.stdout
    assert ": 4 findings" in table.stdout


def test_all_namespaces_reads_every_namespace(
    anon_registry: Registry, unique_repo: Any, fake_kube: KubeUnderTest
) -> None:
    at = scenario(anon_registry, unique_repo, fake_kube)
    report = json.loads(audit(at, fake_kube, "--all-namespaces", "--output", "json").stdout)
    assert report["namespaces"] == ["nginx-mesh", "other", "shop"]
    assert {(f["pod"], f["problem"]) for f in report["findings"]} >= {
        ("public-elsewhere", "not from the registry")
    }


def one_pulled_pod(registry: Registry, prefix: str, fake_kube: KubeUnderTest, name: str) -> str:
    """A pod in nginx-mesh running image ``name`` as ``registry`` holds it under ``prefix``/web,
    pulled by that digest; the ``--registry-server`` it is from."""
    server = f"{registry.host}/{prefix}"
    digest = push(registry, f"{prefix}/web", "1", make_image(name))
    fake_kube.create_namespace("nginx-mesh")
    fake_kube.create(
        pod("nginx-mesh", "web", {"web": (f"{server}/web:1", f"{server}/web@{digest}")})
    )
    return server


def test_a_clean_cluster_exits_0(
    anon_registry: Registry, unique_repo: Any, fake_kube: KubeUnderTest
) -> None:
    server = one_pulled_pod(anon_registry, unique_repo("mesh"), fake_kube, "clean-web")
    result = ok(run_deploy("audit", "--registry-server", server, *fake_kube.cli_args()))
    assert f"1 containers in 1 pods (nginx-mesh) from {server}: no findings" in result.stdout


def test_bad_usage_is_one_line_and_exit_2(fake_kube: KubeUnderTest) -> None:
    line = one_line_error(
        run_deploy("audit", "--registry-server", "HTTP://R", *fake_kube.cli_args()), 2
    )
    assert "invalid registry server" in line


def test_the_lock_pin_is_checked_too() -> None:
    server = parse_registry_server("r.example/mesh")
    expect = Expectations(
        server, "2.1.0", {parse_reference("r.example/mesh/web:1"): "sha256:" + "a" * 64}
    )
    container = RunningContainer(
        "shop", "web-1", "Deployment/web", "container", "web", "r.example/mesh/web:1",
        f"r.example/mesh/web@sha256:{'b' * 64}",
    )  # fmt: skip
    findings = check_container(container, expect, lambda ref: "sha256:" + "b" * 64)
    assert [f.detail for f in findings] == [
        f"ran sha256:{'b' * 64}, the lock pins sha256:{'a' * 64}"
    ]


def test_init_and_ephemeral_containers_are_audited(
    anon_registry: Registry, unique_repo: Any, fake_kube: KubeUnderTest
) -> None:
    server = f"{anon_registry.host}/{unique_repo('mesh')}"
    fake_kube.create_namespace("nginx-mesh")
    obj = pod("nginx-mesh", "debugged", {}, init={"wait": ("busybox:1", "")})
    obj["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "nicolaka/netshoot"}]
    obj["status"]["ephemeralContainerStatuses"] = [
        {"name": "debug", "imageID": f"docker.io/nicolaka/netshoot@{OTHER_DIGEST}"}
    ]
    fake_kube.create(obj)
    result = run_deploy(
        "audit", "--registry-server", server, "--output", "json", *fake_kube.cli_args()
    )
    assert result.exit_code == 1, result.stderr
    found = [(f["container"], f["problem"]) for f in json.loads(result.stdout)["findings"]]
    assert found == [
        ("init container wait", "not from the registry"),
        ("ephemeral container debug", "not from the registry"),
    ]


def test_audit_reads_the_registry_with_deploys_credentials(
    basic_registry: Registry, unique_repo: Any, fake_kube: KubeUnderTest, tmp_path: Any
) -> None:
    server = one_pulled_pod(basic_registry, unique_repo("mesh"), fake_kube, "authed-web")
    assert basic_registry.username and basic_registry.password
    args = ["audit", "--registry-server", server, "--registry-username", basic_registry.username]
    no_config = {"DOCKER_CONFIG": str(tmp_path / "no-docker-config")}
    wrong = run_deploy(
        *args, "--registry-password-stdin", *fake_kube.cli_args(), input="nope\n", env=no_config
    )
    line = one_line_error(wrong, 1)
    assert "nope" not in wrong.stdout + wrong.stderr
    assert basic_registry.host in line
    right = run_deploy(
        *args, "--registry-password-stdin", *fake_kube.cli_args(),
        input=basic_registry.password + "\n", env=no_config,
    )  # fmt: skip
    assert "no findings" in ok(right).stdout


def test_the_sidecar_tag_defaults_to_the_deployed_releases(
    anon_registry: Registry, unique_repo: Any, fake_kube: KubeUnderTest
) -> None:
    at = scenario(anon_registry, unique_repo, fake_kube)
    ok(
        run_deploy(
            "apply", "--registry-server", at.server, "--chart", MINI_MESH, "--skip-preflight",
            "--image-tag", "2.1.0", "--no-wait", *fake_kube.cli_args(),
        )
    )  # fmt: skip
    args = ["--registry-server", at.server, "--insecure-registry", at.registry.host]
    result = run_deploy("audit", *args, "--output", "json", *fake_kube.cli_args())
    assert result.exit_code == 1, result.stderr
    stale = [f for f in json.loads(result.stdout)["findings"] if f["problem"] == "stale injection"]
    assert [f["pod"] for f in stale] == ["cart-5d9-stale"]
    assert "older than the release's 2.1.0" in stale[0]["detail"]
