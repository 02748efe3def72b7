"""Credentials never leak and only go where they belong (issue 8, Credentials)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mirror.net.auth import realm_allowed
from tests.faultproxy import FaultProxy, ProxyFactory
from tests.imagefactory import basic_header, make_image, push
from tests.mirrorcli import PublicImages, report_of, run_mirror
from tests.registries import Registry, RegistryFactory, start_registry
from tests.tokenissuer import User

USER = "alice"
SECRET = "S3cr3t-Pa55w0rd-m35hl1ft"
WRONG = "Wr0ng-Gu355-n0t-1t"
KEY_MATERIAL = "pr1v4t3K3yM4t3r14l" * 8
KEY = json.dumps(
    {
        "type": "service_account",
        "project_id": "meshlift-test",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{KEY_MATERIAL}\n-----END PRIVATE KEY-----\n",
        "client_email": "mirror@meshlift-test.iam.gserviceaccount.com",
    },
    indent=2,
)
WAYS = ("flag", "stdin", "env", "auth-file", "gke-key")


def b64_cores(data: bytes) -> set[str]:
    """What base64 text holding ``data`` contains at each of the three byte alignments."""
    cores = set()
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + data).decode()
        cores.add(encoded[4 if pad else 0 : -4])
    return cores


def secret_forms(username: str, secret: str) -> set[str]:
    """A password as it could leak: plain, JSON-escaped, and base64 alone or as user:password."""
    forms = {secret, json.dumps(secret)[1:-1]}
    forms |= b64_cores(secret.encode()) | b64_cores(f"{username}:{secret}".encode())
    forms.add(base64.b64encode(f"{username}:{secret}".encode()).decode())
    return {f for f in forms if len(f) >= 8}


FORMS = secret_forms(USER, SECRET) | secret_forms(USER, WRONG) | secret_forms("_json_key", KEY)
FORMS.add(KEY_MATERIAL[:24])


def leaks(text: str) -> list[str]:
    """The forms of any test secret found in ``text``."""
    return sorted(form for form in FORMS if form in text)


@pytest.mark.parametrize(
    "text",
    [
        f"password={SECRET}",
        f"Authorization: {basic_header(USER, SECRET)}",
        base64.b64encode(f"x{SECRET}yz".encode()).decode(),
        base64.b64encode(f'{{"auth": "{USER}:{WRONG}"}}'.encode()).decode(),
        json.dumps({"key": KEY}),
    ],
)
def test_the_scan_finds_each_form(text: str) -> None:
    assert leaks(text)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A token-auth registry where alice (SECRET) and _json_key (KEY) may do everything."""
    users = {USER: User(SECRET, {"*": ["*"]}), "_json_key": User(KEY, {"*": ["*"]})}
    reg = start_registry(
        "token", tmp_path_factory.mktemp("secrets"), username=USER, password=SECRET, users=users
    )
    push(reg, "src/app", "1", make_image("secrets-app", [2000]))
    yield reg
    reg.stop()


@dataclass
class Way:
    """Command-line arguments, stdin and environment giving one password one way."""

    args: list[str]
    stdin: str | None = None
    env: dict[str, str] | None = None


def give(way: str, registry: Registry, secret: str, inputs: Path) -> Way:
    """Pass ``secret`` (or, for a GKE key, a key file) for ``registry`` the ``way`` asked."""
    user = ["--registry-username", USER]
    if way == "flag":
        return Way([*user, "--registry-password", secret])
    if way == "stdin":
        return Way([*user, "--registry-password-stdin"], stdin=secret + "\n")
    if way == "env":
        return Way(user, env={"MESHLIFT_REGISTRY_PASSWORD": secret})
    if way == "auth-file":
        config = inputs / f"config-{uuid.uuid4().hex[:6]}.json"
        auth = base64.b64encode(f"{USER}:{secret}".encode()).decode()
        config.write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        return Way(["--auth-file", str(config)])
    key = inputs / f"key-{uuid.uuid4().hex[:6]}.json"
    key.write_text(KEY if secret == SECRET else KEY.replace(KEY_MATERIAL, WRONG * 5))
    return Way(["--registry-key", str(key)])


