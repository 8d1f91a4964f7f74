"""`refund-worker dlq` against the real broker: list, show and replay with every filter, the dry run,
the rate, the progress bar, exit status 2 for what the user got wrong, and, with the real worker,
a replay run twice that has no second effect, a replayed poison message that piles up no headers,
a replay that leaves permanent poison unless asked, and the stacktrace the worker puts in a dead letter.

Most tests work on a topic pair of their own (`dlqtest-*` and its `-dlt`), filled with dead letters
built by worker.dlq.recoverer as the worker builds them, so every expected table is exact."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import select
from typer.testing import CliRunner, Result

from schemas.errors import NotJson
from schemas.topics import Topic, dead_letter_topic
from tests.integration.dead_letter_support import InjectedFaults, Record, RecordWatcher, produce
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
from worker.db.schema.balances import account_balances
from worker.dlq.recoverer import REPLAYED_FROM, dead_letter
from worker.engine.failures import IdempotencyConflict, RetriesExhausted, failure_reason
from worker.engine.records import InboundRecord
from worker.entrypoints.cli import app

pytestmark = pytest.mark.integration

BASE_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z: dead letter i was dead-lettered i seconds later
LETTERS = 6  # i even on the dead-letter topic's partition 0, odd on partition 1
REQUESTED = Topic.TERMINATION_REQUESTED


def at(seconds: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=BASE_MS, seconds=seconds)
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Filled:
    source: str
    dlt: str
    keys: list[str]
    """Dead letter i's key; dead letter i is at partition i % 2, offset i // 2 of `dlt`."""
    originals: list[InboundRecord]


