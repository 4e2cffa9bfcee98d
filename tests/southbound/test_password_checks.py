"""The bcrypt queue's rules, with real bcrypt in real threads (cost 4)."""

from __future__ import annotations

import asyncio

import bcrypt
import pytest

from edgefleet.southbound.password_checks import Abandoned, Overloaded, PasswordChecks

HASH = bcrypt.hashpw(b"right", bcrypt.gensalt(4))


def yes() -> bool:
    return True


async def test_a_check_says_whether_the_password_matches() -> None:
    checks = PasswordChecks(workers=2, max_wait=1.0, cost=0.01)
    right, wrong = await asyncio.gather(
        checks.check(b"right", HASH, yes), checks.check(b"wrong", HASH, yes)
    )
    assert (right.matches, wrong.matches) == (True, False)


async def test_a_check_that_would_wait_past_the_limit_is_refused_at_once() -> None:
    """One worker, checks that take 10 s by estimate, at most 15 s of wait: the
    first runs, the second would start within 10 s, the third not before 20 s."""
    checks = PasswordChecks(workers=1, max_wait=15.0, cost=10.0)
    first = asyncio.create_task(checks.check(b"right", HASH, yes))
    second = asyncio.create_task(checks.check(b"right", HASH, yes))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await checks.check(b"right", HASH, yes)
    assert checks.overloaded == 1
    assert (await first).matches and (await second).matches
    assert checks.cost < 10.0  # the estimate learnt what checks really cost


async def test_a_check_whose_connection_left_is_dropped_before_bcrypt() -> None:
    checks = PasswordChecks(workers=1, max_wait=60.0, cost=0.01)
    first = asyncio.create_task(checks.check(b"right", HASH, yes))
    gone = asyncio.create_task(checks.check(b"right", HASH, lambda: False))
    last = asyncio.create_task(checks.check(b"right", HASH, yes))
    assert (await first).matches
    with pytest.raises(Abandoned):
        await gone
    assert (await last).matches
    assert checks.abandoned == 1 and checks.queued == 0


@pytest.mark.parametrize(("order", "served"), [("fifo", [1, 2, 3]), ("lifo", [3, 2, 1])])
async def test_the_order_of_waiting_checks(order: str, served: list[int]) -> None:
    checks = PasswordChecks(workers=1, max_wait=60.0, cost=0.01, order=order)
    finished: list[int] = []

    async def one(number: int) -> None:
        await checks.check(b"right", HASH, yes)
        finished.append(number)

    running = asyncio.create_task(one(0))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(one(n)) for n in (1, 2, 3)]
    await asyncio.gather(running, *waiting)
    assert finished == [0, *served]


async def test_a_cancelled_wait_leaves_the_queue_and_passes_no_slot_away() -> None:
    checks = PasswordChecks(workers=1, max_wait=60.0, cost=0.01)
    first = asyncio.create_task(checks.check(b"right", HASH, yes))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(checks.check(b"right", HASH, yes))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert checks.queued == 0
    await first
    assert checks.expected_wait() == 0.0  # the slot came back: the next check starts at once
