"""The dlq commands' output for people: rich tables, one dead letter in full, the replay summary.

Everything read from Kafka goes in as `Text`, never as markup: a key like `[bold]` stays a key.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Group, JustifyMethod, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from worker.dlq.letters import DeadLetter, utc_time
from worker.dlq.recoverer import (
    EXCEPTION_STACKTRACE,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TIMESTAMP,
    REPLAYED_FROM,
    read_number,
)
from worker.dlq.replay import ReplayOutcome
from worker.engine.records import OutboundRecord

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


def plural(count: int, noun: str) -> str:
    """`1 dead letter`, `2 dead letters`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def table_time(timestamp_ms: int) -> str:
    """RFC 3339 to the second, as --since and --until take it."""
    return utc_time(timestamp_ms).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    justify: JustifyMethod = "left"


_PARTITION, _OFFSET = _Column("partition", "right"), _Column("offset", "right")
_KEY, _REASON, _TIME = _Column("key"), _Column("reason"), _Column("dead-lettered (UTC)")
_ORIGINAL, _EXCEPTION = _Column("original"), _Column("exception")
_COLUMNS = (_PARTITION, _OFFSET, _KEY, _REASON, _TIME, _ORIGINAL, _EXCEPTION)
_WHOLE = (_PARTITION, _OFFSET, _REASON, _TIME)
"""Always shown in full: what `show` and the filters need."""
_KEY_AT_LEAST = 12
_OPTIONAL_AT_LEAST = 16
_OPTIONAL = (_EXCEPTION, _ORIGINAL)
"""Shown when there is room, in this order; cut with an ellipsis, left out below 16 columns."""
_GAP = 2


def letters_table(topic: str, letters: Sequence[DeadLetter], width: int = 200) -> Table:
    """One line per dead letter at `width` columns: partition, offset, reason and time whole, the key
    whole or cut with an ellipsis, then the exception and the original place as room allows."""
    rows = [_cells(letter) for letter in letters]
    widths = _fit({c: max([len(c.header), *(len(row[c]) for row in rows)]) for c in _COLUMNS}, width)
    shown = [c for c in _COLUMNS if c in widths]
    left_out = [c.header for c in _COLUMNS if c not in widths]
    table = Table(
        title=Text(f"{topic}: {plural(len(letters), 'dead letter')}"),
        title_justify="left",
        caption=Text(f"not shown at {width} columns: {', '.join(left_out)}; see dlq show")
        if left_out and letters
        else None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in shown:
        table.add_column(
            column.header,
            justify=column.justify,
            width=widths[column],
            min_width=widths[column],
            no_wrap=True,
            overflow="ellipsis",
        )
    for row in rows:
        table.add_row(*(Text(row[column]) for column in shown))
    return table


def _cells(letter: DeadLetter) -> dict[_Column, str]:
    return {
        _PARTITION: str(letter.partition),
        _OFFSET: str(letter.offset),
        _KEY: key_text(letter.key),
        _REASON: letter.reason or "?",
        _TIME: table_time(letter.timestamp_ms),
        _ORIGINAL: letter.original_location or "?",
        _EXCEPTION: exception_text(letter),
    }


def _fit(natural: dict[_Column, int], width: int) -> dict[_Column, int]:
    """Each shown column's width. The key gets what it needs first (at least 12, cut beyond). The
    optional columns each need 16, the exception before the original place; what is left goes to
    the original place (short, exact) and then to the exception."""
    widths = {column: natural[column] for column in _WHOLE}
    room = width - sum(widths.values()) - _GAP * len(widths)
    widths[_KEY] = min(natural[_KEY], max(room, _KEY_AT_LEAST))
    room -= widths[_KEY]
    for column in _OPTIONAL:
        least = min(natural[column], _OPTIONAL_AT_LEAST)
        if room - _GAP >= least:
            widths[column] = least
            room -= least + _GAP
    for column in reversed(_OPTIONAL):
        if column in widths:
            more = min(natural[column] - widths[column], room)
            widths[column] += more
            room -= more
    return widths


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
        ("replay", replay_text(letter)),
    ):
        facts.add_row(Text(name), Text(value))
    headers = Table(title=Text("headers, in order"), title_justify="left")
    headers.add_column("name", overflow="fold")
    headers.add_column("value", overflow="fold")
    for header, raw in letter.headers:
        shown = "(below)" if header == EXCEPTION_STACKTRACE and raw else header_text(header, raw)
        headers.add_row(Text(header), Text(shown))
    parts: list[RenderableType] = [facts, Text(""), headers]
    if trace := letter.header(EXCEPTION_STACKTRACE):
        parts += [Text(""), Text("stacktrace:", style="bold"), Text(trace.decode("utf-8", "replace"))]
    return Group(*parts, Text(""), Text("value:", style="bold"), value_renderable(letter.value))