async def create_topics(bootstrap: str, *names: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


def original(source: str, i: int, key: str) -> InboundRecord:
    data = json.dumps({"subscription_id": key, "amount_paid": "120.00", "n": i}).encode()
    headers = (("ce_id", f"ce-{key}".encode()), ("content-type", b"application/json"), ("trace", b"\xff\x00"))
    return InboundRecord(source, i % 3, 500 + i, key.encode(), data, headers, BASE_MS - 60_000 + i)


ERRORS: list[BaseException] = [
    NotJson("value is not JSON"),
    IdempotencyConflict("ce_id was processed before with another payload"),
    RetriesExhausted(RuntimeError("boom"), 3),
]
"""Dead letter i failed with ERRORS[i % 3]: the first two are permanent poison, the third is not."""
REPLAYABLE = [2, 5]


@pytest.fixture(scope="module")
async def filled(kafka_bootstrap: str) -> Filled:
    source = f"dlqtest-{uuid.uuid4().hex[:10]}"
    dlt = dead_letter_topic(source)
    await create_topics(kafka_bootstrap, source, dlt, partitions=2)
    keys = [f"{source}-k{i}" for i in range(LETTERS)]
    originals = [original(source, i, key) for i, key in enumerate(keys)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i, record in enumerate(originals):
            error = ERRORS[i % 3]
            letter = dead_letter(record, error, group="refund-worker", reason=failure_reason(error))
            await producer.send_and_wait(
                dlt,
                letter.value,
                key=letter.key,
                headers=list(letter.headers),
                partition=i % 2,
                timestamp_ms=BASE_MS + i * 1000,
            )
    finally:
        await producer.stop()
    return Filled(source, dlt, keys, originals)


async def dlq(bootstrap: str | None, *args: str, env: dict[str, str] | None = None) -> Result:
    """The command in this process (off the event loop, as it runs its own)."""
    environment: dict[str, str | None] = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "COLUMNS": "250"}
    environment.update(env or {})
    runner = CliRunner()
    return await asyncio.to_thread(lambda: runner.invoke(app, ["dlq", *args], env=environment))


def keys_shown(result: Result, filled: Filled) -> list[int]:
    """Which dead letters (by i) the output names, in the order it names them."""
    shown = []
    for line in result.stdout.splitlines():
        shown += [i for i, key in enumerate(filled.keys) if f"{key} " in line or line.endswith(key)]
    return shown


def dead_letters(count: int) -> str:
    return f"{count} dead letter" if count == 1 else f"{count} dead letters"


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_usage_error(result: Result, says: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit: no traceback
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("refund-worker dlq: ")
    assert says in result.stderr


# --- list -------------------------------------------------------------------------------------


async def test_list_shows_every_dead_letter_as_a_table_row(kafka_bootstrap: str, filled: Filled) -> None:
    by_source = await dlq(kafka_bootstrap, "list", filled.source)
    by_dlt = await dlq(kafka_bootstrap, "list", filled.dlt)

    assert by_source.exit_code == 0, by_source.output
    assert by_source.stdout == by_dlt.stdout
    assert f"{filled.dlt}: 6 dead letters" in by_source.stdout
    assert keys_shown(by_source, filled) == [0, 2, 4, 1, 3, 5]  # partition by partition, in offset order
    row = next(line for line in by_source.stdout.splitlines() if filled.keys[3] in line)
    assert re.split(r"\s{2,}", row.strip()) == [
        "1",
        "1",
        filled.keys[3],
        "not_json",
        at(3),
        f"{filled.source}[0]@503",
        "NotJson: value is not JSON",
    ]


async def test_list_at_80_columns_keeps_each_dead_letter_on_one_line(
    kafka_bootstrap: str, filled: Filled
) -> None:
    result = await dlq(kafka_bootstrap, "list", filled.source, env={"COLUMNS": "80"})

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    for i, key in enumerate(filled.keys):
        [row] = [line for line in lines if line.endswith(at(i)) or f" {at(i)} " in line]
        partition, offset, shown_key, reason = row.split()[:4]
        assert (partition, offset) == (str(i % 2), str(i // 2))
        assert shown_key == key or (shown_key.endswith("…") and key.startswith(shown_key[:-1]))
        assert reason == failure_reason(ERRORS[i % 3])


async def test_list_as_json_gives_one_object_per_dead_letter(kafka_bootstrap: str, filled: Filled) -> None:
    result = await dlq(kafka_bootstrap, "list", filled.source, "--partition", "1", "--output", "json")

    assert result.exit_code == 0, result.output
    documents = json_lines(result)
    assert [(d["partition"], d["offset"], d["key"]) for d in documents] == [
        (1, 0, filled.keys[1]),
        (1, 1, filled.keys[3]),
        (1, 2, filled.keys[5]),
    ]
    assert [(d["reason"], d["poison"]) for d in documents] == [
        ("idempotency_conflict", True),
        ("not_json", True),
        ("retries_exhausted", False),
    ]
    assert documents[2]["original"]["topic"] == filled.source
    assert documents[2]["exception"]["cause_class"] == "builtins.RuntimeError"
    assert json.loads(documents[2]["value"]) == json.loads(filled.originals[5].value or b"")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--key", "{k4}"], [4]),
        (["--partition", "1"], [1, 3, 5]),
        (["--offset-from", "1", "--offset-to", "1"], [2, 3]),
        (["--partition", "0", "--offset-from", "2"], [4]),
        (["--since", at(1), "--until", at(4)], [2, 1, 3]),
        (["--limit", "2"], [0, 2]),
        (["--partition", "1", "--limit", "1"], [1]),
        (["--key", "no-such-key"], []),
        (["--key", "{k4}", "--key", "{k1}"], [4, 1]),
        (["--reason", "not_json"], [0, 3]),
        (["--reason", "retries_exhausted", "--reason", "idempotency_conflict"], [2, 4, 1, 5]),
    ],
    ids=[
        "key",
        "partition",
        "offsets",
        "partition+offset",
        "since+until",
        "limit",
        "partition+limit",
        "none",
        "keys",
        "reason",
        "reasons",
    ],
)
async def test_list_filters_as_replay_does(
    kafka_bootstrap: str, filled: Filled, options: list[str], expected: list[int]
) -> None:
    options = [option.replace("{k4}", filled.keys[4]).replace("{k1}", filled.keys[1]) for option in options]
    result = await dlq(kafka_bootstrap, "list", filled.source, *options)
    assert result.exit_code == 0, result.output
    assert keys_shown(result, filled) == expected
    assert result.stdout.splitlines()[0].rstrip() == f"{filled.dlt}: {dead_letters(len(expected))}"


# --- show -------------------------------------------------------------------------------------


async def test_show_prints_one_dead_letter_in_full(kafka_bootstrap: str, filled: Filled) -> None:
    result = await dlq(kafka_bootstrap, "show", filled.dlt, "--partition", "0", "--offset", "1")

    assert result.exit_code == 0, result.output
    text = result.stdout
    facts = {
        "dead letter": f"{filled.dlt}[0]@1",
        "dead-lettered": at(2).replace("Z", ".000Z"),
        "key": filled.keys[2],
        "original": f"{filled.source}[2]@502",
        "consumer group": "refund-worker",
        "exception": "worker.engine.failures.RetriesExhausted",
        "cause": "builtins.RuntimeError",
        "message": "RuntimeError: boom (after 3 attempts)",
    }
    for name, value in facts.items():
        assert any(line.split() == [*name.split(), *value.split()] for line in text.splitlines()), (
            name,
            text,
        )
    assert "0xff00 (not UTF-8)" in text  # the trace header, as hex
    assert f"{BASE_MS - 60_000 + 2} (" in text  # the original timestamp, decoded from Spring's long
    assert f'"subscription_id": "{filled.keys[2]}"' in text  # the value, pretty-printed JSON
    assert '\n  "n": 2\n' in text
    trace = text.split("\nstacktrace:\n", 1)[1].split("\nvalue:\n", 1)[0]
    assert trace.startswith("RuntimeError: boom\n")
    assert "worker.engine.failures.RetriesExhausted: RuntimeError: boom (after 3 attempts)" in trace


async def test_show_as_json_is_the_same_object_as_list_gives(kafka_bootstrap: str, filled: Filled) -> None:
    shown = await dlq(
        kafka_bootstrap, "show", filled.dlt, "--partition", "0", "--offset", "1", "--output", "json"
    )
    listed = await dlq(kafka_bootstrap, "list", filled.dlt, "--key", filled.keys[2], "--output", "json")

    assert shown.exit_code == 0, shown.output
    assert shown.stdout == listed.stdout
    [document] = json_lines(shown)
    assert document["exception"]["stacktrace"].endswith(
        "worker.engine.failures.RetriesExhausted: RuntimeError: boom (after 3 attempts)\n"
    )


# --- replay -----------------------------------------------------------------------------------


async def replayed(
    bootstrap: str, filled: Filled, *options: str, expect_exit: int = 0
) -> tuple[Result, list[Record]]:
    """Runs `dlq replay` and returns what reached the source topic (after a short settle)."""
    async with RecordWatcher(bootstrap, [filled.source]) as source:
        result = await dlq(bootstrap, "replay", filled.source, *options)
        await source.wait_for(lambda _: True, settle=1.0)
    assert result.exit_code == expect_exit, result.output
    return result, source.received


async def test_replay_sends_each_back_to_its_original_topic_as_it_was(
    kafka_bootstrap: str, filled: Filled
) -> None:
    result, records = await replayed(kafka_bootstrap, filled, "--include-poison")

    assert result.stdout.splitlines()[-1] == (
        f"replayed 6 of 6 selected dead letters from {filled.dlt} (6 to {filled.source}), 6 scanned"
    )
    assert sorted(r.key or b"" for r in records) == sorted(k.encode() for k in filled.keys)
    for i, sent in enumerate(filled.originals):
        [record] = [r for r in records if r.key == sent.key]
        assert record.value == sent.value
        assert record.headers == (*sent.headers, (REPLAYED_FROM, f"{filled.dlt}[{i % 2}]@{i // 2}".encode()))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--key", "{k4}"], [4]),
        (["--partition", "1"], [1, 3, 5]),
        (["--offset-from", "2"], [4, 5]),
        (["--offset-to", "0"], [0, 1]),
        (["--since", at(4)], [4, 5]),
        (["--until", at(1)], [0]),
        (["--limit", "4"], [0, 2, 4, 1]),
        (["--key", "{k4}", "--key", "{k1}"], [4, 1]),
        (["--reason", "not_json", "--reason", "idempotency_conflict"], [0, 4, 1, 3]),
    ],
    ids=["key", "partition", "offset-from", "offset-to", "since", "until", "limit", "keys", "reasons"],
)
async def test_replay_options_select_what_is_replayed(
    kafka_bootstrap: str, filled: Filled, options: list[str], expected: list[int]
) -> None:
    options = [option.replace("{k4}", filled.keys[4]).replace("{k1}", filled.keys[1]) for option in options]
    result, records = await replayed(kafka_bootstrap, filled, *options, "--include-poison")

    assert sorted(r.key or b"" for r in records) == sorted(filled.keys[i].encode() for i in expected)
    assert f"replayed {len(expected)} of {len(expected)} selected" in result.stdout


