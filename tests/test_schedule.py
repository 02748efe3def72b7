"""Unattended sync (issue 9): interval loop, overlap lock, metrics, shards, env, examples."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mirror.image.lock import load_lock
from mirror.schedule import in_shard, parse_duration, run_lock
from tests.faultproxy import FaultProxy, ProxyFactory
from tests.imagefactory import make_image
from tests.mirrorcli import REPO_ROOT, PublicImages, publish_default_set, report_of, run_mirror
from tests.registries import Registry, RegistryFactory


@pytest.fixture(scope="module")
def public(anon_registry: Registry) -> PublicImages:
    return publish_default_set(anon_registry)


def sync_args(
    public: PublicImages, dest: Registry | FaultProxy, lock: Path, state: Path
) -> list[str]:
    return [
        "sync", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm",
        *public.endpoint_args(), "--state-dir", str(state),
    ]  # fmt: skip


def test_interval_runs_cycles_until_sigterm_and_writes_metrics(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    lock = public.write_lock(tmp_path / "images.lock")
    metrics, report = tmp_path / "mirror.prom", tmp_path / "report.json"
    args = sync_args(public, dest, lock, tmp_path / "state")
    args += ["--interval", "1s", "--metrics-file", str(metrics), "--report", str(report)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", *args], cwd=REPO_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    summaries = []
    deadline = time.monotonic() + 60
    while len(summaries) < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("sync: "):
            summaries.append(line)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert len(summaries) == 3
    count = len(public.artifacts)
    assert f"{count} copied" in summaries[0]
    assert all(f"{count} present" in s for s in summaries[1:])
    values = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.read_text().splitlines()
        if line and not line.startswith("#")
    }
    last = json.loads(report.read_text())["summary"]
    assert values['meshlift_mirror_images{status="present"}'] == last["present"] == count
    assert values['meshlift_mirror_images{status="failed"}'] == last["failed"] == 0
    assert values["meshlift_mirror_bytes_uploaded"] == last["bytes_uploaded"]
    assert values["meshlift_mirror_last_success_timestamp_seconds"] > time.time() - 60


def test_a_second_sync_exits_0_while_one_is_running(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    lock = public.write_lock(tmp_path / "images.lock")
    state = tmp_path / "state"
    first = run_mirror(*sync_args(public, dest, lock, state), "--dry-run")
    assert first.returncode == 0, first.stderr
    lock_file = next(state.glob("sync-*/sync.lock"))
    mark = dest.mark()
    with run_lock(lock_file.parent, wait=False) as held:  # another run holds the lock
        assert held
        second = run_mirror(*sync_args(public, dest, lock, state))
    assert second.returncode == 0
    assert "is running; skipped" in second.stdout
    assert dest.requests(mark) == []

    release = threading.Event()

    def hold() -> None:
        with run_lock(lock_file.parent, wait=False):
            release.wait(1.5)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)
    waited = run_mirror(*sync_args(public, dest, lock, state), "--wait-lock")
    holder.join()
    assert waited.returncode == 0, waited.stderr
    assert f"{len(public.artifacts)} copied" in waited.stdout


def test_a_run_killed_while_holding_the_lock_does_not_block_the_next(
    public: PublicImages, make_registry: RegistryFactory, proxies: ProxyFactory, tmp_path: Path
) -> None:
    dest = proxies(make_registry("anon").url)
    stall = dest.rule("stall", "PUT", "/manifests/", times=None, seconds=120)
    lock = public.write_lock(tmp_path / "images.lock")
    args = sync_args(public, dest, lock, tmp_path / "state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    hung = subprocess.Popen(
        [sys.executable, "-m", "mirror", *args], cwd=REPO_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not stall.injected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stall.injected, "the first run never reached its manifest push"
    finally:
        hung.kill()  # as a deadline (activeDeadlineSeconds, TimeoutStartSec) or the OOM killer does
        hung.wait()
    dest.clear()
    result = run_mirror(*args)
    assert result.returncode == 0, result.stderr
    assert "is running; skipped" not in result.stdout
    assert f"{len(public.artifacts)} copied" in result.stdout


def test_shards_cover_every_image_exactly_once(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    lock = public.write_lock(tmp_path / "images.lock")
    seen: list[str] = []
    for index in range(3):
        result = run_mirror(
            *sync_args(public, dest, lock, tmp_path / "state"), "--shard", f"{index}/3",
            "--dry-run", "--output", "json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        seen += [i["source"] for i in report_of(result)["images"]]
    assert sorted(seen) == sorted(public.artifacts)
    embedded = [str(e.source) for e in load_lock(None).entries]
    buckets = [[s for s in embedded if in_shard(s, i, 3)] for i in range(3)]
    assert sorted(s for bucket in buckets for s in bucket) == sorted(embedded)


def test_bad_shard_and_interval_are_input_errors(tmp_path: Path) -> None:
    for extra in (["--shard", "3/3"], ["--interval", "soon"]):
        result = run_mirror("sync", "--registry-server", "reg.example.com", *extra, cwd=tmp_path)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_options_come_from_the_environment(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    lock = public.write_lock(tmp_path / "images.lock")
    env = {
        "MESHLIFT_REGISTRY_SERVER": f"{dest.host}/nsm",
        "MESHLIFT_LOCK": str(lock),
        "MESHLIFT_ENDPOINT": " ".join(public.endpoint_args()[1::2]),
        "MESHLIFT_STATE_DIR": str(tmp_path / "state"),
        "MESHLIFT_OUTPUT": "json",
    }
    result = run_mirror("sync", env=env)
    assert result.returncode == 0, result.stderr
    assert report_of(result)["summary"]["copied"] == len(public.artifacts)
    assert "MESHLIFT_REGISTRY_SERVER" in run_mirror("sync", "--help").stdout


def test_lock_check_reports_a_moved_tag(anon_registry: Registry, tmp_path: Path) -> None:
    public = PublicImages(anon_registry, f"lockcheck-{uuid.uuid4().hex[:8]}")
    public.add("quay.io/team/tool:2", make_image("tool-old", [1000]))
    lock = public.write_lock(tmp_path / "images.lock")
    pinned = run_mirror("lock", "--lock", str(lock), *public.endpoint_args())
    assert pinned.returncode == 0, pinned.stderr
    assert public.artifacts["quay.io/team/tool:2"].digest in lock.read_text()
    assert (
        run_mirror("lock", "--check", "--lock", str(lock), *public.endpoint_args()).returncode == 0
    )
    public.add("quay.io/team/tool:2", make_image("tool-new", [1000]))
    stale = run_mirror("lock", "--check", "--lock", str(lock), *public.endpoint_args())
    assert stale.returncode == 1
    assert "quay.io/team/tool:2" in stale.stdout


def test_durations() -> None:
    assert parse_duration("6h") == 21600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45


KUBERNETES_EXAMPLES = sorted((REPO_ROOT / "examples" / "kubernetes").glob("*.yaml"))


@pytest.mark.parametrize("version", ["1.30", kubernetes_validate.latest_version()])
@pytest.mark.parametrize("path", KUBERNETES_EXAMPLES, ids=lambda path: path.name)
def test_kubernetes_examples_validate(path: Path, version: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def pod_of(path: Path) -> dict[str, Any]:
    """The pod template of the example's CronJob or Job."""
    (doc,) = yaml.safe_load_all(path.read_text())
    job = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return dict(job["template"]["spec"])


