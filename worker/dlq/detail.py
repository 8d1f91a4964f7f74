"""`dlq show`'s page: one dead letter in full, its facts, every header in order, the stacktrace and
the value.

Everything read from Kafka goes in as `Text`, never as markup: a key like `[bold]` stays a key.
"""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from worker.dlq.letters import DeadLetter
from worker.dlq.recoverer import EXCEPTION_STACKTRACE
from worker.dlq.text import header_text, key_text, replay_text, timestamp_text


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
