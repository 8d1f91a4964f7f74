"""What the dlq commands do on the Kafka cluster: where it is (the worker's settings), collecting
the selected dead letters, fetching one, and a replay run with its progress bar."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from worker.dlq.exits import UsageError
from worker.dlq.kafka import DeadLetterReader, KafkaUnavailable, Republisher
from worker.dlq.letters import DeadLetter
from worker.dlq.replay import ReplayOutcome, replay_letters
from worker.dlq.selection import Selection

LONG_REPLAY = 50
"""Records to scan from which a replay shows a progress bar (on a terminal)."""


@dataclass(frozen=True, slots=True)
class Kafka:
    """Where the dead letters are, and how to connect (TLS/SASL as the worker connects)."""

    servers: str
    options: dict[str, Any]


def kafka_from_settings() -> Kafka:
    """The cluster the worker's settings name; a setting missing or wrong is a UsageError."""
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


async def collect(kafka: Kafka, topic: str, selection: Selection) -> list[DeadLetter]:
    async with DeadLetterReader(kafka.servers, topic, **kafka.options) as reader:
        return [letter async for letter in reader.read(selection)]


async def one(kafka: Kafka, topic: str, partition: int, offset: int) -> DeadLetter:
    async with DeadLetterReader(kafka.servers, topic, **kafka.options) as reader:
        return await reader.one(partition, offset)


async def replay(
    kafka: Kafka, topic: str, selection: Selection, *, dry_run: bool, rate: float | None, include_poison: bool
) -> tuple[ReplayOutcome, int]:
    """Replay the selected dead letters (or, dry, say what would go); also how many records were scanned."""
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
