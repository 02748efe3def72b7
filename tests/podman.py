"""Pull with rootful Podman through a registries.conf, where the only network is loopback.

Each run is a private network namespace (``unshare --net``: only ``lo``) and mount namespace
(a temp dir over ``/var/lib/containers``), with ``--storage-driver vfs`` and its own ``--root``,
``--runroot`` and ``--tmpdir``. In that namespace a second ``docker-registry`` serves the test
registry's storage on the same address, so ``127.0.0.1:PORT`` there is the registry, and any
other host is unreachable: a pull that succeeds came from the registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.registries import Registry

# $0: work dir, $1: registries.conf, $2: registry config, $3: port; then the references.
_SCRIPT = r"""
set -eu
work=$0 conf=$1 registry_config=$2 port=$3; shift 3
ip link set lo up
mount --bind "$work/containers" /var/lib/containers
setpriv --pdeathsig KILL docker-registry serve "$registry_config" >"$work/access.log" 2>&1 &
trap 'kill $!' EXIT
tries=0
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
  tries=$((tries + 1)); [ "$tries" -lt 200 ] || { echo "registry did not start" >&2; exit 97; }
  sleep 0.05
done
podman() {
  command podman --root "$work/root" --runroot "$work/run" --tmpdir "$work/tmp" \
    --storage-driver vfs --events-backend none --cgroup-manager cgroupfs "$@"
}
for ref in "$@"; do
  CONTAINERS_REGISTRIES_CONF="$conf" podman pull --quiet \
    --signature-policy "$work/policy.json" "$ref" >/dev/null
done
for ref in "$@"; do
  printf '%s %s\n' "$ref" "$(podman image inspect --format '{{.Digest}}' "$ref")"
done
"""
POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}'


@dataclass(frozen=True)
class Pulls:
    """What one offline run pulled: each reference's digest, and the registry's access log."""

    digests: dict[str, str]
    access_log: str


def require_podman() -> None:
    """Skip without podman, saying why; with ``CI=true`` fail instead."""
    missing = [tool for tool in ("podman", "unshare", "ip") if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install podman iproute2)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def pull_offline(registry: Registry, registries_conf: Path, references: list[str]) -> Pulls:
    """Pull ``references`` with Podman through ``registries_conf``, only ``registry`` reachable."""
    require_podman()
    Path("/var/lib/containers").mkdir(parents=True, exist_ok=True)  # the bind mount's target
    port = registry.host.rsplit(":", 1)[1]
    config = registry.workdir / "config.yml"
    command = ["unshare", "--net", "--mount", "--propagation", "private", "bash", "-c", _SCRIPT]
    # Podman refuses a --runroot longer than 50 characters: a short directory of its own.
    with tempfile.TemporaryDirectory(prefix="podman-", dir="/tmp") as tmp:
        work = Path(tmp)
        for sub in ("containers", "root", "run", "tmp"):
            (work / sub).mkdir()
        (work / "policy.json").write_text(POLICY)
        args = [str(work), str(registries_conf), str(config), port, *references]
        result = subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=240, cwd=registry.workdir
        )
        access_log = (work / "access.log").read_text(errors="replace")
    if result.returncode:
        raise AssertionError(
            f"podman pull failed ({result.returncode}):\n{result.stderr}\n{access_log[-3000:]}"
        )
    digests = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line)
    return Pulls(digests, access_log)
