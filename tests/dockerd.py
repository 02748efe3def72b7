"""A private ``dockerd`` for tests: its own data root, exec root, socket, key and config.

It never touches the machine's Docker state: no iptables, no bridge, the ``vfs`` storage
driver, the libtrust key (``deprecated-key-path``) inside its data root instead of
``/etc/docker/key.json``, and a socket under a short temporary directory (unix socket paths
are limited to 108 bytes, and the managed containerd puts its own sockets under the exec root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DOCKERD = "/usr/sbin/dockerd"


class DockerdUnavailable(Exception):
    """dockerd is missing or did not start; the message is the daemon's own error."""


@dataclass
class Dockerd:
    """A running daemon and where its state lives."""

    root: Path
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        """The daemon's unix socket."""
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        """``DOCKER_HOST`` value for this daemon."""
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        """``--data-root``: images, layers and the daemon's key."""
        return self.root / "data"

    @property
    def exec_root(self) -> Path:
        """``--exec-root``: runtime state, containerd's sockets, the netns mount."""
        return self.root / "exec"

    @property
    def log_file(self) -> Path:
        """The daemon's stdout and stderr."""
        return self.root / "dockerd.log"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the daemon's log."""
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the daemon by PID, then its containerd, unmount what it left, remove its state."""
        _terminate(self.process.pid, self.process)
        containerd_pid = self.exec_root / "containerd" / "containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            _terminate(int(containerd_pid.read_text().strip()), None)
        for mountpoint in mounts_under(self.root):
            subprocess.run(["umount", "--lazy", mountpoint], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _terminate(pid: int, process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM ``pid``; SIGKILL it after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return
        if process is None and not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait()


def mounts_under(root: Path) -> list[str]:
    """Mount points below ``root``, deepest first (``netns/default`` and the like)."""
    prefix = str(root) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def daemon_config(data_root: Path) -> dict[str, object]:
    """``daemon.json``: keep the libtrust key in the data root, not ``/etc/docker``.

    Loopback registries are insecure by default, so no ``insecure-registries`` entry is needed.
    """
    return {"deprecated-key-path": str(data_root / "key.json")}


def start_dockerd(timeout: float = 60) -> Dockerd:
    """Start a private daemon and wait until it answers; DockerdUnavailable if it cannot."""
    if not Path(DOCKERD).exists():
        raise DockerdUnavailable(f"{DOCKERD} not installed (Debian: apt-get install docker.io)")
    if os.geteuid() != 0:
        raise DockerdUnavailable("dockerd needs root")
    root = Path(tempfile.mkdtemp(prefix="mld-", dir="/tmp"))
    (root / "data").mkdir()
    config = root / "daemon.json"
    config.write_text(json.dumps(daemon_config(root / "data"), indent=2))
    command = [
        "setpriv", "--pdeathsig", "TERM",  # dies with pytest, even if pytest is killed
        DOCKERD,
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(root / "dockerd.pid"),
        "--host", f"unix://{root / 'docker.sock'}",
        "--config-file", str(config),
        "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
    ]  # fmt: skip
    with (root / "dockerd.log").open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    daemon = Dockerd(root, process)
    if not _wait_ready(daemon, timeout):
        code = daemon.process.poll()
        reason = _failure(daemon.log_tail(200))
        daemon.stop()
        if code is None:
            raise DockerdUnavailable(f"dockerd did not answer within {timeout}s: {reason}")
        raise DockerdUnavailable(f"dockerd exited with code {code}: {reason}")
    return daemon


def _wait_ready(daemon: Dockerd, timeout: float) -> bool:
    import docker
    import docker.errors

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and daemon.process.poll() is None:
        if daemon.socket.exists():
            try:
                client = docker.APIClient(base_url=daemon.host, timeout=5, version="auto")
                answered = client.ping()
                client.close()
                if answered:
                    return True
            except docker.errors.DockerException:
                pass
        time.sleep(0.1)
    return False


def _failure(log: str) -> str:
    """The daemon's own error: its last fatal or error line, else its last line."""
    lines = [line for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "level=fatal" in line or "level=error" in line]
    line = (errors or lines or ["(no output)"])[-1]
    marker = 'msg="'
    return line[line.index(marker) + len(marker) :].rstrip('"') if marker in line else line