def replay_text(letter: DeadLetter) -> str:
    if (poison := letter.poison) is None:
        return "replay sends it back"
    return f"left by replay: permanent poison ({poison}); --include-poison sends it back"


def letter_json(letter: DeadLetter) -> str:
    """One dead letter as one line of JSON, for jq and scripts (docs/dead-letters.md)."""
    dlt = letter.dlt
    document: dict[str, Any] = {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "dead_lettered_at": timestamp_text(letter.timestamp_ms),
        **_bytes_field("key", letter.key),
        "reason": dlt.failure_reason,
        "poison": letter.poison is not None,
        "original": {
            "topic": dlt.original_topic,
            "partition": dlt.original_partition,
            "offset": dlt.original_offset,
            "timestamp": None
            if dlt.original_timestamp_ms is None
            else timestamp_text(dlt.original_timestamp_ms),
        },
        "consumer_group": dlt.consumer_group,
        "exception": {
            "class": dlt.exception_fqcn,
            "message": dlt.exception_message,
            "cause_class": dlt.exception_cause_fqcn,
            "stacktrace": _text_or_none(letter.header(EXCEPTION_STACKTRACE)),
        },
        "replayed_from": _text_or_none(letter.header(REPLAYED_FROM)),
        "headers": [_header_json(name, raw) for name, raw in letter.headers],
        **_bytes_field("value", letter.value),
    }
    return json.dumps(document, ensure_ascii=False)


def _header_json(name: str, raw: bytes | None) -> dict[str, Any]:
    """Spring's binary partition, offset and timestamp also as `number`."""
    header: dict[str, Any] = {"name": name, **_bytes_field("value", raw)}
    if name in _NUMBER_HEADERS and raw is not None:
        with contextlib.suppress(ValueError):
            header["number"] = read_number(raw)
    return header


def _bytes_field(name: str, raw: bytes | None) -> dict[str, str | None]:
    """`{name: text}`; bytes that are not UTF-8 as `{name: null, name_base64: ...}`."""
    if raw is None:
        return {name: None}
    try:
        return {name: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {name: None, f"{name}_base64": base64.b64encode(raw).decode("ascii")}


def _text_or_none(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


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
    selected = plural(outcome.selected, "selected dead letter")
    if dry_run:
        head = f"dry run: {replayable} of {selected} would be replayed"
        tail = "; nothing was sent"
    else:
        head = f"replayed {outcome.sent} of {selected}"
        tail = ""
    where = f" ({targets})" if targets else ""
    lines = [f"{head} from {topic}{where}, {scanned} scanned{tail}"]
    lines += _poison_lines(topic, outcome, dry_run=dry_run)
    lines += [f"skipped {letter.location}: {why}" for letter, why in outcome.skipped]
    return lines


def _poison_lines(topic: str, outcome: ReplayOutcome, *, dry_run: bool) -> list[str]:
    total = sum(outcome.poison.values())
    if not total:
        return []
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(outcome.poison.items()))
    lines = [
        f"{'would leave' if dry_run else 'left'} {plural(total, 'poison dead letter')} unsent ({reasons}): "
        "a replay would only dead-letter poison again; --include-poison sends it anyway"
    ]
    lines += [f"poison {where}: {reason}" for where, reason in outcome.poison_named]
    if (unnamed := total - len(outcome.poison_named)) > 0:
        lines.append(f"and {unnamed} more poison (dlq list {topic} --reason REASON lists them)")
    return lines
