"""The demo's third act: money back to the customer through the payment service (contract section 9).

The simulated payment service (worker/entrypoints/payment_service) runs in-process and answers by
the amount: a charge back that succeeds, one whose amount ends in 13 fails (the credits it took come
back), one ending in 99 is never answered (the worker reports it overdue only after
MONEY_REFUND_TIMEOUT_HOURS, 72, so the demo shows it waiting); and one the rules refuse (a cancelled
payment for a retail account). The table is read back from `money-refund-updated`,
`adjustment-rejected` and `credits-updated`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from schemas.enums import CreditsCause
from schemas.envelope import binary_headers
from schemas.money import format_minor, minor_digits, money_minor
from schemas.money_refunds import AccountType, MoneyRefundMethod, MoneyRefundStatus
from schemas.topics import TOPICS, Topic
from worker.entrypoints.demo_adjustments import Refunded
from worker.entrypoints.payment_service.answers import is_answered
from worker.entrypoints.payment_service.service import PaymentSimulator

_SOURCE = "/refund-worker/entrypoints/demo"
_PAYMENT_UNITS = 120
_SETTLED = frozenset({MoneyRefundStatus.SUCCEEDED.value, MoneyRefundStatus.FAILED.value})
_READ = (Topic.MONEY_REFUND_UPDATED, Topic.ADJUSTMENT_REJECTED, Topic.CREDITS_UPDATED)


@dataclass(frozen=True, slots=True)
class DemoMoneyRefund:
    case: str
    ce_id: str
    data: dict[str, Any]

    @property
    def answered(self) -> bool:
        """Whether the simulated payment service will ever settle it (the rule on its amount)."""
        return is_answered(money_minor(self.data["amount"], self.data["payment"]["currency"]))


def demo_money_refunds(run_id: str, refunded: Refunded) -> list[DemoMoneyRefund]:
    digits = minor_digits(refunded.currency)
    steps = [
        ("charge back of a card payment: succeeds", MoneyRefundMethod.CHARGE_BACK, 3_000, False),
        ("charge back out of the credits, ends in 13: fails", MoneyRefundMethod.CHARGE_BACK, 1_013, True),
        ("charge back ending in 99: never answered", MoneyRefundMethod.CHARGE_BACK, 1_599, False),
        ("cancel payment for a retail account", MoneyRefundMethod.CANCEL_PAYMENT, 2_000, False),
    ]
    return [
        DemoMoneyRefund(
            case,
            f"demo-{run_id}-money-{index}",
            _request(refunded, f"pay-{run_id}-{index}", method, format_minor(minor, digits), from_balance),
        )
        for index, (case, method, minor, from_balance) in enumerate(steps)
    ]


def _request(
    refunded: Refunded, payment_id: str, method: MoneyRefundMethod, amount: str, from_balance: bool
) -> dict[str, Any]:
    digits = minor_digits(refunded.currency)
    paid = format_minor(_PAYMENT_UNITS * 10**digits, digits)
    return {
        "account_id": refunded.account_id,
        "reseller_id": refunded.reseller_id,
        "account_type": AccountType.RETAIL.value,
        "method": method.value,
        "payment": {"payment_id": payment_id, "amount": paid, "currency": refunded.currency},
        "amount": amount,
        "from_balance": from_balance,
        "reason": "demo: the customer asked for the money back",
        "requested_at": datetime.now(UTC).isoformat(),
        "actor": {
            "id": "finance@reseller.example",
            "reseller_id": refunded.reseller_id,
            "permissions": ["finance:manage"],
        },
    }


@dataclass
class MoneyAnswers:
    """What the worker published about the demo's requests, by the request's ce_id."""

    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)
    credits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """credits-updated by instruction_id: taken for the refund, and given back when it failed."""

    def read(self, topic: str, data: dict[str, Any]) -> None:
        if topic == Topic.MONEY_REFUND_UPDATED:
            self.updates[data["request_id"]] = data  # one account, one partition: in order
        elif topic == Topic.ADJUSTMENT_REJECTED:
            self.rejected[data["request_id"]] = data
        elif data.get("cause") in (CreditsCause.MONEY_REFUND, CreditsCause.MONEY_REFUND_FAILED):
            self.credits.setdefault(data["instruction_id"], []).append(data)

    def done(self, request: DemoMoneyRefund) -> bool:
        """Its last answer is in: rejected, settled (with its credits back), or instructed when the
        payment service will never answer it."""
        if request.ce_id in self.rejected:
            return True
        update = self.updates.get(request.ce_id)
        if update is None:
            return False
        if not request.answered:
            return True
        if update["status"] not in _SETTLED:
            return False
        returned = update["status"] == MoneyRefundStatus.FAILED and update["from_balance"]
        return not returned or len(self.credits.get(update["instruction_id"], [])) >= 2


async def run_money_refunds(
    bootstrap_servers: str,
    console: Console,
    refunded: Refunded,
    run_id: str,
    wait_seconds: float = 60.0,
    *,
    group_settings: dict[str, int] | None = None,
) -> None:
    """Publish the act's requests with the simulated payment service running, and print the table.

    `group_settings`: consumer-group timeouts for the simulator (the embedded broker's are shorter).
    """
    requests = demo_money_refunds(run_id, refunded)
    answers = MoneyAnswers()
    consumer = AIOKafkaConsumer(
        *(topic.value for topic in _READ),
        bootstrap_servers=bootstrap_servers,
        group_id=f"refund-worker-demo-money-{run_id}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    simulator = PaymentSimulator(
        bootstrap_servers, group_id=f"payment-simulator-demo-{run_id}", consumer_options=group_settings
    )
    async with simulator:
        await consumer.start()
        try:
            await _publish(bootstrap_servers, requests)
            console.print(f"published {len(requests)} money refunds of {refunded.account_id}; waiting...")
            await asyncio.wait_for(_collect(consumer, requests, answers), wait_seconds)
            with contextlib.suppress(TimeoutError):  # a second more: a late duplicate would show
                await asyncio.wait_for(_collect(consumer, [], answers, forever=True), 1.0)
        finally:
            await consumer.stop()
    console.print(money_table(requests, answers))


async def _publish(bootstrap_servers: str, requests: list[DemoMoneyRefund]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=False)
    await producer.start()
    try:
        ce_type = TOPICS[Topic.MONEY_REFUND_REQUESTED].ce_type
        for request in requests:
            now = datetime.now(UTC)
            headers = binary_headers(event_id=request.ce_id, source=_SOURCE, ce_type=ce_type, time=now)
            await producer.send_and_wait(
                Topic.MONEY_REFUND_REQUESTED.value,
                json.dumps(request.data).encode(),
                key=request.data["account_id"].encode(),
                headers=headers,
            )
    finally:
        await producer.stop()


async def _collect(
    consumer: AIOKafkaConsumer, requests: list[DemoMoneyRefund], answers: MoneyAnswers, forever: bool = False
) -> None:
    while forever or not all(answers.done(request) for request in requests):
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for record in records:
                answers.read(record.topic, json.loads(record.value))


def money_table(requests: list[DemoMoneyRefund], answers: MoneyAnswers) -> Table:
    table = Table(title="Money back to the customer through the payment service, as the worker published it")
    for column in ("case", "outcome", "amount", "credits", "detail"):
        table.add_column(column, no_wrap=column in ("outcome", "amount"))
    for request in requests:
        amount = f"{request.data['amount']} {request.data['payment']['currency']}"
        rejected = answers.rejected.get(request.ce_id)
        update = answers.updates.get(request.ce_id)
        if rejected is not None:
            table.add_row(
                request.case, "rejected", amount, "-", f"{rejected['reason_code']}: {rejected['detail']}"
            )
        elif update is None:
            table.add_row(request.case, "no answer", amount, "-", "-")
        else:
            credits = answers.credits.get(update["instruction_id"], [])
            table.add_row(
                request.case, _outcome(update["status"]), amount, _credits(credits), update["detail"] or "-"
            )
    return table


def _outcome(status: str) -> str:
    return "waiting for the payment service" if status == MoneyRefundStatus.INSTRUCTED else status


def _credits(changes: list[dict[str, Any]]) -> str:
    """`-10.13 SGD, then 10.13 SGD (balance 32.50 SGD)`, or `-` when the credits were not used."""
    if not changes:
        return "-"
    currency = changes[-1]["currency"]
    deltas = ", then ".join(f"{change['delta']} {currency}" for change in changes)
    return f"{deltas} (balance {changes[-1]['balance']} {currency})"
