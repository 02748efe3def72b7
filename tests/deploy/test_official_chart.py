"""Interop with the official NGINX Service Mesh 2.0.0 chart: carried across the air gap into a
real registry (mirror save, mirror load), rendered from there, applied to and removed from the
fake API server as the Helm release nginx-meshctl makes: install, upgrade, a failed upgrade
rolled back, rollback, remove.

The chart is ``../shared/charts/nginx-service-mesh-2.0.0.tgz`` beside the repository, or the
file ``MESHLIFT_NSM_CHART`` names; without it these tests are skipped, saying so.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from deploy.chart.manifests import load_paths
from deploy.postrender.rewrite import image_uses, is_under_registry
from mirror.image.reference import parse_reference, parse_registry_server
from tests.chartrepo import serve_charts
from tests.deploy.deploycli import ok, run_deploy
from tests.fakekube import server as server_module
from tests.fakekube.fixtures import KubeUnderTest
from tests.imagefactory import make_image, push
from tests.mirrorcli import run_mirror
from tests.registries import Registry

CHART_ENV = "MESHLIFT_NSM_CHART"
CHART_NAME = "nginx-service-mesh-2.0.0.tgz"
DEFAULT_CHART = Path(__file__).parents[2].parent / "shared" / "charts" / CHART_NAME
Obj = dict[str, Any]
HOOK = "helm.sh/hook"
RELEASE, NAMESPACE = "nginx-service-mesh", "nginx-mesh"


@pytest.fixture
def official_chart() -> bytes:
    """The official chart's .tgz bytes, or a skip saying where it was looked for."""
    path = Path(os.environ.get(CHART_ENV) or DEFAULT_CHART)
    if not path.is_file():
        pytest.skip(f"official NSM chart not found at {path}: set {CHART_ENV} to its .tgz")
    return path.read_bytes()


