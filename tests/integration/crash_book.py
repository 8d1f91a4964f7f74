"""What a crash test's load must leave behind, written down by the load as it is made.

Each input is sent into a wave of the book, and the effects the contract's rules give it are entered
with it: the one event each effect has on an output topic (and fields it carries), each account's
ledger entries (and so its balance and version), each refund, each invoice-app note's use, each
money refund's instruction and payment. The audit (tests/integration/crash_audit.py) then holds the
worker to the book: every entry exactly once, nothing else.

An input a wave's inputs need on another topic (the credits a money refund takes, an instruction
a settlement ends) can be sent into a setup stage instead: stored before the first wave is
published, and not amid kills (each later wave costs the kill loop lives; a stage does not).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from schemas.topics import Topic
from tests.integration.audit import expected_refund
from tests.integration.crash_support import InputKey, Wave, input_key
from tests.integration.harness import Raw, adjustment_data, event, unique
from worker.engine.outbox import derived_id

Effect = tuple[str, str]
"""(reseller_id, the id an effect is known by: its request, adjustment, refund or credit note)."""

WAVES = 2
SETUP_STAGES = 2


@dataclass(frozen=True)
class Account:
    reseller_id: str
    account_id: str


@dataclass(frozen=True)
class Setup:
    """A stage of the setup, in place of a wave's number: its inputs are all stored before the next
    stage (or the first wave) is published."""

    stage: int


@dataclass(frozen=True)
class Instruction:
    """A money refund's instruction as money_refund_instructions must end up holding it."""

    payment_id: str
    amount_minor: int
    debited_minor: int
    status: str = "instructed"
    settled_by: str | None = None
    """The ce_id of the settlement that settled it (not a later one with the same status)."""


def money_change(instruction: str, cause: str) -> str:
    """How the crash test names a money refund's change of the credits (its debit, cause money_refund,
    or the credits given back, money_refund_failed): an instruction has at most one of each."""
    return f"{instruction}/{cause}"


def money_refund_update(instruction: str, status: str) -> str:
    """How the crash test names a money-refund-updated: an instruction has at most one per status."""
    return f"{instruction}/{status}"


def minor(amount: Decimal) -> int:
    return int(amount * 100)  # the load is in SGD: two fraction digits


def ce_id_of(message: Raw) -> str:
    return input_key(message)[2]


