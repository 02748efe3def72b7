"""images.lock: the embedded NSM 2.0.0 lock, validation errors, destinations, rewriting."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import given
from hypothesis import strategies as st

from mirror.errors import InputError, LockError
from mirror.image.lock import (
    Lock,
    embedded_lock_text,
    load_lock,
    parse_lock,
    plan_destinations,
    resolve_lock_path,
    write_digests,
)
from mirror.image.manifest import Platform
from mirror.image.reference import parse_reference, parse_registry_server
from tests.test_reference import valid_references

REPO_ROOT = Path(__file__).resolve().parent.parent
SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64

NSM_SOURCES = [
    "docker-registry.nginx.com/nsm/nginx-mesh-controller:2.0.0",
    "docker-registry.nginx.com/nsm/nginx-mesh-metrics:2.0.0",
    "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0",
    "docker-registry.nginx.com/nsm/nginx-mesh-init:2.0.0",
    "docker-registry.nginx.com/nsm/nginx-mesh-cert-reloader:2.0.0",
    "gcr.io/spiffe-io/spire-server:1.5.6",
    "gcr.io/spiffe-io/k8s-workload-registrar:1.5.6",
    "gcr.io/spiffe-io/spire-agent:1.5.6",
    "nats:2.9-alpine",
    "curlimages/curl:latest",
    "bitnami/kubectl:latest",
]
OPENSHIFT_SOURCES = [
    "ubuntu:22.04",
    "ghcr.io/spiffe/spiffe-csi-driver:0.2.1",
    "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.7.0",
]


def _lock(tmp_path: Path, text: str, name: str = "images.lock") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _entry(source: str, **extra: str) -> str:
    lines = ["[[images]]", f'source = "{source}"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


# --- the embedded lock ------------------------------------------------------------------------


def test_embedded_lock_lists_the_nsm_2_0_0_images_exactly() -> None:
    raw = tomllib.loads(embedded_lock_text())
    assert raw["version"] == 1
    assert [item["source"] for item in raw["images"]] == NSM_SOURCES + OPENSHIFT_SOURCES
    lock = load_lock(None)
    assert lock.path == "<embedded images.lock>"
    assert [str(e.source) for e in lock.entries] == [
        str(parse_reference(s)) for s in NSM_SOURCES + OPENSHIFT_SOURCES
    ]
    assert str(lock.entries[8].source) == "docker.io/library/nats:2.9-alpine"
    assert str(lock.entries[9].source) == "docker.io/curlimages/curl:latest"


def test_embedded_lock_has_no_digests_and_says_why() -> None:
    lock = load_lock(None)
    assert all(e.digest is None for e in lock.entries)
    text = embedded_lock_text()
    assert "mirror lock" in text
    assert "digest" in text.lower()


def test_openshift_only_images_are_selected_by_environment() -> None:
    lock = load_lock(None)
    openshift_only = [str(e.source) for e in lock.entries if e.environment == "openshift"]
    assert openshift_only == [str(parse_reference(s)) for s in OPENSHIFT_SOURCES]
    assert {e.environment for e in lock.entries} == {None, "openshift"}
    kubernetes = [str(e.source) for e in lock.select("kubernetes")]
    assert kubernetes == [str(parse_reference(s)) for s in NSM_SOURCES]
    assert len(lock.select("openshift")) == 14
    assert lock.select("all") == lock.entries


def test_embedded_lock_components() -> None:
    components = {str(e.source): e.component for e in load_lock(None).entries}
    assert components["gcr.io/spiffe-io/spire-agent:1.5.6"] == "spire"
    assert components["docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0"] == "nginx-mesh"
    assert all(components.values())


def test_repo_root_images_lock_is_the_embedded_one() -> None:
    root_lock = REPO_ROOT / "images.lock"
    assert root_lock.read_text(encoding="utf-8") == embedded_lock_text()
    assert load_lock(str(root_lock)).entries == load_lock(None).entries


def test_embedded_lock_has_14_distinct_destinations() -> None:
    for server in ("your-registry", "reg.example.com:5000/nsm"):
        planned = plan_destinations(load_lock(None).entries, parse_registry_server(server))
        assert len({str(d) for _, d in planned}) == 14
    planned = plan_destinations(load_lock(None).entries, parse_registry_server("r.io/nsm"))
    assert str(planned[7][1]) == "r.io/nsm/spire-agent:1.5.6"


def test_lock_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_lock_path(None) is None
    assert resolve_lock_path("other.lock") == "other.lock"
    (tmp_path / "images.lock").write_text("version = 1\n", encoding="utf-8")
    assert resolve_lock_path(None) == "images.lock"


# --- valid locks ------------------------------------------------------------------------------


def test_full_entry(tmp_path: Path) -> None:
    path = _lock(
        tmp_path,
        "version = 1\n"
        + _entry(
            "gcr.io/spiffe-io/spire-agent:1.5.6",
            component='"spire"',
            digest=f'"{SHA_A}"',
            platforms='["linux/amd64", "linux/arm64/v8"]',
            environment='"kubernetes"',
        ),
    )
    (entry,) = load_lock(path).entries
    assert str(entry.source) == "gcr.io/spiffe-io/spire-agent:1.5.6"
    assert entry.digest == SHA_A
    assert str(entry.pinned) == f"gcr.io/spiffe-io/spire-agent:1.5.6@{SHA_A}"
    assert entry.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))
    assert entry.environment == "kubernetes"
    assert entry.component == "spire"


def test_inline_digest_becomes_the_entry_digest(tmp_path: Path) -> None:
    lock = parse_lock(
        "version = 1\n" + _entry(f"nats:1@{SHA_A}") + _entry(f"gcr.io/x@{SHA_B}"), "f"
    )
    tagged, digest_only = lock.entries
    assert str(tagged.source) == "docker.io/library/nats:1"
    assert tagged.digest == SHA_A
    assert str(digest_only.source) == f"gcr.io/x@{SHA_B}"
    assert digest_only.digest == SHA_B


def test_lock_without_images_is_empty() -> None:
    assert parse_lock("version = 1\n", "f") == Lock("f", ())


# --- malformed locks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("version = 1\n[[images]\nsource = 'x'\n", "", "not valid TOML"),
        ("version = 1\nversion = 1\n", "", "not valid TOML"),
        ("version = 2\n", "", "unsupported lock version 2"),
        ("", "", "unsupported lock version None"),
        ('version = "1"\n', "", "unsupported lock version '1'"),
        ("version = true\n", "", "unsupported lock version True"),
        ("version = 1.0\n", "", "unsupported lock version 1.0"),
        ('version = 1\nimages = "nats:1"\n', "", "array of tables"),
        ("version = 1\nimages = [1]\n", "", "array of tables"),
        ('version = 1\n[[image]]\nsource = "nats:1"\n', "", "unknown key(s) image"),
        ("version = 1\n[[images]]\ncomponent = 'x'\n", "entry 1", "missing 'source'"),
        ("version = 1\n[[images]]\nsource = ''\n", "entry 1", "missing 'source'"),
        ("version = 1\n[[images]]\nsource = 3\n", "entry 1", "missing 'source'"),
        ("version = 1\n" + _entry("nats:1") + _entry("Nats:2"), "entry 2 (Nats:2)", "upper case"),
        (
            "version = 1\n" + _entry("nats:1") + _entry("nats:1"),
            "entry 2:",
            "duplicate source docker.io/library/nats:1 (also entry 1)",
        ),
        (
            "version = 1\n" + _entry("nats:1") + _entry("docker.io/library/nats:1"),
            "entry 2:",
            "duplicate source docker.io/library/nats:1 (also entry 1)",
        ),
        (
            "version = 1\n"
            + _entry("index.docker.io/nats")
            + _entry("bitnami/kubectl")
            + _entry("nats:latest"),
            "entry 3:",
            "duplicate source docker.io/library/nats:latest (also entry 1)",
        ),
        (
            "version = 1\n" + _entry(f"nats:1@{SHA_A}") + _entry(f"nats:1@{SHA_B}"),
            "entry 2",
            "duplicate source",
        ),
        (
            "version = 1\n" + _entry("nats:1", digest='"sha256:abc"'),
            "entry 1 (nats:1)",
            "invalid digest 'sha256:abc'",
        ),
        (
            "version = 1\n" + _entry("nats:1", digest=f'"{SHA_A}\\n"'),
            "entry 1 (nats:1)",
            "invalid digest",
        ),
        (
            "version = 1\n" + _entry("nats:1", digest=f'"{SHA_A.upper()}"'),
            "entry 1 (nats:1)",
            "invalid digest",
        ),
        ("version = 1\n" + _entry("nats:1", digest="1"), "entry 1 (nats:1)", "'digest'"),
        (
            "version = 1\n" + _entry(f"nats:1@{SHA_A}", digest=f'"{SHA_B}"'),
            "entry 1",
            "disagree",
        ),
        ("version = 1\n" + _entry("nats:1", tag='"1"'), "entry 1", "unknown key(s) tag"),
        (
            "version = 1\n" + _entry("nats:1", platforms='"linux/amd64"'),
            "entry 1 (nats:1)",
            "'platforms'",
        ),
        (
            "version = 1\n" + _entry("nats:1", platforms='["linux"]'),
            "entry 1 (nats:1)",
            "invalid platform 'linux'",
        ),
        (
            "version = 1\n" + _entry("nats:1", platforms='["linux/amd64/v8/x"]'),
            "entry 1 (nats:1)",
            "invalid platform",
        ),
        (
            "version = 1\n" + _entry("nats:1", environment='"windows"'),
            "entry 1 (nats:1)",
            "'environment' must be one of kubernetes, openshift",
        ),
        ("version = 1\n" + _entry("nats:1", component="[]"), "entry 1", "'component'"),
    ],
)
def test_malformed_lock_names_file_entry_and_reason(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    path = _lock(tmp_path, text, "my.lock")
    with pytest.raises(LockError) as info:
        load_lock(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert where in message
    assert reason in message
    assert info.value.exit_code == 2


def test_unreadable_lock_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.lock"
    with pytest.raises(LockError, match=r"nope\.lock: cannot read lock file: No such file"):
        load_lock(str(missing))
    binary = tmp_path / "binary.lock"
    binary.write_bytes(b"version = 1\n\xff\xfe")
    with pytest.raises(LockError, match=r"binary\.lock: cannot read lock file"):
        load_lock(str(binary))
    with pytest.raises(LockError, match="cannot read lock file"):
        load_lock(str(tmp_path))


def test_deeply_nested_toml_is_a_lock_error() -> None:
    with pytest.raises(LockError, match="f: "):
        parse_lock("x = " + "[" * 5000, "f")


# --- destinations -----------------------------------------------------------------------------


def test_two_sources_on_one_destination_name_both() -> None:
    lock = parse_lock(
        "version = 1\n" + _entry("nats:2.9-alpine") + _entry("gcr.io/mirror/nats:2.9-alpine"),
        "f",
    )
    with pytest.raises(InputError) as info:
        plan_destinations(lock.entries, parse_registry_server("reg.example.com:5000/nsm"))
    message = str(info.value)
    assert "docker.io/library/nats:2.9-alpine" in message
    assert "gcr.io/mirror/nats:2.9-alpine" in message
    assert "reg.example.com:5000/nsm/nats:2.9-alpine" in message
    assert info.value.exit_code == 2


def test_same_name_different_tags_do_not_collide() -> None:
    lock = parse_lock("version = 1\n" + _entry("nats:1") + _entry("gcr.io/x/nats:2"), "f")
    planned = plan_destinations(lock.entries, parse_registry_server("r.io"))
    assert [str(d) for _, d in planned] == ["r.io/nats:1", "r.io/nats:2"]


# --- write_digests ----------------------------------------------------------------------------

_COMMENTED = """\
# top comment
version = 1  # the format

