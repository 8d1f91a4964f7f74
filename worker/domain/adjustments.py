"""Operator adjustments of an account's credits (contract section 8), decided in the contract's order.

1. forbidden           the actor acts for another reseller, or holds neither finance:manage nor *
2. invalid_amount      a credit or transaction refund not above zero, a correction of zero, or a
                       transaction stated with another full amount than it first was
3. credit              the balance goes up by the amount
4. correction          either sign; one that takes the balance below zero is insufficient_balance
5. transaction_refund  in the transaction's currency (currency_mismatch), at most what is left of it
                       (exceeds_refundable); the balance goes up and the entry names the transaction
6. reversal            an entry of this account (unknown_target) in the request's currency
                       (currency_mismatch), neither a reversal nor a refund paid as a credit note
                       (not_reversible), not reversed before (already_reversed), and the opposite of
                       its change must not take the balance below zero (insufficient_balance)

The first rule that refuses decides, and then nothing changes. Nothing is deleted or edited: a wrong
entry is answered by its reversal, which frees a transaction refund's amount again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from worker.domain.account_facts import (
    AccountFacts,
    AdjustmentKind,
    EntryFacts,
    EntryKind,
    TransactionFacts,
    figure,
)
from worker.domain.adjustment_requests import (
    Actor,
    AdjustmentRequest,
    Applied,
    Decision,
    RefusalCode,
    Refused,
    Transaction,
    forbidden_detail,
)
from worker.domain.errors import DuplicateAdjustment, InvalidAmount, WrongAccount
from worker.domain.money import MAX_MINOR_DIGITS

__all__ = [
    "AccountFacts",
    "Actor",
    "AdjustmentKind",
    "AdjustmentRequest",
    "Applied",
    "Decision",
    "RefusalCode",
    "Refused",
    "Transaction",
    "decide_adjustment",
    "decide_in_order",
    "record",
]


def decide_adjustment(request: AdjustmentRequest, facts: AccountFacts) -> Decision:
    """Apply or refuse one request against what its account knows; the first refusing rule decides."""
    _check_belongs(request, facts)
    refused = _forbidden(request) or _invalid_amount(request, facts)
    if refused is not None:
        return refused
    match request.kind:
        case AdjustmentKind.CREDIT:
            return _applied(
                request, facts, request.change, f"credited {figure(request.change, request.currency)}"
            )
        case AdjustmentKind.CORRECTION:
            return _correction(request, facts)
        case AdjustmentKind.TRANSACTION_REFUND:
            return _transaction_refund(request, facts)
        case AdjustmentKind.REVERSAL:
            return _reversal(request, facts)


def decide_in_order(
    requests: Iterable[AdjustmentRequest], facts: AccountFacts
) -> tuple[list[Decision], AccountFacts]:
    """Decide one account's requests in order, each seeing what the ones before it applied."""
    decisions: list[Decision] = []
    for request in requests:
        decision = decide_adjustment(request, facts)
        facts = record(facts, request, decision)
        decisions.append(decision)
    return decisions, facts


def record(facts: AccountFacts, request: AdjustmentRequest, decision: Decision) -> AccountFacts:
    """The account's facts once `decision` is applied; a refusal changes nothing."""
    if isinstance(decision, Refused):
        return facts
    transactions = dict(facts.transactions)
    entries = dict(facts.entries)
    kind = EntryKind(request.kind)
    refunded = request.refunded.transaction_id if kind is EntryKind.TRANSACTION_REFUND else None
    entries[request.adjustment_id] = EntryFacts(
        kind, request.currency, decision.delta, transaction_id=refunded
    )
    if refunded is not None:
        known = transactions.get(refunded, TransactionFacts(request.refunded.amount))
        transactions[refunded] = replace(known, refunded=known.refunded + decision.delta)
    if kind is EntryKind.REVERSAL:
        target = entries[request.target]
        entries[request.target] = replace(target, reversed=True)
        freed = transactions.get(target.transaction_id or "")
        if target.transaction_id is not None and freed is not None:
            transactions[target.transaction_id] = replace(freed, refunded=freed.refunded - target.delta)
    balances = {**facts.balances, request.currency: decision.balance}
    return replace(facts, balances=balances, transactions=transactions, entries=entries)


def _check_belongs(request: AdjustmentRequest, facts: AccountFacts) -> None:
    if (request.reseller_id, request.account_id) != (facts.reseller_id, facts.account_id):
        raise WrongAccount(
            f"adjustment {request.adjustment_id} is for account {request.account_id} of reseller "
            f"{request.reseller_id}, the facts for account {facts.account_id} of {facts.reseller_id}"
        )
    if request.adjustment_id in facts.entries:
        raise DuplicateAdjustment(f"adjustment {request.adjustment_id} is already on the account")


def _refused(request: AdjustmentRequest, code: RefusalCode, detail: str) -> Refused:
    return Refused(request.adjustment_id, request.kind, code, detail)


def _forbidden(request: AdjustmentRequest) -> Refused | None:
    detail = forbidden_detail(request.actor, request.reseller_id)
    return None if detail is None else _refused(request, RefusalCode.FORBIDDEN, detail)


