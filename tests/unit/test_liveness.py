"""/health/live's judgement: a consumer stuck on a batch, or a blocked event loop, fails it; an idle
worker, a worker waiting out an outage, and a short block do not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from worker.engine.failures import FailureKind
from worker.engine.observer import ObserverGroup, PipelineObserver
from worker.engine.outage import RetryPolicy
from worker.engine.pipeline import Applied, BatchPipeline
from worker.engine.records import InboundRecord
from worker.ops.health import Check
from worker.ops.liveness import Liveness

TOPIC = "termination-requested"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def records(topic: str = TOPIC) -> list[InboundRecord]:
    return [InboundRecord(topic, 0, 5, b"k", b"{}", (), 0)]


def liveness(clock: Clock) -> Liveness:
    return Liveness(stall_seconds=60, blocked_seconds=5, heartbeat_seconds=0.5, clock=clock)


def test_an_idle_worker_is_alive() -> None:
    clock = Clock()
    live = liveness(clock)
    clock.now += 3600
    assert live.check() == Check(True, "alive")


def test_a_batch_rewound_without_end_fails_liveness_once_the_stall_time_is_over() -> None:
    clock, batch = Clock(), records()
    live = liveness(clock)
    for _ in range(61):  # taken again and again, never handled: its first time counts
        live.batch_started(batch)
        clock.now += 1
    check = live.check()
    assert not check.ok
    assert "consumer stuck: a batch of termination-requested in hand for 61s" in check.detail


def test_handling_the_batch_makes_it_alive_again() -> None:
    clock, batch = Clock(), records()
    live = liveness(clock)
    live.batch_started(batch)
    clock.now += 61
    assert not live.check().ok
    live.batch_handled(batch, 61.0)
    assert live.check().ok


def test_another_topics_progress_does_not_hide_a_stuck_one() -> None:
    clock, stuck, flowing = Clock(), records(), records("subscription-renewed")
    live = liveness(clock)
    for _ in range(61):
        live.batch_started(stuck)
        live.batch_started(flowing)
        live.batch_handled(flowing, 0.01)
        clock.now += 1
    assert not live.check().ok


def test_waiting_out_an_outage_is_progress() -> None:
    clock, batch = Clock(), records()
    live = liveness(clock)
    live.batch_started(batch)
    for _ in range(10):
        clock.now += 30
        live.attempt_failed(batch, FailureKind.INFRASTRUCTURE)
    assert live.check().ok


def test_a_blocked_loop_fails_the_next_probe_only() -> None:
    clock = Clock()
    live = liveness(clock)
    live.beat()
    clock.now += 0.5
    live.beat()
    clock.now += 12.5  # the loop was blocked for 12 s
    live.beat()
    check = live.check()
    assert (check.ok, check.detail) == (False, "event loop blocked for 12.0s")
    clock.now += 0.5
    live.beat()
    assert live.check().ok


def test_a_probe_answered_right_after_a_block_sees_it_before_the_heartbeat_does() -> None:
    clock = Clock()
    live = liveness(clock)
    live.beat()
    clock.now += 8.5
    assert live.check() == Check(False, "event loop blocked for 8.0s")


def test_a_short_block_is_no_failure() -> None:
    clock = Clock()
    live = liveness(clock)
    live.beat()
    clock.now += 3
    live.beat()
    assert live.check().ok


async def test_the_heartbeat_measures_a_really_blocked_loop() -> None:
    live = Liveness(stall_seconds=60, blocked_seconds=0.2, heartbeat_seconds=0.05)
    watcher = asyncio.create_task(live.watch_loop())
    await asyncio.sleep(0.1)
    time.sleep(0.4)  # noqa: ASYNC251 - blocks the event loop, as a slow step would
    await asyncio.sleep(0.1)
    watcher.cancel()
    check = live.check()
    assert not check.ok
    assert check.detail.startswith("event loop blocked for 0.")


async def test_the_pipeline_tells_every_observer_when_it_takes_and_hands_a_batch() -> None:
    class Seen(PipelineObserver):
        def __init__(self) -> None:
            self.events: list[str] = []

        def batch_started(self, records: Sequence[InboundRecord]) -> None:
            self.events.append("started")

        def batch_handled(self, records: Sequence[InboundRecord], seconds: float) -> None:
            self.events.append("handled")

    class Connection:
        async def execute(self, statement: object, parameters: object = None) -> None:
            return None

    async def apply(conn: Connection, commands: Sequence[bytes | None]) -> Applied:
        return Applied([])

    class Engine:
        @asynccontextmanager
        async def begin(self) -> AsyncIterator[Connection]:
            yield Connection()

        connect = begin

    async def send_all(records: object) -> None:
        return None

    first, second = Seen(), Seen()
    pipeline: BatchPipeline[Connection, bytes | None] = BatchPipeline(
        engine=Engine(),
        parse=lambda record: record.value,
        apply=apply,
        send_all=send_all,
        consumer_group="group",
        retry=RetryPolicy(),
        observer=ObserverGroup(first, second),
    )
    await pipeline.process(records())
    assert first.events == second.events == ["started", "handled"]
