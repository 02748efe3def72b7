"""The benchmark's own parts: the WAN shaper, the destination check, the order of the tools and
the executor of parallel commands."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from benchmarks.measure import alternate, in_parallel, verify
from benchmarks.shaper import Shaper
from tests.imagefactory import make_image, make_layer, push, sha256
from tests.registries import Registry

RepoName = Callable[..., str]


def test_shaper_adds_round_trips_and_paces(anon_registry: Registry, unique_repo: RepoName) -> None:
    layer = make_layer("shaped", 3 * 1024 * 1024)
    repo = unique_repo()
    push(anon_registry, repo, "v1", make_image("shaped", [layer]))
    with Shaper(anon_registry.host, rtt=0.040, mbit=200) as shaper:
        with httpx.Client(base_url=shaper.url) as client:
            started = time.perf_counter()
            assert client.get("/v2/").status_code == 200
            first = time.perf_counter() - started  # handshake + request
            started = time.perf_counter()
            blob = client.get(f"/v2/{repo}/blobs/{layer.digest}")
            body = time.perf_counter() - started
        assert shaper.connections == 1
    assert first >= 0.080
    assert blob.status_code == 200 and sha256(blob.content) == layer.digest
    assert body >= 0.040 + layer.size / 25e6
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{shaper.url}/v2/", timeout=2)


def test_shaper_forwards_to_loopback_only() -> None:
    with pytest.raises(ValueError, match="only forwards to 127"):
        Shaper("192.0.2.1:5000")


def test_verify_exits_naming_each_wrong_tag(anon_registry: Registry, unique_repo: RepoName) -> None:
    repo = unique_repo()
    digest = push(anon_registry, repo, "v1", make_image("verified"))
    other = make_image("other").digest
    verify("tool", anon_registry, {f"{repo}:v1": digest})
    with pytest.raises(SystemExit) as failed:
        verify("tool", anon_registry, {f"{repo}:v1": other, f"{repo}:v2": digest})
    message = str(failed.value)
    assert message.startswith("benchmark: tool left 2 of 2 destination images wrong")
    assert f"{repo}:v1: {digest}, source has {other}" in message
    assert f"{repo}:v2: HTTP 404, source has {digest}" in message


def test_tools_alternate_their_order_every_round() -> None:
    order: list[str] = []
    alternate(3, [lambda: order.append("A"), lambda: order.append("B")])
    assert order == ["A", "B", "B", "A", "A", "B"]


def test_parallel_commands_each_run_once(tmp_path: Path) -> None:
    commands = [["sh", "-c", f'echo x >> "{tmp_path}/{n}"'] for n in range(11)]
    run = in_parallel(commands, workers=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(str(n) for n in range(11))
    assert all(p.read_text() == "x\n" for p in tmp_path.iterdir())
    assert run.peak_rss_mib > 0
