"""The demo's second act: an operator adjusts the credits of an account the seed just refunded.

One of each kind, as the help centers tell them (a goodwill credit, a partial refund of a
transaction, the reversal of a wrong entry and of the termination's refund, a correction down), and
two the rules refuse (more of the transaction than is left; a clerk without the Finance
permission). They are keyed by the account, so they arrive in this order; the table is read back
from `balance-adjusted` and `adjustment-rejected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from schemas.envelope import binary_headers
from schemas.topics import TOPICS, Topic

_SOURCE = "/refund-worker/entrypoints/demo"
_FINANCE = ["finance:manage"]


@dataclass(frozen=True, slots=True)
class Refunded:
    """A refund the seed's termination credited: what the operator's last step takes back."""

    refund_id: str
    account_id: str
    reseller_id: str
    currency: str


@dataclass(frozen=True, slots=True)
class DemoAdjustment:
    case: str
    ce_id: str
    data: dict[str, Any]


def demo_adjustments(run_id: str, refunded: Refunded) -> list[DemoAdjustment]:
    transaction = {"transaction_id": f"txn-{run_id}", "amount": "45.00", "description": "SIP minutes, April"}
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("credit: goodwill for an outage (003)", "credit", {"amount": "5.00"}),
        (
            "transaction refund: 20.00 of a 45.00 charge (004)",
            "transaction_refund",
            _refund(transaction, "20.00"),
        ),
        ("transaction refund: 30.00 more of it", "transaction_refund", _refund(transaction, "30.00")),
        ("reversal: that 20.00 was the wrong charge (004)", "reversal", {"reverses": f"demo-{run_id}-adj-1"}),
        ("reversal: the termination's refund", "reversal", {"reverses": refunded.refund_id}),
        ("correction: 2.50 down (004)", "correction", {"amount": "-2.50"}),
    ]
    adjustments = [
        DemoAdjustment(case, f"demo-{run_id}-adj-{index}", _data(refunded, kind, fields, _FINANCE))
        for index, (case, kind, fields) in enumerate(steps)
    ]
    clerk = _data(refunded, "credit", {"amount": "1.00"}, ["finance:view"], actor="clerk@reseller.example")
    adjustments.append(DemoAdjustment("credit by a clerk without Finance", f"demo-{run_id}-adj-clerk", clerk))
    return adjustments


def _refund(transaction: dict[str, str], amount: str) -> dict[str, Any]:
    return {"amount": amount, "transaction": transaction}


def _data(
    refunded: Refunded,
    kind: str,
    fields: dict[str, Any],
    permissions: list[str],
    actor: str = "finance@reseller.example",
) -> dict[str, Any]:
    return {
        "account_id": refunded.account_id,
        "reseller_id": refunded.reseller_id,
        "currency": refunded.currency,
        "kind": kind,
        "amount": None,
        "transaction": None,
        "reverses": None,
        "reason": "demo: " + kind.replace("_", " "),
        "requested_at": datetime.now(UTC).isoformat(),
        "actor": {"id": actor, "reseller_id": refunded.reseller_id, "permissions": permissions},
        **fields,
    }


async def run_adjustments(
    bootstrap_servers: str, console: Console, refunded: Refunded, run_id: str, wait_seconds: float = 60.0
) -> None:
    adjustments = demo_adjustments(run_id, refunded)
    consumer = AIOKafkaConsumer(
        Topic.BALANCE_ADJUSTED.value,
        Topic.ADJUSTMENT_REJECTED.value,
        bootstrap_servers=bootstrap_servers,
        group_id=f"refund-worker-demo-adjustments-{run_id}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await _publish(bootstrap_servers, adjustments)
        console.print(f"published {len(adjustments)} adjustments of {refunded.account_id}; waiting...")
        answers: dict[str, tuple[str, dict[str, Any]]] = {}
        with contextlib.suppress(TimeoutError):  # the table says which got no answer
            await asyncio.wait_for(_answers(consumer, {a.ce_id for a in adjustments}, answers), wait_seconds)
    finally:
        await consumer.stop()
    console.print(_table(adjustments, answers))


async def _publish(bootstrap_servers: str, adjustments: list[DemoAdjustment]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=False)
    await producer.start()
    try:
        ce_type = TOPICS[Topic.BALANCE_ADJUSTMENT_REQUESTED].ce_type
        for adjustment in adjustments:
            now = datetime.now(UTC)
            headers = binary_headers(event_id=adjustment.ce_id, source=_SOURCE, ce_type=ce_type, time=now)
            await producer.send_and_wait(
                Topic.BALANCE_ADJUSTMENT_REQUESTED.value,
                json.dumps(adjustment.data).encode(),
                key=adjustment.data["account_id"].encode(),
                headers=headers,
            )
    finally:
        await producer.stop()


async def _answers(
    consumer: AIOKafkaConsumer, expected: set[str], answers: dict[str, tuple[str, dict[str, Any]]]
) -> None:
    """Each adjustment's answer into `answers`: (topic, data), by the adjustment's id."""
    while not expected <= answers.keys():
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for record in records:
                data = json.loads(record.value)
                answered = data.get("adjustment_id") or data.get("request_id")
                if answered in expected:
                    answers[answered] = (record.topic, data)


def _table(adjustments: list[DemoAdjustment], answers: dict[str, tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title="An operator adjusts the account's credits, as the worker published it")
    for column in ("case", "outcome", "change", "balance", "version", "reason"):
        table.add_column(column)
    for adjustment in adjustments:
        if adjustment.ce_id not in answers:
            table.add_row(adjustment.case, "no answer", "-", "-", "-", "see balance-adjustment-requested-dlt")
            continue
        topic, data = answers[adjustment.ce_id]
        if topic == Topic.ADJUSTMENT_REJECTED:
            table.add_row(
                adjustment.case, "rejected", "-", "-", "-", f"{data['reason_code']}: {data['detail']}"
            )
            continue
        currency = data["currency"]
        change, balance = f"{data['delta']} {currency}", f"{data['balance']} {currency}"
        table.add_row(
            adjustment.case, "applied", change, balance, str(data["balance_version"]), data["reason"]
        )
    return table
