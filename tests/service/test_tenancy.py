"""Contract section 7 in PostgreSQL alone (no broker): two resellers sharing ids never see, change or
cause a rejection of each other's data, and a subscription belongs to one account of its reseller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.inputs import TerminationRequested
from tests.databases import migrated_engine
from tests.integration.harness import termination_data, unique
from tests.stored_events import stored_events
from worker.db.schema.balances import account_balances
from worker.db.schema.expiry import expiry_timers
from worker.domain.grace_period import GracePeriod
from worker.domain.never_twice import RejectionCode
from worker.domain.policy import RefundPolicy
from worker.domain.timer_verdicts import ExpiryOutcome
from worker.engine.failures import SubscriptionOfAnotherAccount
from worker.engine.parsing import payload_digest
from worker.engine.wire_to_domain import termination_terms
from worker.expiry.commands import ExpiryCommand, Refused, RenewalCommand
from worker.expiry.service import apply_expiry_batch, apply_renewal_batch, expiry_applier
from worker.terminations.commands import CommandResult, Outcome, TerminationCommand
from worker.terminations.service import apply_termination_batch

NOW = datetime(2021, 4, 20, 4, 0, tzinfo=UTC)
EXPIRED_AT = NOW - timedelta(hours=1)


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(postgres_server_url, prefix="refund_svc_tenancy") as engine:
        yield engine


def request(ce_id: str | None = None, **fields: Any) -> TerminationCommand:
    parsed = TerminationRequested.model_validate(termination_data(**fields))
    return TerminationCommand(
        request_id=ce_id or unique("ce"),
        payload_sha256=payload_digest(parsed),
        subscription_id=parsed.subscription_id,
        account_id=parsed.account_id,
        reseller_id=parsed.reseller_id,
        requested_by=parsed.requested_by,
        reason=parsed.reason,
        terms=termination_terms(parsed),
    )


def expiry(who: dict[str, str], ce_id: str | None = None) -> ExpiryCommand:
    return ExpiryCommand(
        ce_id or unique("ce"), b"x", who["subscription_id"], who["account_id"], who["reseller_id"], EXPIRED_AT
    )


def renewal(who: dict[str, str], ce_id: str | None = None) -> RenewalCommand:
    return RenewalCommand(
        ce_id or unique("ce"), b"x", who["subscription_id"], who["account_id"], who["reseller_id"], EXPIRED_AT
    )


async def terminate(engine: AsyncEngine, *commands: TerminationCommand) -> list[CommandResult]:
    async with engine.begin() as conn:
        return await apply_termination_batch(conn, commands, policy=RefundPolicy(), now=NOW)


def two_resellers(**shared: str) -> tuple[dict[str, str], dict[str, str]]:
    """Two resellers' identities sharing the given ids."""
    return tuple(  # type: ignore[return-value]
        {"reseller_id": unique("res"), "account_id": unique("acc"), "subscription_id": unique("sub")} | shared
        for _ in range(2)
    )


async def test_a_subscription_id_terminated_by_one_reseller_is_free_for_another(
    database: AsyncEngine,
) -> None:
    a, b = two_resellers(subscription_id=unique("sub"))
    [first] = await terminate(database, request(**a))
    [second] = await terminate(database, request(**b))
    assert (first.outcome, second.outcome) == (Outcome.TERMINATED, Outcome.TERMINATED)


async def test_an_account_id_shared_by_two_resellers_has_a_balance_each(database: AsyncEngine) -> None:
    a, b = two_resellers(account_id=unique("acc"))
    await terminate(database, request(**a))
    await terminate(database, request(**b))
    async with database.connect() as conn:
        rows = await conn.execute(
            select(account_balances.c.reseller_id, account_balances.c.balance_minor).where(
                account_balances.c.account_id == a["account_id"]
            )
        )
        balances = dict(rows.tuples().all())
    assert balances == {a["reseller_id"]: 12000, b["reseller_id"]: 12000}


async def test_a_credit_note_id_used_by_one_reseller_is_free_for_another(database: AsyncEngine) -> None:
    note = {"credit_note_id": unique("INV-CN"), "amount": "50.00"}
    a, b = two_resellers()
    [first] = await terminate(database, request(credit_note=note, **a))
    [second] = await terminate(database, request(credit_note=note, **b))
    assert (first.outcome, second.outcome) == (Outcome.TERMINATED, Outcome.TERMINATED)


async def test_the_same_ce_id_from_two_resellers_is_two_requests_with_different_output_ids(
    database: AsyncEngine,
) -> None:
    ce_id = unique("ce")
    a, b = two_resellers()
    results = await terminate(database, request(ce_id, **a), request(ce_id, **b))
    assert [r.outcome for r in results] == [Outcome.TERMINATED, Outcome.TERMINATED]
    async with database.connect() as conn:
        ids = (
            await conn.scalars(
                select(stored_events.c.event_id).where(
                    stored_events.c.topic == "subscription-terminated",
                    stored_events.c.data["request_id"].astext == ce_id,
                )
            )
        ).all()
    assert len(set(ids)) == 2


async def test_a_request_cancels_only_its_own_resellers_timer(database: AsyncEngine) -> None:
    a, b = two_resellers(subscription_id=unique("sub"))
    async with database.begin() as conn:
        armed = await apply_expiry_batch(conn, [expiry(a), expiry(b)], grace=GracePeriod(28), now=NOW)
    assert [r.outcome for r in armed] == [ExpiryOutcome.ARMED] * 2
    await terminate(database, request(**a))
    async with database.connect() as conn:
        states = dict(
            (
                await conn.execute(
                    select(expiry_timers.c.reseller_id, expiry_timers.c.state).where(
                        expiry_timers.c.subscription_id == a["subscription_id"]
                    )
                )
            )
            .tuples()
            .all()
        )
    assert states == {a["reseller_id"]: "cancelled", b["reseller_id"]: "pending"}


async def test_a_termination_under_another_account_of_the_reseller_is_rejected_first(
    database: AsyncEngine,
) -> None:
    who = {"reseller_id": unique("res"), "account_id": unique("acc"), "subscription_id": unique("sub")}
    await terminate(database, request(**who))
    [wrong] = await terminate(database, request(**(who | {"account_id": unique("acc")})))
    assert wrong.outcome is Outcome.REJECTED
    assert wrong.rejection is not None
    assert wrong.rejection.code is RejectionCode.ACCOUNT_MISMATCH


async def test_an_expiry_or_renewal_under_another_account_is_dead_lettered_and_stores_nothing(
    database: AsyncEngine,
) -> None:
    who = {"reseller_id": unique("res"), "account_id": unique("acc"), "subscription_id": unique("sub")}
    async with database.begin() as conn:
        await apply_expiry_batch(conn, [expiry(who)], grace=GracePeriod(28), now=NOW)
    other = who | {"account_id": unique("acc")}
    async with database.begin() as conn:
        applied = await expiry_applier(GracePeriod(28), clock=lambda: NOW)(conn, [expiry(other)])
    [(index, poison)] = applied.conflicts
    assert index == 0
    assert isinstance(poison, SubscriptionOfAnotherAccount)
    async with database.begin() as conn:
        [renewed] = await apply_renewal_batch(conn, [renewal(other)], now=NOW)
    assert renewed.outcome is Refused.ACCOUNT_MISMATCH
    async with database.begin() as conn:
        [again] = await apply_renewal_batch(conn, [renewal(other)], now=NOW)
    assert again.outcome is Refused.ACCOUNT_MISMATCH  # nothing was stored for it: not a duplicate
