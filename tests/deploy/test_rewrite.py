"""Image rewriting: every pod template, exact strings elsewhere, and the pull secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.errors import PublicImagesLeft
from deploy.manifests import load_bundle, load_paths
from deploy.plan import Settings, build_plan
from deploy.rewrite import ImageRules, add_pull_secret, image_uses, pod_specs, rewrite_object
from mirror.credentials import Credentials
from mirror.lock import load_lock
from mirror.reference import parse_registry_server

HAND_WRITTEN = str(Path(__file__).parent / "data" / "hand-written.yaml")
R = "reg.example:5000"


def rules(disable_public_images: bool, image_tag: str = "2.0.0") -> ImageRules:
    return ImageRules.from_lock(
        load_lock(None).entries, parse_registry_server(R), image_tag, disable_public_images
    )


def by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects}


def rewritten(disable_public_images: bool) -> dict[str, dict[str, Any]]:
    return by_name(
        [rewrite_object(o, rules(disable_public_images))[0] for o in load_paths([HAND_WRITTEN])]
    )


def images(obj: dict[str, Any]) -> dict[str, str]:
    return {u.container: u.image for u in image_uses(obj)}


def test_cronjob_init_and_ephemeral_containers_are_rewritten() -> None:
    objs = rewritten(disable_public_images=True)
    assert images(objs["nightly"]) == {"wait": f"{R}/curl:latest", "kubectl": f"{R}/kubectl:latest"}
    assert images(objs["debug"]) == {
        "main": "nats@sha256:" + "0" * 64,  # not a locked tag: left alone, reported below
        "pinned": f"{R}/nats:2.9-alpine@sha256:" + "1" * 64,
        "shell": f"{R}/ubuntu:22.04",
    }


def test_mesh_images_always_come_from_the_registry_with_the_image_tag() -> None:
    objs = by_name(
        [rewrite_object(o, rules(False, "2.0.1"))[0] for o in load_paths([HAND_WRITTEN])]
    )
    assert images(objs["sidecar-demo"]) == {"sidecar": f"{R}/nginx-mesh-sidecar:2.0.1"}
    args = objs["sidecar-demo"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--init-image", f"{R}/nginx-mesh-init:2.0.1"]
    # Third-party images stay public without --disable-public-images.
    assert images(objs["nightly"])["kubectl"] == "docker.io/bitnami/kubectl:latest"


def test_only_exact_locked_strings_are_rewritten_elsewhere() -> None:
    objs = rewritten(disable_public_images=True)
    assert objs["images"]["data"] == {
        "spire": f"{R}/spire-agent:1.5.6",
        "not-exact": "gcr.io/spiffe-io/spire-agent:1.5.6 and more",
        "bare-name": "nats",
    }
    env = objs["nightly"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "HELPER_IMAGE", "value": f"{R}/ubuntu:22.04"},
        {"name": "NOTE", "value": "uses ubuntu:22.04 inside"},
    ]
    assert objs["nightly"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0][
        "args"
    ] == ["-sf", "http://nats-server:8222/healthz"]


def test_public_images_left_are_an_error_listing_each() -> None:
    settings = Settings.parse(R, disable_public_images=True, namespace="apps")
    with pytest.raises(PublicImagesLeft) as error:
        build_plan(load_paths([HAND_WRITTEN]), load_lock(None).entries, settings)
    message = str(error.value)
    assert "2 image(s) not under reg.example:5000" in message
    assert "busybox:1.36 (Job apps/migrate, container migrate)" in message
    assert "nats@sha256:" + "0" * 64 + " (Pod apps/debug, container main)" in message
    assert error.value.exit_code == 2


def test_without_disable_public_images_public_images_are_allowed() -> None:
    settings = Settings.parse(R, namespace="apps")
    plan = build_plan(load_paths([HAND_WRITTEN]), load_lock(None).entries, settings)
    assert "busybox:1.36" in {u.image for u in plan.images}


@pytest.mark.parametrize("environment", ["kubernetes", "openshift"])
def test_every_bundle_image_ends_under_the_registry(environment: str) -> None:
    objects = load_bundle(environment)
    for obj in objects:
        new, uses = rewrite_object(obj, rules(True))
        assert all(u.image.startswith(f"{R}/") for u in uses)
        assert new is not obj
    (config,) = [o for o in objects if o["metadata"]["name"] == "nginx-mesh-injection"]
    assert rewrite_object(config, rules(True))[0]["data"]["sidecar-image"] == (
        f"{R}/nginx-mesh-sidecar:2.0.0"
    )


def test_pull_secret_goes_into_every_pod_template_and_service_account_once() -> None:
    settings = Settings.parse(R, Credentials("u", "p"), True, namespace="nginx-mesh")
    plan = build_plan(load_bundle("kubernetes"), load_lock(None).entries, settings)
    templates = [s for o in plan.objects for s in pod_specs(o)]
    accounts = [o for o in plan.objects if o["kind"] == "ServiceAccount"]
    assert templates and accounts
    for target in templates + accounts:
        assert target["imagePullSecrets"] == [{"name": "nginx-mesh-registry-key"}]
    again = add_pull_secret(plan.objects[-1], "nginx-mesh-registry-key")
    assert again == plan.objects[-1]


def test_no_pull_secret_without_credentials() -> None:
    settings = Settings.parse(R, None, True)
    plan = build_plan(load_bundle("kubernetes"), load_lock(None).entries, settings)
    assert not any("imagePullSecrets" in s for o in plan.objects for s in pod_specs(o))
    assert not any(o["kind"] == "Secret" for o in plan.objects)
