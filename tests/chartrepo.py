"""A stand-in classic Helm chart repository on loopback, and small synthetic charts for it.

``serve_charts(DIR)`` serves every ``.tgz`` in DIR under a base path, with an ``index.yaml``
generated on each request (as ``helm repo index`` writes it: name, version, digest, urls), and
logs every request so tests can count what was fetched. ``build_chart`` writes a chart archive
with Python's tarfile, as ``helm package`` lays one out.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import pytest
import yaml

#: Where the official NGINX Service Mesh 2.0.0 chart is: ``MESHLIFT_NSM_CHART``, else
#: ``../shared/charts/`` beside the repository.
NSM_CHART_ENV = "MESHLIFT_NSM_CHART"
NSM_CHART_DEFAULT = (
    Path(__file__).resolve().parents[2] / "shared" / "charts" / "nginx-service-mesh-2.0.0.tgz"
)

#: The synthetic chart's files besides Chart.yaml (path under the chart directory: text).
DEFAULT_FILES = {
    "values.yaml": "registry:\n  server: docker-registry.nginx.com/nsm\n  imageTag: 2.0.0\n",
    "templates/configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\n"
        "data:\n  image: {{ .Values.registry.server }}/app:{{ .Values.registry.imageTag }}\n"
    ),
}


def build_chart(
    directory: Path,
    name: str,
    version: str,
    *,
    files: dict[str, str] | None = None,
    description: str = "A synthetic chart for tests",
    metadata: dict[str, object] | None = None,
    mtime: int = 1_700_000_000,
) -> Path:
    """Write ``DIR/NAME-VERSION.tgz`` holding ``NAME/Chart.yaml`` (plus ``metadata``) and
    ``files``; return it."""
    chart_yaml = yaml.safe_dump(
        {
            "apiVersion": "v2",
            "name": name,
            "version": version,
            "appVersion": version,
            "description": description,
            "type": "application",
            **(metadata or {}),
        },
        sort_keys=False,
    )
    members = {"Chart.yaml": chart_yaml, **(DEFAULT_FILES if files is None else files)}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}/{path}")
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    target = directory / f"{name}-{version}.tgz"
    target.write_bytes(raw.getvalue())
    return target


def official_chart() -> Path:
    """The official chart's archive; the calling test is skipped, saying why, if it is absent."""
    path = Path(os.environ.get(NSM_CHART_ENV) or NSM_CHART_DEFAULT)
    if not path.is_file():
        pytest.skip(f"the official NSM chart is not at {path} (set {NSM_CHART_ENV} to its .tgz)")
    return path


def sha256_hex(path: Path) -> str:
    """The hex sha256 of a file (as index.yaml lists a chart's digest)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class ChartRepo:
    """A running stand-in chart repository."""

    directory: Path
    base_path: str
    server: ThreadingHTTPServer
    thread: threading.Thread
    absolute_urls: str | None = None
    credentials: tuple[str, str] | None = None
    digests: dict[str, str] = field(default_factory=dict)
    log: list[tuple[str, str, int, str]] = field(default_factory=list)

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        """The repository URL (``index.yaml`` is under it)."""
        return f"http://{self.host}{self.base_path}"

    def index(self) -> str:
        """``index.yaml`` for the archives in the directory now."""
        entries: dict[str, list[dict[str, object]]] = {}
        for archive in sorted(self.directory.glob("*.tgz")):
            with tarfile.open(archive) as tar:
                member = next(m for m in tar if m.name.endswith("/Chart.yaml"))
                handle = tar.extractfile(member)
                meta = yaml.safe_load(handle.read() if handle else b"")
            base = self.absolute_urls
            url = f"{base.rstrip('/')}/{archive.name}" if base else archive.name
            entry: dict[str, object] = {**meta, "urls": [url], "created": "2024-03-14T22:07:06Z"}
            digest = self.digests.get(archive.name, sha256_hex(archive))
            if digest:
                entry["digest"] = digest
            entries.setdefault(str(meta["name"]), []).append(entry)
        return yaml.safe_dump({"apiVersion": "v1", "entries": entries})

    def count(self, suffix: str = "", method: str = "GET", status: int | None = None) -> int:
        """Requests whose path ends with ``suffix`` (and answered ``status``, if given)."""
        return sum(
            1
            for m, path, code, _ in self.log
            if m == method and path.endswith(suffix) and status in (None, code)
        )

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> ChartRepo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_charts(
    directory: Path,
    base_path: str = "/charts",
    *,
    absolute_urls: str | None = None,
    credentials: tuple[str, str] | None = None,
) -> ChartRepo:
    """Serve ``directory``'s charts at ``http://127.0.0.1:PORT/BASE_PATH/``.

    ``absolute_urls`` makes index.yaml list ``ABSOLUTE_URLS/NAME-VERSION.tgz`` instead of
    relative URLs; ``credentials`` demands HTTP Basic with that user and password.
    """
    repo: ChartRepo

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Requests are logged in ``ChartRepo.log``, not on stderr."""

        def _answer(self, status: int, body: bytes, kind: str) -> None:
            repo.log.append(
                (self.command, self.path, status, self.headers.get("authorization", ""))
            )
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            if repo.credentials is not None:
                user, password = repo.credentials
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                if self.headers.get("authorization") != f"Basic {token}":
                    self._answer(401, b"unauthorized\n", "text/plain")
                    return
            path = self.path.split("?", 1)[0]
            name = path.removeprefix(repo.base_path.rstrip("/") + "/")
            if name == path or "/" in name:
                self._answer(404, b"not found\n", "text/plain")
            elif name == "index.yaml":
                self._answer(200, repo.index().encode(), "application/x-yaml")
            elif (repo.directory / name).is_file() and name.endswith(".tgz"):
                self._answer(200, (repo.directory / name).read_bytes(), "application/gzip")
            else:
                self._answer(404, b"not found\n", "text/plain")

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    repo = ChartRepo(
        directory, "/" + base_path.strip("/"), server, thread, absolute_urls, credentials
    )
    thread.start()
    return repo