async def test_a_windowed_replay_leaves_permanent_poison_and_says_what_it_left(
    kafka_bootstrap: str, filled: Filled
) -> None:
    result, records = await replayed(kafka_bootstrap, filled, "--since", at(1), "--until", at(5))

    assert [r.key for r in records] == [filled.keys[2].encode()]  # 1, 3 and 4 are poison
    assert result.stdout.splitlines() == [
        f"replayed 1 of 4 selected dead letters from {filled.dlt} (1 to {filled.source}), 6 scanned",
        "left 3 poison dead letters unsent (2 idempotency_conflict, 1 not_json): "
        "a replay would only dead-letter poison again; --include-poison sends it anyway",
        f"poison {filled.dlt}[0]@2: idempotency_conflict",
        f"poison {filled.dlt}[1]@0: idempotency_conflict",
        f"poison {filled.dlt}[1]@1: not_json",
    ]


async def test_a_dry_run_says_which_poison_it_would_leave(kafka_bootstrap: str, filled: Filled) -> None:
    result, records = await replayed(kafka_bootstrap, filled, "--dry-run")

    assert records == []
    assert keys_shown(result, filled) == REPLAYABLE
    assert result.stdout.splitlines()[-5].startswith("would leave 4 poison dead letters unsent")


async def test_dry_run_prints_what_would_go_and_sends_nothing(kafka_bootstrap: str, filled: Filled) -> None:
    result, records = await replayed(
        kafka_bootstrap, filled, "--dry-run", "--partition", "1", "--include-poison"
    )

    assert records == []
    assert keys_shown(result, filled) == [1, 3, 5]
    row = next(line for line in result.stdout.splitlines() if filled.keys[5] in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == [
        f"{filled.dlt}[1]@2",
        filled.source,
        filled.keys[5],
        f"ce-{filled.keys[5]}",
    ]
    assert result.stdout.splitlines()[-1] == (
        f"dry run: 3 of 3 selected dead letters would be replayed from {filled.dlt} "
        f"(3 to {filled.source}), 3 scanned; nothing was sent"
    )


async def test_rate_spaces_the_sends(kafka_bootstrap: str, filled: Filled) -> None:
    started = time.monotonic()
    _, records = await replayed(kafka_bootstrap, filled, "--rate", "10", "--include-poison")
    # Six sends at ten a second: five gaps of 0.1 s at least (the settle adds to it, never takes).
    assert time.monotonic() - started >= 0.5
    assert len(records) == LETTERS


async def test_a_long_replay_shows_a_progress_bar_on_a_terminal(kafka_bootstrap: str) -> None:
    source = f"dlqtest-{uuid.uuid4().hex[:10]}"
    await create_topics(kafka_bootstrap, source, dead_letter_topic(source), partitions=1)
    letters = [
        dead_letter(original(source, i, f"{source}-{i}"), NotJson("x"), group="g", reason="not_json")
        for i in range(60)
    ]
    await produce(kafka_bootstrap, [Raw(r.topic, r.key, r.value, list(r.headers)) for r in letters], BASE_MS)

    # At 50 a second the replay lasts over a second: the bar, refreshed ten times a second, shows.
    result = await dlq(
        kafka_bootstrap, "replay", source, "--rate", "50", "--include-poison", env={"TTY_COMPATIBLE": "1"}
    )

    assert result.exit_code == 0, result.output
    assert "scanning dead letters" in result.stderr
    assert "replayed 60 of 60 selected" in result.stdout


async def test_dead_letters_that_cannot_be_replayed_are_named_and_the_exit_status_is_1(
    kafka_bootstrap: str,
) -> None:
    source = f"dlqtest-{uuid.uuid4().hex[:10]}"
    await create_topics(kafka_bootstrap, source, dead_letter_topic(source), partitions=1)
    good = dead_letter(original(source, 0, f"{source}-good"), NotJson("x"), group="g", reason="not_json")
    foreign = dead_letter(original("elsewhere", 1, f"{source}-foreign"), NotJson("x"), group="g", reason="x")
    bare = Raw(dead_letter_topic(source), b"bare", b"{}", [("ce_id", b"x")])
    await produce(
        kafka_bootstrap,
        [
            Raw(good.topic, good.key, good.value, list(good.headers)),
            Raw(dead_letter_topic(source), foreign.key, foreign.value, list(foreign.headers)),
            bare,
        ],
        BASE_MS,
    )

    result = await dlq(kafka_bootstrap, "replay", source, "--include-poison")

    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[-3:] == [
        f"replayed 1 of 3 selected dead letters from {source}-dlt (1 to {source}), 3 scanned",
        f"skipped {source}-dlt[0]@1: its original topic 'elsewhere' is not '{source}', this topic's source",
        f"skipped {source}-dlt[0]@2: it has no kafka_dlt-original-topic header",
    ]


# --- what the user got wrong: one line on stderr, exit status 2 ---------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["list", "no-such-topic"], "no topic 'no-such-topic-dlt' on the broker"),
        (["replay", "no-such-topic-dlt", "--dry-run"], "no topic 'no-such-topic-dlt' on the broker"),
        (["list", "{source}", "--partition", "7"], "has no partition 7 (it has partitions 0 to 1)"),
        (
            ["replay", "{source}", "--offset-from", "5", "--offset-to", "2"],
            "--offset-from 5 is after --offset-to 2",
        ),
        (["list", "{source}", "--since", "last tuesday"], "--since 'last tuesday' is not a time"),
        (["replay", "{source}", "--since", "2h", "--until", "3h"], "--since is not before --until"),
        (["replay", "{source}", "--rate", "0"], "--rate must be above 0"),
        (["show", "{source}", "--partition", "0", "--offset", "99"], "that partition holds offsets 0 to 2"),
        (["show", "{source}", "--partition", "2", "--offset", "0"], "has no partition 2"),
    ],
)
async def test_bad_arguments_and_unknown_topics_exit_2_with_one_line(
    kafka_bootstrap: str, filled: Filled, args: list[str], says: str
) -> None:
    result = await dlq(kafka_bootstrap, *(arg.replace("{source}", filled.source) for arg in args))
    assert_usage_error(result, says)


