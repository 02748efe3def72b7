"""deploy status: what is deployed, where the Secret is, and images not from the registry."""

from __future__ import annotations

from tests.deploy.deploycli import MINI_MESH, R, ok, run_deploy
from tests.fakekube.fixtures import KubeUnderTest


def test_status_of_a_deployed_mesh(fake_kube: KubeUnderTest) -> None:
    ok(
        run_deploy(
            "apply",
            "--registry-server",
            R,
            "--chart",
            MINI_MESH,
            "--disable-public-images",
            "--skip-preflight",
            "--registry-username",
            "u",
            *fake_kube.cli_args(),
            env={"MESHLIFT_REGISTRY_PASSWORD": "pw"},
        )
    )
    apps = fake_kube.create_namespace("apps")
    ok(run_deploy("propagate", "--namespace", apps, *fake_kube.cli_args()))
    result = ok(run_deploy("status", *fake_kube.cli_args()))
    assert (
        f"mesh in nginx-mesh from {R} (image tag 2.0.0, kubernetes, public images disabled)"
        in result.stdout
    )
    assert "  Deployment nginx-mesh/nginx-mesh-controller  1/1 available" in result.stdout
    assert "  DaemonSet nginx-mesh/spire-agent  1/1 available" in result.stdout
    assert "registry Secret in: apps, nginx-mesh" in result.stdout
    assert "images not from the registry: none" in result.stdout

    deployments = fake_kube.client.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.patch(
        name="nginx-mesh-metrics",
        namespace="nginx-mesh",
        body={
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "nginx-mesh-metrics", "image": "docker.io/library/busybox:1"}
                        ]
                    }
                }
            }
        },
        content_type="application/merge-patch+json",
    )
    configs = fake_kube.client.resources.get(api_version="v1", kind="ConfigMap")
    meshconfig = configs.get(name="meshconfig", namespace="nginx-mesh").to_dict()
    text = meshconfig["data"]["meshconfig.json"].replace(f"{R}/", "docker.io/nginx/")
    configs.patch(
        name="meshconfig",
        namespace="nginx-mesh",
        body={"data": {"meshconfig.json": text}},
        content_type="application/merge-patch+json",
    )
    changed = run_deploy("status", *fake_kube.cli_args())
    assert changed.exit_code == 1
    assert (
        "  docker.io/library/busybox:1  (Deployment nginx-mesh/nginx-mesh-metrics, container"
        " nginx-mesh-metrics)" in changed.stdout
    )
    assert (
        "  docker.io/nginx/nginx-mesh-sidecar:2.0.0  (ConfigMap nginx-mesh/meshconfig, data"
        " meshconfig.json: registry.sidecarImage)" in changed.stdout
    )


def test_status_without_a_mesh(fake_kube: KubeUnderTest) -> None:
    result = run_deploy("status", *fake_kube.cli_args())
    assert result.exit_code == 1
    assert "no mesh deployed by meshlift in nginx-mesh" in result.stdout
    assert "registry Secret in: no namespace" in result.stdout
