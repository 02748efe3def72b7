"""A lock entry narrowed to some platforms: deploy pins the digest R holds, not the source's.

``mirror sync`` writes such an entry as an index of its own (its digest is nowhere at the
source); the user's flow is a pinned lock, ``mirror sync``, then ``deploy`` with the same lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.chart.manifests import load_paths
from deploy.postrender.rewrite import image_uses
from tests.deploy.deploycli import MINI_MESH, ok, run_deploy
from tests.deploy.test_audit import pod
from tests.fakekube.fixtures import KubeUnderTest
from tests.imagefactory import OCI_INDEX, make_image, make_index, push, registry_client
from tests.mirrorcli import run_mirror
from tests.registries import Registry
from tests.signing import KeyPair, make_keypair, signature_manifest, tag_of

SOURCE = "docker-registry.nginx.com/nsm/nginx-mesh-controller:2.0.0"


WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: controller}
spec:
  selector: {matchLabels: {app: c}}
  template:
    metadata: {labels: {app: c}}
    spec:
      containers: [{name: c, image: "docker-registry.nginx.com/nsm/nginx-mesh-controller:2.0.0"}]
"""


@dataclass(frozen=True)
class Narrowed:
    """A signed two-platform source index, its lock entry narrowed to amd64, synced into R."""

    server: str
    lock: Path
    key: KeyPair
    source_digest: str
    held: str  # the output of ``mirror verify --output json`` against R


def sync_narrowed(anon_registry: Registry, prefix: str, tmp_path: Path) -> Narrowed:
    """The user's flow up to deploy: a pinned, narrowed lock and ``mirror sync``."""
    index = make_index(
        [
            make_image("controller-amd64", platform=("linux", "amd64")),
            make_image("controller-arm64", platform=("linux", "arm64")),
        ]
    )
    source_repo = f"{prefix}/src/nsm/nginx-mesh-controller"
    push(anon_registry, source_repo, "2.0.0", index)
    key = make_keypair(tmp_path)
    push(
        anon_registry,
        source_repo,
        tag_of(index.digest, "sig"),
        signature_manifest(key, index.digest),
    )
    lock = tmp_path / "images.lock"
    lock.write_text(
        f'version = 1\n\n[[images]]\nsource = "{SOURCE}"\ncomponent = "nginx-mesh"\n'
        f'digest = "{index.digest}"\nplatforms = ["linux/amd64"]\n'
    )
    server = f"{anon_registry.host}/{prefix}/r"
    endpoint = f"docker-registry.nginx.com={anon_registry.url}/{prefix}/src"
    synced = run_mirror(
        "sync", "--lock", str(lock), "--registry-server", server, "--endpoint", endpoint,
        "--verify-key", str(key.public_pem),
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    held = run_mirror("verify", "--lock", str(lock), "--registry-server", server, "--output",
                      "json", "--no-attachments", "--endpoint", endpoint)  # fmt: skip
    assert held.returncode == 0, held.stderr
    return Narrowed(server, lock, key, index.digest, held.stdout)


def test_deploy_pins_the_narrowed_index_r_holds_and_checks_the_source_signature(
    anon_registry: Registry, unique_repo: object, fake_kube: KubeUnderTest, tmp_path: Path
) -> None:
    synced = sync_narrowed(anon_registry, unique_repo("narrow"), tmp_path)  # type: ignore[operator]
    server, lock, key = synced.server, synced.lock, synced.key
    out = tmp_path / "out"
    common = ["--registry-server", server, "--chart", MINI_MESH, "--lock", str(lock)]
    ok(run_deploy("render", *common, "-o", str(out)))
    images = {u.image for o in load_paths([str(out)]) for u in image_uses(o)}
    [pinned] = [i for i in images if "/nginx-mesh-controller:" in i]
    name, _, digest = pinned.partition("@")
    assert name == f"{server}/nginx-mesh-controller:2.0.0"
    assert digest and digest != synced.source_digest  # R's own index, not the source's
    assert digest in synced.held  # the digest mirror verify reads at R

    manifest = tmp_path / "controller.yaml"
    manifest.write_text(WORKLOAD)
    applied = ok(
        run_deploy(
            "apply", "--registry-server", server, "--lock", str(lock), "--manifests",
            str(manifest), "--verify-key", str(key.public_pem), *fake_kube.cli_args(),
        )
    )  # fmt: skip
    assert f"preflight: all 1 images in {server} are signed" in applied.stderr
    live = fake_kube.get("apps/v1", "Deployment", "controller", "nginx-mesh")
    assert live is not None
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == pinned


def test_audit_takes_the_narrowed_index_r_holds_for_what_the_lock_pins(
    anon_registry: Registry, unique_repo: object, fake_kube: KubeUnderTest, tmp_path: Path
) -> None:
    synced = sync_narrowed(anon_registry, unique_repo("narrow"), tmp_path)  # type: ignore[operator]
    image = f"{synced.server}/nginx-mesh-controller:2.0.0"
    with registry_client(anon_registry) as client:
        path = image.removeprefix(anon_registry.host).replace(":2.0.0", "/manifests/2.0.0")
        held = client.head(f"/v2{path}", headers={"Accept": OCI_INDEX}).headers[
            "docker-content-digest"
        ]
    assert held != synced.source_digest
    fake_kube.create_namespace("nginx-mesh")
    ran = f"{synced.server}/nginx-mesh-controller@{held}"
    fake_kube.create(pod("nginx-mesh", "controller", {"c": (image, ran)}))
    result = run_deploy(
        "audit", "--registry-server", synced.server, "--lock", str(synced.lock),
        "--image-tag", "2.0.0", *fake_kube.cli_args(),
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "no findings" in result.stdout
