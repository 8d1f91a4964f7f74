"""Tables grown to N rows in seconds: what a worker that has run for months looks up against.

One `INSERT ... SELECT FROM generate_series` per table, in the server, then ANALYZE. The rows
belong to subscriptions, accounts and resellers no benchmark request uses (`prefill-` ids), so
they change no decision; every prefilled outbox batch is already published, and every prefilled expiry
timer is due in 2100, so neither the relay nor the timer loop has anything to do with them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.topics import Topic

PREFILLED_TABLES = (
    "inbox",
    "terminations",
    "credit_notes",
    "outbox_batches",
    "outbox_events",
    "expiry_timers",
    "invoice_credit_notes",
)
ADJUSTMENT_TABLES = ("refunds", "account_balances", "adjustments", "transactions")
"""What a batch of adjustments looks up (refunds after terminations: each refund's subscription)."""
MONEY_REFUND_TABLES = ("money_refund_instructions", "money_refund_payments")
"""What a batch of money refund requests or settlements looks up (with account_balances)."""

_STATEMENTS = {
    "inbox": """
    INSERT INTO inbox (reseller_id, topic, ce_id, payload_sha256, outcome, kafka_partition, kafka_offset)
    SELECT 'prefill-res-' || i % 7, :topic, 'prefill-' || i, sha256(i::text::bytea), 'terminated', i % 8, i
    FROM generate_series(1, :rows) AS i
    """,
    "terminations": """
    INSERT INTO terminations (subscription_id, account_id, reseller_id, cause, request_id,
        terminated_at, currency, refund_minor, rule, requested_by, reason)
    SELECT 'prefill-sub-' || i, 'prefill-acc-' || i % 20000, 'prefill-res-' || i % 7,
        'customer_request', 'prefill-' || i, now(), 'SGD', 0, 'outside_window', 'prefill', 'prefill'
    FROM generate_series(1, :rows) AS i
    """,
    "credit_notes": """
    INSERT INTO credit_notes (credit_note_id, reseller_id, number, issued_by_worker, refund_id,
        currency, amount_minor, issued_at)
    SELECT 'prefill-cn-' || i, 'prefill-res-' || i % 7, i, true, 'prefill-rf-' || i, 'SGD', 100, now()
    FROM generate_series(1, :rows) AS i
    """,
    # Published batches of one event each, the most batch rows for the events: the batches first,
    # and the events take the last ones' ids.
    "outbox_batches": """
    INSERT INTO outbox_batches (events, published_at) SELECT 1, now() FROM generate_series(1, :rows)
    """,
    "outbox_events": """
    INSERT INTO outbox_events (batch, position, event_id, topic, key, ce_type, ce_time, body)
    SELECT b.batch, 0, 'prefill-ev-' || b.batch, 'subscription-terminated', 'prefill-sub-' || b.batch,
        'prefill', now(), '{"request_id":"prefill-' || b.batch || '"}'
    FROM (SELECT batch FROM outbox_batches ORDER BY batch DESC LIMIT :rows) AS b
    """,
    "expiry_timers": """
    INSERT INTO expiry_timers (subscription_id, account_id, reseller_id, expired_at, due_at, state,
        expiry_ce_id)
    SELECT 'prefill-exp-' || i, 'prefill-acc-' || i % 20000, 'prefill-res-' || i % 7,
        '2100-01-01', '2100-01-29', 'pending', 'prefill-exp-' || i
    FROM generate_series(1, :rows) AS i
    """,
    "refunds": """
    INSERT INTO refunds (refund_id, request_id, subscription_id, account_id, reseller_id, currency,
        amount_minor, policy_amount_minor, method, rule, months_refunded, cycle_months, credit_note_id,
        issued_at)
    SELECT 'prefill-rf-' || i, 'prefill-' || i, 'prefill-sub-' || i, 'prefill-acc-' || i % 20000,
        'prefill-res-' || i % 7, 'SGD', 100, 100, 'account_credit', 'full_within_window', 12, 12,
        'prefill-cn-' || i, now()
    FROM generate_series(1, :rows) AS i
    """,
    "account_balances": """
    INSERT INTO account_balances (account_id, currency, reseller_id, balance_minor, balance_version,
        updated_at)
    SELECT 'prefill-acc-' || i, 'SGD', 'prefill-res-' || i % 7, 100, 1, now()
    FROM generate_series(1, :rows) AS i
    """,
    "adjustments": """
    INSERT INTO adjustments (reseller_id, adjustment_id, account_id, currency, kind, delta_minor,
        balance_minor, balance_version, transaction_id, reverses, reason, requested_by, requested_at,
        applied_at)
    SELECT 'prefill-res-' || i % 7, 'prefill-adj-' || i, 'prefill-acc-' || i % 20000, 'SGD',
        CASE WHEN i % 2 = 0 THEN 'reversal' ELSE 'transaction_refund' END, 100, 100, 2,
        CASE WHEN i % 2 = 0 THEN NULL ELSE 'prefill-txn-' || i END,
        CASE WHEN i % 2 = 0 THEN 'prefill-adj-' || (i - 1) END, 'prefill', 'prefill', now(), now()
    FROM generate_series(1, :rows) AS i
    """,
    "transactions": """
    INSERT INTO transactions (reseller_id, account_id, transaction_id, currency, amount_minor,
        refunded_minor, updated_at)
    SELECT 'prefill-res-' || i % 7, 'prefill-acc-' || i % 20000, 'prefill-txn-' || i, 'SGD', 1000, 100,
        now()
    FROM generate_series(1, :rows) AS i
    """,
    "invoice_credit_notes": """
    INSERT INTO invoice_credit_notes (credit_note_id, reseller_id, account_id, subscription_id, currency,
        amount_minor, number, issued_at, ce_id)
    SELECT 'prefill-inv-' || i, 'prefill-res-' || i % 7, 'prefill-acc-' || i % 20000, 'prefill-sub-' || i,
        'SGD', 100, 'INV/' || i, now(), 'prefill-inv-' || i
    FROM generate_series(1, :rows) AS i
    """,
    # Odd ones open (due in 2100: the overdue report has nothing to do), even ones settled; every
    # fourth debited the credits. Each takes 10.00 of its payment of 100.00.
    "money_refund_instructions": """
    INSERT INTO money_refund_instructions (reseller_id, instruction_id, request_id, account_id,
        payment_id, method, currency, amount_minor, debited_minor, status, reason, requested_by,
        requested_at, instructed_at, due_at, settled_at)
    SELECT 'prefill-res-' || i % 7, 'prefill-ins-' || i, 'prefill-' || i, 'prefill-acc-' || i % 20000,
        'prefill-pay-' || i, 'charge_back', 'SGD', 1000, CASE WHEN i % 4 = 1 THEN 1000 ELSE 0 END,
        CASE WHEN i % 2 = 1 THEN 'instructed' ELSE 'succeeded' END, 'prefill', 'prefill', now(),
        '2100-01-01', '2100-01-04', CASE WHEN i % 2 = 0 THEN now() END
    FROM generate_series(1, :rows) AS i
    """,
    "money_refund_payments": """
    INSERT INTO money_refund_payments (reseller_id, account_id, payment_id, currency, amount_minor,
        taken_minor, updated_at)
    SELECT 'prefill-res-' || i % 7, 'prefill-acc-' || i % 20000, 'prefill-pay-' || i, 'SGD', 10000, 1000,
        now()
    FROM generate_series(1, :rows) AS i
    """,
}


async def prefill(engine: AsyncEngine, rows: int, tables: Sequence[str] = PREFILLED_TABLES) -> None:
    """Add `rows` rows to each of `tables` (some of PREFILLED_TABLES) of a migrated database, then
    VACUUM ANALYZE them, as autovacuum would have by then."""
    if rows <= 0:
        return
    async with engine.begin() as conn:
        for table in tables:
            await conn.execute(
                text(_STATEMENTS[table]), {"rows": rows, "topic": Topic.TERMINATION_REQUESTED.value}
            )
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"VACUUM ANALYZE {', '.join(tables)}"))
