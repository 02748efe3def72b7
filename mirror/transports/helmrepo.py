"""Classic Helm chart repositories: ``index.yaml`` and the ``.tgz`` files it lists, over HTTP.

A chart repository is reached like a registry (the same client, so ``--endpoint``, TLS rules,
credentials and retries apply): with ``--endpoint HOST=URL`` every URL on HOST is fetched under
URL, whose path is a prefix. Redirects are followed (archives often live in object storage).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from mirror.errors import ChartError, InputError, NotFound
from mirror.image.digest import sha256_digest
from mirror.image.helmchart import MAX_CHART_BYTES, load_yaml
from mirror.image.lock import ChartEntry
from mirror.image.reference import Reference
from mirror.net.client import RegistryClient

MAX_INDEX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class IndexedChart:
    """Where a repository's index says a chart version is, and the digest it lists."""

    url: str
    digest: str | None


def parse_index(raw: bytes, where: str) -> dict[tuple[str, str], IndexedChart]:
    """Every chart version of an ``index.yaml``, its URL resolved against ``where``."""
    doc = load_yaml(raw, f"{where}: not a chart repository index")
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise ChartError(f"{where}: not a chart repository index (no entries)")
    found: dict[tuple[str, str], IndexedChart] = {}
    for name, versions in entries.items():
        for item in versions if isinstance(versions, list) else []:
            urls = item.get("urls") if isinstance(item, dict) else None
            if not isinstance(urls, list) or not urls or not isinstance(urls[0], str):
                continue
            digest = item.get("digest")
            digest = f"sha256:{digest}" if isinstance(digest, str) and digest else None
            found.setdefault(
                (name, str(item.get("version"))), IndexedChart(urljoin(where, urls[0]), digest)
            )
    return found


class ChartRepositories:
    """Reads chart repositories through a registry client; each index is fetched once a run."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._indexes: dict[str, dict[tuple[str, str], IndexedChart]] = {}
        self._fetching: dict[str, threading.Lock] = {}

    def _locate(self, url: str) -> tuple[Reference, str]:
        """The host to reach ``url`` through and the path under its endpoint (``--endpoint``)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ChartError(f"{url}: not an http(s) URL")
        host = parts.netloc.lower()
        prefix = self.client.endpoint(host).prefix
        path = f"/{prefix}{parts.path}" if prefix else parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return Reference(host, parts.path.lstrip("/") or "/", None, None), path + query

    def _get(self, url: str, limit: int, what: str) -> bytes:
        """The body of ``url`` (at most ``limit`` bytes); faults while reading it are retried."""
        ref, path = self._locate(url)
        refused = f"{what} {url}: larger than {limit // 2**20} MiB; refused"
        try:
            return self.client.fetch_followed(ref, path, limit=limit, refused=refused)
        except NotFound:
            raise ChartError(f"{what} {url}: not found (HTTP 404)") from None

    def find(self, chart: ChartEntry) -> IndexedChart:
        """The index entry of ``chart`` (its repository's ``index.yaml`` fetched once)."""
        url = chart.index_url
        if url is None:
            raise InputError(f"{chart.source}: not from a chart repository")
        with self._lock:
            fetching = self._fetching.setdefault(url, threading.Lock())
        with fetching:
            if url not in self._indexes:
                raw = self._get(url, MAX_INDEX_BYTES, "chart repository index")
                self._indexes[url] = parse_index(raw, url)
        found = self._indexes[url].get((chart.name, chart.version))
        if found is None:
            raise ChartError(f"{url}: lists no chart {chart.name} version {chart.version}")
        return found

    def download(self, chart: ChartEntry) -> bytes:
        """The chart's ``.tgz``, checked against the lock's digest and the index's."""
        found = self.find(chart)
        archive = self._get(found.url, MAX_CHART_BYTES, "chart archive")
        actual = sha256_digest(archive)
        for wanted, whose in ((chart.digest, "the lock"), (found.digest, "index.yaml")):
            if wanted is not None and wanted != actual:
                raise ChartError(
                    f"{chart.source}: {found.url} has digest {actual}, {whose} says {wanted}"
                )
        return archive
