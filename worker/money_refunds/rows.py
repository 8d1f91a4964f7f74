"""The rows a batch of money refund requests or settlements writes, gathered before any is written,
shared by worker/money_refunds/plan.py and settlement_plan.py. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.outputs import CreditsCause
from worker.db.balances import AccountKey
from worker.domain.balance import BalanceCursor
from worker.domain.money_refund_facts import MoneyRefundFacts
from worker.engine.outbox import OutboxEvent
from worker.money_refunds.commands import StoredInstruction

PaymentKey = tuple[str, str, str]
"""(reseller_id, account_id, payment_id): a payment is known per account, as a transaction is."""
Owner = tuple[str, str]
"""(reseller_id, account_id): whose facts."""


@dataclass
class MoneyRefundRows:
    """The rows a batch of requests or of settlements will write, gathered before any is written."""

    now: datetime
    inbox: list[dict[str, Any]] = field(default_factory=list)
    instructions: list[dict[str, Any]] = field(default_factory=list)
    """New instructions."""
    settled: list[dict[str, Any]] = field(default_factory=list)
    """Instructions settled now, whole, with how they ended."""
    payments: list[dict[str, Any]] = field(default_factory=list)
    """Each payment instructed from or freed, as it stands after the batch."""
    ledger: list[dict[str, Any]] = field(default_factory=list)
    events: list[OutboxEvent] = field(default_factory=list)
    balance_changes: dict[AccountKey, list[int]] = field(default_factory=dict)
    """The deltas, in order, of each balance."""
    balances_before: dict[AccountKey, tuple[int, int]] = field(default_factory=dict)
    """(balance, version) of each changed balance before the batch: (0, 0) for one it starts."""
    cursors: dict[AccountKey, BalanceCursor] = field(default_factory=dict)

    def change_balance(
        self, key: AccountKey, stored: Mapping[AccountKey, tuple[int, int]], delta: int
    ) -> tuple[int, int]:
        """The balance and version after `delta`, the next change of the balance `key`, whose (balance,
        version) before the batch is in `stored` (absent: one the batch starts)."""
        if key not in self.cursors:
            self.balances_before[key] = stored.get(key, (0, 0))
            self.cursors[key] = BalanceCursor(*self.balances_before[key])
        self.balance_changes.setdefault(key, []).append(delta)
        return self.cursors[key].apply(delta)

    def add_payments(self, after: Mapping[Owner, MoneyRefundFacts], touched: Iterable[PaymentKey]) -> None:
        for reseller, account, payment_id in sorted(set(touched)):
            facts = after[(reseller, account)].payments[payment_id]
            self.payments.append(
                {
                    "reseller_id": reseller,
                    "account_id": account,
                    "payment_id": payment_id,
                    "currency": facts.currency.code,
                    "amount_minor": facts.amount.minor,
                    "taken_minor": facts.taken,
                    "updated_at": self.now,
                }
            )


def ledger_row(
    instruction: StoredInstruction, delta: int, balance: int, version: int, event_id: str, now: datetime
) -> dict[str, Any]:
    """A money refund's entry of balance_ledger: the debit, or the credits given back."""
    return {
        "reseller_id": instruction.reseller_id,
        "account_id": instruction.account_id,
        "currency": instruction.currency.code,
        "balance_version": version,
        "delta_minor": delta,
        "balance_minor": balance,
        "cause": (CreditsCause.MONEY_REFUND if delta < 0 else CreditsCause.MONEY_REFUND_FAILED).value,
        "refund_id": None,
        "event_id": event_id,
        "changed_at": now,
        "instruction_id": instruction.instruction_id,
    }


def instruction_row(instruction: StoredInstruction) -> dict[str, Any]:
    """Its row of money_refund_instructions, as instructed (a settlement adds how it ended)."""
    return {
        "reseller_id": instruction.reseller_id,
        "instruction_id": instruction.instruction_id,
        "request_id": instruction.request_id,
        "account_id": instruction.account_id,
        "payment_id": instruction.payment_id,
        "method": instruction.method.value,
        "currency": instruction.currency.code,
        "amount_minor": instruction.amount.minor,
        "debited_minor": instruction.debited,
        "status": instruction.state.value,
        "reason": instruction.reason,
        "requested_by": instruction.requested_by,
        "requested_at": instruction.requested_at,
        "instructed_at": instruction.instructed_at,
        "due_at": instruction.due_at,
        "updated_at": instruction.instructed_at,
    }
