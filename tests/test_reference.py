"""Image references: Docker normalisation, typed errors, round trips and the destination rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.errors import InputError, InvalidReference
from mirror.image.reference import (
    Reference,
    RegistryServer,
    flatten_destination,
    parse_reference,
    parse_registry_server,
)

SHA = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "ab" * 64


# --- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nats:2.9-alpine", Reference("docker.io", "library/nats", "2.9-alpine")),
        ("nats", Reference("docker.io", "library/nats", "latest")),
        ("curlimages/curl", Reference("docker.io", "curlimages/curl", "latest")),
        ("curlimages/curl:latest", Reference("docker.io", "curlimages/curl", "latest")),
        ("docker.io/nats:1", Reference("docker.io", "library/nats", "1")),
        ("docker.io/library/nats:1", Reference("docker.io", "library/nats", "1")),
        ("index.docker.io/library/nats:1", Reference("docker.io", "library/nats", "1")),
        ("index.docker.io/nats", Reference("docker.io", "library/nats", "latest")),
        ("index.docker.io/bitnami/kubectl", Reference("docker.io", "bitnami/kubectl", "latest")),
        (
            "registry-1.docker.io/bitnami/kubectl",
            Reference("docker.io", "bitnami/kubectl", "latest"),
        ),
        (
            "gcr.io/spiffe-io/spire-agent:1.5.6",
            Reference("gcr.io", "spiffe-io/spire-agent", "1.5.6"),
        ),
        (
            "reg.example.com:5000/team/app:v1.0_rc-2",
            Reference("reg.example.com:5000", "team/app", "v1.0_rc-2"),
        ),
        ("reg.example.com:5000/app", Reference("reg.example.com:5000", "app", "latest")),
        ("localhost/app", Reference("localhost", "app", "latest")),
        ("localhost:5000/app:1", Reference("localhost:5000", "app", "1")),
        ("127.0.0.1:5000/a/b/c:x", Reference("127.0.0.1:5000", "a/b/c", "x")),
        ("[::1]:5000/app:1", Reference("[::1]:5000", "app", "1")),
        ("Registry.Example.COM/app:1", Reference("registry.example.com", "app", "1")),
        ("LOCALHOST:5000/app", Reference("localhost:5000", "app", "latest")),
        # Docker: an upper-case first component is a host, and it stays one when printed.
        ("Foo/bar", Reference("Foo", "bar", "latest")),
        # Docker: a bare "localhost:5000" is the image library/localhost with tag 5000.
        ("localhost:5000", Reference("docker.io", "library/localhost", "5000")),
        (f"nats@{SHA}", Reference("docker.io", "library/nats", None, SHA)),
        (f"nats:2.9-alpine@{SHA}", Reference("docker.io", "library/nats", "2.9-alpine", SHA)),
        (f"gcr.io/a/b@{SHA512}", Reference("gcr.io", "a/b", None, SHA512)),
        ("a__b/c--d/e.f_g:T_", Reference("docker.io", "a__b/c--d/e.f_g", "T_")),
    ],
)
def test_normalises_like_docker(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("nats:2.9-alpine", "docker.io/library/nats:2.9-alpine"),
        ("curlimages/curl", "docker.io/curlimages/curl:latest"),
        (f"nats@{SHA}", f"docker.io/library/nats@{SHA}"),
        (f"nats:1@{SHA}", f"docker.io/library/nats:1@{SHA}"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
    ],
)
def test_str_is_the_fully_qualified_reference(text: str, shown: str) -> None:
    assert str(parse_reference(text)) == shown


def test_name_last_component_and_with_digest() -> None:
    ref = parse_reference("gcr.io/spiffe-io/spire-agent:1.5.6")
    assert ref.name == "gcr.io/spiffe-io/spire-agent"
    assert ref.last_component == "spire-agent"
    pinned = ref.with_digest(SHA)
    assert str(pinned) == f"gcr.io/spiffe-io/spire-agent:1.5.6@{SHA}"
    assert pinned.with_digest(None) == ref


# --- invalid references -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Nats:1", "upper case"),
        ("curlimages/Curl", "upper case"),
        ("gcr.io/Spiffe-io/spire-agent:1.5.6", "upper case"),
        ("nats@sha256:abc", "invalid digest"),
        ("nats@sha256:" + "g" * 64, "invalid digest"),
        ("nats@" + "0" * 64, "invalid digest"),
        ("nats@md5:" + "0" * 32, "unsupported algorithm"),
        ("nats@sha256:" + "0" * 63, "64 hex digits"),
        ("nats@", "invalid digest"),
        ("", "empty"),
        (":1.0", "empty name"),
        (f"@{SHA}", "empty name"),
        ("nats :1", "whitespace"),
        (" nats", "whitespace"),
        ("nats\n", "whitespace"),
        ("nats:1\t", "whitespace"),
        ("foo/../bar", "bad repository path"),
        ("../nats", "bad registry host '..'"),
        ("nats..x", "bad repository path"),
        ("gcr.io/", "bad repository path"),
        ("foo//bar", "bad repository path"),
        ("-nats", "bad repository path"),
        ("nats:", "bad tag"),
        ("nats:-x", "bad tag"),
        ("nats:.x", "bad tag"),
        ("nats:a/b", "bad registry host"),
        ("nats:" + "a" * 129, "bad tag"),
        ("nats:ümlaut", "bad tag"),
        ("nats:١٢", "bad tag"),
        ("http://nats", "bad registry host"),
        ("bad_host.io:5000/app", "bad registry host"),
        ("reg.io:/app", "bad registry host"),
        ("gcr.io/" + "a" * 250, "longer than 255"),
        ("/".join(["abcdefghij"] * 30), "longer than 255"),
    ],
)
def test_invalid_reference_names_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    message = str(info.value)
    assert reason in message
    assert repr(text) in message
    assert isinstance(info.value, InputError)
    assert info.value.exit_code == 2


def test_longest_valid_name_is_accepted() -> None:
    # docker.io/ (10) + library/ (8) + 237 = 255 characters of name.
    ref = parse_reference("a" * 237)
    assert len(ref.name) == 255
    with pytest.raises(InvalidReference, match="longer than 255"):
        parse_reference("a" * 238)


def test_longest_tag_is_accepted() -> None:
    assert parse_reference("nats:" + "a" * 128).tag == "a" * 128


# --- properties -------------------------------------------------------------------------------

_ALNUM = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_SEPARATOR = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def _component(draw: st.DrawFn) -> str:
    parts = [draw(_ALNUM)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(_SEPARATOR), draw(_ALNUM)]
    return "".join(parts)


_PATH = st.lists(_component(), min_size=1, max_size=3).map("/".join)
_LABEL = st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?\Z")
_DOMAIN = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["localhost", "LocalHost", "docker.io", "index.docker.io", "[::1]"]),
)
_HOST = st.tuples(_DOMAIN, st.one_of(st.none(), st.integers(1, 65535))).map(
    lambda dp: dp[0] if dp[1] is None else f"{dp[0]}:{dp[1]}"
)
_TAG = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
_DIGEST = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)


@st.composite
def valid_references(draw: st.DrawFn) -> str:
    """Reference text following Docker's grammar (domain/path:tag@digest, parts optional)."""
    host = draw(st.one_of(st.none(), _HOST))
    path = draw(_PATH)
    if host is None:
        # Without a host, a first component with a dot would be read as a domain.
        first, sep, rest = path.partition("/")
        path = first.replace(".", "-") + sep + rest
    text = path if host is None else f"{host}/{path}"
    tag = draw(st.one_of(st.none(), _TAG))
    if tag is not None:
        text += f":{tag}"
    digest = draw(st.one_of(st.none(), _DIGEST))
    if digest is not None:
        text += f"@{digest}"
    return text


