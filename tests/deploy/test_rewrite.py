"""Image rewriting: every pod template, exact strings elsewhere, and the pull secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deploy.chart.manifests import load_paths
from deploy.chart.render import ChartInput, Rendered, render_chart
from deploy.chart.settings import Settings
from deploy.chart.values import ValueFlags
from deploy.errors import PublicImagesLeft
from deploy.postrender.plan import build_plan
from deploy.postrender.rewrite import (
    ImageRules,
    add_pull_secret,
    image_uses,
    pod_specs,
    rewrite_object,
)
from mirror.image.lock import LockEntry, load_lock
from mirror.image.reference import parse_reference, parse_registry_server
from mirror.net.credentials import Credentials
from tests.deploy.deploycli import MINI_MESH

HAND_WRITTEN = str(Path(__file__).parent / "data" / "hand-written.yaml")
R = "reg.example:5000"


def rules(disable_public_images: bool, image_tag: str = "2.0.0") -> ImageRules:
    return ImageRules.from_lock(
        load_lock(None).entries, parse_registry_server(R), image_tag, disable_public_images
    )


def chart_defaults(environment: str = "kubernetes") -> Rendered:
    """The mini chart rendered with its own defaults: public images, as upstream publishes it."""
    chart = ChartInput(MINI_MESH, path=MINI_MESH)
    ours = {"environment": environment}
    return render_chart(chart, ValueFlags(), ours, "nginx-service-mesh", "nginx-mesh")


def hand_written() -> Rendered:
    """The hand-written manifests as ``--manifests`` gives them to the post-renderer."""
    return Rendered([], load_paths([HAND_WRITTEN]), "rendered YAML")


def by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects}


def rewritten(disable_public_images: bool) -> dict[str, dict[str, Any]]:
    return by_name(
        [rewrite_object(o, rules(disable_public_images))[0] for o in load_paths([HAND_WRITTEN])]
    )


def images(obj: dict[str, Any]) -> dict[str, str]:
    """Container name to image (images in other strings left out)."""
    return {
        u.place.removeprefix("container "): u.image
        for u in image_uses(obj)
        if u.place.startswith("container ")
    }


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
        build_plan(hand_written(), load_lock(None).entries, settings)
    message = str(error.value)
    assert "2 image(s) not under reg.example:5000" in message
    assert "busybox:1.36 (Job apps/migrate, container migrate)" in message
    assert "nats@sha256:" + "0" * 64 + " (Pod apps/debug, container main)" in message
    assert error.value.exit_code == 2


def test_without_disable_public_images_public_images_are_allowed() -> None:
    settings = Settings.parse(R, namespace="apps")
    plan = build_plan(hand_written(), load_lock(None).entries, settings)
    assert "busybox:1.36" in {u.image for u in plan.images}


@pytest.mark.parametrize("environment", ["kubernetes", "openshift"])
def test_every_chart_image_ends_under_the_registry(environment: str) -> None:
    objects = chart_defaults(environment).objects
    for obj in objects:
        new, uses = rewrite_object(obj, rules(True))
        assert all(u.image.startswith(f"{R}/") for u in uses), uses
        assert new is not obj
    (config,) = [o for o in objects if o["metadata"]["name"] == "meshconfig"]
    new, uses = rewrite_object(config, rules(True))
    registry = json.loads(new["data"]["meshconfig.json"])["registry"]
    assert (registry["sidecarImage"], registry["sidecarInitImage"]) == (
        f"{R}/nginx-mesh-sidecar:2.0.0",
        f"{R}/nginx-mesh-init:2.0.0",
    )
    assert [(u.place, u.original) for u in uses] == [
        (
            "data meshconfig.json: registry.sidecarImage",
            "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0",
        ),
        (
            "data meshconfig.json: registry.sidecarInitImage",
            "docker-registry.nginx.com/nsm/nginx-mesh-init:2.0.0",
        ),
    ]
    assert (
        new["data"]["meshconfig.json"].replace(R, "docker-registry.nginx.com/nsm")
        == (config["data"]["meshconfig.json"])
    )  # only the references changed, the JSON text is kept as the chart wrote it


def test_image_strings_in_env_args_and_embedded_yaml_are_found_for_status() -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n"},
        "data": {
            "sentinel.yaml": "---\nkind: Job\nspec:\n  image: quay.io/x/kubectl:1\n",
            "notes": "image quay.io/not/an:image here",
            "imageTag": "2.0.0",
        },
    }
    uses = image_uses(config)
    assert [(u.where, u.place, u.image) for u in uses] == [
        ("ConfigMap n/c", "data sentinel.yaml: spec.image", "quay.io/x/kubectl:1")
    ]
    objs = rewritten(disable_public_images=True)
    places = {u.place: u.image for u in image_uses(objs["nightly"])}
    assert places["env HELPER_IMAGE"] == f"{R}/ubuntu:22.04"
    assert "env NOTE" not in places


def test_images_the_lock_pins_are_applied_by_digest_unless_told_not_to() -> None:
    digest = "sha256:" + "a" * 64
    entries = [
        LockEntry(
            parse_reference("docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0"),
            "nginx-mesh",
            digest,
        ),
        LockEntry(parse_reference("bitnami/kubectl:latest"), "tools", digest),
    ]
    server = parse_registry_server(R)
    pinned = ImageRules.from_lock(entries, server, "2.0.0", True)
    assert pinned.image("bitnami/kubectl") == f"{R}/kubectl:latest@{digest}"
    assert pinned.image(f"{R}/nginx-mesh-sidecar:2.0.0") == f"{R}/nginx-mesh-sidecar:2.0.0@{digest}"
    assert (
        ImageRules.from_lock(entries, server, "2.0.1", True).image(f"{R}/nginx-mesh-sidecar:2.0.0")
        == f"{R}/nginx-mesh-sidecar:2.0.1"
    )  # another tag than the locked one: not pinned
    unpinned = ImageRules.from_lock(entries, server, "2.0.0", True, pin_digests=False)
    assert unpinned.image("bitnami/kubectl") == f"{R}/kubectl:latest"


def test_pull_secret_goes_into_every_pod_template_and_service_account_once() -> None:
    settings = Settings.parse(R, Credentials("u", "p"), True, namespace="nginx-mesh")
    plan = build_plan(chart_defaults(), load_lock(None).entries, settings)
    templates = [s for o in plan.objects for s in pod_specs(o)]
    accounts = [o for o in plan.objects if o["kind"] == "ServiceAccount"]
    assert any(o["kind"] == "Job" for o in plan.hooks)  # hooks get the pull secret too
    assert templates and accounts
    for target in templates + accounts:
        assert target["imagePullSecrets"] == [{"name": "nginx-mesh-registry-key"}]
    again = add_pull_secret(plan.objects[-1], "nginx-mesh-registry-key")
    assert again == plan.objects[-1]


def test_no_pull_secret_without_credentials() -> None:
    settings = Settings.parse(R, None, True)
    plan = build_plan(chart_defaults(), load_lock(None).entries, settings)
    assert not any("imagePullSecrets" in s for o in plan.objects for s in pod_specs(o))
    assert not any(o["kind"] == "Secret" for o in plan.objects)
