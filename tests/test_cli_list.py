"""``mirror list`` and the shared CLI behaviour, run as a user would: ``python -m mirror``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_lock import NSM_SOURCES, OPENSHIFT_SOURCES

NAMES_AND_TAGS = [
    "nginx-mesh-controller:2.0.0",
    "nginx-mesh-metrics:2.0.0",
    "nginx-mesh-sidecar:2.0.0",
    "nginx-mesh-init:2.0.0",
    "nginx-mesh-cert-reloader:2.0.0",
    "spire-server:1.5.6",
    "k8s-workload-registrar:1.5.6",
    "spire-agent:1.5.6",
    "nats:2.9-alpine",
    "curl:latest",
    "kubectl:latest",
    "ubuntu:22.04",
    "spiffe-csi-driver:0.2.1",
    "csi-node-driver-registrar:v2.7.0",
]
QUALIFIED = {
    "nats:2.9-alpine": "docker.io/library/nats:2.9-alpine",
    "curlimages/curl:latest": "docker.io/curlimages/curl:latest",
    "bitnami/kubectl:latest": "docker.io/bitnami/kubectl:latest",
    "ubuntu:22.04": "docker.io/library/ubuntu:22.04",
}
ALL_SOURCES = [QUALIFIED.get(s, s) for s in NSM_SOURCES + OPENSHIFT_SOURCES]


def mirror(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mirror ARGS`` in ``cwd`` (wide terminal, no debug)."""
    env = {k: v for k, v in os.environ.items() if k != "MESHLIFT_DEBUG"}
    env["COLUMNS"] = "250"
    return subprocess.run(
        [sys.executable, "-m", "mirror", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_list_json_shows_all_14_images_and_the_chart_under_the_server(tmp_path: Path) -> None:
    result = mirror(
        tmp_path, "list", "--registry-server", "reg.example.com:5000/nsm", "--output", "json"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    *rows, chart = json.loads(result.stdout)
    assert chart == {
        "kind": "chart",
        "source": "helm.nginx.com/stable/nginx-service-mesh:2.0.0",
        "destination": "reg.example.com:5000/nsm/nginx-service-mesh:2.0.0",
        "digest": None,
        "component": "nginx-mesh",
        "environment": "all",
        "platforms": [],
    }
    assert {r["kind"] for r in rows} == {"image"}
    assert [r["source"] for r in rows] == ALL_SOURCES
    assert [r["destination"] for r in rows] == [
        f"reg.example.com:5000/nsm/{n}" for n in NAMES_AND_TAGS
    ]
    assert [r["environment"] for r in rows] == ["all"] * 11 + ["openshift"] * 3
    assert {r["component"] for r in rows} == {"nginx-mesh", "spire", "nats", "tools", "openshift"}
    assert all(r["digest"] is None and r["platforms"] == [] for r in rows)


def test_list_table_renders(tmp_path: Path) -> None:
    result = mirror(tmp_path, "list", "--registry-server", "reg.example.com:5000/nsm")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "14 images, 1 Helm chart" in lines[0]
    header = next(line for line in lines if "source" in line)
    for column in ("destination", "digest", "component", "environment"):
        assert column in header
    for source, name in zip(ALL_SOURCES, NAMES_AND_TAGS, strict=True):
        rows = [line for line in lines if f" {source} " in line]
        assert len(rows) == 1, source
        assert f" reg.example.com:5000/nsm/{name} " in rows[0]
    openshift = [line for line in lines if "openshift" in line]
    assert len(openshift) == 3


def test_list_default_server_is_the_seeds_example(tmp_path: Path) -> None:
    result = mirror(tmp_path, "list", "--output", "json")
    assert result.returncode == 0, result.stderr
    destinations = {r["source"]: r["destination"] for r in json.loads(result.stdout)}
    assert destinations["gcr.io/spiffe-io/spire-agent:1.5.6"] == "your-registry/spire-agent:1.5.6"
    assert destinations["docker.io/library/nats:2.9-alpine"] == "your-registry/nats:2.9-alpine"


def test_list_environment_kubernetes_leaves_out_openshift_images(tmp_path: Path) -> None:
    result = mirror(tmp_path, "list", "--environment", "kubernetes", "--output", "json")
    assert result.returncode == 0, result.stderr
    *images, chart = json.loads(result.stdout)
    assert [r["source"] for r in images] == ALL_SOURCES[:11]
    assert chart["source"] == "helm.nginx.com/stable/nginx-service-mesh:2.0.0"


def test_list_uses_images_lock_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "images.lock").write_text(
        'version = 1\n[[images]]\nsource = "quay.io/team/app:3"\ncomponent = "app"\n'
        f'digest = "sha256:{"e" * 64}"\nplatforms = ["linux/arm64"]\n',
        encoding="utf-8",
    )
    result = mirror(tmp_path, "list", "--registry-server", "r.example.com", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "kind": "image",
            "source": "quay.io/team/app:3",
            "destination": "r.example.com/app:3",
            "digest": f"sha256:{'e' * 64}",
            "component": "app",
            "environment": "all",
            "platforms": ["linux/arm64"],
        }
    ]


def test_two_sources_on_one_destination_exit_2_naming_both(tmp_path: Path) -> None:
    lock = tmp_path / "clash.lock"
    lock.write_text(
        'version = 1\n[[images]]\nsource = "gcr.io/spiffe-io/spire-agent:1.5.6"\n'
        '[[images]]\nsource = "ghcr.io/other/spire-agent:1.5.6"\n',
        encoding="utf-8",
    )
    for output in ("text", "json"):
        result = mirror(tmp_path, "list", "--lock", str(lock), "--output", output)
        assert_one_line_error(
            result,
            "gcr.io/spiffe-io/spire-agent:1.5.6",
            "ghcr.io/other/spire-agent:1.5.6",
            "your-registry/spire-agent:1.5.6",
        )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["list", "sync", "verify", "lock"]),
        (["list"], ["--registry-server", "--lock", "--output", "--environment"]),
        (["sync"], ["--registry-server", "--registry-password-stdin", "--endpoint", "--dry-run"]),
        (["verify"], ["--registry-server", "--lock", "--insecure-registry"]),
        (["lock"], ["--lock", "--check", "--endpoint"]),
    ],
)
def test_help_everywhere(tmp_path: Path, command: list[str], expected: list[str]) -> None:
    for flag in ("--help", "-h"):
        result = mirror(tmp_path, *command, flag)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert result.stdout.startswith("Usage: ")
        for word in expected:
            assert word in result.stdout


@pytest.mark.parametrize("server", ["http://x", "https://reg.example.com:5000/nsm", "Reg.io"])
def test_bad_registry_server_is_one_line(tmp_path: Path, server: str) -> None:
    line = assert_one_line_error(mirror(tmp_path, "list", "--registry-server", server), server)
    assert line.startswith("Error: invalid registry server")


def test_missing_lock_file_is_one_line_naming_it(tmp_path: Path) -> None:
    line = assert_one_line_error(mirror(tmp_path, "list", "--lock", "nope.lock"), "nope.lock")
    assert "cannot read lock file" in line


def test_malformed_lock_is_one_line_naming_file_entry_and_reason(tmp_path: Path) -> None:
    (tmp_path / "images.lock").write_text(
        'version = 1\n[[images]]\nsource = "nats:1"\n[[images]]\nsource = "Bad:1"\n',
        encoding="utf-8",
    )
    line = assert_one_line_error(mirror(tmp_path, "list"), "images.lock", "entry 2", "upper case")
    assert line.startswith("Error: images.lock: entry 2 (Bad:1): ")
