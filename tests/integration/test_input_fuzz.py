"""A few hundred mutated messages interleaved with valid ones, through the real broker, worker and
database: every valid one answered right, every broken one dead-lettered exactly once with a
reason, and one too large for the broker dead-lettered cut, its original kept in PostgreSQL. A valid
settlement names an instruction nobody gave: it is dead-lettered once, as unknown_instruction."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from schemas.inputs import TerminationRequested
from schemas.money_refunds import MoneyRefundRequested
from schemas.topics import INPUT_TOPICS, Topic, dead_letter_topic
from tests.fuzz_messages import Case, Generator, Message
from tests.integration.dead_letter_support import Record, RecordWatcher
from tests.integration.harness import OutputWatcher, Received, running_worker, worker_settings
from worker.app import Worker
from worker.db.schema.dead_letters import oversize_dead_letters
from worker.dlq.recoverer import VALUE_TRUNCATED, read_number
from worker.domain.money_refund_facts import MoneyRefundFacts
from worker.domain.money_refunds import MoneyRefundRefused, decide_money_refund
from worker.domain.policy import CreditNoteInvalid, RefundPolicy, decide_refund
from worker.engine.wire_to_domain import termination_terms
from worker.money_refunds.commands import money_refund_request

pytestmark = pytest.mark.slow

SEED = 4242
COUNT = 300
POISON_REASONS = {b"not_json", b"invalid_envelope", b"invalid_data"}
DEAD_LETTER_TOPICS = [dead_letter_topic(topic) for topic in INPUT_TOPICS]
POLICY = RefundPolicy(window_days=14)  # the worker's default
MONEY_ANSWERS = {Topic.MONEY_REFUND_UPDATED.value, Topic.ADJUSTMENT_REJECTED.value}
Position = tuple[str, int, int]


@pytest.fixture(scope="module")
async def fuzz_worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> AsyncIterator[Worker]:
    async with running_worker(worker_settings(kafka_bootstrap, database_url, kafka_group_settings)) as worker:
        yield worker


def too_large_for_the_broker(generator: Generator) -> Case:
    """A termination request of 1.2 MB: poison (too large), and so is its dead letter, which must be cut."""
    base = generator.valid_case(Topic.TERMINATION_REQUESTED)
    while base.mutation != "valid":
        base = generator.valid_case(Topic.TERMINATION_REQUESTED)
    value = b'{"reason": "' + b"x" * 1_200_000 + b'"}'
    message = Message(base.message.topic, base.message.key, value, base.message.headers)
    return Case(message, False, False, "too large for the broker", base.ce_id, None)


async def produce(bootstrap: str, messages: Sequence[Message]) -> list[Position]:
    """Each message, in order (a producer that takes large records, as some producers are set up)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5, max_request_size=4_000_000
    )
    await producer.start()
    try:
        pending = [
            await producer.send(m.topic.value, m.value, key=m.key, headers=list(m.headers)) for m in messages
        ]
        landed = await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return [(m.topic.value, md.partition, md.offset) for m, md in zip(messages, landed, strict=True)]


def origin(letter: Record) -> Position:
    return (
        letter.header("kafka_dlt-original-topic").decode(),
        letter.number("kafka_dlt-original-partition"),
        letter.number("kafka_dlt-original-offset"),
    )


