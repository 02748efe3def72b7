"""Prometheus text-format metrics of a run, for node-exporter's textfile collector."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from mirror.report import Report

_STATUSES = ("copied", "present", "failed", "skipped")


def render_metrics(report: Report, last_success: float | None) -> str:
    """The metrics text for one finished run."""
    summary = report.summary()
    lines = [
        "# HELP meshlift_mirror_images Images in the last run, by status.",
        "# TYPE meshlift_mirror_images gauge",
        *(f'meshlift_mirror_images{{status="{s}"}} {summary[s]}' for s in _STATUSES),
        "# HELP meshlift_mirror_bytes_uploaded Bytes uploaded in the last run.",
        "# TYPE meshlift_mirror_bytes_uploaded gauge",
        f"meshlift_mirror_bytes_uploaded {summary['bytes_uploaded']}",
        "# HELP meshlift_mirror_drift Images whose source tag moved off the locked digest.",
        "# TYPE meshlift_mirror_drift gauge",
        f"meshlift_mirror_drift {summary['drift']}",
        "# HELP meshlift_mirror_duration_seconds Duration of the last run.",
        "# TYPE meshlift_mirror_duration_seconds gauge",
        f"meshlift_mirror_duration_seconds {summary['duration_seconds']}",
        "# HELP meshlift_mirror_last_run_timestamp_seconds When the last run ended.",
        "# TYPE meshlift_mirror_last_run_timestamp_seconds gauge",
        f"meshlift_mirror_last_run_timestamp_seconds {time.time():.0f}",
    ]
    if last_success is not None:
        lines += [
            "# HELP meshlift_mirror_last_success_timestamp_seconds When a run last had no failure.",
            "# TYPE meshlift_mirror_last_success_timestamp_seconds gauge",
            f"meshlift_mirror_last_success_timestamp_seconds {last_success:.0f}",
        ]
    return "\n".join(lines) + "\n"


def write_metrics(path: str, text: str) -> None:
    """Write atomically: a temporary file in the same directory, then rename."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def last_success_from(path: str) -> float | None:
    """The last-success timestamp an earlier run wrote to ``path``, if any."""
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.startswith("meshlift_mirror_last_success_timestamp_seconds "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
