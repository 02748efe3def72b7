"""Tests proving the harness (registries, token issuer, image factory, skopeo) is sound."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from tests.imagefactory import (
    DOCKER_LIST,
    OCI_INDEX,
    Fmt,
    make_image,
    make_index,
    make_layer,
    push,
    registry_client,
    sha256,
    write_oci_layout,
)
from tests.mirrorcli import REPO_ROOT
from tests.registries import Registry, RegistryFactory
from tests.skopeo import CONTAINERS_DIR, run_skopeo, skopeo_copy, skopeo_raw
from tests.tokenissuer import User, parse_scope

RepoName = Callable[..., str]


def test_factory_is_deterministic_and_shares_base_layers() -> None:
    base = [make_layer("base", 4096)]
    a, b = make_image("a", [1000], base), make_image("b", [1000], base, fmt="docker")
    assert make_image("a", [1000], base) == a
    assert a.layers[0].data == b.layers[0].data and a.layers[0].digest == b.layers[0].digest
    assert a.layers[1].digest != b.layers[1].digest
    assert a.digest == sha256(a.manifest) and 4096 < base[0].size < 4096 + 1024


@pytest.mark.parametrize(("fmt", "media_type"), [("oci", OCI_INDEX), ("docker", DOCKER_LIST)])
def test_pushed_index_matches_skopeo_raw(
    anon_registry: Registry, unique_repo: RepoName, fmt: Fmt, media_type: str
) -> None:
    images = [make_image(f"{fmt}-{arch}", [2048], platform=("linux", arch), fmt=fmt)
              for arch in ("amd64", "arm64")]  # fmt: skip
    index = make_index(images, fmt=fmt)
    repo = unique_repo()
    assert push(anon_registry, repo, "v1", index) == index.digest
    raw = skopeo_raw(anon_registry, f"{repo}:v1")
    assert sha256(raw) == index.digest and raw == index.manifest
    assert sha256(skopeo_raw(anon_registry, f"{repo}@{images[1].digest}")) == images[1].digest
    with registry_client(anon_registry) as client:
        got = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": media_type})
    assert got.headers["Content-Type"] == media_type


def test_second_push_skips_shared_base_blobs(
    anon_registry: Registry, unique_repo: RepoName
) -> None:
    base = [make_layer("shared-base", 2048)]
    repo = unique_repo()
    push(anon_registry, repo, "one", make_image("one", [512], base))
    mark = anon_registry.mark()
    push(anon_registry, repo, "two", make_image("two", [512], base))
    # new layer + new config are uploaded; the base layer is only HEADed
    assert anon_registry.count("POST", "/blobs/uploads/", since=mark) == 2
    assert anon_registry.count("HEAD", base[0].digest, since=mark) == 1


def test_access_log_counts_head_and_get(anon_registry: Registry, unique_repo: RepoName) -> None:
    repo = unique_repo()
    image = make_image("log", [256])
    push(anon_registry, repo, "latest", image)
    mark = anon_registry.mark()
    with registry_client(anon_registry) as client:
        accept = {"Accept": image.media_type}
        assert client.head(f"/v2/{repo}/manifests/latest", headers=accept).status_code == 200
        assert client.get(f"/v2/{repo}/manifests/{image.digest}", headers=accept).is_success
        assert client.get("/v2/_catalog", params={"n": 5}).is_success
    requests = anon_registry.requests(since=mark)
    assert [(r.method, r.status) for r in requests] == [("HEAD", 200), ("GET", 200), ("GET", 200)]
    assert requests[0].path == f"/v2/{repo}/manifests/latest"
    assert requests[2].path == "/v2/_catalog" and requests[2].query == "n=5"
    assert anon_registry.count("HEAD", "/manifests/", since=mark) == 1
    assert anon_registry.count("GET", f"/v2/{repo}/", since=mark) == 1


def test_basic_registry_checks_password(basic_registry: Registry, unique_repo: RepoName) -> None:
    url, user, password = f"{basic_registry.url}/v2/", basic_registry.username, "password"
    assert user and basic_registry.password == password
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=(user, "wrong")).status_code == 401
    assert httpx.get(url, auth=(user, password)).status_code == 200
    image = make_image("basic", [256])
    repo = unique_repo()
    push(basic_registry, repo, "v1", image)
    assert sha256(skopeo_raw(basic_registry, f"{repo}:v1")) == image.digest


def test_token_scopes_are_enforced(token_registry: Registry, unique_repo: RepoName) -> None:
    issuer, repo = token_registry.issuer, unique_repo()
    assert issuer is not None
    upload = f"{token_registry.url}/v2/{repo}/blobs/uploads/"

    def post_with(scope: str) -> httpx.Response:
        token = issuer.issue(token_registry.username, [scope])
        return httpx.post(upload, headers={"Authorization": f"Bearer {token}"})

    denied = post_with(f"repository:{repo}:pull")
    assert denied.status_code == 401 and "insufficient_scope" in denied.headers["WWW-Authenticate"]
    assert post_with(f"repository:{repo}:pull,push").status_code == 202
    # the same through the realm: wrong password is refused, push() asks for pull,push
    realm = httpx.get(issuer.realm, params={"scope": f"repository:{repo}:pull"}, auth=("user", "x"))
    assert realm.status_code == 401
    push(token_registry, repo, "v1", make_image("token", [256]))
    asked = [(t, n, sorted(a)) for t, n, a in map(parse_scope, issuer.requested_scopes())]
    assert ("repository", repo, ["pull", "push"]) in asked  # challenge order varies: push,pull
    assert sorted(issuer.requests[-1].access[0]["actions"]) == ["pull", "push"]


def test_token_grants_are_limited(make_registry: RegistryFactory) -> None:
    users = {"reader": User("pw", {"team/*": ["pull"]}), None: User(None, {"public/*": ["pull"]})}
    reg = make_registry("token", users=users, service="svc", issuer_name="iss")
    assert reg.issuer is not None
    realm = reg.issuer.realm
    got = httpx.get(realm, params={"service": "svc", "scope": ["repository:team/a:pull,push",
                                                                "repository:other:pull"]},
                    auth=("reader", "pw")).json()  # fmt: skip
    claims = jwt.decode(got["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/a", "actions": ["pull"]}]
    assert (claims["iss"], claims["aud"], claims["sub"]) == ("iss", "svc", "reader")
    anon = httpx.get(realm, params={"service": "svc", "scope": "repository:public/x:pull"}).json()
    token = anon["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["access"][0]["name"] == "public/x"
    # the registry accepts the anonymous pull token (a 404 for the missing repo, not a 401)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{reg.url}/v2/public/x/tags/list", headers=headers).status_code == 404


def test_registry_honours_token_expiry_with_60s_leeway(token_registry: Registry) -> None:
    issuer = token_registry.issuer
    assert issuer is not None
    access = [{"type": "registry", "name": "catalog", "actions": ["*"]}]

    def status(expires_in: int) -> int:
        token = issuer.sign("user", access, expires_in=expires_in)
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{token_registry.url}/v2/_catalog", headers=headers).status_code

    assert status(-30) == 200  # expired 30 s ago, still inside distribution's leeway
    assert status(-90) == 401


def test_tls_registry_needs_its_ca(tls_registry: Registry, unique_repo: RepoName) -> None:
    assert tls_registry.ca_file is not None and tls_registry.url.startswith("https://")
    assert httpx.get(f"{tls_registry.url}/v2/", verify=tls_registry.verify).status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_registry.url}/v2/")
    image, repo = make_image("tls", [256]), unique_repo()
    push(tls_registry, repo, "v1", image)
    assert sha256(skopeo_raw(tls_registry, f"{repo}:v1")) == image.digest
    bare = run_skopeo("inspect", "--raw", f"docker://{tls_registry.host}/{repo}:v1", check=False)
    assert bare.returncode != 0 and b"certificate" in bare.stderr


def test_skopeo_is_isolated_and_reads_oci_layouts(
    anon_registry: Registry, unique_repo: RepoName, tmp_path: Path
) -> None:
    host_cache = CONTAINERS_DIR / "cache" / "blob-info-cache-v1.boltdb"
    before = host_cache.stat().st_mtime_ns if host_cache.exists() else None
    index = make_index([make_image("layout", [512])])
    layout = write_oci_layout(tmp_path / "layout", {"app": index})
    repo = unique_repo()
    skopeo_copy(f"oci:{layout}:app", (anon_registry, f"{repo}:app"), state_dir=tmp_path / "state")
    assert (tmp_path / "state" / "cache" / "blob-info-cache-v1.boltdb").exists()
    assert (host_cache.stat().st_mtime_ns if host_cache.exists() else None) == before
    assert sha256(skopeo_raw(anon_registry, f"{repo}:app")) == index.digest


INNER_CONFTEST = """
import tests.dockerd

tests.dockerd.DOCKERD = "/nonexistent/dockerd"
pytest_plugins = ["tests.docker_fixtures"]
"""


@pytest.mark.parametrize("ci", ["true", None])
def test_a_dockerd_that_cannot_start_fails_in_ci_and_skips_with_the_reason_elsewhere(
    ci: str | None, tmp_path: Path
) -> None:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text("def test_uses_the_daemon(dockerd):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    if ci:
        env["CI"] = ci
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    reason = "/nonexistent/dockerd not installed"
    assert reason in result.stdout, result.stdout
    if ci:
        assert result.returncode == 1 and "1 error" in result.stdout, result.stdout
    else:
        assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout
