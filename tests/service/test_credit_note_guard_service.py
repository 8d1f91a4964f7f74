"""The double-refund guard (contract section 10) in PostgreSQL alone (no broker), at a fixed `now`:
the invoice app's notes become a later termination's refund, or one conflict after an automatic
refund, whichever arrives first; never two refunds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.credit_notes import CreditNoteIssued
from schemas.inputs import TerminationRequested
from tests.databases import migrated_engine
from tests.integration.harness import termination_data, unique
from tests.stored_events import in_stored_order, stored_events
from worker.credit_notes.commands import CreditNoteCommand, NoteOutcome, NoteResult
from worker.credit_notes.service import apply_credit_note_batch, credit_note_applier
from worker.db.schema.balances import balance_ledger
from worker.db.schema.invoice_notes import invoice_credit_notes
from worker.domain.never_twice import RejectionCode
from worker.domain.policy import RefundPolicy
from worker.engine.failures import CreditNoteRedefined
from worker.engine.parsing import payload_digest
from worker.engine.wire_to_domain import invoice_note, termination_terms
from worker.terminations.commands import CommandResult, Outcome, TerminationCommand
from worker.terminations.service import apply_termination_batch

NOW = datetime(2021, 4, 20, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    """One migrated database for the module; tests keep apart by their own reseller."""
    async with migrated_engine(postgres_server_url, prefix="refund_svc_guard") as engine:
        yield engine


def request(**fields: Any) -> TerminationCommand:
    request = TerminationRequested.model_validate(termination_data(**fields))
    return TerminationCommand(
        request_id=unique("ce"),
        payload_sha256=payload_digest(request),
        subscription_id=request.subscription_id,
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        requested_by=request.requested_by,
        reason=request.reason,
        terms=termination_terms(request),
    )


def issued(termination: TerminationCommand, ce_id: str | None = None, **fields: Any) -> CreditNoteCommand:
    data: dict[str, Any] = {
        "credit_note_id": unique("INV-CN"),
        "reseller_id": termination.reseller_id,
        "account_id": termination.account_id,
        "subscription_id": termination.subscription_id,
        "amount": "110.00",
        "currency": "SGD",
        "issued_at": "2021-04-11T09:15:00+08:00",
        "number": "CN/2021/0419",
        **fields,
    }
    note = CreditNoteIssued.model_validate(data)
    return CreditNoteCommand(
        ce_id=ce_id or unique("inv-ce"), payload_sha256=payload_digest(note), note=invoice_note(note)
    )


async def terminate(engine: AsyncEngine, *commands: TerminationCommand) -> list[CommandResult]:
    async with engine.begin() as conn:
        return await apply_termination_batch(conn, commands, policy=RefundPolicy(), now=NOW)


async def record(engine: AsyncEngine, *commands: CreditNoteCommand) -> list[NoteResult]:
    async with engine.begin() as conn:
        return await apply_credit_note_batch(conn, commands, now=NOW)


async def events(engine: AsyncEngine, key: str) -> list[tuple[str, dict[str, Any]]]:
    """(topic, data) of every event keyed by `key` (a subscription), in the order stored."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(stored_events.c.topic, stored_events.c.data)
            .where(stored_events.c.key == key)
            .order_by(*in_stored_order)
        )
        return [(topic, data) for topic, data in rows]


async def topics(engine: AsyncEngine, key: str) -> list[str]:
    return [topic for topic, _ in await events(engine, key)]


async def note_use(
    engine: AsyncEngine, reseller_id: str, credit_note_id: str
) -> tuple[str | None, str | None]:
    """(refund_id, conflict_refund_id) of a stored note."""
    c = invoice_credit_notes.c
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(c.refund_id, c.conflict_refund_id).where(
                    c.reseller_id == reseller_id, c.credit_note_id == credit_note_id
                )
            )
        ).one()
    return row.refund_id, row.conflict_refund_id


async def ledger_rows(engine: AsyncEngine, reseller_id: str) -> int:
    async with engine.connect() as conn:
        count = (
            select(func.count())
            .select_from(balance_ledger)
            .where(balance_ledger.c.reseller_id == reseller_id)
        )
        return int(await conn.scalar(count) or 0)


