"""Request pacing: fixed rate per host and Docker Hub's ratelimit-remaining header."""

from __future__ import annotations

from mirror.net.ratelimit import MAX_BUDGET_WAIT, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_fixed_rate_spaces_requests_per_host() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second=4, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.acquire("registry-1.docker.io")
    assert clock.slept == [0.25, 0.25, 0.25, 0.25]
    limiter.acquire("gcr.io")  # another host has its own pace
    assert len(clock.slept) == 4


def test_low_pull_budget_slows_down_before_429() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    limiter.observe("docker.io", {"ratelimit-remaining": "90;w=21600"})
    limiter.acquire("docker.io")
    limiter.acquire("docker.io")
    assert clock.slept == []  # plenty left: no pacing
    limiter.observe("docker.io", {"ratelimit-remaining": "4;w=21600"})
    limiter.acquire("docker.io")
    limiter.acquire("docker.io")
    assert clock.slept == [MAX_BUDGET_WAIT]  # 21600/4 s, capped
    limiter.observe("docker.io", {"ratelimit-remaining": "100;w=21600"})
    limiter.acquire("docker.io")
    limiter.acquire("docker.io")
    assert len(clock.slept) == 2  # the wait already scheduled, then no more pacing
