"""The crash test's money refunds (contract section 9): requests, and the payment service's settlements
published by the test itself, each entered in the book with what it must do.

Per account, in order (its requests are keyed by the account, so they keep their order, and so do
its settlements):

- setup: credits to take from (COVER), and a request that takes a whole payment, then its failed
  settlement: the payment is free again before the first wave;
- first wave: requests instructed, from the credits and not, one on the freed payment (it would
  exceed the payment if the failed instruction still counted) and one just above what that leaves;
  a refusal for every rule that can refuse (forbidden, invalid_amount twice, method_not_allowed,
  exceeds_payment, currency_mismatch, insufficient_balance); redeliveries;
- second wave, once the requests it settles are stored: settlements that succeed, one that fails
  and gives the credits back, the same status again under new ce_ids (nothing changes), a
  redelivery, one more request from the credits; some instructions stay unanswered (instructed).

The debits never take more than COVER, which is stored before any of them is read: every debit is
covered whatever order the topics are read in, and the other loads' debits, each covered by the
credits before it on its own topic, still are (a failure only gives credits back).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from schemas.topics import Topic
from tests.integration.crash_book import (
    Account,
    Book,
    Instruction,
    Setup,
    actor,
    adjuster,
    ce_id_of,
    minor,
    money_change,
    money_refund_update,
)
from tests.integration.crash_support import input_key
from tests.integration.harness import Raw, money_refund_data, settlement_data, unique
from worker.money_refunds.commands import instruction_id

COVER = Decimal("100.00")
"""The credits each account is given in the setup: what its requests take from the credits, at most."""
METHODS = {"retail": "charge_back", "corporate": "cancel_payment"}


def money_refunds(accounts: Sequence[Account], book: Book) -> None:
    """Every account's money refunds, retail and corporate accounts by turns."""
    for index, account in enumerate(accounts):
        desk = Desk(book, account, "corporate" if index % 2 else "retail")
        _refunds_of(desk)


def _refunds_of(desk: Desk) -> None:
    adjuster(desk.book, desk.account)("credit", str(COVER), wave=Setup(0), delta=str(COVER))
    whole = desk.request(Setup(0), "P0", "100.00", "100.00")
    desk.settle(Setup(1), whole, "failed")

    kept = desk.request(0, "P1", "100.00", "30.00")
    given_back = desk.request(0, "P1", "100.00", "50.00", from_balance=True)
    taken = desk.request(0, "P2", "40.00", "40.00", from_balance=True)
    unanswered = desk.request(0, "P3", "25.00", "25.00")
    desk.request(0, "P0", "100.00", "60.00")  # the failed 100.00 no longer counts
    desk.request(0, "P0", "100.00", "40.01", refused="exceeds_payment")  # 40.00 is left
    forbidden = desk.request(
        0, "P1", "100.00", "10.00", refused="forbidden", actor=actor(desk.account, ["reports:read"])
    )
    desk.request(0, "P1", "100.00", "0.00", refused="invalid_amount")
    desk.request(0, "P1", "120.00", "1.00", refused="invalid_amount")  # stated first as 100.00
    desk.request(0, "P1", "100.00", "10.00", method=desk.other_method, refused="method_not_allowed")
    desk.request(0, "P1", "100.00", "20.01", refused="exceeds_payment")  # 20.00 is left
    desk.request(0, "P1", "100.00", "10.00", refused="currency_mismatch", currency="USD")
    desk.request(0, "P4", "100000.00", "99999.99", from_balance=True, refused="insufficient_balance")
    desk.book.send_again(0, kept)
    desk.book.send_again(0, forbidden)

    desk.book.after(1, kept, given_back, taken)
    desk.settle(1, kept, "succeeded")
    failure = desk.settle(1, given_back, "failed")
    desk.settle(1, given_back, "failed")  # again, under another ce_id: the credits come back once
    desk.settle(1, taken, "succeeded")
    desk.settle(1, taken, "succeeded")  # again, under another ce_id
    desk.settle(1, whole, "failed")  # again, a wave after the setup settled it
    desk.book.send_again(1, failure)
    desk.request(1, "P5", "10.00", "10.00", from_balance=True)  # COVER less the 90.00 before it
    desk.book.send_again(1, given_back)
    desk.book.send_again(1, unanswered)


