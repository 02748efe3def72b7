"""The embedded NSM 2.0.0 bundle: valid Kubernetes objects, using exactly the locked images."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from deploy.manifests import ENVIRONMENTS, load_bundle
from deploy.rewrite import image_uses
from mirror.lock import load_lock
from mirror.reference import parse_reference


def _objects() -> list[tuple[str, dict[str, Any]]]:
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for environment in ENVIRONMENTS:
        for obj in load_bundle(environment):
            key = f"{obj['kind']}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
            seen.setdefault(key, (key, obj))
    return list(seen.values())


@pytest.mark.parametrize("obj", [o for _, o in _objects()], ids=[k for k, _ in _objects()])
def test_every_object_validates_against_the_kubernetes_schema(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_bundle_uses_exactly_the_locked_images_of_its_environment(environment: str) -> None:
    used = {parse_reference(u.image) for obj in load_bundle(environment) for u in image_uses(obj)}
    locked = {e.source for e in load_lock(None).select(environment)}
    sidecar_images = {
        r for r in locked if r.last_component in ("nginx-mesh-sidecar", "nginx-mesh-init")
    }
    assert used == locked - sidecar_images


def test_sidecar_and_init_images_are_handed_to_the_controller() -> None:
    (config,) = [
        o for o in load_bundle("kubernetes") if o["metadata"]["name"] == "nginx-mesh-injection"
    ]
    assert (
        config["data"]["sidecar-image"] == "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0"
    )
    assert config["data"]["init-image"] == "docker-registry.nginx.com/nsm/nginx-mesh-init:2.0.0"


def test_bundle_has_the_mesh_components() -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in load_bundle("kubernetes")}
    assert {
        ("Namespace", "nginx-mesh"),
        ("Deployment", "nginx-mesh-controller"),
        ("Deployment", "nginx-mesh-metrics"),
        ("StatefulSet", "nats-server"),
        ("StatefulSet", "spire-server"),
        ("DaemonSet", "spire-agent"),
        ("MutatingWebhookConfiguration", "nginx-mesh-sidecar-injector"),
    } <= names
    assert not any(name == "spiffe-csi-driver" for _, name in names)
    openshift = {(o["kind"], o["metadata"]["name"]) for o in load_bundle("openshift")}
    assert {("DaemonSet", "spiffe-csi-driver"), ("CSIDriver", "csi.spiffe.io")} <= openshift - names


def test_bundle_relocates_to_another_namespace() -> None:
    objects = load_bundle("kubernetes", "mesh-system")
    assert ("Namespace", "mesh-system") in {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert all(o["metadata"].get("namespace") in (None, "mesh-system") for o in objects)
    subjects = [s for o in objects for s in o.get("subjects", [])]
    assert subjects and all(s["namespace"] == "mesh-system" for s in subjects)
    (webhook,) = [o for o in objects if o["kind"] == "MutatingWebhookConfiguration"]
    assert webhook["webhooks"][0]["clientConfig"]["service"]["namespace"] == "mesh-system"
    assert "nginx-mesh\n" not in str(objects)
