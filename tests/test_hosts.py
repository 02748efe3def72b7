"""Reaching registries: --endpoint rewrites, --insecure-registry, loopback HTTP fallback."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.errors import InputError
from mirror.image.reference import parse_reference
from mirror.net.hosts import (
    DOCKER_HUB_API,
    Endpoint,
    HostOptions,
    is_loopback,
    parse_endpoints,
    parse_insecure,
    resolve_endpoint,
)


def _where(reference: str, endpoints: list[str] = [], insecure: list[str] = []) -> tuple[str, ...]:  # noqa: B006
    """(first URL, repository, verify) for an image reference under the given flags."""
    ref = parse_reference(reference)
    options = HostOptions(parse_endpoints(endpoints), parse_insecure(insecure))
    endpoint = resolve_endpoint(ref.registry, options)
    return (*endpoint.urls, endpoint.repository(ref.repository), str(endpoint.verify))


# --- --endpoint -------------------------------------------------------------------------------


def test_issue_example_endpoint() -> None:
    assert parse_endpoints(["gcr.io=http://127.0.0.1:5000/cache"]) == {
        "gcr.io": "http://127.0.0.1:5000/cache"
    }
    assert _where("gcr.io/spiffe-io/spire-agent:1.5.6", ["gcr.io=http://127.0.0.1:5000/cache"]) == (
        "http://127.0.0.1:5000",
        "cache/spiffe-io/spire-agent",
        "True",
    )


def test_endpoint_only_applies_to_its_host() -> None:
    endpoints = ["gcr.io=http://127.0.0.1:5000/cache"]
    assert _where("ghcr.io/spiffe/spiffe-csi-driver:0.2.1", endpoints) == (
        "https://ghcr.io",
        "spiffe/spiffe-csi-driver",
        "True",
    )


@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "DOCKER.IO"])
def test_docker_hub_as_endpoint_host(host: str) -> None:
    endpoints = [f"{host}=http://127.0.0.1:5000/hub"]
    assert _where("nats:2.9-alpine", endpoints) == (
        "http://127.0.0.1:5000",
        "hub/library/nats",
        "True",
    )
    assert _where("curlimages/curl", endpoints)[1] == "hub/curlimages/curl"
    assert _where("docker.io/library/ubuntu:22.04", endpoints)[1] == "hub/library/ubuntu"


def test_endpoint_without_path_keeps_the_repository() -> None:
    assert _where("gcr.io/a/b:1", ["gcr.io=https://mirror.example.com:8443"]) == (
        "https://mirror.example.com:8443",
        "a/b",
        "True",
    )


def test_endpoint_trailing_slash_and_deep_prefix() -> None:
    assert parse_endpoints(["gcr.io=http://127.0.0.1:5000/a/b/"]) == {
        "gcr.io": "http://127.0.0.1:5000/a/b"
    }
    assert _where("gcr.io/x/y:1", ["gcr.io=http://127.0.0.1:5000/a/b/"])[1] == "a/b/x/y"


def test_endpoint_with_port_in_host_and_later_flag_wins() -> None:
    endpoints = parse_endpoints(
        ["reg.example.com:5000=http://127.0.0.1:1/one", "reg.example.com:5000=http://127.0.0.1:2"]
    )
    assert endpoints == {"reg.example.com:5000": "http://127.0.0.1:2"}


def test_endpoint_to_an_insecure_target() -> None:
    endpoints = ["gcr.io=https://mirror.example.com:5000/c"]
    assert _where("gcr.io/a/b", endpoints)[2] == "True"
    assert _where("gcr.io/a/b", endpoints, ["mirror.example.com:5000"])[2] == "False"
    assert _where("gcr.io/a/b", endpoints, ["mirror.example.com"])[2] == "False"
    assert _where("gcr.io/a/b", endpoints, ["gcr.io"])[2] == "False"


@pytest.mark.parametrize(
    "value",
    [
        "gcr.io",
        "gcr.io:http://x",
        "=http://127.0.0.1:5000",
        "bad_host=http://127.0.0.1:5000",
        "gcr.io/path=http://127.0.0.1:5000",
        "gcr.io=127.0.0.1:5000",
        "gcr.io=ftp://127.0.0.1:5000",
        "gcr.io=http://",
        "gcr.io=",
        "gcr.io=http://127.0.0.1:5000/Cache",
        "gcr.io=http://127.0.0.1:5000/cache?x=1",
        "gcr.io=http://[::1",
        "gcr.io=http://127.0.0.1:99999",
        "gcr.io=http://127.0.0.1:0",
    ],
)
def test_bad_endpoint_is_input_error(value: str) -> None:
    with pytest.raises(InputError) as info:
        parse_endpoints([value])
    assert str(info.value).startswith(f"invalid --endpoint {value!r}: ")
    assert info.value.exit_code == 2


@given(st.text(max_size=60))
def test_any_endpoint_text_parses_or_is_input_error(text: str) -> None:
    try:
        endpoints = parse_endpoints([text])
    except InputError as exc:
        assert "--endpoint" in str(exc)
    else:
        ((host, _url),) = endpoints.items()
        endpoint = resolve_endpoint(host, HostOptions(endpoints))
        (base,) = endpoint.urls
        assert base.startswith(("http://", "https://"))
        assert "/" not in base.split("://", 1)[1]
        assert endpoint.repository("a/b").endswith("a/b")


# --- TLS, plain HTTP and loopback -------------------------------------------------------------


def test_remote_hosts_are_https_only_and_verified() -> None:
    assert resolve_endpoint("reg.example.com:5000", HostOptions()) == Endpoint(
        ("https://reg.example.com:5000",), "", True
    )
    assert resolve_endpoint("10.0.0.5:5000", HostOptions()) == Endpoint(
        ("https://10.0.0.5:5000",), "", True
    )


def test_docker_hub_is_reached_at_registry_1() -> None:
    assert DOCKER_HUB_API == "https://registry-1.docker.io"
    assert _where("nats:2.9-alpine") == (DOCKER_HUB_API, "library/nats", "True")


@pytest.mark.parametrize(
    "host", ["127.0.0.1:5000", "127.9.8.7:443", "localhost:5000", "localhost", "[::1]:5000"]
)
def test_loopback_hosts_fall_back_to_http_but_verify_tls(host: str) -> None:
    assert resolve_endpoint(host, HostOptions()) == Endpoint(
        (f"https://{host}", f"http://{host}"), "", True
    )


@pytest.mark.parametrize(
    ("host", "insecure"),
    [
        ("reg.example.com:5000", "reg.example.com:5000"),
        ("reg.example.com:5000", "reg.example.com"),
        ("reg.example.com:5000", "REG.example.com:5000"),
        ("reg.example.com", "reg.example.com"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
    ],
)
def test_insecure_registry_allows_http_and_unverified_tls(host: str, insecure: str) -> None:
    options = HostOptions(insecure=parse_insecure([insecure]))
    assert resolve_endpoint(host, options) == Endpoint(
        (f"https://{host}", f"http://{host}"), "", False
    )


def test_insecure_registry_is_for_that_host_only() -> None:
    options = HostOptions(insecure=parse_insecure(["reg.example.com:5000"]))
    for other in ("reg.example.com:6000", "reg.example.com", "other.example.com:5000"):
        assert resolve_endpoint(other, options) == Endpoint((f"https://{other}",), "", True)


@pytest.mark.parametrize(
    "value",
    ["http://reg.example.com", "https://reg:5000", "reg.example.com/path", "", "a b", "r_x"],
)
def test_bad_insecure_registry_is_input_error(value: str) -> None:
    with pytest.raises(InputError) as info:
        parse_insecure([value])
    assert str(info.value) == f"invalid --insecure-registry {value!r}: expected HOST[:PORT]"
    assert info.value.exit_code == 2


def test_parse_insecure_normalises() -> None:
    assert parse_insecure([" Reg.Example.com:5000 ", "a.io", "a.io"]) == frozenset(
        {"reg.example.com:5000", "a.io"}
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:5000", True),
        ("127.255.0.3:80", True),
        ("localhost", True),
        ("localhost:5000", True),
        ("::1", True),
        ("[::1]", True),
        ("[::1]:5000", True),
        ("128.0.0.1:5000", False),
        ("10.0.0.1", False),
        ("localhost.example.com:5000", False),
        ("[::2]:5000", False),
        ("reg.example.com", False),
        ("0.0.0.0:5000", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
