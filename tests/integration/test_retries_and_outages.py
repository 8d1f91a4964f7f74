"""Failures that are not the message's: an unexpected error is retried a bounded number of times and
then dead-lettered; a database stopped and restarted under the running worker loses, doubles and
dead-letters nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from schemas.topics import Topic, dead_letter_topic
from tests.integration.dead_letter_support import InjectedFaults, RecordWatcher, produce
from tests.integration.harness import (
    OutputWatcher,
    Received,
    event,
    publish,
    running_worker,
    termination_data,
    unique,
    worker_settings,
)
from tests.integration.stoppable_postgres import stoppable_postgres
from worker.app import Worker
from worker.db.schema.balances import account_balances

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUESTED = Topic.TERMINATION_REQUESTED
DLT = dead_letter_topic(REQUESTED)
ATTEMPTS = 3


@pytest.fixture
async def worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> AsyncIterator[Worker]:
    settings = worker_settings(
        kafka_bootstrap,
        database_url,
        kafka_group_settings,
        retry_attempts=ATTEMPTS,
        retry_backoff_seconds=0.05,
    )
    async with running_worker(settings) as running:
        yield running


async def test_an_unexpected_error_is_retried_a_bounded_number_of_times_then_dead_lettered(
    worker: Worker, kafka_bootstrap: str
) -> None:
    warm_up = unique("ce")
    faulty_id, faulty_data = unique("ce"), termination_data()
    faulty = event(REQUESTED, faulty_data, faulty_id)
    behind_id = unique("ce")  # the same subscription, asked again once the first is dead-lettered
    async with (
        InjectedFaults(worker.engine) as faults,
        OutputWatcher(kafka_bootstrap) as outputs,
        RecordWatcher(kafka_bootstrap, [DLT]) as dead_letters,
    ):
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(), warm_up)])
        await outputs.answers({warm_up})  # the worker is idle: the faulty message is a batch alone
        await faults.fail(faulty_id)
        [produced] = await produce(kafka_bootstrap, [faulty], int(time.time() * 1000))
        [letter] = await dead_letters.keys_arrived(faulty.key or b"", settle=0.5)
        await publish(kafka_bootstrap, [event(REQUESTED, faulty_data, behind_id)])
        await outputs.answers({behind_id})
        attempts = await faults.attempts(faulty_id)

    assert attempts == ATTEMPTS
    assert (letter.value, letter.headers[: len(faulty.headers)]) == (faulty.value, tuple(faulty.headers))
    assert letter.number("kafka_dlt-original-offset") == produced.offset
    assert letter.header("kafka_dlt-failure-reason") == b"retries_exhausted"
    assert letter.header("kafka_dlt-exception-fqcn") == b"worker.engine.failures.RetriesExhausted"
    message = letter.header("kafka_dlt-exception-message").decode()
    assert f"injected fault for ce_id {faulty_id}" in message
    assert message.endswith(f"(after {ATTEMPTS} attempts)")
    cause = letter.header("kafka_dlt-exception-cause-fqcn").decode()  # the error that kept happening
    assert message.startswith(f"{cause.rsplit('.', 1)[-1]}: ")
    assert cause.split(".")[0] in {"asyncpg", "sqlalchemy"}
    assert outputs.about({faulty_id}) == []
    assert sorted(r.topic for r in outputs.about({behind_id})) == ["refund-issued", "subscription-terminated"]


async def test_the_failing_message_of_a_batch_is_found_and_the_others_are_processed(
    worker: Worker, kafka_bootstrap: str
) -> None:
    requests = [(unique("ce"), termination_data()) for _ in range(7)]
    faulty_id, faulty_data = requests[4]
    good = {ce_id for ce_id, _ in requests} - {faulty_id}
    async with (
        InjectedFaults(worker.engine) as faults,
        OutputWatcher(kafka_bootstrap) as outputs,
        RecordWatcher(kafka_bootstrap, [DLT]) as dead_letters,
    ):
        await faults.fail(faulty_id)
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in requests])
        await outputs.answers(good)
        [letter] = await dead_letters.keys_arrived(faulty_data["subscription_id"].encode(), settle=0.5)

    assert letter.header("kafka_dlt-failure-reason") == b"retries_exhausted"
    assert outputs.about({faulty_id}) == []
    assert Counter(r.topic for r in outputs.about(good)) == {"subscription-terminated": 6, "refund-issued": 6}


def distinct_events(received: list[Received], request_ids: set[str]) -> Counter[tuple[str, str]]:
    """(request, topic) -> how many distinct ce_ids: a relay repeating an event repeats its ce_id."""
    return Counter(
        {(r.data["request_id"], r.topic) for r in received if r.data.get("request_id") in request_ids}
    )


async def test_database_stopped_and_restarted_under_the_worker_loses_doubles_and_dead_letters_nothing(
    kafka_bootstrap: str, kafka_group_settings: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    before = {unique("ce"): termination_data() for _ in range(3)}
    during = {unique("ce"): termination_data() for _ in range(12)}
    keys = [data["subscription_id"].encode() for data in (*before.values(), *during.values())]
    async with stoppable_postgres() as database:
        settings = worker_settings(
            kafka_bootstrap,
            database.url,
            kafka_group_settings,
            retry_attempts=ATTEMPTS,
            retry_backoff_seconds=0.05,
        )
        async with (
            running_worker(settings) as worker,
            OutputWatcher(kafka_bootstrap) as outputs,
            RecordWatcher(kafka_bootstrap, [DLT]) as dead_letters,
        ):
            await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in before.items()])
            await outputs.answers(set(before))
            await asyncio.to_thread(database.stop)
            await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in during.items()])
            await wait_for_log(caplog, "database unavailable")
            await outputs.wait_for(lambda _: True, settle=2.0)  # the outage lasts: retries with backoff
            assert outputs.about(set(during)) == []
            await asyncio.to_thread(database.start)
            await outputs.answers(set(during), within=60.0, settle=1.0)
            await dead_letters.wait_for(lambda _: True, settle=1.0)
            async with worker.engine.connect() as conn:
                balances = (
                    await conn.execute(
                        select(account_balances.c.balance_version).where(
                            account_balances.c.account_id.in_([d["account_id"] for d in during.values()])
                        )
                    )
                ).scalars()
                versions = list(balances)

    assert dead_letters.with_keys(*keys) == []
    per_request = distinct_events(outputs.received, set(during))
    assert per_request == {
        (ce_id, topic): 1 for ce_id in during for topic in ("refund-issued", "subscription-terminated")
    }
    assert versions == [1] * len(during)  # each account credited once
    messages = [record.getMessage() for record in caplog.records if record.name == "worker.engine.pipeline"]
    assert any("database is back" in message for message in messages)


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not any(text in record.getMessage() for record in caplog.records):
        assert time.monotonic() < deadline, f"no log line with {text!r}"
        await asyncio.sleep(0.1)
