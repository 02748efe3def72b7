"""The per-artifact results of a run (images and Helm charts) and their summary, as the JSON
report shows them."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["copied", "present", "failed", "skipped"]
Kind = Literal["image", "chart"]


@dataclass
class ImageResult:
    """What happened to one image, or one Helm chart (``kind``; its ``source_digest`` is the
    digest of the chart's ``.tgz``, the one a lock pins)."""

    source: str
    destination: str
    status: Status = "skipped"
    digest: str | None = None
    source_digest: str | None = None
    bytes_uploaded: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    bytes_present: int = 0  # of the blobs found already at the destination
    retries: int = 0
    signatures: int = 0
    attestations: int = 0
    sboms: int = 0
    referrers: int = 0
    drift: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    kind: Kind = "image"


@dataclass
class Report:
    """Every image's and chart's result plus totals."""

    command: str
    results: list[ImageResult]
    duration_seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """Whether any image failed."""
        return any(r.status == "failed" for r in self.results)

    def summary(self) -> dict[str, Any]:
        """Totals by kind, status, bytes, blobs, retries and duration."""
        counts = {s: 0 for s in ("copied", "present", "failed", "skipped")}
        for r in self.results:
            counts[r.status] += 1
        charts = sum(r.kind == "chart" for r in self.results)
        return {
            "images": len(self.results) - charts,
            "charts": charts,
            **counts,
            "drift": sum(r.drift for r in self.results),
            "bytes_uploaded": sum(r.bytes_uploaded for r in self.results),
            "blobs_uploaded": sum(r.blobs_uploaded for r in self.results),
            "blobs_mounted": sum(r.blobs_mounted for r in self.results),
            "blobs_present": sum(r.blobs_present for r in self.results),
            "bytes_present": sum(r.bytes_present for r in self.results),
            "retries": sum(r.retries for r in self.results),
            "duration_seconds": round(self.duration_seconds, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the report."""
        return {
            "command": self.command,
            "images": [asdict(r) for r in self.results],
            "summary": self.summary(),
        }

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def write(self, path: str) -> None:
        """Write the JSON report atomically (temporary file, then rename)."""
        target = Path(path)
        fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.to_json() + "\n")
        os.replace(tmp, target)