@given(valid_references())
def test_valid_references_round_trip(text: str) -> None:
    ref = parse_reference(text)
    again = parse_reference(str(ref))
    assert again == ref
    assert str(again) == str(ref)
    assert ref.tag is not None or ref.digest is not None


@given(valid_references())
def test_valid_references_keep_path_tag_and_digest(text: str) -> None:
    ref = parse_reference(text)
    rest, _, digest = text.partition("@")
    assert ref.digest == (digest or None)
    slash, colon = rest.rfind("/"), rest.rfind(":")
    tag = rest[colon + 1 :] if colon > slash else None
    assert ref.tag == (tag or ("latest" if not digest else None))
    name = rest[:colon] if colon > slash else rest
    assert name.endswith(ref.repository.removeprefix("library/"))
    if ref.registry == "docker.io" and "/" not in ref.repository.removeprefix("library/"):
        assert ref.repository.startswith("library/")


@given(st.text(max_size=80))
def test_any_text_parses_or_is_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference as exc:
        assert str(exc)
    else:
        assert parse_reference(str(ref)) == ref


@given(st.text(alphabet="aZ09:/@._-[]é \nsha256", max_size=40))
def test_reference_like_text_parses_or_is_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    assert parse_reference(str(ref)) == ref


# --- destination rule -------------------------------------------------------------------------


