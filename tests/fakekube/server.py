"""A stateful fake Kubernetes API server over HTTP, for the real ``kubernetes`` client.

See README.md beside this file for what it serves and where it differs from a real cluster.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakekube import admission, openapi, protobuf, validation
from tests.fakekube.patch import FieldConflicts, Obj, merge_patch, server_side_apply
from tests.fakekube.selectors import SelectorError, field_selector, label_selector
from tests.fakekube.store import ApiError, ApiType, Event, Store
from tests.fakekube.tls import ca_pem, server_context

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-fakekube",
    "platform": "linux/amd64",
}
MAX_WATCH_SECONDS = 300.0


@dataclass(frozen=True)
class Request:
    """One request as the server saw it (for tests that check what was sent)."""

    method: str
    path: str
    query: str
    content_type: str
    accept: str = ""


@dataclass(frozen=True)
class _Target:
    api_type: ApiType
    namespace: str | None
    name: str | None
    subresource: str | None


class _Listener(ThreadingHTTPServer):
    """HTTP/1.1 on loopback, over TLS when given a context (the handshake runs per thread)."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.tls = tls

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is None:
            return sock, address
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet when a client gives up mid-handshake or mid-watch; loud for anything else."""
        if not isinstance(sys.exc_info()[1], OSError):  # ssl.SSLError and resets among them
            super().handle_error(request, client_address)


class FakeKubeServer:
    """The API server: ``start()`` it, point a kubeconfig at ``url``, ``stop()`` it.

    With a ``token`` it serves HTTPS (a throwaway CA, written into the kubeconfig) and requires
    ``Authorization: Bearer <token>``, as a real server; client-go sends a kubeconfig's token
    only over TLS. ``token=None`` serves plain HTTP without authentication.
    """

    def __init__(self, token: str | None = "fake-token") -> None:
        self.token = token
        self.store = Store()
        self.requests: list[Request] = []
        self._http = _Listener(_handler(self), server_context() if token else None)
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        scheme = "https" if token else "http"
        self.url = f"{scheme}://127.0.0.1:{self._http.server_address[1]}"
        self._bootstrap()

    def _bootstrap(self) -> None:
        namespaces = self.store.find_any_type("", "namespaces")
        assert namespaces is not None
        for name in ("default", "kube-system", "kube-public"):
            self.store.create(namespaces, "", {"metadata": {"name": name}}, "kube-apiserver")

    def start(self) -> FakeKubeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.store.close()
        self._http.shutdown()
        self._http.server_close()

    def write_kubeconfig(self, path: Path, context: str = "fake") -> Path:
        """A kubeconfig with context ``context`` for this server (its CA and token, if any)."""
        cluster: Obj = {"server": self.url}
        if self.token:
            cluster["certificate-authority-data"] = base64.b64encode(ca_pem()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake", "user": {"token": self.token} if self.token else {}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def mutations(self) -> list[Request]:
        """Requests that could change state (everything but GET)."""
        return [r for r in self.requests if r.method != "GET"]

    # --- routing --------------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, body: bytes, content_type: str, user_agent: str = ""
    ) -> tuple[int, Any]:
        """Answer one non-watch request: (status code, JSON body)."""
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        # As a real server: the fieldManager given, else the client's name from its User-Agent.
        manager = query.get("fieldManager") or user_agent.split("/")[0] or "unknown"
        parts = [p for p in url.path.split("/") if p]
        discovery = self._discovery(parts)
        if discovery is not None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {url.path}")
            return 200, discovery
        target = self._target(parts)
        if "dryRun" in query:
            raise ApiError(400, "BadRequest", "fakekube does not implement dryRun")
        if target.subresource is not None and method != "GET":
            raise ApiError(
                405, "MethodNotAllowed", f"fakekube serves {target.subresource} read-only"
            )
        if (
            method == "GET"
            and target.name is None
            and target.api_type.plural in self.store.unlistable
        ):
            api = target.api_type
            where = (
                f' in the namespace "{target.namespace}"'
                if target.namespace
                else " at the cluster scope"
            )
            raise ApiError(
                403,
                "Forbidden",
                f'{api.plural} is forbidden: User "fake" cannot list resource "{api.plural}"'
                f' in API group "{api.group}"{where}',
            )
        if method == "GET":
            return 200, self._get(target, query)
        if method == "POST" and target.name is None:
            obj = _decode(body, content_type)
            self._strict(target, obj, query)
            return 201, self._create(target, obj, manager)
        if target.name is None:
            if method == "DELETE":
                return 200, self._delete_collection(target, query)
            raise ApiError(405, "MethodNotAllowed", f"{method} needs a resource name")
        if method == "PUT":
            obj = _decode(body, content_type)
            self._strict(target, obj, query)
            return 200, self._replace(target, obj, manager)
        if method == "PATCH":
            return self._patch(target, body, content_type, query, manager)
        if method == "DELETE":
            if body:
                _decode(body, content_type)  # DeleteOptions: checked, and the defaults apply
            return 200, self._delete(target)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")

    def _discovery(self, parts: list[str]) -> Any:
        store = self.store
        if parts == ["version"]:
            return VERSION
        if parts[:2] == ["openapi", "v3"]:
            return (
                openapi.root(store)
                if len(parts) == 2
                else openapi.document(store, "/".join(parts[2:]))
            )
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [_group(g, vs) for g, vs in sorted(store.group_versions().items())],
            }
        if len(parts) == 2 and parts[0] == "apis":
            versions = store.group_versions().get(parts[1])
            if versions is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], versions)}
        if parts == ["api", "v1"] or (len(parts) == 3 and parts[0] == "apis"):
            group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            types = store.types_in(group, version)
            if not types:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": [t.discovery() for t in types],
            }
        return None

    def _target(self, parts: list[str]) -> _Target:
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        store = self.store
        if len(rest) >= 3 and rest[0] == "namespaces":
            api_type = store.find_type(group, version, rest[2])
            if api_type is not None and api_type.namespaced:
                name = rest[3] if len(rest) > 3 else None
                sub = rest[4] if len(rest) > 4 else None
                return _Target(api_type, rest[1], name, sub)
        api_type = store.find_type(group, version, rest[0])
        if api_type is None or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        namespace = "" if not api_type.namespaced else None
        if api_type.namespaced and name is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return _Target(api_type, namespace, name, sub)

    # --- verbs ----------------------------------------------------------------------------------

    def _get(self, target: _Target, query: dict[str, str]) -> Obj:
        if target.name is not None:
            if target.subresource not in (None, "status"):
                raise ApiError(404, "NotFound", f"subresource {target.subresource} not served")
            return self.store.get(target.api_type, target.namespace or "", target.name)
        match = _matcher(query)
        rv, items = self.store.list(target.api_type, target.namespace, match)
        if target.api_type.builtin:
            for item in items:
                del item["apiVersion"], item["kind"]
        return {
            "kind": f"{target.api_type.kind}List",
            "apiVersion": target.api_type.api_version,
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    def _check_body(self, target: _Target, obj: Obj, name: str | None = None) -> Obj:
        api_type = target.api_type
        if obj.get("kind") != api_type.kind or obj.get("apiVersion") != api_type.api_version:
            raise ApiError(
                400,
                "BadRequest",
                f"the body is {obj.get('apiVersion')}/{obj.get('kind')}, "
                f"the request is for {api_type.api_version}/{api_type.kind}",
            )
        meta = obj.setdefault("metadata", {})
        body_ns = meta.get("namespace")
        if api_type.namespaced and body_ns and body_ns != target.namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the"
                " request",
            )
        if name is not None and meta.get("name") not in (None, name):
            raise ApiError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        if name is not None:
            meta["name"] = name
        if target.namespace is None:
            raise ApiError(405, "MethodNotAllowed", "a namespaced resource needs a namespace")
        return obj

    def _strict(
        self, target: _Target, obj: Obj, query: dict[str, str], apply: bool = False
    ) -> None:
        """``fieldValidation=Strict``: refuse fields the kind's schema does not declare.

        As a real server words it: server-side apply fails to build its typed object (500,
        ``field not declared in schema``); other writes fail strict decoding (400).
        """
        if query.get("fieldValidation") != "Strict":
            return
        api_type = target.api_type
        if api_type.builtin:
            schema = validation.builtin_schema(api_type.api_version, api_type.kind)
        else:
            crd = self.store.crd_of(api_type)
            schema = validation.crd_schema(crd, api_type.version) if crd else None
        unknown = validation.unknown_fields(obj, schema, apply) if schema else []
        if not unknown:
            return
        if apply:
            gvk = f"{api_type.group}/{api_type.version}, Kind={api_type.kind}"
            name = f"{target.namespace or ''}/{target.name}"
            errors = [f"{path}: field not declared in schema" for path in unknown]
            listed = errors[0] if len(errors) == 1 else "errors:\n  " + "\n  ".join(errors)
            raise ApiError(
                500, "", f"failed to create typed patch object ({name}; {gvk}): {listed}"
            )
        kind, version = api_type.kind, api_type.version
        raise ApiError(
            400,
            "BadRequest",
            f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: '
            + ", ".join(f'unknown field "{path}"' for path in unknown),
        )

    def _create(self, target: _Target, obj: Obj, manager: str) -> Obj:
        obj = self._check_body(target, obj)
        admission.check(self.store, target.api_type, target.namespace or "", "CREATE", obj)
        return self.store.create(target.api_type, target.namespace or "", obj, manager)

    def _replace(self, target: _Target, obj: Obj, manager: str) -> Obj:
        assert target.name is not None
        obj = self._check_body(target, obj, target.name)
        admission.check(self.store, target.api_type, target.namespace or "", "UPDATE", obj)
        return self.store.update(target.api_type, target.namespace or "", target.name, obj, manager)

    def _patch(
        self, target: _Target, body: bytes, content_type: str, query: dict[str, str], manager: str
    ) -> tuple[int, Obj]:
        assert target.name is not None
        namespace = target.namespace or ""
        media = content_type.split(";")[0].strip()
        if media == "application/apply-patch+yaml":
            if not query.get("fieldManager"):
                raise ApiError(
                    400, "BadRequest", "PATCH with apply requires a fieldManager to be given"
                )
            patch = self._check_body(target, _decode(body, media), target.name)
            self._strict(target, patch, query, apply=True)
            force = query.get("force") in ("true", "1")
            with self.store.changed:
                existing: Obj | None = None
                try:
                    existing = self.store.get(target.api_type, namespace, target.name)
                except ApiError as exc:
                    if exc.code != 404:
                        raise
                try:
                    merged = server_side_apply(existing, patch, manager, force)
                except FieldConflicts as exc:
                    raise _conflict(exc, target.api_type.api_version) from None
                operation = "CREATE" if existing is None else "UPDATE"
                admission.check(self.store, target.api_type, namespace, operation, merged)
                if existing is None:
                    return 201, self.store.create(target.api_type, namespace, merged, None)
                return 200, self.store.update(target.api_type, namespace, target.name, merged, None)
        with self.store.changed:
            existing = self.store.get(target.api_type, namespace, target.name)
            if media in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                patched = merge_patch(existing, json.loads(body))
            else:
                raise ApiError(
                    415, "UnsupportedMediaType", f"the media type {media!r} is not supported"
                )
            self._strict(target, patched, query)
            admission.check(self.store, target.api_type, namespace, "UPDATE", patched)
            patched["metadata"].pop("resourceVersion", None)
            return 200, self.store.update(target.api_type, namespace, target.name, patched, manager)

    def _delete(self, target: _Target) -> Obj:
        assert target.name is not None
        namespace = target.namespace or ""
        existing = self.store.get(target.api_type, namespace, target.name)
        admission.check(self.store, target.api_type, namespace, "DELETE", existing)
        old = self.store.delete(target.api_type, namespace, target.name)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": old["metadata"]["name"],
                "group": target.api_type.group,
                "kind": target.api_type.plural,
                "uid": old["metadata"].get("uid"),
            },
        }

    def _delete_collection(self, target: _Target, query: dict[str, str]) -> Obj:
        _, items = self.store.list(target.api_type, target.namespace, _matcher(query))
        for item in items:
            meta = item["metadata"]
            self.store.delete(target.api_type, meta.get("namespace", ""), meta["name"])
        return {
            "kind": f"{target.api_type.kind}List",
            "apiVersion": target.api_type.api_version,
            "items": items,
        }

    # --- watch ----------------------------------------------------------------------------------

    def watch(self, raw_path: str, send: Callable[[Obj], None]) -> None:
        """Stream events for a watch request through ``send`` until its timeout."""
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        target = self._target([p for p in url.path.split("/") if p])
        match = _matcher(query)
        api_type = target.api_type
        seconds = min(float(query.get("timeoutSeconds") or MAX_WATCH_SECONDS), MAX_WATCH_SECONDS)
        deadline = time.monotonic() + seconds

        def visible(obj: Obj | None) -> bool:
            if obj is None:
                return False
            in_ns = (
                target.namespace in (None, "")
                or obj["metadata"].get("namespace") == target.namespace
            )
            named = target.name is None or obj["metadata"]["name"] == target.name
            return in_ns and named and match(obj)

        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        since = query.get("resourceVersion", "")
        if query.get("sendInitialEvents") in ("true", "1"):
            # Watch-list (KEP-3157): the state as ADDED events, then a bookmark marking its end.
            if not bookmarks or query.get("resourceVersionMatch") != "NotOlderThan":
                raise ApiError(
                    422,
                    "Invalid",
                    "sendInitialEvents is forbidden for watch unless both allowWatchBookmarks"
                    " and resourceVersionMatch=NotOlderThan are set",
                )
            rv = self._initial_events(target, visible, send)
            send(_bookmark(api_type, rv, initial_events_end=True))
        elif since in ("", "0"):
            rv = self._initial_events(target, visible, send)
        else:
            rv = int(since)
        heartbeat = self.store.bookmark_interval if bookmarks else None
        for event in self.store.events_after(rv, deadline, heartbeat):
            if isinstance(event, int):
                send(_bookmark(api_type, event))
                continue
            if (event.group, event.plural) != (api_type.group, api_type.plural):
                continue
            kind = _event_type(event, visible)
            if kind is not None:
                shown = copy.deepcopy(event.new if kind != "DELETED" else event.old)
                assert shown is not None
                shown["apiVersion"] = api_type.api_version
                if kind == "DELETED":
                    shown["metadata"]["resourceVersion"] = str(event.rv)
                send({"type": kind, "object": shown})

    def _initial_events(
        self, target: _Target, visible: Callable[[Obj], bool], send: Callable[[Obj], None]
    ) -> int:
        """Send the current objects as ADDED events; the resourceVersion they are as of."""
        rv, items = self.store.list(target.api_type, target.namespace or None, lambda o: True)
        for item in items:
            if visible(item):
                send({"type": "ADDED", "object": item})
        return rv


def _bookmark(api_type: ApiType, rv: int, initial_events_end: bool = False) -> Obj:
    """A BOOKMARK event: an object of the watched kind with only its resourceVersion."""
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    bookmark = {"kind": api_type.kind, "apiVersion": api_type.api_version, "metadata": meta}
    return {"type": "BOOKMARK", "object": bookmark}


def _conflict(exc: FieldConflicts, api_version: str) -> ApiError:
    """409 in the API's words, with one ``FieldManagerConflict`` cause per field."""
    by_manager: dict[str, list[str]] = {}
    for manager, path in exc.conflicts:
        by_manager.setdefault(manager, []).append(path)
    count = len(exc.conflicts)
    parts = []
    for manager, paths in by_manager.items():
        if count == 1:
            parts.append(f'conflict with "{manager}" using {api_version}: {paths[0]}')
        else:
            listed = "".join(f"\n- {p}" for p in paths)
            parts.append(f'conflicts with "{manager}" using {api_version}:{listed}')
    plural = "conflict" if count == 1 else "conflicts"
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{manager}" using {api_version}',
            "field": path,
        }
        for manager, path in exc.conflicts
    ]
    return ApiError(
        409,
        "Conflict",
        f"Apply failed with {count} {plural}: {'; '.join(parts)}",
        {"causes": causes},
    )


