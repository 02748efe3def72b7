"""The issue's acceptance scenario, end to end through the CLI, on the fake (or a real) cluster.

apply from a registry holding the mirrored images, with public images disabled: the Secret
matches the seed, every pod template pulls from the registry with the pull secret. remove:
no Secret with the label is left anywhere, and an unlabelled one made before is still there.
"""

from __future__ import annotations

import base64
import tempfile

from deploy.chart.manifests import load_paths
from deploy.postrender.rewrite import containers, image_uses, pod_specs
from mirror.image.reference import parse_reference, parse_registry_server
from tests.deploy.deploycli import MINI_MESH, decoded_config, ok, run_deploy
from tests.fakekube.fixtures import KubeUnderTest
from tests.imagefactory import make_image, push
from tests.registries import Registry


def mirror_images(registry: Registry, server: str) -> None:
    """Put every image the kubernetes plan pulls into the registry (what `mirror sync` does)."""
    with tempfile.TemporaryDirectory() as scratch:
        args = ["--registry-server", server, "--disable-public-images", "--chart", MINI_MESH]
        ok(run_deploy("render", *args, "-o", scratch))
        images = {parse_reference(u.image) for o in load_paths([scratch]) for u in image_uses(o)}
    prefix = parse_registry_server(server).prefix
    for ref in sorted(images):
        repository = ref.repository.removeprefix(f"{prefix}/")
        push(registry, f"{prefix}/{repository}", ref.tag, make_image(str(ref)))


def test_apply_then_remove(
    basic_registry: Registry, unique_repo: object, kube: KubeUnderTest
) -> None:
    assert basic_registry.username and basic_registry.password
    user, password = basic_registry.username, basic_registry.password
    server = f"{basic_registry.host}/{unique_repo('nsm')}"  # type: ignore[operator]
    mirror_images(basic_registry, server)
    mesh = kube.ns("nginx-mesh")
    bystander = kube.create_namespace("bystander")
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keep-me", "namespace": bystander},
            "stringData": {"token": "t"},
        }
    )

    applied = ok(
        run_deploy(
            "apply",
            "--registry-server",
            server,
            "--chart",
            MINI_MESH,
            "--registry-username",
            user,
            "--registry-password-stdin",
            "--disable-public-images",
            "--namespace",
            mesh,
            *([] if kube.is_fake else ["--no-wait"]),  # a real cluster cannot pull from loopback
            *kube.cli_args(),
            input=f"{password}\n",
            env={"DOCKER_CONFIG": str(kube.workdir / "no-docker-config")},
        )
    )
    assert password not in applied.output

    secret = kube.get("v1", "Secret", "nginx-mesh-registry-key", mesh)
    assert secret is not None
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["labels"]["usage"] == "nginx-mesh-registry-key"
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert decoded_config(secret) == {
        "auths": {server: {"username": user, "password": password, "auth": auth}}
    }

    templates: list[dict[str, object]] = []
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
    ):
        for obj in kube.list(api_version, kind, mesh):
            templates.extend(pod_specs({**obj, "kind": kind}))
    assert len(templates) == 4
    for spec in templates:
        assert spec["imagePullSecrets"] == [{"name": "nginx-mesh-registry-key"}]
        for container in containers(spec):
            assert container["image"].startswith(f"{server}/"), container["image"]

    ok(run_deploy("remove", "--namespace", mesh, *kube.cli_args()))
    assert kube.list("v1", "Secret", None, "usage=nginx-mesh-registry-key") == []
    assert kube.get("v1", "Secret", "keep-me", bystander) is not None
