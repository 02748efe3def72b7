"""Timing, request counting, destination checks, targets and the printed table of the benchmark."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.shaper import Shaper
from tests.imagefactory import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    registry_client,
)
from tests.registries import Registry

ROOT = Path(__file__).resolve().parent.parent
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))


@dataclass
class Run:
    """One timed command (or group of commands) and the requests it made."""

    seconds: float
    peak_rss_mib: float
    requests: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A limit on one value measured in a workload (lower is better)."""

    text: str
    value: Callable[[Workload], float]
    limit: float


def ratio_to(tool: str, limit: float, ours: str = "meshlift") -> Target:
    """``ours``'s median (meshlift's, by default) over ``tool``'s."""
    return Target(f"{ours} <= {limit} x {tool}", lambda w: w.ratio(tool, ours), limit)


def seconds(tool: str, limit: float) -> Target:
    """``tool``'s median wall time."""
    return Target(f"{tool} <= {limit} s", lambda w: w.median(tool), limit)


def peak_rss(tool: str, limit: float) -> Target:
    """``tool``'s largest peak RSS over the rounds."""
    return Target(f"{tool} peak RSS <= {limit} MiB", lambda w: w.peak(tool), limit)


def gets(tool: str, limit: int = 0) -> Target:
    """The most GETs of manifests and blobs ``tool`` sent to the registries in one round (a
    tags listing is no pull: Docker Hub counts manifest GETs only)."""
    return Target(f"{tool}: {limit} GETs of manifests or blobs", lambda w: w.most_gets(tool), limit)


def requests(tool: str, kind: str, limit: int) -> Target:
    """The median number of ``kind`` requests (``source``, ``dest GET``, …) of ``tool``."""
    return Target(f"{tool}: {kind} requests <= {limit}", lambda w: w.requests(tool)[kind], limit)


@dataclass
class Workload:
    """Runs per tool in round order, and the targets they are held to."""

    name: str
    targets: Sequence[Target]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, tool: str, run: Run) -> None:
        self.runs.setdefault(tool, []).append(run)

    def median(self, tool: str) -> float:
        return statistics.median(r.seconds for r in self.runs[tool])

    def ratio(self, tool: str, ours: str = "meshlift") -> float:
        return self.median(ours) / self.median(tool)

    def peak(self, tool: str) -> float:
        return max(r.peak_rss_mib for r in self.runs[tool])

    def most_gets(self, tool: str) -> float:
        return max(
            sum(n for k, n in r.requests.items() if k.endswith(" GET")) for r in self.runs[tool]
        )

    def requests(self, tool: str) -> dict[str, float]:
        """Median count per kind of request over the rounds."""
        runs = self.runs[tool]
        return {k: statistics.median(r.requests.get(k, 0) for r in runs) for k in runs[0].requests}


def timed(commands: Sequence[Sequence[str]], stdin: str = "") -> Run:
    """Run ``commands`` concurrently; wall time of the group and the largest peak RSS.

    Peak RSS comes from ``/usr/bin/time`` around each command: a child forked from this
    (large) process would inherit its high-water mark, so ``wait4`` here would overstate it.
    """
    env = {**os.environ, "DOCKER_CONFIG": str(ROOT / "tests/data/no-docker-config")}
    with tempfile.TemporaryDirectory(prefix="rss-") as tmp:
        outputs = [Path(tmp) / f"{n}.rss" for n in range(len(commands))]
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                ["/usr/bin/time", "-f", "%M", "-o", str(out), *c], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
            )
            for c, out in zip(commands, outputs, strict=True)
        ]  # fmt: skip
        for command, proc in zip(commands, procs, strict=True):
            _, stderr = proc.communicate(stdin)
            if proc.returncode != 0:
                raise SystemExit(f"benchmark command failed: {command}\n{stderr[-2000:]}")
        seconds = time.perf_counter() - started
        peak_kib = max(int(out.read_text().split()[-1]) for out in outputs)
    return Run(seconds, peak_kib / 1024)


