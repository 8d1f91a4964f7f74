"""What the metrics say after the pipeline and the decisions report to them (no broker, no database)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.envelope import binary_headers
from schemas.errors import NotJson
from schemas.topics import CeType
from worker.domain.never_twice import Rejection, RejectionCode
from worker.domain.policy import RefundPolicy, decide_refund
from worker.engine.outage import RetryPolicy
from worker.engine.parsing import termination_command
from worker.engine.pipeline import Applied, BatchPipeline
from worker.engine.records import InboundRecord, OutboundRecord
from worker.ops.metrics import WorkerMetrics
from worker.terminations.commands import CommandResult, Outcome

TOPIC = "termination-requested"


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def request_record(offset: int = 0, **fields: Any) -> InboundRecord:
    data = {
        "subscription_id": f"sub-{offset}",
        "account_id": "acc-1",
        "reseller_id": "res-1",
        "cycle_start": "2021-04-01",
        "cycle_months": 12,
        "amount_paid": "120.00",
        "currency": "SGD",
        "allow_refund": True,
        "requested_at": "2021-04-12T10:00:00+00:00",
        "requested_by": "operator",
        "reason": "asked",
        "credit_note": None,
        **fields,
    }
    headers = binary_headers(
        event_id=f"ce-{offset}", source="/tests", ce_type=CeType.TERMINATION_REQUESTED, time=datetime.now(UTC)
    )
    return InboundRecord(TOPIC, 0, offset, b"key", json.dumps(data).encode(), tuple(headers), 0)


def terminated(offset: int = 0, **fields: Any) -> CommandResult:
    command = termination_command(request_record(offset, **fields))
    return CommandResult(command, Outcome.TERMINATED, decision=decide_refund(command.terms, RefundPolicy()))


def test_refunds_are_counted_per_currency_and_method_in_major_units() -> None:
    metrics = WorkerMetrics()
    metrics.record_decisions(
        [
            terminated(1, amount_paid="12.345", currency="KWD"),
            terminated(2, amount_paid="1200", currency="JPY"),
            terminated(3, amount_paid="1200", currency="JPY"),
            terminated(4, credit_note={"credit_note_id": "cn-9", "amount": "50.00"}),
        ]
    )
    assert sample(metrics, "refund_worker_refunds_issued_total", currency="KWD", method="account_credit") == 1
    assert sample(metrics, "refund_worker_refunded_amount_total", currency="KWD") == 12.345
    assert sample(metrics, "refund_worker_refunds_issued_total", currency="JPY", method="account_credit") == 2
    assert sample(metrics, "refund_worker_refunded_amount_total", currency="JPY") == 2400
    assert sample(metrics, "refund_worker_refunds_issued_total", currency="SGD", method="credit_note") == 1
    assert sample(metrics, "refund_worker_refunded_amount_total", currency="SGD") == 50
    assert sample(metrics, "refund_worker_decisions_total", outcome="terminated") == 4


def test_a_batchs_refunds_are_summed_exactly_before_they_become_a_float() -> None:
    metrics = WorkerMetrics()
    metrics.record_decisions([terminated(i, amount_paid="0.10", currency="SGD") for i in range(3)])
    assert sample(metrics, "refund_worker_refunded_amount_total", currency="SGD") == 0.3  # not 0.1+0.1+0.1
    assert sample(metrics, "refund_worker_refunds_issued_total", currency="SGD", method="account_credit") == 3


def test_decisions_without_a_refund_count_as_decisions_only() -> None:
    metrics = WorkerMetrics()
    outside_cycle = terminated(1, requested_at="2023-01-01T00:00:00+00:00")
    rejected = CommandResult(
        outside_cycle.command, Outcome.REJECTED, rejection=Rejection(RejectionCode.ALREADY_TERMINATED, "")
    )
    duplicate = CommandResult(outside_cycle.command, Outcome.DUPLICATE)
    metrics.record_decisions([outside_cycle, rejected, duplicate])
    assert (
        sample(metrics, "refund_worker_refunds_issued_total", currency="SGD", method="account_credit") is None
    )
    assert sample(metrics, "refund_worker_refunded_amount_total", currency="SGD") is None
    for outcome in ("terminated", "rejected", "duplicate"):
        assert sample(metrics, "refund_worker_decisions_total", outcome=outcome) == 1


class Connection:
    async def execute(self, statement: object, parameters: object = None) -> None:
        return None


class Database:
    """Stands in for the engine: refuses the first `down_for` transactions, as a database away would."""

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Connection]:
        if self.down_for > 0:
            self.down_for -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        yield Connection()

    connect = begin


def parse(record: InboundRecord) -> str:
    if record.value == b"not json":
        raise NotJson("the value is not JSON")
    return str(record.offset)


async def apply(conn: Connection, commands: Sequence[str]) -> Applied:
    return Applied([])


async def acknowledge(records: Sequence[OutboundRecord]) -> None:
    return None


def plain_record(offset: int, value: bytes = b"{}") -> InboundRecord:
    return InboundRecord(TOPIC, 1, offset, b"key", value, (), 0)


async def test_pipeline_reports_consumed_failed_and_dead_lettered_messages() -> None:
    metrics = WorkerMetrics()
    pipeline = BatchPipeline(
        engine=Database(down_for=2),
        parse=parse,
        apply=apply,
        send_all=acknowledge,
        consumer_group="group",
        retry=RetryPolicy(backoff_seconds=0.0),
        observer=metrics.observer(),
    )
    await pipeline.process([plain_record(10), plain_record(11, b"not json"), plain_record(12)])

    assert sample(metrics, "refund_worker_messages_consumed_total", topic=TOPIC) == 3
    # two failed attempts at the two good messages while the database was away
    assert sample(metrics, "refund_worker_messages_failed_total", topic=TOPIC, kind="infrastructure") == 4
    assert sample(metrics, "refund_worker_messages_failed_total", topic=TOPIC, kind="poison") == 1
    assert sample(metrics, "refund_worker_dead_lettered_total", topic=TOPIC, reason="not_json") == 1
    assert sample(metrics, "refund_worker_batch_seconds_count", topic=TOPIC) == 1


@pytest.mark.parametrize(
    "name",
    [
        "refund_worker_outbox_backlog",
        "refund_worker_outbox_oldest_age_seconds",
        "refund_worker_expiry_timers_due",
    ],
)
def test_gauges_of_shared_state_are_exported_before_the_first_scrape_reads_them(name: str) -> None:
    assert sample(WorkerMetrics(), name) == 0


def test_each_worker_has_a_registry_of_its_own() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()
    first.decisions.labels("terminated").inc()
    assert sample(first, "refund_worker_decisions_total", outcome="terminated") == 1
    assert sample(second, "refund_worker_decisions_total", outcome="terminated") == 0