def expected_answer(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What the worker must publish for a valid termination request: its topic and data fields."""
    request = TerminationRequested.model_validate(data)
    try:
        decision = decide_refund(termination_terms(request), POLICY)
    except CreditNoteInvalid:
        return Topic.TERMINATION_REJECTED.value, {"reason_code": "credit_note_invalid"}
    return Topic.SUBSCRIPTION_TERMINATED.value, {
        "cause": "customer_request",
        "refund_amount": str(decision.amount),
        "rule": None if decision.rule is None else str(decision.rule),
        "no_refund_reason": None if decision.no_refund_reason is None else str(decision.no_refund_reason),
    }


def expected_money_answer(ce_id: str, data: dict[str, Any]) -> tuple[str, str]:
    """What the worker must publish for a valid money refund request of an account it never saw:
    money-refund-updated instructed, or adjustment-rejected with its reason_code."""
    request = money_refund_request(ce_id, MoneyRefundRequested.model_validate(data))
    decision = decide_money_refund(request, MoneyRefundFacts(request.reseller_id, request.account_id))
    if isinstance(decision, MoneyRefundRefused):
        return Topic.ADJUSTMENT_REJECTED.value, decision.code.value
    return Topic.MONEY_REFUND_UPDATED.value, "instructed"


def money_answer(received: Received) -> tuple[str, str]:
    return received.topic, received.data.get("status") or received.data["reason_code"]


def answers_arrived(requests: dict[str, Case], expiries: set[str], money: set[str]) -> Any:
    final = {Topic.SUBSCRIPTION_TERMINATED.value, Topic.TERMINATION_REJECTED.value}

    def arrived(received: list[Received]) -> bool:
        answered = {r.data.get("request_id") for r in received if r.topic in final}
        expired = {r.data["subscription_id"] for r in received if r.data.get("cause") == "expired"}
        refunded = {r.data.get("request_id") for r in received if r.topic in MONEY_ANSWERS}
        return set(requests) <= answered and expiries <= expired and money <= refunded

    return arrived


async def test_broken_messages_are_dead_lettered_once_and_valid_ones_answered_right(
    fuzz_worker: Worker, kafka_bootstrap: str
) -> None:
    generator = Generator(SEED, run=uuid.uuid4().hex[:8])
    cases = [*generator.cases(COUNT), too_large_for_the_broker(generator)]
    requests = {
        case.ce_id: case
        for case in cases
        if case.valid and case.message.topic is Topic.TERMINATION_REQUESTED and case.ce_id
    }
    expiries = {
        case.data["subscription_id"]
        for case in cases
        if case.valid and case.data and case.message.topic is Topic.SUBSCRIPTION_EXPIRED
    }
    money = {
        case.ce_id: case
        for case in cases
        if case.valid and case.message.topic is Topic.MONEY_REFUND_REQUESTED and case.ce_id
    }
    started = time.monotonic()
    async with (
        OutputWatcher(kafka_bootstrap) as outputs,
        RecordWatcher(kafka_bootstrap, DEAD_LETTER_TOPICS) as dead_letters,
    ):
        positions = await produce(kafka_bootstrap, [case.message for case in cases])
        broken = {position for position, case in zip(positions, cases, strict=True) if not case.valid}
        unknown = {
            position
            for position, case in zip(positions, cases, strict=True)
            if case.valid and case.message.topic is Topic.PAYMENT_REFUND_SETTLED
        }
        expected = broken | unknown
        await dead_letters.wait_for(lambda got: expected <= {origin(letter) for letter in got}, within=30)
        await outputs.wait_for(answers_arrived(requests, expiries, set(money)), within=30, settle=1.5)
        await dead_letters.wait_for(lambda got: True, within=1)  # whatever else came meanwhile
    elapsed = time.monotonic() - started

    letters = Counter(origin(letter) for letter in dead_letters.received)
    assert {position for position, count in letters.items() if count > 1} == set()
    assert set(letters) == expected  # and none for another valid message
    reasons = {origin(letter): letter.header("kafka_dlt-failure-reason") for letter in dead_letters.received}
    assert {reasons[position] for position in broken} <= POISON_REASONS
    assert {reasons[position] for position in unknown} == {b"unknown_instruction"}
    assert unknown, "the seed gives valid settlements"

    for ce_id, case in requests.items():
        assert case.data is not None
        topic, fields = expected_answer(case.data)
        [answer] = [r for r in outputs.received if r.data.get("request_id") == ce_id and r.topic in {topic}]
        assert {name: answer.data[name] for name in fields} == fields, case.data
    for ce_id, case in money.items():
        assert case.data is not None
        answers = [
            r for r in outputs.received if r.topic in MONEY_ANSWERS and r.data.get("request_id") == ce_id
        ]
        assert [money_answer(answer) for answer in answers] == [expected_money_answer(ce_id, case.data)]
    assert money, "the seed gives valid money refund requests"
    print(f"{len(cases)} messages, {len(expected)} dead-lettered, in {elapsed:.1f}s")


async def test_a_dead_letter_too_large_for_the_broker_is_cut_and_its_original_kept(
    fuzz_worker: Worker, kafka_bootstrap: str
) -> None:
    case = too_large_for_the_broker(Generator(SEED + 1, run=uuid.uuid4().hex[:8]))
    async with RecordWatcher(kafka_bootstrap, DEAD_LETTER_TOPICS) as dead_letters:
        [position] = await produce(kafka_bootstrap, [case.message])
        await dead_letters.wait_for(lambda got: position in {origin(letter) for letter in got}, within=30)
    [letter] = [letter for letter in dead_letters.received if origin(letter) == position]
    assert case.message.value is not None
    assert read_number(letter.header(VALUE_TRUNCATED)) == len(case.message.value)
    assert letter.value is not None
    assert case.message.value.startswith(letter.value)
    assert letter.header("kafka_dlt-failure-reason") == b"invalid_envelope"

    topic, partition, offset = position
    async with fuzz_worker.engine.connect() as conn:
        kept = (
            await conn.execute(
                select(oversize_dead_letters).where(
                    oversize_dead_letters.c.original_topic == topic,
                    oversize_dead_letters.c.original_partition == partition,
                    oversize_dead_letters.c.original_offset == offset,
                )
            )
        ).one()
    assert (kept.key, kept.value) == (case.message.key, case.message.value)
    assert kept.dead_letter_topic == dead_letter_topic(Topic.TERMINATION_REQUESTED)
