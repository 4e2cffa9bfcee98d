"""Snowflake ids: unique, increasing, carrying their worker."""

from __future__ import annotations

import pytest

from edgefleet.controller.ids import MAX_ID, SEQUENCE_BITS, SnowflakeGenerator


def test_ids_are_unique_and_increasing_even_in_one_millisecond() -> None:
    generator = SnowflakeGenerator(worker_id=5)
    ids = [generator.next_id() for _ in range(20_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(0 < i <= MAX_ID for i in ids)
    assert {(i >> SEQUENCE_BITS) & 0x3FF for i in ids} == {5}


def test_different_workers_never_collide() -> None:
    a, b = SnowflakeGenerator(1), SnowflakeGenerator(2)
    assert {a.next_id() for _ in range(1000)}.isdisjoint(b.next_id() for _ in range(1000))


def test_worker_id_must_fit_ten_bits() -> None:
    with pytest.raises(ValueError):
        SnowflakeGenerator(1024)
