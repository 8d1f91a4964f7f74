"""The money refund rules of contract section 9, one example per rule and per step of their order,
then the settlement of an instruction and its overdue report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.domain.adjustment_requests import Actor, RefusalCode
from worker.domain.errors import (
    ConflictingSettlement,
    DuplicateInstruction,
    InvalidMoneyRefund,
    UnknownInstruction,
    WrongAccount,
)
from worker.domain.money import Currency, Money
from worker.domain.money_refund_facts import (
    DEFAULT_MONEY_REFUND_TIMEOUT_HOURS,
    AccountType,
    InstructionState,
    MoneyRefundFacts,
    MoneyRefundMethod,
    PaymentFacts,
    SettlementTimeout,
)
from worker.domain.money_refunds import (
    Instructed,
    MoneyRefundDecision,
    MoneyRefundRefused,
    MoneyRefundRequest,
    Payment,
    decide_in_order,
    decide_money_refund,
    record_money_refund,
)
from worker.domain.payment_settlements import (
    AlreadySettled,
    Settled,
    Settlement,
    SettlementStatus,
    due_at,
    overdue,
    record_overdue,
    settle,
)

SGD = Currency.of("SGD")
JPY = Currency.of("JPY")
FINANCE = Actor("finance@res-b3.example", "res-b3", frozenset({"finance:manage"}))
PAYMENT = Payment("pay-55120", Money(12000, SGD))
AT = datetime(2021, 5, 6, 2, 0, tzinfo=UTC)


def facts(balance: int = 8000, **changes: Any) -> MoneyRefundFacts:
    return MoneyRefundFacts("res-b3", "acc-2001", **{"balances": {SGD: balance}, **changes})


def ask(amount: int = 5000, number: int = 1, **changes: Any) -> MoneyRefundRequest:
    values: dict[str, Any] = {
        "request_id": f"req-{number}",
        "instruction_id": f"ins-{number}",
        "reseller_id": "res-b3",
        "account_id": "acc-2001",
        "account_type": AccountType.RETAIL,
        "method": MoneyRefundMethod.CHARGE_BACK,
        "payment": PAYMENT,
        "amount": amount,
        "from_balance": True,
        "actor": FINANCE,
        "reason": "money back instead of credits",
        "requested_at": AT,
        **changes,
    }
    return MoneyRefundRequest(**values)


def refused(decision: MoneyRefundDecision) -> tuple[RefusalCode, str]:
    assert isinstance(decision, MoneyRefundRefused), decision
    return decision.code, decision.detail


def instructed(decision: MoneyRefundDecision) -> Instructed:
    assert isinstance(decision, Instructed), decision
    return decision


def after(*requests: MoneyRefundRequest, start: MoneyRefundFacts | None = None) -> MoneyRefundFacts:
    return decide_in_order(requests, start or facts())[1]


def settlement(status: SettlementStatus, instruction_id: str = "ins-1") -> Settlement:
    return Settlement(instruction_id, "res-b3", "acc-2001", status, None, AT + timedelta(days=1))


# --- 1. forbidden ---------------------------------------------------------------------------------


def test_an_actor_of_another_reseller_is_forbidden_as_for_adjustments() -> None:
    outsider = Actor("root@res-x.example", "res-x", frozenset({"*"}))
    code, detail = refused(decide_money_refund(ask(actor=outsider), facts()))
    assert (code, detail) == (RefusalCode.FORBIDDEN, "root@res-x.example acts for reseller res-x, not res-b3")


def test_an_actor_without_the_finance_permission_is_forbidden_before_every_other_rule() -> None:
    clerk = Actor("clerk", "res-b3", frozenset({"finance:view"}))
    request = ask(0, actor=clerk, account_type=AccountType.CORPORATE)
    assert refused(decide_money_refund(request, facts()))[0] is RefusalCode.FORBIDDEN


# --- 2. invalid_amount ----------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, -5000])
def test_an_amount_not_above_zero_is_an_invalid_amount(amount: int) -> None:
    code, detail = refused(decide_money_refund(ask(amount), facts()))
    assert code is RefusalCode.INVALID_AMOUNT
    assert "must be above zero" in detail


def test_a_payment_stated_with_another_amount_than_first_is_an_invalid_amount() -> None:
    restated = Payment("pay-55120", Money(15000, SGD))
    code, detail = refused(decide_money_refund(ask(100, 2, payment=restated), after(ask(1000))))
    assert (code, detail) == (
        RefusalCode.INVALID_AMOUNT,
        "payment pay-55120 is for 120.00 SGD as first stated, not 150.00 SGD",
    )


def test_invalid_amount_is_decided_before_method_not_allowed() -> None:
    request = ask(0, account_type=AccountType.CORPORATE)
    assert refused(decide_money_refund(request, facts()))[0] is RefusalCode.INVALID_AMOUNT


# --- 3. method_not_allowed ------------------------------------------------------------------------


def test_a_charge_back_is_only_for_a_retail_account() -> None:
    code, detail = refused(decide_money_refund(ask(account_type=AccountType.CORPORATE), facts()))
    assert (code, detail) == (
        RefusalCode.METHOD_NOT_ALLOWED,
        "a corporate account is refunded by cancel_payment, not charge_back",
    )


def test_a_cancelled_payment_is_only_for_a_corporate_account() -> None:
    code, _ = refused(decide_money_refund(ask(method=MoneyRefundMethod.CANCEL_PAYMENT), facts()))
    assert code is RefusalCode.METHOD_NOT_ALLOWED


def test_a_corporate_account_may_cancel_a_payment() -> None:
    request = ask(account_type=AccountType.CORPORATE, method=MoneyRefundMethod.CANCEL_PAYMENT)
    assert instructed(decide_money_refund(request, facts())).method is MoneyRefundMethod.CANCEL_PAYMENT


def test_method_not_allowed_is_decided_before_exceeds_payment() -> None:
    request = ask(99999, account_type=AccountType.CORPORATE)
    assert refused(decide_money_refund(request, facts()))[0] is RefusalCode.METHOD_NOT_ALLOWED


# --- 4. exceeds_payment ---------------------------------------------------------------------------


def test_more_than_the_payment_is_exceeds_payment_naming_what_is_left() -> None:
    code, detail = refused(decide_money_refund(ask(12001, from_balance=False), facts()))
    assert (code, detail) == (
        RefusalCode.EXCEEDS_PAYMENT,
        "120.00 SGD is left to return of payment pay-55120",
    )


def test_earlier_instructions_take_their_share_of_the_payment() -> None:
    decisions, known = decide_in_order(
        [ask(7000, 1, from_balance=False), ask(5001, 2, from_balance=False), ask(5001, 3)], facts()
    )
    assert instructed(decisions[0]).amount == 7000
    assert refused(decisions[1]) == (
        RefusalCode.EXCEEDS_PAYMENT,
        "50.00 SGD is left to return of payment pay-55120",
    )
    assert refused(decisions[2])[0] is RefusalCode.EXCEEDS_PAYMENT
    assert known.payments["pay-55120"] == PaymentFacts(Money(12000, SGD), taken=7000)


def test_a_failed_instruction_frees_its_share_of_the_payment() -> None:
    known = after(ask(12000, 1, from_balance=False))
    _, known = settle(settlement(SettlementStatus.FAILED), known)
    assert instructed(decide_money_refund(ask(12000, 2, from_balance=False), known)).amount == 12000


def test_a_payment_known_in_another_currency_is_currency_mismatch() -> None:
    in_yen = Payment("pay-55120", Money(12000, JPY))
    code, detail = refused(decide_money_refund(ask(100, 2, payment=in_yen), after(ask(100))))
    assert (code, detail) == (
        RefusalCode.CURRENCY_MISMATCH,
        "payment pay-55120 is in SGD, the request in JPY",
    )


# --- 5. insufficient_balance, and accepted --------------------------------------------------------


def test_from_balance_needs_credits_that_cover_the_amount() -> None:
    code, detail = refused(decide_money_refund(ask(8001), facts(8000)))
    assert (code, detail) == (
        RefusalCode.INSUFFICIENT_BALANCE,
        "balance is 80.00 SGD; 80.01 SGD is not covered",
    )


def test_from_balance_debits_the_credits_at_once() -> None:
    decision = instructed(decide_money_refund(ask(5000), facts(8000)))
    assert (decision.debited, decision.balance, decision.instruction_id) == (5000, 3000, "ins-1")
    assert decision.detail == (
        "charge_back of 50.00 SGD from payment pay-55120, taken from the credits: balance is 30.00 SGD"
    )


def test_without_from_balance_the_credits_are_untouched_even_when_there_are_none() -> None:
    decision = instructed(decide_money_refund(ask(5000, from_balance=False), facts(0)))
    assert (decision.debited, decision.balance) == (0, 0)


def test_a_refusal_changes_no_fact() -> None:
    known = facts(100)
    request = ask(5000)
    assert record_money_refund(known, request, decide_money_refund(request, known)) == known


def test_an_accepted_request_becomes_an_open_instruction() -> None:
    instruction = after(ask(5000)).instructions["ins-1"]
    assert (instruction.state, instruction.debited, instruction.request_id) == (
        InstructionState.INSTRUCTED,
        5000,
        "req-1",
    )


def test_a_request_judged_against_another_accounts_facts_or_an_instruction_twice_is_an_error() -> None:
    with pytest.raises(WrongAccount, match="acc-9"):
        decide_money_refund(ask(account_id="acc-9"), facts())
    with pytest.raises(DuplicateInstruction, match="ins-1"):
        decide_money_refund(ask(100), after(ask(100)))


# --- settlement -----------------------------------------------------------------------------------


def test_a_succeeded_settlement_closes_the_instruction_and_keeps_the_payment_taken() -> None:
    outcome, known = settle(settlement(SettlementStatus.SUCCEEDED), after(ask(5000)))
    assert outcome == Settled("ins-1", SettlementStatus.SUCCEEDED, freed=0, credited_back=0, balance=3000)
    assert known.instructions["ins-1"].state is InstructionState.SUCCEEDED
    assert known.payments["pay-55120"].taken == 5000


def test_a_failed_settlement_gives_the_debited_credits_back_and_frees_the_payment() -> None:
    outcome, known = settle(settlement(SettlementStatus.FAILED), after(ask(5000)))
    assert outcome == Settled("ins-1", SettlementStatus.FAILED, freed=5000, credited_back=5000, balance=8000)
    assert known.balance(SGD) == 8000
    assert known.payments["pay-55120"].taken == 0


def test_a_failed_settlement_of_a_refund_not_from_the_balance_gives_no_credits() -> None:
    outcome, known = settle(settlement(SettlementStatus.FAILED), after(ask(5000, from_balance=False)))
    assert isinstance(outcome, Settled)
    assert (outcome.credited_back, known.balance(SGD)) == (0, 8000)


@pytest.mark.parametrize("status", list(SettlementStatus))
def test_the_same_status_again_changes_nothing(status: SettlementStatus) -> None:
    _, settled = settle(settlement(status), after(ask(5000)))
    outcome, again = settle(settlement(status), settled)
    assert outcome == AlreadySettled("ins-1", status)
    assert again == settled


def test_the_other_status_after_settling_is_a_conflict() -> None:
    _, settled = settle(settlement(SettlementStatus.FAILED), after(ask(5000)))
    with pytest.raises(ConflictingSettlement, match="ins-1 already failed, now said to have succeeded"):
        settle(settlement(SettlementStatus.SUCCEEDED), settled)


def test_a_settlement_for_an_unknown_instruction_is_an_error() -> None:
    with pytest.raises(UnknownInstruction, match="no money refund instruction ins-9"):
        settle(settlement(SettlementStatus.SUCCEEDED, "ins-9"), facts())


# --- overdue --------------------------------------------------------------------------------------


def test_the_default_timeout_is_72_hours() -> None:
    assert (
        SettlementTimeout().delta == timedelta(hours=DEFAULT_MONEY_REFUND_TIMEOUT_HOURS) == timedelta(days=3)
    )


@pytest.mark.parametrize("hours", [0, -1.5])
def test_a_timeout_not_above_zero_is_refused(hours: float) -> None:
    with pytest.raises(InvalidMoneyRefund, match="above zero"):
        SettlementTimeout(hours)


def test_an_open_instruction_is_overdue_from_its_timeout_on_with_fractions_of_hours() -> None:
    timeout = SettlementTimeout(0.5)
    known = after(ask(5000))
    assert due_at(known.instructions["ins-1"], timeout) == AT + timedelta(minutes=30)
    assert overdue(known, AT + timedelta(minutes=29, seconds=59), timeout) == []
    assert [report.instruction_id for report in overdue(known, AT + timedelta(minutes=30), timeout)] == [
        "ins-1"
    ]


def test_an_overdue_instruction_is_reported_once_and_stays_open_for_its_settlement() -> None:
    timeout, later = SettlementTimeout(), AT + timedelta(hours=100)
    known = after(ask(5000))
    reported = record_overdue(known, overdue(known, later, timeout))
    assert overdue(reported, later + timedelta(days=30), timeout) == []
    assert reported.instructions["ins-1"].is_open
    outcome, _ = settle(settlement(SettlementStatus.FAILED), reported)
    assert isinstance(outcome, Settled)
    assert outcome.credited_back == 5000


def test_a_settled_instruction_is_never_overdue() -> None:
    _, known = settle(settlement(SettlementStatus.SUCCEEDED), after(ask(5000)))
    assert overdue(known, AT + timedelta(days=30), SettlementTimeout()) == []
