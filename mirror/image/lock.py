"""``images.lock``: the locked list of source images, loaded, validated and rewritten."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from mirror.errors import InputError, LockError
from mirror.image.digest import validate_digest
from mirror.image.manifest import Platform, parse_platform
from mirror.image.reference import (
    TAG_PATTERN,
    Reference,
    RegistryServer,
    flatten_destination,
    parse_reference,
)

LOCK_VERSION = 1
LOCK_FILE = "images.lock"
SAVED_LOCK_COMMENT = (
    "Written by `mirror save`: the images of this archive, pinned to the digests saved."
)
ENVIRONMENTS = ("kubernetes", "openshift")
_KEYS = {"source", "component", "digest", "platforms", "environment", "verify-key"}
_CHART_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", re.ASCII)
_CHART_KEYS = {"repository", "source", "name", "version", "digest", "component", "environment"}


@dataclass(frozen=True)
class LockEntry:
    """One locked image."""

    source: Reference
    component: str = ""
    digest: str | None = None
    platforms: tuple[Platform, ...] = ()
    environment: str | None = None
    verify_key: str | None = None

    @property
    def pinned(self) -> Reference:
        """The source reference, pinned to the locked digest when there is one."""
        return self.source.with_digest(self.digest) if self.digest else self.source


def moving_unpinned(entries: Sequence[LockEntry]) -> list[LockEntry]:
    """Entries tagged ``latest`` without a digest: what they mirror changes when the tag moves."""
    return [e for e in entries if e.source.tag == "latest" and e.digest is None]


@dataclass(frozen=True)
class ChartEntry:
    """One locked Helm chart: from a classic chart repository or an OCI registry.

    ``repository`` is the repository URL (``index.yaml`` beside it) for a classic repository;
    ``oci`` is the chart's OCI reference (``host/path/name:version``) for a chart in a registry.
    Exactly one of them is set. ``digest`` is the sha256 of the ``.tgz``, as ``index.yaml``
    lists it (for OCI charts: the chart layer's digest).
    """

    name: str
    version: str
    repository: str | None = None
    oci: Reference | None = None
    digest: str | None = None
    component: str = ""
    environment: str | None = None

    @property
    def source(self) -> Reference:
        """The chart's name as a reference: its OCI reference, or ``repo-host/path/name:version``.

        This is what the flattening rule, reports and OCI layout ref names use.
        """
        if self.oci is not None:
            return self.oci
        assert self.repository is not None
        parts = urlsplit(self.repository)
        path = parts.path.strip("/")
        repository = f"{path}/{self.name}" if path else self.name
        return Reference(parts.netloc.lower(), repository.lower(), self.version, None)

    @property
    def index_url(self) -> str | None:
        """``<repository>/index.yaml`` for a classic chart repository."""
        return f"{self.repository.rstrip('/')}/index.yaml" if self.repository else None


@dataclass(frozen=True)
class Lock:
    """A loaded lock file and where it came from."""

    path: str
    entries: tuple[LockEntry, ...]
    charts: tuple[ChartEntry, ...] = ()

    def select_charts(self, environment: str = "all") -> tuple[ChartEntry, ...]:
        """Charts needed on ``environment`` (``all`` keeps every chart)."""
        if environment == "all":
            return self.charts
        return tuple(c for c in self.charts if c.environment in (None, environment))

    def select(self, environment: str = "all") -> tuple[LockEntry, ...]:
        """Entries needed on ``environment`` (``all`` keeps every entry)."""
        if environment == "all":
            return self.entries
        return tuple(e for e in self.entries if e.environment in (None, environment))


def embedded_lock_text() -> str:
    """The lock shipped inside the package (NGINX Service Mesh 2.0.0)."""
    from importlib import resources

    return resources.files("mirror").joinpath(LOCK_FILE).read_text(encoding="utf-8")


def resolve_lock_path(explicit: str | None) -> str | None:
    """``--lock`` if given, else ``./images.lock`` if present, else None (the embedded lock)."""
    if explicit:
        return explicit
    return LOCK_FILE if Path(LOCK_FILE).is_file() else None


def load_lock(path: str | None) -> Lock:
    """Load and validate a lock file (None: the embedded default)."""
    if path is None:
        return parse_lock(embedded_lock_text(), "<embedded images.lock>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LockError(f"{path}: cannot read lock file: {reason}") from None
    return parse_lock(text, path)


def parse_lock(text: str, path: str) -> Lock:
    """Parse lock text; every problem is a LockError naming file, entry and reason."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise LockError(f"{path}: not valid TOML: nested too deeply") from None
    version = doc.get("version")
    if type(version) is not int or version != LOCK_VERSION:
        raise LockError(f"{path}: unsupported lock version {version!r} (expected 1)")
    unknown = sorted(set(doc) - {"version", "images", "charts"})
    if unknown:
        raise LockError(f"{path}: unknown key(s) {', '.join(unknown)}")
    entries = _parse_tables(doc.get("images", []), path, "images", "entry", _parse_entry)
    charts = _parse_tables(doc.get("charts", []), path, "charts", "chart", _parse_chart)
    return Lock(path, entries, charts)


class _Sourced(Protocol):
    @property
    def source(self) -> Reference: ...


T = TypeVar("T", bound=_Sourced)


def _parse_tables(
    tables: object, path: str, key: str, label: str, parse: Callable[[Mapping[str, object], str], T]
) -> tuple[T, ...]:
    """Parse an array of tables (``[[key]]``); two items with one source are a LockError."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise LockError(f"{path}: '{key}' must be an array of tables ([[{key}]])")
    parsed: list[T] = []
    seen: dict[Reference, int] = {}
    for number, item in enumerate(tables, start=1):
        one = parse(item, f"{path}: {label} {number}")
        source = one.source
        if source in seen:
            raise LockError(
                f"{path}: {label} {number}: duplicate source {source} (also {label} {seen[source]})"
            )
        seen[source] = number
        parsed.append(one)
    return tuple(parsed)


def _string(item: Mapping[str, object], key: str) -> str | None:
    value = item.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InputError(f"'{key}' must be a non-empty string")
    return value


def _parse_chart(item: Mapping[str, object], where: str) -> ChartEntry:
    unknown = sorted(set(item) - _CHART_KEYS)
    if unknown:
        raise LockError(f"{where}: unknown key(s) {', '.join(unknown)}")
    try:
        repository, source = _string(item, "repository"), _string(item, "source")
        name, version = _string(item, "name"), _string(item, "version")
        digest, environment = _string(item, "digest"), _string(item, "environment")
        component = item.get("component", "")
        if not isinstance(component, str):
            raise InputError("'component' must be a string")
        if digest is not None:
            validate_digest(digest)
        if environment is not None and environment not in ENVIRONMENTS:
            raise InputError(f"'environment' must be one of {', '.join(ENVIRONMENTS)}")
        if (repository is None) == (source is None):
            raise InputError("give either 'repository' (with 'name' and 'version') or 'source'")
        where_from = (
            _repository_chart(repository, name, version)
            if repository is not None
            else _oci_chart(str(source), name, version)
        )
        return replace(where_from, digest=digest, component=component, environment=environment)
    except InputError as exc:
        raise LockError(f"{where}: {exc}") from None


def _repository_chart(repository: str, name: str | None, version: str | None) -> ChartEntry:
    parts = urlsplit(repository)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise InputError(
            f"'repository' {repository!r} must be an http(s) URL of a chart repository"
        )
    if name is None or version is None:
        raise InputError("a chart from a 'repository' needs 'name' and 'version'")
    if not _CHART_NAME.fullmatch(name):
        raise InputError(f"invalid chart name {name!r}")
    if not TAG_PATTERN.fullmatch(version):
        raise InputError(f"chart version {version!r} cannot be an OCI tag")
    return ChartEntry(name, version, repository.rstrip("/"))


def _oci_chart(source: str, name: str | None, version: str | None) -> ChartEntry:
    if not source.startswith("oci://"):
        raise InputError(f"'source' {source!r} must be oci://host/path/name:version")
    ref = parse_reference(source.removeprefix("oci://"))
    if ref.tag is None or ref.digest is not None:
        raise InputError(f"'source' {source!r} must name the chart version as its tag")
    if name not in (None, ref.last_component) or version not in (None, ref.tag):
        raise InputError("'name' and 'version' disagree with 'source'")
    return ChartEntry(ref.last_component, ref.tag, None, ref)


def _parse_entry(item: Mapping[str, object], where: str) -> LockEntry:
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise LockError(f"{where}: unknown key(s) {', '.join(unknown)}")
    source = item.get("source")
    if not isinstance(source, str) or not source:
        raise LockError(f"{where}: missing 'source'")
    where = f"{where} ({source})"
    try:
        ref = parse_reference(source)
        digest = item.get("digest")
        if digest is not None and not isinstance(digest, str):
            raise InputError("'digest' must be a string")
        if digest is not None:
            validate_digest(digest)
        platforms = item.get("platforms", [])
        if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
            raise InputError("'platforms' must be a list of OS/ARCH strings")
        environment = item.get("environment")
        if environment is not None and environment not in ENVIRONMENTS:
            raise InputError(f"'environment' must be one of {', '.join(ENVIRONMENTS)}")
        component = item.get("component", "")
        if not isinstance(component, str):
            raise InputError("'component' must be a string")
        parsed_platforms = tuple(parse_platform(p) for p in platforms)
        verify_key = item.get("verify-key")
        if verify_key is not None and (not isinstance(verify_key, str) or not verify_key):
            raise InputError("'verify-key' must be the path of a PEM public key")
    except InputError as exc:
        raise LockError(f"{where}: {exc}") from None
    if ref.digest and digest and ref.digest != digest:
        raise LockError(f"{where}: source digest and 'digest' disagree")
    if parsed_platforms and ref.tag is None:
        raise LockError(
            f"{where}: 'platforms' needs a tag to name the narrowed index; write NAME:TAG@sha256:…"
        )
    return LockEntry(
        source=ref.with_digest(None) if ref.tag else ref,
        component=component,
        digest=digest or ref.digest,
        platforms=parsed_platforms,
        environment=environment,
        verify_key=verify_key,
    )


def plan_destinations(
    entries: Iterable[LockEntry], server: RegistryServer
) -> list[tuple[LockEntry, Reference]]:
    """Pair each entry with its destination; two sources on one destination is an InputError."""
    planned: list[tuple[LockEntry, Reference]] = []
    taken: dict[Reference, LockEntry] = {}
    for entry in entries:
        destination = flatten_destination(entry.source, server)
        other = taken.get(destination)
        if other is not None:
            raise InputError(
                f"{other.source} and {entry.source} both map to {destination}; "
                "rename one of them or mirror them to different registry servers"
            )
        taken[destination] = entry
        planned.append((entry, destination))
    return planned


def render_lock(entries: Sequence[LockEntry], charts: Sequence[ChartEntry] = ()) -> str:
    """``images.lock`` text for ``entries`` and ``charts`` (what ``parse_lock`` reads back), as
    ``mirror save`` writes it into an archive."""
    import tomlkit

    doc = tomlkit.document()
    doc.add(tomlkit.comment(SAVED_LOCK_COMMENT))
    doc.add("version", LOCK_VERSION)
    images = tomlkit.aot()
    for entry in entries:
        images.append(
            _table(
                source=str(entry.source),
                component=entry.component,
                digest=entry.digest,
                platforms=[str(p) for p in entry.platforms],
                environment=entry.environment,
            )
        )
    chart_tables = tomlkit.aot()
    for chart in charts:
        where = (
            {"source": f"oci://{chart.oci}"}
            if chart.oci is not None
            else {"repository": chart.repository, "name": chart.name, "version": chart.version}
        )
        chart_tables.append(
            _table(
                **where,
                digest=chart.digest,
                component=chart.component,
                environment=chart.environment,
            )
        )
    if entries:
        doc.add("images", images)
    if charts:
        doc.add("charts", chart_tables)
    return tomlkit.dumps(doc)


def _table(**values: object) -> Any:
    """A TOML table of the values that are set (empty ones left out), in the order given."""
    import tomlkit

    table = tomlkit.table()
    for key, value in values.items():
        if value:
            table.add(key, value)
    return table


def write_digests(path: str, digests: Mapping[str, str]) -> int:
    """Set ``digest`` of entries and charts whose source is in ``digests`` (keyed by
    str(source); for a chart, its ``ChartEntry.source``).

    A digest written inline (``name:tag@sha256:…``) moves to the ``digest`` key, so a tag that
    moved does not leave the two disagreeing. Keeps comments and order (tomlkit). Returns how
    many entries changed.
    """
    import tomlkit

    file = Path(path)
    doc = tomlkit.parse(file.read_text(encoding="utf-8"))
    changed = 0
    for item in doc.get("images", []):
        source = str(item["source"])
        ref = parse_reference(source)
        new = digests.get(str(ref.with_digest(None)))
        if not new or (item.get("digest") or ref.digest) == new:
            continue
        if ref.digest and ref.tag:
            item["source"] = source.rpartition("@")[0]
        item["digest"] = new
        changed += 1
    for number, item in enumerate(doc.get("charts", []), start=1):
        chart = _parse_chart(item, f"{path}: chart {number}")
        new = digests.get(str(chart.source))
        if new and chart.digest != new:
            item["digest"] = new
            changed += 1
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
    tmp.replace(file)
    return changed
