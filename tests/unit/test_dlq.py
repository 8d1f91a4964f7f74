"""The dlq tool's pure parts: which dead letters a selection takes, what a replay sends, how they read."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from rich.console import Console

from schemas.errors import InvalidAttribute, NotJson
from worker.dlq.detail import letter_detail
from worker.dlq.json_output import letter_json
from worker.dlq.letters import DeadLetter, NotReplayable, dead_letter_topic_of, replay_record
from worker.dlq.listing import letters_table
from worker.dlq.recoverer import REPLAYED_FROM, dead_letter
from worker.dlq.replay import POISON_NAMED, ReplayOutcome, replay_letters
from worker.dlq.replay_report import summary_lines
from worker.dlq.selection import InvalidSelection, Selection, parse_time
from worker.dlq.text import ce_id_text, header_text, key_text
from worker.engine.failures import IdempotencyConflict, RetriesExhausted
from worker.engine.records import Headers, InboundRecord, OutboundRecord

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
    window = Selection(keys=frozenset({"sub-1"}), since_ms=100, until_ms=200)
    assert window.accepts(b"sub-1", 100)
    assert window.accepts(b"sub-1", 199)
    assert not window.accepts(b"sub-1", 200)
    assert not window.accepts(b"sub-1", 99)
    assert not window.accepts(b"sub-2", 150)
    assert not window.accepts(None, 150)
    assert Selection().accepts(None, 0)


def test_several_keys_or_reasons_select_any_of_them() -> None:
    keys = Selection(keys=frozenset({"sub-1", "sub-2"}))
    assert keys.accepts(b"sub-1", 0)
    assert keys.accepts(b"sub-2", 0)
    assert not keys.accepts(b"sub-3", 0)
    reasons = Selection(reasons=frozenset({"not_json", "invalid_data"}))
    assert reasons.accepts(b"k", 0, "not_json")
    assert reasons.accepts(b"k", 0, "invalid_data")
    assert not reasons.accepts(b"k", 0, "retries_exhausted")
    assert not reasons.accepts(b"k", 0, None)
    assert Selection().accepts(b"k", 0, None)


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


def letter(headers: Headers, topic: str = "termination-requested-dlt") -> DeadLetter:
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


def rendered(renderable: object, width: int) -> list[str]:
    output = io.StringIO()
    Console(file=output, width=width).print(renderable)
    return output.getvalue().splitlines()


def test_the_table_shows_what_kafka_holds_never_as_markup() -> None:
    marked = DeadLetter(
        "termination-requested-dlt", 0, 1, NOW_MS, b"[bold]sub[/bold]", b"x", a_dead_letter().headers
    )
    row = next(
        line for line in rendered(letters_table("termination-requested-dlt", [marked]), 200) if "sub" in line
    )
    assert row.split() == [
        "0",
        "1",
        "[bold]sub[/bold]",
        "not_json",
        "2024-05-01T12:00:00Z",
        "termination-requested[2]@7",
        "NotJson:",
        "bad",
    ]


def dead_lettered(
    partition: int, offset: int, key: str, error: BaseException, reason: str, value: bytes = b"{}"
) -> DeadLetter:
    original = InboundRecord(
        "termination-requested", 3, 4711, key.encode(), value, (("ce_id", b"c"),), NOW_MS
    )
    record = dead_letter(original, error, group="refund-worker", reason=reason)
    return DeadLetter(
        "termination-requested-dlt", partition, offset, NOW_MS, record.key, value, record.headers
    )


AT_3_AM = [
    dead_lettered(0, 7, "sub-1", NotJson("value is not JSON"), "not_json"),
    dead_lettered(
        11,
        1_234_567,
        "sub-7f3a9c2e-1b4d-4e8a-9f00-123456789abc",
        IdempotencyConflict("ce_id seen"),
        "idempotency_conflict",
    ),
    dead_lettered(3, 42, "sub-3", RetriesExhausted(RuntimeError("boom " * 40), 3), "retries_exhausted"),
]


@pytest.mark.parametrize("width", [80, 100, 200])
def test_each_dead_letter_is_one_whole_line_at_any_width_from_80(width: int) -> None:
    lines = rendered(letters_table("termination-requested-dlt", AT_3_AM, width), width)
    assert all(len(line) <= width for line in lines)
    for letter in AT_3_AM:
        [row] = [line for line in lines if f" {letter.offset} " in line]
        partition, offset, key, reason, when, *_ = row.split()
        assert (partition, offset, reason) == (str(letter.partition), str(letter.offset), letter.reason)
        assert when == "2024-05-01T12:00:00Z"
        shown = key_text(letter.key)
        assert key == shown or (key.endswith("…") and shown.startswith(key[:-1]) and len(key) >= 12)


def test_at_80_columns_a_long_key_is_cut_with_an_ellipsis_and_what_does_not_fit_is_named() -> None:
    lines = rendered(letters_table("termination-requested-dlt", AT_3_AM, 80), 80)
    assert lines[0].startswith("termination-requested-dlt: 3 dead letters")
    assert any(" sub-7f3a9c2e-1b… " in line for line in lines)
    assert lines[-1].rstrip() == "not shown at 80 columns: original, exception; see dlq show"


def test_the_exception_comes_before_the_original_place_and_is_cut_to_fit() -> None:
    short = [AT_3_AM[0], AT_3_AM[2]]
    lines = rendered(letters_table("termination-requested-dlt", short, 100), 100)
    assert any(line.rstrip().endswith(" NotJson: value is not JSON") for line in lines)
    assert any(line.rstrip().endswith(" RetriesExhausted: RuntimeError: …") for line in lines)
    assert lines[-1].rstrip() == "not shown at 100 columns: original; see dlq show"


def test_at_200_columns_everything_is_shown_and_nothing_is_cut_but_the_exception() -> None:
    lines = rendered(letters_table("termination-requested-dlt", AT_3_AM, 200), 200)
    assert any("sub-7f3a9c2e-1b4d-4e8a-9f00-123456789abc" in line for line in lines)
    assert sum("termination-requested[3]@4711" in line for line in lines) == 3
    assert not any("not shown" in line for line in lines)


def test_counts_are_in_the_singular_for_one() -> None:
    assert rendered(letters_table("t-dlt", AT_3_AM[:1], 80), 80)[0].strip() == "t-dlt: 1 dead letter"
    assert rendered(letters_table("t-dlt", [], 80), 80)[0].strip() == "t-dlt: 0 dead letters"
    outcome = ReplayOutcome(selected=1, sent=1)
    assert summary_lines("t-dlt", outcome, dry_run=False, scanned=1)[0].startswith(
        "replayed 1 of 1 selected dead letter from t-dlt"
    )


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


def test_poison_is_known_by_its_reason_or_else_by_its_exception() -> None:
    assert AT_3_AM[0].poison == "not_json"
    assert AT_3_AM[1].poison == "idempotency_conflict"
    assert AT_3_AM[2].poison is None  # retries exhausted: a fix may make it succeed
    by_class = dead_lettered(0, 1, "k", InvalidAttribute("bad ce_time"), "some_older_label")
    assert by_class.poison == "InvalidAttribute"
    assert dead_lettered(0, 1, "k", RuntimeError("boom"), "unexpected").poison is None
    assert letter((("ce_id", b"x"),)).poison is None  # no kafka_dlt-* headers at all


def test_a_dead_letter_from_before_the_restructure_is_still_known_as_poison() -> None:
    older = letter(
        (
            ("kafka_dlt-original-topic", b"termination-requested"),
            ("kafka_dlt-exception-fqcn", b"worker.failures.IdempotencyConflict"),
        )
    )
    assert older.poison == "IdempotencyConflict"


async def each(letters: list[DeadLetter]) -> AsyncIterator[DeadLetter]:
    for one in letters:
        yield one


async def test_a_replay_leaves_poison_counts_it_and_says_so() -> None:
    sent: list[OutboundRecord] = []

    async def send(record: OutboundRecord) -> None:
        sent.append(record)

    outcome = await replay_letters(each(AT_3_AM), send)

    assert [record.key for record in sent] == [b"sub-3"]
    assert outcome.complete
    assert summary_lines("termination-requested-dlt", outcome, dry_run=False, scanned=3) == [
        "replayed 1 of 3 selected dead letters from termination-requested-dlt "
        "(1 to termination-requested), 3 scanned",
        "left 2 poison dead letters unsent (1 idempotency_conflict, 1 not_json): "
        "a replay would only dead-letter poison again; --include-poison sends it anyway",
        "poison termination-requested-dlt[0]@7: not_json",
        "poison termination-requested-dlt[11]@1234567: idempotency_conflict",
    ]


async def test_include_poison_sends_it_too() -> None:
    sent: list[OutboundRecord] = []

    async def send(record: OutboundRecord) -> None:
        sent.append(record)

    outcome = await replay_letters(each(AT_3_AM), send, include_poison=True)
    assert [record.key for record in sent] == [letter.key for letter in AT_3_AM]
    assert not outcome.poison


async def test_a_long_replay_names_the_first_poison_and_counts_the_rest() -> None:
    poison = [dead_lettered(0, i, f"k{i}", NotJson("x"), "not_json") for i in range(25)]
    outcome = await replay_letters(each(poison), None)
    lines = summary_lines("t-dlt", outcome, dry_run=True, scanned=25)
    assert lines[1].startswith("would leave 25 poison dead letters unsent (25 not_json)")
    assert len([line for line in lines if line.startswith("poison ")]) == POISON_NAMED
    assert lines[-1] == "and 5 more poison (dlq list t-dlt --reason REASON lists them)"


def test_json_is_one_line_per_dead_letter_with_every_fact() -> None:
    weird = DeadLetter(
        "termination-requested-dlt", 2, 9, NOW_MS, b"\xff\xfe", b"\xc3\x28", AT_3_AM[0].headers
    )
    [document] = [json.loads(line) for line in letter_json(weird).splitlines()]
    assert document["topic"] == "termination-requested-dlt"
    assert (document["partition"], document["offset"]) == (2, 9)
    assert document["dead_lettered_at"] == "2024-05-01T12:00:00.000Z"
    assert (document["key"], document["key_base64"]) == (None, "//4=")
    assert (document["value"], document["value_base64"]) == (None, "wyg=")
    assert (document["reason"], document["poison"]) == ("not_json", True)
    assert document["original"] == {
        "topic": "termination-requested",
        "partition": 3,
        "offset": 4711,
        "timestamp": "2024-05-01T12:00:00.000Z",
    }
    assert document["exception"]["class"] == "schemas.errors.NotJson"
    assert document["exception"]["stacktrace"] == "schemas.errors.NotJson: value is not JSON\n"
    assert document["headers"][0] == {"name": "ce_id", "value": "c"}
    headers = {header["name"]: header for header in document["headers"]}
    assert headers["kafka_dlt-original-partition"] == {
        "name": "kafka_dlt-original-partition",
        "value": "\x00\x00\x00\x03",
        "number": 3,
    }


def test_show_prints_the_stacktrace_in_its_own_section_after_the_headers() -> None:
    lines = rendered(letter_detail(AT_3_AM[2]), 120)
    header_row = next(line for line in lines if "kafka_dlt-exception-stacktrace" in line)
    assert header_row.split("│")[2].strip() == "(below)"
    section = lines[lines.index("stacktrace:") + 1 : lines.index("value:")]
    assert section[0].startswith("RuntimeError: boom")
    assert "The above exception was the direct cause of the following exception:" in section
    assert any(
        line.startswith("worker.engine.failures.RetriesExhausted: RuntimeError: boom") for line in section
    )


def test_show_says_whether_a_replay_sends_it_back() -> None:
    assert any("replay sends it back" in line for line in rendered(letter_detail(AT_3_AM[2]), 120))
    assert any(
        "left by replay: permanent poison (not_json); --include-poison sends it back" in line
        for line in rendered(letter_detail(AT_3_AM[0]), 120)
    )


def test_spans_of_partitions_and_offsets_read_right_for_one() -> None:
    from worker.dlq.kafka import _span

    assert _span("partition", [0, 1, 2]) == "partitions 0 to 2"
    assert _span("partition", [3]) == "partition 3"
    assert _span("partition", []) == "no partitions"
    assert _span("offset", range(5, 10**12)) == f"offsets 5 to {10**12 - 1}"


def test_a_null_ce_id_header_reads_as_none_rather_than_failing() -> None:
    # Kafka allows a header with no value; aiokafka gives it as None.
    record = OutboundRecord("termination-requested", None, b"{}", (("ce_id", None),))
    assert ce_id_text(record) == "(structured or none)"
