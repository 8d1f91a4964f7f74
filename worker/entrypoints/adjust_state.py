"""What a line of `refund-worker adjust --dry-run` says its account knows, beside the request.

    {"adjustment_id": "adj-7",
     "current_balance": "12.50",
     "known": {
       "transactions": [{"transaction_id": "txn-1", "amount": "45.00", "refunded": "20.00"}],
       "entries": [{"id": "rf-1", "kind": "termination_refund", "delta": "110.00"}]},
     "account_id": "acc-1002", ... the rest of the balance-adjustment-requested data ...}

Amounts are in the line's currency unless a fact names its own `currency`. A line describes the
account as it is when that line is decided: the first line of an account (and currency) states its
balance; a later one may leave out what the earlier lines established, and what it does state must
agree with what they left (docs/contract.md, section 8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.adjustments import AmountText, SignedAmountText
from schemas.wire import CurrencyCode, Identifier
from worker.adjustments.commands import money, signed_minor
from worker.domain.account_facts import AccountFacts, EntryFacts, EntryKind, TransactionFacts, figure
from worker.domain.errors import DomainError
from worker.domain.money import Currency
from worker.domain.policy import RefundMethod

KNOWN_MAX_ITEMS = 1000
FactT = TypeVar("FactT", TransactionFacts, EntryFacts)


class StateDisagrees(DomainError):
    """A line states a fact of its account that the earlier lines left otherwise, or leaves out one
    that no earlier line gave."""


class _Fact(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class KnownTransaction(_Fact):
    transaction_id: Identifier
    amount: AmountText
    """Its full amount."""
    refunded: AmountText = "0"
    """What its earlier, unreversed refunds took."""
    currency: CurrencyCode | None = None


class KnownEntry(_Fact):
    id: Identifier
    """The adjustment_id of an earlier adjustment, or the refund_id of a termination's refund."""
    kind: EntryKind
    delta: SignedAmountText
    """The change it made to the balance."""
    currency: CurrencyCode | None = None
    reversed: bool = False
    transaction_id: Identifier | None = None
    """The transaction of a transaction_refund."""
    method: RefundMethod | None = None
    """How a termination_refund was paid; account_credit when not given."""


class KnownFacts(_Fact):
    transactions: Annotated[list[KnownTransaction], Field(max_length=KNOWN_MAX_ITEMS)] = []
    entries: Annotated[list[KnownEntry], Field(max_length=KNOWN_MAX_ITEMS)] = []


class LineState(BaseModel):
    """The fields of a line beside the request's data (which are ignored here)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    adjustment_id: Identifier | None = None
    """The request's ce_id, which a later line's `reverses` may name; `line-<n>` when not given."""
    current_balance: AmountText | None = None
    known: KnownFacts | None = None


def with_stated(facts: AccountFacts, currency: Currency, state: LineState) -> AccountFacts:
    """The account's facts with what the line states added; raises StateDisagrees on a contradiction."""
    balances = dict(facts.balances)
    if state.current_balance is not None:
        stated = money(state.current_balance, currency, "current_balance").minor
        if currency in balances and balances[currency] != stated:
            raise StateDisagrees(
                f"current_balance: {figure(stated, currency)} stated, but the earlier lines of account "
                f"{facts.account_id} leave {figure(balances[currency], currency)}"
            )
        balances[currency] = stated
    elif currency not in balances:
        raise StateDisagrees(
            f"current_balance: required, as no earlier line gives the {currency} balance of account "
            f"{facts.account_id}"
        )
    known = state.known or KnownFacts()
    transactions = _merged(
        facts.transactions,
        [(t.transaction_id, _transaction(t, currency)) for t in known.transactions],
        "transaction",
    )
    entries = _merged(facts.entries, [(e.id, _entry(e, currency)) for e in known.entries], "entry")
    return replace(facts, balances=balances, transactions=transactions, entries=entries)


def _merged(earlier: Mapping[str, FactT], stated: list[tuple[str, FactT]], what: str) -> dict[str, FactT]:
    merged = dict(earlier)
    for fact_id, fact in stated:
        if fact_id in merged and merged[fact_id] != fact:
            raise StateDisagrees(f"known: {what} {fact_id} is not as the earlier lines leave it")
        merged[fact_id] = fact
    return merged


def _transaction(stated: KnownTransaction, currency: Currency) -> TransactionFacts:
    own = Currency.of(stated.currency) if stated.currency else currency
    where = f"known: transaction {stated.transaction_id}"
    try:
        return TransactionFacts(
            money(stated.amount, own, "amount"), money(stated.refunded, own, "refunded").minor
        )
    except DomainError as wrong:
        raise StateDisagrees(f"{where}: {wrong}") from None


def _entry(stated: KnownEntry, currency: Currency) -> EntryFacts:
    own = Currency.of(stated.currency) if stated.currency else currency
    method = stated.method
    if stated.kind is EntryKind.TERMINATION_REFUND and method is None:
        method = RefundMethod.ACCOUNT_CREDIT
    try:
        return EntryFacts(
            kind=stated.kind,
            currency=own,
            delta=signed_minor(stated.delta, own, "delta"),
            reversed=stated.reversed,
            transaction_id=stated.transaction_id,
            method=method,
        )
    except DomainError as wrong:
        raise StateDisagrees(f"known: entry {stated.id}: {wrong}") from None
