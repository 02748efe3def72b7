"""Retry policy for transient registry faults: connection errors, 5xx, 429 with Retry-After."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import tenacity

from mirror.errors import RegistryError

log = logging.getLogger("mirror.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one operation."""

    attempts: int = 5
    total_seconds: float = 300.0
    max_wait: float = 30.0
    initial_wait: float = 0.5


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
        self._backoff = tenacity.wait_exponential_jitter(
            initial=policy.initial_wait, max=policy.max_wait
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = getattr(exc, "retry_after", None)
        if isinstance(after, (int, float)) and after >= 0:
            return float(min(after, self._policy.max_wait))
        return float(self._backoff(retry_state))


def retrying(
    policy: RetryPolicy, on_retry: Callable[[BaseException], None] | None = None
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for ``policy``; ``on_retry`` is told of each retried fault."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            log.debug("retrying after %s (attempt %d)", exc, state.attempt_number)
            if on_retry:
                on_retry(exc)

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_after_delay(policy.total_seconds),
        wait=_Wait(policy),
        retry=tenacity.retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
