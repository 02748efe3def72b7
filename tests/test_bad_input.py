"""Bad input and hostile registry answers (issue 8, Bad input).

On the command line: exit 2, one clear line on stderr, no traceback, nothing changed. Inside:
whatever a registry or token server answers, only our typed errors escape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.errors import HostileContent, MirrorError
from mirror.image.reference import Reference
from mirror.net.auth import Challenge, CredentialStore, fetch_token
from mirror.net.client import RegistryClient
from mirror.net.credentials import Credentials
from mirror.net.hosts import HostOptions
from mirror.net.retry import RetryPolicy
from mirror.transports.registry import RegistryTransport
from tests.faultproxy import FaultProxy, ProxyFactory
from tests.imagefactory import OCI_MANIFEST, make_image, sha256
from tests.mirrorcli import REPO_ROOT, PublicImages, run_mirror
from tests.registries import Registry

SOURCE = "quay.io/team/app:1"


@pytest.fixture(scope="module")
def public(anon_registry: Registry) -> PublicImages:
    images = PublicImages(anon_registry, f"badinput-{uuid.uuid4().hex[:8]}")
    images.add(SOURCE, make_image("bad-input-app", [2000]))
    return images


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``Error: ...`` line of a run that exited 2 without a traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


BAD_LOCKS = {
    "not TOML": ("version = 1\n[[images]\n", "not valid TOML"),
    "upper case": (f'source = "{SOURCE.replace("app", "App")}"', "upper case in repository"),
    "bad tag": ('source = "quay.io/team/app:-1"', "bad tag"),
    "bad digest": ('source = "quay.io/team/app@sha256:abc"', "invalid digest"),
    "unknown key": (f'source = "{SOURCE}"\nmirror = true', "unknown key(s) mirror"),
    "no source": ('component = "x"', "missing 'source'"),
    "bad platform": (f'source = "{SOURCE}"\nplatforms = ["linux"]', "invalid platform"),
    "platforms without a tag": (
        f'source = "quay.io/team/app@sha256:{"a" * 64}"\nplatforms = ["linux/arm64"]',
        "'platforms' needs a tag",
    ),
    "wrong version": ("version = 2", "unsupported lock version 2"),
}


@pytest.mark.parametrize("case", BAD_LOCKS)
def test_bad_lock(
    case: str, proxies: ProxyFactory, anon_registry: Registry, tmp_path: Path
) -> None:
    body, reason = BAD_LOCKS[case]
    text = body if body.startswith("version") else f"version = 1\n[[images]]\n{body}\n"
    lock = tmp_path / "images.lock"
    lock.write_text(text)
    dest = proxies(anon_registry.url)
    result = run_mirror("sync", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm")
    line = one_error_line(result)
    assert str(lock) in line and reason in line
    assert dest.requests == []
    assert lock.read_text() == text


@pytest.mark.parametrize("command", ["sync", "save"])
def test_platform_of_a_digest_only_image_is_refused(
    command: str, public: PublicImages, proxies: ProxyFactory, tmp_path: Path
) -> None:
    lock = tmp_path / "images.lock"
    lock.write_text(
        f'version = 1\n[[images]]\nsource = "{SOURCE.split(":")[0]}@sha256:{"a" * 64}"\n'
    )
    source = proxies(public.registry.url)
    endpoints = [a.replace(public.registry.url, source.url) for a in public.endpoint_args()]
    target = ["--registry-server", "127.0.0.1:9/nsm"] if command == "sync" else []
    target += ["--output", str(tmp_path / "out.tar")] if command == "save" else []
    result = run_mirror(
        command, "--lock", str(lock), *target, *endpoints, "--platform", "linux/arm64"
    )
    assert "--platform needs a tag" in one_error_line(result)
    assert source.requests == []
    assert not (tmp_path / "out.tar").exists()


def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "missing": tmp_path / "missing",
        "directory": tmp_path / "a-directory",
        "not-utf8": tmp_path / "latin1",
        "not-json": tmp_path / "not.json",
        "not-pem": tmp_path / "not.pem",
    }
    files["directory"].mkdir()
    files["not-utf8"].write_bytes(b"version = 1\n# caf\xe9\n")
    files["not-json"].write_text("this is not JSON\n")
    files["not-pem"].write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    return files


BAD_ARGS: dict[str, tuple[list[str], str]] = {
    "server with scheme": (["--registry-server", "http://127.0.0.1:5000/nsm"], "without a scheme"),
    "server with space": (["--registry-server", "my registry/nsm"], "whitespace"),
    "server upper case": (["--registry-server", "Registry.Example.com/nsm"], "lower case"),
    "endpoint without URL": (["--endpoint", "quay.io"], "expected HOST=URL"),
    "endpoint ftp": (["--endpoint", "quay.io=ftp://mirror.example"], "http(s)://"),
    "endpoint query": (["--endpoint", "quay.io=http://mirror.example/p?x=1"], "http(s)://"),
    "endpoint path": (["--endpoint", "quay.io=http://mirror.example/Cache"], "bad repository path"),
    "insecure with scheme": (["--insecure-registry", "http://x.example"], "expected HOST[:PORT]"),
    "platform": (["--platform", "linux"], "expected OS/ARCH"),
    "lock missing": (["--lock", "{missing}"], "cannot read lock file"),
    "lock is a directory": (["--lock", "{directory}"], "cannot read lock file"),
    "lock not UTF-8": (["--lock", "{not-utf8}"], "cannot read lock file"),
    "key missing": (["--registry-key", "{missing}"], "cannot read"),
    "key is a directory": (["--registry-key", "{directory}"], "cannot read"),
    "key not JSON": (["--registry-key", "{not-json}"], "not a JSON key file"),
    "CA file missing": (["--ca-file", "{missing}"], "not found or not readable"),
    "CA file not PEM": (["--ca-file", "{not-pem}"], "no usable CA certificate"),
    "auth file missing": (["--auth-file", "{missing}"], "not found or not readable"),
}


@pytest.mark.parametrize("case", BAD_ARGS)
def test_bad_option(case: str, public: PublicImages, proxies: ProxyFactory, tmp_path: Path) -> None:
    args, reason = BAD_ARGS[case]
    files = bad_files(tmp_path)
    args = [a.format(**files) if a.startswith("{") else a for a in args]
    dest = proxies(public.registry.url)
    lock = public.write_lock(tmp_path / "images.lock")
    command = [
        "sync",
        "--lock",
        str(lock),
        "--registry-server",
        f"{dest.host}/nsm",
        *public.endpoint_args(),
    ]
    result = run_mirror(*command, *args)
    assert reason in one_error_line(result)
    assert dest.requests == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("MESHLIFT_RETRY_ATTEMPTS", "0"), ("MESHLIFT_HTTP_TIMEOUT", "soon")],
)
def test_bad_retry_setting(
    name: str, value: str, public: PublicImages, proxies: ProxyFactory, tmp_path: Path
) -> None:
    dest = proxies(public.registry.url)
    lock = public.write_lock(tmp_path / "images.lock")
    result = run_mirror(
        "sync", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm",
        *public.endpoint_args(), env={name: value},
    )  # fmt: skip
    assert f"{name}={value!r}" in one_error_line(result)
    assert dest.requests == []


def web_server(proxies: ProxyFactory, status: int) -> FaultProxy:
    """A plain web server answering every request with an HTML page."""
    server = proxies("http://127.0.0.1:9")
    page = b"<!doctype html><html><body>Welcome to nginx!</body></html>"
    server.rule(
        "replace", times=None, status=status, headers={"Content-Type": "text/html"}, body=page
    )
    return server


@pytest.mark.parametrize("status", [200, 404])
@pytest.mark.parametrize("where", ["destination", "source"])
def test_a_web_server_is_not_a_registry(
    where: str, status: int, public: PublicImages, proxies: ProxyFactory, tmp_path: Path
) -> None:
    html = web_server(proxies, status)
    dest = proxies(public.registry.url) if where == "source" else html
    endpoints = public.endpoint_args()
    if where == "source":
        endpoints = [a.replace(public.registry.url, html.url) for a in endpoints]
    lock = public.write_lock(tmp_path / "images.lock")
    common = ["--lock", str(lock), "--registry-server", f"{dest.host}/nsm", *endpoints]
    for command in ("sync", "verify"):
        line = one_error_line(run_mirror(command, *common))
        assert f"{html.host}/v2/ is not a container registry" in line
        assert f"HTTP {status} text/html" in line
    assert [r for r in dest.requests if r.method != "HEAD"] == []
    if where == "source":
        line = one_error_line(run_mirror("lock", "--lock", str(lock), *endpoints))
        assert "is not a container registry" in line


def run_deploy(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m deploy ARGS`` with no MESHLIFT_* or KUBECONFIG from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "deploy", *args],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip


BAD_YAML = {
    "unclosed flow": "apiVersion: v1\nkind: [unclosed\n",
    "tab indent": "apiVersion: v1\nmetadata:\n\tname: x\n",
    "NUL byte": "\x00garbage: : :\n",
}


@pytest.mark.parametrize("case", BAD_YAML)
def test_bad_manifests_yaml(case: str, tmp_path: Path) -> None:
    manifests = tmp_path / "mesh.yaml"
    manifests.write_text(BAD_YAML[case])
    result = run_deploy(
        "render", "--registry-server", "r.example", "-o", "-", "--manifests", str(manifests)
    )
    assert str(manifests) in one_error_line(result)


@pytest.mark.parametrize("case", BAD_YAML)
def test_bad_kubeconfig(case: str, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(BAD_YAML[case])
    result = run_deploy("status", "--kubeconfig", str(kubeconfig))
    assert str(kubeconfig) in one_error_line(result)


@pytest.mark.parametrize("text", ["- just\n- a list\n", "42\n", "clusters: 7\n"])
def test_kubeconfig_of_the_wrong_shape(text: str, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text)
    line = one_error_line(run_deploy("status", "--kubeconfig", str(kubeconfig)))
    assert str(kubeconfig) in line and ("not a kubeconfig" in line or "must be a list" in line)


# --- hostile answers, in process ---------------------------------------------------------------

REF = Reference("reg.example", "team/app", "1")
QUICK = RetryPolicy(attempts=1, initial_wait=0, max_wait=0)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_MANIFEST_KEYS = (
    "schemaVersion",
    "mediaType",
    "config",
    "layers",
    "manifests",
    "digest",
    "size",
    "platform",
)
_MANIFEST_JSON = st.dictionaries(st.sampled_from(_MANIFEST_KEYS), _JSON, max_size=6)
_BODIES = st.one_of(
    st.binary(max_size=200),
    _JSON.map(lambda v: json.dumps(v).encode()),
    _MANIFEST_JSON.map(lambda v: json.dumps(v).encode()),
)


def transport_for(handler: Callable[[httpx.Request], httpx.Response]) -> RegistryTransport:
    client = RegistryClient(
        HostOptions(), CredentialStore(), QUICK, transport=httpx.MockTransport(handler)
    )
    return RegistryTransport(client)


@settings(deadline=None)
@given(
    body=_BODIES,
    content_type=st.sampled_from([OCI_MANIFEST, "text/html", "application/json", ""]),
    claim=st.sampled_from(["none", "right", "wrong", "garbage"]),
    by_digest=st.booleans(),
)
def test_any_manifest_answer_is_a_manifest_or_a_typed_error(
    body: bytes, content_type: str, claim: str, by_digest: bool
) -> None:
    digest = sha256(body)
    claimed = {"none": None, "right": digest, "wrong": sha256(b"x"), "garbage": "sha256:zz"}[claim]

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": content_type}
        if claimed:
            headers["Docker-Content-Digest"] = claimed
        return httpx.Response(200, headers=headers, content=body)

    with transport_for(answer) as registry:
        try:
            manifest = registry.get_manifest(REF, digest if by_digest else None)
        except MirrorError:
            return
    assert manifest.digest == digest and manifest.raw == body


@settings(deadline=None)
@given(
    status=st.integers(300, 599),
    body=_BODIES,
    retry_after=st.text(max_size=30),
    challenge=st.text(max_size=60),
)
def test_any_error_answer_is_a_typed_error(
    status: int, body: bytes, retry_after: str, challenge: str
) -> None:
    headers = {"Retry-After": retry_after, "WWW-Authenticate": challenge, "Location": challenge}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=_ascii(headers), content=body)

    with transport_for(answer) as registry, pytest.raises(MirrorError):
        registry.get_manifest(REF, None)


def _ascii(headers: dict[str, str]) -> dict[str, str]:
    return {
        k: v.encode("ascii", "ignore").decode().replace("\n", " ").replace("\r", " ")
        for k, v in headers.items()
    }


_TOKEN_JSON = st.dictionaries(
    st.sampled_from(["token", "access_token", "expires_in", "issued_at"]), _JSON, max_size=4
)


@settings(deadline=None)
@given(
    status=st.sampled_from([200, 200, 401, 500]),
    body=_BODIES | _TOKEN_JSON.map(lambda v: json.dumps(v).encode()),
)
def test_any_token_answer_is_a_token_or_a_typed_error(status: int, body: bytes) -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})
    client = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(status, content=body))
    )
    try:
        token, lifetime = fetch_token(
            client.send, challenge, ("repository:a:pull",), Credentials("u", "p")
        )
    except MirrorError:
        return
    assert isinstance(token, str) and token and isinstance(lifetime, float)


def test_an_endless_token_answer_is_refused_unread() -> None:
    sent = []

    def endless() -> Iterator[bytes]:
        for _ in range(1024):  # 1 GiB, produced only as it is read
            sent.append(1)
            yield b"{" * (1 << 20)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, content=endless())
        challenge = 'Bearer realm="https://reg.example/token",service="reg"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    with transport_for(answer) as registry, pytest.raises(HostileContent) as refused:
        registry.get_manifest(REF, None)
    assert "token server reg.example answered with more than 1024 KiB" in str(refused.value)
    assert len(sent) <= 2
