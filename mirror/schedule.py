"""Unattended runs: durations, an overlap lock, the run-sleep-run loop, and sharding."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from mirror.errors import InputError

T = TypeVar("T")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``6h``, ``10m``, ``1h30m``, ``45s`` or a bare number of seconds."""
    value = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise InputError(f"invalid duration {text!r}: use e.g. 30s, 10m, 6h, 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` with 0 <= I < N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise InputError(f"invalid --shard {text!r}: expected I/N with 0 <= I < N")
    return int(match[1]), int(match[2])


def in_shard(key: str, index: int, count: int) -> bool:
    """Whether ``key`` falls in shard ``index`` of ``count`` (stable across hosts and runs)."""
    value = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return value % count == index


def select_shard(items: Sequence[T], key: Callable[[T], str], shard: tuple[int, int]) -> list[T]:
    """The items of one shard, in their original order."""
    index, count = shard
    return [item for item in items if in_shard(key(item), index, count)]


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/meshlift``, else ``~/.local/state/meshlift``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "meshlift"


@contextmanager
def run_lock(state_dir: Path, wait: bool) -> Iterator[bool]:
    """Hold ``state_dir/sync.lock``; yields False (without waiting) if another run holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "sync.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                yield False
                return
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


def run_every(
    cycle: Callable[[], object],
    interval: float,
    jitter: float,
    stop: threading.Event,
    rng: random.Random | None = None,
) -> int:
    """Run ``cycle`` now and then every ``interval`` (+ up to ``jitter``) until ``stop``.

    A cycle that raises is the cycle's business (it logs); the loop goes on. Returns the
    number of cycles run.
    """
    rng = rng or random.Random()
    cycles = 0
    while not stop.is_set():
        cycle()
        cycles += 1
        stop.wait(interval + rng.uniform(0, jitter) if jitter else interval)
    return cycles