def mirrored(registry: Registry, prefix: str, chart: bytes, workdir: Path) -> str:
    """``R`` holding the chart as the air gap leaves it: a stand-in for helm.nginx.com serves
    it, ``mirror save`` archives it from there, ``mirror load`` pushes it to R."""
    charts = workdir / "chart-repository"
    charts.mkdir()
    (charts / CHART_NAME).write_bytes(chart)
    lock = workdir / "images.lock"
    lock.write_text(
        'version = 1\n\n[[charts]]\nrepository = "https://helm.nginx.com/stable"\n'
        'name = "nginx-service-mesh"\nversion = "2.0.0"\n'
    )
    archive = workdir / "nsm.tar"
    with serve_charts(charts, "/helm/stable") as repo:
        stand_in = f"helm.nginx.com=http://{repo.host}/helm"
        saved = run_mirror(
            "save", "--lock", str(lock), "--output", str(archive), "--endpoint", stand_in
        )
    assert saved.returncode == 0, saved.stderr
    server = f"{registry.host}/{prefix}"
    creds = ["--registry-username", registry.username, "--registry-password-stdin"]
    loaded = run_mirror(
        "load", "--input", str(archive), "--registry-server", server,
        *(creds if registry.username else []), input=f"{registry.password or ''}\n",
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    return server


def test_render_from_the_registry_puts_every_image_under_it(
    basic_registry: Registry, unique_repo: object, official_chart: bytes, tmp_path: Path
) -> None:
    assert basic_registry.username and basic_registry.password
    prefix = unique_repo("nsm")  # type: ignore[operator]
    server = mirrored(basic_registry, prefix, official_chart, tmp_path)
    out = tmp_path / "out"
    result = ok(
        run_deploy(
            "render",
            "--registry-server",
            server,
            "--disable-public-images",
            "--registry-username",
            basic_registry.username,
            "--registry-password-stdin",
            "-o",
            str(out),
            input=basic_registry.password,
            env={"DOCKER_CONFIG": str(tmp_path / "no-docker-config")},
        )
    )
    objects = load_paths([str(p) for p in out.iterdir() if p.is_file()])
    hooks = load_paths([str(out / "hooks")])
    assert sum(o["kind"] == "CustomResourceDefinition" for o in objects) == 9
    assert [o for o in objects if HOOK in (o["metadata"].get("annotations") or {})] == []
    phases = {(o["metadata"]["annotations"][HOOK], o["kind"], o["metadata"]["name"]) for o in hooks}
    assert "namespace" not in next(o for o in objects if o["kind"] == "MeshConfigClass")["metadata"]
    assert {
        ("pre-delete", "Job", "turn-proxies-transparent"),
        ("post-delete", "Job", "remove-spiffeids"),
    } <= phases
    registry = parse_registry_server(server)
    uses = [u for o in [*objects, *hooks] for u in image_uses(o)]
    assert len({u.image for u in uses}) == 11
    assert [u for u in uses if not is_under_registry(u.image, registry)] == []
    (config,) = [o for o in objects if o["metadata"]["name"] == "meshconfig"]
    mesh = json.loads(config["data"]["meshconfig.json"])["registry"]
    assert (mesh["sidecarImage"], mesh["sidecarInitImage"], mesh["registryKeyName"]) == (
        f"{server}/nginx-mesh-sidecar:2.0.0",
        f"{server}/nginx-mesh-init:2.0.0",
        "nginx-mesh-registry-key",
    )
    written = "".join(p.read_text() for p in out.rglob("*.yaml"))
    for shown in (result.output, written):
        assert basic_registry.password not in shown
        assert "replaced-by-meshlift" not in shown


def repackaged(chart: bytes, version: str) -> bytes:
    """The official chart as another version: Chart.yaml's version changed, nothing else."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(chart)) as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith("/Chart.yaml") and data is not None:
                data = data.replace(b"version: 2.0.0", f"version: {version}".encode())
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def push_images(registry: Registry, prefix: str, out: Path) -> set[str]:
    """Push a small image for every image the rendered objects in ``out`` name; their names."""
    images = {parse_reference(u.image) for o in load_paths([str(out)]) for u in image_uses(o)}
    for ref in images:
        repository = ref.repository.removeprefix(f"{prefix}/")
        push(registry, f"{prefix}/{repository}", ref.tag, make_image(str(ref)))
    return {str(i) for i in images}


def helm_view(kube: KubeUnderTest) -> tuple[list[dict[str, Any]], list[tuple[int, str, str]]]:
    """``helm list`` and ``helm history`` as Helm itself reads the release."""
    with kube.helm_config(NAMESPACE) as helm:
        listed = list(helm.list(all_states=True))
        history = [(r["revision"], r["status"], r["chart_version"]) for r in helm.history(RELEASE)]
    return listed, history


def test_the_release_lifecycle_of_the_official_chart(
    anon_registry: Registry,
    unique_repo: object,
    official_chart: bytes,
    fake_kube: KubeUnderTest,
    tmp_path: Path,
) -> None:
    assert fake_kube.server is not None
    store = fake_kube.server.store
    prefix = unique_repo("nsm")  # type: ignore[operator]
    server = mirrored(anon_registry, prefix, official_chart, fake_kube.workdir)
    args = ["--registry-server", server, "--disable-public-images", "--registry-username", "u"]
    env = {"MESHLIFT_REGISTRY_PASSWORD": "s3cr3t-pw"}
    out = tmp_path / "out"
    ok(run_deploy("render", *args, "-o", str(out), env=env))
    images = push_images(anon_registry, prefix, out)
    timings: dict[str, float] = {}

    def deploy(step: str, *more: str, code: int = 0) -> Any:
        started = time.monotonic()
        result = run_deploy(*more, *fake_kube.cli_args(), env=env)
        timings[step] = time.monotonic() - started
        assert result.exit_code == code, f"{step}: {result.output}"
        assert "s3cr3t-pw" not in result.output
        return result

    installed = deploy("install", "apply", *args)
    assert f"preflight: all {len(images)} images are in {server}" in installed.stderr
    listed, history = helm_view(fake_kube)
    assert [(r["name"], r["status"], r["chart_name"]) for r in listed] == [
        (RELEASE, "deployed", "nginx-service-mesh")
    ]
    assert history == [(1, "deployed", "2.0.0")]
    assert fake_kube.get("apps/v1", "StatefulSet", "spire-server", NAMESPACE) is not None

    deploy("upgrade", "apply", *args, "--set", "mtls.persistentStorage=off")
    assert fake_kube.get("apps/v1", "StatefulSet", "spire-server", NAMESPACE) is None
    assert fake_kube.get("apps/v1", "Deployment", "spire-server", NAMESPACE) is not None
    assert helm_view(fake_kube)[1][-1] == (2, "deployed", "2.0.0")

    newer = tmp_path / "nginx-service-mesh-2.0.1.tgz"
    newer.write_bytes(repackaged(official_chart, "2.0.1"))
    out_201 = tmp_path / "out-2.0.1"
    ok(run_deploy("render", *args, "--chart", str(newer), "--image-tag", "2.0.1", "-o",
                  str(out_201), env=env))  # fmt: skip
    push_images(anon_registry, prefix, out_201)
    deploy("upgrade to 2.0.1", "apply", *args, "--chart", str(newer), "--image-tag", "2.0.1")
    assert helm_view(fake_kube)[1][-1] == (3, "deployed", "2.0.1")
    controller = fake_kube.get("apps/v1", "Deployment", "nginx-mesh-controller", NAMESPACE)
    assert controller is not None
    [container] = controller["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{server}/nginx-mesh-controller:2.0.1"

    store.pull_errors[f"{server}/nginx-mesh-metrics:2.0.2"] = "manifest unknown"
    push_images(anon_registry, prefix, out_201)  # R has them; the cluster cannot pull 2.0.2
    failed = deploy(
        "failed upgrade", "apply", *args, "--chart", str(newer), "--image-tag", "2.0.2",
        "--skip-preflight", code=1,
    )  # fmt: skip
    assert "Deployment nginx-mesh/nginx-mesh-metrics did not roll out" in failed.stderr
    assert timings["failed upgrade"] < 60
    assert helm_view(fake_kube)[1][-2:] == [(4, "failed", "2.0.1"), (5, "deployed", "2.0.1")]

    deploy("rollback", "rollback", "1")
    assert helm_view(fake_kube)[1][-1] == (6, "deployed", "2.0.0")
    assert fake_kube.get("apps/v1", "StatefulSet", "spire-server", NAMESPACE) is not None

    look_alike = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": "nginx-mesh-controller.look-alike.builtin.nsm.nginx",
            "labels": {"app.kubernetes.io/part-of": "nginx-service-mesh"},
        },
        "rules": [],
    }
    fake_kube.create(look_alike)
    before = len(store.events)
    removed = deploy("remove", "remove")
    with fake_kube.helm_config(NAMESPACE) as helm:
        assert helm.list(all_states=True) == []
    deleted = {
        (e.old["kind"], e.old["metadata"]["name"])
        for e in store.events[before:]
        if e.old is not None and e.new is None
    }
    assert ("ClusterRole", look_alike["metadata"]["name"]) not in deleted
    assert fake_kube.get("rbac.authorization.k8s.io/v1", "ClusterRole",
                         look_alike["metadata"]["name"]) is not None  # fmt: skip
    hooks = [o["metadata"]["name"] for e, o in store.history("Job") if e == "ADDED"]
    assert hooks[-3] == "turn-proxies-transparent"  # pre-delete, then the post-delete ones
    assert set(hooks[-2:]) == {"remove-spiffeids", "remove-registry-secrets"}
    assert fake_kube.get("v1", "Namespace", NAMESPACE) is None
    assert fake_kube.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []
    assert fake_kube.list("v1", "Secret", None, "usage=nginx-mesh-registry-key") == []
    assert "deleted    Namespace nginx-mesh" in removed.stdout
    print("wall time on the fake:", {k: round(v, 2) for k, v in timings.items()})


def test_the_charts_kube_version_is_enforced_before_anything_is_sent(
    official_chart: bytes, fake_kube: KubeUnderTest, tmp_path: Path, monkeypatch: Any
) -> None:
    assert fake_kube.server is not None
    monkeypatch.setitem(server_module.VERSION, "gitVersion", "v1.21.14")
    monkeypatch.setitem(server_module.VERSION, "minor", "21")
    chart = tmp_path / "nsm.tgz"
    chart.write_bytes(official_chart)
    result = run_deploy(
        "apply", "--registry-server", "reg.example/nsm", "--chart", str(chart),
        "--skip-preflight", *fake_kube.cli_args(),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert (
        "requires kubeVersion: >= 1.22-0 which is incompatible with Kubernetes v1.21.14"
        in result.stderr
    )
    assert fake_kube.server.mutations() == []
