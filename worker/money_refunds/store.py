"""All of the money refund batches' SQL but the balances' (worker/db/balances.py): the account lock,
the facts a batch reads, the payment and instruction upserts and the inserts. A fixed number of
statements per batch, whatever its size: every look-up probes an index once per key (`unnest ...
JOIN LATERAL (... LIMIT 1)`, as worker.db.inbox.probed; tests/service/test_lookup_plans.py checks
the plans), and every write is one upsert or one COPY per table.

Why a lock. A request and a settlement of the same account may be read in two batches at once (two
topics, so perhaps two workers, or one partition across a rebalance). What one decides depends on
rows the other writes and no unique key guards: what a payment's instructions took, an instruction's
status. So both take a transaction-scoped advisory lock per account, in key order (no cycle between
two batches), before any look-up: the second waits for the first to commit and then, its look-ups
being new statements, sees it. Two accounts sharing a hash only share a lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Integer, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.balances import add_checked
from worker.db.bulk import ResellerKey, copy_rows, key_arrays
from worker.db.schema.balances import balance_ledger
from worker.db.schema.inbox import inbox
from worker.db.schema.money_refunds import money_refund_instructions
from worker.domain.money import Currency, Money
from worker.domain.money_refund_facts import InstructionState, MoneyRefundMethod, PaymentFacts
from worker.engine.outbox_store import store_events
from worker.money_refunds.commands import StoredInstruction
from worker.money_refunds.rows import MoneyRefundRows, Owner, PaymentKey

# pg_advisory_xact_lock(int, int): (this class, a hash of the reseller and account ids). Another class
# than the other batches' (worker/expiry/store.py, worker/db/invoice_notes.py): they never wait on it.
_ACCOUNT_LOCK_CLASS = 0x5EF0_0A11


def _lock_key(owner: Owner) -> int:
    reseller, account = owner
    named = f"{len(reseller)}:{reseller}/{account}".encode()
    return int.from_bytes(hashlib.blake2b(named, digest_size=4).digest(), "big", signed=True)


async def lock_accounts(conn: AsyncConnection, accounts: Iterable[Owner]) -> None:
    """Serialise the money refund batches (requests, settlements) of the same accounts until commit."""
    keys = sorted({_lock_key(owner) for owner in accounts})
    if not keys:
        return
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:lock_class, k) FROM unnest(:keys) AS k").bindparams(
            bindparam("keys", type_=ARRAY(Integer))
        ),
        {"lock_class": _ACCOUNT_LOCK_CLASS, "keys": keys},
    )


_PAYMENTS = text("""
    SELECT m.reseller_id, m.account_id, m.payment_id, m.currency, m.amount_minor, m.taken_minor
    FROM unnest(CAST(:resellers AS text[]), CAST(:accounts AS text[]), CAST(:ids AS text[]))
        AS k(reseller_id, account_id, id)
    JOIN LATERAL (
        SELECT p.reseller_id, p.account_id, p.payment_id, p.currency, p.amount_minor, p.taken_minor
        FROM money_refund_payments AS p
        WHERE p.reseller_id = k.reseller_id AND p.account_id = k.account_id AND p.payment_id = k.id
        LIMIT 1
    ) AS m ON true
""")


async def known_payments(conn: AsyncConnection, keys: Sequence[PaymentKey]) -> dict[PaymentKey, PaymentFacts]:
    """Each of these payments the account returned money from before: its amount as first stated and
    what its instructions that did not fail took."""
    if not keys:
        return {}
    parameters = {
        "resellers": [r for r, _, _ in keys],
        "accounts": [a for _, a, _ in keys],
        "ids": [p for _, _, p in keys],
    }
    return {
        (reseller, account, payment): PaymentFacts(Money(amount, Currency.of(currency)), taken)
        for reseller, account, payment, currency, amount, taken in await conn.execute(_PAYMENTS, parameters)
    }


_INSTRUCTIONS = text("""
    SELECT m.reseller_id, m.instruction_id, m.request_id, m.account_id, m.payment_id, m.method,
        m.currency, m.amount_minor, m.debited_minor, m.status, m.reason, m.requested_by, m.requested_at,
        m.instructed_at, m.due_at, m.overdue_reported_at IS NOT NULL AS overdue_reported
    FROM unnest(CAST(:resellers AS text[]), CAST(:ids AS text[])) AS k(reseller_id, id)
    JOIN LATERAL (
        SELECT i.* FROM money_refund_instructions AS i
        WHERE i.reseller_id = k.reseller_id AND i.instruction_id = k.id
        LIMIT 1 FOR UPDATE
    ) AS m ON true
