"""Retrying transient registry faults (connection errors, 5xx, 429 with Retry-After), and
stopping every retry and transfer of a run when it is cancelled by a signal.

The policy's knobs can be set from the environment (mainly for tests and slow links):
``MESHLIFT_RETRY_ATTEMPTS``, ``MESHLIFT_RETRY_INITIAL_WAIT``, ``MESHLIFT_RETRY_MAX_WAIT``
(also the most a ``Retry-After`` is honoured) and ``MESHLIFT_HTTP_TIMEOUT`` (seconds a
network read or write may stall before the attempt counts as failed).
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields

import httpx
import tenacity

from mirror.errors import InputError, Interrupted, RegistryError

log = logging.getLogger("mirror.retry")

_ENV = {
    "attempts": "MESHLIFT_RETRY_ATTEMPTS",
    "initial_wait": "MESHLIFT_RETRY_INITIAL_WAIT",
    "max_wait": "MESHLIFT_RETRY_MAX_WAIT",
    "timeout": "MESHLIFT_HTTP_TIMEOUT",
}
_on_retry: ContextVar[Callable[[BaseException], None] | None] = ContextVar(
    "mirror_on_retry", default=None
)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one operation, and how long one network read may stall."""

    attempts: int = 5
    total_seconds: float = 300.0
    max_wait: float = 30.0
    initial_wait: float = 0.5
    timeout: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RetryPolicy:
        """The default policy, with the overrides the environment sets."""
        values: dict[str, float] = {}
        for item in fields(cls):
            name = _ENV.get(item.name)
            if name is None or name not in environ:
                continue
            try:
                value = float(environ[name])
            except ValueError:
                value = -1.0
            if value < 0 or (item.name == "attempts" and (value < 1 or value != int(value))):
                raise InputError(f"{name}={environ[name]!r}: expected a non-negative number")
            values[item.name] = value
        attempts = int(values.pop("attempts", cls.attempts))
        return cls(attempts=attempts, **values)


class Cancellation:
    """Set by a signal handler; retries, requests and transfers of the run stop soon after.

    ``aftermath`` (what an interrupted run leaves as it was) ends the Interrupted message.
    """

    def __init__(self, aftermath: str = "") -> None:
        self.signum: int | None = None
        self.aftermath = aftermath
        self._event = threading.Event()

    @property
    def requested(self) -> bool:
        """Whether the run was asked to stop."""
        return self._event.is_set()

    def cancel(self, signum: int) -> None:
        """Ask every copy to stop."""
        self.signum = signum
        self._event.set()

    def check(self) -> None:
        """Raise Interrupted if cancelled."""
        if self.signum is not None:
            raise Interrupted(self.signum, self.aftermath)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a retry's backoff), raising Interrupted as soon as cancelled."""
        self._event.wait(seconds)
        self.check()


@contextmanager
def retries_reported_to(callback: Callable[[BaseException], None]) -> Iterator[None]:
    """Tell ``callback`` of every retry made in this context (and contexts copied from it)."""
    token = _on_retry.set(callback)
    try:
        yield
    finally:
        _on_retry.reset(token)


def is_retryable(exc: BaseException) -> bool:
    """Transient faults: transport errors (not TLS verification), retryable registry errors."""
    if isinstance(exc, RegistryError):
        return exc.retryable
    if isinstance(exc, httpx.TransportError):
        return not isinstance(exc.__cause__ or exc.__context__, ssl.SSLCertVerificationError)
    return False


class _Wait(tenacity.wait.wait_base):
    """Exponential backoff with jitter, or the server's Retry-After (bounded)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = getattr(exc, "retry_after", None)
        if isinstance(after, (int, float)) and after >= 0:
            return float(min(after, self._policy.max_wait))
        initial = self._policy.initial_wait
        backoff = initial * 2.0 ** min(retry_state.attempt_number - 1, 30)
        return min(backoff + random.uniform(0, initial), self._policy.max_wait)


def retrying(
    policy: RetryPolicy, what: str, cancel: Cancellation | None = None
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for ``policy``; ``cancel`` cuts its waits short.

    Each retry of ``what`` is logged at debug level and reported to the context's callback.
    """

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None:  # pragma: no cover - only failed attempts are retried
            return
        wait = state.next_action.sleep if state.next_action else 0.0
        log.debug(
            "retry %d/%d of %s in %.2fs after %s: %s",
            state.attempt_number,
            policy.attempts - 1,
            what,
            wait,
            type(exc).__name__,
            exc,
        )
        callback = _on_retry.get()
        if callback is not None:
            callback(exc)

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_after_delay(policy.total_seconds),
        wait=_Wait(policy),
        retry=tenacity.retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        sleep=cancel.sleep if cancel else tenacity.nap.sleep,
        reraise=True,
    )
