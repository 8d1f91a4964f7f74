"""The dlq tool's pure parts: which dead letters a selection takes, what a replay sends, how they read."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from rich.console import Console

from schemas.errors import NotJson
from worker.deadletter import REPLAYED_FROM, dead_letter
from worker.dlq.letters import DeadLetter, NotReplayable, dead_letter_topic_of, replay_record
from worker.dlq.render import header_text, letters_table, summary_lines
from worker.dlq.replay import ReplayOutcome
from worker.dlq.selection import InvalidSelection, Selection, parse_time
from worker.records import InboundRecord

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW_MS = 1_714_564_800_000


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("2024-05-01T12:00:00Z", NOW_MS),
        ("2024-05-01T12:00:00.001Z", NOW_MS + 1),
        ("2024-05-01T14:00:00+02:00", NOW_MS),
        ("2024-05-01T12:00:00", NOW_MS),  # no offset: UTC
        ("2024-05-01", NOW_MS - 12 * 3600 * 1000),
        ("90s", NOW_MS - 90_000),
        ("30m", NOW_MS - 30 * 60_000),
        ("2h", NOW_MS - 2 * 3600_000),
        ("7d", NOW_MS - 7 * 86400_000),
    ],
)
def test_times_are_timestamps_dates_or_ages(text: str, millis: int) -> None:
    assert parse_time(text, option="--since", now=NOW) == millis


@pytest.mark.parametrize("text", ["yesterday", "5w", "2024-13-01", "", "-2h"])
def test_a_time_that_is_none_of_those_names_its_option(text: str) -> None:
    with pytest.raises(InvalidSelection, match=r"^--until '.*' is not a time"):
        parse_time(text, option="--until", now=NOW)


def test_offsets_are_clipped_to_what_the_partition_holds_and_offset_to_is_included() -> None:
    assert Selection().offsets(5, 10) == range(5, 10)
    assert Selection(offset_from=7).offsets(5, 10) == range(7, 10)
    assert Selection(offset_from=2, offset_to=6).offsets(5, 10) == range(5, 7)
    assert Selection(offset_from=12).offsets(5, 10) == range(12, 12)
    assert Selection(offset_to=3).offsets(5, 10) == range(5, 5)


def test_key_and_time_filters() -> None:
    window = Selection(key="sub-1", since_ms=100, until_ms=200)
    assert window.accepts(b"sub-1", 100)
    assert window.accepts(b"sub-1", 199)
    assert not window.accepts(b"sub-1", 200)
    assert not window.accepts(b"sub-1", 99)
    assert not window.accepts(b"sub-2", 150)
    assert not window.accepts(None, 150)
    assert Selection().accepts(None, 0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"offset_from": 5, "offset_to": 4}, "--offset-from 5 is after --offset-to 4"),
        ({"since_ms": 5, "until_ms": 5}, "--since is not before --until"),
    ],
)
def test_selections_that_cannot_select_anything_are_refused(fields: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidSelection, match=message):
        Selection(**fields)  # type: ignore[arg-type]


def test_topic_may_be_named_by_its_source() -> None:
    assert dead_letter_topic_of("termination-requested") == "termination-requested-dlt"
    assert dead_letter_topic_of("termination-requested-dlt") == "termination-requested-dlt"


def letter(headers: tuple[tuple[str, bytes], ...], topic: str = "termination-requested-dlt") -> DeadLetter:
    return DeadLetter(topic, 1, 42, NOW_MS, b"sub-1", b'{"a": 1}', headers)


def a_dead_letter(extra: tuple[tuple[str, bytes], ...] = ()) -> DeadLetter:
    original = InboundRecord(
        "termination-requested", 2, 7, b"sub-1", b'{"a": 1}', (("ce_id", b"ce-1"), *extra), NOW_MS
    )
    record = dead_letter(original, NotJson("bad"), group="refund-worker", reason="not_json")
    return letter(record.headers)


def test_replay_sends_the_original_back_with_one_mark_of_where_it_came_from() -> None:
    record = replay_record(a_dead_letter(extra=((REPLAYED_FROM, b"termination-requested-dlt[0]@3"),)))
    assert (record.topic, record.key, record.value) == ("termination-requested", b"sub-1", b'{"a": 1}')
    assert record.headers == (("ce_id", b"ce-1"), (REPLAYED_FROM, b"termination-requested-dlt[1]@42"))


def test_a_dead_letter_without_its_original_topic_is_not_replayed() -> None:
    with pytest.raises(NotReplayable, match="no kafka_dlt-original-topic header"):
        replay_record(letter((("ce_id", b"ce-1"),)))


def test_a_dead_letter_never_replays_to_another_topic_than_its_source() -> None:
    with pytest.raises(NotReplayable, match="'termination-requested' is not 'subscription-expired'"):
        replay_record(letter(a_dead_letter().headers, topic="subscription-expired-dlt"))


def test_headers_read_as_numbers_text_or_hex() -> None:
    assert header_text("kafka_dlt-original-partition", b"\x00\x00\x00\x02") == "2"
    assert header_text("kafka_dlt-original-timestamp", NOW_MS.to_bytes(8, "big")) == (
        f"{NOW_MS} (2024-05-01T12:00:00.000Z)"
    )
    assert header_text("trace", b"\xff\x00") == "0xff00 (not UTF-8)"
    assert header_text("ce_id", b"ce-1") == "ce-1"
    assert header_text("ce_id", None) == "(null)"


def test_the_table_shows_what_kafka_holds_never_as_markup() -> None:
    marked = DeadLetter(
        "termination-requested-dlt", 0, 1, NOW_MS, b"[bold]sub[/bold]", b"x", a_dead_letter().headers
    )
    output = io.StringIO()
    Console(file=output, width=200).print(letters_table("termination-requested-dlt", [marked]))
    row = next(line for line in output.getvalue().splitlines() if "sub" in line)
    assert "[bold]sub[/bold]" in row
    assert "termination-requested[2]@7" in row
    assert "NotJson: bad" in row
    assert "2024-05-01T12:00:00.000Z" in row


def test_the_summary_names_every_dead_letter_left_behind() -> None:
    outcome = ReplayOutcome(selected=3, sent=2)
    outcome.targets["termination-requested"] = 2
    outcome.skipped.append((letter(()), "it has no kafka_dlt-original-topic header"))
    assert summary_lines("termination-requested-dlt", outcome, dry_run=False, scanned=10) == [
        "replayed 2 of 3 selected dead letters from termination-requested-dlt "
        "(2 to termination-requested), 10 scanned",
        "skipped termination-requested-dlt[1]@42: it has no kafka_dlt-original-topic header",
    ]
    assert summary_lines("termination-requested-dlt", outcome, dry_run=True, scanned=10)[0] == (
        "dry run: 2 of 3 selected dead letters would be replayed from termination-requested-dlt "
        "(2 to termination-requested), 10 scanned; nothing was sent"
    )