@dataclass
class Desk:
    """One account's money refunds: sends each request or settlement and enters what it must do,
    keeping what each payment has left and what the account took from COVER as it goes."""

    book: Book
    account: Account
    account_type: str
    debited: int = 0
    left: dict[str, int] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return METHODS[self.account_type]

    @property
    def other_method(self) -> str:
        return next(method for method in METHODS.values() if method != self.method)

    def request(
        self,
        wave: int | Setup,
        payment_id: str,
        paid: str,
        amount: str,
        *,
        from_balance: bool = False,
        refused: str | None = None,
        method: str | None = None,
        currency: str = "SGD",
        **fields: Any,
    ) -> Raw:
        """A request to return `amount` of the payment of `paid` (in SGD unless said otherwise):
        refused with that code, or instructed (checked here only as far as the payment goes)."""
        reseller, account = self.account.reseller_id, self.account.account_id
        data = money_refund_data(
            account,
            reseller,
            account_type=self.account_type,
            method=method or self.method,
            payment={"payment_id": payment_id, "amount": paid, "currency": currency},
            amount=amount,
            from_balance=from_balance,
            **fields,
        )
        message = self.book.send(wave, Topic.MONEY_REFUND_REQUESTED, data)
        request_id, left = ce_id_of(message), self.left.get(payment_id, minor(Decimal(paid)))
        if refused is not None:
            if refused in ("exceeds_payment", "insufficient_balance"):  # rule 4 comes before rule 5
                assert (minor(Decimal(amount)) > left) == (refused == "exceeds_payment"), refused
            self.book.expect(
                Topic.ADJUSTMENT_REJECTED, reseller, request_id, kind="money_refund", reason_code=refused
            )
            self.book.outcomes[input_key(message)] = "rejected"
            return message
        value = Decimal(amount)
        assert minor(value) <= left, f"{amount} exceeds what {payment_id} has left"
        self.left[payment_id] = left - minor(value)
        instruction = instruction_id(reseller, request_id)
        what = {"request_id": request_id, "payment_id": payment_id, "method": self.method, "amount": value}
        self.book.expect(
            Topic.PAYMENT_REFUND_INSTRUCTED,
            reseller,
            instruction,
            currency=currency,
            account_id=account,
            **what,
        )
        self.book.expect(
            Topic.MONEY_REFUND_UPDATED,
            reseller,
            money_refund_update(instruction, "instructed"),
            status="instructed",
            from_balance=from_balance,
            **what,
        )
        debit = minor(value) if from_balance else 0
        if from_balance:
            self.debited += debit
            assert self.debited <= minor(COVER), "the debits take more than COVER: not covered in any order"
            self._credits(instruction, "money_refund", -value)
        self.book.instructions[(reseller, instruction)] = Instruction(payment_id, minor(value), debit)
        self._payment(payment_id, paid)
        self.book.outcomes[input_key(message)] = "instructed"
        return message

    def settle(self, wave: int | Setup, request: Raw, status: str) -> Raw:
        """The payment service's settlement of the request's instruction, under a ce_id of its own:
        the first settles it, a later one (the same status) changes nothing."""
        reseller = self.account.reseller_id
        instruction = instruction_id(reseller, ce_id_of(request))
        detail = f"the gateway says {status} ({unique('ref')})"
        data = settlement_data(instruction, self.account.account_id, reseller, status, detail=detail)
        message = self.book.send(wave, Topic.PAYMENT_REFUND_SETTLED, data)
        entered = self.book.instructions[(reseller, instruction)]
        if entered.status != "instructed":
            assert entered.status == status, "the other status is a dead letter: not in this load"
            self.book.outcomes[input_key(message)] = "already_settled"
            return message
        self.book.instructions[(reseller, instruction)] = replace(
            entered, status=status, settled_by=ce_id_of(message)
        )
        self.book.outcomes[input_key(message)] = status
        asked = json.loads(request.value or b"")
        payment = asked["payment"]
        self.book.expect(
            Topic.MONEY_REFUND_UPDATED,
            reseller,
            money_refund_update(instruction, status),
            status=status,
            detail=detail,
            request_id=ce_id_of(request),
            payment_id=payment["payment_id"],
            amount=Decimal(asked["amount"]),
            from_balance=asked["from_balance"],
        )
        if status == "failed":
            self.left[payment["payment_id"]] += entered.amount_minor
            self._payment(payment["payment_id"], payment["amount"])
            if asked["from_balance"]:
                self._credits(instruction, "money_refund_failed", Decimal(asked["amount"]))
        return message

    def _credits(self, instruction: str, cause: str, delta: Decimal) -> None:
        change = money_change(instruction, cause)
        reseller = self.account.reseller_id
        self.book.expect(
            Topic.CREDITS_UPDATED, reseller, change, cause=cause, delta=delta, instruction_id=instruction
        )
        self.book.credit(self.account, change, delta)

    def _payment(self, payment_id: str, paid: str) -> None:
        amount = minor(Decimal(paid))
        key = (self.account.reseller_id, self.account.account_id, payment_id)
        self.book.payments[key] = (amount, amount - self.left[payment_id])
