"""Holding the worker to a crash test's book (tests/integration/crash_book.py): every effect the book
entered exactly once and nothing else, on the wire (one ce_id per effect, however often re-published,
each copy the same) and in PostgreSQL (one inbox row per input, with its outcome where the book
names one, one ledger entry per change, the balances and versions the rules give, each refund and
each note's use as entered, each money refund's instruction and payment as it ended)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.topics import Topic
from tests.integration.crash_book import (
    Account,
    Book,
    Effect,
    Instruction,
    minor,
    money_change,
    money_refund_update,
)
from tests.integration.harness import OutputWatcher, Received
from tests.stored_events import unpublished_events
from worker.db.schema.balances import account_balances, balance_ledger
from worker.db.schema.inbox import inbox
from worker.db.schema.invoice_notes import invoice_credit_notes
from worker.db.schema.money_refunds import money_refund_instructions, money_refund_payments
from worker.db.schema.refunds import credit_notes, refunds, terminations
from worker.engine.runtime import create_engine

EFFECT_ID: dict[str, Callable[[dict[str, Any]], Any]] = {
    Topic.SUBSCRIPTION_TERMINATED.value: lambda data: data["request_id"],
    Topic.TERMINATION_REJECTED.value: lambda data: data["request_id"],
    Topic.REFUND_ISSUED.value: lambda data: data["request_id"],
    Topic.CREDITS_UPDATED.value: lambda data: (
        data.get("adjustment_id") or data["refund_id"] or money_change(data["instruction_id"], data["cause"])
    ),
    Topic.BALANCE_ADJUSTED.value: lambda data: data["adjustment_id"],
    Topic.ADJUSTMENT_REJECTED.value: lambda data: data["request_id"],
    Topic.REFUND_CONFLICT_DETECTED.value: lambda data: data["credit_note_id"],
    Topic.PAYMENT_REFUND_INSTRUCTED.value: lambda data: data["instruction_id"],
    Topic.MONEY_REFUND_UPDATED.value: lambda data: money_refund_update(
        data["instruction_id"], data["status"]
    ),
}
"""What names the effect an event reports, per output topic. An event of the book's resellers on
any other topic watched (a dead letter, say) is one the book has no place for: a failure."""

MONEY = frozenset({"amount", "refund_amount", "delta", "balance"})


def _shown(name: str, value: Any) -> Any:
    if name in MONEY:
        return Decimal(value)
    if name == "credit_notes":
        return [note["credit_note_id"] for note in value]
    return value


@dataclass
class Tally:
    """The events of the book's resellers received so far, by topic, effect and ce_id."""

    book: Book
    effects: dict[str, dict[Effect, dict[str, list[dict[str, Any]]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    )
    strays: list[Received] = field(default_factory=list)
    seen: int = 0

    def __repr__(self) -> str:  # not the thousands of events in a failure's traceback
        return f"Tally({self.seen} events read, {len(self.strays)} strays)"

    def __post_init__(self) -> None:
        self._resellers = self.book.resellers
        self._reseller_of = {ce_id: reseller for reseller, _, ce_id in self.book.inputs}

    def add(self, received: list[Received]) -> None:
        for message in received[self.seen :]:
            reseller = message.data.get("reseller_id") or self._reseller_of.get(
                str(message.data.get("request_id"))
            )
            if reseller not in self._resellers:
                continue  # another test's, or another run's
            effect_id = EFFECT_ID.get(message.topic)
            if effect_id is None:
                self.strays.append(message)
            else:
                effect = (reseller, effect_id(message.data))
                self.effects[message.topic][effect][message.ce_id].append(message.data)
        self.seen = len(received)

    def missing(self) -> dict[str, int]:
        return {
            topic: len(set(expected) - set(self.effects[topic]))
            for topic, expected in self.book.outputs.items()
            if set(expected) - set(self.effects[topic])
        }


async def tally_when_done(watcher: OutputWatcher, book: Book, within: float, settle: float = 2.0) -> Tally:
    """Reads until every effect of the book has its event, then `settle` seconds more for extras."""
    tally = Tally(book)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while missing := tally.missing():
        assert loop.time() < deadline, f"events still missing after {within:.0f} s, by topic: {missing}"
        await watcher.poll()
        tally.add(watcher.received)
    end = loop.time() + settle
    while loop.time() < end:
        await watcher.poll()
    tally.add(watcher.received)
    return tally


def assert_published_each_once(tally: Tally, book: Book) -> None:
    strays = Counter(m.topic for m in tally.strays)
    assert not strays, f"events the book has no place for, by topic: {dict(strays)}, e.g. {tally.strays[0]}"
    for topic in sorted(set(book.outputs) | set(tally.effects)):
        expected, published = book.outputs.get(topic, {}), tally.effects[topic]
        extra = sorted(set(published) - set(expected))
        assert extra == [], f"{len(extra)} effects on {topic} nothing asked for, e.g. {extra[:3]}"
        assert set(published) == set(expected), f"effects missing on {topic}"
        for effect, copies in published.items():
            assert len(copies) == 1, f"{effect} published on {topic} under {len(copies)} ce_ids"
            (versions,) = copies.values()
            assert all(data == versions[0] for data in versions), f"a re-publish of {effect} changed"
            shown = {name: _shown(name, versions[0].get(name)) for name in expected[effect]}
            assert shown == expected[effect], f"{topic} of {effect}: {shown} != {expected[effect]}"
    _assert_balance_chains(tally, book)


def _assert_balance_chains(tally: Tally, book: Book) -> None:
    """Each account's credits-updated run 1..n with no gap, each balance the previous plus its delta,
    ending at the book's balance; balance-adjusted tells the same balance and version."""
    changes: dict[Account, list[dict[str, Any]]] = defaultdict(list)
    for copies in tally.effects[Topic.CREDITS_UPDATED.value].values():
        (data, *_) = next(iter(copies.values()))
        changes[Account(data["reseller_id"], data["account_id"])].append(data)
    for account, entries in book.ledger.items():
        chain = sorted(changes[account], key=lambda data: data["balance_version"])
        assert [data["balance_version"] for data in chain] == list(range(1, len(entries) + 1)), account
        balance = Decimal(0)
        for data in chain:
            balance += Decimal(data["delta"])
            assert Decimal(data["balance"]) == balance, f"{account}'s balance chain breaks at {data}"
        assert minor(balance) == sum(entries.values()), f"{account} ends at a wrong balance"
    credited = {
        effect: next(iter(c.values()))[0] for effect, c in tally.effects[Topic.CREDITS_UPDATED.value].items()
    }
    for effect, copies in tally.effects[Topic.BALANCE_ADJUSTED.value].items():
        adjusted = next(iter(copies.values()))[0]
        said = (credited[effect]["balance"], credited[effect]["balance_version"])
        assert (adjusted["balance"], adjusted["balance_version"]) == said, effect


async def assert_stored_each_once(database_url: str, book: Book) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            await _assert_inbox_and_ledgers(conn, book)
            await _assert_refunds_and_notes(conn, book)
            await _assert_money_refunds(conn, book)
            unsent = await unpublished_events(conn)
            assert unsent == 0, "events left unsent in the outbox"
    finally:
        await engine.dispose()


async def _assert_inbox_and_ledgers(conn: AsyncConnection, book: Book) -> None:
    resellers = sorted(book.resellers)
    i = inbox.c
    stored = await conn.execute(select(i.reseller_id, i.topic, i.ce_id).where(i.reseller_id.in_(resellers)))
    assert {tuple(row) for row in stored} == book.inputs, "the inbox holds other inputs than were sent"
    b = account_balances.c
    rows = await conn.execute(
        select(b.reseller_id, b.account_id, b.balance_minor, b.balance_version).where(
            b.reseller_id.in_(resellers)
        )
    )
    balances = {Account(r, a): (balance, version) for r, a, balance, version in rows}
    expected = {account: (sum(entries.values()), len(entries)) for account, entries in book.ledger.items()}
    assert balances == expected, "balances or versions differ from the rules' (balance, version)"
    e = balance_ledger.c
    entries: dict[Account, list[Any]] = defaultdict(list)
    query = select(
        e.reseller_id,
        e.account_id,
        e.balance_version,
        e.delta_minor,
        e.balance_minor,
        e.adjustment_id,
        e.refund_id,
        e.instruction_id,
        e.cause,
    )
    for row in await conn.execute(query.where(e.reseller_id.in_(resellers)).order_by(e.balance_version)):
        entries[Account(row.reseller_id, row.account_id)].append(row)
    for account, ledger in book.ledger.items():
        found = entries[account]
        assert [row.balance_version for row in found] == list(range(1, len(found) + 1)), account
        assert [row.balance_minor for row in found][-1:] == [balances[account][0]], account
        changes = Counter(map(_change_of, found))
        assert [c for c, n in changes.items() if n > 1] == [], f"{account}: a change entered twice"
        assert {_change_of(row): row.delta_minor for row in found} == ledger, account


def _change_of(entry: Any) -> str:
    """The id the book enters a ledger row's change under."""
    if entry.instruction_id is not None:
        return money_change(entry.instruction_id, entry.cause)
    return str(entry.adjustment_id or entry.refund_id)


async def _assert_refunds_and_notes(conn: AsyncConnection, book: Book) -> None:
    resellers = sorted(book.resellers)
    t, r, n, c = terminations.c, refunds.c, invoice_credit_notes.c, credit_notes.c
    terminated = await conn.execute(select(t.reseller_id, t.request_id).where(t.reseller_id.in_(resellers)))
    assert {tuple(row) for row in terminated} == book.terminations
    paid = await conn.execute(
        select(r.reseller_id, r.refund_id, r.method, r.amount_minor).where(r.reseller_id.in_(resellers))
    )
    assert {(row[0], row[1]): (row[2], row[3]) for row in paid} == book.refunds
    # What the foreign key to terminations held until migration 0012: no refund without its termination.
    orphans = select(r.refund_id).where(
        r.reseller_id.in_(resellers),
        ~exists().where(t.reseller_id == r.reseller_id, t.subscription_id == r.subscription_id),
    )
    assert (await conn.execute(orphans)).all() == []
    notes = await conn.execute(
        select(n.reseller_id, n.credit_note_id, n.refund_id, n.conflict_refund_id).where(
            n.reseller_id.in_(resellers)
        )
    )
    assert {(row[0], row[1]): (row[2], row[3]) for row in notes} == book.invoice_notes
    own = await conn.execute(
        select(c.reseller_id, c.number)
        .where(c.reseller_id.in_(resellers), c.issued_by_worker)
        .order_by(c.number)
    )
    numbers: dict[str, list[int]] = defaultdict(list)
    for reseller, number in own:
        numbers[reseller].append(number)
    credited = Counter(
        reseller for (reseller, _), (method, _) in book.refunds.items() if method == "account_credit"
    )
    assert {reseller: len(found) for reseller, found in numbers.items()} == dict(credited)
    assert all(found == list(range(1, len(found) + 1)) for found in numbers.values()), "a gap in credit notes"


async def _assert_money_refunds(conn: AsyncConnection, book: Book) -> None:
    """Each instruction once, ended as the book says (settled by the first settlement, not a later
    one with the same status), each payment's taken amount what its instructions that did not fail
    took, and the inbox's outcome of each input the book names one for."""
    resellers = sorted(book.resellers)
    i, p = money_refund_instructions.c, money_refund_payments.c
    rows = await conn.execute(
        select(
            i.reseller_id,
            i.instruction_id,
            i.payment_id,
            i.amount_minor,
            i.debited_minor,
            i.status,
            i.settlement_ce_id,
        ).where(i.reseller_id.in_(resellers))
    )
    instructions = {(row[0], row[1]): Instruction(*row[2:]) for row in rows}
    assert instructions == book.instructions, "instructions differ from what the book entered"
    rows = await conn.execute(
        select(p.reseller_id, p.account_id, p.payment_id, p.amount_minor, p.taken_minor).where(
            p.reseller_id.in_(resellers)
        )
    )
    assert {tuple(row[:3]): tuple(row[3:]) for row in rows} == book.payments, "payments' amounts or taken"
    n = inbox.c
    rows = await conn.execute(
        select(n.reseller_id, n.topic, n.ce_id, n.outcome).where(
            n.reseller_id.in_(resellers), n.topic.in_(sorted({topic for _, topic, _ in book.outcomes}))
        )
    )
    outcomes = {tuple(row[:3]): row[3] for row in rows}
    assert {key: outcomes.get(key) for key in book.outcomes} == book.outcomes, "inbox outcomes"
