"""The dlq commands' output for people: rich tables, one dead letter in full, the replay summary.

Everything read from Kafka goes in as `Text`, never as markup: a key like `[bold]` stays a key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from worker.deadletter import ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TIMESTAMP, read_number
from worker.dlq.letters import DeadLetter, utc_time
from worker.dlq.replay import ReplayOutcome
from worker.records import OutboundRecord

_NUMBER_HEADERS = frozenset({ORIGINAL_PARTITION, ORIGINAL_OFFSET, ORIGINAL_TIMESTAMP})


def timestamp_text(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return "?"
    return utc_time(timestamp_ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def key_text(key: bytes | None) -> str:
    return "(none)" if key is None else key.decode("utf-8", "replace")


def exception_text(letter: DeadLetter) -> str:
    dlt = letter.dlt
    name = (dlt.exception_fqcn or "?").rsplit(".", 1)[-1]
    message = (dlt.exception_message or "").splitlines()[0] if dlt.exception_message else ""
    return f"{name}: {message}" if message else name


def letters_table(topic: str, letters: Sequence[DeadLetter]) -> Table:
    table = Table(title=Text(f"{topic}: {len(letters)} dead letters"), title_justify="left")
    table.add_column("partition", justify="right")
    table.add_column("offset", justify="right")
    table.add_column("key", overflow="fold")
    table.add_column("original", overflow="fold")
    table.add_column("exception", overflow="ellipsis", no_wrap=True, max_width=70)
    table.add_column("dead-lettered (UTC)", no_wrap=True)
    for letter in letters:
        table.add_row(
            Text(str(letter.partition)),
            Text(str(letter.offset)),
            Text(key_text(letter.key)),
            Text(letter.original_location or "?"),
            Text(exception_text(letter)),
            Text(timestamp_text(letter.timestamp_ms)),
        )
    return table


def letter_detail(letter: DeadLetter) -> Group:
    dlt = letter.dlt
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    for name, value in (
        ("dead letter", letter.location),
        ("dead-lettered", timestamp_text(letter.timestamp_ms)),
        ("key", key_text(letter.key)),
        ("original", letter.original_location or "?"),
        ("original time", timestamp_text(dlt.original_timestamp_ms)),
        ("consumer group", dlt.consumer_group or "?"),
        ("failure", dlt.failure_reason or "?"),
        ("exception", dlt.exception_fqcn or "?"),
        ("cause", dlt.exception_cause_fqcn or "-"),
        ("message", dlt.exception_message or ""),
    ):
        facts.add_row(Text(name), Text(value))
    headers = Table(title=Text("headers, in order"), title_justify="left")
    headers.add_column("name", overflow="fold")
    headers.add_column("value", overflow="fold")
    for header, raw in letter.headers:
        headers.add_row(Text(header), Text(header_text(header, raw)))
    return Group(
        facts, Text(""), headers, Text(""), Text("value:", style="bold"), value_renderable(letter.value)
    )


def header_text(name: str, value: bytes | None) -> str:
    """A header value for reading: Spring's binary numbers as numbers, text as text, else hex."""
    if value is None:
        return "(null)"
    if name in _NUMBER_HEADERS:
        try:
            number = read_number(value)
        except ValueError:
            pass
        else:
            return f"{number} ({timestamp_text(number)})" if name == ORIGINAL_TIMESTAMP else str(number)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return f"0x{value.hex()} (not UTF-8)"


def value_renderable(value: bytes | None) -> RenderableType:
    """JSON pretty-printed; other text as it is; anything else as Python bytes."""
    if value is None:
        return Text("(null)")
    try:
        return JSON.from_data(json.loads(value), indent=2)
    except ValueError:  # not JSON, or not UTF-8 at all (UnicodeDecodeError is a ValueError)
        pass
    try:
        return Text(value.decode("utf-8"))
    except UnicodeDecodeError:
        return Text(repr(value))


def planned_table(outcome: ReplayOutcome) -> Table:
    table = Table(title=Text("dry run: would replay"), title_justify="left")
    table.add_column("dead letter", overflow="fold")
    table.add_column("to", overflow="fold")
    table.add_column("key", overflow="fold")
    table.add_column("ce_id", overflow="fold")
    for letter, record in outcome.planned:
        table.add_row(
            Text(letter.location), Text(record.topic), Text(key_text(record.key)), Text(ce_id_text(record))
        )
    return table


def ce_id_text(record: OutboundRecord) -> str:
    found = [value for name, value in record.headers if name == "ce_id"]
    return found[-1].decode("utf-8", "replace") if found else "(structured or none)"


def summary_lines(topic: str, outcome: ReplayOutcome, *, dry_run: bool, scanned: int) -> list[str]:
    targets = ", ".join(f"{count} to {target}" for target, count in sorted(outcome.targets.items()))
    replayable = sum(outcome.targets.values())
    if dry_run:
        head = f"dry run: {replayable} of {outcome.selected} selected dead letters would be replayed"
        tail = "; nothing was sent"
    else:
        head = f"replayed {outcome.sent} of {outcome.selected} selected dead letters"
        tail = ""
    where = f" ({targets})" if targets else ""
    lines = [f"{head} from {topic}{where}, {scanned} scanned{tail}"]
    lines += [f"skipped {letter.location}: {why}" for letter, why in outcome.skipped]
    return lines
