"""`dlq list`'s table: one line per dead letter, fitted to the terminal's width.

Everything read from Kafka goes in as `Text`, never as markup: a key like `[bold]` stays a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

from worker.dlq.letters import DeadLetter
from worker.dlq.text import exception_text, key_text, plural, table_time


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
