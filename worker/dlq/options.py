"""The dlq commands' options, and the `Selection` the filtering ones make (list and replay share them).

Only typer is imported up front: `refund-worker --help` must not load Kafka clients.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from worker.dlq.selection import Selection


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


TopicArgument = Annotated[
    str,
    typer.Argument(
        metavar="TOPIC",
        show_default=False,
        help="The dead-letter topic, or its source topic (termination-requested: termination-requested-dlt).",
    ),
]
KeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--key", metavar="KEY", help="Only dead letters with this key (exact); repeat it for any of several."
    ),
]
ReasonOption = Annotated[
    list[str] | None,
    typer.Option(
        "--reason",
        metavar="REASON",
        help="Only dead letters with this kafka_dlt-failure-reason (not_json, invalid_data, "
        "retries_exhausted, ...); repeat it for any of several.",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only those dead-lettered at or after this time: RFC 3339, a date (UTC) or an age (30m, 2h).",
    ),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Only those dead-lettered before this time (as --since).")
]
PartitionOption = Annotated[
    int | None, typer.Option("--partition", min=0, help="Only this partition of the dead-letter topic.")
]
OffsetFromOption = Annotated[
    int | None, typer.Option("--offset-from", min=0, help="Only from this dead-letter offset on (included).")
]
OffsetToOption = Annotated[
    int | None, typer.Option("--offset-to", min=0, help="Only up to this dead-letter offset (included).")
]
LimitOption = Annotated[
    int | None,
    typer.Option("--limit", min=1, help="At most this many, in partition order, then offset order."),
]
OutputOption = Annotated[
    Output,
    typer.Option(
        "--output",
        case_sensitive=False,
        help="text: for people; json: one JSON object per dead letter and line, for jq and scripts.",
    ),
]


def selection_of(
    keys: list[str] | None,
    reasons: list[str] | None,
    since: str | None,
    until: str | None,
    partition: int | None,
    offset_from: int | None,
    offset_to: int | None,
    limit: int | None,
) -> Selection:
    """The dead letters the filtering options select; times relative to now (`--since 2h`)."""
    from worker.dlq.selection import Selection, parse_time

    now = datetime.now(UTC)
    wanted_reasons = frozenset(reason.strip().lower().replace("-", "_") for reason in reasons or ())
    _note_unknown_reasons(wanted_reasons)
    return Selection(
        partition=partition,
        offset_from=offset_from,
        offset_to=offset_to,
        keys=frozenset(keys or ()),
        reasons=wanted_reasons,
        since_ms=None if since is None else parse_time(since, option="--since", now=now),
        until_ms=None if until is None else parse_time(until, option="--until", now=now),
        limit=limit,
    )


def _note_unknown_reasons(reasons: frozenset[str]) -> None:
    """A mistyped reason selects nothing: say so on stderr (another tool's reasons still work)."""
    from worker.dlq.letters import KNOWN_REASONS

    if unknown := sorted(reasons - KNOWN_REASONS):
        typer.echo(
            f"refund-worker dlq: note: the worker writes no reason {', '.join(unknown)} "
            f"(it writes {', '.join(sorted(KNOWN_REASONS))})",
            err=True,
        )
