"""The live progress display in a terminal: one failure leaves every row readable (issue 24)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from mirror.cli.progress import LiveProgress
from mirror.image.reference import parse_reference
from mirror.report import ImageResult, Status
from mirror.run import CopyJob

LONG = "registry.example.com/platform/service-mesh/nginx-mesh-controller:2.0.0"  # 70 characters
REASON = (
    "helm.nginx.com: GET /stable/index.yaml: ConnectError: [Errno -2] Name or service not known"
)
_CLEAR = re.compile(r"\r\x1b\[2K(?:\x1b\[1A\x1b\[2K)*")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def job(source: str, destination: str) -> CopyJob:
    return CopyJob(parse_reference(source), parse_reference(destination))


def run_display(width: int) -> tuple[list[str], list[str]]:
    """Four images (copied with mounted bytes, present, two failed, the last in the lock
    failing first) shown in a ``width``-column terminal: the last screen's rows, and the lines
    printed below it."""
    out = io.StringIO()
    display = LiveProgress(Console(force_terminal=True, width=width, file=out), 4)
    copied = job("ghcr.io/acme/controller:2.0.0", LONG)
    present = job("docker.io/library/nats:2.9-alpine", "registry.example.com/nsm/nats:2.9-alpine")
    failed = job("helm.nginx.com/stable/nginx-service-mesh:2.0.0", "registry.example.com/nsm/nsm:2")
    refused = job("docker.io/curlimages/curl:latest", "registry.example.com/nsm/curl:latest")
    for one in (copied, present, failed, refused):
        display.started(one)
    display.sized(copied, 76_000_000)
    display.placed(copied, 30_000_000, "mounted")
    display.advanced(copied, 46_000_000)
    outcomes: list[tuple[CopyJob, Status, str | None]] = [
        (copied, "copied", None),
        (present, "present", None),
        (failed, "failed", f"{failed.source}: {(REASON + '; ') * 3}"[:300]),
        (refused, "failed", "repository registry.example.com/nsm/curl does not exist"),
    ]
    results = {
        one: ImageResult(str(one.source), str(one.destination), status, error=error)
        for one, status, error in outcomes
    }
    for one in (refused, copied, present, failed):
        display.finished(one, results[one])
    display.close()
    display.list_failures(list(results.values()))
    frame, _, after = _CLEAR.split(out.getvalue())[-1].partition("\x1b[?25h")
    return _ANSI.sub("", frame).splitlines(), _ANSI.sub("", after).splitlines()


@pytest.mark.parametrize("width", [80, 160])
def test_a_failure_leaves_every_row_and_the_total_readable(width: int) -> None:
    rows, below = run_display(width)
    assert len(LONG) == 70
    assert all(len(row) <= width for row in rows), rows
    total, copied, present, failed, refused = rows
    assert total.startswith("total (4 images)")
    assert "43.9/43.9 MiB (28.6 MiB mounted)" in total
    assert copied.startswith(LONG if width == 160 else LONG[:20])
    assert "43.9/43.9 MiB (28.6 MiB mounted)" in copied and " copied" in copied
    assert present.startswith("registry.example.com/nsm/nats") and " present" in present
    assert failed.startswith("registry.example.com/nsm/nsm:2")
    assert re.search(r" failed( |$)", failed) and "Errno" not in failed
    reason = f"helm.nginx.com/stable/nginx-service-mesh:2.0.0: {(REASON + '; ') * 3}"[:300]
    assert re.search(r" failed( |$)", refused) and "exist" not in refused
    assert below == [
        f"failed: registry.example.com/nsm/nsm:2: {reason}",
        "failed: registry.example.com/nsm/curl:latest: repository registry.example.com/nsm/curl"
        " does not exist",
    ]
