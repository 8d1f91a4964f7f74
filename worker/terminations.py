"""Applying a batch of termination requests in one database transaction.

Everything a request causes, its inbox row, the termination, the refund and credit note, the
balance change and the events to publish, is written in the caller's transaction, so it all
commits or none of it does. The batch costs a fixed number of statements whatever its size:
three look-ups, two counter upserts, one update cancelling expiry timers and one COPY per
table.

Concurrency is optimistic: the look-ups take no locks; a concurrent writer that got there first
(another worker after a rebalance, the expiry timer) makes an insert violate a unique key, the
transaction rolls back, and the caller retries the batch, which then sees what was committed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.outputs import (
    CreditsCause,
    CreditsUpdated,
    IssuedCreditNote,
    RefundIssued,
    SubscriptionTerminated,
    TerminationCause,
    TerminationRejected,
)
from schemas.topics import Topic
from worker.db.bulk import copy_rows, wanted
from worker.db.inbox import inbox_row, one_of, probed, seen_digests, terminated_subscriptions
from worker.db.tables import (
    balance_ledger,
    credit_notes,
    expiry_timers,
    inbox,
    outbox,
    refunds,
    terminations,
)
from worker.domain.money import Money
from worker.domain.policy import RefundDecision, RefundMethod, RefundPolicy, TerminationTerms
from worker.domain.termination import (
    OWN_CREDIT_NOTES_INCLUDE_TAX,
    History,
    Rejection,
    credit_note_display_number,
    judge_request,
    number_in_order,
)
from worker.outbox import OutboxEvent, derived_id


@dataclass(frozen=True, slots=True)
class TerminationCommand:
    """A validated termination request, with where it came from."""

    request_id: str
    payload_sha256: bytes
    subscription_id: str
    account_id: str
    reseller_id: str
    requested_by: str
    reason: str
    terms: TerminationTerms
    partition: int | None = None
    offset: int | None = None


class Outcome(StrEnum):
    TERMINATED = "terminated"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    """The ce_id was seen before with another payload: not ours to decide, a dead letter."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: TerminationCommand
    outcome: Outcome
    decision: RefundDecision | None = None
    rejection: Rejection | None = None


@dataclass
class _Batch:
    """The rows a batch will insert, gathered before any is written."""

    now: datetime
    results: list[CommandResult] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    terminations: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    credit_notes: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    events: list[OutboxEvent] = field(default_factory=list)
    accepted: list[tuple[TerminationCommand, RefundDecision]] = field(default_factory=list)


async def apply_termination_batch(
    conn: AsyncConnection,
    commands: Sequence[TerminationCommand],
    *,
    policy: RefundPolicy,
    now: datetime,
) -> list[CommandResult]:
    """Decide and store every command, in order; returns one result per command, in order."""
    topic = Topic.TERMINATION_REQUESTED.value
    seen = await seen_digests(conn, topic, {c.request_id for c in commands})
    terminated = await terminated_subscriptions(conn, {c.subscription_id for c in commands})
    used_notes = await _used_credit_notes(conn, _chosen_notes(commands))

    batch = _Batch(now=now)
    for command in commands:
        result = _judge(command, seen, terminated, used_notes, policy)
        batch.results.append(result)
        if result.outcome in (Outcome.DUPLICATE, Outcome.CONFLICT):
            continue
        seen[command.request_id] = command.payload_sha256
        batch.inbox.append(
            inbox_row(
                topic,
                command.request_id,
                command.payload_sha256,
                result.outcome,
                command.partition,
                command.offset,
            )
        )
        if result.decision is not None:
            terminated.add(command.subscription_id)
            if result.decision.credit_note is not None:
                used_notes.add(result.decision.credit_note.credit_note_id)
            batch.accepted.append((command, result.decision))

    first_numbers = await _next_credit_note_numbers(conn, _own_notes_per_reseller(batch.accepted))
    numbers = _own_note_numbers(batch.accepted, first_numbers)
    balances = await _add_to_balances(conn, _credits_per_account(batch.accepted), now)
    # Rows and events in input order, so a rejection never overtakes the termination it refers to.
    for result in batch.results:
        if result.rejection is not None:
            batch.events.append(_rejected_event(result.command, result.rejection, now))
        elif result.decision is not None:
            _record_termination(batch, result.command, result.decision, numbers, balances)
    # A request cancels the subscription's pending expiry timer (contract section 3). Before the
    # inserts, so that this batch and the timer loop lock the timer row, then the termination,
    # in the same order (worker/expiry.py).
    # By one index probe per key at any table size (worker.db.inbox.one_of): a join with unnest
    # became a hash join over all the timers as they grew.
    await conn.execute(
        update(expiry_timers)
        .where(one_of(expiry_timers.c.subscription_id, "ids"), expiry_timers.c.state == "pending")
        .values(state="cancelled", cancelled_by="request", updated_at=now),
        {"ids": [row["subscription_id"] for row in batch.terminations]},
    )
    await _insert_all(conn, batch)
    return batch.results