def _invalid_amount(request: AdjustmentRequest, facts: AccountFacts) -> Refused | None:
    if request.kind is AdjustmentKind.REVERSAL:
        return None  # its amount is ignored: it moves by its target's change
    amount, currency = request.change, request.currency
    if request.kind is AdjustmentKind.CORRECTION:
        if amount == 0:
            return _refused(
                request, RefusalCode.INVALID_AMOUNT, f"a correction of {figure(0, currency)} changes nothing"
            )
        return None
    if amount <= 0:
        detail = f"a {request.kind} must be above zero, got {figure(amount, currency)}"
        return _refused(request, RefusalCode.INVALID_AMOUNT, detail)
    if request.kind is AdjustmentKind.TRANSACTION_REFUND:
        stated = request.refunded
        known = facts.transactions.get(stated.transaction_id)
        # In another currency the amounts cannot be compared: that is rule 5's currency_mismatch.
        if known is not None and known.currency == currency and known.amount != stated.amount:
            detail = (
                f"transaction {stated.transaction_id} is for {figure(known.amount.minor, currency)} as first "
                f"stated, not {figure(stated.amount.minor, currency)}"
            )
            return _refused(request, RefusalCode.INVALID_AMOUNT, detail)
    return None


def _correction(request: AdjustmentRequest, facts: AccountFacts) -> Decision:
    balance, currency = facts.balance(request.currency), request.currency
    if balance + request.change < 0:
        detail = (
            f"balance is {figure(balance, currency)}; a correction of {figure(request.change, currency)} "
            "would take it below zero"
        )
        return _refused(request, RefusalCode.INSUFFICIENT_BALANCE, detail)
    return _applied(request, facts, request.change, f"corrected by {figure(request.change, currency)}")


def _transaction_refund(request: AdjustmentRequest, facts: AccountFacts) -> Decision:
    stated, currency = request.refunded, request.currency
    known = facts.transactions.get(stated.transaction_id)
    if known is not None and known.currency != currency:
        detail = f"transaction {stated.transaction_id} is in {known.currency}, the request in {currency}"
        return _refused(request, RefusalCode.CURRENCY_MISMATCH, detail)
    left = (known or TransactionFacts(stated.amount)).left
    if request.change > left:
        detail = f"{figure(left, currency)} is left to refund of transaction {stated.transaction_id}"
        return _refused(request, RefusalCode.EXCEEDS_REFUNDABLE, detail)
    what = (
        f"refunded {figure(request.change, currency)} of transaction {stated.transaction_id} "
        f"({figure(left - request.change, currency)} left)"
    )
    return _applied(request, facts, request.change, what, transaction_id=stated.transaction_id)


def _reversal(request: AdjustmentRequest, facts: AccountFacts) -> Decision:
    target_id, currency = request.target, request.currency
    target = facts.entries.get(target_id)
    if target is None:
        detail = f"account {request.account_id} has no adjustment or refund {target_id}"
        return _refused(request, RefusalCode.UNKNOWN_TARGET, detail)
    if target.currency != currency:
        detail = f"{target_id} is in {target.currency}, the request in {currency}"
        return _refused(request, RefusalCode.CURRENCY_MISMATCH, detail)
    if target.kind is EntryKind.REVERSAL:
        return _refused(request, RefusalCode.NOT_REVERSIBLE, f"{target_id} is itself a reversal")
    if target.moved_no_credits:
        detail = f"refund {target_id} was paid as a credit note: it moved no credits to take back"
        return _refused(request, RefusalCode.NOT_REVERSIBLE, detail)
    if target.reversed:
        return _refused(request, RefusalCode.ALREADY_REVERSED, f"{target_id} is already reversed")
    delta, balance = -target.delta, facts.balance(currency)
    if balance + delta < 0:
        detail = (
            f"balance is {figure(balance, currency)}; reversing {target_id} ({figure(delta, currency)}) "
            "would take it below zero"
        )
        return _refused(request, RefusalCode.INSUFFICIENT_BALANCE, detail)
    refund_id = target_id if target.kind is EntryKind.TERMINATION_REFUND else None
    what = f"reversed {target_id} ({figure(delta, currency)})"
    return _applied(
        request,
        facts,
        delta,
        what,
        transaction_id=target.transaction_id,
        reverses=target_id,
        refund_id=refund_id,
    )


def _applied(
    request: AdjustmentRequest,
    facts: AccountFacts,
    delta: int,
    what: str,
    *,
    transaction_id: str | None = None,
    reverses: str | None = None,
    refund_id: str | None = None,
) -> Applied:
    balance = facts.balance(request.currency) + delta
    if abs(balance) >= 10**MAX_MINOR_DIGITS:
        raise InvalidAmount(f"the balance would exceed {MAX_MINOR_DIGITS} digits of minor units")
    return Applied(
        adjustment_id=request.adjustment_id,
        kind=request.kind,
        currency=request.currency,
        delta=delta,
        balance=balance,
        detail=f"{what}: balance is {figure(balance, request.currency)}",
        transaction_id=transaction_id,
        reverses=reverses,
        refund_id=refund_id,
    )
