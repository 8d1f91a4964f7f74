"""`refund-worker dlq`: list, show and replay dead letters (docs/dead-letters.md).

TOPIC is the dead-letter topic (`termination-requested-dlt`) or its source topic
(`termination-requested` means the same). Exit status: 0 done; 1 Kafka failed along the way, or a
replay left selected dead letters behind (each named); 2 bad arguments, an unknown topic, or
KAFKA_BOOTSTRAP_SERVERS unset. Nothing here joins a consumer group or commits an offset.

The commands only parse and print; `cluster` does the work, `options` holds the options, `exits`
the one-line failures. Kafka clients are imported when a command runs, never for `--help`.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from worker.dlq.exits import FAILED, UsageError, run_quietly, user_errors
from worker.dlq.options import (
    KeyOption,
    LimitOption,
    OffsetFromOption,
    OffsetToOption,
    Output,
    OutputOption,
    PartitionOption,
    ReasonOption,
    SinceOption,
    TopicArgument,
    UntilOption,
    selection_of,
)

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="dlq",
    help="Inspect and replay dead-letter topics (<topic>-dlt). Needs KAFKA_BOOTSTRAP_SERVERS.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

PIPE_WIDTH = 200
"""Columns when stdout is not a terminal and COLUMNS is unset: one table row per dead letter."""


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
    from worker.dlq import cluster
    from worker.dlq.json_output import letter_json
    from worker.dlq.letters import dead_letter_topic_of
    from worker.dlq.listing import letters_table

    dead_letters = dead_letter_topic_of(topic)
    with user_errors():
        selection = selection_of(key, reason, since, until, partition, offset_from, offset_to, limit)
        letters = run_quietly(cluster.collect(cluster.kafka_from_settings(), dead_letters, selection))
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
    from worker.dlq import cluster
    from worker.dlq.detail import letter_detail
    from worker.dlq.json_output import letter_json
    from worker.dlq.letters import dead_letter_topic_of

    with user_errors():
        kafka = cluster.kafka_from_settings()
        letter = run_quietly(cluster.one(kafka, dead_letter_topic_of(topic), partition, offset))
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
    from worker.dlq import cluster
    from worker.dlq.letters import dead_letter_topic_of
    from worker.dlq.replay_report import planned_table, summary_lines

    dead_letters = dead_letter_topic_of(topic)
    with user_errors():
        if rate is not None and rate <= 0:
            raise UsageError(f"--rate must be above 0, got {rate:g}")
        selection = selection_of(key, reason, since, until, partition, offset_from, offset_to, limit)
        kafka = cluster.kafka_from_settings()
        outcome, scanned = run_quietly(
            cluster.replay(
                kafka, dead_letters, selection, dry_run=dry_run, rate=rate, include_poison=include_poison
            )
        )
    console = _stdout()
    if outcome.planned:
        console.print(planned_table(outcome))
    for line in summary_lines(dead_letters, outcome, dry_run=dry_run, scanned=scanned):
        console.print(line, markup=False, highlight=False)
    if not outcome.complete:
        raise typer.Exit(FAILED)


def _stdout() -> Console:
    from rich.console import Console

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=PIPE_WIDTH if piped else None, highlight=False)
