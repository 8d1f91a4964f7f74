"""The adjustment rules of contract section 8, one example per rule and per step of their order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from worker.domain.account_facts import EntryFacts, EntryKind, TransactionFacts
from worker.domain.adjustments import (
    AccountFacts,
    Actor,
    AdjustmentKind,
    AdjustmentRequest,
    Applied,
    Decision,
    RefusalCode,
    Refused,
    Transaction,
    decide_adjustment,
    decide_in_order,
    record,
)
from worker.domain.errors import DuplicateAdjustment, InvalidAdjustment, InvalidAmount, WrongAccount
from worker.domain.money import Currency, Money
from worker.domain.policy import RefundMethod

SGD = Currency.of("SGD")
JPY = Currency.of("JPY")
KWD = Currency.of("KWD")
FINANCE = Actor("finance@res-b3.example", "res-b3", frozenset({"finance:manage"}))
TXN = Transaction("txn-88412", Money(4500, SGD), "SIP minutes, April")


def facts(balance: int = 1250, **changes: Any) -> AccountFacts:
    return AccountFacts("res-b3", "acc-1002", **{"balances": {SGD: balance}, **changes})


def ask(kind: AdjustmentKind, amount: int | None = None, **changes: Any) -> AdjustmentRequest:
    values: dict[str, Any] = {
        "adjustment_id": "adj-1",
        "reseller_id": "res-b3",
        "account_id": "acc-1002",
        "kind": kind,
        "currency": SGD,
        "amount": amount,
        "actor": FINANCE,
        "reason": "goodwill",
        "requested_at": datetime(2021, 5, 3, 6, 20, tzinfo=UTC),
        **changes,
    }
    return AdjustmentRequest(**values)


def credit(amount: int, **changes: Any) -> AdjustmentRequest:
    return ask(AdjustmentKind.CREDIT, amount, **changes)


def correction(amount: int, **changes: Any) -> AdjustmentRequest:
    return ask(AdjustmentKind.CORRECTION, amount, **changes)


def refund(amount: int, transaction: Transaction = TXN, **changes: Any) -> AdjustmentRequest:
    return ask(AdjustmentKind.TRANSACTION_REFUND, amount, transaction=transaction, **changes)


def reversal(target: str, **changes: Any) -> AdjustmentRequest:
    return ask(AdjustmentKind.REVERSAL, reverses=target, **changes)


def refused(decision: Decision) -> tuple[RefusalCode, str]:
    assert isinstance(decision, Refused), decision
    return decision.code, decision.detail


def applied(decision: Decision) -> Applied:
    assert isinstance(decision, Applied), decision
    return decision


ENTRY = EntryFacts(EntryKind.CREDIT, SGD, 2000)
TERMINATION_REFUND = EntryFacts(EntryKind.TERMINATION_REFUND, SGD, 11000, method=RefundMethod.ACCOUNT_CREDIT)


# --- 1. forbidden ---------------------------------------------------------------------------------


def test_an_actor_of_another_reseller_is_forbidden_even_with_every_permission() -> None:
    outsider = Actor("root@res-x.example", "res-x", frozenset({"*"}))
    code, detail = refused(decide_adjustment(credit(500, actor=outsider), facts()))
    assert code is RefusalCode.FORBIDDEN
    assert detail == "root@res-x.example acts for reseller res-x, not res-b3"


@pytest.mark.parametrize("permissions", [set(), {"finance:view"}, {"finance:create"}, {"Finance:Manage"}])
def test_an_actor_without_the_finance_permission_is_forbidden(permissions: set[str]) -> None:
    clerk = Actor("clerk@res-b3.example", "res-b3", frozenset(permissions))
    code, detail = refused(decide_adjustment(credit(500, actor=clerk), facts()))
    assert code is RefusalCode.FORBIDDEN
    assert "holds neither finance:manage nor *" in detail


def test_root_with_every_permission_may_adjust() -> None:
    root = Actor("root", "res-b3", frozenset({"*"}))
    assert applied(decide_adjustment(credit(500, actor=root), facts())).delta == 500


def test_forbidden_is_decided_before_every_other_rule() -> None:
    clerk = Actor("clerk", "res-b3", frozenset())
    for request in (credit(0, actor=clerk), correction(-99999, actor=clerk), reversal("nope", actor=clerk)):
        assert refused(decide_adjustment(request, facts()))[0] is RefusalCode.FORBIDDEN


# --- 2. invalid_amount ----------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, -500])
def test_a_credit_or_transaction_refund_not_above_zero_is_an_invalid_amount(amount: int) -> None:
    for request in (credit(amount), refund(amount)):
        code, detail = refused(decide_adjustment(request, facts()))
        assert code is RefusalCode.INVALID_AMOUNT
        assert "must be above zero" in detail


def test_a_correction_of_zero_is_an_invalid_amount() -> None:
    code, detail = refused(decide_adjustment(correction(0), facts()))
    assert (code, detail) == (RefusalCode.INVALID_AMOUNT, "a correction of 0.00 SGD changes nothing")


def test_a_transaction_stated_with_another_full_amount_than_first_is_an_invalid_amount() -> None:
    known = facts(transactions={"txn-88412": TransactionFacts(Money(4500, SGD), refunded=2000)})
    restated = Transaction("txn-88412", Money(5000, SGD))
    code, detail = refused(decide_adjustment(refund(100, restated), known))
    assert code is RefusalCode.INVALID_AMOUNT
    assert detail == "transaction txn-88412 is for 45.00 SGD as first stated, not 50.00 SGD"


def test_invalid_amount_is_decided_before_exceeds_refundable() -> None:
    exhausted = facts(transactions={"txn-88412": TransactionFacts(Money(4500, SGD), refunded=4500)})
    assert refused(decide_adjustment(refund(0), exhausted))[0] is RefusalCode.INVALID_AMOUNT


# --- 3. credit ------------------------------------------------------------------------------------


def test_a_credit_raises_the_balance_by_its_amount() -> None:
    decision = applied(decide_adjustment(credit(2000), facts(1250)))
    assert (decision.delta, decision.balance) == (2000, 3250)
    assert decision.detail == "credited 20.00 SGD: balance is 32.50 SGD"


def test_a_credit_in_a_currency_the_account_has_no_credits_in_starts_from_zero() -> None:
    decision = applied(decide_adjustment(credit(1200, currency=JPY), facts(1250)))
    assert decision.balance == 1200
    assert decision.detail == "credited 1200 JPY: balance is 1200 JPY"


# --- 4. correction --------------------------------------------------------------------------------


def test_a_correction_up_raises_the_balance() -> None:
    assert applied(decide_adjustment(correction(750), facts(1250))).balance == 2000


def test_a_correction_down_may_take_the_balance_to_zero_exactly() -> None:
    decision = applied(decide_adjustment(correction(-1250), facts(1250)))
    assert (decision.delta, decision.balance) == (-1250, 0)
    assert decision.detail == "corrected by -12.50 SGD: balance is 0.00 SGD"


def test_a_correction_below_zero_is_insufficient_balance_naming_the_balance() -> None:
    code, detail = refused(decide_adjustment(correction(-1251), facts(1250)))
    assert code is RefusalCode.INSUFFICIENT_BALANCE
    assert detail.startswith("balance is 12.50 SGD;")


def test_details_use_the_currencys_own_digits() -> None:
    code, detail = refused(decide_adjustment(correction(-2000, currency=KWD), facts(balances={KWD: 1500})))
    assert code is RefusalCode.INSUFFICIENT_BALANCE
    assert detail == "balance is 1.500 KWD; a correction of -2.000 KWD would take it below zero"


# --- 5. transaction_refund ------------------------------------------------------------------------


def test_a_transaction_refund_raises_the_balance_and_names_its_transaction() -> None:
    decision = applied(decide_adjustment(refund(2000), facts(12550)))
    assert (decision.delta, decision.balance, decision.transaction_id) == (2000, 14550, "txn-88412")
    assert decision.detail == (
        "refunded 20.00 SGD of transaction txn-88412 (25.00 SGD left): balance is 145.50 SGD"
    )


def test_a_partial_refund_leaves_the_rest_of_the_transaction_refundable() -> None:
    requests = [
        refund(2000, adjustment_id="a"),
        refund(2500, adjustment_id="b"),
        refund(1, adjustment_id="c"),
    ]
    decisions, after = decide_in_order(requests, facts(0))
    assert [applied(d).balance for d in decisions[:2]] == [2000, 4500]
    assert refused(decisions[2]) == (
        RefusalCode.EXCEEDS_REFUNDABLE,
        "0.00 SGD is left to refund of transaction txn-88412",
    )
    assert after.transactions["txn-88412"] == TransactionFacts(Money(4500, SGD), refunded=4500)


def test_a_refund_above_what_is_left_is_exceeds_refundable_naming_what_is_left() -> None:
    known = facts(transactions={"txn-88412": TransactionFacts(Money(4500, SGD), refunded=2000)})
    code, detail = refused(decide_adjustment(refund(3000), known))
    assert (code, detail) == (
        RefusalCode.EXCEEDS_REFUNDABLE,
        "25.00 SGD is left to refund of transaction txn-88412",
    )


def test_a_refund_of_a_transaction_in_another_currency_is_currency_mismatch() -> None:
    known = facts(transactions={"txn-88412": TransactionFacts(Money(4500, SGD))})
    in_yen = Transaction("txn-88412", Money(4500, JPY))
    code, detail = refused(decide_adjustment(refund(100, in_yen, currency=JPY), known))
    assert (code, detail) == (
        RefusalCode.CURRENCY_MISMATCH,
        "transaction txn-88412 is in SGD, the request in JPY",
    )


def test_a_refused_first_refund_does_not_fix_the_transactions_full_amount() -> None:
    too_much = refund(9000, adjustment_id="a")
    restated = refund(100, Transaction("txn-88412", Money(6000, SGD)), adjustment_id="b")
    decisions, after = decide_in_order([too_much, restated], facts(0))
    assert refused(decisions[0])[0] is RefusalCode.EXCEEDS_REFUNDABLE
    assert applied(decisions[1]).delta == 100
    assert after.transactions["txn-88412"].amount == Money(6000, SGD)


# --- 6. reversal ----------------------------------------------------------------------------------


def test_reversing_an_entry_the_account_does_not_have_is_unknown_target() -> None:
    code, detail = refused(decide_adjustment(reversal("adj-0"), facts()))
    assert (code, detail) == (
        RefusalCode.UNKNOWN_TARGET,
        "account acc-1002 has no adjustment or refund adj-0",
    )


def test_reversing_an_entry_in_another_currency_is_currency_mismatch_before_anything_else() -> None:
    note = EntryFacts(EntryKind.TERMINATION_REFUND, JPY, 0, reversed=True, method=RefundMethod.CREDIT_NOTE)
    code, detail = refused(decide_adjustment(reversal("rf-1"), facts(entries={"rf-1": note})))
    assert (code, detail) == (RefusalCode.CURRENCY_MISMATCH, "rf-1 is in JPY, the request in SGD")


def test_a_reversal_cannot_be_reversed_and_that_is_said_before_already_reversed() -> None:
    earlier = EntryFacts(EntryKind.REVERSAL, SGD, -2000, reversed=True)
    code, detail = refused(decide_adjustment(reversal("adj-0"), facts(entries={"adj-0": earlier})))
    assert (code, detail) == (RefusalCode.NOT_REVERSIBLE, "adj-0 is itself a reversal")


def test_a_refund_paid_as_a_credit_note_is_not_reversible() -> None:
    note = EntryFacts(EntryKind.TERMINATION_REFUND, SGD, 0, method=RefundMethod.CREDIT_NOTE)
    code, detail = refused(decide_adjustment(reversal("rf-1"), facts(entries={"rf-1": note})))
    assert code is RefusalCode.NOT_REVERSIBLE
    assert detail == "refund rf-1 was paid as a credit note: it moved no credits to take back"


def test_an_entry_is_reversed_once() -> None:
    decisions, after = decide_in_order(
        [reversal("adj-0", adjustment_id="r1"), reversal("adj-0", adjustment_id="r2")],
        facts(5000, entries={"adj-0": ENTRY}),
    )
    assert applied(decisions[0]).delta == -2000
    assert refused(decisions[1]) == (RefusalCode.ALREADY_REVERSED, "adj-0 is already reversed")
    assert after.entries["adj-0"].reversed


def test_already_reversed_is_decided_before_insufficient_balance() -> None:
    spent = facts(0, entries={"adj-0": EntryFacts(EntryKind.CREDIT, SGD, 2000, reversed=True)})
    assert refused(decide_adjustment(reversal("adj-0"), spent))[0] is RefusalCode.ALREADY_REVERSED


def test_reversing_a_credit_already_spent_is_insufficient_balance() -> None:
    code, detail = refused(decide_adjustment(reversal("adj-0"), facts(1500, entries={"adj-0": ENTRY})))
    assert code is RefusalCode.INSUFFICIENT_BALANCE
    assert detail == "balance is 15.00 SGD; reversing adj-0 (-20.00 SGD) would take it below zero"


def test_reversing_a_correction_down_gives_the_credits_back() -> None:
    down = EntryFacts(EntryKind.CORRECTION, SGD, -500)
    decision = applied(decide_adjustment(reversal("adj-0"), facts(0, entries={"adj-0": down})))
    assert (decision.delta, decision.balance, decision.reverses) == (500, 500, "adj-0")


def test_a_reversal_ignores_its_amount() -> None:
    request = reversal("adj-0", amount=-999999)
    assert applied(decide_adjustment(request, facts(5000, entries={"adj-0": ENTRY}))).delta == -2000


def test_reversing_a_transaction_refund_frees_its_amount_and_names_the_transaction() -> None:
    decisions, after = decide_in_order(
        [
            refund(4500, adjustment_id="a"),
            reversal("a", adjustment_id="b"),
            refund(4500, adjustment_id="c"),
        ],
        facts(0),
    )
    undone = applied(decisions[1])
    assert (undone.delta, undone.balance, undone.transaction_id, undone.reverses) == (
        -4500,
        0,
        "txn-88412",
        "a",
    )
    assert undone.refund_id is None
    assert applied(decisions[2]).balance == 4500
    assert after.transactions["txn-88412"].refunded == 4500


def test_reversing_a_termination_refund_takes_the_credits_back_and_names_the_refund() -> None:
    known = facts(12550, entries={"rf-1": TERMINATION_REFUND})
    decision = applied(decide_adjustment(reversal("rf-1"), known))
    assert (decision.delta, decision.balance, decision.refund_id) == (-11000, 1550, "rf-1")
    assert decision.detail == "reversed rf-1 (-110.00 SGD): balance is 15.50 SGD"


# --- in order, and what is malformed --------------------------------------------------------------


def test_each_request_sees_what_the_earlier_ones_applied() -> None:
    requests = [
        credit(2000, adjustment_id="a"),
        correction(-3000, adjustment_id="b"),
        reversal("a", adjustment_id="c"),
        correction(-1000, adjustment_id="d"),
    ]
    decisions, after = decide_in_order(requests, facts(1250))
    assert applied(decisions[0]).balance == 3250
    assert applied(decisions[1]).balance == 250
    assert refused(decisions[2])[0] is RefusalCode.INSUFFICIENT_BALANCE
    assert refused(decisions[3])[0] is RefusalCode.INSUFFICIENT_BALANCE
    assert after.balance(SGD) == 250
    assert set(after.entries) == {"a", "b"}


def test_a_refusal_changes_no_fact() -> None:
    known = facts(100)
    request = correction(-200)
    assert record(known, request, decide_adjustment(request, known)) == known


def test_a_request_judged_against_another_accounts_facts_is_an_error() -> None:
    with pytest.raises(WrongAccount, match="acc-9"):
        decide_adjustment(credit(100, account_id="acc-9"), facts())
    with pytest.raises(WrongAccount, match="res-x"):
        decide_adjustment(credit(100, reseller_id="res-x"), facts())


def test_an_adjustment_id_already_on_the_account_is_an_error() -> None:
    with pytest.raises(DuplicateAdjustment, match="adj-1"):
        decide_adjustment(credit(100), facts(entries={"adj-1": ENTRY}))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ask(AdjustmentKind.CREDIT), "a credit needs an amount"),
        (lambda: ask(AdjustmentKind.TRANSACTION_REFUND, 100), "names the transaction it refunds"),
        (lambda: ask(AdjustmentKind.REVERSAL), "names the adjustment or refund it reverses"),
        (lambda: refund(100, Transaction("t", Money(100, JPY))), "is in JPY, the request in SGD"),
    ],
)
def test_a_request_without_what_its_kind_needs_is_malformed(build: Any, message: str) -> None:
    with pytest.raises(InvalidAdjustment, match=message):
        build()


def test_an_amount_beyond_the_ledgers_digits_is_malformed() -> None:
    with pytest.raises(InvalidAmount, match="18 digits"):
        credit(-(10**18))


def test_a_transaction_cannot_have_more_refunded_than_its_amount() -> None:
    with pytest.raises(InvalidAmount, match=r"cannot have 45\.01 SGD refunded"):
        TransactionFacts(Money(4500, SGD), refunded=4501)
