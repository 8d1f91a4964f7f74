"""Poison through the real worker and broker: dead-lettered at once to termination-requested-dlt,
unchanged, with Spring Kafka's headers, and never in the way of the messages behind it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS, Topic, dead_letter_topic
from tests.integration.dead_letter_support import Produced, Record, RecordWatcher, produce
from tests.integration.harness import (
    OutputWatcher,
    Raw,
    event,
    publish,
    running_worker,
    termination_data,
    unique,
    worker_settings,
)
from worker.app import Worker
from worker.engine.topics_admin import ensure_topics
from worker.infra.tansu import embedded_kafka

pytestmark = pytest.mark.integration

REQUESTED = Topic.TERMINATION_REQUESTED
DLT = dead_letter_topic(REQUESTED)
GROUP = "refund-worker-tests"
A_MINUTE = 60.0
WITHIN = 30.0  # well under A_MINUTE: a dead letter that arrives within it was never retried

SPRING_HEADERS = [
    "kafka_dlt-original-topic",
    "kafka_dlt-original-partition",
    "kafka_dlt-original-offset",
    "kafka_dlt-original-timestamp",
    "kafka_dlt-original-consumer-group",
    "kafka_dlt-exception-fqcn",
    "kafka_dlt-exception-message",
    "kafka_dlt-exception-stacktrace",
    "kafka_dlt-failure-reason",
]


@pytest.fixture(scope="module")
async def patient_worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> AsyncIterator[Worker]:
    """A worker whose retries wait a minute before the second attempt."""
    settings = worker_settings(
        kafka_bootstrap,
        database_url,
        kafka_group_settings,
        consumer_group=GROUP,
        retry_backoff_seconds=A_MINUTE,
    )
    async with running_worker(settings) as worker:
        yield worker


def request(**fields: object) -> Raw:
    return event(REQUESTED, termination_data(**fields))


def without_header(message: Raw, name: str) -> Raw:
    return Raw(message.topic, message.key, message.value, [h for h in message.headers if h[0] != name])


def with_value(message: Raw, value: bytes) -> Raw:
    return Raw(message.topic, message.key, value, message.headers)


def without_reason() -> Raw:
    data = termination_data()
    del data["reason"]
    return event(REQUESTED, data)


def assert_dead_letter_of(letter: Record, original: Produced, fqcn: str, reason: str, says: str) -> None:
    """The message as it was, its own headers first, then Spring's, each once, saying where and why."""
    message = original.message
    assert (letter.topic, letter.key, letter.value) == (DLT, message.key, message.value)
    own = len(message.headers)
    assert letter.headers[:own] == tuple(message.headers)
    assert [name for name, _ in letter.headers[own:]] == SPRING_HEADERS
    assert letter.header("kafka_dlt-original-topic") == REQUESTED.value.encode()
    assert letter.number("kafka_dlt-original-partition") == original.partition
    assert letter.number("kafka_dlt-original-offset") == original.offset
    assert letter.number("kafka_dlt-original-timestamp") == original.timestamp_ms
    assert letter.header("kafka_dlt-original-consumer-group") == GROUP.encode()
    assert letter.header("kafka_dlt-exception-fqcn") == fqcn.encode()
    assert letter.header("kafka_dlt-failure-reason") == reason.encode()
    assert says in letter.header("kafka_dlt-exception-message").decode()


