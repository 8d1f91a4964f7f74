"""The crash test's mixed load: one generator per kind of input, each writing its effects in the book.

The commands are chosen so that any order the partitions, the batches and the kills give leads to
the same effects: an account's adjustments are keyed by the account, so they keep their order, and
each stays covered by the credits the ones before it gave, whatever terminations add in between;
what must come first across partitions (a note before its subscription's termination, a refund
before its reversal or its conflicting note) comes in an earlier wave. To serve a new input, write
a generator of the same shape and add it to LOADS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from schemas.topics import Topic
from tests.integration.audit import expected_refund
from tests.integration.crash_book import Account, Book, actor, adjuster, ce_id_of, terminate
from tests.integration.crash_money_refunds import money_refunds
from tests.integration.harness import termination_data, unique
from worker.config.settings import Settings
from worker.engine.outbox import derived_id

Load = Callable[[Sequence[Account], Book], None]

BULK_TERMINATIONS = 1000
PARTITIONS = Settings().topic_partitions


def plain_terminations(accounts: Sequence[Account], book: Book) -> None:
    """Many terminations over few accounts: balances and credit-note numbers contend. Their dates run
    through every rule that pays (inside the window, past it, months later); a few are delivered
    again in the second wave."""
    for index in range(BULK_TERMINATIONS):
        account = accounts[index % len(accounts)]
        day = 2 + index % 60
        data = termination_data(
            account_id=account.account_id,
            reseller_id=account.reseller_id,
            requested_at=f"2021-{4 + day // 30:02d}-{1 + day % 28:02d}T10:00:00+08:00",
        )
        message = terminate(book, 0, data)
        if index % 100 == 0:
            book.send_again(1, message)


def adjustments(accounts: Sequence[Account], book: Book) -> None:
    """Per account: every kind applied and every refusal (contract section 8), then, once the
    account's own terminations are stored, the reversal of one's refund (and refusals to reverse it
    again or to reverse a refund paid as a credit note)."""
    for account in accounts:
        refunded = _termination(account)
        paid = terminate(book, 0, refunded)
        chosen = {"credit_note_id": unique("CN-op"), "amount": "50.00"}
        by_note = terminate(book, 0, _termination(account, credit_note=chosen))
        charge = {"transaction_id": unique("txn"), "amount": "50.00", "description": "March invoice"}
        adjust = adjuster(book, account)
        credit = adjust("credit", "40.00", delta="40.00")
        adjust("correction", "15.50", delta="15.50")
        adjust("correction", "-25.25", delta="-25.25")  # covered by the 55.50 before it
        first_refund = adjust("transaction_refund", "30.00", delta="30.00", transaction=charge)
        adjust("transaction_refund", "20.00", delta="20.00", transaction=charge)  # all that is left
        adjust("transaction_refund", "0.01", refused="exceeds_refundable", transaction=charge)
        undone = adjust(
            "reversal",
            None,
            delta="-30.00",
            reverses=first_refund,
            frees=charge["transaction_id"],
        )
        adjust("transaction_refund", "5.00", delta="5.00", transaction=charge)  # freed by the reversal
        credit_reversal = adjust("reversal", None, delta="-40.00", reverses=credit)  # 15.25 left
        adjust("reversal", None, refused="already_reversed", reverses=credit)
        adjust("reversal", None, refused="not_reversible", reverses=credit_reversal)
        adjust("reversal", None, refused="unknown_target", reverses=unique("nothing"))
        adjust("credit", "5.00", refused="forbidden", actor=actor(account, permissions=["reports:read"]))
        adjust("correction", "0.00", refused="invalid_amount")
        adjust("correction", "-99999.99", refused="insufficient_balance")  # more than it ever holds
        restated = {**charge, "amount": "60.00"}
        adjust("transaction_refund", "1.00", refused="invalid_amount", transaction=restated)
        book.after(1, paid, by_note)
        refund_id = derived_id(account.reseller_id, ce_id_of(paid), "refund")
        back = -expected_refund(refunded)
        adjust("reversal", None, wave=1, delta=str(back), reverses=refund_id, takes_back=refund_id)
        adjust("reversal", None, wave=1, refused="already_reversed", reverses=refund_id)
        noted = derived_id(account.reseller_id, ce_id_of(by_note), "refund")
        adjust("reversal", None, wave=1, refused="not_reversible", reverses=noted)
        for redelivered in (credit, undone, credit_reversal):
            book.send_again(1, book.sent(redelivered))
        book.send_again(1, paid)


def invoice_credit_notes(accounts: Sequence[Account], book: Book) -> None:
    """Per account (contract section 10), each note on another partition than its subscription's
    termination: one note, and two, before the termination (the refund is the notes); a note
    after an automatic refund (one conflict, though sent twice); a note before a termination that
    rules 1-3 refuse (it stays unused); a note for no subscription (recorded, never linked)."""
    for index, account in enumerate(accounts):
        _notes_of(book, account, termination_partition=index % PARTITIONS)


def _notes_of(book: Book, account: Account, termination_partition: int) -> None:
    reseller, note_partition = account.reseller_id, (termination_partition + 1) % PARTITIONS

    def note(wave: int, subscription: str | None, amount: str, at: str = "09:00") -> dict[str, Any]:
        data = _note(account, subscription, amount, at)
        book.send(wave, Topic.CREDIT_NOTE_ISSUED, data, partition=note_partition)
        return data

    def after_notes(notes: list[dict[str, Any]], linked: bool, **fields: Any) -> None:
        """The termination of the notes' subscription, once the notes are stored."""
        book.after(1, *book.notes_sent(notes))
        data = _termination(account, subscription_id=notes[0]["subscription_id"], **fields)
        request = terminate(book, 1, data, linked=notes if linked else None, partition=termination_partition)
        refund_id = derived_id(reseller, ce_id_of(request), "refund") if linked else None
        for each in notes:
            book.invoice_notes[(reseller, each["credit_note_id"])] = (refund_id, None)

    one = note(0, unique("sub"), "30.00")
    book.send(0, Topic.CREDIT_NOTE_ISSUED, one, partition=note_partition)  # the same note, another ce_id
    after_notes([one], linked=True)
    two = unique("sub")
    after_notes([note(0, two, "12.00", "09:00"), note(0, two, "25.50", "10:00")], linked=True)
    after_notes([note(0, unique("sub"), "20.00")], linked=False, allow_refund=False)
    lone = note(0, None, "7.00")
    book.invoice_notes[(reseller, lone["credit_note_id"])] = (None, None)

    refunded = _termination(account)
    paid = terminate(book, 0, refunded, partition=termination_partition)
    book.after(1, paid)
    refund_id = derived_id(reseller, ce_id_of(paid), "refund")
    late = note(1, refunded["subscription_id"], "110.00")
    book.send(1, Topic.CREDIT_NOTE_ISSUED, late, partition=note_partition)  # again: no second conflict
    book.invoice_notes[(reseller, late["credit_note_id"])] = (None, refund_id)
    book.expect(
        Topic.REFUND_CONFLICT_DETECTED,
        reseller,
        late["credit_note_id"],
        refund_id=refund_id,
        subscription_id=refunded["subscription_id"],
        amount=Decimal("110.00"),
    )


LOADS: tuple[Load, ...] = (adjustments, invoice_credit_notes, plain_terminations, money_refunds)


def _termination(account: Account, **fields: Any) -> dict[str, Any]:
    """Asked on day 11 of a yearly SGD 120.00 cycle: a full refund, unless `fields` say otherwise."""
    return termination_data(account_id=account.account_id, reseller_id=account.reseller_id, **fields)


def _note(account: Account, subscription: str | None, amount: str, at: str) -> dict[str, Any]:
    return {
        "credit_note_id": unique("INV-CN"),
        "reseller_id": account.reseller_id,
        "account_id": account.account_id,
        "subscription_id": subscription,
        "amount": amount,
        "currency": "SGD",
        "issued_at": f"2021-04-05T{at}:00+08:00",
        "number": f"CN/2021/{unique('n')}",
    }