def _judge(
    command: TerminationCommand,
    seen: Mapping[str, bytes],
    terminated: set[str],
    used_notes: set[str],
    policy: RefundPolicy,
) -> CommandResult:
    known_hash = seen.get(command.request_id)
    if known_hash is not None:
        same = known_hash == command.payload_sha256
        return CommandResult(command, Outcome.DUPLICATE if same else Outcome.CONFLICT)
    note = command.terms.credit_note
    history = History(
        subscription_terminated=command.subscription_id in terminated,
        credit_note_used=note is not None and note.credit_note_id in used_notes,
    )
    verdict = judge_request(command.terms, history, policy)
    if isinstance(verdict, Rejection):
        return CommandResult(command, Outcome.REJECTED, rejection=verdict)
    return CommandResult(command, Outcome.TERMINATED, decision=verdict)


# --- look-ups -------------------------------------------------------------------------------


async def _used_credit_notes(conn: AsyncConnection, note_ids: set[str]) -> set[str]:
    if not note_ids:
        return set()
    ids = wanted("ids")
    query = probed(
        ids, select(credit_notes.c.credit_note_id).where(credit_notes.c.credit_note_id == ids.c.id)
    )
    return set((await conn.execute(query, {"ids": list(note_ids)})).scalars())


def _chosen_notes(commands: Iterable[TerminationCommand]) -> set[str]:
    return {c.terms.credit_note.credit_note_id for c in commands if c.terms.credit_note is not None}


# --- counters: credit-note numbers and balances -----------------------------------------------