def _event_type(event: Event, visible: Callable[[Obj | None], bool]) -> str | None:
    before, after = visible(event.old), visible(event.new)
    if after:
        return "MODIFIED" if before else "ADDED"
    return "DELETED" if before else None


def _group(name: str, versions: list[str]) -> Obj:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": dict(listed[0])}


def _matcher(query: dict[str, str]) -> Callable[[Obj], bool]:
    try:
        labels = label_selector(query.get("labelSelector"))
        fields = field_selector(query.get("fieldSelector"))
    except SelectorError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from None
    return lambda obj: labels(obj["metadata"].get("labels") or {}) and fields(obj)


def _accepts_json(accept: str) -> bool:
    """Whether plain JSON, the only form answered here, is among what the client accepts."""
    if not accept:
        return True
    for entry in accept.split(","):
        media, *params = (part.strip() for part in entry.split(";"))
        plain = not any(p.startswith("as=") for p in params)
        if plain and media in ("application/json", "application/*", "*/*"):
            return True
    return False


def _decode(body: bytes, content_type: str) -> Obj:
    if content_type.split(";")[0].strip() == protobuf.MEDIA_TYPE:
        return protobuf.decode(body)
    try:
        if "yaml" in content_type:
            obj = yaml.safe_load(body.decode("utf-8"))
        else:
            obj = json.loads(body or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise ApiError(400, "BadRequest", f"the body does not decode: {exc}") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "BadRequest", "the body is not an object")
    return obj