async def test_poison_is_dead_lettered_at_once_unchanged_with_springs_headers(
    patient_worker: Worker, kafka_bootstrap: str
) -> None:
    not_json = with_value(request(), b'{"subscription_id": ')
    not_json.headers.append(("trace", b"\xff\x00 not utf-8"))
    cases = [
        (not_json, "schemas.errors.NotJson", "not_json", "not JSON"),
        (without_header(request(), "ce_id"), "schemas.errors.MissingAttribute", "invalid_envelope", "ce_id"),
        (without_reason(), "schemas.errors.InvalidEventData", "invalid_data", "reason: Field required"),
        (
            request(amount_paid="120.001"),
            "schemas.errors.InvalidEventData",
            "invalid_data",
            "amount_paid: '120.001' has 3 decimal places but SGD has 2",
        ),
    ]
    keys = [message.key or b"" for message, *_ in cases]
    async with RecordWatcher(kafka_bootstrap, [DLT]) as dead_letters:
        produced = await produce(kafka_bootstrap, [message for message, *_ in cases], int(time.time() * 1000))
        letters = await dead_letters.keys_arrived(*keys, within=WITHIN, settle=0.5)

    assert len(letters) == len(cases)  # one dead letter each
    for (_, fqcn, reason, says), original in zip(cases, produced, strict=True):
        [letter] = [letter for letter in letters if letter.key == original.message.key]
        assert_dead_letter_of(letter, original, fqcn, reason, says)


async def test_same_ce_id_with_another_payload_is_an_idempotency_conflict(
    patient_worker: Worker, kafka_bootstrap: str
) -> None:
    ce_id, data = unique("ce"), termination_data()
    conflicting = event(REQUESTED, dict(data, reason="another reason"), ce_id)
    async with (
        OutputWatcher(kafka_bootstrap) as outputs,
        RecordWatcher(kafka_bootstrap, [DLT]) as dead_letters,
    ):
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id)])
        await outputs.answers({ce_id})
        [produced] = await produce(kafka_bootstrap, [conflicting], int(time.time() * 1000))
        [letter] = await dead_letters.keys_arrived(conflicting.key or b"", within=WITHIN, settle=0.5)
        follow_up = unique("ce")
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(), follow_up)])
        await outputs.answers({follow_up})

    assert_dead_letter_of(
        letter,
        produced,
        "worker.engine.failures.IdempotencyConflict",
        "idempotency_conflict",
        f"ce_id {ce_id!r}",
    )
    assert sorted(r.topic for r in outputs.about({ce_id})) == ["refund-issued", "subscription-terminated"]


async def test_a_good_message_behind_a_poison_one_with_the_same_key_is_processed(
    patient_worker: Worker, kafka_bootstrap: str
) -> None:
    good_id, data = unique("ce"), termination_data()
    good = event(REQUESTED, data, good_id)
    poison = with_value(good, b"not json at all")  # same key, so the same partition, in front
    async with (
        OutputWatcher(kafka_bootstrap) as outputs,
        RecordWatcher(kafka_bootstrap, [DLT]) as dead_letters,
    ):
        produced = await produce(kafka_bootstrap, [poison, good], int(time.time() * 1000))
        received = await outputs.answers({good_id}, within=WITHIN)
        [letter] = await dead_letters.keys_arrived(good.key or b"", within=WITHIN, settle=0.5)

    assert produced[0].partition == produced[1].partition
    assert produced[0].offset < produced[1].offset
    assert letter.value == b"not json at all"
    terminated = [r for r in received if r.topic == Topic.SUBSCRIPTION_TERMINATED]
    assert [r.data["subscription_id"] for r in terminated] == [data["subscription_id"]]


async def test_a_missing_dead_letter_topic_is_created_with_its_source_topics_partition_count() -> None:
    broker = embedded_kafka()  # a broker of its own: the session's already has every topic
    bootstrap = await asyncio.to_thread(broker.__enter__)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(REQUESTED.value, 3, 1)])
        await ensure_topics(bootstrap, partitions=4)
        await ensure_topics(bootstrap, partitions=5)  # at every start: nothing changes the second time
        served = [*INPUT_TOPICS, *OUTPUT_TOPICS]
        described = await admin.describe_topics([*served, *(dead_letter_topic(t) for t in INPUT_TOPICS)])
    finally:
        await admin.close()
        await asyncio.to_thread(broker.__exit__, None, None, None)

    partitions = {entry["topic"]: len(entry["partitions"]) for entry in described}
    assert partitions == {
        **{topic.value: 4 for topic in served},
        REQUESTED.value: 3,
        **{dead_letter_topic(topic): 4 for topic in INPUT_TOPICS if topic is not REQUESTED},
        DLT: 3,  # as its source topic, created with 3
    }
