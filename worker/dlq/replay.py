"""A replay run: each selected dead letter back to its original topic, or the reason it stays."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field

from worker.dlq.letters import DeadLetter, NotReplayable, replay_record
from worker.engine.records import OutboundRecord

Send = Callable[[OutboundRecord], Awaitable[None]]

POISON_NAMED = 20
"""Poison dead letters a summary names one by one; the rest it counts."""


@dataclass
class ReplayOutcome:
    selected: int = 0
    sent: int = 0
    """Handed to the producer; all acknowledged once the run's republisher has flushed."""
    targets: Counter[str] = field(default_factory=Counter)
    """Per original topic, how many went (or would go, in a dry run)."""
    planned: list[tuple[DeadLetter, OutboundRecord]] = field(default_factory=list)
    """A dry run's records, for showing; a real run keeps none (a replay may be long)."""
    skipped: list[tuple[DeadLetter, str]] = field(default_factory=list)
    """Dead letters that cannot be replayed at all, and why: the run is not complete."""
    poison: Counter[str] = field(default_factory=Counter)
    """Permanent poison left where it is (unless asked for), per reason. Left on purpose: the run
    is still complete."""
    poison_named: list[tuple[str, str]] = field(default_factory=list)
    """The first POISON_NAMED of them: (dead letter, reason)."""

    @property
    def complete(self) -> bool:
        return not self.skipped

    def leave_poison(self, letter: DeadLetter, reason: str) -> None:
        self.poison[reason] += 1
        if len(self.poison_named) < POISON_NAMED:
            self.poison_named.append((letter.location, reason))


async def replay_letters(
    letters: AsyncIterable[DeadLetter], send: Send | None, *, include_poison: bool = False
) -> ReplayOutcome:
    """Sends what each dead letter replays to, in order; `send` None is a dry run (nothing sent).
    Permanent poison (not JSON, not the schema, ...) stays unless `include_poison`."""
    outcome = ReplayOutcome()
    async for letter in letters:
        outcome.selected += 1
        if not include_poison and (poison := letter.poison) is not None:
            outcome.leave_poison(letter, poison)
            continue
        try:
            record = replay_record(letter)
        except NotReplayable as why:
            outcome.skipped.append((letter, str(why)))
            continue
        if send is None:
            outcome.planned.append((letter, record))
        else:
            await send(record)
            outcome.sent += 1
        outcome.targets[record.topic] += 1
    return outcome
