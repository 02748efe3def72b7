"""Interop with the official NGINX Service Mesh 2.0.0 chart: carried across the air gap into a
real registry (mirror save, mirror load), rendered from there, applied to and removed from the
fake API server.

The chart is ``../shared/charts/nginx-service-mesh-2.0.0.tgz`` beside the repository, or the
file ``MESHLIFT_NSM_CHART`` names; without it these tests are skipped, saying so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from deploy.hooks import HOOK
from deploy.manifests import load_paths
from deploy.rewrite import image_uses, is_under_registry
from mirror.image.reference import parse_reference, parse_registry_server
from tests.chartrepo import serve_charts
from tests.deploy.deploycli import ok, run_deploy
from tests.fakekube.fixtures import KubeUnderTest
from tests.imagefactory import make_image, push
from tests.mirrorcli import run_mirror
from tests.registries import Registry

CHART_ENV = "MESHLIFT_NSM_CHART"
CHART_NAME = "nginx-service-mesh-2.0.0.tgz"
DEFAULT_CHART = Path(__file__).parents[2].parent / "shared" / "charts" / CHART_NAME
Obj = dict[str, Any]


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


def added_and_deleted(kube: KubeUnderTest, since: int = 0) -> list[tuple[str, Obj]]:
    """(ADDED|DELETED, object) in the order the fake cluster saw them, after ``since`` events."""
    assert kube.server is not None
    found: list[tuple[str, Obj]] = []
    for event in kube.server.store.events[since:]:
        if event.old is None or event.new is None:
            obj = event.new or event.old
            assert obj is not None
            found.append(("ADDED" if event.old is None else "DELETED", obj))
    return found


def index(events: list[tuple[str, Obj]], what: str, kind: str, name: str) -> int:
    for number, (event, obj) in enumerate(events):
        if (event, obj["kind"], obj["metadata"]["name"]) == (what, kind, name):
            return number
    raise AssertionError(f"no {what} {kind} {name}")


def test_apply_then_remove_runs_the_hooks_in_order(
    anon_registry: Registry, unique_repo: object, official_chart: bytes, fake_kube: KubeUnderTest
) -> None:
    prefix = unique_repo("nsm")  # type: ignore[operator]
    server = mirrored(anon_registry, prefix, official_chart, fake_kube.workdir)
    args = ["--registry-server", server, "--disable-public-images", "--registry-username", "u"]
    env = {"MESHLIFT_REGISTRY_PASSWORD": "s3cr3t-pw"}
    rendered = ok(run_deploy("render", *args, "-o", str(fake_kube.workdir / "out"), env=env))
    assert "wrote 56 manifests" in rendered.stderr
    images = {
        parse_reference(u.image)
        for o in load_paths([str(fake_kube.workdir / "out")])
        for u in image_uses(o)
    }
    for ref in images:
        repository = ref.repository.removeprefix(f"{prefix}/")
        push(anon_registry, f"{prefix}/{repository}", ref.tag, make_image(str(ref)))

    applied = ok(run_deploy("apply", *args, *fake_kube.cli_args(), env=env))
    assert f"preflight: all {len(images)} images are in {server}" in applied.stderr
    events = added_and_deleted(fake_kube)
    crds = [n for n, (e, o) in enumerate(events) if o["kind"] == "CustomResourceDefinition"]
    custom = [
        n for n, (e, o) in enumerate(events) if o["kind"] in ("MeshConfig", "MeshConfigClass")
    ]
    assert len(crds) == 9 and len(custom) == 2 and max(crds) < min(custom)
    assert [o for _, o in events if o["kind"] == "Job"] == []  # no hook Job at apply

    assert fake_kube.server is not None
    before = len(fake_kube.server.store.events)
    removed = ok(run_deploy("remove", *fake_kube.cli_args()))
    assert "pre-delete hook: Job nginx-mesh/turn-proxies-transparent succeeded" in removed.stdout
    events = added_and_deleted(fake_kube, before)
    pre = index(events, "ADDED", "Job", "turn-proxies-transparent")
    controller = index(events, "DELETED", "Deployment", "nginx-mesh-controller")
    post = index(events, "ADDED", "Job", "remove-spiffeids")
    assert pre < index(events, "DELETED", "Job", "turn-proxies-transparent") < controller < post
    assert post < index(events, "DELETED", "Job", "remove-spiffeids")
    registry = parse_registry_server(server)
    jobs = [o for e, o in events if e == "ADDED" and o["kind"] == "Job"]
    assert {j["metadata"]["name"] for j in jobs} == {
        "turn-proxies-transparent",
        "remove-spiffeids",
        "remove-registry-secrets",
    }
    for job in jobs:
        assert all(is_under_registry(u.image, registry) for u in image_uses(job))
        assert index(events, "DELETED", "Job", job["metadata"]["name"])  # hook-succeeded
    assert fake_kube.list("v1", "Secret", None, "usage=nginx-mesh-registry-key") == []
    assert fake_kube.list("batch/v1", "Job", None) == []
    assert "s3cr3t-pw" not in removed.output + applied.output + rendered.output
