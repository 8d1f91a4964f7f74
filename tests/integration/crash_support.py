"""Killing the worker again and again while it works through a backlog (tests/integration/test_crash.py).

A load is published in waves: the first before the worker starts (or, after a setup, once the
worker has stored it), each later one while the worker lies killed, once the inputs it waits for
are stored (a credit note before its subscription's termination, a reversal after the refund it
takes back, a settlement after its instruction), so an order that spans partitions is still the
one the test means. Each life of the worker is killed right after a commit that stored
inputs of a topic it is aimed at, until every input topic of the wave had its kill: one consumer
reads every input topic, and on the embedded broker it drains partition after partition (in no
fixed order of topics), so kills counted over all inputs would mostly land in the topic read first.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.integration.harness import Raw, publish, unique
from tests.integration.worker_processes import WorkerProcess, worker_env
from worker.db.schema.inbox import inbox
from worker.engine.runtime import create_engine

InputKey = tuple[str, str, str]
"""(reseller_id, topic, ce_id): the inbox's key of an input, stored once however often delivered."""

PROGRESS_WITHIN = 60.0
"""Seconds a life of the worker may take to get past its kill point."""
MAX_STEP = 300
"""At most this many more inputs of its topic a life stores before it is killed."""
LATE_KILL_SECONDS = 0.05
"""Every other kill comes up to this long after its commit: amid the next batch, wherever a worker
that committed offsets before its effects (or sent events before storing them) would lose them."""


def crash_worker(
    kafka_bootstrap: str, database_url: str, group_settings: dict[str, int], group_prefix: str
) -> WorkerProcess:
    """A worker process of a consumer group of its own, in batches of 20: many commits, so kills
    land between a batch's database commit and its offsets' (the window that makes redeliveries)."""
    env = worker_env(
        kafka_bootstrap, database_url, unique(group_prefix), group_settings, BATCH_MAX_RECORDS="20"
    )
    return WorkerProcess(env)


def input_key(message: Raw) -> InputKey:
    ce_id = next(value for name, value in message.headers if name == "ce_id" and value is not None)
    return json.loads(message.value or b"")["reseller_id"], message.topic, ce_id.decode()


@dataclass
class Wave:
    messages: list[Raw] = field(default_factory=list)
    waits_for: set[InputKey] = field(default_factory=set)
    """Inputs of earlier waves whose effects are stored before this wave is published."""


@dataclass(frozen=True)
class Kill:
    wave: int
    """The last wave published when the worker was killed."""
    topic: str | None
    """The topic a commit of which was the last before the kill (None: only waited)."""
    stored: int
    """Inputs of that topic stored by then, of `published`."""
    published: int
    waited: bool = False
    """The kill also waited for the inputs the next wave waits for: it may have come well after
    the topic's commit."""


class Progress:
    """What the worker has stored of some inputs, read from a fresh snapshot each time."""

    def __init__(self, conn: AsyncConnection, resellers: set[str]) -> None:
        self._conn = conn
        self._resellers = sorted(resellers)

    async def stored_of(self, topic: str) -> int:
        """This run's inputs of `topic` in the inbox (not other tests' rows of the session's database)."""
        i = inbox.c
        query = (
            select(func.count())
            .select_from(inbox)
            .where(i.reseller_id.in_(self._resellers), i.topic == topic)
        )
        return await self._read(query)

    async def stored(self, keys: set[InputKey]) -> bool:
        if not keys:
            return True
        key = tuple_(inbox.c.reseller_id, inbox.c.topic, inbox.c.ce_id)
        query = select(func.count()).select_from(inbox).where(key.in_(sorted(keys)))
        return await self._read(query) == len(keys)

    async def _read(self, query: Select[int]) -> int:
        try:
            return await self._conn.scalar(query) or 0
        except ProgrammingError:  # before the first migration: no table yet
            return 0
        finally:
            await self._conn.rollback()  # a fresh snapshot each time


