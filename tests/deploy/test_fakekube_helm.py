"""Helm's own client (client-go inside helm-python-sdk) against the fake API server.

A second, independent client: what it needs is what a real API server does (TLS and a bearer
token, watch-list bookmarks, OpenAPI v3, protobuf bodies, strict field validation).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chartrepo import official_chart
from tests.fakekube.fixtures import KubeUnderTest

RELEASE, NAMESPACE = "nginx-service-mesh", "nginx-mesh"
VALUES = {"registry": {"server": "reg.example/nsm", "disablePublicImages": True}}


@pytest.fixture
def chart() -> Path:
    return official_chart()


@pytest.fixture
def helm(fake_kube: KubeUnderTest) -> Iterator[Any]:
    with fake_kube.helm_config(NAMESPACE) as config:
        yield config


def install(helm: Any, chart: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    release: dict[str, Any] = helm.install(
        chart, RELEASE, values or VALUES, create_namespace=True, wait="watcher", timeout=60
    )
    return release


def test_helm_installs_the_official_chart(helm: Any, chart: Path) -> None:
    install(helm, chart)
    [listed] = helm.list()
    assert (listed["name"], listed["namespace"], listed["status"]) == (
        RELEASE,
        NAMESPACE,
        "deployed",
    )
    assert (listed["chart_name"], listed["chart_version"], listed["revision"]) == (
        "nginx-service-mesh",
        "2.0.0",
        1,
    )


def test_kubectl_lists_the_release_secret_helm_wrote(
    fake_kube: KubeUnderTest, helm: Any, chart: Path
) -> None:
    install(helm, chart)
    found = subprocess.run(
        ["kubectl", "--kubeconfig", str(fake_kube.kubeconfig), "get", "secrets", "-n", NAMESPACE,
         "-l", "owner=helm", "-o", "name"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert found.stdout.split() == [f"secret/sh.helm.release.v1.{RELEASE}.v1"]
