"""deploy status: the Helm release, its rollouts, where the Secret is, images not from R."""

from __future__ import annotations

from tests.deploy.deploycli import MINI_MESH, R, ok, run_deploy
from tests.fakekube.fixtures import KubeUnderTest


def deploy_mesh(kube: KubeUnderTest) -> None:
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
            *kube.cli_args(),
            env={"MESHLIFT_REGISTRY_PASSWORD": "pw"},
        )
    )


def test_status_of_a_deployed_mesh(fake_kube: KubeUnderTest) -> None:
    deploy_mesh(fake_kube)
    apps = fake_kube.create_namespace("apps")
    ok(run_deploy("propagate", "--namespace", apps, *fake_kube.cli_args()))
    result = ok(run_deploy("status", *fake_kube.cli_args()))
    assert (
        "Helm release nginx-service-mesh in nginx-mesh: revision 1, deployed,"
        f" chart mini-mesh-2.0.0, images from {R}\n"
    ) in result.stdout
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
    changed = run_deploy("status", *fake_kube.cli_args())
    assert changed.exit_code == 1
    assert (
        "  docker.io/library/busybox:1  (Deployment nginx-mesh/nginx-mesh-metrics, container"
        " nginx-mesh-metrics)" in changed.stdout
    )


def test_status_sees_a_public_image_in_the_live_mesh_config(fake_kube: KubeUnderTest) -> None:
    deploy_mesh(fake_kube)
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
        "  docker.io/nginx/nginx-mesh-sidecar:2.0.0  (ConfigMap nginx-mesh/meshconfig, data"
        " meshconfig.json: registry.sidecarImage)" in changed.stdout
    )


def test_status_without_a_mesh(fake_kube: KubeUnderTest) -> None:
    result = run_deploy("status", *fake_kube.cli_args())
    assert result.exit_code == 1
    assert "no Helm release nginx-service-mesh in nginx-mesh" in result.stdout
    assert "registry Secret in: no namespace" in result.stdout
