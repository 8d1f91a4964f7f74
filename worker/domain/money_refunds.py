"""Money back to the customer through the payment service (contract section 9), decided in order.

1. forbidden             the actor acts for another reseller, or holds neither finance:manage nor *
2. invalid_amount        the amount not above zero, or the payment stated with another amount than
                         it first was
3. method_not_allowed    a charge back only for a retail account, a cancelled payment only for a
                         corporate one
4. exceeds_payment       above the payment's amount minus what its earlier instructions that did
                         not fail took (a payment known in another currency: currency_mismatch)
5. insufficient_balance  `from_balance` and the credits do not cover it; else they are debited at once

The first rule that refuses decides (`adjustment-rejected`, kind `money_refund`), and then nothing
changes. Accepted, the request becomes an instruction to the payment service; its settlement is
worker/domain/payment_settlements.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from worker.domain.account_facts import figure
from worker.domain.adjustment_requests import Actor, RefusalCode, forbidden_detail
from worker.domain.errors import DuplicateInstruction, InvalidMoneyRefund, WrongAccount
from worker.domain.money import MAX_MINOR_DIGITS, Currency, Money
from worker.domain.money_refund_facts import (
    ALLOWED_METHOD,
    AccountType,
    InstructionFacts,
    MoneyRefundFacts,
    MoneyRefundMethod,
    PaymentFacts,
)


@dataclass(frozen=True, slots=True)
class Payment:
    """The payment money goes back from, with its full amount; its currency is the request's."""

    payment_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class MoneyRefundRequest:
    request_id: str
    """The request's ce_id."""
    instruction_id: str
    """The id the worker gives the instruction (derived from request_id by the caller)."""
    reseller_id: str
    account_id: str
    account_type: AccountType
    method: MoneyRefundMethod
    payment: Payment
    amount: int
    """Minor units of the payment's currency; any sign (rule 2 answers one not above zero)."""
    from_balance: bool
    actor: Actor
    reason: str
    requested_at: datetime

    @property
    def currency(self) -> Currency:
        return self.payment.amount.currency


@dataclass(frozen=True, slots=True)
class Instructed:
    """Accepted: the payment service is told to return `amount`; credits are debited by `debited`."""

    instruction_id: str
    request_id: str
    payment_id: str
    method: MoneyRefundMethod
    currency: Currency
    amount: int
    debited: int
    """The amount with `from_balance`, else zero: what credits-updated (cause money_refund) takes."""
    balance: int
    """The credits in the currency after the debit (unchanged without `from_balance`)."""
    detail: str


@dataclass(frozen=True, slots=True)
class MoneyRefundRefused:
    """A well-formed request the rules refuse: `adjustment-rejected` with kind money_refund."""

    request_id: str
    code: RefusalCode
    detail: str


MoneyRefundDecision = Instructed | MoneyRefundRefused


def decide_money_refund(request: MoneyRefundRequest, facts: MoneyRefundFacts) -> MoneyRefundDecision:
    """Instruct or refuse one request against what its account knows; the first refusing rule decides."""
    _check_belongs(request, facts)
    detail = forbidden_detail(request.actor, request.reseller_id)
    if detail is not None:
        return _refused(request, RefusalCode.FORBIDDEN, detail)
    refused = (
        _invalid_amount(request, facts) or _method_not_allowed(request) or _beyond_payment(request, facts)
    )
    if refused is not None:
        return refused
    currency, amount = request.currency, request.amount
    balance = facts.balance(currency)
    if request.from_balance and balance < amount:
        detail = f"balance is {figure(balance, currency)}; {figure(amount, currency)} is not covered"
        return _refused(request, RefusalCode.INSUFFICIENT_BALANCE, detail)
    debited = amount if request.from_balance else 0
    what = f"{request.method} of {figure(amount, currency)} from payment {request.payment.payment_id}"
    if request.from_balance:
        what += f", taken from the credits: balance is {figure(balance - debited, currency)}"
    return Instructed(
        instruction_id=request.instruction_id,
        request_id=request.request_id,
        payment_id=request.payment.payment_id,
        method=request.method,
        currency=currency,
        amount=amount,
        debited=debited,
        balance=balance - debited,
        detail=what,
    )