async def test_a_termination_after_its_notes_is_refunded_by_them_never_as_credits(
    database: AsyncEngine,
) -> None:
    termination = request(requested_at="2021-04-17T10:00:00+08:00")
    later = issued(termination, amount="40.00", issued_at="2021-04-12T09:00:00+08:00")
    first = issued(termination, amount="60.00")
    assert [r.outcome for r in await record(database, later, first)] == [NoteOutcome.RECORDED] * 2

    (result,) = await terminate(database, termination)

    assert result.outcome is Outcome.TERMINATED
    assert result.linked == (first.note, later.note)
    published = await events(database, termination.subscription_id)
    assert [topic for topic, _ in published] == ["refund-issued", "subscription-terminated"]
    refund = published[0][1]
    assert (refund["method"], refund["rule"], refund["auto_linked"], refund["amount"]) == (
        "credit_note",
        "credit_note",
        True,
        "100.00",
    )
    assert refund["policy_amount"] == "110.00"
    assert refund["credit_note"]["credit_note_id"] == first.note.credit_note_id
    assert [n["credit_note_id"] for n in refund["credit_notes"]] == [
        first.note.credit_note_id,
        later.note.credit_note_id,
    ]
    assert await ledger_rows(database, termination.reseller_id) == 0
    for note in (first, later):
        assert await note_use(database, termination.reseller_id, note.note.credit_note_id) == (
            refund["refund_id"],
            None,
        )


async def test_notes_summing_above_what_was_paid_are_credit_note_invalid(database: AsyncEngine) -> None:
    termination = request()
    await record(database, issued(termination, amount="100.00"), issued(termination, amount="30.00"))

    (result,) = await terminate(database, termination)

    assert result.rejection is not None
    assert result.rejection.code is RejectionCode.CREDIT_NOTE_INVALID
    assert "more than the 120.00 SGD paid" in result.rejection.detail
    assert await topics(database, termination.subscription_id) == ["termination-rejected"]


async def test_a_note_in_another_currency_is_credit_note_invalid(database: AsyncEngine) -> None:
    termination = request()
    await record(database, issued(termination, amount="1000", currency="JPY"))

    (result,) = await terminate(database, termination)

    assert result.rejection is not None
    assert result.rejection.code is RejectionCode.CREDIT_NOTE_INVALID
    assert await topics(database, termination.subscription_id) == ["termination-rejected"]


async def test_when_the_rules_refuse_a_refund_the_notes_stay_unused(database: AsyncEngine) -> None:
    termination = request(allow_refund=False)
    note = issued(termination)
    await record(database, note)

    (result,) = await terminate(database, termination)

    assert result.decision is not None
    assert result.decision.no_refund_reason is not None
    assert result.linked == ()
    assert await topics(database, termination.subscription_id) == ["subscription-terminated"]
    assert await note_use(database, termination.reseller_id, note.note.credit_note_id) == (None, None)


@pytest.mark.parametrize(
    ("named", "noted"),
    [
        ({"amount": "50.00"}, {"amount": "60.00"}),
        ({"amount": "50.00"}, {"amount": "5000", "currency": "JPY"}),
        ({"amount": "50.00"}, {"subscription_id": "sub-someone-else"}),
    ],
    ids=["amount", "currency", "subscription"],
)
async def test_a_named_note_the_worker_knows_must_match_it(
    database: AsyncEngine, named: dict[str, str], noted: dict[str, str]
) -> None:
    probe = request()
    note = issued(probe, **{"amount": "50.00", **noted})
    await record(database, note)
    choice = {"credit_note_id": note.note.credit_note_id, **named}
    termination = request(
        subscription_id=probe.subscription_id,
        account_id=probe.account_id,
        reseller_id=probe.reseller_id,
        credit_note=choice,
    )

    (result,) = await terminate(database, termination)

    assert result.rejection is not None
    assert result.rejection.code is RejectionCode.CREDIT_NOTE_INVALID


async def test_a_named_note_that_matches_is_the_refund_and_is_marked_used(database: AsyncEngine) -> None:
    probe = request()
    note = issued(probe, subscription_id=None, amount="50.00")
    await record(database, note)
    termination = request(
        subscription_id=probe.subscription_id,
        account_id=probe.account_id,
        reseller_id=probe.reseller_id,
        credit_note={"credit_note_id": note.note.credit_note_id, "amount": "50.00"},
    )

    (result,) = await terminate(database, termination)

    assert result.decision is not None
    assert result.decision.amount.minor == 5000
    refund_id, conflict = await note_use(database, probe.reseller_id, note.note.credit_note_id)
    assert refund_id is not None
    assert conflict is None


