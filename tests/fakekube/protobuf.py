"""Protobuf request bodies (``application/vnd.kubernetes.protobuf``) decoded to JSON objects.

The wire format of the few messages typed clients send here: Helm's release storage writes
Secrets (or ConfigMaps) and sends DeleteOptions this way. A body is the magic ``k8s\\x00`` and
a ``runtime.Unknown`` whose ``typeMeta`` names the kind and whose ``raw`` is the message.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from tests.fakekube.patch import Obj
from tests.fakekube.store import ApiError

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# A message schema: field number -> (JSON name, type). A type is a scalar name, a nested schema,
# ("map", value type) for map<string, T>, or ("repeated", type).
Schema = dict[int, tuple[str, Any]]

_TIME: Schema = {1: ("seconds", "int"), 2: ("nanos", "int")}
_TYPE_META: Schema = {1: ("apiVersion", "string"), 2: ("kind", "string")}
_UNKNOWN: Schema = {
    1: ("typeMeta", _TYPE_META),
    2: ("raw", "raw"),
    3: ("contentEncoding", "string"),
    4: ("contentType", "string"),
}
_OWNER_REFERENCE: Schema = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    8: ("creationTimestamp", "time"),
    9: ("deletionTimestamp", "time"),
    10: ("deletionGracePeriodSeconds", "int"),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    13: ("ownerReferences", ("repeated", _OWNER_REFERENCE)),
    14: ("finalizers", ("repeated", "string")),
}
_PRECONDITIONS: Schema = {1: ("uid", "string"), 2: ("resourceVersion", "string")}
MESSAGES: dict[tuple[str, str], Schema] = {
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", ("map", "bytes")),
        3: ("type", "string"),
        4: ("stringData", ("map", "string")),
        5: ("immutable", "bool"),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", ("map", "string")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
    ("v1", "DeleteOptions"): {
        1: ("gracePeriodSeconds", "int"),
        2: ("preconditions", _PRECONDITIONS),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", ("repeated", "string")),
    },
}
_ENTRY: Schema = {1: ("key", "string"), 2: ("value", "raw")}


class _Malformed(ValueError):
    pass


def decode(body: bytes) -> Obj:
    """The JSON form of a protobuf body; 400 if it is malformed, 415 for a kind not modelled."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "the body does not start with the protobuf magic")
    try:
        unknown = _message(body[len(MAGIC) :], _UNKNOWN)
        type_meta = unknown.get("typeMeta") or {}
        key = (type_meta.get("apiVersion", ""), type_meta.get("kind", ""))
        if key not in MESSAGES:
            raise ApiError(
                415, "UnsupportedMediaType", f"fakekube decodes no protobuf {key[0]}/{key[1]}"
            )
        obj = _message(unknown.get("raw", b""), MESSAGES[key])
    except (_Malformed, UnicodeDecodeError) as exc:
        raise ApiError(400, "BadRequest", f"the protobuf body does not decode: {exc}") from None
    return {"apiVersion": key[0], "kind": key[1], **obj}


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field; values are ints or bytes."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _Malformed("a field runs past the end")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        else:
            raise _Malformed(f"wire type {wire} is not supported")
        yield number, wire, value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise _Malformed("a varint runs past the end")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return result, pos


def _message(data: bytes, schema: Schema) -> Obj:
    obj: Obj = {}
    for number, _, value in _fields(data):
        if number not in schema:
            continue  # a field this fake does not model
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            entry = _message(value, _ENTRY)
            obj.setdefault(name, {})[entry.get("key", "")] = _scalar(
                entry.get("value", b""), kind[1]
            )
        elif isinstance(kind, tuple):
            obj.setdefault(name, []).append(_value(value, kind[1]))
        else:
            obj[name] = _value(value, kind)
    return obj


def _value(value: Any, kind: Any) -> Any:
    if isinstance(kind, dict):
        return _message(value, kind)
    if kind == "time":
        seconds = _message(value, _TIME).get("seconds", 0)
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _scalar(value, kind)


def _scalar(value: Any, kind: str) -> Any:
    if kind == "int":
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == "bool":
        return bool(value)
    if kind == "string":
        return bytes(value).decode("utf-8")
    if kind == "bytes":
        return base64.b64encode(value).decode()
    return value