def _dest(source: str, server: str) -> str:
    return str(flatten_destination(parse_reference(source), parse_registry_server(server)))


def test_seed_examples() -> None:
    assert _dest("gcr.io/spiffe-io/spire-agent:1.5.6", "your-registry") == (
        "your-registry/spire-agent:1.5.6"
    )
    assert _dest("nats:2.9-alpine", "your-registry") == "your-registry/nats:2.9-alpine"


@pytest.mark.parametrize(
    ("source", "server", "destination"),
    [
        (
            "gcr.io/spiffe-io/spire-agent:1.5.6",
            "registry.example.com:5000/platform/nsm",
            "registry.example.com:5000/platform/nsm/spire-agent:1.5.6",
        ),
        ("nats:2.9-alpine", "reg.example.com:5000", "reg.example.com:5000/nats:2.9-alpine"),
        ("curlimages/curl", "reg.example.com/nsm/", "reg.example.com/nsm/curl:latest"),
        (
            "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0",
            "127.0.0.1:5000/a/b",
            "127.0.0.1:5000/a/b/nginx-mesh-sidecar:2.0.0",
        ),
        # A tag wins over a digest: the destination keeps the tag only.
        (f"nats:1@{SHA}", "reg.example.com", "reg.example.com/nats:1"),
        # Digest-only sources keep their digest.
        (f"gcr.io/x/app@{SHA}", "reg.example.com", f"reg.example.com/app@{SHA}"),
    ],
)
def test_destination_rule(source: str, server: str, destination: str) -> None:
    assert _dest(source, server) == destination


def test_registry_server_parts() -> None:
    assert parse_registry_server("registry.example.com:5000/platform/nsm") == RegistryServer(
        "registry.example.com:5000", "platform/nsm"
    )
    assert parse_registry_server("reg.example.com") == RegistryServer("reg.example.com", "")
    assert str(parse_registry_server("reg.example.com:5000/nsm/")) == "reg.example.com:5000/nsm"


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        ("http://reg.example.com", "without a scheme"),
        ("https://reg.example.com:5000/nsm", "without a scheme"),
        ("reg example.com", "whitespace"),
        ("reg.example.com/ns m", "whitespace"),
        ("", "empty"),
        ("Reg.example.com", "lower case"),
        ("reg.example.com/NSM", "lower case"),
        ("reg_x.example.com", "bad host"),
        ("/nsm", "bad host"),
        ("reg.example.com//nsm", "bad path"),
        ("reg.example.com/../nsm", "bad path"),
    ],
)
def test_bad_registry_server(server: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_registry_server(server)
    assert reason in str(info.value)
    assert repr(server) in str(info.value)


_SERVER = st.tuples(
    st.lists(_LABEL, min_size=2, max_size=3).map(".".join).map(str.lower),
    st.one_of(st.none(), st.integers(1, 65535)),
    st.one_of(st.just(""), _PATH),
).map(lambda t: (t[0] if t[1] is None else f"{t[0]}:{t[1]}") + (f"/{t[2]}" if t[2] else ""))


@given(valid_references(), _SERVER)
def test_destination_is_server_last_component_and_tag(source: str, server: str) -> None:
    ref = parse_reference(source)
    dest = flatten_destination(ref, parse_registry_server(server))
    expected = f"{server}/{ref.last_component}"
    expected += f":{ref.tag}" if ref.tag else f"@{ref.digest}"
    assert str(dest) == expected
    # A destination under a dotted server is itself a valid reference that reads back equal.
    assert parse_reference(str(dest)) == dest
