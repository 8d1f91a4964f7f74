"""What a batch of adjustments reads, how the rules decide it, and the rows and events it writes,
in input order. No I/O: worker/adjustments/store.py reads and writes, the service orders the steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.outputs import CreditsCause
from schemas.topics import Topic
from worker.adjustments.commands import AdjustmentResult, Outcome
from worker.adjustments.events import adjusted_events, credits_event_id, rejected_event
from worker.db.inbox import inbox_row
from worker.domain.account_facts import AccountFacts, AdjustmentKind, EntryFacts, EntryKind, TransactionFacts
from worker.domain.adjustment_requests import AdjustmentRequest, Applied, Decision, Refused
from worker.domain.adjustments import decide_in_order
from worker.domain.balance import BalanceCursor
from worker.domain.money import Currency
from worker.engine.outbox import OutboxEvent

AccountKey = tuple[str, str, str]
"""(reseller_id, account_id, currency): how account_balances and the ledger are keyed."""
EntryKey = tuple[str, str]
"""(reseller_id, adjustment_id or refund_id): an id is unique within its reseller only."""
TransactionKey = tuple[str, str, str]
"""(reseller_id, account_id, transaction_id)."""
Owner = tuple[str, str]
"""(reseller_id, account_id): whose facts."""


@dataclass(frozen=True, slots=True)
class StoredFacts:
    """What the database knows of a batch's accounts, read before any rule runs."""

    balances: Mapping[AccountKey, tuple[int, int]] = field(default_factory=dict)
    """(balance, version) of each balance the batch names that exists (its row locked)."""
    entries: Mapping[EntryKey, tuple[str, EntryFacts]] = field(default_factory=dict)
    """The earlier changes the batch's reversals name, with the account each belongs to."""
    transactions: Mapping[TransactionKey, TransactionFacts] = field(default_factory=dict)


def balance_keys(requests: Iterable[AdjustmentRequest]) -> list[AccountKey]:
    """The balances a batch may change, sorted: rows are locked in this order, as the terminations'
    upsert locks them (worker/terminations/store.py), so no two batches wait on each other in a cycle."""
    return sorted({(r.reseller_id, r.account_id, r.currency.code) for r in requests})


def target_keys(requests: Iterable[AdjustmentRequest]) -> list[EntryKey]:
    return sorted({(r.reseller_id, r.target) for r in requests if r.kind is AdjustmentKind.REVERSAL})


def transaction_keys(
    requests: Iterable[AdjustmentRequest], entries: Mapping[EntryKey, tuple[str, EntryFacts]]
) -> list[TransactionKey]:
    """The transactions refunded by the batch, and those its reversals' targets refunded (freed again)."""
    keys = {
        (r.reseller_id, r.account_id, r.refunded.transaction_id)
        for r in requests
        if r.kind is AdjustmentKind.TRANSACTION_REFUND
    }
    for (reseller, _), (account, entry) in entries.items():
        if entry.transaction_id is not None:
            keys.add((reseller, account, entry.transaction_id))
    return sorted(keys)


def account_facts(owner: Owner, stored: StoredFacts) -> AccountFacts:
    """One account's facts: what is not this account's is no fact of it (a reversal naming it is
    `unknown_target`)."""
    reseller, account = owner
    return AccountFacts(
        reseller_id=reseller,
        account_id=account,
        balances={
            Currency.of(code): balance
            for (r, holder, code), (balance, _) in stored.balances.items()
            if (r, holder) == owner
        },
        transactions={
            transaction: facts
            for (r, a, transaction), facts in stored.transactions.items()
            if (r, a) == owner
        },
        entries={entry_id: facts for (r, entry_id), (a, facts) in stored.entries.items() if (r, a) == owner},
    )


def decide_batch(
    requests: Sequence[AdjustmentRequest], stored: StoredFacts
) -> tuple[dict[EntryKey, Decision], dict[Owner, AccountFacts]]:
    """Each request's decision, by (reseller_id, adjustment_id); each account's requests in the
    order they were read, each seeing what the earlier ones applied. Also each account's facts
    after them."""
    by_owner: dict[Owner, list[AdjustmentRequest]] = {}
    for request in requests:
        by_owner.setdefault((request.reseller_id, request.account_id), []).append(request)
    decisions: dict[EntryKey, Decision] = {}
    after: dict[Owner, AccountFacts] = {}
    for owner, own in by_owner.items():
        decided, after[owner] = decide_in_order(own, account_facts(owner, stored))
        decisions.update(
            ((request.reseller_id, request.adjustment_id), decision)
            for request, decision in zip(own, decided, strict=True)
        )
    return decisions, after


