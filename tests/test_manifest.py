"""Manifest parsing: OCI and Docker manifests and indexes, limits, malformed input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.errors import HostileContent, InputError, ManifestError
from mirror.image import mediatypes
from mirror.image.manifest import (
    MAX_INDEX_ENTRIES,
    MAX_LAYERS,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Platform,
    parse_manifest,
    parse_platform,
    platform_matches,
)

DIGEST = "sha256:" + "d" * 64


def _sha(n: int) -> str:
    return f"sha256:{n:064x}"


def _desc(n: int, media_type: str, size: int = 100, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _sha(n), "size": size, **extra}


def _image(
    media_type: str | None, layers: int = 2, config_type: str = mediatypes.OCI_CONFIG
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": _desc(1, config_type, 50),
        "layers": [_desc(10 + i, mediatypes.OCI_LAYER_GZIP, 1000 + i) for i in range(layers)],
    }
    if media_type is not None:
        doc["mediaType"] = media_type
    return doc


def _index(media_type: str | None, children: list[Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"schemaVersion": 2, "manifests": children}
    if media_type is not None:
        doc["mediaType"] = media_type
    return doc


def _raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# --- images -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "config_type"),
    [
        (mediatypes.OCI_MANIFEST, mediatypes.OCI_CONFIG),
        (mediatypes.DOCKER_MANIFEST, mediatypes.DOCKER_CONFIG),
    ],
)
def test_image_manifest(media_type: str, config_type: str) -> None:
    raw = _raw(_image(media_type, layers=3, config_type=config_type))
    manifest = parse_manifest(raw, None, DIGEST)
    assert manifest.media_type == media_type
    assert manifest.raw == raw
    assert manifest.digest == DIGEST
    assert not manifest.is_index
    assert manifest.children == ()
    assert manifest.config == Descriptor(config_type, _sha(1), 50)
    assert [(d.digest, d.size) for d in manifest.layers] == [
        (_sha(10), 1000),
        (_sha(11), 1001),
        (_sha(12), 1002),
    ]
    assert manifest.blobs == (manifest.config, *manifest.layers)


def test_descriptor_keeps_raw_fields() -> None:
    doc = _image(mediatypes.OCI_MANIFEST, layers=1)
    doc["layers"][0]["annotations"] = {"org.opencontainers.image.title": "x"}
    doc["layers"][0]["urls"] = ["https://example.com/blob"]
    layer = parse_manifest(_raw(doc), None, DIGEST).layers[0]
    assert layer.raw["annotations"] == {"org.opencontainers.image.title": "x"}
    assert layer.raw["urls"] == ["https://example.com/blob"]


def test_image_without_layers_is_allowed() -> None:
    manifest = parse_manifest(_raw(_image(mediatypes.OCI_MANIFEST, layers=0)), None, DIGEST)
    assert manifest.layers == ()
    assert len(manifest.blobs) == 1


def test_media_type_from_the_response_when_the_document_has_none() -> None:
    raw = _raw(_image(None))
    assert parse_manifest(raw, mediatypes.DOCKER_MANIFEST, DIGEST).media_type == (
        mediatypes.DOCKER_MANIFEST
    )
    # The document's own mediaType wins over the Content-Type.
    raw = _raw(_image(mediatypes.OCI_MANIFEST))
    assert parse_manifest(raw, mediatypes.DOCKER_MANIFEST, DIGEST).media_type == (
        mediatypes.OCI_MANIFEST
    )


def test_media_type_inferred_from_shape() -> None:
    assert parse_manifest(_raw(_image(None)), None, DIGEST).media_type == mediatypes.OCI_MANIFEST
    assert parse_manifest(_raw(_image(None)), "application/json", DIGEST).media_type == (
        mediatypes.OCI_MANIFEST
    )
    index = parse_manifest(_raw(_index(None, [])), None, DIGEST)
    assert index.media_type == mediatypes.OCI_INDEX
    assert index.is_index


# --- indexes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "child_type"),
    [
        (mediatypes.OCI_INDEX, mediatypes.OCI_MANIFEST),
        (mediatypes.DOCKER_MANIFEST_LIST, mediatypes.DOCKER_MANIFEST),
    ],
)
def test_index(media_type: str, child_type: str) -> None:
    children = [
        _desc(1, child_type, platform={"os": "linux", "architecture": "amd64"}),
        _desc(2, child_type, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
        _desc(3, child_type),
    ]
    manifest = parse_manifest(_raw(_index(media_type, children)), None, DIGEST)
    assert manifest.is_index
    assert manifest.media_type == media_type
    assert manifest.config is None
    assert manifest.layers == ()
    assert manifest.blobs == ()
    assert [c.digest for c in manifest.children] == [_sha(1), _sha(2), _sha(3)]
    assert [c.media_type for c in manifest.children] == [child_type] * 3
    assert [c.platform for c in manifest.children] == [
        Platform("linux", "amd64"),
        Platform("linux", "arm64", "v8"),
        None,
    ]
    assert str(manifest.children[1].platform) == "linux/arm64/v8"


def test_platforms() -> None:
    assert parse_platform("linux/amd64") == Platform("linux", "amd64")
    assert parse_platform("linux/arm/v7") == Platform("linux", "arm", "v7")
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d", ""):
        with pytest.raises(InputError, match="expected OS/ARCH"):
            parse_platform(bad)
    arm64 = Platform("linux", "arm64", "v8")
    assert platform_matches(Platform("linux", "arm64"), arm64)
    assert platform_matches(arm64, arm64)
    assert not platform_matches(Platform("linux", "arm64", "v9"), arm64)
    assert not platform_matches(Platform("linux", "amd64"), arm64)
    assert not platform_matches(Platform("linux", "amd64"), None)


# --- malformed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"{'single': 'quotes'}", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'{"schemaVersion": 1, "fsLayers": []}', "unsupported manifest type"),
        (b"{}", "unsupported manifest type ''"),
        (_raw(_index(mediatypes.OCI_INDEX, [])).replace(b"manifests", b"m"), "manifests list"),
        (_raw({"mediaType": mediatypes.OCI_INDEX, "manifests": {}}), "manifests list"),
        (_raw({"mediaType": mediatypes.OCI_MANIFEST, "config": {}}), "layers list"),
        (_raw({"mediaType": mediatypes.OCI_MANIFEST, "layers": []}), "config"),
        (_raw({**_image(mediatypes.OCI_MANIFEST), "config": "x"}), "not an object"),
        (_raw(_index(mediatypes.OCI_INDEX, [1])), "manifests[0]"),
        (
            _raw(_index(mediatypes.OCI_INDEX, [{"digest": "sha256:abc", "size": 1}])),
            "invalid digest",
        ),
        (
            _raw(_index(mediatypes.OCI_INDEX, [{"digest": _sha(1) + "\n", "size": 1}])),
            "invalid digest",
        ),
        (_raw(_index(mediatypes.OCI_INDEX, [{"digest": _sha(1), "size": -1}])), "size"),
        (_raw(_index(mediatypes.OCI_INDEX, [{"digest": _sha(1), "size": "1"}])), "size"),
        (_raw(_index(mediatypes.OCI_INDEX, [{"digest": _sha(1), "size": True}])), "size"),
        (_raw(_index(mediatypes.OCI_INDEX, [{"digest": _sha(1), "size": 1.5}])), "size"),
        (_raw(_index(mediatypes.OCI_INDEX, [{"digest": _sha(1)}])), "size"),
        (_raw(_index(mediatypes.OCI_INDEX, [{"size": 1}])), "digest"),
    ],
)
def test_malformed_manifest_is_manifest_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw, None, DIGEST)
    assert reason in str(info.value)
    assert str(info.value).startswith(DIGEST)


def test_deeply_nested_json_is_refused() -> None:
    for raw in (b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(HostileContent, match="nested too deeply"):
            parse_manifest(raw, None, DIGEST)


# --- limits -----------------------------------------------------------------------------------


def _pad_to(doc: dict[str, Any], size: int) -> bytes:
    raw = _raw(doc)
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def test_manifest_of_exactly_4_mib_is_accepted() -> None:
    raw = _pad_to(_image(mediatypes.OCI_MANIFEST), MAX_MANIFEST_BYTES)
    assert len(raw) == 4 * 1024 * 1024
    assert len(parse_manifest(raw, None, DIGEST).layers) == 2


def test_manifest_over_4_mib_is_hostile() -> None:
    raw = _pad_to(_image(mediatypes.OCI_MANIFEST), MAX_MANIFEST_BYTES + 1)
    with pytest.raises(HostileContent, match="exceeds 4 MiB"):
        parse_manifest(raw, None, DIGEST)


def test_size_is_checked_before_decoding() -> None:
    with pytest.raises(HostileContent):
        parse_manifest(b"\xff" * (MAX_MANIFEST_BYTES + 1), None, DIGEST)


def test_index_entry_limit() -> None:
    children = [_desc(i, mediatypes.OCI_MANIFEST, 1) for i in range(MAX_INDEX_ENTRIES)]
    assert MAX_INDEX_ENTRIES == 1000
    ok = parse_manifest(_raw(_index(mediatypes.OCI_INDEX, children)), None, DIGEST)
    assert len(ok.children) == 1000
    children.append(_desc(5000, mediatypes.OCI_MANIFEST, 1))
    with pytest.raises(HostileContent, match="1001 entries"):
        parse_manifest(_raw(_index(mediatypes.DOCKER_MANIFEST_LIST, children)), None, DIGEST)


def test_index_limit_applies_before_descriptors_are_checked() -> None:
    with pytest.raises(HostileContent):
        parse_manifest(_raw(_index(mediatypes.OCI_INDEX, [0] * 1001)), None, DIGEST)


def test_layer_limit() -> None:
    assert MAX_LAYERS == 512
    ok = parse_manifest(_raw(_image(mediatypes.DOCKER_MANIFEST, layers=512)), None, DIGEST)
    assert len(ok.layers) == 512
    with pytest.raises(HostileContent, match="513 layers"):
        parse_manifest(_raw(_image(mediatypes.OCI_MANIFEST, layers=513)), None, DIGEST)
    with pytest.raises(HostileContent):
        parse_manifest(
            _raw({"mediaType": mediatypes.OCI_MANIFEST, "layers": [None] * 513}), None, DIGEST
        )


# --- fuzzing ----------------------------------------------------------------------------------

_JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=15,
)
_MEDIA = st.one_of(st.none(), st.sampled_from(sorted(mediatypes.MANIFESTS)), st.text(max_size=5))


@given(st.binary(max_size=300), _MEDIA)
def test_arbitrary_bytes_only_raise_manifest_errors(raw: bytes, media_type: str | None) -> None:
    try:
        parse_manifest(raw, media_type, DIGEST)
    except (ManifestError, HostileContent) as exc:
        assert str(exc).startswith(DIGEST)


@given(_JSON, _MEDIA)
def test_arbitrary_json_only_raises_manifest_errors(doc: Any, media_type: str | None) -> None:
    try:
        parse_manifest(_raw(doc), media_type, DIGEST)
    except (ManifestError, HostileContent) as exc:
        assert str(exc).startswith(DIGEST)


_DESCRIPTORS = st.one_of(
    _JSON,
    st.fixed_dictionaries(
        {"digest": st.sampled_from([_sha(1), "sha256:x", "", 1]), "size": _JSON},
        optional={"mediaType": _JSON, "platform": _JSON},
    ),
    st.fixed_dictionaries(
        {"digest": st.just(_sha(2)), "size": st.integers(0, 10**20)},
        optional={
            "platform": st.fixed_dictionaries(
                {"os": st.text(max_size=5)},
                optional={"architecture": _JSON, "variant": _JSON},
            )
        },
    ),
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "mediaType": _MEDIA,
            "config": _DESCRIPTORS,
            "layers": st.one_of(_JSON, st.lists(_DESCRIPTORS, max_size=4)),
            "manifests": st.one_of(_JSON, st.lists(_DESCRIPTORS, max_size=4)),
        },
    ),
    _MEDIA,
)
def test_manifest_shaped_json_only_raises_manifest_errors(
    doc: dict[str, Any], media_type: str | None
) -> None:
    try:
        manifest = parse_manifest(_raw(doc), media_type, DIGEST)
    except (ManifestError, HostileContent) as exc:
        assert str(exc).startswith(DIGEST)
    else:
        assert manifest.media_type in mediatypes.MANIFESTS
        for descriptor in manifest.blobs + manifest.children:
            assert descriptor.size >= 0
            assert descriptor.digest.startswith("sha256:")
            assert descriptor.platform is None or str(descriptor.platform)
