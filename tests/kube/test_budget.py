"""One process's share of the installation's status-write budget, and its pace:
plain calls with the time passed in."""

from __future__ import annotations

import math

import pytest

from edgefleet.controller.kube.budget import StatusBudget


def test_the_share_is_the_budget_divided_by_the_participants() -> None:
    budget = StatusBudget(20.0, stale_after=60)
    budget.counted(4, now=100.0)
    assert budget.share(100.0) == 5.0
    budget.counted(1, now=115.0)
    assert budget.share(115.0) == 20.0


def test_a_process_that_cannot_count_never_takes_the_whole_budget() -> None:
    budget = StatusBudget(20.0, stale_after=60)
    assert budget.share(0.0) == 10.0  # never counted yet: half of counting itself alone
    budget.counted(4, now=100.0)
    budget.count_failed()
    assert budget.share(100.0) == 2.5  # half its last share
    budget.counted(4, now=200.0)
    assert budget.share(259.0) == 5.0
    assert budget.share(261.0) == 2.5  # no count for a whole instance timeout


def test_writes_are_spaced_at_the_share_and_follow_it() -> None:
    budget = StatusBudget(20.0)
    budget.counted(2, now=0.0)  # 10 a second
    assert budget.delay(10.0) == 0.0  # nothing written yet
    budget.spent(10.0)
    assert budget.delay(10.0) == pytest.approx(0.1, abs=1e-5)
    assert budget.delay(10.05) == pytest.approx(0.05, abs=1e-5)
    budget.counted(1, now=10.05)  # the other left: 20 a second from now on
    assert budget.delay(10.051) == 0.0
    budget.spent(10.051)
    assert budget.delay(10.061) == pytest.approx(0.04, abs=1e-5)


@pytest.mark.parametrize(("budget", "participants"), [(7.0, 1), (20.0, 3), (100.0, 1)])
def test_in_any_second_no_more_than_the_share_rounded_up(budget: float, participants: int) -> None:
    share = StatusBudget(budget)
    share.counted(participants, now=0.0)
    now, sent = 0.0, []
    while now < 10.0:
        now += share.delay(now)
        share.spent(now)
        sent.append(now)
    busiest = max(sum(1 for t in sent if start <= t < start + 1) for start in sent)
    assert busiest == math.ceil(budget / participants)


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StatusBudget(0.0)
