"""Properties of the adjustment rules over any sequence of one account's requests (contract section 8).

Every sequence mixes credits, corrections up and down, transaction refunds of a few transactions (some
restated with another full amount or in another currency), reversals of earlier adjustments, of
termination refunds and of unknown ids, and actors without the permission. The ledger they build is
checked against sums computed here, from the decisions alone.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain.account_facts import EntryFacts, EntryKind
from worker.domain.adjustments import (
    AccountFacts,
    Actor,
    AdjustmentKind,
    AdjustmentRequest,
    Applied,
    Decision,
    Transaction,
    decide_in_order,
)
from worker.domain.money import Currency, Money
from worker.domain.policy import RefundMethod

SGD = Currency.of("SGD")
JPY = Currency.of("JPY")
FINANCE = Actor("finance", "res-1", frozenset({"finance:manage"}))
CLERK = Actor("clerk", "res-1", frozenset({"finance:view"}))
TRANSACTIONS = {"txn-1": 30, "txn-2": 45, "txn-3": 3000}
"""Full amounts in minor units: small ones, so that sequences often reach a transaction's limit."""
TERMINATION_REFUNDS = ["rf-credits", "rf-note"]
AT = datetime(2021, 5, 3, tzinfo=UTC)

amounts = st.one_of(st.integers(min_value=-60, max_value=60), st.integers(min_value=-5000, max_value=5000))


@dataclass(frozen=True)
class Story:
    facts: AccountFacts
    requests: list[AdjustmentRequest]

    def decide(self) -> tuple[list[Decision], AccountFacts]:
        return decide_in_order(self.requests, self.facts)


@st.composite
def starting_facts(draw: st.DrawFn) -> AccountFacts:
    refunded = draw(st.integers(min_value=0, max_value=20000))
    entries = {
        "rf-credits": EntryFacts(
            EntryKind.TERMINATION_REFUND, SGD, refunded, method=RefundMethod.ACCOUNT_CREDIT
        ),
        "rf-note": EntryFacts(EntryKind.TERMINATION_REFUND, SGD, 0, method=RefundMethod.CREDIT_NOTE),
    }
    # Credits may have been spent since the termination's refund, so reversing it may not fit.
    balances = {SGD: draw(st.integers(min_value=0, max_value=refunded + 10000))}
    return AccountFacts("res-1", "acc-1", balances=balances, entries=entries)


@st.composite
def requests(draw: st.DrawFn, number: int, earlier: list[str]) -> AdjustmentRequest:
    kind = draw(st.sampled_from(AdjustmentKind))
    currency = draw(st.sampled_from([SGD, SGD, SGD, JPY]))
    transaction = None
    reverses = None
    if kind is AdjustmentKind.TRANSACTION_REFUND:
        txn = draw(st.sampled_from(sorted(TRANSACTIONS)))
        restated = draw(st.sampled_from([0, 0, 0, 1]))  # now and then with another full amount
        transaction = Transaction(txn, Money(TRANSACTIONS[txn] + restated, currency))
    if kind is AdjustmentKind.REVERSAL:
        reverses = draw(st.sampled_from([*earlier, *TERMINATION_REFUNDS, "unknown"]))
    return AdjustmentRequest(
        adjustment_id=f"adj-{number}",
        reseller_id="res-1",
        account_id="acc-1",
        kind=kind,
        currency=currency,
        amount=None if kind is AdjustmentKind.REVERSAL else draw(amounts),
        actor=draw(st.sampled_from([FINANCE, FINANCE, FINANCE, CLERK])),
        reason="why",
        requested_at=AT,
        transaction=transaction,
        reverses=reverses,
    )


@st.composite
def stories(draw: st.DrawFn) -> Story:
    made: list[AdjustmentRequest] = []
    for number in range(draw(st.integers(min_value=1, max_value=25))):
        made.append(draw(requests(number, [request.adjustment_id for request in made])))
    return Story(draw(starting_facts()), made)