# first image
[[images]]
source = "nats:2.9-alpine"   # inline
component = "nats"

[[images]]
# inside comment
source = "gcr.io/spiffe-io/spire-agent:1.5.6"
digest = "{old}"
component = "spire"

[[images]]
source = "curlimages/curl"
"""


def test_write_digests_keeps_comments_and_order(tmp_path: Path) -> None:
    path = _lock(tmp_path, _COMMENTED.format(old=SHA_A))
    changed = write_digests(
        path,
        {
            "docker.io/library/nats:2.9-alpine": SHA_B,
            "gcr.io/spiffe-io/spire-agent:1.5.6": SHA_B,
            "docker.io/other/image:1": SHA_A,
        },
    )
    assert changed == 2
    text = Path(path).read_text(encoding="utf-8")
    for kept in ("# top comment", "# the format", "# first image", "# inline", "# inside comment"):
        assert kept in text
    assert text.index("nats:2.9-alpine") < text.index("spire-agent") < text.index("curl")
    assert SHA_A not in text
    entries = load_lock(path).entries
    assert [e.digest for e in entries] == [SHA_B, SHA_B, None]
    assert [e.component for e in entries] == ["nats", "spire", ""]
    # Only the changed lines differ.
    before = _COMMENTED.format(old=SHA_A).splitlines()
    after = text.splitlines()
    assert [line for line in after if line not in before] == [f'digest = "{SHA_B}"'] * 2
    assert [line for line in before if line not in after] == [f'digest = "{SHA_A}"']
    assert len(after) == len(before) + 1


def test_write_digests_is_idempotent(tmp_path: Path) -> None:
    path = _lock(tmp_path, _COMMENTED.format(old=SHA_A))
    digests = {
        "docker.io/curlimages/curl:latest": SHA_B,
        "gcr.io/spiffe-io/spire-agent:1.5.6": SHA_A,
    }
    assert write_digests(path, digests) == 1
    first = Path(path).read_bytes()
    assert write_digests(path, digests) == 0
    assert Path(path).read_bytes() == first
    assert load_lock(path).entries[2].digest == SHA_B
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_digests_moves_an_inline_digest_whose_tag_moved(tmp_path: Path) -> None:
    path = _lock(
        tmp_path,
        f'version = 1\n[[images]]\nsource = "nats:2.9-alpine@{SHA_A}"  # pinned\n'
        f'[[images]]\nsource = "curlimages/curl:8@{SHA_A}"\n',
    )
    digests = {"docker.io/library/nats:2.9-alpine": SHA_B, "docker.io/curlimages/curl:8": SHA_A}
    assert write_digests(path, digests) == 1
    entries = load_lock(path).entries
    assert [(str(e.source), e.digest) for e in entries] == [
        ("docker.io/library/nats:2.9-alpine", SHA_B),
        ("docker.io/curlimages/curl:8", SHA_A),
    ]
    assert "# pinned" in Path(path).read_text()


# --- fuzzing ----------------------------------------------------------------------------------


@given(st.text(max_size=300))
def test_arbitrary_text_is_a_lock_or_a_lock_error(text: str) -> None:
    try:
        parse_lock(text, "fuzz.lock")
    except LockError as exc:
        assert str(exc).startswith("fuzz.lock: ")


_SCALARS = st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.floats(allow_nan=False))
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=10), _VALUES, max_size=5))
def test_arbitrary_toml_documents_only_raise_lock_error(doc: dict[str, Any]) -> None:
    try:
        text = tomlkit.dumps(doc)
    except Exception:  # tomlkit refuses some documents; only parse_lock is under test
        return
    try:
        parse_lock(text, "fuzz.lock")
    except LockError as exc:
        assert str(exc).startswith("fuzz.lock: ")


_ENTRY_VALUES = st.one_of(
    valid_references(),
    st.text(max_size=30),
    st.sampled_from(["linux/amd64", "linux", "a/b/c/d", "kubernetes", "openshift", SHA_A]),
    st.lists(st.sampled_from(["linux/amd64", "linux/arm/v7", "linux", "", "a//b"]), max_size=3),
    st.integers(),
    st.booleans(),
)
_ENTRIES = st.lists(
    st.dictionaries(
        st.sampled_from(["source", "component", "digest", "platforms", "environment", "tag"]),
        _ENTRY_VALUES,
        max_size=6,
    ),
    max_size=5,
)


@given(st.sampled_from([1, 1, 1, 2, "1", True]), _ENTRIES)
def test_lock_shaped_documents_only_raise_lock_error(
    version: object, images: list[dict[str, Any]]
) -> None:
    text = tomlkit.dumps({"version": version, "images": images})
    try:
        lock = parse_lock(text, "fuzz.lock")
    except LockError as exc:
        assert str(exc).startswith("fuzz.lock: ")
    else:
        assert len(lock.entries) == len(images)
        assert len({e.source for e in lock.entries}) == len(images)
