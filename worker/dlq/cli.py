"""`refund-worker dlq`: list, show and replay dead letters (docs/dead-letters.md).

TOPIC is the dead-letter topic (`termination-requested-dlt`) or its source topic
(`termination-requested` means the same). Exit status: 0 done; 1 Kafka failed along the way, or a
replay left selected dead letters behind (each named); 2 bad arguments, an unknown topic, or
KAFKA_BOOTSTRAP_SERVERS unset. Nothing here joins a consumer group or commits an offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from worker.dlq.letters import DeadLetter
    from worker.dlq.replay import ReplayOutcome
    from worker.dlq.selection import Selection

T = TypeVar("T")

app = typer.Typer(
    name="dlq",
    help="Inspect and replay dead-letter topics (<topic>-dlt). Needs KAFKA_BOOTSTRAP_SERVERS.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FAILED = 1
USAGE_ERROR = 2
LONG_REPLAY = 50
"""Records to scan from which a replay shows a progress bar (on a terminal)."""
PIPE_WIDTH = 200
"""Columns when stdout is not a terminal and COLUMNS is unset: one table row per dead letter."""


class UsageError(Exception):
    """Exit status 2 with this message."""


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class Kafka:
    """Where the dead letters are, and how to connect (TLS/SASL as the worker connects)."""

    servers: str
    options: dict[str, Any]


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


@app.command("list")
def list_letters(
    topic: TopicArgument,
    key: KeyOption = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    partition: PartitionOption = None,
    offset_from: OffsetFromOption = None,
    offset_to: OffsetToOption = None,
    limit: LimitOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Show dead letters, one line each: partition, offset, key, reason, time, original place,
    exception (the last two as the terminal's width allows)."""
    from worker.dlq.letters import dead_letter_topic_of
    from worker.dlq.render import letter_json, letters_table

    dead_letters = dead_letter_topic_of(topic)
    with _user_errors():
        selection = _selection(key, reason, since, until, partition, offset_from, offset_to, limit)
        letters = _run(_collect(_kafka(), dead_letters, selection))
    if output is Output.JSON:
        sys.stdout.write("".join(letter_json(letter) + "\n" for letter in letters))
        return
    console = _stdout()
    console.print(letters_table(dead_letters, letters, width=console.width))


@app.command()
def show(
    topic: TopicArgument,
    partition: Annotated[int, typer.Option("--partition", min=0, help="The dead letter's partition.")],
    offset: Annotated[int, typer.Option("--offset", min=0, help="The dead letter's offset.")],
    output: OutputOption = Output.TEXT,
) -> None:
    """Print one dead letter in full: where it came from, why, every header, the stacktrace, the value."""
    from worker.dlq.letters import dead_letter_topic_of
    from worker.dlq.render import letter_detail, letter_json

    with _user_errors():
        letter = _run(_one(_kafka(), dead_letter_topic_of(topic), partition, offset))
    if output is Output.JSON:
        sys.stdout.write(letter_json(letter) + "\n")
        return
    _stdout().print(letter_detail(letter))


@app.command()
def replay(
    topic: TopicArgument,
    key: KeyOption = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    partition: PartitionOption = None,
    offset_from: OffsetFromOption = None,
    offset_to: OffsetToOption = None,
    limit: LimitOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be replayed and send nothing.")
    ] = False,
    rate: Annotated[
        float | None, typer.Option("--rate", help="At most this many messages per second.")
    ] = None,
    include_poison: Annotated[
        bool,
        typer.Option(
            "--include-poison",
            help="Also send permanent poison (not JSON, not the schema, refused by the rules, an "
            "idempotency conflict), which a replay otherwise leaves and counts.",
        ),
    ] = False,
) -> None:
    """Republish dead letters to their original topic; safe to repeat.

    Each goes back with its original key, value and headers, without the kafka_dlt-* ones, plus
    refund-worker-replayed-from naming the dead letter. The worker's inbox knows every ce_id it
    processed, so a message replayed twice has no second effect. Permanent poison stays unless
    --include-poison: the summary counts it by reason and names it.
    """
    from worker.dlq.letters import dead_letter_topic_of
    from worker.dlq.render import planned_table, summary_lines

    dead_letters = dead_letter_topic_of(topic)
    with _user_errors():
        if rate is not None and rate <= 0:
            raise UsageError(f"--rate must be above 0, got {rate:g}")
        selection = _selection(key, reason, since, until, partition, offset_from, offset_to, limit)
        outcome, scanned = _run(
            _replay(
                _kafka(), dead_letters, selection, dry_run=dry_run, rate=rate, include_poison=include_poison
            )
        )
    console = _stdout()
    if outcome.planned:
        console.print(planned_table(outcome))
    for line in summary_lines(dead_letters, outcome, dry_run=dry_run, scanned=scanned):
        console.print(line, markup=False, highlight=False)
    if not outcome.complete:
        raise typer.Exit(FAILED)