async def kill_repeatedly(
    process: WorkerProcess,
    kafka_bootstrap: str,
    database_url: str,
    waves: Sequence[Wave],
    kills_per_wave: int,
    setup: Sequence[Sequence[Raw]] = (),
) -> list[Kill]:
    """Start the worker and SIGKILL it right after a commit (or, every other time, a moment later),
    again and again: `kills_per_wave` times per wave, the first kills each aimed at an input topic
    of the wave that had none yet, smallest first, each topic published when first aimed at (the
    first while the worker is down). Then, before each later wave, one kill more once the inputs
    that wave waits for are stored. With `setup`, the worker is started first and each stage
    published once the one before it is stored, and the first wave once the last is: what a wave
    needs on another topic, without a wave's kills. Leaves the worker started again, with every
    wave published; returns where each kill landed."""
    published: list[InputKey] = []

    async def publish_wave(wave: Wave) -> None:
        await publish(kafka_bootstrap, wave.messages)
        published.extend({input_key(message) for message in wave.messages} - set(published))

    kills: list[Kill] = []
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            for stage in filter(None, setup):
                if not process.running:
                    process.start()
                await publish_wave(Wave(list(stage)))
                await _stored_within(Progress(conn, set()), set(map(input_key, stage)))
            for number, wave in enumerate(waves):
                keys = [input_key(message) for message in wave.messages]
                resellers = {reseller for reseller, _, _ in [*published, *keys]}
                progress = Progress(conn, resellers)
                sizes = Counter(topic for _, topic, _ in keys)
                unpublished: dict[str, list[Raw]] = {}
                for message, (_, of, _) in zip(wave.messages, keys, strict=True):
                    unpublished.setdefault(of, []).append(message)
                topics = set(sizes)
                closes = number + 1 < len(waves)  # one life more, to wait for the next wave's
                lives = max(kills_per_wave, len(topics)) + closes
                for life in range(lives):
                    hit = {kill.topic for kill in kills if kill.wave == number}
                    waits = waves[number + 1].waits_for if closes and life == lives - 1 else set()
                    # The smallest topic not hit yet, alone, published only now (topics of a wave
                    # need no order among them): published and aimed at with the others, a small
                    # one could be read to its end while the kill waited on a larger one.
                    unhit = topics - hit
                    aimed = {min(unhit, key=lambda t: (sizes[t], t))} if unhit else topics
                    for name in sorted((topics if waits else aimed) & unpublished.keys()):
                        await publish_wave(Wave(unpublished.pop(name)))
                    of_topic = {t: sum(1 for _, topic, _ in published if topic == t) for t in aimed}
                    if not process.running:  # after the setup
                        process.start()
                    topic, stored = await _kill_point(progress, of_topic, waits)
                    if len(kills) % 2:
                        await asyncio.sleep(random.uniform(0, LATE_KILL_SECONDS))
                    process.kill()
                    kills.append(
                        Kill(number, topic, stored, of_topic.get(topic or "", 0), waited=bool(waits))
                    )
    finally:
        await engine.dispose()
    process.start()
    return kills


async def _stored_within(progress: Progress, keys: set[InputKey]) -> None:
    deadline = asyncio.get_running_loop().time() + PROGRESS_WITHIN
    while not await progress.stored(keys):
        assert asyncio.get_running_loop().time() < deadline, (
            f"the setup not stored in {PROGRESS_WITHIN:.0f} s"
        )
        await asyncio.sleep(0.05)


async def _kill_point(
    progress: Progress, published: dict[str, int], waited_for: set[InputKey]
) -> tuple[str | None, int]:
    """Polls without sleeping, so it returns right after the commit that takes one of the topics
    past its random point (the worker is then likely between its database commit and its offset
    commit): the topic and how many of its inputs are stored. With `waited_for`, also not before
    those are stored, and then without a point if no topic has inputs left. A cold start takes
    seconds (imports, migration, group join), so the point is set by evidence of work, not by time."""
    points = {}
    for topic, of_topic in published.items():
        left = of_topic - await progress.stored_of(topic)
        if left >= 2:
            points[topic] = of_topic - left + random.randint(1, min(MAX_STEP, left - 1))
    assert points or waited_for, f"no more than one input left of {sorted(published)} to kill amid"
    deadline = asyncio.get_running_loop().time() + PROGRESS_WITHIN
    while asyncio.get_running_loop().time() < deadline:
        passed: tuple[str | None, int] | None = None if points else (None, 0)
        for topic, point in points.items():
            if (stored := await progress.stored_of(topic)) >= point:
                passed = topic, stored
                break
        if passed is not None and await progress.stored(waited_for):
            return passed
    raise AssertionError(
        f"the worker stored no more than {points} (or not the inputs the next wave waits for) "
        f"in {PROGRESS_WITHIN:.0f} s: stuck, or it lost inputs at a kill"
    )
