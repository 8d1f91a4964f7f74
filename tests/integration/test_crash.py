"""SIGKILL the worker again and again under load: afterwards every input took effect exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from schemas.topics import INPUT_TOPICS, Topic, dead_letter_topic
from tests.integration.audit import (
    assert_database_applied_each_once,
    assert_nothing_dead_lettered,
    assert_published_each_once,
)
from tests.integration.crash_audit import assert_published_each_once as assert_book_published
from tests.integration.crash_audit import assert_stored_each_once, tally_when_done
from tests.integration.crash_book import Account, Book
from tests.integration.crash_loads import LOADS
from tests.integration.crash_support import Wave, crash_worker, kill_repeatedly
from tests.integration.harness import OUTPUT_TOPIC_NAMES, OutputWatcher, event, termination_data, unique
from tests.integration.worker_processes import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUESTS = 3000
KILLS = 6
KILLS_PER_WAVE = 3
"""Of the mixed load: one amid each input topic's batches in each wave (and one more between waves)."""
WATCHED = (*OUTPUT_TOPIC_NAMES, *(dead_letter_topic(topic) for topic in INPUT_TOPICS))


@pytest.fixture
def worker_process(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> Iterator[WorkerProcess]:
    process = crash_worker(kafka_bootstrap, database_url, kafka_group_settings, "crash-test")
    yield process
    process.stop()


def requests_under_test() -> list[tuple[str, dict[str, Any]]]:
    """Many requests, few accounts and resellers, so balances and credit-note numbers contend."""
    accounts = [unique("acc") for _ in range(5)]
    resellers = [unique("res") for _ in range(3)]
    requests = []
    for index in range(REQUESTS):
        day = 2 + index % 60  # inside the window, past it, months later: all rules that pay
        data = termination_data(
            account_id=accounts[index % len(accounts)],
            reseller_id=resellers[index % len(resellers)],
            requested_at=f"2021-{4 + day // 30:02d}-{1 + day % 28:02d}T10:00:00+08:00",
        )
        requests.append((unique("ce"), data))
    return requests


async def test_sigkill_under_load_leaves_every_request_applied_exactly_once(
    worker_process: WorkerProcess, kafka_bootstrap: str, database_url: str
) -> None:
    requests = requests_under_test()
    watched = (*OUTPUT_TOPIC_NAMES, dead_letter_topic(Topic.TERMINATION_REQUESTED))
    async with OutputWatcher(kafka_bootstrap, watched) as watcher:
        wave = Wave([event(Topic.TERMINATION_REQUESTED, d, c) for c, d in requests])
        kills = await kill_repeatedly(worker_process, kafka_bootstrap, database_url, [wave], KILLS)
        assert kills[-1].stored < REQUESTS, "the backlog ran out before the last kill: raise REQUESTS"
        request_ids = {ce_id for ce_id, _ in requests}
        received = await watcher.answers(request_ids, within=240, settle=2.0)

    assert_nothing_dead_lettered(watcher.received, request_ids)
    await assert_database_applied_each_once(database_url, requests)
    assert_published_each_once(received, requests)


def mixed_load() -> Book:
    """Every load of crash_loads over 12 accounts of 3 resellers: about 1,750 inputs in two waves,
    after a setup of 36."""
    resellers = [unique("res") for _ in range(3)]
    accounts = [Account(reseller, unique("acc")) for reseller in resellers for _ in range(4)]
    book = Book()
    for load in LOADS:
        load(accounts, book)
    return book


async def test_sigkill_under_a_mixed_load_leaves_every_effect_exactly_once(
    worker_process: WorkerProcess, kafka_bootstrap: str, database_url: str
) -> None:
    book = mixed_load()
    async with OutputWatcher(kafka_bootstrap, WATCHED) as watcher:
        waves = book.ordered_waves()
        kills = await kill_repeatedly(
            worker_process, kafka_bootstrap, database_url, waves, KILLS_PER_WAVE, setup=book.setup
        )
        tally = await tally_when_done(watcher, book, within=120)

    landed = {(kill.wave, kill.topic) for kill in kills if not kill.waited}
    sent = {(number, message.topic) for number, wave in enumerate(waves) for message in wave.messages}
    assert sent - landed == set(), f"inputs of a wave with no kill amid their batches; kills: {kills}"
    assert_book_published(tally, book)
    await assert_stored_each_once(database_url, book)
