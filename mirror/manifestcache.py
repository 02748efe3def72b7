"""Index manifests kept on disk by digest, so a re-sync reads an unchanged index without a GET.

Content-addressed: a file is used only if it still hashes to its name, so it can never be stale;
any failure to read or write it only means the manifest is fetched.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mirror.errors import MirrorError
from mirror.image.digest import sha256_digest
from mirror.image.manifest import MAX_MANIFEST_BYTES, Manifest, parse_manifest


def default_cache_dir() -> Path:
    """``$MESHLIFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/meshlift``, else ``~/.cache/meshlift``."""
    explicit = os.environ.get("MESHLIFT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meshlift"


class ManifestCache:
    """Manifests by digest under ``root/manifests/sha256/``."""

    def __init__(self, root: Path) -> None:
        self.root = root / "manifests" / "sha256"

    def _path(self, digest: str) -> Path:
        return self.root / digest.removeprefix("sha256:")

    def get(self, digest: str) -> Manifest | None:
        """The manifest ``digest`` if it is stored intact, else None."""
        try:
            raw = self._path(digest).read_bytes()[: MAX_MANIFEST_BYTES + 1]
            return parse_manifest(raw, None, digest) if sha256_digest(raw) == digest else None
        except (OSError, MirrorError):
            return None

    def put(self, manifest: Manifest) -> None:
        """Keep ``manifest`` (best effort: a read-only home only costs GETs later)."""
        target = self._path(manifest.digest)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(manifest.raw)
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)