def in_parallel(commands: Sequence[Sequence[str]], workers: int = 4) -> Run:
    """``commands`` run ``workers`` at a time, each worker taking the next from an executor."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        runs = list(pool.map(lambda c: timed([c]), commands))
    return Run(time.perf_counter() - started, max(r.peak_rss_mib for r in runs))


def tallies(registries: Mapping[str, Registry], shaper: Shaper | None) -> dict[str, int]:
    """Running totals: requests per registry (access logs), and of them the GETs of manifests
    and blobs and the tags listings (GETs too, but no pulls); token requests, and connections
    through the shaper."""
    out: dict[str, int] = {}
    for name, registry in registries.items():
        logged = registry.requests()
        out[name] = len(logged)
        out[f"{name} GET"] = sum(
            1
            for r in logged
            if r.method == "GET" and ("/manifests/" in r.path or "/blobs/" in r.path)
        )
        out[f"{name} tags lists"] = sum(1 for r in logged if r.path.endswith("/tags/list"))
        if registry.issuer:
            out["token"] = len(registry.issuer.requests)
    if shaper:
        out["connections"] = shaper.connections
    return out


def counted(
    run: Callable[[], Run], registries: Mapping[str, Registry], shaper: Shaper | None = None
) -> Run:
    """``run()`` with the requests it made to ``registries`` (and through ``shaper``) counted."""
    before = tallies(registries, shaper)
    result = run()
    result.requests = {k: n - before[k] for k, n in tallies(registries, shaper).items()}
    return result


def verify(tool: str, registry: Registry, expected: Mapping[str, str]) -> None:
    """Exit loudly unless every ``repo:tag`` of ``expected`` in ``registry`` has its digest.

    The registry refuses a manifest whose blobs or child manifests it lacks, so a tag with the
    source's digest means the whole image arrived.
    """
    wrong = []
    with registry_client(registry) as client:
        for ref, digest in expected.items():
            repo, _, tag = ref.rpartition(":")
            answer = client.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
            found = answer.headers.get("Docker-Content-Digest", f"HTTP {answer.status_code}")
            if found != digest:
                wrong.append(f"{ref}: {found}, source has {digest}")
    if wrong:
        raise SystemExit(
            f"benchmark: {tool} left {len(wrong)} of {len(expected)} destination images wrong:\n"
            + "\n".join(wrong[:10])
        )


def alternate(rounds: int, trials: Sequence[Callable[[], None]]) -> None:
    """Every trial once per round, in reverse order every other round (A B, then B A)."""
    for n in range(rounds):
        for trial in trials if n % 2 == 0 else trials[::-1]:
            trial()


def report(workloads: Sequence[Workload]) -> dict[str, object]:
    """Print the table; return the JSON shape of the results."""
    out: dict[str, object] = {}
    header = f"{'workload':30} {'tool':24} {'median s':>9} {'ratio':>6} {'peak RSS MiB':>13}"
    print(f"\n{header}  ratio per round (meshlift/tool)")
    for work in workloads:
        ours = work.runs.get("meshlift", [])
        rows = {}
        for tool, runs in work.runs.items():
            compared = bool(ours) and not tool.startswith("meshlift")
            ratio = f"{work.ratio(tool):.2f}" if compared else ""
            rounds = [round(m.seconds / r.seconds, 2) for m, r in zip(ours, runs, strict=False)]
            shown = " ".join(f"{x:.2f}" for x in rounds) if compared else ""
            line = f"{work.name:30} {tool:24} {work.median(tool):9.3f} {ratio:>6} "
            print(f"{line}{work.peak(tool):13.1f}  {shown}")
            requests = work.requests(tool)
            if requests:
                counts = ", ".join(
                    f"{k} {n:g} ({requests[k + ' GET']:g} GET of manifests/blobs,"
                    f" {requests[k + ' tags lists']:g} tags lists)"
                    if k + " GET" in requests
                    else f"{k} {n:g}"
                    for k, n in requests.items()
                    if not k.endswith((" GET", " tags lists"))
                )
                print(f"{'':30}   requests (median of rounds): {counts}")
            rows[tool] = {
                "median_s": round(work.median(tool), 3),
                "rounds_s": [round(r.seconds, 3) for r in runs],
                "ratio_per_round": rounds if compared else [],
                "peak_rss_mib": round(work.peak(tool), 1),
                "requests_median": requests,
            }
        for note in work.notes:
            print(f"{'':30} note: {note}")
        verdicts = []
        for target in work.targets:
            value = target.value(work)
            verdict = "met" if value <= target.limit else "MISSED"
            print(f"{'':30} target: {target.text}: {value:.3g} {verdict}")
            verdicts.append(
                {"target": target.text, "value": round(value, 3), "met": value <= target.limit}
            )
        out[work.name] = {"targets": verdicts, "tools": rows, "notes": work.notes}
    return out