@dataclass
class Book:
    waves: list[Wave] = field(default_factory=lambda: [Wave() for _ in range(WAVES)])
    inputs: set[InputKey] = field(default_factory=set)
    """Each stored once in the inbox, however often delivered."""
    outputs: dict[str, dict[Effect, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    """topic -> effect -> fields its one event carries (money as Decimal)."""
    ledger: dict[Account, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    """The entries of each account's ledger: the id of the change (adjustment or refund) -> its delta."""
    refunds: dict[Effect, tuple[str, int]] = field(default_factory=dict)
    """refund_id -> (method, amount in minor units)."""
    terminations: set[Effect] = field(default_factory=set)
    """(reseller, request_id) of each termination stored."""
    invoice_notes: dict[Effect, tuple[str | None, str | None]] = field(default_factory=dict)
    """The invoice app's note -> (the refund it is, the refund it conflicts with)."""
    setup: list[list[Raw]] = field(default_factory=lambda: [[] for _ in range(SETUP_STAGES)])
    instructions: dict[Effect, Instruction] = field(default_factory=dict)
    payments: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    """(reseller, account, payment) -> (its amount, what its instructions that did not fail took)."""
    outcomes: dict[InputKey, str] = field(default_factory=dict)
    """The inbox's outcome of the inputs that name one (the money refunds' so far)."""

    def __repr__(self) -> str:  # not the thousands of inputs in a failure's traceback
        return f"Book({len(self.inputs)} inputs in {len(self.waves)} waves)"

    @property
    def resellers(self) -> set[str]:
        return {reseller for reseller, _, _ in self.inputs}

    def send(
        self,
        wave: int | Setup,
        topic: Topic,
        data: dict[str, Any],
        *,
        ce_id: str | None = None,
        partition: int | None = None,
    ) -> Raw:
        message = replace(event(topic, data, ce_id or unique("ce")), partition=partition)
        self._messages_of(wave).append(message)
        self.inputs.add(input_key(message))
        return message

    def send_again(self, wave: int | Setup, message: Raw) -> None:
        """The same record again, ce_id and all: a redelivery, which must change nothing."""
        self._messages_of(wave).append(message)

    def _messages_of(self, wave: int | Setup) -> list[Raw]:
        return self.setup[wave.stage] if isinstance(wave, Setup) else self.waves[wave].messages

    def sent(self, ce_id: str) -> Raw:
        """The message sent with this ce_id (the first, if several were)."""
        return next(m for wave in self.waves for m in wave.messages if ce_id_of(m) == ce_id)

    def notes_sent(self, notes: list[dict[str, Any]]) -> list[Raw]:
        """Every message that sent one of these credit notes, whatever its ce_id."""
        ids = {note["credit_note_id"] for note in notes}
        return [
            m
            for wave in self.waves
            for m in wave.messages
            if m.topic == Topic.CREDIT_NOTE_ISSUED and json.loads(m.value or b"").get("credit_note_id") in ids
        ]

    def after(self, wave: int, *earlier: Raw) -> None:
        """Publish `wave` only once these inputs of earlier waves are stored."""
        self.waves[wave].waits_for.update(input_key(message) for message in earlier)

    def expect(self, topic: Topic, reseller_id: str, effect_id: str, **fields: Any) -> None:
        effects = self.outputs[topic.value]
        assert (reseller_id, effect_id) not in effects, f"{effect_id} entered twice on {topic}"
        effects[(reseller_id, effect_id)] = fields

    def credit(self, account: Account, change_id: str, delta: Decimal) -> None:
        assert change_id not in self.ledger[account], f"{change_id} entered twice in the ledger"
        self.ledger[account][change_id] = minor(delta)

    def ordered_waves(self) -> list[Wave]:
        """The waves, each with the inputs a later wave waits for first: they are stored early, in
        the first lives of the worker, so the later waves meet kills too."""
        waited = set().union(*(wave.waits_for for wave in self.waves))
        return [
            Wave(sorted(wave.messages, key=lambda m: input_key(m) not in waited), set(wave.waits_for))
            for wave in self.waves
        ]


def terminate(
    book: Book,
    wave: int,
    data: dict[str, Any],
    *,
    linked: list[dict[str, Any]] | None = None,
    partition: int | None = None,
) -> Raw:
    """A termination request and what it must do: the policy's refund as account credit (or as the
    credit note the operator chose), or, when `linked` notes of its subscription came first, a refund
    that is those notes (contract section 10) and moves no credits."""
    message = book.send(wave, Topic.TERMINATION_REQUESTED, data, partition=partition)
    reseller, request = data["reseller_id"], ce_id_of(message)
    account = Account(reseller, data["account_id"])
    book.terminations.add((reseller, request))
    if linked:
        amount, method = sum(Decimal(note["amount"]) for note in linked), "credit_note"
    else:
        amount = expected_refund(data)
        method = "credit_note" if data["credit_note"] else "account_credit"
    book.expect(
        Topic.SUBSCRIPTION_TERMINATED,
        reseller,
        request,
        subscription_id=data["subscription_id"],
        cause="customer_request",
        refund_amount=amount,
    )
    if amount == 0:
        return message
    refund_id = derived_id(reseller, request, "refund")
    refund: dict[str, Any] = {"refund_id": refund_id, "amount": amount, "method": method}
    if linked:
        refund.update(auto_linked=True, credit_notes=[note["credit_note_id"] for note in linked])
    book.expect(Topic.REFUND_ISSUED, reseller, request, **refund)
    book.refunds[(reseller, refund_id)] = (method, minor(amount))
    if method == "account_credit":
        book.expect(Topic.CREDITS_UPDATED, reseller, refund_id, delta=amount, cause="refund")
        book.credit(account, refund_id, amount)
    return message


def actor(account: Account, permissions: list[str]) -> dict[str, Any]:
    """Someone acting for the account's reseller with these permissions."""
    return {"id": "clerk@reseller.example", "reseller_id": account.reseller_id, "permissions": permissions}


def adjuster(book: Book, account: Account) -> Callable[..., str]:
    """`adjust(kind, amount, delta=... | refused=..., wave=0, **fields)`: sends one adjustment of the
    account and enters what it must do; returns its adjustment_id. A reversal names the transaction
    whose refund it `frees`, or the termination refund it `takes_back`."""

    def adjust(
        kind: str,
        amount: str | None,
        *,
        delta: str | None = None,
        refused: str | None = None,
        wave: int | Setup = 0,
        frees: str | None = None,
        takes_back: str | None = None,
        **fields: Any,
    ) -> str:
        data = adjustment_data(account.account_id, account.reseller_id, kind, amount=amount, **fields)
        adjustment_id = unique("adj")
        book.send(wave, Topic.BALANCE_ADJUSTMENT_REQUESTED, data, ce_id=adjustment_id)
        reseller = account.reseller_id
        if refused is not None:
            book.expect(Topic.ADJUSTMENT_REJECTED, reseller, adjustment_id, kind=kind, reason_code=refused)
            return adjustment_id
        assert delta is not None, "an applied adjustment names its delta"
        change, transaction = Decimal(delta), data["transaction"]
        book.expect(
            Topic.BALANCE_ADJUSTED,
            reseller,
            adjustment_id,
            kind=kind,
            delta=change,
            reverses=data["reverses"],
            transaction_id=frees or (transaction and transaction["transaction_id"]),
        )
        book.expect(
            Topic.CREDITS_UPDATED, reseller, adjustment_id, cause=kind, delta=change, refund_id=takes_back
        )
        book.credit(account, adjustment_id, change)
        return adjustment_id

    return adjust
