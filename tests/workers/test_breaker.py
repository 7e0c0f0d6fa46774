"""The circuit breaker's state machine and the per-process registry, on an injected clock (no sleeps)."""

from __future__ import annotations

import pytest

from workers import CircuitOpenError
from workers.breaker import BreakerPolicy, BreakerState, CircuitBreaker, CircuitBreakers, target_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, threshold: int = 3, cooldown: float = 30.0) -> CircuitBreaker:
    policy = BreakerPolicy(failure_threshold=threshold, cooldown_seconds=cooldown)
    return CircuitBreaker("http://up:80", policy, clock=clock, wall_clock=clock)


def fail(b: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        b.record(success=False, probe=b.admit())


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count() -> None:
    b = breaker(Clock())
    fail(b, 2)
    b.record(success=True, probe=b.admit())
    assert b.failures == 0 and b.state is BreakerState.CLOSED
    fail(b, 2)
    assert b.state is BreakerState.CLOSED and b.failures == 2
    fail(b)
    assert b.state is BreakerState.OPEN and b.opened_total == 1


def test_open_fails_fast_naming_the_target_and_when_it_half_opens() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 10
    with pytest.raises(CircuitOpenError, match=r"circuit breaker open for http://up:80: half-opens at ") as caught:
        b.admit()
    assert caught.value.target == "http://up:80"
    assert caught.value.half_open_at.timestamp() == pytest.approx(1000.0 + 30)


def test_half_open_after_the_cooldown_lets_one_probe_through_and_its_success_closes() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 29.9
    assert b.state is BreakerState.OPEN
    clock.now += 0.1
    assert b.state is BreakerState.HALF_OPEN
    assert b.admit() is True  # the probe
    with pytest.raises(CircuitOpenError, match="a probe call is under way"):
        b.admit()
    b.record(success=True, probe=True)
    assert b.state is BreakerState.CLOSED and b.failures == 0
    assert b.admit() is False and b.admit() is False


def test_a_failed_probe_reopens_for_another_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    b.record(success=False, probe=b.admit())
    assert b.state is BreakerState.OPEN and b.opened_total == 2
    clock.now += 29
    with pytest.raises(CircuitOpenError):
        b.admit()
    clock.now += 1
    assert b.admit() is True


def test_a_probe_that_ends_without_a_verdict_lets_the_next_caller_probe() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    assert b.admit() is True
    b.release(probe=True)
    assert b.admit() is True


def test_late_results_of_calls_started_before_it_opened_change_nothing() -> None:
    clock = Clock()
    b = breaker(clock)
    early = [b.admit() for _ in range(2)]  # two calls in flight while it is closed
    fail(b, 3)
    b.record(success=True, probe=early[0])
    assert b.state is BreakerState.OPEN
    clock.now += 30
    assert b.admit() is True
    b.record(success=False, probe=early[1])  # not the probe: the probe's verdict decides
    assert b.state is BreakerState.HALF_OPEN
    b.record(success=True, probe=True)
    assert b.state is BreakerState.CLOSED


def test_status_reports_state_failures_and_when_it_opened() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    status = b.status()
    assert (status.target, status.state, status.failures, status.opened_total) == ("http://up:80", "open", 3, 1)
    assert status.opened_at is not None and status.opened_at.timestamp() == 1000.0
    clock.now += 30
    assert b.status().state == "half_open"


def test_targets_are_scheme_host_and_port() -> None:
    assert target_of("https://api.example.com/v1/chat?x=1") == "https://api.example.com:443"
    assert target_of("http://127.0.0.1:8080/a") == "http://127.0.0.1:8080"
    registry = CircuitBreakers()
    assert registry.for_url("http://h/a") is registry.for_url("http://h:80/b")


def test_the_registry_keeps_at_most_max_targets_evicting_closed_ones_first() -> None:
    clock = Clock()
    registry = CircuitBreakers(BreakerPolicy(failure_threshold=1, max_targets=3), clock=clock, wall_clock=clock)
    fail(registry.for_target("http://a:1"))  # open: kept
    registry.for_target("http://b:1")
    registry.for_target("http://c:1")
    for n in range(100):
        registry.for_target(f"http://new-{n}:1")
    assert len(registry) == 3
    assert [s.target for s in registry.statuses()] == ["http://a:1", "http://new-98:1", "http://new-99:1"]


@pytest.mark.parametrize("fields", [{"failure_threshold": 0}, {"cooldown_seconds": 0}, {"max_targets": 0}])
def test_unusable_policies_are_refused(fields: dict[str, float]) -> None:
    from workers import ConfigurationError

    with pytest.raises(ConfigurationError):
        BreakerPolicy(**fields)  # type: ignore[arg-type]