@pytest.mark.parametrize("path", KUBERNETES_EXAMPLES, ids=lambda path: path.name)
def test_kubernetes_examples_run_the_image_from_r_as_it_is_built(path: Path) -> None:
    pod = pod_of(path)
    (container,) = pod["containers"]
    assert re.fullmatch(
        r"registry\.example\.com/tools/meshlift@sha256:[0-9a-f]{64}", container["image"]
    )
    assert container["args"][0] == "sync"  # the image's entrypoint is mirror
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["tmp"]["mountPath"] == "/tmp" and "emptyDir" in volumes["tmp"]  # HOME
    assert volumes["lock"]["configMap"]["name"] == "meshlift-images-lock"
    assert mounts["lock"]["mountPath"] == env["MESHLIFT_LOCK"]
    assert volumes["docker-config"]["secret"]["items"] == [
        {"key": ".dockerconfigjson", "path": "config.json"}
    ]
    assert mounts["docker-config"]["mountPath"] == env["DOCKER_CONFIG"]
    args = container["args"]
    metrics = args[args.index("--metrics-file") + 1] if "--metrics-file" in args else None
    metrics = metrics or env["MESHLIFT_METRICS_FILE"]
    assert metrics.startswith(mounts["metrics"]["mountPath"] + "/")
    assert "persistentVolumeClaim" in volumes["metrics"]


def test_the_indexed_job_shards_by_its_completion_index() -> None:
    (job,) = yaml.safe_load_all((REPO_ROOT / "examples/kubernetes/mirror-indexed-job.yaml").open())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    completions = job["spec"]["completions"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert args[args.index("--shard") + 1] == f"$(JOB_COMPLETION_INDEX)/{completions}"
    assert "$(JOB_COMPLETION_INDEX)" in args[args.index("--metrics-file") + 1]


def test_systemd_examples_run_mirror_sync() -> None:
    service = (REPO_ROOT / "examples" / "systemd" / "meshlift-mirror.service").read_text()
    timer = (REPO_ROOT / "examples" / "systemd" / "meshlift-mirror.timer").read_text()
    assert "ExecStart=/usr/local/bin/mirror sync" in service
    assert "OnCalendar=" in timer and "Persistent=true" in timer
    assert "Type=oneshot" in service and "TimeoutStartSec=2h" in service  # every 6h


def test_the_cronjob_stops_a_run_before_the_next_is_due() -> None:
    (cronjob,) = yaml.safe_load_all((REPO_ROOT / "examples/kubernetes/mirror-cronjob.yaml").open())
    assert cronjob["spec"]["schedule"] == "17 */6 * * *"
    assert 0 < cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 6 * 3600


def test_max_requests_per_second_paces_each_registry(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    lock = public.write_lock(tmp_path / "images.lock", ["docker.io/curlimages/curl:latest"])
    mark = dest.mark()
    started = time.monotonic()
    result = run_mirror(
        *sync_args(public, dest, lock, tmp_path / "state"), "--max-requests-per-second", "10"
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    sent = len(dest.requests(mark))
    assert sent >= 8
    assert elapsed >= (sent - 1) / 10  # never faster than 10 requests a second to one registry
