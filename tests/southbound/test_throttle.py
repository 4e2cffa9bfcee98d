"""Token buckets of the login throttle, with a fake clock."""

from __future__ import annotations

from edgefleet.southbound.throttle import LoginThrottle, TokenBuckets


def test_bucket_refills_continuously_up_to_its_depth() -> None:
    buckets = TokenBuckets(per_minute=6)  # one token every 10 s, six deep
    assert all(buckets.take("a", 0.0) for _ in range(6))
    assert not buckets.take("a", 0.0)
    assert not buckets.take("a", 9.9)
    assert buckets.take("a", 10.0)
    assert buckets.take("b", 10.0)  # keys are independent
    assert sum(buckets.take("a", 1000.0) for _ in range(10)) == 6


def test_full_idle_buckets_are_forgotten_when_keys_pile_up() -> None:
    buckets = TokenBuckets(per_minute=60, max_keys=3)
    for key in "abc":
        buckets.take(key, 0.0)
    buckets.take("d", 100.0)  # a, b, c refilled long ago: dropped
    assert set(buckets._buckets) == {"d"}


def test_address_limit_counts_failures_only() -> None:
    throttle = LoginThrottle(attempts_per_device=100, failures_per_address=2)
    assert all(throttle.allow("10.0.0.1", f"dev{i}", 0.0) for i in range(50))
    throttle.failed("10.0.0.1", 0.0)
    throttle.failed("10.0.0.1", 0.0)
    assert not throttle.allow("10.0.0.1", "dev-new", 0.0)
    assert throttle.allow("10.0.0.2", "dev-new", 0.0)