@pytest.mark.parametrize("way", WAYS)
def test_password_never_shows_in_output_reports_logs_or_files(
    way: str, registry: Registry, tmp_path: Path
) -> None:
    inputs, outputs, home = tmp_path / "in", tmp_path / "out", tmp_path / "home"
    for directory in (inputs, outputs, home):
        directory.mkdir()
    lock = inputs / "images.lock"
    lock.write_text(f'version = 1\n[[images]]\nsource = "{registry.host}/src/app:1"\n')
    server = f"{registry.host}/dst-{uuid.uuid4().hex[:8]}"
    env = {"HOME": str(home), "XDG_STATE_HOME": str(home / "state")}
    seen: list[str] = []

    def run(*args: str, given: Way, code: int) -> None:
        result = run_mirror(
            "--debug", *args, *given.args, input=given.stdin, env={**env, **(given.env or {})}
        )
        assert result.returncode == code, result.stderr
        seen.append(result.stdout + result.stderr)

    good, bad = give(way, registry, SECRET, inputs), give(way, registry, WRONG, inputs)
    common = ["--lock", str(lock), "--registry-server", server]
    run("sync", *common, "--report", str(outputs / "sync.json"), given=good, code=0)
    assert report_of_file(outputs / "sync.json")["summary"]["copied"] == 1
    run("verify", *common, "--report", str(outputs / "verify.json"), given=good, code=0)
    run(
        "sync",
        *common,
        "--output",
        "json",
        "--report",
        str(outputs / "bad.json"),
        given=bad,
        code=1,
    )
    assert "unauthorized" in report_of_file(outputs / "bad.json")["images"][0]["error"].lower()
    if way == "auth-file":
        run("lock", "--lock", str(lock), given=good, code=0)
        assert "digest = " in lock.read_text()

    assert [leaks(text) for text in seen] == [[]] * len(seen)
    written = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and p.name.split("-")[0] not in ("config", "key")
    ]
    assert outputs / "sync.json" in written
    holding = {
        str(p): oct(p.stat().st_mode & 0o777)
        for p in written
        if leaks(p.read_text(errors="replace"))
    }
    assert holding == {}, "files holding credentials must be 0600, and by default there are none"


def report_of_file(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "args",
    [
        ["--registry-password", SECRET, "--registry-key", "key.json"],
        ["--registry-username", USER, "--registry-password", SECRET, "--registry-password-stdin"],
        ["--registry-key", "not-json.key"],
        ["--auth-file", "broken-config.json"],
    ],
    ids=["password-with-key", "password-twice", "key-not-json", "auth-file-not-json"],
)
def test_bad_credential_input_does_not_echo_the_secret(
    args: list[str], registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "key.json").write_text(KEY)
    (tmp_path / "not-json.key").write_text(f"password: {SECRET}\n")
    (tmp_path / "broken-config.json").write_text('{"auths": {"x": {"auth": "' + SECRET)
    lock = tmp_path / "images.lock"
    lock.write_text(f'version = 1\n[[images]]\nsource = "{registry.host}/src/app:1"\n')
    result = run_mirror(
        "--debug", "sync", "--lock", str(lock), "--registry-server", f"{registry.host}/x",
        *[str(tmp_path / a) if a.endswith((".json", ".key")) else a for a in args],
    )  # fmt: skip
    assert result.returncode in (1, 2), result.stderr
    assert leaks(result.stdout + result.stderr) == []


@pytest.fixture
def proxies() -> Iterator[ProxyFactory]:
    factory = ProxyFactory()
    yield factory
    factory.stop_all()


