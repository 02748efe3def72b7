"""Run skopeo isolated from the machine's container state.

As root, skopeo keeps a blob-info cache in ``/var/lib/containers/cache`` that remembers where
blobs were seen and changes later copies (e.g. cross-repo mount attempts). Each call runs in a
private mount namespace (``unshare --mount``) with a fresh temp dir bind-mounted over
``/var/lib/containers``, with HOME, auth file, registries.conf and registries.d pointed into
that temp dir, and always with ``--insecure-policy``.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests.registries import Registry

CONTAINERS_DIR = Path("/var/lib/containers")
# $0 = private state dir, "$@" = skopeo arguments
_SCRIPT = 'mount --bind "$0" /var/lib/containers && exec skopeo "$@"'
Location = str | tuple[Registry, str]


def isolated_skopeo_command(home: Path, *args: str, state: Path | None = None) -> list[str]:
    """A command line running ``skopeo --insecure-policy ARGS`` isolated under ``home``.

    ``state`` (default ``home/containers``) is what skopeo sees as ``/var/lib/containers``.
    """
    CONTAINERS_DIR.mkdir(parents=True, exist_ok=True)  # the bind mount needs a mount point
    state = state or home / "containers"
    state.mkdir(parents=True, exist_ok=True)
    (home / "registries.d").mkdir(exist_ok=True)
    (home / "registries.conf").write_text("")
    env = [
        f"HOME={home}",
        f"XDG_CONFIG_HOME={home}/config",
        f"XDG_RUNTIME_DIR={home}/run",
        f"REGISTRY_AUTH_FILE={home}/auth.json",
        f"CONTAINERS_REGISTRIES_CONF={home}/registries.conf",
    ]
    cmd = ["env", *env, "unshare", "--mount", "--propagation", "private", "sh", "-c", _SCRIPT]
    return [*cmd, str(state), "--insecure-policy", "--registries.d", f"{home}/registries.d", *args]


def run_skopeo(
    *args: str, check: bool = True, state_dir: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    """Run ``skopeo --insecure-policy ARGS`` isolated; stdout/stderr are captured as bytes.

    ``state_dir`` (default: a fresh temp dir) is what skopeo sees as ``/var/lib/containers``;
    pass one to keep the blob-info cache (``state_dir/cache``) across calls or inspect it.
    """
    with tempfile.TemporaryDirectory(prefix="skopeo-") as tmp:
        cmd = isolated_skopeo_command(Path(tmp), *args, state=state_dir)
        result = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if check and result.returncode:
        output = (result.stderr + result.stdout).decode(errors="replace")
        raise AssertionError(f"skopeo {' '.join(args)} failed ({result.returncode}):\n{output}")
    return result


def registry_flags(registry: Registry, prefix: str = "") -> list[str]:
    """TLS and credential flags for ``registry``; ``prefix``: ``""``, ``"src-"`` or ``"dest-"``."""
    flags = (
        [f"--{prefix}cert-dir", str(registry.cert_dir)]
        if registry.cert_dir
        else [f"--{prefix}tls-verify=false"]
    )
    if registry.username is not None:
        flags += [f"--{prefix}creds", f"{registry.username}:{registry.password}"]
    return flags


def _location(loc: Location, prefix: str) -> tuple[list[str], str]:
    if isinstance(loc, str):
        return [], loc
    registry, ref = loc
    return registry_flags(registry, prefix), f"docker://{registry.host}/{ref}"


def skopeo_raw(registry: Registry, ref: str) -> bytes:
    """``skopeo inspect --raw docker://HOST/REF`` (``ref`` is ``repo:tag`` or ``repo@digest``)."""
    flags, url = _location((registry, ref), "")
    return run_skopeo("inspect", "--raw", *flags, url).stdout


def skopeo_copy(
    src: Location,
    dst: Location,
    *,
    all: bool = True,
    preserve_digests: bool = False,
    extra: tuple[str, ...] = (),
    check: bool = True,
    state_dir: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``skopeo copy`` between ``(registry, "repo:tag")`` pairs or raw transport references."""
    src_flags, src_ref = _location(src, "src-")
    dst_flags, dst_ref = _location(dst, "dest-")
    opts = ["--all"] * all + ["--preserve-digests"] * preserve_digests
    return run_skopeo("copy", *opts, *src_flags, *dst_flags, *extra, src_ref, dst_ref, check=check,
                      state_dir=state_dir)  # fmt: skip