def applied_pairs(story: Story, decisions: list[Decision]) -> list[tuple[AdjustmentRequest, Applied]]:
    return [(r, d) for r, d in zip(story.requests, decisions, strict=True) if isinstance(d, Applied)]


@settings(max_examples=400, deadline=None)
@given(story=stories())
def test_no_sequence_of_adjustments_makes_a_balance_negative(story: Story) -> None:
    decisions, after = story.decide()
    assert all(decision.balance >= 0 for _, decision in applied_pairs(story, decisions))
    assert all(balance >= 0 for balance in after.balances.values())


@settings(max_examples=400, deadline=None)
@given(story=stories())
def test_each_balance_is_the_start_plus_the_applied_deltas_in_order(story: Story) -> None:
    decisions, after = story.decide()
    running = defaultdict(int, story.facts.balances)
    for request, decision in applied_pairs(story, decisions):
        running[request.currency] += decision.delta
        assert decision.balance == running[request.currency]
        assert decision.currency == request.currency
    assert set(after.balances) <= set(running)
    assert {currency: after.balance(currency) for currency in running} == running


@settings(max_examples=400, deadline=None)
@given(story=stories())
def test_a_transaction_is_never_refunded_past_its_amount(story: Story) -> None:
    decisions, after = story.decide()
    pairs = applied_pairs(story, decisions)
    reversed_ids = {request.reverses for request, _ in pairs if request.kind is AdjustmentKind.REVERSAL}
    full: dict[str, int] = {}
    unreversed: Counter[str] = Counter()
    for request, decision in pairs:
        if request.kind is AdjustmentKind.TRANSACTION_REFUND:
            assert request.transaction is not None
            txn = request.transaction.transaction_id
            full.setdefault(txn, request.transaction.amount.minor)  # the first applied one states it
            assert request.transaction.amount.minor == full[txn], "a restated full amount was applied"
            assert decision.delta > 0
            if request.adjustment_id not in reversed_ids:
                unreversed[txn] += decision.delta
    for txn, amount in full.items():
        assert unreversed[txn] <= amount
        assert after.transactions[txn].refunded == unreversed[txn]


@settings(max_examples=400, deadline=None)
@given(story=stories())
def test_an_entry_is_reversed_at_most_once_and_never_a_reversal_or_a_credit_note(story: Story) -> None:
    decisions, after = story.decide()
    pairs = applied_pairs(story, decisions)
    kinds = {request.adjustment_id: request.kind for request, _ in pairs}
    reversed_ids = Counter(request.target for request, _ in pairs if request.kind is AdjustmentKind.REVERSAL)
    assert all(count == 1 for count in reversed_ids.values())
    assert "rf-note" not in reversed_ids
    assert "unknown" not in reversed_ids
    assert all(kinds.get(target) is not AdjustmentKind.REVERSAL for target in reversed_ids)
    assert {entry_id for entry_id, entry in after.entries.items() if entry.reversed} == set(reversed_ids)


@settings(max_examples=200, deadline=None)
@given(story=stories())
def test_a_reversal_moves_the_balance_by_the_opposite_of_its_targets_change(story: Story) -> None:
    decisions, _ = story.decide()
    pairs = applied_pairs(story, decisions)
    deltas = {request.adjustment_id: decision.delta for request, decision in pairs}
    deltas.update({entry_id: entry.delta for entry_id, entry in story.facts.entries.items()})
    for request, decision in pairs:
        if request.kind is AdjustmentKind.REVERSAL:
            assert request.reverses is not None
            assert decision.delta == -deltas[request.reverses]
            assert decision.reverses == request.reverses


@settings(max_examples=200, deadline=None)
@given(story=stories())
def test_only_an_actor_with_the_finance_permission_changes_anything(story: Story) -> None:
    decisions, _ = story.decide()
    assert all(request.actor is FINANCE for request, _ in applied_pairs(story, decisions))