async def test_without_kafka_bootstrap_servers_dlq_says_so_and_exits_2() -> None:
    result = await dlq(None, "list", "termination-requested")
    assert_usage_error(result, "KAFKA_BOOTSTRAP_SERVERS is not set")


@pytest.mark.parametrize(
    "args",
    [
        ["list", "t", "--limit", "0"],
        ["show", "t", "--partition", "0"],
        ["replay"],
        ["list", "t", "--rate", "1"],
    ],
)
async def test_typers_own_usage_errors_exit_2(kafka_bootstrap: str, args: list[str]) -> None:
    result = await dlq(kafka_bootstrap, *args)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)


def test_the_installed_command_exits_2_without_a_traceback(kafka_bootstrap: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    done = subprocess.run(
        [sys.executable, "-m", "worker", "dlq", "list", "no-such-topic"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"refund-worker dlq: no topic 'no-such-topic-dlt' on the broker at {kafka_bootstrap}\n"
    )


# --- with the real worker -------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> AsyncIterator[Worker]:
    settings = worker_settings(
        kafka_bootstrap, database_url, kafka_group_settings, retry_attempts=2, retry_backoff_seconds=0.05
    )
    async with running_worker(settings) as running:
        yield running


async def test_a_dead_letter_replayed_twice_takes_effect_once(worker: Worker, kafka_bootstrap: str) -> None:
    ce_id, data = unique("ce"), termination_data()
    key = data["subscription_id"]
    follow_up = unique("ce")
    async with (
        InjectedFaults(worker.engine) as faults,
        OutputWatcher(kafka_bootstrap) as outputs,
        RecordWatcher(kafka_bootstrap, [dead_letter_topic(REQUESTED)]) as dead_letters,
    ):
        await faults.fail(ce_id)  # say, a bug in a release, since rolled back
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id)])
        [letter] = await dead_letters.keys_arrived(key.encode())
        await faults.heal(ce_id)

        first = await dlq(kafka_bootstrap, "replay", REQUESTED.value, "--key", key)
        await outputs.answers({ce_id})
        second = await dlq(kafka_bootstrap, "replay", REQUESTED.value, "--key", key)
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(), follow_up)])
        await outputs.answers({follow_up}, settle=1.0)  # the worker got past the second replay

    trace = letter.header("kafka_dlt-exception-stacktrace").decode()
    assert trace.startswith("Traceback (most recent call last):\n")
    assert f"injected fault for ce_id {ce_id}" in trace  # the database's error, with its frames
    assert trace.endswith(
        f"worker.engine.failures.RetriesExhausted: {letter.header('kafka_dlt-exception-message').decode()}\n"
    )
    for result in (first, second):
        assert result.exit_code == 0, result.output
        assert "replayed 1 of 1 selected dead letter from" in result.stdout
    assert sorted(r.topic for r in outputs.about({ce_id})) == ["refund-issued", "subscription-terminated"]
    async with worker.engine.connect() as conn:
        versions = await conn.scalars(
            select(account_balances.c.balance_version).where(
                account_balances.c.account_id == data["account_id"]
            )
        )
        assert list(versions) == [1]