async def test_a_note_after_an_automatic_refund_is_one_conflict_and_a_redelivery_changes_nothing(
    database: AsyncEngine,
) -> None:
    termination = request()
    await terminate(database, termination)
    note = issued(termination)
    again = issued(termination, credit_note_id=note.note.credit_note_id)  # the same note, another ce_id

    assert [r.outcome for r in await record(database, note)] == [NoteOutcome.REFUND_CONFLICT]
    assert [r.outcome for r in await record(database, note, again)] == [
        NoteOutcome.DUPLICATE,
        NoteOutcome.ALREADY_RECORDED,
    ]

    published = await events(database, termination.subscription_id)
    assert [topic for topic, _ in published] == [
        "refund-issued",
        "subscription-terminated",
        "refund-conflict-detected",
    ]
    refund, conflict = published[0][1], published[2][1]
    assert conflict == {
        "subscription_id": termination.subscription_id,
        "refund_id": refund["refund_id"],
        "credit_note_id": note.note.credit_note_id,
        "amount": "110.00",
        "currency": "SGD",
        "account_id": termination.account_id,
        "reseller_id": termination.reseller_id,
        "detected_at": "2021-04-20T04:00:00Z",
    }
    assert await ledger_rows(database, termination.reseller_id) == 1  # the refund's credits, nothing more


async def test_a_note_with_no_subscription_is_recorded_and_never_linked(database: AsyncEngine) -> None:
    termination = request()
    note = issued(termination, subscription_id=None)
    assert [r.outcome for r in await record(database, note)] == [NoteOutcome.RECORDED]

    (result,) = await terminate(database, termination)

    assert result.decision is not None
    assert result.decision.credits_account
    assert await note_use(database, termination.reseller_id, note.note.credit_note_id) == (None, None)


async def test_a_note_recorded_again_with_other_facts_is_a_dead_letter(database: AsyncEngine) -> None:
    termination = request()
    note = issued(termination)
    await record(database, note)
    changed = issued(termination, credit_note_id=note.note.credit_note_id, amount="1.00")
    apply = credit_note_applier(lambda results: None, clock=lambda: NOW)

    async with database.begin() as conn:
        applied = await apply(conn, [changed])

    ((index, error),) = applied.conflicts
    assert index == 0
    assert isinstance(error, CreditNoteRedefined)


@pytest.mark.parametrize("note_first", [True, False], ids=["note first", "termination first"])
async def test_concurrent_batches_of_a_note_and_its_termination_give_one_refund(
    database: AsyncEngine, note_first: bool
) -> None:
    """Whichever commits first, the other sees it: a linked refund, or an account credit and one
    conflict; never an account credit with the note unused."""
    termination = request()
    note = issued(termination)
    async with database.connect() as first, database.connect() as second:
        await first.begin()
        await second.begin()
        one, other = (first, second)
        waiting: asyncio.Task[Any]
        if note_first:
            await apply_credit_note_batch(one, [note], now=NOW)
            waiting = asyncio.create_task(
                apply_termination_batch(other, [termination], policy=RefundPolicy(), now=NOW)
            )
        else:
            await apply_termination_batch(one, [termination], policy=RefundPolicy(), now=NOW)
            waiting = asyncio.create_task(apply_credit_note_batch(other, [note], now=NOW))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # held by the subscription's lock
        await one.commit()
        await waiting
        await other.commit()

    published = await topics(database, termination.subscription_id)
    use = await note_use(database, termination.reseller_id, note.note.credit_note_id)
    if note_first:
        assert published == ["refund-issued", "subscription-terminated"]
        assert use[0] is not None
    else:
        assert published == ["refund-issued", "subscription-terminated", "refund-conflict-detected"]
        assert use[1] is not None


@pytest.mark.parametrize("note_first", [True, False], ids=["note first", "termination first"])
async def test_in_either_order_a_subscription_is_refunded_once(
    database: AsyncEngine, note_first: bool
) -> None:
    termination = request()
    note = issued(termination)
    steps: Sequence[Any] = (
        (record(database, note), terminate(database, termination))
        if note_first
        else (terminate(database, termination), record(database, note))
    )
    for step in steps:
        await step

    refunds = [
        data
        for topic, data in await events(database, termination.subscription_id)
        if topic == "refund-issued"
    ]
    assert len(refunds) == 1
    conflicts = await topics(database, termination.subscription_id)
    assert conflicts.count("refund-conflict-detected") == (0 if note_first else 1)
    assert refunds[0]["auto_linked"] is note_first