def _handler(server: FakeKubeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each response waits for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read ``server.requests`` instead."""

        def setup(self) -> None:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.do_handshake()
            super().setup()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            content_type = self.headers.get("Content-Type", "")
            url = urlsplit(self.path)
            accept = self.headers.get("Accept", "")
            server.requests.append(Request(self.command, url.path, url.query, content_type, accept))
            try:
                if server.token and self.headers.get("Authorization") != f"Bearer {server.token}":
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                if not _accepts_json(accept):
                    raise ApiError(
                        406,
                        "NotAcceptable",
                        "only the following media types are accepted: application/json",
                    )
                query = parse_qs(url.query)
                if self.command == "GET" and query.get("watch", [""])[-1] in ("1", "true"):
                    self._watch()
                    return
                code, payload = server.handle(
                    self.command,
                    self.path,
                    body,
                    content_type,
                    self.headers.get("User-Agent", ""),
                )
            except ApiError as exc:
                code, payload = exc.code, exc.status()
            self._send(code, payload)

        def _send(self, code: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _watch(self) -> None:
            started = False

            def start() -> None:
                nonlocal started
                if not started:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    started = True

            def send(event: Obj) -> None:
                start()
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()

            try:
                try:
                    server.watch(self.path, send)
                except ApiError as exc:
                    if not started and exc.code != 410:  # 410 Gone comes as an event, as usual
                        self._send(exc.code, exc.status())
                        return
                    send({"type": "ERROR", "object": exc.status()})
                start()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler
