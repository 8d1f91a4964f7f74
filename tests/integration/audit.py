"""The exactly-once audit of a run of termination requests, after crashes, outages or rebalances.

In PostgreSQL: one termination per request, each account's balance the sum of its ledger, whose
versions run 1, 2, 3... without a gap, and equal to the refunds the policy gives; credit-note
numbers without gaps; nothing left unsent in the outbox. On the wire: one answer per request
(under one ce_id however often it is re-published), the policy's amount, no rejection and no dead
letter.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from schemas.inputs import TerminationRequested
from schemas.topics import Topic
from tests.integration.harness import Received
from tests.stored_events import unpublished_events
from worker.db.schema.balances import account_balances, balance_ledger
from worker.db.schema.refunds import credit_notes, terminations
from worker.domain.policy import RefundPolicy
from worker.engine.runtime import create_engine
from worker.entrypoints.quote import quote

Requests = Sequence[tuple[str, dict[str, Any]]]
"""(ce_id, termination-requested data) of each request."""


def expected_refund(data: dict[str, Any]) -> Decimal:
    """What the policy refunds for this request (the worker's defaults: a 14-day window)."""
    return Decimal(quote(TerminationRequested.model_validate(data), RefundPolicy())["amount"])


def _minor(amount: Decimal) -> int:
    return int(amount * 100)  # the audited requests are in SGD: two fraction digits


async def assert_database_applied_each_once(database_url: str, requests: Requests) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            request_ids = [ce_id for ce_id, _ in requests]
            terminated = await conn.scalar(
                select(func.count())
                .select_from(terminations)
                .where(terminations.c.request_id.in_(request_ids))
            )
            assert terminated == len(requests)
            owed: dict[tuple[str, str], int] = defaultdict(int)  # a balance is a reseller's account's
            for _, data in requests:
                owed[(data["reseller_id"], data["account_id"])] += _minor(expected_refund(data))
            for reseller, account in sorted(owed):
                balance = (
                    await conn.execute(
                        select(account_balances).where(
                            account_balances.c.reseller_id == reseller,
                            account_balances.c.account_id == account,
                        )
                    )
                ).one()
                ledger = (
                    await conn.execute(
                        select(balance_ledger.c.balance_version, balance_ledger.c.delta_minor)
                        .where(
                            balance_ledger.c.reseller_id == reseller, balance_ledger.c.account_id == account
                        )
                        .order_by(balance_ledger.c.balance_version)
                    )
                ).all()
                assert [version for version, _ in ledger] == list(range(1, len(ledger) + 1))
                assert balance.balance_minor == sum(delta for _, delta in ledger)
                assert balance.balance_version == len(ledger)
                assert balance.balance_minor == owed[(reseller, account)], (
                    f"{account} credited a wrong amount"
                )
            resellers = sorted({data["reseller_id"] for _, data in requests})
            for reseller in resellers:
                numbers = list(
                    await conn.scalars(
                        select(credit_notes.c.number)
                        .where(credit_notes.c.reseller_id == reseller)
                        .order_by(credit_notes.c.number)
                    )
                )
                assert numbers == list(range(1, len(numbers) + 1)), f"gap in {reseller}'s credit notes"
            unsent = await unpublished_events(conn)
            assert unsent == 0
    finally:
        await engine.dispose()


def assert_published_each_once(received: list[Received], requests: Requests) -> None:
    """At least once on the wire, but one ce_id per effect: consumers de-duplicating see each once."""
    request_ids = {ce_id for ce_id, _ in requests}
    distinct: dict[str, set[str]] = defaultdict(set)
    for message in received:
        distinct[message.topic].add(message.ce_id)
    terminated = Counter(m.data["request_id"] for m in received if m.topic == Topic.SUBSCRIPTION_TERMINATED)
    assert set(terminated) == request_ids
    rejected = [m.data for m in received if m.topic == Topic.TERMINATION_REJECTED]
    assert rejected == [], "a redelivery was taken for a new request"
    ids_per_request: dict[str, set[str]] = defaultdict(set)
    for message in received:
        if message.topic == Topic.SUBSCRIPTION_TERMINATED:
            ids_per_request[message.data["request_id"]].add(message.ce_id)
    assert all(len(ids) == 1 for ids in ids_per_request.values()), "a re-publish changed a ce_id"
    assert len(distinct[Topic.SUBSCRIPTION_TERMINATED]) == len(requests)
    refunds: dict[str, set[Decimal]] = defaultdict(set)  # request -> amounts, over distinct ce_ids
    refund_ids: dict[str, set[str]] = defaultdict(set)
    for message in received:
        if message.topic == Topic.REFUND_ISSUED:
            refunds[message.data["request_id"]].add(Decimal(message.data["amount"]))
            refund_ids[message.data["request_id"]].add(message.ce_id)
    expected = {ce_id: {amount} for ce_id, data in requests if (amount := expected_refund(data)) > 0}
    assert dict(refunds) == expected, "a refund is missing, extra or of the wrong amount"
    assert all(len(ids) == 1 for ids in refund_ids.values()), "a request was refunded twice"


def assert_nothing_dead_lettered(received: list[Received], request_ids: set[str]) -> None:
    """Ours only: a group starting from the earliest offset may also meet earlier tests' poison."""
    dead_letters = [
        m
        for m in received
        if m.topic.endswith("-dlt") and m.headers.get("ce_id", b"").decode() in request_ids
    ]
    assert dead_letters == [], f"{len(dead_letters)} requests were dead-lettered"