async def test_a_replayed_message_that_fails_again_is_dead_lettered_with_one_set_of_headers(
    worker: Worker, kafka_bootstrap: str
) -> None:
    poison = event(REQUESTED, termination_data())
    poison = Raw(poison.topic, poison.key, b"{still not json", poison.headers)
    key = (poison.key or b"").decode()
    dlt = dead_letter_topic(REQUESTED)
    async with RecordWatcher(kafka_bootstrap, [dlt]) as dead_letters:
        await publish(kafka_bootstrap, [poison])
        [first] = await dead_letters.keys_arrived(poison.key or b"")
        trace = first.header("kafka_dlt-exception-stacktrace").decode()
        assert trace.startswith("Traceback (most recent call last):\n")
        assert trace.endswith(
            f"schemas.errors.NotJson: {first.header('kafka_dlt-exception-message').decode()}\n"
        )
        left = await dlq(kafka_bootstrap, "replay", dlt, "--key", key)
        assert left.stdout.splitlines()[0].startswith("replayed 0 of 1 selected dead letter from")
        await dlq(kafka_bootstrap, "replay", dlt, "--key", key, "--include-poison")
        await dead_letters.wait_for(lambda got: len([r for r in got if r.key == poison.key]) == 2)
        second = dead_letters.with_keys(poison.key or b"")[1]
        await dlq(
            kafka_bootstrap,
            "replay",
            dlt,
            "--key",
            key,
            "--partition",
            str(second.partition),
            "--offset-from",
            str(second.offset),
            "--include-poison",
        )
        await dead_letters.wait_for(lambda got: len([r for r in got if r.key == poison.key]) == 3, settle=0.5)
        third = dead_letters.with_keys(poison.key or b"")[2]

    for again, replayed_from in ((second, first), (third, second)):
        assert again.value == b"{still not json"
        names = [name for name, _ in again.headers]
        assert names[: len(poison.headers) + 1] == [*(name for name, _ in poison.headers), REPLAYED_FROM]
        dlt_names = [name for name in names if name.startswith("kafka_dlt-")]
        assert len(dlt_names) == len(set(dlt_names)) == 9
        assert (
            again.header(REPLAYED_FROM) == f"{dlt}[{replayed_from.partition}]@{replayed_from.offset}".encode()
        )
        assert again.header("kafka_dlt-exception-fqcn") == b"schemas.errors.NotJson"