def record_money_refund(
    facts: MoneyRefundFacts, request: MoneyRefundRequest, decision: MoneyRefundDecision
) -> MoneyRefundFacts:
    """The account's facts once `decision` is applied; a refusal changes nothing."""
    if isinstance(decision, MoneyRefundRefused):
        return facts
    stated = request.payment
    known = facts.payments.get(stated.payment_id, PaymentFacts(stated.amount))
    payments = {**facts.payments, stated.payment_id: replace(known, taken=known.taken + decision.amount)}
    instruction = InstructionFacts(
        request_id=request.request_id,
        payment_id=stated.payment_id,
        method=request.method,
        amount=Money(decision.amount, decision.currency),
        debited=decision.debited,
        instructed_at=request.requested_at,
    )
    instructions = {**facts.instructions, decision.instruction_id: instruction}
    balances = {**facts.balances, decision.currency: decision.balance}
    return replace(facts, balances=balances, payments=payments, instructions=instructions)


def decide_in_order(
    requests: Iterable[MoneyRefundRequest], facts: MoneyRefundFacts
) -> tuple[list[MoneyRefundDecision], MoneyRefundFacts]:
    """Decide one account's requests in order, each seeing what the ones before it instructed."""
    decisions: list[MoneyRefundDecision] = []
    for request in requests:
        decision = decide_money_refund(request, facts)
        facts = record_money_refund(facts, request, decision)
        decisions.append(decision)
    return decisions, facts


def _check_belongs(request: MoneyRefundRequest, facts: MoneyRefundFacts) -> None:
    if (request.reseller_id, request.account_id) != (facts.reseller_id, facts.account_id):
        raise WrongAccount(
            f"money refund {request.request_id} is for account {request.account_id} of reseller "
            f"{request.reseller_id}, the facts for account {facts.account_id} of {facts.reseller_id}"
        )
    if request.instruction_id in facts.instructions:
        raise DuplicateInstruction(f"instruction {request.instruction_id} is already on the account")
    if abs(request.amount) >= 10**MAX_MINOR_DIGITS:
        raise InvalidMoneyRefund(f"the amount has more than {MAX_MINOR_DIGITS} digits of minor units")


def _refused(request: MoneyRefundRequest, code: RefusalCode, detail: str) -> MoneyRefundRefused:
    return MoneyRefundRefused(request.request_id, code, detail)


def _invalid_amount(request: MoneyRefundRequest, facts: MoneyRefundFacts) -> MoneyRefundRefused | None:
    currency, stated = request.currency, request.payment
    if request.amount <= 0:
        detail = f"a money refund must be above zero, got {figure(request.amount, currency)}"
        return _refused(request, RefusalCode.INVALID_AMOUNT, detail)
    known = facts.payments.get(stated.payment_id)
    # In another currency the amounts cannot be compared: that is currency_mismatch, with rule 4.
    if known is not None and known.currency == currency and known.amount != stated.amount:
        detail = (
            f"payment {stated.payment_id} is for {figure(known.amount.minor, currency)} as first stated, "
            f"not {figure(stated.amount.minor, currency)}"
        )
        return _refused(request, RefusalCode.INVALID_AMOUNT, detail)
    return None


def _method_not_allowed(request: MoneyRefundRequest) -> MoneyRefundRefused | None:
    allowed = ALLOWED_METHOD[request.account_type]
    if request.method is allowed:
        return None
    detail = f"a {request.account_type} account is refunded by {allowed}, not {request.method}"
    return _refused(request, RefusalCode.METHOD_NOT_ALLOWED, detail)


def _beyond_payment(request: MoneyRefundRequest, facts: MoneyRefundFacts) -> MoneyRefundRefused | None:
    currency, stated = request.currency, request.payment
    known = facts.payments.get(stated.payment_id)
    if known is not None and known.currency != currency:
        detail = f"payment {stated.payment_id} is in {known.currency}, the request in {currency}"
        return _refused(request, RefusalCode.CURRENCY_MISMATCH, detail)
    left = (known or PaymentFacts(stated.amount)).left
    if request.amount > left:
        detail = f"{figure(left, currency)} is left to return of payment {stated.payment_id}"
        return _refused(request, RefusalCode.EXCEEDS_PAYMENT, detail)
    return None
