"""`refund-worker run --demo`: the seed's examples through the real worker, outcomes as a table.

Every request goes over the broker like a portal's would; the table is read back from the output
topics, so what it shows is what the invoice and notification services would receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from schemas.envelope import binary_headers
from schemas.topics import OUTPUT_TOPICS, TOPICS, Topic

SEED_REQUESTS = Path(__file__).with_name("seed_requests.jsonl")
_SOURCE = "/refund-worker/demo"


@dataclass(frozen=True, slots=True)
class DemoRequest:
    case: str
    ce_id: str
    data: dict[str, Any]


def demo_requests(run_id: str) -> list[DemoRequest]:
    """The seed's examples, plus the cases the worker must refuse to do twice."""
    seeds = [json.loads(line) for line in SEED_REQUESTS.read_text().splitlines() if line.strip()]
    requests = []
    for index, data in enumerate(seeds):
        data["subscription_id"] = f"{data['subscription_id']}-{run_id}"
        asked_on = data["requested_at"][:10]
        case = f"{data['product']}, from {data['cycle_start']}, asked {asked_on}"
        requests.append(DemoRequest(case, f"demo-{run_id}-{index}", data))
    first = requests[0]
    with_note = next(request.data for request in requests if request.data.get("credit_note"))
    reused_note = dict(with_note, subscription_id=f"sub-another-{run_id}")
    return [
        *requests,
        DemoRequest("the first request delivered again (same ce_id)", first.ce_id, first.data),
        DemoRequest("the first subscription asked again (new ce_id)", f"demo-{run_id}-again", first.data),
        DemoRequest("another subscription, same credit note", f"demo-{run_id}-note-again", reused_note),
    ]


async def run_demo(bootstrap_servers: str, console: Console, wait_seconds: float = 60.0) -> None:
    run_id = uuid.uuid4().hex[:6]
    requests = demo_requests(run_id)
    expected = {request.ce_id for request in requests}
    consumer = AIOKafkaConsumer(
        *(topic.value for topic in OUTPUT_TOPICS),
        bootstrap_servers=bootstrap_servers,
        group_id=f"refund-worker-demo-{run_id}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await _publish(bootstrap_servers, requests)
        console.print(f"published {len(requests)} termination requests; waiting for the worker...")
        counts: Counter[str] = Counter()
        outputs = await asyncio.wait_for(_collect(consumer, expected, counts), wait_seconds)
        await _collect_stragglers(consumer, expected, counts)
    finally:
        await consumer.stop()
    console.print(_table(requests, outputs, counts))


async def _collect_stragglers(consumer: AIOKafkaConsumer, expected: set[str], counts: Counter[str]) -> None:
    """A second of listening more, so a duplicate event published late would be counted too."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_collect(consumer, expected | {"(never)"}, counts), 1.0)


async def _publish(bootstrap_servers: str, requests: list[DemoRequest]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=False)
    await producer.start()
    try:
        ce_type = TOPICS[Topic.TERMINATION_REQUESTED].ce_type
        for request in requests:
            now = datetime.now(UTC)
            headers = binary_headers(event_id=request.ce_id, source=_SOURCE, ce_type=ce_type, time=now)
            key = request.data["subscription_id"].encode()
            value = json.dumps(request.data).encode()
            await producer.send_and_wait(Topic.TERMINATION_REQUESTED.value, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def _collect(
    consumer: AIOKafkaConsumer, expected: set[str], counts: Counter[str]
) -> dict[str, dict[str, Any]]:
    """Output data by "request ce_id/topic" until every request has its final answer; counts every
    event of this run per topic (credits-updated names the refund, not the request)."""
    outputs: dict[str, dict[str, Any]] = {}
    refunds: set[str] = set()
    answered: set[str] = set()
    while not expected <= answered:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                data = json.loads(record.value)
                request_id = data.get("request_id")
                if request_id in expected and record.topic == Topic.REFUND_ISSUED:
                    refunds.add(data["refund_id"])
                if request_id in expected or data.get("refund_id") in refunds:
                    counts[record.topic] += 1
                if request_id is None:
                    continue
                outputs[f"{request_id}/{record.topic}"] = data
                if record.topic in (Topic.SUBSCRIPTION_TERMINATED, Topic.TERMINATION_REJECTED):
                    answered.add(request_id)
    return outputs


def _table(requests: list[DemoRequest], outputs: dict[str, dict[str, Any]], counts: Counter[str]) -> Table:
    published = ", ".join(f"{counts[topic.value]} {topic.value}" for topic in OUTPUT_TOPICS)
    table = Table(
        title="The seed's examples, as the worker published them",
        caption=f"published, in all: {published}",
    )
    for column in ("case", "outcome", "refund", "rule or reason", "months", "method", "credit note"):
        table.add_column(column)
    seen: set[str] = set()
    for request in requests:
        if request.ce_id in seen:
            table.add_row(request.case, "no second effect", *["-"] * 5)
            continue
        seen.add(request.ce_id)
        table.add_row(request.case, *_outcome(request.ce_id, outputs))
    return table


def _outcome(ce_id: str, outputs: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    terminated = outputs.get(f"{ce_id}/{Topic.SUBSCRIPTION_TERMINATED}")
    rejected = outputs.get(f"{ce_id}/{Topic.TERMINATION_REJECTED}")
    refund = outputs.get(f"{ce_id}/{Topic.REFUND_ISSUED}")
    if rejected:
        return ("rejected", "-", rejected["reason_code"], "-", "-", "-")
    if terminated is None:
        return ("no answer", "-", "-", "-", "-", "-")
    amount = f"{terminated['refund_amount']} {terminated['currency']}"
    why = terminated["rule"] or terminated["no_refund_reason"]
    if refund is None:
        return ("terminated", amount, why, "0", "-", "-")
    note = refund["credit_note"]
    number = f"no. {note['number']}" if note["number"] else f"{note['credit_note_id']} (sent earlier)"
    months = f"{refund['months_refunded']}/{refund['cycle_months']}"
    return ("terminated", amount, why, months, refund["method"], number)
