"""Request pacing per registry: ``--max-requests-per-second`` and Docker Hub's pull budget."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("mirror.ratelimit")
_REMAINING_RE = re.compile(r"^\s*(\d+)\s*(?:;\s*w=(\d+))?")

#: Below this many remaining pulls, requests are spread over the rest of the window.
LOW_WATER = 10
#: Never wait longer than this for one request because of the pull budget.
MAX_BUDGET_WAIT = 60.0


class RateLimiter:
    """Spaces requests to each host: a fixed rate, and slower when the pull budget runs low."""

    def __init__(
        self,
        per_second: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._budget: dict[str, float] = {}
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self, host: str) -> None:
        """Wait until a request to ``host`` may go."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(host, now))
            spacing = max(self._interval, self._budget.get(host, 0.0))
            self._next[host] = slot + spacing
        if slot > now:
            self._sleep(slot - now)

    def observe(self, host: str, headers: Mapping[str, str]) -> None:
        """Read ``ratelimit-remaining: N;w=SECONDS`` and pace the rest of the window."""
        match = _REMAINING_RE.match(headers.get("ratelimit-remaining", ""))
        if not match:
            return
        remaining, window = int(match[1]), int(match[2] or 0)
        with self._lock:
            if remaining <= LOW_WATER and window:
                spacing = min(window / max(remaining, 1), MAX_BUDGET_WAIT)
                if self._budget.get(host) != spacing:
                    log.warning(
                        "%s: %d pulls left in a %ds window; spacing requests %.1fs apart",
                        host, remaining, window, spacing,
                    )  # fmt: skip
                self._budget[host] = spacing
            else:
                self._budget.pop(host, None)