@dataclass
class AdjustmentRows:
    """The rows a batch will write, gathered before any is written, and its results in input order."""

    now: datetime
    results: list[AdjustmentResult] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    adjustments: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    events: list[OutboxEvent] = field(default_factory=list)
    balance_changes: dict[AccountKey, list[int]] = field(default_factory=dict)
    """The deltas, in order, of each balance."""
    balances_before: dict[AccountKey, tuple[int, int]] = field(default_factory=dict)
    """(balance, version) of each changed balance before the batch: (0, 0) for one it starts."""
    transactions: list[dict[str, Any]] = field(default_factory=list)
    """Each transaction refunded or freed, as it stands after the batch."""


def plan_rows(
    results: Sequence[AdjustmentResult],
    stored: StoredFacts,
    after: Mapping[Owner, AccountFacts],
    now: datetime,
) -> AdjustmentRows:
    """Rows and events in input order; each applied change gets the next version of its balance."""
    rows = AdjustmentRows(now=now, results=list(results))
    cursors: dict[AccountKey, BalanceCursor] = {}
    touched: set[TransactionKey] = set()
    for result in results:
        if result.outcome in (Outcome.DUPLICATE, Outcome.CONFLICT):
            continue
        command, request = result.command, result.command.request
        rows.inbox.append(
            inbox_row(
                request.reseller_id,
                Topic.BALANCE_ADJUSTMENT_REQUESTED.value,
                request.adjustment_id,
                command.payload_sha256,
                result.outcome,
                command.partition,
                command.offset,
            )
        )
        if isinstance(result.decision, Refused):
            rows.events.append(rejected_event(request, result.decision, now))
        elif isinstance(result.decision, Applied):
            key = (request.reseller_id, request.account_id, request.currency.code)
            if key not in cursors:
                cursors[key] = BalanceCursor(*stored.balances.get(key, (0, 0)))
                rows.balances_before[key] = stored.balances.get(key, (0, 0))
            _record_applied(rows, request, result.decision, cursors[key])
            rows.balance_changes.setdefault(key, []).append(result.decision.delta)
            if result.decision.transaction_id is not None:
                touched.add((request.reseller_id, request.account_id, result.decision.transaction_id))
    for reseller, account, transaction in sorted(touched):
        facts = after[(reseller, account)].transactions[transaction]
        rows.transactions.append(
            {
                "reseller_id": reseller,
                "account_id": account,
                "transaction_id": transaction,
                "currency": facts.currency.code,
                "amount_minor": facts.amount.minor,
                "refunded_minor": facts.refunded,
                "updated_at": now,
            }
        )
    return rows


def _record_applied(
    rows: AdjustmentRows, request: AdjustmentRequest, applied: Applied, cursor: BalanceCursor
) -> None:
    balance, version = cursor.apply(applied.delta)
    if balance != applied.balance:  # the rules and the store saw different balances: a bug
        raise ValueError(
            f"adjustment {request.adjustment_id}: the rules left {applied.balance}, the ledger {balance}"
        )
    now = rows.now
    common = {
        "reseller_id": request.reseller_id,
        "account_id": request.account_id,
        "currency": request.currency.code,
        "balance_version": version,
        "delta_minor": applied.delta,
        "balance_minor": balance,
        "transaction_id": applied.transaction_id,
        "reverses": applied.reverses,
        "refund_id": applied.refund_id,
    }
    rows.adjustments.append(
        common
        | {
            "adjustment_id": request.adjustment_id,
            "kind": request.kind.value,
            "reason": request.reason,
            "requested_by": request.actor.id,
            "requested_at": request.requested_at,
            "applied_at": now,
        }
    )
    rows.ledger.append(
        common
        | {
            "cause": CreditsCause(request.kind.value).value,
            "event_id": credits_event_id(request),
            "changed_at": now,
            "adjustment_id": request.adjustment_id,
            "kind": EntryKind(request.kind.value).value,
        }
    )
    rows.events.extend(adjusted_events(request, applied, version, now))