""")


async def locked_instructions(
    conn: AsyncConnection, keys: Iterable[ResellerKey]
) -> dict[ResellerKey, StoredInstruction]:
    """These (reseller_id, instruction_id) that exist, their rows locked until commit (so the overdue
    report, which skips locked rows, never reports one being settled)."""
    parameters = key_arrays(keys)
    if not parameters["ids"]:
        return {}
    return {
        (row.reseller_id, row.instruction_id): instruction_of(row)
        for row in await conn.execute(_INSTRUCTIONS, parameters)
    }


def instruction_of(row: Any) -> StoredInstruction:
    """An instruction from its row (with `overdue_reported`, whether it was reported overdue)."""
    return StoredInstruction(
        reseller_id=row.reseller_id,
        instruction_id=row.instruction_id,
        request_id=row.request_id,
        account_id=row.account_id,
        payment_id=row.payment_id,
        method=MoneyRefundMethod(row.method),
        amount=Money(row.amount_minor, Currency.of(row.currency)),
        debited=row.debited_minor,
        state=InstructionState(row.status),
        reason=row.reason,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        instructed_at=row.instructed_at,
        due_at=row.due_at,
        overdue_reported=row.overdue_reported,
    )


_SET_PAYMENTS = text("""
    INSERT INTO money_refund_payments AS p
        (reseller_id, account_id, payment_id, currency, amount_minor, taken_minor, updated_at)
    SELECT reseller, account, id, currency, amount, taken, :now
    FROM unnest(
        CAST(:resellers AS text[]), CAST(:accounts AS text[]), CAST(:ids AS text[]),
        CAST(:currencies AS text[]), CAST(:amounts AS bigint[]), CAST(:taken AS bigint[])
    ) AS c(reseller, account, id, currency, amount, taken)
    ON CONFLICT (reseller_id, account_id, payment_id) DO UPDATE SET
        taken_minor = EXCLUDED.taken_minor, updated_at = EXCLUDED.updated_at
""")

# Every column, so that the conflict on the primary key (always: the row was locked when read) is
# an index probe; only how it ended is updated.
_SETTLE = text("""
    INSERT INTO money_refund_instructions AS i (
        reseller_id, instruction_id, request_id, account_id, payment_id, method, currency,
        amount_minor, debited_minor, status, reason, requested_by, requested_at, instructed_at, due_at,
        settled_at, settlement_ce_id, settlement_detail, updated_at)
    SELECT * FROM unnest(
        CAST(:resellers AS text[]), CAST(:ids AS text[]), CAST(:requests AS text[]),
        CAST(:accounts AS text[]), CAST(:payments AS text[]), CAST(:methods AS text[]),
        CAST(:currencies AS text[]), CAST(:amounts AS bigint[]), CAST(:debited AS bigint[]),
        CAST(:statuses AS text[]), CAST(:reasons AS text[]), CAST(:requested_by AS text[]),
        CAST(:requested_at AS timestamptz[]), CAST(:instructed_at AS timestamptz[]),
        CAST(:due_at AS timestamptz[]), CAST(:settled_at AS timestamptz[]),
        CAST(:settlement_ce_ids AS text[]), CAST(:details AS text[]), CAST(:updated_at AS timestamptz[])
    )
    ON CONFLICT (reseller_id, instruction_id) DO UPDATE SET
        status = EXCLUDED.status, settled_at = EXCLUDED.settled_at,
        settlement_ce_id = EXCLUDED.settlement_ce_id, settlement_detail = EXCLUDED.settlement_detail,
        updated_at = EXCLUDED.updated_at
""")
_SETTLE_COLUMNS = {
    "resellers": "reseller_id",
    "ids": "instruction_id",
    "requests": "request_id",
    "accounts": "account_id",
    "payments": "payment_id",
    "methods": "method",
    "currencies": "currency",
    "amounts": "amount_minor",
    "debited": "debited_minor",
    "statuses": "status",
    "reasons": "reason",
    "requested_by": "requested_by",
    "requested_at": "requested_at",
    "instructed_at": "instructed_at",
    "due_at": "due_at",
    "settled_at": "settled_at",
    "settlement_ce_ids": "settlement_ce_id",
    "details": "settlement_detail",
    "updated_at": "updated_at",
}
_PAYMENT_COLUMNS = {
    "resellers": "reseller_id",
    "accounts": "account_id",
    "ids": "payment_id",
    "currencies": "currency",
    "amounts": "amount_minor",
    "taken": "taken_minor",
}


def _arrays(rows: Sequence[dict[str, Any]], columns: dict[str, str]) -> dict[str, Any]:
    return {name: [row[column] for row in rows] for name, column in columns.items()}


async def write_all(conn: AsyncConnection, rows: MoneyRefundRows) -> None:
    """The balances first (their check may retry the batch), then the payments and the settled
    instructions (the account lock keeps every other money refund batch of theirs out), then one COPY
    per table."""
    await add_checked(conn, rows.balance_changes, rows.balances_before, rows.now)
    if rows.payments:
        await conn.execute(_SET_PAYMENTS, _arrays(rows.payments, _PAYMENT_COLUMNS) | {"now": rows.now})
    if rows.settled:
        await conn.execute(_SETTLE, _arrays(rows.settled, _SETTLE_COLUMNS))
    for table, copied in (
        (inbox, rows.inbox),
        (money_refund_instructions, rows.instructions),
        (balance_ledger, rows.ledger),
    ):
        await copy_rows(conn, table, copied)
    await store_events(conn, rows.events)
