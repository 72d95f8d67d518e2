"""The batch ledger on its own: the reserve/settle contract of ``Budget`` with exact
sums, per attempt (holders), abandoned holds booked as spent, per-project spend, and a
property over random interleavings of every operation."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.batch.ledger import BatchLedger


def test_reserve_settle_exact_and_refusal():
    ledger = BatchLedger(0.5)
    assert ledger.reserve("h1", "p1", "r1", 0.25)
    assert ledger.reserve("h1", "p1", "r2", 0.25)
    assert not ledger.reserve("h2", "p2", "r3", 1e-12)  # the cap is reached
    ledger.settle("r1", 0.25)
    ledger.settle("r2", 0.125)
    assert ledger.spent_usd == 0.375 and ledger.held_usd == 0.0
    assert ledger.reserve("h2", "p2", "r4", 0.125)  # fits exactly
    assert not ledger.reserve("h2", "p2", "r5", 1e-12)
    snap = ledger.snapshot()
    assert snap.reservations == 3 and snap.refused == 2 and snap.projects["p1"] == 0.375
    assert snap.remaining_usd == 0.0


def test_float_sums_are_exact_not_rounded():
    ledger = BatchLedger(0.3)
    assert ledger.reserve("h", "p", "a", 0.1)
    assert not ledger.reserve("h", "p", "b", 0.2)  # float 0.1 + float 0.2 is above float 0.3


def test_a_dead_attempts_holds_are_spent_when_the_next_attempt_begins():
    ledger = BatchLedger(1.0)
    assert ledger.begin("p1", "a1") == 0.0
    assert ledger.reserve("a1", "p1", "r1", 0.4)
    assert ledger.reserve("a1", "p1", "r2", 0.1)
    ledger.settle("r2", 0.05)
    assert ledger.begin("p1", "a2") == math.fsum([0.05, 0.4])  # the worker of a1 died: r1 may have been paid
    assert ledger.held_usd == 0.0 and ledger.spent_usd == math.fsum([0.05, 0.4])
    ledger.settle("r1", 0.01)  # late news from the dead attempt changes nothing
    assert ledger.spent_usd == math.fsum([0.05, 0.4])
    assert ledger.snapshot().abandoned_usd == 0.4


def test_close_books_what_is_still_held():
    ledger = BatchLedger(1.0, {"p0": 0.2})
    assert ledger.reserve("a", "p1", "r", 0.3)
    assert ledger.close() == 0.3
    assert ledger.spent_usd == 0.5 and ledger.held_usd == 0.0
    assert ledger.project_spent("p0") == 0.2 and ledger.project_spent("p1") == 0.3


def test_an_overrun_halts_the_ledger():
    ledger = BatchLedger(1.0)
    assert ledger.reserve("a", "p", "r", 0.1)
    ledger.settle("r", 0.2)
    assert ledger.overrun and "p" in ledger.overrun
    assert not ledger.reserve("a", "p", "r2", 0.0)
    assert ledger.spent_usd == 0.2  # booked as reported


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_bad_amounts_and_caps_are_refused(bad):
    ledger = BatchLedger(1.0)
    assert not ledger.reserve("a", "p", "r", bad)
    with pytest.raises(ValueError):
        BatchLedger(bad)


def test_a_reservation_id_is_used_once():
    ledger = BatchLedger(1.0)
    assert ledger.reserve("a", "p", "r", 0.1)
    assert not ledger.reserve("a", "p", "r", 0.1)
    assert ledger.held_usd == 0.1


op = st.tuples(
    st.sampled_from(("reserve", "settle", "settle", "die", "close_none")),
    st.integers(0, 4),  # project
    st.floats(0.0, 0.2, allow_nan=False),  # amount
    st.floats(0.0, 1.0, allow_nan=False),
)  # share of the reservation really used


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op, max_size=120), cap=st.floats(0.0, 1.0, allow_nan=False), seed=st.integers(0, 2**31))
def test_spent_never_exceeds_the_cap_whoever_dies_when(ops, cap, seed):
    """Honest calls (cost <= reservation), settles, and workers dying with reservations
    in flight: after every step spent + held <= cap exactly, what providers could have
    billed is <= spent, and the per-project sums add up to the total."""
    rng = random.Random(seed)
    ledger = BatchLedger(cap)
    holder = {p: f"p{p}/0" for p in range(5)}
    open_: dict[str, tuple[int, float, str]] = {}
    billed = []  # costs providers really charged (honest: at most the reservation)
    counter = 0
    for kind, project, amount, share in ops:
        pid = f"p{project}"
        if kind == "reserve":
            counter += 1
            rid = f"r{counter}"
            if ledger.reserve(holder[project], pid, rid, amount):
                open_[rid] = (project, amount, holder[project])
        elif kind == "settle" and open_:
            rid = rng.choice(sorted(open_))
            p, reserved, _ = open_.pop(rid)
            cost = reserved * share
            billed.append(cost)
            ledger.settle(rid, cost)
        elif kind == "die":  # its calls in flight may have been billed in full; their settles never come
            for rid, (p, reserved, h) in list(open_.items()):
                if p == project and h == holder[project]:
                    billed.append(reserved * share)
                    del open_[rid]
            holder[project] = f"p{project}/{counter}"
            ledger.begin(pid, holder[project])
        assert (
            math.fsum([ledger.spent_usd, ledger.held_usd]) <= cap
            or math.fsum([*ledger._spent.partials, *ledger._held.partials]) <= cap
        )  # noqa: SLF001
        assert ledger.overrun is None
    ledger.close()
    for _rid, (_p, reserved, _h) in open_.items():  # still in flight at the end: billed at worst
        billed.append(reserved)
    assert ledger.held_usd == 0.0
    assert ledger.spent_usd <= cap
    assert math.fsum(billed) <= ledger.spent_usd + 1e-12
    snap = ledger.snapshot()
    assert math.isclose(math.fsum(snap.projects.values()), snap.spent_usd, rel_tol=1e-12, abs_tol=1e-15)