def authorizations(proxy: FaultProxy) -> set[str]:
    return {r.headers["authorization"] for r in proxy.requests if "authorization" in r.headers}


def test_basic_credentials_go_only_to_the_host_that_asked(
    basic_registry: Registry, make_registry: RegistryFactory, proxies: ProxyFactory, tmp_path: Path
) -> None:
    """Source creds to the source, destination creds to the destination, and the creds an auth
    file holds for an --endpoint's HOST never to the server the endpoint points at."""
    public = PublicImages(basic_registry, f"creds-{uuid.uuid4().hex[:8]}")
    public.add("quay.io/team/app:1", make_image("creds-app", [3000]))
    dest = make_registry("basic", password="Dest-Pa55w0rd-xyz")
    source_proxy, dest_proxy = proxies(basic_registry.url), proxies(dest.url)
    source_auth = basic_header(basic_registry.username or "", basic_registry.password or "")
    dest_auth = basic_header(dest.username or "", dest.password or "")
    decoy = "Basic " + base64.b64encode(b"decoy:Quay-Pa55w0rd-decoy").decode()
    config = tmp_path / "config.json"
    auths = {source_proxy.host: source_auth, "quay.io": decoy}
    config.write_text(json.dumps({"auths": {h: {"auth": a.split()[1]} for h, a in auths.items()}}))
    endpoints = [a.replace(basic_registry.url, source_proxy.url) for a in public.endpoint_args()]
    result = run_mirror(
        "sync", "--lock", str(public.write_lock(tmp_path / "images.lock")),
        "--registry-server", f"{dest_proxy.host}/nsm", *endpoints, "--auth-file", str(config),
        "--registry-username", dest.username or "", "--registry-password-stdin", "--output", "json",
        input=f"{dest.password}\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert report_of(result)["summary"]["copied"] == 1
    assert authorizations(source_proxy) == {source_auth}
    assert authorizations(dest_proxy) == {dest_auth}


def test_token_realm_on_a_foreign_plain_http_host_gets_no_credentials(
    anon_registry: Registry, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    public = PublicImages(anon_registry, f"realm-{uuid.uuid4().hex[:8]}")
    public.add("quay.io/team/app:1", make_image("realm-app", [3000]))
    dest = make_registry("token")
    assert dest.issuer is not None
    realm = httpx.URL(dest.issuer.realm)
    # The registry is reached as localhost; its realm is on 127.0.0.1, another host name.
    server = f"localhost:{dest.host.rsplit(':', 1)[1]}/nsm"
    args = [
        "sync", "--lock", str(public.write_lock(tmp_path / "images.lock")),
        "--registry-server", server, *public.endpoint_args(), "--output", "json",
        "--registry-username", dest.username or "", "--registry-password-stdin",
    ]  # fmt: skip
    refused = run_mirror(*args, input=f"{dest.password}\n")
    assert refused.returncode == 1, refused.stderr
    error = report_of(refused)["images"][0]["error"]
    assert f"refusing to send credentials to token realm http://{realm.netloc.decode()}" in error
    assert [r for r in dest.issuer.requests if r.user] == []

    allowed = run_mirror(
        *args, "--insecure-registry", realm.netloc.decode(), input=f"{dest.password}\n"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert {r.user for r in dest.issuer.requests} == {dest.username}


@pytest.mark.parametrize(
    ("registry", "realm", "insecure", "allowed"),
    [
        ("http://reg.example:5000", "http://reg.example:5001/token", False, True),
        ("http://reg.example", "https://auth.example/token", False, True),
        ("http://reg.example", "http://auth.example/token", False, False),
        ("https://reg.example", "http://auth.example/token", False, False),
        ("http://reg.example", "http://auth.example/token", True, True),
    ],
)
def test_realm_rules(registry: str, realm: str, insecure: bool, allowed: bool) -> None:
    assert realm_allowed(httpx.URL(registry), httpx.URL(realm), insecure) is allowed