def _selection(
    keys: list[str] | None,
    reasons: list[str] | None,
    since: str | None,
    until: str | None,
    partition: int | None,
    offset_from: int | None,
    offset_to: int | None,
    limit: int | None,
) -> Selection:
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


def _kafka() -> Kafka:
    from worker.config.security import kafka_client_options, kafka_security
    from worker.config.settings import InvalidSettings, load_settings

    try:
        settings = load_settings()
    except InvalidSettings as invalid:
        raise UsageError(str(invalid)) from None
    if settings.kafka_bootstrap_servers is None:
        raise UsageError(
            "KAFKA_BOOTSTRAP_SERVERS is not set: dlq works on the Kafka cluster it names "
            "(an embedded broker lives only as long as its `refund-worker run`)"
        )
    try:
        options = kafka_client_options(kafka_security(settings))
    except (OSError, ValueError) as error:  # a TLS file missing or unreadable
        raise UsageError(f"bad Kafka TLS/SASL configuration: {error}") from None
    return Kafka(settings.kafka_bootstrap_servers, options)


async def _collect(kafka: Kafka, topic: str, selection: Selection) -> list[DeadLetter]:
    from worker.dlq.kafka import DeadLetterReader

    async with DeadLetterReader(kafka.servers, topic, **kafka.options) as reader:
        return [letter async for letter in reader.read(selection)]


async def _one(kafka: Kafka, topic: str, partition: int, offset: int) -> DeadLetter:
    from worker.dlq.kafka import DeadLetterReader

    async with DeadLetterReader(kafka.servers, topic, **kafka.options) as reader:
        return await reader.one(partition, offset)


async def _replay(
    kafka: Kafka, topic: str, selection: Selection, *, dry_run: bool, rate: float | None, include_poison: bool
) -> tuple[ReplayOutcome, int]:
    from aiokafka.errors import KafkaError

    from worker.dlq.kafka import DeadLetterReader, KafkaUnavailable, Republisher
    from worker.dlq.replay import replay_letters

    async with DeadLetterReader(kafka.servers, topic, **kafka.options) as reader:
        total = sum(len(offsets) for offsets in reader.windows(selection).values())
        with _progress(total) as scanned:
            letters = reader.read(selection, on_scanned=scanned.advance)
            if dry_run:
                return await replay_letters(letters, None, include_poison=include_poison), scanned.count
            async with Republisher(kafka.servers, rate=rate, **kafka.options) as republisher:
                try:
                    outcome = await replay_letters(letters, republisher.send, include_poison=include_poison)
                    await republisher.flush()
                except KafkaError as error:
                    raise KafkaUnavailable(
                        f"replay stopped, {republisher.acknowledged} acknowledged so far ({error}); "
                        "running it again is safe: what was replayed already has no second effect"
                    ) from None
            return outcome, scanned.count


class _Scanned:
    def __init__(self, advance_bar: Any) -> None:
        self.count = 0
        self._advance_bar = advance_bar

    def advance(self) -> None:
        self.count += 1
        self._advance_bar()


@contextlib.contextmanager
def _progress(total: int) -> Iterator[_Scanned]:
    """A progress bar on stderr over the records a replay scans, when it is long and on a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("scanning dead letters"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=total < LONG_REPLAY or not console.is_terminal,
    )
    with bar:
        task = bar.add_task("replay", total=total)
        yield _Scanned(lambda: bar.advance(task))


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    # aiokafka logs each failed connection attempt; the one-line message below says it once.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(coroutine)
    finally:
        kafka_log.setLevel(level)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Expected failures as one line on stderr and an exit status, never a traceback."""
    from aiokafka.errors import KafkaError

    from worker.dlq.kafka import KafkaUnavailable, UnknownTopic
    from worker.dlq.selection import InvalidSelection

    try:
        yield
    except (UsageError, InvalidSelection, UnknownTopic) as error:
        raise _exit(str(error), USAGE_ERROR) from None
    except KafkaUnavailable as error:
        raise _exit(str(error), FAILED) from None
    except KafkaError as error:
        raise _exit(f"Kafka failed: {error}", FAILED) from None
    except KeyboardInterrupt:
        raise _exit("interrupted; running the same command again is safe", FAILED) from None


def _exit(message: str, status: int) -> typer.Exit:
    typer.echo(f"refund-worker dlq: {' '.join(message.split())}", err=True)  # one line, always
    return typer.Exit(status)


def _stdout() -> Console:
    from rich.console import Console

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=PIPE_WIDTH if piped else None, highlight=False)
