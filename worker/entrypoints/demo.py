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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from schemas.envelope import binary_headers
from schemas.topics import OUTPUT_TOPICS, TOPICS, Topic
from worker.dlq.text import plural
from worker.entrypoints.demo_adjustments import Refunded, run_adjustments
from worker.entrypoints.demo_money import run_money_refunds

SEED_REQUESTS = Path(__file__).with_name("seed_requests.jsonl")
_SOURCE = "/refund-worker/entrypoints/demo"


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
    repeats = [
        DemoRequest("the first request delivered again (same ce_id)", first.ce_id, first.data),
        DemoRequest("the first subscription asked again (new ce_id)", f"demo-{run_id}-again", first.data),
        DemoRequest("another subscription, same credit note", f"demo-{run_id}-note-again", reused_note),
    ]
    return [*requests, *repeats]


REPEATS = 3  # the last three demo requests repeat earlier ones


async def run_demo(
    bootstrap_servers: str,
    console: Console,
    wait_seconds: float = 60.0,
    *,
    group_settings: dict[str, int] | None = None,
) -> None:
    """The seed's terminations, then money back through the simulated payment service and an
    operator's adjustments of the first account refunded as credits. `group_settings`: consumer-group
    timeouts of the simulated payment service (the embedded broker's are shorter)."""
    run_id = uuid.uuid4().hex[:6]
    requests = demo_requests(run_id)
    seeds, repeats = requests[:-REPEATS], requests[-REPEATS:]
    consumer = AIOKafkaConsumer(
        *(topic.value for topic in OUTPUT_TOPICS),
        bootstrap_servers=bootstrap_servers,
        group_id=f"refund-worker-demo-{run_id}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen = _Seen()
    try:
        # The repeats go only once the seeds are answered: across partitions there is no order, and
        # "the same credit note again" must come after the note's first use to show the guard.
        for phase in (seeds, repeats):
            await _publish(bootstrap_servers, phase)
            console.print(f"published {plural(len(phase), 'termination request')}; waiting for the worker...")
            await asyncio.wait_for(_collect(consumer, {r.ce_id for r in phase}, seen), wait_seconds)
        with contextlib.suppress(TimeoutError):  # listen a second more: a late duplicate would show
            await asyncio.wait_for(_collect(consumer, {"(never)"}, seen), 1.0)
    finally:
        await consumer.stop()
    console.print(_table(requests, seen))
    refunded = seen.credited_refund([request.ce_id for request in seeds])
    if refunded is not None:
        # Money first: its charge back out of the credits needs the refund's credits untouched.
        await run_money_refunds(
            bootstrap_servers, console, refunded, run_id, wait_seconds, group_settings=group_settings
        )
        await run_adjustments(bootstrap_servers, console, refunded, run_id, wait_seconds)


@dataclass
class _Seen:
    """Every output event read, by "request ce_id/topic", and each event's topic and data."""

    by_request: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def credited_refund(self, request_ids: list[str]) -> Refunded | None:
        """The first of these requests' refunds paid as credits, in the seed's order: the account the
        operator's adjustments are about."""
        credited = {
            data["request_id"]: data
            for topic, data in self.events
            if topic == Topic.REFUND_ISSUED and data["method"] == "account_credit"
        }
        refund = next((credited[r] for r in request_ids if r in credited), None)
        if refund is None:
            return None
        return Refunded(refund["refund_id"], refund["account_id"], refund["reseller_id"], refund["currency"])

    def counts(self, request_ids: set[str]) -> Counter[str]:
        """Events of these requests per topic; credits-updated names the refund, not the request."""
        refunds = {
            d["refund_id"]
            for t, d in self.events
            if t == Topic.REFUND_ISSUED and d["request_id"] in request_ids
        }
        return Counter(
            topic
            for topic, data in self.events
            if data.get("request_id") in request_ids or data.get("refund_id") in refunds
        )


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


async def _collect(consumer: AIOKafkaConsumer, expected: set[str], seen: _Seen) -> None:
    """Read output events until every expected request has its final answer."""
    answered = {key.split("/")[0] for key in seen.by_request if key.endswith(_FINAL_TOPICS)}
    while not expected <= answered:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                data = json.loads(record.value)
                seen.events.append((record.topic, data))
                request_id = data.get("request_id")
                if request_id is None:
                    continue
                seen.by_request[f"{request_id}/{record.topic}"] = data
                if record.topic in _FINAL_TOPICS:
                    answered.add(request_id)


_FINAL_TOPICS = (Topic.SUBSCRIPTION_TERMINATED.value, Topic.TERMINATION_REJECTED.value)
_TERMINATION_OUTPUTS = (
    Topic.REFUND_ISSUED,
    Topic.CREDITS_UPDATED,
    Topic.SUBSCRIPTION_TERMINATED,
    Topic.TERMINATION_REJECTED,
)


def _table(requests: list[DemoRequest], seen: _Seen) -> Table:
    outputs = seen.by_request
    counts = seen.counts({request.ce_id for request in requests})
    published = ", ".join(f"{counts[topic.value]} {topic.value}" for topic in _TERMINATION_OUTPUTS)
    table = Table(
        title="The seed's examples, as the worker published them",
        caption=f"published, in all: {published}",
    )
    for column in ("case", "outcome", "refund", "rule or reason", "months", "method", "credit note"):
        table.add_column(column)
    shown: set[str] = set()
    for request in requests:
        if request.ce_id in shown:
            table.add_row(request.case, "no second effect", *["-"] * 5)
            continue
        shown.add(request.ce_id)
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