def _own_notes_per_reseller(accepted: Iterable[tuple[TerminationCommand, RefundDecision]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for command in _issuing_own_notes(accepted):
        counts[command.reseller_id] += 1
    return counts


def _issuing_own_notes(
    accepted: Iterable[tuple[TerminationCommand, RefundDecision]],
) -> list[TerminationCommand]:
    """The requests that get a credit note of the worker's own, in the order they were read."""
    return [command for command, decision in accepted if decision.method is RefundMethod.ACCOUNT_CREDIT]


_RequestKey = tuple[str, str]  # (reseller_id, request_id): a ce_id is unique within its reseller only


def _request_key(command: TerminationCommand) -> _RequestKey:
    return (command.reseller_id, command.request_id)


def _own_note_numbers(
    accepted: Sequence[tuple[TerminationCommand, RefundDecision]], first_numbers: Mapping[str, int]
) -> dict[_RequestKey, int]:
    """Each request's credit-note number: per reseller, in the order the requests were read."""
    issuing = _issuing_own_notes(accepted)
    numbers = number_in_order([command.reseller_id for command in issuing], first_numbers)
    return {_request_key(command): number for command, number in zip(issuing, numbers, strict=True)}


async def _next_credit_note_numbers(conn: AsyncConnection, counts: Mapping[str, int]) -> dict[str, int]:
    """Reserve counts[r] numbers per reseller; returns the first of each reservation.

    The counter row stays locked until commit, and a rollback returns the numbers: no gaps.
    Rows are taken in key order so two batches never wait on each other in a cycle.
    """
    if not counts:
        return {}
    resellers = sorted(counts)
    rows = await conn.execute(
        _RESERVE_NUMBERS, {"resellers": resellers, "counts": [counts[r] for r in resellers]}
    )
    return {reseller: last - counts[reseller] + 1 for reseller, last in rows}


_AccountKey = tuple[str, str]  # (account_id, currency)

# Both counter upserts take arrays (one statement text whatever the batch size) and lock their rows
# in the arrays' order, which the callers sort, so two batches never wait on each other in a cycle.
_RESERVE_NUMBERS = text("""
    INSERT INTO credit_note_sequences AS s (reseller_id, last_number)
    SELECT reseller, wanted
    FROM unnest(CAST(:resellers AS text[]), CAST(:counts AS bigint[])) AS r(reseller, wanted)
    ON CONFLICT (reseller_id) DO UPDATE SET last_number = s.last_number + EXCLUDED.last_number
    RETURNING reseller_id, last_number
""")
_ADD_TO_BALANCES = text("""
    INSERT INTO account_balances AS b
        (account_id, currency, reseller_id, balance_minor, balance_version, updated_at)
    SELECT account, currency, reseller, delta, changes, :now
    FROM unnest(
        CAST(:accounts AS text[]), CAST(:currencies AS text[]), CAST(:resellers AS text[]),
        CAST(:deltas AS bigint[]), CAST(:counts AS bigint[])
    ) AS c(account, currency, reseller, delta, changes)
    ON CONFLICT (account_id, currency) DO UPDATE SET
        balance_minor = b.balance_minor + EXCLUDED.balance_minor,
        balance_version = b.balance_version + EXCLUDED.balance_version,
        updated_at = EXCLUDED.updated_at
    RETURNING account_id, currency, balance_minor, balance_version
""")


def _credits_per_account(
    accepted: Iterable[tuple[TerminationCommand, RefundDecision]],
) -> dict[_AccountKey, tuple[str, list[int]]]:
    """The deltas, in order, that each account's available credits receive: (reseller, deltas)."""
    changes: dict[_AccountKey, tuple[str, list[int]]] = {}
    for command, decision in accepted:
        if decision.method is RefundMethod.ACCOUNT_CREDIT:
            key = (command.account_id, decision.amount.currency.code)
            changes.setdefault(key, (command.reseller_id, []))[1].append(decision.amount.minor)
    return changes


@dataclass(slots=True)
class _BalanceCursor:
    """Walks an account's changes in order, giving each its own balance and version."""

    balance: int
    version: int

    def apply(self, delta: int) -> tuple[int, int]:
        self.balance += delta
        self.version += 1
        return self.balance, self.version


async def _add_to_balances(
    conn: AsyncConnection, changes: Mapping[_AccountKey, tuple[str, list[int]]], now: datetime
) -> dict[_AccountKey, _BalanceCursor]:
    """Add each account's deltas in one upsert; returns a cursor at the balance before them."""
    if not changes:
        return {}
    keys = sorted(changes)
    parameters = {
        "accounts": [account for account, _ in keys],
        "currencies": [currency for _, currency in keys],
        "resellers": [changes[key][0] for key in keys],
        "deltas": [sum(changes[key][1]) for key in keys],
        "counts": [len(changes[key][1]) for key in keys],
        "now": now,
    }
    cursors = {}
    for account, currency, balance, version in await conn.execute(_ADD_TO_BALANCES, parameters):
        deltas = changes[(account, currency)][1]
        cursors[(account, currency)] = _BalanceCursor(balance - sum(deltas), version - len(deltas))
    return cursors


# --- rows and events --------------------------------------------------------------------------


def _record_termination(
    batch: _Batch,
    command: TerminationCommand,
    decision: RefundDecision,
    numbers: Mapping[_RequestKey, int],
    balances: Mapping[_AccountKey, _BalanceCursor],
) -> None:
    now = batch.now
    currency = decision.amount.currency.code
    batch.terminations.append(
        {
            "subscription_id": command.subscription_id,
            "account_id": command.account_id,
            "reseller_id": command.reseller_id,
            "cause": TerminationCause.CUSTOMER_REQUEST,
            "request_id": command.request_id,
            "terminated_at": now,
            "currency": currency,
            "refund_minor": decision.amount.minor,
            "rule": decision.rule,
            "no_refund_reason": decision.no_refund_reason,
            "requested_by": command.requested_by,
            "reason": command.reason,
        }
    )
    if decision.refundable:
        _record_refund(batch, command, decision, numbers, balances)
    batch.events.append(_terminated_event(command, decision, now))


def _record_refund(
    batch: _Batch,
    command: TerminationCommand,
    decision: RefundDecision,
    numbers: Mapping[_RequestKey, int],
    balances: Mapping[_AccountKey, _BalanceCursor],
) -> None:
    now = batch.now
    refund_id = derived_id(command.request_id, "refund")
    note = _credit_note(command, decision, numbers, now)
    currency = decision.amount.currency.code
    batch.credit_notes.append(
        {
            "credit_note_id": note.credit_note_id,
            "reseller_id": command.reseller_id,
            "number": note.number,
            "issued_by_worker": note.number is not None,
            "refund_id": refund_id,
            "currency": currency,
            "amount_minor": decision.amount.minor,
            "issued_at": now,
            "display_number": note.display_number,
            "reason": note.reason,
            "amounts_include_tax": note.amounts_include_tax,
        }
    )
    batch.refunds.append(
        {
            "refund_id": refund_id,
            "request_id": command.request_id,
            "subscription_id": command.subscription_id,
            "account_id": command.account_id,
            "reseller_id": command.reseller_id,
            "currency": currency,
            "amount_minor": decision.amount.minor,
            "policy_amount_minor": decision.policy_amount.minor,
            "method": decision.method,
            "rule": decision.rule,
            "months_refunded": decision.months_refunded,
            "cycle_months": decision.cycle_months,
            "credit_note_id": note.credit_note_id,
            "issued_at": now,
        }
    )
    batch.events.append(_refund_event(command, decision, refund_id, note, now))
    if decision.method is RefundMethod.ACCOUNT_CREDIT:
        balance, version = balances[(command.account_id, currency)].apply(decision.amount.minor)
        _record_credit(batch, command, decision.amount, refund_id, balance, version)


def _credit_note(
    command: TerminationCommand, decision: RefundDecision, numbers: Mapping[_RequestKey, int], now: datetime
) -> IssuedCreditNote:
    """The operator's note when one was chosen (the refund is that note: the invoice app numbers and
    describes it, so number, display_number, reason and tax stay null), else the worker's own."""
    if decision.credit_note is not None:
        chosen = decision.credit_note
        return IssuedCreditNote(
            credit_note_id=chosen.credit_note_id, number=None, amount=str(chosen.amount), issued_at=None
        )
    number = numbers[_request_key(command)]
    return IssuedCreditNote(
        credit_note_id=derived_id(command.request_id, "credit-note"),
        number=number,
        amount=str(decision.amount),
        issued_at=now,
        display_number=credit_note_display_number(command.reseller_id, number),
        reason=command.reason,
        amounts_include_tax=OWN_CREDIT_NOTES_INCLUDE_TAX,
    )


def _record_credit(
    batch: _Batch, command: TerminationCommand, delta: Money, refund_id: str, balance: int, version: int
) -> None:
    event_id = derived_id(command.request_id, "credits-updated")
    batch.ledger.append(
        {
            "account_id": command.account_id,
            "currency": delta.currency.code,
            "balance_version": version,
            "delta_minor": delta.minor,
            "balance_minor": balance,
            "cause": CreditsCause.REFUND,
            "refund_id": refund_id,
            "event_id": event_id,
            "changed_at": batch.now,
        }
    )
    data = CreditsUpdated(
        account_id=command.account_id,
        reseller_id=command.reseller_id,
        currency=delta.currency.code,
        delta=str(delta),
        balance=str(Money(balance, delta.currency)),
        balance_version=version,
        cause=CreditsCause.REFUND,
        refund_id=refund_id,
        updated_at=batch.now,
    )
    batch.events.append(OutboxEvent.of(event_id, data, batch.now))


def _refund_event(
    command: TerminationCommand,
    decision: RefundDecision,
    refund_id: str,
    note: IssuedCreditNote,
    now: datetime,
) -> OutboxEvent:
    if decision.method is None or decision.rule is None:
        raise ValueError("a refund without a method or rule cannot be issued")  # decide_refund never does
    data = RefundIssued(
        refund_id=refund_id,
        request_id=command.request_id,
        subscription_id=command.subscription_id,
        account_id=command.account_id,
        reseller_id=command.reseller_id,
        amount=str(decision.amount),
        currency=decision.amount.currency.code,
        method=decision.method,
        rule=decision.rule,
        months_refunded=decision.months_refunded,
        cycle_months=decision.cycle_months,
        policy_amount=str(decision.policy_amount),
        credit_note=note,
        issued_at=now,
    )
    return OutboxEvent.of(derived_id(command.request_id, "refund-issued"), data, now)


def _terminated_event(command: TerminationCommand, decision: RefundDecision, now: datetime) -> OutboxEvent:
    data = SubscriptionTerminated(
        request_id=command.request_id,
        subscription_id=command.subscription_id,
        account_id=command.account_id,
        reseller_id=command.reseller_id,
        terminated_at=now,
        cause=TerminationCause.CUSTOMER_REQUEST,
        refund_amount=str(decision.amount),
        currency=decision.amount.currency.code,
        rule=decision.rule,
        no_refund_reason=decision.no_refund_reason,
    )
    return OutboxEvent.of(derived_id(command.request_id, "subscription-terminated"), data, now)


def _rejected_event(command: TerminationCommand, rejection: Rejection, now: datetime) -> OutboxEvent:
    data = TerminationRejected(
        request_id=command.request_id,
        subscription_id=command.subscription_id,
        account_id=command.account_id,
        reason_code=rejection.code,
        detail=rejection.detail,
    )
    return OutboxEvent.of(derived_id(command.request_id, "termination-rejected"), data, now)


async def _insert_all(conn: AsyncConnection, batch: _Batch) -> None:
    """One COPY per table; parents before children for the foreign key."""
    for table, rows in (
        (inbox, batch.inbox),
        (terminations, batch.terminations),
        (credit_notes, batch.credit_notes),
        (refunds, batch.refunds),
        (balance_ledger, batch.ledger),
        (outbox, [event.row() for event in batch.events]),
    ):
        await copy_rows(conn, table, rows)
