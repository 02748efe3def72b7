"""Preflight: every image the plan pulls must be in the private registry, else exit 1."""

from __future__ import annotations

from pathlib import Path

from deploy.chart.settings import Settings
from deploy.postrender.plan import build_plan, load_rendered
from deploy.release.preflight import missing_images
from mirror.image.lock import load_lock
from mirror.image.reference import parse_reference
from tests.deploy.deploycli import MINI_MESH, ok, one_line_error, run_deploy
from tests.fakekube.fixtures import KubeUnderTest
from tests.imagefactory import make_image, push
from tests.registries import Registry
from tests.signing import make_keypair, signature_manifest, tag_of

WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: nginx-mesh}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers: [{name: wait, image: "curlimages/curl:latest"}]
      containers: [{name: nats, image: "nats:2.9-alpine"}]
"""


def test_missing_images_keeps_order_and_asks_once_per_image() -> None:
    asked: list[str] = []
    refs = [parse_reference(t) for t in ("r.example/a:1", "r.example/b:1", "r.example/c:1")]

    def exists(ref: object) -> bool:
        asked.append(str(ref))
        return str(ref) == "r.example/b:1"

    assert [str(r) for r in missing_images(refs, exists)] == ["r.example/a:1", "r.example/c:1"]
    assert asked == ["r.example/a:1", "r.example/b:1", "r.example/c:1"]


def test_preflight_against_a_real_registry_lists_the_missing_image(
    anon_registry: Registry, unique_repo: object, fake_kube: KubeUnderTest, tmp_path: Path
) -> None:
    prefix = unique_repo("nsm")  # type: ignore[operator]
    server = f"{anon_registry.host}/{prefix}"
    push(anon_registry, f"{prefix}/nats", "2.9-alpine", make_image("nats"))
    manifest = tmp_path / "web.yaml"
    manifest.write_text(WORKLOAD)
    args = ["apply", "--registry-server", server, "--disable-public-images"]
    result = run_deploy(*args, "--manifests", str(manifest), *fake_kube.cli_args())
    line = one_line_error(result, 1)
    assert f"preflight: 1 image(s) missing from {server}: {server}/curl:latest." in line
    assert f"`mirror sync --registry-server {server}`" in line
    assert fake_kube.server is not None and fake_kube.server.mutations() == []

    push(anon_registry, f"{prefix}/curl", "latest", make_image("curl"))
    done = ok(run_deploy(*args, "--manifests", str(manifest), *fake_kube.cli_args()))
    assert f"preflight: all 2 images are in {server}" in done.stderr


def test_preflight_uses_the_deploy_credentials(
    basic_registry: Registry, unique_repo: object, fake_kube: KubeUnderTest, tmp_path: Path
) -> None:
    prefix = unique_repo("nsm")  # type: ignore[operator]
    server = f"{basic_registry.host}/{prefix}"
    push(basic_registry, f"{prefix}/nats", "2.9-alpine", make_image("nats"))
    push(basic_registry, f"{prefix}/curl", "latest", make_image("curl"))
    manifest = tmp_path / "web.yaml"
    manifest.write_text(WORKLOAD)
    args = ["apply", "--registry-server", server, "--disable-public-images", "--dry-run"]
    args += fake_kube.cli_args()
    assert basic_registry.username and basic_registry.password
    no_config = {"DOCKER_CONFIG": str(tmp_path / "no-docker-config")}
    anonymous = run_deploy(*args, "--manifests", str(manifest), env=no_config)
    assert "authentication required and no credentials given" in one_line_error(anonymous, 1)
    result = ok(
        run_deploy(
            *args,
            "--manifests",
            str(manifest),
            "--registry-username",
            basic_registry.username,
            "--registry-password-stdin",
            input=basic_registry.password + "\n",
            env=no_config,
        )
    )
    assert f"preflight: all 2 images are in {server}" in result.stderr
    assert basic_registry.password not in result.output
    assert fake_kube.server is not None and fake_kube.server.mutations() == []


def test_preflight_covers_the_images_named_only_in_the_mesh_config(
    anon_registry: Registry, unique_repo: object, fake_kube: KubeUnderTest
) -> None:
    prefix = unique_repo("nsm")  # type: ignore[operator]
    server = f"{anon_registry.host}/{prefix}"
    args = ["apply", "--registry-server", server, "--chart", MINI_MESH, "--disable-public-images"]
    settings = Settings.parse(server, disable_public_images=True)
    lock = load_lock(None)
    plan = build_plan(load_rendered(settings, lock, chart=MINI_MESH), lock.entries, settings)
    for ref in plan.pull_images():
        if ref.last_component != "nginx-mesh-sidecar":
            name = ref.repository.removeprefix(f"{prefix}/")
            push(anon_registry, f"{prefix}/{name}", ref.tag, make_image(str(ref)))
    result = run_deploy(*args, *fake_kube.cli_args())
    line = one_line_error(result, 1)
    assert (
        f"preflight: 1 image(s) missing from {server}: {server}/nginx-mesh-sidecar:2.0.0." in line
    )
    assert fake_kube.server is not None and fake_kube.server.mutations() == []


def test_preflight_verify_key_refuses_an_unsigned_image_in_the_registry(
    anon_registry: Registry, unique_repo: object, fake_kube: KubeUnderTest, tmp_path: Path
) -> None:
    prefix = unique_repo("nsm")  # type: ignore[operator]
    server = f"{anon_registry.host}/{prefix}"
    key = make_keypair(tmp_path)
    images = {"nats": ("2.9-alpine", make_image("nats")), "curl": ("latest", make_image("curl"))}
    for name, (tag, image) in images.items():
        push(anon_registry, f"{prefix}/{name}", tag, image)
    curl = images["curl"][1]
    push(
        anon_registry,
        f"{prefix}/curl",
        tag_of(curl.digest, "sig"),
        signature_manifest(key, curl.digest),
    )
    manifest = tmp_path / "web.yaml"
    manifest.write_text(WORKLOAD)
    args = [
        "apply",
        "--registry-server",
        server,
        "--disable-public-images",
        "--manifests",
        str(manifest),
    ]
    verify = ["--verify-key", str(key.public_pem)]
    result = run_deploy(*args, *verify, *fake_kube.cli_args())
    line = one_line_error(result, 1)
    nats = images["nats"][1]
    assert f"preflight: 1 image(s) in {server} without a valid signature:" in line
    assert f"{server}/nats:2.9-alpine: {nats.digest} not verified: no signature found" in line
    assert fake_kube.server is not None and fake_kube.server.mutations() == []

    push(
        anon_registry,
        f"{prefix}/nats",
        tag_of(nats.digest, "sig"),
        signature_manifest(key, nats.digest),
    )
    done = ok(run_deploy(*args, *verify, *fake_kube.cli_args()))
    assert f"preflight: all 2 images in {server} are signed" in done.stderr
    skipped = run_deploy(*args, *verify, "--skip-preflight", *fake_kube.cli_args())
    assert "--verify-key is checked in preflight" in one_line_error(skipped, 2)
